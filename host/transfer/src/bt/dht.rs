//! The BitTorrent Mainline DHT (BEP 5) as a source of peers: a magnet link's info-hash is looked up there
//! (`get_peers`) when the link names no tracker or peer, and every non-private torrent that runs is looked up and
//! announced (`announce_peer`) at a bounded rate, its peers fed to the session like a tracker's. Private torrents
//! never touch the DHT (BEP 27): neither their lookups nor their announces.
//!
//! The DHT itself is a [`PeerFinder`]: the engine does not own a DHT node, it is handed one, so a node daemon that
//! already runs a Mainline DHT for something else (discovery records, BEP 44) shares that node instead of opening a
//! second one. [`MainlineDht`] is the implementation on the `mainline` crate, over a node of its own (started on
//! first use, with bootstrap nodes from the configuration) or over a node someone else started.
//!
//! KRPC decoding is the `mainline` crate's (a response with a malformed compact peer list is dropped whole there);
//! what comes out of it is still bounded and checked here: at most [`MAX_PEERS_PER_LOOKUP`] distinct addresses per
//! lookup, and none that cannot be a peer (port 0, unspecified, multicast, broadcast).

use std::collections::HashSet;
use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use futures::stream::BoxStream;
use mainline::async_dht::AsyncDht;
use mainline::{Dht, Id};
use tokio::sync::{OnceCell, mpsc, watch};

use super::session::{SessionCommand, TorrentHandle, TransferState};

/// One lookup's whole budget; `mainline` ends a lookup once its last request is answered or timed out, well before.
pub const LOOKUP_TIMEOUT: Duration = Duration::from_secs(30);
/// Distinct addresses taken from one lookup: every node answers with up to a datagram of peers, and many answer.
pub const MAX_PEERS_PER_LOOKUP: usize = 200;
/// A downloading torrent is looked up again this often (libtorrent and Transmission use minutes too).
pub const DOWNLOADING_INTERVAL: Duration = Duration::from_secs(5 * 60);
/// A seeding torrent only needs its announce kept fresh: DHT nodes forget peers after about half an hour.
pub const SEEDING_INTERVAL: Duration = Duration::from_secs(15 * 60);

#[derive(Debug, thiserror::Error)]
pub enum DhtError {
    #[error("cannot start the DHT node: {0}")]
    Start(std::io::Error),
    #[error("the DHT announce failed: {0}")]
    Announce(String),
}

type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Where peers of an info-hash are found and where we say we have it: the Mainline DHT, however it is run.
pub trait PeerFinder: std::fmt::Debug + Send + Sync {
    /// Starts a lookup of the peers announced for `info_hash`: batches as the DHT's nodes answer, ending with the
    /// lookup. Unbounded and unchecked: [`find_peers`] bounds and checks them.
    fn get_peers(
        &self,
        info_hash: [u8; 20],
    ) -> BoxFuture<'_, Result<BoxStream<'static, Vec<SocketAddr>>, DhtError>>;

    /// Tells the nodes closest to `info_hash` that we have it, reachable on TCP `port`.
    fn announce(&self, info_hash: [u8; 20], port: u16) -> BoxFuture<'_, Result<(), DhtError>>;
}

/// How a DHT node of our own is started.
#[derive(Debug, Clone, Default)]
pub struct DhtNodeConfig {
    /// `host:port` of the nodes to join through; `None`: `mainline`'s public bootstrap nodes (tests always give a
    /// loopback testnet's).
    pub bootstrap: Option<Vec<String>>,
    /// The local address of the UDP socket (`None`: every interface).
    pub bind: Option<Ipv4Addr>,
    /// The UDP port (`None`: one the OS picks).
    pub port: Option<u16>,
}

/// The Mainline DHT through the `mainline` crate.
#[derive(Debug, Clone)]
pub struct MainlineDht {
    node: Arc<OnceCell<AsyncDht>>,
    config: DhtNodeConfig,
}

impl MainlineDht {
    /// A node of our own, started (joining through `config.bootstrap`) when it is first asked something: a daemon
    /// that never runs a public torrent never contacts the DHT.
    pub fn new(config: DhtNodeConfig) -> Self {
        Self {
            node: Arc::new(OnceCell::new()),
            config,
        }
    }

    /// A node someone else runs (the daemon's discovery node): shared, not a second one.
    pub fn shared(node: AsyncDht) -> Self {
        Self {
            node: Arc::new(OnceCell::new_with(Some(node))),
            config: DhtNodeConfig::default(),
        }
    }

    /// The node, started now if it was not yet.
    pub async fn node(&self) -> Result<&AsyncDht, DhtError> {
        self.node
            .get_or_try_init(|| {
                let config = self.config.clone();
                async move {
                    // Off the runtime: `mainline` resolves bootstrap host names with blocking DNS.
                    tokio::task::spawn_blocking(move || {
                        let mut builder = Dht::builder();
                        if let Some(bootstrap) = &config.bootstrap {
                            builder.bootstrap(bootstrap);
                        }
                        if let Some(bind) = config.bind {
                            builder.bind_address(bind);
                        }
                        if let Some(port) = config.port {
                            builder.port(port);
                        }
                        builder.build().map(Dht::as_async).map_err(DhtError::Start)
                    })
                    .await
                    .map_err(|e| DhtError::Start(std::io::Error::other(e)))?
                }
            })
            .await
    }
}

