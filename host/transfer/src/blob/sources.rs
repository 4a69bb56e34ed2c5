//! The private swarm's rules, with no I/O: which source holds which chunks, which blocks to ask whom, and what
//! becomes of a source that fails.
//!
//! The choice of blocks is the swarm core's [`Picker`] (rarest first with a seeded tie-break, pieces finished
//! before new ones start, an endgame that asks a second source for what is still outstanding), over pieces of
//! [`CHUNK_BYTES`] and blocks of [`BLOCK_BYTES`] — the tree's leaves, so each block is verified on its own as it
//! arrives and a piece is done when its last block is. A source is asked for up to one chunk's worth of blocks per
//! request, as byte ranges (contiguous runs), with [`REQUESTS_PER_SOURCE`] requests under way to it at once.
//!
//! A source whose bytes fail verification, or that claimed a chunk and then refuses it, is banned for the rest of
//! the download: what it said it holds no longer counts and its outstanding blocks go to others. A source that
//! vanished (its connection failed) loses its claims and outstanding blocks too, but is asked again later.
//!
//! The sources may change while the download runs (a member joins or leaves the share, the file turns up in
//! another share): a new one is [`SourceBook::add`]ed, one no longer named is [`SourceBook::withdraw`]n (its claims
//! and outstanding blocks go to others, as a banned one's, but it is not counted as bad and may be added again).

use std::ops::Range;
use std::time::{Duration, Instant};

use super::http::Holding;
use super::{BLOCK_BYTES, BLOCKS_PER_CHUNK, CHUNK_BYTES, chunk_count, whole_chunks};
use crate::swarm::PeerKey;
use crate::swarm::geometry::{Block, Geometry, PieceSet};
use crate::swarm::picker::{Arrival, Picker};

/// Workers for each source at once, each with a connection of its own (HTTP/1 asks one after another; a worker sends
/// its next request as soon as a body has arrived). With one, a source sat idle between two chunks for our next
/// request's round trip and its lookup and encoder start: from one source, one worker moved 388-439 MB/s, two
/// 529-563, three no more than two (`benches/files.rs`, docs/benchmarks.md).
pub const REQUESTS_PER_SOURCE: usize = 2;

/// Sources asked at once, at most: a share of many members costs a download at most this many sources' connections
/// (each [`REQUESTS_PER_SOURCE`]) and waiting questions. The others wait their turn, which a source gives up once it
/// has nothing we need (it holds nothing, or only what we have) or its connection failed, if another is ready for
/// it; the one waiting longest (or never asked) is asked next. A source holding what we need keeps its turn.
pub const MAX_ASKED: usize = 8;
/// A source whose turn ended with nothing for us rests before its next turn: this long after its first such turn,
/// doubling with each in a row up to [`REST_MAX`] (a block from it starts over). Members that never fetch the file
/// then cost a download one question each per rest, not a turn as fast as they can answer.
pub const REST_FIRST: Duration = Duration::from_secs(1);
pub const REST_MAX: Duration = Duration::from_secs(30);
/// Failures in a row (no answer between them) after which a source counts as out of reach; once every source left
/// is, the download fails at once (the manager retries it later, and a source coming online starts it again at
/// once) rather than after the swarm's stall: a one-source download fails after one try, and 30 s of dialling
/// members who are all offline helps nobody.
pub const UNREACHABLE_AFTER: u32 = 2;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceState {
    /// Not asked yet, or holds nothing of the file (yet).
    Unknown,
    /// Said which chunks it holds.
    Holding,
    /// Its connection failed; asked again later.
    Gone(String),
    /// Lied or sent bad bytes: never asked again in this download.
    Banned(String),
    /// No longer named as a source (it left the share): not asked again unless it is added back.
    Withdrawn,
}

impl SourceState {
    /// Banned or withdrawn: its workers stop, and nothing it says counts.
    pub fn is_out(&self) -> bool {
        matches!(self, SourceState::Banned(_) | SourceState::Withdrawn)
    }
}

