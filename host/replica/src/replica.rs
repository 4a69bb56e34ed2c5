//! One share's replica: takes ops in any order, judges their validity against the membership
//! they name, merges the valid ones and keeps the set of live ops that reconciliation offers.
//!
//! ## Validity (deterministic, local-time free)
//! An op's parents are the membership heads its author had seen (the genesis, grants and
//! revocations: data ops never need data ops to be judged, so superseded data ops can be
//! pruned without orphaning anything). The *closure* of an op is every membership op reachable
//! from its parents. An op by `A` counts when:
//! 1. its signature holds, it names this share, its stamp is above its parents' stamps (so the
//!    order key extends causality) and it does not equivocate (another held op by `A` with the
//!    same seq or stamp and a smaller id wins);
//! 2. `A`'s level in its closure suffices: the owner is admin; otherwise the latest (by order key)
//!    counted grant or revocation of `A` in the closure decides. Writes need write, grants and
//!    revocations need admin, and nobody grants or revokes the owner;
//! 3. no counted revocation of `A` is concurrent with it: a revocation `R` names what its
//!    issuer had seen of `A` — every seq up to `after_seq` (held without a gap) and the ops it
//!    held past the gap (`also`). An op of `A` outside that and without `R` in its closure was
//!    made without knowing `R` and is rejected everywhere; ops `R` saw stand; ops with `R` in
//!    their closure are judged by rule 2 (so a later re-grant works). A member who jumps or
//!    back-fills seqs gains nothing: only the ops the revoker actually held are covered.
//!
//! Membership ops are judged first, in order-key order, and rule 3 is applied to them against
//! the revocations already counted. Two admins revoking each other concurrently is the one
//! cycle; the order key breaks it (the earlier revocation wins). A revocation counted later
//! bans its target's concurrent membership ops it did not see, and the pass reruns (at most once
//! per membership op), so a revoked admin cannot back-date a grant under the revocation.
//!
//! ## Live and dormant ops
//! Only live ops are offered to reconciliation: membership ops (always) and the data ops that
//! currently win something. Superseded ops (an overwritten register, removed add tags,
//! everything of a deleted resource) and rejected ops turn dormant: kept and stored, not
//! offered, because a revocation arriving later can reject what superseded them and bring them
//! back. A fresh peer gets only live ops, so sync costs follow current state; a dormant op
//! another replica needs again becomes live there and flows back.
//!
//! Ops with missing parents wait (bounded by [`MAX_WAITING_OPS`]); ops stamped more than
//! [`MAX_DRIFT_MS`] ahead of the local clock are deferred until their time comes, never dropped.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use allpeers_model::hlc::{Hlc, MAX_DRIFT_MS, Timestamp};
use allpeers_model::id::PeerId;
use ed25519_dalek::SigningKey;

use crate::op::{Action, Level, Op, OpBody, OpError, OpId, OrderKey, ShareId, Stamp};
use crate::reconcile::{Item, Items};
use crate::state::State;

/// Ops waiting for parents, per replica: a peer that sends ops naming parents it never sends
/// cannot grow our memory past this.
pub const MAX_WAITING_OPS: usize = 10_000;
/// Deferred (future-stamped) ops kept per replica, for the same reason.
pub const MAX_DEFERRED_OPS: usize = 10_000;
/// Grants and revocations are always kept (they are what validity is judged against); a share
/// with more than this many is refused new ones rather than growing without bound.
pub const MAX_MEMBERSHIP_OPS: usize = 10_000;

/// Why an op was refused outright (not kept).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error(transparent)]
    Op(#[from] OpError),
    #[error("the op belongs to another share")]
    WrongShare,
    #[error("only the genesis op may have no parents")]
    NoParents,
    #[error("too many ops wait for parents ({MAX_WAITING_OPS})")]
    TooManyWaiting,
    #[error("too many deferred ops ({MAX_DEFERRED_OPS})")]
    TooManyDeferred,
    #[error("too many membership ops ({MAX_MEMBERSHIP_OPS})")]
    TooManyMembershipOps,
}

/// Why a well-formed op does not count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    /// A parent is a data op, or the stamp is not above a parent's.
    Causality,
    /// The genesis op must be a `Create`; a second genesis cannot exist.
    Genesis,
    /// The author lacks the level the op needs in the membership state it names.
    Level,
    /// A revocation of the author, which the op did not see, cuts it off.
    Revoked,
    /// Another op by the same author with the same seq or stamp won.
    Equivocation,
    /// A grant or revocation that targets the owner.
    TargetsOwner,
}

