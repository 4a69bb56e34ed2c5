//! Bandwidth limits and measurement.
//!
//! * [`RateLimit`]: a token bucket (GCRA, the `governor` crate) in bytes per second that can be
//!   changed or lifted at run time. Limits chain: a stream's writes wait on the global upload
//!   limit, the peer's upload limit and the stream's own limit in turn; reads likewise on the
//!   download limits (a throttled reader stops reading, so flow control slows the sender: no
//!   buffering grows).
//! * [`Throttle`]: the endpoint's set of limits — global up/down and per peer up/down.
//! * [`RateMeter`]: measured rate over a sliding window, I/O-free (the caller passes the time).

mod meter;

pub use meter::RateMeter;

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex, RwLock};

use allpeers_model::PeerId;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

/// Bytes per token: keeps governor's nanosecond replenish interval precise at high rates.
const CELL: u64 = 256;
/// Smallest burst, in cells (16 KiB).
const MIN_BURST_CELLS: u32 = 64;

struct Bucket {
    limiter: DefaultDirectRateLimiter,
    burst_cells: u32,
}

/// A byte-rate limit; `None` means unlimited. Cheap to check when unlimited.
#[derive(Default)]
pub struct RateLimit {
    bucket: RwLock<Option<Arc<Bucket>>>,
    rate: std::sync::atomic::AtomicU64,
    /// Bytes not yet charged (under one cell).
    remainder: Mutex<u64>,
}

impl std::fmt::Debug for RateLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimit")
            .field("bytes_per_second", &self.rate())
            .finish()
    }
}

impl RateLimit {
    pub fn new(bytes_per_second: Option<u64>) -> Self {
        let limit = RateLimit::default();
        limit.set(bytes_per_second);
        limit
    }

    /// Changes the rate (None = unlimited). Takes effect for the next bytes charged.
    pub fn set(&self, bytes_per_second: Option<u64>) {
        let bucket = bytes_per_second.map(|rate| {
            let cells = (rate / CELL).clamp(1, u32::MAX as u64) as u32;
            let burst_cells = (cells / 10).max(MIN_BURST_CELLS);
            let quota = Quota::per_second(NonZeroU32::new(cells).unwrap())
                .allow_burst(NonZeroU32::new(burst_cells).unwrap());
            Arc::new(Bucket {
                limiter: RateLimiter::direct(quota),
                burst_cells,
            })
        });
        self.rate.store(
            bytes_per_second.unwrap_or(0),
            std::sync::atomic::Ordering::Relaxed,
        );
        *self.bucket.write().unwrap() = bucket;
    }

    /// The rate in bytes per second, None when unlimited.
    pub fn rate(&self) -> Option<u64> {
        match self.rate.load(std::sync::atomic::Ordering::Relaxed) {
            0 => None,
            r => Some(r),
        }
    }

    /// Waits until `bytes` may pass.
    pub async fn acquire(&self, bytes: usize) {
        let Some(bucket) = self.bucket.read().unwrap().clone() else {
            return;
        };
        let mut cells = {
            let mut rem = self.remainder.lock().unwrap();
            let total = *rem + bytes as u64;
            *rem = total % CELL;
            total / CELL
        };
        while cells > 0 {
            let n = cells.min(bucket.burst_cells as u64) as u32;
            // n <= burst, so this cannot fail with InsufficientCapacity.
            let _ = bucket
                .limiter
                .until_n_ready(NonZeroU32::new(n).unwrap())
                .await;
            cells -= n as u64;
        }
    }
}

/// An upload and a download limit.
#[derive(Debug, Default)]
pub struct LimitPair {
    pub up: RateLimit,
    pub down: RateLimit,
}

/// The endpoint's limits: global and per peer. Per-stream limits live on the streams.
#[derive(Debug, Default)]
pub struct Throttle {
    global: Arc<LimitPair>,
    peers: Mutex<HashMap<PeerId, Arc<LimitPair>>>,
}

impl Throttle {
    pub fn global(&self) -> &Arc<LimitPair> {
        &self.global
    }

    /// The limits of one peer (created unlimited on first use).
    pub fn peer(&self, peer: &PeerId) -> Arc<LimitPair> {
        self.peers.lock().unwrap().entry(*peer).or_default().clone()
    }

    pub fn set_global(&self, up: Option<u64>, down: Option<u64>) {
        self.global.up.set(up);
        self.global.down.set(down);
    }

    pub fn set_peer(&self, peer: &PeerId, up: Option<u64>, down: Option<u64>) {
        let pair = self.peer(peer);
        pair.up.set(up);
        pair.down.set(down);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[tokio::test]
    async fn a_limit_holds_its_rate_and_can_change() {
        let limit = RateLimit::new(Some(2_000_000));
        // Drain the initial burst, then measure.
        limit.acquire(200_000).await;
        let start = Instant::now();
        for _ in 0..100 {
            limit.acquire(10_000).await; // 1 MB at 2 MB/s: 0.5 s
        }
        let secs = start.elapsed().as_secs_f64();
        assert!((0.45..0.6).contains(&secs), "took {secs}");
        limit.set(None);
        let start = Instant::now();
        limit.acquire(100_000_000).await;
        assert!(start.elapsed() < Duration::from_millis(50));
        assert_eq!(limit.rate(), None);
    }
}
