//! One [`Connection`] type over both transports.
//!
//! * QUIC ([`quic`]): quinn; streams, datagrams and flow control are QUIC's own.
//! * TCP+TLS ([`tcp`]): tokio-rustls, multiplexed by yamux. Yamux has only bidirectional
//!   streams, so the opener of a stream writes one kind byte first (`B` bidirectional, `U`
//!   one-way, `D` datagram), with its first data, and the acceptor sorts them. As on QUIC, a
//!   stream reaches the remote with its first write. Datagrams over TCP are one small
//!   frame on a `D` stream: delivered reliably, where QUIC may drop them.
//!
//! Every connection knows the remote PeerId (from the TLS handshake), the transport, the path
//! ([`PathKind`]: direct, callback, hole-punched, or relayed; the NAT crate's connector
//! decides which) and who dialled. Streams count bytes into per-connection [`RateMeter`]s and
//! wait on the throttle's limits.
//!
//! [`udp`] is the QUIC socket with hooks, so STUN and punch packets can share it.
//!
//! [`bulk`]: a TCP+TLS connection of its own carrying one stream and no multiplexer, opened
//! beside a peer's connection for a bulk transfer (a file): the bytes skip yamux's copies.

pub(crate) mod bulk;
pub use bulk::BulkStats;
pub mod quic;
pub mod tcp;
pub mod udp;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use allpeers_model::PeerId;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::frame::{FrameDecoder, FrameError, encode_frame};
use crate::throttle::{LimitPair, RateLimit, RateMeter};

/// Largest single read of `read_frame`.
const READ_CHUNK: usize = 16 * 1024;

/// Which transport carries a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TransportKind {
    Quic,
    Tcp,
}

/// How the connection was established.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PathKind {
    /// One side dialled the other's address.
    Direct,
    /// The target connected back to us on request.
    Callback,
    /// A UDP hole punched through both NATs.
    HolePunched,
    /// Through a relay, end-to-end encrypted.
    Relayed,
}

/// Who opened the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    Outbound,
    Inbound,
}

/// An address to dial: the transport and the socket address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct Address {
    pub transport: TransportKind,
    pub addr: SocketAddr,
}

impl Address {
    pub fn quic(addr: SocketAddr) -> Self {
        Address {
            transport: TransportKind::Quic,
            addr,
        }
    }
    pub fn tcp(addr: SocketAddr) -> Self {
        Address {
            transport: TransportKind::Tcp,
            addr,
        }
    }
}

impl std::fmt::Display for Address {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let t = match self.transport {
            TransportKind::Quic => "quic",
            TransportKind::Tcp => "tcp",
        };
        write!(f, "{t}://{}", self.addr)
    }
}

/// Errors of a connection or one of its streams.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ConnectionError {
    #[error("connection closed: {0}")]
    Closed(String),
    #[error("stream: {0}")]
    Stream(String),
    #[error(transparent)]
    Frame(#[from] FrameError),
    #[error("datagram of {size} bytes is over the limit of {limit}")]
    DatagramTooLarge { size: usize, limit: usize },
}

/// Counters and measured rates of one connection.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ConnectionStats {
    pub bytes_sent: u64,
    pub bytes_received: u64,
    /// Bytes per second over the last second.
    pub send_rate: f64,
    pub receive_rate: f64,
    /// Round-trip time, where the transport measures it (QUIC).
    pub rtt_ms: Option<f64>,
    /// Current path MTU (QUIC: the largest UDP payload in use).
    pub path_mtu: Option<u16>,
    /// QUIC's packet-level counters (None over TCP).
    pub quic: Option<QuicStats>,
}

/// What a QUIC connection did at the packet level: how its bytes were batched and what
/// congestion control saw. Datagrams per send call above 1 means segmentation offload (GSO)
/// is in use.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct QuicStats {
    pub datagrams_sent: u64,
    /// UDP send calls (`sendmsg`): one carries up to quinn's batch of datagrams with GSO.
    pub send_calls: u64,
    pub datagrams_received: u64,
    pub acks_sent: u64,
    pub acks_received: u64,
    pub lost_packets: u64,
    pub congestion_events: u64,
    /// Times MTU discovery judged the path to have shrunk (it then drops to 1200 bytes).
    pub black_holes: u64,
    pub cwnd: u64,
}

