//! Hybrid logical clock (Kulkarni et al., 2014): timestamps that follow wall time but never
//! go backwards and always order a reply after what it replies to, whatever the peers'
//! clock skew. Chat messages are ordered by them; replication will use them for
//! last-writer-wins.
//!
//! A timestamp is `(wall_ms, counter, node)`; the text form
//! `000001764590000000-00000000-<node>` sorts like the timestamp, so the store can order by it.

use std::fmt;

/// Milliseconds since the Unix epoch by the system clock: everybody's wall clock (HLC ticks,
/// signature freshness, record issue times), so there is one. Not on wasm32 (no clock
/// there without a host binding; the wasm face gets times from its caller).
#[cfg(not(target_arch = "wasm32"))]
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// A timestamp. Ordered by wall time, then counter, then node (a tie-break that makes the
/// order total across peers).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp {
    pub wall_ms: u64,
    pub counter: u32,
    pub node: String,
}

/// How far ahead of our clock a remote timestamp may be before we refuse to follow it: a
/// peer with a clock set to 2040 must not drag everyone's clocks there.
pub const MAX_DRIFT_MS: u64 = 24 * 3600 * 1000;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HlcError {
    #[error("timestamp {0:?} is not of the form <wall ms>-<counter>-<node>")]
    Malformed(String),
    #[error("timestamp is {0} ms ahead of our clock (more than allowed)")]
    TooFarAhead(u64),
}

impl Timestamp {
    pub fn parse(text: &str) -> Result<Timestamp, HlcError> {
        let bad = || HlcError::Malformed(text.chars().take(80).collect());
        let mut parts = text.splitn(3, '-');
        let wall = parts.next().ok_or_else(bad)?;
        let counter = parts.next().ok_or_else(bad)?;
        let node = parts.next().ok_or_else(bad)?;
        if wall.len() != 18 || counter.len() != 8 || node.is_empty() || node.len() > 64 {
            return Err(bad());
        }
        Ok(Timestamp {
            wall_ms: wall.parse().map_err(|_| bad())?,
            counter: u32::from_str_radix(counter, 16).map_err(|_| bad())?,
            node: node.to_string(),
        })
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:018}-{:08x}-{}", self.wall_ms, self.counter, self.node)
    }
}

/// One node's clock. I/O-free: the caller passes the wall time.
#[derive(Debug, Clone)]
pub struct Hlc {
    node: String,
    wall_ms: u64,
    counter: u32,
}

impl Hlc {
    pub fn new(node: impl Into<String>) -> Hlc {
        Hlc {
            node: node.into(),
            wall_ms: 0,
            counter: 0,
        }
    }

    /// The last timestamp issued or seen (restore it after a restart with [`Self::observe`]).
    pub fn last(&self) -> (u64, u32) {
        (self.wall_ms, self.counter)
    }

    /// A timestamp for a local event at wall time `now_ms`.
    pub fn tick(&mut self, now_ms: u64) -> Timestamp {
        if now_ms > self.wall_ms {
            self.wall_ms = now_ms;
            self.counter = 0;
        } else {
            self.counter = self.counter.saturating_add(1);
        }
        self.stamp()
    }

    /// Takes a remote timestamp into account (a received message), so our next tick orders
    /// after it. Refuses one too far ahead of `now_ms`.
    pub fn observe(&mut self, remote: &Timestamp, now_ms: u64) -> Result<(), HlcError> {
        if remote.wall_ms > now_ms.saturating_add(MAX_DRIFT_MS) {
            return Err(HlcError::TooFarAhead(remote.wall_ms - now_ms));
        }
        let wall = now_ms.max(self.wall_ms).max(remote.wall_ms);
        self.counter = if wall == self.wall_ms && wall == remote.wall_ms {
            self.counter.max(remote.counter).saturating_add(1)
        } else if wall == self.wall_ms {
            self.counter.saturating_add(1)
        } else if wall == remote.wall_ms {
            remote.counter.saturating_add(1)
        } else {
            0
        };
        self.wall_ms = wall;
        Ok(())
    }

    fn stamp(&self) -> Timestamp {
        Timestamp {
            wall_ms: self.wall_ms,
            counter: self.counter,
            node: self.node.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_never_go_backwards_when_the_wall_clock_does() {
        let mut c = Hlc::new("a");
        let t1 = c.tick(1000);
        let t2 = c.tick(900); // clock stepped back
        let t3 = c.tick(1000);
        let t4 = c.tick(1001);
        assert!(t1 < t2 && t2 < t3 && t3 < t4);
        assert_eq!(t4.counter, 0);
    }

    #[test]
    fn a_reply_orders_after_its_cause_across_skew() {
        // Alice's clock is an hour ahead of Bob's.
        let mut alice = Hlc::new("alice");
        let mut bob = Hlc::new("bob");
        let question = alice.tick(3_600_000 + 10);
        bob.observe(&question, 20).unwrap();
        let answer = bob.tick(21);
        assert!(answer > question, "{answer} > {question}");
        alice.observe(&answer, 3_600_000 + 11).unwrap();
        let follow_up = alice.tick(3_600_000 + 11);
        assert!(follow_up > answer);
    }

    #[test]
    fn text_form_sorts_like_timestamps_and_round_trips() {
        let mut c = Hlc::new("apnode");
        let mut stamps: Vec<Timestamp> = (0..50).map(|i| c.tick(1000 + i / 5)).collect();
        stamps.push(Timestamp {
            wall_ms: 99_999_999_999_999,
            counter: 0xffff,
            node: "z".into(),
        });
        let mut texts: Vec<String> = stamps.iter().map(ToString::to_string).collect();
        texts.sort();
        let mut sorted = stamps.clone();
        sorted.sort();
        assert_eq!(
            texts,
            sorted.iter().map(ToString::to_string).collect::<Vec<_>>()
        );
        for s in &stamps {
            assert_eq!(&Timestamp::parse(&s.to_string()).unwrap(), s);
        }
        for bad in [
            "",
            "1-2-3",
            "000000000000001000-zzzzzzzz-a",
            "000000000000001000-00000000-",
        ] {
            assert!(Timestamp::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_clock_far_ahead_is_refused() {
        let mut c = Hlc::new("a");
        let future = Timestamp {
            wall_ms: 10 * MAX_DRIFT_MS,
            counter: 0,
            node: "b".into(),
        };
        assert!(matches!(
            c.observe(&future, 0),
            Err(HlcError::TooFarAhead(_))
        ));
        assert_eq!(c.last(), (0, 0));
    }
}