/// What became of one op handed to [`Replica::insert`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accepted {
    /// Counted, and live (offered to reconciliation).
    Applied,
    /// Counted, but already overwritten or its resource deleted: kept, not offered.
    Superseded,
    /// Well-formed but not valid: kept (a later ban of a revocation can make it count), not
    /// offered, except membership ops (others may name them as parents).
    Rejected(Rejection),
    /// Waits for parents it names.
    Waiting,
    /// Stamped too far ahead; applied once the local clock gets near.
    Deferred,
    /// Already held.
    Duplicate,
}

/// What the store must persist, in one transaction with the materialised resources: the new
/// ops (every op is kept, superseded and rejected ones only leave the reconciled set), the
/// resources whose view changed (read them back with
/// [`Replica::resource`]) and the per-author seq high-water marks (kept across restarts so a
/// restarted author never reuses a seq).
#[derive(Debug, Default)]
pub struct Changes {
    pub stored: BTreeMap<OpId, Op>,
    pub resources: BTreeSet<String>,
    /// Schema files whose carried text changed (read them with [`State::schema`]).
    pub schemas: BTreeSet<String>,
    pub author_seqs: BTreeMap<PeerId, u64>,
    /// Grants or revocations changed the current members: sync sessions must re-check access.
    pub membership_changed: bool,
}

impl Changes {
    pub fn is_empty(&self) -> bool {
        self.stored.is_empty()
            && self.resources.is_empty()
            && self.schemas.is_empty()
            && self.author_seqs.is_empty()
            && !self.membership_changed
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    Live,
    /// Counted but superseded (overwritten, removed, or its resource deleted).
    Dormant,
    Rejected(Rejection),
}

struct Held {
    op: Op,
    status: Status,
}

/// What one counted revocation lets stand of its target's ops.
struct Cut {
    revocation: OpId,
    after_seq: u64,
    also: HashSet<OpId>,
}

/// Counted revocations per target.
type Revocations = HashMap<PeerId, Vec<Arc<Cut>>>;

/// Membership ops reachable from a parent set, and the levels they give.
struct Closure {
    ops: HashSet<OpId>,
    levels: HashMap<PeerId, Option<Level>>,
}

pub struct Replica {
    share: ShareId,
    owner: Option<PeerId>,
    /// Every processed op, whatever its status.
    held: HashMap<OpId, Held>,
    /// Ops waiting for parents, and who waits for whom.
    waiting: HashMap<OpId, Op>,
    waiters: HashMap<OpId, Vec<OpId>>,
    deferred: BTreeMap<(u64, OpId), Op>,
    /// Membership ops (and the genesis) in order-key order.
    membership: BTreeMap<OrderKey, OpId>,
    counted_membership: HashSet<OpId>,
    /// Counted revocations per target.
    revocations: Revocations,
    closures: HashMap<Vec<OpId>, Arc<Closure>>,
    /// Held ops per (author, seq) and (author, stamp), for equivocation.
    by_seq: HashMap<(PeerId, u64), OpId>,
    by_stamp: HashMap<(PeerId, Stamp), OpId>,
    author_seqs: HashMap<PeerId, u64>,
    state: State,
    items: Items,
    hlc: Hlc,
    changes: Changes,
}

impl Replica {
    /// An empty replica of `share` (its genesis op arrives like any other).
    pub fn new(share: ShareId) -> Replica {
        Replica {
            share,
            owner: None,
            held: HashMap::new(),
            waiting: HashMap::new(),
            waiters: HashMap::new(),
            deferred: BTreeMap::new(),
            membership: BTreeMap::new(),
            counted_membership: HashSet::new(),
            revocations: HashMap::new(),
            closures: HashMap::new(),
            by_seq: HashMap::new(),
            by_stamp: HashMap::new(),
            author_seqs: HashMap::new(),
            state: State::default(),
            items: Items::default(),
            hlc: Hlc::new("replica"),
            changes: Changes::default(),
        }
    }

