//! Fuzzes the peer protocol's frame decoder (allpeers-net `frame::FrameDecoder`): arbitrary
//! bytes, arbitrary chunking and limits; the decoder must bound its buffer, refuse
//! over-limit prefixes and never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    allpeers_net::frame::fuzz_decoder(data);
});
