//! Chunking of messages too large for one browser frame.
//!
//! Browsers drop the native port when the host sends a frame over 1 MiB. The bridge splits
//! any larger message into `chunk` notifications whose data is base64 of consecutive byte
//! ranges of the original frame; the extension reassembles them with [`Reassembler`] and
//! handles the result as if it had arrived whole.

use std::collections::HashMap;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::{Deserialize, Serialize};

use super::frame::BROWSER_MAX_FRAME;

pub const CHUNK_METHOD: &str = "chunk";
/// Raw bytes per chunk: base64 grows them by 4/3, which with the envelope stays well under
/// [`BROWSER_MAX_FRAME`].
pub const CHUNK_DATA_LEN: usize = 640 * 1024;
/// Largest message the reassembler accepts, so a hostile sender cannot make it grow
/// without bound.
pub const MAX_REASSEMBLED_LEN: usize = 256 * 1024 * 1024;
/// Messages being reassembled at once.
pub const MAX_PARTIAL_MESSAGES: usize = 8;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChunkParams {
    /// Sequence number of the chunked message, per connection.
    pub message: u64,
    pub index: u32,
    pub count: u32,
    pub total_len: usize,
    pub data: String,
}

/// Splits `frame` into chunk notifications (JSON text) if it is over the browser limit;
/// returns it unchanged otherwise.
pub fn split_for_browser(frame: Vec<u8>, message: u64) -> Vec<Vec<u8>> {
    if frame.len() <= BROWSER_MAX_FRAME {
        return vec![frame];
    }
    let count = frame.len().div_ceil(CHUNK_DATA_LEN) as u32;
    frame
        .chunks(CHUNK_DATA_LEN)
        .enumerate()
        .map(|(index, piece)| {
            let params = ChunkParams {
                message,
                index: index as u32,
                count,
                total_len: frame.len(),
                data: BASE64.encode(piece),
            };
            serde_json::to_vec(&serde_json::json!({
                "jsonrpc": "2.0", "method": CHUNK_METHOD, "params": params
            }))
            .expect("chunk serialises")
        })
        .collect()
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ChunkError {
    #[error("chunk {index} of {count} is out of range")]
    OutOfRange { index: u32, count: u32 },
    #[error("chunked message of {0} bytes is over the limit")]
    TooLarge(usize),
    #[error("chunk does not agree with the earlier chunks of its message")]
    Inconsistent,
    #[error("chunk data is not base64")]
    BadData,
    #[error("too many chunked messages in flight")]
    TooManyPartial,
}

#[derive(Debug)]
struct Partial {
    count: u32,
    total_len: usize,
    received: u32,
    parts: Vec<Option<Vec<u8>>>,
}

/// Reassembles chunked messages; bounded in size and in messages in flight.
#[derive(Debug, Default)]
pub struct Reassembler {
    partial: HashMap<u64, Partial>,
}

impl Reassembler {
    /// Adds one chunk; returns the whole message once its last chunk arrived.
    pub fn add(&mut self, chunk: ChunkParams) -> Result<Option<Vec<u8>>, ChunkError> {
        if chunk.count == 0 || chunk.index >= chunk.count {
            return Err(ChunkError::OutOfRange {
                index: chunk.index,
                count: chunk.count,
            });
        }
        if chunk.total_len > MAX_REASSEMBLED_LEN {
            return Err(ChunkError::TooLarge(chunk.total_len));
        }
        // Every chunk but an empty message's carries at least one byte.
        if chunk.count as usize > chunk.total_len.max(1) {
            return Err(ChunkError::Inconsistent);
        }
        let data = BASE64
            .decode(&chunk.data)
            .map_err(|_| ChunkError::BadData)?;
        if !self.partial.contains_key(&chunk.message) && self.partial.len() >= MAX_PARTIAL_MESSAGES
        {
            return Err(ChunkError::TooManyPartial);
        }
        let partial = self
            .partial
            .entry(chunk.message)
            .or_insert_with(|| Partial {
                count: chunk.count,
                total_len: chunk.total_len,
                received: 0,
                parts: vec![None; chunk.count as usize],
            });
        if partial.count != chunk.count || partial.total_len != chunk.total_len {
            self.partial.remove(&chunk.message);
            return Err(ChunkError::Inconsistent);
        }
        let slot = &mut partial.parts[chunk.index as usize];
        if slot.is_none() {
            partial.received += 1;
        }
        *slot = Some(data);
        if partial.received < partial.count {
            return Ok(None);
        }
        let partial = self.partial.remove(&chunk.message).expect("present");
        let whole: Vec<u8> = partial.parts.into_iter().flatten().flatten().collect();
        if whole.len() != partial.total_len {
            return Err(ChunkError::Inconsistent);
        }
        Ok(Some(whole))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_frames_pass_through() {
        assert_eq!(split_for_browser(b"{}".to_vec(), 0), vec![b"{}".to_vec()]);
    }

    #[test]
    fn large_frames_split_under_the_limit_and_reassemble() {
        let big: Vec<u8> = (0..3 * 1024 * 1024 + 17).map(|i| (i % 251) as u8).collect();
        let chunks = split_for_browser(big.clone(), 5);
        assert!(chunks.len() > 1);
        let mut reassembler = Reassembler::default();
        let mut out = None;
        for chunk in chunks.iter().rev() {
            assert!(
                chunk.len() <= BROWSER_MAX_FRAME,
                "chunk of {} bytes",
                chunk.len()
            );
            let value: serde_json::Value = serde_json::from_slice(chunk).unwrap();
            let params: ChunkParams = serde_json::from_value(value["params"].clone()).unwrap();
            out = reassembler.add(params).unwrap().or(out);
        }
        assert_eq!(out.unwrap(), big);
    }

    #[test]
    fn hostile_chunks_are_refused() {
        let mut r = Reassembler::default();
        let chunk = |message, index, count, total_len| ChunkParams {
            message,
            index,
            count,
            total_len,
            data: String::new(),
        };
        assert!(matches!(
            r.add(chunk(1, 3, 2, 10)),
            Err(ChunkError::OutOfRange { .. })
        ));
        assert_eq!(
            r.add(chunk(1, 0, 2, usize::MAX)),
            Err(ChunkError::TooLarge(usize::MAX))
        );
        for m in 0..MAX_PARTIAL_MESSAGES as u64 {
            assert_eq!(r.add(chunk(m, 0, 2, 10)), Ok(None));
        }
        assert_eq!(r.add(chunk(99, 0, 2, 10)), Err(ChunkError::TooManyPartial));
        assert_eq!(r.add(chunk(0, 1, 3, 10)), Err(ChunkError::Inconsistent));
    }
}
