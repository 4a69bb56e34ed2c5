//! STUN (RFC 5389) binding requests with RFC 5780's CHANGE-REQUEST, on top of webrtc-rs's
//! `rtc-stun` codec: building requests, checking and reading responses (I/O-free), and a
//! small client that runs one transaction over a UDP socket with retransmissions.
//!
//! Reading is strict before `rtc-stun` sees the bytes ([`check_framing`]): at most
//! [`MAX_PACKET`] bytes, the two top bits zero, the magic cookie, a length that is a
//! multiple of 4 and exactly the packet's. Anything else is not STUN and is ignored.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use rtc_stun::addr::MappedAddress;
use rtc_stun::attributes::{
    ATTR_CHANGE_REQUEST, ATTR_FINGERPRINT, ATTR_MAPPED_ADDRESS, ATTR_OTHER_ADDRESS,
    ATTR_RESPONSE_ORIGIN, ATTR_XORMAPPED_ADDRESS,
};
use rtc_stun::error_code::ErrorCodeAttribute;
use rtc_stun::fingerprint::FINGERPRINT;
use rtc_stun::message::{
    BINDING_ERROR, BINDING_REQUEST, BINDING_SUCCESS, Getter, MAGIC_COOKIE, MESSAGE_HEADER_SIZE,
    Message, Setter, TransactionId,
};
use rtc_stun::xoraddr::XorMappedAddress;
use tokio::net::UdpSocket;

/// The largest STUN packet we read or answer (an Ethernet MTU).
pub const MAX_PACKET: usize = 1500;
/// CHANGE-REQUEST flag: answer from the other IP address.
pub const CHANGE_IP: u8 = 0x04;
/// CHANGE-REQUEST flag: answer from the other port.
pub const CHANGE_PORT: u8 = 0x02;

/// Why a packet is not a usable STUN message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StunError {
    #[error("packet of {0} bytes is over the {MAX_PACKET}-byte limit")]
    Oversized(usize),
    #[error("not a STUN message: {0}")]
    NotStun(&'static str),
    #[error("malformed STUN message: {0}")]
    Malformed(String),
    #[error("a STUN message, but not the binding response we wait for")]
    Unexpected,
    #[error("the binding response has no (XOR-)MAPPED-ADDRESS")]
    NoMappedAddress,
    #[error("the STUN server refused: {code} {reason}")]
    Refused { code: u16, reason: String },
    #[error("no STUN answer within {0:?}")]
    Timeout(Duration),
    #[error("STUN socket: {0}")]
    Io(String),
}

/// Checks the STUN framing of `packet` (RFC 5389 §6) without decoding attributes.
pub fn check_framing(packet: &[u8]) -> Result<(), StunError> {
    if packet.len() > MAX_PACKET {
        return Err(StunError::Oversized(packet.len()));
    }
    if packet.len() < MESSAGE_HEADER_SIZE {
        return Err(StunError::NotStun("shorter than a STUN header"));
    }
    if packet[0] & 0xC0 != 0 {
        return Err(StunError::NotStun("the two top bits are not zero"));
    }
    if u32::from_be_bytes([packet[4], packet[5], packet[6], packet[7]]) != MAGIC_COOKIE {
        return Err(StunError::NotStun("wrong magic cookie"));
    }
    let length = u16::from_be_bytes([packet[2], packet[3]]) as usize;
    if !length.is_multiple_of(4) {
        return Err(StunError::Malformed(format!(
            "length {length} is not a multiple of 4"
        )));
    }
    if MESSAGE_HEADER_SIZE + length != packet.len() {
        return Err(StunError::Malformed(format!(
            "length field says {} bytes, the packet has {}",
            MESSAGE_HEADER_SIZE + length,
            packet.len()
        )));
    }
    Ok(())
}

/// Decodes a framed STUN message; a FINGERPRINT, if present, must be last and right.
pub fn decode(packet: &[u8]) -> Result<Message, StunError> {
    check_framing(packet)?;
    let mut m = Message::new();
    m.unmarshal_binary(packet)
        .map_err(|e| StunError::Malformed(e.to_string()))?;
    if m.contains(ATTR_FINGERPRINT) {
        if m.attributes.0.last().map(|a| a.typ) != Some(ATTR_FINGERPRINT) {
            return Err(StunError::Malformed("FINGERPRINT is not last".into()));
        }
        FINGERPRINT
            .check(&m)
            .map_err(|e| StunError::Malformed(format!("FINGERPRINT: {e}")))?;
    }
    Ok(m)
}

/// A fresh random transaction id.
pub fn new_transaction() -> [u8; 12] {
    rand::random()
}

/// A binding request, with a CHANGE-REQUEST when `change` (the [`CHANGE_IP`] /
/// [`CHANGE_PORT`] flags) is not zero, and a FINGERPRINT.
pub fn binding_request(transaction: [u8; 12], change: u8) -> Vec<u8> {
    let mut m = Message::new();
    m.typ = BINDING_REQUEST;
    m.transaction_id = TransactionId(transaction);
    m.write_header();
    if change != 0 {
        m.add(
            ATTR_CHANGE_REQUEST,
            &[0, 0, 0, change & (CHANGE_IP | CHANGE_PORT)],
        );
    }
    FINGERPRINT
        .add_to(&mut m)
        .expect("fingerprint of a built message");
    m.raw
}

