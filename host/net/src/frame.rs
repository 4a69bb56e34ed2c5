//! Length-prefixed frames: `u32` big-endian payload length, then the payload.
//!
//! The decoder is an I/O-free state machine ([`FrameDecoder`]): feed it bytes as they
//! arrive, take whole frames out. It never buffers more than one frame's worth (the limit
//! plus the 4-byte prefix) and refuses a prefix over the limit before reading the payload,
//! so a hostile peer cannot make it allocate. The async helpers [`read_frame`] and
//! [`write_frame`] are thin glue over it for any tokio stream.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Bytes of the length prefix.
pub const PREFIX_LEN: usize = 4;
/// The largest frame any service may allow (16 MiB). Services pick a smaller limit.
pub const MAX_FRAME_LIMIT: usize = 16 * 1024 * 1024;
/// The default payload limit (1 MiB).
pub const DEFAULT_FRAME_LIMIT: usize = 1024 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("frame of {size} bytes is over the limit of {limit}")]
    TooLarge { size: usize, limit: usize },
    #[error("stream ended inside a frame ({have} of {want} bytes)")]
    Truncated { have: usize, want: usize },
    #[error("frame i/o: {0}")]
    Io(String),
}

/// Decodes a byte stream into frames, bounded by `limit`.
#[derive(Debug)]
pub struct FrameDecoder {
    limit: usize,
    buf: BytesMut,
    /// Payload length of the frame being read, once its prefix is in.
    want: Option<usize>,
    failed: bool,
}

impl FrameDecoder {
    pub fn new(limit: usize) -> Self {
        FrameDecoder {
            limit: limit.min(MAX_FRAME_LIMIT),
            buf: BytesMut::new(),
            want: None,
            failed: false,
        }
    }

    pub fn limit(&self) -> usize {
        self.limit
    }

    /// How many more bytes the decoder can take before it holds a whole frame: callers read
    /// at most this much, so the buffer never grows past one frame.
    pub fn wanted(&self) -> usize {
        match self.want {
            None => PREFIX_LEN - self.buf.len(),
            Some(n) => PREFIX_LEN + n - self.buf.len(),
        }
    }

    /// Adds bytes. Only up to [`wanted`](Self::wanted) are taken; the count taken is returned.
    pub fn push(&mut self, data: &[u8]) -> Result<usize, FrameError> {
        if self.failed {
            return Err(FrameError::TooLarge {
                size: self.want.unwrap_or(0),
                limit: self.limit,
            });
        }
        let mut taken = 0;
        while taken < data.len() {
            let room = self.wanted();
            if room == 0 {
                break;
            }
            let n = room.min(data.len() - taken);
            self.buf.extend_from_slice(&data[taken..taken + n]);
            taken += n;
            if self.want.is_none() && self.buf.len() == PREFIX_LEN {
                let size = u32::from_be_bytes(self.buf[..PREFIX_LEN].try_into().unwrap()) as usize;
                if size > self.limit {
                    self.failed = true;
                    return Err(FrameError::TooLarge {
                        size,
                        limit: self.limit,
                    });
                }
                self.want = Some(size);
                self.buf.reserve(size);
            }
        }
        Ok(taken)
    }

    /// A whole frame, if one is in.
    pub fn next_frame(&mut self) -> Option<Bytes> {
        let want = self.want?;
        if self.buf.len() < PREFIX_LEN + want {
            return None;
        }
        self.buf.advance(PREFIX_LEN);
        let frame = self.buf.split_to(want).freeze();
        self.want = None;
        Some(frame)
    }

    /// Called at end of stream: an error if a frame was started and not finished.
    pub fn finish(&self) -> Result<(), FrameError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(FrameError::Truncated {
                have: self.buf.len(),
                want: PREFIX_LEN + self.want.unwrap_or(0),
            })
        }
    }
}

/// Encodes one frame. Panics never: a payload over `limit` is an error.
pub fn encode_frame(payload: &[u8], limit: usize) -> Result<Bytes, FrameError> {
    if payload.len() > limit.min(MAX_FRAME_LIMIT) {
        return Err(FrameError::TooLarge {
            size: payload.len(),
            limit: limit.min(MAX_FRAME_LIMIT),
        });
    }
    let mut out = BytesMut::with_capacity(PREFIX_LEN + payload.len());
    out.put_u32(payload.len() as u32);
    out.put_slice(payload);
    Ok(out.freeze())
}

/// Reads one frame; `Ok(None)` at a clean end of stream (before any byte of a frame).
pub async fn read_frame<R: AsyncRead + Unpin + ?Sized>(
    reader: &mut R,
    limit: usize,
) -> Result<Option<Bytes>, FrameError> {
    let mut decoder = FrameDecoder::new(limit);
    let mut chunk = [0u8; 8192];
    loop {
        if let Some(frame) = decoder.next_frame() {
            return Ok(Some(frame));
        }
        let want = decoder.wanted().min(chunk.len());
        let n = reader
            .read(&mut chunk[..want])
            .await
            .map_err(|e| FrameError::Io(e.to_string()))?;
        if n == 0 {
            decoder.finish()?;
            return Ok(None);
        }
        decoder.push(&chunk[..n])?;
    }
}

