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
