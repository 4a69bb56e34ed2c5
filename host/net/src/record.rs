//! The signed address record: where a peer says it can be dialled, I/O-free.
//!
//! The same bytes travel in a BEP 44 mutable item on the DHT and in a LAN announcement, so
//! the record carries its own signature (domain-separated from every other thing the
//! identity key signs) instead of relying on the carrier's. A reader learns only that the
//! key holder *said* these addresses at that time; the TLS handshake still pins the key, so
//! a wrong address wastes a dial but can never reach an impostor.
//!
//! Wire form (big-endian), at most [`MAX_RECORD_LEN`] bytes, which fits BEP 44's 1000-byte
//! value limit with room to spare:
//!
//! ```text
//! "APAR" | version 1 | public key (32) | issued_at unix ms (u64) | count (u8, <= 16)
//!   | count x [kind (u8) | transport (u8) | family 4/6 (u8) | ip (4/16) | port (u16)]
//!   | Ed25519 signature (64) over SIGNING_DOMAIN | everything before it
//! ```

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use allpeers_model::PeerId;

use crate::identity::Identity;
use crate::transport::{Address, TransportKind};

const MAGIC: &[u8; 4] = b"APAR";
const VERSION: u8 = 1;
/// Prefixed to the signed bytes so a record signature can never be replayed as (or made
/// from) a signature over anything else the identity key signs.
const SIGNING_DOMAIN: &[u8] = b"allpeers/address-record/1\0";
/// Addresses per record: a host rarely has more than a few interfaces times two transports
/// plus the mapped ones; the bound keeps the record well under BEP 44's 1000 bytes.
pub const MAX_ADDRESSES: usize = 16;
const HEADER_LEN: usize = 4 + 1 + 32 + 8 + 1;
const MAX_ENTRY_LEN: usize = 3 + 16 + 2;
const SIGNATURE_LEN: usize = 64;
/// The longest valid record (16 IPv6 entries): 439 bytes.
pub const MAX_RECORD_LEN: usize = HEADER_LEN + MAX_ADDRESSES * MAX_ENTRY_LEN + SIGNATURE_LEN;
// BEP 44 values are at most 1000 bytes: checked when compiling.
const _: () = assert!(MAX_RECORD_LEN <= 1000);
/// Older records are refused: DHT nodes drop items after about two hours and we republish
/// far more often, so a record this old describes a network the peer has probably left.
pub const MAX_AGE_MS: u64 = 12 * 60 * 60 * 1000;
/// Clock skew tolerated for records dated in the future.
pub const MAX_SKEW_MS: u64 = 10 * 60 * 1000;

/// Where an address in a record comes from, so a reader can order its dials.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AddressKind {
    /// A listening address on one of the peer's interfaces (reachable on its LAN).
    Local,
    /// The peer's QUIC socket as its hub saw it (the public side of its NAT).
    Observed,
    /// The UDP mapping a STUN server reported.
    Mapped,
}

impl AddressKind {
    fn code(self) -> u8 {
        match self {
            AddressKind::Local => 0,
            AddressKind::Observed => 1,
            AddressKind::Mapped => 2,
        }
    }

    fn from_code(code: u8) -> Result<Self, RecordError> {
        match code {
            0 => Ok(AddressKind::Local),
            1 => Ok(AddressKind::Observed),
            2 => Ok(AddressKind::Mapped),
            other => Err(RecordError::UnknownKind(other)),
        }
    }
}

/// One dialable address and where it comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct RecordAddress {
    pub kind: AddressKind,
    pub address: Address,
}

/// A peer's addresses at a moment, as decoded and verified (or about to be signed).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AddressRecord {
    pub peer: PeerId,
    /// When the record was made (unix ms); also its BEP 44 sequence number, so a newer
    /// record always replaces an older one.
    pub issued_at_ms: u64,
    pub addresses: Vec<RecordAddress>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error("record is {0} bytes, more than the {MAX_RECORD_LEN} a record may have")]
    Oversized(usize),
    #[error("record is truncated")]
    Truncated,
    #[error("not an address record (bad magic)")]
    BadMagic,
    #[error("address record version {0} is not supported")]
    UnsupportedVersion(u8),
    #[error("record lists {0} addresses, more than {MAX_ADDRESSES}")]
    TooManyAddresses(usize),
    #[error("unknown address kind {0}")]
    UnknownKind(u8),
    #[error("unknown transport {0}")]
    UnknownTransport(u8),
    #[error("unknown address family {0}")]
    UnknownFamily(u8),
    #[error("{0} trailing bytes after the record")]
    TrailingBytes(usize),
    #[error("the record's signature does not verify with {0}'s key")]
    BadSignature(PeerId),
    #[error("record is signed by {signer}, not by the key it was looked up for ({expected})")]
    WrongSigner { expected: PeerId, signer: PeerId },
    #[error("record is {age_s} s old: stale (at most {} s)", MAX_AGE_MS / 1000)]
    Stale { age_s: u64 },
    #[error("record is dated {ahead_s} s in the future")]
    FromTheFuture { ahead_s: u64 },
}

