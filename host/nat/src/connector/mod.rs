//! The connector: reaches a PeerId by the cheapest path that works and says which one won
//! and why. The seed's order — connect directly, ask the target to call back, punch a hole,
//! relay as the last resort — raced where sensible:
//!
//! 1. **Where**: the hub's view of the peer; when the hub cannot tell (no hub, its line down,
//!    the peer unknown there), the [`Discovery`] sources added with
//!    [`Connector::add_discovery`] (caches such as the LAN first, then the DHT).
//! 2. **Direct**: handshakes to every address we know for the peer (QUIC and TCP), staggered;
//!    the first to finish wins.
//! 3. At the same time, if the peer is online at our hub, a signed **Connect** signal through
//!    the hub. The target answers **Accept** with its own addresses and NAT facts after it
//!    has done its first part (callback dial, punch packets, spraying, birthday sockets);
//!    both sides follow the same [`plan::plan`], so they agree on who does what.
//! 4. **Relay** through the hub when the plan says nothing direct can work, or when nothing
//!    has connected by [`ConnectorConfig::relay_after`]. Punching goes on behind the relay
//!    until [`ConnectorConfig::punch_window`]; a punched connection that arrives later
//!    replaces the relayed one in the endpoint (the relayed one is retired once its streams
//!    end), so the services on it never notice.
//!
//! **Peers homed at other hubs.** A [`HubRouter`] (set with [`Connector::set_router`]) names
//! the hub that reaches a peer: for a contact homed at another hub, a guest line to that hub
//! ([`HubClientConfig::guest`](allpeers_hub_client::HubClientConfig)). Resolve, signals and
//! the relay of that connect go through it, and the target, online at its own hub, answers
//! through the hub the signal came through ([`Connector::listen_on`]), so both ends meet
//! where the target listens and the hub that stamps the requester's observed address is
//! the one the target hears from.
//!
//! Paths are reported from the requester's view (see [`session::label_path`], the one place
//! that decides them). [`Connector::report`] keeps the last outcome per peer with every
//! attempt and its timing.
//!
//! Modules: [`session`] (the connect as an I/O-free state machine, the target's decision, the
//! path labels), [`plan`] (pure: who does what), [`signal`] (pure: the signed wire), [`punch`]
//! (the packets and sockets). This file is the thin async driver: it carries out the
//! session's actions and feeds it what happened.

pub mod plan;
pub mod punch;
pub mod report;
pub mod session;
pub mod signal;

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use allpeers_model::PeerId;
use tokio::sync::{broadcast, mpsc, watch};
use tokio::task::{JoinHandle, JoinSet};

use crate::connectivity::monitor::MonitorState;
use allpeers_hub_client::{HubClient, HubEvent, HubState, RelayPolicy};
use allpeers_net::discovery::Discovery;
use allpeers_net::endpoint::{Endpoint, EndpointEvent};
use allpeers_net::transport::{Address, Connection, PathKind, TransportKind};
pub use plan::{Actions, Facts, Plan};
pub use report::{Attempt, ConnectError, ConnectReport, ConnectorConfig};
use session::{
    Action, ConnInfo, ConnectSession, HubLine, HubView, Labelling, Part, RecentLookups, Remote,
    Role, SourceView, TargetAnswer, Work, WorkId, WorkOutcome,
};
pub use signal::{Signal, SignalError};

/// A signal answering ours, with the address the hub sees its sender at.
type Answer = (Signal, Option<SocketAddr>);

/// Bound on replayed-session ids remembered and on peers with a remembered upgrade time.
const MEMORY: usize = 1024;

/// Bound on remembered reports (one per peer; the oldest goes first).
pub const MAX_REPORTS: usize = 1024;

/// Least time between two background upgrade attempts of a relayed connection to one peer.
const UPGRADE_EVERY: Duration = Duration::from_secs(60);

/// Names the hub that reaches a peer homed at another hub than ours.
pub trait HubRouter: Send + Sync + 'static {
    /// A line to `peer`'s home hub when it is not ours (opened if need be and up); `None`:
    /// our own hub.
    fn hub_for(
        &self,
        peer: PeerId,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Option<HubClient>> + Send + '_>>;
}

