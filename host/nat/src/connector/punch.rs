//! Punch packets, probe spraying and the birthday sockets.
//!
//! A punch packet is a 20-byte STUN Binding Indication (RFC 5389 message type 0x0011, no
//! attributes) whose transaction id is derived from the session: it opens our NAT's filter
//! towards the other side, and on the QUIC socket [`PunchFilter`] drops it before quinn (an
//! indication never needs an answer). Only someone who knows the session (the two
//! peers, through their signed signals) can make a probe the birthday sockets accept.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use rand::Rng;
use tokio::net::UdpSocket;

use allpeers_net::transport::udp::{HookedUdpSocket, PacketHook};

pub const PUNCH_LEN: usize = 20;
const BINDING_INDICATION: [u8; 2] = [0x00, 0x11];
/// Ports tried first above the hard side's last known public port, for NATs that allocate
/// ports in sequence (a new mapping usually lands just above the last one).
pub const PREDICTED_PORTS: u16 = 32;
/// Probes sent per pacing tick (the spray is paced to spare the NATs' tables and the link).
const PROBES_PER_TICK: usize = 64;
const PROBE_TICK: Duration = Duration::from_millis(10);

/// The transaction id punch packets of `session` carry.
pub fn token(session: &[u8; 16]) -> [u8; 12] {
    let hash = blake3::derive_key("allpeers punch token v1", session);
    hash[..12].try_into().expect("12 bytes")
}

pub fn packet(token: &[u8; 12]) -> [u8; PUNCH_LEN] {
    let mut p = [0u8; PUNCH_LEN];
    p[..2].copy_from_slice(&BINDING_INDICATION);
    p[4..8].copy_from_slice(&rtc_stun::message::MAGIC_COOKIE.to_be_bytes());
    p[8..].copy_from_slice(token);
    p
}

/// The token of a punch packet; None for anything else.
pub fn parse(p: &[u8]) -> Option<[u8; 12]> {
    (p.len() == PUNCH_LEN
        && p[..2] == BINDING_INDICATION
        && p[2..4] == [0, 0]
        && p[4..8] == rtc_stun::message::MAGIC_COOKIE.to_be_bytes())
    .then(|| p[8..].try_into().expect("12 bytes"))
}

/// Takes punch packets off the QUIC socket: they have done their work by arriving (the NAT
/// mapping is open), and quinn would answer a stray one with a stateless reset.
#[derive(Debug, Default)]
pub struct PunchFilter;

impl PacketHook for PunchFilter {
    fn take(&self, packet: &[u8], _from: SocketAddr) -> bool {
        parse(packet).is_some()
    }
}

/// Ports to probe on the hard side's IP, `count` of them, distinct: first the ones a
/// sequential allocator would hand out next after `last_seen` (its public port as the hub
/// saw it), then random ones above 1023.
pub fn spray_ports(last_seen: u16, count: usize, rng: &mut impl Rng) -> Vec<u16> {
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::with_capacity(count);
    for d in 1..=PREDICTED_PORTS {
        if out.len() == count {
            return out;
        }
        if let Some(p) = last_seen.checked_add(d).filter(|p| *p > 1023)
            && seen.insert(p)
        {
            out.push(p);
        }
    }
    // Bounded: there are 64,512 ports to draw from and `count` is far smaller.
    let count = count.min(60_000);
    while out.len() < count {
        let p = rng.gen_range(1024..=u16::MAX);
        if seen.insert(p) {
            out.push(p);
        }
    }
    out
}

