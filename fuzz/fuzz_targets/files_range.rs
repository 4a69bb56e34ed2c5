//! Fuzzes the `Range` header of the files service (allpeers-transfer `blob::http::parse_range`): any text and any
//! file length give a typed error or a non-empty range inside the file.
#![no_main]

use allpeers_transfer::blob::http::parse_range;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((size, header)) = data.split_first_chunk::<8>() else {
        return;
    };
    let size = u64::from_le_bytes(*size);
    if let Ok(range) = parse_range(&String::from_utf8_lossy(header), size) {
        assert!(range.start < range.end, "{range:?}");
        assert!(range.end <= size, "{range:?} of {size}");
    }
});