struct Inner {
    endpoint: Endpoint,
    hub: Option<HubClient>,
    /// Routes peers homed at other hubs ([`HubRouter`]).
    router: RwLock<Option<Arc<dyn HubRouter>>>,
    connectivity: Option<watch::Receiver<MonitorState>>,
    /// Who may ask us for a callback or a punch (the same agreement as relays).
    policy: Arc<dyn RelayPolicy>,
    config: ConnectorConfig,
    /// Where to look a peer up when the hub cannot tell: caches first, then the others.
    sources: RwLock<Vec<Arc<dyn Discovery>>>,
    recent_lookups: Mutex<RecentLookups>,
    /// Our Connect signals waiting for their answer.
    waiting: Mutex<HashMap<[u8; 16], mpsc::Sender<Answer>>>,
    /// Sessions already handled as the target (replays are dropped).
    seen: Mutex<VecDeque<[u8; 16]>>,
    target_sessions: Arc<tokio::sync::Semaphore>,
    locks: PeerLocks,
    reports: Mutex<Reports>,
    /// When a background upgrade of a relayed connection was last tried, per peer.
    upgrades: Mutex<HashMap<PeerId, Instant>>,
}

/// The node's connector. Cheap to clone; the signal listener stops with the last clone.
#[derive(Clone)]
pub struct Connector {
    inner: Arc<Inner>,
    _listener: Arc<ListenerTask>,
}

/// The signal listener's task, aborted when the last connector clone goes.
struct ListenerTask(Option<JoinHandle<()>>);

impl Drop for ListenerTask {
    fn drop(&mut self) {
        if let Some(t) = self.0.take() {
            t.abort();
        }
    }
}

impl Connector {
    /// A connector on `endpoint`; with a hub it signals and relays through it and answers
    /// the signals of peers `policy` accepts. `connectivity` gives our NAT facts.
    pub fn start(
        endpoint: Endpoint,
        hub: Option<HubClient>,
        connectivity: Option<watch::Receiver<MonitorState>>,
        policy: Arc<dyn RelayPolicy>,
        config: ConnectorConfig,
    ) -> Connector {
        // Our punch packets' echoes and the peer's must never reach quinn.
        if let Some(socket) = endpoint.quic_socket() {
            socket.hook::<punch::PunchFilter>();
        }
        let inner = Arc::new(Inner {
            target_sessions: Arc::new(tokio::sync::Semaphore::new(config.max_target_sessions)),
            endpoint,
            hub,
            router: Default::default(),
            connectivity,
            policy,
            config,
            sources: Default::default(),
            recent_lookups: Default::default(),
            waiting: Default::default(),
            seen: Default::default(),
            locks: Default::default(),
            reports: Default::default(),
            upgrades: Default::default(),
        });
        let task = inner.hub.as_ref().map(|hub| {
            let events = hub.events();
            tokio::spawn(listen(Arc::downgrade(&inner), events, hub.clone()))
        });
        Connector {
            inner,
            _listener: Arc::new(ListenerTask(task)),
        }
    }

    /// Adds a place to look peers up when the hub cannot tell where they are (no hub, its
    /// line down, the peer unknown there). Sources whose lookups only read a cache
    /// ([`Discovery::cached`], the LAN) are asked first, in the order added, then the others
    /// (the DHT), each about one peer at most once per [`session::LOOKUP_AGAIN_AFTER`].
    /// Found addresses go to the endpoint's address book before the dials.
    pub fn add_discovery(&self, source: Arc<dyn Discovery>) {
        let mut sources = self.inner.sources.write().expect("sources lock");
        sources.push(source);
        // Stable: the order added stays within each kind.
        sources.sort_by_key(|s| !s.cached());
    }

    /// Routes connects to peers homed at other hubs through the lines `router` gives.
    pub fn set_router(&self, router: Arc<dyn HubRouter>) {
        *self.inner.router.write().expect("router lock") = Some(router);
    }

    /// Answers the signals peers send us through `hub` (a guest line to another hub), until
    /// that line's client stops.
    pub fn listen_on(&self, hub: HubClient) {
        let weak = Arc::downgrade(&self.inner);
        let events = hub.events();
        tokio::spawn(async move {
            let stopped = hub.clone();
            tokio::select! {
                _ = listen(weak, events, hub) => {}
                _ = stopped.stopped() => {}
            }
        });
    }

    /// The last connect's report for `peer`.
    pub fn report(&self, peer: &PeerId) -> Option<ConnectReport> {
        self.inner.reports.lock().unwrap().get(peer)
    }

