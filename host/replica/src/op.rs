//! Operations: what changed, who signed it, when, and which membership state it was made in.
//!
//! ## Canonical bytes (format 1)
//! ```text
//! u8 format (1) | share [32] | author [32] | varint seq | u64 wall_ms | u32 counter
//! | varint n, n × parent [32] (strictly ascending) | u8 action tag | action fields
//! ```
//! Strings and JSON values are varint-length-prefixed; JSON is in canonical form (object keys
//! sorted, no spaces, numbers as `serde_json` prints them) and the decoder refuses any other
//! spelling, so one content has exactly one op id. The wire form is the canonical bytes followed
//! by a proof that the author signed the op, one of:
//! ```text
//! single: signature [64]                 over SIGNATURE_DOMAIN ‖ op id
//! batch:  u8 depth (1..=MAX_BATCH_DEPTH) | u32 index (< 2^depth) | depth × sibling [32]
//!         | signature [64]               over BATCH_SIGNATURE_DOMAIN ‖ depth ‖ root
//! ```
//! A batch signature covers many ops at once (an author's ops signed together, as a share's
//! creation signs a whole list): the op ids are the leaves of a Merkle tree (padded with zero
//! ids to 2^depth leaves, nodes `BLAKE3-keyed(NODE_KEY, left ‖ right)`), its root is signed
//! once, and each op carries its own path to the root. An op is still judged alone, from its
//! own bytes: its path gives the root, the root's signature holds or not, whatever other ops
//! of the batch arrived, and in whatever order. One signature then costs a batch of ops a
//! tenth of a microsecond each, instead of a signing and a verification per op. The body
//! decodes on its own (every field says its length), so the proof is what follows it.
//!
//! The op id is the BLAKE3 hash of the canonical bytes. The genesis op (the share's first
//! `Create`) has an all-zero share field and no parents; its id is the share id, so every other
//! op is bound to one share and cannot be replayed into another.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use allpeers_model::id::PeerId;
use ed25519_dalek::{Signer, SigningKey};
use serde_json::Value as Json;

use crate::signature::{self, Keys, Refusal, Signed};
use crate::wire::{Reader, WireError, Writer};

/// Version byte at the start of the canonical bytes; a new encoding gets a new number.
pub const FORMAT_VERSION: u8 = 1;
/// Signatures cover this tag and the op id, so an op signature can never be taken for a
/// signature of anything else made with the same key.
pub const SIGNATURE_DOMAIN: &[u8] = b"allpeers/replica/op/v1";
/// Batch signatures cover this tag, the tree's depth and its root.
pub const BATCH_SIGNATURE_DOMAIN: &[u8] = b"allpeers/replica/batch/v1";
/// Key of the Merkle tree's inner nodes: a node can never be taken for an op id (a plain
/// BLAKE3 hash) or the other way round.
const NODE_KEY: &[u8; 32] = b"allpeers/replica/batch-node/v1\0\0";
/// A batch signature covers at most 2^16 ops (a path of 16 × 32 bytes): more would add bytes
/// to every op to save signatures already negligible.
pub const MAX_BATCH_DEPTH: u8 = 16;
/// Ops signed together by [`crate::Replica::author_many`]: 256 (a path of 8 × 32 = 256 bytes
/// an op) makes the signature's share of an op's cost negligible (a 64-op batch would add
/// 64 fewer bytes to each op but four times the signatures).
pub const BATCH_OPS: usize = 256;
/// An op carries one change of structured data; files travel by data transfer, not in ops.
pub const MAX_OP_BYTES: usize = 256 * 1024;
/// Upper bound on one JSON value inside an op (the op minus its fixed fields).
pub const MAX_VALUE_BYTES: usize = MAX_OP_BYTES - 4 * 1024;
/// Parents are the membership heads: more than a few means many concurrent admins.
pub const MAX_PARENTS: usize = 64;
/// A `ListRemove` names the add tags it saw; one item is rarely added more than a few times.
pub const MAX_REMOVE_TAGS: usize = 256;
/// Ops a revocation names beyond the contiguous seqs it saw (4,096 ids: 128 KiB, within an
/// op). A revoker holding more ops of the member past a gap cuts at the gap for the rest.
pub const MAX_REVOKE_ALSO: usize = 4096;
/// An app's schema file carried in a share (RELAX NG text).
pub const MAX_SCHEMA_TEXT_BYTES: usize = allpeers_model::schema::app::MAX_CARRIED_SCHEMA_BYTES;
/// Resource ids, property names, slot names, child keys and type names.
pub const MAX_NAME_BYTES: usize = allpeers_model::resource::MAX_ID_LEN;
/// Upper bound on children in one slot of a created resource (as in the resource model).
pub const MAX_CHILDREN: usize = allpeers_model::resource::MAX_LIST_LEN;
const SIGNATURE_LEN: usize = 64;

/// BLAKE3 of an op's canonical bytes.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct OpId(pub [u8; 32]);

/// A share is named by the id of its genesis op.
pub type ShareId = OpId;

impl OpId {
    pub const ZERO: OpId = OpId([0; 32]);
}

impl fmt::Display for OpId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for OpId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "OpId({})", &self.to_string()[..12])
    }
}

/// The hybrid-logical-clock stamp of an op (the node part of [`allpeers_model::hlc::Timestamp`]
/// is the author, carried separately).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Stamp {
    pub wall_ms: u64,
    pub counter: u32,
}

/// A member's level in a share. Ordered: admin ⊃ write ⊃ read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    Read = 1,
    Write = 2,
    Admin = 3,
}

