//! The hub's services on the service framework: registry (register, resolve, relay
//! requests, info), presence lines and the relay splice (in a cluster also with a hop to
//! another instance, [`crate::cluster::relay`]).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use allpeers_hub_client::names;
use allpeers_hub_client::proto::{
    self, DirectoryAnswer, DirectoryRecord, HubInfo, HubQuery, HubRequest, HubResponse,
    NameCertificate, PeerStatus, PresenceDown, PresenceUp, Query, RelayJoin, RelayReady,
    RelayTicket, SignedAnswer, SignedHubRecord, app_error, code,
};
use allpeers_model::PeerId;
use allpeers_net::service::{BoxFuture, StreamKind, decode, encode};
use allpeers_net::transport::{RecvStream, SendStream};
use allpeers_net::{Address, Context, Identity, RemoteError, Service, TransportKind};
use bytes::Bytes;
use rand::Rng;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::cluster::Cluster;
use crate::cluster::event::LineState;
use crate::cluster::relay::{InstanceJoin, SlotRefusal};
use crate::config::HubConfig;
use crate::db::Registration;
use crate::guest::{Ask, Standing};
use crate::store::{Store, StoreError};
use crate::watch::WatchPolicy;

/// Frames queued to one presence line before it counts as stuck.
const LINE_QUEUE: usize = 256;
/// Time a peer has to send Hello / a relay join.
const HELLO_TIMEOUT: Duration = Duration::from_secs(5);
/// Time the target of a relay request has to answer.
const RELAY_ANSWER_TIMEOUT: Duration = Duration::from_secs(10);
/// Time both ends have to join a granted relay.
const RELAY_JOIN_TIMEOUT: Duration = Duration::from_secs(15);
/// Most peers one peer may watch.
pub(crate) const MAX_WATCHES_PER_PEER: usize = 4096;
const QUOTA_WINDOW: Duration = Duration::from_secs(3600);
/// Cluster mode: relayed bytes a splice direction counts before it adds them to the
/// sender's hour in the database (one `UPDATE` per this many bytes, so a peer may pass its
/// budget by at most this much per relay direction).
const ACCOUNT_CHUNK: u64 = 256 * 1024;
/// How long the requester's instance waits for the target's answer from another
/// instance: the target's own time plus the round trip through the database.
const RELAY_ANSWER_ACROSS: Duration = Duration::from_secs(12);

pub(crate) struct Online {
    pub(crate) line: u64,
    pub(crate) at: At,
    /// The address the presence line comes from (the peer's public mapping).
    pub(crate) observed: std::net::SocketAddr,
    pub(crate) addresses: Vec<Address>,
    pub(crate) accepts_relays: bool,
    pub(crate) status: PeerStatus,
    /// A guest line ([`PresenceUp::GuestHello`]): not presence, see [`crate::guest`]. In a
    /// cluster it is recorded for the other instances (never announced), so a signal to the
    /// guest reaches the instance holding its line.
    pub(crate) guest: bool,
}

/// Where a presence line is held.
pub(crate) enum At {
    /// Here: its queue.
    Here(mpsc::Sender<PresenceDown>),
    /// At another instance of this hub (cluster mode, [`crate::cluster`]).
    Instance(Arc<str>),
}

#[derive(Default)]
pub(crate) struct Presence {
    pub(crate) online: HashMap<PeerId, Online>,
    /// watcher -> peers it asked about.
    pub(crate) wants: HashMap<PeerId, HashSet<PeerId>>,
    /// peer -> watchers that asked about it.
    pub(crate) watchers: HashMap<PeerId, HashSet<PeerId>>,
}

struct Usage {
    window_start: Instant,
    bytes: u64,
    concurrent: usize,
}

/// One end of a splice.
struct Parked {
    /// The peer whose bytes come from this end.
    peer: PeerId,
    send: SendStream,
    recv: RecvStream,
    /// Whether this instance charges those bytes to `peer` (a hop from another instance:
    /// no, that instance charged them).
    charged: bool,
}

struct Session {
    a: PeerId,
    b: PeerId,
    parked: Option<Parked>,
    /// The quota slots (held by the requester's instance only).
    _guard: Option<Arc<RelayGuard>>,
    /// The other end is at another instance (cluster mode).
    far: Option<Far>,
}

/// A relay whose ends are at two instances ([`crate::cluster::relay`]).
enum Far {
    /// At the requester's instance: when `a` joins, dial `instance` (holding `b`'s line)
    /// with `ticket`.
    Dial {
        instance: Arc<str>,
        ticket: [u8; 16],
    },
    /// At the target's instance: `a`'s end arrives as a hop carrying `ticket` from
    /// `origin`, the instance that wrote it.
    Hop { ticket: [u8; 16], origin: Arc<str> },
}

/// Why an offered relay did not come about.
enum NoRelay {
    LineGone,
    Refused,
    Silent,
}

impl NoRelay {
    fn into_error(self, target: PeerId) -> RemoteError {
        match self {
            NoRelay::LineGone => {
                app_error(code::OFFLINE, format!("{target:?}'s line is busy or gone"))
            }
            NoRelay::Refused => {
                tracing::info!(?target, "relay refused by the target");
                app_error(
                    code::RELAY_REFUSED,
                    format!("{target:?} did not agree to a relay"),
                )
            }
            NoRelay::Silent => app_error(
                code::RELAY_REFUSED,
                format!("{target:?} did not answer the relay offer"),
            ),
        }
    }
}

/// Holds one concurrent-relay slot of both parties until dropped.
struct RelayGuard {
    core: std::sync::Weak<Core>,
    peers: [PeerId; 2],
    /// Cluster mode: the slots are rows of this relay in the database.
    relay: Option<[u8; 16]>,
}

impl Drop for RelayGuard {
    fn drop(&mut self) {
        if let Some(relay) = self.relay {
            let cluster = self.core.upgrade().and_then(|c| c.cluster.clone());
            if let (Some(cluster), Ok(rt)) = (cluster, tokio::runtime::Handle::try_current()) {
                rt.spawn(async move {
                    if let Err(e) = cluster.release_relay(relay).await {
                        // The rows go when this instance is reaped or restarts.
                        tracing::warn!("relay slots not released: {e}");
                    }
                });
            }
            return;
        }
        if let Some(core) = self.core.upgrade() {
            let mut usage = core.usage.lock().unwrap();
            for p in &self.peers {
                if let Some(u) = usage.get_mut(p) {
                    u.concurrent = u.concurrent.saturating_sub(1);
                }
            }
        }
    }
}

/// Counters for the status line and tests.
#[derive(Default)]
pub struct Counters {
    pub relays_spliced: AtomicU64,
    pub relay_bytes: AtomicU64,
    pub lines_opened: AtomicU64,
}

/// The hub's shared state.
pub struct Core {
    identity: Identity,
    name: String,
    config: HubConfig,
    advertised: Mutex<Vec<Address>>,
    store: Store,
    /// Cluster mode: the other instances of this hub ([`crate::cluster`]).
    cluster: Option<Arc<Cluster>>,
    pub(crate) presence: Mutex<Presence>,
    policy: Arc<dyn WatchPolicy>,
    offers: Mutex<HashMap<[u8; 16], oneshot::Sender<bool>>>,
    sessions: Mutex<HashMap<[u8; 16], Session>>,
    /// Cluster mode, at a target's instance: ticket -> the session its hop joins.
    by_ticket: Mutex<HashMap<[u8; 16], [u8; 16]>>,
    /// Cluster mode: per other instance, cancelled when it is found dead, ending every
    /// splice through a hop with it ([`Core::cut_hops`]).
    hop_cuts: Mutex<HashMap<Arc<str>, CancellationToken>>,
    usage: Mutex<HashMap<PeerId, Usage>>,
    tap: Option<Mutex<std::fs::File>>,
    next_line: AtomicU64,
    /// Connection signals each peer may send ([`SIGNALS_PER_SEC`], burst [`SIGNAL_BURST`]).
    signal_limit: governor::DefaultKeyedRateLimiter<PeerId>,
    /// What peers this hub does not host may do ([`crate::guest`]).
    guests: crate::guest::GuestRules,
    /// The per-peer limits of the other hubs' directory ([`crate::hubs`]).
    hub_rules: crate::hubs::HubDirectoryRules,
    pub counters: Counters,
}

