//! The Bao decoder of a response body, fed the body's own buffers: I/O-free, it verifies each tree node and block
//! against the content hash as the bytes arrive, and hands on a block that lies inside one buffer as a slice of it —
//! no copy. (bao-tree's `DecodeResponseIter` reads through `std::io::Read`: every block zero-filled, then copied out
//! of the body into it.) A block split across two buffers is gathered into one, bounded by the block size.
//!
//! The checks are bao-tree's (`io::sync::DecodeResponseIter`), on the same traversal ([`ResponseIter`]): a parent's
//! two child hashes must merge into the hash expected for that node, a block must hash (at its offset in the file)
//! to the hash expected for it; the hashes expected come from the root, down.

use bao_tree::io::sync::truncate_ranges;
use bao_tree::iter::{BaoChunk, ResponseIter};
use bao_tree::{BaoTree, ChunkRanges, TreeNode};
use blake3::hazmat::{
    ChainingValue, HasherExt, Mode, merge_subtrees_non_root, merge_subtrees_root,
};
use bytes::{Bytes, BytesMut};

/// What a verified body yields, in order: the tree nodes above the blocks (for a partial holder's own tree), then
/// each block — a slice of the body's buffer (shared, not copied), so a sink may keep it to write several at once.
pub enum Verified {
    Parent(TreeNode, (blake3::Hash, blake3::Hash)),
    Block { offset: u64, data: Bytes },
}

/// Why a body does not decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// The bytes at `offset` (a block, or the tree nodes above the blocks from there) are not the file's.
    #[error("the bytes from {offset} failed verification")]
    Mismatch { offset: u64 },
    #[error("the body ended {missing} items early")]
    CutShort { missing: usize },
    #[error("{0} bytes past the end of the encoding")]
    TooLong(usize),
}

/// The decoder of one response: the encoding of `ranges` of a file of `tree`'s size whose root is `root`.
pub struct Verifier {
    items: ResponseIter,
    /// The item the next bytes belong to.
    next: Option<BaoChunk>,
    /// The hashes expected of the nodes and blocks still to come, the next on top.
    stack: Vec<blake3::Hash>,
    /// Part of an item split across buffers.
    partial: BytesMut,
    /// The first byte of the file not yet verified.
    verified_to: u64,
}

impl Verifier {
    pub fn new(root: blake3::Hash, tree: BaoTree, ranges: &ChunkRanges) -> Verifier {
        // As bao-tree's decoder does: a range past the end asks for the last chunk.
        let mut truncated = ChunkRanges::default();
        truncated.union_with(truncate_ranges(ranges, tree.size()));
        let ranges = truncated;
        let verified_to = ranges
            .boundaries()
            .first()
            .map_or(tree.size(), |first| first.to_bytes().min(tree.size()));
        let mut items = ResponseIter::new(tree, ranges);
        let next = items.next();
        // One hash per level still to come down: a tree of 2^64 bytes has fewer than 64.
        let mut stack = Vec::with_capacity(64);
        stack.push(root);
        Verifier {
            items,
            next,
            stack,
            partial: BytesMut::new(),
            verified_to,
        }
    }

    /// Verifies what `data` completes and hands each verified item to `sink`, in order; a sink error stops it.
    pub fn push<E>(
        &mut self,
        mut data: Bytes,
        sink: &mut impl FnMut(Verified) -> Result<(), E>,
    ) -> Result<(), PushError<E>> {
        while !data.is_empty() {
            let Some(item) = self.next else {
                return Err(PushError::Verify(VerifyError::TooLong(data.len())));
            };
            let want = match item {
                BaoChunk::Parent { .. } => 64,
                BaoChunk::Leaf { size, .. } => size,
            };
            let bytes = if self.partial.is_empty() && data.len() >= want {
                data.split_to(want)
            } else {
                let take = (want - self.partial.len()).min(data.len());
                // Room for the whole item at once: no regrowth (bounded by the block size).
                self.partial.reserve(want - self.partial.len());
                self.partial.extend_from_slice(&data.split_to(take));
                if self.partial.len() < want {
                    return Ok(());
                }
                self.partial.split().freeze()
            };
            self.verify(item, bytes, sink)?;
            self.next = self.items.next();
        }
        Ok(())
    }

