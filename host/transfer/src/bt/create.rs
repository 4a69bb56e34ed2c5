//! Making a .torrent from a file or a folder on disk, so a user can seed what they have (in place, never copied). A
//! folder is one multi-file torrent of the regular files under it, in path order (so the same folder makes the same
//! torrent again); hidden entries (names starting with a dot), symbolic links and empty files are left out.

use std::io::Read;
use std::path::{Path, PathBuf};

use sha1::{Digest, Sha1};

use super::metainfo::{MetainfoError, Torrent};
use crate::cache::layout::{Layout, MAX_FILES, PathError, safe_relative_path};
use crate::cache::stamps::Stamps;
use crate::swarm::geometry::{BLOCK_LEN, MAX_PIECE_LEN};

/// Folders nested deeper than this under a shared folder are not walked into (nor is a loop of bind mounts).
pub const MAX_DEPTH: usize = 32;

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
    #[error("{} is neither a regular file nor a folder", .0.display())]
    NotAFile(PathBuf),
    #[error("{} is empty: there is nothing to share", .0.display())]
    Empty(PathBuf),
    #[error("{} holds more than {MAX_FILES} files", .0.display())]
    TooManyFiles(PathBuf),
    #[error("a file under {} cannot be shared: {source}", path.display())]
    Layout { path: PathBuf, source: PathError },
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

