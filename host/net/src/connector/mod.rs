//! The connector: reaches a PeerId by the cheapest path that works and says which one won
//! and why. The seed's order — connect directly, ask the target to call back, punch a hole,
//! relay as the last resort — raced where sensible:
//!
//! 1. **Direct**: handshakes to every address we know for the peer (QUIC and TCP) at once;
//!    the first to finish wins.
//! 2. At the same time, if the peer is online at our hub, a signed **Connect** signal through
//!    the hub. The target answers **Accept** with its own addresses and NAT facts after it
//!    has done its first part (callback dial, punch packets, spraying, birthday sockets);
//!    both sides follow the same [`plan::plan`], so they agree on who does what.
//! 3. **Relay** through the hub when the plan says nothing direct can work, or when nothing
//!    has connected by [`ConnectorConfig::relay_after`]. Punching goes on behind the relay
//!    until [`ConnectorConfig::punch_window`]; a punched connection that arrives later
//!    replaces the relayed one in the endpoint (the relayed one is retired once its streams
//!    end), so the services on it never notice.
//!
//! Paths are reported from the requester's view: `direct` (our dial of a known address),
//! `callback` (the target dialled us before we punched), `hole_punched` (a connection made
//! while both sides were punching), `relayed`. [`Connector::report`] keeps the last outcome
//! per peer with every attempt and its timing.
//!
//! The async glue is here; the decisions are in [`plan`] (pure), the wire in [`signal`]
//! (pure), the packets in [`punch`].

pub mod plan;
pub mod punch;
pub mod signal;

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use allpeers_model::PeerId;
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use serde::Serialize;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::connectivity::monitor::MonitorState;
use crate::connectivity::nat::Filtering;
use crate::endpoint::Endpoint;
use crate::hub::{HubClient, HubEvent, RelayPolicy};
use crate::transport::{Address, Connection, Direction, PathKind, TransportKind};
pub use plan::{Actions, Facts, Plan};
pub use signal::{Signal, SignalError};

/// Timings and sizes of the connector.
#[derive(Debug, Clone)]
pub struct ConnectorConfig {
    /// Longest a direct handshake to a known address may take.
    pub direct_timeout: Duration,
    /// Longest to wait for the target's answer to a Connect signal.
    pub answer_timeout: Duration,
    /// Relay if nothing has connected by then (unless the plan says relay at once).
    pub relay_after: Duration,
    /// How long punching goes on (also behind a relay, to upgrade it).
    pub punch_window: Duration,
    /// Sockets the hard side of a birthday punch opens.
    pub birthday_sockets: usize,
    /// Probes the easy side sprays.
    pub spray_probes: usize,
    /// Punch sessions we take part in as the target at once; more are refused.
    pub max_target_sessions: usize,
}

impl Default for ConnectorConfig {
    fn default() -> Self {
        ConnectorConfig {
            direct_timeout: Duration::from_secs(3),
            answer_timeout: Duration::from_secs(3),
            relay_after: Duration::from_secs(4),
            punch_window: Duration::from_secs(12),
            birthday_sockets: 256,
            spray_probes: 2048,
            max_target_sessions: 16,
        }
    }
}

/// One thing the connector tried.
#[derive(Debug, Clone, Serialize)]
pub struct Attempt {
    pub method: String,
    pub outcome: String,
    /// Milliseconds after the start of the connect.
    pub at_ms: u64,
}

/// The outcome of one connect: the path that won, why, and every attempt.
#[derive(Debug, Clone, Serialize)]
pub struct ConnectReport {
    pub peer: PeerId,
    pub path: PathKind,
    pub transport: TransportKind,
    pub why: String,
    pub elapsed_ms: u64,
    pub local: Option<Facts>,
    pub remote: Option<Facts>,
    pub attempts: Vec<Attempt>,
}

/// Why a connect failed.
#[derive(Debug, Clone, thiserror::Error)]
#[error("cannot reach {peer:?}: {}", summary(.attempts))]
pub struct ConnectError {
    pub peer: PeerId,
    pub attempts: Vec<Attempt>,
}

fn summary(attempts: &[Attempt]) -> String {
    if attempts.is_empty() {
        return "no address, no hub".into();
    }
    attempts
        .iter()
        .map(|a| format!("{}: {}", a.method, a.outcome))
        .collect::<Vec<_>>()
        .join("; ")
}

