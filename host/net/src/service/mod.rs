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
//!   speed test). The two halves are tokio `AsyncWrite`/`AsyncRead` themselves, so an HTTP
//!   library takes `tokio::io::join(recv, send)` and reads and writes the transport directly.
//! * **datagram** — one small message, `[ns length][ns][body]`, unreliable over QUIC.
//!
//! Messages are serde types encoded with postcard and framed with a length prefix; every
//! read is bounded by the service's [`max_message_size`](Service::max_message_size).

mod handlers;
pub(crate) mod names;
pub mod speed;
pub(crate) mod wire;

pub use handlers::ServiceFn;
pub use names::{
    ErrorCode, NAMESPACE_MAX_LEN, Namespace, NamespaceError, RemoteError, ServiceError, StreamKind,
};

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use allpeers_model::PeerId;
use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::NetError;
use crate::transport::{Connection, RecvStream, SendStream};

pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

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
