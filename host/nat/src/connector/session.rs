//! One connect, as an I/O-free state machine (in the style of `quinn-proto`): the driver in
//! [`super`] feeds it what happened ([`ConnectSession::handle_resolved`],
//! [`handle_lookup`](ConnectSession::handle_lookup), [`handle_answer`](ConnectSession::handle_answer),
//! [`handle_work_done`](ConnectSession::handle_work_done),
//! [`handle_connection`](ConnectSession::handle_connection),
//! [`handle_timeout`](ConnectSession::handle_timeout)), each with the time it happened, and
//! carries out what it asks ([`ConnectSession::poll_action`]) until the session is closed;
//! [`ConnectSession::poll_timeout`] says when to call `handle_timeout` next.
//!
//! The requester's way through a connect:
//! 1. **Where is the peer?** Ask the hub ([`Action::Resolve`]) when its line is up; when the
//!    hub cannot tell (no hub, line down, peer unknown there, an error), ask the discovery
//!    sources one after the other ([`Action::Lookup`]: the caches first, then the DHT, which a
//!    peer is not asked about again within [`LOOKUP_AGAIN_AFTER`]) until one knows it, and
//!    give the endpoint's address book what they found ([`Action::Remember`]).
//! 2. **The race**: dial every known address (staggered, QUIC first), and — when the peer is
//!    online at the hub — send the Connect signal. The target's Accept brings its facts; both
//!    sides follow [`plan::plan`] ([`part_work`] turns our part into work). Relay when the
//!    plan says nothing direct can work, or when nothing connected by `relay_after`.
//! 3. **The winner** is the first connection with the peer, labelled by [`label_path`], the
//!    one place that decides what a connection is called; [`Action::Done`] carries it and the
//!    report. A relayed winner leaves the punching running until `punch_window` ends: a
//!    punched connection then replaces the relayed one in the endpoint.
//!
//! The target's side is [`answer_connect`] (refuse, or which part to play) plus [`part_work`].

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use allpeers_model::PeerId;
use allpeers_net::transport::{Address, Direction, PathKind, TransportKind};

use super::plan::{self, Actions, Facts};
use super::report::{Attempt, ConnectError, ConnectReport, ConnectorConfig};
use super::signal::Signal;
use crate::connectivity::nat::Filtering;

/// Longest wait for the target's answer after our own dial won, to label the path.
pub const ANSWER_GRACE: Duration = Duration::from_millis(300);

/// Time between the starts of two raced dials ("happy eyeballs", RFC 8305): the first
/// usually wins before the next starts, so both ends rarely complete two handshakes.
pub const STAGGER: Duration = Duration::from_millis(200);

/// Dials past this many in one race start together (the stagger stops growing).
const MAX_STAGGER_STEPS: u32 = 16;

/// A discovery source that goes out to the network (the DHT) is not asked about one peer
/// again this soon: one unreachable contact costs one lookup per minute, not one per letter.
pub const LOOKUP_AGAIN_AFTER: Duration = Duration::from_secs(60);

/// Bound on the remembered lookup times (peers × network sources).
pub const MAX_REMEMBERED_LOOKUPS: usize = 1024;

/// Beyond the relay deadline and one direct dial, how long a connect may go on before it
/// gives up (a relay that never answers, a punch that never ends).
const GIVE_UP_EXTRA: Duration = Duration::from_secs(20);

/// Punch rounds of each side's part (100 ms apart), and the target's single round before it
/// answers, so its packets are on their way before the requester dials.
pub const PUNCH_ROUNDS: usize = 5;
pub const PUNCH_ROUNDS_BEFORE_ANSWER: usize = 1;

/// Which side of a connect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Asked for the connection.
    Requester,
    /// Was asked, by a Connect signal.
    Target,
}

/// How a connection came about — all [`label_path`] needs besides the session's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Made {
    /// Our dial of an address known before any plan (the hub's view, the address book,
    /// discovery). `needed_retransmission`: its first flight was lost and a later one got in.
    KnownAddressDial {
        transport: TransportKind,
        needed_retransmission: bool,
    },
    /// A dial our part of the plan made.
    PlanDial { transport: TransportKind },
    /// Both sides connected to each other at once (TCP hole punch).
    TcpSimultaneousOpen,
    /// A dial from the birthday socket a probe reached.
    Birthday,
    /// Through the hub's relay.
    Relay,
    /// The peer's dial, accepted by our endpoint.
    Accepted,
}

/// What a session knows when it labels a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Labelling {
    pub role: Role,
    /// The requester's Connect signal went out: the target may call back.
    pub signalled: bool,
    /// Our part of the plan punches (packets, probes, birthday sockets, or a dial the peer's
    /// filter lets in only once the peer punched).
    pub punching: bool,
    /// The peer's NAT facts, once its signal told them.
    pub remote: Option<Facts>,
}

/// What a connection is called, from how it came about and what the session knew: the one
/// place that decides it. Paths are from the requester's view: `Direct` (a dial of a known
/// address got in by itself), `Callback` (the target dialled because we asked), `HolePunched`
/// (it got in because a side punched), `Relayed`.
pub fn label_path(made: Made, at: &Labelling) -> PathKind {
    // A QUIC dial into a NAT known to drop strangers' UDP got in only because the peer punched.
    let remote_filters = at.remote.as_ref().is_some_and(filters_strangers);
    match (made, at.role) {
        (Made::Relay, _) => PathKind::Relayed,
        (Made::TcpSimultaneousOpen | Made::Birthday, _) => PathKind::HolePunched,
        (Made::Accepted, _) if at.punching => PathKind::HolePunched,
        (Made::Accepted, Role::Requester) if at.signalled => PathKind::Callback,
        (Made::Accepted, _) => PathKind::Direct,
        // The target only dials because it was asked.
        (Made::KnownAddressDial { .. } | Made::PlanDial { .. }, Role::Target) => PathKind::Callback,
        (
            Made::KnownAddressDial {
                transport: TransportKind::Tcp,
                ..
            }
            | Made::PlanDial {
                transport: TransportKind::Tcp,
            },
            Role::Requester,
        ) => PathKind::Direct,
        (
            Made::PlanDial {
                transport: TransportKind::Quic,
            },
            Role::Requester,
        ) if remote_filters => PathKind::HolePunched,
        (Made::PlanDial { .. }, Role::Requester) => PathKind::Direct,
        (
            Made::KnownAddressDial {
                needed_retransmission,
                ..
            },
            Role::Requester,
        ) => {
            if (at.punching && needed_retransmission) || (at.signalled && remote_filters) {
                PathKind::HolePunched
            } else {
                PathKind::Direct
            }
        }
    }
}

/// Whether a peer's NAT is known to drop UDP from strangers: then a dial of ours that got in
/// owes it to the peer's punch. (Unknown facts prove nothing either way.)
fn filters_strangers(f: &Facts) -> bool {
    matches!(
        f.filtering,
        Filtering::AddressDependent | Filtering::AddressAndPortDependent
    )
}

/// Whether unsolicited UDP reaches a peer with these facts (then a dial needs no punch).
fn facts_open(f: &Facts) -> bool {
    f.udp && f.filtering == Filtering::EndpointIndependent
}

/// Why a connection is the one that won, from how it is labelled.
pub fn why(path: PathKind, direction: Direction, transport: TransportKind) -> &'static str {
    if path == PathKind::HolePunched && transport == TransportKind::Tcp {
        return "a TCP simultaneous open through both NATs";
    }
    match (path, direction) {
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

/// When the `i`-th dial of a race starts: QUIC first, TCP after.
pub fn stagger(i: usize, transport: TransportKind) -> Duration {
    let tcp_later = match transport {
        TransportKind::Quic => Duration::ZERO,
        TransportKind::Tcp => STAGGER + STAGGER / 2,
    };
    STAGGER * (i as u32).min(MAX_STAGGER_STEPS) + tcp_later
}

/// Something that runs on its own and ends with a result ([`ConnectSession::handle_work_done`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Work {
    /// A handshake with the peer at `address`; the connection is labelled `label` until the
    /// session says otherwise ([`Action::Keep`]).
    Dial {
        address: Address,
        made: Made,
        label: PathKind,
        /// How the attempt is named in the report.
        method: &'static str,
        timeout: Duration,
    },
    /// Punch packets to every target, `rounds` times (opens our filter).
    Punch {
        targets: Vec<SocketAddr>,
        rounds: usize,
    },
    /// Probes at predicted and random ports of `ip` (the easy side facing a hard one).
    Spray {
        ip: IpAddr,
        last_seen_port: u16,
        probes: usize,
    },
    /// Extra sockets towards `easy`; dial from the first a probe reaches.
    Birthday {
        easy: SocketAddr,
        sockets: usize,
        within: Duration,
    },
    /// Connect from `local_port` to `remote` while the peer does the same; TLS client when
    /// `as_client` (the smaller PeerId).
    TcpSimultaneousOpen {
        local_port: u16,
        remote: SocketAddr,
        as_client: bool,
        within: Duration,
    },
    /// Through the hub's relay.
    Relay,
}