pub(crate) struct Meters {
    sent: RateMeter,
    received: RateMeter,
}

/// What the streams of a connection share: meters and limits.
pub(crate) struct StreamShared {
    meters: Mutex<Meters>,
    global: Arc<LimitPair>,
    peer: Arc<LimitPair>,
    /// The endpoint's bulk counters, on a bulk connection's stream.
    bulk: Option<Arc<bulk::Totals>>,
}

impl StreamShared {
    pub(crate) fn new(
        global: Arc<LimitPair>,
        peer: Arc<LimitPair>,
        bulk: Option<Arc<bulk::Totals>>,
    ) -> Arc<Self> {
        let now = Instant::now();
        Arc::new(StreamShared {
            meters: Mutex::new(Meters {
                sent: RateMeter::new(now),
                received: RateMeter::new(now),
            }),
            global,
            peer,
            bulk,
        })
    }
}

pub(crate) enum Inner {
    Quic(quinn::Connection),
    Tcp(tcp::Mux),
    /// One stream over TCP+TLS, no multiplexer ([`bulk`]).
    Bulk(Box<bulk::Line>),
}

/// Streams of a connection still held open by this side, so that a connection being
/// replaced (a relayed one superseded by a direct one) is closed only once they are done.
#[derive(Default)]
struct LiveStreams {
    count: AtomicUsize,
    idle: tokio::sync::Notify,
}

/// Held by both halves of a stream; the stream counts as live until both are dropped.
struct StreamToken(Arc<LiveStreams>);

impl StreamToken {
    fn new(live: &Arc<LiveStreams>) -> Arc<StreamToken> {
        live.count.fetch_add(1, Ordering::SeqCst);
        Arc::new(StreamToken(live.clone()))
    }
}

impl Drop for StreamToken {
    fn drop(&mut self) {
        if self.0.count.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

struct ConnectionInner {
    id: u64,
    remote: PeerId,
    remote_addr: SocketAddr,
    transport: TransportKind,
    /// A [`PathKind`] as a byte: the connector may relabel a connection before the endpoint
    /// keeps it (a dial that completed only once the punch had started).
    path: std::sync::atomic::AtomicU8,
    direction: Direction,
    inner: Inner,
    shared: Arc<StreamShared>,
    live: Arc<LiveStreams>,
}

/// A mutually authenticated connection to one peer. Cheap to clone.
#[derive(Clone)]
pub struct Connection(Arc<ConnectionInner>);

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("id", &self.0.id)
            .field("remote", &self.0.remote)
            .field("addr", &self.0.remote_addr)
            .field("transport", &self.0.transport)
            .field("direction", &self.0.direction)
            .finish()
    }
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// Close codes sent to the remote.
pub mod close_code {
    pub const NORMAL: u32 = 0;
    /// Another connection to the same peer was kept.
    pub const DUPLICATE: u32 = 1;
    pub const PROTOCOL: u32 = 2;
    pub const SHUTDOWN: u32 = 3;
}

/// Largest datagram over TCP, and the most QUIC takes too: a service's datagram that fits one
/// path fits every path, whatever size of packet MTU discovery found (up to
/// [`quic::MTU_UPPER_BOUND`] on loopback; QUIC's own limit is lower on a 1200-byte path).
pub const TCP_DATAGRAM_LIMIT: usize = 1200;

impl Connection {
    pub(crate) fn new(
        inner: Inner,
        remote: PeerId,
        remote_addr: SocketAddr,
        path: PathKind,
        direction: Direction,
        shared: Arc<StreamShared>,
    ) -> Self {
        let transport = match inner {
            Inner::Quic(_) => TransportKind::Quic,
            Inner::Tcp(_) | Inner::Bulk(_) => TransportKind::Tcp,
        };
        Connection(Arc::new(ConnectionInner {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            remote,
            remote_addr,
            transport,
            path: std::sync::atomic::AtomicU8::new(path as u8),
            direction,
            inner,
            shared,
            live: Arc::default(),
        }))
    }

