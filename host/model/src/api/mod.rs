//! The local API: JSON-RPC 2.0 messages inside native-messaging frames, and its one contract.
//!
//! The daemon, the native-messaging bridge, the CLI and the extension all speak it.
//!
//! - [`contract`]: every method (name, params type, result type) and every event topic
//!   (name, data type), as the [`contract::Method`] / [`contract::Topic`] table.
//! - [`error`]: the one table of error codes ([`ErrorCode`], `i32`).
//! - [`methods`], [`net`], [`social`], [`shares`], [`mail`], [`transfers`], [`files`], [`media`], [`apps`] (and
//!   `crate::resource::api`): the names and the
//!   params, results and event payloads of each area.
//! - [`message`], [`frame`], [`chunk`]: JSON-RPC envelopes, framing, chunking.
//! - `typescript` (feature `ts`): renders `extension/src/lib/api.gen.ts` and the SDK's
//!   `sdk/src/api.gen.ts` (the app-facing methods) from the contract.
//!
//! `docs/api.md` is the reference; its error table is generated from [`ErrorCode`] and a
//! test checks that it names every method and topic.

/// Any JSON value (`ping`'s params and result, store-defined shapes).
pub type Json = serde_json::Value;

pub mod apps;
pub mod chunk;
pub mod contract;
pub mod error;
pub mod files;
pub mod frame;
pub mod mail;
pub mod media;
pub mod message;
pub mod methods;
pub mod net;
pub mod shares;
pub mod social;
pub mod transfers;
#[cfg(feature = "ts")]
pub mod typescript;

pub use error::ErrorCode;
pub use frame::{FrameDecoder, FrameError, encode_frame};
pub use message::{Event, Incoming, Request, Response, RpcError};

/// The version of the local API this build speaks. A client names the version it wants in
/// `hello`; the daemon refuses versions it does not speak.
pub const API_VERSION: u32 = 1;