    /// Our NAT facts as last measured (unknown before the first discovery).
    pub fn facts(&self) -> Facts {
        local_facts(&self.inner)
    }

    /// Reaches `peer`: the live connection, or a new one by the cheapest path that works.
    /// A live connection over the relay is returned as it is, and a direct path is sought
    /// behind it (at most every [`UPGRADE_EVERY`]); when one is found the endpoint switches
    /// to it.
    pub async fn connect(&self, peer: PeerId) -> Result<(Connection, ConnectReport), ConnectError> {
        let inner = &self.inner;
        if let Some(c) = inner.endpoint.connection(&peer) {
            if c.path() == PathKind::Relayed {
                self.upgrade_in_background(peer);
            }
            return Ok((c.clone(), existing_report(inner, peer, &c)));
        }
        let entry = inner.locks.entry(peer);
        let _guard = entry.lock().await;
        if let Some(c) = inner.endpoint.connection(&peer) {
            return Ok((c.clone(), existing_report(inner, peer, &c)));
        }
        let result = connect(inner, peer, true).await;
        if let Ok((_, report)) = &result {
            inner.reports.lock().unwrap().insert(report.clone());
            allpeers_log::flesh!(?peer, path = ?report.path, ms = report.elapsed_ms, why = %report.why, "connected by the connector");
        }
        result
    }

    fn upgrade_in_background(&self, peer: PeerId) {
        {
            let mut last = self.inner.upgrades.lock().unwrap();
            if last.get(&peer).is_some_and(|t| t.elapsed() < UPGRADE_EVERY) {
                return;
            }
            if last.len() >= MEMORY {
                last.retain(|_, t| t.elapsed() < UPGRADE_EVERY);
                if last.len() >= MEMORY {
                    // As many upgrades within a minute as we remember: skip this one.
                    return;
                }
            }
            last.insert(peer, Instant::now());
        }
        let this = self.clone();
        tokio::spawn(async move {
            match connect(&this.inner, peer, false).await {
                Ok((_, report)) => {
                    allpeers_log::flesh!(?peer, path = ?report.path, ms = report.elapsed_ms, "relayed connection upgraded");
                    this.inner.reports.lock().unwrap().insert(report);
                }
                Err(e) => allpeers_log::bone!("no direct path behind the relay yet: {e}"),
            }
        });
    }

    /// Peers with a connect running or waiting (the lock map's size: an entry lives only
    /// while a connect for its peer does).
    pub fn connects_running(&self) -> usize {
        self.inner.locks.len()
    }
}

/// One lock per peer with a connect running, so two connects to one peer do not race each
/// other; an entry goes when the last connect for its peer ends.
#[derive(Default)]
struct PeerLocks(Mutex<HashMap<PeerId, Arc<tokio::sync::Mutex<()>>>>);

impl PeerLocks {
    fn entry(&self, peer: PeerId) -> PeerLockEntry<'_> {
        let lock = self
            .0
            .lock()
            .expect("locks")
            .entry(peer)
            .or_default()
            .clone();
        PeerLockEntry {
            locks: self,
            peer,
            lock,
        }
    }

    fn len(&self) -> usize {
        self.0.lock().expect("locks").len()
    }
}

/// A connect's hold on its peer's lock entry (waiting for the lock or holding it).
struct PeerLockEntry<'a> {
    locks: &'a PeerLocks,
    peer: PeerId,
    lock: Arc<tokio::sync::Mutex<()>>,
}

impl PeerLockEntry<'_> {
    async fn lock(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.lock.lock().await
    }
}

impl Drop for PeerLockEntry<'_> {
    fn drop(&mut self) {
        let mut map = self.locks.0.lock().expect("locks");
        // Clones are only made under the map's lock: the map's and ours mean nobody else
        // waits for or holds it.
        if Arc::strong_count(&self.lock) == 2 {
            map.remove(&self.peer);
        }
    }
}

/// The last report per peer, at most [`MAX_REPORTS`] (the oldest goes first).
#[derive(Default)]
struct Reports {
    by_peer: HashMap<PeerId, (u64, ConnectReport)>,
    next: u64,
}

impl Reports {
    fn insert(&mut self, report: ConnectReport) {
        if self.by_peer.len() >= MAX_REPORTS
            && !self.by_peer.contains_key(&report.peer)
            && let Some(oldest) = self
                .by_peer
                .iter()
                .min_by_key(|(_, (n, _))| *n)
                .map(|(p, _)| *p)
        {
            self.by_peer.remove(&oldest);
        }
        self.next += 1;
        self.by_peer.insert(report.peer, (self.next, report));
    }

