//! Connection signals: what two peers tell each other through the hub to set up a callback
//! or a hole punch. Signed end to end by the sender (the hub only passes them on, stamped with
//! the sender's authenticated PeerId), addressed to one receiver, timestamped and carrying a
//! random session id, so a signal cannot be forged, re-addressed or replayed. I/O-free.

use allpeers_model::PeerId;
use serde::{Deserialize, Serialize};

use super::plan::Facts;
use allpeers_net::identity::Identity;
use allpeers_net::transport::Address;

const SIGN_TAG: &[u8] = b"allpeers-connect-signal-v1\0";
/// Most candidate addresses one signal may carry.
pub const MAX_CANDIDATES: usize = 8;
/// How far a signal's time may be from ours (clock skew plus transit).
pub const MAX_SKEW_MS: u64 = 120_000;

/// What a signal asks or answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Signal {
    /// "Let us connect": the requester's addresses and NAT facts.
    Connect {
        session: [u8; 16],
        candidates: Vec<Address>,
        facts: Facts,
        /// The local port we would TCP-punch from (see [`super::punch::tcp_simultaneous_open`]).
        tcp_port: Option<u16>,
    },
    /// The target agrees, with its own addresses and facts (it has started its part).
    Accept {
        session: [u8; 16],
        candidates: Vec<Address>,
        facts: Facts,
        tcp_port: Option<u16>,
    },
    /// The target will not take part (policy, busy).
    Refuse { session: [u8; 16], reason: String },
}