    /// Creates a share: signs its genesis op (the root resource's `Create`) with the owner's key.
    pub fn create_share(
        owner: &SigningKey,
        resource: &str,
        kind: &str,
        value: serde_json::Value,
        now_ms: u64,
    ) -> Result<Replica, OpError> {
        let mut hlc = Hlc::new("replica");
        let stamp = to_stamp(&hlc.tick(now_ms));
        let genesis = Op::sign(
            OpBody {
                share: OpId::ZERO,
                author: PeerId::from_public_key(owner.verifying_key().to_bytes()),
                seq: 1,
                stamp,
                parents: vec![],
                action: Action::Create {
                    resource: resource.to_owned(),
                    kind: kind.to_owned(),
                    value,
                },
            },
            owner,
        )?;
        let mut replica = Replica::new(genesis.id());
        replica.hlc = hlc;
        replica
            .insert_verified(genesis, now_ms)
            .expect("a fresh genesis is accepted");
        Ok(replica)
    }

    /// Rebuilds a replica from what the store kept (ops verified when they first arrived).
    pub fn restore(
        share: ShareId,
        ops: impl IntoIterator<Item = Op>,
        author_seqs: impl IntoIterator<Item = (PeerId, u64)>,
        now_ms: u64,
    ) -> Replica {
        let mut replica = Replica::new(share);
        replica.author_seqs.extend(author_seqs);
        // In order-key order parents come first: nothing waits, and each membership op's
        // rebuild sees only the ops before it.
        let mut ops: Vec<Op> = ops.into_iter().collect();
        ops.sort_by_key(Op::order_key);
        for op in ops {
            // A kept op that no longer fits (e.g. a limit lowered) is simply not restored.
            let _ = replica.insert_verified(op, now_ms);
        }
        replica.changes = Changes::default();
        replica
    }

    pub fn share(&self) -> ShareId {
        self.share
    }

    pub fn owner(&self) -> Option<PeerId> {
        self.owner
    }

    /// Decodes, verifies and inserts an op received from anyone.
    pub fn receive(&mut self, wire: &[u8], now_ms: u64) -> Result<Accepted, Refused> {
        self.insert_verified(Op::from_wire(wire)?, now_ms)
    }

    /// Verifies and inserts an op.
    pub fn insert(&mut self, op: Op, now_ms: u64) -> Result<Accepted, Refused> {
        op.verify()?;
        self.insert_verified(op, now_ms)
    }

    /// Inserts an op whose signature the caller has checked ([`Op::from_wire`]).
    pub(crate) fn insert_verified(&mut self, op: Op, now_ms: u64) -> Result<Accepted, Refused> {
        // An op another replica held comes without its value: merged, it needs it.
        let op = op.with_value();
        let id = op.id();
        let body = op.body();
        let is_genesis = body.share == OpId::ZERO;
        if (is_genesis && id != self.share) || (!is_genesis && body.share != self.share) {
            return Err(Refused::WrongShare);
        }
        if !is_genesis && body.parents.is_empty() {
            return Err(Refused::NoParents);
        }
        if self.held.contains_key(&id)
            || self.waiting.contains_key(&id)
            || self.deferred.contains_key(&(body.stamp.wall_ms, id))
        {
            return Ok(Accepted::Duplicate);
        }
        if body.action.is_membership() && self.membership.len() >= MAX_MEMBERSHIP_OPS {
            return Err(Refused::TooManyMembershipOps);
        }
        let seq = self.author_seqs.entry(body.author).or_default();
        if body.seq > *seq {
            *seq = body.seq;
            self.changes.author_seqs.insert(body.author, body.seq);
        }
        if body.stamp.wall_ms > now_ms.saturating_add(MAX_DRIFT_MS) {
            if self.deferred.len() >= MAX_DEFERRED_OPS {
                return Err(Refused::TooManyDeferred);
            }
            self.changes.stored.insert(id, op.clone());
            self.deferred.insert((body.stamp.wall_ms, id), op);
            return Ok(Accepted::Deferred);
        }
        let missing: Vec<OpId> = body
            .parents
            .iter()
            .filter(|p| !self.held.contains_key(p))
            .copied()
            .collect();
        if !missing.is_empty() {
            if self.waiting.len() >= MAX_WAITING_OPS {
                return Err(Refused::TooManyWaiting);
            }
            for parent in missing {
                self.waiters.entry(parent).or_default().push(id);
            }
            self.changes.stored.insert(id, op.clone());
            self.waiting.insert(id, op);
            return Ok(Accepted::Waiting);
        }
        let outcome = self.process(op, now_ms);
        self.release_waiters(id, now_ms);
        Ok(outcome)
    }

