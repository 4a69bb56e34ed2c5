//! Where each byte of the content lives: the files of a torrent laid end to end, and safe relative paths for them.

use std::path::PathBuf;

/// Components in one file path: deeper trees are an attack on the file system, not content.
pub const MAX_PATH_COMPONENTS: usize = 64;
/// Bytes in one path component: the limit of common file systems.
pub const MAX_COMPONENT_LEN: usize = 255;
/// Files in one transfer: bounds the open handles and per-file tables.
pub const MAX_FILES: usize = 100_000;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("empty file path")]
    Empty,
    #[error("file path has more than {MAX_PATH_COMPONENTS} components")]
    TooDeep,
    #[error(
        "file path component {0:?} is not allowed (empty, '.', '..', separators, NUL, or a device name)"
    )]
    BadComponent(String),
    #[error("file path component longer than {MAX_COMPONENT_LEN} bytes")]
    ComponentTooLong,
    #[error("more than {MAX_FILES} files")]
    TooManyFiles,
    #[error("the files' lengths add up past 2^64")]
    TooLong,
}

/// Windows device names: a file so named (with any extension) is a device there, whatever the directory.
const DEVICE_NAMES: &[&str] = &[
    "con", "prn", "aux", "nul", "com1", "com2", "com3", "com4", "com5", "com6", "com7", "com8",
    "com9", "lpt1", "lpt2", "lpt3", "lpt4", "lpt5", "lpt6", "lpt7", "lpt8", "lpt9",
];

/// A path relative to the download directory that cannot leave it: no `..`, no absolute path, no separators or NUL
/// inside a component, no device names. Components are UTF-8 (lossily: a torrent's bytes in an unknown encoding
/// still get a name).
pub fn safe_relative_path<'a>(
    components: impl IntoIterator<Item = &'a [u8]>,
) -> Result<PathBuf, PathError> {
    let mut path = PathBuf::new();
    let mut depth = 0;
    for raw in components {
        depth += 1;
        if depth > MAX_PATH_COMPONENTS {
            return Err(PathError::TooDeep);
        }
        if raw.len() > MAX_COMPONENT_LEN {
            return Err(PathError::ComponentTooLong);
        }
        let text = String::from_utf8_lossy(raw);
        let stem = text
            .split('.')
            .next()
            .unwrap_or("")
            .trim_end()
            .to_ascii_lowercase();
        let bad = text.is_empty()
            || text == "."
            || text == ".."
            || text.contains(['/', '\\', '\0', ':'])
            || DEVICE_NAMES.contains(&stem.as_str());
        if bad {
            return Err(PathError::BadComponent(text.into_owned()));
        }
        path.push(&*text);
    }
    if depth == 0 {
        return Err(PathError::Empty);
    }
    Ok(path)
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileEntry {
    /// Relative to the transfer's directory.
    pub path: PathBuf,
    pub len: u64,
    /// Offset of the file's first byte in the content.
    pub offset: u64,
}

/// The content's files in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    files: Vec<FileEntry>,
    total_len: u64,
}

/// A run of bytes inside one file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    pub file: usize,
    pub file_offset: u64,
    pub len: u64,
}

impl Layout {
    pub fn new(files: impl IntoIterator<Item = (PathBuf, u64)>) -> Result<Self, PathError> {
        let mut entries = Vec::new();
        let mut offset = 0u64;
        for (path, len) in files {
            if entries.len() == MAX_FILES {
                return Err(PathError::TooManyFiles);
            }
            entries.push(FileEntry { path, len, offset });
            offset = offset.checked_add(len).ok_or(PathError::TooLong)?;
        }
        if entries.is_empty() {
            return Err(PathError::Empty);
        }
        Ok(Self {
            files: entries,
            total_len: offset,
        })
    }

    pub fn files(&self) -> &[FileEntry] {
        &self.files
    }

    pub fn total_len(&self) -> u64 {
        self.total_len
    }

    /// The file runs that hold `len` bytes from content offset `offset`.
    pub fn segments(&self, offset: u64, len: u64) -> Vec<Segment> {
        let end = (offset + len).min(self.total_len);
        let first = self.files.partition_point(|f| f.offset + f.len <= offset);
        let mut out = Vec::new();
        let mut at = offset;
        for (index, file) in self.files.iter().enumerate().skip(first) {
            if at >= end {
                break;
            }
            let file_end = file.offset + file.len;
            if file.len == 0 || file_end <= at {
                continue;
            }
            let take = end.min(file_end) - at;
            out.push(Segment {
                file: index,
                file_offset: at - file.offset,
                len: take,
            });
            at += take;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traversal_absolute_and_device_names_are_refused() {
        let ok = safe_relative_path([&b"dir"[..], b"a.txt"]).unwrap();
        assert_eq!(ok, PathBuf::from("dir/a.txt"));
        for bad in [
            &b".."[..],
            b".",
            b"",
            b"/etc",
            b"a/b",
            b"a\\b",
            b"c:",
            b"NUL",
            b"com1.txt",
            b"Aux .log",
            b"a\0b",
        ] {
            assert!(
                matches!(
                    safe_relative_path([&b"d"[..], bad]),
                    Err(PathError::BadComponent(_))
                ),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        assert_eq!(
            safe_relative_path(std::iter::empty()),
            Err(PathError::Empty)
        );
        assert_eq!(
            safe_relative_path(vec![&b"a"[..]; 65]),
            Err(PathError::TooDeep)
        );
        assert_eq!(
            safe_relative_path([&[b'x'; 256][..]]),
            Err(PathError::ComponentTooLong)
        );
    }

    #[test]
    fn segments_cross_file_boundaries_and_skip_empty_files() {
        let layout = Layout::new([
            ("a".into(), 10),
            ("empty".into(), 0),
            ("b".into(), 5),
            ("c".into(), 20),
        ])
        .unwrap();
        assert_eq!(
            layout.segments(8, 10),
            vec![
                Segment {
                    file: 0,
                    file_offset: 8,
                    len: 2
                },
                Segment {
                    file: 2,
                    file_offset: 0,
                    len: 5
                },
                Segment {
                    file: 3,
                    file_offset: 0,
                    len: 3
                },
            ]
        );
        assert_eq!(
            layout.segments(34, 100),
            vec![Segment {
                file: 3,
                file_offset: 19,
                len: 1
            }]
        );
        assert_eq!(layout.total_len(), 35);
    }
}