/// Signals (hole punch and callback requests) a peer may pass per second through the hub,
/// and the burst: a connect attempt takes two or three.
const SIGNALS_PER_SEC: u32 = 20;
const SIGNAL_BURST: u32 = 60;
/// Senders the signal limiter remembers before it forgets the idle ones (its memory stays
/// bounded whoever signals).
const SIGNAL_LIMITER_KEYS: usize = 16_384;

impl Core {
    pub fn new(
        identity: Identity,
        config: HubConfig,
        store: Store,
        cluster: Option<Arc<Cluster>>,
        policy: Arc<dyn WatchPolicy>,
    ) -> anyhow::Result<Arc<Core>> {
        let name = names::fold_hub_name(&config.name)?;
        let tap = match &config.relay.tap {
            Some(path) => Some(Mutex::new(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .map_err(|e| anyhow::anyhow!("relay tap {}: {e}", path.display()))?,
            )),
            None => None,
        };
        Ok(Arc::new(Core {
            identity,
            name,
            config,
            advertised: Mutex::new(Vec::new()),
            store,
            cluster,
            presence: Default::default(),
            policy,
            offers: Default::default(),
            sessions: Default::default(),
            by_ticket: Default::default(),
            hop_cuts: Default::default(),
            usage: Default::default(),
            tap,
            next_line: AtomicU64::new(1),
            signal_limit: governor::RateLimiter::keyed(
                governor::Quota::per_second(
                    std::num::NonZeroU32::new(SIGNALS_PER_SEC).expect("non-zero"),
                )
                .allow_burst(std::num::NonZeroU32::new(SIGNAL_BURST).expect("non-zero")),
            ),
            guests: crate::guest::GuestRules::new(),
            hub_rules: Default::default(),
            counters: Counters::default(),
        }))
    }

    pub fn set_advertised(&self, addrs: Vec<Address>) {
        *self.advertised.lock().unwrap() = addrs;
    }

    pub fn online_count(&self) -> usize {
        self.presence.lock().unwrap().online.len()
    }

    fn info(&self) -> HubInfo {
        HubInfo {
            name: self.name.clone(),
            peer: self.identity.peer_id(),
            addresses: self.advertised.lock().unwrap().clone(),
        }
    }

    // ---- registry ----

    async fn register(
        &self,
        ctx: &Context,
        name: &str,
        peer: PeerId,
    ) -> Result<HubResponse, RemoteError> {
        if peer != ctx.peer {
            tracing::warn!(asker = ?ctx.peer, ?peer, "registration for another key refused");
            return Err(app_error(
                code::NOT_YOURS,
                "a peer can only register a name for its own key",
            ));
        }
        let (folded, hub) =
            names::parse_full_name(name).map_err(|e| app_error(code::BAD_NAME, e.to_string()))?;
        if let Some(hub) = hub
            && hub != self.name
        {
            return Err(app_error(
                code::BAD_NAME,
                format!("this hub is {}, not {hub}", self.name),
            ));
        }
        let cert = NameCertificate::issue(&self.identity, &self.name, &folded, peer);
        let result = self.store.register(&cert).await.map_err(|e| {
            tracing::error!("registration not stored: {e}");
            RemoteError::internal("the hub could not store the registration")
        })?;
        match result {
            Registration::Taken => {
                tracing::info!(?peer, name = %folded, "name taken by another key");
                Err(app_error(
                    code::NAME_TAKEN,
                    format!("{folded}@{} is registered to another key", self.name),
                ))
            }
            Registration::Stored => {
                tracing::info!(?peer, name = %folded, "registered");
                Ok(HubResponse::Registered(cert))
            }
        }
    }

    async fn resolve(&self, query: Query, nonce: [u8; 16]) -> Result<HubResponse, RemoteError> {
        let internal = |e: StoreError| {
            tracing::error!("directory lookup failed: {e}");
            RemoteError::internal("directory lookup failed")
        };
        let (peer, certificate) = {
            let db = &self.store;
            match &query {
                Query::Peer(p) => (Some(*p), db.certificate_of_peer(p).await.map_err(internal)?),
                Query::Name(text) => {
                    let (folded, hub) = names::parse_full_name(text)
                        .map_err(|e| app_error(code::BAD_NAME, e.to_string()))?;
                    if hub.is_some_and(|h| h != self.name) {
                        (None, None)
                    } else {
                        let cert = db.certificate_of_name(&folded).await.map_err(internal)?;
                        (cert.as_ref().map(|c| c.peer), cert)
                    }
                }
            }
        };
        let record = match peer {
            None => None,
            Some(peer) => {
                let (online, addresses) = {
                    let p = self.presence.lock().unwrap();
                    match p.online.get(&peer) {
                        Some(o) if !o.guest => (true, o.addresses.clone()),
                        _ => (false, Vec::new()),
                    }
                };
                let last_seen = self.store.last_seen(&peer).await.map_err(internal)?;
                if certificate.is_none() && !online && last_seen.is_none() {
                    None
                } else {
                    Some(DirectoryRecord {
                        peer,
                        certificate,
                        addresses,
                        online,
                        online_at: online.then(|| self.info()),
                        last_seen,
                    })
                }
            }
        };
        let answer = DirectoryAnswer {
            query,
            nonce,
            time: allpeers_model::hlc::now_ms(),
            hub: self.identity.peer_id(),
            record,
        };
        Ok(HubResponse::Resolved(SignedAnswer::sign(
            &self.identity,
            &answer,
        )))
    }

    /// Takes one concurrent-relay slot of both peers: in the database in cluster mode (so
    /// instances do not each grant a full quota), else here.
    async fn take_relay_slots(
        self: &Arc<Self>,
        a: PeerId,
        b: PeerId,
    ) -> Result<Arc<RelayGuard>, RemoteError> {
        let Some(cluster) = &self.cluster else {
            return self.take_local_slots(a, b);
        };
        let relay: [u8; 16] = rand::thread_rng().r#gen();
        let max = self.config.relay.max_concurrent_per_peer;
        let budget = self.config.relay.max_bytes_per_hour;
        match cluster.take_relay_slots(relay, [a, b], max, budget).await {
            Ok(()) => Ok(Arc::new(RelayGuard {
                core: Arc::downgrade(self),
                peers: [a, b],
                relay: Some(relay),
            })),
            Err(SlotRefusal::Quota(why)) => Err(app_error(code::QUOTA, why)),
            Err(SlotRefusal::Store(e)) => {
                tracing::error!("relay quota not checked: {e}");
                Err(RemoteError::internal("the hub could not count the relay"))
            }
        }
    }

    fn take_local_slots(
        self: &Arc<Self>,
        a: PeerId,
        b: PeerId,
    ) -> Result<Arc<RelayGuard>, RemoteError> {
        let max = self.config.relay.max_concurrent_per_peer;
        let budget = self.config.relay.max_bytes_per_hour;
        let mut usage = self.usage.lock().unwrap();
        let now = Instant::now();
        for p in [a, b] {
            let u = usage.entry(p).or_insert(Usage {
                window_start: now,
                bytes: 0,
                concurrent: 0,
            });
            if now.duration_since(u.window_start) > QUOTA_WINDOW {
                u.window_start = now;
                u.bytes = 0;
            }
            if u.concurrent >= max {
                return Err(app_error(
                    code::QUOTA,
                    format!("{p:?} already has {max} relays (the most at once)"),
                ));
            }
            if u.bytes >= budget {
                return Err(app_error(
                    code::QUOTA,
                    format!("{p:?} used its relay budget of {budget} bytes this hour"),
                ));
            }
        }
        for p in [a, b] {
            usage.get_mut(&p).expect("inserted").concurrent += 1;
        }
        Ok(Arc::new(RelayGuard {
            core: Arc::downgrade(self),
            peers: [a, b],
            relay: None,
        }))
    }

