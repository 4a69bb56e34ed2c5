//! The AllPeers data model: identifiers, the local API's contract (methods, events, error
//! codes as types), its messages and framing, resources, queries and schemas.
//!
//! - [`api`]: the local API (contract, error codes, params/results/events, JSON-RPC, frames).
//! - [`resource`], [`query`], [`schema`]: resources, their queries and RELAX NG schemas.
//! - [`id`], [`hlc`]: PeerIds, hybrid logical clocks.
//!
//! Feature `ts` derives `ts_rs::TS` on the API types to generate the extension's TypeScript;
//! off by default, so the host and wasm builds never compile it.
//!
//! This crate is pure (no I/O, no async runtime) so the same code runs in the host and,
//! through `wasm/`, in the browser extension.

pub mod api;
pub mod hlc;
pub mod id;
pub mod query;
pub mod resource;
pub mod schema;

pub use id::{PeerId, PeerIdError};