impl Work {
    /// How the attempt is named in the report.
    fn method(&self) -> String {
        match self {
            Work::Dial {
                address, method, ..
            } => format!("{method} {address}"),
            Work::Punch { .. } => "punch".into(),
            Work::Spray { .. } => "spray".into(),
            Work::Birthday { .. } => "birthday".into(),
            Work::TcpSimultaneousOpen {
                local_port, remote, ..
            } => format!("TCP punch {local_port} -> {remote}"),
            Work::Relay => "relay".into(),
        }
    }

    /// How a connection this work makes came about.
    fn made(&self) -> Option<Made> {
        match self {
            Work::Dial { made, .. } => Some(*made),
            Work::Birthday { .. } => Some(Made::Birthday),
            Work::TcpSimultaneousOpen { .. } => Some(Made::TcpSimultaneousOpen),
            Work::Relay => Some(Made::Relay),
            Work::Punch { .. } | Work::Spray { .. } => None,
        }
    }
}

/// Names a started [`Work`].
pub type WorkId = u32;

/// How a work ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WorkOutcome {
    /// A connection with the peer (held by the driver until [`Action::Keep`]).
    Connected { needed_retransmission: bool },
    /// It ended without a connection, and why (punches and sprays end with `None`).
    Ended(Option<String>),
}

/// A connection with the peer the driver saw, as the session needs to know it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnInfo {
    /// The connection's process-unique id.
    pub id: u64,
    /// The work that made it, if it is the connection that work made (the endpoint may have
    /// kept another one under its one-connection-per-peer rule).
    pub made_by: Option<WorkId>,
    /// How it is labelled now.
    pub path: PathKind,
    pub direction: Direction,
    pub transport: TransportKind,
}

/// What the hub said of the peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HubView {
    /// Online at our hub: a signal reaches it.
    pub online: bool,
    /// Its QUIC address as the hub sees it (it works across NATs: dialled first).
    pub observed: Option<Address>,
}

/// The hub line, as the session starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HubLine {
    None,
    /// Configured but not online (its state, for the report): not asked.
    Down(String),
    Up,
}

/// A discovery source, as the session starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceView {
    pub name: &'static str,
    /// When this peer was last looked up there, if within [`LOOKUP_AGAIN_AFTER`] (network
    /// sources only): then it is not asked.
    pub asked_ago: Option<Duration>,
}

/// What the session asks of its driver.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Ask the hub about the peer; answer with [`ConnectSession::handle_resolved`].
    Resolve,
    /// Ask discovery source `source` (its index in [`Start::sources`]); answer with
    /// [`ConnectSession::handle_lookup`].
    Lookup { source: usize },
    /// Give the endpoint's address book these addresses of the peer (found by discovery).
    Remember(Vec<Address>),
    /// Label connections the peer makes to us from now on (`None`: stop announcing).
    AnnounceInbound(Option<PathKind>),
    /// Seal and send this signal to the peer through the hub; a failure goes to
    /// [`ConnectSession::handle_signal_failed`].
    SendSignal(Signal),
    /// Start this work; its end goes to [`ConnectSession::handle_work_done`].
    Start { id: WorkId, work: Work },
    /// Label the connection work `id` made and give it to the endpoint; then report the
    /// connection the endpoint kept with [`ConnectSession::handle_connection`].
    Keep { id: WorkId, label: PathKind },
    /// The connect's outcome, for the caller. The session may go on (behind a relay).
    Done(Result<Won, ConnectError>),
    /// Stop every work still running and forget the session.
    Stop,
}

/// The connection that won (relabel it to `report.path` if it says otherwise).
#[derive(Debug, Clone, PartialEq)]
pub struct Won {
    pub connection: u64,
    pub report: ConnectReport,
}

/// What a requester's session starts from.
#[derive(Debug, Clone)]
pub struct Start {
    pub peer: PeerId,
    /// Our PeerId (the smaller one is the TLS client of a TCP simultaneous open).
    pub us: PeerId,
    pub session: [u8; 16],
    pub config: ConnectorConfig,
    /// Relay if nothing else works (false: the upgrade behind a relay, direct paths only).
    pub relay: bool,
    pub hub: HubLine,
    /// The peer's addresses in the endpoint's address book.
    pub known: Vec<Address>,
    pub sources: Vec<SourceView>,
    pub local: Facts,
    /// Our addresses for the signal.
    pub candidates: Vec<Address>,
    /// The port we would punch TCP from, should the plan need it.
    pub own_tcp_port: Option<u16>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting for the hub's answer.
    Resolving,
    /// Waiting for discovery source `.0` (until `.1`).
    LookingUp(usize, Instant),
    Racing,
    /// A winner whose label waits for the target's answer (until `.1`).
    Settling(ConnInfo, Instant),
    /// Done over the relay; punching goes on until `.0`.
    BehindRelay(Instant),
    Closed,
}

struct Running {
    id: WorkId,
    work: Work,
    needed_retransmission: bool,
}

/// The requester's side of one connect. See the module docs.
pub struct ConnectSession {
    start: Start,
    began: Instant,
    phase: Phase,
    actions: VecDeque<Action>,
    attempts: Vec<Attempt>,
    labelling: Labelling,
    /// The inbound label last announced (`Direct` is the endpoint's default: nothing).
    announced: PathKind,
    online: bool,
    observed: Option<Address>,
    /// Addresses discovery found (dialled first: fresh and signed by the peer).
    found: Vec<Address>,
    /// Waiting for the target's answer (until the deadline).
    answer_deadline: Option<Instant>,
    relay_deadline: Option<Instant>,
    give_up: Option<Instant>,
    relay_started: bool,
    why_relay: String,
    /// Works to start later (staggered dials).
    scheduled: Vec<(Instant, Work)>,
    running: Vec<Running>,
    finished: Vec<Running>,
    next_id: WorkId,
}

