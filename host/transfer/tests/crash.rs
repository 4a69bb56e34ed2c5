//! kill -9 in the middle of writing: a child process stores pieces through the disk thread and is killed with
//! SIGKILL while it writes; every piece the journal then names must be on disk with the right hash, and the
//! download resumes from the journal to a complete, verified copy.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use allpeers_transfer::cache::disk::{DiskEvent, DiskWriter, SyncPolicy, WriteJob};
use allpeers_transfer::cache::journal::Journal;
use allpeers_transfer::cache::layout::Layout;
use allpeers_transfer::cache::storage::{SpaceAccount, Storage};
use allpeers_transfer::swarm::assembler::sha1_of;
use allpeers_transfer::swarm::geometry::Geometry;

const PIECE_LEN: u32 = 64 * 1024;
const PIECES: u32 = 512;
const CONTENT_ID: [u8; 20] = [0x42; 20];
/// Pieces handed to the disk thread ahead of the last stored one.
const QUEUED_AHEAD: usize = 16;
const CHILD_DIR: &str = "ALLPEERS_TRANSFER_CRASH_CHILD_DIR";

fn geometry() -> Geometry {
    Geometry::new(u64::from(PIECE_LEN) * u64::from(PIECES), PIECE_LEN).unwrap()
}

fn layout() -> Layout {
    let half = u64::from(PIECE_LEN) * u64::from(PIECES) / 2 + 12_345;
    Layout::new([
        ("x/first".into(), half),
        (
            "second".into(),
            u64::from(PIECE_LEN) * u64::from(PIECES) - half,
        ),
    ])
    .unwrap()
}

fn piece_data(piece: u32) -> Vec<u8> {
    let mut state = u64::from(piece).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..PIECE_LEN)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

fn job(piece: u32) -> WriteJob {
    WriteJob {
        piece,
        data: piece_data(piece),
    }
}

/// Writes the pieces `wanted` and reports on stdout how many are durable after each group commit (`stored N`).
fn write_pieces(dir: &Path, wanted: impl Iterator<Item = u32>, report: bool) -> usize {
    let storage = Arc::new(Storage::create(&dir.join("data"), layout(), geometry()).unwrap());
    let (journal, _) = Journal::open(&dir.join("journal"), CONTENT_ID, PIECES).unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    // Group commits every MiB: many while the child writes, so the kill lands between and during them.
    let policy = SyncPolicy {
        interval: Duration::from_secs(1),
        bytes: 1 << 20,
    };
    let writer = DiskWriter::spawn_with(
        storage,
        journal,
        Arc::new(SpaceAccount::new(None)),
        tx,
        policy,
    );
    // Keep a few pieces queued, as a download does: batches follow one another and one is always in flight.
    let mut wanted = wanted.peekable();
    let (mut queued, mut written, mut stored) = (0, 0, 0);
    while wanted.peek().is_some() || stored < queued {
        while queued - written < QUEUED_AHEAD {
            let Some(piece) = wanted.next() else { break };
            writer.write(job(piece));
            queued += 1;
        }
        if wanted.peek().is_none() && written == queued {
            // The last pieces: sync now rather than at the end of the interval, as a session does.
            writer.sync();
        }
        match runtime.block_on(rx.recv()).expect("disk thread alive") {
            DiskEvent::Written { pieces, .. } => written += pieces.len(),
            DiskEvent::Durable { pieces } => {
                stored += pieces.len();
                if report {
                    println!("stored {stored}");
                }
            }
            other => panic!("{other:?}"),
        }
    }
    stored
}

/// The child's side: run only when the parent re-executes this test binary with the directory in the environment.
#[test]
#[ignore = "the child process of kill_9_never_leaves_a_journaled_piece_missing"]
fn crash_child_writes_until_killed() {
    let dir = std::env::var(CHILD_DIR).expect("run by the parent test only");
    // In reverse order, so the journal's order differs from the files' order.
    write_pieces(Path::new(&dir), (0..PIECES).rev(), true);
}

#[test]
fn kill_9_never_leaves_a_journaled_piece_missing() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "crash_child_writes_until_killed",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_DIR, dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let deadline = Instant::now() + Duration::from_secs(60);
    // Kill once some batches are durable and more are being written.
    loop {
        assert!(
            Instant::now() < deadline,
            "the child never reported progress"
        );
        let line = lines.next().expect("child output").unwrap();
        if let Some(count) = line.strip_prefix("stored ") {
            let count: u32 = count.parse().unwrap();
            assert!(
                count < PIECES,
                "the child finished before the kill; make the content larger"
            );
            if count >= 8 {
                break;
            }
        }
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();

    let (_, done) = Journal::open(&dir.path().join("journal"), CONTENT_ID, PIECES).unwrap();
    assert!(done.count() >= 8, "journal lost records: {}", done.count());
    assert!(!done.is_full(), "killed before the end");
    let storage = Storage::create(&dir.path().join("data"), layout(), geometry()).unwrap();
    for piece in done.iter() {
        assert!(
            storage
                .verify_piece(piece, &sha1_of(&[&piece_data(piece)]))
                .unwrap(),
            "journaled piece {piece} is not on disk"
        );
    }
    drop(storage);

    // Resume: only what the journal lacks is written again, and the whole content verifies.
    let missing: Vec<u32> = (0..PIECES).filter(|p| !done.contains(*p)).collect();
    assert_eq!(
        write_pieces(dir.path(), missing.iter().copied(), false),
        missing.len()
    );
    let (_, done) = Journal::open(&dir.path().join("journal"), CONTENT_ID, PIECES).unwrap();
    assert!(done.is_full());
    let storage = Storage::create(&dir.path().join("data"), layout(), geometry()).unwrap();
    for piece in 0..PIECES {
        assert!(
            storage
                .verify_piece(piece, &sha1_of(&[&piece_data(piece)]))
                .unwrap(),
            "piece {piece}"
        );
    }
}
