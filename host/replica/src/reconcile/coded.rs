//! Rateless invertible Bloom lookup tables (RIBLT: Yang, Gilad and Alizadeh, "Practical
//! Rateless Set Reconciliation", SIGCOMM 2024): the first stage of our reconciliation.
//!
//! A set is encoded as an endless sequence of *coded symbols*; symbol `i` is the XOR of the
//! items mapped to it and their count. Every item maps to symbol 0 and to later ones with a
//! probability of `2 / (i + 2)`, so the first `m` symbols of a set cost O(n log m) to compute,
//! and a side that subtracts its own symbols from a peer's is left with the symbols of the
//! *difference*: about 1.4 symbols per difference decode it by peeling, whatever the size of
//! the sets. Where negentropy pays ~640 bytes of fingerprints for an isolated difference among
//! a million items, this pays ~90 (1.85 symbols on average, the sized batch's margin included).
//!
//! Written here rather than taken from a crate: the two on crates.io (`riblt`, `do-riblt`) are
//! young single-author crates that encode a whole set at once; we need symbols kept up to date
//! as items come and go ([`Head`]), batches that continue where the last one ended, decoding
//! bounded against a hostile peer, and an estimate of the differences left.

use super::item::Item;
use crate::op::OpId;
use crate::wire::{Reader, WireError, put_varint};

const ID_LEN: usize = 32;
/// The largest a symbol takes on the wire: id, timestamp and checksum XORs, and a count
/// (a zigzag varint of at most 10 bytes).
pub const SYMBOL_MAX_WIRE: usize = ID_LEN + 8 + 8 + 10;
/// The symbols a session opens with: 16 decode most sets that differ by up to ~6 items in one
/// round trip.
pub const OPENING_SYMBOLS: usize = 16;
/// Symbols kept up to date as items come and go ([`Head`]), so neither the opening nor a
/// batch for up to ~60 differences costs a scan of the set. The opening also carries the
/// *counts* of the symbols after its own up to here (a few bytes each): they estimate how many
/// differences there are to within ~13% (16 symbols alone: ~50%), so the one batch asked for
/// next is sized right.
pub const KEPT_SYMBOLS: usize = 128;
/// The most symbols one session asks for: about what a 1 MiB frame holds (~50 bytes each), for
/// ~11,000 differences with the estimate's margin. Beyond it, negentropy's rounds take over.
pub const MAX_SYMBOLS: usize = 20_480;
/// Symbols needed per difference when the count is known (the paper measures 1.35 for large
/// differences, more for a few).
const OVERHEAD: f64 = 1.45;

/// One coded symbol: the XOR of its items (id and timestamp), the XOR of their checksums,
/// and how many items were added minus how many were taken away.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Symbol {
    pub id: [u8; ID_LEN],
    pub timestamp: u64,
    pub checksum: u64,
    pub count: i64,
}

impl Symbol {
    fn apply(&mut self, item: &Item, checksum: u64, sign: i64) {
        for (a, b) in self.id.iter_mut().zip(item.id.0.iter()) {
            *a ^= b;
        }
        self.timestamp ^= item.timestamp;
        self.checksum ^= checksum;
        self.count = self.count.wrapping_add(sign);
    }

    /// `self - other`: the symbol of the items one side has and the other lacks.
    fn minus(&self, other: &Symbol) -> Symbol {
        let mut id = self.id;
        for (a, b) in id.iter_mut().zip(other.id.iter()) {
            *a ^= b;
        }
        Symbol {
            id,
            timestamp: self.timestamp ^ other.timestamp,
            checksum: self.checksum ^ other.checksum,
            count: self.count.wrapping_sub(other.count),
        }
    }

    fn is_zero(&self) -> bool {
        *self == Symbol::default()
    }

    /// The one item this symbol holds, if it holds exactly one (of either side): the checksum
    /// tells a single item from a mix of several.
    fn pure(&self) -> Option<(Item, i64)> {
        if self.count != 1 && self.count != -1 {
            return None;
        }
        let item = Item {
            timestamp: self.timestamp,
            id: OpId(self.id),
        };
        (checksum(&item) == self.checksum).then_some((item, self.count))
    }

    pub fn encode(&self, o: &mut Vec<u8>) {
        o.extend_from_slice(&self.id);
        o.extend_from_slice(&self.timestamp.to_be_bytes());
        o.extend_from_slice(&self.checksum.to_be_bytes());
        // Zigzag: small counts of either sign take one byte.
        put_varint(o, zigzag(self.count));
    }