    /// Adds relayed bytes to a peer's budget; false once it is spent. In cluster mode the
    /// bytes gather in `pending` and go to the database per [`ACCOUNT_CHUNK`].
    async fn charge(&self, peer: &PeerId, n: u64, pending: &mut u64) -> bool {
        let Some(cluster) = &self.cluster else {
            return self.charge_local(peer, n);
        };
        *pending += n;
        if *pending < ACCOUNT_CHUNK {
            return true;
        }
        let n = std::mem::take(pending);
        match cluster.charge_relay(peer, n).await {
            Ok(total) => total <= self.config.relay.max_bytes_per_hour,
            Err(e) => {
                // A database hiccup does not cut live relays; new ones are checked anew.
                tracing::warn!(?peer, "relayed bytes not counted: {e}");
                true
            }
        }
    }

    fn charge_local(&self, peer: &PeerId, n: u64) -> bool {
        let mut usage = self.usage.lock().unwrap();
        let Some(u) = usage.get_mut(peer) else {
            return true;
        };
        u.bytes = u.bytes.saturating_add(n);
        u.bytes <= self.config.relay.max_bytes_per_hour
    }

    async fn relay_request(
        self: &Arc<Self>,
        from: PeerId,
        target: PeerId,
    ) -> Result<HubResponse, RemoteError> {
        if !self.config.relay.enabled {
            return Err(app_error(code::RELAY_REFUSED, "this hub does not relay"));
        }
        if target == from {
            return Err(RemoteError::bad_request("a relay to oneself"));
        }
        let line = {
            let p = self.presence.lock().unwrap();
            p.online.get(&target).map(|o| {
                let at = match &o.at {
                    At::Here(tx) => Ok(tx.clone()),
                    At::Instance(i) => Err(i.clone()),
                };
                (at, o.accepts_relays)
            })
        };
        let Some((at, accepts)) = line else {
            return Err(app_error(
                code::OFFLINE,
                format!("{target:?} is not online at this hub"),
            ));
        };
        if !accepts {
            return Err(app_error(
                code::RELAY_REFUSED,
                format!("{target:?} takes no relays"),
            ));
        }
        let tx = match at {
            Ok(tx) => tx,
            Err(instance) => return self.relay_across(from, target, instance).await,
        };
        let guard = self.take_relay_slots(from, target).await?;
        let session: [u8; 16] = rand::thread_rng().r#gen();
        // The session exists before the offer goes out: the target joins as soon as it
        // agrees, possibly before this task hears its answer.
        self.sessions.lock().unwrap().insert(
            session,
            Session {
                a: from,
                b: target,
                parked: None,
                _guard: Some(guard),
                far: None,
            },
        );
        let answer = self.offer(&tx, session, from, RELAY_ANSWER_TIMEOUT).await;
        if answer.is_err() {
            self.remove_session(&session);
        }
        answer.map_err(|why| why.into_error(target))?;
        self.expire_later(session);
        tracing::info!(?from, ?target, "relay granted");
        Ok(HubResponse::Relay(RelayTicket { session, target }))
    }

    /// Offers `session` from `from` on a line held here and waits for the answer.
    async fn offer(
        &self,
        line: &mpsc::Sender<PresenceDown>,
        session: [u8; 16],
        from: PeerId,
        within: Duration,
    ) -> Result<(), NoRelay> {
        let (answer_tx, answer_rx) = oneshot::channel();
        self.offers.lock().unwrap().insert(session, answer_tx);
        if line
            .try_send(PresenceDown::RelayOffer { session, from })
            .is_err()
        {
            self.offers.lock().unwrap().remove(&session);
            return Err(NoRelay::LineGone);
        }
        let answer = tokio::time::timeout(within, answer_rx).await;
        self.offers.lock().unwrap().remove(&session);
        match answer {
            Ok(Ok(true)) => Ok(()),
            Ok(Ok(false)) => Err(NoRelay::Refused),
            _ => Err(NoRelay::Silent),
        }
    }

    /// A relay to a peer whose line another instance holds: a ticket for that instance,
    /// which offers the relay to its peer; once it agrees, the requester gets a session
    /// here whose other end is a hop to that instance ([`crate::cluster::relay`]).
    async fn relay_across(
        self: &Arc<Self>,
        from: PeerId,
        target: PeerId,
        instance: Arc<str>,
    ) -> Result<HubResponse, RemoteError> {
        let Some(cluster) = self.cluster.clone() else {
            return Err(app_error(
                code::OFFLINE,
                format!("{target:?} is not online at this hub"),
            ));
        };
        let guard = self.take_relay_slots(from, target).await?;
        let ticket: [u8; 16] = rand::thread_rng().r#gen();
        let (answer_tx, answer_rx) = oneshot::channel();
        self.offers.lock().unwrap().insert(ticket, answer_tx);
        if let Err(e) = cluster.write_ticket(ticket, from, target, &instance).await {
            self.offers.lock().unwrap().remove(&ticket);
            tracing::error!("relay ticket not written: {e}");
            return Err(RemoteError::internal(
                "the hub could not pass the relay offer",
            ));
        }
        let answer = tokio::time::timeout(RELAY_ANSWER_ACROSS, answer_rx).await;
        self.offers.lock().unwrap().remove(&ticket);
        match answer {
            Ok(Ok(true)) => {}
            Ok(Ok(false)) => return Err(NoRelay::Refused.into_error(target)),
            _ => return Err(NoRelay::Silent.into_error(target)),
        }
        let session: [u8; 16] = rand::thread_rng().r#gen();
        self.sessions.lock().unwrap().insert(
            session,
            Session {
                a: from,
                b: target,
                parked: None,
                _guard: Some(guard),
                far: Some(Far::Dial { instance, ticket }),
            },
        );
        self.expire_later(session);
        tracing::info!(?from, ?target, "relay granted across instances");
        Ok(HubResponse::Relay(RelayTicket { session, target }))
    }

    /// Cluster mode, at the target's instance: another instance wrote `ticket` for a relay
    /// from `from` to `to`, whose line is here. Offers it and tells that instance the answer.
    pub(crate) fn offer_hop(
        self: &Arc<Self>,
        ticket: [u8; 16],
        from: PeerId,
        to: PeerId,
        origin: Arc<str>,
    ) {
        let core = self.clone();
        tokio::spawn(async move {
            let Some(cluster) = core.cluster.clone() else {
                return;
            };
            let line = {
                let p = core.presence.lock().unwrap();
                match p.online.get(&to) {
                    Some(Online {
                        at: At::Here(tx),
                        accepts_relays: true,
                        guest: false,
                        ..
                    }) => Some(tx.clone()),
                    _ => None,
                }
            };
            let mut accept = false;
            if let Some(line) = line {
                let session: [u8; 16] = rand::thread_rng().r#gen();
                core.sessions.lock().unwrap().insert(
                    session,
                    Session {
                        a: from,
                        b: to,
                        parked: None,
                        _guard: None,
                        far: Some(Far::Hop { ticket, origin }),
                    },
                );
                core.by_ticket.lock().unwrap().insert(ticket, session);
                accept = core
                    .offer(&line, session, from, RELAY_ANSWER_TIMEOUT)
                    .await
                    .is_ok();
                if accept {
                    core.expire_later(session);
                } else {
                    core.remove_session(&session);
                }
            }
            if let Err(e) = cluster.answer_ticket(ticket, accept).await {
                tracing::warn!(?from, ?to, "relay answer not passed back: {e}");
            }
        });
    }

