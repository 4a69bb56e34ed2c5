//! Pieces put together from blocks, hashed in order as the blocks arrive: SHA-1 runs over each block as soon as
//! every block before it is there, so a completed piece is verified the moment its last block lands and is never
//! read back from disk. Each block is copied once into its piece's own buffer as it arrives: the received frame (a
//! slice of a connection's read buffer) is let go at once, so the read buffer is reused for the next read instead
//! of being pinned until the whole piece is written, and memory is exactly the pieces in progress.
//!
//! Piece buffers are reused: once the disk thread has written a piece its buffer comes back
//! ([`PieceAssembler::recycle`]) and a later piece is put together in it, so a download allocates as many buffers as
//! it ever holds at once instead of allocating, zeroing and freeing a piece-sized buffer per piece (on two threads: the allocator
//! keeps what one thread frees in that thread's arena). A reused buffer needs no zeroing: every byte of a piece is
//! overwritten by its blocks before the piece is whole.

use std::collections::BTreeMap;

use sha1::{Digest, Sha1};

use super::geometry::{BLOCK_LEN, Block, Geometry};

/// A piece whose blocks all arrived, with its verdict.
#[derive(Debug)]
pub struct AssembledPiece {
    pub piece: u32,
    /// The piece's bytes in one buffer: written to disk as one slice of a vectored write, then handed back to
    /// [`PieceAssembler::recycle`].
    pub data: Vec<u8>,
    pub hash_ok: bool,
}

impl AssembledPiece {
    /// The piece cut into its blocks (what each sender sent).
    pub fn blocks(&self) -> impl Iterator<Item = &[u8]> {
        self.data.chunks(BLOCK_LEN as usize)
    }
}

#[derive(Debug)]
struct InProgress {
    data: Vec<u8>,
    arrived: Vec<bool>,
    /// Blocks `0..hashed` went into `hasher`.
    hashed: usize,
    hasher: Sha1,
}

#[derive(Debug)]
pub struct PieceAssembler {
    geometry: Geometry,
    pieces: BTreeMap<u32, InProgress>,
    buffered_bytes: u64,
    /// Buffers of written pieces (each the torrent's piece length), reused for the next pieces.
    spare: Vec<Vec<u8>>,
}

/// Spare buffers kept at most: more than the pieces a download has in memory at once under the session's bounds
/// (unfinished pieces plus those queued for the disk) are never needed.
pub const MAX_SPARE_BYTES: u64 = 48 * 1024 * 1024;

impl PieceAssembler {
    pub fn new(geometry: Geometry) -> Self {
        Self {
            geometry,
            pieces: BTreeMap::new(),
            buffered_bytes: 0,
            spare: Vec::new(),
        }
    }

    /// Takes back buffers of written pieces for the next pieces (only full-length ones; the rest are dropped).
    pub fn recycle(&mut self, buffers: impl IntoIterator<Item = Vec<u8>>) {
        let len = self.geometry.piece_len() as usize;
        for buffer in buffers {
            if buffer.len() == len && (self.spare.len() + 1) * len <= MAX_SPARE_BYTES as usize {
                self.spare.push(buffer);
            }
        }
    }

    /// Lets the spare buffers go (the download is done or paused: none will be needed soon).
    pub fn release_spare(&mut self) {
        self.spare = Vec::new();
    }

    /// Bytes held in memory for unfinished pieces: each started piece's whole buffer.
    pub fn buffered_bytes(&self) -> u64 {
        self.buffered_bytes
    }

