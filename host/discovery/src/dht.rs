//! Our address record on the BitTorrent Mainline DHT (BEP 44 mutable items), and lookups of
//! other peers' records there: how a contact is found when its hub is unreachable.
//!
//! The item is signed with the node's own Ed25519 key and stored under
//! `sha1(public key | salt)` with the fixed salt [`SALT`], so the DHT nodes themselves refuse
//! an item for our target signed by any other key; the value is our
//! [`AddressRecord`](allpeers_net::record::AddressRecord), signed once more so a record copied
//! under someone else's key is still recognised as not theirs. Lookups are bounded: each
//! times out, and at most [`DhtConfig::max_concurrent_lookups`] run at once.

use std::future::Future;
use std::net::Ipv4Addr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use allpeers_model::PeerId;
use futures::StreamExt;
use mainline::async_dht::AsyncDht;
use mainline::{Dht, MutableItem};
use tokio::sync::{Semaphore, watch};
use tokio_util::sync::CancellationToken;

use super::DiscoveryError;
use allpeers_net::discovery::Discovery;
use allpeers_net::endpoint::Endpoint;
use allpeers_net::identity::Identity;
use allpeers_net::record::{AddressRecord, RecordAddress};
use allpeers_net::transport::Address;

/// The BEP 44 salt of address records: versioned, so a new record format gets a new
/// target and old readers never see it.
pub const SALT: &[u8] = b"allpeers/addr/1";

#[derive(Debug, Clone)]
pub struct DhtConfig {
    /// `host:port` of the nodes to join through; `None`: the public Mainline bootstrap
    /// nodes (tests always give a local testnet's).
    pub bootstrap: Option<Vec<String>>,
    /// The local address of the DHT's UDP socket (`None`: every interface).
    pub bind: Option<Ipv4Addr>,
    /// How long the DHT waits for one node's answer (`None`: mainline's 2 s). An
    /// iterative query ends when its last request is answered or times out, so this
    /// bounds how fast a lookup or publish can finish.
    pub request_timeout: Option<Duration>,
    /// How long one lookup or publish may take.
    pub lookup_timeout: Duration,
    /// Lookups running at once; more wait for a slot (within their timeout).
    pub max_concurrent_lookups: usize,
    /// Republish this often even if nothing changed: DHT nodes forget items after about two
    /// hours (BEP 44), and nodes come and go.
    pub republish_every: Duration,
    /// After a failed publish, try again after this long.
    pub retry_after: Duration,
}

impl Default for DhtConfig {
    fn default() -> Self {
        DhtConfig {
            bootstrap: None,
            bind: None,
            request_timeout: None,
            lookup_timeout: Duration::from_secs(15),
            max_concurrent_lookups: 8,
            republish_every: Duration::from_secs(30 * 60),
            retry_after: Duration::from_secs(60),
        }
    }
}

/// What `net.status` shows of the DHT.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct DhtStatus {
    /// Whether joining the DHT found any node (`None`: still trying).
    pub bootstrapped: Option<bool>,
    /// When our record was last stored (unix ms) and by how many nodes.
    pub last_publish_ms: Option<u64>,
    pub last_publish_stored_at: Option<u32>,
    pub last_publish_error: Option<String>,
    /// The addresses in the record last published.
    pub published: Vec<RecordAddress>,
    pub lookups: u64,
    pub lookups_found: u64,
    /// Why the last lookup that found nothing usable failed (which peer, which reason).
    pub last_lookup_error: Option<String>,
}

/// A member of the Mainline DHT that publishes our record and looks up others'.
#[derive(Clone)]
pub struct DhtDiscovery {
    inner: Arc<Inner>,
}

struct Inner {
    dht: AsyncDht,
    identity: Identity,
    config: DhtConfig,
    lookups: Semaphore,
    status: watch::Sender<DhtStatus>,
    /// The sequence number last published: BEP 44 nodes refuse a lower one, so a clock
    /// stepping back must not make our next record unpublishable.
    last_seq: Mutex<i64>,
}