    /// Streams of this connection still open on this side (either half not yet dropped).
    pub fn live_streams(&self) -> usize {
        self.0.live.count.load(Ordering::SeqCst)
    }

    /// Closes the connection once no stream is live on this side, or after `grace`: how a
    /// superseded connection is retired without cutting the exchanges still running on it.
    pub async fn close_when_idle(&self, grace: Duration, code: u32, reason: &str) {
        let idle = async {
            loop {
                let notified = self.0.live.idle.notified();
                if self.live_streams() == 0 {
                    return;
                }
                notified.await;
            }
        };
        if tokio::time::timeout(grace, idle).await.is_err() {
            tracing::debug!(peer = ?self.0.remote, live = self.live_streams(), "retiring a connection with streams still open after {grace:?}");
        }
        self.close(code, reason);
    }

    /// Process-unique id of this connection (for logs and tests).
    pub fn id(&self) -> u64 {
        self.0.id
    }
    pub fn remote_peer(&self) -> PeerId {
        self.0.remote
    }
    pub fn remote_addr(&self) -> SocketAddr {
        self.0.remote_addr
    }
    pub fn transport(&self) -> TransportKind {
        self.0.transport
    }
    pub fn path(&self) -> PathKind {
        match self.0.path.load(Ordering::Relaxed) {
            x if x == PathKind::Callback as u8 => PathKind::Callback,
            x if x == PathKind::HolePunched as u8 => PathKind::HolePunched,
            x if x == PathKind::Relayed as u8 => PathKind::Relayed,
            _ => PathKind::Direct,
        }
    }

    /// Relabels the path (the connector, before the endpoint adopts the connection).
    pub fn set_path(&self, path: PathKind) {
        self.0.path.store(path as u8, Ordering::Relaxed);
    }
    pub fn direction(&self) -> Direction {
        self.0.direction
    }

    fn send_stream(&self, inner: SendInner, token: Arc<StreamToken>) -> SendStream {
        SendStream {
            inner,
            shared: self.0.shared.clone(),
            own: Arc::new(RateLimit::default()),
            granted: 0,
            waiting: None,
            live: token,
        }
    }

    fn recv_stream(&self, inner: RecvInner, token: Arc<StreamToken>) -> RecvStream {
        RecvStream {
            inner,
            shared: self.0.shared.clone(),
            own: Arc::new(RateLimit::default()),
            owed: 0,
            paying: None,
            frame: None,
            failed: None,
            _live: token,
        }
    }

    fn token(&self) -> Arc<StreamToken> {
        StreamToken::new(&self.0.live)
    }

    /// Opens a bidirectional stream.
    pub async fn open_bi(&self) -> Result<(SendStream, RecvStream), ConnectionError> {
        match &self.0.inner {
            Inner::Quic(c) => {
                let (s, r) = c.open_bi().await.map_err(quic_closed)?;
                let t = self.token();
                Ok((
                    self.send_stream(SendInner::Quic(s), t.clone()),
                    self.recv_stream(RecvInner::Quic(r), t),
                ))
            }
            Inner::Tcp(m) => {
                let (r, s) = m.open(tcp::KIND_BI).await?;
                let t = self.token();
                Ok((
                    self.send_stream(SendInner::Tcp(s), t.clone()),
                    self.recv_stream(RecvInner::Tcp(r), t),
                ))
            }
            Inner::Bulk(_) => Err(one_stream()),
        }
    }

    /// Opens a one-way stream.
    pub async fn open_uni(&self) -> Result<SendStream, ConnectionError> {
        match &self.0.inner {
            Inner::Quic(c) => {
                let s = c.open_uni().await.map_err(quic_closed)?;
                Ok(self.send_stream(SendInner::Quic(s), self.token()))
            }
            Inner::Tcp(m) => {
                let (_r, s) = m.open(tcp::KIND_UNI).await?;
                Ok(self.send_stream(SendInner::Tcp(s), self.token()))
            }
            Inner::Bulk(_) => Err(one_stream()),
        }
    }