    /// Adds a block the picker accepted as fresh (its bytes are copied). Returns the piece when it is whole.
    /// `expected` is the piece's SHA-1 from the metainfo.
    pub fn add(
        &mut self,
        block: Block,
        data: &[u8],
        expected: &[u8; 20],
    ) -> Option<AssembledPiece> {
        debug_assert!(self.geometry.is_valid_block(block) && data.len() == block.len as usize);
        let count = self.geometry.blocks_in_piece(block.piece) as usize;
        let size = self.geometry.piece_size(block.piece) as usize;
        let buffered = &mut self.buffered_bytes;
        let spare = &mut self.spare;
        let entry = self.pieces.entry(block.piece).or_insert_with(|| {
            *buffered += size as u64;
            // A spare buffer's old bytes never leave it: the piece is whole only once each block overwrote its part.
            let data = match spare.last() {
                Some(buffer) if buffer.len() == size => spare.pop().expect("a spare buffer"),
                _ => vec![0; size],
            };
            InProgress {
                data,
                arrived: vec![false; count],
                hashed: 0,
                hasher: Sha1::new(),
            }
        });
        let index = (block.offset / BLOCK_LEN) as usize;
        if entry.arrived[index] {
            return None;
        }
        entry.arrived[index] = true;
        let start = block.offset as usize;
        entry.data[start..start + data.len()].copy_from_slice(data);
        while entry.arrived.get(entry.hashed) == Some(&true) {
            let from = entry.hashed * BLOCK_LEN as usize;
            let to = (from + BLOCK_LEN as usize).min(size);
            entry.hasher.update(&entry.data[from..to]);
            entry.hashed += 1;
        }
        if entry.hashed < count {
            return None;
        }
        let done = self.pieces.remove(&block.piece).expect("present");
        self.buffered_bytes -= size as u64;
        let digest: [u8; 20] = done.hasher.finalize().into();
        Some(AssembledPiece {
            piece: block.piece,
            data: done.data,
            hash_ok: &digest == expected,
        })
    }

    /// Drops what arrived of a piece (its download restarts).
    pub fn discard(&mut self, piece: u32) {
        if let Some(dropped) = self.pieces.remove(&piece) {
            self.buffered_bytes -= dropped.data.len() as u64;
            self.recycle([dropped.data]);
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
        let slice = |b: Block| &data[b.offset as usize..(b.offset + b.len) as usize];
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
            u64::from(g.piece_size(0)),
            "one buffer for the piece, whatever arrived"
        );
        let done = assembler.add(block(0), slice(block(0)), &expected).unwrap();
        assert!(done.hash_ok);
        assert_eq!(done.data, data);
        assert_eq!(done.blocks().count(), 3);
        assert_eq!(assembler.buffered_bytes(), 0);
    }

    #[test]
    fn hashing_advances_with_each_in_order_block() {
        let g = Geometry::new(u64::from(4 * BLOCK_LEN), 4 * BLOCK_LEN).unwrap();
        let mut assembler = PieceAssembler::new(g);
        let zero = vec![0u8; BLOCK_LEN as usize];
        assembler.add(g.block(0, 0), &zero, &[0; 20]);
        assembler.add(g.block(0, 1), &zero, &[0; 20]);
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
        assembler.add(g.block(0, 1), &bad, &expected);
        let done = assembler.add(g.block(0, 0), &data[..BLOCK_LEN as usize], &expected);
        assert!(!done.unwrap().hash_ok);
        assembler.add(g.block(0, 1), &[1; BLOCK_LEN as usize], &expected);
        assembler.discard(0);
        assert_eq!(assembler.buffered_bytes(), 0);
    }

    #[test]
    fn a_recycled_buffer_is_reused_and_its_old_bytes_never_show() {
        let g = Geometry::new(u64::from(6 * BLOCK_LEN), 2 * BLOCK_LEN).unwrap();
        let data = piece_data(6 * BLOCK_LEN as usize);
        let piece =
            |p: u32| &data[(p * 2 * BLOCK_LEN) as usize..((p + 1) * 2 * BLOCK_LEN) as usize];
        let block =
            |p: u32, i: u32| &piece(p)[(i * BLOCK_LEN) as usize..((i + 1) * BLOCK_LEN) as usize];
        let mut assembler = PieceAssembler::new(g);
        assembler.add(g.block(0, 0), block(0, 0), &sha1_of(&[piece(0)]));
        let first = assembler
            .add(g.block(0, 1), block(0, 1), &sha1_of(&[piece(0)]))
            .unwrap();
        let address = first.data.as_ptr();
        assembler.recycle([first.data, vec![7; 10]]);
        assert_eq!(
            assembler.spare.len(),
            1,
            "a buffer of another length is not kept"
        );
        // Piece 2 goes into piece 0's old buffer, blocks in reverse order: it verifies, none of piece 0 is left.
        let expected = sha1_of(&[piece(2)]);
        assembler.add(g.block(2, 1), block(2, 1), &expected);
        assert!(assembler.spare.is_empty());
        let second = assembler
            .add(g.block(2, 0), block(2, 0), &expected)
            .unwrap();
        assert_eq!(second.data.as_ptr(), address, "the same allocation");
        assert!(second.hash_ok);
        assert_eq!(second.data, piece(2));
        assembler.recycle([second.data]);
        assembler.release_spare();
        assert!(assembler.spare.is_empty());
    }
}
