//! The gateway's state (registrations, the suppression list, invitation records, the
//! queue, digests) in the hub's backend: [`sqlite`] (`hub.db`, one process) or
//! [`postgres`] (the cluster's database, shared by every instance of the hub).
//!
//! Every change is one transaction. A mail taken for an attempt is *leased* to the
//! delivery worker that took it ([`MailStore::claim`]), so the worker's next look does not
//! take it again while it is in flight. In a cluster every instance runs a worker; claims
//! use `FOR UPDATE SKIP LOCKED`, so two instances never take the same mail, and a mail
//! whose instance died mid-send is due again for the others once its lease runs out or
//! the cluster finds that instance dead (its heartbeat row reaped), whichever is first.

pub mod postgres;
pub mod sqlite;

use std::sync::Mutex;

use allpeers_model::PeerId;

use super::proto::Preferences;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("mail database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("mail database: {0}")]
    Postgres(#[from] tokio_postgres::Error),
    #[error("mail database pool: {0}")]
    Pool(#[from] deadpool_postgres::PoolError),
    #[error("mail database holds a corrupt {0}")]
    Corrupt(&'static str),
}

/// A peer's registered address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registration {
    pub address: String,
    pub recipient: [u8; 32],
    pub confirmed: bool,
    pub preferences: Preferences,
    pub code_hash: Option<[u8; 32]>,
    pub code_expires: u64,
    pub attempts: u32,
    /// When the address was last set.
    pub updated_at: u64,
}

/// A queued mail due for an attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Queued {
    pub id: i64,
    pub address: String,
    pub recipient: [u8; 32],
    /// The [`super::template::Letter`] as JSON.
    pub letter: String,
    pub attempts: u32,
    pub queued_at: u64,
}

/// A queue entry's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Queued,
    Sent,
    /// Given up (5xx, or retried past the limit).
    Failed,
    /// Dropped before sending: the address unsubscribed meanwhile.
    Cancelled,
}

impl State {
    fn as_str(self) -> &'static str {
        match self {
            State::Queued => "queued",
            State::Sent => "sent",
            State::Failed => "failed",
            State::Cancelled => "cancelled",
        }
    }
}

/// [`Preferences::digest`] in the stored bits.
const DIGEST_BIT: u8 = 8;

/// A peer that accepts digests (see [`MailStore::digest_candidates`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DigestCandidate {
    pub peer: PeerId,
    pub address: String,
    pub recipient: [u8; 32],
    /// When the last digest went (0: never), and of how many letters.
    pub last_at: u64,
    pub last_count: u32,
}

fn key(blob: Vec<u8>) -> Result<[u8; 32], StoreError> {
    blob.try_into().map_err(|_| StoreError::Corrupt("key"))
}

/// The gateway's tables in the configured backend.
pub enum MailStore {
    Sqlite(Mutex<sqlite::Store>),
    Postgres(postgres::PgMailStore),
}

/// Calls the same method on either backend (the SQLite one is synchronous and short).
macro_rules! either {
    ($self:ident . $method:ident ( $($arg:expr),* )) => {
        match $self {
            MailStore::Sqlite(s) => s.lock().unwrap().$method($($arg),*),
            MailStore::Postgres(p) => p.$method($($arg),*).await,
        }
    };
}

impl MailStore {
    /// The peers with a confirmed address that accept digests, with when they last got one
    /// and of how many letters (0, 0: never).
    pub async fn digest_candidates(&self) -> Result<Vec<DigestCandidate>, StoreError> {
        either!(self.digest_candidates())
    }

    /// Records that `peer` was sent a digest of `count` letters (with `count` 0: needs none)
    /// at `at`, only if its last record is still the one seen at `seen_at` (0: none). False:
    /// another instance recorded first, and queues that digest.
    pub async fn record_digest(
        &self,
        peer: &PeerId,
        seen_at: u64,
        at: u64,
        count: u32,
    ) -> Result<bool, StoreError> {
        either!(self.record_digest(peer, seen_at, at, count))
    }

    /// Registers (or replaces) `peer`'s address, unconfirmed, with a fresh code and link.
    #[allow(clippy::too_many_arguments)]
    pub async fn set_address(
        &self,
        peer: &PeerId,
        address: &str,
        recipient: &[u8; 32],
        code_hash: &[u8; 32],
        link_hash: &[u8; 32],
        code_expires: u64,
        now: u64,
    ) -> Result<(), StoreError> {
        either!(self.set_address(
            peer,
            address,
            recipient,
            code_hash,
            link_hash,
            code_expires,
            now
        ))
    }

