//! A per-peer rate limit for the services peers call (letters, sync frames): governor's keyed
//! buckets, with the memory bound every such limiter needs (peers are free to make).

use std::num::NonZeroU32;

use allpeers_model::PeerId;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

/// Peers a limiter remembers before it forgets those back at a full bucket.
const LIMITER_KEYS: usize = 4096;

pub struct PeerRateLimit(DefaultKeyedRateLimiter<PeerId>);

impl PeerRateLimit {
    /// `per_second` requests a peer may make, in bursts of up to `burst` (both non-zero).
    pub fn new(per_second: u32, burst: u32) -> PeerRateLimit {
        let nonzero = |n| NonZeroU32::new(n).expect("a non-zero rate");
        PeerRateLimit(RateLimiter::keyed(
            Quota::per_second(nonzero(per_second)).allow_burst(nonzero(burst)),
        ))
    }

    /// Whether `peer` may make one more request now (it is counted).
    pub fn allows(&self, peer: &PeerId) -> bool {
        if self.0.len() > LIMITER_KEYS {
            self.0.retain_recent();
            self.0.shrink_to_fit();
        }
        self.0.check_key(peer).is_ok()
    }
}
