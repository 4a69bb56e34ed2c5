//! A sliding-window rate meter: bytes counted into per-100 ms slots over the last
//! `SLOTS` slots. I/O-free: the caller passes the time.

use std::time::{Duration, Instant};

const SLOT: Duration = Duration::from_millis(100);
const SLOTS: usize = 30;

#[derive(Debug, Clone)]
pub struct RateMeter {
    start: Instant,
    /// Index (in slots since `start`) of the newest slot.
    head: u64,
    slots: [u64; SLOTS],
    total: u64,
}

impl RateMeter {
    pub fn new(now: Instant) -> Self {
        RateMeter {
            start: now,
            head: 0,
            slots: [0; SLOTS],
            total: 0,
        }
    }

    fn slot_of(&self, now: Instant) -> u64 {
        (now.saturating_duration_since(self.start).as_nanos() / SLOT.as_nanos()) as u64
    }

    fn advance(&mut self, now: Instant) {
        let slot = self.slot_of(now);
        if slot <= self.head {
            return;
        }
        let steps = (slot - self.head).min(SLOTS as u64);
        for i in 1..=steps {
            self.slots[((self.head + i) % SLOTS as u64) as usize] = 0;
        }
        self.head = slot;
    }

    pub fn record(&mut self, bytes: u64, now: Instant) {
        self.advance(now);
        self.slots[(self.head % SLOTS as u64) as usize] += bytes;
        self.total += bytes;
    }

    /// All bytes ever recorded.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// Bytes per second over the last `window` (at most 3 s), counting whole slots.
    pub fn rate(&mut self, window: Duration, now: Instant) -> f64 {
        self.advance(now);
        let n = ((window.as_nanos() / SLOT.as_nanos()) as usize).clamp(1, SLOTS - 1);
        // The current slot is partial: take the n full slots before it.
        let mut sum = 0;
        for i in 1..=n as u64 {
            if i > self.head {
                break;
            }
            sum += self.slots[((self.head - i) % SLOTS as u64) as usize];
        }
        let span = (n as u64).min(self.head.max(1));
        sum as f64 / (span as f64 * SLOT.as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_over_a_window() {
        let t0 = Instant::now();
        let mut m = RateMeter::new(t0);
        for i in 0..20 {
            m.record(1000, t0 + SLOT * i);
        }
        // 1000 bytes per 100 ms = 10 kB/s.
        let r = m.rate(Duration::from_secs(1), t0 + SLOT * 20);
        assert!((r - 10_000.0).abs() < 1.0, "{r}");
        assert_eq!(m.total(), 20_000);
        // Idle for a long time: the rate falls to zero.
        assert_eq!(m.rate(Duration::from_secs(1), t0 + SLOT * 200), 0.0);
    }
}
