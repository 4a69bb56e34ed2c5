//! The hub's SQLite state: registered names and last presence of peers.

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
             );",
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

fn postcard_cert(cert: &NameCertificate) -> Vec<u8> {
    allpeers_net::service::encode(cert)
        .map(|b| b.to_vec())
        .unwrap_or_default()
}
