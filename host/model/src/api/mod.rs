//! The local API: JSON-RPC 2.0 messages inside native-messaging frames.
//!
//! The daemon, the native-messaging bridge, the CLI and the extension all speak it. Every
//! method, event and error code is documented in `docs/api.md`.

pub mod chunk;
pub mod frame;
pub mod message;
pub mod methods;

pub use frame::{FrameDecoder, FrameError, encode_frame};
pub use message::{ErrorCode, Event, Incoming, Request, Response, RpcError};

/// The version of the local API this build speaks. A client names the version it wants in
/// `hello`; the daemon refuses versions it does not speak.
pub const API_VERSION: u32 = 1;