#[derive(Debug)]
struct Entry {
    name: String,
    state: SourceState,
    has: PieceSet,
    /// Verified bytes it gave us (kept ones: duplicates of the endgame are not counted).
    received: u64,
    /// Its turn while it is asked (its workers run with this number; a worker whose turn is over ends).
    turn: Option<u64>,
    /// When it started waiting for a turn (0: from the start; else the count of turns given then): the one waiting
    /// longest is asked next.
    queued_at: u64,
    /// Connections to it that failed in a row (its backoff grows with them, across turns).
    failures: u32,
    /// Its turns in a row that ended with nothing for us.
    dry_turns: u32,
    /// Not given a turn before then.
    rest_until: Option<Instant>,
    /// Came online while its workers waited out a backoff: they dial it again now.
    woken: bool,
}

impl Entry {
    fn new(name: String, chunks: u32) -> Entry {
        Entry {
            name,
            state: SourceState::Unknown,
            has: PieceSet::new(chunks),
            received: 0,
            turn: None,
            queued_at: 0,
            failures: 0,
            dry_turns: 0,
            woken: false,
            rest_until: None,
        }
    }
}

/// A file's sources and the blocks still to fetch.
#[derive(Debug)]
pub struct SourceBook {
    geometry: Geometry,
    picker: Picker,
    sources: Vec<Entry>,
    /// Turns given so far.
    turns: u64,
}