    pub async fn registration(&self, peer: &PeerId) -> Result<Option<Registration>, StoreError> {
        either!(self.registration(peer))
    }

    pub async fn count_attempt(&self, peer: &PeerId) -> Result<(), StoreError> {
        either!(self.count_attempt(peer))
    }

    /// Marks `peer`'s address confirmed (codes forgotten) and lifts a suppression of it: the
    /// owner asked again, explicitly. Returns whether there was a row.
    pub async fn confirm(&self, peer: &PeerId) -> Result<bool, StoreError> {
        either!(self.confirm(peer))
    }

    /// The peer whose pending confirmation has this link hash, if not expired.
    pub async fn peer_of_link(
        &self,
        link_hash: &[u8; 32],
        now: u64,
    ) -> Result<Option<PeerId>, StoreError> {
        either!(self.peer_of_link(link_hash, now))
    }

    pub async fn set_preferences(&self, peer: &PeerId, p: Preferences) -> Result<bool, StoreError> {
        either!(self.set_preferences(peer, p))
    }

    pub async fn forget(&self, peer: &PeerId) -> Result<(), StoreError> {
        either!(self.forget(peer))
    }

    /// Whether a confirmed owner of this address turned invitations off.
    pub async fn refuses_invitations(&self, recipient: &[u8; 32]) -> Result<bool, StoreError> {
        either!(self.refuses_invitations(recipient))
    }

    pub async fn suppression(&self, recipient: &[u8; 32]) -> Result<Option<String>, StoreError> {
        either!(self.suppression(recipient))
    }

    /// Puts the address on the suppression list and cancels what is queued for it.
    pub async fn suppress(
        &self,
        recipient: &[u8; 32],
        reason: &str,
        now: u64,
    ) -> Result<(), StoreError> {
        either!(self.suppress(recipient, reason, now))
    }

    pub async fn last_invited(&self, recipient: &[u8; 32]) -> Result<Option<u64>, StoreError> {
        either!(self.last_invited(recipient))
    }

    /// Mails queued for this address since `since` (any state but cancelled).
    pub async fn count_for_recipient(
        &self,
        recipient: &[u8; 32],
        since: u64,
    ) -> Result<u64, StoreError> {
        either!(self.count_for_recipient(recipient, since))
    }

    /// Mails queued by the whole hub since `since`.
    pub async fn count_all(&self, since: u64) -> Result<u64, StoreError> {
        either!(self.count_all(since))
    }

    /// Queues a mail (due at once); an invitation also records the address as invited. In
    /// a cluster the other instances' workers are told (committed with the mail).
    pub async fn enqueue(
        &self,
        kind: &str,
        recipient: &[u8; 32],
        address: &str,
        letter_json: &str,
        now: u64,
    ) -> Result<i64, StoreError> {
        either!(self.enqueue(kind, recipient, address, letter_json, now))
    }

    /// Takes up to `limit` mails due at `now` and not in flight, oldest first, leased to
    /// this instance until `lease_until` or until their outcome is recorded (in a cluster
    /// no other instance takes them before, unless this one is found dead).
    pub async fn claim(
        &self,
        now: u64,
        lease_until: u64,
        limit: usize,
    ) -> Result<Vec<Queued>, StoreError> {
        either!(self.claim(now, lease_until, limit))
    }

    /// When the next queued mail is due (or its lease runs out).
    pub async fn next_due(&self) -> Result<Option<u64>, StoreError> {
        either!(self.next_due())
    }

    /// Records a final state (sent, failed, cancelled) of a mail this instance claimed.
    pub async fn finish(
        &self,
        id: i64,
        state: State,
        error: Option<&str>,
        now: u64,
    ) -> Result<(), StoreError> {
        either!(self.finish(id, state, error, now))
    }

    /// Records a failed attempt to retry at `at`.
    pub async fn retry_at(&self, id: i64, at: u64, error: &str) -> Result<(), StoreError> {
        either!(self.retry_at(id, at, error))
    }

    /// Forgets finished entries older than `before` (the rate counts look back one day).
    pub async fn prune(&self, before: u64) -> Result<usize, StoreError> {
        either!(self.prune(before))
    }

    /// The asker's registered `name` at this hub (the hub's names table).
    pub async fn registered_name(&self, peer: &PeerId) -> Result<Option<String>, StoreError> {
        either!(self.registered_name(peer))
    }
}
