//! Reading local API frames from an async byte stream, for the daemon's sessions and the
//! client alike: the model's I/O-free decoder plus a read buffer.

use allpeers_model::api::{FrameDecoder, FrameError};
use tokio::io::{AsyncRead, AsyncReadExt};

const READ_CHUNK: usize = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// Framing is lost (over the limit, or the stream ended inside a frame).
    #[error(transparent)]
    Frame(#[from] FrameError),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

pub struct FrameReader<R> {
    reader: R,
    decoder: FrameDecoder,
    buf: Vec<u8>,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    pub fn new(reader: R, max_frame: usize) -> Self {
        FrameReader {
            reader,
            decoder: FrameDecoder::new(max_frame),
            buf: vec![0u8; READ_CHUNK],
        }
    }

    /// The next frame, `None` when the stream ended cleanly between frames. Cancel-safe:
    /// bytes read so far stay in the decoder.
    pub async fn next_frame(&mut self) -> Result<Option<Vec<u8>>, ReadError> {
        loop {
            if let Some(frame) = self.decoder.next_frame()? {
                return Ok(Some(frame));
            }
            let n = self.reader.read(&mut self.buf).await?;
            if n == 0 {
                self.decoder.finish()?;
                return Ok(None);
            }
            self.decoder.push(&self.buf[..n]);
        }
    }
}
