//! A frame reader for long-lived lines: keeps its decoder between reads (so it is
//! cancel-safe: a read abandoned mid-frame loses nothing) and reads through a small buffer,
//! so ten thousand idle lines do not each hold a 64 KiB read buffer.

use bytes::Bytes;

use crate::frame::FrameDecoder;
use crate::transport::{ConnectionError, RecvStream};

const CHUNK: usize = 512;

pub struct LineReader {
    decoder: FrameDecoder,
    buf: [u8; CHUNK],
}

impl LineReader {
    pub fn new(limit: usize) -> Self {
        LineReader {
            decoder: FrameDecoder::new(limit),
            buf: [0; CHUNK],
        }
    }

    /// The next frame; None at a clean end of stream.
    pub async fn next(&mut self, recv: &mut RecvStream) -> Result<Option<Bytes>, ConnectionError> {
        loop {
            if let Some(frame) = self.decoder.next_frame() {
                return Ok(Some(frame));
            }
            let want = self.decoder.wanted().min(CHUNK);
            let n = recv.read(&mut self.buf[..want]).await?;
            if n == 0 {
                self.decoder.finish()?;
                return Ok(None);
            }
            self.decoder.push(&self.buf[..n])?;
        }
    }
}