/// Sends a few punch packets from the QUIC socket to each of `to` (paced, so that one lost
/// packet does not lose the punch).
pub async fn punch(socket: &HookedUdpSocket, to: &[SocketAddr], token: &[u8; 12], rounds: usize) {
    let p = packet(token);
    for round in 0..rounds {
        if round > 0 {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        for addr in to {
            if let Err(e) = socket.send(&p, *addr).await {
                tracing::debug!(%addr, "punch packet not sent: {e}");
            }
        }
    }
}

/// Sprays probes from the QUIC socket at `ports` of `ip`.
pub async fn spray(socket: &HookedUdpSocket, ip: IpAddr, ports: &[u16], token: &[u8; 12]) {
    let p = packet(token);
    let mut tick = tokio::time::interval(PROBE_TICK);
    for batch in ports.chunks(PROBES_PER_TICK) {
        tick.tick().await;
        for port in batch {
            let _ = socket.send(&p, SocketAddr::new(ip, *port)).await;
        }
    }
}

/// The hard side's part: opens `count` sockets, sends a punch from each towards `easy`
/// (each gets its own NAT mapping), and returns the first socket a probe of this session
/// reaches from `easy` — the mapping the easy side found — as a std socket to dial from.
pub async fn birthday(
    easy: SocketAddr,
    token: &[u8; 12],
    count: usize,
    within: Duration,
) -> std::io::Result<Option<std::net::UdpSocket>> {
    let bind = match easy {
        SocketAddr::V4(_) => SocketAddr::from(([0, 0, 0, 0], 0)),
        SocketAddr::V6(_) => SocketAddr::from(([0u16; 8], 0)),
    };
    let p = packet(token);
    let mut sockets = Vec::with_capacity(count);
    for _ in 0..count {
        let s = UdpSocket::bind(bind).await?;
        // A send that fails (a full socket buffer) only loses that socket's chance.
        let _ = s.send_to(&p, easy).await;
        sockets.push(s);
    }
    let mut waits: FuturesUnordered<_> = sockets
        .into_iter()
        .map(|s| async move {
            let mut buf = [0u8; 64];
            loop {
                match s.recv_from(&mut buf).await {
                    Ok((n, from)) if from == easy && parse(&buf[..n]) == Some(*token) => {
                        return Some(s);
                    }
                    Ok(_) => continue,
                    Err(_) => return None,
                }
            }
        })
        .collect();
    let found = tokio::time::timeout(within, async {
        while let Some(got) = waits.next().await {
            if got.is_some() {
                return got;
            }
        }
        None
    })
    .await
    .ok()
    .flatten();
    match found {
        Some(s) => Ok(Some(s.into_std()?)),
        None => Ok(None),
    }
}

/// A free local TCP port for a TCP hole punch (announced in our signal; the NAT maps it to the
/// same public port when it preserves ports).
pub fn free_tcp_port() -> std::io::Result<u16> {
    let s = std::net::TcpListener::bind(SocketAddr::from(([0, 0, 0, 0], 0)))?;
    Ok(s.local_addr()?.port())
}

/// Time one TCP connect attempt of a punch may take before the next (the SYN is usually
/// dropped by the other router until the other side's SYN has gone out).
const TCP_ATTEMPT: Duration = Duration::from_millis(1500);

/// TCP simultaneous open: connects from `local_port` to `remote` again and again until
/// `within`, while the other side does the same towards us. Each side's SYN opens its own NAT
/// for the other's; once both have gone out, the SYNs cross and both connects complete on the
/// same connection (RFC 793 simultaneous open, which Linux and conntrack support). Nothing
/// listens on the port, so no third party can get in: an unexpected SYN is answered with a
/// reset.
pub async fn tcp_simultaneous_open(
    local_port: u16,
    remote: SocketAddr,
    within: Duration,
) -> std::io::Result<Option<tokio::net::TcpStream>> {
    let deadline = tokio::time::Instant::now() + within;
    let bind = match remote {
        SocketAddr::V4(_) => SocketAddr::from(([0, 0, 0, 0], local_port)),
        SocketAddr::V6(_) => SocketAddr::from(([0u16; 8], local_port)),
    };
    while tokio::time::Instant::now() < deadline {
        let socket = match remote {
            SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
            SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
        };
        socket.set_reuseaddr(true)?;
        socket.bind(bind)?;
        let attempt = TCP_ATTEMPT.min(deadline - tokio::time::Instant::now());
        match tokio::time::timeout(attempt, socket.connect(remote)).await {
            Ok(Ok(stream)) => return Ok(Some(stream)),
            // Reset (the other side's socket was not there yet) or unreachable: again.
            Ok(Err(e)) => {
                tracing::trace!(%remote, "TCP punch attempt failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(_) => {}
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn punch_packets_round_trip_and_nothing_else_parses() {
        let t = token(&[9; 16]);
        assert_eq!(parse(&packet(&t)), Some(t));
        assert_ne!(token(&[8; 16]), t);
        let mut p = packet(&t);
        p[1] = 0x01; // a binding request is not a punch
        assert_eq!(parse(&p), None);
        assert_eq!(parse(&packet(&t)[..19]), None);
        assert_eq!(parse(&[0u8; 20]), None);
    }

    #[test]
    fn spray_predicts_sequential_ports_first_then_draws_distinct_ones() {
        let mut rng = rand::thread_rng();
        let ports = spray_ports(40_000, 2048, &mut rng);
        assert_eq!(ports.len(), 2048);
        assert_eq!(&ports[..3], &[40_001, 40_002, 40_003]);
        let distinct: std::collections::HashSet<_> = ports.iter().collect();
        assert_eq!(distinct.len(), ports.len());
        assert!(ports.iter().all(|p| *p > 1023));
        // Near the top of the range the prediction stops at 65535.
        let top = spray_ports(65_530, 10, &mut rng);
        assert_eq!(&top[..5], &[65_531, 65_532, 65_533, 65_534, 65_535]);
    }

    #[tokio::test]
    async fn the_socket_a_probe_reaches_is_the_one_returned() {
        let easy = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let easy_addr = easy.local_addr().unwrap();
        let t = token(&[3; 16]);
        let hard =
            tokio::spawn(async move { birthday(easy_addr, &t, 8, Duration::from_secs(5)).await });
        // The easy side learns the hard sockets' ports from their punches (on loopback no NAT
        // hides them) and answers one with a wrong token first, then the right one.
        let mut buf = [0u8; 64];
        let (_, first) = easy.recv_from(&mut buf).await.unwrap();
        easy.send_to(&packet(&token(&[4; 16])), first)
            .await
            .unwrap();
        easy.send_to(&packet(&t), first).await.unwrap();
        let socket = hard.await.unwrap().unwrap().expect("a socket");
        assert_eq!(socket.local_addr().unwrap().port(), first.port());
    }
}
