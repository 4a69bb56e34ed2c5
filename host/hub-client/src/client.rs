//! The hub client: what a node uses to talk to its home hub.
//!
//! [`HubClient::start`] takes the node's [`Endpoint`] and the hub's address(es) and pinned
//! PeerId. It keeps the presence line up in a background task: connect, `Hello`, pings every
//! [`HubClientConfig::ping_interval`]; no frame from the hub for
//! [`HubClientConfig::line_timeout`] (or the connection closing) is a lost line, and it
//! reconnects after an exponential backoff with jitter (each delay drawn from
//! `[d/2, d]`, `d` doubling from `backoff_min` to `backoff_max`, reset after a line that
//! came up). Direct connections to other peers belong to the endpoint and are untouched
//! by hub loss.
//!
//! Every directory answer is checked: the hub's signature, the echoed nonce and query (no
//! replay of another answer) and the hub's clock within a minute of ours (no stale replay).

use std::collections::{BTreeSet, HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use allpeers_model::PeerId;
use rand::Rng;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, broadcast, mpsc, watch};
use tokio::task::JoinHandle;

use super::names::{self, NameError};
use super::pipe::pump;
use super::proto::{
    self, AnswerError, DirectoryRecord, HubInfo, HubQuery, HubRecord, HubRecordError, HubRequest,
    HubResponse, MailItem, NameCertificate, PeerStatus, PresenceDown, PresenceUp, Query, RelayJoin,
    RelayReady, SignedHubRecord,
};
use super::proxy::{Forwarder, ProxyConfig, ProxyError};
use super::watches::{WatchHolder, WatchSet};
use allpeers_net::endpoint::Endpoint;
use allpeers_net::error::NetError;
use allpeers_net::service::{ErrorCode, decode, encode};
use allpeers_net::transport::{
    Address, Connection, PathKind, RecvStream, SendStream, TransportKind,
};

/// Settings of a hub client.
#[derive(Debug, Clone)]
pub struct HubClientConfig {
    /// The hub's PeerId: the TLS handshake must prove it, and it signs every answer.
    pub hub: PeerId,
    /// The hub's addresses, tried in order (only TCP ones when a proxy is set).
    pub addresses: Vec<Address>,
    pub proxy: Option<ProxyConfig>,
    pub ping_interval: Duration,
    /// No frame from the hub for this long: the line is lost.
    pub line_timeout: Duration,
    pub backoff_min: Duration,
    pub backoff_max: Duration,
    pub request_timeout: Duration,
    /// How long a peer's directory record is reused: sending to a peer resolves it, and the
    /// connector resolves it again a moment later to reach it; one hub round trip serves
    /// both. Short, because presence changes; a presence report for the peer drops it.
    pub record_reuse: Duration,
    /// A guest line to a contact's home hub (not ours): `GuestHello` instead of `Hello`, so
    /// the hub shows no presence of ours, sends no relay offers and keeps no mail for us.
    pub guest: bool,
}

impl HubClientConfig {
    pub fn new(hub: PeerId, addresses: Vec<Address>) -> Self {
        HubClientConfig {
            hub,
            addresses,
            proxy: None,
            ping_interval: Duration::from_secs(1),
            line_timeout: Duration::from_secs(4),
            backoff_min: Duration::from_millis(200),
            backoff_max: Duration::from_secs(15),
            request_timeout: Duration::from_secs(15),
            record_reuse: Duration::from_secs(1),
            guest: false,
        }
    }
}

/// Who may relay to us (the "agreement" side of a relay).
pub trait RelayPolicy: Send + Sync + 'static {
    fn accept(&self, from: &PeerId) -> bool;
    /// Whether to tell the hub we take relay offers at all.
    fn accepts_any(&self) -> bool {
        true
    }
}

/// Takes every relay offer.
pub struct AcceptAll;
impl RelayPolicy for AcceptAll {
    fn accept(&self, _from: &PeerId) -> bool {
        true
    }
}

/// Refuses every relay offer.
pub struct RefuseAll;
impl RelayPolicy for RefuseAll {
    fn accept(&self, _from: &PeerId) -> bool {
        false
    }
    fn accepts_any(&self) -> bool {
        false
    }
}