    /// Says the body ended: an error unless every item came. (The one block of an empty file has no bytes: it is
    /// verified here.)
    pub fn finish<E>(
        mut self,
        sink: &mut impl FnMut(Verified) -> Result<(), E>,
    ) -> Result<(), PushError<E>> {
        if let Some(item @ BaoChunk::Leaf { size: 0, .. }) = self.next {
            self.verify(item, Bytes::new(), sink)?;
            self.next = self.items.next();
        }
        match self.next {
            None => Ok(()),
            Some(_) => Err(PushError::Verify(VerifyError::CutShort {
                missing: 1 + self.items.count(),
            })),
        }
    }

    fn verify<E>(
        &mut self,
        item: BaoChunk,
        bytes: Bytes,
        sink: &mut impl FnMut(Verified) -> Result<(), E>,
    ) -> Result<(), PushError<E>> {
        let mismatch = PushError::Verify(VerifyError::Mismatch {
            offset: self.verified_to,
        });
        let expected = self.stack.pop().expect("a hash for every item");
        match item {
            BaoChunk::Parent {
                is_root,
                left,
                right,
                node,
                ..
            } => {
                let l: ChainingValue = bytes[..32].try_into().expect("64 bytes");
                let r: ChainingValue = bytes[32..64].try_into().expect("64 bytes");
                let actual = if is_root {
                    merge_subtrees_root(&l, &r, Mode::Hash)
                } else {
                    blake3::Hash::from(merge_subtrees_non_root(&l, &r, Mode::Hash))
                };
                if actual != expected {
                    return Err(mismatch);
                }
                let (l, r) = (blake3::Hash::from(l), blake3::Hash::from(r));
                if right {
                    self.stack.push(r);
                }
                if left {
                    self.stack.push(l);
                }
                sink(Verified::Parent(node, (l, r))).map_err(PushError::Sink)
            }
            BaoChunk::Leaf {
                start_chunk,
                is_root,
                ..
            } => {
                let actual = if is_root {
                    blake3::hash(&bytes)
                } else {
                    let mut hasher = blake3::Hasher::new();
                    hasher.set_input_offset(start_chunk.to_bytes());
                    hasher.update(&bytes);
                    blake3::Hash::from(hasher.finalize_non_root())
                };
                if actual != expected {
                    return Err(mismatch);
                }
                let offset = start_chunk.to_bytes();
                self.verified_to = offset + bytes.len() as u64;
                sink(Verified::Block {
                    offset,
                    data: bytes,
                })
                .map_err(PushError::Sink)
            }
        }
    }
}

/// Why [`Verifier::push`] stopped.
#[derive(Debug)]
pub enum PushError<E> {
    Verify(VerifyError),
    Sink(E),
}

#[cfg(test)]
mod tests {
    use bao_tree::io::outboard::PreOrderOutboard;
    use bao_tree::io::sync::{CreateOutboard, DecodeResponseIter, encode_ranges};
    use bao_tree::io::{BaoContentItem, Leaf, Parent};
    use bao_tree::{BlockSize, ChunkNum};

    use super::*;

