//! Which block to ask which peer for next: rarest-first with a seeded random tie-break, sequential for
//! streaming, and an endgame that asks a second peer for blocks still outstanding.
//!
//! Pieces already started are finished first (so whole pieces complete, get hashed and leave memory soon), then a
//! new piece is started: the one fewest connected peers have, ties broken by a seeded RNG so every client in a swarm
//! does not chase the same piece, or the lowest index in sequential mode. When no block is left unrequested the
//! picker enters endgame and hands out blocks another peer already has in flight, up to
//! [`ENDGAME_MAX_REQUESTERS`]; when one copy arrives, the others are returned as cancels.
//!
//! The pieces not started are kept in the order they would be picked (a queue sorted by availability, then by a
//! seeded random rank), so a pick reads the queue from its front instead of weighing every piece: a scan per pick
//! made a download quadratic in its pieces (13.6 s of picking for a 10 GiB file in chunks of 256 KiB). One peer's
//! `HAVE` moves one piece; a bitfield, a file selection or a change of mode sorts the queue again at the next pick.

use std::collections::{BTreeMap, BTreeSet};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::PeerKey;
use super::geometry::{Block, Geometry, PieceSet};

/// In endgame a block is asked of at most this many peers at once: two copies finish the tail fast without
/// wasting much upload of the swarm.
pub const ENDGAME_MAX_REQUESTERS: usize = 2;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PickMode {
    /// Rarest first: the swarm's health and the fastest whole download.
    RarestFirst,
    /// Lowest piece first: for playing media while it downloads.
    Sequential,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum BlockState {
    Free,
    Requested(Vec<PeerKey>),
    Received,
}

#[derive(Debug)]
struct PartialPiece {
    blocks: Vec<BlockState>,
    free: u32,
}

/// What became of a block that arrived.
#[derive(Debug, PartialEq, Eq)]
pub enum Arrival {
    /// A block we needed: keep its data. `cancels` are the other peers asked for the same block in endgame.
    Fresh { cancels: Vec<(PeerKey, Block)> },
    /// Another peer's copy came first, or the piece is done: drop the data.
    Duplicate,
    /// Not a block of a piece being downloaded: drop the data (and count it against the peer).
    Unrequested,
}

/// Availability counts changed at once past this many pieces sort the queue again rather than move each piece.
const RESORT_PAST: usize = 64;

/// A queued piece's place: the least available first, then by its seeded rank (ties in rank broken by the piece
/// itself, so every piece has a place of its own); in sequential mode by the piece alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Order {
    availability: u32,
    rank: u32,
    piece: u32,
}

#[derive(Debug)]
pub struct Picker {
    geometry: Geometry,
    have: PieceSet,
    wanted: PieceSet,
    availability: Vec<u32>,
    partial: BTreeMap<u32, PartialPiece>,
    /// Pieces wanted, missing and not started: endgame begins when this is zero and no started piece has a free block.
    unstarted: u32,
    /// Pieces wanted and missing: the download is complete at zero.
    missing: u32,
    mode: PickMode,
    /// Each piece's place among pieces equally available (seeded: every client of a swarm has its own order).
    rank: Vec<u32>,
    /// The pieces wanted, missing and not started, by the order they are picked in ([`Picker::order`]); when
    /// `sorted` is false it is rebuilt before the next pick.
    queue: BTreeSet<Order>,
    sorted: bool,
}

