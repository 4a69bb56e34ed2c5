//! The hub's STUN server: RFC 5389 binding and RFC 5780 NAT behaviour discovery.
//!
//! With a `primary` address (IP1:P1) only, it answers binding requests on one socket. With
//! an `alternate` (IP2:P2, another IP *and* another port) it listens on the four
//! combinations IP1:P1, IP1:P2, IP2:P1, IP2:P2, puts OTHER-ADDRESS (the socket differing
//! in both) and RESPONSE-ORIGIN (the socket that answers) in every answer, and honours
//! CHANGE-REQUEST by answering from the socket with the other IP and/or port.
//!
//! Hostile input: packets over 1,500 bytes, anything that is not a well-framed binding
//! request (wrong cookie, top bits set, length not the packet's, truncated attributes, a
//! bad FINGERPRINT, responses, indications) and packets from bogus sources (port 0,
//! unspecified, broadcast, multicast, one of our own sockets) are dropped without an answer
//! and counted. Each source IP has a token bucket (and all sources share a global one);
//! over it, packets are dropped. An answer always goes to the packet's source address —
//! CHANGE-REQUEST changes only which of *our* sockets sends it — and is at most
//! [`MAX_GROWTH`] bytes larger than the request, so the server is a poor amplifier (a bare
//! 20-byte request gets 76 bytes for IPv4).
//!
//! [`answer`] is the I/O-free core (unit-tested); [`StunServer`] owns the sockets.

use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

pub use allpeers_nat::connectivity::responder::{DropReason, MAX_GROWTH, Verdict, answer};
use allpeers_nat::connectivity::stun::MAX_PACKET;
use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota, RateLimiter};
use serde::{Deserialize, Serialize};
use tokio::net::UdpSocket;
use tokio::task::JoinHandle;

/// The `stun` section of the hub's config.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StunConfig {
    /// IP1:P1 (a specific IP, not 0.0.0.0: it is sent in answers). Port 0: any free port.
    pub primary: SocketAddr,
    /// IP2:P2, with another IP and another port than `primary`: turns on RFC 5780.
    pub alternate: Option<SocketAddr>,
    /// Packets per second one source IP may send, and its burst.
    pub per_source_per_sec: u32,
    pub per_source_burst: u32,
    /// Packets per second from all sources together.
    pub total_per_sec: u32,
}

impl Default for StunConfig {
    fn default() -> Self {
        StunConfig {
            primary: SocketAddr::from(([127, 0, 0, 1], 3478)),
            alternate: None,
            per_source_per_sec: 20,
            per_source_burst: 40,
            total_per_sec: 20_000,
        }
    }
}

/// What the server did, for status and tests.
#[derive(Debug, Default)]
pub struct StunCounters {
    pub received: AtomicU64,
    pub answered: AtomicU64,
    pub oversized: AtomicU64,
    pub not_stun: AtomicU64,
    pub malformed: AtomicU64,
    pub not_a_request: AtomicU64,
    pub bad_source: AtomicU64,
    pub rate_limited: AtomicU64,
    pub send_errors: AtomicU64,
}

/// A copy of the counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct StunStats {
    pub received: u64,
    pub answered: u64,
    pub oversized: u64,
    pub not_stun: u64,
    pub malformed: u64,
    pub not_a_request: u64,
    pub bad_source: u64,
    pub rate_limited: u64,
    pub send_errors: u64,
}

impl StunCounters {
    pub fn snapshot(&self) -> StunStats {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        StunStats {
            received: g(&self.received),
            answered: g(&self.answered),
            oversized: g(&self.oversized),
            not_stun: g(&self.not_stun),
            malformed: g(&self.malformed),
            not_a_request: g(&self.not_a_request),
            bad_source: g(&self.bad_source),
            rate_limited: g(&self.rate_limited),
            send_errors: g(&self.send_errors),
        }
    }

    fn dropped(&self, why: DropReason) {
        let c = match why {
            DropReason::Oversized => &self.oversized,
            DropReason::NotStun => &self.not_stun,
            DropReason::Malformed => &self.malformed,
            DropReason::NotARequest => &self.not_a_request,
            DropReason::BadSource => &self.bad_source,
        };
        c.fetch_add(1, Ordering::Relaxed);
    }
}