impl ConnectSession {
    pub fn new(now: Instant, start: Start) -> ConnectSession {
        let mut s = ConnectSession {
            labelling: Labelling {
                role: Role::Requester,
                signalled: false,
                punching: false,
                remote: None,
            },
            began: now,
            phase: Phase::Resolving,
            actions: VecDeque::new(),
            attempts: Vec::new(),
            announced: PathKind::Direct,
            online: false,
            observed: None,
            found: Vec::new(),
            answer_deadline: None,
            relay_deadline: None,
            give_up: None,
            relay_started: false,
            why_relay: String::new(),
            scheduled: Vec::new(),
            running: Vec::new(),
            finished: Vec::new(),
            next_id: 0,
            start,
        };
        match s.start.hub.clone() {
            HubLine::Up => s.actions.push_back(Action::Resolve),
            HubLine::Down(state) => {
                s.attempt(
                    now,
                    "resolve",
                    format!("the hub line is {state}: not asked"),
                );
                s.next_source(now, 0);
            }
            HubLine::None => s.next_source(now, 0),
        }
        s
    }

    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// When [`ConnectSession::handle_timeout`] is due next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let phase = match self.phase {
            Phase::LookingUp(_, t) | Phase::Settling(_, t) | Phase::BehindRelay(t) => Some(t),
            Phase::Closed => return None,
            Phase::Resolving | Phase::Racing => None,
        };
        let racing = self.phase == Phase::Racing;
        let behind_relay = matches!(self.phase, Phase::BehindRelay(_));
        [
            phase,
            self.answer_deadline.filter(|_| racing),
            self.relay_deadline.filter(|_| racing),
            self.give_up.filter(|_| racing),
        ]
        .into_iter()
        .chain(
            self.scheduled
                .iter()
                .filter(|_| racing || behind_relay)
                .map(|(t, _)| Some(*t)),
        )
        .flatten()
        .min()
    }

    pub fn is_closed(&self) -> bool {
        self.phase == Phase::Closed
    }

    /// What the session knows to label connections (for a work the driver starts itself).
    pub fn labelling(&self) -> Labelling {
        self.labelling
    }

    /// The hub's answer about the peer: `Ok(None)` when it does not know it.
    pub fn handle_resolved(&mut self, now: Instant, resolved: Result<Option<HubView>, String>) {
        if self.phase != Phase::Resolving {
            return;
        }
        match resolved {
            Ok(Some(view)) => {
                self.online = view.online;
                self.observed = view.observed;
                self.race(now);
            }
            Ok(None) => {
                self.attempt(now, "resolve", "unknown at the hub".into());
                self.next_source(now, 0);
            }
            Err(e) => {
                self.attempt(now, "resolve", e);
                self.next_source(now, 0);
            }
        }
    }

    /// Discovery source `source`'s answer.
    pub fn handle_lookup(
        &mut self,
        now: Instant,
        source: usize,
        found: Result<Vec<Address>, String>,
    ) {
        let Phase::LookingUp(current, _) = self.phase else {
            return;
        };
        if current != source {
            return;
        }
        let name = self.start.sources[source].name;
        match found {
            Ok(addresses) if !addresses.is_empty() => {
                self.attempt(
                    now,
                    &format!("lookup {name}"),
                    format!("found {} addresses", addresses.len()),
                );
                self.actions.push_back(Action::Remember(addresses.clone()));
                self.found = addresses;
                self.race(now);
            }
            Ok(_) => {
                self.attempt(now, &format!("lookup {name}"), "no addresses".into());
                self.next_source(now, source + 1);
            }
            Err(e) => {
                self.attempt(now, &format!("lookup {name}"), e);
                self.next_source(now, source + 1);
            }
        }
    }

    /// Our Connect signal could not be sent.
    pub fn handle_signal_failed(&mut self, now: Instant, error: String) {
        if self.phase != Phase::Racing || !self.labelling.signalled {
            return;
        }
        self.attempt(now, "signal", error);
        self.labelling.signalled = false;
        self.answer_deadline = None;
        self.announce(label_path(Made::Accepted, &self.labelling));
        self.check_exhausted(now);
    }

    /// The target's answer to our Connect signal, with the address the hub sees it at.
    pub fn handle_answer(&mut self, now: Instant, answer: Signal, observed: Option<SocketAddr>) {
        if self.answer_deadline.is_none() || answer.session() != self.start.session {
            return;
        }
        self.answer_deadline = None;
        match answer {
            Signal::Accept {
                candidates,
                facts,
                tcp_port,
                ..
            } => {
                self.labelling.remote = Some(facts);
                let p = plan::plan(&self.start.local, &facts);
                self.attempt(
                    now,
                    "signal",
                    format!(
                        "accepted; target {:?}/{:?}, plan {:?}",
                        facts.mapping, facts.filtering, p.requester
                    ),
                );
                if let Phase::Settling(winner, _) = self.phase {
                    // The answer the winner's label waited for.
                    self.finish(now, winner);
                    return;
                }
                if !matches!(self.phase, Phase::Racing | Phase::BehindRelay(_)) {
                    return;
                }
                let r = p.requester;
                if r.punch || r.spray || r.birthday || (r.dial_udp && !facts_open(&facts)) {
                    self.labelling.punching = true;
                    self.announce(label_path(Made::Accepted, &self.labelling));
                }
                let remote = Remote {
                    candidates,
                    observed,
                    tcp_port,
                };
                let part = Part {
                    role: Role::Requester,
                    actions: p.requester,
                    remote: &remote,
                    own_tcp_port: self.start.own_tcp_port,
                    as_client: self.start.us < self.start.peer,
                    labelling: &self.labelling,
                    config: &self.start.config,
                };
                for (after, work) in part_work(&part) {
                    self.schedule(now, after, work);
                }
                if p.relay_now && self.start.relay && !self.relay_started {
                    self.start_relay(now, "no direct path can work between these NATs".into());
                }
            }
            Signal::Refuse { reason, .. } => {
                self.attempt(now, "signal", format!("refused: {reason}"));
                if let Phase::Settling(winner, _) = self.phase {
                    self.finish(now, winner);
                } else {
                    self.check_exhausted(now);
                }
            }
            Signal::Connect { .. } => {}
        }
    }

    /// A work ended. A connection it made is held by the driver until [`Action::Keep`].
    pub fn handle_work_done(&mut self, now: Instant, id: WorkId, outcome: WorkOutcome) {
        let Some(i) = self.running.iter().position(|r| r.id == id) else {
            return;
        };
        let mut done = self.running.swap_remove(i);
        match outcome {
            WorkOutcome::Connected {
                needed_retransmission,
            } => {
                done.needed_retransmission = needed_retransmission;
                if let Some(made) = self.made_of(&done) {
                    let label = label_path(made, &self.labelling);
                    self.actions.push_back(Action::Keep { id, label });
                }
            }
            WorkOutcome::Ended(why) => {
                if let Some(why) = why {
                    self.attempt(now, &done.work.method(), why);
                }
            }
        }
        let connected = self
            .actions
            .iter()
            .any(|a| matches!(a, Action::Keep { id: k, .. } if *k == id));
        self.finished.push(done);
        // A connection waiting to be kept is not the end of the race.
        if self.phase == Phase::Racing && !connected {
            self.check_exhausted(now);
        }
    }

    /// A live connection with the peer: one a work made (after [`Action::Keep`]), or one the
    /// driver found in the endpoint (the peer's dial, or another of ours the endpoint kept).
    pub fn handle_connection(&mut self, now: Instant, conn: ConnInfo) {
        match self.phase {
            Phase::Racing => {}
            Phase::BehindRelay(_) if conn.path != PathKind::Relayed => {
                // Upgraded: nothing more to punch for.
                self.close();
                return;
            }
            _ => return,
        }
        let our_quic_dial = conn.made_by.is_some_and(|id| {
            matches!(
                self.finished.iter().find(|r| r.id == id).map(|r| &r.work),
                Some(Work::Dial {
                    made: Made::KnownAddressDial {
                        transport: TransportKind::Quic,
                        ..
                    },
                    ..
                })
            )
        });
        // Our QUIC dial of a known address won while the target's answer is on its way (it
        // punches before it answers): its facts decide the label; wait for them briefly.
        if our_quic_dial && self.answer_deadline.is_some() && self.labelling.signalled {
            self.phase = Phase::Settling(conn, now + ANSWER_GRACE);
            return;
        }
        self.finish(now, conn);
    }

    /// The endpoint closed: nothing more can connect.
    pub fn handle_endpoint_closed(&mut self, now: Instant) {
        match self.phase {
            Phase::Closed => {}
            Phase::BehindRelay(_) => self.close(),
            _ => {
                self.attempt(now, "endpoint", "closed".into());
                self.fail();
            }
        }
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        match self.phase {
            Phase::LookingUp(source, until) if now >= until => {
                let name = self.start.sources[source].name;
                let within = self.start.config.lookup_timeout;
                self.attempt(
                    now,
                    &format!("lookup {name}"),
                    format!("no answer within {within:?}"),
                );
                self.next_source(now, source + 1);
            }
            Phase::Settling(winner, until) if now >= until => self.finish(now, winner),
            Phase::BehindRelay(until) if now >= until => self.close(),
            Phase::Racing => {
                self.start_due(now);
                if self.answer_deadline.is_some_and(|t| now >= t) {
                    self.answer_deadline = None;
                    let within = self.start.config.answer_timeout;
                    self.attempt(now, "signal", format!("no answer within {within:?}"));
                }
                if self.relay_deadline.is_some_and(|t| now >= t) {
                    self.relay_deadline = None;
                    if !self.relay_started {
                        let after = self.start.config.relay_after;
                        self.start_relay(now, format!("nothing direct within {after:?}"));
                    }
                }
                if self.give_up.is_some_and(|t| now >= t) {
                    self.fail();
                    return;
                }
                self.check_exhausted(now);
            }
            Phase::BehindRelay(_) => self.start_due(now),
            _ => {}
        }
    }

    fn made_of(&self, r: &Running) -> Option<Made> {
        match r.work.made()? {
            Made::KnownAddressDial { transport, .. } => Some(Made::KnownAddressDial {
                transport,
                needed_retransmission: r.needed_retransmission,
            }),
            made => Some(made),
        }
    }

    fn at_ms(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.began).as_millis() as u64
    }

    fn attempt(&mut self, now: Instant, method: &str, outcome: String) {
        let at_ms = self.at_ms(now);
        self.attempts.push(Attempt {
            method: method.into(),
            outcome,
            at_ms,
        });
    }

    fn announce(&mut self, label: PathKind) {
        if label != self.announced {
            self.announced = label;
            let announcement = (label != PathKind::Direct).then_some(label);
            self.actions
                .push_back(Action::AnnounceInbound(announcement));
        }
    }

    /// Asks source `from` or the next one that may be asked; races when none is left.
    fn next_source(&mut self, now: Instant, from: usize) {
        for i in from..self.start.sources.len() {
            let source = &self.start.sources[i];
            if let Some(ago) = source.asked_ago {
                let name = source.name;
                self.attempt(
                    now,
                    &format!("lookup {name}"),
                    format!(
                        "not asked: looked up {} s ago (again after {} s)",
                        ago.as_secs(),
                        LOOKUP_AGAIN_AFTER.as_secs()
                    ),
                );
                continue;
            }
            self.phase = Phase::LookingUp(i, now + self.start.config.lookup_timeout);
            self.actions.push_back(Action::Lookup { source: i });
            return;
        }
        self.race(now);
    }

    /// Dials the known addresses and signals the peer.
    fn race(&mut self, now: Instant) {
        self.phase = Phase::Racing;
        let mut known: Vec<Address> = Vec::new();
        let book = self.start.known.iter().filter(|a| !self.found.contains(a));
        for a in self.observed.iter().chain(&self.found).chain(book) {
            if !known.contains(a) {
                known.push(*a);
            }
        }
        let timeout = self.start.config.direct_timeout;
        for (i, address) in known.iter().enumerate() {
            let made = Made::KnownAddressDial {
                transport: address.transport,
                needed_retransmission: false,
            };
            let work = Work::Dial {
                address: *address,
                made,
                label: label_path(made, &self.labelling),
                method: "direct",
                timeout,
            };
            self.schedule(now, stagger(i, address.transport), work);
        }
        let hub_up = self.start.hub == HubLine::Up;
        if hub_up && self.online {
            self.labelling.signalled = true;
            // A connection the target makes to us from now on answers our request.
            self.announce(label_path(Made::Accepted, &self.labelling));
            self.actions.push_back(Action::SendSignal(Signal::Connect {
                session: self.start.session,
                candidates: self.start.candidates.clone(),
                facts: self.start.local,
                tcp_port: self.start.own_tcp_port,
            }));
            self.answer_deadline = Some(now + self.start.config.answer_timeout);
        } else if hub_up {
            self.attempt(now, "signal", "the peer is not online at our hub".into());
        }
        if known.is_empty() && !self.labelling.signalled && !hub_up {
            self.fail();
            return;
        }
        let cfg = &self.start.config;
        if self.start.relay && hub_up {
            self.relay_deadline = Some(now + cfg.relay_after);
        }
        self.give_up = Some(now + cfg.relay_after + cfg.direct_timeout + GIVE_UP_EXTRA);
        self.start_due(now);
    }

    fn schedule(&mut self, now: Instant, after: Duration, work: Work) {
        if after.is_zero() {
            self.start_work(work);
        } else {
            self.scheduled.push((now + after, work));
        }
    }

    fn start_due(&mut self, now: Instant) {
        let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.scheduled)
            .into_iter()
            .partition(|(t, _)| *t <= now);
        self.scheduled = later;
        for (_, work) in due {
            self.start_work(work);
        }
    }

    fn start_work(&mut self, work: Work) {
        let id = self.next_id;
        self.next_id += 1;
        self.running.push(Running {
            id,
            work: work.clone(),
            needed_retransmission: false,
        });
        self.actions.push_back(Action::Start { id, work });
    }

    fn start_relay(&mut self, _now: Instant, why: String) {
        self.relay_started = true;
        self.why_relay = why;
        self.start_work(Work::Relay);
    }

    /// Fails the connect when nothing is left that could connect.
    fn check_exhausted(&mut self, _now: Instant) {
        if self.phase != Phase::Racing {
            return;
        }
        let hub_up = self.start.hub == HubLine::Up;
        let nothing_left = self.running.is_empty()
            && self.scheduled.is_empty()
            && self.answer_deadline.is_none()
            && (self.relay_started || !self.start.relay || !hub_up);
        if nothing_left {
            self.fail();
        }
    }

    fn fail(&mut self) {
        let error = ConnectError {
            peer: self.start.peer,
            attempts: std::mem::take(&mut self.attempts),
        };
        self.actions.push_back(Action::Done(Err(error)));
        self.close();
    }

    fn close(&mut self) {
        self.phase = Phase::Closed;
        self.scheduled.clear();
        self.announce(PathKind::Direct);
        self.actions.push_back(Action::Stop);
    }

    /// `conn` won: label it, report it; go on punching behind a relay.
    fn finish(&mut self, now: Instant, conn: ConnInfo) {
        let path = match conn.made_by {
            Some(id) => self
                .finished
                .iter()
                .find(|r| r.id == id)
                .and_then(|r| self.made_of(r))
                .map_or(conn.path, |made| label_path(made, &self.labelling)),
            // Labelled by the endpoint when it was accepted, from what we announced then.
            None => conn.path,
        };
        let mut why = why(path, conn.direction, conn.transport).to_string();
        if path == PathKind::Relayed {
            why = format!("{why} ({})", self.why_relay);
        }
        self.attempt(
            now,
            "connected",
            format!("{path:?} over {:?}", conn.transport),
        );
        let report = ConnectReport {
            peer: self.start.peer,
            path,
            transport: conn.transport,
            why,
            elapsed_ms: self.at_ms(now),
            local: Some(self.start.local),
            remote: self.labelling.remote,
            attempts: std::mem::take(&mut self.attempts),
        };
        self.actions.push_back(Action::Done(Ok(Won {
            connection: conn.id,
            report,
        })));
        if path == PathKind::Relayed {
            self.phase = Phase::BehindRelay(now + self.start.config.punch_window);
        } else {
            self.close();
        }
    }
}