impl Picker {
    /// A picker wanting every piece not in `have`.
    pub fn new(geometry: Geometry, have: PieceSet, seed: u64) -> Self {
        let count = geometry.piece_count();
        let wanted = PieceSet::full(count);
        let mut rng = StdRng::seed_from_u64(seed);
        let mut picker = Self {
            geometry,
            unstarted: 0,
            missing: 0,
            have,
            wanted,
            availability: vec![0; count as usize],
            partial: BTreeMap::new(),
            mode: PickMode::RarestFirst,
            rank: (0..count).map(|_| rng.r#gen()).collect(),
            queue: BTreeSet::new(),
            sorted: false,
        };
        picker.recount();
        picker
    }

    fn recount(&mut self) {
        self.unstarted = (0..self.geometry.piece_count())
            .filter(|&p| self.is_queued(p))
            .count() as u32;
        self.missing = (0..self.geometry.piece_count())
            .filter(|&p| self.is_needed(p))
            .count() as u32;
        self.sorted = false;
    }

    /// Whether the piece is wanted, missing and not started: in the queue.
    fn is_queued(&self, piece: u32) -> bool {
        self.is_needed(piece) && !self.partial.contains_key(&piece)
    }

    /// Where a piece stands in the queue.
    fn order(&self, piece: u32) -> Order {
        match self.mode {
            PickMode::RarestFirst => Order {
                availability: self.availability[piece as usize],
                rank: self.rank[piece as usize],
                piece,
            },
            PickMode::Sequential => Order {
                availability: 0,
                rank: 0,
                piece,
            },
        }
    }

    /// Puts a piece that became queued in its place (once sorted; until then the sort finds it).
    fn enqueue(&mut self, piece: u32) {
        if self.sorted {
            self.queue.insert(self.order(piece));
        }
    }

    /// Takes a piece out of the queue, where its current order says it is.
    fn dequeue(&mut self, piece: u32) {
        if self.sorted {
            self.queue.remove(&self.order(piece));
        }
    }

    /// Counts one more (or one fewer) peer holding `piece`, keeping the queue's order.
    fn count_holder(&mut self, piece: u32, more: bool) {
        let Some(&count) = self.availability.get(piece as usize) else {
            return;
        };
        let moves = self.mode == PickMode::RarestFirst && self.is_queued(piece);
        if moves {
            self.dequeue(piece);
        }
        self.availability[piece as usize] = if more {
            count + 1
        } else {
            count.saturating_sub(1)
        };
        if moves {
            self.enqueue(piece);
        }
    }

    /// Changes the availability of many pieces at once: moved one by one, or sorted again at the next pick.
    fn count_holders(&mut self, pieces: &PieceSet, more: bool) {
        if pieces.count() as usize > RESORT_PAST {
            self.sorted = false;
        }
        for piece in pieces.iter() {
            self.count_holder(piece, more);
        }
    }

    /// Whether the piece is wanted and missing.
    pub fn is_needed(&self, piece: u32) -> bool {
        self.wanted.contains(piece) && !self.have.contains(piece)
    }

    pub fn set_mode(&mut self, mode: PickMode) {
        if mode != self.mode {
            self.mode = mode;
            self.sorted = false;
        }
    }

    /// Restricts the download to `wanted` (file selection). Started pieces no longer wanted are kept until done.
    pub fn set_wanted(&mut self, wanted: PieceSet) {
        self.wanted = wanted;
        self.recount();
    }

    pub fn have(&self) -> &PieceSet {
        &self.have
    }

    /// Whether every wanted piece is verified.
    pub fn is_complete(&self) -> bool {
        self.missing == 0
    }

    /// Whether `peer_has` holds a piece we still need (decides our `interested`).
    pub fn wants_any_of(&self, peer_has: &PieceSet) -> bool {
        peer_has.iter().any(|p| self.is_needed(p))
    }

    pub fn availability(&self, piece: u32) -> u32 {
        self.availability[piece as usize]
    }

    pub fn peer_has_piece(&mut self, piece: u32) {
        self.count_holder(piece, true);
    }

    pub fn peer_has_set(&mut self, pieces: &PieceSet) {
        self.count_holders(pieces, true);
    }

    /// A peer's pieces no longer count (it left, or a new bitfield replaces what it said before).
    pub fn peer_lost_set(&mut self, had: &PieceSet) {
        self.count_holders(had, false);
    }

    /// A peer left: its pieces no longer count, and its outstanding requests are freed.
    pub fn peer_gone(&mut self, peer: PeerKey, had: &PieceSet) {
        self.peer_lost_set(had);
        let pieces: Vec<u32> = self.partial.keys().copied().collect();
        for piece in pieces {
            let blocks = self.partial[&piece].blocks.len() as u32;
            for index in 0..blocks {
                self.release(peer, self.geometry.block(piece, index));
            }
        }
    }

    /// A request to `peer` ended without data (choked, rejected, timed out): the block may go to someone else.
    pub fn release(&mut self, peer: PeerKey, block: Block) {
        let Some(partial) = self.partial.get_mut(&block.piece) else {
            return;
        };
        let Some(state) = partial.blocks.get_mut(block.index() as usize) else {
            return;
        };
        if let BlockState::Requested(peers) = state {
            peers.retain(|p| *p != peer);
            if peers.is_empty() {
                *state = BlockState::Free;
                partial.free += 1;
            }
        }
    }

    /// Up to `max` blocks to request from `peer`, which has `peer_has`.
    pub fn pick(&mut self, peer: PeerKey, peer_has: &PieceSet, max: usize) -> Vec<Block> {
        let mut picked = Vec::new();
        let mut any_free = false;
        let started: Vec<u32> = self.partial.keys().copied().collect();
        for piece in started {
            if picked.len() >= max {
                return picked;
            }
            let partial = &self.partial[&piece];
            any_free |= partial.free > 0;
            if partial.free > 0 && peer_has.contains(piece) {
                self.take_free(peer, piece, max, &mut picked);
            }
        }
        while picked.len() < max {
            let Some(piece) = self.next_new_piece(peer_has) else {
                break;
            };
            self.dequeue(piece);
            let blocks = self.geometry.blocks_in_piece(piece);
            self.partial.insert(
                piece,
                PartialPiece {
                    blocks: vec![BlockState::Free; blocks as usize],
                    free: blocks,
                },
            );
            self.unstarted -= 1;
            self.take_free(peer, piece, max, &mut picked);
        }
        if picked.is_empty() && !any_free && self.unstarted == 0 {
            self.pick_endgame(peer, peer_has, max, &mut picked);
        }
        picked
    }

    fn take_free(&mut self, peer: PeerKey, piece: u32, max: usize, picked: &mut Vec<Block>) {
        let partial = self.partial.get_mut(&piece).expect("started piece");
        for (index, state) in partial.blocks.iter_mut().enumerate() {
            if picked.len() >= max {
                break;
            }
            if *state == BlockState::Free {
                *state = BlockState::Requested(vec![peer]);
                partial.free -= 1;
                picked.push(self.geometry.block(piece, index as u32));
            }
        }
    }

    /// The first piece of the queue that `peer_has`.
    fn next_new_piece(&mut self, peer_has: &PieceSet) -> Option<u32> {
        if !self.sorted {
            self.queue = (0..self.geometry.piece_count())
                .filter(|&p| self.is_queued(p))
                .map(|p| self.order(p))
                .collect();
            self.sorted = true;
        }
        self.queue
            .iter()
            .map(|order| order.piece)
            .find(|&p| peer_has.contains(p))
    }

    fn pick_endgame(
        &mut self,
        peer: PeerKey,
        peer_has: &PieceSet,
        max: usize,
        picked: &mut Vec<Block>,
    ) {
        for (&piece, partial) in self.partial.iter_mut() {
            if !peer_has.contains(piece) {
                continue;
            }
            for (index, state) in partial.blocks.iter_mut().enumerate() {
                if picked.len() >= max {
                    return;
                }
                if let BlockState::Requested(peers) = state
                    && peers.len() < ENDGAME_MAX_REQUESTERS
                    && !peers.contains(&peer)
                {
                    peers.push(peer);
                    picked.push(self.geometry.block(piece, index as u32));
                }
            }
        }
    }

    /// A block's data arrived from `peer`.
    pub fn block_arrived(&mut self, peer: PeerKey, block: Block) -> Arrival {
        if !self.geometry.is_valid_block(block) {
            return Arrival::Unrequested;
        }
        let Some(partial) = self.partial.get_mut(&block.piece) else {
            return if self.have.contains(block.piece) {
                Arrival::Duplicate
            } else {
                Arrival::Unrequested
            };
        };
        let state = &mut partial.blocks[block.index() as usize];
        // Any block of a started piece that we still lack is kept, even from a peer we did not ask (a late answer
        // after a choke released the request): it is data we need, and the piece's hash checks it.
        match state {
            BlockState::Requested(peers) => {
                let cancels = peers
                    .iter()
                    .filter(|p| **p != peer)
                    .map(|p| (*p, block))
                    .collect();
                *state = BlockState::Received;
                Arrival::Fresh { cancels }
            }
            BlockState::Free => {
                *state = BlockState::Received;
                partial.free -= 1;
                Arrival::Fresh {
                    cancels: Vec::new(),
                }
            }
            BlockState::Received => Arrival::Duplicate,
        }
    }

    /// Whether every block of a started piece has arrived (then it is hashed).
    pub fn all_blocks_arrived(&self, piece: u32) -> bool {
        self.partial
            .get(&piece)
            .is_some_and(|p| p.blocks.iter().all(|s| *s == BlockState::Received))
    }

    /// The piece passed its hash and is on its way to disk.
    pub fn piece_verified(&mut self, piece: u32) {
        if self.have.contains(piece) {
            return;
        }
        if self.is_queued(piece) {
            self.dequeue(piece);
            self.unstarted -= 1;
        }
        self.partial.remove(&piece);
        if self.wanted.contains(piece) {
            self.missing -= 1;
        }
        self.have.insert(piece);
    }

    /// The piece failed its hash: every block is fetched again.
    pub fn piece_failed(&mut self, piece: u32) {
        if self.partial.remove(&piece).is_some() && self.is_needed(piece) {
            self.unstarted += 1;
            self.enqueue(piece);
        }
    }

    /// A piece we had is gone (its write failed): fetch it again.
    pub fn piece_lost(&mut self, piece: u32) {
        if self.have.remove(piece) && self.wanted.contains(piece) {
            self.missing += 1;
            if !self.partial.contains_key(&piece) {
                self.unstarted += 1;
                self.enqueue(piece);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::swarm::geometry::BLOCK_LEN;

    const A: PeerKey = PeerKey(1);
    const B: PeerKey = PeerKey(2);

    fn geometry(pieces: u32, blocks_per_piece: u32) -> Geometry {
        Geometry::new(
            u64::from(pieces * blocks_per_piece * BLOCK_LEN),
            blocks_per_piece * BLOCK_LEN,
        )
        .unwrap()
    }

    fn set(len: u32, pieces: &[u32]) -> PieceSet {
        let mut s = PieceSet::new(len);
        for &p in pieces {
            s.insert(p);
        }
        s
    }

    /// The pieces a pick may start for `peer_has`: the least available of those wanted, missing, not started and
    /// held (or the lowest index, in sequential mode), worked out from scratch.
    fn best_new(picker: &Picker, peer_has: &PieceSet) -> Vec<u32> {
        let candidates: Vec<u32> = (0..picker.geometry.piece_count())
            .filter(|&p| peer_has.contains(p) && picker.is_queued(p))
            .collect();
        match picker.mode {
            PickMode::Sequential => candidates.iter().copied().min().into_iter().collect(),
            PickMode::RarestFirst => {
                let least = candidates.iter().map(|&p| picker.availability(p)).min();
                candidates
                    .into_iter()
                    .filter(|&p| Some(picker.availability(p)) == least)
                    .collect()
            }
        }
    }

    #[test]
    fn the_queue_agrees_with_a_scan_of_every_piece_through_any_sequence_of_events() {
        let pieces = 40;
        let mut rng = StdRng::seed_from_u64(11);
        for round in 0..200u64 {
            let mut picker = Picker::new(geometry(pieces, 2), PieceSet::new(pieces), round);
            let random_set = |rng: &mut StdRng| {
                let mut s = PieceSet::new(pieces);
                let keep = rng.gen_range(1..=100);
                for p in 0..pieces {
                    if rng.gen_range(0..100) < keep {
                        s.insert(p);
                    }
                }
                s
            };
            let mut peers: Vec<PieceSet> = (0..3).map(|_| random_set(&mut rng)).collect();
            for peer in &peers {
                picker.peer_has_set(peer);
            }
            for _ in 0..300 {
                let piece = rng.gen_range(0..pieces);
                match rng.gen_range(0..10) {
                    0 => picker.peer_has_piece(piece),
                    1 => {
                        let who = rng.gen_range(0..peers.len());
                        let fresh = random_set(&mut rng);
                        picker.peer_lost_set(&peers[who]);
                        picker.peer_has_set(&fresh);
                        peers[who] = fresh;
                    }
                    2 => picker.piece_failed(piece),
                    3 => picker.piece_lost(piece),
                    4 => picker.piece_verified(piece),
                    5 => picker.set_mode(if rng.gen_range(0..4) == 0 {
                        PickMode::Sequential
                    } else {
                        PickMode::RarestFirst
                    }),
                    6 if rng.gen_range(0..8) == 0 => picker.set_wanted(random_set(&mut rng)),
                    _ => {
                        let who = rng.gen_range(0..peers.len());
                        let allowed = best_new(&picker, &peers[who]);
                        let started: Vec<u32> = picker.partial.keys().copied().collect();
                        let picked = picker.pick(PeerKey(who as u64), &peers[who], 2);
                        if let Some(new) = picked.iter().find(|b| !started.contains(&b.piece)) {
                            assert!(
                                allowed.contains(&new.piece),
                                "round {round}: started {} where the best were {allowed:?}",
                                new.piece
                            );
                        }
                    }
                }
                let unstarted = (0..pieces).filter(|&p| picker.is_queued(p)).count();
                assert_eq!(picker.unstarted as usize, unstarted, "round {round}");
                let complete = (0..pieces).all(|p| !picker.is_needed(p));
                assert_eq!(picker.is_complete(), complete, "round {round}");
            }
        }
    }

    #[test]
    fn rarest_piece_is_started_first() {
        let g = geometry(4, 2);
        let mut picker = Picker::new(g, PieceSet::new(4), 7);
        picker.peer_has_set(&set(4, &[0, 1, 2, 3]));
        picker.peer_has_set(&set(4, &[0, 1, 3]));
        picker.peer_has_set(&set(4, &[0, 3]));
        // Piece 2 is on one peer only; then piece 1 (two peers).
        let picked = picker.pick(A, &PieceSet::full(4), 3);
        assert_eq!(
            picked.iter().map(|b| b.piece).collect::<Vec<_>>(),
            vec![2, 2, 1]
        );
    }

    #[test]
    fn ties_are_broken_by_the_seed_and_reproducibly() {
        let first_piece = |seed| {
            let mut picker = Picker::new(geometry(64, 1), PieceSet::new(64), seed);
            picker.pick(A, &PieceSet::full(64), 1)[0].piece
        };
        assert_eq!(first_piece(1), first_piece(1));
        let distinct: std::collections::BTreeSet<u32> = (0..20).map(first_piece).collect();
        assert!(distinct.len() > 5, "20 seeds chose only {distinct:?}");
    }

    #[test]
    fn started_pieces_are_finished_before_new_ones() {
        let mut picker = Picker::new(geometry(8, 4), PieceSet::new(8), 3);
        let first = picker.pick(A, &PieceSet::full(8), 2);
        assert_eq!(first[0].piece, first[1].piece);
        let next = picker.pick(B, &PieceSet::full(8), 2);
        assert!(
            next.iter().all(|b| b.piece == first[0].piece),
            "B continues A's piece: {next:?}"
        );
    }

    #[test]
    fn sequential_mode_goes_in_order_and_skips_what_the_peer_lacks() {
        let mut picker = Picker::new(geometry(6, 1), set(6, &[0]), 3);
        picker.set_mode(PickMode::Sequential);
        let picked = picker.pick(A, &set(6, &[0, 2, 3, 5]), 3);
        assert_eq!(
            picked.iter().map(|b| b.piece).collect::<Vec<_>>(),
            vec![2, 3, 5]
        );
    }

    #[test]
    fn endgame_duplicates_outstanding_blocks_and_cancels_the_loser() {
        let mut picker = Picker::new(geometry(2, 2), PieceSet::new(2), 3);
        let all = PieceSet::full(2);
        let mut to_a = picker.pick(A, &all, 10);
        assert_eq!(to_a.len(), 4);
        // Nothing is left unrequested: B gets the same blocks, each at most twice.
        let mut to_b = picker.pick(B, &all, 10);
        to_a.sort_by_key(|b| (b.piece, b.offset));
        to_b.sort_by_key(|b| (b.piece, b.offset));
        assert_eq!(to_b, to_a);
        assert!(
            picker.pick(PeerKey(3), &all, 10).is_empty(),
            "a third copy is never asked for"
        );
        assert!(
            picker.pick(A, &all, 10).is_empty(),
            "A is never asked twice for one block"
        );
        assert_eq!(
            picker.block_arrived(B, to_a[0]),
            Arrival::Fresh {
                cancels: vec![(A, to_a[0])]
            }
        );
        assert_eq!(picker.block_arrived(A, to_a[0]), Arrival::Duplicate);
    }

    #[test]
    fn no_endgame_while_pieces_are_unstarted_elsewhere() {
        let mut picker = Picker::new(geometry(2, 1), PieceSet::new(2), 3);
        assert_eq!(picker.pick(A, &set(2, &[0]), 5).len(), 1);
        // B has only piece 0, already requested; piece 1 is unstarted, so this is not endgame.
        assert!(picker.pick(B, &set(2, &[0]), 5).is_empty());
    }

    #[test]
    fn released_and_failed_blocks_are_picked_again() {
        let g = geometry(1, 2);
        let mut picker = Picker::new(g, PieceSet::new(1), 3);
        let all = PieceSet::full(1);
        let picked = picker.pick(A, &all, 2);
        picker.release(A, picked[1]);
        assert_eq!(picker.pick(B, &all, 2), vec![picked[1]]);
        assert!(matches!(
            picker.block_arrived(A, picked[0]),
            Arrival::Fresh { .. }
        ));
        assert!(matches!(
            picker.block_arrived(B, picked[1]),
            Arrival::Fresh { .. }
        ));
        assert!(picker.all_blocks_arrived(0));
        picker.piece_failed(0);
        assert_eq!(picker.pick(B, &all, 2), picked);
        picker.piece_verified(0);
        assert!(picker.is_complete());
        assert_eq!(picker.block_arrived(A, picked[0]), Arrival::Duplicate);
    }

    #[test]
    fn unrequested_and_malformed_blocks_are_refused() {
        let g = geometry(2, 2);
        let mut picker = Picker::new(g, PieceSet::new(2), 3);
        let picked = picker.pick(A, &PieceSet::full(2), 1);
        let other_piece = if picked[0].piece == 0 { 1 } else { 0 };
        assert_eq!(
            picker.block_arrived(B, g.block(other_piece, 0)),
            Arrival::Unrequested,
            "piece not started"
        );
        // A late or unasked-for block of a started piece is still data we need.
        assert_eq!(
            picker.block_arrived(B, picked[0]),
            Arrival::Fresh {
                cancels: vec![(A, picked[0])]
            }
        );
        assert_eq!(
            picker.block_arrived(B, g.block(picked[0].piece, 1)),
            Arrival::Fresh { cancels: vec![] }
        );
        assert_eq!(
            picker.block_arrived(
                A,
                Block {
                    piece: 9,
                    offset: 0,
                    len: BLOCK_LEN
                }
            ),
            Arrival::Unrequested
        );
        assert_eq!(
            picker.block_arrived(
                A,
                Block {
                    len: 5,
                    ..picked[0]
                }
            ),
            Arrival::Unrequested
        );
    }

    #[test]
    fn a_departing_peer_frees_its_requests_and_availability() {
        let mut picker = Picker::new(geometry(2, 1), PieceSet::new(2), 3);
        let a_has = PieceSet::full(2);
        picker.peer_has_set(&a_has);
        let mut picked = picker.pick(A, &a_has, 2);
        picker.peer_gone(A, &a_has);
        assert_eq!(picker.availability(0), 0);
        let mut again = picker.pick(B, &a_has, 2);
        picked.sort_by_key(|b| b.piece);
        again.sort_by_key(|b| b.piece);
        assert_eq!(again, picked);
    }

    #[test]
    fn file_selection_limits_what_is_picked_and_what_completes() {
        let mut picker = Picker::new(geometry(4, 1), PieceSet::new(4), 3);
        picker.set_wanted(set(4, &[1, 2]));
        let picked = picker.pick(A, &PieceSet::full(4), 10);
        let mut pieces: Vec<u32> = picked.iter().map(|b| b.piece).collect();
        pieces.sort();
        assert_eq!(pieces, vec![1, 2]);
        picker.piece_verified(1);
        assert!(!picker.is_complete());
        picker.piece_verified(2);
        assert!(picker.is_complete());
    }
}
