//! The hub's SQLite state: registered names, last presence of peers, and the other hubs its
//! peers introduced ([`crate::hubs`]).

use std::path::Path;

use allpeers_hub_client::NameCertificate;
use allpeers_model::PeerId;
use rusqlite::{OptionalExtension, params};

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("stored record is corrupt: {0}")]
    Corrupt(String),
}

pub struct Db {
    conn: rusqlite::Connection,
}

/// What registering a name did.
#[derive(Debug, PartialEq, Eq)]
pub enum Registration {
    /// The name is held by another key.
    Taken,
    /// Stored (new, renewed, or moved from the key's previous name).
    Stored,
}

impl Db {
    pub fn open(path: &Path) -> Result<Db, DbError> {
        let conn = rusqlite::Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS names (
                 name TEXT PRIMARY KEY,
                 peer TEXT NOT NULL UNIQUE,
                 cert BLOB NOT NULL,
                 registered_at INTEGER NOT NULL
             );
             CREATE TABLE IF NOT EXISTS peers (
                 peer TEXT PRIMARY KEY,
                 last_seen INTEGER NOT NULL
             );
             CREATE TABLE IF NOT EXISTS hubs (
                 hub TEXT PRIMARY KEY,
                 name TEXT NOT NULL,
                 record BLOB NOT NULL,
                 issued_at INTEGER NOT NULL,
                 introduced INTEGER NOT NULL
             );
             CREATE INDEX IF NOT EXISTS hubs_name ON hubs (name, introduced);
             CREATE INDEX IF NOT EXISTS hubs_introduced ON hubs (introduced);",
        )?;
        Ok(Db { conn })
    }

    pub fn name_owner(&self, name: &str) -> Result<Option<PeerId>, DbError> {
        let text: Option<String> = self
            .conn
            .query_row("SELECT peer FROM names WHERE name = ?1", [name], |r| {
                r.get(0)
            })
            .optional()?;
        text.map(|t| t.parse().map_err(|_| DbError::Corrupt(t)))
            .transpose()
    }

    /// Stores `cert` unless its name belongs to another key. One name per key: a key's
    /// previous name is released.
    pub fn register(&mut self, cert: &NameCertificate) -> Result<Registration, DbError> {
        let tx = self.conn.transaction()?;
        let owner: Option<String> = tx
            .query_row(
                "SELECT peer FROM names WHERE name = ?1",
                [&cert.name],
                |r| r.get(0),
            )
            .optional()?;
        let peer = cert.peer.to_string();
        if owner.as_deref().is_some_and(|o| o != peer) {
            return Ok(Registration::Taken);
        }
        let blob = postcard_cert(cert);
        tx.execute("DELETE FROM names WHERE peer = ?1", [&peer])?;
        tx.execute(
            "INSERT INTO names (name, peer, cert, registered_at) VALUES (?1, ?2, ?3, ?4)",
            params![cert.name, peer, blob, cert.issued_at as i64],
        )?;
        tx.commit()?;
        Ok(Registration::Stored)
    }

    pub fn certificate_of_name(&self, name: &str) -> Result<Option<NameCertificate>, DbError> {
        self.cert_where("name", name)
    }

    pub fn certificate_of_peer(&self, peer: &PeerId) -> Result<Option<NameCertificate>, DbError> {
        self.cert_where("peer", &peer.to_string())
    }

    fn cert_where(&self, column: &str, value: &str) -> Result<Option<NameCertificate>, DbError> {
        let sql = format!("SELECT cert FROM names WHERE {column} = ?1");
        let blob: Option<Vec<u8>> = self
            .conn
            .query_row(&sql, [value], |r| r.get(0))
            .optional()?;
        blob.map(|b| {
            allpeers_net::service::decode::<NameCertificate>(&b)
                .map_err(|e| DbError::Corrupt(e.to_string()))
        })
        .transpose()
    }

    pub fn touch(&self, peer: &PeerId, now_ms: u64) -> Result<(), DbError> {
        self.conn.execute(
            "INSERT INTO peers (peer, last_seen) VALUES (?1, ?2)
             ON CONFLICT(peer) DO UPDATE SET last_seen = excluded.last_seen",
            params![peer.to_string(), now_ms as i64],
        )?;
        Ok(())
    }

    pub fn last_seen(&self, peer: &PeerId) -> Result<Option<u64>, DbError> {
        let v: Option<i64> = self
            .conn
            .query_row(
                "SELECT last_seen FROM peers WHERE peer = ?1",
                [peer.to_string()],
                |r| r.get(0),
            )
            .optional()?;
        Ok(v.map(|v| v as u64))
    }
}