impl PeerFinder for MainlineDht {
    fn get_peers(
        &self,
        info_hash: [u8; 20],
    ) -> BoxFuture<'_, Result<BoxStream<'static, Vec<SocketAddr>>, DhtError>> {
        Box::pin(async move {
            let stream = self.node().await?.get_peers(Id::from(info_hash));
            Ok(stream
                .map(|batch| batch.into_iter().map(SocketAddr::V4).collect())
                .boxed())
        })
    }

    fn announce(&self, info_hash: [u8; 20], port: u16) -> BoxFuture<'_, Result<(), DhtError>> {
        Box::pin(async move {
            self.node()
                .await?
                .announce_peer(Id::from(info_hash), Some(port))
                .await
                .map(|_| ())
                .map_err(|e| DhtError::Announce(e.to_string()))
        })
    }
}

/// Whether `addr` can be a peer at all: a DHT node may list anything.
pub fn is_dialable(addr: &SocketAddr) -> bool {
    let ip = addr.ip();
    let broadcast = match ip {
        std::net::IpAddr::V4(v4) => v4.is_broadcast(),
        std::net::IpAddr::V6(_) => false,
    };
    addr.port() != 0 && !ip.is_unspecified() && !ip.is_multicast() && !broadcast
}

/// One lookup of `info_hash`: the dialable addresses, each once, at most [`MAX_PEERS_PER_LOOKUP`], sent to `found`
/// in batches as nodes answer. Ends with the lookup, at [`LOOKUP_TIMEOUT`], or when `found` is closed; returns how
/// many addresses were sent.
pub async fn find_peers(
    finder: &dyn PeerFinder,
    info_hash: [u8; 20],
    found: &mpsc::Sender<Vec<SocketAddr>>,
) -> Result<usize, DhtError> {
    let mut seen = HashSet::new();
    let lookup = async {
        let mut batches = finder.get_peers(info_hash).await?;
        while let Some(batch) = batches.next().await {
            let fresh: Vec<SocketAddr> = batch
                .into_iter()
                .filter(|addr| {
                    is_dialable(addr) && seen.len() < MAX_PEERS_PER_LOOKUP && seen.insert(*addr)
                })
                .collect();
            if !fresh.is_empty() && found.send(fresh).await.is_err() {
                break;
            }
            // Dropping the stream ends our interest; `mainline` finishes the query on its own.
            if seen.len() >= MAX_PEERS_PER_LOOKUP {
                break;
            }
        }
        Ok::<_, DhtError>(())
    };
    match tokio::time::timeout(LOOKUP_TIMEOUT, lookup).await {
        Ok(Err(error)) => Err(error),
        Ok(Ok(())) | Err(_) => Ok(seen.len()),
    }
}

/// The DHT the engine uses, if any; it can be handed over after torrents started (a daemon's DHT node comes up in
/// the background), and every torrent's lookups follow the change.
pub type FinderSlot = watch::Receiver<Option<Arc<dyn PeerFinder>>>;

/// Looks a running torrent up and announces it, at once (or as soon as a DHT is there) and then every
/// [`DOWNLOADING_INTERVAL`] (while it downloads) or [`SEEDING_INTERVAL`] (while it seeds), skipping while it is
/// paused; the peers found go to the session. Ends with the session. Never called for a private torrent (the
/// engine checks).
pub(crate) fn spawn_lookups(mut finders: FinderSlot, handle: &TorrentHandle, port: u16) {
    let info_hash = handle.info_hash;
    let mut session = handle.downgrade();
    tokio::spawn(async move {
        loop {
            let state = session.state();
            let finder = finders.borrow_and_update().clone();
            if let Some(finder) = finder
                && matches!(state, TransferState::Downloading | TransferState::Seeding)
            {
                let (found, mut batches) = mpsc::channel(4);
                let forward = async {
                    while let Some(peers) = batches.recv().await {
                        session.command(SessionCommand::DhtPeers(peers)).await;
                    }
                };
                let lookup = async {
                    let result = find_peers(finder.as_ref(), info_hash, &found).await;
                    drop(found);
                    result
                };
                let (result, ()) = tokio::join!(lookup, forward);
                match result {
                    Ok(count) => allpeers_log::flesh!(peers = count, "transfer: DHT lookup done"),
                    Err(error) => allpeers_log::marrow!(%error, "transfer: DHT lookup failed"),
                }
                if let Err(error) = finder.announce(info_hash, port).await {
                    allpeers_log::marrow!(%error, "transfer: DHT announce failed");
                }
            }
            let wait = if state == TransferState::Seeding {
                SEEDING_INTERVAL
            } else {
                DOWNLOADING_INTERVAL
            };
            let handed_over = async {
                // An engine that is gone hands nothing over any more.
                if finders.changed().await.is_err() {
                    std::future::pending::<()>().await;
                }
            };
            tokio::select! {
                alive = session.wait(wait) => if !alive { return },
                () = handed_over => {}
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_that_cannot_be_peers_are_not_dialable() {
        for bad in [
            "0.0.0.0:6881",
            "1.2.3.4:0",
            "224.0.0.1:6881",
            "255.255.255.255:6881",
            "[::]:6881",
            "[ff02::1]:6881",
        ] {
            assert!(!is_dialable(&bad.parse().unwrap()), "{bad}");
        }
        for good in ["127.0.0.1:6881", "203.0.113.5:51413", "[::1]:6881"] {
            assert!(is_dialable(&good.parse().unwrap()), "{good}");
        }
    }
}