    fn get(&self, peer: &PeerId) -> Option<ConnectReport> {
        self.by_peer.get(peer).map(|(_, r)| r.clone())
    }
}

fn existing_report(inner: &Inner, peer: PeerId, c: &Connection) -> ConnectReport {
    // How the live connection was made, when the connector made it.
    if let Some(r) = inner.reports.lock().unwrap().get(&peer)
        && r.path == c.path()
        && r.transport == c.transport()
    {
        let mut r = r;
        r.why = format!("already connected: {}", r.why);
        return r;
    }
    ConnectReport {
        peer,
        path: c.path(),
        transport: c.transport(),
        why: "already connected".into(),
        elapsed_ms: 0,
        local: None,
        remote: None,
        attempts: Vec::new(),
    }
}

fn local_facts(inner: &Inner) -> Facts {
    inner
        .connectivity
        .as_ref()
        .and_then(|w| w.borrow().last.as_ref().map(Facts::from_report))
        .unwrap_or_else(Facts::unknown)
}

/// Our addresses for a signal: the public ones first (as the hub and STUN see our QUIC
/// socket, the TCP address the hub reached), then the LAN ones (for a peer on our network).
fn local_candidates(inner: &Inner) -> Vec<Address> {
    let report = inner
        .connectivity
        .as_ref()
        .and_then(|w| w.borrow().last.clone());
    // A TCP address the hub reached from outside first: it needs no punching at all.
    let tcp_reachable = report
        .as_ref()
        .and_then(|r| r.tcp.as_ref().filter(|t| t.reachable))
        .and_then(|t| t.target)
        .map(Address::tcp);
    // The hub's live view of our QUIC socket, else the last discovery's.
    let observed = inner
        .hub
        .as_ref()
        .and_then(|h| h.status().observed)
        .or(report.as_ref().and_then(|r| r.quic_observed));
    let ours = allpeers_net::discovery::record_addresses(
        &inner.endpoint.local_addresses(),
        &allpeers_net::status::interface_addresses(),
        observed,
        report.as_ref().and_then(|r| r.udp_mapped),
    );
    let mut out: Vec<Address> = Vec::new();
    for a in tcp_reachable
        .into_iter()
        .chain(ours.into_iter().map(|r| r.address))
    {
        if !out.contains(&a) && signal::plausible(&a) && out.len() < signal::MAX_CANDIDATES {
            out.push(a);
        }
    }
    out
}

fn now_ms() -> u64 {
    allpeers_model::hlc::now_ms()
}

/// One connect. Without `relay` only direct paths are tried (the upgrade behind a relay).
/// Returns at the session's outcome; a session that goes on (punching behind a relay) is
/// driven to its end in the background.
async fn connect(
    inner: &Arc<Inner>,
    peer: PeerId,
    relay: bool,
) -> Result<(Connection, ConnectReport), ConnectError> {
    let router = inner.router.read().expect("router lock").clone();
    let routed = match router {
        Some(r) => r.hub_for(peer).await,
        None => None,
    };
    let hub = routed.or_else(|| inner.hub.clone());
    let mut driver = Driver::new(inner, peer, relay, hub);
    let outcome = driver.run_until_done().await;
    if !driver.session.is_closed() {
        tokio::spawn(driver.run_to_end());
    }
    outcome
}

/// What the driver's I/O reports back to the session.
enum Event {
    Resolved(Result<Option<HubView>, String>),
    Lookup(usize, Result<Vec<Address>, String>),
    Signalled(Result<(), String>),
    Work(WorkId, WorkEnd),
}

/// How a [`Work`] ended, with the connection it made.
enum WorkEnd {
    Connected {
        conn: Connection,
        needed_retransmission: bool,
    },
    Ended(Option<String>),
}

/// Carries out a [`ConnectSession`]'s actions and feeds it what happens.
struct Driver {
    inner: Arc<Inner>,
    /// The hub of this connect: the peer's home hub's guest line, else ours.
    hub: Option<HubClient>,
    peer: PeerId,
    session_id: [u8; 16],
    session: ConnectSession,
    sources: Vec<Arc<dyn Discovery>>,
    io: JoinSet<Event>,
    /// Connections works made, until the session says to keep them.
    held: HashMap<WorkId, Connection>,
    /// Connections the session was told of, by id.
    told: HashMap<u64, Connection>,
    answers: mpsc::Receiver<Answer>,
    endpoint_events: broadcast::Receiver<EndpointEvent>,
    /// We announced an inbound path for the peer (cleared when the driver goes).
    announced: bool,
    endpoint_closed: bool,
}