/// A signal answering ours, with the address the hub sees its sender at.
type Answer = (Signal, Option<SocketAddr>);

/// Bound on remembered reports and replayed-session ids.
const MEMORY: usize = 1024;

struct Inner {
    endpoint: Endpoint,
    hub: Option<HubClient>,
    connectivity: Option<watch::Receiver<MonitorState>>,
    /// Who may ask us for a callback or a punch (the same agreement as relays).
    policy: Arc<dyn RelayPolicy>,
    config: ConnectorConfig,
    /// Our Connect signals waiting for their answer.
    waiting: Mutex<HashMap<[u8; 16], mpsc::Sender<Answer>>>,
    /// Sessions already handled as the target (replays are dropped).
    seen: Mutex<VecDeque<[u8; 16]>>,
    target_sessions: Arc<tokio::sync::Semaphore>,
    locks: Mutex<HashMap<PeerId, Arc<tokio::sync::Mutex<()>>>>,
    reports: Mutex<HashMap<PeerId, ConnectReport>>,
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

/// Longest wait for the target's answer after our own dial won, to label the path.
const ANSWER_GRACE: Duration = Duration::from_millis(300);

/// Least time between two background upgrade attempts of a relayed connection to one peer.
const UPGRADE_EVERY: Duration = Duration::from_secs(60);

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
        let inner = Arc::new(Inner {
            target_sessions: Arc::new(tokio::sync::Semaphore::new(config.max_target_sessions)),
            endpoint,
            hub,
            connectivity,
            policy,
            config,
            waiting: Default::default(),
            seen: Default::default(),
            locks: Default::default(),
            reports: Default::default(),
            upgrades: Default::default(),
        });
        let task = inner.hub.as_ref().map(|hub| {
            let events = hub.events();
            tokio::spawn(listen(Arc::downgrade(&inner), events))
        });
        Connector {
            inner,
            _listener: Arc::new(ListenerTask(task)),
        }
    }

    /// The last connect's report for `peer`.
    pub fn report(&self, peer: &PeerId) -> Option<ConnectReport> {
        self.inner.reports.lock().unwrap().get(peer).cloned()
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
        let lock = inner.locks.lock().unwrap().entry(peer).or_default().clone();
        let _guard = lock.lock().await;
        if let Some(c) = inner.endpoint.connection(&peer) {
            return Ok((c.clone(), existing_report(inner, peer, &c)));
        }
        let result = connect(inner, peer, true).await;
        if let Ok((_, report)) = &result {
            let mut reports = inner.reports.lock().unwrap();
            if reports.len() >= MEMORY {
                reports.clear();
            }
            reports.insert(peer, report.clone());
            tracing::info!(?peer, path = ?report.path, ms = report.elapsed_ms, why = %report.why, "connected by the connector");
        }
        result
    }
}

impl Connector {
    fn upgrade_in_background(&self, peer: PeerId) {
        {
            let mut last = self.inner.upgrades.lock().unwrap();
            if last.get(&peer).is_some_and(|t| t.elapsed() < UPGRADE_EVERY) {
                return;
            }
            if last.len() >= MEMORY {
                last.retain(|_, t| t.elapsed() < UPGRADE_EVERY);
            }
            last.insert(peer, Instant::now());
        }
        let this = self.clone();
        tokio::spawn(async move {
            match connect(&this.inner, peer, false).await {
                Ok((_, report)) => {
                    tracing::info!(?peer, path = ?report.path, ms = report.elapsed_ms, "relayed connection upgraded");
                    this.inner.reports.lock().unwrap().insert(peer, report);
                }
                Err(e) => tracing::debug!("no direct path behind the relay yet: {e}"),
            }
        });
    }
}

