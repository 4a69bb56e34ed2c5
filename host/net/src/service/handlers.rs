//! [`ServiceFn`]: a [`Service`] assembled from typed closures.

use std::future::Future;
use std::sync::Arc;

use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{
    BoxFuture, ChannelReceiver, Context, Service, ServiceError, StreamKind, decode, encode,
};
use crate::transport::{RecvStream, SendStream};

type RequestFn = dyn Fn(Context, Bytes) -> BoxFuture<Result<Bytes, ServiceError>> + Send + Sync;
type ChannelFn = dyn Fn(Context, ChannelReceiver) -> BoxFuture<()> + Send + Sync;
type StreamFn = dyn Fn(Context, SendStream, RecvStream) -> BoxFuture<()> + Send + Sync;
type DatagramFn = dyn Fn(Context, Bytes) + Send + Sync;

/// A service built from closures:
///
/// ```ignore
/// let echo = ServiceFn::new().on_request(|_ctx, text: String| async move { Ok(text) });
/// endpoint.register(Namespace::allpeers("echo", 1)?, echo);
/// ```
#[derive(Default, Clone)]
pub struct ServiceFn {
    max_message_size: Option<usize>,
    request: Option<Arc<RequestFn>>,
    channel: Option<Arc<ChannelFn>>,
    stream: Option<Arc<StreamFn>>,
    datagram: Option<Arc<DatagramFn>>,
}

impl ServiceFn {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn max_message_size(mut self, bytes: usize) -> Self {
        self.max_message_size = Some(bytes.min(crate::frame::MAX_FRAME_LIMIT));
        self
    }

    /// Typed request handler: the request is decoded (a bad one is answered `BadRequest`),
    /// the response encoded.
    pub fn on_request<Req, Resp, F, Fut>(mut self, f: F) -> Self
    where
        Req: DeserializeOwned + Send + 'static,
        Resp: Serialize + Send + 'static,
        F: Fn(Context, Req) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Resp, ServiceError>> + Send + 'static,
    {
        let f = Arc::new(f);
        self.request = Some(Arc::new(move |ctx, body: Bytes| {
            let f = f.clone();
            Box::pin(async move {
                let req: Req =
                    decode(&body).map_err(|e| ServiceError::bad_request(e.to_string()))?;
                let resp = f(ctx, req).await?;
                encode(&resp).map_err(|e| ServiceError::internal(e.to_string()))
            })
        }));
        self
    }

    /// Channel handler: gets the receiving end, reads messages with `recv::<M>()`.
    pub fn on_channel<F, Fut>(mut self, f: F) -> Self
    where
        F: Fn(Context, ChannelReceiver) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.channel = Some(Arc::new(move |ctx, rx| Box::pin(f(ctx, rx))));
        self
    }

    /// Raw stream handler.
    pub fn on_stream<F, Fut>(mut self, f: F) -> Self
    where
        F: Fn(Context, SendStream, RecvStream) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.stream = Some(Arc::new(move |ctx, s, r| Box::pin(f(ctx, s, r))));
        self
    }

    /// Typed datagram handler (undecodable datagrams are logged and dropped).
    pub fn on_datagram<M, F>(mut self, f: F) -> Self
    where
        M: DeserializeOwned + 'static,
        F: Fn(Context, M) + Send + Sync + 'static,
    {
        self.datagram = Some(Arc::new(move |ctx, body: Bytes| match decode::<M>(&body) {
            Ok(m) => f(ctx, m),
            Err(e) => tracing::debug!(peer = ?ctx.peer, "datagram dropped: {e}"),
        }));
        self
    }
}

impl Service for ServiceFn {
    fn max_message_size(&self) -> usize {
        self.max_message_size
            .unwrap_or(crate::frame::DEFAULT_FRAME_LIMIT)
    }

    fn accepts(&self, kind: StreamKind) -> bool {
        match kind {
            StreamKind::Request => self.request.is_some(),
            StreamKind::Channel => self.channel.is_some(),
            StreamKind::Stream => self.stream.is_some(),
        }
    }

    fn request(&self, ctx: Context, body: Bytes) -> BoxFuture<Result<Bytes, ServiceError>> {
        match &self.request {
            Some(f) => f(ctx, body),
            None => Box::pin(async { Err(ServiceError::unsupported("requests")) }),
        }
    }

    fn channel(&self, ctx: Context, channel: ChannelReceiver) -> BoxFuture<()> {
        match &self.channel {
            Some(f) => f(ctx, channel),
            None => Box::pin(async {}),
        }
    }

    fn stream(&self, ctx: Context, send: SendStream, recv: RecvStream) -> BoxFuture<()> {
        match &self.stream {
            Some(f) => f(ctx, send, recv),
            None => Box::pin(async {}),
        }
    }

    fn datagram(&self, ctx: Context, body: Bytes) {
        if let Some(f) = &self.datagram {
            f(ctx, body)
        }
    }
}
