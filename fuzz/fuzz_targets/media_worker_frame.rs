//! The media worker protocol as both ends read it: bytes split at arbitrary points into the
//! frame decoder, each frame decoded as a request (the worker's side) and as a response (the
//! pool's side). Nothing may panic, a decoded request re-encodes to the same frame body, and
//! the decoder never holds more than one frame's bound plus one read.
#![no_main]

use allpeers_media::protocol::{self, FrameDecoder, MAX_REQUEST_FRAME, Request, Response};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&split, rest)) = data.split_first() else {
        return;
    };
    let step = usize::from(split).max(1);
    let mut decoder = FrameDecoder::new(MAX_REQUEST_FRAME);
    'feed: for piece in rest.chunks(step) {
        decoder.push(piece);
        loop {
            match decoder.next_frame() {
                Ok(Some(body)) => {
                    assert!(body.len() <= MAX_REQUEST_FRAME);
                    if let Ok(request) = protocol::decode::<Request>(&body) {
                        let again = protocol::encode(&request, usize::MAX).expect("re-encode");
                        assert_eq!(
                            protocol::decode::<Request>(&again[4..]).expect("decode again"),
                            request
                        );
                    }
                    let _ = protocol::decode::<Response>(&body);
                }
                Ok(None) => break,
                Err(_) => break 'feed,
            }
        }
        assert!(decoder.pending() <= MAX_REQUEST_FRAME + 4 + step);
    }
});
