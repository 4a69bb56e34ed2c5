//! Fuzzes the BitTorrent peer wire (allpeers-transfer `bt::wire`): the handshake decoder on the first 68 bytes, and
//! the frame decoder on the rest fed in two chunks (split at the first byte's value), as a socket would deliver it.
//! It must refuse oversized frames and malformed messages with an error and never panic.
#![no_main]

use allpeers_transfer::bt::wire::{self, HANDSHAKE_LEN};
use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Some(handshake) = data.get(..HANDSHAKE_LEN) {
        let _ = wire::decode_handshake(handshake.try_into().expect("68 bytes"));
    }
    let split = data.first().map_or(0, |b| usize::from(*b)).min(data.len());
    let mut buf = BytesMut::from(&data[..split]);
    let mut rest = &data[split..];
    loop {
        match wire::decode_frame(&mut buf) {
            Ok(Some(_)) => continue,
            Ok(None) if !rest.is_empty() => {
                buf.extend_from_slice(rest);
                rest = &[];
            }
            Ok(None) | Err(_) => break,
        }
    }
});
