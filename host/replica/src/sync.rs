//! The sync session with one peer over one `allpeers/sync/1` stream: reconciliation of each
//! share's live ops, then the missing ops both ways, then pushes of new ops. I/O-free, in the
//! quinn-proto style: feed it frames ([`SyncPeer::handle`]), local ops ([`SyncPeer::push`]) and
//! time ([`SyncPeer::handle_timeout`]); take frames to send ([`SyncPeer::poll_transmit`]) and
//! events ([`SyncPeer::poll_event`]).
//!
//! ## Access
//! Before answering anything about a share, and before sending any op of it, the session asks
//! the share's replica for the peer's *current* level. A peer that is not a member (or was
//! revoked, as soon as the revocation is here) gets [`Message::Unknown`], exactly as for a share
//! that does not exist here, and never an op. Ops received from a non-member are ignored; from a
//! member they are checked by signature and validity, not by who brought them, so any member
//! forwards while the author is offline.
//!
//! ## Bounds
//! Frames are at most [`MAX_FRAME_BYTES`]; at most [`MAX_WANTED_IN_FLIGHT`] op ids are asked for
//! at once; a peer that claims ops and does not send them within [`WANT_TIMEOUT_MS`] of the last
//! progress is given up on: the session reports what is missing and moves on (the next round
//! asks again).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};

use allpeers_model::id::PeerId;

use crate::op::{Action, MAX_OP_BYTES, Op, OpId, ShareId, verify_many};
use crate::reconcile::{MAX_MESSAGE_BYTES, ReconError, Reconciler};
use crate::replica::{Accepted, Refused, Replica};
use crate::wire::{Reader, WireError, Writer};

/// The service name of the stream the daemon opens for sync.
pub const SERVICE: &str = "allpeers/sync/1";
/// One frame: a full reconciliation message or a batch of ops, plus the header.
pub const MAX_FRAME_BYTES: usize = MAX_MESSAGE_BYTES + 1024;
/// Ids one `Want` frame asks for at most: 32 bytes each, well inside a frame, and answered by
/// about a frame of ops (~250 bytes each).
pub const MAX_WANTED_PER_FRAME: usize = 4096;
/// Ids asked for at once, over a few `Want` frames: their answers travel as one request and are
/// committed together (fewer, bigger store transactions on an initial sync), and this bounds
/// what a peer's answers can make us hold.
pub const MAX_WANTED_IN_FLIGHT: usize = 4 * MAX_WANTED_PER_FRAME;
/// A peer that sends none of the ops we asked for in this long is given up on.
pub const WANT_TIMEOUT_MS: u64 = 30_000;
/// Ops a peer may push to us unasked in one share, per second, after a burst of
/// [`PUSH_BURST_PER_SHARE`]. Why there is a limit: every op costs a signature verification
/// and its share of a store commit, under the store's lock that every other peer's frames and
/// every local write wait for; one member flooding a share must not starve the others. Ops
/// over the limit are dropped unread (not refused: nothing is recorded about them) and the
/// session reconciles the share, so they come back as answers to our own `Want`s, at the pace
/// we ask (at most [`MAX_WANTED_IN_FLIGHT`] a round trip). A person's edits are a few a
/// second; the burst takes a big local commit's pushes (a list of a few thousand items
/// shared at once).
pub const PUSHED_OPS_PER_SECOND_PER_SHARE: u64 = 500;
pub const PUSH_BURST_PER_SHARE: u64 = 5_000;
/// The same for everything one peer pushes, all shares together: a member of many shares
/// floods no more than one of a few.
pub const PUSHED_OPS_PER_SECOND_PER_PEER: u64 = 2 * PUSHED_OPS_PER_SECOND_PER_SHARE;
pub const PUSH_BURST_PER_PEER: u64 = 2 * PUSH_BURST_PER_SHARE;
/// Frames one request carries at most: the daemon sends what is queued for a peer as one
/// request, handled and committed at once (one store transaction, not one per frame).
pub const MAX_FRAMES_PER_REQUEST: usize = 64;
/// A request's bytes at most: a few full frames (an initial sync's ops arrive a few MiB a
/// commit), and what one peer's request may make us hold in memory.
pub const MAX_REQUEST_BYTES: usize = 4 * MAX_FRAME_BYTES;

