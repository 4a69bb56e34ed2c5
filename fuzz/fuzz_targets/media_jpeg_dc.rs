//! The 1/8-scale JPEG decoder of thumbnails (`allpeers_media::jpeg_dc`) on a file a stranger
//! sent. Half the inputs are decoded as they are; the other half are edits of a real
//! baseline JPEG with restart markers (a fixture of the media crate), so the fuzzer reaches
//! the entropy-coded data from the first run: each 3 bytes overwrite one byte (2-byte
//! offset, value), the last byte cuts the file. `None` is fine; a panic or a hang is a bug.
#![no_main]

use allpeers_media::jpeg_dc;
use libfuzzer_sys::fuzz_target;

const BASE: &[u8] = include_bytes!("../../host/media/tests/fixtures/restarts.jpg");

fuzz_target!(|data: &[u8]| {
    match data.split_first() {
        Some((mode, edits)) if mode & 1 == 1 => {
            let mut file = BASE.to_vec();
            for edit in edits.chunks_exact(3) {
                let at = usize::from(u16::from_le_bytes([edit[0], edit[1]])) % file.len();
                file[at] = edit[2];
            }
            if let Some(&cut) = edits.chunks_exact(3).remainder().first() {
                file.truncate(file.len() * usize::from(cut) / 255);
            }
            let _ = jpeg_dc::decode(&file);
        }
        _ => {
            let _ = jpeg_dc::decode(data);
        }
    }
});
