//! The I/O-free core of a STUN server (RFC 5389 binding, RFC 5780 behaviour discovery):
//! one packet in, what to send and from which socket out. The hub's `StunServer` owns the
//! sockets and rate limits and calls [`answer`]; it lives here, beside the codec, so the
//! fuzz target can drive it.
//!
//! Socket layout: one socket (RFC 5389 only), or four in the order IP1:P1, IP1:P2, IP2:P1,
//! IP2:P2 (index bit 2: the alternate IP, bit 1: the alternate port). Every answer goes to
//! the packet's source; CHANGE-REQUEST only picks which of our sockets sends it.

use std::net::SocketAddr;

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

use super::stun::{self as stun_codec, CHANGE_IP, CHANGE_PORT};

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

/// Fuzz entry: `data` as a packet received on each socket of a four-socket layout; checks
/// the answer's bounds.
#[cfg(any(test, fuzzing))]
pub fn fuzz_answer(data: &[u8]) {
    let sockets: Vec<SocketAddr> = [
        "203.0.113.10:3478",
        "203.0.113.10:3479",
        "203.0.113.11:3478",
        "203.0.113.11:3479",
    ]
    .iter()
    .map(|s| s.parse().expect("valid"))
    .collect();
    let source: SocketAddr = "198.51.100.7:40000".parse().expect("valid");
    for on in 0..4 {
        for layout in [&sockets[..], &sockets[..1]] {
            if on >= layout.len() {
                continue;
            }
            if let Verdict::Answer { via, packet } = answer(data, source, on, layout) {
                assert!(via < layout.len());
                assert!(packet.len() <= data.len() + MAX_GROWTH);
                assert!(stun_codec::decode(&packet).is_ok(), "our answer decodes");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connectivity::stun::{
        MAX_PACKET, binding_request, decode, new_transaction, parse_binding_response,
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

    #[test]
    fn ipv6_answers_stay_within_the_growth_bound() {
        let s: Vec<SocketAddr> = [
            "[2001:db8::10]:3478",
            "[2001:db8::10]:3479",
            "[2001:db8::11]:3478",
            "[2001:db8::11]:3479",
        ]
        .iter()
        .map(|a| a.parse().unwrap())
        .collect();
        let client: SocketAddr = "[2001:db8::7]:40000".parse().unwrap();
        let t = new_transaction();
        let mut bare = binding_request(t, 0);
        bare.truncate(20);
        bare[2..4].copy_from_slice(&0u16.to_be_bytes());
        let Verdict::Answer { via, packet } = answer(&bare, client, 0, &s) else {
            panic!()
        };
        assert_eq!(via, 0);
        assert!(packet.len() <= bare.len() + MAX_GROWTH, "{}", packet.len());
        let r = parse_binding_response(&packet, &t).unwrap();
        assert_eq!(
            (r.mapped, r.origin, r.other),
            (client, Some(s[0]), Some(s[3]))
        );
    }

    #[test]
    fn fuzz_entry_on_random_and_mutated_packets() {
        use rand::Rng;
        let mut rng = rand::thread_rng();
        let seeds = [
            binding_request(new_transaction(), 0),
            binding_request(new_transaction(), CHANGE_IP | CHANGE_PORT),
        ];
        for i in 0..5_000 {
            let mut p = seeds[i % 2].clone();
            for _ in 0..rng.gen_range(0..4) {
                let at = rng.gen_range(0..p.len());
                p[at] = rng.r#gen();
            }
            if i % 7 == 0 {
                p.truncate(rng.gen_range(0..p.len()));
            }
            fuzz_answer(&p);
        }
        fuzz_answer(&seeds[0]);
    }
}
