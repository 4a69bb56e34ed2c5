//! The shares area's state in the daemon: the replicas this node holds (loaded from the store
//! at start), the share records (offered and accepted), one sync session per peer, and when
//! each share last completed a reconciliation.
//!
//! Lock order: the store first, then [`Shares::lock`] (every path that commits holds both).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, MutexGuard};

use allpeers_model::PeerId;
use allpeers_model::api::shares::{Share, ShareMember, ShareState, ShareSync};
use allpeers_replica::reconcile::MAX_MESSAGE_BYTES;
use allpeers_replica::store::{self as opstore};
use allpeers_replica::sync::{Event as SyncEvent, PushBudgets, SyncPeer};
use allpeers_replica::{Action, Op, Replica, ShareId};
use allpeers_store::ops::ShareRecord;
use allpeers_store::{Store, StoreError};

use super::rules::{self, Envelope, Offer};

/// Record states, as `ap_shares.state` holds them.
pub const OFFERED: &str = "offered";
pub const ACCEPTED: &str = "accepted";

/// Offers waiting for the user, kept at most: a contact that floods us with offers fills
/// this and no more (the oldest stay; new ones are dropped until some are accepted or left).
pub const MAX_OFFERS: usize = 256;

pub struct Shares {
    inner: Mutex<Inner>,
    /// Each peer's pump (see `service`): requests queue here, in order.
    pub links: Mutex<HashMap<PeerId, tokio::sync::mpsc::Sender<Envelope>>>,
}

#[derive(Default)]
pub struct Inner {
    pub replicas: BTreeMap<ShareId, Replica>,
    pub records: BTreeMap<ShareId, ShareRecord>,
    pub sessions: HashMap<PeerId, SyncPeer>,
    /// What members whose session ended may still push us unasked: a peer that reconnects
    /// goes on with its budget rather than a fresh burst (one entry per member that ever had
    /// a session: bounded by the shares' members).
    pub push_budgets: HashMap<PeerId, PushBudgets>,
    /// When each share last completed a reconciliation (ms since the epoch).
    pub last_sync: HashMap<ShareId, u64>,
    /// Requests to send that are not a session's frames (offers, answers to strangers).
    pub extra: Vec<(PeerId, Envelope)>,
}

/// What a commit did, for events and for the frames it queued.
#[derive(Default)]
pub struct Committed {
    /// Shares whose current members changed.
    pub membership: Vec<ShareId>,
    /// Ops newly stored.
    pub ops: usize,
}

impl Shares {
    /// The records and replicas the store holds (a share that no longer loads is logged and
    /// left out: its ops stay in the store).
    pub fn load(store: &Store) -> Shares {
        let now = allpeers_model::hlc::now_ms();
        let mut inner = Inner::default();
        match store.share_records() {
            Ok(records) => {
                for record in records {
                    if record.state == ACCEPTED {
                        match opstore::open(store, record.share, now) {
                            Ok(replica) => {
                                inner.replicas.insert(record.share, replica);
                            }
                            Err(e) => {
                                allpeers_log::skin!(share = %record.share, "share not loaded: {e}")
                            }
                        }
                    }
                    inner.records.insert(record.share, record);
                }
            }
            Err(e) => allpeers_log::skin!("share records not loaded: {e}"),
        }
        Shares {
            inner: Mutex::new(inner),
            links: Mutex::default(),
        }
    }

    /// Take the store's lock first (see the module doc).
    pub fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().expect("shares lock")
    }
}

impl Inner {
    /// The share holding resource `id` (its root, an item, any resource an op touched).
    pub fn share_of(&self, id: &str) -> Option<ShareId> {
        self.replicas
            .iter()
            .find(|(_, r)| r.resource(id).is_some())
            .map(|(share, _)| *share)
    }

