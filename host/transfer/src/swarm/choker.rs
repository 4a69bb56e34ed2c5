//! Who may download from us: tit-for-tat. Every [`ROUND`] the interested peers that gave us the most over the
//! round (while we leech) or took the most from us (while we seed: the peers that can use our upload) keep a regular
//! slot; one more peer, chosen at random and rotated every [`OPTIMISTIC_ROUND`], is unchoked optimistically so a new
//! peer can prove itself. A state machine on the caller's clock: inputs with `now`, decisions out.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;

use super::PeerKey;

/// How often the regular slots are recomputed (BitTorrent's customary 10 s).
pub const ROUND: Duration = Duration::from_secs(10);
/// How often the optimistic slot moves to another peer.
pub const OPTIMISTIC_ROUND: Duration = Duration::from_secs(30);
/// Regular upload slots by default (BEP 3's four with the optimistic one).
pub const DEFAULT_SLOTS: usize = 3;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChokeDecision {
    Unchoke(PeerKey),
    Choke(PeerKey),
}

#[derive(Debug, Default)]
struct ChokerPeer {
    interested: bool,
    unchoked: bool,
    /// Bytes this peer gave us during the current round.
    received: u64,
    /// Bytes we gave this peer during the current round.
    sent: u64,
}

#[derive(Debug)]
pub struct Choker {
    peers: BTreeMap<PeerKey, ChokerPeer>,
    slots: usize,
    seeding: bool,
    optimistic: Option<PeerKey>,
    next_round: Instant,
    next_optimistic: Instant,
    rng: StdRng,
}

impl Choker {
    pub fn new(slots: usize, now: Instant, seed: u64) -> Self {
        Self {
            peers: BTreeMap::new(),
            slots,
            seeding: false,
            optimistic: None,
            next_round: now + ROUND,
            next_optimistic: now,
            rng: StdRng::seed_from_u64(seed),
        }
    }

    pub fn set_seeding(&mut self, seeding: bool) {
        self.seeding = seeding;
    }

    pub fn peer_connected(&mut self, peer: PeerKey) {
        self.peers.entry(peer).or_default();
    }

    pub fn peer_gone(&mut self, peer: PeerKey) {
        self.peers.remove(&peer);
        if self.optimistic == Some(peer) {
            self.optimistic = None;
        }
    }

    pub fn is_unchoked(&self, peer: PeerKey) -> bool {
        self.peers.get(&peer).is_some_and(|p| p.unchoked)
    }

    pub fn received_from(&mut self, peer: PeerKey, bytes: u64) {
        if let Some(p) = self.peers.get_mut(&peer) {
            p.received += bytes;
        }
    }

    pub fn sent_to(&mut self, peer: PeerKey, bytes: u64) {
        if let Some(p) = self.peers.get_mut(&peer) {
            p.sent += bytes;
        }
    }

    /// A peer said (not) interested. A newly interested peer gets a free slot at once rather than waiting up to a
    /// round; a peer no longer interested gives its slot up.
    pub fn interested(&mut self, peer: PeerKey, interested: bool) -> Vec<ChokeDecision> {
        let unchoked = self.peers.values().filter(|p| p.unchoked).count();
        let Some(state) = self.peers.get_mut(&peer) else {
            return Vec::new();
        };
        state.interested = interested;
        if interested && !state.unchoked && unchoked < self.slots + 1 {
            state.unchoked = true;
            return vec![ChokeDecision::Unchoke(peer)];
        }
        if !interested && state.unchoked {
            state.unchoked = false;
            if self.optimistic == Some(peer) {
                self.optimistic = None;
            }
            return vec![ChokeDecision::Choke(peer)];
        }
        Vec::new()
    }

    pub fn poll_timeout(&self) -> Instant {
        self.next_round.min(self.next_optimistic)
    }

