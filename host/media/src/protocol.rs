//! The worker protocol: each message is a frame — a little-endian `u32` length, then that
//! many bytes of postcard — over the worker's stdin (requests) and stdout (responses).
//! [`FrameDecoder`] is I/O-free: feed it bytes, take whole frames out; a length past the
//! bound is an error before any byte of the body is buffered.

use serde::{Deserialize, Serialize};

use crate::{ExtractError, Extracted, Options};

/// A request carries a path (Linux caps one at 4 KiB) and options: 64 KiB is generous.
pub const MAX_REQUEST_FRAME: usize = 64 * 1024;
/// A response carries at most a thumbnail (256x256 lossless WebP is under 300 KB), a text
/// preview and tags bounded by [`crate::audio::MAX_TAG_BYTES`] each.
pub const MAX_RESPONSE_FRAME: usize = 2 * 1024 * 1024;
const LENGTH_BYTES: usize = 4;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Task {
    /// Type, metadata and (if asked) a thumbnail.
    Describe(Options),
    /// The exact duration of an audio file by a packet scan.
    ExactDuration,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Request {
    pub id: u64,
    /// The file's path as bytes (a Unix path need not be UTF-8).
    pub path: Vec<u8>,
    pub task: Task,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Outcome {
    Described(Box<Extracted>),
    /// Seconds.
    Duration(f64),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Response {
    pub id: u64,
    pub result: Result<Outcome, ExtractError>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    #[error("a frame of {len} bytes is over the {max}-byte bound")]
    TooLong { len: usize, max: usize },
    #[error("undecodable frame: {0}")]
    Decode(String),
    #[error("cannot encode: {0}")]
    Encode(String),
}

/// Encodes `message` as one frame.
pub fn encode<T: Serialize>(message: &T, max: usize) -> Result<Vec<u8>, ProtocolError> {
    let body = postcard::to_allocvec(message).map_err(|e| ProtocolError::Encode(e.to_string()))?;
    if body.len() > max {
        return Err(ProtocolError::TooLong {
            len: body.len(),
            max,
        });
    }
    let mut frame = Vec::with_capacity(LENGTH_BYTES + body.len());
    frame.extend_from_slice(&(body.len() as u32).to_le_bytes());
    frame.extend_from_slice(&body);
    Ok(frame)
}

/// Decodes one frame body.
pub fn decode<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, ProtocolError> {
    postcard::from_bytes(body).map_err(|e| ProtocolError::Decode(e.to_string()))
}

/// Splits a byte stream into frame bodies.
#[derive(Debug)]
pub struct FrameDecoder {
    max: usize,
    buffer: Vec<u8>,
}

impl FrameDecoder {
    pub fn new(max: usize) -> Self {
        Self {
            max,
            buffer: Vec::new(),
        }
    }

    /// Appends bytes read from the stream.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buffer.extend_from_slice(bytes);
    }

    /// The next whole frame body, `Ok(None)` when more bytes are needed.
    pub fn next_frame(&mut self) -> Result<Option<Vec<u8>>, ProtocolError> {
        let Some(header) = self.buffer.get(..LENGTH_BYTES) else {
            return Ok(None);
        };
        let len = u32::from_le_bytes(header.try_into().expect("four bytes")) as usize;
        if len > self.max {
            return Err(ProtocolError::TooLong { len, max: self.max });
        }
        if self.buffer.len() < LENGTH_BYTES + len {
            return Ok(None);
        }
        let body = self.buffer[LENGTH_BYTES..LENGTH_BYTES + len].to_vec();
        self.buffer.drain(..LENGTH_BYTES + len);
        Ok(Some(body))
    }

    /// Bytes of an incomplete frame still held.
    pub fn pending(&self) -> usize {
        self.buffer.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Details, MediaKind};

    #[test]
    fn frames_survive_any_split() {
        let request = Request {
            id: 7,
            path: "/tmp/a b/ç.mp3".as_bytes().to_vec(),
            task: Task::Describe(Options::default()),
        };
        let response = Response {
            id: 7,
            result: Ok(Outcome::Described(Box::new(Extracted {
                kind: MediaKind::File,
                mime_type: "application/octet-stream".to_owned(),
                format_name: "Arbitrary Binary Data".to_owned(),
                details: Details::File,
            }))),
        };
        let mut stream = encode(&request, MAX_REQUEST_FRAME).unwrap();
        stream.extend(encode(&response, MAX_REQUEST_FRAME).unwrap());
        for split in 0..stream.len() {
            let mut decoder = FrameDecoder::new(MAX_REQUEST_FRAME);
            decoder.push(&stream[..split]);
            let mut frames = Vec::new();
            while let Some(f) = decoder.next_frame().unwrap() {
                frames.push(f);
            }
            decoder.push(&stream[split..]);
            while let Some(f) = decoder.next_frame().unwrap() {
                frames.push(f);
            }
            assert_eq!(frames.len(), 2, "split at {split}");
            assert_eq!(decode::<Request>(&frames[0]).unwrap(), request);
            assert_eq!(decode::<Response>(&frames[1]).unwrap(), response);
            assert_eq!(decoder.pending(), 0);
        }
    }

    #[test]
    fn oversized_length_is_refused_before_buffering() {
        let mut decoder = FrameDecoder::new(MAX_REQUEST_FRAME);
        decoder.push(&(MAX_REQUEST_FRAME as u32 + 1).to_le_bytes());
        assert!(matches!(
            decoder.next_frame(),
            Err(ProtocolError::TooLong { .. })
        ));
        assert!(encode(&"x".repeat(100), 10).is_err());
    }

    #[test]
    fn garbage_body_is_a_decode_error() {
        assert!(matches!(
            decode::<Response>(&[0xff, 0xff, 0xff]),
            Err(ProtocolError::Decode(_))
        ));
    }
}