/// Takes relay offers from listed peers (e.g. contacts).
#[derive(Default)]
pub struct AcceptListed(pub Mutex<HashSet<PeerId>>);
impl RelayPolicy for AcceptListed {
    fn accept(&self, from: &PeerId) -> bool {
        self.0.lock().unwrap().contains(from)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum HubState {
    Connecting,
    Online,
    Offline,
    Stopped,
}

/// The client's state for `net.status`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct HubStatus {
    pub hub: PeerId,
    pub state: HubState,
    /// The address the hub sees us at (while online).
    pub observed: Option<SocketAddr>,
    pub via_proxy: bool,
    pub proxy_error: Option<String>,
    /// Why the line went down last.
    pub last_error: Option<String>,
    /// Peers we ask the hub to watch (contacts, and local clients' `hub.watch`).
    pub watching: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HubEvent {
    /// The presence line is up; the hub sees us at `observed`.
    Online {
        observed: SocketAddr,
    },
    Offline {
        reason: String,
    },
    PresenceChanged {
        peer: PeerId,
        online: bool,
        status: PeerStatus,
    },
    /// Letters wait for us at the hub ([`HubClient::mail_fetch`]).
    MailWaiting {
        count: u32,
    },
    WatchRefused {
        peer: PeerId,
    },
    RelayOffered {
        from: PeerId,
        accepted: bool,
    },
    /// A peer's connection signal ([`HubClient::signal`]), for the connector: `from` is
    /// authenticated by the hub, `observed` is where the hub sees that peer.
    Signal {
        from: PeerId,
        observed: Option<SocketAddr>,
        body: Vec<u8>,
    },
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum HubError {
    #[error(transparent)]
    Net(#[from] NetError),
    #[error(transparent)]
    Answer(#[from] AnswerError),
    #[error(transparent)]
    HubRecord(#[from] HubRecordError),
    #[error(
        "{keys} different keys call themselves hub {name}: use an invite or a contact's certificate"
    )]
    AmbiguousHub { name: String, keys: usize },
    #[error(transparent)]
    Name(#[from] NameError),
    #[error(transparent)]
    Proxy(#[from] ProxyError),
    #[error("the hub refused: {message}")]
    Refused { code: ErrorCode, message: String },
    #[error("the hub sent a wrong answer: {0}")]
    BadAnswer(String),
    #[error("relay: {0}")]
    Relay(String),
    #[error("the hub client is stopped")]
    Stopped,
    #[error("configuration: {0}")]
    Config(String),
}

impl HubError {
    /// The hub's application code, if it refused with one.
    pub fn app_code(&self) -> Option<u32> {
        match self {
            HubError::Refused {
                code: ErrorCode::Application(c),
                ..
            } => Some(*c),
            _ => None,
        }
    }
}

/// Records kept for reuse at most (a burst of sends to many peers).
const MAX_REUSED_RECORDS: usize = 256;

struct Shared {
    /// Recent answers about peers (by PeerId), for [`HubClientConfig::record_reuse`].
    recent: Mutex<HashMap<PeerId, (Instant, DirectoryRecord)>>,
    endpoint: Endpoint,
    config: HubClientConfig,
    policy: Arc<dyn RelayPolicy>,
    forwarder: Option<Forwarder>,
    dial: Vec<Address>,
    state: watch::Sender<HubState>,
    events: broadcast::Sender<HubEvent>,
    watches: Mutex<WatchSet>,
    status: Mutex<PeerStatus>,
    line: Mutex<Option<mpsc::Sender<PresenceUp>>>,
    observed: Mutex<Option<SocketAddr>>,
    last_error: Mutex<Option<String>>,
    stopped: AtomicBool,
    stop: Notify,
}

/// The node's client of its home hub. Cheap to clone.
#[derive(Clone)]
pub struct HubClient {
    shared: Arc<Shared>,
    task: Arc<Mutex<Option<JoinHandle<()>>>>,
}

impl std::fmt::Debug for HubClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HubClient")
            .field("hub", &self.shared.config.hub)
            .field("state", &self.state())
            .finish()
    }
}

impl HubClient {
    /// Starts the client and its presence line (in the background: see [`Self::wait_online`]).
    pub async fn start(
        endpoint: Endpoint,
        config: HubClientConfig,
        policy: Arc<dyn RelayPolicy>,
    ) -> Result<HubClient, HubError> {
        let (forwarder, dial) = match &config.proxy {
            Some(proxy) => {
                let target = config
                    .addresses
                    .iter()
                    .find(|a| a.transport == TransportKind::Tcp)
                    .ok_or_else(|| {
                        HubError::Config(
                            "a proxy needs a TCP address of the hub (QUIC cannot go through it)"
                                .into(),
                        )
                    })?;
                let fwd = Forwarder::start(proxy.clone(), target.addr, config.request_timeout)
                    .await
                    .map_err(|e| HubError::Config(format!("proxy forwarder: {e}")))?;
                let dial = vec![Address::tcp(fwd.local_addr())];
                (Some(fwd), dial)
            }
            None => (None, config.addresses.clone()),
        };
        if dial.is_empty() {
            return Err(HubError::Config("no hub address".into()));
        }
        let shared = Arc::new(Shared {
            recent: Mutex::default(),
            endpoint,
            config,
            policy,
            forwarder,
            dial,
            state: watch::channel(HubState::Connecting).0,
            events: broadcast::channel(1024).0,
            watches: Default::default(),
            status: Default::default(),
            line: Default::default(),
            observed: Default::default(),
            last_error: Default::default(),
            stopped: AtomicBool::new(false),
            stop: Notify::new(),
        });
        let task = tokio::spawn(presence_loop(shared.clone()));
        Ok(HubClient {
            shared,
            task: Arc::new(Mutex::new(Some(task))),
        })
    }

    pub fn hub(&self) -> PeerId {
        self.shared.config.hub
    }

    pub fn endpoint(&self) -> &Endpoint {
        &self.shared.endpoint
    }

    pub fn state(&self) -> HubState {
        *self.shared.state.borrow()
    }

    pub fn events(&self) -> broadcast::Receiver<HubEvent> {
        self.shared.events.subscribe()
    }

    /// Resolves once the client is stopped ([`Self::stop`]).
    pub async fn stopped(&self) {
        let mut rx = self.shared.state.subscribe();
        let _ = rx.wait_for(|s| *s == HubState::Stopped).await;
    }

    /// Waits until the presence line is up.
    pub async fn wait_online(&self, timeout: Duration) -> bool {
        let mut rx = self.shared.state.subscribe();
        tokio::time::timeout(timeout, rx.wait_for(|s| *s == HubState::Online))
            .await
            .map(|r| r.is_ok())
            .unwrap_or(false)
    }

    /// State for `net.status`.
    pub fn status(&self) -> HubStatus {
        let state = self.state();
        HubStatus {
            hub: self.shared.config.hub,
            state,
            observed: if state == HubState::Online {
                *self.shared.observed.lock().unwrap()
            } else {
                None
            },
            via_proxy: self.shared.forwarder.is_some(),
            proxy_error: self.proxy_error().map(|e| e.to_string()),
            last_error: self.shared.last_error.lock().unwrap().clone(),
            watching: self.shared.watches.lock().unwrap().len(),
        }
    }

    /// Why the proxy failed last, if a proxy is configured and failed.
    pub fn proxy_error(&self) -> Option<ProxyError> {
        self.shared.forwarder.as_ref().and_then(|f| f.last_error())
    }

    /// The path of a connection: [`Connection::path`], which says `Relayed` for connections
    /// made through the hub's relay (kept for callers that asked the client).
    pub fn path_of(&self, conn: &Connection) -> PathKind {
        conn.path()
    }

    /// Stops the presence line and the client.
    pub fn stop(&self) {
        self.shared.stopped.store(true, Ordering::SeqCst);
        self.shared.stop.notify_waiters();
        if let Some(t) = self.task.lock().unwrap().take() {
            t.abort();
        }
        *self.shared.line.lock().unwrap() = None;
        let _ = self.shared.state.send_replace(HubState::Stopped);
    }

    async fn hub_connection(&self) -> Result<Connection, HubError> {
        connect_hub(&self.shared).await
    }

    async fn request(&self, req: &HubRequest) -> Result<HubResponse, HubError> {
        self.request_in(&proto::registry_ns(), req).await
    }

    /// One request of `namespace` to the hub, on its connection (made if need be).
    async fn request_in<Q: serde::Serialize, A: serde::de::DeserializeOwned>(
        &self,
        namespace: &allpeers_net::Namespace,
        req: &Q,
    ) -> Result<A, HubError> {
        if self.shared.stopped.load(Ordering::SeqCst) {
            return Err(HubError::Stopped);
        }
        self.hub_connection().await?;
        let r: Result<A, NetError> = self
            .shared
            .endpoint
            .request_timeout(
                self.shared.config.hub,
                namespace,
                req,
                self.shared.config.request_timeout,
            )
            .await;
        r.map_err(|e| match e {
            NetError::Remote { code, message } => HubError::Refused { code, message },
            other => self.with_proxy_reason(other),
        })
    }

    fn with_proxy_reason(&self, e: NetError) -> HubError {
        match self.proxy_error() {
            Some(p) => HubError::Proxy(p),
            None => HubError::Net(e),
        }
    }

    /// The hub's name and addresses.
    pub async fn info(&self) -> Result<HubInfo, HubError> {
        match self.request(&HubRequest::Info).await? {
            HubResponse::Info(i) if i.peer == self.shared.config.hub => Ok(i),
            other => Err(HubError::BadAnswer(format!("{other:?}"))),
        }
    }

    /// Registers `name` (a bare name or `name@hub`) for our own key.
    pub async fn register(&self, name: &str) -> Result<NameCertificate, HubError> {
        let (folded, _) = names::parse_full_name(name)?;
        let peer = self.shared.endpoint.peer_id();
        match self
            .request(&HubRequest::Register {
                name: name.to_string(),
                peer,
            })
            .await?
        {
            HubResponse::Registered(cert)
                if cert.verify(&self.shared.config.hub)
                    && cert.peer == peer
                    && cert.name == folded =>
            {
                Ok(cert)
            }
            other => Err(HubError::BadAnswer(format!(
                "not a valid certificate for {folded}: {other:?}"
            ))),
        }
    }

    /// This hub's own signed record, checked: signed by the key we pinned (a record of
    /// another key is refused), fresh. A guest passes it on to its home hub
    /// ([`Self::introduce_hub`]).
    pub async fn hub_record(&self) -> Result<SignedHubRecord, HubError> {
        let HubResponse::HubRecord(signed) = self.request(&HubRequest::HubRecord).await? else {
            return Err(HubError::BadAnswer("not a hub record".into()));
        };
        let record = signed.verify(allpeers_model::hlc::now_ms())?;
        if record.hub != self.shared.config.hub {
            return Err(HubRecordError::WrongHub.into());
        }
        Ok(signed)
    }

    /// Hands our home hub the record of another hub we reached, so its other peers can
    /// find that hub ([`Self::lookup_hub_key`], [`Self::lookup_hub_name`]).
    pub async fn introduce_hub(&self, record: &SignedHubRecord) -> Result<(), HubError> {
        match self
            .request(&HubRequest::IntroduceHub(record.clone()))
            .await?
        {
            HubResponse::HubIntroduced => Ok(()),
            other => Err(HubError::BadAnswer(format!("{other:?}"))),
        }
    }

    /// Where the hub of `key` (a key a certificate or a contact gave us) says it is, as our
    /// hub's directory knows it. Checkable: every record must be signed by `key` itself, so
    /// a lying directory can withhold or give an old record, never move the hub elsewhere
    /// (and a dial is pinned to `key` anyway). The freshest record; None: unknown here.
    pub async fn lookup_hub_key(&self, key: PeerId) -> Result<Option<HubRecord>, HubError> {
        let records = self.lookup_hub(HubQuery::Key(key)).await?;
        if let Some(r) = records.iter().find(|r| r.hub != key) {
            tracing::warn!(hub = ?self.shared.config.hub, asked = ?key, got = ?r.hub, "the hub directory answered with another hub's record");
            return Err(HubRecordError::WrongHub.into());
        }
        Ok(records.into_iter().max_by_key(|r| r.issued_at))
    }

    /// The hub called `name` as our hub's directory knows it: the key and addresses from
    /// that hub's own record. Only as trusted as our (pinned) home hub and the peers who
    /// introduced the record: hub names are not unique, so prefer a key a certificate
    /// taught. Several keys under one name: [`HubError::AmbiguousHub`] (a squatter makes a
    /// name unusable here, never silently another hub). None: unknown here.
    pub async fn lookup_hub_name(&self, name: &str) -> Result<Option<HubRecord>, HubError> {
        let folded = names::fold_hub_name(name)?;
        let records = self.lookup_hub(HubQuery::Name(folded.clone())).await?;
        if records.iter().any(|r| r.name != folded) {
            return Err(HubRecordError::WrongHub.into());
        }
        let keys: BTreeSet<PeerId> = records.iter().map(|r| r.hub).collect();
        if keys.len() > 1 {
            return Err(HubError::AmbiguousHub {
                name: folded,
                keys: keys.len(),
            });
        }
        Ok(records.into_iter().max_by_key(|r| r.issued_at))
    }

    /// The checked records of a hub lookup (each signed by the key it names, fresh, at most
    /// [`proto::MAX_HUB_RECORDS`]).
    async fn lookup_hub(&self, query: HubQuery) -> Result<Vec<HubRecord>, HubError> {
        let HubResponse::Hubs(signed) = self.request(&HubRequest::LookupHub(query)).await? else {
            return Err(HubError::BadAnswer("not a hub lookup answer".into()));
        };
        if signed.len() > proto::MAX_HUB_RECORDS {
            return Err(HubError::BadAnswer(format!(
                "{} hub records (at most {})",
                signed.len(),
                proto::MAX_HUB_RECORDS
            )));
        }
        let now = allpeers_model::hlc::now_ms();
        Ok(signed
            .iter()
            .map(|s| s.verify(now))
            .collect::<Result<_, _>>()?)
    }

    /// Resolves a name (`name` or `name@hub`) or a PeerId (its text form). None: unknown.
    /// The addresses found are given to the endpoint.
    pub async fn resolve(&self, what: &str) -> Result<Option<DirectoryRecord>, HubError> {
        let query = match what.parse::<PeerId>() {
            Ok(p) => Query::Peer(p),
            Err(_) => {
                names::parse_full_name(what)?;
                Query::Name(what.to_string())
            }
        };
        self.resolve_query(query).await
    }

    /// `peer`'s record as the hub gave it within the last [`HubClientConfig::record_reuse`]
    /// (sending a letter resolved it a moment ago), else asked afresh: the connector's
    /// lookup, so one send costs one hub round trip. Answers to users (`hub.resolve`) are
    /// always asked afresh ([`Self::resolve_query`]): a registration changes a record.
    pub async fn resolve_recent(&self, peer: PeerId) -> Result<Option<DirectoryRecord>, HubError> {
        if let Some((at, record)) = self.shared.recent.lock().unwrap().get(&peer)
            && at.elapsed() < self.shared.config.record_reuse
        {
            return Ok(Some(record.clone()));
        }
        self.resolve_query(Query::Peer(peer)).await
    }

    /// Resolves `query` at the hub (answers checked); a peer's record found is kept for
    /// [`Self::resolve_recent`].
    pub async fn resolve_query(&self, query: Query) -> Result<Option<DirectoryRecord>, HubError> {
        let nonce: [u8; 16] = rand::thread_rng().r#gen();
        let resp = self
            .request(&HubRequest::Resolve {
                query: query.clone(),
                nonce,
            })
            .await?;
        let HubResponse::Resolved(signed) = resp else {
            return Err(HubError::BadAnswer(format!("{resp:?}")));
        };
        let answer = signed.verify(
            &self.shared.config.hub,
            &query,
            &nonce,
            allpeers_model::hlc::now_ms(),
        )?;
        if let Some(rec) = &answer.record {
            for a in &rec.addresses {
                self.shared.endpoint.add_peer_address(rec.peer, *a);
            }
            if let Query::Peer(peer) = &query {
                let mut recent = self.shared.recent.lock().unwrap();
                if recent.len() >= MAX_REUSED_RECORDS {
                    let reuse = self.shared.config.record_reuse;
                    recent.retain(|_, (at, _)| at.elapsed() < reuse);
                }
                if recent.len() < MAX_REUSED_RECORDS {
                    recent.insert(*peer, (Instant::now(), rec.clone()));
                }
            }
        }
        Ok(answer.record)
    }

    /// Asks, for `holder`, to be told when these peers come and go (kept across reconnects).
    pub async fn watch(&self, holder: WatchHolder, peers: &[PeerId]) {
        self.shared.watches.lock().unwrap().add(holder, peers);
        self.send_line(PresenceUp::Watch(peers.to_vec())).await;
    }

    /// Ends `holder`'s watch on these peers; the hub stops watching those no other holder
    /// wants.
    pub async fn unwatch(&self, holder: WatchHolder, peers: &[PeerId]) {
        let unwatched = self.shared.watches.lock().unwrap().remove(holder, peers);
        if !unwatched.is_empty() {
            self.send_line(PresenceUp::Unwatch(unwatched)).await;
        }
    }

    /// Ends every watch `holder` has (a client that went); the hub stops watching those no
    /// other holder wants.
    pub async fn unwatch_all(&self, holder: WatchHolder) {
        let unwatched = self.shared.watches.lock().unwrap().remove_holder(holder);
        if !unwatched.is_empty() {
            self.send_line(PresenceUp::Unwatch(unwatched)).await;
        }
    }

    /// Sets the availability and status text our watchers see (kept across reconnects).
    pub async fn set_status(&self, status: PeerStatus) {
        let status = status.bounded();
        *self.shared.status.lock().unwrap() = status.clone();
        self.send_line(PresenceUp::Status(status)).await;
    }

    pub fn own_status(&self) -> PeerStatus {
        self.shared.status.lock().unwrap().clone()
    }

    /// Leaves a sealed letter ([`allpeers_net::mail::seal`]) for `to` at the hub.
    pub async fn mail_deposit(&self, to: PeerId, sealed: Vec<u8>) -> Result<u64, HubError> {
        match self
            .request(&HubRequest::MailDeposit { to, sealed })
            .await?
        {
            HubResponse::MailDeposited { id } => Ok(id),
            other => Err(HubError::BadAnswer(format!("{other:?}"))),
        }
    }

    /// Letters waiting for us, oldest first.
    pub async fn mail_fetch(&self, max: u32) -> Result<Vec<MailItem>, HubError> {
        match self.request(&HubRequest::MailFetch { max }).await? {
            HubResponse::Mail(items) => Ok(items),
            other => Err(HubError::BadAnswer(format!("{other:?}"))),
        }
    }

    /// Tells the hub we took these letters (it deletes them).
    pub async fn mail_ack(&self, ids: &[u64]) -> Result<u32, HubError> {
        let mut removed = 0;
        for chunk in ids.chunks(proto::MAX_MAIL_ACK) {
            match self
                .request(&HubRequest::MailAck {
                    ids: chunk.to_vec(),
                })
                .await?
            {
                HubResponse::MailAcked { removed: n } => removed += n,
                other => return Err(HubError::BadAnswer(format!("{other:?}"))),
            }
        }
        Ok(removed)
    }

    /// Asks the hub's e-mail gateway (`allpeers/hub-mail/1`); refusals come back as
    /// [`HubError::Refused`] with the codes of [`crate::mail::code`] (`Unsupported`: this
    /// hub has no gateway).
    pub async fn mail(
        &self,
        req: &crate::mail::MailRequest,
    ) -> Result<crate::mail::MailResponse, HubError> {
        self.request_in(&crate::mail::mail_ns(), req).await
    }

    /// Passes a connection signal to `to` through the hub (it must be online there).
    pub async fn signal(&self, to: PeerId, body: Vec<u8>) -> Result<(), HubError> {
        match self.request(&HubRequest::Signal { to, body }).await? {
            HubResponse::Signalled => Ok(()),
            other => Err(HubError::BadAnswer(format!("{other:?}"))),
        }
    }

    async fn send_line(&self, msg: PresenceUp) {
        let tx = self.shared.line.lock().unwrap().clone();
        if let Some(tx) = tx {
            let _ = tx.send(msg).await;
        }
    }

    /// Connects to `target` through the hub's relay (the target must agree). The result is
    /// an ordinary connection of our endpoint, TLS end to end with the target.
    pub async fn connect_relayed(&self, target: PeerId) -> Result<Connection, HubError> {
        let ticket = match self.request(&HubRequest::Relay { target }).await? {
            HubResponse::Relay(t) if t.target == target => t,
            other => return Err(HubError::BadAnswer(format!("{other:?}"))),
        };
        let (send, recv) = join_relay(&self.shared, ticket.session).await?;
        let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .map_err(|e| HubError::Relay(format!("loopback bridge: {e}")))?;
        let bridge = listener
            .local_addr()
            .map_err(|e| HubError::Relay(e.to_string()))?;
        // The connection our endpoint dials to the bridge is relayed.
        self.shared.endpoint.expect_path(bridge, PathKind::Relayed);
        let timeout = self.shared.config.request_timeout;
        tokio::spawn(async move {
            if let Ok(Ok((tcp, _))) = tokio::time::timeout(timeout, listener.accept()).await {
                pump(tcp, send, recv).await;
            }
        });
        let conn = self
            .shared
            .endpoint
            .connect_addr(target, Address::tcp(bridge))
            .await;
        self.shared.endpoint.forget_path(&bridge);
        let conn = conn?;
        tracing::info!(peer = ?target, "relayed connection through the hub");
        Ok(conn)
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        self.stopped.store(true, Ordering::SeqCst);
    }
}

/// How long the first try at each hub address may take. A dead QUIC address (an instance
/// that died, a host gone) gets no answer at all, so only the endpoint's whole connect
/// timeout (10 s by default) would end it; a live hub answers a handshake within a few
/// round trips. Addresses whose first try ran out of time get a second round with the full
/// timeout (a slow path, not a dead one). Tried one after another, not raced: two
/// handshakes that both complete would leave the hub keeping the one this side dropped.
pub const FIRST_TRY: Duration = Duration::from_secs(2);

async fn connect_hub(shared: &Shared) -> Result<Connection, HubError> {
    let hub = shared.config.hub;
    if let Some(c) = shared.endpoint.connection(&hub) {
        return Ok(c);
    }
    let mut last = None;
    let mut slow = Vec::new();
    for addr in &shared.dial {
        match tokio::time::timeout(FIRST_TRY, shared.endpoint.connect_addr(hub, *addr)).await {
            Ok(Ok(c)) => return Ok(c),
            Ok(Err(e)) => last = Some(e),
            Err(_) => {
                last = Some(NetError::Timeout(FIRST_TRY));
                slow.push(*addr);
            }
        }
    }
    for addr in &slow {
        match shared.endpoint.connect_addr(hub, *addr).await {
            Ok(c) => return Ok(c),
            Err(e) => last = Some(e),
        }
    }
    let e = last.unwrap_or(NetError::NoAddress(hub));
    Err(
        match shared.forwarder.as_ref().and_then(|f| f.last_error()) {
            Some(p) => HubError::Proxy(p),
            None => HubError::Net(e),
        },
    )
}

/// Opens a relay stream, joins `session` and waits until the other end joined.
async fn join_relay(
    shared: &Shared,
    session: [u8; 16],
) -> Result<(SendStream, RecvStream), HubError> {
    let (mut send, mut recv) = shared
        .endpoint
        .open_stream(shared.config.hub, &proto::relay_ns())
        .await?;
    send.write_frame(&encode(&RelayJoin { session })?, proto::RELAY_HEAD_LIMIT)
        .await
        .map_err(NetError::from)?;
    let timeout = shared.config.request_timeout;
    let frame = tokio::time::timeout(timeout, recv.read_frame(proto::RELAY_HEAD_LIMIT))
        .await
        .map_err(|_| HubError::Relay(format!("the other end did not join within {timeout:?}")))?
        .map_err(NetError::from)?
        .ok_or_else(|| HubError::Relay("the hub closed the relay stream".into()))?;
    match decode::<RelayReady>(&frame)? {
        RelayReady::Ready => Ok((send, recv)),
        RelayReady::Refused(why) => Err(HubError::Relay(why)),
    }
}

/// The target's side of an accepted relay: join, then bridge to our own TCP listener.
async fn accept_relay(shared: Arc<Shared>, session: [u8; 16], from: PeerId) {
    let (send, recv) = match join_relay(&shared, session).await {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(?from, "relay not joined: {e}");
            return;
        }
    };
    let Some(local) = shared.endpoint.local_address(TransportKind::Tcp) else {
        tracing::warn!(?from, "relay offered but this endpoint has no TCP listener");
        return;
    };
    let mut addr = local.addr;
    if addr.ip().is_unspecified() {
        addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    let tcp = match TcpStream::connect(addr).await {
        Ok(t) => t,
        Err(e) => {
            tracing::warn!(?from, "relay bridge to our listener failed: {e}");
            return;
        }
    };
    // Our listener sees the bridge's address as the remote: the connection it accepts from
    // there is relayed. Announced before the pump starts, so before the TLS handshake.
    let bridge = tcp.local_addr().ok();
    if let Some(a) = bridge {
        shared.endpoint.expect_path(a, PathKind::Relayed);
    }
    tracing::info!(?from, "relay accepted");
    pump(tcp, send, recv).await;
    if let Some(a) = bridge {
        shared.endpoint.forget_path(&a);
    }
}

/// Exponential backoff with jitter: each delay is drawn from `[d/2, d]`.
struct Backoff {
    min: Duration,
    max: Duration,
    attempt: u32,
}

impl Backoff {
    fn next(&mut self) -> Duration {
        let factor = 1u32 << self.attempt.min(16);
        let d = self.min.saturating_mul(factor).min(self.max);
        self.attempt = self.attempt.saturating_add(1);
        let half = d / 2;
        half + Duration::from_secs_f64(rand::thread_rng().gen_range(0.0..=half.as_secs_f64()))
    }
    fn reset(&mut self) {
        self.attempt = 0;
    }
}

async fn presence_loop(shared: Arc<Shared>) {
    let mut backoff = Backoff {
        min: shared.config.backoff_min,
        max: shared.config.backoff_max,
        attempt: 0,
    };
    loop {
        if shared.stopped.load(Ordering::SeqCst) {
            return;
        }
        let _ = shared.state.send_replace(HubState::Connecting);
        let mut came_up = false;
        let reason = match run_line(&shared, &mut came_up).await {
            Ok(()) => "the hub ended the presence line".to_string(),
            Err(e) => e.to_string(),
        };
        *shared.line.lock().unwrap() = None;
        if shared.stopped.load(Ordering::SeqCst) {
            return;
        }
        if came_up && let Some(conn) = shared.endpoint.connection(&shared.config.hub) {
            // A line that went silent rode a dead path (a lost NAT mapping, a frozen
            // proxy): drop the connection so the next attempt dials afresh.
            conn.close(allpeers_net::transport::close_code::NORMAL, "hub line lost");
        }
        let _ = shared.state.send_replace(HubState::Offline);
        *shared.last_error.lock().unwrap() = Some(reason.clone());
        if came_up {
            backoff.reset();
            let _ = shared.events.send(HubEvent::Offline {
                reason: reason.clone(),
            });
        }
        let delay = backoff.next();
        tracing::info!(hub = ?shared.config.hub, "hub line down ({reason}); retrying in {delay:?}");
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = shared.stop.notified() => return,
        }
    }
}

async fn run_line(shared: &Arc<Shared>, came_up: &mut bool) -> Result<(), HubError> {
    let hub = shared.config.hub;
    let conn = connect_hub(shared).await?;
    let (mut send, mut recv) = shared
        .endpoint
        .open_stream(hub, &proto::presence_ns())
        .await?;
    let mut addresses: Vec<Address> = shared.endpoint.local_addresses();
    for a in &mut addresses {
        if a.addr.ip().is_unspecified() {
            a.addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
        }
    }
    addresses.truncate(proto::MAX_ADDRESSES);
    let hello = if shared.config.guest {
        PresenceUp::GuestHello
    } else {
        PresenceUp::Hello {
            addresses,
            accepts_relays: shared.policy.accepts_any()
                && shared.endpoint.local_address(TransportKind::Tcp).is_some(),
            status: shared.status.lock().unwrap().clone(),
        }
    };
    send.write_frame(&encode(&hello)?, proto::PRESENCE_LIMIT)
        .await
        .map_err(NetError::from)?;
    let timeout = shared.config.line_timeout;
    let observed = match read_down(&mut recv, timeout).await? {
        PresenceDown::Welcome { observed } => observed,
        other => {
            return Err(HubError::BadAnswer(format!(
                "expected Welcome, got {other:?}"
            )));
        }
    };
    let (tx, mut rx) = mpsc::channel::<PresenceUp>(256);
    let watches = shared.watches.lock().unwrap().peers();
    if !watches.is_empty() {
        for chunk in watches.chunks(proto::MAX_WATCH) {
            let _ = tx.try_send(PresenceUp::Watch(chunk.to_vec()));
        }
    }
    *shared.line.lock().unwrap() = Some(tx.clone());
    *came_up = true;
    *shared.observed.lock().unwrap() = Some(observed);
    let _ = shared.state.send_replace(HubState::Online);
    let _ = shared.events.send(HubEvent::Online { observed });
    tracing::info!(?hub, %observed, transport = ?conn.transport(), "hub line up");
    let ping_interval = shared.config.ping_interval;
    let writer = async move {
        let mut tick = tokio::time::interval(ping_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut n = 0u64;
        loop {
            let msg = tokio::select! {
                m = rx.recv() => match m { Some(m) => m, None => return Ok(()) },
                _ = tick.tick() => { n += 1; PresenceUp::Ping(n) }
            };
            let frame = encode(&msg)?;
            tokio::time::timeout(timeout, send.write_frame(&frame, proto::PRESENCE_LIMIT))
                .await
                .map_err(|_| HubError::Net(NetError::Timeout(timeout)))?
                .map_err(NetError::from)?;
        }
    };
    let reader = async {
        loop {
            match read_down(&mut recv, timeout).await? {
                PresenceDown::Pong(_) | PresenceDown::Welcome { .. } => {}
                PresenceDown::Presence {
                    peer,
                    online,
                    status,
                } => {
                    shared.recent.lock().unwrap().remove(&peer);
                    let _ = shared.events.send(HubEvent::PresenceChanged {
                        peer,
                        online,
                        status: status.bounded(),
                    });
                }
                PresenceDown::MailWaiting { count } => {
                    let _ = shared.events.send(HubEvent::MailWaiting { count });
                }
                PresenceDown::WatchRefused { peer } => {
                    let _ = shared.events.send(HubEvent::WatchRefused { peer });
                }
                PresenceDown::Signal {
                    from,
                    observed,
                    body,
                } => {
                    let _ = shared.events.send(HubEvent::Signal {
                        from,
                        observed,
                        body,
                    });
                }
                PresenceDown::RelayOffer { session, from } => {
                    // Relayed connections arrive on our TCP listener: without one we cannot.
                    let accept = shared.policy.accept(&from)
                        && shared.endpoint.local_address(TransportKind::Tcp).is_some();
                    let _ = tx.send(PresenceUp::RelayAnswer { session, accept }).await;
                    let _ = shared.events.send(HubEvent::RelayOffered {
                        from,
                        accepted: accept,
                    });
                    if accept {
                        tokio::spawn(accept_relay(shared.clone(), session, from));
                    }
                }
            }
        }
    };
    let closed = async {
        let why = conn.closed().await;
        Err::<(), HubError>(HubError::Net(NetError::Connection(
            allpeers_net::transport::ConnectionError::Closed(why),
        )))
    };
    tokio::select! {
        r = writer => r,
        r = reader => r,
        r = closed => r,
        _ = shared.stop.notified() => Ok(()),
    }
}

async fn read_down(recv: &mut RecvStream, timeout: Duration) -> Result<PresenceDown, HubError> {
    match tokio::time::timeout(timeout, recv.read_frame(proto::PRESENCE_LIMIT)).await {
        Err(_) => Err(HubError::Net(NetError::Timeout(timeout))),
        Ok(Err(e)) => Err(HubError::Net(e.into())),
        Ok(Ok(None)) => Err(HubError::Relay("the hub closed the presence line".into())),
        Ok(Ok(Some(f))) => Ok(decode::<PresenceDown>(&f)?),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_up_to_the_cap_and_resets() {
        let mut b = Backoff {
            min: Duration::from_millis(100),
            max: Duration::from_secs(2),
            attempt: 0,
        };
        let mut ceilings = Vec::new();
        for _ in 0..10 {
            ceilings.push(b.next());
        }
        let expected = [100u64, 200, 400, 800, 1600, 2000, 2000, 2000, 2000, 2000];
        for (d, ceil) in ceilings.iter().zip(expected) {
            let ceil = Duration::from_millis(ceil);
            assert!(
                *d >= ceil / 2 && *d <= ceil,
                "{d:?} not in [{:?}, {ceil:?}]",
                ceil / 2
            );
        }
        b.reset();
        assert!(b.next() <= Duration::from_millis(100));
    }
}
