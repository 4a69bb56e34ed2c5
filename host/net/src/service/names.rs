//! The names and codes of the service framework, apart from its machinery so that the
//! crate's error type can name them without depending on the framework.

use serde::{Deserialize, Serialize};

/// `owner/name/version`, e.g. `allpeers/chat/1`: lowercase letters, digits, `-`, `_`, `.`
/// in the first two parts, a decimal version last; 128 characters at most.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Namespace(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a namespace (owner/name/version, e.g. allpeers/chat/1)")]
pub struct NamespaceError(pub String);

pub const NAMESPACE_MAX_LEN: usize = 128;

impl Namespace {
    pub fn new(text: &str) -> Result<Self, NamespaceError> {
        let err = || NamespaceError(text.chars().take(NAMESPACE_MAX_LEN).collect());
        if text.len() > NAMESPACE_MAX_LEN {
            return Err(err());
        }
        let parts: Vec<&str> = text.split('/').collect();
        let [owner, name, version] = parts.as_slice() else {
            return Err(err());
        };
        let word = |s: &str| {
            !s.is_empty()
                && s.bytes().all(|b| {
                    b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'_' | b'.')
                })
        };
        if !word(owner)
            || !word(name)
            || version.is_empty()
            || !version.bytes().all(|b| b.is_ascii_digit())
        {
            return Err(err());
        }
        Ok(Namespace(text.to_string()))
    }

    /// `allpeers/<name>/<version>`.
    pub fn allpeers(name: &str, version: u32) -> Result<Self, NamespaceError> {
        Self::new(&format!("allpeers/{name}/{version}"))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for Namespace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for Namespace {
    type Error = NamespaceError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Namespace::new(&s)
    }
}

impl From<Namespace> for String {
    fn from(n: Namespace) -> String {
        n.0
    }
}

/// What kind of exchange a stream carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum StreamKind {
    Request,
    Channel,
    Stream,
}

/// Error codes a service answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ErrorCode {
    /// No service is registered for the namespace.
    UnknownNamespace,
    /// The service does not take this kind of stream.
    Unsupported,
    /// The request could not be decoded or is invalid.
    BadRequest,
    /// The peer may not do this.
    Refused,
    /// Too many streams or requests at once: try later.
    Busy,
    /// The message is over the service's size limit.
    TooLarge,
    /// The service failed.
    Internal,
    /// A code of the service's own.
    Application(u32),
}

/// An error a service returns; the remote sees it as [`NetError::Remote`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{code:?}: {message}")]
pub struct RemoteError {
    pub code: ErrorCode,
    pub message: String,
}

pub type ServiceError = RemoteError;

impl RemoteError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        RemoteError {
            code,
            message: message.into(),
        }
    }
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::BadRequest, message)
    }
    pub fn refused(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Refused, message)
    }
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Internal, message)
    }
    pub fn unsupported(what: &str) -> Self {
        Self::new(
            ErrorCode::Unsupported,
            format!("this service takes no {what}"),
        )
    }
}
