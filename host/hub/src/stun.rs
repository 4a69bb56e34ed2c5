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

use allpeers_net::connectivity::stun::{self as stun_codec, CHANGE_IP, CHANGE_PORT, MAX_PACKET};
use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota, RateLimiter};
use rtc_stun::addr::MappedAddress;
use rtc_stun::attributes::{
    ATTR_CHANGE_REQUEST, ATTR_MAPPED_ADDRESS, ATTR_MESSAGE_INTEGRITY,
    ATTR_MESSAGE_INTEGRITY_SHA256, ATTR_OTHER_ADDRESS, ATTR_PRIORITY, ATTR_RESPONSE_ORIGIN,
    ATTR_USE_CANDIDATE, ATTR_USERNAME, AttrType,
};
use rtc_stun::error_code::{CODE_UNKNOWN_ATTRIBUTE, ErrorCodeAttribute};
use rtc_stun::fingerprint::FINGERPRINT;
use rtc_stun::message::{
    BINDING_ERROR, BINDING_REQUEST, BINDING_SUCCESS, Message, Setter, TransactionId,
};
use rtc_stun::uattrs::UnknownAttributes;
use rtc_stun::xoraddr::XorMappedAddress;
use serde::{Deserialize, Serialize};
use tokio::net::UdpSocket;
use tokio::task::JoinHandle;

/// An answer is at most this many bytes larger than the request it answers.
pub const MAX_GROWTH: usize = 128;

/// Comprehension-required attributes a request may carry without a 420: CHANGE-REQUEST,
/// and those of authenticated or ICE requests this server does not need (USERNAME,
/// MESSAGE-INTEGRITY(-SHA256), PRIORITY, USE-CANDIDATE) and ignores.
const UNDERSTOOD: [AttrType; 6] = [
    ATTR_CHANGE_REQUEST,
    ATTR_USERNAME,
    ATTR_MESSAGE_INTEGRITY,
    ATTR_MESSAGE_INTEGRITY_SHA256,
    ATTR_PRIORITY,
    ATTR_USE_CANDIDATE,
];

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

/// Why a packet got no answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    Oversized,
    NotStun,
    Malformed,
    NotARequest,
    BadSource,
}

/// What to do with one packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Send `packet` from socket `via` to the packet's source.
    Answer {
        via: usize,
        packet: Vec<u8>,
    },
    Drop(DropReason),
}

/// The socket index answering a request received on `on` with CHANGE-REQUEST `flags`.
/// Index bits: 2 = the alternate IP, 1 = the alternate port.
fn change_socket(on: usize, flags: u8) -> usize {
    let mut via = on;
    if flags & CHANGE_IP != 0 {
        via ^= 2;
    }
    if flags & CHANGE_PORT != 0 {
        via ^= 1;
    }
    via
}

fn add_address(m: &mut Message, attr: AttrType, a: SocketAddr) {
    MappedAddress {
        ip: a.ip(),
        port: a.port(),
    }
    .add_to_as(m, attr)
    .expect("address attributes always encode");
}