impl Db {
    /// Keeps another hub's record (checked by the caller, [`crate::hubs::admit`]): a newer
    /// record of a key replaces its older one (an old one replayed changes nothing but the
    /// time it was introduced); at most `per_name` keys under one name and `max` in all,
    /// the least recently introduced going first.
    pub fn introduce_hub(
        &mut self,
        known: &KnownHub,
        per_name: usize,
        max: usize,
    ) -> Result<(), DbError> {
        let tx = self.conn.transaction()?;
        tx.execute(
            "INSERT INTO hubs (hub, name, record, issued_at, introduced)
             VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT(hub) DO UPDATE SET
                 name = CASE WHEN excluded.issued_at > hubs.issued_at
                        THEN excluded.name ELSE hubs.name END,
                 record = CASE WHEN excluded.issued_at > hubs.issued_at
                          THEN excluded.record ELSE hubs.record END,
                 issued_at = MAX(hubs.issued_at, excluded.issued_at),
                 introduced = excluded.introduced",
            params![
                known.hub.to_string(),
                known.name,
                known.record,
                known.issued_at as i64,
                known.introduced as i64
            ],
        )?;
        tx.execute(
            "DELETE FROM hubs WHERE name = ?1 AND hub NOT IN
                 (SELECT hub FROM hubs WHERE name = ?1 ORDER BY introduced DESC LIMIT ?2)",
            params![known.name, per_name as i64],
        )?;
        tx.execute(
            "DELETE FROM hubs WHERE hub NOT IN
                 (SELECT hub FROM hubs ORDER BY introduced DESC LIMIT ?1)",
            params![max as i64],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// The records kept under hub name `name` issued after `fresh_after`, most recently
    /// introduced first, at most `limit`.
    pub fn hubs_named(
        &self,
        name: &str,
        fresh_after: u64,
        limit: usize,
    ) -> Result<Vec<Vec<u8>>, DbError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT record FROM hubs WHERE name = ?1 AND issued_at > ?2
             ORDER BY introduced DESC LIMIT ?3",
        )?;
        let rows = stmt.query_map(params![name, fresh_after as i64, limit as i64], |r| {
            r.get(0)
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The record kept for hub `key`, if issued after `fresh_after`.
    pub fn hub_of_key(&self, key: &PeerId, fresh_after: u64) -> Result<Option<Vec<u8>>, DbError> {
        Ok(self
            .conn
            .query_row(
                "SELECT record FROM hubs WHERE hub = ?1 AND issued_at > ?2",
                params![key.to_string(), fresh_after as i64],
                |r| r.get(0),
            )
            .optional()?)
    }
}

/// Another hub's record as kept: the signed bytes and what they say.
pub struct KnownHub {
    pub hub: PeerId,
    pub name: String,
    /// The postcard of its `SignedHubRecord`, passed on as it came.
    pub record: Vec<u8>,
    pub issued_at: u64,
    /// When a peer last introduced it (unix ms).
    pub introduced: u64,
}

fn postcard_cert(cert: &NameCertificate) -> Vec<u8> {
    allpeers_net::service::encode(cert)
        .map(|b| b.to_vec())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn known(name: &str, issued_at: u64, introduced: u64) -> KnownHub {
        KnownHub {
            hub: allpeers_net::Identity::generate().peer_id(),
            name: name.into(),
            record: vec![issued_at as u8],
            issued_at,
            introduced,
        }
    }

    #[test]
    fn other_hubs_are_kept_newest_record_first_and_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let mut db = Db::open(&dir.path().join("hub.db")).unwrap();
        let two = known("two.test", 10, 1);
        db.introduce_hub(&two, 2, 100).unwrap();
        // A newer record of the same key replaces it; an older one replayed does not.
        let newer = KnownHub {
            record: vec![20],
            issued_at: 20,
            introduced: 2,
            ..two
        };
        db.introduce_hub(&newer, 2, 100).unwrap();
        let older = KnownHub {
            record: vec![10],
            issued_at: 10,
            introduced: 3,
            ..newer
        };
        db.introduce_hub(&older, 2, 100).unwrap();
        assert_eq!(db.hub_of_key(&older.hub, 0).unwrap(), Some(vec![20]));
        assert_eq!(db.hub_of_key(&older.hub, 20).unwrap(), None, "stale");
        // At most 2 keys under one name: the least recently introduced goes.
        let squat1 = known("two.test", 5, 4);
        let squat2 = known("two.test", 5, 5);
        db.introduce_hub(&squat1, 2, 100).unwrap();
        db.introduce_hub(&squat2, 2, 100).unwrap();
        assert_eq!(db.hubs_named("two.test", 0, 10).unwrap().len(), 2);
        assert_eq!(db.hub_of_key(&older.hub, 0).unwrap(), None);
        // At most 3 in all.
        for i in 0..3 {
            db.introduce_hub(&known(&format!("h{i}.test"), 5, 10 + i), 2, 3)
                .unwrap();
        }
        let total: i64 = db
            .conn
            .query_row("SELECT COUNT(*) FROM hubs", [], |r| r.get(0))
            .unwrap();
        assert_eq!(total, 3);
        assert!(db.hubs_named("two.test", 0, 10).unwrap().is_empty());
    }
}
