//! Fuzzes the tracker answer parsers (allpeers-transfer `bt::tracker`): HTTP(S) answers' bodies, and UDP connect
//! and announce answers (BEP 15), and magnet links (`bt::magnet`), which name trackers too. Junk gives a typed
//! error; peers and the interval stay within their bounds.
#![no_main]

use allpeers_transfer::bt::magnet::{MAX_MAGNET_PEERS, MagnetLink};
use allpeers_transfer::bt::metainfo::MAX_TRACKERS;
use allpeers_transfer::bt::tracker::{self, MAX_INTERVAL, MIN_INTERVAL, http, udp};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let transaction = data
        .get(4..8)
        .map_or(0, |t| u32::from_be_bytes(t.try_into().expect("4 bytes")));
    let udp = [
        udp::parse_announce(data, transaction, false),
        udp::parse_announce(data, transaction, true),
    ];
    for parsed in
        std::iter::once(http::parse_body(data)).chain(udp.into_iter().filter_map(Result::transpose))
    {
        if let Ok(response) = parsed {
            assert!(response.interval >= MIN_INTERVAL && response.interval <= MAX_INTERVAL);
            assert!(response.peers.len() <= 2 * tracker::MAX_PEERS_PER_RESPONSE);
        }
    }
    let _ = udp::parse_connect(data, transaction);
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(link) = MagnetLink::parse(text)
    {
        assert!(link.peers.len() <= MAX_MAGNET_PEERS);
        assert!(link.trackers.len() <= MAX_TRACKERS);
    }
});