impl Driver {
    fn new(inner: &Arc<Inner>, peer: PeerId, relay: bool, hub_client: Option<HubClient>) -> Driver {
        let now = Instant::now();
        let hub = match &hub_client {
            None => HubLine::None,
            Some(h) => match h.state() {
                HubState::Online => HubLine::Up,
                state => HubLine::Down(format!("{state:?}").to_lowercase()),
            },
        };
        let sources = inner.sources.read().expect("sources lock").clone();
        let source_views = {
            let recent = inner.recent_lookups.lock().expect("lookups lock");
            sources
                .iter()
                .map(|s| SourceView {
                    name: s.name(),
                    asked_ago: (!s.cached())
                        .then(|| recent.asked_ago(s.name(), peer, now))
                        .flatten(),
                })
                .collect()
        };
        let session_id: [u8; 16] = rand::random();
        let (answer_tx, answers) = mpsc::channel(1);
        if hub_client.is_some() {
            inner.waiting.lock().unwrap().insert(session_id, answer_tx);
        }
        let session = ConnectSession::new(
            now,
            session::Start {
                peer,
                us: inner.endpoint.peer_id(),
                session: session_id,
                config: inner.config.clone(),
                relay,
                hub,
                known: inner.endpoint.peer_addresses(&peer),
                sources: source_views,
                local: local_facts(inner),
                candidates: local_candidates(inner),
                own_tcp_port: punch::free_tcp_port().ok(),
            },
        );
        Driver {
            inner: inner.clone(),
            hub: hub_client,
            peer,
            session_id,
            session,
            sources,
            io: JoinSet::new(),
            held: HashMap::new(),
            told: HashMap::new(),
            answers,
            endpoint_events: inner.endpoint.events(),
            announced: false,
            endpoint_closed: false,
        }
    }

    async fn run_until_done(&mut self) -> Result<(Connection, ConnectReport), ConnectError> {
        loop {
            if let Some(outcome) = self.execute() {
                return outcome;
            }
            if self.session.is_closed() {
                // Every path to a closed session goes through `Done`; this is a safety net.
                return Err(ConnectError {
                    peer: self.peer,
                    attempts: Vec::new(),
                });
            }
            self.wait().await;
        }
    }

    async fn run_to_end(mut self) {
        while !self.session.is_closed() {
            self.wait().await;
            let _ = self.execute();
        }
    }

    /// Carries out the queued actions; the connect's outcome if one was among them.
    fn execute(&mut self) -> Option<Result<(Connection, ConnectReport), ConnectError>> {
        let mut outcome = None;
        loop {
            while let Some(action) = self.session.poll_action() {
                if let Some(o) = self.act(action) {
                    outcome = Some(o);
                }
            }
            // A connection the other side made (callback, punch from its end).
            if self.session.is_closed() || !self.look_at_endpoint() {
                return outcome;
            }
        }
    }

    /// Tells the session of a live connection with the peer it has not heard of; whether
    /// there was one.
    fn look_at_endpoint(&mut self) -> bool {
        match self.inner.endpoint.connection(&self.peer) {
            Some(c) if c.path() != PathKind::Relayed && !self.told.contains_key(&c.id()) => {
                self.tell(c, None);
                true
            }
            _ => false,
        }
    }

    fn tell(&mut self, conn: Connection, made_by: Option<WorkId>) {
        let info = ConnInfo {
            id: conn.id(),
            made_by,
            path: conn.path(),
            direction: conn.direction(),
            transport: conn.transport(),
        };
        self.told.insert(conn.id(), conn);
        self.session.handle_connection(Instant::now(), info);
    }

