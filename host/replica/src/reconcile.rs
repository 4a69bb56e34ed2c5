//! Set reconciliation as an I/O-free session over an [`ItemSource`]: coded symbols first
//! ([`coded`]: a rateless IBLT of the whole set, ~90 bytes a difference, one or two round
//! trips), then, where the differences are too many for them, range-based reconciliation: the
//! negentropy protocol (Doug Hoyte's v1 message format) with range fingerprints from
//! precomputed sums.
//!
//! The opening (`Mode::Symbols`) carries the set's fingerprint, its first coded symbols and
//! the counts of the next ones; the responder answers `Mode::Decoded` (the differences, checked
//! against the fingerprint), `Mode::MoreSymbols` (one batch sized by its estimate), or
//! negentropy's split of the whole set.
//!
//! Items are `(timestamp, op id)` (the timestamp is the op's whole stamp, see
//! `replica::item_of`), ordered by timestamp then id. A message is a version byte then ranges,
//! each `bound | mode | payload`: *skip*, *fingerprint* (16 bytes: the hash of the 256-bit sum
//! of the range's ids and their count) or *id list*. A range whose fingerprints differ is split
//! into 16 buckets, small ranges are sent as id lists: about log16(n) rounds, bytes in
//! proportion to the differences.
//!
//! Ours besides, in negentropy's last round of a differing range: the initiator lists a small range by
//! id prefixes, and the responder answers a list with the differences only, not an echo of
//! every id it holds there (modes 3 and 4, `Mode::Differences` and `Mode::PrefixList`).
//!
//! Differences from the `negentropy` crate 0.5 (see docs/architecture.md for why we do not use
//! it): BLAKE3 instead of SHA-256 for fingerprints (not wire-compatible with Nostr relays, which
//! we never talk to), fingerprints from prefix sums in O(1) instead of a scan of the range, and
//! a decoder that bounds every count by the bytes present (the crate's
//! `HashSet::with_capacity(num_ids)` takes an attacker's count as an allocation size, and its
//! varint decoder overflows silently).

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::OnceLock;

pub mod coded;
mod item;

pub use item::Item;

use crate::op::OpId;
use crate::wire::{Reader, WireError, put_varint};
use coded::{
    Decoder, Head, KEPT_SYMBOLS, MAX_SYMBOLS, OPENING_SYMBOLS, SYMBOL_MAX_WIRE, Symbol, unzigzag,
    zigzag,
};

/// Negentropy protocol version 1.
pub const PROTOCOL_VERSION: u8 = 0x61;
pub const FINGERPRINT_LEN: usize = 16;
const ID_LEN: usize = 32;
/// The bytes of an id a prefix list carries: half an id. Two ids sharing 16 bytes would be
/// taken for one (neither reconciled by that range); finding such a pair takes ~2^64 hashes.
pub const PREFIX_LEN: usize = 16;
pub type Prefix = [u8; PREFIX_LEN];

fn prefix(id: &OpId) -> Prefix {
    id.0[..PREFIX_LEN]
        .try_into()
        .expect("an id is longer than a prefix")
}
/// A mismatched range is split into this many sub-ranges (negentropy's choice: log16 rounds).
const BUCKETS: usize = 16;
/// Ranges smaller than two buckets' worth are sent as id lists rather than split again.
const DOUBLE_BUCKETS: usize = 2 * BUCKETS;
/// Largest reconciliation message we accept, and the default frame limit for what we send: it
/// fits one `allpeers/sync/1` frame with room for the header. A thousand differences among a
/// million items take ~800 KB of id lists in the last round; 1 MiB keeps that round in one
/// message (fewer round trips), and a session holds at most a frame each way.
pub const MAX_MESSAGE_BYTES: usize = 1024 * 1024;
/// The smallest frame limit that still leaves room for a full 16-bucket split (as negentropy).
pub const MIN_FRAME_LIMIT: usize = 4096;
/// Bytes kept free under the frame limit for the closing fingerprint range.
const FRAME_RESERVE: usize = 200;

/// A range bound: a timestamp and an id prefix (the rest of the id taken as zeros).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Bound {
    item: Item,
    prefix_len: usize,
}

impl Bound {
    fn infinity() -> Bound {
        Bound {
            item: Item {
                timestamp: u64::MAX,
                id: OpId::ZERO,
            },
            prefix_len: 0,
        }
    }
}

pub type Fingerprint = [u8; FINGERPRINT_LEN];

/// The storage side of reconciliation: items sorted ascending, and range fingerprints.
pub trait ItemSource {
    fn len(&self) -> usize;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The `i`-th item; `i < len()`.
    fn item(&self, i: usize) -> Item;
    /// The first index `>= from` whose item is not below `bound`.
    fn lower_bound(&self, from: usize, bound: &Item) -> usize;
    /// The sum of the ids of items `begin..end`, from precomputed sums: O(1), not a scan.
    fn sum(&self, begin: usize, end: usize) -> Sum;
    /// The fingerprint of items `begin..end`.
    fn fingerprint(&self, begin: usize, end: usize) -> Fingerprint {
        self.sum(begin, end).fingerprint(end - begin)
    }
    /// Coded symbols `start..start + count` of the whole set (see [`coded`]): the first ones
    /// kept up to date, the rest by a scan ([`coded::encode`]).
    fn symbols(&self, start: usize, count: usize) -> Vec<Symbol>;
    /// The counts of symbols `start..start + n` (how many items map to each).
    fn counts(&self, start: usize, n: usize) -> Vec<i64>;
    /// Whether the set holds `item`.
    fn contains(&self, item: &Item) -> bool {
        let i = self.lower_bound(0, item);
        i < self.len() && self.item(i) == *item
    }
}

/// A 256-bit little-endian sum of ids, modulo 2^256 (negentropy's accumulator).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sum([u64; 4]);

impl Sum {
    pub fn add(&self, id: &OpId) -> Sum {
        let mut out = [0u64; 4];
        let mut carry = false;
        for (i, word) in out.iter_mut().enumerate() {
            let limb = u64::from_le_bytes(id.0[i * 8..i * 8 + 8].try_into().expect("8 bytes"));
            let (s1, c1) = self.0[i].overflowing_add(limb);
            let (s2, c2) = s1.overflowing_add(u64::from(carry));
            *word = s2;
            carry = c1 || c2;
        }
        Sum(out)
    }

    pub fn sub(&self, other: &Sum) -> Sum {
        let mut out = [0u64; 4];
        let mut borrow = false;
        for (i, word) in out.iter_mut().enumerate() {
            let (d1, b1) = self.0[i].overflowing_sub(other.0[i]);
            let (d2, b2) = d1.overflowing_sub(u64::from(borrow));
            *word = d2;
            borrow = b1 || b2;
        }
        Sum(out)
    }

    pub fn fingerprint(&self, count: usize) -> Fingerprint {
        let mut h = blake3::Hasher::new();
        for word in self.0 {
            h.update(&word.to_le_bytes());
        }
        let mut n = Vec::with_capacity(10);
        put_varint(&mut n, count as u64);
        h.update(&n);
        let mut out = [0u8; FINGERPRINT_LEN];
        out.copy_from_slice(&h.finalize().as_bytes()[..FINGERPRINT_LEN]);
        out
    }
}

/// The live items of a replica: a sorted set, with a sorted array and prefix sums built once
/// after each change (O(n)), so every fingerprint during a session is a subtraction, and the
/// first coded symbols kept up to date item by item.
#[derive(Debug, Default)]
pub struct Items {
    set: BTreeSet<Item>,
    head: Head,
    snapshot: OnceLock<Snapshot>,
}

#[derive(Debug)]
struct Snapshot {
    items: Vec<Item>,
    /// `sums[i]` is the sum of the first `i` ids.
    sums: Vec<Sum>,
}