fn existing_report(inner: &Inner, peer: PeerId, c: &Connection) -> ConnectReport {
    // How the live connection was made, when the connector made it.
    if let Some(r) = inner.reports.lock().unwrap().get(&peer)
        && r.path == c.path()
        && r.transport == c.transport()
    {
        let mut r = r.clone();
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
    let ours = crate::discovery::record_addresses(
        &inner.endpoint.local_addresses(),
        &crate::status::interface_addresses(),
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

/// What the connect's racing parts report.
enum Event {
    Connected(Connection),
    Attempt(Attempt),
}

fn now_ms() -> u64 {
    crate::hub::proto::now_ms()
}

/// One connect. Without `relay` only direct paths are tried (the upgrade behind a relay).
async fn connect(
    inner: &Arc<Inner>,
    peer: PeerId,
    relay: bool,
) -> Result<(Connection, ConnectReport), ConnectError> {
    let start = Instant::now();
    let at = move || start.elapsed().as_millis() as u64;
    let cfg = inner.config.clone();
    let endpoint = inner.endpoint.clone();
    let mut attempts = Vec::new();
    let local = local_facts(inner);
    let mut remote_facts = None;
    let (tx, mut rx) = mpsc::channel::<Event>(64);
    // Set once our side of a punch starts: a direct dial that completes after that owes its
    // success to the punch.
    let punching = Arc::new(std::sync::atomic::AtomicBool::new(false));

    // The hub's view of the peer: fresh addresses, and whether it is online to signal.
    let mut online = false;
    let mut observed_address = None;
    // Only a hub whose line is up: a hub that is down would cost a connect timeout per
    // request, while the direct race (addresses from the DHT, the LAN) needs no hub.
    let hub_up = inner
        .hub
        .as_ref()
        .filter(|h| h.state() == crate::hub::HubState::Online);
    if hub_up.is_none()
        && let Some(h) = &inner.hub
    {
        attempts.push(Attempt {
            method: "resolve".into(),
            outcome: format!("the hub line is {:?}: not asked", h.state()).to_lowercase(),
            at_ms: at(),
        });
    }
    if let Some(hub) = hub_up {
        match hub
            .resolve_query(crate::hub::proto::Query::Peer(peer))
            .await
        {
            Ok(Some(record)) => {
                online = record.online;
                observed_address = record
                    .addresses
                    .iter()
                    .rev()
                    .find(|a| a.transport == TransportKind::Quic)
                    .copied();
            }
            Ok(None) => attempts.push(Attempt {
                method: "resolve".into(),
                outcome: "unknown at the hub".into(),
                at_ms: at(),
            }),
            Err(e) => attempts.push(Attempt {
                method: "resolve".into(),
                outcome: e.to_string(),
                at_ms: at(),
            }),
        }
    }

    // 1. Direct handshakes to every known address, raced.
    // The address the hub sees the peer at (the record lists it last) is dialled first: it
    // is the one that works across NATs; LAN addresses follow.
    let mut known = endpoint.peer_addresses(&peer);
    if let Some(observed) = observed_address {
        known.retain(|a| *a != observed);
        known.insert(0, observed);
    }
    let mut tasks: Vec<JoinHandle<()>> = Vec::new();
    for (i, address) in known.iter().enumerate() {
        tasks.push(tokio::spawn(dial_task(
            &endpoint,
            &tx,
            Dial {
                peer,
                address: *address,
                path: PathKind::Direct,
                method: "direct",
                after: stagger(i, address.transport),
                timeout: cfg.direct_timeout,
                punching: Some(punching.clone()),
            },
            start,
        )));
    }

    // 2. Signal the target through the hub.
    let session: [u8; 16] = rand::random();
    // The port we would punch TCP from, should the plan need it.
    let own_tcp_port = punch::free_tcp_port().ok();
    let (answer_tx, mut answer_rx) = mpsc::channel(1);
    let signalled = match (hub_up, online) {
        (Some(hub), true) => {
            inner.waiting.lock().unwrap().insert(session, answer_tx);
            // A connection the target makes to us from now on answers our request.
            endpoint.expect_peer_path(peer, Some(PathKind::Callback));
            let body = signal::seal(
                endpoint.identity(),
                peer,
                now_ms(),
                Signal::Connect {
                    session,
                    candidates: local_candidates(inner),
                    facts: local,
                    tcp_port: own_tcp_port,
                },
            );
            match hub.signal(peer, body).await {
                Ok(()) => true,
                Err(e) => {
                    attempts.push(Attempt {
                        method: "signal".into(),
                        outcome: e.to_string(),
                        at_ms: at(),
                    });
                    false
                }
            }
        }
        (Some(_), false) => {
            attempts.push(Attempt {
                method: "signal".into(),
                outcome: "the peer is not online at our hub".into(),
                at_ms: at(),
            });
            false
        }
        (None, _) => false,
    };
    if known.is_empty() && !signalled && hub_up.is_none() {
        finish_session(inner, peer, &session);
        return Err(ConnectError { peer, attempts });
    }

    let mut inbound = endpoint.events();
    let answer_deadline = tokio::time::Instant::now() + cfg.answer_timeout;
    let relay_deadline = tokio::time::Instant::now() + cfg.relay_after;
    let give_up = tokio::time::Instant::now()
        + cfg.relay_after
        + cfg.direct_timeout
        + Duration::from_secs(20);
    let mut answered = !signalled;
    let mut relay_started = false;
    let mut relay_task: Option<JoinHandle<()>> = None;
    let mut why_relay = String::new();
    let outcome: Option<Connection> = loop {
        // A connection made by the other side (callback, punch from its end) shows up here.
        if let Some(c) = endpoint.connection(&peer)
            && c.path() != PathKind::Relayed
        {
            break Some(c);
        }
        tokio::select! {
            ev = rx.recv() => match ev {
                Some(Event::Connected(c)) => break Some(c),
                Some(Event::Attempt(a)) => attempts.push(a),
                None => {}
            },
            ans = answer_rx.recv(), if !answered => {
                answered = true;
                match ans {
                    Some((Signal::Accept { candidates, facts, tcp_port, .. }, observed)) => {
                        remote_facts = Some(facts);
                        let p = plan::plan(&local, &facts);
                        attempts.push(Attempt {
                            method: "signal".into(),
                            outcome: format!("accepted; target {:?}/{:?}, plan {:?}", facts.mapping, facts.filtering, p.requester),
                            at_ms: at(),
                        });
                        let r = p.requester;
                        if r.punch || r.spray || r.birthday || (r.dial_udp && !facts_open(&facts)) {
                            punching.store(true, std::sync::atomic::Ordering::SeqCst);
                            endpoint.expect_peer_path(peer, Some(PathKind::HolePunched));
                        }
                        let remote = Remote { candidates, observed, tcp_port };
                        let role = Role::Requester { target_filters: filters_strangers(&facts) };
                        tasks.push(tokio::spawn(run_actions(
                            inner.clone(), tx.clone(), peer, session, p.requester,
                            remote, own_tcp_port, role, start,
                        )));
                        if p.relay_now && relay && !relay_started {
                            relay_started = true;
                            why_relay = "no direct path can work between these NATs".into();
                            relay_task = Some(spawn_relay(inner, &tx, peer, start));
                        }
                    }
                    Some((Signal::Refuse { reason, .. }, _)) => attempts.push(Attempt {
                        method: "signal".into(),
                        outcome: format!("refused: {reason}"),
                        at_ms: at(),
                    }),
                    Some((Signal::Connect { .. }, _)) | None => {}
                }
            },
            _ = tokio::time::sleep_until(answer_deadline), if !answered => {
                answered = true;
                attempts.push(Attempt {
                    method: "signal".into(),
                    outcome: format!("no answer within {:?}", cfg.answer_timeout),
                    at_ms: at(),
                });
            },
            _ = tokio::time::sleep_until(relay_deadline), if relay && !relay_started && hub_up.is_some() => {
                relay_started = true;
                why_relay = format!("nothing direct within {:?}", cfg.relay_after);
                relay_task = Some(spawn_relay(inner, &tx, peer, start));
            },
            ev = inbound.recv() => if let Err(tokio::sync::broadcast::error::RecvError::Closed) = ev {
                break None;
            },
            _ = tokio::time::sleep_until(give_up) => break None,
        }
        let all_done = tasks.iter().all(|t| t.is_finished())
            && answered
            && relay_task.as_ref().is_none_or(|t| t.is_finished())
            && (relay_started || !relay || hub_up.is_none());
        if all_done && rx.is_empty() {
            break None;
        }
    };
    // Our QUIC dial of the peer's address won. If the target's NAT filters strangers' UDP, it
    // got in only because our signal made the target punch: label it so. The target's
    // answer may still be on its way (it punches before it answers): wait for it briefly.
    if let Some(c) = &outcome
        && c.direction() == Direction::Outbound
        && c.path() == PathKind::Direct
        && c.transport() == TransportKind::Quic
        && signalled
    {
        if !answered
            && let Ok(Some((Signal::Accept { facts, .. }, _))) =
                tokio::time::timeout(ANSWER_GRACE, answer_rx.recv()).await
        {
            remote_facts = Some(facts);
        }
        if remote_facts.as_ref().is_some_and(filters_strangers) {
            c.set_path(PathKind::HolePunched);
        }
    }
    // The punch goes on behind a relay (to upgrade it); otherwise stop what is left.
    let relayed = matches!(&outcome, Some(c) if c.path() == PathKind::Relayed);
    if relayed {
        let inner2 = inner.clone();
        let window = cfg.punch_window;
        tokio::spawn(async move {
            tokio::time::sleep(window).await;
            for t in tasks {
                t.abort();
            }
            finish_session(&inner2, peer, &session);
        });
    } else {
        for t in tasks {
            t.abort();
        }
        finish_session(inner, peer, &session);
    }
    if let Some(t) = relay_task
        && !relayed
    {
        t.abort();
    }
    match outcome {
        Some(conn) => {
            let why = match conn.path() {
                PathKind::Relayed => format!("{} ({why_relay})", why_of(&conn)),
                _ => why_of(&conn).to_string(),
            };
            attempts.push(Attempt {
                method: "connected".into(),
                outcome: format!("{:?} over {:?}", conn.path(), conn.transport()),
                at_ms: at(),
            });
            let report = ConnectReport {
                peer,
                path: conn.path(),
                transport: conn.transport(),
                why,
                elapsed_ms: at(),
                local: Some(local),
                remote: remote_facts,
                attempts,
            };
            Ok((conn, report))
        }
        None => Err(ConnectError { peer, attempts }),
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

/// Whether unsolicited UDP reaches a peer with these facts (then a dial needs no punch).
fn facts_open(f: &Facts) -> bool {
    f.udp && f.filtering == Filtering::EndpointIndependent
}

/// Whether a peer's NAT is known to drop UDP from strangers: then a dial of ours that got in
/// owes it to the peer's punch. (Unknown facts prove nothing either way.)
fn filters_strangers(f: &Facts) -> bool {
    matches!(
        f.filtering,
        Filtering::AddressDependent | Filtering::AddressAndPortDependent
    )
}

/// Why a connection is the one that won, from how it was made.
fn why_of(c: &Connection) -> &'static str {
    if c.path() == PathKind::HolePunched && c.transport() == TransportKind::Tcp {
        return "a TCP simultaneous open through both NATs";
    }
    match (c.path(), c.direction()) {
        (PathKind::Relayed, _) => "relayed through the hub",
        (PathKind::Direct, Direction::Outbound) => "our dial of a known address succeeded",
        (PathKind::Direct, Direction::Inbound) => "the peer dialled us",
        (PathKind::Callback, _) => "the target called us back",
        (PathKind::HolePunched, Direction::Outbound) => {
            "our dial through the punched hole succeeded"
        }
        (PathKind::HolePunched, Direction::Inbound) => {
            "the target's dial through the punched hole arrived"
        }
    }
}

/// Ends a session: forget the answer slot and the path announcement.
fn finish_session(inner: &Inner, peer: PeerId, session: &[u8; 16]) {
    inner.waiting.lock().unwrap().remove(session);
    inner.endpoint.expect_peer_path(peer, None);
}

/// Time between the starts of two raced dials ("happy eyeballs", RFC 8305): the first
/// usually wins before the next starts, so both ends rarely complete two handshakes.
const STAGGER: Duration = Duration::from_millis(200);

/// When the `i`-th dial of a race starts: QUIC first, TCP after.
fn stagger(i: usize, transport: TransportKind) -> Duration {
    let tcp_later = match transport {
        TransportKind::Quic => Duration::ZERO,
        TransportKind::Tcp => STAGGER + STAGGER / 2,
    };
    STAGGER * i.min(16) as u32 + tcp_later
}

/// One dial of a race.
struct Dial {
    peer: PeerId,
    address: Address,
    path: PathKind,
    method: &'static str,
    /// Start delay.
    after: Duration,
    timeout: Duration,
    /// For a direct dial: set when our punch started (the dial is then labelled punched).
    punching: Option<Arc<std::sync::atomic::AtomicBool>>,
}

/// Runs one dial; adopts and reports its connection, or reports why it failed.
fn dial_task(
    endpoint: &Endpoint,
    tx: &mpsc::Sender<Event>,
    dial: Dial,
    start: Instant,
) -> impl std::future::Future<Output = ()> + Send + 'static {
    let endpoint = endpoint.clone();
    let tx = tx.clone();
    let Dial {
        peer,
        address,
        path,
        method,
        after,
        timeout,
        punching,
    } = dial;
    async move {
        tokio::time::sleep(after).await;
        if let Some(c) = endpoint.connection(&peer)
            && c.path() != PathKind::Relayed
        {
            // Connected meanwhile (another dial, or the other side): add no duplicate.
            let _ = tx.send(Event::Connected(c)).await;
            return;
        }
        let began = Instant::now();
        let outcome =
            tokio::time::timeout(timeout, endpoint.handshake(peer, address, Some(path))).await;
        let at_ms = start.elapsed().as_millis() as u64;
        match outcome {
            Ok(Ok(conn)) => {
                if punching.is_some_and(|p| p.load(std::sync::atomic::Ordering::SeqCst))
                    && needed_a_retransmission(&conn, began.elapsed())
                {
                    // The first flight was dropped and a later one got through once our
                    // punch had started: the punch made this path.
                    conn.set_path(PathKind::HolePunched);
                }
                let kept = endpoint.adopt(conn);
                let _ = tx.send(Event::Connected(kept)).await;
            }
            Ok(Err(e)) => {
                let _ = tx
                    .send(Event::Attempt(Attempt {
                        method: format!("{method} {address}"),
                        outcome: e.to_string(),
                        at_ms,
                    }))
                    .await;
            }
            Err(_) => {
                let _ = tx
                    .send(Event::Attempt(Attempt {
                        method: format!("{method} {address}"),
                        outcome: format!("no answer within {timeout:?}"),
                        at_ms,
                    }))
                    .await;
            }
        }
    }
}

fn spawn_relay(
    inner: &Arc<Inner>,
    tx: &mpsc::Sender<Event>,
    peer: PeerId,
    start: Instant,
) -> JoinHandle<()> {
    let hub = inner.hub.clone().expect("relay only with a hub");
    let tx = tx.clone();
    tokio::spawn(async move {
        match hub.connect_relayed(peer).await {
            Ok(conn) => {
                let _ = tx.send(Event::Connected(conn)).await;
            }
            Err(e) => {
                let _ = tx
                    .send(Event::Attempt(Attempt {
                        method: "relay".into(),
                        outcome: e.to_string(),
                        at_ms: start.elapsed().as_millis() as u64,
                    }))
                    .await;
            }
        }
    })
}

/// Which side of a connect `run_actions` plays.
#[derive(Debug, Clone, Copy)]
enum Role {
    Requester { target_filters: bool },
    Target,
}

/// What a peer's signal told us of it.
struct Remote {
    candidates: Vec<Address>,
    /// Its public address as the hub sees it.
    observed: Option<SocketAddr>,
    /// The port it TCP-punches from.
    tcp_port: Option<u16>,
}

/// One side's part of the plan, towards the other side. Connections made here are adopted
/// by the endpoint; the requester hears of them through `tx`.
#[allow(clippy::too_many_arguments)]
async fn run_actions(
    inner: Arc<Inner>,
    tx: mpsc::Sender<Event>,
    peer: PeerId,
    session: [u8; 16],
    actions: Actions,
    remote: Remote,
    own_tcp_port: Option<u16>,
    role: Role,
    start: Instant,
) {
    let Remote {
        candidates,
        observed,
        tcp_port,
    } = remote;
    let cfg = &inner.config;
    let endpoint = &inner.endpoint;
    let token = punch::token(&session);
    let mut udp_targets: Vec<SocketAddr> = observed.into_iter().collect();
    for c in candidates
        .iter()
        .filter(|c| c.transport == TransportKind::Quic)
    {
        if !udp_targets.contains(&c.addr) {
            udp_targets.push(c.addr);
        }
    }
    // How each dial's connection is labelled, and named in the attempts: a callback from the
    // target's view (it was asked); from the requester's, punched when the target filters.
    let (udp_path, udp_method, tcp_path, tcp_method) = match role {
        Role::Requester {
            target_filters: false,
        } => (PathKind::Direct, "dial", PathKind::Direct, "TCP dial"),
        Role::Requester {
            target_filters: true,
        } => (
            PathKind::HolePunched,
            "punched dial",
            PathKind::Direct,
            "TCP dial",
        ),
        Role::Target => (
            PathKind::Callback,
            "callback",
            PathKind::Callback,
            "TCP callback",
        ),
    };
    let mut work = FuturesUnordered::new();
    let demux = endpoint.quic_stun();
    if actions.punch
        && let Some(d) = demux.clone()
    {
        let targets = udp_targets.clone();
        work.push(
            Box::pin(async move { punch::punch(&d, &targets, &token, 5).await })
                as std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>,
        );
    }
    if actions.spray
        && let (Some(d), Some(obs)) = (demux.clone(), observed)
    {
        let ports = punch::spray_ports(obs.port(), cfg.spray_probes, &mut rand::thread_rng());
        work.push(Box::pin(async move {
            punch::spray(&d, obs.ip(), &ports, &token).await
        }));
    }
    // Dropped (aborting the dials) when this part of the plan is stopped.
    let mut dials = tokio::task::JoinSet::new();
    let mut targets: Vec<(Address, Duration)> = Vec::new();
    if actions.dial_udp {
        targets.extend(
            udp_targets
                .iter()
                .map(|a| (Address::quic(*a), cfg.punch_window)),
        );
    }
    if actions.dial_tcp {
        let tcp = candidates
            .iter()
            .filter(|c| c.transport == TransportKind::Tcp);
        targets.extend(tcp.map(|c| (*c, cfg.direct_timeout)));
    }
    for (i, (address, timeout)) in targets.into_iter().enumerate() {
        let (path, method) = match address.transport {
            TransportKind::Quic => (udp_path, udp_method),
            TransportKind::Tcp => (tcp_path, tcp_method),
        };
        let dial = Dial {
            peer,
            address,
            path,
            method,
            after: stagger(i, address.transport),
            timeout,
            punching: None,
        };
        dials.spawn(dial_task(endpoint, &tx, dial, start));
    }
    if actions.tcp_punch
        && let (Some(ours), Some(theirs), Some(obs)) = (own_tcp_port, tcp_port, observed)
    {
        let endpoint = endpoint.clone();
        let tx = tx.clone();
        let window = cfg.punch_window;
        // Both sides connect; the smaller PeerId speaks first in TLS.
        let as_client = endpoint.peer_id() < peer;
        work.push(Box::pin(async move {
            let remote = SocketAddr::new(obs.ip(), theirs);
            let opened = punch::tcp_simultaneous_open(ours, remote, window).await;
            let at_ms = start.elapsed().as_millis() as u64;
            let outcome = match opened {
                Ok(Some(stream)) => match endpoint
                    .handshake_tcp_stream(stream, peer, as_client, PathKind::HolePunched)
                    .await
                {
                    Ok(conn) => {
                        let kept = endpoint.adopt(conn);
                        let _ = tx.send(Event::Connected(kept)).await;
                        return;
                    }
                    Err(e) => e.to_string(),
                },
                Ok(None) => format!("no TCP connection with {remote} within {window:?}"),
                Err(e) => e.to_string(),
            };
            let _ = tx
                .send(Event::Attempt(Attempt {
                    method: format!("TCP punch {ours} -> {remote}"),
                    outcome,
                    at_ms,
                }))
                .await;
        }));
    }
    if actions.birthday
        && let Some(easy) = observed
    {
        let endpoint = endpoint.clone();
        let tx = tx.clone();
        let (count, window) = (cfg.birthday_sockets, cfg.punch_window);
        work.push(Box::pin(async move {
            let found = punch::birthday(easy, &token, count, window).await;
            let at_ms = start.elapsed().as_millis() as u64;
            match found {
                Ok(Some(socket)) => match endpoint
                    .handshake_from_socket(socket, peer, easy, PathKind::HolePunched)
                    .await
                {
                    Ok(conn) => {
                        let kept = endpoint.adopt(conn);
                        let _ = tx.send(Event::Connected(kept)).await;
                    }
                    Err(e) => {
                        let _ = tx
                            .send(Event::Attempt(Attempt {
                                method: "birthday dial".into(),
                                outcome: e.to_string(),
                                at_ms,
                            }))
                            .await;
                    }
                },
                other => {
                    let outcome = match other {
                        Err(e) => e.to_string(),
                        _ => format!("no probe reached our {count} sockets"),
                    };
                    let _ = tx
                        .send(Event::Attempt(Attempt {
                            method: "birthday".into(),
                            outcome,
                            at_ms,
                        }))
                        .await;
                }
            }
        }));
    }
    while work.next().await.is_some() {}
    while dials.join_next().await.is_some() {}
}

/// Answers the signals peers send us through the hub.
async fn listen(
    weak: std::sync::Weak<Inner>,
    mut events: tokio::sync::broadcast::Receiver<HubEvent>,
) {
    loop {
        let event = match events.recv().await {
            Ok(e) => e,
            Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                tracing::warn!("connector missed {n} hub events");
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
                tracing::warn!(?from, "connection signal dropped: {e}");
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
                        tracing::warn!(?from, "replayed connection signal dropped");
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
                tokio::spawn(answer(inner, from, session, remote, facts));
            }
            Signal::Accept { session, .. } | Signal::Refuse { session, .. } => {
                // Only the peer we signalled can answer our session.
                let waiter = inner.waiting.lock().unwrap().get(&session).cloned();
                match waiter {
                    Some(w) => {
                        let _ = w.try_send((signal, observed));
                    }
                    None => tracing::debug!(?from, "answer to no session of ours dropped"),
                }
            }
        }
    }
}

/// The target's side of a Connect: agree (or refuse), do our part of the plan, answer.
async fn answer(inner: Arc<Inner>, from: PeerId, session: [u8; 16], remote: Remote, facts: Facts) {
    let observed = remote.observed;
    let Some(hub) = inner.hub.clone() else { return };
    let us = inner.endpoint.identity();
    let refuse = |reason: &str| {
        signal::seal(
            us,
            from,
            now_ms(),
            Signal::Refuse {
                session,
                reason: reason.into(),
            },
        )
    };
    if !inner.policy.accept(&from) {
        tracing::info!(?from, "connection signal refused by policy");
        let _ = hub.signal(from, refuse("not accepted")).await;
        return;
    }
    let Ok(_permit) = inner.target_sessions.clone().try_acquire_owned() else {
        let _ = hub.signal(from, refuse("busy")).await;
        return;
    };
    let local = local_facts(&inner);
    let p = plan::plan(&facts, &local);
    tracing::info!(?from, ?p, "connection signal accepted");
    // A connection from the requester while we punch came through the punched hole.
    let t = p.target;
    if t.punch || t.spray || t.birthday {
        inner
            .endpoint
            .expect_peer_path(from, Some(PathKind::HolePunched));
    }
    // Punch before answering: our packets are on their way before the requester dials.
    if p.target.punch
        && let Some(d) = inner.endpoint.quic_stun()
    {
        let targets: Vec<SocketAddr> = observed
            .into_iter()
            .chain(
                remote
                    .candidates
                    .iter()
                    .filter(|c| c.transport == TransportKind::Quic)
                    .map(|c| c.addr),
            )
            .collect();
        punch::punch(&d, &targets, &punch::token(&session), 1).await;
    }
    let own_tcp_port = if p.target.tcp_punch {
        punch::free_tcp_port().ok()
    } else {
        None
    };
    let accept = signal::seal(
        us,
        from,
        now_ms(),
        Signal::Accept {
            session,
            candidates: local_candidates(&inner),
            facts: local,
            tcp_port: own_tcp_port,
        },
    );
    if let Err(e) = hub.signal(from, accept).await {
        tracing::info!(?from, "could not answer a connection signal: {e}");
        inner.endpoint.expect_peer_path(from, None);
        return;
    }
    let (tx, mut rx) = mpsc::channel(16);
    let work = run_actions(
        inner.clone(),
        tx,
        from,
        session,
        p.target,
        remote,
        own_tcp_port,
        Role::Target,
        Instant::now(),
    );
    let window = inner.config.punch_window;
    let drain = async { while rx.recv().await.is_some() {} };
    let _ = tokio::time::timeout(window, async { tokio::join!(work, drain) }).await;
    inner.endpoint.expect_peer_path(from, None);
}
