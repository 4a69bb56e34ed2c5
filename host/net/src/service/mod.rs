//! The service framework: application protocols as plug-ins keyed by namespace.
//!
//! A service registers a [`Namespace`] (`allpeers/<name>/<version>`) with the
//! [`Endpoint`](crate::Endpoint) and implements [`Service`]. Each stream a peer opens starts
//! with a head frame naming the namespace and the kind of exchange:
//!
//! * **request/response** — the opener sends the head and one request frame and finishes;
//!   the service answers with one reply frame (status byte + body or [`RemoteError`]).
//!   No extra round trip: an unknown namespace is answered in the reply.
//! * **channel** — a one-way stream of messages (the seed's unidirectional XML channels):
//!   the acceptor acknowledges the head (or refuses it), then reads message frames until the
//!   opener finishes.
//! * **stream** — acknowledged like a channel, then raw bytes both ways (transfer protocols,
//!   speed test).
//! * **datagram** — one small message, `[ns length][ns][body]`, unreliable over QUIC.
//!
//! Messages are serde types encoded with postcard and framed with a length prefix; every
//! read is bounded by the service's [`max_message_size`](Service::max_message_size).

mod handlers;
pub mod speed;
pub(crate) mod wire;

pub use handlers::ServiceFn;

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use allpeers_model::PeerId;
use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::error::NetError;
use crate::transport::{Connection, RecvStream, SendStream};

pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

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

/// Who is asking, over what.
#[derive(Debug, Clone)]
pub struct Context {
    pub peer: PeerId,
    pub namespace: Namespace,
    pub connection: Connection,
}

/// An application-level network service. Each method gets the remote peer in its
/// [`Context`]; defaults refuse what a service does not implement.
pub trait Service: Send + Sync + 'static {
    /// Largest request, reply, channel message or datagram body this service takes.
    fn max_message_size(&self) -> usize {
        crate::frame::DEFAULT_FRAME_LIMIT
    }

    /// Which stream kinds the service takes (others are refused with `Unsupported`).
    fn accepts(&self, kind: StreamKind) -> bool {
        kind == StreamKind::Request
    }

    /// Answers one request.
    fn request(&self, ctx: Context, body: Bytes) -> BoxFuture<Result<Bytes, ServiceError>> {
        let _ = (ctx, body);
        Box::pin(async { Err(ServiceError::unsupported("requests")) })
    }

    /// Consumes a one-way channel of messages.
    fn channel(&self, ctx: Context, channel: ChannelReceiver) -> BoxFuture<()> {
        let _ = (ctx, channel);
        Box::pin(async {})
    }

    /// Takes a raw stream.
    fn stream(&self, ctx: Context, send: SendStream, recv: RecvStream) -> BoxFuture<()> {
        let _ = (ctx, send, recv);
        Box::pin(async {})
    }

    /// Takes one datagram.
    fn datagram(&self, ctx: Context, body: Bytes) {
        let _ = (ctx, body);
    }
}

/// Encodes a message (postcard).
pub fn encode<T: Serialize + ?Sized>(message: &T) -> Result<Bytes, NetError> {
    postcard::to_allocvec(message)
        .map(Bytes::from)
        .map_err(|e| NetError::Encode(e.to_string()))
}

/// Decodes a message (postcard); trailing bytes are an error.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, NetError> {
    let (value, rest) =
        postcard::take_from_bytes(bytes).map_err(|e| NetError::Decode(e.to_string()))?;
    if !rest.is_empty() {
        return Err(NetError::Decode(format!("{} trailing bytes", rest.len())));
    }
    Ok(value)
}

/// The receiving end of a one-way channel.
pub struct ChannelReceiver {
    recv: RecvStream,
    limit: usize,
    peer: PeerId,
}

impl ChannelReceiver {
    pub(crate) fn new(recv: RecvStream, limit: usize, peer: PeerId) -> Self {
        ChannelReceiver { recv, limit, peer }
    }

    /// The next message body; None when the sender finished the channel.
    pub async fn recv_bytes(&mut self) -> Result<Option<Bytes>, NetError> {
        match self.recv.read_frame(self.limit).await {
            Ok(frame) => Ok(frame),
            Err(e) => {
                tracing::warn!(peer = ?self.peer, "channel closed: {e}");
                self.recv.stop(crate::transport::close_code::PROTOCOL);
                Err(e.into())
            }
        }
    }

    /// The next message; None when the sender finished the channel.
    pub async fn recv<T: DeserializeOwned>(&mut self) -> Result<Option<T>, NetError> {
        match self.recv_bytes().await? {
            Some(bytes) => decode(&bytes).map(Some),
            None => Ok(None),
        }
    }
}

/// The sending end of a one-way channel.
pub struct ChannelSender {
    send: SendStream,
    limit: usize,
    send_timeout: Duration,
}

impl ChannelSender {
    pub(crate) fn new(send: SendStream, limit: usize, send_timeout: Duration) -> Self {
        ChannelSender {
            send,
            limit,
            send_timeout,
        }
    }

    /// Sends one message body. If the receiver stops reading, flow control stops us: after
    /// the send timeout the channel is reset and an error returned (no buffer grows).
    pub async fn send_bytes(&mut self, body: &[u8]) -> Result<(), NetError> {
        match tokio::time::timeout(self.send_timeout, self.send.write_frame(body, self.limit)).await
        {
            Ok(result) => result.map_err(Into::into),
            Err(_) => {
                tracing::warn!(
                    "channel reset: the receiver read nothing for {:?}",
                    self.send_timeout
                );
                self.send.reset(crate::transport::close_code::PROTOCOL);
                Err(NetError::Timeout(self.send_timeout))
            }
        }
    }

    pub async fn send<T: Serialize + ?Sized>(&mut self, message: &T) -> Result<(), NetError> {
        let body = encode(message)?;
        self.send_bytes(&body).await
    }

    /// This channel's upload limit.
    pub fn set_rate_limit(&self, bytes_per_second: Option<u64>) {
        self.send.set_rate_limit(bytes_per_second);
    }

    /// Ends the channel: the receiver sees its end after the last message.
    pub async fn finish(mut self) -> Result<(), NetError> {
        self.send.finish().await.map_err(Into::into)
    }
}