impl Signal {
    pub fn session(&self) -> [u8; 16] {
        match self {
            Signal::Connect { session, .. }
            | Signal::Accept { session, .. }
            | Signal::Refuse { session, .. } => *session,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Envelope {
    from: PeerId,
    to: PeerId,
    time_ms: u64,
    signal: Signal,
}

#[derive(Debug, Serialize, Deserialize)]
struct Signed {
    envelope: Vec<u8>,
    signature: Vec<u8>,
}

/// Why a signal was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignalError {
    #[error("the signal cannot be decoded: {0}")]
    Malformed(String),
    #[error("the signal is not signed by {0:?}, who the hub says sent it")]
    BadSignature(PeerId),
    #[error("the signal says it is from {claimed:?} but the hub got it from {sender:?}")]
    WrongSender { claimed: PeerId, sender: PeerId },
    #[error("the signal is addressed to {0:?}, not to us")]
    NotForUs(PeerId),
    #[error("the signal's time is {0} ms away from ours (stale or replayed)")]
    Stale(i64),
    #[error("the signal carries {0} candidate addresses (at most {MAX_CANDIDATES})")]
    TooManyCandidates(usize),
    #[error("the signal's candidate {0} is not an address a peer can have")]
    BadCandidate(String),
}

/// Signs `signal` from `identity` to `to`, as the bytes to pass through the hub.
pub fn seal(identity: &Identity, to: PeerId, time_ms: u64, signal: Signal) -> Vec<u8> {
    let envelope = postcard::to_allocvec(&Envelope {
        from: identity.peer_id(),
        to,
        time_ms,
        signal,
    })
    .expect("encodable");
    let mut msg = SIGN_TAG.to_vec();
    msg.extend_from_slice(&envelope);
    postcard::to_allocvec(&Signed {
        signature: identity.sign(&msg).to_vec(),
        envelope,
    })
    .expect("encodable")
}

/// Checks a signal the hub passed on from `sender` to `us`; returns what it says. The
/// hub bounds the size ([`allpeers_hub_client::proto::MAX_SIGNAL`]); postcard bounds every length by
/// the bytes present.
pub fn open(
    bytes: &[u8],
    sender: &PeerId,
    us: &PeerId,
    now_ms: u64,
) -> Result<Signal, SignalError> {
    let signed: Signed =
        postcard::from_bytes(bytes).map_err(|e| SignalError::Malformed(e.to_string()))?;
    let signature = <[u8; 64]>::try_from(signed.signature.as_slice())
        .map_err(|_| SignalError::BadSignature(*sender))?;
    let mut msg = SIGN_TAG.to_vec();
    msg.extend_from_slice(&signed.envelope);
    if !Identity::verify(sender, &msg, &signature) {
        return Err(SignalError::BadSignature(*sender));
    }
    check_envelope(&signed.envelope, sender, us, now_ms)
}

/// The checks after the signature: sender, receiver, time, candidates.
fn check_envelope(
    bytes: &[u8],
    sender: &PeerId,
    us: &PeerId,
    now_ms: u64,
) -> Result<Signal, SignalError> {
    let envelope: Envelope =
        postcard::from_bytes(bytes).map_err(|e| SignalError::Malformed(e.to_string()))?;
    if envelope.from != *sender {
        return Err(SignalError::WrongSender {
            claimed: envelope.from,
            sender: *sender,
        });
    }
    if envelope.to != *us {
        return Err(SignalError::NotForUs(envelope.to));
    }
    let skew = envelope.time_ms as i64 - now_ms as i64;
    if skew.unsigned_abs() > MAX_SKEW_MS {
        return Err(SignalError::Stale(skew));
    }
    if let Signal::Connect { candidates, .. } | Signal::Accept { candidates, .. } = &envelope.signal
    {
        if candidates.len() > MAX_CANDIDATES {
            return Err(SignalError::TooManyCandidates(candidates.len()));
        }
        if let Some(bad) = candidates.iter().find(|a| !plausible(a)) {
            return Err(SignalError::BadCandidate(bad.to_string()));
        }
    }
    Ok(envelope.signal)
}

/// Whether a peer could really listen at `a`: punch packets and dials go there, so an
/// address that would make us send to a broadcast, multicast or unspecified target is out.
pub fn plausible(a: &Address) -> bool {
    let ip = a.addr.ip();
    a.addr.port() != 0
        && !ip.is_unspecified()
        && !ip.is_multicast()
        && !matches!(ip, std::net::IpAddr::V4(v4) if v4.is_broadcast())
}

/// Fuzzing entry: neither the outer decoding and signature check nor the checks of the
/// signed content (reached directly, since fuzzed bytes never carry a valid signature) may
/// panic, whatever the bytes.
#[cfg(any(test, fuzzing))]
pub fn fuzz_open(data: &[u8]) {
    let sender = Identity::from_secret([7u8; 32]).peer_id();
    let _ = open(data, &sender, &sender, 0);
    let _ = check_envelope(data, &sender, &sender, 0);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connector::plan::Facts;

    fn connect() -> Signal {
        Signal::Connect {
            session: [1; 16],
            candidates: vec![Address::quic("203.0.113.5:4000".parse().unwrap())],
            facts: Facts::unknown(),
            tcp_port: None,
        }
    }

    #[test]
    fn a_sealed_signal_opens_only_for_its_receiver_from_its_sender() {
        let alice = Identity::generate();
        let bob = Identity::generate();
        let mallory = Identity::generate();
        let now = 1_000_000;
        let bytes = seal(&alice, bob.peer_id(), now, connect());
        assert_eq!(
            open(&bytes, &alice.peer_id(), &bob.peer_id(), now + 10),
            Ok(connect())
        );
        // Passed on by Mallory (the hub stamps her as the sender): not her signature.
        assert_eq!(
            open(&bytes, &mallory.peer_id(), &bob.peer_id(), now),
            Err(SignalError::BadSignature(mallory.peer_id()))
        );
        // Re-addressed to Mallory.
        assert_eq!(
            open(&bytes, &alice.peer_id(), &mallory.peer_id(), now),
            Err(SignalError::NotForUs(bob.peer_id()))
        );
        // Replayed later.
        assert!(matches!(
            open(
                &bytes,
                &alice.peer_id(),
                &bob.peer_id(),
                now + MAX_SKEW_MS + 1
            ),
            Err(SignalError::Stale(_))
        ));
        // Mallory signs a signal claiming to be Alice: the hub says it came from Mallory.
        let forged = seal(&mallory, bob.peer_id(), now, connect());
        assert!(matches!(
            open(&forged, &alice.peer_id(), &bob.peer_id(), now),
            Err(SignalError::BadSignature(_))
        ));
        // A flipped byte anywhere fails.
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0x40;
            assert!(
                open(&b, &alice.peer_id(), &bob.peer_id(), now).is_err(),
                "byte {i}"
            );
        }
    }

    #[test]
    fn candidates_that_would_aim_packets_elsewhere_are_refused() {
        let alice = Identity::generate();
        let bob = Identity::generate();
        for bad in [
            "0.0.0.0:4000",
            "255.255.255.255:4000",
            "239.1.2.3:4000",
            "203.0.113.5:0",
        ] {
            let s = Signal::Accept {
                session: [2; 16],
                candidates: vec![Address::quic(bad.parse().unwrap())],
                facts: Facts::unknown(),
                tcp_port: None,
            };
            let bytes = seal(&alice, bob.peer_id(), 5, s);
            assert!(
                matches!(
                    open(&bytes, &alice.peer_id(), &bob.peer_id(), 5),
                    Err(SignalError::BadCandidate(_))
                ),
                "{bad}"
            );
        }
        let many = Signal::Accept {
            session: [2; 16],
            candidates: (0..9)
                .map(|i| Address::quic(format!("203.0.113.{i}:4000").parse().unwrap()))
                .collect(),
            facts: Facts::unknown(),
            tcp_port: None,
        };
        let bytes = seal(&alice, bob.peer_id(), 5, many);
        assert_eq!(
            open(&bytes, &alice.peer_id(), &bob.peer_id(), 5),
            Err(SignalError::TooManyCandidates(9))
        );
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let p = Identity::generate().peer_id();
        for data in [&[][..], &[0xff; 3][..], &[0u8; 200][..]] {
            assert!(open(data, &p, &p, 0).is_err());
        }
    }
}
