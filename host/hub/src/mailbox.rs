//! Offline letters: sealed letters kept for a peer until it comes online and takes them.
//!
//! The hub stores what routing needs and no more: the recipient (to hand the letters out),
//! the sealed bytes (opaque: sealed to the recipient's key, the author inside), sizes and
//! times (quotas, expiry), and a keyed hash of the depositing peer, so per-sender quotas work
//! while the database alone does not say who wrote to whom. Letters leave when the recipient
//! acknowledges them, or at expiry.
//!
//! `mail.sqlite` in the hub's data dir (WAL); every change is one statement or one
//! transaction, so a crash never leaves a half-deposited letter.

use std::path::Path;

use allpeers_hub_client::MailItem;
use allpeers_model::PeerId;
use rusqlite::params;
use serde::{Deserialize, Serialize};

/// Quotas and expiry (`mailbox` in the hub config).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MailboxConfig {
    pub enabled: bool,
    /// Letters one recipient may have waiting.
    pub max_letters_per_recipient: u32,
    /// Bytes one recipient may have waiting.
    pub max_bytes_per_recipient: u64,
    /// Letters one sender may have waiting for one recipient (a flood from one sender
    /// cannot fill a mailbox).
    pub max_letters_per_sender: u32,
    /// Days a letter is kept when nobody takes it.
    pub expiry_days: u32,
}

