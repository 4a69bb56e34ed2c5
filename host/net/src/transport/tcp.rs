//! TCP + TLS 1.3 (tokio-rustls), multiplexed by yamux.
//!
//! yamux 0.13 has no control handle: its `Connection` must be polled by one owner. A driver
//! task owns it, takes open/close commands over a channel and hands inbound streams to a
//! short classification task per stream (the opener's kind byte: bi, uni or datagram) which
//! queues them, bounded, for the [`Connection`](super::Connection) accessors. A queue that is
//! full drops the new stream with a log line rather than buffering without bound.

use std::future::poll_fn;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWrite};

use tokio::sync::{Mutex, OwnedSemaphorePermit, Semaphore, mpsc, oneshot, watch};
use tokio_util::compat::{Compat, FuturesAsyncReadCompatExt, TokioAsyncReadCompatExt};

use super::{ConnectionError, TCP_DATAGRAM_LIMIT};
use crate::frame::encode_frame;

pub(crate) type ReadHalf = tokio::io::ReadHalf<Compat<yamux::Stream>>;
pub(crate) type WriteHalf = tokio::io::WriteHalf<Compat<yamux::Stream>>;
type Socket = tokio_rustls::TlsStream<tokio::net::TcpStream>;

pub(crate) const KIND_BI: u8 = b'B';
pub(crate) const KIND_UNI: u8 = b'U';
pub(crate) const KIND_DATAGRAM: u8 = b'D';

/// Most streams open at once on one TCP connection, both directions together (yamux ends
/// the whole connection past this, so each side caps what it opens well below it).
pub const MAX_STREAMS: usize = 512;
/// Most streams this side opens at once; further opens wait. Leaves room for the remote's
/// streams and for closed streams yamux has not yet forgotten.
pub const MAX_OUTBOUND_STREAMS: usize = 200;
/// Largest yamux data frame.
const SPLIT_SEND_SIZE: usize = 64 * 1024;
/// Inbound streams waiting to be accepted, per kind.
const QUEUE: usize = 64;
/// Time a new inbound stream has to say what it is.
const KIND_TIMEOUT: Duration = Duration::from_secs(10);

/// The sending half of a yamux stream; holds an outbound-stream permit if we opened it.
/// A stream we opened announces its kind with its first write (one frame, not two), so like
/// a QUIC stream it is visible to the remote once something is written.
pub(crate) struct TcpSend {
    half: WriteHalf,
    kind: Option<u8>,
    /// The kind byte and the first write's bytes, staged as one frame, and how much of it is written.
    head: Option<(Vec<u8>, usize)>,
    _permit: Option<Arc<OwnedSemaphorePermit>>,
}

impl TcpSend {
    fn new(half: WriteHalf, kind: Option<u8>, permit: Option<Arc<OwnedSemaphorePermit>>) -> Self {
        TcpSend {
            half,
            kind,
            head: None,
            _permit: permit,
        }
    }

    /// Writes what is left of the staged head.
    fn poll_head(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        while let Some((head, written)) = &mut self.head {
            let n = ready!(Pin::new(&mut self.half).poll_write(cx, &head[*written..]))?;
            if n == 0 {
                return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into()));
            }
            *written += n;
            if *written == head.len() {
                self.head = None;
            }
        }
        Poll::Ready(Ok(()))
    }

    /// The first write of a stream we opened goes out with the kind byte in front: it returns once both are
    /// written (called again with the same bytes after `Pending`, as the caller must).
    pub(crate) fn poll_write(
        &mut self,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        if let Some(kind) = self.kind.take() {
            let first = data.len().min(SPLIT_SEND_SIZE - 1);
            let mut head = Vec::with_capacity(1 + first);
            head.push(kind);
            head.extend_from_slice(&data[..first]);
            self.head = Some((head, 0));
        }
        if let Some((head, _)) = &self.head {
            let first = head.len() - 1;
            ready!(self.poll_head(cx))?;
            return Poll::Ready(Ok(first));
        }
        Pin::new(&mut self.half).poll_write(cx, data)
    }

    pub(crate) fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        ready!(self.poll_head(cx))?;
        Pin::new(&mut self.half).poll_flush(cx)
    }

    pub(crate) fn poll_shutdown(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        if let Some(kind) = self.kind.take() {
            self.head = Some((vec![kind], 0));
        }
        ready!(self.poll_head(cx))?;
        // A flush that fails still lets the shutdown say why the stream is gone.
        let _ = ready!(Pin::new(&mut self.half).poll_flush(cx));
        Pin::new(&mut self.half).poll_shutdown(cx)
    }

    pub(crate) async fn write_all(&mut self, mut data: &[u8]) -> std::io::Result<()> {
        while !data.is_empty() {
            let n = poll_fn(|cx| self.poll_write(cx, data)).await?;
            if n == 0 {
                return Err(std::io::ErrorKind::WriteZero.into());
            }
            data = &data[n..];
        }
        Ok(())
    }

    pub(crate) async fn shutdown(&mut self) -> std::io::Result<()> {
        poll_fn(|cx| self.poll_shutdown(cx)).await
    }
}

