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

/// A TCP address where a bulk dial beside a QUIC connection failed is not tried again for this
/// long: each try costs the transfer its wait (a filtered port answers nothing).
pub(crate) const RETRY_AFTER: std::time::Duration = std::time::Duration::from_secs(600);
/// Addresses refused at most: a node talks to a few hundred peers at most, and forgetting one
/// costs only a try.
pub(crate) const MAX_REFUSED: usize = 256;

/// TCP addresses where a bulk dial failed, each with when, bounded ([`MAX_REFUSED`]: the oldest
/// goes first) and forgotten after [`RETRY_AFTER`]. I/O-free: the caller
/// passes `now`.
#[derive(Debug, Default)]
pub(crate) struct Refused {
    at: std::collections::HashMap<std::net::SocketAddr, std::time::Instant>,
}

impl Refused {
    pub(crate) fn refused(&mut self, address: std::net::SocketAddr, now: std::time::Instant) {
        self.at.retain(|_, at| !expired(*at, now));
        if self.at.len() >= MAX_REFUSED
            && !self.at.contains_key(&address)
            && let Some(oldest) = self.at.iter().min_by_key(|(_, at)| **at).map(|(a, _)| *a)
        {
            self.at.remove(&oldest);
        }
        self.at.insert(address, now);
    }

    pub(crate) fn is_refused(
        &self,
        address: std::net::SocketAddr,
        now: std::time::Instant,
    ) -> bool {
        self.at.get(&address).is_some_and(|at| !expired(*at, now))
    }
}

fn expired(at: std::time::Instant, now: std::time::Instant) -> bool {
    now.saturating_duration_since(at) >= RETRY_AFTER
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

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;
    use std::time::{Duration, Instant};

    use super::*;

    fn address(port: u16) -> SocketAddr {
        SocketAddr::from(([192, 0, 2, 7], port))
    }

    #[test]
    fn a_refused_address_is_skipped_until_it_expires() {
        let now = Instant::now();
        let mut refused = Refused::default();
        refused.refused(address(1), now);
        assert!(refused.is_refused(address(1), now + RETRY_AFTER - Duration::from_secs(1)));
        assert!(!refused.is_refused(address(2), now));
        assert!(!refused.is_refused(address(1), now + RETRY_AFTER));
        // Refused again: the wait starts over.
        refused.refused(address(1), now + RETRY_AFTER);
        assert!(refused.is_refused(address(1), now + RETRY_AFTER + Duration::from_secs(1)));
    }

    #[test]
    fn the_oldest_refusal_gives_way_when_full_and_expired_ones_are_dropped() {
        let now = Instant::now();
        let mut refused = Refused::default();
        for port in 0..MAX_REFUSED as u16 {
            refused.refused(address(port), now + Duration::from_millis(u64::from(port)));
        }
        let later = now + Duration::from_secs(1);
        refused.refused(address(9999), later);
        assert_eq!(refused.at.len(), MAX_REFUSED);
        assert!(!refused.is_refused(address(0), later), "the oldest went");
        assert!(refused.is_refused(address(1), later));
        assert!(refused.is_refused(address(9999), later));
        // Past the wait, one more refusal leaves only itself.
        let much_later = later + RETRY_AFTER;
        refused.refused(address(1), much_later);
        assert_eq!(refused.at.len(), 1);
    }
}
