//! The endpoint's address book: where each peer was last heard of, bounded and ageing.
//!
//! Addresses come from hub lookups, signed records (DHT, LAN), invitations and incoming
//! connections, so a long-running node would otherwise collect every address every peer ever
//! had. Three bounds keep it small and fresh: addresses per peer, peers in all, and an age
//! after which an address is forgotten unless heard again. I/O-free: the caller passes `now`.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use allpeers_model::PeerId;

use crate::transport::{Address, TransportKind};

/// Addresses kept per peer: a host's interfaces, its public mapping, a relay and a few
/// stale ones from a network change; more only lengthens a dial that already failed.
pub const MAX_ADDRESSES_PER_PEER: usize = 8;
/// Peers kept: contacts plus those met through shares and swarms; the least recently
/// used one is forgotten first (it is found again through the hub or discovery).
pub const MAX_PEERS: usize = 4096;
/// An address not heard of for a day is forgotten: home networks renumber overnight, and
/// a dial to a dead address costs a timeout.
pub const ADDRESS_TTL: Duration = Duration::from_secs(24 * 3600);

/// Bounds of an [`AddressBook`]; the defaults are the constants above.
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    pub per_peer: usize,
    pub peers: usize,
    pub ttl: Duration,
}

impl Default for Bounds {
    fn default() -> Self {
        Bounds {
            per_peer: MAX_ADDRESSES_PER_PEER,
            peers: MAX_PEERS,
            ttl: ADDRESS_TTL,
        }
    }
}

#[derive(Debug)]
struct Entry {
    /// In the order first heard, each with when it was last heard.
    addresses: Vec<(Address, Instant)>,
    used: Instant,
}

#[derive(Debug, Default)]
pub struct AddressBook {
    bounds: Bounds,
    peers: HashMap<PeerId, Entry>,
}

impl AddressBook {
    pub fn new(bounds: Bounds) -> Self {
        AddressBook {
            bounds,
            peers: HashMap::new(),
        }
    }

    /// Remembers `address` for `peer` (heard again: its age starts over). When the peer's
    /// list is full the address heard of longest ago makes room; when the book is full the
    /// least recently used peer does.
    pub fn add(&mut self, peer: PeerId, address: Address, now: Instant) {
        if !self.peers.contains_key(&peer) && self.peers.len() >= self.bounds.peers {
            if let Some(oldest) = self
                .peers
                .iter()
                .min_by_key(|(_, e)| e.used)
                .map(|(p, _)| *p)
            {
                self.peers.remove(&oldest);
            }
        }
        let entry = self.peers.entry(peer).or_insert_with(|| Entry {
            addresses: Vec::new(),
            used: now,
        });
        entry.used = now;
        if let Some(known) = entry.addresses.iter_mut().find(|(a, _)| *a == address) {
            known.1 = now;
            return;
        }
        if entry.addresses.len() >= self.bounds.per_peer {
            if let Some(stalest) = (0..entry.addresses.len()).min_by_key(|i| entry.addresses[*i].1)
            {
                entry.addresses.remove(stalest);
            }
        }
        entry.addresses.push((address, now));
    }

    /// The peer's live addresses, QUIC before TCP, otherwise in the order first heard.
    /// Expired ones are dropped on the way.
    pub fn get(&mut self, peer: &PeerId, now: Instant) -> Vec<Address> {
        let Some(entry) = self.peers.get_mut(peer) else {
            return Vec::new();
        };
        let ttl = self.bounds.ttl;
        entry
            .addresses
            .retain(|(_, heard)| now.saturating_duration_since(*heard) < ttl);
        if entry.addresses.is_empty() {
            self.peers.remove(peer);
            return Vec::new();
        }
        entry.used = now;
        let mut out: Vec<Address> = entry.addresses.iter().map(|(a, _)| *a).collect();
        out.sort_by_key(|a| a.transport == TransportKind::Tcp);
        out
    }

    pub fn peer_count(&self) -> usize {
        self.peers.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(n: u8) -> PeerId {
        PeerId::from_public_key([n; 32])
    }

    fn quic(port: u16) -> Address {
        Address::quic(([127, 0, 0, 1], port).into())
    }

    fn tcp(port: u16) -> Address {
        Address::tcp(([127, 0, 0, 1], port).into())
    }

    fn small() -> AddressBook {
        AddressBook::new(Bounds {
            per_peer: 3,
            peers: 2,
            ttl: Duration::from_secs(60),
        })
    }

    #[test]
    fn quic_comes_first_then_the_order_heard_and_duplicates_are_one() {
        let mut book = small();
        let t = Instant::now();
        book.add(peer(1), tcp(1), t);
        book.add(peer(1), quic(2), t);
        book.add(peer(1), quic(3), t);
        book.add(peer(1), quic(2), t);
        assert_eq!(book.get(&peer(1), t), [quic(2), quic(3), tcp(1)]);
        assert!(book.get(&peer(9), t).is_empty());
    }

    #[test]
    fn a_full_list_forgets_the_address_heard_of_longest_ago() {
        let mut book = small();
        let t = Instant::now();
        book.add(peer(1), quic(1), t);
        book.add(peer(1), quic(2), t + Duration::from_secs(1));
        book.add(peer(1), quic(3), t + Duration::from_secs(2));
        // Heard again: 1 is now the freshest, 2 the stalest.
        book.add(peer(1), quic(1), t + Duration::from_secs(3));
        book.add(peer(1), quic(4), t + Duration::from_secs(4));
        assert_eq!(
            book.get(&peer(1), t + Duration::from_secs(4)),
            [quic(1), quic(3), quic(4)]
        );
    }

    #[test]
    fn a_full_book_forgets_the_least_recently_used_peer() {
        let mut book = small();
        let t = Instant::now();
        book.add(peer(1), quic(1), t);
        book.add(peer(2), quic(2), t + Duration::from_secs(1));
        // Dialling peer 1 uses it: peer 2 is now the least recently used.
        assert_eq!(book.get(&peer(1), t + Duration::from_secs(2)), [quic(1)]);
        book.add(peer(3), quic(3), t + Duration::from_secs(3));
        assert_eq!(book.peer_count(), 2);
        assert!(book.get(&peer(2), t + Duration::from_secs(3)).is_empty());
        assert_eq!(book.get(&peer(1), t + Duration::from_secs(3)), [quic(1)]);
    }

    #[test]
    fn addresses_not_heard_of_within_the_ttl_are_forgotten() {
        let mut book = small();
        let t = Instant::now();
        book.add(peer(1), quic(1), t);
        book.add(peer(1), quic(2), t + Duration::from_secs(30));
        assert_eq!(book.get(&peer(1), t + Duration::from_secs(70)), [quic(2)]);
        assert!(book.get(&peer(1), t + Duration::from_secs(100)).is_empty());
        assert_eq!(book.peer_count(), 0, "an empty entry is dropped");
    }
}