    pub fn decode(r: &mut Reader<'_>) -> Result<Symbol, WireError> {
        let id = r.array()?;
        let timestamp = r.u64()?;
        let checksum = r.u64()?;
        let count = r.varint()?;
        Ok(Symbol {
            id,
            timestamp,
            checksum,
            count: unzigzag(count),
        })
    }
}

/// A signed count as a varint that is short for small values of either sign.
pub(super) fn zigzag(n: i64) -> u64 {
    ((n << 1) ^ (n >> 63)) as u64
}

pub(super) fn unzigzag(n: u64) -> i64 {
    ((n >> 1) as i64) ^ -((n & 1) as i64)
}

/// splitmix64's finaliser: a bijective, nonlinear mix of 64 bits.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// An item's checksum. Nonlinear, so the XOR of several items' checksums is not the checksum of
/// their XOR: what tells a pure symbol. Not a security measure (a wrong "pure" item is caught
/// by the whole-set fingerprint after decoding, and by the lookups in the caller).
fn checksum(item: &Item) -> u64 {
    let mut h = mix(item.timestamp ^ 0x5851_f42d_4c95_7f2d);
    for limb in item.id.0.chunks_exact(8) {
        h = mix(h ^ u64::from_le_bytes(limb.try_into().expect("8 bytes")));
    }
    h
}

/// The indices of the symbols an item maps to, ascending: 0, then gaps drawn so that index `i`
/// is hit with probability `2 / (i + 2)` (the paper's mapping, seeded by the checksum).
///
/// The index is kept as an `f64` (exact: integers below 2^53) so the chain from one index to
/// the next is a few float operations; integer conversions there doubled a scan's time.
struct Indices {
    prng: u64,
    next: Option<f64>,
}

fn indices(checksum: u64) -> Indices {
    Indices {
        prng: checksum,
        next: Some(0.0),
    }
}

/// 2^52: from here on every `f64` is a whole number.
const WHOLE: f64 = 4_503_599_627_370_496.0;

/// The ceiling of a non-negative `x` in float operations only (`f64::ceil` is a libm call
/// without SSE4.1): adding and taking away 2^52 rounds to a whole number.
fn ceil(x: f64) -> f64 {
    if x >= WHOLE {
        return x;
    }
    let rounded = (x + WHOLE) - WHOLE;
    // Without a branch: which way it goes is a coin toss, and mispredictions cost more than
    // the arithmetic.
    rounded + f64::from(u8::from(rounded < x))
}

impl Iterator for Indices {
    type Item = usize;

    fn next(&mut self) -> Option<usize> {
        let current = self.next?;
        self.prng = self.prng.wrapping_mul(0xda94_2042_e4dd_58b5);
        // A uniform draw in (0, 1) from the top 53 bits.
        let uniform = ((self.prng >> 11) as i64 as f64 + 0.5) * (1.0 / (1u64 << 53) as f64);
        let scale = 1.0 / uniform.sqrt() - 1.0;
        // At least 1, so the sequence always moves on; past 2^53 it ends (far beyond any
        // symbol a session uses).
        let next = current + ceil((current + 1.5) * scale).max(1.0);
        self.next = (next < 2.0 * WHOLE).then_some(next);
        Some(current as usize)
    }
}

/// The probability that an item maps to symbol `i`.
fn density(i: usize) -> f64 {
    2.0 / (i as f64 + 2.0)
}

/// Calls `visit(item, checksum, i)` for every symbol index `start <= i < end` of every item.
fn visit_indices(
    items: &[Item],
    start: usize,
    end: usize,
    mut visit: impl FnMut(&Item, u64, usize),
) {
    for item in items {
        let c = checksum(item);
        for i in indices(c).take_while(|&i| i < end) {
            if i >= start {
                visit(item, c, i);
            }
        }
    }
}

/// The counts of symbols `start..start + n` of a set (how many items map to each), by a scan.
pub fn counts(items: &[Item], start: usize, n: usize) -> Vec<i64> {
    let mut out = vec![0; n];
    if n > 0 {
        visit_indices(items, start, start + n, |_, _, i| out[i - start] += 1);
    }
    out
}