/// What a peer's signal told us of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Remote {
    pub candidates: Vec<Address>,
    /// Its public address as the hub sees it.
    pub observed: Option<SocketAddr>,
    /// The port it TCP-punches from.
    pub tcp_port: Option<u16>,
}

impl Remote {
    /// Where its UDP can be reached: the hub's view first, then its QUIC candidates.
    pub fn udp_targets(&self) -> Vec<SocketAddr> {
        let mut out: Vec<SocketAddr> = self.observed.into_iter().collect();
        for c in &self.candidates {
            if c.transport == TransportKind::Quic && !out.contains(&c.addr) {
                out.push(c.addr);
            }
        }
        out
    }
}

/// One side's part of a plan, with what it is played against.
#[derive(Debug, Clone, Copy)]
pub struct Part<'a> {
    pub role: Role,
    pub actions: Actions,
    pub remote: &'a Remote,
    pub own_tcp_port: Option<u16>,
    /// We are the TLS client of a TCP simultaneous open (the smaller PeerId).
    pub as_client: bool,
    pub labelling: &'a Labelling,
    pub config: &'a ConnectorConfig,
}

/// The work of one side's part of the plan, each with its start delay.
pub fn part_work(part: &Part<'_>) -> Vec<(Duration, Work)> {
    let cfg = part.config;
    let actions = &part.actions;
    let remote = part.remote;
    let udp_targets = remote.udp_targets();
    let mut out = Vec::new();
    if actions.punch {
        out.push((
            Duration::ZERO,
            Work::Punch {
                targets: udp_targets.clone(),
                rounds: PUNCH_ROUNDS,
            },
        ));
    }
    if actions.spray
        && let Some(obs) = remote.observed
    {
        out.push((
            Duration::ZERO,
            Work::Spray {
                ip: obs.ip(),
                last_seen_port: obs.port(),
                probes: cfg.spray_probes,
            },
        ));
    }
    let mut dials: Vec<(Address, Duration)> = Vec::new();
    if actions.dial_udp {
        dials.extend(
            udp_targets
                .iter()
                .map(|a| (Address::quic(*a), cfg.punch_window)),
        );
    }
    if actions.dial_tcp {
        let tcp = remote
            .candidates
            .iter()
            .filter(|c| c.transport == TransportKind::Tcp);
        dials.extend(tcp.map(|c| (*c, cfg.direct_timeout)));
    }
    for (i, (address, timeout)) in dials.into_iter().enumerate() {
        let made = Made::PlanDial {
            transport: address.transport,
        };
        let label = label_path(made, part.labelling);
        let method = match (part.role, address.transport, label) {
            (Role::Target, TransportKind::Quic, _) => "callback",
            (Role::Target, TransportKind::Tcp, _) => "TCP callback",
            (Role::Requester, TransportKind::Tcp, _) => "TCP dial",
            (Role::Requester, TransportKind::Quic, PathKind::HolePunched) => "punched dial",
            (Role::Requester, TransportKind::Quic, _) => "dial",
        };
        out.push((
            stagger(i, address.transport),
            Work::Dial {
                address,
                made,
                label,
                method,
                timeout,
            },
        ));
    }
    if actions.tcp_punch
        && let (Some(ours), Some(theirs), Some(obs)) =
            (part.own_tcp_port, remote.tcp_port, remote.observed)
    {
        out.push((
            Duration::ZERO,
            Work::TcpSimultaneousOpen {
                local_port: ours,
                remote: SocketAddr::new(obs.ip(), theirs),
                as_client: part.as_client,
                within: cfg.punch_window,
            },
        ));
    }
    if actions.birthday
        && let Some(easy) = remote.observed
    {
        out.push((
            Duration::ZERO,
            Work::Birthday {
                easy,
                sockets: cfg.birthday_sockets,
                within: cfg.punch_window,
            },
        ));
    }
    out
}