    /// What ends the splices through hops with `instance` ([`Self::cut_hops`]).
    fn hop_cut(&self, instance: &Arc<str>) -> CancellationToken {
        self.hop_cuts
            .lock()
            .unwrap()
            .entry(instance.clone())
            .or_default()
            .clone()
    }

    /// `instance` is dead (reaped, or it restarted): every splice through a hop with it
    /// ends at once (both peers' relay streams reset, so their relayed connections close
    /// and they can relay again through a live instance), and the endpoint this instance
    /// dialled it with is dropped (its connection to the dead process would otherwise be
    /// reused until QUIC's idle timeout).
    pub(crate) fn cut_hops(&self, instance: &str) {
        if let Some(cut) = self.hop_cuts.lock().unwrap().remove(instance) {
            cut.cancel();
        }
        if let Some(cluster) = &self.cluster {
            let cluster = cluster.clone();
            let instance = instance.to_string();
            tokio::spawn(async move { cluster.forget_hop_endpoint(&instance).await });
        }
    }

    /// Cluster mode, at the requester's instance: the answer to a ticket it wrote.
    pub(crate) fn relay_answered(&self, ticket: [u8; 16], accept: bool) {
        if let Some(tx) = self.offers.lock().unwrap().remove(&ticket) {
            let _ = tx.send(accept);
        }
    }

    fn remove_session(&self, session: &[u8; 16]) -> Option<Session> {
        let s = self.sessions.lock().unwrap().remove(session)?;
        if let Some(Far::Hop { ticket, .. }) = &s.far {
            self.by_ticket.lock().unwrap().remove(ticket);
        }
        Some(s)
    }

