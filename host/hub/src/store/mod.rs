//! The hub's state behind one seam, in one of two backends:
//! * SQLite ([`crate::db`] + [`crate::mailbox`], files in the data dir): the embedded
//!   default, one hub process.
//! * PostgreSQL ([`postgres`]): shared by several hub processes behind one name and key
//!   (cluster mode, see [`crate::cluster`]).
//!
//! Every change is one transaction in either backend: a crash or a connection lost midway
//! leaves the state as it was before.

pub mod postgres;

use std::sync::Mutex;

use allpeers_hub_client::{MailItem, NameCertificate};
use allpeers_model::PeerId;

use crate::db::{Db, DbError, KnownHub, Registration};
use crate::mailbox::{Mailbox, MailboxError};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    Mailbox(MailboxError),
    #[error("postgres: {0}")]
    Postgres(#[from] tokio_postgres::Error),
    #[error("postgres pool: {0}")]
    Pool(#[from] deadpool_postgres::PoolError),
    #[error("the recipient's mailbox is full ({0})")]
    Full(&'static str),
    #[error("stored record is corrupt: {0}")]
    Corrupt(String),
}

impl From<MailboxError> for StoreError {
    fn from(e: MailboxError) -> Self {
        match e {
            MailboxError::Full(why) => StoreError::Full(why),
            e => StoreError::Mailbox(e),
        }
    }
}

/// Names, last seen, the mailbox and the other hubs known, in the configured backend.
pub enum Store {
    Sqlite {
        db: Mutex<Db>,
        mailbox: Mutex<Mailbox>,
    },
    Postgres(postgres::PgStore),
}

impl Store {
    pub fn sqlite(db: Db, mailbox: Mailbox) -> Store {
        Store::Sqlite {
            db: Mutex::new(db),
            mailbox: Mutex::new(mailbox),
        }
    }

    /// Stores `cert` unless its name belongs to another key (one name per key).
    pub async fn register(&self, cert: &NameCertificate) -> Result<Registration, StoreError> {
        match self {
            Store::Sqlite { db, .. } => Ok(db.lock().unwrap().register(cert)?),
            Store::Postgres(pg) => pg.register(cert).await,
        }
    }

    pub async fn certificate_of_name(
        &self,
        name: &str,
    ) -> Result<Option<NameCertificate>, StoreError> {
        match self {
            Store::Sqlite { db, .. } => Ok(db.lock().unwrap().certificate_of_name(name)?),
            Store::Postgres(pg) => pg.certificate("name", name).await,
        }
    }

    pub async fn certificate_of_peer(
        &self,
        peer: &PeerId,
    ) -> Result<Option<NameCertificate>, StoreError> {
        match self {
            Store::Sqlite { db, .. } => Ok(db.lock().unwrap().certificate_of_peer(peer)?),
            Store::Postgres(pg) => pg.certificate("peer", &peer.to_string()).await,
        }
    }

    pub async fn touch(&self, peer: &PeerId, now_ms: u64) -> Result<(), StoreError> {
        match self {
            Store::Sqlite { db, .. } => Ok(db.lock().unwrap().touch(peer, now_ms)?),
            Store::Postgres(pg) => pg.touch(peer, now_ms).await,
        }
    }

    pub async fn last_seen(&self, peer: &PeerId) -> Result<Option<u64>, StoreError> {
        match self {
            Store::Sqlite { db, .. } => Ok(db.lock().unwrap().last_seen(peer)?),
            Store::Postgres(pg) => pg.last_seen(peer).await,
        }
    }

    /// Keeps `sealed` for `to` within the quotas; returns the letter's id. In cluster mode
    /// the "mail waiting" notice to the other instances commits with the letter.
    pub async fn deposit(
        &self,
        from: &PeerId,
        to: &PeerId,
        sealed: &[u8],
        now_ms: u64,
    ) -> Result<u64, StoreError> {
        match self {
            Store::Sqlite { mailbox, .. } => {
                Ok(mailbox.lock().unwrap().deposit(from, to, sealed, now_ms)?)
            }
            Store::Postgres(pg) => pg.deposit(from, to, sealed, now_ms).await,
        }
    }

    pub async fn fetch(
        &self,
        to: &PeerId,
        max: u32,
        budget: usize,
        now_ms: u64,
    ) -> Result<Vec<MailItem>, StoreError> {
        match self {
            Store::Sqlite { mailbox, .. } => {
                Ok(mailbox.lock().unwrap().fetch(to, max, budget, now_ms)?)
            }
            Store::Postgres(pg) => pg.fetch(to, max, budget, now_ms).await,
        }
    }

    pub async fn waiting(&self, to: &PeerId) -> Result<u32, StoreError> {
        match self {
            Store::Sqlite { mailbox, .. } => Ok(mailbox.lock().unwrap().waiting(to)?),
            Store::Postgres(pg) => pg.waiting(to).await,
        }
    }

    /// Keeps another hub's record within the bounds of [`crate::hubs`].
    pub async fn introduce_hub(&self, known: &KnownHub) -> Result<(), StoreError> {
        let (per_name, max) = (crate::hubs::MAX_KEYS_PER_NAME, crate::hubs::MAX_KNOWN_HUBS);
        match self {
            Store::Sqlite { db, .. } => {
                Ok(db.lock().unwrap().introduce_hub(known, per_name, max)?)
            }
            Store::Postgres(pg) => pg.introduce_hub(known, per_name, max).await,
        }
    }

    /// The signed records kept under a hub name (issued after `fresh_after`), most recently
    /// introduced first, at most [`crate::hubs::MAX_KEYS_PER_NAME`].
    pub async fn hubs_named(
        &self,
        name: &str,
        fresh_after: u64,
    ) -> Result<Vec<Vec<u8>>, StoreError> {
        let limit = crate::hubs::MAX_KEYS_PER_NAME;
        match self {
            Store::Sqlite { db, .. } => {
                Ok(db.lock().unwrap().hubs_named(name, fresh_after, limit)?)
            }
            Store::Postgres(pg) => pg.hubs_named(name, fresh_after, limit).await,
        }
    }

    /// The signed record kept for hub `key` (issued after `fresh_after`).
    pub async fn hub_of_key(
        &self,
        key: &PeerId,
        fresh_after: u64,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        match self {
            Store::Sqlite { db, .. } => Ok(db.lock().unwrap().hub_of_key(key, fresh_after)?),
            Store::Postgres(pg) => pg.hub_of_key(key, fresh_after).await,
        }
    }

    pub async fn ack(&self, to: &PeerId, ids: &[u64]) -> Result<u32, StoreError> {
        match self {
            Store::Sqlite { mailbox, .. } => Ok(mailbox.lock().unwrap().ack(to, ids)?),
            Store::Postgres(pg) => pg.ack(to, ids).await,
        }
    }
}