/// Writes one frame.
pub async fn write_frame<W: AsyncWrite + Unpin + ?Sized>(
    writer: &mut W,
    payload: &[u8],
    limit: usize,
) -> Result<(), FrameError> {
    let frame = encode_frame(payload, limit)?;
    writer
        .write_all(&frame)
        .await
        .map_err(|e| FrameError::Io(e.to_string()))
}

/// The fuzz target's body (`fuzz/fuzz_targets/net_frame.rs`): decodes `data` fed in
/// chunks whose sizes come from the data itself, under a limit it also picks, and checks the
/// decoder's invariants. Panics on a broken invariant, never on bad input.
#[cfg(any(test, fuzzing))]
pub fn fuzz_decoder(data: &[u8]) {
    let Some((&control, rest)) = data.split_first() else {
        return;
    };
    let limit = [0usize, 1, 16, 300, 4096][control as usize % 5];
    let step = 1 + (control as usize / 5) % 64;
    let mut decoder = FrameDecoder::new(limit);
    let mut offset = 0;
    let mut frames = Vec::new();
    while offset < rest.len() {
        let end = (offset + step).min(rest.len());
        match decoder.push(&rest[offset..end]) {
            Ok(n) => {
                assert!(n <= end - offset);
                offset += n;
                // Never more buffered than one frame.
                assert!(decoder.buf.len() <= PREFIX_LEN + limit);
                if let Some(frame) = decoder.next_frame() {
                    assert!(frame.len() <= limit);
                    frames.push(frame);
                } else {
                    assert!(n > 0, "no progress without a frame");
                }
            }
            Err(FrameError::TooLarge { size, limit: l }) => {
                assert!(size > l && l == limit);
                return;
            }
            Err(e) => panic!("unexpected error while pushing: {e}"),
        }
    }
    // What was decoded re-encodes to the bytes consumed.
    let mut again = Vec::new();
    for f in &frames {
        again.extend_from_slice(&encode_frame(f, limit).expect("within the limit"));
    }
    assert_eq!(&again[..], &rest[..again.len()]);
    let _ = decoder.finish();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_byte_by_byte() {
        let mut wire = Vec::new();
        for payload in [&b""[..], b"a", b"hello world"] {
            wire.extend_from_slice(&encode_frame(payload, 64).unwrap());
        }
        let mut decoder = FrameDecoder::new(64);
        let mut frames = Vec::new();
        for byte in &wire {
            assert_eq!(decoder.push(std::slice::from_ref(byte)).unwrap(), 1);
            if let Some(f) = decoder.next_frame() {
                frames.push(f);
            }
        }
        assert_eq!(frames, vec![&b""[..], b"a", b"hello world"]);
        decoder.finish().unwrap();
    }

    #[test]
    fn push_takes_only_one_frame_at_a_time() {
        let mut wire = encode_frame(b"one", 64).unwrap().to_vec();
        wire.extend_from_slice(&encode_frame(b"two", 64).unwrap());
        let mut decoder = FrameDecoder::new(64);
        let n = decoder.push(&wire).unwrap();
        assert_eq!(n, 7);
        assert_eq!(decoder.next_frame().unwrap(), &b"one"[..]);
        decoder.push(&wire[n..]).unwrap();
        assert_eq!(decoder.next_frame().unwrap(), &b"two"[..]);
    }

    #[test]
    fn over_limit_is_refused_before_the_payload() {
        let mut decoder = FrameDecoder::new(10);
        let err = decoder.push(&11u32.to_be_bytes()).unwrap_err();
        assert_eq!(
            err,
            FrameError::TooLarge {
                size: 11,
                limit: 10
            }
        );
        assert!(decoder.push(b"x").is_err());
        assert!(encode_frame(&[0; 11], 10).is_err());
    }

    #[test]
    fn truncated_frame_is_an_error() {
        let mut decoder = FrameDecoder::new(10);
        decoder.push(&[0, 0, 0, 5, b'a']).unwrap();
        assert!(decoder.next_frame().is_none());
        assert!(matches!(
            decoder.finish(),
            Err(FrameError::Truncated { have: 5, want: 9 })
        ));
    }

    #[test]
    fn fuzz_body_holds_on_sample_inputs() {
        let mut seed = 0x1234_5678u32;
        for len in 0..400 {
            let data: Vec<u8> = (0..len)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 17;
                    seed ^= seed << 5;
                    // Mostly small length prefixes so that frames complete.
                    if seed.is_multiple_of(3) {
                        0
                    } else {
                        (seed >> 8) as u8
                    }
                })
                .collect();
            fuzz_decoder(&data);
        }
        fuzz_decoder(&[2, 0, 0, 0, 3, b'a', b'b', b'c', 0, 0, 0, 0]);
    }

    #[tokio::test]
    async fn async_helpers_round_trip() {
        let (mut a, mut b) = tokio::io::duplex(64);
        let writer = tokio::spawn(async move {
            write_frame(&mut a, &[7u8; 300], 1000).await.unwrap();
        });
        let frame = read_frame(&mut b, 1000).await.unwrap().unwrap();
        assert_eq!(frame.len(), 300);
        writer.await.unwrap();
        assert_eq!(read_frame(&mut b, 1000).await.unwrap(), None);
    }
}