/// The target's decision on a Connect signal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetAnswer {
    /// Answer Refuse with this reason.
    Refuse(&'static str),
    /// Take part: our actions, how connections the requester makes are labelled, and whether
    /// to punch once before answering (our packets on their way before it dials).
    Accept {
        actions: Actions,
        inbound: PathKind,
        punch_first: bool,
    },
}

/// The target's side of a Connect: refuse (the policy says no, or too many sessions run), or
/// the part of the plan to play.
pub fn answer_connect(
    accepted_by_policy: bool,
    has_slot: bool,
    requester: &Facts,
    local: &Facts,
) -> TargetAnswer {
    if !accepted_by_policy {
        return TargetAnswer::Refuse("not accepted");
    }
    if !has_slot {
        return TargetAnswer::Refuse("busy");
    }
    let t = plan::plan(requester, local).target;
    TargetAnswer::Accept {
        actions: t,
        inbound: label_path(Made::Accepted, &target_labelling(&t, requester)),
        punch_first: t.punch,
    }
}

/// The target's labelling while it plays `actions` against `requester`.
pub fn target_labelling(actions: &Actions, requester: &Facts) -> Labelling {
    Labelling {
        role: Role::Target,
        signalled: false,
        punching: actions.punch || actions.spray || actions.birthday,
        remote: Some(*requester),
    }
}

/// When each network source last looked a peer up: bounded, so a node that tries to reach
/// many peers keeps at most [`MAX_REMEMBERED_LOOKUPS`] entries.
#[derive(Debug, Default)]
pub struct RecentLookups {
    at: std::collections::HashMap<(&'static str, PeerId), Instant>,
}

impl RecentLookups {
    /// How long ago `source` looked `peer` up, if within [`LOOKUP_AGAIN_AFTER`].
    pub fn asked_ago(&self, source: &'static str, peer: PeerId, now: Instant) -> Option<Duration> {
        self.at
            .get(&(source, peer))
            .map(|t| now.saturating_duration_since(*t))
            .filter(|ago| *ago < LOOKUP_AGAIN_AFTER)
    }

    /// Remembers a lookup. When full, the lookups older than [`LOOKUP_AGAIN_AFTER`] go; if
    /// all are recent, the oldest does.
    pub fn record(&mut self, source: &'static str, peer: PeerId, now: Instant) {
        if self.at.len() >= MAX_REMEMBERED_LOOKUPS && !self.at.contains_key(&(source, peer)) {
            self.at
                .retain(|_, t| now.saturating_duration_since(*t) < LOOKUP_AGAIN_AFTER);
            if self.at.len() >= MAX_REMEMBERED_LOOKUPS
                && let Some(oldest) = self.at.iter().min_by_key(|(_, t)| **t).map(|(k, _)| *k)
            {
                self.at.remove(&oldest);
            }
        }
        self.at.insert((source, peer), now);
    }

    pub fn len(&self) -> usize {
        self.at.len()
    }

    pub fn is_empty(&self) -> bool {
        self.at.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connectivity::nat::Mapping;

    fn peer(n: u8) -> PeerId {
        PeerId::from_public_key([n; 32])
    }

    fn facts(mapping: Mapping, filtering: Filtering) -> Facts {
        Facts {
            mapping,
            filtering,
            udp: true,
            tcp_reachable: false,
        }
    }

    /// The NAT behaviours of the netns matrix (`tests/e2e/nat_matrix.rs`), as discovery
    /// measures them.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Nat {
        FullCone,
        AddressRestricted,
        PortRestricted,
        Symmetric,
        UdpBlocked,
    }
    use Nat::*;
    const ALL: [Nat; 5] = [
        FullCone,
        AddressRestricted,
        PortRestricted,
        Symmetric,
        UdpBlocked,
    ];

    fn facts_of(n: Nat) -> Facts {
        match n {
            FullCone => facts(Mapping::EndpointIndependent, Filtering::EndpointIndependent),
            AddressRestricted => facts(Mapping::EndpointIndependent, Filtering::AddressDependent),
            PortRestricted => facts(
                Mapping::EndpointIndependent,
                Filtering::AddressAndPortDependent,
            ),
            Symmetric => facts(
                Mapping::AddressAndPortDependent,
                Filtering::AddressAndPortDependent,
            ),
            UdpBlocked => Facts {
                udp: false,
                ..Facts::unknown()
            },
        }
    }

    /// The matrix's expected paths (`nat_matrix.rs`'s `expected`, docs/benchmarks.md).
    fn expected(a: Nat, b: Nat) -> PathKind {
        let cone = |n| matches!(n, AddressRestricted | PortRestricted);
        match (a, b) {
            (UdpBlocked, Symmetric) | (Symmetric, UdpBlocked) => PathKind::Relayed,
            (UdpBlocked, _) | (_, UdpBlocked) => PathKind::HolePunched,
            (_, FullCone) => PathKind::Direct,
            (FullCone, _) => PathKind::Callback,
            (Symmetric, Symmetric) => PathKind::Relayed,
            (x, y) if cone(x) || cone(y) => PathKind::HolePunched,
            _ => unreachable!(),
        }
    }

    const B_PUBLIC: &str = "198.51.100.2:40000";
    const B_TCP: &str = "198.51.100.2:7001";

    fn start(hub: HubLine, known: Vec<Address>, sources: Vec<SourceView>, local: Facts) -> Start {
        Start {
            peer: peer(2),
            us: peer(1),
            session: [7; 16],
            config: ConnectorConfig::default(),
            relay: true,
            hub,
            known,
            sources,
            local,
            candidates: vec![Address::quic("203.0.113.1:5000".parse().unwrap())],
            own_tcp_port: Some(6000),
        }
    }

    /// Drives a session as the driver would, with a scripted network: what the endpoint
    /// would label an inbound connection (the last announcement), connections by id.
    struct Sim {
        s: ConnectSession,
        now: Instant,
        t0: Instant,
        announced: Option<PathKind>,
        started: Vec<(WorkId, Work)>,
        log: Vec<Action>,
        done: Option<Result<Won, ConnectError>>,
        stopped: bool,
        next_conn: u64,
    }

    impl Sim {
        fn new(start: Start) -> Sim {
            let t0 = Instant::now();
            let mut sim = Sim {
                s: ConnectSession::new(t0, start),
                now: t0,
                t0,
                announced: None,
                started: Vec::new(),
                log: Vec::new(),
                done: None,
                stopped: false,
                next_conn: 100,
            };
            sim.pump();
            sim
        }

        fn pump(&mut self) {
            while let Some(a) = self.s.poll_action() {
                self.log.push(a.clone());
                match a {
                    Action::AnnounceInbound(p) => self.announced = p,
                    Action::Start { id, work } => self.started.push((id, work)),
                    Action::Keep { id, label } => {
                        let transport = match self.work(id) {
                            Work::Dial { address, .. } => address.transport,
                            Work::TcpSimultaneousOpen { .. } | Work::Relay => TransportKind::Tcp,
                            _ => TransportKind::Quic,
                        };
                        let info = ConnInfo {
                            id: self.conn_id(),
                            made_by: Some(id),
                            path: label,
                            direction: Direction::Outbound,
                            transport,
                        };
                        self.s.handle_connection(self.now, info);
                    }
                    Action::Done(r) => {
                        assert!(self.done.is_none(), "done twice");
                        self.done = Some(r);
                    }
                    Action::Stop => self.stopped = true,
                    Action::Resolve
                    | Action::Lookup { .. }
                    | Action::Remember(_)
                    | Action::SendSignal(_) => {}
                }
            }
        }