/// The receiving half of a yamux stream.
pub(crate) struct TcpRecv {
    pub(crate) half: ReadHalf,
    _permit: Option<Arc<OwnedSemaphorePermit>>,
}

enum Cmd {
    Open(oneshot::Sender<Result<yamux::Stream, String>>),
    Close(String),
}

pub(crate) struct Mux {
    cmd: mpsc::Sender<Cmd>,
    outbound: Arc<Semaphore>,
    bi: Mutex<mpsc::Receiver<(ReadHalf, WriteHalf)>>,
    uni: Mutex<mpsc::Receiver<ReadHalf>>,
    datagrams: Mutex<mpsc::Receiver<Bytes>>,
    closed: watch::Receiver<Option<String>>,
    /// Why this side closed the connection, set at once by [`Mux::close`]: the driver may take
    /// a while to close the socket, and nothing may open a stream on it meanwhile.
    closed_locally: std::sync::OnceLock<String>,
}

struct Queues {
    bi: mpsc::Sender<(ReadHalf, WriteHalf)>,
    uni: mpsc::Sender<ReadHalf>,
    datagrams: mpsc::Sender<Bytes>,
}

fn config() -> yamux::Config {
    let mut cfg = yamux::Config::default();
    cfg.set_max_num_streams(MAX_STREAMS);
    cfg.set_max_connection_receive_window(Some(MAX_STREAMS * 512 * 1024));
    // Bigger frames than yamux's 16 KiB: fewer frames and TLS writes per byte (bulk speed),
    // at the cost of coarser interleaving between streams.
    cfg.set_split_send_size(SPLIT_SEND_SIZE);
    cfg
}

impl Mux {
    /// Starts the driver over an established TLS stream. This side opens at most
    /// `max_outbound` streams at once (capped at [`MAX_OUTBOUND_STREAMS`], at least 1).
    pub(crate) fn start(socket: Socket, client: bool, max_outbound: usize) -> Mux {
        let mode = if client {
            yamux::Mode::Client
        } else {
            yamux::Mode::Server
        };
        let conn = yamux::Connection::new(socket.compat(), config(), mode);
        let (cmd_tx, cmd_rx) = mpsc::channel(64);
        let (bi_tx, bi_rx) = mpsc::channel(QUEUE);
        let (uni_tx, uni_rx) = mpsc::channel(QUEUE);
        let (dg_tx, dg_rx) = mpsc::channel(QUEUE);
        let (closed_tx, closed_rx) = watch::channel(None);
        let queues = Queues {
            bi: bi_tx,
            uni: uni_tx,
            datagrams: dg_tx,
        };
        tokio::spawn(drive(conn, cmd_rx, queues, closed_tx));
        Mux {
            cmd: cmd_tx,
            outbound: Arc::new(Semaphore::new(max_outbound.clamp(1, MAX_OUTBOUND_STREAMS))),
            bi: Mutex::new(bi_rx),
            uni: Mutex::new(uni_rx),
            datagrams: Mutex::new(dg_rx),
            closed: closed_rx,
            closed_locally: std::sync::OnceLock::new(),
        }
    }

