//! Pieces put together from blocks, hashed in order as the blocks arrive: SHA-1 runs over each block as soon as
//! every block before it is there (later blocks wait in memory), so a completed piece is verified the moment its
//! last block lands and is never read back from disk.

use std::collections::BTreeMap;

use bytes::Bytes;
use sha1::{Digest, Sha1};

use super::geometry::{BLOCK_LEN, Block, Geometry};

/// A piece whose blocks all arrived, with its verdict.
#[derive(Debug)]
pub struct AssembledPiece {
    pub piece: u32,
    /// The blocks in order: written to disk as one vectored write.
    pub blocks: Vec<Bytes>,
    pub hash_ok: bool,
}

#[derive(Debug)]
struct InProgress {
    blocks: Vec<Option<Bytes>>,
    /// Blocks `0..hashed` went into `hasher`.
    hashed: usize,
    hasher: Sha1,
}

#[derive(Debug)]
pub struct PieceAssembler {
    geometry: Geometry,
    pieces: BTreeMap<u32, InProgress>,
    buffered_bytes: u64,
}

impl PieceAssembler {
    pub fn new(geometry: Geometry) -> Self {
        Self {
            geometry,
            pieces: BTreeMap::new(),
            buffered_bytes: 0,
        }
    }

    /// Bytes of block data held in memory.
    pub fn buffered_bytes(&self) -> u64 {
        self.buffered_bytes
    }

    /// Adds a block the picker accepted as fresh. Returns the piece when it is whole.
    /// `expected` is the piece's SHA-1 from the metainfo.
    pub fn add(
        &mut self,
        block: Block,
        data: Bytes,
        expected: &[u8; 20],
    ) -> Option<AssembledPiece> {
        debug_assert!(self.geometry.is_valid_block(block) && data.len() == block.len as usize);
        let count = self.geometry.blocks_in_piece(block.piece) as usize;
        let entry = self
            .pieces
            .entry(block.piece)
            .or_insert_with(|| InProgress {
                blocks: vec![None; count],
                hashed: 0,
                hasher: Sha1::new(),
            });
        let slot = &mut entry.blocks[(block.offset / BLOCK_LEN) as usize];
        if slot.is_some() {
            return None;
        }
        self.buffered_bytes += data.len() as u64;
        *slot = Some(data);
        while let Some(Some(next)) = entry.blocks.get(entry.hashed) {
            entry.hasher.update(next);
            entry.hashed += 1;
        }
        if entry.hashed < count {
            return None;
        }
        let done = self.pieces.remove(&block.piece).expect("present");
        let digest: [u8; 20] = done.hasher.finalize().into();
        let blocks: Vec<Bytes> = done
            .blocks
            .into_iter()
            .map(|b| b.expect("all blocks arrived"))
            .collect();
        self.buffered_bytes -= blocks.iter().map(|b| b.len() as u64).sum::<u64>();
        Some(AssembledPiece {
            piece: block.piece,
            blocks,
            hash_ok: &digest == expected,
        })
    }

    /// Drops what arrived of a piece (its download restarts).
    pub fn discard(&mut self, piece: u32) {
        if let Some(dropped) = self.pieces.remove(&piece) {
            self.buffered_bytes -= dropped
                .blocks
                .iter()
                .flatten()
                .map(|b| b.len() as u64)
                .sum::<u64>();
        }
    }
}

/// SHA-1 of one buffer (verifying a piece read from disk on resume or seeding in place).
pub fn sha1_of(parts: &[&[u8]]) -> [u8; 20] {
    let mut hasher = Sha1::new();
    for part in parts {
        hasher.update(part);
    }
    hasher.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn piece_data(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 % 251) as u8).collect()
    }

    #[test]
    fn out_of_order_blocks_are_buffered_and_the_piece_verifies() {
        let g = Geometry::new(3 * u64::from(BLOCK_LEN) - 100, 4 * BLOCK_LEN).unwrap();
        let data = piece_data(g.piece_size(0) as usize);
        let expected = sha1_of(&[&data]);
        let mut assembler = PieceAssembler::new(g);
        let block = |i| g.block(0, i);
        let slice = |b: Block| {
            Bytes::copy_from_slice(&data[b.offset as usize..(b.offset + b.len) as usize])
        };
        assert!(
            assembler
                .add(block(2), slice(block(2)), &expected)
                .is_none()
        );
        assert!(
            assembler
                .add(block(1), slice(block(1)), &expected)
                .is_none()
        );
        assert_eq!(
            assembler.pieces[&0].hashed, 0,
            "nothing hashed before block 0"
        );
        assert_eq!(
            assembler.buffered_bytes(),
            u64::from(block(1).len + block(2).len)
        );
        let done = assembler.add(block(0), slice(block(0)), &expected).unwrap();
        assert!(done.hash_ok);
        assert_eq!(done.blocks.concat(), data);
        assert_eq!(assembler.buffered_bytes(), 0);
    }

    #[test]
    fn hashing_advances_with_each_in_order_block() {
        let g = Geometry::new(u64::from(4 * BLOCK_LEN), 4 * BLOCK_LEN).unwrap();
        let mut assembler = PieceAssembler::new(g);
        let zero = Bytes::from(vec![0u8; BLOCK_LEN as usize]);
        assembler.add(g.block(0, 0), zero.clone(), &[0; 20]);
        assembler.add(g.block(0, 1), zero.clone(), &[0; 20]);
        assert_eq!(assembler.pieces[&0].hashed, 2);
    }

    #[test]
    fn a_corrupt_piece_fails_and_discard_frees_memory() {
        let g = Geometry::new(u64::from(2 * BLOCK_LEN), 2 * BLOCK_LEN).unwrap();
        let data = piece_data(2 * BLOCK_LEN as usize);
        let expected = sha1_of(&[&data]);
        let mut assembler = PieceAssembler::new(g);
        let mut bad = data[BLOCK_LEN as usize..].to_vec();
        bad[5] ^= 1;
        assembler.add(g.block(0, 1), Bytes::from(bad), &expected);
        let done = assembler.add(
            g.block(0, 0),
            Bytes::copy_from_slice(&data[..BLOCK_LEN as usize]),
            &expected,
        );
        assert!(!done.unwrap().hash_ok);
        assembler.add(
            g.block(0, 1),
            Bytes::from(vec![1; BLOCK_LEN as usize]),
            &expected,
        );
        assembler.discard(0);
        assert_eq!(assembler.buffered_bytes(), 0);
    }
}