        fn conn_id(&mut self) -> u64 {
            self.next_conn += 1;
            self.next_conn
        }

        fn work(&self, id: WorkId) -> Work {
            self.started
                .iter()
                .find(|(i, _)| *i == id)
                .unwrap()
                .1
                .clone()
        }

        fn advance(&mut self, by: Duration) {
            let until = self.now + by;
            while let Some(t) = self.s.poll_timeout().filter(|t| *t <= until) {
                self.now = t.max(self.now);
                self.s.handle_timeout(self.now);
                self.pump();
            }
            self.now = until;
        }

        fn ms(&self) -> u64 {
            (self.now - self.t0).as_millis() as u64
        }

        fn connected(&mut self, id: WorkId, needed_retransmission: bool) {
            let outcome = WorkOutcome::Connected {
                needed_retransmission,
            };
            self.s.handle_work_done(self.now, id, outcome);
            self.pump();
        }

        fn ended(&mut self, id: WorkId, why: &str) {
            let outcome = WorkOutcome::Ended(Some(why.into()));
            self.s.handle_work_done(self.now, id, outcome);
            self.pump();
        }

        /// The peer's connection reaches our endpoint, labelled as the endpoint does.
        fn inbound(&mut self, transport: TransportKind) {
            let info = ConnInfo {
                id: self.conn_id(),
                made_by: None,
                path: self.announced.unwrap_or(PathKind::Direct),
                direction: Direction::Inbound,
                transport,
            };
            self.s.handle_connection(self.now, info);
            self.pump();
        }

        fn accept(&mut self, b: Facts, tcp_reachable_at: Option<Address>) {
            let mut candidates = vec![Address::quic(B_PUBLIC.parse().unwrap())];
            candidates.extend(tcp_reachable_at);
            let answer = Signal::Accept {
                session: [7; 16],
                candidates,
                facts: b,
                tcp_port: Some(7000),
            };
            self.s
                .handle_answer(self.now, answer, Some(B_PUBLIC.parse().unwrap()));
            self.pump();
        }

        fn report(&self) -> ConnectReport {
            match &self.done {
                Some(Ok(won)) => won.report.clone(),
                other => panic!("not connected: {other:?}"),
            }
        }

        fn error(&self) -> ConnectError {
            match &self.done {
                Some(Err(e)) => e.clone(),
                other => panic!("not failed: {other:?}"),
            }
        }

        fn running(&self, pick: impl Fn(&Work) -> bool) -> Vec<WorkId> {
            self.started
                .iter()
                .filter(|(_, w)| pick(w))
                .map(|(i, _)| *i)
                .collect()
        }
    }

    /// A's connect to B across the two NATs, with the network behaving as the routers in
    /// the netns matrix do: a dial into a NAT that filters strangers gets in only after a
    /// punch, what the plan has a side do works, and the target's dials arrive as inbound
    /// connections.
    fn cell(a: Nat, b: Nat, b_tcp_reachable: bool) -> ConnectReport {
        let (fa, mut fb) = (facts_of(a), facts_of(b));
        fb.tcp_reachable = b_tcp_reachable;
        let mut sim = Sim::new(start(HubLine::Up, Vec::new(), Vec::new(), fa));
        assert_eq!(sim.log, [Action::Resolve]);
        let b_public = Address::quic(B_PUBLIC.parse().unwrap());
        sim.s.handle_resolved(
            sim.now,
            Ok(Some(HubView {
                online: true,
                observed: Some(b_public),
            })),
        );
        sim.pump();
        assert!(
            sim.log
                .iter()
                .any(|a| matches!(a, Action::SendSignal(Signal::Connect { .. }))),
            "{:?}",
            sim.log
        );
        let known_dial = sim.running(|w| {
            matches!(
                w,
                Work::Dial {
                    made: Made::KnownAddressDial { .. },
                    ..
                }
            )
        });
        assert_eq!(known_dial.len(), 1);
        sim.advance(Duration::from_millis(5));
        let open = |f: &Facts| facts_open(f);
        if fa.udp && open(&fb) {
            // B lets anyone in: our dial of its public address lands before its answer.
            sim.connected(known_dial[0], false);
            assert!(sim.done.is_none(), "the label waits for B's answer");
            sim.advance(Duration::from_millis(5));
            sim.accept(fb, None);
            return sim.report();
        }
        // B's answer, after its first part; then both parts run.
        let TargetAnswer::Accept { actions: t, .. } = answer_connect(true, true, &fa, &fb) else {
            panic!("B refused");
        };
        sim.advance(Duration::from_millis(5));
        let tcp = b_tcp_reachable.then(|| Address::tcp(B_TCP.parse().unwrap()));
        sim.accept(fb, tcp);
        if sim.done.is_some() {
            return sim.report();
        }
        // Past the stagger of a TCP dial (300 ms), well before any deadline.
        sim.advance(Duration::from_millis(400));
        let ours = sim.running(|w| match w {
            Work::Dial { made, .. } => matches!(made, Made::PlanDial { .. }),
            Work::Birthday { .. } | Work::TcpSimultaneousOpen { .. } | Work::Relay => true,
            Work::Punch { .. } | Work::Spray { .. } => false,
        });
        if let Some(id) = ours.first() {
            sim.connected(*id, false);
        } else if t.dial_udp || t.birthday {
            sim.inbound(TransportKind::Quic);
        } else if t.dial_tcp {
            sim.inbound(TransportKind::Tcp);
        } else {
            panic!("{a:?} -> {b:?}: nobody can connect: {:?}", sim.log);
        }
        sim.report()
    }

    #[test]
    fn every_cell_of_the_nat_matrix_gets_its_path() {
        for a in ALL {
            for b in ALL {
                let report = cell(a, b, false);
                assert_eq!(report.path, expected(a, b), "{a:?} -> {b:?}: {report:#?}");
                let tcp = a == UdpBlocked || b == UdpBlocked;
                if report.path == PathKind::HolePunched {
                    let want = if tcp {
                        TransportKind::Tcp
                    } else {
                        TransportKind::Quic
                    };
                    assert_eq!(report.transport, want, "{a:?} -> {b:?}");
                }
                assert_eq!(report.remote, Some(facts_of(b)), "{a:?} -> {b:?}");
                assert_eq!(report.attempts.last().unwrap().method, "connected");
            }
        }
    }

    #[test]
    fn the_birthday_and_spray_cells_use_them() {
        // A port-restricted, B symmetric: A sprays, B's birthday socket dials in.
        let mut sim_a = cell(PortRestricted, Symmetric, false);
        assert!(sim_a.why.contains("punched hole arrived"), "{sim_a:#?}");
        // A symmetric, B port-restricted: A's own birthday socket dials.
        sim_a = cell(Symmetric, PortRestricted, false);
        assert_eq!(sim_a.path, PathKind::HolePunched);
        assert!(
            sim_a.why.contains("our dial through the punched hole"),
            "{sim_a:#?}"
        );
    }

    #[test]
    fn a_forwarded_tcp_port_gives_a_direct_or_callback_path_over_tcp() {
        let r = cell(UdpBlocked, PortRestricted, true);
        assert_eq!(
            (r.path, r.transport),
            (PathKind::Direct, TransportKind::Tcp),
            "{r:#?}"
        );
        // The reverse: A's TCP is reachable, B has no UDP: B's TCP callback arrives.
        let (mut fa, fb) = (facts_of(PortRestricted), facts_of(UdpBlocked));
        fa.tcp_reachable = true;
        let p = plan::plan(&fa, &fb);
        assert!(p.target.dial_tcp && !p.requester.dial_tcp, "{p:?}");
        let mut sim = Sim::new(start(HubLine::Up, Vec::new(), Vec::new(), fa));
        sim.s.handle_resolved(
            sim.now,
            Ok(Some(HubView {
                online: true,
                observed: None,
            })),
        );
        sim.pump();
        sim.accept(fb, None);
        sim.inbound(TransportKind::Tcp);
        let r = sim.report();
        assert_eq!(
            (r.path, r.transport),
            (PathKind::Callback, TransportKind::Tcp)
        );
    }