/// The I/O-free core: the answer to `packet`, received from `source` on socket `on` of
/// `sockets` (1 socket, or 4 in the order IP1:P1, IP1:P2, IP2:P1, IP2:P2).
pub fn answer(packet: &[u8], source: SocketAddr, on: usize, sockets: &[SocketAddr]) -> Verdict {
    use stun_codec::StunError;
    let m = match stun_codec::decode(packet) {
        Ok(m) => m,
        Err(StunError::Oversized(_)) => return Verdict::Drop(DropReason::Oversized),
        Err(StunError::NotStun(_)) => return Verdict::Drop(DropReason::NotStun),
        Err(_) => return Verdict::Drop(DropReason::Malformed),
    };
    if m.typ != BINDING_REQUEST {
        return Verdict::Drop(DropReason::NotARequest);
    }
    if stun_codec::is_bogus_source(&source) || sockets.contains(&source) {
        return Verdict::Drop(DropReason::BadSource);
    }
    let flags = if m.contains(ATTR_CHANGE_REQUEST) {
        match m.get(ATTR_CHANGE_REQUEST) {
            Ok(v) if v.len() == 4 => v[3] & (CHANGE_IP | CHANGE_PORT),
            _ => return Verdict::Drop(DropReason::Malformed),
        }
    } else {
        0
    };
    let four = sockets.len() == 4;
    let mut unknown: Vec<AttrType> = m
        .attributes
        .0
        .iter()
        .map(|a| a.typ)
        .filter(|t| t.required() && !UNDERSTOOD.contains(t))
        .take(8)
        .collect();
    if flags != 0 && !four {
        // RFC 5780 §6.1: a server without an alternate address refuses CHANGE-REQUEST.
        unknown.insert(0, ATTR_CHANGE_REQUEST);
    }
    let mut r = Message::new();
    r.transaction_id = TransactionId(m.transaction_id.0);
    let via = if !unknown.is_empty() {
        // RFC 5389 §7.3.1: an unknown comprehension-required attribute gets a 420. This is
        // also how RESPONSE-PORT is refused: answering to another port than the source's
        // is exactly what this server never does.
        r.typ = BINDING_ERROR;
        r.write_header();
        ErrorCodeAttribute {
            code: CODE_UNKNOWN_ATTRIBUTE,
            reason: b"Unknown Attribute".to_vec(),
        }
        .add_to(&mut r)
        .expect("error code encodes");
        UnknownAttributes(unknown)
            .add_to(&mut r)
            .expect("unknown attributes encode");
        on
    } else {
        let via = change_socket(on, flags);
        r.typ = BINDING_SUCCESS;
        r.write_header();
        XorMappedAddress {
            ip: source.ip(),
            port: source.port(),
        }
        .add_to(&mut r)
        .expect("xor address encodes");
        add_address(&mut r, ATTR_MAPPED_ADDRESS, source);
        add_address(&mut r, ATTR_RESPONSE_ORIGIN, sockets[via]);
        if four {
            add_address(&mut r, ATTR_OTHER_ADDRESS, sockets[on ^ 3]);
        }
        via
    };
    FINGERPRINT.add_to(&mut r).expect("fingerprint encodes");
    if r.raw.len() > packet.len() + MAX_GROWTH {
        return Verdict::Drop(DropReason::Malformed);
    }
    Verdict::Answer { via, packet: r.raw }
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

#[cfg(test)]
mod tests {
    use super::*;
    use allpeers_net::connectivity::stun::{
        binding_request, decode, new_transaction, parse_binding_response,
    };
    use rtc_stun::attributes::ATTR_UNKNOWN_ATTRIBUTES;

    fn layout() -> Vec<SocketAddr> {
        [
            "203.0.113.10:3478",
            "203.0.113.10:3479",
            "203.0.113.11:3478",
            "203.0.113.11:3479",
        ]
        .iter()
        .map(|s| s.parse().unwrap())
        .collect()
    }

    const CLIENT: &str = "198.51.100.7:40000";

    #[test]
    fn binding_answer_has_rfc5780_attributes() {
        let s = layout();
        let client: SocketAddr = CLIENT.parse().unwrap();
        for on in 0..4 {
            let t = new_transaction();
            let req = binding_request(t, 0);
            let Verdict::Answer { via, packet } = answer(&req, client, on, &s) else {
                panic!("no answer")
            };
            assert_eq!(via, on);
            let r = parse_binding_response(&packet, &t).unwrap();
            assert_eq!(r.mapped, client);
            assert_eq!(r.origin, Some(s[on]));
            assert_eq!(r.other, Some(s[on ^ 3]));
            assert!(packet.len() <= req.len() + MAX_GROWTH);
        }
    }

    #[test]
    fn change_request_picks_the_socket() {
        let s = layout();
        let client: SocketAddr = CLIENT.parse().unwrap();
        for (flags, want) in [
            (0, 0),
            (CHANGE_PORT, 1),
            (CHANGE_IP, 2),
            (CHANGE_IP | CHANGE_PORT, 3),
        ] {
            let t = new_transaction();
            let Verdict::Answer { via, packet } = answer(&binding_request(t, flags), client, 0, &s)
            else {
                panic!("no answer")
            };
            assert_eq!(via, want, "flags {flags}");
            assert_eq!(
                parse_binding_response(&packet, &t).unwrap().origin,
                Some(s[want])
            );
        }
        // From the alternate socket, "change both" goes back to the primary.
        let Verdict::Answer { via, .. } = answer(
            &binding_request(new_transaction(), CHANGE_IP | CHANGE_PORT),
            client,
            3,
            &s,
        ) else {
            panic!()
        };
        assert_eq!(via, 0);
    }

    #[test]
    fn single_address_refuses_change_request() {
        let s = vec![layout()[0]];
        let client: SocketAddr = CLIENT.parse().unwrap();
        let t = new_transaction();
        let Verdict::Answer { via, packet } = answer(&binding_request(t, CHANGE_IP), client, 0, &s)
        else {
            panic!()
        };
        assert_eq!(via, 0);
        let m = decode(&packet).unwrap();
        assert_eq!(m.typ, BINDING_ERROR);
        assert!(m.contains(ATTR_UNKNOWN_ATTRIBUTES));
        // A plain request gets an answer without OTHER-ADDRESS.
        let t = new_transaction();
        let Verdict::Answer { packet, .. } = answer(&binding_request(t, 0), client, 0, &s) else {
            panic!()
        };
        assert_eq!(parse_binding_response(&packet, &t).unwrap().other, None);
    }

    #[test]
    fn response_port_is_refused_with_420_to_the_source() {
        let s = layout();
        let client: SocketAddr = CLIENT.parse().unwrap();
        let mut req = Message::new();
        req.typ = BINDING_REQUEST;
        req.transaction_id = TransactionId(new_transaction());
        req.write_header();
        req.add(
            rtc_stun::attributes::ATTR_RESPONSE_PORT,
            &[0xdb, 0x07, 0, 0],
        );
        req.add(ATTR_CHANGE_REQUEST, &[0, 0, 0, 6]);
        let Verdict::Answer { via, packet } = answer(&req.raw, client, 0, &s) else {
            panic!()
        };
        // From the receiving socket (no change honoured), an error naming RESPONSE-PORT.
        assert_eq!(via, 0);
        let m = decode(&packet).unwrap();
        assert_eq!(m.typ, BINDING_ERROR);
        let mut u = UnknownAttributes(Vec::new());
        rtc_stun::message::Getter::get_from(&mut u, &m).unwrap();
        assert_eq!(u.0, vec![rtc_stun::attributes::ATTR_RESPONSE_PORT]);
        // Comprehension-optional unknowns (SOFTWARE) are ignored.
        let mut req = Message::new();
        req.typ = BINDING_REQUEST;
        req.transaction_id = TransactionId(new_transaction());
        req.write_header();
        req.add(rtc_stun::attributes::ATTR_SOFTWARE, b"test");
        let Verdict::Answer { packet, .. } = answer(&req.raw, client, 0, &s) else {
            panic!()
        };
        assert_eq!(decode(&packet).unwrap().typ, BINDING_SUCCESS);
    }

    #[test]
    fn drops() {
        let s = layout();
        let client: SocketAddr = CLIENT.parse().unwrap();
        let req = binding_request(new_transaction(), 0);
        let d = |p: &[u8], src: SocketAddr| answer(p, src, 0, &s);
        assert_eq!(d(b"hello", client), Verdict::Drop(DropReason::NotStun));
        let mut cookie = req.clone();
        cookie[5] ^= 1;
        assert_eq!(d(&cookie, client), Verdict::Drop(DropReason::NotStun));
        let mut trunc = req.clone();
        trunc[3] = 200;
        assert_eq!(d(&trunc, client), Verdict::Drop(DropReason::Malformed));
        let mut big = req.clone();
        big.resize(MAX_PACKET + 4, 0);
        assert_eq!(d(&big, client), Verdict::Drop(DropReason::Oversized));
        // A response or an indication is never answered (no loops between servers).
        let t = new_transaction();
        let Verdict::Answer { packet, .. } = d(&binding_request(t, 0), client) else {
            panic!()
        };
        assert_eq!(d(&packet, client), Verdict::Drop(DropReason::NotARequest));
        let mut indication = req.clone();
        indication[1] = 0x11;
        // The fingerprint no longer matches: malformed; without one, not a request.
        assert_eq!(d(&indication, client), Verdict::Drop(DropReason::Malformed));
        // Sources we never answer: ourselves, port 0, broadcast.
        for src in ["203.0.113.11:3479", "198.51.100.7:0", "255.255.255.255:9"] {
            assert_eq!(
                d(&req, src.parse().unwrap()),
                Verdict::Drop(DropReason::BadSource),
                "{src}"
            );
        }
        // A CHANGE-REQUEST of the wrong length.
        let mut bad = Message::new();
        bad.typ = BINDING_REQUEST;
        bad.transaction_id = TransactionId(new_transaction());
        bad.write_header();
        bad.add(ATTR_CHANGE_REQUEST, &[4]);
        assert_eq!(d(&bad.raw, client), Verdict::Drop(DropReason::Malformed));
    }
}