/// Symbols `start..start + count` of a set, by a scan of its items.
pub fn encode(items: &[Item], start: usize, count: usize) -> Vec<Symbol> {
    let mut out = vec![Symbol::default(); count];
    if count > 0 {
        visit_indices(items, start, start + count, |item, c, i| {
            out[i - start].apply(item, c, 1)
        });
    }
    out
}

/// The first [`KEPT_SYMBOLS`] symbols of a set, kept up to date item by item (~10 of them
/// touched per item; 7 KB).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head(Box<[Symbol]>);

impl Default for Head {
    fn default() -> Head {
        Head(vec![Symbol::default(); KEPT_SYMBOLS].into_boxed_slice())
    }
}

impl Head {
    pub fn insert(&mut self, item: &Item) {
        self.apply(item, 1);
    }

    pub fn remove(&mut self, item: &Item) {
        self.apply(item, -1);
    }

    fn apply(&mut self, item: &Item, sign: i64) {
        let c = checksum(item);
        for i in indices(c).take_while(|&i| i < KEPT_SYMBOLS) {
            self.0[i].apply(item, c, sign);
        }
    }

    pub fn symbols(&self) -> &[Symbol] {
        &self.0
    }
}

/// The receiving side of coded symbols: the peer's symbols minus ours, peeled into the items
/// only the peer has (`remote_only`) and those only we have (`local_only`).
#[derive(Debug, Default)]
pub(super) struct Decoder {
    symbols: Vec<Symbol>,
    /// Count differences of the symbols `counts_from..`, past those received: for the estimate.
    counts_from: usize,
    counts: Vec<i64>,
    remote_only: Vec<Item>,
    local_only: Vec<Item>,
    batches: usize,
    /// Set when peeling ran past its bound (more items than symbols could ever hold: a
    /// hostile batch); the session gives up on symbols.
    failed: bool,
}

impl Decoder {
    /// Symbols received so far: where the next batch starts.
    pub fn len(&self) -> usize {
        self.symbols.len()
    }

    pub fn batches(&self) -> usize {
        self.batches
    }

    /// Adds the next batch: the peer's symbols and ours at the same indices, and the
    /// differences of the counts of the symbols after them (peer's minus ours; may be none).
    pub fn extend(&mut self, remote: &[Symbol], local: &[Symbol], counts: Vec<i64>) {
        let start = self.symbols.len();
        self.symbols
            .extend(remote.iter().zip(local).map(|(r, l)| r.minus(l)));
        self.batches += 1;
        let end = self.symbols.len();
        if !counts.is_empty() || end >= self.counts_from + self.counts.len() {
            self.counts_from = end;
            self.counts = counts;
        }
        // Items already peeled are taken out of the new symbols and counts too.
        let found: Vec<(Item, i64)> = (self.remote_only.iter().map(|item| (*item, 1)))
            .chain(self.local_only.iter().map(|item| (*item, -1)))
            .collect();
        for (item, sign) in found {
            self.take_out(&item, sign, start);
        }
        self.peel((start..end).collect());
    }

    /// Takes a peeled item (`sign`: 1 the peer's, -1 ours) out of the symbols from `from` on
    /// and the counts; returns the symbols it touched.
    fn take_out(&mut self, item: &Item, sign: i64, from: usize) -> Vec<usize> {
        let c = checksum(item);
        let end = self.symbols.len().max(self.counts_from + self.counts.len());
        let mut touched = Vec::new();
        for i in indices(c).take_while(|&i| i < end) {
            if i < from {
                continue;
            }
            if let Some(symbol) = self.symbols.get_mut(i) {
                symbol.apply(item, c, -sign);
                touched.push(i);
            } else if let Some(count) = i
                .checked_sub(self.counts_from)
                .and_then(|k| self.counts.get_mut(k))
            {
                *count -= sign;
            }
        }
        touched
    }

    fn peel(&mut self, mut candidates: Vec<usize>) {
        // A real difference of `m` symbols holds fewer than `m` items; a hostile batch could
        // make peeling go round in circles, so it stops there.
        let limit = self.symbols.len();
        while let Some(i) = candidates.pop() {
            let Some((item, sign)) = self.symbols[i].pure() else {
                continue;
            };
            if self.remote_only.len() + self.local_only.len() >= limit {
                self.failed = true;
                return;
            }
            if sign == 1 {
                self.remote_only.push(item);
            } else {
                self.local_only.push(item);
            }
            candidates.extend(self.take_out(&item, sign, 0));
        }
    }

