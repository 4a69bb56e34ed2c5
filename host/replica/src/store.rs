//! What the resource store implements so replicas survive restarts: ops and seq marks in, the
//! same back out. The replica decides everything; the store only keeps what
//! [`Replica::take_changes`] hands it, in one transaction with the materialised resources.

use std::collections::BTreeMap;

use allpeers_model::id::PeerId;

use crate::op::{Op, OpId, ShareId};
use crate::replica::{Changes, Replica};

/// What the store holds for one share.
#[derive(Debug, Default, Clone)]
pub struct Stored {
    /// Every op kept (any order), in wire form as [`Op::wire`] gave it.
    pub ops: Vec<Vec<u8>>,
    /// The per-author seq high-water marks.
    pub author_seqs: BTreeMap<PeerId, u64>,
}

/// Persistence of replicas. The daemon calls [`open`] at start for each share, and [`commit`]
/// after every batch of inserts (a sync frame, a local edit, a timeout).
pub trait OpStore {
    type Error: std::error::Error + Send + Sync + 'static;
    /// Everything kept for `share` (empty if nothing).
    fn load(&self, share: &ShareId) -> Result<Stored, Self::Error>;
    /// Atomically: inserts `changes.stored` (ignore ops already present), raises the seq marks
    /// in `changes.author_seqs`, and rewrites the materialised resources named in
    /// `changes.resources` from `replica.resource(id)` (a `{"deleted": true}` view is a
    /// tombstone). Local metadata is the store's own and is never touched.
    fn commit(
        &mut self,
        share: &ShareId,
        changes: &Changes,
        replica: &Replica,
    ) -> Result<(), Self::Error>;
}

#[derive(Debug, thiserror::Error)]
pub enum OpenError<E: std::error::Error + 'static> {
    #[error("loading the share's ops: {0}")]
    Store(#[source] E),
    #[error("a stored op no longer decodes: {0}")]
    Op(#[from] crate::op::OpError),
}

/// Rebuilds `share`'s replica from the store. Ops were verified when they first arrived, so
/// signatures are not checked again.
pub fn open<S: OpStore>(
    store: &S,
    share: ShareId,
    now_ms: u64,
) -> Result<Replica, OpenError<S::Error>> {
    let stored = store.load(&share).map_err(OpenError::Store)?;
    let ops = stored
        .ops
        .iter()
        .map(|w| Op::decode(w))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Replica::restore(share, ops, stored.author_seqs, now_ms))
}

/// Hands the replica's pending changes to the store (nothing if there are none).
pub fn commit<S: OpStore>(store: &mut S, replica: &mut Replica) -> Result<Changes, S::Error> {
    let changes = replica.take_changes();
    if !changes.is_empty() {
        store.commit(&replica.share(), &changes, replica)?;
    }
    Ok(changes)
}

/// An in-memory [`OpStore`], for tests and simulations (crash = drop the replica, keep this).
#[derive(Debug, Default, Clone)]
pub struct MemoryStore {
    shares: BTreeMap<ShareId, MemoryShare>,
}

#[derive(Debug, Default, Clone)]
struct MemoryShare {
    ops: BTreeMap<OpId, Vec<u8>>,
    seqs: BTreeMap<PeerId, u64>,
    resources: BTreeMap<String, serde_json::Value>,
}

impl MemoryStore {
    /// A resource as the store materialised it.
    pub fn resource(&self, share: &ShareId, id: &str) -> Option<&serde_json::Value> {
        self.shares.get(share)?.resources.get(id)
    }

    pub fn op_count(&self, share: &ShareId) -> usize {
        self.shares.get(share).map_or(0, |s| s.ops.len())
    }
}

impl OpStore for MemoryStore {
    type Error = std::convert::Infallible;

    fn load(&self, share: &ShareId) -> Result<Stored, Self::Error> {
        Ok(self
            .shares
            .get(share)
            .map(|s| Stored {
                ops: s.ops.values().cloned().collect(),
                author_seqs: s.seqs.clone(),
            })
            .unwrap_or_default())
    }

    fn commit(
        &mut self,
        share: &ShareId,
        changes: &Changes,
        replica: &Replica,
    ) -> Result<(), Self::Error> {
        let s = self.shares.entry(*share).or_default();
        for (id, op) in &changes.stored {
            s.ops.entry(*id).or_insert_with(|| op.wire().to_vec());
        }
        for (peer, seq) in &changes.author_seqs {
            let mark = s.seqs.entry(*peer).or_default();
            *mark = (*mark).max(*seq);
        }
        for id in &changes.resources {
            match replica.resource(id) {
                Some(view) => s.resources.insert(id.clone(), view),
                None => s.resources.remove(id),
            };
        }
        Ok(())
    }
}