    /// Runs the rounds that are due.
    pub fn handle_timeout(&mut self, now: Instant) -> Vec<ChokeDecision> {
        if now < self.poll_timeout() {
            return Vec::new();
        }
        if now >= self.next_optimistic {
            self.next_optimistic = now + OPTIMISTIC_ROUND;
            self.optimistic = None;
        }
        self.next_round = now + ROUND;
        let seeding = self.seeding;
        let mut ranked: Vec<(PeerKey, u64)> = self
            .peers
            .iter()
            .filter(|(_, p)| p.interested)
            .map(|(&k, p)| (k, if seeding { p.sent } else { p.received }))
            .collect();
        ranked.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        let mut unchoke: Vec<PeerKey> = ranked.iter().take(self.slots).map(|(k, _)| *k).collect();
        let rest: Vec<PeerKey> = ranked.iter().skip(self.slots).map(|(k, _)| *k).collect();
        let optimistic = match self.optimistic {
            Some(current) if rest.contains(&current) => Some(current),
            _ => rest.choose(&mut self.rng).copied(),
        };
        self.optimistic = optimistic;
        unchoke.extend(optimistic);

        let mut decisions = Vec::new();
        for (&key, peer) in self.peers.iter_mut() {
            let want = unchoke.contains(&key);
            if want != peer.unchoked {
                peer.unchoked = want;
                decisions.push(if want {
                    ChokeDecision::Unchoke(key)
                } else {
                    ChokeDecision::Choke(key)
                });
            }
            peer.received = 0;
            peer.sent = 0;
        }
        decisions
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(decisions: &[ChokeDecision], unchoke: bool) -> Vec<u64> {
        decisions
            .iter()
            .filter_map(|d| match (d, unchoke) {
                (ChokeDecision::Unchoke(k), true) | (ChokeDecision::Choke(k), false) => Some(k.0),
                _ => None,
            })
            .collect()
    }

    fn choker_with_peers(n: u64, now: Instant) -> Choker {
        let mut choker = Choker::new(2, now, 9);
        for k in 0..n {
            choker.peer_connected(PeerKey(k));
        }
        choker
    }

    #[test]
    fn interested_peers_get_free_slots_at_once() {
        let t0 = Instant::now();
        let mut choker = choker_with_peers(5, t0);
        // Two regular slots plus the optimistic one.
        for k in 0..3 {
            assert_eq!(
                choker.interested(PeerKey(k), true),
                vec![ChokeDecision::Unchoke(PeerKey(k))]
            );
        }
        assert!(choker.interested(PeerKey(3), true).is_empty());
        assert_eq!(
            choker.interested(PeerKey(0), false),
            vec![ChokeDecision::Choke(PeerKey(0))]
        );
    }

    #[test]
    fn leeching_rewards_the_peers_that_give_most() {
        let t0 = Instant::now();
        let mut choker = choker_with_peers(5, t0);
        for k in 0..5 {
            choker.interested(PeerKey(k), true);
            choker.received_from(PeerKey(k), 1000 * k);
        }
        let decisions = choker.handle_timeout(t0);
        // Peers 4 and 3 gave most; one of 0..=2 is optimistic.
        assert!(choker.is_unchoked(PeerKey(4)) && choker.is_unchoked(PeerKey(3)));
        let optimistic: Vec<u64> = (0..3).filter(|&k| choker.is_unchoked(PeerKey(k))).collect();
        assert_eq!(optimistic.len(), 1, "{decisions:?}");
    }

    #[test]
    fn seeding_ranks_by_what_peers_take() {
        let t0 = Instant::now();
        let mut choker = choker_with_peers(4, t0);
        choker.set_seeding(true);
        for k in 0..4 {
            choker.interested(PeerKey(k), true);
        }
        choker.handle_timeout(t0);
        for k in 0..4 {
            choker.sent_to(PeerKey(k), 10 * (4 - k));
            choker.received_from(PeerKey(k), 1000 * k);
        }
        choker.handle_timeout(t0 + ROUND);
        assert!(choker.is_unchoked(PeerKey(0)) && choker.is_unchoked(PeerKey(1)));
    }

    #[test]
    fn the_optimistic_slot_stays_for_its_round_then_rotates() {
        let t0 = Instant::now();
        let mut choker = choker_with_peers(12, t0);
        for k in 0..12 {
            choker.interested(PeerKey(k), true);
        }
        let optimistic_at = |choker: &mut Choker, now| {
            choker.handle_timeout(now);
            choker.optimistic.unwrap()
        };
        let first = optimistic_at(&mut choker, t0);
        assert_eq!(choker.poll_timeout(), t0 + ROUND);
        assert_eq!(
            optimistic_at(&mut choker, t0 + ROUND),
            first,
            "kept within 30 s"
        );
        assert_eq!(optimistic_at(&mut choker, t0 + ROUND * 2), first);
        let mut seen = std::collections::BTreeSet::from([first]);
        for round in 1..=10u32 {
            seen.insert(optimistic_at(&mut choker, t0 + OPTIMISTIC_ROUND * round));
        }
        assert!(seen.len() > 3, "rotation visited only {seen:?}");
        let regular = (0..12).filter(|&k| choker.is_unchoked(PeerKey(k))).count();
        assert_eq!(regular, 3);
    }

    #[test]
    fn nothing_happens_before_the_timeout_and_departed_peers_are_forgotten() {
        let t0 = Instant::now();
        let mut choker = choker_with_peers(3, t0);
        for k in 0..3 {
            choker.interested(PeerKey(k), true);
        }
        choker.handle_timeout(t0);
        assert!(
            choker
                .handle_timeout(t0 + Duration::from_secs(1))
                .is_empty()
        );
        choker.peer_gone(PeerKey(0));
        let decisions = choker.handle_timeout(t0 + ROUND);
        assert!(!keys(&decisions, true).contains(&0));
        assert!(!choker.is_unchoked(PeerKey(0)));
    }
}
