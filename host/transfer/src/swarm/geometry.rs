//! Piece and block arithmetic, and a compact set of pieces.

/// Size of a block, the unit of a request on the wire. Every client uses 16 KiB; many refuse larger requests.
pub const BLOCK_LEN: u32 = 16 * 1024;

/// The largest piece we accept: 16 MiB keeps one piece's buffers (held in memory until hashed and written) bounded.
pub const MAX_PIECE_LEN: u32 = 16 * 1024 * 1024;

/// The most pieces a torrent may have: bounds the bitfield (2 Mi pieces = 256 KiB on the wire) and per-piece tables.
pub const MAX_PIECES: u32 = 2 * 1024 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GeometryError {
    #[error("piece length {0} is not a positive multiple of 16 KiB up to {MAX_PIECE_LEN}")]
    PieceLength(u32),
    #[error(
        "total length {total} with {piece_len}-byte pieces makes more than {MAX_PIECES} pieces"
    )]
    TooManyPieces { total: u64, piece_len: u32 },
    #[error("the content is empty")]
    Empty,
}

/// The shape of some content cut into pieces and blocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Geometry {
    total_len: u64,
    piece_len: u32,
    piece_count: u32,
}

/// One block of one piece: what a request names and a piece message carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Block {
    pub piece: u32,
    pub offset: u32,
    pub len: u32,
}

impl Block {
    /// Index of the block inside its piece.
    pub fn index(&self) -> u32 {
        self.offset / BLOCK_LEN
    }
}

impl Geometry {
    pub fn new(total_len: u64, piece_len: u32) -> Result<Self, GeometryError> {
        if piece_len == 0 || !piece_len.is_multiple_of(BLOCK_LEN) || piece_len > MAX_PIECE_LEN {
            return Err(GeometryError::PieceLength(piece_len));
        }
        if total_len == 0 {
            return Err(GeometryError::Empty);
        }
        let count = total_len.div_ceil(u64::from(piece_len));
        if count > u64::from(MAX_PIECES) {
            return Err(GeometryError::TooManyPieces {
                total: total_len,
                piece_len,
            });
        }
        Ok(Self {
            total_len,
            piece_len,
            piece_count: count as u32,
        })
    }

    pub fn total_len(&self) -> u64 {
        self.total_len
    }

    pub fn piece_len(&self) -> u32 {
        self.piece_len
    }

    pub fn piece_count(&self) -> u32 {
        self.piece_count
    }

    /// Offset of a piece in the whole content.
    pub fn piece_offset(&self, piece: u32) -> u64 {
        u64::from(piece) * u64::from(self.piece_len)
    }

    /// Length of a piece: all are `piece_len` but the last.
    pub fn piece_size(&self, piece: u32) -> u32 {
        let start = self.piece_offset(piece);
        (self.total_len - start).min(u64::from(self.piece_len)) as u32
    }

    pub fn blocks_in_piece(&self, piece: u32) -> u32 {
        self.piece_size(piece).div_ceil(BLOCK_LEN)
    }

    /// The `index`-th block of `piece`.
    pub fn block(&self, piece: u32, index: u32) -> Block {
        let offset = index * BLOCK_LEN;
        let len = (self.piece_size(piece) - offset).min(BLOCK_LEN);
        Block { piece, offset, len }
    }

    /// Whether a (piece, offset, len) triple from the wire names exactly one of our blocks.
    pub fn is_valid_block(&self, block: Block) -> bool {
        block.piece < self.piece_count
            && block.offset.is_multiple_of(BLOCK_LEN)
            && block.offset < self.piece_size(block.piece)
            && self.block(block.piece, block.index()) == block
    }

    /// Whether a peer's request is in bounds (peers may ask any range up to a block, not only aligned blocks).
    pub fn is_valid_request(&self, block: Block) -> bool {
        block.piece < self.piece_count
            && block.len > 0
            && block.len <= BLOCK_LEN
            && u64::from(block.offset) + u64::from(block.len)
                <= u64::from(self.piece_size(block.piece))
    }
}

/// A set of piece indices, one bit each, in the wire's bit order (piece 0 is the high bit of byte 0).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PieceSet {
    bits: Vec<u8>,
    len: u32,
    count: u32,
}