impl Default for MailboxConfig {
    fn default() -> Self {
        MailboxConfig {
            enabled: true,
            max_letters_per_recipient: 2000,
            max_bytes_per_recipient: 32 * 1024 * 1024,
            max_letters_per_sender: 500,
            expiry_days: 30,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum MailboxError {
    #[error("mailbox database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("the recipient's mailbox is full ({0})")]
    Full(&'static str),
}

pub struct Mailbox {
    conn: rusqlite::Connection,
    config: MailboxConfig,
    /// Key of the sender hash (derived from the hub's identity: stable across restarts).
    sender_key: [u8; 32],
}

impl Mailbox {
    pub fn open(
        path: &Path,
        config: MailboxConfig,
        sender_key: [u8; 32],
    ) -> Result<Self, MailboxError> {
        let conn = rusqlite::Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS letters (
                 id INTEGER PRIMARY KEY AUTOINCREMENT,
                 recipient TEXT NOT NULL,
                 sender_hash BLOB NOT NULL,
                 sealed BLOB NOT NULL,
                 size INTEGER NOT NULL,
                 deposited INTEGER NOT NULL,
                 expires INTEGER NOT NULL
             );
             CREATE INDEX IF NOT EXISTS letters_recipient ON letters (recipient, id);
             CREATE INDEX IF NOT EXISTS letters_expires ON letters (expires);",
        )?;
        Ok(Mailbox {
            conn,
            config,
            sender_key,
        })
    }

    pub fn config(&self) -> &MailboxConfig {
        &self.config
    }

    fn sender_hash(&self, sender: &PeerId) -> [u8; 32] {
        *blake3::keyed_hash(&self.sender_key, sender.public_key()).as_bytes()
    }

    /// Keeps `sealed` for `to`, within the quotas. Returns the letter's id.
    pub fn deposit(
        &mut self,
        from: &PeerId,
        to: &PeerId,
        sealed: &[u8],
        now_ms: u64,
    ) -> Result<u64, MailboxError> {
        self.expire(now_ms)?;
        let sender_hash = self.sender_hash(from);
        let recipient = to.to_string();
        let tx = self.conn.transaction()?;
        let (count, bytes): (u32, u64) = tx.query_row(
            "SELECT COUNT(*), COALESCE(SUM(size), 0) FROM letters WHERE recipient = ?1",
            [&recipient],
            |r| Ok((r.get(0)?, r.get::<_, i64>(1)? as u64)),
        )?;
        if count >= self.config.max_letters_per_recipient {
            return Err(MailboxError::Full("too many letters waiting"));
        }
        if bytes + sealed.len() as u64 > self.config.max_bytes_per_recipient {
            return Err(MailboxError::Full("too many bytes waiting"));
        }
        let from_sender: u32 = tx.query_row(
            "SELECT COUNT(*) FROM letters WHERE recipient = ?1 AND sender_hash = ?2",
            params![&recipient, &sender_hash[..]],
            |r| r.get(0),
        )?;
        if from_sender >= self.config.max_letters_per_sender {
            return Err(MailboxError::Full(
                "too many letters from this sender waiting",
            ));
        }
        let expires = now_ms + u64::from(self.config.expiry_days) * 86_400_000;
        tx.execute(
            "INSERT INTO letters (recipient, sender_hash, sealed, size, deposited, expires)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                &recipient,
                &sender_hash[..],
                sealed,
                sealed.len() as i64,
                now_ms as i64,
                expires as i64
            ],
        )?;
        let id = tx.last_insert_rowid() as u64;
        tx.commit()?;
        Ok(id)
    }

    /// Letters waiting for `to`, oldest first: at most `max`, and at most `budget` bytes of
    /// sealed content (always at least one letter if any waits).
    pub fn fetch(
        &mut self,
        to: &PeerId,
        max: u32,
        budget: usize,
        now_ms: u64,
    ) -> Result<Vec<MailItem>, MailboxError> {
        self.expire(now_ms)?;
        let mut stmt = self.conn.prepare_cached(
            "SELECT id, deposited, sealed FROM letters WHERE recipient = ?1 ORDER BY id LIMIT ?2",
        )?;
        let mut rows = stmt.query(params![to.to_string(), max.clamp(1, 256)])?;
        let mut out = Vec::new();
        let mut used = 0usize;
        while let Some(row) = rows.next()? {
            let sealed: Vec<u8> = row.get(2)?;
            if !out.is_empty() && used + sealed.len() > budget {
                break;
            }
            used += sealed.len();
            out.push(MailItem {
                id: row.get::<_, i64>(0)? as u64,
                deposited_ms: row.get::<_, i64>(1)? as u64,
                sealed,
            });
        }
        Ok(out)
    }

    /// How many letters wait for `to`.
    pub fn waiting(&self, to: &PeerId) -> Result<u32, MailboxError> {
        Ok(self.conn.query_row(
            "SELECT COUNT(*) FROM letters WHERE recipient = ?1",
            [to.to_string()],
            |r| r.get(0),
        )?)
    }

    /// Deletes `to`'s letters with these ids (another peer's ids are ignored).
    pub fn ack(&mut self, to: &PeerId, ids: &[u64]) -> Result<u32, MailboxError> {
        let recipient = to.to_string();
        let tx = self.conn.transaction()?;
        let mut removed = 0;
        {
            let mut stmt =
                tx.prepare_cached("DELETE FROM letters WHERE id = ?1 AND recipient = ?2")?;
            for id in ids {
                removed += stmt.execute(params![*id as i64, &recipient])? as u32;
            }
        }
        tx.commit()?;
        Ok(removed)
    }

    /// Drops letters past their expiry.
    pub fn expire(&mut self, now_ms: u64) -> Result<usize, MailboxError> {
        Ok(self
            .conn
            .execute("DELETE FROM letters WHERE expires <= ?1", [now_ms as i64])?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use allpeers_net::Identity;

    fn mailbox(config: MailboxConfig) -> (tempfile::TempDir, Mailbox) {
        let dir = tempfile::tempdir().unwrap();
        let m = Mailbox::open(&dir.path().join("mail.sqlite"), config, [9; 32]).unwrap();
        (dir, m)
    }

    #[test]
    fn deposit_fetch_ack() {
        let (_d, mut m) = mailbox(MailboxConfig::default());
        let (a, b, c) = (
            Identity::generate().peer_id(),
            Identity::generate().peer_id(),
            Identity::generate().peer_id(),
        );
        let one = m.deposit(&a, &b, b"sealed-1", 1000).unwrap();
        let two = m.deposit(&c, &b, b"sealed-2", 1001).unwrap();
        let got = m.fetch(&b, 10, 1 << 20, 1002).unwrap();
        assert_eq!(got.iter().map(|i| i.id).collect::<Vec<_>>(), [one, two]);
        assert!(m.fetch(&a, 10, 1 << 20, 1002).unwrap().is_empty());
        // Another peer cannot delete b's letters.
        assert_eq!(m.ack(&a, &[one, two]).unwrap(), 0);
        assert_eq!(m.ack(&b, &[one]).unwrap(), 1);
        assert_eq!(m.ack(&b, &[one]).unwrap(), 0);
        assert_eq!(m.waiting(&b).unwrap(), 1);
    }

    #[test]
    fn quotas_per_recipient_and_sender_and_expiry() {
        let (_d, mut m) = mailbox(MailboxConfig {
            max_letters_per_recipient: 3,
            max_letters_per_sender: 2,
            max_bytes_per_recipient: 100,
            expiry_days: 1,
            ..MailboxConfig::default()
        });
        let (a, b, c, d) = (
            Identity::generate().peer_id(),
            Identity::generate().peer_id(),
            Identity::generate().peer_id(),
            Identity::generate().peer_id(),
        );
        m.deposit(&a, &b, b"x", 0).unwrap();
        m.deposit(&a, &b, b"x", 0).unwrap();
        assert!(matches!(
            m.deposit(&a, &b, b"x", 0),
            Err(MailboxError::Full(_))
        ));
        m.deposit(&c, &b, b"x", 0).unwrap();
        assert!(matches!(
            m.deposit(&d, &b, b"x", 0),
            Err(MailboxError::Full(_))
        ));
        assert!(matches!(
            m.deposit(&d, &c, &[0u8; 101], 0),
            Err(MailboxError::Full(_))
        ));
        // A day later everything expired.
        assert_eq!(m.expire(86_400_000).unwrap(), 3);
        m.deposit(&d, &b, b"x", 86_400_000).unwrap();
    }

    #[test]
    fn fetch_respects_the_byte_budget_but_returns_one() {
        let (_d, mut m) = mailbox(MailboxConfig::default());
        let (a, b) = (
            Identity::generate().peer_id(),
            Identity::generate().peer_id(),
        );
        for _ in 0..3 {
            m.deposit(&a, &b, &[1u8; 1000], 0).unwrap();
        }
        assert_eq!(m.fetch(&b, 10, 10, 0).unwrap().len(), 1);
        assert_eq!(m.fetch(&b, 10, 2000, 0).unwrap().len(), 2);
        assert_eq!(m.fetch(&b, 2, 1 << 20, 0).unwrap().len(), 2);
    }

    #[test]
    fn the_database_does_not_name_the_sender() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mail.sqlite");
        let mut m = Mailbox::open(&path, MailboxConfig::default(), [3; 32]).unwrap();
        let (a, b) = (
            Identity::generate().peer_id(),
            Identity::generate().peer_id(),
        );
        m.deposit(&a, &b, b"opaque", 0).unwrap();
        drop(m);
        let bytes = std::fs::read(&path).unwrap();
        let wal = std::fs::read(dir.path().join("mail.sqlite-wal")).unwrap_or_default();
        let sender = a.to_string();
        for b in [&bytes, &wal] {
            assert!(!b.windows(sender.len()).any(|w| w == sender.as_bytes()));
            assert!(!b.windows(32).any(|w| w == a.public_key()));
        }
    }
}
