//! Fuzzes the data cache's journal decoder (allpeers-transfer `cache::journal::decode`): any bytes give a typed
//! error or a set of pieces in range and a valid length no longer than the input.
#![no_main]

use allpeers_transfer::cache::journal;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&count, rest)) = data.split_first() else {
        return;
    };
    let content = [7u8; 20];
    let mut bytes = b"APJ1".to_vec();
    bytes.extend_from_slice(&content);
    bytes.extend_from_slice(rest);
    for input in [&bytes[..], rest] {
        if let Ok((done, valid)) = journal::decode(input, &content, u32::from(count)) {
            assert!(valid <= input.len());
            assert!(done.iter().all(|p| p < u32::from(count)));
        }
    }
});
