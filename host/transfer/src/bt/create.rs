//! Making a .torrent from a file on disk, so a user can seed what they have (in place, never copied). Single files
//! only: that is what `transfers.seed` shares; a folder is shared as one torrent per file.

use std::io::Read;
use std::path::{Path, PathBuf};

use sha1::{Digest, Sha1};

use super::metainfo::{MetainfoError, Torrent};
use crate::cache::layout::safe_relative_path;
use crate::swarm::geometry::{BLOCK_LEN, MAX_PIECE_LEN};

/// Pieces we aim for at most: about 40 KiB of hashes in the .torrent and a bitfield of 256 bytes, while a piece stays
/// small enough that a peer can send one in a fraction of a second.
pub const TARGET_PIECES: u64 = 2048;

#[derive(Debug, thiserror::Error)]
pub enum CreateError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{} is not a regular file", .0.display())]
    NotAFile(PathBuf),
    #[error("{} is empty: there is nothing to share", .0.display())]
    Empty(PathBuf),
    #[error("{} has a name that cannot be shared: {reason}", path.display())]
    BadName { path: PathBuf, reason: String },
    #[error("the torrent made for it does not parse: {0}")]
    Metainfo(#[from] MetainfoError),
}

/// The piece length for `len` bytes: the smallest power of two (at least one block) that keeps the count near
/// [`TARGET_PIECES`], capped at the largest piece the engine accepts.
pub fn piece_len_for(len: u64) -> u32 {
    let mut piece = u64::from(BLOCK_LEN);
    while piece < u64::from(MAX_PIECE_LEN) && len.div_ceil(piece) > TARGET_PIECES {
        piece *= 2;
    }
    piece as u32
}

/// The .torrent (bencoded) for the file at `path`, announcing to `trackers` (none: peers are given directly), and
/// the parsed torrent. Reads the whole file once; run it on a blocking thread.
pub fn create_torrent(path: &Path, trackers: &[String]) -> Result<(Vec<u8>, Torrent), CreateError> {
    let read_error = |source| CreateError::Read {
        path: path.to_path_buf(),
        source,
    };
    let meta = std::fs::metadata(path).map_err(read_error)?;
    if !meta.is_file() {
        return Err(CreateError::NotAFile(path.to_path_buf()));
    }
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    safe_relative_path([name.as_bytes()]).map_err(|e| CreateError::BadName {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    let len = meta.len();
    if len == 0 {
        return Err(CreateError::Empty(path.to_path_buf()));
    }
    let piece_len = piece_len_for(len);
    let mut file = std::fs::File::open(path).map_err(read_error)?;
    let mut pieces = Vec::with_capacity(len.div_ceil(u64::from(piece_len)) as usize * 20);
    let mut buffer = vec![0u8; piece_len as usize];
    let mut hashed = 0u64;
    while hashed < len {
        let want = (len - hashed).min(u64::from(piece_len)) as usize;
        file.read_exact(&mut buffer[..want]).map_err(read_error)?;
        pieces.extend_from_slice(&Sha1::digest(&buffer[..want]));
        hashed += want as u64;
    }
    let bytes = encode(&name, len, piece_len, &pieces, trackers);
    let torrent = Torrent::from_bytes(&bytes)?;
    Ok((bytes, torrent))
}

/// Bencode with its keys in sorted order, as BEP 3 requires (the info-hash depends on the exact bytes).
fn encode(name: &str, len: u64, piece_len: u32, pieces: &[u8], trackers: &[String]) -> Vec<u8> {
    fn string(out: &mut Vec<u8>, bytes: &[u8]) {
        out.extend_from_slice(format!("{}:", bytes.len()).as_bytes());
        out.extend_from_slice(bytes);
    }
    let mut out = b"d".to_vec();
    if let Some(first) = trackers.first() {
        string(&mut out, b"announce");
        string(&mut out, first.as_bytes());
        if trackers.len() > 1 {
            string(&mut out, b"announce-list");
            out.push(b'l');
            for tracker in trackers {
                out.push(b'l');
                string(&mut out, tracker.as_bytes());
                out.push(b'e');
            }
            out.push(b'e');
        }
    }
    string(&mut out, b"created by");
    string(&mut out, b"AllPeers");
    string(&mut out, b"info");
    out.push(b'd');
    string(&mut out, b"length");
    out.extend_from_slice(format!("i{len}e").as_bytes());
    string(&mut out, b"name");
    string(&mut out, name.as_bytes());
    string(&mut out, b"piece length");
    out.extend_from_slice(format!("i{piece_len}e").as_bytes());
    string(&mut out, b"pieces");
    string(&mut out, pieces);
    out.extend_from_slice(b"ee");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::swarm::assembler::sha1_of;

    #[test]
    fn piece_length_grows_with_the_file() {
        assert_eq!(piece_len_for(1), BLOCK_LEN);
        assert_eq!(piece_len_for(2048 * 16 * 1024), BLOCK_LEN);
        assert_eq!(piece_len_for(2048 * 16 * 1024 + 1), 2 * BLOCK_LEN);
        assert_eq!(piece_len_for(8 << 20), 16 * 1024);
        assert_eq!(piece_len_for(1 << 30), 512 * 1024);
        assert_eq!(piece_len_for(u64::MAX / 2), MAX_PIECE_LEN);
    }

    #[test]
    fn a_created_torrent_parses_and_hashes_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("song.flac");
        let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&path, &data).unwrap();
        let trackers = vec!["http://a/announce".to_string(), "udp://b:1".to_string()];
        let (bytes, torrent) = create_torrent(&path, &trackers).unwrap();
        assert_eq!(torrent.name, "song.flac");
        assert_eq!(torrent.layout.total_len(), 100_000);
        assert_eq!(torrent.trackers, trackers);
        assert_eq!(torrent.geometry.piece_count(), 7);
        assert_eq!(torrent.piece_hashes[0], sha1_of(&[&data[..16384]]));
        assert_eq!(torrent.piece_hashes[6], sha1_of(&[&data[6 * 16384..]]));
        // The same file makes the same torrent (a re-seed after a restart keeps its info-hash).
        assert_eq!(create_torrent(&path, &trackers).unwrap().0, bytes);
    }

    #[test]
    fn directories_empty_files_and_missing_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            create_torrent(dir.path(), &[]),
            Err(CreateError::NotAFile(_))
        ));
        let empty = dir.path().join("empty");
        std::fs::write(&empty, b"").unwrap();
        assert!(matches!(
            create_torrent(&empty, &[]),
            Err(CreateError::Empty(_))
        ));
        assert!(matches!(
            create_torrent(&dir.path().join("nope"), &[]),
            Err(CreateError::Read { .. })
        ));
    }
}