    /// A session nobody completes expires (its parked end is told why).
    fn expire_later(self: &Arc<Self>, session: [u8; 16]) {
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            tokio::time::sleep(RELAY_JOIN_TIMEOUT).await;
            let Some(core) = weak.upgrade() else { return };
            let expired = core.remove_session(&session);
            if let Some(Session {
                parked: Some(mut p),
                ..
            }) = expired
            {
                tracing::info!(peer = ?p.peer, "relay expired: the other end never joined");
                let _ = write_ready(
                    &mut p.send,
                    &RelayReady::Refused("the other end never joined".into()),
                )
                .await;
                let _ = p.send.finish().await;
            }
        });
    }

    async fn registry(self: Arc<Self>, ctx: Context, body: Bytes) -> Result<Bytes, RemoteError> {
        let req: HubRequest = decode(&body).map_err(|e| RemoteError::bad_request(e.to_string()))?;
        self.guest_check(&ctx.peer, &req).await?;
        let resp = match req {
            HubRequest::Register { name, peer } => self.register(&ctx, &name, peer).await?,
            HubRequest::Resolve { query, nonce } => self.resolve(query, nonce).await?,
            HubRequest::Relay { target } => self.relay_request(ctx.peer, target).await?,
            HubRequest::Info => HubResponse::Info(self.info()),
            HubRequest::MailDeposit { to, sealed } => {
                self.mail_deposit(ctx.peer, to, sealed).await?
            }
            HubRequest::MailFetch { max } => self.mail_fetch(ctx.peer, max).await?,
            HubRequest::MailAck { ids } => self.mail_ack(ctx.peer, ids).await?,
            HubRequest::Signal { to, body } => self.signal(ctx.peer, to, body).await?,
            HubRequest::HubRecord => HubResponse::HubRecord(self.own_record()),
            HubRequest::IntroduceHub(record) => self.introduce_hub(ctx.peer, record).await?,
            HubRequest::LookupHub(query) => self.lookup_hub(ctx.peer, query).await?,
        };
        encode(&resp).map_err(|e| RemoteError::internal(e.to_string()))
    }

    // ---- other hubs (crate::hubs) ----

    /// This hub's own record: its name, key and the addresses it advertises, signed now.
    fn own_record(&self) -> SignedHubRecord {
        SignedHubRecord::sign(&self.identity, &self.name, &self.info().addresses)
    }

    /// Keeps the record of another hub that a peer hosted here reached (guests never get
    /// here: [`Self::guest_check`]).
    async fn introduce_hub(
        &self,
        asker: PeerId,
        signed: SignedHubRecord,
    ) -> Result<HubResponse, RemoteError> {
        self.hub_rules
            .check_introduction(&asker)
            .map_err(|r| app_error(r.code, r.message))?;
        let now = allpeers_model::hlc::now_ms();
        let record = crate::hubs::admit(&signed, &self.identity.peer_id(), &self.name, now)
            .map_err(|r| {
                tracing::info!(?asker, "hub record refused: {}", r.message);
                app_error(r.code, r.message)
            })?;
        let known = crate::db::KnownHub {
            hub: record.hub,
            name: record.name,
            record: encode(&signed)
                .map_err(|e| RemoteError::internal(e.to_string()))?
                .to_vec(),
            issued_at: record.issued_at,
            introduced: now,
        };
        self.store.introduce_hub(&known).await.map_err(|e| {
            tracing::error!("hub record not stored: {e}");
            RemoteError::internal("the hub could not keep the record")
        })?;
        tracing::debug!(?asker, hub = ?known.hub, name = %known.name, "hub introduced");
        Ok(HubResponse::HubIntroduced)
    }

    /// The records of the hubs known here under a name, or of one key: as introduced, signed
    /// by those hubs (the asker checks them); this hub's own for itself.
    async fn lookup_hub(&self, asker: PeerId, query: HubQuery) -> Result<HubResponse, RemoteError> {
        self.hub_rules
            .check_lookup(&asker)
            .map_err(|r| app_error(r.code, r.message))?;
        let query = match query {
            HubQuery::Name(n) => HubQuery::Name(
                names::fold_hub_name(&n).map_err(|e| app_error(code::BAD_NAME, e.to_string()))?,
            ),
            q => q,
        };
        if crate::hubs::is_own(&query, &self.identity.peer_id(), &self.name) {
            return Ok(HubResponse::Hubs(vec![self.own_record()]));
        }
        let fresh_after = allpeers_model::hlc::now_ms()
            .saturating_sub(proto::HUB_RECORD_MAX_AGE.as_millis() as u64);
        let internal = |e: StoreError| {
            tracing::error!("hub lookup failed: {e}");
            RemoteError::internal("hub lookup failed")
        };
        let blobs = match &query {
            HubQuery::Name(n) => self
                .store
                .hubs_named(n, fresh_after)
                .await
                .map_err(internal)?,
            HubQuery::Key(k) => self
                .store
                .hub_of_key(k, fresh_after)
                .await
                .map_err(internal)?
                .into_iter()
                .collect(),
        };
        let records = blobs
            .iter()
            .filter_map(|b| decode::<SignedHubRecord>(b).ok())
            .take(proto::MAX_HUB_RECORDS)
            .collect();
        Ok(HubResponse::Hubs(records))
    }

    // ---- connection signals ----

    /// Passes a connector signal to `to`'s presence line, stamped with the sender's
    /// authenticated PeerId and observed address. The hub does not read the body (signed
    /// end to end by the sender); it bounds its size and the sender's rate.
    async fn signal(
        &self,
        from: PeerId,
        to: PeerId,
        body: Vec<u8>,
    ) -> Result<HubResponse, RemoteError> {
        if body.len() > proto::MAX_SIGNAL {
            return Err(app_error(
                code::TOO_LARGE,
                format!("a signal is at most {} bytes", proto::MAX_SIGNAL),
            ));
        }
        if self.signal_limit.check_key(&from).is_err() {
            return Err(app_error(
                code::RATE_LIMITED,
                format!("at most {SIGNALS_PER_SEC} signals per second"),
            ));
        }
        if self.signal_limit.len() > SIGNAL_LIMITER_KEYS {
            self.signal_limit.retain_recent();
        }
        let (observed, at) = {
            let p = self.presence.lock().unwrap();
            let observed = p.online.get(&from).map(|o| o.observed);
            let Some(target) = p.online.get(&to) else {
                return Err(app_error(
                    code::OFFLINE,
                    format!("{to:?} is not online at this hub"),
                ));
            };
            let at = match &target.at {
                At::Here(tx) => Ok(tx.clone()),
                At::Instance(_) => Err(()),
            };
            (observed, at)
        };
        match (at, &self.cluster) {
            (Ok(tx), _) => tx
                .try_send(PresenceDown::Signal {
                    from,
                    observed,
                    body,
                })
                .map_err(|_| app_error(code::OFFLINE, format!("{to:?}'s line is busy or gone")))?,
            (Err(()), Some(cluster)) => {
                cluster
                    .signal(to, from, observed, body)
                    .await
                    .map_err(|e| {
                        tracing::error!("signal not passed to the other instance: {e}");
                        RemoteError::internal("the hub could not pass the signal")
                    })?
            }
            (Err(()), None) => {
                return Err(app_error(
                    code::OFFLINE,
                    format!("{to:?} is not online at this hub"),
                ));
            }
        }
        Ok(HubResponse::Signalled)
    }

    // ---- mailbox ----

    /// How many letters wait for `peer` (`None`: the mailbox could not be read).
    pub async fn waiting_letters(&self, peer: &PeerId) -> Option<u32> {
        match self.store.waiting(peer).await {
            Ok(n) => Some(n),
            Err(e) => {
                tracing::warn!("mailbox count failed: {e}");
                None
            }
        }
    }

    async fn mail_deposit(
        &self,
        from: PeerId,
        to: PeerId,
        sealed: Vec<u8>,
    ) -> Result<HubResponse, RemoteError> {
        if !self.config.mailbox.enabled {
            return Err(app_error(
                code::MAILBOX_FULL,
                "this hub keeps no offline letters",
            ));
        }
        if sealed.len() > allpeers_net::mail::MAX_SEALED {
            return Err(app_error(
                code::TOO_LARGE,
                format!(
                    "a sealed letter is at most {} bytes",
                    allpeers_net::mail::MAX_SEALED
                ),
            ));
        }
        let id = self
            .store
            .deposit(&from, &to, &sealed, allpeers_model::hlc::now_ms())
            .await
            .map_err(|e| match e {
                StoreError::Full(why) => app_error(code::MAILBOX_FULL, why),
                e => {
                    tracing::error!("letter not stored: {e}");
                    RemoteError::internal("the hub could not store the letter")
                }
            })?;
        // The recipient may be online (its sender could not reach it directly).
        let p = self.presence.lock().unwrap();
        Self::tell(&p, &to, PresenceDown::MailWaiting { count: 1 });
        Ok(HubResponse::MailDeposited { id })
    }

    async fn mail_fetch(&self, to: PeerId, max: u32) -> Result<HubResponse, RemoteError> {
        // What fits one registry answer with room for framing.
        let budget = proto::REGISTRY_LIMIT - 4096;
        let items = self
            .store
            .fetch(&to, max, budget, allpeers_model::hlc::now_ms())
            .await
            .map_err(|e| {
                tracing::error!("mailbox read failed: {e}");
                RemoteError::internal("the hub could not read the mailbox")
            })?;
        Ok(HubResponse::Mail(items))
    }

    async fn mail_ack(&self, to: PeerId, ids: Vec<u64>) -> Result<HubResponse, RemoteError> {
        if ids.len() > proto::MAX_MAIL_ACK {
            return Err(RemoteError::bad_request(
                "too many ids in one acknowledgement",
            ));
        }
        let removed = self.store.ack(&to, &ids).await.map_err(|e| {
            tracing::error!("mailbox ack failed: {e}");
            RemoteError::internal("the hub could not update the mailbox")
        })?;
        Ok(HubResponse::MailAcked { removed })
    }

    // ---- presence ----

    fn allowed(&self, p: &Presence, watcher: &PeerId, target: &PeerId) -> bool {
        let mutual = p.wants.get(target).is_some_and(|w| w.contains(watcher));
        self.policy.may_watch(watcher, target, mutual)
    }

    /// Tells `to` if its line is held here (another instance tells its own).
    pub(crate) fn tell(p: &Presence, to: &PeerId, msg: PresenceDown) {
        if let Some(Online {
            at: At::Here(tx), ..
        }) = p.online.get(to)
            && tx.try_send(msg).is_err()
        {
            tracing::debug!(peer = ?to, "presence line queue full: event dropped");
        }
    }

    /// What `peer`'s watchers are told about it now.
    fn presence_of(p: &Presence, peer: &PeerId) -> PresenceDown {
        match p.online.get(peer).filter(|o| !o.guest) {
            Some(o) => PresenceDown::Presence {
                peer: *peer,
                online: true,
                status: o.status.clone(),
            },
            None => PresenceDown::Presence {
                peer: *peer,
                online: false,
                status: PeerStatus::default(),
            },
        }
    }

    /// Tells every allowed watcher of `peer` its presence now (it came, went or changed
    /// status).
    pub(crate) fn announce(&self, p: &Presence, peer: &PeerId) {
        if let Some(ws) = p.watchers.get(peer) {
            let msg = Self::presence_of(p, peer);
            for w in ws {
                if self.allowed(p, w, peer) {
                    Self::tell(p, w, msg.clone());
                }
            }
        }
    }

    pub(crate) fn watch(&self, watcher: PeerId, targets: Vec<PeerId>) {
        let mut p = self.presence.lock().unwrap();
        for t in targets {
            if t == watcher {
                continue;
            }
            let wants = p.wants.entry(watcher).or_default();
            if wants.len() >= MAX_WATCHES_PER_PEER && !wants.contains(&t) {
                Self::tell(&p, &watcher, PresenceDown::WatchRefused { peer: t });
                continue;
            }
            wants.insert(t);
            p.watchers.entry(t).or_default().insert(watcher);
            if self.allowed(&p, &watcher, &t) {
                Self::tell(&p, &watcher, Self::presence_of(&p, &t));
            } else {
                Self::tell(&p, &watcher, PresenceDown::WatchRefused { peer: t });
            }
            // Our asking may be what lets `t` see us (mutual rule): tell it.
            if p.wants.get(&t).is_some_and(|w| w.contains(&watcher))
                && self.allowed(&p, &t, &watcher)
            {
                Self::tell(&p, &t, Self::presence_of(&p, &watcher));
            }
        }
    }

    pub(crate) fn unwatch(&self, watcher: PeerId, targets: Vec<PeerId>) {
        let mut p = self.presence.lock().unwrap();
        for t in targets {
            // Under the mutual rule our asking was what let `t` see us: now it may not.
            // Say so, so `t` stops showing us (as offline) instead of a stale state.
            let could_see = p.wants.get(&t).is_some_and(|w| w.contains(&watcher))
                && self.allowed(&p, &t, &watcher);
            if let Some(w) = p.wants.get_mut(&watcher) {
                w.remove(&t);
            }
            if let Some(w) = p.watchers.get_mut(&t) {
                w.remove(&watcher);
                if w.is_empty() {
                    p.watchers.remove(&t);
                }
            }
            if could_see && !self.allowed(&p, &t, &watcher) {
                Self::tell(&p, &t, PresenceDown::WatchRefused { peer: watcher });
            }
        }
    }

    pub(crate) fn forget_wants(p: &mut Presence, watcher: &PeerId) {
        if let Some(targets) = p.wants.remove(watcher) {
            for t in targets {
                if let Some(w) = p.watchers.get_mut(&t) {
                    w.remove(watcher);
                    if w.is_empty() {
                        p.watchers.remove(&t);
                    }
                }
            }
        }
    }

    async fn presence_line(
        self: Arc<Self>,
        ctx: Context,
        mut send: SendStream,
        mut recv: RecvStream,
    ) {
        let peer = ctx.peer;
        let hello =
            match tokio::time::timeout(HELLO_TIMEOUT, recv.read_frame(proto::PRESENCE_LIMIT)).await
            {
                Ok(Ok(Some(f))) => decode::<PresenceUp>(&f).ok(),
                _ => None,
            };
        let (mut addresses, accepts_relays, status, guest) = match hello {
            Some(PresenceUp::Hello {
                addresses,
                accepts_relays,
                status,
            }) => (addresses, accepts_relays, status, false),
            Some(PresenceUp::GuestHello) if self.may_open_guest_line(&peer) => {
                (Vec::new(), false, PeerStatus::default(), true)
            }
            _ => {
                tracing::info!(
                    ?peer,
                    "presence line closed: no Hello within {HELLO_TIMEOUT:?}"
                );
                recv.stop(2);
                return;
            }
        };
        addresses.truncate(proto::MAX_ADDRESSES);
        let observed = ctx.connection.remote_addr();
        if ctx.connection.transport() == TransportKind::Quic {
            let a = Address::quic(observed);
            if !addresses.contains(&a) {
                addresses.push(a);
            }
        }
        let line = match &self.cluster {
            None => self.next_line.fetch_add(1, Ordering::Relaxed),
            Some(cluster) => match cluster.new_line_id().await {
                Ok(line) => line,
                Err(e) => {
                    tracing::error!(?peer, "presence line refused: no line id: {e}");
                    recv.stop(3);
                    return;
                }
            },
        };
        self.counters.lines_opened.fetch_add(1, Ordering::Relaxed);
        let (tx, mut rx) = mpsc::channel(LINE_QUEUE);
        let _ = tx.try_send(PresenceDown::Welcome { observed });
        {
            let mut p = self.presence.lock().unwrap();
            p.online.insert(
                peer,
                Online {
                    line,
                    at: At::Here(tx.clone()),
                    observed,
                    addresses,
                    accepts_relays,
                    status: status.bounded(),
                    guest,
                },
            );
            // A replacing line may bring a new status: watchers always hear the current one.
            if !guest {
                self.announce(&p, &peer);
            }
        }
        self.record_line(&peer, line).await;
        match self.store.waiting(&peer).await {
            Ok(0) => {}
            Ok(count) => {
                let _ = tx.try_send(PresenceDown::MailWaiting { count });
            }
            Err(e) => tracing::warn!("mailbox count failed: {e}"),
        }
        // A guest line does not make this hub the peer's home (no last-seen).
        if !guest && let Err(e) = self.store.touch(&peer, allpeers_model::hlc::now_ms()).await {
            tracing::warn!("last-seen not stored: {e}");
        }
        drop(tx);
        tracing::debug!(?peer, %observed, "presence line up");
        let timeout = self.config.presence_timeout();
        // Reader and writer are two long-lived futures (no read is ever abandoned midway).
        let reader = async {
            loop {
                let msg =
                    match tokio::time::timeout(timeout, recv.read_frame(proto::PRESENCE_LIMIT))
                        .await
                    {
                        Err(_) => return format!("silent for {timeout:?}"),
                        Ok(Err(e)) => return format!("read: {e}"),
                        Ok(Ok(None)) => return "ended by the peer".to_string(),
                        Ok(Ok(Some(f))) => match decode::<PresenceUp>(&f) {
                            Ok(m) => m,
                            Err(e) => return format!("malformed frame: {e}"),
                        },
                    };
                match msg {
                    PresenceUp::Ping(n) => {
                        let p = self.presence.lock().unwrap();
                        if p.online.get(&peer).is_some_and(|o| o.line == line) {
                            Self::tell(&p, &peer, PresenceDown::Pong(n));
                        }
                    }
                    PresenceUp::Watch(mut list) => {
                        if list.len() > proto::MAX_WATCH {
                            return "watch list too long".into();
                        }
                        if guest {
                            list = self.guest_watches(&peer, list).await;
                        }
                        self.watch(peer, list);
                        self.record_watches(&peer).await;
                    }
                    PresenceUp::Unwatch(list) => {
                        if list.len() > proto::MAX_WATCH {
                            return "unwatch list too long".into();
                        }
                        self.unwatch(peer, list);
                        self.record_watches(&peer).await;
                    }
                    PresenceUp::RelayAnswer { session, accept } => {
                        if let Some(tx) = self.offers.lock().unwrap().remove(&session) {
                            let _ = tx.send(accept);
                        }
                    }
                    PresenceUp::Status(status) => {
                        {
                            let mut p = self.presence.lock().unwrap();
                            match p.online.get_mut(&peer) {
                                Some(o) if o.line == line => o.status = status.bounded(),
                                _ => continue,
                            }
                            self.announce(&p, &peer);
                        }
                        self.record_line(&peer, line).await;
                    }
                    PresenceUp::Hello { .. } | PresenceUp::GuestHello => {
                        return "a second Hello".into();
                    }
                }
            }
        };
        let writer = async {
            while let Some(msg) = rx.recv().await {
                let Ok(frame) = encode(&msg) else { continue };
                match tokio::time::timeout(timeout, send.write_frame(&frame, proto::PRESENCE_LIMIT))
                    .await
                {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => return format!("write: {e}"),
                    Err(_) => return format!("the peer read nothing for {timeout:?}"),
                }
            }
            "replaced by a newer line".to_string()
        };
        let reason = tokio::select! {
            r = reader => r,
            r = writer => r,
        };
        let current = {
            let mut p = self.presence.lock().unwrap();
            let current = p.online.get(&peer).is_some_and(|o| o.line == line);
            if current {
                p.online.remove(&peer);
                if !guest {
                    self.announce(&p, &peer);
                }
                Self::forget_wants(&mut p, &peer);
            }
            current
        };
        if let (true, Some(cluster)) = (current, &self.cluster)
            && let Err(e) = cluster.line_down(peer, line).await
        {
            tracing::warn!(?peer, "line end not recorded for the other instances: {e}");
        }
        if !guest && let Err(e) = self.store.touch(&peer, allpeers_model::hlc::now_ms()).await {
            tracing::warn!("last-seen not stored: {e}");
        }
        tracing::debug!(?peer, %reason, "presence line down");
        send.reset(0);
        recv.stop(0);
    }

    /// Cluster mode: records `peer`'s line `line` as it is now, for the other instances.
    async fn record_line(&self, peer: &PeerId, line: u64) {
        let Some(cluster) = &self.cluster else { return };
        let state = {
            let p = self.presence.lock().unwrap();
            match p.online.get(peer) {
                Some(o) if o.line == line => LineState {
                    observed: o.observed,
                    addresses: o.addresses.clone(),
                    accepts_relays: o.accepts_relays,
                    status: o.status.clone(),
                    guest: o.guest,
                },
                _ => return,
            }
        };
        if let Err(e) = cluster.line_up(*peer, line, state).await {
            tracing::warn!(?peer, "line not recorded for the other instances: {e}");
        }
    }

    /// Cluster mode: records `watcher`'s watch list as it is now.
    async fn record_watches(&self, watcher: &PeerId) {
        let Some(cluster) = &self.cluster else { return };
        let targets: Vec<PeerId> = {
            let p = self.presence.lock().unwrap();
            p.wants
                .get(watcher)
                .map(|w| w.iter().copied().collect())
                .unwrap_or_default()
        };
        if let Err(e) = cluster.set_watches(*watcher, targets).await {
            tracing::warn!(
                ?watcher,
                "watch list not recorded for the other instances: {e}"
            );
        }
    }

    // ---- relay ----

    async fn relay_stream(self: Arc<Self>, ctx: Context, send: SendStream, mut recv: RecvStream) {
        let peer = ctx.peer;
        let join =
            match tokio::time::timeout(HELLO_TIMEOUT, recv.read_frame(proto::RELAY_HEAD_LIMIT))
                .await
            {
                Ok(Ok(Some(f))) => decode::<RelayJoin>(&f).ok(),
                _ => None,
            };
        let Some(RelayJoin { session }) = join else {
            tracing::info!(?peer, "relay stream closed: no join");
            recv.stop(2);
            return;
        };
        self.join(session, peer, false, send, recv).await;
    }

    /// A hop from another instance (cluster mode, [`crate::cluster::relay`]): it carries a
    /// ticket, taken once in the database, and joins the ticket's session for its `from`.
    async fn hop_stream(self: Arc<Self>, ctx: Context, mut send: SendStream, mut recv: RecvStream) {
        let head =
            match tokio::time::timeout(HELLO_TIMEOUT, recv.read_frame(proto::RELAY_HEAD_LIMIT))
                .await
            {
                Ok(Ok(Some(f))) => decode::<InstanceJoin>(&f).ok(),
                _ => None,
            };
        let refuse = |why: &'static str| {
            tracing::warn!(dialler = ?ctx.peer, "relay hop refused: {why}");
            why
        };
        let why = match (head, &self.cluster) {
            (None, _) => refuse("no ticket"),
            (Some(_), None) => refuse("this hub is not a cluster"),
            (Some(InstanceJoin { ticket }), Some(cluster)) => {
                match cluster.take_ticket(ticket).await {
                    Ok(Some(t)) => {
                        let session = self.by_ticket.lock().unwrap().get(&ticket).copied();
                        match session {
                            Some(session) => {
                                return self.join(session, t.from, true, send, recv).await;
                            }
                            None => refuse("no relay waits for this ticket here"),
                        }
                    }
                    Ok(None) => refuse("no such ticket for this instance, or used, or expired"),
                    Err(e) => {
                        tracing::error!("relay ticket not read: {e}");
                        refuse("the hub could not read the ticket")
                    }
                }
            }
        };
        let _ = write_ready(&mut send, &RelayReady::Refused(why.into())).await;
        let _ = send.finish().await;
        recv.stop(0);
    }

    /// `peer` joins relay `session`: over its own relay stream, or (`hop`) through a hop
    /// from the instance holding its line. The second end to join starts the splice.
    async fn join(
        self: Arc<Self>,
        session: [u8; 16],
        peer: PeerId,
        hop: bool,
        send: SendStream,
        recv: RecvStream,
    ) {
        enum Join {
            Refused(&'static str),
            Parked,
            /// With the other instance when the first end is a hop from it.
            Paired(Box<Parked>, Option<Arc<RelayGuard>>, Option<Arc<str>>),
            Dial {
                instance: Arc<str>,
                ticket: [u8; 16],
                target: PeerId,
                guard: Option<Arc<RelayGuard>>,
            },
        }
        let mut mine = Some((send, recv));
        let outcome = {
            let mut sessions = self.sessions.lock().unwrap();
            match sessions.get_mut(&session) {
                None => Join::Refused("no such relay session"),
                Some(s) => {
                    // Who may join which end: a hop only as the requester at the target's
                    // instance; at the requester's instance only the requester.
                    let allowed = match &s.far {
                        None => !hop && (peer == s.a || peer == s.b),
                        Some(Far::Dial { .. }) => !hop && peer == s.a,
                        Some(Far::Hop { .. }) => {
                            if hop {
                                peer == s.a
                            } else {
                                peer == s.b
                            }
                        }
                    };
                    if !allowed {
                        Join::Refused("not your relay session")
                    } else if s.parked.as_ref().is_some_and(|p| p.peer == peer) {
                        Join::Refused("already joined")
                    } else if let Some(Far::Dial { instance, ticket }) = &s.far {
                        let (instance, ticket, target) = (instance.clone(), *ticket, s.b);
                        let s = sessions.remove(&session).expect("present");
                        Join::Dial {
                            instance,
                            ticket,
                            target,
                            guard: s._guard,
                        }
                    } else {
                        match s.parked.take() {
                            None => {
                                let (send, recv) = mine.take().expect("ours");
                                s.parked = Some(Parked {
                                    peer,
                                    send,
                                    recv,
                                    charged: !hop,
                                });
                                Join::Parked
                            }
                            Some(first) => {
                                let s = sessions.remove(&session).expect("present");
                                let far = match &s.far {
                                    Some(Far::Hop { ticket, origin }) => {
                                        self.by_ticket.lock().unwrap().remove(ticket);
                                        Some(origin.clone())
                                    }
                                    _ => None,
                                };
                                Join::Paired(Box::new(first), s._guard, far)
                            }
                        }
                    }
                }
            }
        };
        let (mut send, recv) = match mine.take() {
            Some(ours) => ours,
            None => return, // parked
        };
        // A hop this instance dialled already said Ready (the target's instance says it
        // once both ends are there); anything written to it now is relayed bytes.
        let first_is_ours = !matches!(outcome, Join::Dial { .. });
        let (first, guard, far) = match outcome {
            Join::Parked => return,
            Join::Refused(why) => {
                tracing::warn!(?peer, "relay join refused: {why}");
                let _ = write_ready(&mut send, &RelayReady::Refused(why.into())).await;
                let _ = send.finish().await;
                return;
            }
            Join::Paired(first, guard, far) => (*first, guard, far),
            Join::Dial {
                instance,
                ticket,
                target,
                guard,
            } => {
                let cluster = self.cluster.clone().expect("a far session is a cluster's");
                let hub = self.identity.peer_id();
                match cluster
                    .open_hop(&instance, hub, ticket, RELAY_JOIN_TIMEOUT)
                    .await
                {
                    Ok((hop_send, hop_recv)) => (
                        Parked {
                            peer: target,
                            send: hop_send,
                            recv: hop_recv,
                            charged: false,
                        },
                        guard,
                        Some(instance),
                    ),
                    Err(why) => {
                        tracing::warn!(?peer, ?target, %instance, "relay hop failed: {why}");
                        let _ = write_ready(
                            &mut send,
                            &RelayReady::Refused(format!("the other instance: {why}")),
                        )
                        .await;
                        let _ = send.finish().await;
                        return;
                    }
                }
            }
        };
        let mut first = first;
        if (first_is_ours
            && write_ready(&mut first.send, &RelayReady::Ready)
                .await
                .is_err())
            || write_ready(&mut send, &RelayReady::Ready).await.is_err()
        {
            tracing::info!(?peer, "relay end gone before the splice");
            return;
        }
        self.counters.relays_spliced.fetch_add(1, Ordering::Relaxed);
        if let Some(rate) = self.config.relay.rate_bytes_per_sec {
            first.send.set_rate_limit(Some(rate));
            send.set_rate_limit(Some(rate));
        }
        tracing::info!(a = ?first.peer, b = ?peer, "relay spliced");
        // A splice through a hop ends when the other instance is found dead, not when the
        // hop's QUIC connection times out (a dead process sends nothing).
        let cut = far.map(|instance| self.hop_cut(&instance));
        let core = self.clone();
        let (ab, ba) = tokio::join!(
            core.copy(first.peer, first.charged, first.recv, send, cut.clone()),
            self.copy(peer, !hop, recv, first.send, cut.clone())
        );
        tracing::info!(a = ?first.peer, b = ?peer, ab, ba, "relay ended");
        drop(guard);
    }

    /// One direction of a splice: `from`'s bytes to the other end, charged to `from` if
    /// `charged`; both streams reset when `cut` is cancelled (the hop's other instance died).
    async fn copy(
        &self,
        from: PeerId,
        charged: bool,
        mut recv: RecvStream,
        mut send: SendStream,
        cut: Option<CancellationToken>,
    ) -> u64 {
        let mut buf = vec![0u8; 64 * 1024];
        let mut total = 0u64;
        let mut pending = 0u64;
        loop {
            let read = tokio::select! {
                r = recv.read(&mut buf) => Some(r),
                () = cancelled(&cut) => None,
            };
            let n = match read {
                None => {
                    tracing::info!(peer = ?from, "relay cut: the other instance is gone");
                    send.reset(HOP_GONE);
                    recv.stop(HOP_GONE);
                    break;
                }
                Some(Ok(0)) => {
                    let _ = send.finish().await;
                    break;
                }
                Some(Ok(n)) => n,
                Some(Err(_)) => {
                    send.reset(0);
                    break;
                }
            };
            if charged && !self.charge(&from, n as u64, &mut pending).await {
                tracing::warn!(peer = ?from, "relay cut: the peer's relay budget is spent");
                send.reset(4);
                recv.stop(4);
                break;
            }
            if let Some(tap) = &self.tap {
                use std::io::Write;
                let _ = tap.lock().unwrap().write_all(&buf[..n]);
            }
            let written = tokio::select! {
                r = send.write_all(&buf[..n]) => Some(r.is_ok()),
                () = cancelled(&cut) => None,
            };
            match written {
                Some(true) => {}
                Some(false) => {
                    recv.stop(0);
                    break;
                }
                None => {
                    tracing::info!(peer = ?from, "relay cut: the other instance is gone");
                    send.reset(HOP_GONE);
                    recv.stop(HOP_GONE);
                    break;
                }
            }
            total += n as u64;
            self.counters
                .relay_bytes
                .fetch_add(n as u64, Ordering::Relaxed);
        }
        if let (true, Some(cluster)) = (pending > 0, &self.cluster)
            && let Err(e) = cluster.charge_relay(&from, pending).await
        {
            tracing::warn!(peer = ?from, "relayed bytes not counted: {e}");
        }
        total
    }
}

