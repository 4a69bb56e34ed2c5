//! Fuzzes the decoder of a file's body (allpeers-transfer `blob::http::decode_blocks`, over `blob::verify`): the
//! true Bao encoding of a range of a 100 KiB file, damaged as the input says (bytes changed, inserted, cut; split
//! into pieces anywhere), never panics, and hands on nothing that is not the file's: every tree node it yields is
//! the file's, every block is the file's bytes at that offset, and it succeeds only with the whole range, undamaged.
#![no_main]

use std::sync::OnceLock;

use allpeers_transfer::blob::http::{Verified, decode_blocks};
use allpeers_transfer::blob::outboards::Outboards;
use allpeers_transfer::blob::{BLOCK_BYTES, ContentHash};
use bao_tree::io::sync::encode_ranges;
use bao_tree::{ChunkNum, ChunkRanges};
use bytes::Bytes;
use libfuzzer_sys::fuzz_target;

const SIZE: usize = 100 * 1024 + 17;
const BLOCKS: u64 = (SIZE as u64).div_ceil(BLOCK_BYTES);

struct File {
    data: Vec<u8>,
    /// Its tree (the pre-order outboard: 64 bytes a node).
    tree: Vec<u8>,
    hash: ContentHash,
    /// The encoding of blocks `a..b`, for every `a < b`.
    encodings: Vec<((u64, u64), Vec<u8>)>,
}

fn file() -> &'static File {
    static FILE: OnceLock<File> = OnceLock::new();
    FILE.get_or_init(|| {
        let data: Vec<u8> = (0..SIZE as u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        let dir =
            std::env::temp_dir().join(format!("allpeers-fuzz-files-body-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("film.bin");
        std::fs::write(&path, &data).unwrap();
        let outboards = Outboards::open(&dir.join("outboards")).unwrap();
        let shared = outboards.add_file(&path).unwrap();
        let source = outboards.open_source(&shared.hash).unwrap();
        let chunks_per_block = BLOCK_BYTES / 1024;
        let mut encodings = Vec::new();
        for a in 0..BLOCKS {
            for b in a + 1..=BLOCKS {
                let ranges = if b == BLOCKS {
                    ChunkRanges::from(ChunkNum(a * chunks_per_block)..)
                } else {
                    ChunkRanges::from(
                        ChunkNum(a * chunks_per_block)..ChunkNum(b * chunks_per_block),
                    )
                };
                let mut encoded = Vec::new();
                encode_ranges(&source.file, &source.outboard, &ranges, &mut encoded).unwrap();
                encodings.push(((a, b), encoded));
            }
        }
        let mut tree = Vec::new();
        std::io::Read::read_to_end(&mut &source.outboard.data, &mut tree).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        File {
            data,
            tree,
            hash: shared.hash,
            encodings,
        }
    })
}

fuzz_target!(|input: &[u8]| {
    let file = file();
    let Some(([which], ops)) = input.split_first_chunk::<1>() else {
        return;
    };
    let ((a, b), encoded) = &file.encodings[usize::from(*which) % file.encodings.len()];
    let range = a * BLOCK_BYTES..(b * BLOCK_BYTES).min(SIZE as u64);
    // Up to 16 operations of 4 bytes: what, where (scaled to the encoding), a byte.
    let mut body = encoded.clone();
    let mut cuts = Vec::new();
    let mut damaged = false;
    for op in ops.chunks_exact(4).take(16) {
        let at = usize::from(u16::from_le_bytes([op[1], op[2]])) * (body.len() + 1) / 65_536;
        match op[0] % 4 {
            0 if at < body.len() => {
                body[at] ^= op[3] | 1;
                damaged = true;
            }
            1 => {
                damaged |= at < body.len();
                body.truncate(at);
            }
            2 => {
                body.insert(at, op[3]);
                damaged = true;
            }
            _ => cuts.push(at),
        }
    }
    cuts.sort_unstable();
    cuts.dedup();
    let body = Bytes::from(body);
    let mut pieces = Vec::new();
    let mut from = 0;
    for cut in cuts.into_iter().filter(|&c| c <= body.len()) {
        pieces.push(body.slice(from..cut));
        from = cut;
    }
    pieces.push(body.slice(from..));

    let mut next_block = range.start;
    let tree = bao_tree::BaoTree::new(SIZE as u64, allpeers_transfer::blob::BLOCK_SIZE);
    let result = decode_blocks(pieces, file.hash, SIZE as u64, range.clone(), |item| {
        if let Verified::Parent(node, (left, right)) = &item {
            let at = tree.pre_order_offset(*node).expect("a node of the tree") as usize * 64;
            assert!(
                file.tree[at..at + 32] == *left.as_bytes()
                    && file.tree[at + 32..at + 64] == *right.as_bytes(),
                "a tree node that is not the file's"
            );
        }
        if let Verified::Block { offset, data } = item {
            assert_eq!(offset, next_block, "blocks in order, none skipped");
            let end = offset as usize + data.len();
            assert!(
                data[..] == file.data[offset as usize..end],
                "a block at {offset} that is not the file's"
            );
            next_block = end as u64;
        }
        Ok(())
    });
    if result.is_ok() {
        assert_eq!(next_block, range.end, "success with the whole range");
    }
    if !damaged {
        assert!(
            result.is_ok(),
            "an undamaged encoding, however split: {result:?}"
        );
    }
});