impl AddressRecord {
    /// A record for `peer` issued at `issued_at_ms`, keeping at most [`MAX_ADDRESSES`]
    /// addresses without duplicates ([`bounded_addresses`]).
    pub fn new(peer: PeerId, issued_at_ms: u64, addresses: &[RecordAddress]) -> Self {
        AddressRecord {
            peer,
            issued_at_ms,
            addresses: bounded_addresses(addresses),
        }
    }

    /// The signed wire form. The identity must be the record's peer.
    pub fn sign(&self, identity: &Identity) -> Result<Vec<u8>, RecordError> {
        if identity.peer_id() != self.peer {
            return Err(RecordError::WrongSigner {
                expected: self.peer,
                signer: identity.peer_id(),
            });
        }
        if self.addresses.len() > MAX_ADDRESSES {
            return Err(RecordError::TooManyAddresses(self.addresses.len()));
        }
        let mut out = Vec::with_capacity(MAX_RECORD_LEN);
        out.extend_from_slice(MAGIC);
        out.push(VERSION);
        out.extend_from_slice(self.peer.public_key());
        out.extend_from_slice(&self.issued_at_ms.to_be_bytes());
        out.push(self.addresses.len() as u8);
        for a in &self.addresses {
            out.push(a.kind.code());
            out.push(match a.address.transport {
                TransportKind::Quic => 0,
                TransportKind::Tcp => 1,
            });
            match a.address.addr.ip() {
                IpAddr::V4(ip) => {
                    out.push(4);
                    out.extend_from_slice(&ip.octets());
                }
                IpAddr::V6(ip) => {
                    out.push(6);
                    out.extend_from_slice(&ip.octets());
                }
            }
            out.extend_from_slice(&a.address.addr.port().to_be_bytes());
        }
        let signature = identity.sign(&signed_bytes(&out));
        out.extend_from_slice(&signature);
        Ok(out)
    }

    /// Decodes a record and checks its signature against the key it names. Sizes are
    /// checked before anything is allocated. Freshness is a separate step
    /// ([`Self::check_fresh`]) because it needs the clock.
    pub fn decode(bytes: &[u8]) -> Result<AddressRecord, RecordError> {
        if bytes.len() > MAX_RECORD_LEN {
            return Err(RecordError::Oversized(bytes.len()));
        }
        let mut reader = Reader { bytes, at: 0 };
        if reader.take(4)? != MAGIC {
            return Err(RecordError::BadMagic);
        }
        let version = reader.u8()?;
        if version != VERSION {
            return Err(RecordError::UnsupportedVersion(version));
        }
        let key: [u8; 32] = reader.take(32)?.try_into().expect("32 bytes");
        let peer = PeerId::from_public_key(key);
        let issued_at_ms = u64::from_be_bytes(reader.take(8)?.try_into().expect("8 bytes"));
        let count = reader.u8()? as usize;
        if count > MAX_ADDRESSES {
            return Err(RecordError::TooManyAddresses(count));
        }
        let mut addresses = Vec::with_capacity(count);
        for _ in 0..count {
            let kind = AddressKind::from_code(reader.u8()?)?;
            let transport = match reader.u8()? {
                0 => TransportKind::Quic,
                1 => TransportKind::Tcp,
                other => return Err(RecordError::UnknownTransport(other)),
            };
            let ip = match reader.u8()? {
                4 => IpAddr::V4(Ipv4Addr::from(
                    <[u8; 4]>::try_from(reader.take(4)?).expect("4 bytes"),
                )),
                6 => IpAddr::V6(Ipv6Addr::from(
                    <[u8; 16]>::try_from(reader.take(16)?).expect("16 bytes"),
                )),
                other => return Err(RecordError::UnknownFamily(other)),
            };
            let port = u16::from_be_bytes(reader.take(2)?.try_into().expect("2 bytes"));
            addresses.push(RecordAddress {
                kind,
                address: Address {
                    transport,
                    addr: SocketAddr::new(ip, port),
                },
            });
        }
        let body_len = reader.at;
        let signature: [u8; 64] = reader.take(SIGNATURE_LEN)?.try_into().expect("64 bytes");
        if reader.at != bytes.len() {
            return Err(RecordError::TrailingBytes(bytes.len() - reader.at));
        }
        if !Identity::verify(&peer, &signed_bytes(&bytes[..body_len]), &signature) {
            return Err(RecordError::BadSignature(peer));
        }
        Ok(AddressRecord {
            peer,
            issued_at_ms,
            addresses,
        })
    }

