//! The media extraction entry point over arbitrary bytes, as a worker runs it on a file a
//! stranger sent: type detection, then the audio, image (with thumbnail), video or text
//! extractor, then the packet scan for audio. Errors are fine; a panic, an abort or a hang
//! is a bug (in the worker it would cost a restart).
#![no_main]

use allpeers_media::{Details, Options, audio, extract_bytes};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let options = Options {
        thumbnail: true,
        exact_duration: false,
    };
    if let Ok(extracted) = extract_bytes(data, &options) {
        if let Details::Audio(_) = extracted.details {
            let _ = audio::exact_duration(
                Box::new(std::io::Cursor::new(data.to_vec())),
                data.len() as u64,
            );
        }
    }
});
