//! Fuzzes the HTTP tracker response parser (allpeers-transfer `bt::tracker::parse_response`): junk answers give a
//! typed error; peers and the interval stay within their bounds.
#![no_main]

use allpeers_transfer::bt::tracker::{self, MAX_INTERVAL, MIN_INTERVAL};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for parsed in [tracker::parse_response(data), tracker::parse_body(data)] {
        if let Ok(response) = parsed {
            assert!(response.interval >= MIN_INTERVAL && response.interval <= MAX_INTERVAL);
            assert!(response.peers.len() <= 2 * tracker::MAX_PEERS_PER_RESPONSE);
        }
    }
});
