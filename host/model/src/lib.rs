//! The AllPeers data model: identifiers and the local API's messages and framing.
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