    /// The next bidirectional stream the remote opened.
    pub async fn accept_bi(&self) -> Result<(SendStream, RecvStream), ConnectionError> {
        match &self.0.inner {
            Inner::Quic(c) => {
                let (s, r) = c.accept_bi().await.map_err(quic_closed)?;
                let t = self.token();
                Ok((
                    self.send_stream(SendInner::Quic(s), t.clone()),
                    self.recv_stream(RecvInner::Quic(r), t),
                ))
            }
            Inner::Tcp(m) => {
                let (r, s) = m.accept_bi().await?;
                let t = self.token();
                Ok((
                    self.send_stream(SendInner::Tcp(s), t.clone()),
                    self.recv_stream(RecvInner::Tcp(r), t),
                ))
            }
            Inner::Bulk(_) => Err(one_stream()),
        }
    }

    /// The next one-way stream the remote opened.
    pub async fn accept_uni(&self) -> Result<RecvStream, ConnectionError> {
        match &self.0.inner {
            Inner::Quic(c) => {
                let r = c.accept_uni().await.map_err(quic_closed)?;
                Ok(self.recv_stream(RecvInner::Quic(r), self.token()))
            }
            Inner::Tcp(m) => {
                let r = m.accept_uni().await?;
                Ok(self.recv_stream(RecvInner::Tcp(r), self.token()))
            }
            Inner::Bulk(_) => Err(one_stream()),
        }
    }

    /// Largest datagram payload this connection can send now.
    pub fn max_datagram_size(&self) -> usize {
        match &self.0.inner {
            Inner::Quic(c) => c.max_datagram_size().unwrap_or(0).min(TCP_DATAGRAM_LIMIT),
            Inner::Tcp(_) => TCP_DATAGRAM_LIMIT,
            Inner::Bulk(_) => 0,
        }
    }

    /// Sends a datagram: unreliable on QUIC, reliable on TCP.
    pub async fn send_datagram(&self, data: Bytes) -> Result<(), ConnectionError> {
        let limit = self.max_datagram_size();
        if data.len() > limit {
            return Err(ConnectionError::DatagramTooLarge {
                size: data.len(),
                limit,
            });
        }
        self.0.shared.record_sent(data.len());
        match &self.0.inner {
            Inner::Quic(c) => c
                .send_datagram_wait(data)
                .await
                .map_err(|e| ConnectionError::Closed(e.to_string())),
            Inner::Tcp(m) => m.send_datagram(&data).await,
            Inner::Bulk(_) => Err(one_stream()),
        }
    }

    /// The next datagram from the remote.
    pub async fn read_datagram(&self) -> Result<Bytes, ConnectionError> {
        let data = match &self.0.inner {
            Inner::Quic(c) => c.read_datagram().await.map_err(quic_closed)?,
            Inner::Tcp(m) => m.read_datagram().await?,
            Inner::Bulk(_) => return Err(one_stream()),
        };
        self.0.shared.record_received(data.len());
        Ok(data)
    }

    /// Closes the connection; the reason is logged on both sides.
    pub fn close(&self, code: u32, reason: &str) {
        match &self.0.inner {
            Inner::Quic(c) => c.close(quinn::VarInt::from_u32(code), reason.as_bytes()),
            Inner::Tcp(m) => m.close(format!("closed locally ({code}): {reason}")),
            Inner::Bulk(l) => l.close(format!("closed locally ({code}): {reason}")),
        }
    }

    /// Waits until the connection is closed; returns why.
    pub async fn closed(&self) -> String {
        match &self.0.inner {
            Inner::Quic(c) => c.closed().await.to_string(),
            Inner::Tcp(m) => m.closed().await,
            Inner::Bulk(l) => l.closed().await,
        }
    }

    /// Why the connection is closed, or None while it is open.
    pub fn close_reason(&self) -> Option<String> {
        match &self.0.inner {
            Inner::Quic(c) => c.close_reason().map(|e| e.to_string()),
            Inner::Tcp(m) => m.close_reason(),
            Inner::Bulk(l) => l.close_reason(),
        }
    }