/// A running STUN server; dropping it stops it.
pub struct StunServer {
    addrs: Vec<SocketAddr>,
    counters: Arc<StunCounters>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for StunServer {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

async fn bind_layout(config: &StunConfig) -> anyhow::Result<Vec<UdpSocket>> {
    let p = config.primary;
    if p.ip().is_unspecified() {
        anyhow::bail!(
            "stun.primary {p}: give a specific IP (it is sent to clients in RESPONSE-ORIGIN)"
        );
    }
    let Some(a) = config.alternate else {
        let s = UdpSocket::bind(p)
            .await
            .map_err(|e| anyhow::anyhow!("STUN socket {p}: {e}"))?;
        return Ok(vec![s]);
    };
    if a.ip().is_unspecified() || a.ip() == p.ip() || (a.port() == p.port() && p.port() != 0) {
        anyhow::bail!(
            "stun.alternate {a}: needs another specific IP and another port than stun.primary {p}"
        );
    }
    // Port 0 means "any": the same port must then be free on both IPs; retry on clashes.
    let mut last = String::new();
    for _ in 0..32 {
        let bind = |addr: SocketAddr| async move {
            UdpSocket::bind(addr)
                .await
                .map_err(|e| format!("STUN socket {addr}: {e}"))
        };
        let attempt = async {
            let s0 = bind(p).await?;
            let p1 = s0.local_addr().map_err(|e| e.to_string())?.port();
            let s2 = bind(SocketAddr::new(a.ip(), p1)).await?;
            let s3 = bind(a).await?;
            let p2 = s3.local_addr().map_err(|e| e.to_string())?.port();
            if p2 == p1 {
                return Err(format!("alternate port {p2} is the primary port"));
            }
            let s1 = bind(SocketAddr::new(p.ip(), p2)).await?;
            Ok::<_, String>(vec![s0, s1, s2, s3])
        };
        match attempt.await {
            Ok(s) => return Ok(s),
            Err(e) if p.port() == 0 || a.port() == 0 => last = e,
            Err(e) => anyhow::bail!(e),
        }
    }
    anyhow::bail!("could not bind the four STUN sockets: {last}")
}

fn nonzero(n: u32) -> NonZeroU32 {
    NonZeroU32::new(n.max(1)).expect("at least 1")
}

impl StunServer {
    pub async fn start(config: &StunConfig) -> anyhow::Result<StunServer> {
        let sockets = bind_layout(config).await?;
        let addrs: Vec<SocketAddr> = sockets
            .iter()
            .map(|s| s.local_addr())
            .collect::<Result<_, _>>()?;
        let sockets: Arc<Vec<UdpSocket>> = Arc::new(sockets);
        let counters = Arc::new(StunCounters::default());
        let per_source: Arc<DefaultKeyedRateLimiter<std::net::IpAddr>> =
            Arc::new(RateLimiter::keyed(
                Quota::per_second(nonzero(config.per_source_per_sec))
                    .allow_burst(nonzero(config.per_source_burst)),
            ));
        let total: Arc<DefaultDirectRateLimiter> = Arc::new(RateLimiter::direct(
            Quota::per_second(nonzero(config.total_per_sec)),
        ));
        let mut tasks = Vec::new();
        for on in 0..sockets.len() {
            let sockets = sockets.clone();
            let addrs = addrs.clone();
            let counters = counters.clone();
            let per_source = per_source.clone();
            let total = total.clone();
            tasks.push(tokio::spawn(async move {
                let mut buf = vec![0u8; MAX_PACKET + 1];
                loop {
                    let (n, source) = match sockets[on].recv_from(&mut buf).await {
                        Ok(x) => x,
                        Err(e) => {
                            allpeers_log::bone!("STUN receive on {}: {e}", addrs[on]);
                            continue;
                        }
                    };
                    counters.received.fetch_add(1, Ordering::Relaxed);
                    if n > MAX_PACKET {
                        counters.dropped(DropReason::Oversized);
                        continue;
                    }
                    if total.check().is_err() || per_source.check_key(&source.ip()).is_err() {
                        counters.rate_limited.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    match answer(&buf[..n], source, on, &addrs) {
                        Verdict::Answer { via, packet } => {
                            match sockets[via].send_to(&packet, source).await {
                                Ok(_) => counters.answered.fetch_add(1, Ordering::Relaxed),
                                Err(e) => {
                                    allpeers_log::bone!(%source, "STUN answer not sent: {e}");
                                    counters.send_errors.fetch_add(1, Ordering::Relaxed)
                                }
                            };
                        }
                        Verdict::Drop(why) => {
                            allpeers_log::bone!(%source, ?why, "STUN packet dropped");
                            counters.dropped(why);
                        }
                    }
                }
            }));
        }
        // The per-source table forgets sources whose bucket is full again.
        let weak = Arc::downgrade(&per_source);
        drop(per_source);
        tasks.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(10));
            loop {
                tick.tick().await;
                let Some(limiter) = weak.upgrade() else {
                    return;
                };
                limiter.retain_recent();
                limiter.shrink_to_fit();
            }
        }));
        allpeers_log::flesh!(?addrs, "STUN server listening");
        Ok(StunServer {
            addrs,
            counters,
            tasks,
        })
    }

    /// The sockets: one, or four (IP1:P1, IP1:P2, IP2:P1, IP2:P2).
    pub fn addresses(&self) -> &[SocketAddr] {
        &self.addrs
    }

    pub fn primary(&self) -> SocketAddr {
        self.addrs[0]
    }

    /// IP2:P2 when RFC 5780 is on.
    pub fn alternate(&self) -> Option<SocketAddr> {
        self.addrs.get(3).copied()
    }

    pub fn stats(&self) -> StunStats {
        self.counters.snapshot()
    }
}