    /// Ends the session with `peer` (what was in flight is gone), keeping its push budgets.
    pub fn end_session(&mut self, peer: &PeerId) {
        if let Some(session) = self.sessions.remove(peer) {
            self.push_budgets.insert(*peer, session.into_budgets());
        }
    }

    /// Starts reconciling `share` with `peer` (nothing if the peer may not sync it).
    pub fn reconcile(&mut self, share: ShareId, peer: PeerId, now: u64) {
        let session = session(&mut self.sessions, &mut self.push_budgets, peer);
        if let Err(e) = session.start(share, &mut self.replicas, now) {
            allpeers_log::bone!(%share, ?peer, "no reconciliation: {e}");
        }
    }

    /// Commits every replica with pending changes (one store transaction each) and queues
    /// each new live op to every other member's session (any member forwards; `from` brought
    /// them and has them), and a revocation to the member it revokes.
    ///
    /// All or nothing per replica: a commit that fails leaves the store as it was, and the
    /// replica is read back from the store, so it holds nothing the store does not (the ops
    /// it dropped come again with the next reconciliation).
    pub fn commit_all(
        &mut self,
        store: &mut Store,
        me: PeerId,
        from: Option<PeerId>,
    ) -> Result<Committed, StoreError> {
        let mut committed = Committed::default();
        let mut fresh: Vec<(ShareId, Vec<Op>)> = Vec::new();
        for (share, replica) in self.replicas.iter_mut() {
            let changes = match opstore::commit(&mut *store, replica) {
                Ok(changes) => changes,
                Err(e) => {
                    match opstore::open(&*store, *share, allpeers_model::hlc::now_ms()) {
                        Ok(stored) => *replica = stored,
                        Err(again) => {
                            allpeers_log::skin!(%share, "share not read back after a failed commit: {again}")
                        }
                    }
                    return Err(e);
                }
            };
            if changes.membership_changed {
                committed.membership.push(*share);
            }
            committed.ops += changes.stored.len();
            let live: Vec<Op> = changes
                .stored
                .keys()
                .filter_map(|id| replica.live_op(id).cloned())
                .collect();
            if !live.is_empty() {
                fresh.push((*share, live));
            }
        }
        for (share, ops) in fresh {
            let mut members: Vec<PeerId> = self.replicas[&share].members().into_keys().collect();
            // A revoked member is told (its session sends it its own revocation, nothing else).
            for op in &ops {
                if let Action::Revoke { member, .. } = op.body().action
                    && !members.contains(&member)
                {
                    members.push(member);
                }
            }
            for member in members {
                if member == me || Some(member) == from {
                    continue;
                }
                let session = session(&mut self.sessions, &mut self.push_budgets, member);
                for op in &ops {
                    session.push(op, &mut self.replicas);
                }
            }
        }
        Ok(committed)
    }

    /// Handles one request's sync frames from `peer`, in order (committed together by the
    /// caller). A peer that may sync none of our shares keeps no session (its answers are
    /// queued, then the session goes): strangers cost no memory.
    pub fn handle_frames(&mut self, peer: PeerId, frames: &[Vec<u8>], now: u64) {
        let session = session(&mut self.sessions, &mut self.push_budgets, peer);
        for frame in frames {
            session.handle(frame, &mut self.replicas, now);
        }
        let syncs_any = self
            .replicas
            .values()
            .any(|r| r.owner().is_none() || r.level(&peer).is_some());
        if !syncs_any && let Some(mut session) = self.sessions.remove(&peer) {
            let answers = std::iter::from_fn(|| session.poll_transmit()).collect();
            for request in rules::frame_requests(answers) {
                self.extra.push((peer, request));
            }
        }
    }

    /// Every request to send, per peer: offers, then the sessions' frames (as few requests
    /// as the bounds allow).
    pub fn outgoing(&mut self) -> Vec<(PeerId, Envelope)> {
        let mut out = std::mem::take(&mut self.extra);
        for (peer, session) in self.sessions.iter_mut() {
            let frames: Vec<Vec<u8>> = std::iter::from_fn(|| session.poll_transmit()).collect();
            out.extend(
                rules::frame_requests(frames)
                    .into_iter()
                    .map(|request| (*peer, request)),
            );
        }
        out
    }

