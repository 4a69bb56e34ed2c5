//! The gateway's tables in the cluster's PostgreSQL database (`hub_mail_*`), shared by
//! every instance of the hub. The same rows and rules as [`super::sqlite`], plus the
//! queue's leases: an instance's worker takes due mails with `FOR UPDATE SKIP LOCKED` and
//! stamps them `lease_owner` / `lease_until`; no other instance takes a mail before its
//! lease runs out, and the outcome is recorded only by the lease's owner. A mail whose
//! instance died mid-send is due again once the lease ends or the instance's heartbeat row
//! is gone (reaped as dead by [`crate::cluster`]), whichever comes first: at-least-once,
//! as in one process (an instance killed between the server's 250 and the update, or one
//! taken for dead while it still sends, sends a mail twice, with the same Message-ID).

use allpeers_model::PeerId;
use deadpool_postgres::Pool;

use super::{DIGEST_BIT, DigestCandidate, Queued, Registration, State, StoreError, key};
use crate::cluster::event::{CHANNEL, Event};
use crate::mail::proto::Preferences;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS hub_mail_addresses (
    peer TEXT PRIMARY KEY,
    address TEXT NOT NULL,
    recipient BYTEA NOT NULL,
    confirmed BOOLEAN NOT NULL,
    preferences SMALLINT NOT NULL,
    code_hash BYTEA,
    link_hash BYTEA,
    code_expires BIGINT NOT NULL,
    attempts INTEGER NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS hub_mail_addresses_recipient ON hub_mail_addresses (recipient);
CREATE INDEX IF NOT EXISTS hub_mail_addresses_link ON hub_mail_addresses (link_hash);
CREATE TABLE IF NOT EXISTS hub_mail_suppressed (
    recipient BYTEA PRIMARY KEY,
    reason TEXT NOT NULL,
    at BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS hub_mail_invited (
    recipient BYTEA PRIMARY KEY,
    at BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS hub_mail_queue (
    id BIGSERIAL PRIMARY KEY,
    kind TEXT NOT NULL,
    recipient BYTEA NOT NULL,
    address TEXT NOT NULL,
    letter TEXT NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    next_attempt BIGINT NOT NULL,
    queued_at BIGINT NOT NULL,
    done_at BIGINT,
    last_error TEXT,
    lease_owner TEXT,
    lease_until BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS hub_mail_queue_due ON hub_mail_queue (state, next_attempt);
CREATE INDEX IF NOT EXISTS hub_mail_queue_recipient ON hub_mail_queue (recipient, queued_at);
CREATE INDEX IF NOT EXISTS hub_mail_queue_time ON hub_mail_queue (queued_at);
CREATE TABLE IF NOT EXISTS hub_mail_digests (
    peer TEXT PRIMARY KEY,
    at BIGINT NOT NULL,
    count INTEGER NOT NULL
);
";

/// Advisory lock key of the schema (the high word is the hub's namespace, see
/// [`crate::store::postgres`]).
const LOCK_SCHEMA: i64 = 0x4150_0000_0000_0003;

pub struct PgMailStore {
    pool: Pool,
    /// This instance's name: the owner of its leases.
    instance: String,
}

fn peer_text(peer: &PeerId) -> String {
    peer.to_string()
}

impl PgMailStore {
    /// Creates the tables when missing, and frees the leases a previous run of this
    /// instance left (it sends nothing of them any more).
    pub async fn open(pool: Pool, instance: &str) -> Result<PgMailStore, StoreError> {
        let mut client = pool.get().await?;
        let tx = client.transaction().await?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&LOCK_SCHEMA])
            .await?;
        tx.batch_execute(SCHEMA).await?;
        tx.execute(
            "UPDATE hub_mail_queue SET lease_owner = NULL, lease_until = 0
             WHERE lease_owner = $1 AND state = 'queued'",
            &[&instance],
        )
        .await?;
        tx.commit().await?;
        Ok(PgMailStore {
            pool,
            instance: instance.to_string(),
        })
    }

    pub async fn digest_candidates(&self) -> Result<Vec<DigestCandidate>, StoreError> {
        let client = self.pool.get().await?;
        let rows = client
            .query(
                "SELECT a.peer, a.address, a.recipient, COALESCE(d.at, 0), COALESCE(d.count, 0)
                 FROM hub_mail_addresses a LEFT JOIN hub_mail_digests d ON d.peer = a.peer
                 WHERE a.confirmed AND (a.preferences & $1) != 0",
                &[&i16::from(DIGEST_BIT)],
            )
            .await?;
        let mut out = Vec::new();
        for row in rows {
            let Ok(peer) = row.get::<_, &str>(0).parse() else {
                continue;
            };
            out.push(DigestCandidate {
                peer,
                address: row.get(1),
                recipient: key(row.get(2))?,
                last_at: row.get::<_, i64>(3) as u64,
                last_count: row.get::<_, i32>(4) as u32,
            });
        }
        Ok(out)
    }

    pub async fn record_digest(
        &self,
        peer: &PeerId,
        seen_at: u64,
        at: u64,
        count: u32,
    ) -> Result<bool, StoreError> {
        let client = self.pool.get().await?;
        Ok(client
            .execute(
                "INSERT INTO hub_mail_digests (peer, at, count) VALUES ($1, $3, $4)
                 ON CONFLICT (peer) DO UPDATE SET at = excluded.at, count = excluded.count
                 WHERE hub_mail_digests.at = $2",
                &[
                    &peer_text(peer),
                    &(seen_at as i64),
                    &(at as i64),
                    &(count as i32),
                ],
            )
            .await?
            == 1)
    }

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
        let client = self.pool.get().await?;
        client
            .execute(
                "INSERT INTO hub_mail_addresses (peer, address, recipient, confirmed,
                     preferences, code_hash, link_hash, code_expires, attempts, updated_at)
                 VALUES ($1, $2, $3, FALSE, $4, $5, $6, $7, 0, $8)
                 ON CONFLICT (peer) DO UPDATE SET address = excluded.address,
                     recipient = excluded.recipient, confirmed = FALSE,
                     preferences = excluded.preferences, code_hash = excluded.code_hash,
                     link_hash = excluded.link_hash, code_expires = excluded.code_expires,
                     attempts = 0, updated_at = excluded.updated_at",
                &[
                    &peer_text(peer),
                    &address,
                    &&recipient[..],
                    &i16::from(Preferences::DEFAULT.bits()),
                    &&code_hash[..],
                    &&link_hash[..],
                    &(code_expires as i64),
                    &(now as i64),
                ],
            )
            .await?;
        Ok(())
    }

    pub async fn registration(&self, peer: &PeerId) -> Result<Option<Registration>, StoreError> {
        let client = self.pool.get().await?;
        let row = client
            .query_opt(
                "SELECT address, recipient, confirmed, preferences, code_hash, code_expires,
                        attempts, updated_at
                 FROM hub_mail_addresses WHERE peer = $1",
                &[&peer_text(peer)],
            )
            .await?;
        row.map(|r| {
            Ok(Registration {
                address: r.get(0),
                recipient: key(r.get(1))?,
                confirmed: r.get(2),
                preferences: Preferences::from_bits(r.get::<_, i16>(3) as u8),
                code_hash: r.get::<_, Option<Vec<u8>>>(4).map(key).transpose()?,
                code_expires: r.get::<_, i64>(5) as u64,
                attempts: r.get::<_, i32>(6) as u32,
                updated_at: r.get::<_, i64>(7) as u64,
            })
        })
        .transpose()
    }

    pub async fn count_attempt(&self, peer: &PeerId) -> Result<(), StoreError> {
        let client = self.pool.get().await?;
        client
            .execute(
                "UPDATE hub_mail_addresses SET attempts = attempts + 1 WHERE peer = $1",
                &[&peer_text(peer)],
            )
            .await?;
        Ok(())
    }

    pub async fn confirm(&self, peer: &PeerId) -> Result<bool, StoreError> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let Some(row) = tx
            .query_opt(
                "UPDATE hub_mail_addresses SET confirmed = TRUE, code_hash = NULL,
                     link_hash = NULL
                 WHERE peer = $1 RETURNING recipient",
                &[&peer_text(peer)],
            )
            .await?
        else {
            return Ok(false);
        };
        let recipient: Vec<u8> = row.get(0);
        tx.execute(
            "DELETE FROM hub_mail_suppressed WHERE recipient = $1",
            &[&recipient],
        )
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    pub async fn peer_of_link(
        &self,
        link_hash: &[u8; 32],
        now: u64,
    ) -> Result<Option<PeerId>, StoreError> {
        let client = self.pool.get().await?;
        let row = client
            .query_opt(
                "SELECT peer FROM hub_mail_addresses
                 WHERE link_hash = $1 AND NOT confirmed AND code_expires > $2",
                &[&&link_hash[..], &(now as i64)],
            )
            .await?;
        row.map(|r| {
            r.get::<_, &str>(0)
                .parse()
                .map_err(|_| StoreError::Corrupt("peer"))
        })
        .transpose()
    }

    pub async fn set_preferences(&self, peer: &PeerId, p: Preferences) -> Result<bool, StoreError> {
        let client = self.pool.get().await?;
        Ok(client
            .execute(
                "UPDATE hub_mail_addresses SET preferences = $2 WHERE peer = $1",
                &[&peer_text(peer), &i16::from(p.bits())],
            )
            .await?
            == 1)
    }

    pub async fn forget(&self, peer: &PeerId) -> Result<(), StoreError> {
        let client = self.pool.get().await?;
        client
            .execute(
                "DELETE FROM hub_mail_addresses WHERE peer = $1",
                &[&peer_text(peer)],
            )
            .await?;
        Ok(())
    }

    pub async fn refuses_invitations(&self, recipient: &[u8; 32]) -> Result<bool, StoreError> {
        let client = self.pool.get().await?;
        let rows = client
            .query(
                "SELECT preferences FROM hub_mail_addresses WHERE recipient = $1 AND confirmed",
                &[&&recipient[..]],
            )
            .await?;
        Ok(rows
            .iter()
            .any(|r| !Preferences::from_bits(r.get::<_, i16>(0) as u8).invitation))
    }

    pub async fn suppression(&self, recipient: &[u8; 32]) -> Result<Option<String>, StoreError> {
        let client = self.pool.get().await?;
        Ok(client
            .query_opt(
                "SELECT reason FROM hub_mail_suppressed WHERE recipient = $1",
                &[&&recipient[..]],
            )
            .await?
            .map(|r| r.get(0)))
    }

    pub async fn suppress(
        &self,
        recipient: &[u8; 32],
        reason: &str,
        now: u64,
    ) -> Result<(), StoreError> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        tx.execute(
            "INSERT INTO hub_mail_suppressed (recipient, reason, at) VALUES ($1, $2, $3)
             ON CONFLICT (recipient) DO UPDATE SET reason = excluded.reason, at = excluded.at",
            &[&&recipient[..], &reason, &(now as i64)],
        )
        .await?;
        tx.execute(
            "UPDATE hub_mail_queue SET state = 'cancelled', done_at = $2
             WHERE recipient = $1 AND state = 'queued'",
            &[&&recipient[..], &(now as i64)],
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn last_invited(&self, recipient: &[u8; 32]) -> Result<Option<u64>, StoreError> {
        let client = self.pool.get().await?;
        Ok(client
            .query_opt(
                "SELECT at FROM hub_mail_invited WHERE recipient = $1",
                &[&&recipient[..]],
            )
            .await?
            .map(|r| r.get::<_, i64>(0) as u64))
    }

    pub async fn count_for_recipient(
        &self,
        recipient: &[u8; 32],
        since: u64,
    ) -> Result<u64, StoreError> {
        let client = self.pool.get().await?;
        let n: i64 = client
            .query_one(
                "SELECT COUNT(*) FROM hub_mail_queue
                 WHERE recipient = $1 AND queued_at >= $2 AND state != 'cancelled'",
                &[&&recipient[..], &(since as i64)],
            )
            .await?
            .get(0);
        Ok(n as u64)
    }

    pub async fn count_all(&self, since: u64) -> Result<u64, StoreError> {
        let client = self.pool.get().await?;
        let n: i64 = client
            .query_one(
                "SELECT COUNT(*) FROM hub_mail_queue WHERE queued_at >= $1",
                &[&(since as i64)],
            )
            .await?
            .get(0);
        Ok(n as u64)
    }

    pub async fn enqueue(
        &self,
        kind: &str,
        recipient: &[u8; 32],
        address: &str,
        letter_json: &str,
        now: u64,
    ) -> Result<i64, StoreError> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let id: i64 = tx
            .query_one(
                "INSERT INTO hub_mail_queue (kind, recipient, address, letter, state, attempts,
                     next_attempt, queued_at)
                 VALUES ($1, $2, $3, $4, 'queued', 0, $5, $5) RETURNING id",
                &[
                    &kind,
                    &&recipient[..],
                    &address,
                    &letter_json,
                    &(now as i64),
                ],
            )
            .await?
            .get(0);
        if kind == "invitation" {
            tx.execute(
                "INSERT INTO hub_mail_invited (recipient, at) VALUES ($1, $2)
                 ON CONFLICT (recipient) DO UPDATE SET at = excluded.at",
                &[&&recipient[..], &(now as i64)],
            )
            .await?;
        }
        // The other instances' workers look now (this one's is woken by the caller).
        let notice = Event::MailQueued.payload(&self.instance);
        tx.execute("SELECT pg_notify($1, $2)", &[&CHANNEL, &notice])
            .await?;
        tx.commit().await?;
        Ok(id)
    }

    /// Due mails not leased (or whose lease ran out), oldest first; rows another instance
    /// is taking right now are skipped, not waited for.
    pub async fn claim(
        &self,
        now: u64,
        lease_until: u64,
        limit: usize,
    ) -> Result<Vec<Queued>, StoreError> {
        let client = self.pool.get().await?;
        let rows = client
            .query(
                "UPDATE hub_mail_queue SET lease_owner = $1, lease_until = $2
                 WHERE id IN (
                     SELECT id FROM hub_mail_queue q
                     WHERE state = 'queued' AND next_attempt <= $3
                       AND (lease_until <= $3 OR NOT EXISTS
                            (SELECT 1 FROM hub_instances i WHERE i.id = q.lease_owner))
                     ORDER BY next_attempt, id LIMIT $4
                     FOR UPDATE SKIP LOCKED)
                 RETURNING id, address, recipient, letter, attempts, queued_at, next_attempt",
                &[
                    &self.instance,
                    &(lease_until as i64),
                    &(now as i64),
                    &(limit as i64),
                ],
            )
            .await?;
        let mut out: Vec<(i64, Queued)> = rows
            .into_iter()
            .map(|r| {
                Ok((
                    r.get::<_, i64>(6),
                    Queued {
                        id: r.get(0),
                        address: r.get(1),
                        recipient: key(r.get(2))?,
                        letter: r.get(3),
                        attempts: r.get::<_, i32>(4) as u32,
                        queued_at: r.get::<_, i64>(5) as u64,
                    },
                ))
            })
            .collect::<Result<_, StoreError>>()?;
        out.sort_by_key(|(next, q)| (*next, q.id));
        Ok(out.into_iter().map(|(_, q)| q).collect())
    }

    pub async fn next_due(&self) -> Result<Option<u64>, StoreError> {
        let client = self.pool.get().await?;
        let at: Option<i64> = client
            .query_one(
                "SELECT MIN(CASE WHEN EXISTS
                            (SELECT 1 FROM hub_instances i WHERE i.id = q.lease_owner)
                        THEN GREATEST(next_attempt, lease_until) ELSE next_attempt END)
                 FROM hub_mail_queue q WHERE state = 'queued'",
                &[],
            )
            .await?
            .get(0);
        Ok(at.map(|a| a.max(0) as u64))
    }

    /// Only while this instance holds the lease: once it ran out, another instance may have
    /// taken the mail, and its outcome is the one that counts. `lease_owner` stays: the
    /// instance that made the last attempt.
    async fn update_leased(
        &self,
        set: &str,
        id: i64,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<(), StoreError> {
        let sql = format!(
            "UPDATE hub_mail_queue SET {set}, lease_until = 0
             WHERE id = $1 AND lease_owner = $2"
        );
        let mut all: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = vec![&id, &self.instance];
        all.extend_from_slice(params);
        let client = self.pool.get().await?;
        if client.execute(&sql, &all).await? == 0 {
            allpeers_log::marrow!(
                id,
                "mail queue entry no longer leased to this instance: outcome not recorded"
            );
        }
        Ok(())
    }

    pub async fn finish(
        &self,
        id: i64,
        state: State,
        error: Option<&str>,
        now: u64,
    ) -> Result<(), StoreError> {
        self.update_leased(
            "state = $3, attempts = attempts + 1, done_at = $4,
             last_error = COALESCE($5, last_error)",
            id,
            &[&state.as_str(), &(now as i64), &error],
        )
        .await
    }

    pub async fn retry_at(&self, id: i64, at: u64, error: &str) -> Result<(), StoreError> {
        self.update_leased(
            "attempts = attempts + 1, next_attempt = $3, last_error = $4",
            id,
            &[&(at as i64), &error],
        )
        .await
    }

    pub async fn prune(&self, before: u64) -> Result<usize, StoreError> {
        let client = self.pool.get().await?;
        Ok(client
            .execute(
                "DELETE FROM hub_mail_queue WHERE state != 'queued' AND queued_at < $1",
                &[&(before as i64)],
            )
            .await? as usize)
    }

    pub async fn registered_name(&self, peer: &PeerId) -> Result<Option<String>, StoreError> {
        let client = self.pool.get().await?;
        Ok(client
            .query_opt(
                "SELECT name FROM hub_names WHERE peer = $1",
                &[&peer_text(peer)],
            )
            .await?
            .map(|r| r.get(0)))
    }
}
