//! Native-messaging framing: a u32 little-endian byte length, then that many bytes of UTF-8
//! JSON. The decoder is I/O-free: callers push bytes as they arrive and pull whole frames.

use thiserror::Error;

/// Browsers refuse host->browser messages over 1 MiB (Chromium disconnects the port).
pub const BROWSER_MAX_FRAME: usize = 1024 * 1024;
/// Largest frame the daemon accepts from a client. Big enough for any API request (bulk
/// data goes through transfers, not the API), small enough that a bad length prefix
/// cannot make the daemon allocate gigabytes.
pub const API_MAX_FRAME: usize = 8 * 1024 * 1024;

const HEADER_LEN: usize = 4;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum FrameError {
    #[error("frame of {len} bytes is over the limit of {max} bytes")]
    TooLarge { len: usize, max: usize },
    #[error("stream ended inside a frame: {have} of {want} bytes received")]
    Truncated { have: usize, want: usize },
}

/// Prefixes `payload` with its length.
///
/// # Panics
/// If `payload` is longer than `u32::MAX` bytes, which no caller can produce: every
/// sender enforces a limit far below that.
pub fn encode_frame(payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(payload.len()).expect("frame payload fits in u32");
    let mut out = Vec::with_capacity(HEADER_LEN + payload.len());
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(payload);
    out
}

/// Splits a byte stream into frames, refusing any frame over `max_len` as soon as its
/// header is seen, before buffering its body.
#[derive(Debug)]
pub struct FrameDecoder {
    max_len: usize,
    buf: Vec<u8>,
    /// Read position in `buf`; consumed bytes are dropped lazily to avoid quadratic copying.
    start: usize,
}

impl FrameDecoder {
    pub fn new(max_len: usize) -> Self {
        FrameDecoder {
            max_len,
            buf: Vec::new(),
            start: 0,
        }
    }

    /// Appends bytes read from the stream.
    pub fn push(&mut self, bytes: &[u8]) {
        if self.start > 0 && self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// The next complete frame, `None` if more bytes are needed, or an error if the next
    /// frame is over the limit. After an error the stream cannot be resynchronised: the
    /// caller closes it.
    pub fn next_frame(&mut self) -> Result<Option<Vec<u8>>, FrameError> {
        let pending = &self.buf[self.start..];
        if pending.len() < HEADER_LEN {
            return Ok(None);
        }
        let len = u32::from_le_bytes([pending[0], pending[1], pending[2], pending[3]]) as usize;
        if len > self.max_len {
            return Err(FrameError::TooLarge {
                len,
                max: self.max_len,
            });
        }
        if pending.len() < HEADER_LEN + len {
            return Ok(None);
        }
        let frame = pending[HEADER_LEN..HEADER_LEN + len].to_vec();
        self.start += HEADER_LEN + len;
        if self.start > self.buf.len() / 2 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        Ok(Some(frame))
    }

    /// Call when the stream has ended: an error if it ended inside a frame.
    pub fn finish(&self) -> Result<(), FrameError> {
        let pending = &self.buf[self.start..];
        if pending.is_empty() {
            return Ok(());
        }
        let want = if pending.len() >= HEADER_LEN {
            HEADER_LEN
                + u32::from_le_bytes([pending[0], pending[1], pending[2], pending[3]]) as usize
        } else {
            HEADER_LEN
        };
        Err(FrameError::Truncated {
            have: pending.len(),
            want,
        })
    }

    /// Bytes buffered but not yet returned as a frame.
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.start
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_split_across_pushes_are_reassembled() {
        let mut wire = encode_frame(b"{\"a\":1}");
        wire.extend(encode_frame(b""));
        wire.extend(encode_frame(b"[2]"));
        let mut decoder = FrameDecoder::new(1024);
        let mut frames = Vec::new();
        for byte in &wire {
            decoder.push(std::slice::from_ref(byte));
            while let Some(frame) = decoder.next_frame().unwrap() {
                frames.push(frame);
            }
        }
        assert_eq!(frames, vec![b"{\"a\":1}".to_vec(), vec![], b"[2]".to_vec()]);
        assert_eq!(decoder.finish(), Ok(()));
        assert_eq!(decoder.buffered(), 0);
    }

    #[test]
    fn over_limit_is_refused_from_the_header_alone() {
        let mut decoder = FrameDecoder::new(16);
        decoder.push(&u32::MAX.to_le_bytes());
        assert_eq!(
            decoder.next_frame(),
            Err(FrameError::TooLarge {
                len: u32::MAX as usize,
                max: 16
            })
        );
    }

    #[test]
    fn truncation_is_reported_at_end_of_stream() {
        let mut decoder = FrameDecoder::new(1024);
        decoder.push(&encode_frame(b"hello")[..6]);
        assert_eq!(decoder.next_frame(), Ok(None));
        assert_eq!(
            decoder.finish(),
            Err(FrameError::Truncated { have: 6, want: 9 })
        );
        let mut header_only = FrameDecoder::new(1024);
        header_only.push(&[1, 0]);
        assert_eq!(
            header_only.finish(),
            Err(FrameError::Truncated { have: 2, want: 4 })
        );
    }
}