    /// Processes ops that waited for `arrived` and now have all their parents.
    fn release_waiters(&mut self, arrived: OpId, now_ms: u64) {
        let mut queue = vec![arrived];
        while let Some(parent) = queue.pop() {
            for waiter in self.waiters.remove(&parent).unwrap_or_default() {
                let ready = self
                    .waiting
                    .get(&waiter)
                    .is_some_and(|op| op.body().parents.iter().all(|p| self.held.contains_key(p)));
                if ready {
                    let op = self.waiting.remove(&waiter).expect("checked");
                    self.process(op, now_ms);
                    queue.push(waiter);
                }
            }
        }
    }

    /// Whether op `id` is here and judged (not waiting for parents, not deferred).
    pub fn holds(&self, id: &OpId) -> bool {
        self.held.contains_key(id)
    }

    /// The earliest local time at which a deferred op becomes due.
    pub fn poll_timeout(&self) -> Option<u64> {
        self.deferred
            .keys()
            .next()
            .map(|(wall, _)| wall.saturating_sub(MAX_DRIFT_MS))
    }

    /// Applies the deferred ops that are due at `now_ms`.
    pub fn handle_timeout(&mut self, now_ms: u64) {
        while let Some(entry) = self.deferred.first_entry() {
            if entry.key().0 > now_ms.saturating_add(MAX_DRIFT_MS) {
                break;
            }
            let op = entry.remove();
            // Re-enter through the front door: its parents may still be missing.
            self.changes.stored.remove(&op.id());
            let _ = self.insert_verified(op, now_ms);
        }
    }

    /// Takes what the store must persist since the last call.
    pub fn take_changes(&mut self) -> Changes {
        std::mem::take(&mut self.changes)
    }

    fn process(&mut self, op: Op, now_ms: u64) -> Accepted {
        let id = op.id();
        // What is needed of the body, read in place (copying it copied the op's whole value).
        let body = op.body();
        let (stamp, author) = (body.stamp, body.author);
        let is_genesis = body.share == OpId::ZERO;
        let is_membership = is_genesis || body.action.is_membership();
        // Our clock follows what we see, so our next op orders after it (within the drift cap
        // that deferral already enforced).
        let _ = self.hlc.observe(
            &Timestamp {
                wall_ms: stamp.wall_ms,
                counter: stamp.counter,
                node: "peer".into(),
            },
            now_ms,
        );
        if is_genesis {
            self.owner = Some(author);
        }
        let equivocates = self.record_seq_and_stamp(&op);
        self.changes.stored.insert(id, op.clone());
        // Held without its value: the state takes its own copy when `op` is merged below.
        self.held.insert(
            id,
            Held {
                op: op.without_value(),
                status: Status::Live,
            },
        );
        if is_membership {
            self.membership.insert(op.order_key(), id);
            // Membership changes can change the validity of anything: judge everything again.
            self.rebuild();
            return match self.held[&id].status {
                Status::Rejected(why) => Accepted::Rejected(why),
                _ => Accepted::Applied,
            };
        }
        if equivocates {
            // A smaller id may displace a counted op: judge everything again.
            self.rebuild();
            return match self.held[&id].status {
                Status::Live => Accepted::Applied,
                Status::Dormant => Accepted::Superseded,
                Status::Rejected(why) => Accepted::Rejected(why),
            };
        }
        match self.judge_data(&op) {
            Err(why) => {
                self.retire(id, Status::Rejected(why));
                Accepted::Rejected(why)
            }
            Ok(()) => self.merge(&op),
        }
    }

    /// Indexes the op by (author, seq) and (author, stamp); true if another held op is there.
    fn record_seq_and_stamp(&mut self, op: &Op) -> bool {
        let b = op.body();
        let id = op.id();
        let seq_slot = self.by_seq.entry((b.author, b.seq)).or_insert(id);
        let clash_seq = *seq_slot != id;
        *seq_slot = (*seq_slot).min(id);
        let stamp_slot = self.by_stamp.entry((b.author, b.stamp)).or_insert(id);
        let clash_stamp = *stamp_slot != id;
        *stamp_slot = (*stamp_slot).min(id);
        clash_seq || clash_stamp
    }

    /// Takes a data op out of the live set: superseded (dormant) or not counted (rejected). It
    /// stays held and stored: a later revocation can reject what superseded it and bring it
    /// back, and a later ban of a revocation can make it count. Membership ops and the genesis
    /// never leave the live set: later ops may name them as parents.
    fn retire(&mut self, id: OpId, status: Status) {
        let Some(held) = self.held.get_mut(&id) else {
            return;
        };
        if is_membership_or_genesis(&held.op) {
            return;
        }
        held.status = status;
        let item = item_of(&held.op);
        self.items.remove(&item);
    }