// ---- guests (peers this hub does not host: the rules are in crate::guest) ----

impl Core {
    /// Whether this hub hosts `peer` ([`crate::guest::Standing::of`]).
    async fn standing(&self, peer: &PeerId) -> Result<Standing, RemoteError> {
        let home_line = self
            .presence
            .lock()
            .unwrap()
            .online
            .get(peer)
            .is_some_and(|o| !o.guest);
        if home_line {
            return Ok(Standing::Hosted);
        }
        let internal = |e: StoreError| {
            tracing::error!("directory lookup failed: {e}");
            RemoteError::internal("directory lookup failed")
        };
        let named = self
            .store
            .certificate_of_peer(peer)
            .await
            .map_err(internal)?
            .is_some();
        let seen_home = self
            .store
            .last_seen(peer)
            .await
            .map_err(internal)?
            .is_some();
        Ok(Standing::of(false, named, seen_home))
    }

    /// The guest rules for one registry request (hosted peers pass but for letters to a
    /// peer not hosted here).
    async fn guest_check(&self, asker: &PeerId, req: &HubRequest) -> Result<(), RemoteError> {
        let ask = match req {
            HubRequest::Register { .. } => Ask::Register {
                guest_line: self
                    .presence
                    .lock()
                    .unwrap()
                    .online
                    .get(asker)
                    .is_some_and(|o| o.guest),
            },
            HubRequest::Resolve { .. } => Ask::Lookup,
            HubRequest::Signal { .. } => Ask::Signal,
            HubRequest::MailDeposit { to, .. } => Ask::Deposit {
                to: self.standing(to).await?,
            },
            HubRequest::Relay { .. } => Ask::Relay,
            HubRequest::HubRecord => Ask::Lookup,
            HubRequest::IntroduceHub(_) | HubRequest::LookupHub(_) => Ask::HubDirectory,
            HubRequest::Info | HubRequest::MailFetch { .. } | HubRequest::MailAck { .. } => {
                return Ok(());
            }
        };
        let standing = self.standing(asker).await?;
        self.guests.check(asker, standing, ask).map_err(|r| {
            tracing::info!(?asker, ?ask, "guest request refused: {r}");
            app_error(r.code, r.message)
        })
    }

