//! A keyed rate limit: per peer for the services peers call (letters, sync frames), per origin
//! for web apps' calls. governor's keyed buckets, with the memory bound every such limiter
//! needs (peers are free to make, and so are origins).

use std::hash::Hash;
use std::num::NonZeroU32;

use allpeers_model::PeerId;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

/// Keys a limiter remembers before it forgets those back at a full bucket.
const LIMITER_KEYS: usize = 4096;

pub struct KeyedRateLimit<K: Hash + Eq + Clone>(DefaultKeyedRateLimiter<K>);

/// The limit on what each peer may ask of our services.
pub type PeerRateLimit = KeyedRateLimit<PeerId>;

impl<K: Hash + Eq + Clone> KeyedRateLimit<K> {
    /// `per_second` requests a key may make, in bursts of up to `burst` (both non-zero).
    pub fn new(per_second: u32, burst: u32) -> Self {
        let nonzero = |n| NonZeroU32::new(n).expect("a non-zero rate");
        KeyedRateLimit(RateLimiter::keyed(
            Quota::per_second(nonzero(per_second)).allow_burst(nonzero(burst)),
        ))
    }

    /// Whether `key` may make one more request now (it is counted).
    pub fn allows(&self, key: &K) -> bool {
        if self.0.len() > LIMITER_KEYS {
            self.0.retain_recent();
            self.0.shrink_to_fit();
        }
        self.0.check_key(key).is_ok()
    }
}
