//! One peer's outstanding requests and how many more to send: libtorrent's rule, enough requests to cover
//! [`QUEUE_TIME`] of the peer's measured rate, clamped to the `reqq` the peer advertised.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::geometry::{BLOCK_LEN, Block};
use super::rate::RateMeter;

/// How much of the peer's rate to keep in flight (libtorrent's `request_queue_time`): enough to hide the round trip
/// and the peer's disk latency.
pub const QUEUE_TIME: Duration = Duration::from_secs(3);
/// Depth before the rate is known (and the floor after): a fresh connection must not start starved.
pub const INITIAL_DEPTH: usize = 16;
/// Our own ceiling whatever the peer says: 2000 blocks of 16 KiB is 32 MiB in flight, ~10 GB/s at 3 s.
pub const MAX_DEPTH: usize = 2000;
/// `reqq` assumed when the peer advertises none (libtorrent's default for peers that stay silent).
pub const DEFAULT_PEER_REQQ: usize = 250;
/// A request unanswered this long counts as lost: the peer is snubbed and its blocks go to other peers.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(20);
/// The `reqq` we advertise: how many requests we queue from one peer. Deep, so fast leechers are never starved.
pub const OUR_REQQ: u32 = 2000;

#[derive(Debug)]
pub struct RequestPipeline {
    /// Outstanding requests in the order sent; peers answer in order, so the oldest is at the front.
    outstanding: VecDeque<(Block, Instant)>,
    rate: RateMeter,
    peer_reqq: usize,
    started: Instant,
}

impl RequestPipeline {
    pub fn new(now: Instant) -> Self {
        Self {
            outstanding: VecDeque::new(),
            rate: RateMeter::new(now),
            peer_reqq: DEFAULT_PEER_REQQ,
            started: now,
        }
    }

    /// The peer's extended handshake named its queue length.
    pub fn set_peer_reqq(&mut self, reqq: u32) {
        self.peer_reqq = (reqq as usize).clamp(1, MAX_DEPTH);
    }

    pub fn outstanding(&self) -> usize {
        self.outstanding.len()
    }

    /// Bytes per second received from this peer.
    pub fn rate(&mut self, now: Instant) -> u64 {
        self.rate.rate(now)
    }

    /// Requests this peer should have in flight now.
    pub fn target_depth(&mut self, now: Instant) -> usize {
        let ceiling = self.peer_reqq.min(MAX_DEPTH);
        if now.saturating_duration_since(self.started) < Duration::from_secs(1) {
            // Less than a second of samples underestimates a connection still in TCP slow start.
            return INITIAL_DEPTH.min(ceiling);
        }
        let by_rate = (self.rate.rate(now) as u128 * QUEUE_TIME.as_millis()
            / 1000
            / u128::from(BLOCK_LEN)) as usize;
        by_rate.clamp(INITIAL_DEPTH, MAX_DEPTH).min(ceiling)
    }

    /// How many new requests to send now.
    pub fn room(&mut self, now: Instant) -> usize {
        self.target_depth(now)
            .saturating_sub(self.outstanding.len())
    }

    pub fn sent(&mut self, block: Block, now: Instant) {
        self.outstanding.push_back((block, now));
    }

    /// A block arrived; false when it was not outstanding with this peer.
    pub fn arrived(&mut self, block: Block, now: Instant) -> bool {
        self.rate.record(u64::from(block.len), now);
        match self.outstanding.iter().position(|(b, _)| *b == block) {
            Some(position) => {
                self.outstanding.remove(position);
                true
            }
            None => false,
        }
    }

    /// We cancelled a request (endgame): it is no longer expected.
    pub fn cancelled(&mut self, block: Block) {
        self.outstanding.retain(|(b, _)| *b != block);
    }

    /// The peer choked us: without the Fast extension, every outstanding request is dropped.
    pub fn drain(&mut self) -> Vec<Block> {
        self.outstanding.drain(..).map(|(b, _)| b).collect()
    }