impl DhtDiscovery {
    /// Joins the DHT (in the background: `mainline` runs its own thread).
    pub fn start(identity: Identity, config: DhtConfig) -> Result<Self, DiscoveryError> {
        let mut builder = Dht::builder();
        if let Some(bootstrap) = &config.bootstrap {
            builder.bootstrap(bootstrap);
        }
        if let Some(bind) = config.bind {
            builder.bind_address(bind);
        }
        if let Some(timeout) = config.request_timeout {
            builder.request_timeout(timeout);
        }
        let dht = builder
            .build()
            .map_err(DiscoveryError::DhtStart)?
            .as_async();
        let discovery = DhtDiscovery {
            inner: Arc::new(Inner {
                dht,
                identity,
                lookups: Semaphore::new(config.max_concurrent_lookups.max(1)),
                config,
                status: watch::channel(DhtStatus::default()).0,
                last_seq: Mutex::new(0),
            }),
        };
        Ok(discovery)
    }

    /// The DHT node itself, for others that use the Mainline DHT (BitTorrent's peer lookups): one node serves all.
    pub fn node(&self) -> AsyncDht {
        self.inner.dht.clone()
    }

    pub fn status(&self) -> DhtStatus {
        self.inner.status.borrow().clone()
    }

    /// The status, changed after every publish, lookup and bootstrap check.
    pub fn watch_status(&self) -> watch::Receiver<DhtStatus> {
        self.inner.status.subscribe()
    }

    /// Waits (at most the lookup timeout) for the join to finish; records and returns
    /// whether any node answered.
    pub async fn wait_bootstrapped(&self) -> bool {
        let done = tokio::time::timeout(
            self.inner.config.lookup_timeout,
            self.inner.dht.bootstrapped(),
        )
        .await
        .unwrap_or(false);
        self.inner
            .status
            .send_modify(|s| s.bootstrapped = Some(done));
        done
    }

    /// Signs and stores our record with these addresses. Returns how many DHT nodes
    /// stored it.
    pub async fn publish(&self, addresses: &[RecordAddress]) -> Result<u32, DiscoveryError> {
        let now = allpeers_model::hlc::now_ms();
        let seq = {
            let mut last = self.inner.last_seq.lock().expect("seq lock");
            *last = (*last + 1).max(now as i64);
            *last
        };
        let record = AddressRecord::new(self.inner.identity.peer_id(), seq as u64, addresses);
        let value = record.sign(&self.inner.identity)?;
        let key = mainline::SigningKey::from_bytes(&self.inner.identity.secret());
        let item = MutableItem::new(key, &value, seq, Some(SALT));
        let outcome = tokio::time::timeout(
            self.inner.config.lookup_timeout,
            self.inner.dht.put_mutable(item, None),
        )
        .await
        .map_err(|_| DiscoveryError::Timeout(self.inner.config.lookup_timeout))
        .and_then(|r| r.map_err(|e| DiscoveryError::DhtPut(e.to_string())));
        match outcome {
            Ok(outcome) => {
                self.inner.status.send_modify(|status| {
                    status.bootstrapped = Some(true);
                    status.last_publish_ms = Some(now);
                    status.last_publish_stored_at = Some(outcome.stored_at);
                    status.last_publish_error = None;
                    status.published = record.addresses;
                });
                tracing::debug!(
                    stored_at = outcome.stored_at,
                    seq,
                    "address record published on the DHT"
                );
                Ok(outcome.stored_at)
            }
            Err(e) => {
                self.inner
                    .status
                    .send_modify(|status| status.last_publish_error = Some(e.to_string()));
                tracing::debug!("publishing the address record failed: {e}");
                Err(e)
            }
        }
    }