    fn content(len: usize) -> Vec<u8> {
        (0..len as u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect()
    }

    /// Everything a decoder hands on, as owned values.
    #[derive(Debug, PartialEq)]
    enum Item {
        Parent(TreeNode, blake3::Hash, blake3::Hash),
        Block(u64, Vec<u8>),
    }

    /// `encoded` pushed in pieces of `piece` bytes: what came out, and how it ended.
    fn ours(
        encoded: &[u8],
        root: blake3::Hash,
        tree: BaoTree,
        ranges: &ChunkRanges,
        piece: usize,
    ) -> (Vec<Item>, Result<(), VerifyError>) {
        let mut verifier = Verifier::new(root, tree, ranges);
        let mut got = Vec::new();
        let mut sink = |item: Verified| {
            got.push(match item {
                Verified::Parent(node, (l, r)) => Item::Parent(node, l, r),
                Verified::Block { offset, data } => Item::Block(offset, data.to_vec()),
            });
            Ok::<(), ()>(())
        };
        for piece in encoded.chunks(piece) {
            if let Err(error) = verifier.push(Bytes::copy_from_slice(piece), &mut sink) {
                return match error {
                    PushError::Verify(error) => (got, Err(error)),
                    PushError::Sink(()) => unreachable!(),
                };
            }
        }
        let ended = verifier.finish(&mut sink).map_err(|error| match error {
            PushError::Verify(error) => error,
            PushError::Sink(()) => unreachable!(),
        });
        (got, ended)
    }

    /// bao-tree's own decoder over the same bytes.
    fn theirs(
        encoded: &[u8],
        root: blake3::Hash,
        tree: BaoTree,
        ranges: &ChunkRanges,
    ) -> (Vec<Item>, bool) {
        let mut got = Vec::new();
        for item in DecodeResponseIter::new(root, tree, encoded, ranges) {
            match item {
                Ok(BaoContentItem::Parent(Parent { node, pair: (l, r) })) => {
                    got.push(Item::Parent(node, l, r))
                }
                Ok(BaoContentItem::Leaf(Leaf { offset, data })) => {
                    got.push(Item::Block(offset, data.to_vec()))
                }
                Err(_) => return (got, false),
            }
        }
        (got, true)
    }

    /// Over sizes, ranges, piece sizes and damage, ours hands on exactly what bao-tree's decoder does, and fails
    /// where it fails.
    #[test]
    fn agrees_with_bao_trees_decoder_whatever_the_pieces_and_the_damage() {
        let block = BlockSize::from_chunk_log(4);
        for size in [
            0usize,
            1,
            1024,
            16 * 1024,
            16 * 1024 + 1,
            300_000,
            1_000_000,
        ] {
            let data = content(size);
            let outboard =
                PreOrderOutboard::<Vec<u8>>::create_sized(&data[..], size as u64, block).unwrap();
            let tree = outboard.tree;
            let blocks = (size as u64).div_ceil(16 * 1024).max(1);
            let range_sets = [
                ChunkRanges::all(),
                ChunkRanges::from(ChunkNum(16 * (blocks / 2))..),
                ChunkRanges::from(ChunkNum(16)..ChunkNum(48)),
            ];
            for (r, ranges) in range_sets.iter().enumerate() {
                let mut encoded = Vec::new();
                encode_ranges(
                    &data[..],
                    &outboard,
                    truncate_ranges(ranges, size as u64),
                    &mut encoded,
                )
                .unwrap();
                let mut damaged = vec![encoded.clone()];
                if !encoded.is_empty() {
                    for at in [0, encoded.len() / 2, encoded.len() - 1] {
                        let mut bad = encoded.clone();
                        bad[at] ^= 1;
                        damaged.push(bad);
                    }
                    damaged.push(encoded[..encoded.len() / 2].to_vec());
                }
                for (i, bytes) in damaged.iter().enumerate() {
                    let (want, whole) = theirs(bytes, outboard.root, tree, ranges);
                    // Byte by byte only where that stays quick in a debug build.
                    let smallest = if bytes.len() < 100_000 { 1 } else { 63 };
                    for piece in [smallest, 64, 1000, 16 * 1024, 16 * 1024 + 64, 1 << 20] {
                        let (got, ended) = ours(bytes, outboard.root, tree, ranges, piece);
                        let case = format!("size {size}, {ranges:?}, case {i}, pieces of {piece}");
                        assert_eq!(got, want, "{case}");
                        assert_eq!(ended.is_ok(), whole, "{case}: {ended:?}");
                        // Undamaged, a range inside the file decodes (bao-tree's decoder refuses some ranges past
                        // the end, which we never ask: a start past the end is answered 416).
                        if i == 0 && r < 2 {
                            assert!(ended.is_ok(), "{case}");
                        }
                    }
                }
                // Bytes past the end of an encoding that decodes are refused.
                if r < 2 {
                    let mut longer = encoded.clone();
                    longer.push(0);
                    let (_, ended) = ours(&longer, outboard.root, tree, ranges, 1 << 20);
                    assert!(
                        matches!(ended, Err(VerifyError::TooLong(1))),
                        "{ranges:?}: {ended:?}"
                    );
                }
            }
        }
    }
}