    /// Every symbol peeled to nothing: the differences are `remote_only` and `local_only`.
    pub fn is_decoded(&self) -> bool {
        !self.failed && self.symbols.iter().all(Symbol::is_zero)
    }

    pub fn remote_only(&self) -> &[Item] {
        &self.remote_only
    }

    pub fn local_only(&self) -> &[Item] {
        &self.local_only
    }

    /// How many symbols to ask for next, all told, to decode with a good chance; `None` when
    /// that is beyond [`MAX_SYMBOLS`] (or peeling failed): the caller turns to negentropy.
    ///
    /// The items not yet peeled are estimated from the counts: with `d` of them, `δ` more on
    /// one side than the other (symbol 0's count), symbol `i`'s count has a mean of `δ·p` and a
    /// variance of `d·p(1-p)` (`p` its density), so each `(c² - δ²p²) / p(1-p)` estimates `d`,
    /// and their mean over `k` symbols has a relative error of about `√(2/k)` (~0.13 over the
    /// opening's 128 counts), covered twice over, so the next batch nearly always decodes.
    pub fn wanted(&self) -> Option<usize> {
        if self.failed {
            return None;
        }
        let m = self.symbols.len();
        let counted = m.max(self.counts_from + self.counts.len());
        let count = |i: usize| match self.symbols.get(i) {
            Some(symbol) => symbol.count,
            None => self.counts[i - self.counts_from],
        };
        let delta = self.symbols.first().map_or(0.0, |s| s.count as f64);
        let mut estimates = 0.0;
        for i in 1..counted {
            let p = density(i);
            let c = count(i) as f64;
            estimates += (c * c - delta * delta * p * p) / (p * (1.0 - p));
        }
        let samples = counted.saturating_sub(1).max(1) as f64;
        let left = (estimates / samples).max(delta.abs());
        let error = (2.0 / samples).sqrt();
        let found = (self.remote_only.len() + self.local_only.len()) as f64;
        let target = (OVERHEAD * (found + left) * (1.0 + 2.0 * error)).ceil() + 8.0;
        // A quarter more than we have at least, so a run of low estimates still ends (after a
        // large batch the estimate is within a few percent: the next one is not much larger).
        let target = (target as usize).max(m + m / 4 + 8);
        (target <= MAX_SYMBOLS).then_some(target)
    }
}

#[cfg(test)]
mod tests {
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    use super::*;