    /// Requests older than [`REQUEST_TIMEOUT`], removed.
    pub fn expire(&mut self, now: Instant) -> Vec<Block> {
        let mut expired = Vec::new();
        while let Some(&(block, sent)) = self.outstanding.front() {
            if now.saturating_duration_since(sent) < REQUEST_TIMEOUT {
                break;
            }
            self.outstanding.pop_front();
            expired.push(block);
        }
        expired
    }

    /// When the oldest outstanding request times out.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.outstanding
            .front()
            .map(|&(_, sent)| sent + REQUEST_TIMEOUT)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(i: u32) -> Block {
        Block {
            piece: i / 4,
            offset: (i % 4) * BLOCK_LEN,
            len: BLOCK_LEN,
        }
    }

    /// Feeds `bytes_per_sec` for 3 s in 100 ms steps.
    fn feed(pipeline: &mut RequestPipeline, t0: Instant, bytes_per_sec: u64) -> Instant {
        let per_step = bytes_per_sec / 10 / u64::from(BLOCK_LEN);
        let mut n = 0;
        for step in 0..30u32 {
            let now = t0 + Duration::from_millis(100) * step;
            for _ in 0..per_step {
                pipeline.sent(block(n), now);
                pipeline.arrived(block(n), now);
                n += 1;
            }
        }
        t0 + Duration::from_secs(3)
    }

    #[test]
    fn depth_covers_three_seconds_of_the_measured_rate() {
        let t0 = Instant::now();
        let mut pipeline = RequestPipeline::new(t0);
        pipeline.set_peer_reqq(100_000);
        assert_eq!(pipeline.target_depth(t0), INITIAL_DEPTH);
        // 10 MiB/s for 3 s: 3 s of it is 30 MiB = 1920 blocks.
        let now = feed(&mut pipeline, t0, 10 * 1024 * 1024);
        let depth = pipeline.target_depth(now);
        assert!((1800..=2000).contains(&depth), "{depth}");
    }

    #[test]
    fn depth_is_clamped_to_the_peers_reqq_and_floored_for_slow_peers() {
        let t0 = Instant::now();
        let mut fast = RequestPipeline::new(t0);
        fast.set_peer_reqq(250);
        let now = feed(&mut fast, t0, 10 * 1024 * 1024);
        assert_eq!(fast.target_depth(now), 250);
        let mut slow = RequestPipeline::new(t0);
        let now = feed(&mut slow, t0, 20 * 1024);
        assert_eq!(slow.target_depth(now), INITIAL_DEPTH);
    }

    #[test]
    fn room_accounts_for_what_is_in_flight_and_choke_drains_it() {
        let t0 = Instant::now();
        let mut pipeline = RequestPipeline::new(t0);
        for i in 0..10 {
            pipeline.sent(block(i), t0);
        }
        assert_eq!(pipeline.room(t0), INITIAL_DEPTH - 10);
        assert!(pipeline.arrived(block(3), t0));
        assert!(
            !pipeline.arrived(block(3), t0),
            "a second copy is not outstanding"
        );
        pipeline.cancelled(block(4));
        assert_eq!(pipeline.drain().len(), 8);
        assert_eq!(pipeline.outstanding(), 0);
    }

    #[test]
    fn old_requests_expire_in_order() {
        let t0 = Instant::now();
        let mut pipeline = RequestPipeline::new(t0);
        pipeline.sent(block(0), t0);
        pipeline.sent(block(1), t0 + Duration::from_secs(5));
        assert_eq!(pipeline.poll_timeout(), Some(t0 + REQUEST_TIMEOUT));
        assert!(
            pipeline
                .expire(t0 + REQUEST_TIMEOUT - Duration::from_millis(1))
                .is_empty()
        );
        assert_eq!(pipeline.expire(t0 + REQUEST_TIMEOUT), vec![block(0)]);
        assert_eq!(
            pipeline.poll_timeout(),
            Some(t0 + Duration::from_secs(5) + REQUEST_TIMEOUT)
        );
    }
}