    /// Decodes and checks that the record is `expected`'s and fresh at `now_ms`: what a
    /// reader that looked a peer up must call.
    pub fn decode_for(
        bytes: &[u8],
        expected: &PeerId,
        now_ms: u64,
    ) -> Result<AddressRecord, RecordError> {
        let record = Self::decode(bytes)?;
        if record.peer != *expected {
            return Err(RecordError::WrongSigner {
                expected: *expected,
                signer: record.peer,
            });
        }
        record.check_fresh(now_ms)?;
        Ok(record)
    }

    /// Refuses records older than [`MAX_AGE_MS`] or dated past [`MAX_SKEW_MS`] ahead.
    pub fn check_fresh(&self, now_ms: u64) -> Result<(), RecordError> {
        if self.issued_at_ms > now_ms.saturating_add(MAX_SKEW_MS) {
            return Err(RecordError::FromTheFuture {
                ahead_s: (self.issued_at_ms - now_ms) / 1000,
            });
        }
        let age = now_ms.saturating_sub(self.issued_at_ms);
        if age > MAX_AGE_MS {
            return Err(RecordError::Stale { age_s: age / 1000 });
        }
        Ok(())
    }

    /// The plain addresses, in record order.
    pub fn dialable(&self) -> Vec<Address> {
        self.addresses.iter().map(|a| a.address).collect()
    }
}

/// The addresses a record keeps of `addresses`: the first [`MAX_ADDRESSES`] distinct ones
/// (callers put the most useful first).
pub fn bounded_addresses(addresses: &[RecordAddress]) -> Vec<RecordAddress> {
    let mut kept: Vec<RecordAddress> = Vec::new();
    for a in addresses {
        if kept.len() == MAX_ADDRESSES {
            break;
        }
        if !kept.iter().any(|k| k.address == a.address) {
            kept.push(*a);
        }
    }
    kept
}

