//! A transfer rate over a sliding window, driven by the caller's clock.

use std::time::{Duration, Instant};

/// Width of one bucket of the window.
const BUCKET: Duration = Duration::from_millis(100);
/// Buckets in the window: 2 s is long enough to smooth TCP's bursts, short enough to follow a change of speed.
const BUCKETS: usize = 20;

#[derive(Debug, Clone)]
pub struct RateMeter {
    origin: Instant,
    buckets: [u64; BUCKETS],
    /// Index (in buckets since `origin`) of the newest bucket written.
    newest: u64,
    total: u64,
}

impl RateMeter {
    pub fn new(now: Instant) -> Self {
        Self {
            origin: now,
            buckets: [0; BUCKETS],
            newest: 0,
            total: 0,
        }
    }

    fn advance(&mut self, now: Instant) -> u64 {
        let index =
            (now.saturating_duration_since(self.origin).as_nanos() / BUCKET.as_nanos()) as u64;
        if index > self.newest {
            let stale = (index - self.newest).min(BUCKETS as u64);
            for step in 1..=stale {
                self.buckets[((self.newest + step) % BUCKETS as u64) as usize] = 0;
            }
            self.newest = index;
        }
        index
    }

    pub fn record(&mut self, bytes: u64, now: Instant) {
        let index = self.advance(now);
        self.buckets[(index % BUCKETS as u64) as usize] += bytes;
        self.total += bytes;
    }

    /// Bytes ever recorded.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// Bytes per second over the window (or over the time since creation, when shorter).
    pub fn rate(&mut self, now: Instant) -> u64 {
        self.advance(now);
        let sum: u64 = self.buckets.iter().sum();
        let elapsed = now
            .saturating_duration_since(self.origin)
            .max(BUCKET)
            .min(BUCKET * BUCKETS as u32);
        (sum as u128 * 1_000_000_000 / elapsed.as_nanos()) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steady_rate_is_measured_and_old_bytes_expire() {
        let t0 = Instant::now();
        let mut meter = RateMeter::new(t0);
        for tick in 0..40u32 {
            meter.record(10_000, t0 + BUCKET * tick);
        }
        // 10 kB per 100 ms.
        let rate = meter.rate(t0 + BUCKET * 40);
        assert!((95_000..=105_000).contains(&rate), "{rate}");
        assert_eq!(meter.rate(t0 + BUCKET * 100), 0);
        assert_eq!(meter.total(), 400_000);
    }

    #[test]
    fn a_young_meter_is_not_diluted_by_the_full_window() {
        let t0 = Instant::now();
        let mut meter = RateMeter::new(t0);
        meter.record(50_000, t0);
        assert_eq!(meter.rate(t0 + Duration::from_millis(500)), 100_000);
    }
}
