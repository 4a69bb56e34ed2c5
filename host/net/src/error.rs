//! The crate's error type for endpoint and service operations.

use std::time::Duration;

use allpeers_model::PeerId;

use crate::frame::FrameError;
use crate::service::names::{ErrorCode, NamespaceError};
use crate::transport::ConnectionError;

#[derive(Debug, Clone, thiserror::Error)]
pub enum NetError {
    #[error("no known address for peer {0:?}")]
    NoAddress(PeerId),
    #[error("cannot connect to {peer:?}: {reason}")]
    Connect { peer: PeerId, reason: String },
    #[error("the peer at {addr} is not {expected:?} (its certificate's key differs): refused")]
    WrongPeer { expected: PeerId, addr: String },
    #[error("peer {peer:?} has no service {namespace}")]
    UnknownNamespace { peer: PeerId, namespace: String },
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    #[error("the remote answered {code:?}: {message}")]
    Remote { code: ErrorCode, message: String },
    #[error(transparent)]
    Connection(#[from] ConnectionError),
    #[error("cannot encode the message: {0}")]
    Encode(String),
    #[error("cannot decode the message: {0}")]
    Decode(String),
    #[error(transparent)]
    Namespace(#[from] NamespaceError),
    #[error("endpoint: {0}")]
    Endpoint(String),
    #[error("the endpoint is closed")]
    EndpointClosed,
}

impl From<FrameError> for NetError {
    fn from(e: FrameError) -> Self {
        NetError::Connection(ConnectionError::Frame(e))
    }
}

impl NetError {
    /// True when the connection under the operation went away (a retry on a new connection
    /// may succeed).
    pub fn is_connection_lost(&self) -> bool {
        matches!(
            self,
            NetError::Connection(ConnectionError::Closed(_))
                | NetError::Connection(ConnectionError::Stream(_))
        )
    }
}