    #[test]
    fn a_known_dial_is_punched_only_when_a_punch_let_it_in() {
        // Cone to cone: our dial of B's public address needed a retransmission after our
        // punch started: the punch made the path.
        let run = |needed_retransmission: bool, b: Nat| {
            let mut sim = Sim::new(start(
                HubLine::Up,
                Vec::new(),
                Vec::new(),
                facts_of(AddressRestricted),
            ));
            sim.s.handle_resolved(
                sim.now,
                Ok(Some(HubView {
                    online: true,
                    observed: Some(Address::quic(B_PUBLIC.parse().unwrap())),
                })),
            );
            sim.pump();
            sim.advance(Duration::from_millis(10));
            sim.accept(facts_of(b), None);
            let known = sim.running(|w| {
                matches!(
                    w,
                    Work::Dial {
                        method: "direct",
                        ..
                    }
                )
            });
            sim.connected(known[0], needed_retransmission);
            sim.report()
        };
        assert_eq!(run(true, PortRestricted).path, PathKind::HolePunched);
        // Unknown filtering proves nothing: a dial that got in at once is direct.
        let unknown = Facts::unknown();
        let labelling = Labelling {
            role: Role::Requester,
            signalled: true,
            punching: true,
            remote: Some(unknown),
        };
        let quick = Made::KnownAddressDial {
            transport: TransportKind::Quic,
            needed_retransmission: false,
        };
        assert_eq!(label_path(quick, &labelling), PathKind::Direct);
        // An open target: our dial got in by itself, retransmitted or not.
        assert_eq!(run(false, FullCone).path, PathKind::Direct);
    }

    #[test]
    fn label_path_decides_each_kind_of_connection() {
        let base = Labelling {
            role: Role::Requester,
            signalled: false,
            punching: false,
            remote: None,
        };
        let signalled = Labelling {
            signalled: true,
            ..base
        };
        let punching = Labelling {
            punching: true,
            ..signalled
        };
        let target = Labelling {
            role: Role::Target,
            ..base
        };
        let quic_plan = Made::PlanDial {
            transport: TransportKind::Quic,
        };
        let tcp_plan = Made::PlanDial {
            transport: TransportKind::Tcp,
        };
        let cases = [
            (Made::Accepted, base, PathKind::Direct),
            (Made::Accepted, signalled, PathKind::Callback),
            (Made::Accepted, punching, PathKind::HolePunched),
            (Made::Accepted, target, PathKind::Direct),
            (
                Made::Accepted,
                Labelling {
                    punching: true,
                    ..target
                },
                PathKind::HolePunched,
            ),
            (quic_plan, target, PathKind::Callback),
            (tcp_plan, target, PathKind::Callback),
            (tcp_plan, punching, PathKind::Direct),
            (quic_plan, signalled, PathKind::Direct),
            (
                quic_plan,
                Labelling {
                    remote: Some(facts_of(PortRestricted)),
                    ..signalled
                },
                PathKind::HolePunched,
            ),
            (Made::Birthday, target, PathKind::HolePunched),
            (Made::TcpSimultaneousOpen, base, PathKind::HolePunched),
            (Made::Relay, punching, PathKind::Relayed),
        ];
        for (made, at, want) in cases {
            assert_eq!(label_path(made, &at), want, "{made:?} with {at:?}");
        }
    }

    #[test]
    fn without_an_answer_the_relay_starts_after_relay_after() {
        let mut sim = Sim::new(start(HubLine::Up, Vec::new(), Vec::new(), Facts::unknown()));
        sim.s.handle_resolved(
            sim.now,
            Ok(Some(HubView {
                online: true,
                observed: Some(Address::quic(B_PUBLIC.parse().unwrap())),
            })),
        );
        sim.pump();
        let known = sim.running(|w| matches!(w, Work::Dial { .. }));
        sim.advance(Duration::from_secs(3));
        sim.ended(known[0], "no answer within 3s");
        assert!(
            sim.running(|w| *w == Work::Relay).is_empty(),
            "relay too early"
        );
        sim.advance(Duration::from_secs(1));
        let relay = sim.running(|w| *w == Work::Relay);
        assert_eq!(relay.len(), 1, "{:?}", sim.log);
        assert_eq!(sim.ms(), 4000);
        sim.connected(relay[0], false);
        let r = sim.report();
        assert_eq!(r.path, PathKind::Relayed);
        assert!(r.why.contains("nothing direct within 4s"), "{r:#?}");
        let methods: Vec<_> = r
            .attempts
            .iter()
            .map(|a| (&*a.method, &*a.outcome))
            .collect();
        assert!(
            methods.contains(&("signal", "no answer within 3s")),
            "{methods:?}"
        );
        // Behind the relay the session goes on until the punch window ends, then stops and
        // withdraws its announcement.
        assert!(!sim.s.is_closed());
        sim.advance(Duration::from_secs(12));
        assert!(sim.s.is_closed() && sim.stopped);
        assert_eq!(sim.announced, None);
    }

    #[test]
    fn a_punched_connection_behind_the_relay_ends_the_session() {
        let (fa, fb) = (facts_of(Symmetric), facts_of(Symmetric));
        let mut sim = Sim::new(start(HubLine::Up, Vec::new(), Vec::new(), fa));
        sim.s.handle_resolved(
            sim.now,
            Ok(Some(HubView {
                online: true,
                observed: None,
            })),
        );
        sim.pump();
        sim.accept(fb, None);
        // Both symmetric: the plan relays at once.
        let relay = sim.running(|w| *w == Work::Relay);
        assert_eq!(relay.len(), 1);
        sim.connected(relay[0], false);
        assert!(sim.report().why.contains("no direct path can work"));
        sim.advance(Duration::from_secs(1));
        sim.inbound(TransportKind::Quic);
        assert!(sim.s.is_closed() && sim.stopped);
    }

    #[test]
    fn a_refusal_is_reported_and_the_relay_follows() {
        let mut sim = Sim::new(start(HubLine::Up, Vec::new(), Vec::new(), Facts::unknown()));
        sim.s.handle_resolved(
            sim.now,
            Ok(Some(HubView {
                online: true,
                observed: None,
            })),
        );
        sim.pump();
        let refuse = Signal::Refuse {
            session: [7; 16],
            reason: "busy".into(),
        };
        // An answer to another session changes nothing.
        let stray = Signal::Refuse {
            session: [8; 16],
            reason: "stray".into(),
        };
        sim.s.handle_answer(sim.now, stray, None);
        sim.s.handle_answer(sim.now, refuse, None);
        sim.pump();
        sim.advance(Duration::from_secs(4));
        let relay = sim.running(|w| *w == Work::Relay);
        sim.ended(relay[0], "the target is not online");
        let e = sim.error();
        let outcomes: Vec<_> = e.attempts.iter().map(|a| a.outcome.as_str()).collect();
        assert!(outcomes.contains(&"refused: busy"), "{outcomes:?}");
        assert!(
            !outcomes.iter().any(|o| o.contains("stray")),
            "{outcomes:?}"
        );
        assert!(
            e.to_string().contains("relay: the target is not online"),
            "{e}"
        );
        assert!(sim.stopped);
    }

    #[test]
    fn a_closed_endpoint_ends_the_session_in_any_phase() {
        let mut sim = Sim::new(start(HubLine::Up, Vec::new(), Vec::new(), Facts::unknown()));
        sim.s.handle_endpoint_closed(sim.now);
        sim.pump();
        assert!(sim.error().to_string().contains("endpoint: closed"));
        assert!(sim.s.is_closed() && sim.s.poll_timeout().is_none());
    }

    #[test]
    fn no_hub_no_address_no_source_fails_at_once() {
        let sim = Sim::new(start(
            HubLine::None,
            Vec::new(),
            Vec::new(),
            Facts::unknown(),
        ));
        let e = sim.error();
        assert!(e.attempts.is_empty());
        assert!(e.to_string().contains("no address, no hub"), "{e}");
        assert!(sim.s.is_closed());
    }

    #[test]
    fn a_peer_that_connects_meanwhile_wins_and_the_rest_stops() {
        let known = vec![
            Address::quic("192.0.2.5:1".parse().unwrap()),
            Address::quic("192.0.2.6:1".parse().unwrap()),
            Address::tcp("192.0.2.5:2".parse().unwrap()),
        ];
        let mut sim = Sim::new(start(HubLine::None, known, Vec::new(), Facts::unknown()));
        // Staggered: the first at once, the next 200 ms later, TCP after.
        assert_eq!(sim.started.len(), 1);
        sim.advance(STAGGER);
        assert_eq!(sim.started.len(), 2);
        sim.inbound(TransportKind::Quic);
        let r = sim.report();
        assert_eq!(r.path, PathKind::Direct);
        assert_eq!(r.why, "the peer dialled us");
        sim.advance(Duration::from_secs(5));
        assert_eq!(sim.started.len(), 2, "no dial after the win");
        assert!(sim.stopped);
    }

