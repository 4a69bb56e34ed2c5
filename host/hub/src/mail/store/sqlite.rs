//! The gateway's tables in the hub's SQLite database (`hub.db`, its own connection; WAL
//! lets it share the file with `db.rs`): registrations, the suppression list, invitation
//! records and the queue. Times are Unix milliseconds. One process and one delivery
//! worker: what the worker takes is what it sends, so no leases are needed here.

use std::path::Path;

use allpeers_model::PeerId;
use rusqlite::{OptionalExtension, params};

use super::{DIGEST_BIT, DigestCandidate, Queued, Registration, State, StoreError, key};
use crate::mail::proto::Preferences;

pub struct Store {
    conn: rusqlite::Connection,
}

impl Store {
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let conn = rusqlite::Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        // FULL, not NORMAL: a mail accepted into the queue must survive a power cut.
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS mail_addresses (
                 peer TEXT PRIMARY KEY,
                 address TEXT NOT NULL,
                 recipient BLOB NOT NULL,
                 confirmed INTEGER NOT NULL,
                 preferences INTEGER NOT NULL,
                 code_hash BLOB,
                 link_hash BLOB,
                 code_expires INTEGER NOT NULL,
                 attempts INTEGER NOT NULL,
                 updated_at INTEGER NOT NULL
             );
             CREATE INDEX IF NOT EXISTS mail_addresses_recipient ON mail_addresses(recipient);
             CREATE INDEX IF NOT EXISTS mail_addresses_link ON mail_addresses(link_hash);
             CREATE TABLE IF NOT EXISTS mail_suppressed (
                 recipient BLOB PRIMARY KEY,
                 reason TEXT NOT NULL,
                 at INTEGER NOT NULL
             );
             CREATE TABLE IF NOT EXISTS mail_invited (
                 recipient BLOB PRIMARY KEY,
                 at INTEGER NOT NULL
             );
             CREATE TABLE IF NOT EXISTS mail_queue (
                 id INTEGER PRIMARY KEY AUTOINCREMENT,
                 kind TEXT NOT NULL,
                 recipient BLOB NOT NULL,
                 address TEXT NOT NULL,
                 letter TEXT NOT NULL,
                 state TEXT NOT NULL,
                 attempts INTEGER NOT NULL,
                 next_attempt INTEGER NOT NULL,
                 queued_at INTEGER NOT NULL,
                 done_at INTEGER,
                 last_error TEXT,
                 lease_until INTEGER NOT NULL DEFAULT 0
             );
             CREATE INDEX IF NOT EXISTS mail_queue_due ON mail_queue(state, next_attempt);
             CREATE INDEX IF NOT EXISTS mail_queue_recipient ON mail_queue(recipient, queued_at);
             CREATE INDEX IF NOT EXISTS mail_queue_time ON mail_queue(queued_at);
             CREATE TABLE IF NOT EXISTS mail_digests (
                 peer TEXT PRIMARY KEY,
                 at INTEGER NOT NULL,
                 count INTEGER NOT NULL
             );",
        )?;
        // Queues made before leases: add the column.
        let leased: bool = conn.query_row(
            "SELECT COUNT(*) > 0 FROM pragma_table_info('mail_queue') WHERE name = 'lease_until'",
            [],
            |r| r.get(0),
        )?;
        if !leased {
            conn.execute_batch(
                "ALTER TABLE mail_queue ADD COLUMN lease_until INTEGER NOT NULL DEFAULT 0",
            )?;
        }
        // One process: nothing is in flight at its start.
        conn.execute(
            "UPDATE mail_queue SET lease_until = 0 WHERE lease_until != 0",
            [],
        )?;
        Ok(Store { conn })
    }

    // ---- digests ----

    /// The peers with a confirmed address that accept digests, with when they last got one
    /// and of how many letters (0, 0: never).
    pub fn digest_candidates(&self) -> Result<Vec<DigestCandidate>, StoreError> {
        let mut st = self.conn.prepare_cached(
            "SELECT a.peer, a.address, a.recipient, ifnull(d.at, 0), ifnull(d.count, 0)
             FROM mail_addresses a LEFT JOIN mail_digests d ON d.peer = a.peer
             WHERE a.confirmed = 1 AND (a.preferences & ?1) != 0",
        )?;
        let rows = st.query_map([DIGEST_BIT], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, Vec<u8>>(2)?,
                r.get::<_, i64>(3)?,
                r.get::<_, u32>(4)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (peer, address, recipient, at, count) = row?;
            let Ok(peer) = peer.parse() else { continue };
            out.push(DigestCandidate {
                peer,
                address,
                recipient: key(recipient)?,
                last_at: at as u64,
                last_count: count,
            });
        }
        Ok(out)
    }

    /// See [`super::MailStore::record_digest`].
    pub fn record_digest(
        &self,
        peer: &PeerId,
        seen_at: u64,
        at: u64,
        count: u32,
    ) -> Result<bool, StoreError> {
        Ok(self.conn.execute(
            "INSERT INTO mail_digests(peer, at, count) VALUES (?1, ?3, ?4)
             ON CONFLICT(peer) DO UPDATE SET at = excluded.at, count = excluded.count
             WHERE mail_digests.at = ?2",
            rusqlite::params![peer.to_string(), seen_at as i64, at as i64, count],
        )? == 1)
    }

    // ---- registrations ----

    /// Registers (or replaces) `peer`'s address, unconfirmed, with a fresh code and link.
    #[allow(clippy::too_many_arguments)]
    pub fn set_address(
        &self,
        peer: &PeerId,
        address: &str,
        recipient: &[u8; 32],
        code_hash: &[u8; 32],
        link_hash: &[u8; 32],
        code_expires: u64,
        now: u64,
    ) -> Result<(), StoreError> {
        self.conn.execute(
            "INSERT INTO mail_addresses (peer, address, recipient, confirmed, preferences,
                 code_hash, link_hash, code_expires, attempts, updated_at)
             VALUES (?1, ?2, ?3, 0, ?4, ?5, ?6, ?7, 0, ?8)
             ON CONFLICT(peer) DO UPDATE SET address = excluded.address,
                 recipient = excluded.recipient, confirmed = 0,
                 preferences = excluded.preferences, code_hash = excluded.code_hash,
                 link_hash = excluded.link_hash, code_expires = excluded.code_expires,
                 attempts = 0, updated_at = excluded.updated_at",
            params![
                peer.to_string(),
                address,
                &recipient[..],
                Preferences::DEFAULT.bits(),
                &code_hash[..],
                &link_hash[..],
                code_expires as i64,
                now as i64
            ],
        )?;
        Ok(())
    }

    pub fn registration(&self, peer: &PeerId) -> Result<Option<Registration>, StoreError> {
        let row = self
            .conn
            .query_row(
                "SELECT address, recipient, confirmed, preferences, code_hash, code_expires,
                        attempts, updated_at
                 FROM mail_addresses WHERE peer = ?1",
                [peer.to_string()],
                |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, Vec<u8>>(1)?,
                        r.get::<_, bool>(2)?,
                        r.get::<_, u8>(3)?,
                        r.get::<_, Option<Vec<u8>>>(4)?,
                        r.get::<_, i64>(5)?,
                        r.get::<_, u32>(6)?,
                        r.get::<_, i64>(7)?,
                    ))
                },
            )
            .optional()?;
        row.map(
            |(address, recipient, confirmed, prefs, code, expires, attempts, updated)| {
                Ok(Registration {
                    address,
                    recipient: key(recipient)?,
                    confirmed,
                    preferences: Preferences::from_bits(prefs),
                    code_hash: code.map(key).transpose()?,
                    code_expires: expires as u64,
                    attempts,
                    updated_at: updated as u64,
                })
            },
        )
        .transpose()
    }

    pub fn count_attempt(&self, peer: &PeerId) -> Result<(), StoreError> {
        self.conn.execute(
            "UPDATE mail_addresses SET attempts = attempts + 1 WHERE peer = ?1",
            [peer.to_string()],
        )?;
        Ok(())
    }

    /// Marks `peer`'s address confirmed (codes forgotten) and lifts a suppression of it: the
    /// owner asked again, explicitly. Returns whether there was an unconfirmed row.
    pub fn confirm(&mut self, peer: &PeerId) -> Result<bool, StoreError> {
        let tx = self.conn.transaction()?;
        let recipient: Option<Vec<u8>> = tx
            .query_row(
                "SELECT recipient FROM mail_addresses WHERE peer = ?1",
                [peer.to_string()],
                |r| r.get(0),
            )
            .optional()?;
        let Some(recipient) = recipient else {
            return Ok(false);
        };
        tx.execute(
            "UPDATE mail_addresses SET confirmed = 1, code_hash = NULL, link_hash = NULL
             WHERE peer = ?1",
            [peer.to_string()],
        )?;
        tx.execute(
            "DELETE FROM mail_suppressed WHERE recipient = ?1",
            [&recipient],
        )?;
        tx.commit()?;
        Ok(true)
    }

    /// The peer whose pending confirmation has this link hash, if not expired.
    pub fn peer_of_link(
        &self,
        link_hash: &[u8; 32],
        now: u64,
    ) -> Result<Option<PeerId>, StoreError> {
        let peer: Option<String> = self
            .conn
            .query_row(
                "SELECT peer FROM mail_addresses
                 WHERE link_hash = ?1 AND confirmed = 0 AND code_expires > ?2",
                params![&link_hash[..], now as i64],
                |r| r.get(0),
            )
            .optional()?;
        peer.map(|p| p.parse().map_err(|_| StoreError::Corrupt("peer")))
            .transpose()
    }

    pub fn set_preferences(&self, peer: &PeerId, p: Preferences) -> Result<bool, StoreError> {
        Ok(self.conn.execute(
            "UPDATE mail_addresses SET preferences = ?2 WHERE peer = ?1",
            params![peer.to_string(), p.bits()],
        )? == 1)
    }

    pub fn forget(&self, peer: &PeerId) -> Result<(), StoreError> {
        self.conn.execute(
            "DELETE FROM mail_addresses WHERE peer = ?1",
            [peer.to_string()],
        )?;
        Ok(())
    }

    /// Whether a confirmed owner of this address turned invitations off.
    pub fn refuses_invitations(&self, recipient: &[u8; 32]) -> Result<bool, StoreError> {
        let bits: Vec<u8> = self
            .conn
            .prepare(
                "SELECT preferences FROM mail_addresses WHERE recipient = ?1 AND confirmed = 1",
            )?
            .query_map([&recipient[..]], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        Ok(bits
            .into_iter()
            .any(|b| !Preferences::from_bits(b).invitation))
    }

    // ---- suppression and invitations ----

    pub fn suppression(&self, recipient: &[u8; 32]) -> Result<Option<String>, StoreError> {
        Ok(self
            .conn
            .query_row(
                "SELECT reason FROM mail_suppressed WHERE recipient = ?1",
                [&recipient[..]],
                |r| r.get(0),
            )
            .optional()?)
    }

    /// Puts the address on the suppression list and cancels what is queued for it.
    pub fn suppress(
        &mut self,
        recipient: &[u8; 32],
        reason: &str,
        now: u64,
    ) -> Result<(), StoreError> {
        let tx = self.conn.transaction()?;
        tx.execute(
            "INSERT INTO mail_suppressed (recipient, reason, at) VALUES (?1, ?2, ?3)
             ON CONFLICT(recipient) DO UPDATE SET reason = excluded.reason, at = excluded.at",
            params![&recipient[..], reason, now as i64],
        )?;
        tx.execute(
            "UPDATE mail_queue SET state = 'cancelled', done_at = ?2
             WHERE recipient = ?1 AND state = 'queued'",
            params![&recipient[..], now as i64],
        )?;
        tx.commit()?;
        Ok(())
    }

    pub fn last_invited(&self, recipient: &[u8; 32]) -> Result<Option<u64>, StoreError> {
        let at: Option<i64> = self
            .conn
            .query_row(
                "SELECT at FROM mail_invited WHERE recipient = ?1",
                [&recipient[..]],
                |r| r.get(0),
            )
            .optional()?;
        Ok(at.map(|a| a as u64))
    }

    // ---- queue ----

    /// Mails queued for this address since `since` (any state but cancelled).
    pub fn count_for_recipient(&self, recipient: &[u8; 32], since: u64) -> Result<u64, StoreError> {
        Ok(self.conn.query_row(
            "SELECT COUNT(*) FROM mail_queue
             WHERE recipient = ?1 AND queued_at >= ?2 AND state != 'cancelled'",
            params![&recipient[..], since as i64],
            |r| r.get::<_, i64>(0),
        )? as u64)
    }

    /// Mails queued by the whole hub since `since`.
    pub fn count_all(&self, since: u64) -> Result<u64, StoreError> {
        Ok(self.conn.query_row(
            "SELECT COUNT(*) FROM mail_queue WHERE queued_at >= ?1",
            [since as i64],
            |r| r.get::<_, i64>(0),
        )? as u64)
    }

    /// Queues a mail (due at once); an invitation also records the address as invited.
    pub fn enqueue(
        &mut self,
        kind: &str,
        recipient: &[u8; 32],
        address: &str,
        letter_json: &str,
        now: u64,
    ) -> Result<i64, StoreError> {
        let tx = self.conn.transaction()?;
        tx.execute(
            "INSERT INTO mail_queue (kind, recipient, address, letter, state, attempts,
                 next_attempt, queued_at)
             VALUES (?1, ?2, ?3, ?4, 'queued', 0, ?5, ?5)",
            params![kind, &recipient[..], address, letter_json, now as i64],
        )?;
        let id = tx.last_insert_rowid();
        if kind == "invitation" {
            tx.execute(
                "INSERT INTO mail_invited (recipient, at) VALUES (?1, ?2)
                 ON CONFLICT(recipient) DO UPDATE SET at = excluded.at",
                params![&recipient[..], now as i64],
            )?;
        }
        tx.commit()?;
        Ok(id)
    }

    /// Takes up to `limit` queued mails due at `now` and not in flight, oldest first, in
    /// flight until `lease_until` (or their outcome is recorded).
    pub fn claim(
        &self,
        now: u64,
        lease_until: u64,
        limit: usize,
    ) -> Result<Vec<Queued>, StoreError> {
        let mut stmt = self.conn.prepare(
            "UPDATE mail_queue SET lease_until = ?2 WHERE id IN (
                 SELECT id FROM mail_queue
                 WHERE state = 'queued' AND next_attempt <= ?1 AND lease_until <= ?1
                 ORDER BY next_attempt, id LIMIT ?3)
             RETURNING id, address, recipient, letter, attempts, queued_at, next_attempt",
        )?;
        let rows = stmt.query_map(params![now as i64, lease_until as i64, limit as i64], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, Vec<u8>>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, u32>(4)?,
                r.get::<_, i64>(5)?,
                r.get::<_, i64>(6)?,
            ))
        })?;
        let mut out = rows
            .map(|row| {
                let (id, address, recipient, letter, attempts, queued_at, next) = row?;
                Ok((
                    next,
                    Queued {
                        id,
                        address,
                        recipient: key(recipient)?,
                        letter,
                        attempts,
                        queued_at: queued_at as u64,
                    },
                ))
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        out.sort_by_key(|(next, q)| (*next, q.id));
        Ok(out.into_iter().map(|(_, q)| q).collect())
    }

    /// When the next queued mail is due (for one in flight: when its lease runs out).
    pub fn next_due(&self) -> Result<Option<u64>, StoreError> {
        let at: Option<i64> = self.conn.query_row(
            "SELECT MIN(MAX(next_attempt, lease_until)) FROM mail_queue WHERE state = 'queued'",
            [],
            |r| r.get(0),
        )?;
        Ok(at.map(|a| a.max(0) as u64))
    }

    /// Records a final state (sent, failed, cancelled).
    pub fn finish(
        &self,
        id: i64,
        state: State,
        error: Option<&str>,
        now: u64,
    ) -> Result<(), StoreError> {
        self.conn.execute(
            "UPDATE mail_queue SET state = ?2, attempts = attempts + 1, done_at = ?3,
                 last_error = COALESCE(?4, last_error), lease_until = 0
             WHERE id = ?1",
            params![id, state.as_str(), now as i64, error],
        )?;
        Ok(())
    }

    /// Records a failed attempt to retry at `at`.
    pub fn retry_at(&self, id: i64, at: u64, error: &str) -> Result<(), StoreError> {
        self.conn.execute(
            "UPDATE mail_queue SET attempts = attempts + 1, next_attempt = ?2, last_error = ?3,
                 lease_until = 0
             WHERE id = ?1",
            params![id, at as i64, error],
        )?;
        Ok(())
    }

    /// Forgets finished entries older than `before` (the rate counts look back one day).
    pub fn prune(&self, before: u64) -> Result<usize, StoreError> {
        Ok(self.conn.execute(
            "DELETE FROM mail_queue WHERE state != 'queued' AND queued_at < ?1",
            [before as i64],
        )?)
    }

    /// The asker's registered `name` at this hub (the `names` table of `db.rs`).
    pub fn registered_name(&self, peer: &PeerId) -> Result<Option<String>, StoreError> {
        Ok(self
            .conn
            .query_row(
                "SELECT name FROM names WHERE peer = ?1",
                [peer.to_string()],
                |r| r.get(0),
            )
            .optional()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hub.db");
        crate::db::Db::open(&path).unwrap();
        let s = Store::open(&path).unwrap();
        (dir, s)
    }

    #[test]
    fn queue_states_and_counts() {
        let (_d, mut s) = store();
        let r = [1u8; 32];
        let a = s.enqueue("share", &r, "a@example.org", "{}", 1000).unwrap();
        let b = s
            .enqueue("invitation", &r, "a@example.org", "{}", 1001)
            .unwrap();
        assert_eq!(s.claim(999, 0, 10).unwrap().len(), 0);
        assert_eq!(
            s.claim(1001, 2000, 10)
                .unwrap()
                .iter()
                .map(|q| q.id)
                .collect::<Vec<_>>(),
            [a, b]
        );
        // In flight until 2000: not taken again, and due again then.
        assert!(s.claim(1500, 3000, 10).unwrap().is_empty());
        assert_eq!(s.next_due().unwrap(), Some(2000));
        assert_eq!(s.last_invited(&r).unwrap(), Some(1001));
        s.retry_at(a, 5000, "451").unwrap();
        assert_eq!(s.next_due().unwrap(), Some(2000));
        s.finish(b, State::Sent, None, 1002).unwrap();
        assert_eq!(s.next_due().unwrap(), Some(5000));
        assert_eq!(s.claim(5000, 6000, 10).unwrap()[0].attempts, 1);
        s.retry_at(a, 5000, "451").unwrap();
        assert_eq!(s.count_for_recipient(&r, 0).unwrap(), 2);
        // Suppression cancels what is queued.
        s.suppress(&r, "unsubscribed", 6000).unwrap();
        assert_eq!(s.next_due().unwrap(), None);
        assert_eq!(s.suppression(&r).unwrap().as_deref(), Some("unsubscribed"));
        assert_eq!(s.count_for_recipient(&r, 0).unwrap(), 1);
        assert_eq!(s.prune(10_000).unwrap(), 2);
    }

    #[test]
    fn digest_candidates_accept_digests_and_remember_the_last() {
        let (_d, mut s) = store();
        assert_eq!(
            DIGEST_BIT,
            Preferences {
                digest: true,
                ..Preferences::NONE
            }
            .bits()
        );
        let (bob, carol) = (
            PeerId::from_public_key([2; 32]),
            PeerId::from_public_key([3; 32]),
        );
        for (peer, r) in [(bob, [4u8; 32]), (carol, [5u8; 32])] {
            s.set_address(&peer, "x@example.org", &r, &[6; 32], &r, 100, 10)
                .unwrap();
            s.confirm(&peer).unwrap();
        }
        assert!(s.digest_candidates().unwrap().is_empty(), "off by default");
        s.set_preferences(&bob, Preferences::ALL).unwrap();
        let c = s.digest_candidates().unwrap();
        assert_eq!(c.len(), 1);
        assert_eq!((c[0].peer, c[0].last_at, c[0].last_count), (bob, 0, 0));
        assert!(s.record_digest(&bob, 0, 500, 3).unwrap());
        // Another instance that read the same record loses: one digest, not two.
        assert!(!s.record_digest(&bob, 0, 510, 3).unwrap());
        let c = s.digest_candidates().unwrap();
        assert_eq!((c[0].last_at, c[0].last_count), (500, 3));
        assert!(s.record_digest(&bob, 500, 900, 0).unwrap());
    }

    #[test]
    fn registration_and_confirmation() {
        let (_d, mut s) = store();
        let peer = PeerId::from_public_key([2; 32]);
        let r = [3u8; 32];
        s.suppress(&r, "unsubscribed", 1).unwrap();
        s.set_address(&peer, "a@example.org", &r, &[4; 32], &[5; 32], 100, 10)
            .unwrap();
        let reg = s.registration(&peer).unwrap().unwrap();
        assert!(!reg.confirmed);
        assert_eq!(reg.preferences, Preferences::DEFAULT);
        assert_eq!(s.peer_of_link(&[5; 32], 50).unwrap(), Some(peer));
        assert_eq!(s.peer_of_link(&[5; 32], 100).unwrap(), None, "expired");
        s.count_attempt(&peer).unwrap();
        assert_eq!(s.registration(&peer).unwrap().unwrap().attempts, 1);
        assert!(s.confirm(&peer).unwrap());
        let reg = s.registration(&peer).unwrap().unwrap();
        assert!(reg.confirmed && reg.code_hash.is_none());
        assert_eq!(
            s.suppression(&r).unwrap(),
            None,
            "an explicit confirmation lifts it"
        );
        assert!(!s.refuses_invitations(&r).unwrap());
        s.set_preferences(&peer, Preferences::NONE).unwrap();
        assert!(s.refuses_invitations(&r).unwrap());
        s.forget(&peer).unwrap();
        assert_eq!(s.registration(&peer).unwrap(), None);
    }
}