    fn closed_error(&self) -> ConnectionError {
        ConnectionError::Closed(
            self.close_reason()
                .unwrap_or_else(|| "connection closed".into()),
        )
    }

    pub(crate) async fn open(&self, kind: u8) -> Result<(TcpRecv, TcpSend), ConnectionError> {
        if self.closed_locally.get().is_some() {
            return Err(self.closed_error());
        }
        let permit = Arc::new(
            self.outbound
                .clone()
                .acquire_owned()
                .await
                .map_err(|_| self.closed_error())?,
        );
        let (tx, rx) = oneshot::channel();
        self.cmd
            .send(Cmd::Open(tx))
            .await
            .map_err(|_| self.closed_error())?;
        let stream = rx
            .await
            .map_err(|_| self.closed_error())?
            .map_err(ConnectionError::Closed)?;
        let (r, w) = tokio::io::split(stream.compat());
        Ok((
            TcpRecv {
                half: r,
                _permit: Some(permit.clone()),
            },
            TcpSend::new(w, Some(kind), Some(permit)),
        ))
    }

    pub(crate) async fn accept_bi(&self) -> Result<(TcpRecv, TcpSend), ConnectionError> {
        let (r, w) = self
            .bi
            .lock()
            .await
            .recv()
            .await
            .ok_or_else(|| self.closed_error())?;
        Ok((
            TcpRecv {
                half: r,
                _permit: None,
            },
            TcpSend::new(w, None, None),
        ))
    }

    pub(crate) async fn accept_uni(&self) -> Result<TcpRecv, ConnectionError> {
        let r = self
            .uni
            .lock()
            .await
            .recv()
            .await
            .ok_or_else(|| self.closed_error())?;
        Ok(TcpRecv {
            half: r,
            _permit: None,
        })
    }

    pub(crate) async fn send_datagram(&self, data: &[u8]) -> Result<(), ConnectionError> {
        let (_r, mut w) = self.open(KIND_DATAGRAM).await?;
        let frame = encode_frame(data, TCP_DATAGRAM_LIMIT)?;
        w.write_all(&frame)
            .await
            .map_err(|e| ConnectionError::Stream(e.to_string()))?;
        w.shutdown()
            .await
            .map_err(|e| ConnectionError::Stream(e.to_string()))
    }

    pub(crate) async fn read_datagram(&self) -> Result<Bytes, ConnectionError> {
        self.datagrams
            .lock()
            .await
            .recv()
            .await
            .ok_or_else(|| self.closed_error())
    }

    pub(crate) fn close(&self, reason: String) {
        if self.closed_locally.set(reason.clone()).is_ok() {
            let _ = self.cmd.try_send(Cmd::Close(reason));
        }
    }

    pub(crate) async fn closed(&self) -> String {
        let mut rx = self.closed.clone();
        match rx.wait_for(|r| r.is_some()).await {
            Ok(r) => r.clone().unwrap_or_default(),
            Err(_) => "connection closed".into(),
        }
    }

    pub(crate) fn close_reason(&self) -> Option<String> {
        self.closed
            .borrow()
            .clone()
            .or_else(|| self.closed_locally.get().cloned())
    }
}