impl Level {
    fn from_u8(v: u8) -> Option<Level> {
        match v {
            1 => Some(Level::Read),
            2 => Some(Level::Write),
            3 => Some(Level::Admin),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// A resource with its whole initial state: `{"properties": {...}, "children": {slot: [child, ...]}}`.
    Create {
        resource: String,
        kind: String,
        value: Json,
    },
    /// A `Create` of `resource` that also adds it to `list`, the op id being the add's tag:
    /// one op (one row, one decode, one merge) for each item of a shared list instead of two.
    /// Each half merges as its own op would; the op stays live while either half does (the
    /// item exists, or the tag is not removed). Tag 11: nodes from before it refuse the op
    /// when decoding (`OpError::ActionTag`), so they miss the item but nothing else.
    CreateInList {
        resource: String,
        kind: String,
        value: Json,
        list: String,
    },
    SetProperty {
        resource: String,
        name: String,
        value: Json,
    },
    /// Sets (or with `None` removes) the anonymous child `key` in `slot`.
    SetChild {
        resource: String,
        slot: String,
        key: String,
        value: Option<Json>,
    },
    /// A tombstone: the resource never comes back.
    Delete {
        resource: String,
    },
    /// Adds `item` to `list`; the op id is the add's tag.
    ListAdd {
        list: String,
        item: String,
    },
    /// Removes the add tags the author saw; a concurrent add (another tag) keeps the item in.
    ListRemove {
        list: String,
        item: String,
        tags: Vec<OpId>,
    },
    /// Moves `item` of `list` to `position` (a key of [`crate::position`]): the item's place
    /// is a last-writer-wins register, so concurrent moves of one item settle on one place.
    ListMove {
        list: String,
        item: String,
        position: String,
    },
    Grant {
        member: PeerId,
        level: Level,
    },
    /// Revokes `member`. What the revoker had seen of them stands: their ops with
    /// `seq <= after_seq` (the revoker held all of them, contiguously) and those named in `also`
    /// (held beyond the gap); any other op of theirs made without seeing this revocation is
    /// rejected. A seq the member made up (a jump, or a gap filled later) is not covered.
    Revoke {
        member: PeerId,
        after_seq: u64,
        also: Vec<OpId>,
    },
    /// The schema file `file` the share's resources are of (an app's own types), so a member
    /// that never saw the type can store it: a last-writer-wins register per file. The core
    /// only carries it; what a node registers is the store's decision.
    Schema {
        file: String,
        text: String,
    },
}

impl Action {
    fn tag(&self) -> u8 {
        match self {
            Action::Create { .. } => 1,
            Action::SetProperty { .. } => 2,
            Action::SetChild { .. } => 3,
            Action::Delete { .. } => 4,
            Action::ListAdd { .. } => 5,
            Action::ListRemove { .. } => 6,
            Action::Grant { .. } => 7,
            Action::Revoke { .. } => 8,
            Action::ListMove { .. } => 9,
            Action::Schema { .. } => 10,
            Action::CreateInList { .. } => 11,
        }
    }

    /// Grants and revocations: the ops validity is judged against; always live.
    pub fn is_membership(&self) -> bool {
        matches!(self, Action::Grant { .. } | Action::Revoke { .. })
    }

    /// This action with its JSON value left out (`null` in its place); `None` when it carries
    /// no value (nothing to leave out).
    fn clone_without_value(&self) -> Option<Action> {
        Some(match self {
            Action::Create { resource, kind, .. } => Action::Create {
                resource: resource.clone(),
                kind: kind.clone(),
                value: Json::Null,
            },
            Action::CreateInList {
                resource,
                kind,
                list,
                ..
            } => Action::CreateInList {
                resource: resource.clone(),
                kind: kind.clone(),
                value: Json::Null,
                list: list.clone(),
            },
            Action::SetProperty { resource, name, .. } => Action::SetProperty {
                resource: resource.clone(),
                name: name.clone(),
                value: Json::Null,
            },
            Action::SetChild { value: None, .. } => return None,
            Action::SetChild {
                resource,
                slot,
                key,
                value: Some(_),
            } => Action::SetChild {
                resource: resource.clone(),
                slot: slot.clone(),
                key: key.clone(),
                value: Some(Json::Null),
            },
            _ => return None,
        })
    }

    /// The action's JSON value, if it carries one.
    fn value_mut(&mut self) -> Option<&mut Json> {
        match self {
            Action::Create { value, .. }
            | Action::CreateInList { value, .. }
            | Action::SetProperty { value, .. } => Some(value),
            Action::SetChild { value, .. } => value.as_mut(),
            _ => None,
        }
    }

    /// The resource a data op touches (the list for list ops, the item for `CreateInList`).
    pub fn resource(&self) -> Option<&str> {
        match self {
            Action::Create { resource, .. }
            | Action::CreateInList { resource, .. }
            | Action::SetProperty { resource, .. }
            | Action::SetChild { resource, .. }
            | Action::Delete { resource } => Some(resource),
            Action::ListAdd { list, .. }
            | Action::ListRemove { list, .. }
            | Action::ListMove { list, .. } => Some(list),
            Action::Grant { .. } | Action::Revoke { .. } | Action::Schema { .. } => None,
        }
    }
}

/// The signed content of an op.
#[derive(Debug, Clone, PartialEq)]
pub struct OpBody {
    /// [`OpId::ZERO`] for the genesis op.
    pub share: ShareId,
    pub author: PeerId,
    /// The author's 1-based count of ops in this share; revocations cut by it.
    pub seq: u64,
    pub stamp: Stamp,
    /// The membership heads (genesis, grants, revocations) the author had seen, ascending.
    pub parents: Vec<OpId>,
    pub action: Action,
}

impl OpBody {
    /// The canonical bytes: what the op id hashes (parents and tags in ascending order).
    pub fn canonical_bytes(&self) -> Vec<u8> {
        encode_body(self)
    }
}

/// A decoded, signed op. Cheap to clone.
#[derive(Clone)]
pub struct Op {
    inner: Arc<OpInner>,
}

struct OpInner {
    body: OpBody,
    id: OpId,
    /// The action's JSON value is left out of `body` (see [`Op::without_value`]).
    value_left_out: bool,
    wire: Vec<u8>,
    /// Where the canonical bytes end and the proof starts in `wire`.
    canonical_len: usize,
    proof: Proof,
}

/// How an op's signature covers it (the proof's shape, checked when decoded).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Proof {
    Single,
    Batch { depth: u8, index: u32 },
}

impl fmt::Debug for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Op")
            .field("id", &self.id())
            .field("body", &self.inner.body)
            .finish()
    }
}