/// What a binding success response says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BindingResponse {
    /// Where the server saw the request come from (XOR-MAPPED-ADDRESS, or MAPPED-ADDRESS
    /// from an RFC 3489 server).
    pub mapped: SocketAddr,
    /// The server's address the response was sent from (RESPONSE-ORIGIN), if given.
    pub origin: Option<SocketAddr>,
    /// The server's address differing in both IP and port (OTHER-ADDRESS, RFC 5780), if
    /// the server has one.
    pub other: Option<SocketAddr>,
}

fn read_mapped(m: &Message, attr: rtc_stun::attributes::AttrType) -> Option<SocketAddr> {
    if !m.contains(attr) {
        return None;
    }
    let mut a = MappedAddress::default();
    a.get_from_as(m, attr).ok()?;
    Some(SocketAddr::new(a.ip, a.port))
}

/// Reads a binding success response to `transaction`.
pub fn parse_binding_response(
    packet: &[u8],
    transaction: &[u8; 12],
) -> Result<BindingResponse, StunError> {
    let m = decode(packet)?;
    if &m.transaction_id.0 != transaction {
        return Err(StunError::Unexpected);
    }
    if m.typ == BINDING_ERROR {
        let mut e = ErrorCodeAttribute::default();
        return Err(match e.get_from(&m) {
            Ok(()) => StunError::Refused {
                code: e.code.0,
                reason: String::from_utf8_lossy(&e.reason)
                    .chars()
                    .take(128)
                    .collect(),
            },
            Err(_) => StunError::Refused {
                code: 0,
                reason: "error response without ERROR-CODE".into(),
            },
        });
    }
    if m.typ != BINDING_SUCCESS {
        return Err(StunError::Unexpected);
    }
    let mapped = if m.contains(ATTR_XORMAPPED_ADDRESS) {
        let mut x = XorMappedAddress::default();
        x.get_from_as(&m, ATTR_XORMAPPED_ADDRESS)
            .map_err(|e| StunError::Malformed(format!("XOR-MAPPED-ADDRESS: {e}")))?;
        SocketAddr::new(x.ip, x.port)
    } else {
        read_mapped(&m, ATTR_MAPPED_ADDRESS).ok_or(StunError::NoMappedAddress)?
    };
    Ok(BindingResponse {
        mapped,
        origin: read_mapped(&m, ATTR_RESPONSE_ORIGIN),
        other: read_mapped(&m, ATTR_OTHER_ADDRESS),
    })
}

/// Retransmission schedule of one transaction: send at these offsets, give up at `total`.
#[derive(Debug, Clone)]
pub struct Retransmit {
    pub sends: Vec<Duration>,
    pub total: Duration,
}

impl Default for Retransmit {
    /// Sends at 0, 200 ms and 600 ms; gives up after 1.5 s. (RFC 5389's 39.5 s suits
    /// ICE checks over lossy paths; a discovery that waits for "no answer" in its
    /// filtering tests needs a short bound.)
    fn default() -> Self {
        Retransmit {
            sends: vec![
                Duration::ZERO,
                Duration::from_millis(200),
                Duration::from_millis(600),
            ],
            total: Duration::from_millis(1500),
        }
    }
}

/// One binding transaction from `socket` to `server`. Answers are accepted from any
/// source (a CHANGE-REQUEST answer comes from another address) but only with our
/// transaction id; anything else received meanwhile is ignored.
pub async fn binding(
    socket: &UdpSocket,
    server: SocketAddr,
    change: u8,
    schedule: &Retransmit,
) -> Result<(BindingResponse, SocketAddr), StunError> {
    let transaction = new_transaction();
    let request = binding_request(transaction, change);
    let start = Instant::now();
    let mut next = 0usize;
    let mut buf = vec![0u8; MAX_PACKET + 1];
    loop {
        let elapsed = start.elapsed();
        if elapsed >= schedule.total {
            return Err(StunError::Timeout(schedule.total));
        }
        if next < schedule.sends.len() && schedule.sends[next] <= elapsed {
            socket
                .send_to(&request, server)
                .await
                .map_err(|e| StunError::Io(e.to_string()))?;
            next += 1;
            continue;
        }
        let until = schedule
            .sends
            .get(next)
            .copied()
            .unwrap_or(schedule.total)
            .min(schedule.total);
        match tokio::time::timeout(until - elapsed, socket.recv_from(&mut buf)).await {
            Err(_) => continue,
            // ICMP errors surface on some systems as a failed receive: keep waiting.
            Ok(Err(_)) => continue,
            Ok(Ok((n, from))) => {
                if n > MAX_PACKET {
                    continue;
                }
                match parse_binding_response(&buf[..n], &transaction) {
                    Ok(r) => return Ok((r, from)),
                    Err(e @ StunError::Refused { .. }) => return Err(e),
                    Err(_) => {}
                }
            }
        }
    }
}