async fn drive(
    mut conn: yamux::Connection<Compat<Socket>>,
    mut cmd_rx: mpsc::Receiver<Cmd>,
    queues: Queues,
    closed_tx: watch::Sender<Option<String>>,
) {
    let mut pending: std::collections::VecDeque<oneshot::Sender<Result<yamux::Stream, String>>> =
        Default::default();
    let mut closing: Option<String> = None;
    let reason: String = poll_fn(|cx| {
        if closing.is_none() {
            while let Poll::Ready(cmd) = cmd_rx.poll_recv(cx) {
                match cmd {
                    Some(Cmd::Open(tx)) => pending.push_back(tx),
                    Some(Cmd::Close(reason)) => {
                        closing = Some(reason);
                        break;
                    }
                    None => {
                        closing = Some("connection dropped".into());
                        break;
                    }
                }
            }
        }
        if let Some(reason) = &closing {
            for tx in pending.drain(..) {
                let _ = tx.send(Err(reason.clone()));
            }
            // Opens that raced the close are refused now, not when the socket is closed.
            while let Poll::Ready(Some(cmd)) = cmd_rx.poll_recv(cx) {
                if let Cmd::Open(tx) = cmd {
                    let _ = tx.send(Err(reason.clone()));
                }
            }
            return match conn.poll_close(cx) {
                Poll::Ready(_) => Poll::Ready(reason.clone()),
                Poll::Pending => Poll::Pending,
            };
        }
        while !pending.is_empty() {
            match conn.poll_new_outbound(cx) {
                Poll::Ready(Ok(stream)) => {
                    let tx = pending.pop_front().expect("not empty");
                    let _ = tx.send(Ok(stream));
                }
                Poll::Ready(Err(e)) => {
                    let reason = format!("cannot open a stream: {e}");
                    for tx in pending.drain(..) {
                        let _ = tx.send(Err(reason.clone()));
                    }
                    return Poll::Ready(reason);
                }
                Poll::Pending => break,
            }
        }
        loop {
            match conn.poll_next_inbound(cx) {
                Poll::Ready(Some(Ok(stream))) => classify(stream, &queues),
                Poll::Ready(Some(Err(e))) => return Poll::Ready(format!("connection error: {e}")),
                Poll::Ready(None) => return Poll::Ready("closed by the remote".to_string()),
                Poll::Pending => return Poll::Pending,
            }
        }
    })
    .await;
    tracing::debug!(%reason, "tcp connection ended");
    let _ = closed_tx.send(Some(reason));
}

/// Reads an inbound stream's kind byte (bounded in time) and queues it.
fn classify(stream: yamux::Stream, queues: &Queues) {
    let bi = queues.bi.clone();
    let uni = queues.uni.clone();
    let datagrams = queues.datagrams.clone();
    tokio::spawn(async move {
        let (mut r, w) = tokio::io::split(stream.compat());
        let mut kind = [0u8];
        match tokio::time::timeout(KIND_TIMEOUT, r.read_exact(&mut kind)).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                tracing::debug!("inbound stream closed before its kind: {e}");
                return;
            }
            Err(_) => {
                tracing::warn!("inbound stream sent no kind in {KIND_TIMEOUT:?}: dropped");
                return;
            }
        }
        let full = match kind[0] {
            KIND_BI => bi.try_send((r, w)).is_err(),
            KIND_UNI => {
                drop(w);
                uni.try_send(r).is_err()
            }
            KIND_DATAGRAM => {
                let read = async {
                    let mut decoder = crate::frame::FrameDecoder::new(TCP_DATAGRAM_LIMIT);
                    let mut buf = [0u8; 512];
                    loop {
                        if let Some(frame) = decoder.next_frame() {
                            return Ok::<_, String>(frame);
                        }
                        let want = decoder.wanted().min(buf.len());
                        let n = r.read(&mut buf[..want]).await.map_err(|e| e.to_string())?;
                        if n == 0 {
                            decoder.finish().map_err(|e| e.to_string())?;
                            return Err("empty datagram stream".into());
                        }
                        decoder.push(&buf[..n]).map_err(|e| e.to_string())?;
                    }
                };
                match tokio::time::timeout(KIND_TIMEOUT, read).await {
                    Ok(Ok(frame)) => datagrams.try_send(frame).is_err(),
                    Ok(Err(e)) => {
                        tracing::warn!("bad datagram: {e}");
                        false
                    }
                    Err(_) => {
                        tracing::warn!("datagram stream too slow: dropped");
                        false
                    }
                }
            }
            other => {
                tracing::warn!("inbound stream of unknown kind {other:#x}: dropped");
                false
            }
        };
        if full {
            tracing::warn!("inbound queue full: stream or datagram dropped");
        }
    });
}