    /// Merges a counted data op into the state and books liveness.
    fn merge(&mut self, op: &Op) -> Accepted {
        let applied = self.state.apply(op);
        self.changes.resources.extend(applied.changed);
        if let Some(file) = applied.schema {
            self.changes.schemas.insert(file);
        }
        for dead in applied.superseded {
            self.retire(dead, Status::Dormant);
        }
        if applied.dead_on_arrival && !is_membership_or_genesis(op) {
            self.retire(op.id(), Status::Dormant);
            return Accepted::Superseded;
        }
        if let Some(held) = self.held.get_mut(&op.id()) {
            held.status = Status::Live;
        }
        self.items.insert(item_of(op));
        Accepted::Applied
    }

    fn is_equivocation_loser(&self, op: &Op) -> bool {
        let b = op.body();
        let smaller = |other: Option<&OpId>| other.is_some_and(|o| *o < op.id());
        smaller(self.by_seq.get(&(b.author, b.seq)))
            || smaller(self.by_stamp.get(&(b.author, b.stamp)))
    }

    /// Rule 1's causality part: parents are membership ops with lower stamps.
    fn causality_holds(&self, op: &Op) -> bool {
        op.body().parents.iter().all(|p| {
            self.held.get(p).is_some_and(|h| {
                let pb = h.op.body();
                (pb.share == OpId::ZERO || pb.action.is_membership()) && pb.stamp < op.body().stamp
            })
        })
    }

    fn closure(&mut self, parents: &[OpId]) -> Arc<Closure> {
        if let Some(c) = self.closures.get(parents) {
            return c.clone();
        }
        let mut ops = HashSet::new();
        let mut stack: Vec<OpId> = parents.to_vec();
        while let Some(id) = stack.pop() {
            if ops.insert(id)
                && let Some(h) = self.held.get(&id)
            {
                stack.extend(h.op.body().parents.iter().copied());
            }
        }
        // Levels from the counted membership ops in the closure: the latest by order key wins.
        let mut levels: HashMap<PeerId, (OrderKey, Option<Level>)> = HashMap::new();
        for id in &ops {
            if !self.counted_membership.contains(id) {
                continue;
            }
            let Some(h) = self.held.get(id) else { continue };
            let (target, level) = match h.op.body().action {
                Action::Grant { member, level } => (member, Some(level)),
                Action::Revoke { member, .. } => (member, None),
                _ => continue,
            };
            let key = h.op.order_key();
            let entry = levels.entry(target).or_insert((key, level));
            if key > entry.0 {
                *entry = (key, level);
            }
        }
        let closure = Arc::new(Closure {
            ops,
            levels: levels.into_iter().map(|(p, (_, l))| (p, l)).collect(),
        });
        self.closures.insert(parents.to_vec(), closure.clone());
        closure
    }

    fn level_in(&self, closure: &Closure, peer: &PeerId) -> Option<Level> {
        if Some(*peer) == self.owner {
            return Some(Level::Admin);
        }
        closure.levels.get(peer).copied().flatten()
    }

    /// Rule 3: a counted revocation of the author that the op did not see (a member's own
    /// leave is not one of those for the leave itself).
    fn revoked_concurrently(&self, op: &Op, closure: &Closure, revocations: &Revocations) -> bool {
        let b = op.body();
        revocations.get(&b.author).is_some_and(|cuts| {
            cuts.iter().any(|cut| {
                cut.revocation != op.id()
                    && b.seq > cut.after_seq
                    && !cut.also.contains(&op.id())
                    && !closure.ops.contains(&cut.revocation)
            })
        })
    }

    fn judge_data(&mut self, op: &Op) -> Result<(), Rejection> {
        if !self.causality_holds(op) {
            return Err(Rejection::Causality);
        }
        if self.is_equivocation_loser(op) {
            return Err(Rejection::Equivocation);
        }
        let closure = self.closure(&op.body().parents);
        if self.level_in(&closure, &op.body().author) < Some(Level::Write) {
            return Err(Rejection::Level);
        }
        if self.revoked_concurrently(op, &closure, &self.revocations) {
            return Err(Rejection::Revoked);
        }
        Ok(())
    }