    fn random_items(rng: &mut StdRng, n: usize) -> Vec<Item> {
        (0..n)
            .map(|_| Item {
                timestamp: rng.gen_range(0..1 << 45),
                id: OpId(rng.r#gen()),
            })
            .collect()
    }

    /// The count differences an opening of `end` symbols carries: up to [`KEPT_SYMBOLS`].
    fn opening_counts(a: &[Item], b: &[Item], end: usize) -> Vec<i64> {
        if end >= KEPT_SYMBOLS {
            return Vec::new();
        }
        let n = KEPT_SYMBOLS - end;
        let (a, b) = (counts(a, end, n), counts(b, end, n));
        a.iter().zip(&b).map(|(a, b)| a - b).collect()
    }

    /// Decodes `a` against `b` in batches as a session would; returns the symbols used.
    fn decode(a: &[Item], b: &[Item], first: usize) -> (Decoder, usize) {
        let mut decoder = Decoder::default();
        let mut want = first;
        loop {
            let start = decoder.len();
            let count = want - start;
            decoder.extend(
                &encode(a, start, count),
                &encode(b, start, count),
                opening_counts(a, b, start + count),
            );
            if decoder.is_decoded() {
                return (decoder, want);
            }
            want = decoder.wanted().expect("within the bound");
        }
    }

    #[test]
    fn an_item_maps_to_symbol_i_with_probability_two_over_i_plus_two() {
        let mut rng = StdRng::seed_from_u64(1);
        let n = 20_000;
        let items = random_items(&mut rng, n);
        let symbols = encode(&items, 0, 64);
        assert_eq!(
            counts(&items, 0, 64),
            symbols.iter().map(|s| s.count).collect::<Vec<_>>()
        );
        assert_eq!(symbols[0].count, n as i64);
        for i in [1, 2, 7, 30, 63] {
            let seen = symbols[i].count as f64 / n as f64;
            let expected = density(i);
            assert!(
                (seen - expected).abs() < 0.1 * expected,
                "symbol {i}: {seen} against {expected}"
            );
        }
    }

    #[test]
    fn the_head_kept_item_by_item_equals_an_encoding_of_the_set() {
        let mut rng = StdRng::seed_from_u64(2);
        let items = random_items(&mut rng, 500);
        let mut head = Head::default();
        for item in &items {
            head.insert(item);
        }
        for item in &items[..100] {
            head.remove(item);
        }
        let kept = encode(&items[100..], 0, KEPT_SYMBOLS);
        assert_eq!(head.symbols(), kept.as_slice());
        // Symbols 10..20 alone are the same as those of a whole encoding.
        let whole = encode(&items, 0, 20);
        assert_eq!(encode(&items, 10, 10), whole[10..]);
    }

    #[test]
    fn differences_decode_exactly_with_about_one_and_a_half_symbols_each() {
        let mut rng = StdRng::seed_from_u64(3);
        let common = random_items(&mut rng, 5_000);
        for (only_a, only_b) in [(0, 0), (1, 0), (0, 1), (3, 3), (40, 10), (500, 500)] {
            let a_extra = random_items(&mut rng, only_a);
            let b_extra = random_items(&mut rng, only_b);
            let a: Vec<Item> = common.iter().chain(&a_extra).copied().collect();
            let b: Vec<Item> = common.iter().chain(&b_extra).copied().collect();
            let (decoder, used) = decode(&a, &b, OPENING_SYMBOLS);
            let mut remote = decoder.remote_only().to_vec();
            let mut local = decoder.local_only().to_vec();
            remote.sort();
            local.sort();
            let (mut a_extra, mut b_extra) = (a_extra, b_extra);
            a_extra.sort();
            b_extra.sort();
            assert_eq!((remote, local), (a_extra, b_extra));
            let d = only_a + only_b;
            // The asked-for batches overshoot: the cost is what was sent, not the minimum.
            assert!(
                used <= OPENING_SYMBOLS.max(4 * d + 16),
                "{d} differences, {used}"
            );
            assert!(decoder.batches() <= 3, "{d}: {} batches", decoder.batches());
        }
    }

    #[test]
    fn an_estimate_past_the_bound_turns_to_negentropy() {
        let mut rng = StdRng::seed_from_u64(4);
        let a = random_items(&mut rng, 30_000);
        let mut decoder = Decoder::default();
        decoder.extend(
            &encode(&a, 0, OPENING_SYMBOLS),
            &[Symbol::default(); OPENING_SYMBOLS],
            opening_counts(&a, &[], OPENING_SYMBOLS),
        );
        assert!(!decoder.is_decoded());
        assert_eq!(decoder.wanted(), None);
    }

    #[test]
    fn hostile_symbols_never_decode_nor_run_unbounded() {
        let mut rng = StdRng::seed_from_u64(5);
        let items = random_items(&mut rng, 3);
        // Symbol 0 holds an item with the count of one, symbol 1 the same item with the
        // opposite count: each peel refills the other; the bound stops it.
        let mut garbage = vec![Symbol::default(); 8];
        let c = checksum(&items[0]);
        garbage[0].apply(&items[0], c, 1);
        for s in garbage.iter_mut().skip(1) {
            s.apply(&items[0], c, -1);
        }
        let mut decoder = Decoder::default();
        decoder.extend(&garbage, &[Symbol::default(); 8], Vec::new());
        assert!(!decoder.is_decoded());
        for _ in 0..200 {
            let symbols: Vec<Symbol> = (0..8)
                .map(|_| Symbol {
                    id: rng.r#gen(),
                    timestamp: rng.r#gen(),
                    checksum: rng.r#gen(),
                    count: rng.gen_range(-2..=2),
                })
                .collect();
            let mut decoder = Decoder::default();
            decoder.extend(&symbols, &[Symbol::default(); 8], Vec::new());
            assert!(decoder.remote_only().len() + decoder.local_only().len() <= 8);
        }
    }

    #[test]
    fn symbols_round_trip_on_the_wire() {
        for count in [0, 1, -1, 63, -64, i64::MAX, i64::MIN] {
            let s = Symbol {
                id: [7; ID_LEN],
                timestamp: 1 << 44,
                checksum: 99,
                count,
            };
            let mut o = Vec::new();
            s.encode(&mut o);
            assert!(o.len() <= SYMBOL_MAX_WIRE);
            let mut r = Reader::new(&o);
            assert_eq!(Symbol::decode(&mut r), Ok(s));
            assert!(r.is_empty());
        }
    }
}