/// True for an address a STUN server should never answer to (or a client trust as mapped).
pub fn is_bogus_source(addr: &SocketAddr) -> bool {
    addr.port() == 0
        || addr.ip().is_unspecified()
        || addr.ip().is_multicast()
        || matches!(addr.ip(), IpAddr::V4(v4) if v4.is_broadcast())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::Rng;

    fn response(transaction: [u8; 12], mapped: SocketAddr, other: Option<SocketAddr>) -> Vec<u8> {
        let mut m = Message::new();
        m.typ = BINDING_SUCCESS;
        m.transaction_id = TransactionId(transaction);
        m.write_header();
        XorMappedAddress {
            ip: mapped.ip(),
            port: mapped.port(),
        }
        .add_to(&mut m)
        .unwrap();
        if let Some(o) = other {
            MappedAddress {
                ip: o.ip(),
                port: o.port(),
            }
            .add_to_as(&mut m, ATTR_OTHER_ADDRESS)
            .unwrap();
        }
        FINGERPRINT.add_to(&mut m).unwrap();
        m.raw
    }

    #[test]
    fn request_round_trip() {
        let t = new_transaction();
        let r = binding_request(t, CHANGE_IP | CHANGE_PORT);
        check_framing(&r).unwrap();
        let m = decode(&r).unwrap();
        assert_eq!(m.typ, BINDING_REQUEST);
        assert_eq!(m.get(ATTR_CHANGE_REQUEST).unwrap(), vec![0, 0, 0, 6]);
        assert_eq!(binding_request(t, 0).len(), 28, "header + fingerprint");
    }

    #[test]
    fn response_parsing() {
        let t = new_transaction();
        let mapped: SocketAddr = "203.0.113.7:4242".parse().unwrap();
        let other: SocketAddr = "203.0.113.8:3479".parse().unwrap();
        let r = response(t, mapped, Some(other));
        let got = parse_binding_response(&r, &t).unwrap();
        assert_eq!(got.mapped, mapped);
        assert_eq!(got.other, Some(other));
        assert_eq!(got.origin, None);
        // Another transaction's answer is not ours.
        assert_eq!(
            parse_binding_response(&r, &[0; 12]),
            Err(StunError::Unexpected)
        );
        // A flipped bit breaks the fingerprint.
        let mut bad = r.clone();
        bad[25] ^= 1;
        assert!(matches!(
            parse_binding_response(&bad, &t),
            Err(StunError::Malformed(_))
        ));
    }

    #[test]
    fn framing_refusals() {
        let r = binding_request(new_transaction(), 0);
        assert!(matches!(
            check_framing(&[0u8; 10]),
            Err(StunError::NotStun(_))
        ));
        let mut cookie = r.clone();
        cookie[4] ^= 0xff;
        assert!(matches!(check_framing(&cookie), Err(StunError::NotStun(_))));
        let mut top = r.clone();
        top[0] |= 0x80;
        assert!(matches!(check_framing(&top), Err(StunError::NotStun(_))));
        let mut short = r.clone();
        short.truncate(r.len() - 4);
        assert!(matches!(
            check_framing(&short),
            Err(StunError::Malformed(_))
        ));
        let mut big = r.clone();
        big.resize(MAX_PACKET + 1, 0);
        assert!(matches!(check_framing(&big), Err(StunError::Oversized(_))));
        // An attribute whose length runs past the message.
        let mut trunc = binding_request(new_transaction(), CHANGE_IP);
        trunc[22] = 0;
        trunc[23] = 200;
        assert!(matches!(decode(&trunc), Err(StunError::Malformed(_))));
    }

    #[test]
    fn random_bytes_never_panic() {
        let mut rng = rand::thread_rng();
        let base = binding_request(new_transaction(), CHANGE_PORT);
        for i in 0..20_000 {
            let mut p = if i % 2 == 0 {
                let n = rng.gen_range(0..64);
                (0..n).map(|_| rng.r#gen()).collect::<Vec<u8>>()
            } else {
                base.clone()
            };
            // Keep a valid header sometimes so the attribute decoder is reached.
            if i % 2 == 1 {
                for _ in 0..rng.gen_range(1..4) {
                    let at = rng.gen_range(MESSAGE_HEADER_SIZE..p.len());
                    p[at] = rng.r#gen();
                }
            }
            let _ = decode(&p);
            let _ = parse_binding_response(&p, &[0; 12]);
        }
    }

    #[test]
    fn bogus_sources() {
        for a in [
            "0.0.0.0:1",
            "127.0.0.1:0",
            "255.255.255.255:9",
            "224.0.0.1:9",
        ] {
            assert!(is_bogus_source(&a.parse().unwrap()), "{a}");
        }
        assert!(!is_bogus_source(&"203.0.113.1:9".parse().unwrap()));
    }
}