    /// Judges a membership op (or the genesis) against the revocations counted so far.
    fn judge_membership(&mut self, op: &Op, revocations: &Revocations) -> Result<(), Rejection> {
        let b = op.body();
        if b.share == OpId::ZERO {
            return match b.action {
                Action::Create { .. } if op.id() == self.share => Ok(()),
                _ => Err(Rejection::Genesis),
            };
        }
        if !self.causality_holds(op) {
            return Err(Rejection::Causality);
        }
        if self.is_equivocation_loser(op) {
            return Err(Rejection::Equivocation);
        }
        let target = match b.action {
            Action::Grant { member, .. } | Action::Revoke { member, .. } => member,
            _ => unreachable!("membership ops only"),
        };
        if Some(target) == self.owner {
            return Err(Rejection::TargetsOwner);
        }
        let closure = self.closure(&b.parents);
        // Any member may revoke itself (leave the share); only an admin changes others.
        let leaves = matches!(b.action, Action::Revoke { member, .. } if member == b.author);
        let needed = if leaves { Level::Read } else { Level::Admin };
        if self.level_in(&closure, &b.author) < Some(needed) {
            return Err(Rejection::Level);
        }
        if self.revoked_concurrently(op, &closure, revocations) {
            return Err(Rejection::Revoked);
        }
        Ok(())
    }

    /// Judges every held op again from scratch and rebuilds the state: after a membership op
    /// or an equivocation, whose effect can reach any op.
    fn rebuild(&mut self) {
        // Taken before the verdicts below recount the membership ops: compared at the end.
        let membership_before = self.current_members();
        let order: Vec<OpId> = self.membership.values().copied().collect();
        let mut banned: HashSet<OpId> = HashSet::new();
        let mut verdicts: HashMap<OpId, Status>;
        loop {
            self.counted_membership.clear();
            self.closures.clear();
            let mut revocations: Revocations = HashMap::new();
            verdicts = HashMap::new();
            for id in &order {
                let op = self.held[id].op.clone();
                let verdict = if banned.contains(id) {
                    Err(Rejection::Revoked)
                } else {
                    self.judge_membership(&op, &revocations)
                };
                if verdict.is_ok() {
                    self.counted_membership.insert(*id);
                    // Later closures must see this op as counted.
                    self.closures.clear();
                    if let Action::Revoke {
                        member,
                        after_seq,
                        also,
                    } = &op.body().action
                    {
                        revocations.entry(*member).or_default().push(Arc::new(Cut {
                            revocation: *id,
                            after_seq: *after_seq,
                            also: also.iter().copied().collect(),
                        }));
                    }
                }
                verdicts.insert(
                    *id,
                    verdict.map_or_else(Status::Rejected, |()| Status::Live),
                );
            }
            // A revocation counted after its target's concurrent membership op bans that op.
            let mut new_bans = false;
            for id in &order {
                if !self.counted_membership.contains(id) || banned.contains(id) {
                    continue;
                }
                let op = self.held[id].op.clone();
                if op.body().share == OpId::ZERO {
                    continue;
                }
                let closure = self.closure(&op.body().parents);
                if self.revoked_concurrently(&op, &closure, &revocations) {
                    banned.insert(*id);
                    new_bans = true;
                }
            }
            if !new_bans {
                self.revocations = revocations;
                break;
            }
        }
        for (id, status) in verdicts {
            if let Some(h) = self.held.get_mut(&id) {
                h.status = status;
            }
        }
        // Data ops (the genesis is one too: it creates the root): judge again, merge afresh.
        let mut data: Vec<Op> = self
            .held
            .values()
            .filter(|h| !h.op.body().action.is_membership())
            .map(|h| h.op.with_value())
            .collect();
        data.sort_by_key(Op::order_key);
        let old_state = std::mem::take(&mut self.state);
        for op in &data {
            self.items.remove(&item_of(op));
        }
        for op in &data {
            let verdict = if op.body().share == OpId::ZERO {
                if self.counted_membership.contains(&op.id()) {
                    Ok(())
                } else {
                    Err(Rejection::Genesis)
                }
            } else {
                self.judge_data(op)
            };
            match verdict {
                Ok(()) => {
                    self.merge(op);
                }
                Err(why) => self.retire(op.id(), Status::Rejected(why)),
            }
        }
        let touched: BTreeSet<String> = old_state
            .all_ids()
            .chain(self.state.all_ids())
            .map(str::to_owned)
            .collect();
        for id in touched {
            if old_state.resource(&id) != self.state.resource(&id) {
                self.changes.resources.insert(id);
            }
        }
        // Every membership op stays live: later ops may name it as a parent.
        let membership_ops: Vec<Op> = order.iter().map(|id| self.held[id].op.clone()).collect();
        for op in membership_ops {
            self.items.insert(item_of(&op));
        }
        if self.current_members() != membership_before {
            self.changes.membership_changed = true;
        }
    }

