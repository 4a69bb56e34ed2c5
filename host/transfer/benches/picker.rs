//! The swarm's piece picker over a whole download: how long picking takes against the time the bytes themselves
//! take at 1 GB/s (the picker runs under the download's lock, so its time holds up every source).
//!
//! `cargo bench -p allpeers-transfer --bench picker` runs two cases for files of 1, 10 and 100 GiB in 256 KiB
//! pieces (the private swarm's chunks): one seeder asked for a piece at a time; a seeder and seven peers that each
//! hold a random half, with eight pieces announced (`HAVE`) after every piece we verify, as a BitTorrent swarm does.

use std::time::Instant;

use allpeers_transfer::swarm::PeerKey;
use allpeers_transfer::swarm::geometry::{Geometry, PieceSet};
use allpeers_transfer::swarm::picker::Picker;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const PIECE: u64 = 256 * 1024;

/// Picks through a whole file of `pieces` from `peers`, announcing `haves` pieces after each verified one; returns
/// the picks made.
fn download(pieces: u32, peers: &[PieceSet], haves: usize, rng: &mut StdRng) -> u64 {
    let geometry = Geometry::new(u64::from(pieces) * PIECE, PIECE as u32).expect("geometry");
    let mut picker = Picker::new(geometry, PieceSet::new(pieces), 7);
    for has in peers {
        picker.peer_has_set(has);
    }
    let mut picks = 0;
    let mut idle = 0;
    while !picker.is_complete() {
        let peer = rng.gen_range(0..peers.len());
        let picked = picker.pick(PeerKey(peer as u64), &peers[peer], 16);
        picks += 1;
        if picked.is_empty() {
            idle += 1;
            assert!(idle < 1_000_000, "the picker stalled");
            continue;
        }
        for block in picked {
            picker.block_arrived(PeerKey(peer as u64), block);
            if picker.all_blocks_arrived(block.piece) {
                picker.piece_verified(block.piece);
                for _ in 0..haves {
                    picker.peer_has_piece(rng.gen_range(0..pieces));
                }
            }
        }
    }
    picks
}

fn main() {
    println!("piece picker, 256 KiB pieces, one run per line");
    println!(
        "{:<58} {:>9} {:>10} {:>11} {:>10}",
        "case", "picks", "total ms", "per pick µs", "of 1 GB/s"
    );
    let mut rng = StdRng::seed_from_u64(1);
    for gib in [1u32, 10, 100] {
        let pieces = gib * 4096;
        let seeder = vec![PieceSet::full(pieces)];
        // A seeder and seven peers that each hold a random half.
        let halves: Vec<PieceSet> = (0..8)
            .map(|peer| {
                if peer == 0 {
                    return PieceSet::full(pieces);
                }
                let mut has = PieceSet::new(pieces);
                for piece in 0..pieces {
                    if rng.gen_bool(0.5) {
                        has.insert(piece);
                    }
                }
                has
            })
            .collect();
        for (name, peers, haves) in [
            ("one seeder", &seeder, 0),
            ("a seeder, 7 halves, 8 HAVEs a piece", &halves, 8),
        ] {
            let started = Instant::now();
            let picks = download(pieces, peers, haves, &mut rng);
            let took = started.elapsed();
            let bytes_at_1gbs = (u64::from(pieces) * PIECE) as f64 / 1e9;
            println!(
                "{:<58} {picks:>9} {:>10.1} {:>11.2} {:>9.2}%",
                format!("{gib} GiB ({pieces} pieces), {name}"),
                took.as_secs_f64() * 1e3,
                took.as_secs_f64() * 1e6 / picks as f64,
                100.0 * took.as_secs_f64() / bytes_at_1gbs,
            );
        }
    }
}