    /// The one stream of a bulk connection ([`bulk`]); `None` for any other connection, or
    /// once taken.
    pub(crate) fn take_bulk_stream(&self) -> Option<(SendStream, RecvStream)> {
        let Inner::Bulk(line) = &self.0.inner else {
            return None;
        };
        let (r, s) = line.take()?;
        let t = self.token();
        Some((
            self.send_stream(SendInner::Bulk(s), t.clone()),
            self.recv_stream(RecvInner::Bulk(r), t),
        ))
    }

    pub fn is_closed(&self) -> bool {
        self.close_reason().is_some()
    }

    pub fn stats(&self) -> ConnectionStats {
        let now = Instant::now();
        let mut m = self.0.shared.meters.lock().unwrap();
        let second = Duration::from_secs(1);
        let (rtt_ms, path_mtu, quic) = match &self.0.inner {
            Inner::Quic(c) => {
                let s = c.stats();
                let quic = QuicStats {
                    datagrams_sent: s.udp_tx.datagrams,
                    send_calls: s.udp_tx.ios,
                    datagrams_received: s.udp_rx.datagrams,
                    acks_sent: s.frame_tx.acks,
                    acks_received: s.frame_rx.acks,
                    lost_packets: s.path.lost_packets,
                    congestion_events: s.path.congestion_events,
                    black_holes: s.path.black_holes_detected,
                    cwnd: s.path.cwnd,
                };
                (
                    Some(c.rtt().as_secs_f64() * 1000.0),
                    Some(s.path.current_mtu),
                    Some(quic),
                )
            }
            Inner::Tcp(_) | Inner::Bulk(_) => (None, None, None),
        };
        ConnectionStats {
            bytes_sent: m.sent.total(),
            bytes_received: m.received.total(),
            send_rate: m.sent.rate(second, now),
            receive_rate: m.received.rate(second, now),
            rtt_ms,
            path_mtu,
            quic,
        }
    }
}

impl StreamShared {
    fn record_sent(&self, n: usize) {
        self.meters
            .lock()
            .unwrap()
            .sent
            .record(n as u64, Instant::now());
        if let Some(b) = &self.bulk {
            b.sent(n);
        }
    }
    fn record_received(&self, n: usize) {
        self.meters
            .lock()
            .unwrap()
            .received
            .record(n as u64, Instant::now());
        if let Some(b) = &self.bulk {
            b.received(n);
        }
    }
}

/// What a bulk connection answers to anything but its one stream.
fn one_stream() -> ConnectionError {
    ConnectionError::Stream("a bulk connection carries one stream".into())
}

fn quic_closed(e: quinn::ConnectionError) -> ConnectionError {
    ConnectionError::Closed(e.to_string())
}

pub(crate) enum SendInner {
    Quic(quinn::SendStream),
    Tcp(tcp::TcpSend),
    Bulk(bulk::SendHalf),
}

pub(crate) enum RecvInner {
    Quic(quinn::RecvStream),
    Tcp(tcp::TcpRecv),
    Bulk(bulk::RecvHalf),
}

/// Largest write let through at once while a limit applies (throttle granularity).
const THROTTLED_WRITE_CHUNK: usize = 16 * 1024;

/// A wait on the rate limits, kept in the stream across polls (and so across cancelled calls).
type LimitWait = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Which limits of a [`LimitPair`] a wait is on.
#[derive(Clone, Copy)]
enum Way {
    Up,
    Down,
}

impl StreamShared {
    fn limited(&self, own: &RateLimit, way: Way) -> bool {
        let pick = |pair: &LimitPair| match way {
            Way::Up => pair.up.rate().is_some(),
            Way::Down => pair.down.rate().is_some(),
        };
        pick(&self.global) || pick(&self.peer) || own.rate().is_some()
    }

