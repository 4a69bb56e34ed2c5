//! The digest: "3 messages are waiting for you", from the hub itself, to each peer that
//! accepts digests and has letters waiting in its mailbox here (sealed: the hub counts them,
//! it cannot read them). Every [`super::MailConfig::digest_every_secs`] the worker looks at
//! every such peer; it mails one whose count is above zero and changed since its last digest
//! (recorded in `mail_digests`, so a restart mails nothing twice). A count back at zero (the
//! peer came and read) is recorded too, so the next letters are worth a digest again.

use std::sync::{Arc, Weak};
use std::time::Duration;

use allpeers_model::PeerId;
use futures::future::BoxFuture;

use super::store::DigestCandidate;
use super::template::Letter;
use super::{Inner, now_ms};

/// How many letters wait for a peer in the hub's mailbox (`None`: unknown just now).
pub type WaitingLetters = Arc<dyn Fn(PeerId) -> BoxFuture<'static, Option<u32>> + Send + Sync>;

/// Looks every `every` for as long as the gateway lives.
pub async fn run(inner: Weak<Inner>, waiting: WaitingLetters, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The first tick fires at once: the first round comes one period after the start.
    tick.tick().await;
    loop {
        tick.tick().await;
        let Some(gateway) = inner.upgrade() else {
            return;
        };
        round(&gateway, &waiting, every, now_ms()).await;
    }
}

/// One look at every peer that accepts digests; returns how many digests were queued. In
/// a cluster every instance looks: a digest is queued only by the instance whose record of
/// it lands first (`record_digest` compares the last record it saw).
pub async fn round(gateway: &Inner, waiting: &WaitingLetters, every: Duration, now: u64) -> usize {
    let candidates = match gateway.store.digest_candidates().await {
        Ok(c) => c,
        Err(e) => {
            allpeers_log::marrow!("mail: digest candidates unreadable: {e}");
            return 0;
        }
    };
    let every_ms = every.as_millis() as u64;
    let mut queued = 0;
    for c in candidates {
        let Some(count) = waiting(c.peer).await else {
            continue;
        };
        match decide(&c, count, now, every_ms) {
            Decision::Nothing => {}
            Decision::Reset => {
                record(gateway, &c, now, 0).await;
            }
            Decision::Send => {
                if sendable(gateway, &c, now).await
                    && record(gateway, &c, now, count).await
                    && send(gateway, &c, count, now).await
                {
                    queued += 1;
                }
            }
        }
    }
    queued
}

#[derive(Debug, PartialEq, Eq)]
enum Decision {
    Nothing,
    /// The mailbox was read: remember the count is zero.
    Reset,
    Send,
}

fn decide(c: &DigestCandidate, count: u32, now: u64, every_ms: u64) -> Decision {
    if count == 0 {
        return if c.last_count == 0 {
            Decision::Nothing
        } else {
            Decision::Reset
        };
    }
    if count == c.last_count || now.saturating_sub(c.last_at) < every_ms {
        return Decision::Nothing;
    }
    Decision::Send
}

/// Records the digest (or the reset) unless another instance recorded since `c` was read.
async fn record(gateway: &Inner, c: &DigestCandidate, now: u64, count: u32) -> bool {
    match gateway
        .store
        .record_digest(&c.peer, c.last_at, now, count)
        .await
    {
        Ok(won) => won,
        Err(e) => {
            allpeers_log::marrow!(peer = ?c.peer, "mail: digest not recorded: {e}");
            false
        }
    }
}

/// Whether the address may get a digest now: not suppressed, within its limits.
async fn sendable(gateway: &Inner, c: &DigestCandidate, now: u64) -> bool {
    match gateway.store.suppression(&c.recipient).await {
        Ok(None) => {}
        Ok(Some(_)) => return false,
        Err(e) => {
            allpeers_log::marrow!("mail: suppression list unreadable: {e}");
            return false;
        }
    }
    matches!(
        gateway.within_daily_limits(&c.recipient, now).await,
        Ok(true)
    )
}

async fn send(gateway: &Inner, c: &DigestCandidate, count: u32, now: u64) -> bool {
    let letter = Letter::Digest {
        count: count.min(super::proto::MAX_WAITING_COUNT),
    };
    match gateway
        .enqueue(&c.recipient, &c.address, &letter, now)
        .await
    {
        Ok(()) => {
            allpeers_log::flesh!(peer = ?c.peer, count, "mail: digest queued");
            true
        }
        Err(e) => {
            allpeers_log::marrow!(peer = ?c.peer, "mail: digest not queued: {e:?}");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn candidate(last_at: u64, last_count: u32) -> DigestCandidate {
        DigestCandidate {
            peer: PeerId::from_public_key([2; 32]),
            address: "bob@example.org".into(),
            recipient: [3; 32],
            last_at,
            last_count,
        }
    }

    #[test]
    fn a_digest_when_the_count_changed_and_the_period_passed() {
        let day = 86_400_000;
        assert_eq!(decide(&candidate(0, 0), 0, day, day), Decision::Nothing);
        assert_eq!(decide(&candidate(0, 0), 3, day, day), Decision::Send);
        assert_eq!(
            decide(&candidate(day, 3), 3, 3 * day, day),
            Decision::Nothing,
            "nothing new"
        );
        assert_eq!(
            decide(&candidate(day, 3), 5, day + 10, day),
            Decision::Nothing,
            "too soon"
        );
        assert_eq!(decide(&candidate(day, 3), 5, 2 * day, day), Decision::Send);
        assert_eq!(decide(&candidate(day, 3), 0, day + 1, day), Decision::Reset);
    }
}
