//! Upload and download rate limits: token buckets (`governor`) that connections wait on, one global and one per
//! transfer, changeable while transfers run. A limit of `None` lets bytes through without waiting.
//!
//! (The network crate has a throttle for its own connections; BitTorrent sockets are not its connections, so this
//! one is separate. The lead may fold the two together when the node exposes `net.limits.*`.)

use std::num::NonZeroU32;
use std::sync::{Arc, RwLock};

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

/// One token is this many bytes: keeps a bucket's counts within `u32` for rates up to terabytes per second.
const TOKEN_BYTES: u64 = 1024;
/// A bucket holds a quarter second of its rate (at least 64 KiB): enough for whole messages, small enough that a
/// limit holds within a second.
const MIN_BURST_TOKENS: u32 = 64;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Limits {
    /// Bytes per second received; `None` for no limit.
    pub down: Option<u64>,
    /// Bytes per second sent; `None` for no limit.
    pub up: Option<u64>,
}

#[derive(Debug, Default)]
pub struct Throttle {
    down: RwLock<Option<Arc<DefaultDirectRateLimiter>>>,
    up: RwLock<Option<Arc<DefaultDirectRateLimiter>>>,
    limits: RwLock<Limits>,
}

/// The bucket's shape for `rate` bytes per second.
fn quota(rate: u64) -> Quota {
    let tokens_per_sec = (rate / TOKEN_BYTES).clamp(1, u64::from(u32::MAX)) as u32;
    let burst = (tokens_per_sec / 4).max(MIN_BURST_TOKENS);
    Quota::per_second(NonZeroU32::new(tokens_per_sec).expect("clamped to at least 1"))
        .allow_burst(NonZeroU32::new(burst).expect("at least MIN_BURST_TOKENS"))
}

fn bucket(rate: Option<u64>) -> Option<Arc<DefaultDirectRateLimiter>> {
    Some(Arc::new(RateLimiter::direct(quota(rate?))))
}

impl Throttle {
    pub fn new(limits: Limits) -> Self {
        let throttle = Self::default();
        throttle.set(limits);
        throttle
    }

    pub fn set(&self, limits: Limits) {
        *self.down.write().expect("not poisoned") = bucket(limits.down);
        *self.up.write().expect("not poisoned") = bucket(limits.up);
        *self.limits.write().expect("not poisoned") = limits;
    }

    pub fn limits(&self) -> Limits {
        *self.limits.read().expect("not poisoned")
    }

    /// Waits until `bytes` received may be accounted.
    pub async fn received(&self, bytes: usize) {
        let bucket = self.down.read().expect("not poisoned").clone();
        take(bucket, bytes).await;
    }

    /// Waits until `bytes` may be sent.
    pub async fn sending(&self, bytes: usize) {
        let bucket = self.up.read().expect("not poisoned").clone();
        take(bucket, bytes).await;
    }
}

async fn take(bucket: Option<Arc<DefaultDirectRateLimiter>>, bytes: usize) {
    let Some(bucket) = bucket else { return };
    let mut tokens = (bytes as u64).div_ceil(TOKEN_BYTES);
    while tokens > 0 {
        // Never ask for more than the bucket holds at once.
        let step = tokens.min(u64::from(MIN_BURST_TOKENS)) as u32;
        let _ = bucket
            .until_n_ready(NonZeroU32::new(step).expect("positive"))
            .await;
        tokens -= u64::from(step);
    }
}

/// The throttles a connection passes its bytes through: the global one and its transfer's.
#[derive(Debug, Clone)]
pub struct Throttles(pub Vec<Arc<Throttle>>);

impl Throttles {
    pub async fn received(&self, bytes: usize) {
        for throttle in &self.0 {
            throttle.received(bytes).await;
        }
    }

    pub async fn sending(&self, bytes: usize) {
        for throttle in &self.0 {
            throttle.sending(bytes).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use governor::clock::FakeRelativeClock;
    use std::time::Duration;

    #[test]
    fn a_bucket_holds_a_quarter_second_and_refills_at_the_rate() {
        let clock = FakeRelativeClock::default();
        // 4 MiB/s = 4096 tokens a second, 1024 of burst.
        let limiter = RateLimiter::direct_with_clock(quota(4 << 20), clock.clone());
        let n = |tokens| NonZeroU32::new(tokens).unwrap();
        assert!(limiter.check_n(n(1024)).unwrap().is_ok());
        assert!(
            limiter.check_n(n(1)).unwrap().is_err(),
            "the burst is spent"
        );
        clock.advance(Duration::from_millis(125));
        assert!(
            limiter.check_n(n(512)).unwrap().is_ok(),
            "an eighth of a second refills 512 tokens"
        );
        assert!(limiter.check_n(n(1)).unwrap().is_err());
        assert!(
            limiter.check_n(n(2000)).is_err(),
            "never more than the burst at once"
        );
    }

    #[test]
    fn tiny_limits_keep_a_usable_burst() {
        let clock = FakeRelativeClock::default();
        let limiter = RateLimiter::direct_with_clock(quota(10), clock);
        assert!(
            limiter
                .check_n(NonZeroU32::new(MIN_BURST_TOKENS).unwrap())
                .unwrap()
                .is_ok()
        );
    }

    #[tokio::test]
    async fn no_limit_never_waits_and_limits_can_change() {
        let throttle = Throttle::new(Limits::default());
        throttle.received(1 << 30).await;
        throttle.sending(1 << 30).await;
        throttle.set(Limits {
            down: Some(1 << 20),
            up: None,
        });
        assert_eq!(
            throttle.limits(),
            Limits {
                down: Some(1 << 20),
                up: None
            }
        );
        assert!(throttle.up.read().unwrap().is_none() && throttle.down.read().unwrap().is_some());
    }
}