    /// Waits until the global, the peer's and the stream's own limit, in turn, let `bytes` through.
    fn wait(&self, own: &Arc<RateLimit>, way: Way, bytes: usize) -> LimitWait {
        let (global, peer, own) = (self.global.clone(), self.peer.clone(), own.clone());
        Box::pin(async move {
            for pair in [global, peer] {
                match way {
                    Way::Up => pair.up.acquire(bytes).await,
                    Way::Down => pair.down.acquire(bytes).await,
                }
            }
            own.acquire(bytes).await;
        })
    }
}

fn stream_error(e: std::io::Error) -> ConnectionError {
    ConnectionError::Stream(e.to_string())
}

/// The sending half of a stream. Also a tokio [`AsyncWrite`](tokio::io::AsyncWrite) (what HTTP libraries take):
/// writes go straight to the transport once the upload limits let them through; shutting it down finishes the
/// stream. After a write returned `Pending`, call it again with the same bytes (as `write_all` and hyper do).
pub struct SendStream {
    inner: SendInner,
    shared: Arc<StreamShared>,
    own: Arc<RateLimit>,
    /// Bytes the limits have let through and not yet written.
    granted: usize,
    /// A wait on the limits under way, and the bytes it is for.
    waiting: Option<(usize, LimitWait)>,
    live: Arc<StreamToken>,
}

/// Longest a dropped QUIC stream counts as live while the peer has not yet acknowledged its
/// last bytes (see `Drop for SendStream`).
const LINGER_FOR_ACKS: Duration = Duration::from_secs(10);

impl Drop for SendStream {
    /// A finished QUIC stream's last bytes may still be in flight when it is dropped, and a
    /// connection close discards them: the stream stays live (for
    /// [`Connection::close_when_idle`]) until the peer has them.
    fn drop(&mut self) {
        if let SendInner::Quic(s) = &self.inner
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            let acked = s.stopped();
            let live = self.live.clone();
            runtime.spawn(async move {
                let _ = tokio::time::timeout(LINGER_FOR_ACKS, acked).await;
                drop(live);
            });
        }
    }
}

impl SendStream {
    /// This stream's own upload limit (bytes per second), changeable at any time.
    pub fn set_rate_limit(&self, bytes_per_second: Option<u64>) {
        self.own.set(bytes_per_second);
    }

    pub fn rate_limit(&self) -> Arc<RateLimit> {
        self.own.clone()
    }

    /// How many of `want` bytes may be written now: all of them when no limit applies, otherwise up to
    /// [`THROTTLED_WRITE_CHUNK`] once the limits let them through (paid before they are written).
    fn poll_grant(&mut self, cx: &mut Context<'_>, want: usize) -> Poll<usize> {
        if self.granted == 0 && self.waiting.is_none() {
            if !self.shared.limited(&self.own, Way::Up) {
                return Poll::Ready(want);
            }
            let n = want.min(THROTTLED_WRITE_CHUNK);
            self.waiting = Some((n, self.shared.wait(&self.own, Way::Up, n)));
        }
        if let Some((n, wait)) = &mut self.waiting {
            ready!(wait.as_mut().poll(cx));
            self.granted += *n;
            self.waiting = None;
        }
        Poll::Ready(want.min(self.granted))
    }

    /// Writes some of `data` (at least one byte unless it is empty), once the limits let it through.
    fn poll_send(&mut self, cx: &mut Context<'_>, data: &[u8]) -> Poll<std::io::Result<usize>> {
        if data.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let allowed = ready!(self.poll_grant(cx, data.len()));
        let chunk = &data[..allowed];
        let n = ready!(match &mut self.inner {
            SendInner::Quic(s) => AsyncWrite::poll_write(Pin::new(s), cx, chunk),
            SendInner::Tcp(s) => s.poll_write(cx, chunk),
            SendInner::Bulk(s) => AsyncWrite::poll_write(Pin::new(s), cx, chunk),
        })?;
        self.granted = self.granted.saturating_sub(n);
        self.shared.record_sent(n);
        Poll::Ready(Ok(n))
    }

    fn poll_finish(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match &mut self.inner {
            SendInner::Quic(s) => Poll::Ready(s.finish().map_err(Into::into)),
            SendInner::Tcp(s) => s.poll_shutdown(cx),
            SendInner::Bulk(s) => AsyncWrite::poll_shutdown(Pin::new(s), cx),
        }
    }