    #[test]
    fn dials_that_all_fail_fail_the_connect_without_a_hub() {
        let known = vec![Address::quic("192.0.2.5:1".parse().unwrap())];
        let mut sim = Sim::new(start(HubLine::None, known, Vec::new(), Facts::unknown()));
        sim.advance(Duration::from_secs(3));
        sim.ended(0, "no answer within 3s");
        let e = sim.error();
        assert_eq!(e.attempts[0].method, "direct quic://192.0.2.5:1", "{e:?}");
        assert_eq!(e.attempts[0].outcome, "no answer within 3s");
        assert!(sim.stopped);
    }

    fn lan() -> SourceView {
        SourceView {
            name: "lan",
            asked_ago: None,
        }
    }
    fn dht(asked_ago: Option<Duration>) -> SourceView {
        SourceView {
            name: "dht",
            asked_ago,
        }
    }

    #[test]
    fn with_the_hub_down_the_lan_is_asked_first_and_the_dht_not_after_it_found() {
        let stale = Address::quic("192.0.2.9:1".parse().unwrap());
        let mut sim = Sim::new(start(
            HubLine::Down("offline".into()),
            vec![stale],
            vec![lan(), dht(None)],
            Facts::unknown(),
        ));
        assert_eq!(sim.log, [Action::Lookup { source: 0 }]);
        let found = Address::quic("192.168.1.7:4433".parse().unwrap());
        sim.s.handle_lookup(sim.now, 0, Ok(vec![found]));
        sim.pump();
        assert_eq!(sim.log[1], Action::Remember(vec![found]));
        assert!(!sim.log.contains(&Action::Lookup { source: 1 }));
        // The found address first (fresh, signed), then the address book's.
        let Work::Dial { address, .. } = &sim.started[0].1 else {
            panic!()
        };
        assert_eq!(*address, found);
        sim.connected(0, false);
        let r = sim.report();
        assert_eq!(r.path, PathKind::Direct);
        let methods: Vec<_> = r.attempts.iter().map(|a| a.method.as_str()).collect();
        assert_eq!(methods, ["resolve", "lookup lan", "connected"]);
        assert!(r.attempts[0].outcome.contains("offline: not asked"));
    }

    #[test]
    fn a_peer_unknown_at_the_hub_is_looked_up_on_the_dht_once_a_minute() {
        let b = Address::quic("198.51.100.9:1".parse().unwrap());
        let mut sim = Sim::new(start(
            HubLine::Up,
            Vec::new(),
            vec![lan(), dht(None)],
            Facts::unknown(),
        ));
        sim.s.handle_resolved(sim.now, Ok(None));
        sim.pump();
        sim.s
            .handle_lookup(sim.now, 0, Err("not heard on the LAN within 100 s".into()));
        sim.pump();
        assert!(sim.log.contains(&Action::Lookup { source: 1 }));
        // A late answer of the LAN changes nothing.
        sim.s.handle_lookup(sim.now, 0, Ok(vec![b]));
        sim.pump();
        assert!(sim.started.is_empty());
        sim.s.handle_lookup(sim.now, 1, Ok(vec![b]));
        sim.pump();
        assert!(sim.log.contains(&Action::Remember(vec![b])));
        assert_eq!(sim.started.len(), 1);
        // Asked 20 s ago: not again; with nothing else, the hub's relay is what is left.
        let mut sim = Sim::new(start(
            HubLine::Up,
            Vec::new(),
            vec![dht(Some(Duration::from_secs(20)))],
            Facts::unknown(),
        ));
        sim.s.handle_resolved(sim.now, Ok(None));
        sim.pump();
        assert!(!sim.log.iter().any(|a| matches!(a, Action::Lookup { .. })));
        sim.advance(Duration::from_secs(4));
        let relay = sim.running(|w| *w == Work::Relay);
        sim.ended(relay[0], "not online");
        let e = sim.error();
        assert!(
            e.attempts
                .iter()
                .any(|a| a.method == "lookup dht" && a.outcome.contains("looked up 20 s ago")),
            "{e:?}"
        );
    }

    #[test]
    fn a_lookup_that_does_not_answer_is_passed_over() {
        let mut sim = Sim::new(start(
            HubLine::None,
            Vec::new(),
            vec![dht(None)],
            Facts::unknown(),
        ));
        sim.advance(Duration::from_secs(9));
        assert!(sim.done.is_none());
        sim.advance(Duration::from_secs(1));
        let e = sim.error();
        assert_eq!(e.attempts[0].outcome, "no answer within 10s");
    }

    #[test]
    fn the_upgrade_behind_a_relay_never_relays() {
        let mut start = start(HubLine::Up, Vec::new(), Vec::new(), Facts::unknown());
        start.relay = false;
        let mut sim = Sim::new(start);
        sim.s.handle_resolved(
            sim.now,
            Ok(Some(HubView {
                online: true,
                observed: None,
            })),
        );
        sim.pump();
        sim.advance(Duration::from_secs(30));
        assert!(sim.running(|w| *w == Work::Relay).is_empty());
        let e = sim.error();
        assert!(
            e.attempts.iter().any(|a| a.outcome.contains("no answer")),
            "{e:?}"
        );
    }

    #[test]
    fn the_target_refuses_or_plays_its_part() {
        let unknown = Facts::unknown();
        assert_eq!(
            answer_connect(false, true, &unknown, &unknown),
            TargetAnswer::Refuse("not accepted")
        );
        assert_eq!(
            answer_connect(true, false, &unknown, &unknown),
            TargetAnswer::Refuse("busy")
        );
        // Cone to cone: the target punches first, and the requester's dial that arrives
        // meanwhile came through the hole.
        let a = facts_of(PortRestricted);
        let TargetAnswer::Accept {
            actions,
            inbound,
            punch_first,
        } = answer_connect(true, true, &a, &facts_of(AddressRestricted))
        else {
            panic!()
        };
        assert!(actions.punch && punch_first);
        assert_eq!(inbound, PathKind::HolePunched);
        // Callback: its dials are labelled callback.
        let full = facts_of(FullCone);
        let TargetAnswer::Accept {
            actions, inbound, ..
        } = answer_connect(true, true, &full, &facts_of(Symmetric))
        else {
            panic!()
        };
        assert_eq!(inbound, PathKind::Direct);
        let remote = Remote {
            candidates: vec![Address::quic("203.0.113.1:5000".parse().unwrap())],
            observed: Some("203.0.113.1:5000".parse().unwrap()),
            tcp_port: None,
        };
        let labelling = target_labelling(&actions, &full);
        let cfg = ConnectorConfig::default();
        let works = part_work(&Part {
            role: Role::Target,
            actions,
            remote: &remote,
            own_tcp_port: None,
            as_client: false,
            labelling: &labelling,
            config: &cfg,
        });
        assert_eq!(
            works.len(),
            1,
            "one dial, the duplicate candidate dropped: {works:?}"
        );
        assert!(matches!(
            works[0].1,
            Work::Dial {
                label: PathKind::Callback,
                method: "callback",
                ..
            }
        ));
    }

    #[test]
    fn recent_lookups_stay_bounded() {
        let mut recent = RecentLookups::default();
        let t0 = Instant::now();
        for i in 0..(MAX_REMEMBERED_LOOKUPS + 10) {
            let mut key = [0u8; 32];
            key[..8].copy_from_slice(&(i as u64).to_le_bytes());
            recent.record(
                "dht",
                PeerId::from_public_key(key),
                t0 + Duration::from_millis(i as u64),
            );
        }
        assert_eq!(recent.len(), MAX_REMEMBERED_LOOKUPS);
        // The oldest went; the newest is remembered until a minute has passed.
        let newest = {
            let mut key = [0u8; 32];
            key[..8].copy_from_slice(&((MAX_REMEMBERED_LOOKUPS + 9) as u64).to_le_bytes());
            PeerId::from_public_key(key)
        };
        let at = t0 + Duration::from_millis((MAX_REMEMBERED_LOOKUPS + 9) as u64);
        assert_eq!(recent.asked_ago("dht", newest, at), Some(Duration::ZERO));
        assert_eq!(recent.asked_ago("lan", newest, at), None);
        assert_eq!(
            recent.asked_ago("dht", newest, at + LOOKUP_AGAIN_AFTER),
            None
        );
        assert_eq!(
            recent.asked_ago("dht", PeerId::from_public_key([0; 32]), at),
            None
        );
    }
}