fn signed_bytes(body: &[u8]) -> Vec<u8> {
    let mut signed = Vec::with_capacity(SIGNING_DOMAIN.len() + body.len());
    signed.extend_from_slice(SIGNING_DOMAIN);
    signed.extend_from_slice(body);
    signed
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], RecordError> {
        let end = self.at.checked_add(n).ok_or(RecordError::Truncated)?;
        let slice = self.bytes.get(self.at..end).ok_or(RecordError::Truncated)?;
        self.at = end;
        Ok(slice)
    }

    fn u8(&mut self) -> Result<u8, RecordError> {
        Ok(self.take(1)?[0])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_800_000_000_000;

    fn addresses(n: usize) -> Vec<RecordAddress> {
        (0..n)
            .map(|i| RecordAddress {
                kind: if i % 2 == 0 {
                    AddressKind::Local
                } else {
                    AddressKind::Mapped
                },
                address: if i % 3 == 0 {
                    Address::quic(SocketAddr::from(([198, 18, 0, i as u8], 4433)))
                } else {
                    Address::tcp(SocketAddr::new(
                        IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, i as u16)),
                        443,
                    ))
                },
            })
            .collect()
    }

    #[test]
    fn round_trips_and_checks_the_signer() {
        let me = Identity::generate();
        let record = AddressRecord::new(me.peer_id(), NOW, &addresses(5));
        let bytes = record.sign(&me).unwrap();
        assert_eq!(AddressRecord::decode(&bytes).unwrap(), record);
        assert_eq!(
            AddressRecord::decode_for(&bytes, &me.peer_id(), NOW + 1000).unwrap(),
            record
        );
        let other = Identity::generate();
        assert_eq!(
            AddressRecord::decode_for(&bytes, &other.peer_id(), NOW),
            Err(RecordError::WrongSigner {
                expected: other.peer_id(),
                signer: me.peer_id()
            })
        );
    }

    #[test]
    fn a_record_signed_by_another_key_is_refused() {
        let victim = Identity::generate();
        let attacker = Identity::generate();
        let record = AddressRecord::new(victim.peer_id(), NOW, &addresses(2));
        // The signing API refuses outright…
        assert!(matches!(
            record.sign(&attacker),
            Err(RecordError::WrongSigner { .. })
        ));
        // …and a hand-made one (the victim's key, the attacker's signature) fails to verify.
        let mut forged = AddressRecord::new(attacker.peer_id(), NOW, &addresses(2))
            .sign(&attacker)
            .unwrap();
        forged[5..37].copy_from_slice(victim.peer_id().public_key());
        assert_eq!(
            AddressRecord::decode(&forged),
            Err(RecordError::BadSignature(victim.peer_id()))
        );
    }

    #[test]
    fn every_tampered_byte_is_caught() {
        let me = Identity::generate();
        let bytes = AddressRecord::new(me.peer_id(), NOW, &addresses(3))
            .sign(&me)
            .unwrap();
        for i in 0..bytes.len() {
            let mut tampered = bytes.clone();
            tampered[i] ^= 0x01;
            assert!(
                AddressRecord::decode_for(&tampered, &me.peer_id(), NOW).is_err(),
                "flipping byte {i} went unnoticed"
            );
        }
    }

    #[test]
    fn sizes_are_bounded() {
        let me = Identity::generate();
        // More than the limit given: the record keeps the first MAX_ADDRESSES.
        let full = AddressRecord::new(me.peer_id(), NOW, &addresses(40));
        assert_eq!(full.addresses.len(), MAX_ADDRESSES);
        let all_v6: Vec<RecordAddress> = (0..MAX_ADDRESSES)
            .map(|i| RecordAddress {
                kind: AddressKind::Observed,
                address: Address::quic(SocketAddr::new(
                    IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, i as u16)),
                    1,
                )),
            })
            .collect();
        let longest = AddressRecord::new(me.peer_id(), NOW, &all_v6)
            .sign(&me)
            .unwrap();
        assert_eq!(longest.len(), MAX_RECORD_LEN);
        let mut oversized = longest.clone();
        oversized.push(0);
        assert_eq!(
            AddressRecord::decode(&oversized),
            Err(RecordError::Oversized(MAX_RECORD_LEN + 1))
        );
        // A count above the limit is refused before any entry is read.
        let mut many = AddressRecord::new(me.peer_id(), NOW, &[])
            .sign(&me)
            .unwrap();
        many[HEADER_LEN - 1] = 200;
        assert_eq!(
            AddressRecord::decode(&many),
            Err(RecordError::TooManyAddresses(200))
        );
        // Every truncation fails cleanly.
        for len in 0..longest.len() {
            assert!(AddressRecord::decode(&longest[..len]).is_err());
        }
        // Duplicates are dropped.
        let dup = addresses(1);
        let record = AddressRecord::new(me.peer_id(), NOW, &[dup[0], dup[0]]);
        assert_eq!(record.addresses.len(), 1);
    }

    #[test]
    fn stale_and_future_records_are_refused() {
        let me = Identity::generate();
        let bytes = AddressRecord::new(me.peer_id(), NOW, &addresses(1))
            .sign(&me)
            .unwrap();
        assert!(AddressRecord::decode_for(&bytes, &me.peer_id(), NOW + MAX_AGE_MS).is_ok());
        assert_eq!(
            AddressRecord::decode_for(&bytes, &me.peer_id(), NOW + MAX_AGE_MS + 1000),
            Err(RecordError::Stale {
                age_s: MAX_AGE_MS / 1000 + 1
            })
        );
        assert!(
            AddressRecord::decode_for(&bytes, &me.peer_id(), NOW - MAX_SKEW_MS).is_ok(),
            "small skew is tolerated"
        );
        assert!(matches!(
            AddressRecord::decode_for(&bytes, &me.peer_id(), NOW - MAX_SKEW_MS - 1000),
            Err(RecordError::FromTheFuture { .. })
        ));
    }

    #[test]
    fn garbage_is_refused_with_a_reason() {
        assert_eq!(AddressRecord::decode(b""), Err(RecordError::Truncated));
        assert_eq!(
            AddressRecord::decode(b"XXXX\x01"),
            Err(RecordError::BadMagic)
        );
        assert_eq!(
            AddressRecord::decode(b"APAR\x09"),
            Err(RecordError::UnsupportedVersion(9))
        );
    }
}