impl Items {
    pub fn insert(&mut self, item: Item) {
        if self.set.insert(item) {
            self.head.insert(&item);
            self.snapshot.take();
        }
    }

    pub fn remove(&mut self, item: &Item) {
        if self.set.remove(item) {
            self.head.remove(item);
            self.snapshot.take();
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = &Item> {
        self.set.iter()
    }

    fn snapshot(&self) -> &Snapshot {
        self.snapshot.get_or_init(|| {
            let items: Vec<Item> = self.set.iter().copied().collect();
            let mut sums = Vec::with_capacity(items.len() + 1);
            let mut acc = Sum::default();
            sums.push(acc);
            for item in &items {
                acc = acc.add(&item.id);
                sums.push(acc);
            }
            Snapshot { items, sums }
        })
    }
}

impl FromIterator<Item> for Items {
    fn from_iter<I: IntoIterator<Item = Item>>(iter: I) -> Items {
        let set: BTreeSet<Item> = iter.into_iter().collect();
        let mut head = Head::default();
        for item in &set {
            head.insert(item);
        }
        Items {
            set,
            head,
            snapshot: OnceLock::new(),
        }
    }
}

impl ItemSource for Items {
    fn len(&self) -> usize {
        self.set.len()
    }

    fn item(&self, i: usize) -> Item {
        self.snapshot().items[i]
    }

    fn lower_bound(&self, from: usize, bound: &Item) -> usize {
        let items = &self.snapshot().items;
        let from = from.min(items.len());
        from + items[from..].partition_point(|item| item < bound)
    }

    fn sum(&self, begin: usize, end: usize) -> Sum {
        let sums = &self.snapshot().sums;
        sums[end].sub(&sums[begin])
    }

    fn symbols(&self, start: usize, count: usize) -> Vec<Symbol> {
        match self.head.symbols().get(start..start + count) {
            Some(kept) => kept.to_vec(),
            None => coded::encode(&self.snapshot().items, start, count),
        }
    }

    fn counts(&self, start: usize, n: usize) -> Vec<i64> {
        match self.head.symbols().get(start..start + n) {
            Some(kept) => kept.iter().map(|s| s.count).collect(),
            None => coded::counts(&self.snapshot().items, start, n),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReconError {
    #[error("malformed reconciliation message: {0}")]
    Wire(#[from] WireError),
    #[error("reconciliation message of {0} bytes is above the limit of {MAX_MESSAGE_BYTES}")]
    TooLarge(usize),
    #[error("empty reconciliation message")]
    Empty,
    #[error("protocol version {0:#x} is not negentropy's (0x60..=0x6f)")]
    NotNegentropy(u8),
    #[error("unsupported negentropy version {0:#x}")]
    UnsupportedVersion(u8),
    #[error("unknown range mode {0}")]
    Mode(u64),
    #[error("range bounds go backwards")]
    BoundOrder,
    #[error("a bound's id prefix is longer than an id")]
    PrefixLength,
    #[error("an id list claims more ids than the message holds")]
    IdCount,
    #[error("the initiator got a message meant for a responder, or the reverse")]
    Role,
    #[error("frame limit {0} is below the minimum of {MIN_FRAME_LIMIT}")]
    FrameLimit(usize),
    #[error("coded symbols must cover the whole set, alone in their message")]
    SymbolRange,
    #[error("a batch of coded symbols does not continue the last one")]
    SymbolOrder,
    #[error("more coded symbols than the message holds or a session allows ({MAX_SYMBOLS})")]
    SymbolCount,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Skip = 0,
    Fingerprint = 1,
    IdList = 2,
    /// Ours (not negentropy v1's): the responder's answer to an id list, only the differences —
    /// the ids it holds that the list lacks, then the prefixes of the listed ids it lacks —
    /// where v1 echoes every id it holds in the range.
    Differences = 3,
    /// Ours: the initiator's id list of a small range as id prefixes ([`PREFIX_LEN`] bytes):
    /// the responder only compares them with its own and answers with [`Mode::Differences`],
    /// and the initiator knows the whole ids behind the prefixes it sent.
    PrefixList = 4,
    /// Ours: coded symbols of the whole set (see [`coded`]), after its fingerprint: the
    /// initiator's opening, and each batch the responder asks for.
    Symbols = 5,
    /// Ours: the responder decoded the symbols: the ids it holds that the initiator lacks, then
    /// the ids the initiator holds that it lacks (whole: the initiator has no index by prefix).
    Decoded = 6,
    /// Ours: the responder asks for symbols `start..start + count` (it could not decode yet).
    MoreSymbols = 7,
}

/// A session asks for symbols at most this many times (the opening included) before it turns
/// to negentropy's fingerprints: the estimate after the first batch nearly always suffices.
const MAX_SYMBOL_BATCHES: usize = 3;

/// One side of a reconciliation. The initiator calls [`Self::initiate`] then
/// [`Self::reconcile`] on each reply until it returns `None`; the responder answers each
/// message with [`Self::respond`]. Neither holds items: pass the same source each time.
#[derive(Debug)]
pub struct Reconciler {
    frame_limit: usize,
    initiator: bool,
    last_timestamp_in: u64,
    last_timestamp_out: u64,
    /// Ids already reported in `have` or `need`: a frame cut short makes the peer split a range
    /// again whose id lists we already compared (as in the reference implementation), and the
    /// caller should hear of each difference once.
    reported: HashSet<OpId>,
    /// The responder's coded symbols so far (the peer's minus ours), while a session uses them.
    coded: Option<Decoder>,
}

/// A parsed range, exposed for the fuzz target and tests.
#[derive(Debug, PartialEq)]
pub enum Range {
    Skip {
        upper: (u64, Vec<u8>),
    },
    Fingerprint {
        upper: (u64, Vec<u8>),
        fingerprint: Fingerprint,
    },
    IdList {
        upper: (u64, Vec<u8>),
        ids: Vec<OpId>,
    },
    Differences {
        upper: (u64, Vec<u8>),
        /// What the responder holds and the list lacked.
        theirs: Vec<OpId>,
        /// What the list held and the responder lacks, by prefix.
        missing: Vec<Prefix>,
    },
    PrefixList {
        upper: (u64, Vec<u8>),
        prefixes: Vec<Prefix>,
    },
    Symbols {
        upper: (u64, Vec<u8>),
        fingerprint: Fingerprint,
        start: u64,
        symbols: Vec<Symbol>,
        /// The counts of the symbols after these (the opening's, for the estimate).
        counts: Vec<i64>,
    },
    Decoded {
        upper: (u64, Vec<u8>),
        theirs: Vec<OpId>,
        missing: Vec<OpId>,
    },
    MoreSymbols {
        upper: (u64, Vec<u8>),
        start: u64,
        count: u64,
    },
}

/// Decodes a whole message without a session (for the fuzz target and diagnostics).
pub fn decode_message(message: &[u8]) -> Result<Vec<Range>, ReconError> {
    let mut r = Reconciler::new(MAX_MESSAGE_BYTES, false)?;
    let mut input = r.open(message)?;
    let mut ranges = Vec::new();
    let mut prev = Bound {
        item: Item {
            timestamp: 0,
            id: OpId::ZERO,
        },
        prefix_len: 0,
    };
    while !input.is_empty() {
        let bound = r.decode_bound(&mut input)?;
        if bound.item < prev.item {
            return Err(ReconError::BoundOrder);
        }
        prev = bound;
        let upper = (
            bound.item.timestamp,
            bound.item.id.0[..bound.prefix_len].to_vec(),
        );
        ranges.push(match decode_mode(&mut input)? {
            Mode::Skip => Range::Skip { upper },
            Mode::Fingerprint => Range::Fingerprint {
                upper,
                fingerprint: input.array()?,
            },
            Mode::IdList => Range::IdList {
                upper,
                ids: decode_ids(&mut input)?,
            },
            Mode::Differences => Range::Differences {
                upper,
                theirs: decode_ids(&mut input)?,
                missing: decode_prefixes(&mut input)?,
            },
            Mode::PrefixList => Range::PrefixList {
                upper,
                prefixes: decode_prefixes(&mut input)?,
            },
            Mode::Symbols => {
                let fingerprint = input.array()?;
                let (start, symbols, counts) = decode_symbols(&mut input)?;
                Range::Symbols {
                    upper,
                    fingerprint,
                    start: start as u64,
                    symbols,
                    counts,
                }
            }
            Mode::Decoded => Range::Decoded {
                upper,
                theirs: decode_ids(&mut input)?,
                missing: decode_ids(&mut input)?,
            },
            Mode::MoreSymbols => {
                let (start, count) = decode_symbol_span(&mut input)?;
                Range::MoreSymbols {
                    upper,
                    start: start as u64,
                    count: count as u64,
                }
            }
        });
    }
    Ok(ranges)
}

fn decode_mode(input: &mut Reader<'_>) -> Result<Mode, ReconError> {
    match input.varint()? {
        0 => Ok(Mode::Skip),
        1 => Ok(Mode::Fingerprint),
        2 => Ok(Mode::IdList),
        3 => Ok(Mode::Differences),
        4 => Ok(Mode::PrefixList),
        5 => Ok(Mode::Symbols),
        6 => Ok(Mode::Decoded),
        7 => Ok(Mode::MoreSymbols),
        other => Err(ReconError::Mode(other)),
    }
}

/// A span of symbol indices, `start` and `count`, within [`MAX_SYMBOLS`].
fn decode_symbol_span(input: &mut Reader<'_>) -> Result<(usize, usize), ReconError> {
    let start = input.varint()?;
    let count = input.varint()?;
    match start.checked_add(count) {
        Some(end) if end <= MAX_SYMBOLS as u64 => Ok((start as usize, count as usize)),
        _ => Err(ReconError::SymbolCount),
    }
}

/// Symbols `start..` and the counts of the symbols after them (up to [`KEPT_SYMBOLS`]).
type Batch = (usize, Vec<Symbol>, Vec<i64>);

fn decode_symbols(input: &mut Reader<'_>) -> Result<Batch, ReconError> {
    let (start, count) = decode_symbol_span(input)?;
    // The smallest symbol is 49 bytes: bound the count by the bytes present.
    if count > input.remaining() / (SYMBOL_MAX_WIRE - 9) {
        return Err(ReconError::SymbolCount);
    }
    let symbols = (0..count)
        .map(|_| Symbol::decode(input))
        .collect::<Result<_, _>>()?;
    let counted = input.varint()?;
    if counted > KEPT_SYMBOLS.saturating_sub(start + count) as u64 {
        return Err(ReconError::SymbolCount);
    }
    let counts = (0..counted)
        .map(|_| Ok(unzigzag(input.varint()?)))
        .collect::<Result<_, ReconError>>()?;
    Ok((start, symbols, counts))
}

fn put_ids(o: &mut Vec<u8>, ids: &[OpId]) {
    put_varint(o, ids.len() as u64);
    for id in ids {
        o.extend_from_slice(&id.0);
    }
}

fn decode_prefixes(input: &mut Reader<'_>) -> Result<Vec<Prefix>, ReconError> {
    let n = input.varint()?;
    if n > (input.remaining() / PREFIX_LEN) as u64 {
        return Err(ReconError::IdCount);
    }
    (0..n).map(|_| Ok(input.array()?)).collect()
}

fn decode_ids(input: &mut Reader<'_>) -> Result<Vec<OpId>, ReconError> {
    let n = input.varint()?;
    // Bound the count by the bytes present before allocating anything.
    if n > (input.remaining() / ID_LEN) as u64 {
        return Err(ReconError::IdCount);
    }
    (0..n).map(|_| Ok(OpId(input.array()?))).collect()
}

impl Reconciler {
    /// `frame_limit`: the largest message this side writes (at least [`MIN_FRAME_LIMIT`]).
    pub fn new(frame_limit: usize, initiator: bool) -> Result<Reconciler, ReconError> {
        if !(MIN_FRAME_LIMIT..=MAX_MESSAGE_BYTES).contains(&frame_limit) {
            return Err(ReconError::FrameLimit(frame_limit));
        }
        Ok(Reconciler {
            frame_limit,
            initiator,
            last_timestamp_in: 0,
            last_timestamp_out: 0,
            reported: HashSet::new(),
            coded: None,
        })
    }

    /// Whether this (responding) side holds a session's symbols between batches: up to
    /// [`MAX_SYMBOLS`] of them (~1.1 MB).
    pub fn holds_symbols(&self) -> bool {
        self.coded.is_some()
    }

    /// Lets go of the symbols held (a bound on what one peer's sessions may make us hold): the
    /// session's next batch is answered with negentropy's fingerprints instead.
    pub fn drop_symbols(&mut self) {
        self.coded = None;
    }

    /// The initiator's first message: the whole set's fingerprint and first coded symbols
    /// (kept up to date, no scan); a set too small for that is listed by prefixes at once.
    pub fn initiate(&mut self, items: &impl ItemSource) -> Result<Vec<u8>, ReconError> {
        if !self.initiator {
            return Err(ReconError::Role);
        }
        self.last_timestamp_out = 0;
        let mut out = vec![PROTOCOL_VERSION];
        if items.len() < DOUBLE_BUCKETS {
            out.extend(self.split_range(items, 0, items.len(), Bound::infinity()));
        } else {
            out.extend(self.symbols_range(items, 0, OPENING_SYMBOLS));
        }
        Ok(out)
    }

    /// A range over the whole set carrying its fingerprint, symbols `start..start + count` and
    /// the counts of the symbols after them up to [`KEPT_SYMBOLS`].
    fn symbols_range(&mut self, items: &impl ItemSource, start: usize, count: usize) -> Vec<u8> {
        let mut o = self.encode_bound(&Bound::infinity());
        put_varint(&mut o, Mode::Symbols as u64);
        o.extend(items.fingerprint(0, items.len()));
        put_varint(&mut o, start as u64);
        put_varint(&mut o, count as u64);
        for symbol in items.symbols(start, count) {
            symbol.encode(&mut o);
        }
        let end = start + count;
        let counts = items.counts(end, KEPT_SYMBOLS.saturating_sub(end));
        put_varint(&mut o, counts.len() as u64);
        for n in counts {
            put_varint(&mut o, zigzag(n));
        }
        o
    }

    /// The responder's answer to one message.
    pub fn respond(
        &mut self,
        items: &impl ItemSource,
        message: &[u8],
    ) -> Result<Vec<u8>, ReconError> {
        if self.initiator {
            return Err(ReconError::Role);
        }
        self.process(items, message, &mut Vec::new(), &mut Vec::new())
    }

    /// The initiator's handling of a reply: ids we have that they lack go to `have`, ids they
    /// have that we lack to `need`. `None`: reconciliation is complete.
    pub fn reconcile(
        &mut self,
        items: &impl ItemSource,
        message: &[u8],
        have: &mut Vec<OpId>,
        need: &mut Vec<OpId>,
    ) -> Result<Option<Vec<u8>>, ReconError> {
        if !self.initiator {
            return Err(ReconError::Role);
        }
        let out = self.process(items, message, have, need)?;
        Ok((out.len() > 1).then_some(out))
    }

    /// Checks the size and the version byte; returns the ranges' bytes.
    fn open<'a>(&mut self, message: &'a [u8]) -> Result<Reader<'a>, ReconError> {
        if message.len() > MAX_MESSAGE_BYTES {
            return Err(ReconError::TooLarge(message.len()));
        }
        let (&version, rest) = message.split_first().ok_or(ReconError::Empty)?;
        if !(0x60..=0x6f).contains(&version) {
            return Err(ReconError::NotNegentropy(version));
        }
        if version != PROTOCOL_VERSION {
            return Err(ReconError::UnsupportedVersion(version));
        }
        self.last_timestamp_in = 0;
        Ok(Reader::new(rest))
    }

    fn process(
        &mut self,
        items: &impl ItemSource,
        message: &[u8],
        have: &mut Vec<OpId>,
        need: &mut Vec<OpId>,
    ) -> Result<Vec<u8>, ReconError> {
        let mut input = self.open(message)?;
        self.last_timestamp_out = 0;
        let mut full = vec![PROTOCOL_VERSION];
        let size = items.len();
        let mut prev_bound = Bound {
            item: Item {
                timestamp: 0,
                id: OpId::ZERO,
            },
            prefix_len: 0,
        };
        let mut prev_index = 0;
        let mut skip = false;
        while !input.is_empty() {
            let mut o = Vec::new();
            let bound = self.decode_bound(&mut input)?;
            if bound.item < prev_bound.item {
                return Err(ReconError::BoundOrder);
            }
            let mode = decode_mode(&mut input)?;
            let lower = prev_index;
            let mut upper = items.lower_bound(prev_index, &bound.item);
            match mode {
                Mode::Skip => skip = true,
                Mode::Fingerprint => {
                    let theirs: Fingerprint = input.array()?;
                    if theirs == items.fingerprint(lower, upper) {
                        skip = true;
                    } else {
                        self.flush_skip(&mut skip, &prev_bound, &mut o);
                        o.extend(self.split_range(items, lower, upper, bound));
                    }
                }
                Mode::IdList if self.initiator => {
                    let ids = decode_ids(&mut input)?;
                    let mut theirs: HashSet<OpId> = ids.iter().copied().collect();
                    for i in lower..upper {
                        let id = items.item(i).id;
                        if !theirs.remove(&id) && self.reported.insert(id) {
                            have.push(id);
                        }
                    }
                    skip = true;
                    // In the peer's order, its items' (by stamp): a fresh replica then
                    // fetches a share's ops in the order they were made (see `item_of`).
                    need.extend(
                        ids.into_iter()
                            .filter(|id| theirs.contains(id) && self.reported.insert(*id)),
                    );
                }
                Mode::IdList | Mode::PrefixList if !self.initiator => {
                    // A whole-id list (negentropy v1's) is compared as its prefixes.
                    let listed: Vec<Prefix> = if mode == Mode::IdList {
                        decode_ids(&mut input)?.iter().map(prefix).collect()
                    } else {
                        decode_prefixes(&mut input)?
                    };
                    self.flush_skip(&mut skip, &prev_bound, &mut o);
                    let range = (lower, &mut upper, bound);
                    self.answer(items, &mut full, &mut o, range, &listed);
                }
                // (An id list at the initiator is the first arm's.) Prefix lists go to responders.
                Mode::IdList | Mode::PrefixList => return Err(ReconError::Role),
                Mode::Symbols => {
                    if self.initiator {
                        return Err(ReconError::Role);
                    }
                    let fingerprint: Fingerprint = input.array()?;
                    let (start, theirs, counts) = decode_symbols(&mut input)?;
                    if lower != 0 || bound.item != Bound::infinity().item {
                        return Err(ReconError::SymbolRange);
                    }
                    if fingerprint == items.fingerprint(lower, upper) {
                        self.coded = None;
                        skip = true;
                    } else if start > 0 && self.coded.is_none() {
                        // We let go of this session's symbols (`drop_symbols`): negentropy takes over.
                        self.flush_skip(&mut skip, &prev_bound, &mut o);
                        o.extend(self.split_range(items, lower, upper, bound));
                    } else {
                        let decoder = match self.coded.as_mut() {
                            _ if start == 0 => self.coded.insert(Decoder::default()),
                            Some(decoder) if decoder.len() == start => decoder,
                            _ => return Err(ReconError::SymbolOrder),
                        };
                        let end = start + theirs.len();
                        let ours = items.counts(end, counts.len());
                        let counts = counts.iter().zip(&ours).map(|(a, b)| a - b).collect();
                        decoder.extend(&theirs, &items.symbols(start, theirs.len()), counts);
                        self.flush_skip(&mut skip, &prev_bound, &mut o);
                        let used = full.len() + o.len();
                        o.extend(self.answer_symbols(items, fingerprint, used, bound));
                    }
                }
                Mode::MoreSymbols => {
                    if !self.initiator {
                        return Err(ReconError::Role);
                    }
                    let (start, count) = decode_symbol_span(&mut input)?;
                    if lower != 0 || bound.item != Bound::infinity().item {
                        return Err(ReconError::SymbolRange);
                    }
                    // As many as our frame holds; the responder asks again if it needs more.
                    let room = (self.frame_limit - FRAME_RESERVE).saturating_sub(full.len() + 64);
                    let count = count.min(room / SYMBOL_MAX_WIRE);
                    o.extend(self.symbols_range(items, start, count));
                }
                Mode::Decoded | Mode::Differences => {
                    if !self.initiator {
                        return Err(ReconError::Role);
                    }
                    let theirs = decode_ids(&mut input)?;
                    // What we hold and they lack: whole ids once decoded from symbols, else the prefixes of the
                    // ids we listed, whose whole ids are ours in the range.
                    let missing: Vec<OpId> = if mode == Mode::Decoded {
                        decode_ids(&mut input)?
                    } else {
                        let prefixes = decode_prefixes(&mut input)?;
                        let ours: HashMap<Prefix, OpId> = (lower..upper)
                            .map(|i| items.item(i).id)
                            .map(|id| (prefix(&id), id))
                            .collect();
                        prefixes
                            .iter()
                            .filter_map(|p| ours.get(p).copied())
                            .collect()
                    };
                    skip = true;
                    need.extend(theirs.into_iter().filter(|id| self.reported.insert(*id)));
                    have.extend(missing.into_iter().filter(|id| self.reported.insert(*id)));
                }
            }
            if self.over_limit(full.len() + o.len()) {
                // Out of room: one fingerprint for everything left, the peer answers it next round.
                let rest = items.fingerprint(upper, size);
                full.extend(self.encode_bound(&Bound::infinity()));
                put_varint(&mut full, Mode::Fingerprint as u64);
                full.extend(rest);
                break;
            }
            full.extend(o);
            prev_index = upper;
            prev_bound = bound;
        }
        Ok(full)
    }

    /// The responder's answer once a batch of symbols is in: the differences if they decoded
    /// (and check out), else a request for more while the estimate is within bounds, else
    /// negentropy's split of the whole set.
    fn answer_symbols(
        &mut self,
        items: &impl ItemSource,
        fingerprint: Fingerprint,
        used: usize,
        bound: Bound,
    ) -> Vec<u8> {
        let decoder = self.coded.as_ref().expect("the caller fed the decoder");
        let mut o = Vec::new();
        if decoder.is_decoded() {
            if let Some((theirs, missing)) = checked_differences(items, decoder, fingerprint) {
                let size = 2 * 10 + ID_LEN * (theirs.len() + missing.len());
                if !self.over_limit(used + size + 2 * ID_LEN) {
                    self.coded = None;
                    o.extend(self.encode_bound(&bound));
                    put_varint(&mut o, Mode::Decoded as u64);
                    put_ids(&mut o, &theirs);
                    put_ids(&mut o, &missing);
                    return o;
                }
            }
        } else if decoder.batches() < MAX_SYMBOL_BATCHES
            && let Some(target) = decoder.wanted()
        {
            let start = decoder.len();
            o.extend(self.encode_bound(&bound));
            put_varint(&mut o, Mode::MoreSymbols as u64);
            put_varint(&mut o, start as u64);
            put_varint(&mut o, (target - start) as u64);
            return o;
        }
        self.coded = None;
        self.split_range(items, 0, items.len(), bound)
    }

    fn flush_skip(&mut self, skip: &mut bool, prev_bound: &Bound, o: &mut Vec<u8>) {
        if std::mem::take(skip) {
            o.extend(self.encode_bound(prev_bound));
            put_varint(o, Mode::Skip as u64);
        }
    }

    /// The responder's answer to the initiator's list of `range` (`listed`, by prefix): the
    /// differences when they fit in what is left of the frame; else (one side fresh: too many)
    /// every id we hold in the range, as far as the frame allows, as negentropy v1 answers, for
    /// the peer to compare — written to `full` at once: the frame's own limit is applied to it,
    /// not the caller's check (which would drop it and never make progress).
    fn answer(
        &mut self,
        items: &impl ItemSource,
        full: &mut Vec<u8>,
        o: &mut Vec<u8>,
        (lower, upper, bound): (usize, &mut usize, Bound),
        listed: &[Prefix],
    ) {
        let mut unmatched: HashSet<Prefix> = listed.iter().copied().collect();
        // Ours the list lacks, in our order (by stamp).
        let ours_only: Vec<OpId> = (lower..*upper)
            .map(|i| items.item(i).id)
            .filter(|id| !unmatched.remove(&prefix(id)))
            .collect();
        let missing: Vec<&Prefix> = listed.iter().filter(|p| unmatched.contains(*p)).collect();
        // Two counts (varints, at most 10 bytes each), the lists, and room for the bound.
        let differences = 2 * 10 + ID_LEN * ours_only.len() + PREFIX_LEN * missing.len();
        if !self.over_limit(full.len() + o.len() + differences + 2 * ID_LEN) {
            o.extend(self.encode_bound(&bound));
            put_varint(o, Mode::Differences as u64);
            put_ids(o, &ours_only);
            put_varint(o, missing.len() as u64);
            for p in missing {
                o.extend_from_slice(p);
            }
        } else {
            let used = full.len() + o.len();
            let reply = self.id_list_reply(items, used, lower, upper, bound);
            o.extend(reply);
            full.extend(std::mem::take(o));
        }
    }

    /// The ids we hold in `lower..upper` as an id list range, cut short (and `upper` moved to
    /// the cut) where the frame, `used` bytes full, ends.
    fn id_list_reply(
        &mut self,
        items: &impl ItemSource,
        used: usize,
        lower: usize,
        upper: &mut usize,
        bound: Bound,
    ) -> Vec<u8> {
        let mut ids = Vec::new();
        let mut end_bound = bound;
        for i in lower..*upper {
            if self.over_limit(used + ids.len()) {
                end_bound = Bound {
                    item: items.item(i),
                    prefix_len: ID_LEN,
                };
                *upper = i;
                break;
            }
            ids.extend_from_slice(&items.item(i).id.0);
        }
        let mut o = self.encode_bound(&end_bound);
        put_varint(&mut o, Mode::IdList as u64);
        put_varint(&mut o, (ids.len() / ID_LEN) as u64);
        o.extend(ids);
        o
    }

    fn over_limit(&self, n: usize) -> bool {
        n > self.frame_limit - FRAME_RESERVE
    }

    fn split_range(
        &mut self,
        items: &impl ItemSource,
        lower: usize,
        upper: usize,
        upper_bound: Bound,
    ) -> Vec<u8> {
        let n = upper - lower;
        let mut o = Vec::new();
        if n < DOUBLE_BUCKETS {
            o.extend(self.encode_bound(&upper_bound));
            // The initiator is answered with the differences, so half an id each is enough;
            // the responder's list is what the initiator compares (and asks for) itself.
            let (mode, len) = if self.initiator {
                (Mode::PrefixList, PREFIX_LEN)
            } else {
                (Mode::IdList, ID_LEN)
            };
            put_varint(&mut o, mode as u64);
            put_varint(&mut o, n as u64);
            for i in lower..upper {
                o.extend_from_slice(&items.item(i).id.0[..len]);
            }
            return o;
        }
        let per_bucket = n / BUCKETS;
        let with_extra = n % BUCKETS;
        let mut curr = lower;
        for i in 0..BUCKETS {
            let size = per_bucket + usize::from(i < with_extra);
            let fingerprint = items.fingerprint(curr, curr + size);
            curr += size;
            let bound = if curr == upper {
                upper_bound
            } else {
                minimal_bound(&items.item(curr - 1), &items.item(curr))
            };
            o.extend(self.encode_bound(&bound));
            put_varint(&mut o, Mode::Fingerprint as u64);
            o.extend(fingerprint);
        }
        o
    }

    fn encode_bound(&mut self, bound: &Bound) -> Vec<u8> {
        let mut o = Vec::new();
        let ts = bound.item.timestamp;
        if ts == u64::MAX {
            self.last_timestamp_out = u64::MAX;
            put_varint(&mut o, 0);
        } else {
            let delta = ts.saturating_sub(self.last_timestamp_out);
            self.last_timestamp_out = ts;
            put_varint(&mut o, delta.saturating_add(1));
        }
        put_varint(&mut o, bound.prefix_len as u64);
        o.extend_from_slice(&bound.item.id.0[..bound.prefix_len]);
        o
    }

    fn decode_bound(&mut self, input: &mut Reader<'_>) -> Result<Bound, ReconError> {
        let raw = input.varint()?;
        let ts = if raw == 0 {
            u64::MAX
        } else {
            (raw - 1).saturating_add(self.last_timestamp_in)
        };
        self.last_timestamp_in = ts;
        let prefix_len = input.varint()?;
        if prefix_len > ID_LEN as u64 {
            return Err(ReconError::PrefixLength);
        }
        let prefix = input.bytes(prefix_len as usize)?;
        let mut id = [0u8; ID_LEN];
        id[..prefix.len()].copy_from_slice(prefix);
        Ok(Bound {
            item: Item {
                timestamp: ts,
                id: OpId(id),
            },
            prefix_len: prefix.len(),
        })
    }
}

/// The decoded differences as id lists (ours the peer lacks, then the peer's we lack, each in
/// item order), if they hold up: ours are ours, theirs are not, and our set with them added and
/// ours taken away has the peer's fingerprint. A hostile or unlucky decoding fails here.
fn checked_differences(
    items: &impl ItemSource,
    decoder: &Decoder,
    fingerprint: Fingerprint,
) -> Option<(Vec<OpId>, Vec<OpId>)> {
    let mut ours = decoder.local_only().to_vec();
    let mut theirs = decoder.remote_only().to_vec();
    if !ours.iter().all(|item| items.contains(item))
        || theirs.iter().any(|item| items.contains(item))
    {
        return None;
    }
    let mut sum = items.sum(0, items.len());
    for item in &theirs {
        sum = sum.add(&item.id);
    }
    for item in &ours {
        sum = sum.sub(&Sum::default().add(&item.id));
    }
    let count = (items.len() + theirs.len()).checked_sub(ours.len())?;
    if sum.fingerprint(count) != fingerprint {
        return None;
    }
    ours.sort();
    theirs.sort();
    let ids = |v: Vec<Item>| v.into_iter().map(|item| item.id).collect();
    Some((ids(ours), ids(theirs)))
}

/// The shortest bound that separates `prev` from `curr` (`prev < curr`).
fn minimal_bound(prev: &Item, curr: &Item) -> Bound {
    if curr.timestamp != prev.timestamp {
        return Bound {
            item: Item {
                timestamp: curr.timestamp,
                id: OpId::ZERO,
            },
            prefix_len: 0,
        };
    }
    let shared = prev
        .id
        .0
        .iter()
        .zip(curr.id.0.iter())
        .take_while(|(a, b)| a == b)
        .count();
    let prefix_len = (shared + 1).min(ID_LEN);
    let mut id = [0u8; ID_LEN];
    id[..prefix_len].copy_from_slice(&curr.id.0[..prefix_len]);
    Bound {
        item: Item {
            timestamp: curr.timestamp,
            id: OpId(id),
        },
        prefix_len,
    }
}

/// Runs a whole reconciliation between two sources in memory: what tests and the bench measure.
#[derive(Debug, Default, PartialEq)]
pub struct Run {
    /// Round trips (initiator message + responder reply).
    pub round_trips: usize,
    pub bytes_up: usize,
    pub bytes_down: usize,
    /// Ids the initiator has and the responder lacks.
    pub have: Vec<OpId>,
    /// Ids the responder has and the initiator lacks.
    pub need: Vec<OpId>,
    pub largest_message: usize,
}

/// Reconciles `initiator` against `responder` with the given frame limit.
pub fn run(
    initiator: &impl ItemSource,
    responder: &impl ItemSource,
    frame_limit: usize,
) -> Result<Run, ReconError> {
    let mut client = Reconciler::new(frame_limit, true)?;
    let mut server = Reconciler::new(frame_limit, false)?;
    let mut out = Run::default();
    let mut message = client.initiate(initiator)?;
    loop {
        out.round_trips += 1;
        out.bytes_up += message.len();
        out.largest_message = out.largest_message.max(message.len());
        let reply = server.respond(responder, &message)?;
        out.bytes_down += reply.len();
        out.largest_message = out.largest_message.max(reply.len());
        match client.reconcile(initiator, &reply, &mut out.have, &mut out.need)? {
            Some(next) => message = next,
            None => break,
        }
    }
    out.have.sort();
    out.need.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    use super::*;

    fn random_items(rng: &mut StdRng, n: usize) -> Vec<Item> {
        (0..n)
            .map(|_| Item {
                timestamp: 1_764_590_000_000 + rng.gen_range(0..1_000_000),
                id: OpId(rng.r#gen()),
            })
            .collect()
    }

    /// Two sets sharing `common` items, with `only_a` and `only_b` items of their own.
    fn pair(
        seed: u64,
        common: usize,
        only_a: usize,
        only_b: usize,
    ) -> (Items, Items, Vec<OpId>, Vec<OpId>) {
        let mut rng = StdRng::seed_from_u64(seed);
        let shared = random_items(&mut rng, common);
        let a_extra = random_items(&mut rng, only_a);
        let b_extra = random_items(&mut rng, only_b);
        let a: Items = shared.iter().chain(&a_extra).copied().collect();
        let b: Items = shared.iter().chain(&b_extra).copied().collect();
        let mut have: Vec<OpId> = a_extra.iter().map(|i| i.id).collect();
        let mut need: Vec<OpId> = b_extra.iter().map(|i| i.id).collect();
        have.sort();
        need.sort();
        (a, b, have, need)
    }

    /// A whole session from `opening`, every message decoded: what the tests look at.
    struct Transcript {
        asked: Vec<Vec<Range>>,
        answers: Vec<Vec<Range>>,
        bytes: usize,
        have: Vec<OpId>,
        need: Vec<OpId>,
    }

    fn session(client: &mut Reconciler, a: &Items, b: &Items, mut message: Vec<u8>) -> Transcript {
        let mut server = Reconciler::new(MAX_MESSAGE_BYTES, false).unwrap();
        let (mut have, mut need) = (Vec::new(), Vec::new());
        let (mut asked, mut answers, mut bytes) = (Vec::new(), Vec::new(), 0);
        loop {
            asked.push(decode_message(&message).unwrap());
            let reply = server.respond(b, &message).unwrap();
            answers.push(decode_message(&reply).unwrap());
            bytes += message.len() + reply.len();
            match client.reconcile(a, &reply, &mut have, &mut need) {
                Ok(Some(next)) => message = next,
                Ok(None) => break,
                Err(e) => panic!("{e}"),
            }
        }
        have.sort();
        need.sort();
        Transcript {
            asked,
            answers,
            bytes,
            have,
            need,
        }
    }

    /// What a fresh side lacks comes in the peer's item order (by stamp), not by id, so a
    /// fresh replica fetches a share's ops in the order they were made.
    #[test]
    fn a_fresh_side_needs_the_peers_items_in_their_order() {
        let mut rng = StdRng::seed_from_u64(3);
        let full: Items = random_items(&mut rng, 20_000).into_iter().collect();
        let empty = Items::default();
        let mut client = Reconciler::new(MAX_MESSAGE_BYTES, true).unwrap();
        let mut server = Reconciler::new(MAX_MESSAGE_BYTES, false).unwrap();
        let (mut have, mut need) = (Vec::new(), Vec::new());
        let mut message = client.initiate(&empty).unwrap();
        loop {
            let reply = server.respond(&full, &message).unwrap();
            match client.reconcile(&empty, &reply, &mut have, &mut need) {
                Ok(Some(next)) => message = next,
                Ok(None) => break,
                Err(e) => panic!("{e}"),
            }
        }
        let in_order: Vec<OpId> = (0..full.len()).map(|i| full.item(i).id).collect();
        assert!(have.is_empty());
        assert_eq!(need, in_order);
    }

    /// The initiator lists a small range by id prefixes, and is answered with the differences
    /// only, not with every id the responder holds in the range (negentropy v1's echo).
    #[test]
    fn a_prefix_list_is_answered_with_the_differences_only() {
        // 2,000 items: the initiator splits them into 16 ranges, the responder the one that
        // differs into 16 of ~8, and the initiator sends that one's ids.
        let (a, b, have, need) = pair(21, 2_000, 1, 1);
        let mut client = Reconciler::new(MAX_MESSAGE_BYTES, true).unwrap();
        // Opened with fingerprints, as a session goes on when coded symbols do not decode.
        let mut opening = vec![PROTOCOL_VERSION];
        opening.extend(client.split_range(&a, 0, a.len(), Bound::infinity()));
        let Transcript {
            asked,
            answers,
            have: got_have,
            need: got_need,
            ..
        } = session(&mut client, &a, &b, opening);
        assert_eq!((got_have, got_need), (have, need));
        let last = answers.last().expect("an answer");
        let differences: Vec<(&[OpId], &[Prefix])> = last
            .iter()
            .filter_map(|r| match r {
                Range::Differences {
                    theirs, missing, ..
                } => Some((theirs.as_slice(), missing.as_slice())),
                _ => None,
            })
            .collect();
        assert!(!differences.is_empty(), "{last:?}");
        assert!(last.iter().all(|r| !matches!(r, Range::IdList { .. })));
        let named: usize = differences.iter().map(|(t, m)| t.len() + m.len()).sum();
        assert_eq!(named, 2, "only the two differences are named");
        // The initiator listed the range by prefixes, never whole ids.
        let last_asked = asked.last().expect("a message");
        assert!(
            last_asked
                .iter()
                .any(|r| matches!(r, Range::PrefixList { prefixes, .. } if prefixes.len() > 1))
        );
        assert!(
            asked
                .iter()
                .flatten()
                .all(|r| !matches!(r, Range::IdList { .. }))
        );
    }

    /// Differences go to the initiator and prefix lists to the responder only; the wrong side
    /// refuses them rather than half-reading them.
    #[test]
    fn differences_and_prefix_lists_sent_to_the_wrong_side_are_refused() {
        let items: Items = random_items(&mut StdRng::seed_from_u64(22), 10)
            .into_iter()
            .collect();
        let mut message = vec![PROTOCOL_VERSION, 0x00, 0x00, Mode::Differences as u8];
        put_ids(&mut message, &[OpId([1; 32])]);
        put_varint(&mut message, 1);
        message.extend([2; PREFIX_LEN]);
        let mut server = Reconciler::new(MIN_FRAME_LIMIT, false).unwrap();
        assert_eq!(server.respond(&items, &message), Err(ReconError::Role));
        assert_eq!(
            decode_message(&message).unwrap(),
            [Range::Differences {
                // Timestamp 0 on the wire is the infinity bound.
                upper: (u64::MAX, vec![]),
                theirs: vec![OpId([1; 32])],
                missing: vec![[2; PREFIX_LEN]],
            }]
        );
        let mut client = Reconciler::new(MIN_FRAME_LIMIT, true).unwrap();
        client.initiate(&items).unwrap();
        let mut prefixes = vec![PROTOCOL_VERSION, 0x00, 0x00, Mode::PrefixList as u8, 0x01];
        prefixes.extend([3; PREFIX_LEN]);
        let (mut have, mut need) = (Vec::new(), Vec::new());
        assert_eq!(
            client.reconcile(&items, &prefixes, &mut have, &mut need),
            Err(ReconError::Role)
        );
        // Counts are bounded by the bytes present, in both lists.
        let mut claim = vec![PROTOCOL_VERSION, 0x00, 0x00, Mode::Differences as u8, 0x00];
        put_varint(&mut claim, 1 << 60);
        assert_eq!(decode_message(&claim), Err(ReconError::IdCount));
        let mut claim = vec![PROTOCOL_VERSION, 0x00, 0x00, Mode::PrefixList as u8];
        put_varint(&mut claim, 1 << 60);
        assert_eq!(server.respond(&items, &claim), Err(ReconError::IdCount));
    }

    /// Differences among many items are decoded from coded symbols: the opening's 16, one
    /// batch sized by the estimate, and the answer names exactly the differences — with no
    /// fingerprint range or id list on the way, and ~100 bytes a difference.
    #[test]
    fn coded_symbols_decode_the_differences_in_two_round_trips() {
        for (seed, common, only_a, only_b) in [(31, 20_000, 1, 0), (32, 20_000, 150, 150)] {
            let (a, b, have, need) = pair(seed, common, only_a, only_b);
            let mut client = Reconciler::new(MAX_MESSAGE_BYTES, true).unwrap();
            let opening = client.initiate(&a).unwrap();
            let t = session(&mut client, &a, &b, opening);
            assert_eq!((t.have, t.need), (have, need), "seed {seed}");
            let round_trips = t.asked.len();
            let ranges: Vec<Range> = t.asked.into_iter().chain(t.answers).flatten().collect();
            let bytes = t.bytes;
            let d = only_a + only_b;
            assert!(round_trips <= 1 + usize::from(d > 1) + 1, "{round_trips}");
            assert!(
                ranges.iter().all(|r| matches!(
                    r,
                    Range::Symbols { .. } | Range::MoreSymbols { .. }
                ) || matches!(r, Range::Decoded { .. })),
                "{ranges:?}"
            );
            assert!(bytes < 1_300 + 200 * d, "{d} differences: {bytes} bytes");
        }
    }

    /// A difference too large for coded symbols (here one side fresh) is left to
    /// negentropy's fingerprints and id lists after the opening, and still found exactly.
    #[test]
    fn too_many_differences_turn_to_fingerprints() {
        let (a, b, have, need) = pair(33, 1_000, 20_000, 100);
        let run = run(&a, &b, MAX_MESSAGE_BYTES).unwrap();
        assert_eq!((run.have, run.need), (have, need));
        let mut client = Reconciler::new(MAX_MESSAGE_BYTES, true).unwrap();
        let mut server = Reconciler::new(MAX_MESSAGE_BYTES, false).unwrap();
        let reply = server.respond(&b, &client.initiate(&a).unwrap()).unwrap();
        let ranges = decode_message(&reply).unwrap();
        assert_eq!(ranges.len(), BUCKETS, "{ranges:?}");
        assert!(
            ranges
                .iter()
                .all(|r| matches!(r, Range::Fingerprint { .. }))
        );
    }

    /// Coded symbols go to responders and requests for more to initiators; a batch covers the
    /// whole set alone, continues the last one, and its counts are bounded — else refused.
    #[test]
    fn malformed_symbol_ranges_are_refused() {
        let (a, b, _, _) = pair(34, 100, 30, 30);
        let mut client = Reconciler::new(MAX_MESSAGE_BYTES, true).unwrap();
        let opening = client.initiate(&a).unwrap();
        let (mut have, mut need) = (Vec::new(), Vec::new());
        assert_eq!(
            client.reconcile(&a, &opening, &mut have, &mut need),
            Err(ReconError::Role)
        );
        let mut server = Reconciler::new(MAX_MESSAGE_BYTES, false).unwrap();
        let more = [
            PROTOCOL_VERSION,
            0x00,
            0x00,
            Mode::MoreSymbols as u8,
            16,
            16,
        ];
        assert_eq!(server.respond(&b, &more), Err(ReconError::Role));
        // The opening's range made to end at a bound below infinity.
        let mut partial = opening.clone();
        partial[1] = 0x05;
        assert_eq!(server.respond(&b, &partial), Err(ReconError::SymbolRange));
        // A first batch, then one that does not continue it (starts at 0 again is a restart;
        // at 3 is out of order).
        let reply = server.respond(&b, &opening).unwrap();
        assert!(matches!(
            decode_message(&reply).unwrap()[..],
            [Range::MoreSymbols { start: 16, .. }]
        ));
        let mut skewed = vec![PROTOCOL_VERSION, 0x00, 0x00, Mode::Symbols as u8];
        skewed.extend([0; FINGERPRINT_LEN]);
        skewed.extend([3, 0, 0]);
        assert_eq!(server.respond(&b, &skewed), Err(ReconError::SymbolOrder));
        // Spans past the bound, counts past KEPT_SYMBOLS, symbol counts past the bytes present.
        let mut beyond = vec![PROTOCOL_VERSION, 0x00, 0x00, Mode::MoreSymbols as u8];
        put_varint(&mut beyond, MAX_SYMBOLS as u64);
        put_varint(&mut beyond, 1);
        assert_eq!(decode_message(&beyond), Err(ReconError::SymbolCount));
        let mut counted = vec![PROTOCOL_VERSION, 0x00, 0x00, Mode::Symbols as u8];
        counted.extend([0; FINGERPRINT_LEN]);
        counted.extend([0, 0]);
        put_varint(&mut counted, KEPT_SYMBOLS as u64 + 1);
        assert_eq!(decode_message(&counted), Err(ReconError::SymbolCount));
        let mut claim = vec![PROTOCOL_VERSION, 0x00, 0x00, Mode::Symbols as u8];
        claim.extend([0; FINGERPRINT_LEN]);
        claim.extend([0, 100]);
        claim.extend([0; 200]);
        assert_eq!(server.respond(&b, &claim), Err(ReconError::SymbolCount));
        // Garbage symbols that cannot decode are answered with fingerprints, nothing lost.
        let mut garbage = vec![PROTOCOL_VERSION, 0x00, 0x00, Mode::Symbols as u8];
        garbage.extend([9; FINGERPRINT_LEN]);
        garbage.extend([0, 2]);
        for _ in 0..2 {
            Symbol {
                id: [5; 32],
                timestamp: 7,
                checksum: 1,
                count: 1,
            }
            .encode(&mut garbage);
        }
        garbage.push(0);
        let reply = Reconciler::new(MAX_MESSAGE_BYTES, false)
            .unwrap()
            .respond(&b, &garbage)
            .unwrap();
        assert!(
            decode_message(&reply)
                .unwrap()
                .iter()
                .all(|r| matches!(r, Range::Fingerprint { .. } | Range::MoreSymbols { .. }))
        );
    }

    /// A responder that let go of a session's symbols (`drop_symbols`: the per-peer bound)
    /// answers the next batch with negentropy's fingerprints, and the session still ends exact.
    #[test]
    fn a_session_whose_symbols_were_dropped_goes_on_with_fingerprints() {
        let (a, b, have, need) = pair(35, 5_000, 30, 30);
        let mut client = Reconciler::new(MAX_MESSAGE_BYTES, true).unwrap();
        let mut server = Reconciler::new(MAX_MESSAGE_BYTES, false).unwrap();
        let reply = server.respond(&b, &client.initiate(&a).unwrap()).unwrap();
        assert!(server.holds_symbols());
        server.drop_symbols();
        let (mut got_have, mut got_need) = (Vec::new(), Vec::new());
        let batch = client
            .reconcile(&a, &reply, &mut got_have, &mut got_need)
            .unwrap()
            .expect("a second batch");
        let answer = server.respond(&b, &batch).unwrap();
        assert!(
            decode_message(&answer)
                .unwrap()
                .iter()
                .all(|r| matches!(r, Range::Fingerprint { .. }))
        );
        let t = session(&mut client, &a, &b, batch);
        let mut got_have: Vec<OpId> = got_have.into_iter().chain(t.have).collect();
        let mut got_need: Vec<OpId> = got_need.into_iter().chain(t.need).collect();
        got_have.sort();
        got_need.sort();
        assert_eq!((got_have, got_need), (have, need));
    }

    #[test]
    fn equal_sets_of_ten_thousand_agree_in_one_round_trip_and_few_bytes() {
        let (a, b, _, _) = pair(1, 10_000, 0, 0);
        let run = run(&a, &b, MAX_MESSAGE_BYTES).unwrap();
        assert_eq!(run.round_trips, 1);
        assert!(run.have.is_empty() && run.need.is_empty());
        // The fingerprint, 16 symbols and 112 counts up; nothing but the version byte down.
        assert!(
            run.bytes_up < 1_200 && run.bytes_down == 1,
            "{} {}",
            run.bytes_up,
            run.bytes_down
        );
    }

    #[test]
    fn a_few_differences_among_ten_thousand_are_found_exactly_in_few_rounds() {
        for (seed, only_a, only_b) in [(2, 1, 0), (3, 0, 1), (4, 3, 2), (5, 10, 10), (6, 50, 50)] {
            let (a, b, have, need) = pair(seed, 10_000, only_a, only_b);
            let run = run(&a, &b, MAX_MESSAGE_BYTES).unwrap();
            assert_eq!(run.have, have, "seed {seed}");
            assert_eq!(run.need, need, "seed {seed}");
            // log16(10 000) ≈ 3.3 levels of splitting.
            assert!(
                run.round_trips <= 4,
                "seed {seed}: {} rounds",
                run.round_trips
            );
            let differences = only_a + only_b;
            // Per difference: a path of split ranges (16 fingerprints a level) and an id list.
            let budget = 600 + differences * 2_000;
            assert!(
                run.bytes_up + run.bytes_down < budget,
                "seed {seed}: {} bytes",
                run.bytes_up + run.bytes_down
            );
        }
    }

    #[test]
    fn frame_limits_hold_when_one_side_is_empty_or_everything_differs() {
        for (common, only_a, only_b) in [(0, 5_000, 0), (0, 0, 5_000), (1_000, 3_000, 3_000)] {
            let (a, b, have, need) = pair(7, common, only_a, only_b);
            let run = run(&a, &b, MIN_FRAME_LIMIT).unwrap();
            assert!(
                run.largest_message <= MIN_FRAME_LIMIT,
                "{}",
                run.largest_message
            );
            assert_eq!(run.have, have);
            assert_eq!(run.need, need);
            // A frame carries at most ~120 ids: the rounds follow the ids to send.
            let ids = (only_a + only_b) * ID_LEN;
            // (Ranges cut short by a frame are compared again: allow twice that.)
            assert!(
                run.round_trips <= 4 + 2 * ids / (MIN_FRAME_LIMIT - FRAME_RESERVE),
                "{} rounds",
                run.round_trips
            );
        }
        let empty = Items::default();
        let run = run(&empty, &empty, MIN_FRAME_LIMIT).unwrap();
        assert_eq!(run.round_trips, 1);
    }

    #[test]
    fn prefix_sum_fingerprints_equal_a_scan() {
        let mut rng = StdRng::seed_from_u64(8);
        let items: Items = random_items(&mut rng, 300).into_iter().collect();
        for _ in 0..200 {
            let begin = rng.gen_range(0..=300);
            let end = rng.gen_range(begin..=300);
            let mut sum = Sum::default();
            for i in begin..end {
                sum = sum.add(&items.item(i).id);
            }
            assert_eq!(items.fingerprint(begin, end), sum.fingerprint(end - begin));
        }
        // Carries cross limbs: all-ones plus one wraps to zero.
        assert_eq!(
            Sum::default().add(&OpId([0xff; 32])).add(&OpId({
                let mut one = [0; 32];
                one[0] = 1;
                one
            })),
            Sum::default()
        );
    }

    #[test]
    fn malformed_messages_give_typed_errors() {
        let items: Items = random_items(&mut StdRng::seed_from_u64(9), 100)
            .into_iter()
            .collect();
        let server = || Reconciler::new(MIN_FRAME_LIMIT, false).unwrap();
        assert_eq!(server().respond(&items, &[]), Err(ReconError::Empty));
        assert_eq!(
            server().respond(&items, &[0x01]),
            Err(ReconError::NotNegentropy(1))
        );
        assert_eq!(
            server().respond(&items, &[0x62]),
            Err(ReconError::UnsupportedVersion(0x62))
        );
        // Bound, prefix length 33.
        assert_eq!(
            server().respond(&items, &[0x61, 0x01, 33]),
            Err(ReconError::PrefixLength)
        );
        // Bound then mode 8.
        assert_eq!(
            server().respond(&items, &[0x61, 0x01, 0x00, 0x08]),
            Err(ReconError::Mode(8))
        );
        // An id list claiming 2^60 ids.
        let mut claim = vec![0x61, 0x00, 0x00, 0x02];
        put_varint(&mut claim, 1 << 60);
        assert_eq!(server().respond(&items, &claim), Err(ReconError::IdCount));
        // Bounds going backwards: (1, ff..) then (1, 00..), both skips.
        let backwards = [0x61, 0x02, 0x01, 0xff, 0x00, 0x01, 0x01, 0x00, 0x00];
        assert_eq!(
            server().respond(&items, &backwards),
            Err(ReconError::BoundOrder)
        );
        assert_eq!(decode_message(&backwards), Err(ReconError::BoundOrder));
        assert!(matches!(
            server().respond(&items, &vec![0x61; MAX_MESSAGE_BYTES + 1]),
            Err(ReconError::TooLarge(_))
        ));
        // Random bytes after the version never panic.
        let mut rng = StdRng::seed_from_u64(10);
        for _ in 0..2_000 {
            let len = rng.gen_range(0..64);
            let mut m = vec![0x61];
            m.extend((0..len).map(|_| rng.r#gen::<u8>()));
            let _ = server().respond(&items, &m);
            let _ = decode_message(&m);
        }
    }
}
