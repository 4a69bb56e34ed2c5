//! Fuzzes .torrent parsing (allpeers-transfer `bt::metainfo`, over librqbit-bencode and librqbit-core): malformed
//! bencode and metainfo must give a typed error, never a panic; a parsed torrent's paths stay relative.
#![no_main]

use allpeers_transfer::bt::metainfo::Torrent;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(torrent) = Torrent::from_bytes(data) {
        for file in torrent.layout.files() {
            assert!(file.path.is_relative());
            assert!(
                !file
                    .path
                    .components()
                    .any(|c| matches!(c, std::path::Component::ParentDir))
            );
        }
    }
});