    /// A guest's watch request cut to what it may watch; the rest is refused on its line.
    async fn guest_watches(&self, guest: &PeerId, list: Vec<PeerId>) -> Vec<PeerId> {
        let mut asked = Vec::with_capacity(list.len());
        for t in list {
            // A lookup failure counts as not hosted (refused, the guest may ask again).
            let standing = self.standing(&t).await.unwrap_or(Standing::Guest);
            asked.push((t, standing));
        }
        let p = self.presence.lock().unwrap();
        let watching: Vec<PeerId> = p
            .wants
            .get(guest)
            .map(|w| w.iter().copied().collect())
            .unwrap_or_default();
        let (allowed, refused) = crate::guest::guest_watches(&watching, &asked);
        for peer in refused {
            Self::tell(&p, guest, PresenceDown::WatchRefused { peer });
        }
        allowed
    }

    /// Whether `peer` may open a guest line now (the number of guest lines is bounded).
    fn may_open_guest_line(&self, peer: &PeerId) -> bool {
        let p = self.presence.lock().unwrap();
        let replacing = p
            .online
            .get(peer)
            .is_some_and(|o| o.guest && matches!(o.at, At::Here(_)));
        // This instance's guest lines (the bound is on what it holds).
        let open = p
            .online
            .values()
            .filter(|o| o.guest && matches!(o.at, At::Here(_)))
            .count();
        crate::guest::may_open_line(open, replacing)
    }
}

