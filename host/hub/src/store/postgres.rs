//! The PostgreSQL backend (cluster mode): names, last seen, letters, and the cluster's
//! tables (instances, presence lines, watch lists; see [`crate::cluster`]). One pool of
//! connections per hub process (deadpool: a connection found broken is replaced, so a
//! restarted or failed-over database is picked up again without a restart of the hub).

use std::time::Duration;

use super::StoreError;
use crate::cluster::event::{CHANNEL, Event};
use crate::config::PostgresConfig;
use crate::db::{KnownHub, Registration};
use crate::mailbox::MailboxConfig;
use allpeers_hub_client::{MailItem, NameCertificate};
use allpeers_model::PeerId;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};

/// Time to open one database connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Time a request waits for a pooled connection.
const POOL_WAIT: Duration = Duration::from_secs(10);

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS hub_names (
    name TEXT PRIMARY KEY,
    peer TEXT NOT NULL UNIQUE,
    cert BYTEA NOT NULL,
    registered_at BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS hub_peers (
    peer TEXT PRIMARY KEY,
    last_seen BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS hub_letters (
    id BIGSERIAL PRIMARY KEY,
    recipient TEXT NOT NULL,
    sender_hash BYTEA NOT NULL,
    sealed BYTEA NOT NULL,
    size BIGINT NOT NULL,
    deposited BIGINT NOT NULL,
    expires BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS hub_letters_recipient ON hub_letters (recipient, id);
CREATE INDEX IF NOT EXISTS hub_letters_expires ON hub_letters (expires);
CREATE TABLE IF NOT EXISTS hub_instances (
    id TEXT PRIMARY KEY,
    heartbeat TIMESTAMPTZ NOT NULL
);
CREATE SEQUENCE IF NOT EXISTS hub_line_ids;
CREATE TABLE IF NOT EXISTS hub_lines (
    peer TEXT PRIMARY KEY,
    instance TEXT NOT NULL,
    line BIGINT NOT NULL,
    state BYTEA NOT NULL
);
CREATE INDEX IF NOT EXISTS hub_lines_instance ON hub_lines (instance);
CREATE TABLE IF NOT EXISTS hub_watches (
    watcher TEXT NOT NULL,
    target TEXT NOT NULL,
    PRIMARY KEY (watcher, target)
);
ALTER TABLE hub_instances ADD COLUMN IF NOT EXISTS addresses BYTEA;
CREATE TABLE IF NOT EXISTS hub_relay_tickets (
    ticket BYTEA PRIMARY KEY,
    from_peer TEXT NOT NULL,
    to_peer TEXT NOT NULL,
    instance TEXT NOT NULL,
    expires TIMESTAMPTZ NOT NULL,
    used BOOLEAN NOT NULL
);
CREATE TABLE IF NOT EXISTS hub_relays (
    relay BYTEA NOT NULL,
    peer TEXT NOT NULL,
    instance TEXT NOT NULL,
    PRIMARY KEY (relay, peer)
);
CREATE INDEX IF NOT EXISTS hub_relays_peer ON hub_relays (peer);
CREATE TABLE IF NOT EXISTS hub_relay_usage (
    peer TEXT PRIMARY KEY,
    window_start TIMESTAMPTZ NOT NULL,
    bytes BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS hub_known_hubs (
    hub TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    record BYTEA NOT NULL,
    issued_at BIGINT NOT NULL,
    introduced BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS hub_known_hubs_name ON hub_known_hubs (name, introduced);
CREATE INDEX IF NOT EXISTS hub_known_hubs_introduced ON hub_known_hubs (introduced);
";

/// Advisory lock keys (one namespace of ours: the high word).
const LOCK_SCHEMA: i64 = 0x4150_0000_0000_0001;
const LOCK_NAMES: i64 = 0x4150_0000_0000_0002;
const LOCK_HUBS: i64 = 0x4150_0000_0000_0004;

pub struct PgStore {
    pool: Pool,
    config: PostgresConfig,
    mailbox: MailboxConfig,
    /// Key of the sender hash (see [`crate::mailbox`]).
    sender_key: [u8; 32],
}

impl PgStore {
    /// Connects, creates the tables when missing (one instance at a time).
    pub async fn open(
        config: PostgresConfig,
        mailbox: MailboxConfig,
        sender_key: [u8; 32],
    ) -> Result<PgStore, StoreError> {
        let pg = pg_config(&config)?;
        let manager = Manager::from_config(
            pg,
            tokio_postgres::NoTls,
            // Verified: a pooled connection answers a round trip before it is reused, so one
            // the server ended (restart, pg_terminate_backend, failover) is replaced instead
            // of failing the next request.
            ManagerConfig {
                recycling_method: RecyclingMethod::Verified,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(config.pool_size.max(1))
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .wait_timeout(Some(POOL_WAIT))
            .create_timeout(Some(CONNECT_TIMEOUT))
            .build()
            .map_err(|e| StoreError::Corrupt(format!("postgres pool: {e}")))?;
        let store = PgStore {
            pool,
            config,
            mailbox,
            sender_key,
        };
        let mut client = store.pool.get().await?;
        let tx = client.transaction().await?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&LOCK_SCHEMA])
            .await?;
        tx.batch_execute(SCHEMA).await?;
        tx.commit().await?;
        Ok(store)
    }

    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    pub fn config(&self) -> &PostgresConfig {
        &self.config
    }

    pub async fn register(&self, cert: &NameCertificate) -> Result<Registration, StoreError> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        // Registrations are rare: one at a time across the cluster keeps "one name per
        // key" and "one key per name" true without retry loops.
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&LOCK_NAMES])
            .await?;
        let peer = cert.peer.to_string();
        let owner = tx
            .query_opt("SELECT peer FROM hub_names WHERE name = $1", &[&cert.name])
            .await?;
        if owner.is_some_and(|r| r.get::<_, String>(0) != peer) {
            return Ok(Registration::Taken);
        }
        let blob = allpeers_net::service::encode(cert)
            .map_err(|e| StoreError::Corrupt(e.to_string()))?
            .to_vec();
        tx.execute("DELETE FROM hub_names WHERE peer = $1", &[&peer])
            .await?;
        tx.execute(
            "INSERT INTO hub_names (name, peer, cert, registered_at) VALUES ($1, $2, $3, $4)",
            &[&cert.name, &peer, &blob, &(cert.issued_at as i64)],
        )
        .await?;
        tx.commit().await?;
        Ok(Registration::Stored)
    }

    /// The certificate where `column` (`name` or `peer`) is `value`.
    pub async fn certificate(
        &self,
        column: &'static str,
        value: &str,
    ) -> Result<Option<NameCertificate>, StoreError> {
        let client = self.pool.get().await?;
        let sql = format!("SELECT cert FROM hub_names WHERE {column} = $1");
        let row = client.query_opt(&sql, &[&value]).await?;
        row.map(|r| {
            allpeers_net::service::decode::<NameCertificate>(r.get::<_, &[u8]>(0))
                .map_err(|e| StoreError::Corrupt(e.to_string()))
        })
        .transpose()
    }

    pub async fn touch(&self, peer: &PeerId, now_ms: u64) -> Result<(), StoreError> {
        let client = self.pool.get().await?;
        client
            .execute(
                "INSERT INTO hub_peers (peer, last_seen) VALUES ($1, $2)
                 ON CONFLICT (peer) DO UPDATE SET last_seen = excluded.last_seen",
                &[&peer.to_string(), &(now_ms as i64)],
            )
            .await?;
        Ok(())
    }

    pub async fn last_seen(&self, peer: &PeerId) -> Result<Option<u64>, StoreError> {
        let client = self.pool.get().await?;
        let row = client
            .query_opt(
                "SELECT last_seen FROM hub_peers WHERE peer = $1",
                &[&peer.to_string()],
            )
            .await?;
        Ok(row.map(|r| r.get::<_, i64>(0) as u64))
    }

    /// One transaction: expiry, the quota checks (serialised per recipient across the
    /// cluster by an advisory lock), the letter, and the "mail waiting" notice, which
    /// PostgreSQL delivers only if the letter commits.
    pub async fn deposit(
        &self,
        from: &PeerId,
        to: &PeerId,
        sealed: &[u8],
        now_ms: u64,
    ) -> Result<u64, StoreError> {
        let sender_hash = *blake3::keyed_hash(&self.sender_key, from.public_key()).as_bytes();
        let recipient = to.to_string();
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        tx.execute(
            "SELECT pg_advisory_xact_lock(hashtext('allpeers-hub-letters:' || $1))",
            &[&recipient],
        )
        .await?;
        tx.execute(
            "DELETE FROM hub_letters WHERE recipient = $1 AND expires <= $2",
            &[&recipient, &(now_ms as i64)],
        )
        .await?;
        let row = tx
            .query_one(
                "SELECT COUNT(*), COALESCE(SUM(size), 0)::BIGINT,
                        COUNT(*) FILTER (WHERE sender_hash = $2)
                 FROM hub_letters WHERE recipient = $1",
                &[&recipient, &&sender_hash[..]],
            )
            .await?;
        let (count, bytes, from_sender): (i64, i64, i64) = (row.get(0), row.get(1), row.get(2));
        if count >= i64::from(self.mailbox.max_letters_per_recipient) {
            return Err(StoreError::Full("too many letters waiting"));
        }
        if bytes as u64 + sealed.len() as u64 > self.mailbox.max_bytes_per_recipient {
            return Err(StoreError::Full("too many bytes waiting"));
        }
        if from_sender >= i64::from(self.mailbox.max_letters_per_sender) {
            return Err(StoreError::Full(
                "too many letters from this sender waiting",
            ));
        }
        let expires = now_ms + u64::from(self.mailbox.expiry_days) * 86_400_000;
        let id: i64 = tx
            .query_one(
                "INSERT INTO hub_letters (recipient, sender_hash, sealed, size, deposited, expires)
                 VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
                &[
                    &recipient,
                    &&sender_hash[..],
                    &sealed,
                    &(sealed.len() as i64),
                    &(now_ms as i64),
                    &(expires as i64),
                ],
            )
            .await?
            .get(0);
        let notice = Event::MailWaiting { to: *to }.payload(&self.config.instance);
        tx.execute("SELECT pg_notify($1, $2)", &[&CHANNEL, &notice])
            .await?;
        tx.commit().await?;
        Ok(id as u64)
    }

    pub async fn fetch(
        &self,
        to: &PeerId,
        max: u32,
        budget: usize,
        now_ms: u64,
    ) -> Result<Vec<MailItem>, StoreError> {
        let client = self.pool.get().await?;
        let rows = client
            .query(
                "SELECT id, deposited, sealed FROM hub_letters
                 WHERE recipient = $1 AND expires > $2 ORDER BY id LIMIT $3",
                &[
                    &to.to_string(),
                    &(now_ms as i64),
                    &i64::from(max.clamp(1, 256)),
                ],
            )
            .await?;
        let mut out = Vec::new();
        let mut used = 0usize;
        for row in rows {
            let sealed: Vec<u8> = row.get(2);
            if !out.is_empty() && used + sealed.len() > budget {
                break;
            }
            used += sealed.len();
            out.push(MailItem {
                id: row.get::<_, i64>(0) as u64,
                deposited_ms: row.get::<_, i64>(1) as u64,
                sealed,
            });
        }
        Ok(out)
    }

    pub async fn waiting(&self, to: &PeerId) -> Result<u32, StoreError> {
        let client = self.pool.get().await?;
        let n: i64 = client
            .query_one(
                "SELECT COUNT(*) FROM hub_letters WHERE recipient = $1 AND expires > $2",
                &[&to.to_string(), &(allpeers_model::hlc::now_ms() as i64)],
            )
            .await?
            .get(0);
        Ok(n as u32)
    }

    /// As [`crate::db::Db::introduce_hub`], in one transaction; introductions are
    /// serialised cluster-wide (rare: a node's guest lines) so the bounds hold.
    pub async fn introduce_hub(
        &self,
        known: &KnownHub,
        per_name: usize,
        max: usize,
    ) -> Result<(), StoreError> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&LOCK_HUBS])
            .await?;
        tx.execute(
            "INSERT INTO hub_known_hubs (hub, name, record, issued_at, introduced)
             VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (hub) DO UPDATE SET
                 name = CASE WHEN excluded.issued_at > hub_known_hubs.issued_at
                        THEN excluded.name ELSE hub_known_hubs.name END,
                 record = CASE WHEN excluded.issued_at > hub_known_hubs.issued_at
                          THEN excluded.record ELSE hub_known_hubs.record END,
                 issued_at = GREATEST(hub_known_hubs.issued_at, excluded.issued_at),
                 introduced = excluded.introduced",
            &[
                &known.hub.to_string(),
                &known.name,
                &known.record,
                &(known.issued_at as i64),
                &(known.introduced as i64),
            ],
        )
        .await?;
        tx.execute(
            "DELETE FROM hub_known_hubs WHERE name = $1 AND hub NOT IN
                 (SELECT hub FROM hub_known_hubs WHERE name = $1
                  ORDER BY introduced DESC LIMIT $2)",
            &[&known.name, &(per_name as i64)],
        )
        .await?;
        tx.execute(
            "DELETE FROM hub_known_hubs WHERE hub NOT IN
                 (SELECT hub FROM hub_known_hubs ORDER BY introduced DESC LIMIT $1)",
            &[&(max as i64)],
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn hubs_named(
        &self,
        name: &str,
        fresh_after: u64,
        limit: usize,
    ) -> Result<Vec<Vec<u8>>, StoreError> {
        let client = self.pool.get().await?;
        let rows = client
            .query(
                "SELECT record FROM hub_known_hubs WHERE name = $1 AND issued_at > $2
                 ORDER BY introduced DESC LIMIT $3",
                &[&name, &(fresh_after as i64), &(limit as i64)],
            )
            .await?;
        Ok(rows.into_iter().map(|r| r.get(0)).collect())
    }

    pub async fn hub_of_key(
        &self,
        key: &PeerId,
        fresh_after: u64,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        let client = self.pool.get().await?;
        let row = client
            .query_opt(
                "SELECT record FROM hub_known_hubs WHERE hub = $1 AND issued_at > $2",
                &[&key.to_string(), &(fresh_after as i64)],
            )
            .await?;
        Ok(row.map(|r| r.get(0)))
    }

    /// Deletes `to`'s letters with these ids (another peer's ids are ignored).
    pub async fn ack(&self, to: &PeerId, ids: &[u64]) -> Result<u32, StoreError> {
        let ids: Vec<i64> = ids.iter().map(|&i| i as i64).collect();
        let client = self.pool.get().await?;
        let n = client
            .execute(
                "DELETE FROM hub_letters WHERE recipient = $1 AND id = ANY($2)",
                &[&to.to_string(), &ids],
            )
            .await?;
        Ok(n as u32)
    }
}

/// The driver's config from `config.url`, named after the instance (so an operator sees
/// whose connection is whose in `pg_stat_activity`).
pub fn pg_config(config: &PostgresConfig) -> Result<tokio_postgres::Config, StoreError> {
    let mut pg: tokio_postgres::Config = config.url.parse()?;
    pg.connect_timeout(CONNECT_TIMEOUT);
    pg.application_name(format!("allpeers-hub {}", config.instance));
    Ok(pg)
}
