//! The local API's input path as the daemon runs it: bytes split at arbitrary points into
//! the frame decoder, each frame parsed as a request; plus the bridge's chunk reassembly
//! and the client's reply parsing. Nothing may panic, and the decoder never buffers more
//! than one frame's worth past its limit.
#![no_main]

use allpeers_model::api::chunk::{ChunkParams, Reassembler};
use allpeers_model::api::message::parse_request;
use allpeers_model::api::{FrameDecoder, Incoming};
use libfuzzer_sys::fuzz_target;

const LIMIT: usize = 4096;

fuzz_target!(|data: &[u8]| {
    let Some((&split, rest)) = data.split_first() else {
        return;
    };
    let mut decoder = FrameDecoder::new(LIMIT);
    let mut reassembler = Reassembler::default();
    let step = usize::from(split).max(1);
    'feed: for piece in rest.chunks(step) {
        decoder.push(piece);
        loop {
            match decoder.next_frame() {
                Ok(Some(frame)) => {
                    assert!(frame.len() <= LIMIT);
                    if let Ok(request) = parse_request(&frame) {
                        assert_eq!(request.jsonrpc, "2.0");
                        assert!(!request.method.is_empty());
                    }
                    if let Ok(Incoming::Notification { params, .. }) = Incoming::parse(&frame) {
                        if let Ok(chunk) = serde_json::from_value::<ChunkParams>(params) {
                            let _ = reassembler.add(chunk);
                        }
                    }
                }
                Ok(None) => break,
                Err(_) => break 'feed,
            }
        }
        assert!(decoder.buffered() <= LIMIT + 4 + step);
    }
    let _ = decoder.finish();
});