/// Stream reset code of a splice cut because the other instance of its hop died.
const HOP_GONE: u32 = 5;

/// Resolves when `cut` is cancelled; never without one.
async fn cancelled(cut: &Option<CancellationToken>) {
    match cut {
        Some(c) => c.cancelled().await,
        None => std::future::pending().await,
    }
}

async fn write_ready(send: &mut SendStream, msg: &RelayReady) -> Result<(), ()> {
    let frame = encode(msg).map_err(|_| ())?;
    tokio::time::timeout(
        Duration::from_secs(5),
        send.write_frame(&frame, proto::RELAY_HEAD_LIMIT),
    )
    .await
    .map_err(|_| ())?
    .map_err(|_| ())
}

/// The registry service (`allpeers/hub-registry/1`).
pub struct RegistryService(pub Arc<Core>);
impl Service for RegistryService {
    fn max_message_size(&self) -> usize {
        proto::REGISTRY_LIMIT
    }
    fn request(&self, ctx: Context, body: Bytes) -> BoxFuture<Result<Bytes, RemoteError>> {
        Box::pin(self.0.clone().registry(ctx, body))
    }
}

/// Presence lines (`allpeers/hub-presence/1`).
pub struct PresenceService(pub Arc<Core>);
impl Service for PresenceService {
    fn max_message_size(&self) -> usize {
        proto::PRESENCE_LIMIT
    }
    fn accepts(&self, kind: StreamKind) -> bool {
        kind == StreamKind::Stream
    }
    fn stream(&self, ctx: Context, send: SendStream, recv: RecvStream) -> BoxFuture<()> {
        Box::pin(self.0.clone().presence_line(ctx, send, recv))
    }
}

/// Hops from the hub's other instances (`allpeers/hub-instance-relay/1`, cluster mode).
pub struct InstanceRelayService(pub Arc<Core>);
impl Service for InstanceRelayService {
    fn max_message_size(&self) -> usize {
        proto::RELAY_HEAD_LIMIT
    }
    fn accepts(&self, kind: StreamKind) -> bool {
        kind == StreamKind::Stream
    }
    fn stream(&self, ctx: Context, send: SendStream, recv: RecvStream) -> BoxFuture<()> {
        Box::pin(self.0.clone().hop_stream(ctx, send, recv))
    }
}

/// Relay ends (`allpeers/hub-relay/1`).
pub struct RelayService(pub Arc<Core>);
impl Service for RelayService {
    fn max_message_size(&self) -> usize {
        proto::RELAY_HEAD_LIMIT
    }
    fn accepts(&self, kind: StreamKind) -> bool {
        kind == StreamKind::Stream
    }
    fn stream(&self, ctx: Context, send: SendStream, recv: RecvStream) -> BoxFuture<()> {
        Box::pin(self.0.clone().relay_stream(ctx, send, recv))
    }
}
