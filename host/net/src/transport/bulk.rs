//! A TCP connection of its own for one bulk stream: TLS 1.3 over TCP with no multiplexer.
//!
//! yamux 0.13 copies every write into a frame `Vec`, reads every frame into a zero-filled
//! `Vec` and copies it again to the reader, and hands each frame between the stream and the
//! connection's driver task (a wake-up each way). A file transfer needs none of it: it is one
//! long stream. So the endpoint can open, beside the peer's connection, a second TCP
//! connection that carries exactly one stream ([`tls::BULK_ALPN`](crate::tls::BULK_ALPN)):
//! the same certificates and verifiers as every connection (mutual authentication, the key
//! pinned to the PeerId dialled), the stream's bytes written straight into rustls and read
//! straight out of it. The stream starts with the usual head (namespace and kind) and is
//! routed like any other; the connection ends with the stream.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::watch;

/// The TLS socket a bulk connection is.
pub(crate) type Socket = tokio_rustls::TlsStream<tokio::net::TcpStream>;
pub(crate) type SendHalf = tokio::io::WriteHalf<Socket>;
pub(crate) type RecvHalf = tokio::io::ReadHalf<Socket>;

/// A bulk connection: its socket until the stream is taken out of it, and why it closed.
pub(crate) struct Line {
    socket: Mutex<Option<Socket>>,
    closed: watch::Sender<Option<String>>,
}

impl Line {
    pub(crate) fn new(socket: Socket) -> Line {
        Line {
            socket: Mutex::new(Some(socket)),
            closed: watch::channel(None).0,
        }
    }

    /// The one stream's halves (`None` once taken).
    pub(crate) fn take(&self) -> Option<(RecvHalf, SendHalf)> {
        let socket = self.socket.lock().expect("bulk socket").take()?;
        Some(tokio::io::split(socket))
    }

    /// Marks the connection closed. The socket closes when both halves of its stream are
    /// dropped (or here, if the stream was never taken).
    pub(crate) fn close(&self, reason: String) {
        self.socket.lock().expect("bulk socket").take();
        self.closed.send_if_modified(|r| {
            if r.is_none() {
                *r = Some(reason);
                true
            } else {
                false
            }
        });
    }

    pub(crate) async fn closed(&self) -> String {
        let mut rx = self.closed.subscribe();
        match rx.wait_for(|r| r.is_some()).await {
            Ok(r) => r.clone().unwrap_or_default(),
            Err(_) => "connection closed".into(),
        }
    }

    pub(crate) fn close_reason(&self) -> Option<String> {
        self.closed.borrow().clone()
    }
}

/// What an endpoint's bulk connections carried since it started (`net.status`'s `bulk`):
/// how a user (or a test) tells a transfer that took a connection of its own from one that
/// fell back to a stream on the peer's connection.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct BulkStats {
    /// Bulk connections we dialled (and whose stream the remote service took).
    pub dialled: u64,
    /// Bulk connections peers dialled to us.
    pub accepted: u64,
    /// Stream bytes written and read on bulk connections, both directions.
    pub bytes_sent: u64,
    pub bytes_received: u64,
}

/// The endpoint's counters behind [`BulkStats`]; every bulk stream adds to them.
#[derive(Debug, Default)]
pub(crate) struct Totals {
    dialled: AtomicU64,
    accepted: AtomicU64,
    bytes_sent: AtomicU64,
    bytes_received: AtomicU64,
}

impl Totals {
    pub(crate) fn dialled(&self) {
        self.dialled.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn accepted(&self) {
        self.accepted.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn sent(&self, n: usize) {
        self.bytes_sent.fetch_add(n as u64, Ordering::Relaxed);
    }
    pub(crate) fn received(&self, n: usize) {
        self.bytes_received.fetch_add(n as u64, Ordering::Relaxed);
    }
    pub(crate) fn stats(&self) -> BulkStats {
        BulkStats {
            dialled: self.dialled.load(Ordering::Relaxed),
            accepted: self.accepted.load(Ordering::Relaxed),
            bytes_sent: self.bytes_sent.load(Ordering::Relaxed),
            bytes_received: self.bytes_received.load(Ordering::Relaxed),
        }
    }
}