impl SourceBook {
    /// A download of `size` bytes (more than zero) from `names`, holding `blocks` already; chunks held whole count
    /// as done, a chunk held in part is fetched again whole.
    pub fn new(size: u64, blocks: &PieceSet, names: Vec<String>, seed: u64) -> SourceBook {
        let geometry =
            Geometry::new(size, CHUNK_BYTES as u32).expect("a non-empty file of bounded size");
        let chunks = chunk_count(size);
        let picker = Picker::new(geometry, whole_chunks(blocks, size), seed);
        SourceBook {
            geometry,
            picker,
            sources: names
                .into_iter()
                .map(|name| Entry::new(name, chunks))
                .collect(),
            turns: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.sources.len()
    }

    /// `name` as a source from now on: the key to start its workers with, or `None` if it is one already (a banned
    /// one stays banned). A withdrawn source comes back under a new key, as not asked yet, so workers of its old
    /// key still running see it withdrawn and end.
    pub fn add(&mut self, name: &str) -> Option<PeerKey> {
        if self
            .sources
            .iter()
            .any(|s| s.name == name && s.state != SourceState::Withdrawn)
        {
            return None;
        }
        self.sources
            .push(Entry::new(name.to_string(), self.geometry.piece_count()));
        Some(PeerKey(self.sources.len() as u64 - 1))
    }

    /// Gives free turns (up to [`MAX_ASKED`] sources asked at once) to the sources ready for one (not resting at
    /// `now`) that waited longest — in the order named, at first — and returns them with their turn: start their
    /// workers.
    pub fn start_turns(&mut self, now: Instant) -> Vec<(PeerKey, u64)> {
        let asked = self.sources.iter().filter(|s| s.turn.is_some()).count();
        let mut ready: Vec<usize> = (0..self.sources.len())
            .filter(|i| self.is_ready(*i, now))
            .collect();
        ready.sort_by_key(|i| self.sources[*i].queued_at);
        ready
            .into_iter()
            .take(MAX_ASKED.saturating_sub(asked))
            .map(|i| {
                self.turns += 1;
                self.sources[i].turn = Some(self.turns);
                (PeerKey(i as u64), self.turns)
            })
            .collect()
    }

    /// Waiting for a turn and not resting at `now`.
    fn is_ready(&self, index: usize, now: Instant) -> bool {
        let entry = &self.sources[index];
        entry.turn.is_none()
            && !entry.state.is_out()
            && entry.rest_until.is_none_or(|until| until <= now)
    }

    /// `name` came online: its failures and dry turns are forgotten; if it waits for a turn it is ready for one now,
    /// in line with those never asked, and if its workers wait out a backoff they dial it now
    /// ([`SourceBook::take_woken`]). Returns whether it was waiting either way (not out, not holding).
    pub fn wake(&mut self, name: &str) -> bool {
        let Some(entry) = self
            .sources
            .iter_mut()
            .find(|s| s.name == name && !s.state.is_out() && s.state != SourceState::Holding)
        else {
            return false;
        };
        entry.dry_turns = 0;
        entry.failures = 0;
        if entry.turn.is_some() {
            entry.woken = true;
        } else {
            entry.rest_until = None;
            entry.queued_at = 0;
        }
        true
    }

    /// Whether `key` came online since its workers began waiting out their backoff (once: the first to ask takes it;
    /// the other worker waits its own backoff out, or is woken by the next news).
    pub fn take_woken(&mut self, key: PeerKey) -> bool {
        std::mem::take(&mut self.sources[key.0 as usize].woken)
    }

    /// Whether `key`'s workers of `turn` go on asking it.
    pub fn has_turn(&self, key: PeerKey, turn: u64) -> bool {
        let entry = &self.sources[key.0 as usize];
        entry.turn == Some(turn) && !entry.state.is_out()
    }

    /// Ends `key`'s `turn` if another source is ready for one at `now` and `key` has nothing we need (it holds
    /// nothing, or no chunk we still need, or its connection failed): what it said it holds no longer counts until
    /// it is asked again, and it rests ([`REST_FIRST`]…). Returns whether the turn ended (its workers then end).
    pub fn yield_turn(&mut self, key: PeerKey, turn: u64, now: Instant) -> bool {
        if !self.has_turn(key, turn) || !(0..self.sources.len()).any(|i| self.is_ready(i, now)) {
            return false;
        }
        let entry = &self.sources[key.0 as usize];
        let needed = entry.state == SourceState::Holding && self.picker.wants_any_of(&entry.has);
        if needed {
            return false;
        }
        self.drop_claims(key);
        let entry = &mut self.sources[key.0 as usize];
        entry.turn = None;
        entry.state = SourceState::Unknown;
        entry.queued_at = self.turns;
        entry.dry_turns += 1;
        let rest = REST_FIRST
            .saturating_mul(1 << (entry.dry_turns - 1).min(16))
            .min(REST_MAX);
        entry.rest_until = Some(now + rest);
        true
    }

    /// `key` is no longer a source: what it said it holds no longer counts and its outstanding blocks go to others.
    pub fn withdraw(&mut self, key: PeerKey) {
        if self.sources[key.0 as usize].state.is_out() {
            return;
        }
        self.drop_claims(key);
        let entry = &mut self.sources[key.0 as usize];
        entry.state = SourceState::Withdrawn;
        entry.turn = None;
    }

    /// The keys of the sources not named in `names` (and not out already).
    pub fn not_named(&self, names: &[String]) -> Vec<PeerKey> {
        self.sources
            .iter()
            .enumerate()
            .filter(|(_, s)| !s.state.is_out() && !names.contains(&s.name))
            .map(|(index, _)| PeerKey(index as u64))
            .collect()
    }

    pub fn is_empty(&self) -> bool {
        self.sources.is_empty()
    }

    pub fn name(&self, key: PeerKey) -> &str {
        &self.sources[key.0 as usize].name
    }

    pub fn state(&self, key: PeerKey) -> &SourceState {
        &self.sources[key.0 as usize].state
    }

    pub fn is_complete(&self) -> bool {
        self.picker.is_complete()
    }

    /// Chunks verified whole.
    pub fn chunks_done(&self) -> u32 {
        self.picker.have().count()
    }

    /// Whether every source is banned or withdrawn: nobody is left to ask.
    pub fn none_left(&self) -> bool {
        self.sources.iter().all(|s| s.state.is_out())
    }

    /// Whether every source left failed [`UNREACHABLE_AFTER`] times in a row, none answering in between (one never
    /// asked yet counts as reachable).
    pub fn none_reachable(&self) -> bool {
        let mut left = self.sources.iter().filter(|s| !s.state.is_out()).peekable();
        left.peek().is_some() && left.all(|s| s.failures >= UNREACHABLE_AFTER)
    }

    /// Each source's name and the verified bytes it gave.
    pub fn received(&self) -> Vec<(String, u64)> {
        self.sources
            .iter()
            .map(|s| (s.name.clone(), s.received))
            .collect()
    }

    /// Why each source that failed did.
    pub fn failures(&self) -> Vec<String> {
        self.sources
            .iter()
            .filter_map(|s| match &s.state {
                SourceState::Gone(why) | SourceState::Banned(why) => {
                    Some(format!("{}: {why}", s.name))
                }
                _ => None,
            })
            .collect()
    }

    /// What `key` says it holds now (its earlier word is replaced).
    pub fn holding(&mut self, key: PeerKey, holding: Holding) {
        let entry = &mut self.sources[key.0 as usize];
        if entry.state.is_out() {
            return;
        }
        let has = match holding {
            Holding::Whole => PieceSet::full(self.geometry.piece_count()),
            Holding::Chunks(chunks) => chunks,
        };
        self.picker.peer_lost_set(&entry.has);
        self.picker.peer_has_set(&has);
        entry.has = has;
        entry.state = SourceState::Holding;
        entry.failures = 0;
    }

    /// `key` holds nothing of the file (it answered 404 or 403: not downloading it, or not a member after all).
    pub fn holds_nothing(&mut self, key: PeerKey) {
        let entry = &mut self.sources[key.0 as usize];
        if entry.state.is_out() {
            return;
        }
        self.picker.peer_gone(key, &entry.has);
        entry.has = PieceSet::new(self.geometry.piece_count());
        entry.state = SourceState::Unknown;
        entry.failures = 0;
    }

    /// The byte ranges to ask `key` for next (at most a chunk's worth of blocks, as contiguous runs); empty when it
    /// holds nothing we still need (or is banned).
    pub fn next(&mut self, key: PeerKey) -> Vec<Range<u64>> {
        let entry = &self.sources[key.0 as usize];
        if entry.state != SourceState::Holding {
            return vec![];
        }
        let mut blocks: Vec<Range<u64>> = self
            .picker
            .pick(key, &entry.has, BLOCKS_PER_CHUNK as usize)
            .into_iter()
            .map(|b| {
                let start = self.geometry.piece_offset(b.piece) + u64::from(b.offset);
                start..start + u64::from(b.len)
            })
            .collect();
        blocks.sort_by_key(|r| r.start);
        let mut runs: Vec<Range<u64>> = Vec::new();
        for block in blocks {
            match runs.last_mut() {
                Some(run) if run.end == block.start => run.end = block.end,
                _ => runs.push(block),
            }
        }
        runs
    }

    fn block_at(&self, offset: u64) -> Option<Block> {
        if !offset.is_multiple_of(BLOCK_BYTES) || offset >= self.geometry.total_len() {
            return None;
        }
        let piece = (offset / CHUNK_BYTES) as u32;
        let index = ((offset % CHUNK_BYTES) / BLOCK_BYTES) as u32;
        Some(self.geometry.block(piece, index))
    }

    /// A verified block from `key` at `offset`: whether to keep it (false: another copy came first, or it is not
    /// a block of this file).
    pub fn arrived(&mut self, key: PeerKey, offset: u64) -> bool {
        let Some(block) = self.block_at(offset) else {
            return false;
        };
        match self.picker.block_arrived(key, block) {
            Arrival::Fresh { .. } => {
                let entry = &mut self.sources[key.0 as usize];
                entry.received += u64::from(block.len);
                entry.dry_turns = 0;
                if self.picker.all_blocks_arrived(block.piece) {
                    self.picker.piece_verified(block.piece);
                }
                true
            }
            Arrival::Duplicate | Arrival::Unrequested => false,
        }
    }

    /// A request to `key` ended without (all of) its blocks: those not arrived may go to someone else.
    pub fn release(&mut self, key: PeerKey, range: Range<u64>) {
        let mut offset = range.start - range.start % BLOCK_BYTES;
        while offset < range.end {
            if let Some(block) = self.block_at(offset) {
                self.picker.release(key, block);
            }
            offset += BLOCK_BYTES;
        }
    }

    /// `key` sent bytes that failed verification, or refused a chunk it said it held: banned.
    pub fn ban(&mut self, key: PeerKey, why: impl Into<String>) {
        self.drop_claims(key);
        let entry = &mut self.sources[key.0 as usize];
        entry.state = SourceState::Banned(why.into());
        entry.turn = None;
    }

    /// `key`'s connection failed: its claims and outstanding blocks are dropped until it is asked again.
    pub fn gone(&mut self, key: PeerKey, why: impl Into<String>) {
        if self.sources[key.0 as usize].state.is_out() {
            return;
        }
        self.drop_claims(key);
        let entry = &mut self.sources[key.0 as usize];
        entry.state = SourceState::Gone(why.into());
        entry.failures += 1;
    }

    /// Connections to `key` that failed in a row.
    pub fn failed_in_a_row(&self, key: PeerKey) -> u32 {
        self.sources[key.0 as usize].failures
    }

    fn drop_claims(&mut self, key: PeerKey) {
        let entry = &mut self.sources[key.0 as usize];
        self.picker.peer_gone(key, &entry.has);
        entry.has = PieceSet::new(self.geometry.piece_count());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: PeerKey = PeerKey(0);
    const B: PeerKey = PeerKey(1);
    const C: PeerKey = PeerKey(2);

    fn book(size: u64) -> SourceBook {
        let blocks = PieceSet::new(size.div_ceil(BLOCK_BYTES) as u32);
        SourceBook::new(size, &blocks, vec!["a".into(), "b".into(), "c".into()], 7)
    }

    fn chunks(size: u64, held: &[u32]) -> Holding {
        let mut set = PieceSet::new(chunk_count(size));
        for c in held {
            set.insert(*c);
        }
        Holding::Chunks(set)
    }

    fn deliver(book: &mut SourceBook, key: PeerKey, ranges: &[Range<u64>]) {
        for range in ranges {
            let mut offset = range.start;
            while offset < range.end {
                book.arrived(key, offset);
                offset += BLOCK_BYTES;
            }
        }
    }

    /// Asks `key` for everything it will give and delivers it; returns the ranges asked.
    fn drain(book: &mut SourceBook, key: PeerKey) -> Vec<Range<u64>> {
        let mut asked = Vec::new();
        loop {
            let ranges = book.next(key);
            if ranges.is_empty() {
                return asked;
            }
            deliver(book, key, &ranges);
            asked.extend(ranges);
        }
    }

    #[test]
    fn a_source_that_comes_online_is_ready_at_once_or_its_workers_dial_it_now() {
        let size = 4 * CHUNK_BYTES;
        let names: Vec<String> = (0..MAX_ASKED + 1).map(|i| format!("s{i}")).collect();
        let blocks = PieceSet::new(size.div_ceil(BLOCK_BYTES) as u32);
        let mut book = SourceBook::new(size, &blocks, names, 7);
        let t = Instant::now();
        let first = book.start_turns(t);
        let (s0, t0) = first[0];
        // s0 is out of reach; it gives its turn up to s8 and rests.
        book.gone(s0, "cannot reach");
        assert!(book.yield_turn(s0, t0, t));
        assert!(book.start_turns(t).iter().all(|(k, _)| *k != s0));
        // Online: ready now, not after its rest, its failure forgotten.
        assert!(book.wake("s0"));
        assert_eq!(book.failed_in_a_row(s0), 0);
        book.holds_nothing(PeerKey(1));
        assert!(book.yield_turn(PeerKey(1), first[1].1, t));
        let next: Vec<PeerKey> = book.start_turns(t).into_iter().map(|(k, _)| k).collect();
        assert_eq!(next, vec![s0], "first in line, at the same instant");
        // One with a turn, waiting out a backoff: its workers are told once.
        let (s2, _) = first[2];
        book.gone(s2, "cannot reach");
        assert!(!book.take_woken(s2));
        assert!(book.wake("s2"));
        assert!(book.take_woken(s2));
        assert!(!book.take_woken(s2), "once");
        // Holding, banned or unknown: nothing to do.
        book.holding(PeerKey(3), chunks(size, &[0]));
        assert!(!book.wake("s3"));
        book.ban(PeerKey(4), "bad block");
        assert!(!book.wake("s4"));
        assert!(!book.wake("nobody"));
    }

    #[test]
    fn the_sources_are_out_of_reach_once_each_left_failed_twice_in_a_row() {
        let size = 4 * CHUNK_BYTES;
        let mut book = book(size);
        assert!(!book.none_reachable(), "none asked yet");
        for key in [A, B, C] {
            book.gone(key, "cannot reach");
        }
        assert!(!book.none_reachable(), "once each");
        book.gone(A, "cannot reach");
        book.gone(B, "cannot reach");
        assert!(!book.none_reachable(), "C failed once only");
        // C answers (holding nothing yet): reachable, its failures start over.
        book.gone(C, "cannot reach");
        book.holds_nothing(C);
        assert!(!book.none_reachable());
        book.gone(C, "reset");
        assert!(!book.none_reachable(), "one failure since it answered");
        book.gone(C, "reset");
        assert!(book.none_reachable());
        // A banned or withdrawn source does not count; nobody left is `none_left`, not this.
        let mut book = super::tests::book(size);
        book.ban(A, "bad block");
        book.withdraw(B);
        book.gone(C, "cannot reach");
        assert!(!book.none_reachable());
        book.gone(C, "cannot reach");
        assert!(book.none_reachable());
        book.ban(C, "bad block");
        assert!(!book.none_reachable());
        assert!(book.none_left());
    }

    #[test]
    fn requests_are_one_chunk_of_contiguous_blocks_and_only_of_chunks_the_source_holds() {
        let size = 4 * CHUNK_BYTES + 1000;
        let mut book = book(size);
        assert!(book.next(A).is_empty(), "not asked what it holds yet");
        book.holding(A, chunks(size, &[1, 2]));
        let first = book.next(A);
        let second = book.next(A);
        assert_eq!(first.len(), 1);
        assert_eq!(second.len(), 1);
        let mut starts = [first[0].start, second[0].start];
        starts.sort();
        assert_eq!(starts, [CHUNK_BYTES, 2 * CHUNK_BYTES]);
        assert_eq!(first[0].end - first[0].start, CHUNK_BYTES);
        // Nothing else held there: nothing more to ask (outstanding blocks are not handed out twice before endgame).
        assert!(book.next(A).is_empty());
        assert!(!book.is_complete());
        // The last chunk is short: a request for it ends at the file's end.
        book.holding(B, Holding::Whole);
        let asked = drain(&mut book, B);
        assert!(asked.iter().all(|r| r.end <= size));
        assert!(asked.iter().any(|r| r.end == size));
    }

    #[test]
    fn requests_under_way_to_one_source_at_once_ask_for_different_chunks() {
        let size = 4 * CHUNK_BYTES;
        let mut book = book(size);
        book.holding(A, Holding::Whole);
        let asked: Vec<Vec<Range<u64>>> = (0..REQUESTS_PER_SOURCE).map(|_| book.next(A)).collect();
        for (i, ranges) in asked.iter().enumerate() {
            assert_eq!(ranges.len(), 1, "one whole chunk each: {asked:?}");
            assert_eq!(ranges[0].end - ranges[0].start, CHUNK_BYTES);
            for other in &asked[i + 1..] {
                assert_ne!(ranges[0], other[0], "{asked:?}");
            }
        }
        // The second delivered before the first: both kept.
        for ranges in asked.iter().rev() {
            deliver(&mut book, A, ranges);
        }
        assert_eq!(book.chunks_done(), REQUESTS_PER_SOURCE as u32);
    }

    #[test]
    fn rarest_chunks_go_first_and_a_whole_file_completes_from_several_sources() {
        let size = 4 * CHUNK_BYTES;
        let mut book = book(size);
        book.holding(A, Holding::Whole);
        book.holding(B, chunks(size, &[0, 1, 2]));
        // Chunk 3 is held by A alone: A is asked for it first.
        let rarest = book.next(A);
        assert_eq!(rarest, vec![3 * CHUNK_BYTES..4 * CHUNK_BYTES]);
        deliver(&mut book, A, &rarest);
        drain(&mut book, B);
        drain(&mut book, A);
        assert!(book.is_complete());
        let received = book.received();
        assert_eq!(received[0].1 + received[1].1, size);
        assert!(received[1].1 > 0, "B gave some: {received:?}");
    }

    #[test]
    fn a_source_failing_verification_is_banned_and_its_blocks_go_elsewhere() {
        let size = 2 * CHUNK_BYTES;
        let mut book = book(size);
        book.holding(A, Holding::Whole);
        book.holding(B, Holding::Whole);
        let asked = book.next(A);
        // Two blocks arrive, then one fails verification.
        book.arrived(A, asked[0].start);
        book.arrived(A, asked[0].start + BLOCK_BYTES);
        book.ban(A, "bad block");
        assert!(book.next(A).is_empty());
        // A's word no longer counts: saying it holds everything again changes nothing.
        book.holding(A, Holding::Whole);
        assert!(book.next(A).is_empty());
        assert!(matches!(book.state(A), SourceState::Banned(_)));
        drain(&mut book, B);
        assert!(book.is_complete());
        assert_eq!(
            book.received()[0].1,
            2 * BLOCK_BYTES,
            "what A gave verified is kept"
        );
        assert!(!book.none_left());
        book.ban(B, "x");
        book.ban(C, "y");
        assert!(book.none_left());
        assert_eq!(book.failures().len(), 3);
    }

    #[test]
    fn at_most_max_asked_sources_are_asked_at_once_and_one_with_nothing_for_us_rests_while_another_asks()
     {
        let size = 4 * CHUNK_BYTES;
        let names: Vec<String> = (0..MAX_ASKED + 2).map(|i| format!("s{i}")).collect();
        let blocks = PieceSet::new(size.div_ceil(BLOCK_BYTES) as u32);
        let mut book = SourceBook::new(size, &blocks, names, 7);
        let t = Instant::now();
        let secs = |n: u64| t + Duration::from_secs(n);
        let first = book.start_turns(t);
        let keys: Vec<PeerKey> = first.iter().map(|(k, _)| *k).collect();
        assert_eq!(
            keys,
            (0..MAX_ASKED as u64).map(PeerKey).collect::<Vec<_>>(),
            "in the order named"
        );
        assert!(book.start_turns(t).is_empty(), "no turn free");
        let [(s0, t0), (s1, t1), (s2, t2), (s3, t3)] = [first[0], first[1], first[2], first[3]];
        // s0 holds chunks we need: it keeps its turn. s1 holds nothing: it gives it up to those never asked.
        book.holding(s0, chunks(size, &[0, 1]));
        assert!(!book.yield_turn(s0, t0, t));
        book.holds_nothing(s1);
        assert!(book.yield_turn(s1, t1, t));
        assert!(!book.has_turn(s1, t1), "its workers end");
        assert!(!book.yield_turn(s1, t1, t), "once");
        // s2's connection failed: it gives its turn up too.
        book.gone(s2, "refused");
        assert_eq!(book.failed_in_a_row(s2), 1);
        assert!(book.yield_turn(s2, t2, t));
        let next: Vec<PeerKey> = book.start_turns(t).into_iter().map(|(k, _)| k).collect();
        assert_eq!(
            next,
            vec![PeerKey(MAX_ASKED as u64), PeerKey(MAX_ASKED as u64 + 1)]
        );
        // s0's chunks all fetched: nothing more for us, but s1 and s2 rest a second: nobody is ready, s0 keeps
        // asking; a second later it gives its turn to s1, waiting longest.
        drain(&mut book, s0);
        assert!(!book.yield_turn(s0, t0, t), "the others rest");
        assert!(book.start_turns(t).is_empty());
        assert!(book.yield_turn(s0, t0, secs(1)));
        let again = book.start_turns(secs(1));
        assert_eq!(again.len(), 1);
        let (s1_again, t1_again) = again[0];
        assert_eq!(s1_again, s1);
        assert!(t1_again > t2, "a new turn");
        // s1 has nothing again: its second rest in a row is twice as long (2 s).
        book.holds_nothing(s1);
        assert!(book.yield_turn(s1, t1_again, secs(1)), "s2 is ready");
        assert_eq!(book.start_turns(secs(1)).first().map(|(k, _)| *k), Some(s2));
        book.ban(s3, "bad block");
        assert!(!book.has_turn(s3, t3), "a banned source frees its turn");
        let half = Duration::from_millis(500);
        assert!(
            book.start_turns(secs(1) + half).is_empty(),
            "s0 rests until 2 s, s1 until 3 s"
        );
        let later: Vec<PeerKey> = book
            .start_turns(secs(2))
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        assert_eq!(later, vec![s0]);
        // With nobody ready a source keeps its turn, even with nothing for us (it may hold more later).
        let (s4, t4) = first[4];
        book.holds_nothing(s4);
        assert!(
            !book.yield_turn(s4, t4, secs(2)),
            "s1, the only one waiting, rests"
        );
        assert!(book.yield_turn(s4, t4, secs(3)));
        let (s5, t5) = first[5];
        book.withdraw(s5);
        assert!(!book.has_turn(s5, t5), "a withdrawn source frees its turn");
    }

    #[test]
    fn sources_join_and_leave_while_the_download_runs() {
        let size = 3 * CHUNK_BYTES;
        let mut book = book(size);
        assert_eq!(book.add("b"), None, "a source already");
        let d = book.add("d").expect("a new source");
        assert_eq!(d, PeerKey(3));
        assert_eq!(book.add("d"), None);
        book.holding(A, Holding::Whole);
        let asked = book.next(A);
        book.arrived(A, asked[0].start);
        // A leaves the share mid-chunk: the rest of its chunk goes to the newcomer, its word no longer counts.
        assert_eq!(
            book.not_named(&["b".into(), "c".into(), "d".into()]),
            vec![A]
        );
        book.withdraw(A);
        assert_eq!(book.state(A), &SourceState::Withdrawn);
        book.holding(A, Holding::Whole);
        assert!(book.next(A).is_empty());
        book.holding(d, Holding::Whole);
        let to_d = drain(&mut book, d);
        assert!(
            to_d.iter()
                .any(|r| r.start <= asked[0].start + BLOCK_BYTES
                    && asked[0].start + BLOCK_BYTES < r.end),
            "A's outstanding blocks were asked of d: {to_d:?}"
        );
        assert!(book.is_complete());
        assert!(book.failures().is_empty(), "leaving is no failure");
        // Back in the share: asked again from scratch, under a new key (A's workers still running end); a banned
        // source is not.
        let a = book.add("a").expect("back");
        assert_eq!((a, book.state(a)), (PeerKey(4), &SourceState::Unknown));
        assert_eq!(book.state(A), &SourceState::Withdrawn);
        assert_eq!(book.add("a"), None);
        book.ban(B, "bad block");
        assert_eq!(book.add("b"), None);
        for key in [a, C, d] {
            book.withdraw(key);
        }
        assert!(book.none_left());
    }

    #[test]
    fn a_source_lying_about_its_chunks_is_banned_and_the_chunk_is_asked_of_another() {
        let size = 2 * CHUNK_BYTES;
        let mut book = book(size);
        // B claims both chunks; C holds chunk 1 truly.
        book.holding(B, Holding::Whole);
        book.holding(C, chunks(size, &[1]));
        let asked = book.next(B);
        // B answers "not held" for what it claimed: the claim was a lie.
        book.ban(B, "refused a chunk it said it held");
        drain(&mut book, C);
        assert_eq!(book.chunks_done(), 1);
        assert!(!book.is_complete());
        // Only an honest source holding chunk 0 finishes the file.
        book.holding(A, Holding::Whole);
        let again = drain(&mut book, A);
        assert!(
            again
                .iter()
                .any(|r| r.start <= asked[0].start && asked[0].start < r.end)
        );
        assert!(book.is_complete());
    }

    #[test]
    fn a_vanished_source_loses_its_claims_and_is_asked_again_once_back() {
        let size = 3 * CHUNK_BYTES;
        let mut book = book(size);
        book.holding(A, Holding::Whole);
        let asked = book.next(A);
        book.arrived(A, asked[0].start);
        // A vanishes mid-chunk: the rest of the chunk is free again, for B.
        book.gone(A, "connection reset");
        assert!(book.next(A).is_empty());
        book.holding(B, chunks(size, &[0, 1, 2]));
        let to_b = book.next(B);
        assert!(
            to_b.iter().any(|r| r.start == asked[0].start + BLOCK_BYTES),
            "the chunk resumes after what arrived: {to_b:?}"
        );
        for range in to_b {
            book.release(B, range);
        }
        // A comes back and says what it holds: asked again.
        book.holding(A, Holding::Whole);
        drain(&mut book, A);
        assert!(book.is_complete());
    }

    #[test]
    fn blocks_held_before_count_and_a_chunk_held_in_part_is_fetched_whole() {
        let size = 2 * CHUNK_BYTES;
        let mut blocks = PieceSet::new((size / BLOCK_BYTES) as u32);
        for b in 0..BLOCKS_PER_CHUNK as u32 + 3 {
            blocks.insert(b);
        }
        let mut book = SourceBook::new(size, &blocks, vec!["a".into()], 1);
        assert_eq!(book.chunks_done(), 1);
        book.holding(A, Holding::Whole);
        assert_eq!(book.next(A), vec![CHUNK_BYTES..2 * CHUNK_BYTES]);
        // A block it was not asked for, an unaligned offset or one past the end is not kept.
        assert!(!book.arrived(A, 0));
        assert!(!book.arrived(A, CHUNK_BYTES + 1));
        assert!(!book.arrived(A, size));
    }
}