    fn act(&mut self, action: Action) -> Option<Result<(Connection, ConnectReport), ConnectError>> {
        let inner = &self.inner;
        let peer = self.peer;
        match action {
            Action::Resolve => {
                let hub = self.hub.clone().expect("resolve only with a hub");
                self.io.spawn(async move {
                    let record = hub.resolve_recent(peer).await;
                    Event::Resolved(
                        record
                            .map(|r| {
                                r.map(|r| HubView {
                                    online: r.online,
                                    // The record lists the address the hub sees last.
                                    observed: r
                                        .addresses
                                        .iter()
                                        .rev()
                                        .find(|a| a.transport == TransportKind::Quic)
                                        .copied(),
                                })
                            })
                            .map_err(|e| e.to_string()),
                    )
                });
            }
            Action::Lookup { source } => {
                let s = self.sources[source].clone();
                if !s.cached() {
                    inner.recent_lookups.lock().expect("lookups lock").record(
                        s.name(),
                        peer,
                        Instant::now(),
                    );
                }
                self.io
                    .spawn(async move { Event::Lookup(source, s.lookup(peer).await) });
            }
            Action::Remember(addresses) => {
                for a in addresses {
                    inner.endpoint.add_peer_address(peer, a);
                }
            }
            Action::AnnounceInbound(path) => {
                self.announced = path.is_some();
                inner.endpoint.expect_peer_path(peer, path);
            }
            Action::SendSignal(signal) => {
                let hub = self.hub.clone().expect("signals only with a hub");
                let body = signal::seal(inner.endpoint.identity(), peer, now_ms(), signal);
                self.io.spawn(async move {
                    Event::Signalled(hub.signal(peer, body).await.map_err(|e| e.to_string()))
                });
            }
            Action::Start { id, work } => {
                let inner = inner.clone();
                let token = punch::token(&self.session_id);
                let labelling = self.session.labelling();
                let hub = self.hub.clone();
                self.io.spawn(async move {
                    Event::Work(
                        id,
                        run_work(&inner, hub.as_ref(), peer, token, labelling, work).await,
                    )
                });
            }
            Action::Keep { id, label } => {
                let conn = self.held.remove(&id)?;
                let kept = if conn.path() == PathKind::Relayed {
                    // The hub client's relayed connections are the endpoint's already.
                    conn
                } else {
                    conn.set_path(label);
                    let kept = inner.endpoint.adopt(conn.clone());
                    if kept.id() != conn.id() {
                        // The endpoint kept another connection with the peer.
                        self.tell(kept, None);
                        return None;
                    }
                    kept
                };
                self.tell(kept, Some(id));
            }
            Action::Done(Ok(won)) => {
                let conn = self.told.get(&won.connection)?.clone();
                if conn.path() != won.report.path {
                    conn.set_path(won.report.path);
                }
                return Some(Ok((conn, won.report)));
            }
            Action::Done(Err(e)) => return Some(Err(e)),
            Action::Stop => {
                self.io.abort_all();
                self.held.clear();
            }
        }
        None
    }