/// The files a torrent of `path` holds, relative to `path`'s parent (a single file's own name; a folder's files under
/// its name), with their lengths, in the order the torrent lists them.
pub fn files_of(path: &Path) -> Result<Vec<(PathBuf, u64)>, CreateError> {
    let read_error = |source| CreateError::Read {
        path: path.to_path_buf(),
        source,
    };
    let meta = std::fs::metadata(path).map_err(read_error)?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let name = safe_relative_path([name.as_bytes()]).map_err(|e| CreateError::BadName {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    let mut files = Vec::new();
    if meta.is_file() {
        files.push((name, meta.len()));
    } else if meta.is_dir() {
        walk(path, &name, 0, &mut files)?;
        files.sort();
    } else {
        return Err(CreateError::NotAFile(path.to_path_buf()));
    }
    if files.iter().all(|(_, len)| *len == 0) {
        return Err(CreateError::Empty(path.to_path_buf()));
    }
    Ok(files)
}

fn walk(
    dir: &Path,
    relative: &Path,
    depth: usize,
    files: &mut Vec<(PathBuf, u64)>,
) -> Result<(), CreateError> {
    if depth > MAX_DEPTH {
        return Ok(());
    }
    let read_error = |source| CreateError::Read {
        path: dir.to_path_buf(),
        source,
    };
    for entry in std::fs::read_dir(dir).map_err(read_error)? {
        let entry = entry.map_err(read_error)?;
        let name = entry.file_name();
        if name.as_encoded_bytes().starts_with(b".") {
            continue;
        }
        // Not followed: a link may point anywhere, and the user shared this folder.
        let kind = entry.file_type().map_err(read_error)?;
        let path = entry.path();
        let relative = relative.join(&name);
        if kind.is_dir() {
            walk(&path, &relative, depth + 1, files)?;
        } else if kind.is_file() {
            let len = entry.metadata().map_err(read_error)?.len();
            if len > 0 {
                if files.len() == MAX_FILES {
                    return Err(CreateError::TooManyFiles(dir.to_path_buf()));
                }
                files.push((relative, len));
            }
        }
    }
    Ok(())
}

/// The stamps (length and time) of the files a torrent of `path` holds: taken before hashing, they let the engine
/// seed without hashing again as long as nothing changed.
pub fn stamps_of(path: &Path) -> Result<Stamps, CreateError> {
    let files = files_of(path)?;
    let root = path.parent().unwrap_or(Path::new("/"));
    let layout = Layout::new(files).map_err(|source| CreateError::Layout {
        path: path.to_path_buf(),
        source,
    })?;
    Stamps::read(root, &layout).map_err(|source| CreateError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// The .torrent (bencoded) for the file or folder at `path`, announcing to `trackers` (none: peers are given
/// directly), and the parsed torrent. Reads every file once; run it on a blocking thread.
pub fn create_torrent(path: &Path, trackers: &[String]) -> Result<(Vec<u8>, Torrent), CreateError> {
    let files = files_of(path)?;
    let root = path.parent().unwrap_or(Path::new("/"));
    let total: u64 = files.iter().map(|(_, len)| len).sum();
    let piece_len = piece_len_for(total);
    let mut pieces = Vec::with_capacity(total.div_ceil(u64::from(piece_len)) as usize * 20);
    let mut piece = Sha1::new();
    let mut in_piece = 0u64;
    let mut buffer = vec![0u8; 256 * 1024];
    for (relative, len) in &files {
        let file_path = root.join(relative);
        let read_error = |source| CreateError::Read {
            path: file_path.clone(),
            source,
        };
        let mut file = std::fs::File::open(&file_path).map_err(read_error)?;
        let mut left = *len;
        while left > 0 {
            let want = left
                .min(u64::from(piece_len) - in_piece)
                .min(buffer.len() as u64) as usize;
            // Exactly the length listed: a file that shrank meanwhile is an error, not a short torrent.
            file.read_exact(&mut buffer[..want]).map_err(read_error)?;
            piece.update(&buffer[..want]);
            in_piece += want as u64;
            left -= want as u64;
            if in_piece == u64::from(piece_len) {
                pieces.extend_from_slice(&piece.finalize_reset());
                in_piece = 0;
            }
        }
    }
    if in_piece > 0 {
        pieces.extend_from_slice(&piece.finalize());
    }
    let bytes = encode(&files, piece_len, &pieces, trackers);
    let torrent = Torrent::from_bytes(&bytes)?;
    Ok((bytes, torrent))
}

/// Bencode with its keys in sorted order, as BEP 3 requires (the info-hash depends on the exact bytes).
fn encode(files: &[(PathBuf, u64)], piece_len: u32, pieces: &[u8], trackers: &[String]) -> Vec<u8> {
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
    // One file is listed by its name; a folder's files by their paths under the folder's name.
    let single = files.len() == 1 && files[0].0.components().count() == 1;
    let name = files[0]
        .0
        .components()
        .next()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .unwrap_or_default();
    if single {
        string(&mut out, b"length");
        out.extend_from_slice(format!("i{}e", files[0].1).as_bytes());
    } else {
        string(&mut out, b"files");
        out.push(b'l');
        for (path, len) in files {
            out.push(b'd');
            string(&mut out, b"length");
            out.extend_from_slice(format!("i{len}e").as_bytes());
            string(&mut out, b"path");
            out.push(b'l');
            for part in path.components().skip(1) {
                string(&mut out, part.as_os_str().as_encoded_bytes());
            }
            out.extend_from_slice(b"ee");
        }
        out.push(b'e');
    }
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
    fn a_folder_is_one_torrent_of_its_files_in_path_order() {
        let dir = tempfile::tempdir().unwrap();
        let album = dir.path().join("album");
        let files: Vec<(&str, Vec<u8>)> = vec![
            ("b.jpg", (0..40_000u32).map(|i| (i % 7) as u8).collect()),
            ("a.jpg", (0..10_000u32).map(|i| (i % 13) as u8).collect()),
            ("sub/c.txt", b"notes".to_vec()),
        ];
        for (path, data) in &files {
            let path = album.join(path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, data).unwrap();
        }
        std::fs::write(album.join(".DS_Store"), b"hidden").unwrap();
        std::fs::write(album.join("empty"), b"").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", album.join("link")).unwrap();
        let (bytes, torrent) = create_torrent(&album, &[]).unwrap();
        assert_eq!(torrent.name, "album");
        let listed: Vec<(String, u64)> = torrent
            .layout
            .files()
            .iter()
            .map(|f| (f.path.display().to_string(), f.len))
            .collect();
        assert_eq!(
            listed,
            vec![
                ("album/a.jpg".into(), 10_000),
                ("album/b.jpg".into(), 40_000),
                ("album/sub/c.txt".into(), 5)
            ],
            "sorted; hidden, empty and linked entries left out"
        );
        // Pieces span files: the first piece is a.jpg then the start of b.jpg.
        let whole: Vec<u8> = [&files[1].1[..], &files[0].1[..], &files[2].1[..]].concat();
        assert_eq!(torrent.piece_hashes[0], sha1_of(&[&whole[..16384]]));
        assert_eq!(torrent.piece_hashes[3], sha1_of(&[&whole[3 * 16384..]]));
        assert_eq!(create_torrent(&album, &[]).unwrap().0, bytes);
        assert_eq!(
            stamps_of(&album).unwrap(),
            Stamps::read(dir.path(), &torrent.layout).unwrap()
        );
    }

    #[test]
    fn empty_folders_empty_files_and_missing_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("hollow")).unwrap();
        assert!(matches!(
            create_torrent(&dir.path().join("hollow"), &[]),
            Err(CreateError::Empty(_))
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