    /// Looks `peer` up: the newest record that verifies as theirs and is fresh. Items
    /// that fail (another key's record, stale, malformed) are skipped, and the reason of
    /// the last one is the error if nothing valid is found.
    pub async fn resolve(&self, peer: &PeerId) -> Result<AddressRecord, DiscoveryError> {
        let timeout = self.inner.config.lookup_timeout;
        let started = Instant::now();
        let _slot = tokio::time::timeout(timeout, self.inner.lookups.acquire())
            .await
            .map_err(|_| DiscoveryError::Busy)?
            .map_err(|_| DiscoveryError::Busy)?;
        self.inner.status.send_modify(|s| s.lookups += 1);
        let remaining = timeout.saturating_sub(started.elapsed());
        let mut best: Option<AddressRecord> = None;
        let mut last_error: Option<DiscoveryError> = None;
        let mut items = self
            .inner
            .dht
            .get_mutable(peer.public_key(), Some(SALT), None);
        let lookup = async {
            while let Some(item) = items.next().await {
                // mainline checked the BEP 44 signature and that the key hashes to the
                // target; the key must still be the peer's (it is, by the target, unless
                // the library changes), and the record inside must be theirs and fresh.
                if item.key() != peer.public_key() {
                    last_error = Some(DiscoveryError::Record(
                        allpeers_net::record::RecordError::WrongSigner {
                            expected: *peer,
                            signer: PeerId::from_public_key(*item.key()),
                        },
                    ));
                    continue;
                }
                match AddressRecord::decode_for(item.value(), peer, allpeers_model::hlc::now_ms()) {
                    Ok(record) => {
                        if best
                            .as_ref()
                            .is_none_or(|b| record.issued_at_ms > b.issued_at_ms)
                        {
                            best = Some(record);
                        }
                    }
                    Err(e) => {
                        tracing::debug!(%peer, "refused a DHT record: {e}");
                        last_error = Some(e.into());
                    }
                }
            }
        };
        let timed_out = tokio::time::timeout(remaining, lookup).await.is_err();
        match best {
            Some(record) => {
                self.inner.status.send_modify(|s| s.lookups_found += 1);
                Ok(record)
            }
            None => {
                let error = last_error.unwrap_or(if timed_out {
                    DiscoveryError::Timeout(timeout)
                } else {
                    DiscoveryError::NotFound(*peer)
                });
                self.inner
                    .status
                    .send_modify(|s| s.last_lookup_error = Some(format!("{peer}: {error}")));
                Err(error)
            }
        }
    }

    /// Resolves `peer` and gives the endpoint its addresses; returns them.
    pub async fn resolve_into(
        &self,
        endpoint: &Endpoint,
        peer: &PeerId,
    ) -> Result<AddressRecord, DiscoveryError> {
        let record = self.resolve(peer).await?;
        for address in record.dialable() {
            endpoint.add_peer_address(*peer, address);
        }
        Ok(record)
    }

    /// Publishes our record whenever `addresses` changes, every `republish_every`, and
    /// again after `retry_after` when a publish fails; until `cancel`.
    pub fn spawn_publisher(
        &self,
        mut addresses: watch::Receiver<Vec<RecordAddress>>,
        cancel: CancellationToken,
    ) -> tokio::task::JoinHandle<()> {
        let this = self.clone();
        tokio::spawn(async move {
            this.wait_bootstrapped().await;
            loop {
                let current = addresses.borrow_and_update().clone();
                let wait = if current.is_empty() {
                    this.inner.config.republish_every
                } else {
                    match this.publish(&current).await {
                        Ok(_) => this.inner.config.republish_every,
                        Err(_) => this.inner.config.retry_after,
                    }
                };
                tokio::select! {
                    _ = cancel.cancelled() => break,
                    changed = addresses.changed() => if changed.is_err() { break },
                    _ = tokio::time::sleep(wait) => {}
                }
            }
        })
    }
}

/// The connector asks the DHT when neither the hub nor a cache knows the peer: one
/// [`DhtDiscovery::resolve`], bounded by [`DhtConfig::lookup_timeout`] (and by the
/// connector's own lookup deadline).
impl Discovery for DhtDiscovery {
    fn name(&self) -> &'static str {
        "dht"
    }

    fn lookup(
        &self,
        peer: PeerId,
    ) -> Pin<Box<dyn Future<Output = Result<Vec<Address>, String>> + Send + '_>> {
        Box::pin(async move {
            self.resolve(&peer)
                .await
                .map(|record| record.dialable())
                .map_err(|e| e.to_string())
        })
    }
}
