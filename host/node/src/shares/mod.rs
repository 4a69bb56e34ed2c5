//! The `shares` area: resources shared with chosen peers and kept in sync between them with
//! no server (issue 14), over the I/O-free core `allpeers-replica`.
//!
//! Domain rules, pure:
//! * [`rules`] — levels, who may do what, share ids as text, a local edit as ops, the
//!   requests of `allpeers/sync/1` (core frames and offers), which offers are taken.
//!
//! The daemon's side:
//! * [`state`] — the replicas held (loaded from the store at start), share records, one sync
//!   session per peer; commits that push new ops to every other member.
//! * [`service`] — the `allpeers/sync/1` service, the per-peer pumps, reconciliation on
//!   start, on connect and periodically.
//! * [`api`] — the `shares.*` and `sync.status` methods ([`AREA`]) and the write hook that
//!   turns edits of shared resources into signed ops.

pub mod api;
pub mod rules;
pub mod service;
pub mod state;

pub use api::AREA;