    pub async fn write_all(&mut self, mut data: &[u8]) -> Result<(), ConnectionError> {
        while !data.is_empty() {
            let n = std::future::poll_fn(|cx| self.poll_send(cx, data))
                .await
                .map_err(stream_error)?;
            if n == 0 {
                return Err(ConnectionError::Stream("the stream took no bytes".into()));
            }
            data = &data[n..];
        }
        Ok(())
    }

    /// Writes one length-prefixed frame.
    pub async fn write_frame(
        &mut self,
        payload: &[u8],
        limit: usize,
    ) -> Result<(), ConnectionError> {
        let frame = encode_frame(payload, limit)?;
        self.write_all(&frame).await
    }

    /// Ends the stream cleanly: the remote reads to its end.
    pub async fn finish(&mut self) -> Result<(), ConnectionError> {
        std::future::poll_fn(|cx| self.poll_finish(cx))
            .await
            .map_err(stream_error)
    }

    /// Abandons the stream with an error code (QUIC; TCP just closes it).
    pub fn reset(&mut self, code: u32) {
        match &mut self.inner {
            SendInner::Quic(s) => {
                let _ = s.reset(quinn::VarInt::from_u32(code));
            }
            SendInner::Tcp(_) | SendInner::Bulk(_) => {}
        }
    }
}

impl AsyncWrite for SendStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.get_mut().poll_send(cx, buf)
    }

    /// Writes the first non-empty slice. Taking vectored writes keeps hyper from first copying each body chunk into
    /// its own buffer (its flattening strategy): the chunks come here as they are.
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let first = bufs
            .iter()
            .find(|b| !b.is_empty())
            .map_or(&[][..], |b| &b[..]);
        self.get_mut().poll_send(cx, first)
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match &mut self.get_mut().inner {
            SendInner::Quic(_) => Poll::Ready(Ok(())),
            SendInner::Tcp(s) => s.poll_flush(cx),
            SendInner::Bulk(s) => AsyncWrite::poll_flush(Pin::new(s), cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.get_mut().poll_finish(cx)
    }
}

/// The receiving half of a stream. Also a tokio [`AsyncRead`](tokio::io::AsyncRead): reads come straight from the
/// transport into the caller's buffer and are paid for in the download limits before the next read.
pub struct RecvStream {
    inner: RecvInner,
    shared: Arc<StreamShared>,
    own: Arc<RateLimit>,
    /// Bytes read but not yet paid for in the rate limits: paid before the next read, so a
    /// read cancelled while waiting on a limit never loses what it read.
    owed: usize,
    /// The payment under way (kept across polls, so a cancelled read loses nothing).
    paying: Option<LimitWait>,
    /// A frame being read: kept across calls, so a cancelled `read_frame` loses nothing.
    frame: Option<Box<FrameDecoder>>,
    /// The transport's error met after a read had bytes: returned by the next read.
    failed: Option<std::io::Error>,
    _live: Arc<StreamToken>,
}

impl RecvStream {
    /// This stream's own download limit (bytes per second), changeable at any time.
    pub fn set_rate_limit(&self, bytes_per_second: Option<u64>) {
        self.own.set(bytes_per_second);
    }

    /// Pays what the last read owes the download limits.
    fn poll_pay(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if self.owed > 0 && self.paying.is_none() {
            let owed = std::mem::take(&mut self.owed);
            if self.shared.limited(&self.own, Way::Down) {
                self.paying = Some(self.shared.wait(&self.own, Way::Down, owed));
            }
        }
        if let Some(wait) = &mut self.paying {
            ready!(wait.as_mut().poll(cx));
            self.paying = None;
        }
        Poll::Ready(())
    }

    fn poll_transport(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match &mut self.inner {
            RecvInner::Quic(s) => AsyncRead::poll_read(Pin::new(s), cx, buf),
            RecvInner::Tcp(s) => AsyncRead::poll_read(Pin::new(&mut s.half), cx, buf),
            RecvInner::Bulk(s) => AsyncRead::poll_read(Pin::new(s), cx, buf),
        }
    }