    /// Every session's events, by peer.
    pub fn events(&mut self) -> Vec<(PeerId, SyncEvent)> {
        let mut out = Vec::new();
        for (peer, session) in self.sessions.iter_mut() {
            while let Some(event) = session.poll_event() {
                out.push((*peer, event));
            }
        }
        out
    }

    /// Time for the sessions (peers that never answer) and replicas (deferred ops).
    pub fn handle_timeout(&mut self, now: u64) {
        for session in self.sessions.values_mut() {
            if session.poll_timeout().is_some_and(|t| t <= now) {
                session.handle_timeout(now);
            }
        }
        for replica in self.replicas.values_mut() {
            if replica.poll_timeout().is_some_and(|t| t <= now) {
                replica.handle_timeout(now);
            }
        }
    }

    /// The offer of `share` for a peer we add or that does not hold it yet.
    pub fn offer(&self, share: &ShareId) -> Option<Envelope> {
        let record = self.records.get(share)?;
        Some(Envelope::Offer(Offer {
            share: rules::share_text(share),
            resource: record.root.clone(),
            title: record.title.clone(),
        }))
    }

    pub fn offers_waiting(&self) -> usize {
        self.records.values().filter(|r| r.state == OFFERED).count()
    }

    /// A share as the API shows it.
    pub fn view(&self, share: &ShareId, me: &PeerId) -> Option<Share> {
        let record = self.records.get(share)?;
        let replica = self.replicas.get(share);
        let members: Vec<ShareMember> = replica
            .map(|r| {
                r.members()
                    .into_iter()
                    .map(|(peer, level)| ShareMember {
                        peer,
                        level: rules::to_api(level),
                    })
                    .collect()
            })
            .unwrap_or_default();
        Some(Share {
            id: rules::share_text(share),
            resource: record.root.clone(),
            title: record.title.clone(),
            state: if record.state == ACCEPTED {
                ShareState::Accepted
            } else {
                ShareState::Offered
            },
            owner: replica.and_then(Replica::owner),
            from: record.peer.parse().unwrap_or(*me),
            level: replica.and_then(|r| r.level(me)).map(rules::to_api),
            members,
        })
    }

    /// One share's sync state; `online` says whether a member has a live connection.
    pub fn sync_view(
        &self,
        share: &ShareId,
        me: &PeerId,
        online: impl Fn(&PeerId) -> bool,
    ) -> Option<ShareSync> {
        let view = self.view(share, me)?;
        let replica = self.replicas.get(share)?;
        let (waiting, deferred) = replica.pending();
        let (ops, bytes) = replica.kept_ops().fold((0u64, 0u64), |(n, b), op| {
            (n + 1, b + op.wire().len() as u64)
        });
        Some(ShareSync {
            share: view.id,
            title: view.title,
            online: view
                .members
                .iter()
                .map(|m| m.peer)
                .filter(|p| p != me && online(p))
                .collect(),
            members: view.members,
            last_sync_ms: self.last_sync.get(share).copied(),
            ops_pending: (waiting + deferred) as u64,
            ops,
            bytes,
        })
    }
}

/// The session with `peer`, a new one going on with the push budgets its last one left.
fn session<'a>(
    sessions: &'a mut HashMap<PeerId, SyncPeer>,
    budgets: &mut HashMap<PeerId, PushBudgets>,
    peer: PeerId,
) -> &'a mut SyncPeer {
    sessions.entry(peer).or_insert_with(|| {
        let left = budgets.remove(&peer).unwrap_or_default();
        SyncPeer::resume(peer, MAX_MESSAGE_BYTES, left)
    })
}
