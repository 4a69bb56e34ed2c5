//! The record of which pieces are safely on disk: an append-only file of fixed-size records, each written and
//! synced only after the piece's data was synced. A crash can cut the last record short; that record (and anything
//! after a record that fails its check) is ignored, so a piece is never taken as done unless its record is whole.
//!
//! Format: header = magic `APJ1` + the content's 20-byte id; then records = piece index (u32 BE) + check (u32 BE).

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::Path;

use crate::swarm::geometry::{MAX_PIECES, PieceSet};

const MAGIC: &[u8; 4] = b"APJ1";
pub const HEADER_LEN: usize = 4 + 20;
pub const RECORD_LEN: usize = 8;
/// A journal longer than one record per piece twice over (a piece may be recorded again after a re-check) is not ours.
pub const MAX_JOURNAL_LEN: usize = HEADER_LEN + 2 * RECORD_LEN * MAX_PIECES as usize;

#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("journal I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("not a transfer journal (bad magic or truncated header)")]
    NotAJournal,
    #[error("the journal belongs to other content")]
    OtherContent,
    #[error("journal longer than {MAX_JOURNAL_LEN} bytes")]
    TooLong,
}

/// Ties a record to its piece and its content, so a stray or torn record fails the check (FNV-1a, 32 bits).
fn check(content: &[u8; 20], piece: u32) -> u32 {
    let mut hash: u32 = 0x811c_9dc5;
    for byte in content.iter().chain(piece.to_be_bytes().iter()) {
        hash ^= u32::from(*byte);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    hash
}

/// Reads a journal's bytes: the pieces recorded done, and how many bytes of it are valid (the rest is a torn tail).
pub fn decode(
    bytes: &[u8],
    content: &[u8; 20],
    piece_count: u32,
) -> Result<(PieceSet, usize), JournalError> {
    if bytes.len() > MAX_JOURNAL_LEN {
        return Err(JournalError::TooLong);
    }
    if bytes.len() < HEADER_LEN || &bytes[..4] != MAGIC {
        return Err(JournalError::NotAJournal);
    }
    if &bytes[4..HEADER_LEN] != content {
        return Err(JournalError::OtherContent);
    }
    let mut done = PieceSet::new(piece_count);
    let mut valid = HEADER_LEN;
    for record in bytes[HEADER_LEN..].chunks_exact(RECORD_LEN) {
        let piece = u32::from_be_bytes(record[..4].try_into().expect("4 bytes"));
        let sum = u32::from_be_bytes(record[4..].try_into().expect("4 bytes"));
        if sum != check(content, piece) || piece >= piece_count {
            break;
        }
        done.insert(piece);
        valid += RECORD_LEN;
    }
    Ok((done, valid))
}

pub fn encode_record(content: &[u8; 20], piece: u32) -> [u8; RECORD_LEN] {
    let mut record = [0; RECORD_LEN];
    record[..4].copy_from_slice(&piece.to_be_bytes());
    record[4..].copy_from_slice(&check(content, piece).to_be_bytes());
    record
}

#[derive(Debug)]
pub struct Journal {
    file: File,
    content: [u8; 20],
}

impl Journal {
    /// Opens (or creates) the journal and returns the pieces it records. A torn tail is cut off so new records
    /// follow the last whole one.
    pub fn open(
        path: &Path,
        content: [u8; 20],
        piece_count: u32,
    ) -> Result<(Self, PieceSet), JournalError> {
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?;
        let mut bytes = Vec::new();
        (&mut file)
            .take(MAX_JOURNAL_LEN as u64 + 1)
            .read_to_end(&mut bytes)?;
        if bytes.is_empty() {
            let mut header = Vec::with_capacity(HEADER_LEN);
            header.extend_from_slice(MAGIC);
            header.extend_from_slice(&content);
            file.write_all(&header)?;
            file.sync_all()?;
            return Ok((Self { file, content }, PieceSet::new(piece_count)));
        }
        let (done, valid) = decode(&bytes, &content, piece_count)?;
        if valid < bytes.len() {
            file.set_len(valid as u64)?;
            file.sync_all()?;
        }
        use std::io::Seek;
        file.seek(std::io::SeekFrom::Start(valid as u64))?;
        Ok((Self { file, content }, done))
    }

    /// Records pieces whose data is already synced, and syncs the record.
    pub fn record(&mut self, pieces: &[u32]) -> Result<(), JournalError> {
        let mut buf = Vec::with_capacity(pieces.len() * RECORD_LEN);
        for &piece in pieces {
            buf.extend_from_slice(&encode_record(&self.content, piece));
        }
        self.file.write_all(&buf)?;
        self.file.sync_data()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: [u8; 20] = [7; 20];

    #[test]
    fn records_survive_reopen_and_a_torn_tail_is_cut() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j");
        let (mut journal, done) = Journal::open(&path, ID, 10).unwrap();
        assert!(done.is_empty());
        journal.record(&[3, 7]).unwrap();
        drop(journal);
        // A crash in the middle of the next record.
        let mut file = OpenOptions::new().append(true).open(&path).unwrap();
        file.write_all(&encode_record(&ID, 5)[..5]).unwrap();
        drop(file);
        let (mut journal, done) = Journal::open(&path, ID, 10).unwrap();
        assert_eq!(done.iter().collect::<Vec<_>>(), vec![3, 7]);
        journal.record(&[5]).unwrap();
        let (_, done) = Journal::open(&path, ID, 10).unwrap();
        assert_eq!(done.iter().collect::<Vec<_>>(), vec![3, 5, 7]);
    }

    #[test]
    fn garbage_and_foreign_journals_are_refused_or_stop_the_read() {
        let mut bytes = MAGIC.to_vec();
        bytes.extend_from_slice(&ID);
        bytes.extend_from_slice(&encode_record(&ID, 1));
        bytes.extend_from_slice(&[0xff; 8]);
        bytes.extend_from_slice(&encode_record(&ID, 2));
        let (done, valid) = decode(&bytes, &ID, 10).unwrap();
        assert_eq!(done.iter().collect::<Vec<_>>(), vec![1]);
        assert_eq!(valid, HEADER_LEN + RECORD_LEN);
        assert!(matches!(
            decode(&bytes, &[8; 20], 10),
            Err(JournalError::OtherContent)
        ));
        assert!(matches!(
            decode(b"APJ", &ID, 10),
            Err(JournalError::NotAJournal)
        ));
        // A record for a piece past the end stops the read.
        let mut past = bytes[..HEADER_LEN].to_vec();
        past.extend_from_slice(&encode_record(&ID, 10));
        assert!(decode(&past, &ID, 10).unwrap().0.is_empty());
    }
}
