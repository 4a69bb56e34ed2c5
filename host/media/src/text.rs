//! Text: the encoding (a BOM, else a UTF-8 check, else `chardetng`'s guess as browsers make
//! it), the line count and a short preview. Reads are bounded: a 10 GB log costs
//! [`MAX_COUNTED_BYTES`] of reading, and says its line count is a lower bound.

use std::io::{Read, Seek, SeekFrom};

use encoding_rs::{Encoding, UTF_8};
use serde::{Deserialize, Serialize};

use crate::ExtractError;

/// How much of the head decides "text or not": enough for chardetng to see a few
/// paragraphs, small enough to sniff every file.
pub const SNIFF_BYTES: usize = 16 * 1024;
/// Lines are counted over at most this much of a file (a few hundred ms of reading).
pub const MAX_COUNTED_BYTES: u64 = 64 * 1024 * 1024;
/// Characters in the preview.
pub const PREVIEW_CHARS: usize = 280;
/// A text has almost no control characters; binary data has many. Above this share of the
/// sniffed characters, it is not text.
const MAX_CONTROL_PER_MILLE: usize = 10;
const READ_CHUNK: usize = 64 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TextInfo {
    /// WHATWG encoding name: `UTF-8`, `UTF-16LE`, `windows-1252`, `Shift_JIS`...
    pub encoding: String,
    /// Whether a byte-order mark named the encoding.
    pub bom: bool,
    pub lines: u64,
    /// False when the file is longer than [`MAX_COUNTED_BYTES`]: `lines` is then a lower bound.
    pub lines_exact: bool,
    /// The first [`PREVIEW_CHARS`] characters.
    pub preview: String,
}

/// The encoding of `head` if it looks like text, `None` for binary data.
pub fn sniff(head: &[u8]) -> Option<(&'static Encoding, bool)> {
    if head.is_empty() {
        return None;
    }
    if let Some((encoding, _)) = Encoding::for_bom(head) {
        return Some((encoding, true));
    }
    if head.contains(&0) {
        return None;
    }
    let encoding = match std::str::from_utf8(head) {
        Ok(_) => UTF_8,
        // A multi-byte character cut by the sniff window is still UTF-8.
        Err(e) if e.error_len().is_none() && head.len() == SNIFF_BYTES => UTF_8,
        Err(_) => {
            let mut detector =
                chardetng::EncodingDetector::new(chardetng::Iso2022JpDetection::Deny);
            detector.feed(head, head.len() < SNIFF_BYTES);
            detector.guess(None, chardetng::Utf8Detection::Allow)
        }
    };
    let (decoded, had_errors) = encoding.decode_without_bom_handling(head);
    if had_errors && encoding != UTF_8 {
        return None;
    }
    let chars = decoded.chars().count().max(1);
    let control = decoded
        .chars()
        .filter(|&c| c.is_control() && !matches!(c, '\n' | '\r' | '\t' | '\x0c' | '\x1b'))
        .count();
    (control * 1000 / chars <= MAX_CONTROL_PER_MILLE).then_some((encoding, false))
}

/// Describes a text file: encoding, lines, preview.
pub fn describe<R: Read + Seek>(source: &mut R, len: u64) -> Result<TextInfo, ExtractError> {
    source.seek(SeekFrom::Start(0))?;
    let mut head = Vec::with_capacity(SNIFF_BYTES);
    (&mut *source)
        .take(SNIFF_BYTES as u64)
        .read_to_end(&mut head)?;
    let (encoding, bom) =
        sniff(&head).ok_or_else(|| ExtractError::malformed("text", "binary content"))?;
    source.seek(SeekFrom::Start(0))?;

    let mut decoder = encoding.new_decoder_with_bom_removal();
    let mut preview = String::new();
    let mut newlines = 0u64;
    let mut last_char = None;
    let mut buf = vec![0u8; READ_CHUNK];
    let mut out = String::with_capacity(READ_CHUNK * 3 + 16);
    let mut limited = (&mut *source).take(MAX_COUNTED_BYTES);
    loop {
        let n = limited.read(&mut buf)?;
        out.clear();
        let _ = decoder.decode_to_string(&buf[..n], &mut out, n == 0);
        if preview.chars().count() < PREVIEW_CHARS {
            let room = PREVIEW_CHARS - preview.chars().count();
            preview.extend(out.chars().take(room));
        }
        newlines += out.bytes().filter(|&b| b == b'\n').count() as u64;
        if let Some(c) = out.chars().next_back() {
            last_char = Some(c);
        }
        if n == 0 {
            break;
        }
    }
    let lines = newlines + u64::from(last_char.is_some_and(|c| c != '\n'));
    Ok(TextInfo {
        encoding: encoding.name().to_owned(),
        bom,
        lines,
        lines_exact: len <= MAX_COUNTED_BYTES,
        preview,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    fn info(bytes: &[u8]) -> TextInfo {
        describe(&mut Cursor::new(bytes), bytes.len() as u64).unwrap()
    }

    #[test]
    fn utf8_lines_and_preview() {
        let t = info("première ligne\nzweite Zeile\nthird".as_bytes());
        assert_eq!(t.encoding, "UTF-8");
        assert_eq!(t.lines, 3);
        assert!(t.lines_exact);
        assert!(t.preview.starts_with("première ligne\n"));
        assert_eq!(info(b"a\nb\n").lines, 2);
    }

    #[test]
    fn utf16_by_bom() {
        let mut bytes = vec![0xff, 0xfe];
        for u in "one\ntwo\n".encode_utf16() {
            bytes.extend_from_slice(&u.to_le_bytes());
        }
        let t = info(&bytes);
        assert_eq!(t.encoding, "UTF-16LE");
        assert!(t.bom);
        assert_eq!(t.lines, 2);
        assert_eq!(t.preview, "one\ntwo\n");
    }

    #[test]
    fn latin1_guessed() {
        // "Café crème, déjà vu" in windows-1252: not UTF-8, chardetng names it.
        let (bytes, _, _) =
            encoding_rs::WINDOWS_1252.encode("Café crème à la française, déjà vu.\n");
        let t = info(&bytes);
        assert_eq!(t.encoding, "windows-1252");
        assert!(t.preview.starts_with("Café crème"));
    }

    #[test]
    fn preview_is_bounded() {
        let long = "x".repeat(10_000);
        assert_eq!(info(long.as_bytes()).preview.chars().count(), PREVIEW_CHARS);
    }

    #[test]
    fn binary_is_not_text() {
        assert!(sniff(&[1, 2, 3, 4, 5, 6, 7, 8, 0x0e, 0x0f]).is_none());
        assert!(sniff(b"abc\0def").is_none());
        assert!(describe(&mut Cursor::new(vec![0u8; 100]), 100).is_err());
    }
}
