//! Params, results and events of replicated shares: `shares.*`, `sync.status`; the events
//! `share.received`, `share.changed`, `sync.progress`.
//!
//! A share is a root resource (a List shares its items) kept in sync between its members with
//! no server; every change is an op signed by its author (`allpeers-replica`). Share ids are
//! the hex of the genesis op's BLAKE3 id.

use serde::{Deserialize, Serialize};

use crate::PeerId;

pub const SHARES_CREATE: &str = "shares.create";
pub const SHARES_LIST: &str = "shares.list";
pub const SHARES_GET: &str = "shares.get";
pub const SHARES_ACCEPT: &str = "shares.accept";
pub const SHARES_ADD_MEMBER: &str = "shares.add_member";
pub const SHARES_REVOKE: &str = "shares.revoke";
pub const SHARES_LEAVE: &str = "shares.leave";
pub const SYNC_STATUS: &str = "sync.status";

/// The methods of the shares area.
pub const METHODS: &[&str] = &[
    SHARES_CREATE,
    SHARES_LIST,
    SHARES_GET,
    SHARES_ACCEPT,
    SHARES_ADD_MEMBER,
    SHARES_REVOKE,
    SHARES_LEAVE,
    SYNC_STATUS,
];

/// Event topics of the shares area (subscribed with `events.subscribe`).
pub mod topics {
    /// A peer shared a resource with us: accept it (`shares.accept`) or ignore it.
    pub const SHARE_RECEIVED: &str = "share.received";
    /// A share's members or state changed (created, accepted, member added or revoked, left).
    pub const SHARE_CHANGED: &str = "share.changed";
    /// A reconciliation with a peer finished: ops sent and received.
    pub const SYNC_PROGRESS: &str = "sync.progress";

    pub const ALL: &[&str] = &[SHARE_RECEIVED, SHARE_CHANGED, SYNC_PROGRESS];
}

/// A member's level: read, write (edit the shared resources), admin (also add and revoke
/// members).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(rename_all = "lowercase")]
pub enum ShareLevel {
    Read,
    Write,
    Admin,
}

/// A member and its level.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(deny_unknown_fields)]
pub struct ShareMember {
    pub peer: PeerId,
    pub level: ShareLevel,
}

/// `shares.create`'s params.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(deny_unknown_fields)]
pub struct CreateShareParams {
    /// The root resource's id (a List shares its items too).
    pub resource: String,
    pub members: Vec<ShareMember>,
}

/// `{"share": id}`: the params of `shares.get`, `shares.accept`, `shares.leave`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(deny_unknown_fields)]
pub struct ShareParams {
    pub share: String,
}

/// `shares.add_member`'s params.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(deny_unknown_fields)]
pub struct AddMemberParams {
    pub share: String,
    pub peer: PeerId,
    pub level: ShareLevel,
}

/// `shares.revoke`'s params.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(deny_unknown_fields)]
pub struct RevokeParams {
    pub share: String,
    pub peer: PeerId,
}

/// Where a share stands on this node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(rename_all = "lowercase")]
pub enum ShareState {
    /// Offered to us; nothing syncs until accepted.
    Offered,
    /// Held and kept in sync.
    Accepted,
}

/// A share as `shares.list` / `shares.get` show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct Share {
    pub id: String,
    /// The root resource's id.
    pub resource: String,
    pub title: String,
    pub state: ShareState,
    /// The owner (who created it); unknown until the first sync of an offered share.
    pub owner: Option<PeerId>,
    /// Who offered it to us (ourselves for our own).
    pub from: PeerId,
    /// Our level (none once revoked).
    pub level: Option<ShareLevel>,
    pub members: Vec<ShareMember>,
}

/// One share's sync state, in `sync.status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct ShareSync {
    pub share: String,
    pub title: String,
    pub members: Vec<ShareMember>,
    /// Members with a live connection now.
    pub online: Vec<PeerId>,
    /// When a reconciliation last completed (ms since the epoch).
    pub last_sync_ms: Option<u64>,
    /// Ops waiting for parents plus ops deferred (stamped ahead of our clock).
    pub ops_pending: u64,
    /// Ops held (every op kept, live or superseded).
    pub ops: u64,
    /// Bytes of the ops held, in wire form.
    pub bytes: u64,
}

/// `sync.status`'s result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct SyncStatus {
    pub shares: Vec<ShareSync>,
}

/// `share.received`'s data: who offers what.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct ShareReceived {
    pub share: String,
    pub resource: String,
    pub title: String,
    pub from: PeerId,
}

/// `sync.progress`'s data: one reconciliation with one peer completed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct SyncProgress {
    pub share: String,
    pub peer: PeerId,
    pub round_trips: u64,
    pub sent: u64,
    pub received: u64,
    /// Ops the peer claimed and did not send in time (asked again next round).
    pub missing: u64,
}