impl PieceSet {
    pub fn new(len: u32) -> Self {
        Self {
            bits: vec![0; len.div_ceil(8) as usize],
            len,
            count: 0,
        }
    }

    pub fn full(len: u32) -> Self {
        let mut set = Self::new(len);
        for piece in 0..len {
            set.insert(piece);
        }
        set
    }

    /// Reads a wire bitfield. `None` when its length is wrong or a spare bit past the last piece is set
    /// (BEP 3: such a peer is to be dropped).
    pub fn from_wire(bytes: &[u8], len: u32) -> Option<Self> {
        if bytes.len() != len.div_ceil(8) as usize {
            return None;
        }
        let spare = (bytes.len() as u32 * 8 - len) as u8;
        if spare > 0
            && bytes
                .last()
                .is_some_and(|last| last & ((1u8 << spare) - 1) != 0)
        {
            return None;
        }
        let count = bytes.iter().map(|b| b.count_ones()).sum();
        Some(Self {
            bits: bytes.to_vec(),
            len,
            count,
        })
    }

    pub fn as_wire(&self) -> &[u8] {
        &self.bits
    }

    pub fn len(&self) -> u32 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Number of pieces in the set.
    pub fn count(&self) -> u32 {
        self.count
    }

    pub fn is_full(&self) -> bool {
        self.count == self.len
    }

    pub fn contains(&self, piece: u32) -> bool {
        piece < self.len && self.bits[(piece / 8) as usize] & (0x80 >> (piece % 8)) != 0
    }

    /// Adds a piece; false when it was there already or out of range.
    pub fn insert(&mut self, piece: u32) -> bool {
        if piece >= self.len || self.contains(piece) {
            return false;
        }
        self.bits[(piece / 8) as usize] |= 0x80 >> (piece % 8);
        self.count += 1;
        true
    }

    pub fn remove(&mut self, piece: u32) -> bool {
        if !self.contains(piece) {
            return false;
        }
        self.bits[(piece / 8) as usize] &= !(0x80 >> (piece % 8));
        self.count -= 1;
        true
    }

    pub fn iter(&self) -> impl Iterator<Item = u32> + '_ {
        (0..self.len).filter(|&piece| self.contains(piece))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_piece_and_block_are_short() {
        let g = Geometry::new(3 * 32768 + 20000, 32768).unwrap();
        assert_eq!(g.piece_count(), 4);
        assert_eq!(g.piece_size(3), 20000);
        assert_eq!(g.blocks_in_piece(3), 2);
        assert_eq!(
            g.block(3, 1),
            Block {
                piece: 3,
                offset: 16384,
                len: 20000 - 16384
            }
        );
        assert!(g.is_valid_block(Block {
            piece: 3,
            offset: 16384,
            len: 3616
        }));
        assert!(!g.is_valid_block(Block {
            piece: 3,
            offset: 16384,
            len: 16384
        }));
        assert!(!g.is_valid_block(Block {
            piece: 4,
            offset: 0,
            len: 16384
        }));
        assert!(g.is_valid_request(Block {
            piece: 3,
            offset: 100,
            len: 19900 - 16384
        }));
        assert!(!g.is_valid_request(Block {
            piece: 3,
            offset: 19999,
            len: 2
        }));
    }

    #[test]
    fn bad_geometry_is_refused() {
        assert_eq!(
            Geometry::new(10, 1000),
            Err(GeometryError::PieceLength(1000))
        );
        assert_eq!(Geometry::new(0, BLOCK_LEN), Err(GeometryError::Empty));
        assert!(matches!(
            Geometry::new(u64::MAX, BLOCK_LEN),
            Err(GeometryError::TooManyPieces { .. })
        ));
    }

    #[test]
    fn wire_bitfield_round_trips_and_spare_bits_are_refused() {
        let mut set = PieceSet::new(10);
        set.insert(0);
        set.insert(9);
        assert_eq!(set.as_wire(), &[0x80, 0x40]);
        assert_eq!(PieceSet::from_wire(&[0x80, 0x40], 10), Some(set));
        assert_eq!(
            PieceSet::from_wire(&[0x80, 0x20], 10),
            None,
            "bit of piece 10 of 10 set"
        );
        assert_eq!(PieceSet::from_wire(&[0x80], 10), None, "too short");
    }
}