/// Reconciliations whose coded symbols one peer may make us hold between batches at once (each
/// up to ~1.1 MB, see `reconcile::coded::MAX_SYMBOLS`); past it, another share's session lets go
/// of its symbols and goes on with negentropy's fingerprints.
pub const MAX_DECODING_SESSIONS: usize = 8;

/// Frames as one request: a count, then each frame length-prefixed.
pub fn encode_frames(frames: &[Vec<u8>]) -> Vec<u8> {
    let mut w = Writer::default();
    w.varint(frames.len() as u64);
    for frame in frames {
        w.blob(frame);
    }
    w.out
}

/// The frames of one request; the request, the count and every frame are bounded before
/// anything is allocated.
pub fn decode_frames(request: &[u8]) -> Result<Vec<&[u8]>, SyncError> {
    if request.len() > MAX_REQUEST_BYTES {
        return Err(SyncError::RequestTooLarge(request.len()));
    }
    let mut r = Reader::new(request);
    let n = r.bounded("frames in a request", MAX_FRAMES_PER_REQUEST as u64)? as usize;
    let frames = (0..n)
        .map(|_| r.blob("frame", MAX_FRAME_BYTES))
        .collect::<Result<Vec<_>, _>>()?;
    r.finish()?;
    Ok(frames)
}

/// The bytes a frame adds to a request ([`encode_frames`]): its length prefix and itself.
pub fn framed_len(frame: &[u8]) -> usize {
    frame.len() + crate::wire::MAX_VARINT_BYTES
}