impl PartialEq for Op {
    fn eq(&self, other: &Op) -> bool {
        self.inner.wire == other.inner.wire
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpError {
    #[error("op of {0} bytes is above the limit of {MAX_OP_BYTES}")]
    TooLarge(usize),
    #[error("malformed op: {0}")]
    Wire(#[from] WireError),
    #[error("unknown op format {0}")]
    Format(u8),
    #[error("unknown action tag {0}")]
    ActionTag(u8),
    #[error("unknown level {0}")]
    Level(u8),
    #[error("parents are not strictly ascending")]
    ParentOrder,
    #[error("the author key is not a valid Ed25519 point")]
    AuthorKey,
    #[error("{0} is not valid JSON")]
    Json(&'static str),
    #[error("{0} is JSON in a non-canonical spelling")]
    NonCanonicalJson(&'static str),
    #[error("create value must be {{\"properties\": {{..}}, \"children\": {{slot: [..]}}}}: {0}")]
    CreateShape(&'static str),
    #[error("a resource cannot be created inside itself as a list item")]
    SelfPlacement,
    #[error("seq 0: an author's ops count from 1")]
    ZeroSeq,
    #[error("the signature does not verify")]
    Signature,
    #[error("malformed signature proof: {0}")]
    Proof(&'static str),
}

impl Op {
    /// Signs `body` with `key` (whose public key must be `body.author`).
    pub fn sign(body: OpBody, key: &SigningKey) -> Result<Op, OpError> {
        let canonical = encode_body(&body);
        if canonical.len() + SIGNATURE_LEN > MAX_OP_BYTES {
            return Err(OpError::TooLarge(canonical.len() + SIGNATURE_LEN));
        }
        let id = OpId(*blake3::hash(&canonical).as_bytes());
        let signature = key.sign(&signed_message(&id));
        let mut wire = canonical;
        wire.extend_from_slice(&signature.to_bytes());
        // Decoding what we wrote proves it canonical (names within their limits, the create
        // value's shape) and gives the body in canonical order (parents and tags sorted). The
        // signature is not checked again: it is our own key's, just made (checking it doubled
        // the cost of signing a share's ops).
        Op::decode_signed(wire, body.action)
    }

    /// What [`Op::sign`] and [`Op::sign_batch`] made of `action`, decoded: every check of
    /// [`Op::decode`] holds, but the action's JSON value is `action`'s own, not parsed again
    /// from the bytes just printed from it (parsing and re-printing it was most of a signing's
    /// decode). A value nested deeper than [`TRUSTED_JSON_DEPTH`] is parsed as received ones
    /// are, so what a peer's decoder refuses is refused here too.
    fn decode_signed(wire: Vec<u8>, mut action: Action) -> Result<Op, OpError> {
        let given = action
            .value_mut()
            .filter(|v| json_depth_within(v, TRUSTED_JSON_DEPTH))
            .map(std::mem::take);
        Op::decode_owned(wire, given)
    }

    /// Decodes and verifies the signature: the entry point for bytes from the network.
    pub fn from_wire(bytes: &[u8]) -> Result<Op, OpError> {
        let op = Op::decode(bytes)?;
        op.verify()?;
        Ok(op)
    }

    /// Signs `bodies` (all by `key`'s owner) with one signature: see the module's "batch"
    /// proof. One body is signed alone; at most 2^[`MAX_BATCH_DEPTH`] bodies.
    pub fn sign_batch(bodies: Vec<OpBody>, key: &SigningKey) -> Result<Vec<Op>, OpError> {
        if bodies.len() <= 1 {
            return bodies.into_iter().map(|b| Op::sign(b, key)).collect();
        }
        let depth = bodies.len().next_power_of_two().trailing_zeros() as u8;
        if depth > MAX_BATCH_DEPTH {
            return Err(OpError::Proof("too many ops for one batch signature"));
        }
        let proof_len = batch_proof_len(depth);
        let canonical: Vec<Vec<u8>> = bodies.iter().map(encode_body).collect();
        if let Some(big) = canonical
            .iter()
            .find(|c| c.len() + proof_len > MAX_OP_BYTES)
        {
            return Err(OpError::TooLarge(big.len() + proof_len));
        }
        // Every level of the tree, the leaves (padded with zero ids) first.
        let mut levels: Vec<Vec<[u8; 32]>> = vec![
            canonical
                .iter()
                .map(|c| *blake3::hash(c).as_bytes())
                .chain(std::iter::repeat([0; 32]))
                .take(1 << depth)
                .collect(),
        ];
        while levels.last().expect("leaves").len() > 1 {
            let next = levels
                .last()
                .expect("a level")
                .chunks(2)
                .map(|pair| node(&pair[0], &pair[1]))
                .collect();
            levels.push(next);
        }
        let root = levels.last().expect("the root")[0];
        let signature = key.sign(&batch_message(depth, &root)).to_bytes();
        canonical
            .into_iter()
            .zip(bodies.into_iter().map(|b| b.action))
            .enumerate()
            .map(|(index, (mut wire, action))| {
                wire.reserve(proof_len);
                wire.push(depth);
                wire.extend_from_slice(&(index as u32).to_le_bytes());
                for (level, nodes) in levels[..depth as usize].iter().enumerate() {
                    wire.extend_from_slice(&nodes[(index >> level) ^ 1]);
                }
                wire.extend_from_slice(&signature);
                // As in `sign`: decoding proves what we wrote canonical.
                Op::decode_signed(wire, action)
            })
            .collect()
    }

    /// Decodes without checking the signature (the fuzz target's entry and the store's reload
    /// of ops it verified before).
    pub fn decode(bytes: &[u8]) -> Result<Op, OpError> {
        if bytes.len() > MAX_OP_BYTES {
            return Err(OpError::TooLarge(bytes.len()));
        }
        Op::decode_owned(bytes.to_vec(), None)
    }

    /// [`Op::decode`] of bytes already owned (no copy); `given`, if any, is the action's JSON
    /// value (see [`Op::decode_signed`]).
    pub(crate) fn decode_owned(wire: Vec<u8>, given: Option<Json>) -> Result<Op, OpError> {
        if wire.len() > MAX_OP_BYTES {
            return Err(OpError::TooLarge(wire.len()));
        }
        let (body, canonical_len) = decode_body(&wire, given)?;
        let proof = decode_proof(&wire[canonical_len..])?;
        let id = OpId(*blake3::hash(&wire[..canonical_len]).as_bytes());
        Ok(Op {
            inner: Arc::new(OpInner {
                body,
                id,
                value_left_out: false,
                wire,
                canonical_len,
                proof,
            }),
        })
    }

    /// This op as a replica keeps it once processed: its action's JSON value left out (`null`
    /// in its place; the merged state holds its own copy of what counts), the rest as it was.
    /// A share of 100,000 items kept every value twice (~1.3 KB an item). Only a rebuild of
    /// the state reads the values again: [`Op::with_value`].
    pub(crate) fn without_value(&self) -> Op {
        if self.inner.value_left_out {
            return self.clone();
        }
        let Some(action) = self.inner.body.action.clone_without_value() else {
            return self.clone();
        };
        let body = &self.inner.body;
        Op {
            inner: Arc::new(OpInner {
                body: OpBody {
                    share: body.share,
                    author: body.author,
                    seq: body.seq,
                    stamp: body.stamp,
                    parents: body.parents.clone(),
                    action,
                },
                id: self.inner.id,
                value_left_out: true,
                wire: self.inner.wire.clone(),
                canonical_len: self.inner.canonical_len,
                proof: self.inner.proof,
            }),
        }
    }

    /// This op with its action's JSON value: decoded again from its bytes if it was left out.
    pub(crate) fn with_value(&self) -> Op {
        if !self.inner.value_left_out {
            return self.clone();
        }
        // The same bytes decoded once already (and checked then): they decode again.
        Op::decode(&self.inner.wire).expect("an op's own bytes decode")
    }

    /// Whether the author's signature holds (see [`crate::signature`]: the same verdict as
    /// among others in [`verify_many`]).
    pub fn verify(&self) -> Result<(), OpError> {
        let message = self.signed_message();
        signature::verify(&self.signed(&message)).map_err(|refusal| match refusal {
            Refusal::Key => OpError::AuthorKey,
            Refusal::Signature => OpError::Signature,
        })
    }

    /// What the signature covers: the op id, or the root of its batch's tree (from the op id
    /// and the path it carries).
    fn signed_message(&self) -> Vec<u8> {
        match self.inner.proof {
            Proof::Single => signed_message(&self.id()),
            Proof::Batch { depth, index } => {
                let path = &self.inner.wire[self.inner.canonical_len + 5..];
                let mut at = self.id().0;
                for (level, sibling) in path.chunks_exact(32).take(depth as usize).enumerate() {
                    let sibling: &[u8; 32] = sibling.try_into().expect("32 bytes");
                    at = if (index >> level) & 1 == 0 {
                        node(&at, sibling)
                    } else {
                        node(sibling, &at)
                    };
                }
                batch_message(depth, &at)
            }
        }
    }

    /// The canonical bytes (what the op id hashes), without the proof.
    pub fn canonical(&self) -> &[u8] {
        &self.inner.wire[..self.inner.canonical_len]
    }

    /// What the signature check needs, with `message` the op's [`Op::signed_message`].
    fn signed<'a>(&'a self, message: &'a [u8]) -> Signed<'a> {
        let wire = &self.inner.wire;
        Signed {
            key: self.body().author.public_key(),
            message,
            signature: wire[wire.len() - SIGNATURE_LEN..]
                .try_into()
                .expect("decoded ops end in a signature"),
        }
    }

    pub fn id(&self) -> OpId {
        self.inner.id
    }
    pub fn body(&self) -> &OpBody {
        &self.inner.body
    }
    /// Canonical bytes and signature, as sent and stored.
    pub fn wire(&self) -> &[u8] {
        &self.inner.wire
    }
    /// The last-writer-wins order: HLC stamp, then author, then op id. It extends causality
    /// because an op's stamp is above its parents' (checked by the replica).
    pub fn order_key(&self) -> OrderKey {
        let b = self.body();
        OrderKey {
            stamp: b.stamp,
            author: b.author,
            id: self.id(),
        }
    }
}

/// Total order of ops for last-writer-wins and for the membership pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct OrderKey {
    pub stamp: Stamp,
    pub author: PeerId,
    pub id: OpId,
}

/// Signatures verified at most per thread of [`verify_many`]: fewer are not worth a thread.
const VERIFY_CHUNK: usize = 512;

/// Whether each op's signature holds, as [`Op::verify`] says, for a batch (an initial sync's
/// frames are mostly this). Ops of one batch signature (same author, same root, same
/// signature) share one check; the distinct signatures go [`signature::BATCH`] to an equation
/// (a failed one again one by one, so a forged op is refused alone), each author's key
/// decompressed once per thread, and many split over the machine's cores (at most 4).
pub fn verify_many(ops: &[Op]) -> Vec<bool> {
    type Claim = ([u8; 32], Vec<u8>, [u8; 64]);
    let mut distinct: Vec<Claim> = Vec::new();
    let mut index: HashMap<Claim, usize> = HashMap::new();
    let of_op: Vec<usize> = ops
        .iter()
        .map(|op| {
            let signed = op.signed(&[]);
            let claim = (*signed.key, op.signed_message(), *signed.signature);
            *index.entry(claim.clone()).or_insert_with(|| {
                distinct.push(claim);
                distinct.len() - 1
            })
        })
        .collect();
    fn run(claims: &[Claim]) -> Vec<bool> {
        let signed: Vec<Signed> = claims
            .iter()
            .map(|(key, message, signature)| Signed {
                key,
                message,
                signature,
            })
            .collect();
        signature::verify_all(&signed, &mut Keys::default())
            .into_iter()
            .map(|verdict| verdict.is_ok())
            .collect()
    }
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, 4)
        .min(distinct.len().div_ceil(VERIFY_CHUNK));
    let verdicts: Vec<bool> = if threads <= 1 {
        run(&distinct)
    } else {
        let chunk = distinct.len().div_ceil(threads);
        std::thread::scope(|scope| {
            let parts: Vec<_> = distinct
                .chunks(chunk)
                .map(|part| scope.spawn(move || run(part)))
                .collect();
            parts
                .into_iter()
                .flat_map(|p| p.join().expect("verification does not panic"))
                .collect()
        })
    };
    of_op.into_iter().map(|i| verdicts[i]).collect()
}

/// An inner node of a batch's Merkle tree.
fn node(left: &[u8; 32], right: &[u8; 32]) -> [u8; 32] {
    let mut hasher = blake3::Hasher::new_keyed(NODE_KEY);
    hasher.update(left);
    hasher.update(right);
    *hasher.finalize().as_bytes()
}

/// What a batch signature signs.
fn batch_message(depth: u8, root: &[u8; 32]) -> Vec<u8> {
    let mut m = Vec::with_capacity(BATCH_SIGNATURE_DOMAIN.len() + 33);
    m.extend_from_slice(BATCH_SIGNATURE_DOMAIN);
    m.push(depth);
    m.extend_from_slice(root);
    m
}

/// Bytes of a batch proof of `depth`.
fn batch_proof_len(depth: u8) -> usize {
    1 + 4 + 32 * depth as usize + SIGNATURE_LEN
}

/// The proof after an op's canonical bytes: exactly a signature, or exactly a batch proof.
fn decode_proof(proof: &[u8]) -> Result<Proof, OpError> {
    if proof.len() == SIGNATURE_LEN {
        return Ok(Proof::Single);
    }
    let (&depth, rest) = proof.split_first().ok_or(WireError::Truncated {
        needed: SIGNATURE_LEN,
    })?;
    if depth == 0 || depth > MAX_BATCH_DEPTH {
        return Err(OpError::Proof("batch depth"));
    }
    if proof.len() != batch_proof_len(depth) {
        return Err(OpError::Proof("length"));
    }
    let index = u32::from_le_bytes(rest[..4].try_into().expect("4 bytes"));
    if u64::from(index) >= 1u64 << depth {
        return Err(OpError::Proof("index beyond the tree"));
    }
    Ok(Proof::Batch { depth, index })
}

fn signed_message(id: &OpId) -> Vec<u8> {
    let mut m = Vec::with_capacity(SIGNATURE_DOMAIN.len() + 32);
    m.extend_from_slice(SIGNATURE_DOMAIN);
    m.extend_from_slice(&id.0);
    m
}

fn encode_body(body: &OpBody) -> Vec<u8> {
    let mut w = Writer::default();
    w.u8(FORMAT_VERSION);
    w.bytes(&body.share.0);
    w.bytes(body.author.public_key());
    w.varint(body.seq);
    w.u64(body.stamp.wall_ms);
    w.u32(body.stamp.counter);
    let mut parents = body.parents.clone();
    parents.sort();
    parents.dedup();
    w.varint(parents.len() as u64);
    for p in &parents {
        w.bytes(&p.0);
    }
    w.u8(body.action.tag());
    match &body.action {
        Action::Create {
            resource,
            kind,
            value,
        } => {
            w.blob(resource.as_bytes());
            w.blob(kind.as_bytes());
            w.blob(&canonical_json_bytes(value));
        }
        Action::CreateInList {
            resource,
            kind,
            value,
            list,
        } => {
            w.blob(resource.as_bytes());
            w.blob(kind.as_bytes());
            w.blob(&canonical_json_bytes(value));
            w.blob(list.as_bytes());
        }
        Action::SetProperty {
            resource,
            name,
            value,
        } => {
            w.blob(resource.as_bytes());
            w.blob(name.as_bytes());
            w.blob(&canonical_json_bytes(value));
        }
        Action::SetChild {
            resource,
            slot,
            key,
            value,
        } => {
            w.blob(resource.as_bytes());
            w.blob(slot.as_bytes());
            w.blob(key.as_bytes());
            match value {
                None => w.u8(0),
                Some(v) => {
                    w.u8(1);
                    w.blob(&canonical_json_bytes(v));
                }
            }
        }
        Action::Delete { resource } => w.blob(resource.as_bytes()),
        Action::ListAdd { list, item } => {
            w.blob(list.as_bytes());
            w.blob(item.as_bytes());
        }
        Action::ListRemove { list, item, tags } => {
            w.blob(list.as_bytes());
            w.blob(item.as_bytes());
            let mut tags = tags.clone();
            tags.sort();
            tags.dedup();
            w.varint(tags.len() as u64);
            for t in &tags {
                w.bytes(&t.0);
            }
        }
        Action::ListMove {
            list,
            item,
            position,
        } => {
            w.blob(list.as_bytes());
            w.blob(item.as_bytes());
            w.blob(position.as_bytes());
        }
        Action::Grant { member, level } => {
            w.bytes(member.public_key());
            w.u8(*level as u8);
        }
        Action::Schema { file, text } => {
            w.blob(file.as_bytes());
            w.blob(text.as_bytes());
        }
        Action::Revoke {
            member,
            after_seq,
            also,
        } => {
            w.bytes(member.public_key());
            w.varint(*after_seq);
            let mut also = also.clone();
            also.sort();
            also.dedup();
            w.varint(also.len() as u64);
            for id in &also {
                w.bytes(&id.0);
            }
        }
    }
    w.out
}

/// The body at the start of `bytes`, and where it ends.
/// `given`: the action's JSON value as the signer holds it, taken instead of parsing the bytes
/// printed from it (see [`Op::decode_signed`]); `None` for bytes from elsewhere.
fn decode_body(bytes: &[u8], mut given: Option<Json>) -> Result<(OpBody, usize), OpError> {
    let mut r = Reader::new(bytes);
    let format = r.u8()?;
    if format != FORMAT_VERSION {
        return Err(OpError::Format(format));
    }
    let share = OpId(r.array()?);
    let author = PeerId::from_public_key(r.array()?);
    let seq = r.varint()?;
    if seq == 0 {
        return Err(OpError::ZeroSeq);
    }
    let stamp = Stamp {
        wall_ms: r.u64()?,
        counter: r.u32()?,
    };
    let parents = ascending_ids(&mut r, "parents", MAX_PARENTS)?;
    let name = |r: &mut Reader<'_>, what| r.string(what, MAX_NAME_BYTES);
    let action = match r.u8()? {
        1 => {
            let resource = name(&mut r, "resource id")?;
            let kind = name(&mut r, "type name")?;
            let value = json(&mut r, "create value", &mut given)?;
            check_create_shape(&value)?;
            Action::Create {
                resource,
                kind,
                value,
            }
        }
        2 => Action::SetProperty {
            resource: name(&mut r, "resource id")?,
            name: name(&mut r, "property name")?,
            value: json(&mut r, "property value", &mut given)?,
        },
        3 => {
            let resource = name(&mut r, "resource id")?;
            let slot = name(&mut r, "child slot")?;
            let key = name(&mut r, "child key")?;
            let value = match r.u8()? {
                0 => None,
                1 => Some(json(&mut r, "child value", &mut given)?),
                _ => return Err(OpError::Json("child value presence flag")),
            };
            Action::SetChild {
                resource,
                slot,
                key,
                value,
            }
        }
        4 => Action::Delete {
            resource: name(&mut r, "resource id")?,
        },
        5 => Action::ListAdd {
            list: name(&mut r, "list id")?,
            item: name(&mut r, "item id")?,
        },
        6 => Action::ListRemove {
            list: name(&mut r, "list id")?,
            item: name(&mut r, "item id")?,
            tags: ascending_ids(&mut r, "remove tags", MAX_REMOVE_TAGS)?,
        },
        7 => {
            let member = PeerId::from_public_key(r.array()?);
            let raw = r.u8()?;
            let level = Level::from_u8(raw).ok_or(OpError::Level(raw))?;
            Action::Grant { member, level }
        }
        8 => Action::Revoke {
            member: PeerId::from_public_key(r.array()?),
            after_seq: r.varint()?,
            also: ascending_ids(
                &mut r,
                "revocation's ops seen beyond the gap",
                MAX_REVOKE_ALSO,
            )?,
        },
        9 => Action::ListMove {
            list: name(&mut r, "list id")?,
            item: name(&mut r, "item id")?,
            position: name(&mut r, "list position")?,
        },
        10 => Action::Schema {
            file: name(&mut r, "schema file")?,
            text: r.string("schema text", MAX_SCHEMA_TEXT_BYTES)?,
        },
        11 => {
            let resource = name(&mut r, "resource id")?;
            let kind = name(&mut r, "type name")?;
            let value = json(&mut r, "create value", &mut given)?;
            check_create_shape(&value)?;
            let list = name(&mut r, "list id")?;
            if list == resource {
                return Err(OpError::SelfPlacement);
            }
            Action::CreateInList {
                resource,
                kind,
                value,
                list,
            }
        }
        other => return Err(OpError::ActionTag(other)),
    };
    let body = OpBody {
        share,
        author,
        seq,
        stamp,
        parents,
        action,
    };
    Ok((body, bytes.len() - r.remaining()))
}

fn ascending_ids(
    r: &mut Reader<'_>,
    what: &'static str,
    limit: usize,
) -> Result<Vec<OpId>, OpError> {
    let n = r.bounded(what, limit as u64)? as usize;
    let mut ids: Vec<OpId> = Vec::with_capacity(n.min(r.remaining() / 32));
    for _ in 0..n {
        let id = OpId(r.array()?);
        if ids.last().is_some_and(|last| *last >= id) {
            return Err(OpError::ParentOrder);
        }
        ids.push(id);
    }
    Ok(ids)
}

fn json(r: &mut Reader<'_>, what: &'static str, given: &mut Option<Json>) -> Result<Json, OpError> {
    let raw = r.blob(what, MAX_VALUE_BYTES)?;
    if let Some(value) = given.take() {
        // Printed from this very value by `canonical_json_bytes`: canonical by construction.
        return Ok(value);
    }
    let value: Json = serde_json::from_slice(raw).map_err(|_| OpError::Json(what))?;
    if canonical_json_bytes(&value) != raw {
        return Err(OpError::NonCanonicalJson(what));
    }
    Ok(value)
}

fn check_create_shape(value: &Json) -> Result<(), OpError> {
    let obj = value
        .as_object()
        .ok_or(OpError::CreateShape("not an object"))?;
    for (key, field) in obj {
        match key.as_str() {
            "properties" => {
                let props = field
                    .as_object()
                    .ok_or(OpError::CreateShape("properties is not an object"))?;
                if props.keys().any(|k| k.len() > MAX_NAME_BYTES) {
                    return Err(OpError::CreateShape("property name too long"));
                }
            }
            "children" => {
                let slots = field
                    .as_object()
                    .ok_or(OpError::CreateShape("children is not an object"))?;
                for (slot, children) in slots {
                    let list = children
                        .as_array()
                        .ok_or(OpError::CreateShape("a child slot is not an array"))?;
                    if slot.len() > MAX_NAME_BYTES || list.len() > MAX_CHILDREN {
                        return Err(OpError::CreateShape("child slot name or length"));
                    }
                }
            }
            _ => return Err(OpError::CreateShape("unknown field")),
        }
    }
    Ok(())
}

/// Canonical JSON text: object keys sorted by their UTF-8 bytes, no whitespace. Written by hand
/// so `serde_json`'s `preserve_order` feature (unified by Cargo across the workspace) cannot
/// change op ids.
pub fn canonical_json(value: &Json) -> String {
    String::from_utf8(canonical_json_bytes(value)).expect("JSON text is UTF-8")
}

/// [`canonical_json`] as bytes: what ops carry and the decoder compares against.
fn canonical_json_bytes(value: &Json) -> Vec<u8> {
    let mut out = Vec::new();
    write_json(value, &mut out);
    out
}

/// JSON values nested at most this deep are taken as signed, not parsed again, by
/// [`Op::decode_signed`]: well within `serde_json`'s parsing limit of 128 levels, so a value the
/// signer keeps is one every peer's decoder parses.
const TRUSTED_JSON_DEPTH: usize = 100;

/// Whether `value` nests at most `depth` arrays and objects deep.
fn json_depth_within(value: &Json, depth: usize) -> bool {
    match value {
        Json::Object(map) => depth > 0 && map.values().all(|v| json_depth_within(v, depth - 1)),
        Json::Array(items) => depth > 0 && items.iter().all(|v| json_depth_within(v, depth - 1)),
        _ => true,
    }
}

/// Strings and scalars as `serde_json` prints them (its escapes, its shortest round-trip
/// numbers), straight into `out`: no copy of a key or value on the way.
fn write_json(value: &Json, out: &mut Vec<u8>) {
    match value {
        Json::Object(map) => {
            let mut sorted: Vec<(&String, &Json)> = map.iter().collect();
            sorted.sort_unstable_by(|a, b| a.0.cmp(b.0));
            out.push(b'{');
            for (i, (k, v)) in sorted.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                serde_json::to_writer(&mut *out, k).expect("writing to memory");
                out.push(b':');
                write_json(v, out);
            }
            out.push(b'}');
        }
        Json::Array(items) => {
            out.push(b'[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_json(v, out);
            }
            out.push(b']');
        }
        scalar => serde_json::to_writer(&mut *out, scalar).expect("writing to memory"),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use serde_json::json;
    use std::collections::BTreeMap;

    pub fn key(n: u8) -> SigningKey {
        SigningKey::from_bytes(&[n; 32])
    }

    pub fn peer(key: &SigningKey) -> PeerId {
        PeerId::from_public_key(key.verifying_key().to_bytes())
    }

    fn sample(action: Action) -> Op {
        let k = key(1);
        Op::sign(
            OpBody {
                share: OpId([9; 32]),
                author: peer(&k),
                seq: 3,
                stamp: Stamp {
                    wall_ms: 1_764_590_000_000,
                    counter: 2,
                },
                parents: vec![OpId([2; 32]), OpId([1; 32])],
                action,
            },
            &k,
        )
        .unwrap()
    }

    pub fn every_action() -> Vec<Action> {
        vec![
            Action::Create {
                resource: "r1".into(),
                kind: "List".into(),
                value: json!({"properties": {"name": "Holiday", "n": 1.5}, "children": {"c": [{"properties": {}}]}}),
            },
            Action::SetProperty {
                resource: "r1".into(),
                name: "name".into(),
                value: json!("Holiday 2026"),
            },
            Action::SetChild {
                resource: "r1".into(),
                slot: "notes".into(),
                key: "k".into(),
                value: Some(json!({"properties": {"text": "hi"}})),
            },
            Action::SetChild {
                resource: "r1".into(),
                slot: "notes".into(),
                key: "k".into(),
                value: None,
            },
            Action::Delete {
                resource: "r1".into(),
            },
            Action::ListAdd {
                list: "r1".into(),
                item: "i1".into(),
            },
            Action::ListRemove {
                list: "r1".into(),
                item: "i1".into(),
                tags: vec![OpId([5; 32]), OpId([4; 32])],
            },
            Action::ListMove {
                list: "r1".into(),
                item: "i1".into(),
                position: "17645900000000000000005".into(),
            },
            Action::Grant {
                member: peer(&key(2)),
                level: Level::Write,
            },
            Action::Revoke {
                member: peer(&key(2)),
                after_seq: 7,
                also: vec![OpId([9; 32]), OpId([8; 32])],
            },
            Action::Schema {
                file: "app_abc_schema".into(),
                text: "<grammar/>".into(),
            },
            Action::CreateInList {
                resource: "i1".into(),
                kind: "Link".into(),
                value: json!({"properties": {"url": "https://a.example"}}),
                list: "r1".into(),
            },
        ]
    }

    #[test]
    fn every_action_round_trips_and_the_id_is_the_hash_of_the_canonical_bytes() {
        for action in every_action() {
            let op = sample(action);
            let back = Op::from_wire(op.wire()).unwrap();
            assert_eq!(back, op);
            assert_eq!(back.body(), op.body());
            let canonical = &op.wire()[..op.wire().len() - 64];
            assert_eq!(op.id().0, *blake3::hash(canonical).as_bytes());
            // Parents were sorted on the way in.
            assert_eq!(back.body().parents, vec![OpId([1; 32]), OpId([2; 32])]);
        }
    }

    #[test]
    fn a_flipped_bit_anywhere_is_refused() {
        let op = sample(every_action().remove(1));
        for i in 0..op.wire().len() {
            let mut bad = op.wire().to_vec();
            bad[i] ^= 0x01;
            assert!(
                Op::from_wire(&bad).is_err(),
                "bit flip at byte {i} accepted"
            );
        }
    }

    #[test]
    fn a_signature_by_another_key_is_refused() {
        let op = sample(every_action().remove(1));
        let mut body = op.body().clone();
        body.author = peer(&key(1));
        // Sign with key 2 while claiming key 1.
        let canonical = encode_body(&body);
        let id = OpId(*blake3::hash(&canonical).as_bytes());
        let sig = key(2).sign(&signed_message(&id));
        let mut wire = canonical;
        wire.extend_from_slice(&sig.to_bytes());
        assert_eq!(Op::from_wire(&wire), Err(OpError::Signature));
        assert!(
            Op::decode(&wire).is_ok(),
            "decodes, only the signature fails"
        );
    }

    #[test]
    fn a_batch_with_one_forged_op_refuses_exactly_that_op() {
        let ops: Vec<Op> = (0..1_000u64)
            .map(|i| {
                let k = key(1 + (i % 2) as u8);
                Op::sign(
                    OpBody {
                        share: OpId([9; 32]),
                        author: peer(&k),
                        seq: i + 1,
                        stamp: Stamp {
                            wall_ms: 1_764_590_000_000 + i,
                            counter: 0,
                        },
                        parents: vec![],
                        action: Action::SetProperty {
                            resource: "r".into(),
                            name: "n".into(),
                            value: Json::from(i),
                        },
                    },
                    &k,
                )
                .unwrap()
            })
            .collect();
        assert!(verify_many(&ops).iter().all(|ok| *ok));
        // Op 617 re-signed by key 3 while still claiming its author: a forgery.
        let mut forged = ops.clone();
        let wire = ops[617].wire();
        let canonical = &wire[..wire.len() - SIGNATURE_LEN];
        let mut bytes = canonical.to_vec();
        bytes.extend_from_slice(&key(3).sign(&signed_message(&ops[617].id())).to_bytes());
        forged[617] = Op::decode(&bytes).unwrap();
        let refused: Vec<usize> = verify_many(&forged)
            .iter()
            .enumerate()
            .filter(|(_, ok)| !**ok)
            .map(|(i, _)| i)
            .collect();
        assert_eq!(refused, vec![617]);
        assert_eq!(forged[617].verify(), Err(OpError::Signature));
    }

    fn bodies(k: &SigningKey, n: u64, first_seq: u64) -> Vec<OpBody> {
        (0..n)
            .map(|i| OpBody {
                share: OpId([9; 32]),
                author: peer(k),
                seq: first_seq + i,
                stamp: Stamp {
                    wall_ms: 1_764_590_000_000 + i,
                    counter: 0,
                },
                parents: vec![OpId([1; 32])],
                action: Action::SetProperty {
                    resource: format!("r{i}"),
                    name: "n".into(),
                    value: Json::from(i),
                },
            })
            .collect()
    }

    #[test]
    fn batch_signed_ops_hold_alone_in_any_subset_and_order() {
        for n in [2u64, 3, 5, 64, 257] {
            let ops = Op::sign_batch(bodies(&key(1), n, 1), &key(1)).unwrap();
            let depth = (n as usize).next_power_of_two().trailing_zeros() as usize;
            for op in &ops {
                assert_eq!(
                    op.wire().len(),
                    op.canonical().len() + 1 + 4 + 32 * depth + 64
                );
                assert_eq!(op.id().0, *blake3::hash(op.canonical()).as_bytes());
                let back = Op::from_wire(op.wire()).unwrap();
                assert_eq!(&back, op);
            }
            let mut some: Vec<Op> = ops.iter().rev().step_by(3).cloned().collect();
            some.push(ops[0].clone());
            assert!(verify_many(&some).iter().all(|ok| *ok), "{n}");
        }
        // One body: an ordinary single signature.
        let one = Op::sign_batch(bodies(&key(1), 1, 1), &key(1)).unwrap();
        assert_eq!(one[0].wire().len(), one[0].canonical().len() + 64);
        one[0].verify().unwrap();
    }

    #[test]
    fn a_forged_op_among_batch_signed_ones_is_refused_alone() {
        let ops = Op::sign_batch(bodies(&key(1), 100, 1), &key(1)).unwrap();
        let proof_of = |op: &Op| op.wire()[op.canonical().len()..].to_vec();
        let mut mixed = ops.clone();
        // Another body carrying op 40's proof: its id is not the leaf the path starts from.
        let mut other = bodies(&key(1), 1, 999).pop().unwrap();
        other.action = Action::Delete {
            resource: "r40".into(),
        };
        let mut bytes = other.canonical_bytes();
        bytes.extend(proof_of(&ops[40]));
        mixed[40] = Op::decode(&bytes).unwrap();
        // Op 41 claiming op 42's place in the tree.
        let mut bytes = ops[41].canonical().to_vec();
        bytes.extend(proof_of(&ops[42]));
        mixed[41] = Op::decode(&bytes).unwrap();
        // Op 50 under a batch signature by another key over the same tree shape.
        let theirs = Op::sign_batch(bodies(&key(3), 100, 1), &key(3)).unwrap();
        let mut bytes = ops[50].canonical().to_vec();
        bytes.extend(proof_of(&theirs[50]));
        mixed[50] = Op::decode(&bytes).unwrap();
        // Op 60's path with one sibling flipped.
        let mut bytes = ops[60].wire().to_vec();
        let at = ops[60].canonical().len() + 5 + 32 * 3;
        bytes[at] ^= 1;
        mixed[60] = Op::decode(&bytes).unwrap();
        let refused: Vec<usize> = verify_many(&mixed)
            .iter()
            .enumerate()
            .filter(|(_, ok)| !**ok)
            .map(|(i, _)| i)
            .collect();
        assert_eq!(refused, vec![40, 41, 50, 60]);
        for i in [40, 41, 50, 60] {
            assert_eq!(mixed[i].verify(), Err(OpError::Signature), "{i}");
        }
        // The honest ones hold alone too.
        for i in [0, 39, 42, 99] {
            mixed[i].verify().unwrap();
        }
    }

    #[test]
    fn malformed_batch_proofs_are_refused_when_decoded() {
        let ops = Op::sign_batch(bodies(&key(1), 4, 1), &key(1)).unwrap();
        let canonical = ops[3].canonical().to_vec();
        let proof = ops[3].wire()[canonical.len()..].to_vec();
        assert_eq!(proof[0], 2, "depth 2 for 4 ops");
        let with = |proof: &[u8]| {
            let mut bytes = canonical.clone();
            bytes.extend_from_slice(proof);
            Op::decode(&bytes).map(|_| ())
        };
        assert_eq!(with(&proof), Ok(()));
        let mut p = proof.clone();
        p[0] = 0;
        assert_eq!(with(&p), Err(OpError::Proof("batch depth")));
        p[0] = MAX_BATCH_DEPTH + 1;
        assert_eq!(with(&p), Err(OpError::Proof("batch depth")));
        p[0] = 3;
        assert_eq!(with(&p), Err(OpError::Proof("length")));
        let mut p = proof.clone();
        p[1] = 4;
        assert_eq!(with(&p), Err(OpError::Proof("index beyond the tree")));
        assert!(with(&proof[..proof.len() - 1]).is_err());
        assert!(with(&[proof.as_slice(), &[0]].concat()).is_err());
        assert!(with(&[]).is_err());
        assert!(with(&proof[..63]).is_err());
    }

    #[test]
    fn non_canonical_json_and_bad_shapes_are_refused() {
        let op = sample(Action::SetProperty {
            resource: "r".into(),
            name: "n".into(),
            value: json!(100.0),
        });
        let text = b"100.0";
        let pos = op
            .wire()
            .windows(text.len())
            .position(|w| w == text)
            .unwrap();
        let mut bad = op.wire()[..pos - 1].to_vec();
        bad.push(3);
        bad.extend_from_slice(b"1e2");
        bad.extend_from_slice(&op.wire()[pos + text.len()..]);
        assert_eq!(
            Op::decode(&bad).unwrap_err(),
            OpError::NonCanonicalJson("property value")
        );
        let k = key(1);
        let shaped = Op::sign(
            OpBody {
                share: OpId::ZERO,
                author: peer(&k),
                seq: 1,
                stamp: Stamp::default(),
                parents: vec![],
                action: Action::Create {
                    resource: "r".into(),
                    kind: "T".into(),
                    value: json!({"props": {}}),
                },
            },
            &k,
        );
        assert!(matches!(shaped, Err(OpError::CreateShape(_))));
    }

    #[test]
    fn a_resource_placed_in_itself_is_refused() {
        let k = key(1);
        let body = OpBody {
            share: OpId([9; 32]),
            author: peer(&k),
            seq: 1,
            stamp: Stamp::default(),
            parents: vec![OpId([1; 32])],
            action: Action::CreateInList {
                resource: "l".into(),
                kind: "List".into(),
                value: json!({}),
                list: "l".into(),
            },
        };
        assert_eq!(Op::sign(body, &k).unwrap_err(), OpError::SelfPlacement);
    }

    #[test]
    fn oversized_inputs_are_refused_before_parsing() {
        assert_eq!(
            Op::decode(&vec![1u8; MAX_OP_BYTES + 1]).unwrap_err(),
            OpError::TooLarge(MAX_OP_BYTES + 1)
        );
        let k = key(1);
        let big = Op::sign(
            OpBody {
                share: OpId([1; 32]),
                author: peer(&k),
                seq: 1,
                stamp: Stamp::default(),
                parents: vec![OpId([1; 32])],
                action: Action::SetProperty {
                    resource: "r".into(),
                    name: "n".into(),
                    value: json!("x".repeat(MAX_OP_BYTES)),
                },
            },
            &k,
        );
        assert!(matches!(big, Err(OpError::TooLarge(_))));
        // A schema text over its own bound (well within an op) is no op.
        let schema = Op::sign(
            OpBody {
                share: OpId([1; 32]),
                author: peer(&k),
                seq: 1,
                stamp: Stamp::default(),
                parents: vec![OpId([1; 32])],
                action: Action::Schema {
                    file: "f".into(),
                    text: "x".repeat(MAX_SCHEMA_TEXT_BYTES + 1),
                },
            },
            &k,
        );
        assert!(matches!(
            schema,
            Err(OpError::Wire(WireError::TooLarge {
                what: "schema text",
                ..
            }))
        ));
    }

    /// Signing keeps the action's own JSON value instead of parsing what it printed: the op
    /// must be exactly what decoding its bytes gives, alone and in a batch, and a value too
    /// deep for a peer's decoder must still be refused when signed.
    #[test]
    fn a_signed_op_is_what_its_bytes_decode_to() {
        let k = key(1);
        let mut batch = Vec::new();
        for (seq, action) in (1..).zip(every_action()) {
            let body = OpBody {
                share: OpId([9; 32]),
                author: peer(&k),
                seq,
                stamp: Stamp {
                    wall_ms: 1_764_590_000_000,
                    counter: seq as u32,
                },
                parents: vec![OpId([2; 32]), OpId([1; 32])],
                action,
            };
            batch.push(body.clone());
            let op = Op::sign(body, &k).unwrap();
            let back = Op::decode(op.wire()).unwrap();
            assert_eq!(back.body(), op.body());
            assert_eq!(back.id(), op.id());
        }
        for op in Op::sign_batch(batch, &k).unwrap() {
            let back = Op::from_wire(op.wire()).unwrap();
            assert_eq!(back.body(), op.body());
            assert_eq!(back.id(), op.id());
        }
        let mut deep = json!(1);
        for _ in 0..200 {
            deep = json!([deep]);
        }
        let refused = Op::sign(
            OpBody {
                share: OpId([9; 32]),
                author: peer(&k),
                seq: 1,
                stamp: Stamp::default(),
                parents: vec![OpId([1; 32])],
                action: Action::SetProperty {
                    resource: "r".into(),
                    name: "n".into(),
                    value: deep,
                },
            },
            &k,
        );
        assert_eq!(refused.unwrap_err(), OpError::Json("property value"));
    }

    /// The text op ids hash must not change: the writer prints exactly what the first one did
    /// (keys sorted through a `BTreeMap`, each key and scalar through `Value`'s `Display`).
    #[test]
    fn canonical_json_prints_what_it_always_printed() {
        fn before(value: &Json, out: &mut String) {
            match value {
                Json::Object(map) => {
                    let sorted: BTreeMap<&String, &Json> = map.iter().collect();
                    out.push('{');
                    for (i, (k, v)) in sorted.into_iter().enumerate() {
                        if i > 0 {
                            out.push(',');
                        }
                        out.push_str(&Json::String(k.clone()).to_string());
                        out.push(':');
                        before(v, out);
                    }
                    out.push('}');
                }
                Json::Array(items) => {
                    out.push('[');
                    for (i, v) in items.iter().enumerate() {
                        if i > 0 {
                            out.push(',');
                        }
                        before(v, out);
                    }
                    out.push(']');
                }
                scalar => out.push_str(&scalar.to_string()),
            }
        }
        let samples = [
            json!({"z": "\"quoted\" \\ \n\t\u{0001}\u{7f}", "é": "ü€𝄞", "A": [1, -2, 1.5, 1e300, -0.0, 0.1]}),
            json!({"properties": {"title": "https://example.test/a?b=c&d=<e>", "n": u64::MAX, "m": i64::MIN},
                   "children": {"notes": [{"properties": {"": null, "t": true, "f": false}}]}}),
            json!([[], {}, "", [{"b": 1, "a": 2, "aa": 3, "B": 4}]]),
        ];
        for v in samples {
            let mut old = String::new();
            before(&v, &mut old);
            assert_eq!(canonical_json(&v), old);
            assert_eq!(canonical_json_bytes(&v), old.as_bytes());
        }
    }

    #[test]
    fn canonical_json_sorts_keys_at_every_depth() {
        let v: Json =
            serde_json::from_str(r#"{"b": {"z": 1, "a": [true, null]}, "a": "x"}"#).unwrap();
        assert_eq!(
            canonical_json(&v),
            r#"{"a":"x","b":{"a":[true,null],"z":1}}"#
        );
    }
}