    /// Every member's current level (from all counted membership ops), the owner included.
    pub fn members(&self) -> BTreeMap<PeerId, Level> {
        self.current_members()
    }

    fn current_members(&self) -> BTreeMap<PeerId, Level> {
        let mut latest: HashMap<PeerId, (OrderKey, Option<Level>)> = HashMap::new();
        for id in &self.counted_membership {
            let h = &self.held[id];
            let (target, level) = match h.op.body().action {
                Action::Grant { member, level } => (member, Some(level)),
                Action::Revoke { member, .. } => (member, None),
                _ => continue,
            };
            let key = h.op.order_key();
            let entry = latest.entry(target).or_insert((key, level));
            if key > entry.0 {
                *entry = (key, level);
            }
        }
        let mut members: BTreeMap<PeerId, Level> = latest
            .into_iter()
            .filter_map(|(p, (_, l))| Some((p, l?)))
            .collect();
        if let Some(owner) = self.owner {
            members.insert(owner, Level::Admin);
        }
        members
    }

    /// A peer's current level (`None`: not a member). Sync asks this before revealing anything.
    pub fn level(&self, peer: &PeerId) -> Option<Level> {
        self.current_members().get(peer).copied()
    }

    /// The membership heads: membership ops no other held membership op names as a parent.
    pub fn heads(&self) -> Vec<OpId> {
        let named: HashSet<OpId> = self
            .membership
            .values()
            .flat_map(|id| self.held[id].op.body().parents.iter().copied())
            .collect();
        self.membership
            .values()
            .filter(|id| !named.contains(id))
            .copied()
            .collect()
    }

    /// Signs a new op by `key`'s owner naming the current membership heads, and inserts it.
    /// For a revocation, `after_seq` is filled in with the last seq of the member we have seen.
    pub fn author(
        &mut self,
        key: &SigningKey,
        action: Action,
        now_ms: u64,
    ) -> Result<(Op, Accepted), Refused> {
        let author = PeerId::from_public_key(key.verifying_key().to_bytes());
        let action = match action {
            Action::Revoke { member, .. } => self.revocation_of(member),
            other => other,
        };
        let op = Op::sign(
            OpBody {
                share: self.share,
                author,
                seq: self
                    .author_seqs
                    .get(&author)
                    .copied()
                    .unwrap_or(0)
                    .saturating_add(1),
                stamp: to_stamp(&self.hlc.tick(now_ms)),
                parents: self.heads(),
                action,
            },
            key,
        )?;
        let accepted = self.insert_verified(op.clone(), now_ms)?;
        Ok((op, accepted))
    }

    /// Signs `actions` in order, as [`Replica::author`] would one by one, but up to
    /// [`crate::op::BATCH_OPS`] data ops under one batch signature (see [`crate::op`]): what a
    /// share's creation signs for a whole list. A membership op is signed alone, after the ops
    /// before it (it changes the heads the next ones name). Stops at the first refusal.
    pub fn author_many(
        &mut self,
        key: &SigningKey,
        actions: impl IntoIterator<Item = Action>,
        now_ms: u64,
    ) -> Result<Vec<Op>, Refused> {
        let author = PeerId::from_public_key(key.verifying_key().to_bytes());
        let mut out = Vec::new();
        let mut bodies: Vec<OpBody> = Vec::new();
        let mut actions = actions.into_iter().peekable();
        while actions.peek().is_some() {
            // One batch: data ops naming the same heads, with consecutive seqs.
            let parents = self.heads();
            let first_seq = self.author_seqs.get(&author).copied().unwrap_or(0);
            while bodies.len() < crate::op::BATCH_OPS
                && actions.peek().is_some_and(|a| !a.is_membership())
            {
                let action = actions.next().expect("peeked");
                bodies.push(OpBody {
                    share: self.share,
                    author,
                    seq: first_seq.saturating_add(bodies.len() as u64 + 1),
                    stamp: to_stamp(&self.hlc.tick(now_ms)),
                    parents: parents.clone(),
                    action,
                });
            }
            if bodies.is_empty() {
                let membership = actions.next().expect("peeked");
                out.push(self.author(key, membership, now_ms)?.0);
                continue;
            }
            for op in Op::sign_batch(std::mem::take(&mut bodies), key)? {
                self.insert_verified(op.clone(), now_ms)?;
                out.push(op);
            }
        }
        Ok(out)
    }