    fn poll_read_into(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if let Some(error) = self.failed.take() {
            return Poll::Ready(Err(error));
        }
        ready!(self.poll_pay(cx));
        let before = buf.filled().len();
        ready!(self.poll_transport(cx, buf))?;
        // With no download limit, whatever else the transport already holds goes into the same read, up to the
        // caller's buffer: the transports hand out one TLS record or QUIC chunk (~16 KiB) per read, and a reader
        // like hyper passes each read on as one body piece (a channel hop and a split Bao block each).
        if buf.filled().len() > before && !self.shared.limited(&self.own, Way::Down) {
            while buf.remaining() > 0 {
                let got = buf.filled().len();
                match self.poll_transport(cx, buf) {
                    Poll::Ready(Ok(())) if buf.filled().len() > got => {}
                    // Reported with the next read: this one returns the bytes it has.
                    Poll::Ready(Err(error)) => {
                        self.failed = Some(error);
                        break;
                    }
                    // Nothing more now (the waker stays registered: a wake-up later is harmless), or the end.
                    Poll::Ready(Ok(())) | Poll::Pending => break,
                }
            }
        }
        let n = buf.filled().len() - before;
        if n > 0 {
            self.shared.record_received(n);
            self.owed = n;
        }
        Poll::Ready(Ok(()))
    }

    /// Reads some bytes; 0 at the end of the stream. Cancel-safe: if the future is dropped,
    /// no bytes were taken from the stream (the rate limits are paid before reading).
    pub async fn read(&mut self, buf: &mut [u8]) -> Result<usize, ConnectionError> {
        std::future::poll_fn(|cx| {
            let mut read = tokio::io::ReadBuf::new(buf);
            ready!(self.poll_read_into(cx, &mut read)).map_err(stream_error)?;
            Poll::Ready(Ok(read.filled().len()))
        })
        .await
    }

    /// Reads one frame (None at a clean end of stream). Reads never past the frame.
    /// Cancel-safe: a call dropped mid-frame keeps what it read for the next call (whose
    /// `limit` then is the first call's).
    pub async fn read_frame(&mut self, limit: usize) -> Result<Option<Bytes>, ConnectionError> {
        let mut decoder = self
            .frame
            .take()
            .unwrap_or_else(|| Box::new(FrameDecoder::new(limit)));
        loop {
            if let Some(frame) = decoder.next_frame() {
                return Ok(Some(frame));
            }
            // Sized to what the frame still needs (4 bytes while waiting for a header), so a
            // long-lived idle line holds no large buffer.
            let mut chunk = vec![0u8; decoder.wanted().min(READ_CHUNK)];
            self.frame = Some(decoder);
            let n = self.read(&mut chunk).await?;
            decoder = self.frame.take().expect("the frame being read");
            if n == 0 {
                decoder.finish()?;
                return Ok(None);
            }
            decoder.push(&chunk[..n])?;
        }
    }

    /// Reads to the end, failing past `limit` bytes.
    pub async fn read_to_end(&mut self, limit: usize) -> Result<Vec<u8>, ConnectionError> {
        let mut out = Vec::new();
        let mut chunk = vec![0u8; 64 * 1024];
        loop {
            let n = self.read(&mut chunk).await?;
            if n == 0 {
                return Ok(out);
            }
            if out.len() + n > limit {
                return Err(FrameError::TooLarge {
                    size: out.len() + n,
                    limit,
                }
                .into());
            }
            out.extend_from_slice(&chunk[..n]);
        }
    }

    /// Tells the remote to stop sending (QUIC; TCP just closes the stream).
    pub fn stop(&mut self, code: u32) {
        match &mut self.inner {
            RecvInner::Quic(s) => {
                let _ = s.stop(quinn::VarInt::from_u32(code));
            }
            RecvInner::Tcp(_) | RecvInner::Bulk(_) => {}
        }
    }
}

impl AsyncRead for RecvStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        self.get_mut().poll_read_into(cx, buf)
    }
}