#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    /// A negentropy message from the initiator.
    Reconcile { share: ShareId, payload: Vec<u8> },
    /// The responder's negentropy reply.
    ReconcileReply { share: ShareId, payload: Vec<u8> },
    /// "No such share": the answer to a non-member, and for a share we do not hold.
    Unknown { share: ShareId },
    /// Asks for live ops by id.
    Want { share: ShareId, ids: Vec<OpId> },
    /// Ops in their wire form: answers to `Want`, what the initiator has and the responder
    /// lacks, and pushes of new ops.
    Ops { share: ShareId, ops: Vec<Vec<u8>> },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SyncError {
    #[error("malformed sync frame: {0}")]
    Wire(#[from] WireError),
    #[error("sync frame of {0} bytes is above the limit of {MAX_FRAME_BYTES}")]
    FrameTooLarge(usize),
    #[error("sync request of {0} bytes is above the limit of {MAX_REQUEST_BYTES}")]
    RequestTooLarge(usize),
    #[error("unknown sync message tag {0}")]
    Tag(u8),
    #[error(transparent)]
    Reconcile(#[from] ReconError),
    #[error("we do not hold share {0}")]
    NoSuchShare(ShareId),
    #[error("the peer is not a member of share {0}")]
    NotAMember(ShareId),
}

impl Message {
    pub fn share(&self) -> ShareId {
        match self {
            Message::Reconcile { share, .. }
            | Message::ReconcileReply { share, .. }
            | Message::Unknown { share }
            | Message::Want { share, .. }
            | Message::Ops { share, .. } => *share,
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::default();
        let (tag, share) = match self {
            Message::Reconcile { share, .. } => (1, share),
            Message::ReconcileReply { share, .. } => (2, share),
            Message::Unknown { share } => (3, share),
            Message::Want { share, .. } => (4, share),
            Message::Ops { share, .. } => (5, share),
        };
        w.u8(tag);
        w.bytes(&share.0);
        match self {
            Message::Reconcile { payload, .. } | Message::ReconcileReply { payload, .. } => {
                w.blob(payload)
            }
            Message::Unknown { .. } => {}
            Message::Want { ids, .. } => {
                w.varint(ids.len() as u64);
                for id in ids {
                    w.bytes(&id.0);
                }
            }
            Message::Ops { ops, .. } => {
                w.varint(ops.len() as u64);
                for op in ops {
                    w.blob(op);
                }
            }
        }
        w.out
    }

    /// Decodes one frame; every count and length is bounded before anything is allocated.
    pub fn decode(frame: &[u8]) -> Result<Message, SyncError> {
        if frame.len() > MAX_FRAME_BYTES {
            return Err(SyncError::FrameTooLarge(frame.len()));
        }
        let mut r = Reader::new(frame);
        let tag = r.u8()?;
        let share = OpId(r.array()?);
        let message = match tag {
            1 | 2 => {
                let payload = r
                    .blob("reconciliation message", MAX_MESSAGE_BYTES)?
                    .to_vec();
                if tag == 1 {
                    Message::Reconcile { share, payload }
                } else {
                    Message::ReconcileReply { share, payload }
                }
            }
            3 => Message::Unknown { share },
            4 => {
                let n = r.bounded("wanted ids", MAX_WANTED_PER_FRAME as u64)? as usize;
                let ids = (0..n)
                    .map(|_| r.array().map(OpId))
                    .collect::<Result<Vec<_>, _>>()?;
                Message::Want { share, ids }
            }
            5 => {
                // Each op takes at least its length byte: the frame bounds the count.
                let n = r.bounded("ops in a frame", r.remaining() as u64)? as usize;
                let ops = (0..n)
                    .map(|_| r.blob("op", MAX_OP_BYTES).map(<[u8]>::to_vec))
                    .collect::<Result<Vec<_>, _>>()?;
                Message::Ops { share, ops }
            }
            other => return Err(SyncError::Tag(other)),
        };
        r.finish()?;
        Ok(message)
    }
}

/// The daemon's shares, as the session sees them.
pub trait Shares {
    fn replica(&mut self, share: &ShareId) -> Option<&mut Replica>;
}

impl Shares for BTreeMap<ShareId, Replica> {
    fn replica(&mut self, share: &ShareId) -> Option<&mut Replica> {
        self.get_mut(share)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A reconciliation we started is complete: everything the peer had that we lacked has
    /// arrived (or was given up on: `missing`).
    Reconciled {
        share: ShareId,
        round_trips: usize,
        sent: usize,
        received: usize,
        missing: usize,
    },
    /// The peer does not know the share, or does not count us as a member.
    Unknown { share: ShareId },
    /// A frame from the peer could not be used (the session goes on).
    BadFrame(SyncError),
    /// The peer pushed more ops than the push limit allows: `dropped` were not read, and a
    /// reconciliation of the share fetches them at our pace.
    Throttled { share: ShareId, dropped: usize },
}

/// A token bucket on the caller's clock: `per_second` tokens a second, at most `burst` held.
#[derive(Debug, Clone)]
struct Bucket {
    /// Tokens, in thousandths (whole tokens refill in steps of 1/`per_second` s).
    milli: u64,
    at_ms: u64,
    per_second: u64,
    burst: u64,
}

impl Bucket {
    fn full(per_second: u64, burst: u64, now_ms: u64) -> Bucket {
        Bucket {
            milli: burst * 1000,
            at_ms: now_ms,
            per_second,
            burst,
        }
    }

    fn refill(&mut self, now_ms: u64) {
        let elapsed = now_ms.saturating_sub(self.at_ms);
        self.milli = self
            .milli
            .saturating_add(elapsed.saturating_mul(self.per_second))
            .min(self.burst * 1000);
        self.at_ms = self.at_ms.max(now_ms);
    }

    fn has_one(&self) -> bool {
        self.milli >= 1000
    }

    fn take_one(&mut self) {
        self.milli -= 1000;
    }
}

/// What a peer may still push us unasked ([`PUSHED_OPS_PER_SECOND_PER_SHARE`]): per share
/// (shares the peer may sync with us, so bounded by them), and all together. The daemon keeps
/// them when a session ends ([`SyncPeer::into_budgets`], [`SyncPeer::resume`]): a peer that
/// reconnects must not start again with a full burst.
#[derive(Debug, Clone, Default)]
pub struct PushBudgets {
    per_share: HashMap<ShareId, Bucket>,
    per_peer: Option<Bucket>,
}

struct Initiated {
    reconciler: Reconciler,
    round_trips: usize,
    reconciled: bool,
    /// Ids to ask for, not yet asked.
    to_want: VecDeque<OpId>,
    /// Ids asked for and not yet received.
    wanted: HashSet<OpId>,
    deadline: Option<u64>,
    sent: usize,
    received: usize,
    missing: usize,
}

/// Sync with one peer, over all shares we have in common.
pub struct SyncPeer {
    peer: PeerId,
    frame_limit: usize,
    initiated: HashMap<ShareId, Initiated>,
    responders: HashMap<ShareId, Reconciler>,
    /// When the peer last asked us for ops of each share (a `Want`): while it fetches, our own
    /// reconciliations of the share send it nothing unasked (it asks for what it lacks; sending
    /// the same ops unasked doubled an initial sync's traffic, and its push limit dropped them).
    fetching: HashMap<ShareId, u64>,
    transmit: VecDeque<Vec<u8>>,
    /// Pushed ops not yet framed: pushes in a row for one share travel as one `Ops` frame (a
    /// commit of 2,000 ops is a couple of frames, not 2,000), up to [`MAX_MESSAGE_BYTES`].
    pushing: Option<(ShareId, Vec<Vec<u8>>, usize)>,
    events: VecDeque<Event>,
    budgets: PushBudgets,
    /// (per second, burst) per share and per peer: the constants, smaller in tests.
    push_limits: [(u64, u64); 2],
}

impl SyncPeer {
    /// `frame_limit` bounds the reconciliation messages we write (at least
    /// [`crate::reconcile::MIN_FRAME_LIMIT`], at most [`MAX_MESSAGE_BYTES`]).
    pub fn new(peer: PeerId, frame_limit: usize) -> SyncPeer {
        SyncPeer {
            peer,
            frame_limit: frame_limit.clamp(crate::reconcile::MIN_FRAME_LIMIT, MAX_MESSAGE_BYTES),
            initiated: HashMap::new(),
            responders: HashMap::new(),
            fetching: HashMap::new(),
            transmit: VecDeque::new(),
            pushing: None,
            events: VecDeque::new(),
            budgets: PushBudgets::default(),
            push_limits: [
                (PUSHED_OPS_PER_SECOND_PER_SHARE, PUSH_BURST_PER_SHARE),
                (PUSHED_OPS_PER_SECOND_PER_PEER, PUSH_BURST_PER_PEER),
            ],
        }
    }

    /// A new session with `peer` that goes on with the push budgets its last session left.
    pub fn resume(peer: PeerId, frame_limit: usize, budgets: PushBudgets) -> SyncPeer {
        SyncPeer {
            budgets,
            ..SyncPeer::new(peer, frame_limit)
        }
    }

    /// Ends the session, keeping what the peer may still push us for its next one.
    pub fn into_budgets(self) -> PushBudgets {
        self.budgets
    }

    /// Smaller push limits, so a test floods with a few hundred ops, not thousands.
    #[cfg(test)]
    fn limit_pushes(&mut self, per_share: (u64, u64), per_peer: (u64, u64)) {
        self.push_limits = [per_share, per_peer];
    }

    pub fn peer(&self) -> PeerId {
        self.peer
    }

    /// Whether the peer may sync `replica` with us: a member now. A replica whose genesis has
    /// not arrived yet (a share just accepted) knows no members and holds nothing to reveal;
    /// it syncs with whoever offered it, as its ops are self-certifying (the genesis must hash
    /// to the share id, every other op waits for its parents and is judged on arrival).
    fn member(&self, replica: &Replica) -> bool {
        replica.owner().is_none() || replica.level(&self.peer).is_some()
    }

    /// Keeps at most [`MAX_DECODING_SESSIONS`] of the peer's reconciliations holding symbols: past
    /// it, others than `share`'s (just answered) let go of theirs.
    fn bound_decoding_sessions(&mut self, share: ShareId) {
        self.responders
            .iter_mut()
            .filter(|(id, r)| **id != share && r.holds_symbols())
            .skip(MAX_DECODING_SESSIONS.saturating_sub(1))
            .for_each(|(_, r)| r.drop_symbols());
    }

    /// Starts reconciling `share` (on connect, and periodically).
    pub fn start(
        &mut self,
        share: ShareId,
        shares: &mut impl Shares,
        now_ms: u64,
    ) -> Result<(), SyncError> {
        let replica = shares
            .replica(&share)
            .ok_or(SyncError::NoSuchShare(share))?;
        if !self.member(replica) {
            return Err(SyncError::NotAMember(share));
        }
        let mut reconciler = Reconciler::new(self.frame_limit, true)?;
        let payload = reconciler.initiate(replica.items())?;
        self.initiated.insert(
            share,
            Initiated {
                reconciler,
                round_trips: 1,
                reconciled: false,
                to_want: VecDeque::new(),
                wanted: HashSet::new(),
                // A peer that never replies is given up on like one that never sends ops.
                deadline: Some(now_ms + WANT_TIMEOUT_MS),
                sent: 0,
                received: 0,
                missing: 0,
            },
        );
        self.send(Message::Reconcile { share, payload });
        Ok(())
    }

    /// Sends a new local (or newly received) op to the peer, if the peer is a member now.
    pub fn push(&mut self, op: &Op, shares: &mut impl Shares) {
        let share = op.body().share;
        let share = if share == OpId::ZERO { op.id() } else { share };
        // A member's own revocation goes to it too: it is how a revoked member learns it is out
        // (the op names the share, its author and its parents; no content).
        let about_peer =
            matches!(&op.body().action, Action::Revoke { member, .. } if *member == self.peer);
        if let Some(replica) = shares.replica(&share)
            && (self.member(replica) || about_peer)
        {
            // An op's length prefix and the frame's header, generously.
            let cost = op.wire().len() + 16;
            let fits = self
                .pushing
                .as_ref()
                .is_some_and(|(s, _, bytes)| *s == share && bytes + cost <= MAX_MESSAGE_BYTES);
            if !fits {
                self.flush_pushes();
                self.pushing = Some((share, Vec::new(), 64));
            }
            let (_, ops, bytes) = self.pushing.as_mut().expect("just set");
            ops.push(op.wire().to_vec());
            *bytes += cost;
        }
    }

    fn flush_pushes(&mut self) {
        if let Some((share, ops, _)) = self.pushing.take() {
            self.transmit
                .push_back(Message::Ops { share, ops }.encode());
        }
    }

    /// Handles one frame from the peer.
    pub fn handle(&mut self, frame: &[u8], shares: &mut impl Shares, now_ms: u64) {
        let message = match Message::decode(frame) {
            Ok(m) => m,
            Err(e) => {
                self.events.push_back(Event::BadFrame(e));
                return;
            }
        };
        let share = message.share();
        let Some(replica) = shares.replica(&share) else {
            if !matches!(message, Message::Unknown { .. } | Message::Ops { .. }) {
                self.send(Message::Unknown { share });
            }
            return;
        };
        if !self.member(replica) {
            // Same answer as for a share we do not hold; ops from a non-member are ignored.
            self.initiated.remove(&share);
            self.responders.remove(&share);
            self.fetching.remove(&share);
            if !matches!(message, Message::Unknown { .. } | Message::Ops { .. }) {
                self.send(Message::Unknown { share });
            }
            return;
        }
        match message {
            Message::Reconcile { payload, .. } => {
                let frame_limit = self.frame_limit;
                let reconciler = self
                    .responders
                    .entry(share)
                    .or_insert_with(|| Reconciler::new(frame_limit, false).expect("limit clamped"));
                let answered = reconciler.respond(replica.items(), &payload);
                self.bound_decoding_sessions(share);
                match answered {
                    Ok(payload) => self.send(Message::ReconcileReply { share, payload }),
                    Err(e) => self.events.push_back(Event::BadFrame(e.into())),
                }
            }
            Message::ReconcileReply { payload, .. } => {
                self.on_reply(share, &payload, replica, now_ms)
            }
            Message::Unknown { .. } => {
                self.initiated.remove(&share);
                self.events.push_back(Event::Unknown { share });
            }
            Message::Want { ids, .. } => {
                self.fetching.insert(share, now_ms);
                let ops: Vec<&Op> = ids.iter().filter_map(|id| replica.live_op(id)).collect();
                self.send_ops(share, in_stamp_order(ops));
            }
            Message::Ops { ops, .. } => {
                let mut arrived = Vec::new();
                let mut dropped = 0;
                let mut taken = Vec::with_capacity(ops.len());
                for wire in ops {
                    // A bad op costs only itself; whatever became of a good one, it arrived.
                    let Ok(op) = Op::decode_owned(wire, None) else {
                        continue;
                    };
                    let asked = self
                        .initiated
                        .get(&share)
                        .is_some_and(|s| s.wanted.contains(&op.id()));
                    if !asked && !self.take_push_budget(share, now_ms) {
                        dropped += 1;
                        continue;
                    }
                    taken.push(op);
                }
                let verdicts = verify_many(&taken);
                // Ops that found the replica's waiting room full: asked again later. Parents
                // named by ops that wait: asked first (a fresh replica fetching a big share would
                // otherwise hold more waiting ops than it may, until the next round).
                let mut again = Vec::new();
                let mut parents = BTreeSet::new();
                for (op, signed) in taken.into_iter().zip(verdicts) {
                    if !signed {
                        continue;
                    }
                    let id = op.id();
                    let named = op.body().parents.clone();
                    match replica.insert_verified(op, now_ms) {
                        Err(Refused::TooManyWaiting) => again.push(id),
                        Ok(Accepted::Waiting) => {
                            parents.extend(named.into_iter().filter(|p| !replica.holds(p)));
                            arrived.push(id);
                        }
                        _ => arrived.push(id),
                    }
                }
                if let Some(s) = self.initiated.get_mut(&share) {
                    for id in again {
                        if s.wanted.remove(&id) {
                            s.to_want.push_back(id);
                        }
                    }
                    for parent in parents {
                        if !s.wanted.contains(&parent) {
                            s.to_want.push_front(parent);
                        }
                    }
                }
                if dropped > 0 {
                    self.events.push_back(Event::Throttled { share, dropped });
                    if !self.initiated.contains_key(&share) {
                        // Fetch what was dropped, at our pace.
                        let _ = self.start(share, shares, now_ms);
                    }
                }
                if let Some(s) = self.initiated.get_mut(&share) {
                    let before = s.wanted.len();
                    for id in arrived {
                        s.wanted.remove(&id);
                    }
                    let got = before - s.wanted.len();
                    if got > 0 {
                        s.received += got;
                        s.deadline = Some(now_ms + WANT_TIMEOUT_MS);
                    }
                }
                self.ask_more(share, now_ms);
                self.finish_if_done(share);
            }
        }
    }

    fn on_reply(&mut self, share: ShareId, payload: &[u8], replica: &mut Replica, now_ms: u64) {
        let Some(s) = self.initiated.get_mut(&share) else {
            return;
        };
        let mut have = Vec::new();
        let mut need = Vec::new();
        let next = match s
            .reconciler
            .reconcile(replica.items(), payload, &mut have, &mut need)
        {
            Ok(next) => next,
            Err(e) => {
                self.initiated.remove(&share);
                self.events.push_back(Event::BadFrame(e.into()));
                return;
            }
        };
        // The genesis first: until it is here, every other op waits for it (and a fresh
        // replica holds only so many waiting ops).
        for id in need {
            if id == share {
                s.to_want.push_front(id);
            } else {
                s.to_want.push_back(id);
            }
        }
        s.deadline = Some(now_ms + WANT_TIMEOUT_MS);
        let peer_fetching = self
            .fetching
            .get(&share)
            .is_some_and(|at| now_ms < at + WANT_TIMEOUT_MS);
        if peer_fetching {
            have.clear();
        }
        let ops: Vec<&Op> = have.iter().filter_map(|id| replica.live_op(id)).collect();
        let ops = in_stamp_order(ops);
        s.sent += ops.len();
        match next {
            Some(payload) => {
                s.round_trips += 1;
                self.send(Message::Reconcile { share, payload });
            }
            None => s.reconciled = true,
        }
        self.send_ops(share, ops);
        self.ask_more(share, now_ms);
        self.finish_if_done(share);
    }

    /// Takes one pushed op from the share's and the peer's budgets, if both have one.
    fn take_push_budget(&mut self, share: ShareId, now_ms: u64) -> bool {
        let [(share_rate, share_burst), (peer_rate, peer_burst)] = self.push_limits;
        let per_share = self
            .budgets
            .per_share
            .entry(share)
            .or_insert_with(|| Bucket::full(share_rate, share_burst, now_ms));
        let per_peer = self
            .budgets
            .per_peer
            .get_or_insert_with(|| Bucket::full(peer_rate, peer_burst, now_ms));
        per_share.refill(now_ms);
        per_peer.refill(now_ms);
        if !(per_share.has_one() && per_peer.has_one()) {
            return false;
        }
        per_share.take_one();
        per_peer.take_one();
        true
    }

    /// Asks for more of the ids still to fetch, keeping at most [`MAX_WANTED_IN_FLIGHT`] out.
    fn ask_more(&mut self, share: ShareId, now_ms: u64) {
        let Some(s) = self.initiated.get_mut(&share) else {
            return;
        };
        let room = MAX_WANTED_IN_FLIGHT.saturating_sub(s.wanted.len());
        let ids: Vec<OpId> = (0..room.min(s.to_want.len()))
            .filter_map(|_| s.to_want.pop_front())
            .collect();
        if ids.is_empty() {
            return;
        }
        s.wanted.extend(ids.iter().copied());
        if s.deadline.is_none() {
            s.deadline = Some(now_ms + WANT_TIMEOUT_MS);
        }
        for chunk in ids.chunks(MAX_WANTED_PER_FRAME) {
            self.send(Message::Want {
                share,
                ids: chunk.to_vec(),
            });
        }
    }

    fn finish_if_done(&mut self, share: ShareId) {
        let done = self
            .initiated
            .get(&share)
            .is_some_and(|s| s.reconciled && s.wanted.is_empty() && s.to_want.is_empty());
        if done {
            let s = self.initiated.remove(&share).expect("checked");
            self.events.push_back(Event::Reconciled {
                share,
                round_trips: s.round_trips,
                sent: s.sent,
                received: s.received,
                missing: s.missing,
            });
        }
    }

    fn send_ops(&mut self, share: ShareId, ops: Vec<Vec<u8>>) {
        // Batches under the frame limit (an op is at most MAX_OP_BYTES, well under it).
        let mut batch: Vec<Vec<u8>> = Vec::new();
        let mut size = 64;
        for op in ops {
            if size + op.len() + 8 > MAX_FRAME_BYTES && !batch.is_empty() {
                self.send(Message::Ops {
                    share,
                    ops: std::mem::take(&mut batch),
                });
                size = 64;
            }
            size += op.len() + 8;
            batch.push(op);
        }
        if !batch.is_empty() {
            self.send(Message::Ops { share, ops: batch });
        }
    }

    fn send(&mut self, message: Message) {
        // Pushes queued before this message go before it.
        self.flush_pushes();
        self.transmit.push_back(message.encode());
    }

    /// The next frame to write to the stream.
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        if self.transmit.is_empty() {
            self.flush_pushes();
        }
        self.transmit.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When [`Self::handle_timeout`] should next be called.
    pub fn poll_timeout(&self) -> Option<u64> {
        self.initiated.values().filter_map(|s| s.deadline).min()
    }

    /// Gives up on ops the peer claimed and did not send in time.
    pub fn handle_timeout(&mut self, now_ms: u64) {
        let expired: Vec<ShareId> = self
            .initiated
            .iter()
            .filter(|(_, s)| s.deadline.is_some_and(|d| d <= now_ms))
            .map(|(share, _)| *share)
            .collect();
        for share in expired {
            let s = self.initiated.get_mut(&share).expect("listed");
            s.missing += s.wanted.len() + s.to_want.len();
            s.wanted.clear();
            s.to_want.clear();
            s.deadline = None;
            // A reply that never came ends the round too.
            s.reconciled = true;
            self.finish_if_done(share);
        }
    }
}

/// Ops in the order they were made (HLC stamp, author, id), in wire form: parents before what
/// names them, and a list's adds in the order of its items, so the receiver rarely holds ops
/// waiting and fills a list by appending rather than by moving what it holds.
fn in_stamp_order(mut ops: Vec<&Op>) -> Vec<Vec<u8>> {
    ops.sort_by_key(|op| op.order_key());
    ops.into_iter().map(|op| op.wire().to_vec()).collect()
}

#[cfg(test)]
mod tests;
