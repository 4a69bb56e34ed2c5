//! Type by content, never by name: `file-format`'s magic-byte signatures (with its readers for
//! EBML DocTypes and MP4 brands, so a `.m4a` is audio and a `.webm` video), then a text sniff
//! for everything that is not a picture, a sound or a film.

use std::io::{Read, Seek, SeekFrom};

use file_format::{FileFormat, Kind};
use serde::{Deserialize, Serialize};

use crate::{ExtractError, text};

/// The resource types below File in the schema (`schemas/*.rng`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum MediaKind {
    Audio,
    Video,
    Image,
    Text,
    File,
}

impl MediaKind {
    /// The resource type name in the schema.
    pub fn type_name(self) -> &'static str {
        match self {
            Self::Audio => "Audio",
            Self::Video => "Video",
            Self::Image => "Image",
            Self::Text => "Text",
            Self::File => "File",
        }
    }
}

/// What the first bytes say.
#[derive(Debug, Clone)]
pub struct Detected {
    pub kind: MediaKind,
    pub format: FileFormat,
    pub mime_type: String,
    pub format_name: String,
    /// The first [`text::SNIFF_BYTES`] bytes (fewer for a short file).
    pub head: Vec<u8>,
}

/// Detects the type of `source` from its content. Reads the head of the file and, for
/// containers whose signature is shared (EBML, ISO BMFF), a little more.
pub fn detect<R: Read + Seek>(source: &mut R) -> Result<Detected, ExtractError> {
    let format = FileFormat::from_reader(&mut *source)?;
    source.seek(SeekFrom::Start(0))?;
    let mut head = Vec::with_capacity(text::SNIFF_BYTES);
    source
        .take(text::SNIFF_BYTES as u64)
        .read_to_end(&mut head)?;
    let kind = match format.kind() {
        // ISO BMFF whose brand and tracks file-format could not read (a truncated or
        // unusual MP4): the video extractor decides, and says what is wrong.
        _ if format == FileFormat::Mpeg4Part14 => MediaKind::Video,
        Kind::Audio => MediaKind::Audio,
        Kind::Video => MediaKind::Video,
        Kind::Image if crate::image::supported(format) => MediaKind::Image,
        _ => match text::sniff(&head) {
            Some(_) => MediaKind::Text,
            None => MediaKind::File,
        },
    };
    let (mime_type, format_name) = match (kind, format) {
        // file-format without its text reader calls every text "arbitrary binary data".
        (MediaKind::Text, FileFormat::ArbitraryBinaryData | FileFormat::Empty) => {
            ("text/plain".to_owned(), "Plain Text".to_owned())
        }
        _ => (format.media_type().to_owned(), format.name().to_owned()),
    };
    Ok(Detected {
        kind,
        format,
        mime_type,
        format_name,
        head,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    fn kind_of(bytes: &[u8]) -> MediaKind {
        detect(&mut Cursor::new(bytes)).unwrap().kind
    }

    #[test]
    fn magic_bytes_decide_not_names() {
        assert_eq!(kind_of(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR"), MediaKind::Image);
        assert_eq!(kind_of(b"\xff\xd8\xff\xe0\0\x10JFIF\0"), MediaKind::Image);
        assert_eq!(kind_of(b"fLaC\0\0\0\x22"), MediaKind::Audio);
        assert_eq!(kind_of(b"RIFF\x24\0\0\0WAVEfmt "), MediaKind::Audio);
    }

    #[test]
    fn text_and_binary() {
        assert_eq!(kind_of(b"hello\nworld\n"), MediaKind::Text);
        let d = detect(&mut Cursor::new(b"plain words\n")).unwrap();
        assert_eq!(d.mime_type, "text/plain");
        assert_eq!(
            kind_of(&[0u8, 1, 2, 3, 0, 0, 0xff, 0xfe, 7]),
            MediaKind::File
        );
        assert_eq!(kind_of(b""), MediaKind::File);
    }
}
