//! Media for AllPeers: what a file is, by its content, and what is inside it — audio tags
//! and duration, image size, EXIF and a thumbnail, video size and codecs, text encoding and a
//! preview — extracted in sandboxed worker processes so a hostile file costs one worker and
//! one clear error, never the daemon.
//!
//! | module        | what it does                                                                  |
//! |---------------|-------------------------------------------------------------------------------|
//! | [`kind`]      | type by content: magic bytes (`file-format`), then a text sniff               |
//! | [`text`]      | encoding (BOM, UTF-8 check, `chardetng`), line count, preview; bounded read   |
//! | [`audio`]     | symphonia probe without decoding; exact duration by a packet scan             |
//! | [`image`]     | `image` with `Limits` + EXIF (`kamadak-exif`); thumbnails (DCT shrink-on-load) |
//! | [`video`]     | MP4/MOV (`mp4parse`) and Matroska/WebM (`matroska-demuxer`) container facts  |
//! | [`protocol`]  | worker frames: length-prefixed postcard, an I/O-free bounded decoder          |
//! | [`worker`]    | the worker side: resource limits, `catch_unwind`, the request loop            |
//! | [`pool`]      | [`Extractor`]: the daemon's pool of workers, deadline per file, respawn        |
//!
//! In-process entry points ([`extract_path`], [`extract_bytes`]) exist for the worker and
//! for fuzzing; the daemon calls [`Extractor::extract`], never them.

pub mod audio;
pub mod image;
pub mod jpeg_dc;
pub mod kind;
pub mod pool;
pub mod protocol;
pub mod text;
pub mod video;
pub mod worker;

use std::fs::File;
use std::io::{BufRead, BufReader, Cursor, Seek, SeekFrom};
use std::path::Path;

use serde::{Deserialize, Serialize};

pub use kind::MediaKind;
pub use pool::{Extractor, ExtractorConfig};

/// What the caller wants beyond the cheap header facts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Options {
    /// Make a thumbnail (images) or keep the embedded cover (audio) as one.
    pub thumbnail: bool,
    /// Scan every packet for the exact duration where the header gives only an estimate.
    pub exact_duration: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            thumbnail: true,
            exact_duration: false,
        }
    }
}

/// Everything extracted from one file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Extracted {
    pub kind: MediaKind,
    /// The detected format's MIME type (`image/jpeg`, `audio/mpeg`, `text/plain`...).
    pub mime_type: String,
    /// The detected format's name (`Joint Photographic Experts Group`, `MPEG-1/2 Audio Layer 3`...).
    pub format_name: String,
    pub details: Details,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Details {
    Audio(audio::AudioInfo),
    Image(image::ImageInfo),
    Video(video::VideoInfo),
    Text(text::TextInfo),
    /// A plain file: nothing more to say than its type.
    File,
}

/// A small picture of the content: longest side [`image::THUMBNAIL_SIZE`] px, orientation applied.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Thumbnail {
    pub width: u32,
    pub height: u32,
    pub format: ThumbnailFormat,
    pub bytes: Vec<u8>,
}

impl std::fmt::Debug for Thumbnail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Thumbnail({}x{} {:?}, {} bytes)",
            self.width,
            self.height,
            self.format,
            self.bytes.len()
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ThumbnailFormat {
    /// Opaque pictures.
    Jpeg,
    /// Pictures with transparency (lossless: `image` has no lossy WebP encoder).
    WebP,
}

impl ThumbnailFormat {
    pub fn mime_type(self) -> &'static str {
        match self {
            Self::Jpeg => "image/jpeg",
            Self::WebP => "image/webp",
        }
    }
}

/// Why a file could not be described.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum ExtractError {
    #[error("cannot read the file: {0}")]
    Io(String),
    #[error("the file changed while it was read")]
    Changed,
    #[error("malformed {format}: {reason}")]
    Malformed { format: String, reason: String },
    #[error("{what} is beyond the limit ({limit})")]
    TooLarge { what: String, limit: String },
    #[error("the extractor panicked: {0}")]
    Panicked(String),
    #[error("the worker took longer than {0} ms and was stopped")]
    Deadline(u64),
    #[error("the worker died ({0}) and was restarted")]
    WorkerDied(String),
    #[error("cannot start a worker: {0}")]
    Spawn(String),
    #[error("worker protocol: {0}")]
    Protocol(String),
}

impl ExtractError {
    pub(crate) fn malformed(format: &str, reason: impl std::fmt::Display) -> Self {
        Self::Malformed {
            format: format.to_owned(),
            reason: reason.to_string(),
        }
    }
}

impl From<std::io::Error> for ExtractError {
    fn from(e: std::io::Error) -> Self {
        Self::Io(e.to_string())
    }
}

/// A readable, seekable source with a known length: a file or bytes in memory.
pub trait Source: BufRead + Seek + Send + Sync {}
impl<T: BufRead + Seek + Send + Sync> Source for T {}

/// Describes the file at `path`, in this process. The daemon uses [`Extractor`] instead.
///
/// The file's size and modification time are compared before and after, so a file that
/// changed while it was read gives [`ExtractError::Changed`] (the caller tries again later)
/// rather than a mix of old and new facts.
pub fn extract_path(path: &Path, options: &Options) -> Result<Extracted, ExtractError> {
    let before = std::fs::metadata(path)?;
    let file = File::open(path)?;
    let len = file.metadata()?.len();
    let extracted = extract_from(BufReader::with_capacity(64 * 1024, file), len, options)?;
    let after = std::fs::metadata(path)?;
    if before.len() != after.len() || before.modified().ok() != after.modified().ok() {
        return Err(ExtractError::Changed);
    }
    Ok(extracted)
}

/// Describes bytes in memory (the fuzzing entry point; also handy for small blobs).
pub fn extract_bytes(bytes: &[u8], options: &Options) -> Result<Extracted, ExtractError> {
    extract_from(Cursor::new(bytes.to_vec()), bytes.len() as u64, options)
}

/// Detects the type of `source` and runs the matching extractor.
pub fn extract_from<S: Source + 'static>(
    mut source: S,
    len: u64,
    options: &Options,
) -> Result<Extracted, ExtractError> {
    let detected = kind::detect(&mut source)?;
    source.seek(SeekFrom::Start(0))?;
    #[cfg(feature = "test-hooks")]
    worker::test_hooks::run(&detected.head);
    let details = match detected.kind {
        MediaKind::Audio => Details::Audio(audio::probe(Box::new(source), len, options)?),
        MediaKind::Image => Details::Image(image::describe(&mut source, detected.format, options)?),
        MediaKind::Video => match video::describe(&mut source, len, detected.format, options)? {
            // A Matroska or MP4 file without a picture track is a song in a video box.
            Some(info) => Details::Video(info),
            None => {
                source.seek(SeekFrom::Start(0))?;
                let info = audio::probe(Box::new(source), len, options)?;
                return Ok(Extracted {
                    kind: MediaKind::Audio,
                    mime_type: detected.mime_type,
                    format_name: detected.format_name,
                    details: Details::Audio(info),
                });
            }
        },
        MediaKind::Text => Details::Text(text::describe(&mut source, len)?),
        MediaKind::File => Details::File,
    };
    Ok(Extracted {
        kind: detected.kind,
        mime_type: detected.mime_type,
        format_name: detected.format_name,
        details,
    })
}
