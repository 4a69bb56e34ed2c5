//! .torrent files: parsed with `librqbit-core`'s metainfo types over `librqbit-bencode`, then checked and turned into
//! what the engine needs — info-hash, piece hashes, geometry, and a file layout whose paths cannot escape the
//! download directory.

use std::path::PathBuf;

use bytes::Bytes;
use librqbit_bencode::ByteBuf;
use librqbit_core::torrent_metainfo::TorrentMetaV1;

use crate::cache::layout::{Layout, PathError, safe_relative_path};
use crate::swarm::assembler::sha1_of;
use crate::swarm::geometry::{Geometry, GeometryError};

/// A .torrent larger than this is refused unread: 2 Mi pieces' hashes are 40 MiB, but real torrents stay far below
/// 16 MiB and the whole file is held in memory while parsing.
pub const MAX_TORRENT_LEN: usize = 16 * 1024 * 1024;
/// Trackers kept from `announce` and `announce-list`.
pub const MAX_TRACKERS: usize = 64;

#[derive(Debug, thiserror::Error)]
pub enum MetainfoError {
    #[error("the torrent is larger than {MAX_TORRENT_LEN} bytes")]
    TooLarge,
    #[error("malformed torrent: {0}")]
    Bencode(String),
    #[error("the torrent has neither `length` nor `files`, or both")]
    NoFiles,
    #[error("`pieces` holds {found} bytes, expected {expected} (20 per piece)")]
    PieceHashes { expected: u64, found: usize },
    #[error(transparent)]
    Geometry(#[from] GeometryError),
    #[error("unsafe file path in the torrent: {0}")]
    Path(#[from] PathError),
}

/// A parsed, validated torrent.
#[derive(Debug, Clone)]
pub struct Torrent {
    pub info_hash: [u8; 20],
    /// The top-level name (the single file, or the directory of a multi-file torrent).
    pub name: String,
    pub piece_hashes: Vec<[u8; 20]>,
    pub geometry: Geometry,
    /// Files relative to the download directory (a multi-file torrent's files under `name/`).
    pub layout: Layout,
    pub trackers: Vec<String>,
    pub private: bool,
    /// The bencoded info dictionary as received: what the info-hash is of, served to peers that ask for the
    /// metadata (BEP 9).
    pub info_bytes: Bytes,
}

impl Torrent {
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, MetainfoError> {
        if bytes.len() > MAX_TORRENT_LEN {
            return Err(MetainfoError::TooLarge);
        }
        super::bencode_guard::check(bytes).map_err(|e| MetainfoError::Bencode(e.into()))?;
        let meta: TorrentMetaV1<ByteBuf<'_>> = librqbit_bencode::from_bytes(bytes)
            .map_err(|e| MetainfoError::Bencode(e.into_kind().to_string()))?;
        let info_hash = sha1_of(&[meta.info.raw_bytes.as_ref()]);
        let info = &meta.info.data;
        let name_bytes = info.name.as_ref().map(|n| n.as_ref()).unwrap_or(b"unnamed");
        let name_path = safe_relative_path([name_bytes])?;
        let name = name_path.to_string_lossy().into_owned();
        let files: Vec<(PathBuf, u64)> = match (&info.length, &info.files) {
            (Some(length), None) => vec![(name_path, *length)],
            (None, Some(files)) if !files.is_empty() => files
                .iter()
                .map(|f| {
                    let relative = safe_relative_path(f.path.iter().map(|c| c.as_ref()))?;
                    Ok((name_path.join(relative), f.length))
                })
                .collect::<Result<_, PathError>>()?,
            _ => return Err(MetainfoError::NoFiles),
        };
        let layout = Layout::new(files)?;
        let geometry = Geometry::new(layout.total_len(), info.piece_length)?;
        let pieces = info.pieces.as_ref();
        if pieces.len() as u64 != u64::from(geometry.piece_count()) * 20 {
            return Err(MetainfoError::PieceHashes {
                expected: u64::from(geometry.piece_count()) * 20,
                found: pieces.len(),
            });
        }
        let piece_hashes = pieces
            .chunks_exact(20)
            .map(|h| h.try_into().expect("20 bytes"))
            .collect();
        let mut trackers: Vec<String> = Vec::new();
        for url in meta.iter_announce() {
            if let Ok(url) = std::str::from_utf8(url.as_ref())
                && !trackers.iter().any(|t| t == url)
                && trackers.len() < MAX_TRACKERS
            {
                trackers.push(url.to_owned());
            }
        }
        Ok(Self {
            info_hash,
            name,
            piece_hashes,
            geometry,
            layout,
            trackers,
            private: info.private,
            info_bytes: Bytes::copy_from_slice(meta.info.raw_bytes.as_ref()),
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A bencoded torrent for tests, from a list of (path components, length) and the content's piece hashes.
    pub(crate) fn encode_torrent(
        name: &str,
        piece_len: u32,
        files: &[(&[&str], u64)],
        hashes: &[u8],
    ) -> Vec<u8> {
        fn bytes(out: &mut Vec<u8>, b: &[u8]) {
            out.extend_from_slice(format!("{}:", b.len()).as_bytes());
            out.extend_from_slice(b);
        }
        let mut info = b"d".to_vec();
        if files.len() == 1 && files[0].0.is_empty() {
            info.extend_from_slice(format!("6:lengthi{}e", files[0].1).as_bytes());
        } else {
            info.extend_from_slice(b"5:filesl");
            for (path, len) in files {
                info.extend_from_slice(format!("d6:lengthi{len}e4:pathl").as_bytes());
                for c in *path {
                    bytes(&mut info, c.as_bytes());
                }
                info.extend_from_slice(b"ee");
            }
            info.push(b'e');
        }
        info.extend_from_slice(b"4:name");
        bytes(&mut info, name.as_bytes());
        info.extend_from_slice(format!("12:piece lengthi{piece_len}e6:pieces").as_bytes());
        bytes(&mut info, hashes);
        info.push(b'e');
        let mut out = b"d8:announce".to_vec();
        bytes(&mut out, b"http://127.0.0.1:6969/announce");
        out.extend_from_slice(b"4:info");
        out.extend_from_slice(&info);
        out.push(b'e');
        out
    }

    #[test]
    fn multi_file_torrent_is_laid_out_under_its_name() {
        let bytes = encode_torrent(
            "album",
            16384,
            &[(&["cd1", "a.flac"], 20000), (&["b.txt"], 5000)],
            &[0; 40],
        );
        let t = Torrent::from_bytes(&bytes).unwrap();
        assert_eq!(t.geometry.piece_count(), 2);
        assert_eq!(t.layout.files()[0].path, PathBuf::from("album/cd1/a.flac"));
        assert_eq!(t.layout.files()[1].offset, 20000);
        assert_eq!(
            t.trackers,
            vec!["http://127.0.0.1:6969/announce".to_string()]
        );
        // The info-hash is the SHA-1 of the info dictionary's exact bytes.
        let start = bytes.windows(6).position(|w| w == b"4:info").unwrap() + 6;
        assert_eq!(t.info_hash, sha1_of(&[&bytes[start..bytes.len() - 1]]));
    }

    #[test]
    fn traversal_in_file_names_is_refused() {
        for path in [&["..", "etc", "passwd"][..], &["/etc"], &["ok", "NUL"], &[]] {
            let bytes = encode_torrent("x", 16384, &[(path, 10), (&["y"], 10)], &[0; 20]);
            assert!(
                matches!(Torrent::from_bytes(&bytes), Err(MetainfoError::Path(_))),
                "{path:?}"
            );
        }
        let bytes = encode_torrent("..", 16384, &[(&[], 10)], &[0; 20]);
        assert!(matches!(
            Torrent::from_bytes(&bytes),
            Err(MetainfoError::Path(_))
        ));
    }

    #[test]
    fn malformed_metainfo_gives_typed_errors() {
        assert!(matches!(
            Torrent::from_bytes(b"d4:infoi3ee"),
            Err(MetainfoError::Bencode(_))
        ));
        assert!(matches!(
            Torrent::from_bytes(b"garbage"),
            Err(MetainfoError::Bencode(_))
        ));
        assert!(
            matches!(
                Torrent::from_bytes(&[b'l'; 100_000]),
                Err(MetainfoError::Bencode(_))
            ),
            "deep nesting"
        );
        let short_hashes = encode_torrent("x", 16384, &[(&[], 40000)], &[0; 40]);
        assert!(matches!(
            Torrent::from_bytes(&short_hashes),
            Err(MetainfoError::PieceHashes {
                expected: 60,
                found: 40
            })
        ));
        let odd_piece = encode_torrent("x", 1000, &[(&[], 4000)], &[0; 80]);
        assert!(matches!(
            Torrent::from_bytes(&odd_piece),
            Err(MetainfoError::Geometry(_))
        ));
        assert!(matches!(
            Torrent::from_bytes(&vec![b'd'; MAX_TORRENT_LEN + 1]),
            Err(MetainfoError::TooLarge)
        ));
    }
}