    /// A revocation of `member` naming what we have seen of them: the seqs we hold without a
    /// gap, and the ops we hold past the first gap (at most [`crate::op::MAX_REVOKE_ALSO`]).
    fn revocation_of(&self, member: PeerId) -> Action {
        let mut seen: Vec<(u64, OpId)> = self
            .kept_ops()
            .filter(|op| op.body().author == member)
            .map(|op| (op.body().seq, op.id()))
            .collect();
        seen.sort();
        let mut after_seq = 0;
        for (seq, _) in &seen {
            if *seq == after_seq + 1 {
                after_seq = *seq;
            } else if *seq > after_seq + 1 {
                break;
            }
        }
        let also = seen
            .iter()
            .filter(|(seq, _)| *seq > after_seq)
            .map(|(_, id)| *id)
            .take(crate::op::MAX_REVOKE_ALSO)
            .collect();
        Action::Revoke {
            member,
            after_seq,
            also,
        }
    }

    /// A resource's materialised view (see [`State::resource`]).
    pub fn resource(&self, id: &str) -> Option<serde_json::Value> {
        self.state.resource(id)
    }

    pub fn state(&self) -> &State {
        &self.state
    }

    /// The live ops, as reconciliation items.
    pub fn items(&self) -> &Items {
        &self.items
    }

    /// A live op, to send to a peer that lacks it. Its bytes are whole, but its decoded action's
    /// JSON value is left out (`null`; the state holds the merged values): decode
    /// [`Op::wire`] for it.
    pub fn live_op(&self, id: &OpId) -> Option<&Op> {
        self.held
            .get(id)
            .filter(|h| {
                let b = h.op.body();
                h.status == Status::Live || b.action.is_membership()
            })
            .map(|h| &h.op)
    }

    /// How many ops wait for parents, and how many are deferred.
    pub fn pending(&self) -> (usize, usize) {
        (self.waiting.len(), self.deferred.len())
    }

    /// Every op the store should hold (processed, waiting, deferred), for checks and tests.
    pub fn kept_ops(&self) -> impl Iterator<Item = &Op> {
        self.held
            .values()
            .map(|h| &h.op)
            .chain(self.waiting.values())
            .chain(self.deferred.values())
    }

    pub fn author_seqs(&self) -> &HashMap<PeerId, u64> {
        &self.author_seqs
    }

    /// How many ops are held: with [`Replica::author_seqs`], what tells a reader that the replica changed.
    pub fn held_count(&self) -> usize {
        self.held.len()
    }
}

fn is_membership_or_genesis(op: &Op) -> bool {
    op.body().share == OpId::ZERO || op.body().action.is_membership()
}

fn to_stamp(t: &Timestamp) -> Stamp {
    Stamp {
        wall_ms: t.wall_ms,
        counter: t.counter,
    }
}

/// Bits of an op's reconciliation timestamp taken by its stamp's counter (see [`item_of`]).
const COUNTER_BITS: u32 = 20;

/// An op's reconciliation item: its whole stamp packed in the timestamp (wall ms above the
/// counter's [`COUNTER_BITS`]), then its id. Ranges, and so the ids a fresh peer asks for, then
/// follow the order ops were made in, not their ids: `shares.create` signs a whole list's ops
/// within a millisecond, and a list is in stamp order, so each commit of an initial sync appends
/// to the list instead of falling all over it (which re-wrote every item's position, each
/// commit). Saturating: past the year 2500, or 2^20 ops a millisecond, ties go by id — the
/// order stays total, only less helpful. Below `u64::MAX`, the bound past every item.
fn item_of(op: &Op) -> Item {
    let stamp = op.body().stamp;
    let counter = u64::from(stamp.counter).min((1 << COUNTER_BITS) - 1);
    Item {
        timestamp: stamp
            .wall_ms
            .saturating_mul(1 << COUNTER_BITS)
            .saturating_add(counter)
            .min(u64::MAX - 1),
        id: op.id(),
    }
}

#[cfg(test)]
mod convergence_tests;
#[cfg(test)]
pub(crate) mod tests;