    /// Waits for the next thing that happens and feeds it to the session.
    async fn wait(&mut self) {
        let deadline = self.session.poll_timeout();
        let timer = async {
            match deadline {
                Some(t) => tokio::time::sleep_until(t.into()).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            Some(done) = self.io.join_next() => {
                if let Ok(event) = done {
                    self.feed(event);
                }
            }
            Some((answer, observed)) = self.answers.recv() => {
                self.session.handle_answer(Instant::now(), answer, observed);
            }
            event = self.endpoint_events.recv(), if !self.endpoint_closed => {
                if let Err(broadcast::error::RecvError::Closed) = event {
                    self.endpoint_closed = true;
                    self.session.handle_endpoint_closed(Instant::now());
                }
            }
            _ = timer => self.session.handle_timeout(Instant::now()),
        }
    }

    fn feed(&mut self, event: Event) {
        let now = Instant::now();
        match event {
            Event::Resolved(r) => self.session.handle_resolved(now, r),
            Event::Lookup(source, r) => self.session.handle_lookup(now, source, r),
            Event::Signalled(Ok(())) => {}
            Event::Signalled(Err(e)) => self.session.handle_signal_failed(now, e),
            Event::Work(id, WorkEnd::Ended(why)) => {
                self.session
                    .handle_work_done(now, id, WorkOutcome::Ended(why))
            }
            Event::Work(
                id,
                WorkEnd::Connected {
                    conn,
                    needed_retransmission,
                },
            ) => {
                self.held.insert(id, conn);
                self.session.handle_work_done(
                    now,
                    id,
                    WorkOutcome::Connected {
                        needed_retransmission,
                    },
                );
            }
        }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        self.inner.waiting.lock().unwrap().remove(&self.session_id);
        if self.announced {
            self.inner.endpoint.expect_peer_path(self.peer, None);
        }
    }
}

/// Whether a handshake that took `took` must have waited for a retransmission (the
/// first flight was lost, e.g. dropped by the remote NAT): much longer than its round trips.
fn needed_a_retransmission(conn: &Connection, took: Duration) -> bool {
    let rtt = conn
        .stats()
        .rtt_ms
        .map(|ms| Duration::from_secs_f64(ms / 1000.0))
        .unwrap_or_default();
    took > rtt * 3 + Duration::from_millis(250)
}

/// Runs one work towards `peer`; a connection it makes is not adopted yet.
async fn run_work(
    inner: &Inner,
    hub: Option<&HubClient>,
    peer: PeerId,
    token: [u8; 12],
    labelling: Labelling,
    work: Work,
) -> WorkEnd {
    let endpoint = &inner.endpoint;
    let label = |made| session::label_path(made, &labelling);
    let failed = |e: String| WorkEnd::Ended(Some(e));
    match work {
        Work::Dial {
            address,
            label,
            timeout,
            ..
        } => {
            let began = Instant::now();
            match tokio::time::timeout(timeout, endpoint.handshake(peer, address, Some(label)))
                .await
            {
                Ok(Ok(conn)) => WorkEnd::Connected {
                    needed_retransmission: needed_a_retransmission(&conn, began.elapsed()),
                    conn,
                },
                Ok(Err(e)) => failed(e.to_string()),
                Err(_) => failed(format!("no answer within {timeout:?}")),
            }
        }
        Work::Punch { targets, rounds } => {
            if let Some(socket) = endpoint.quic_socket() {
                punch::punch(&socket, &targets, &token, rounds).await;
            }
            WorkEnd::Ended(None)
        }
        Work::Spray {
            ip,
            last_seen_port,
            probes,
        } => {
            let ports = punch::spray_ports(last_seen_port, probes, &mut rand::thread_rng());
            if let Some(socket) = endpoint.quic_socket() {
                punch::spray(&socket, ip, &ports, &token).await;
            }
            WorkEnd::Ended(None)
        }
        Work::Birthday {
            easy,
            sockets,
            within,
        } => match punch::birthday(easy, &token, sockets, within).await {
            Ok(Some(socket)) => match endpoint
                .handshake_from_socket(socket, peer, easy, label(session::Made::Birthday))
                .await
            {
                Ok(conn) => WorkEnd::Connected {
                    conn,
                    needed_retransmission: false,
                },
                Err(e) => failed(format!("dial from the socket a probe reached: {e}")),
            },
            Ok(None) => failed(format!("no probe reached our {sockets} sockets")),
            Err(e) => failed(e.to_string()),
        },
        Work::TcpSimultaneousOpen {
            local_port,
            remote,
            as_client,
            within,
        } => match punch::tcp_simultaneous_open(local_port, remote, within).await {
            Ok(Some(stream)) => match endpoint
                .handshake_tcp_stream(
                    stream,
                    peer,
                    as_client,
                    label(session::Made::TcpSimultaneousOpen),
                )
                .await
            {
                Ok(conn) => WorkEnd::Connected {
                    conn,
                    needed_retransmission: false,
                },
                Err(e) => failed(e.to_string()),
            },
            Ok(None) => failed(format!("no TCP connection with {remote} within {within:?}")),
            Err(e) => failed(e.to_string()),
        },
        Work::Relay => match hub {
            Some(hub) => match hub.connect_relayed(peer).await {
                Ok(conn) => WorkEnd::Connected {
                    conn,
                    needed_retransmission: false,
                },
                Err(e) => failed(e.to_string()),
            },
            None => failed("no hub".into()),
        },
    }
}

/// Answers the signals peers send us through `hub` (ours, or a guest line).
async fn listen(
    weak: std::sync::Weak<Inner>,
    mut events: broadcast::Receiver<HubEvent>,
    hub: HubClient,
) {
    loop {
        let event = match events.recv().await {
            Ok(e) => e,
            Err(broadcast::error::RecvError::Lagged(n)) => {
                allpeers_log::marrow!("connector missed {n} hub events");
                continue;
            }
            Err(_) => return,
        };
        let HubEvent::Signal {
            from,
            observed,
            body,
        } = event
        else {
            continue;
        };
        let Some(inner) = weak.upgrade() else { return };
        let us = inner.endpoint.peer_id();
        let signal = match signal::open(&body, &from, &us, now_ms()) {
            Ok(s) => s,
            Err(e) => {
                allpeers_log::marrow!(?from, "connection signal dropped: {e}");
                continue;
            }
        };
        match signal {
            Signal::Connect {
                session,
                candidates,
                facts,
                tcp_port,
            } => {
                {
                    let mut seen = inner.seen.lock().unwrap();
                    if seen.contains(&session) {
                        allpeers_log::marrow!(?from, "replayed connection signal dropped");
                        continue;
                    }
                    if seen.len() >= MEMORY {
                        seen.pop_front();
                    }
                    seen.push_back(session);
                }
                let remote = Remote {
                    candidates,
                    observed,
                    tcp_port,
                };
                tokio::spawn(answer(inner, hub.clone(), from, session, remote, facts));
            }
            Signal::Accept { session, .. } | Signal::Refuse { session, .. } => {
                // Only the peer we signalled can answer our session.
                let waiter = inner.waiting.lock().unwrap().get(&session).cloned();
                match waiter {
                    Some(w) => {
                        let _ = w.try_send((signal, observed));
                    }
                    None => allpeers_log::bone!(?from, "answer to no session of ours dropped"),
                }
            }
        }
    }
}

/// The target's side of a Connect: agree (or refuse), do our part of the plan, answer.
async fn answer(
    inner: Arc<Inner>,
    hub: HubClient,
    from: PeerId,
    session: [u8; 16],
    remote: Remote,
    facts: Facts,
) {
    let us = inner.endpoint.identity();
    let permit = inner.target_sessions.clone().try_acquire_owned().ok();
    let local = local_facts(&inner);
    let decision =
        session::answer_connect(inner.policy.accept(&from), permit.is_some(), &facts, &local);
    let (actions, inbound, punch_first) = match decision {
        TargetAnswer::Refuse(reason) => {
            allpeers_log::flesh!(?from, reason, "connection signal refused");
            let refuse = Signal::Refuse {
                session,
                reason: reason.into(),
            };
            let _ = hub
                .signal(from, signal::seal(us, from, now_ms(), refuse))
                .await;
            return;
        }
        TargetAnswer::Accept {
            actions,
            inbound,
            punch_first,
        } => (actions, inbound, punch_first),
    };
    allpeers_log::flesh!(?from, ?actions, "connection signal accepted");
    // A connection from the requester while we punch came through the punched hole.
    let announced = inbound != PathKind::Direct;
    if announced {
        inner.endpoint.expect_peer_path(from, Some(inbound));
    }
    let token = punch::token(&session);
    // Punch before answering: our packets are on their way before the requester dials.
    if punch_first && let Some(socket) = inner.endpoint.quic_socket() {
        let rounds = session::PUNCH_ROUNDS_BEFORE_ANSWER;
        punch::punch(&socket, &remote.udp_targets(), &token, rounds).await;
    }
    let own_tcp_port = if actions.tcp_punch {
        punch::free_tcp_port().ok()
    } else {
        None
    };
    let accept = Signal::Accept {
        session,
        candidates: local_candidates(&inner),
        facts: local,
        tcp_port: own_tcp_port,
    };
    let forget = || {
        if announced {
            inner.endpoint.expect_peer_path(from, None);
        }
    };
    if let Err(e) = hub
        .signal(from, signal::seal(us, from, now_ms(), accept))
        .await
    {
        allpeers_log::flesh!(?from, "could not answer a connection signal: {e}");
        forget();
        return;
    }
    let labelling = session::target_labelling(&actions, &facts);
    let part = Part {
        role: Role::Target,
        actions,
        remote: &remote,
        own_tcp_port,
        as_client: inner.endpoint.peer_id() < from,
        labelling: &labelling,
        config: &inner.config,
    };
    let mut works = JoinSet::new();
    for (after, work) in session::part_work(&part) {
        let inner = inner.clone();
        let hub = hub.clone();
        works.spawn(async move {
            tokio::time::sleep(after).await;
            run_work(&inner, Some(&hub), from, token, labelling, work).await
        });
    }
    // Connections our part makes carry their label from the start: keep them.
    let keep = async {
        while let Some(done) = works.join_next().await {
            if let Ok(WorkEnd::Connected { conn, .. }) = done {
                inner.endpoint.adopt(conn);
            }
        }
    };
    let _ = tokio::time::timeout(inner.config.punch_window, keep).await;
    works.abort_all();
    forget();
}
