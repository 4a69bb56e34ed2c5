//! Cluster mode: several hub processes ("instances") behind one name and key, sharing one
//! PostgreSQL database ([`crate::store::postgres`]).
//!
//! Every instance keeps the whole presence picture in memory (its own lines, and a mirror
//! of the other instances' lines and watch lists) and runs the same presence rules over it
//! ([`crate::server`]), telling only the peers whose lines it holds. What changes travels as
//! state in the tables (`hub_lines`, `hub_watches`, `hub_instances`) and, committed with it,
//! as a PostgreSQL `NOTIFY` on [`CHANNEL`]: a line came, changed or went, a watch list
//! changed, a letter waits, a connection signal for a peer held elsewhere, an instance died.
//! Events are idempotent snapshots ordered by cluster-wide line ids (a sequence), so a
//! late or repeated event never undoes a newer one, and an instance that (re)joins reads
//! the tables once after `LISTEN` and is current.
//!
//! Liveness: every instance stamps its `hub_instances` row each `heartbeat_ms`; any
//! instance deletes the lines and watch lists of one silent for `instance_timeout_ms` and
//! announces it gone, so watchers hear "offline". The dead instance's peers reconnect to
//! another address of the hub (same pinned key); letters live in the database, so nothing
//! acknowledged is lost.
//!
//! Relays across instances: the requester's instance splices its peer's relay stream with
//! a hop to the target's instance, authorised by a single-use ticket in the database
//! ([`relay`]); relay quotas are counted in the database.

pub mod event;
pub mod mirror;
pub mod relay;

use std::net::SocketAddr;
use std::sync::Arc;

use allpeers_model::PeerId;
use deadpool_postgres::Pool;

use crate::cluster::event::{CHANNEL, Event, LineState};
use crate::config::PostgresConfig;
use crate::store::StoreError;
use crate::store::postgres::PgStore;

/// This instance's handle on the cluster tables.
pub struct Cluster {
    instance: Arc<str>,
    /// Set when this instance leaves: the heartbeat stops (it would record it again).
    leaving: std::sync::atomic::AtomicBool,
    pool: Pool,
    config: PostgresConfig,
    /// The e-mail gateway's worker, woken when another instance queued a mail.
    mail_wake: std::sync::OnceLock<Arc<tokio::sync::Notify>>,
    /// Where the other instances dial this one for relay hops (postcard of the addresses,
    /// stamped with every heartbeat).
    addresses: std::sync::Mutex<Vec<u8>>,
    /// The endpoints this instance dials the others with ([`relay`]).
    hops: relay::Hops,
}

impl Cluster {
    /// Joins the cluster: the lines a previous run of this instance left are ended (and
    /// announced gone), and the heartbeat row is stamped. [`run`] starts the tasks.
    pub async fn join(store: &PgStore) -> Result<Arc<Cluster>, StoreError> {
        let config = store.config().clone();
        if config.instance.is_empty() || config.instance.len() > 64 {
            return Err(StoreError::Corrupt(
                "backend.postgres.instance: a name of 1 to 64 bytes, unique in the cluster".into(),
            ));
        }
        let cluster = Arc::new(Cluster {
            instance: config.instance.as_str().into(),
            leaving: Default::default(),
            pool: store.pool().clone(),
            config,
            mail_wake: Default::default(),
            addresses: Default::default(),
            hops: Default::default(),
        });
        cluster.bury(&cluster.instance).await?;
        cluster.heartbeat().await?;
        Ok(cluster)
    }

    pub fn instance(&self) -> &Arc<str> {
        &self.instance
    }

    /// Wakes `worker` whenever another instance queues a mail.
    pub fn set_mail_wake(&self, worker: Arc<tokio::sync::Notify>) {
        let _ = self.mail_wake.set(worker);
    }

    pub(crate) fn wake_mail(&self) {
        if let Some(w) = self.mail_wake.get() {
            w.notify_one();
        }
    }

    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    pub fn config(&self) -> &PostgresConfig {
        &self.config
    }

    /// A cluster-wide line id: later lines have larger ids, whichever instance holds them.
    pub async fn new_line_id(&self) -> Result<u64, StoreError> {
        let client = self.pool.get().await?;
        let id: i64 = client
            .query_one("SELECT nextval('hub_line_ids')", &[])
            .await?
            .get(0);
        Ok(id as u64)
    }

    pub(crate) async fn notify(
        tx: &impl deadpool_postgres::GenericClient,
        payload: String,
    ) -> Result<(), StoreError> {
        tx.execute("SELECT pg_notify($1, $2)", &[&CHANNEL, &payload])
            .await?;
        Ok(())
    }

    /// Records that `peer`'s line `line` is held here with `state`, unless a newer line
    /// of `peer` is already recorded.
    pub async fn line_up(
        &self,
        peer: PeerId,
        line: u64,
        state: LineState,
    ) -> Result<(), StoreError> {
        let blob = postcard::to_allocvec(&state).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let n = tx
            .execute(
                "INSERT INTO hub_lines (peer, instance, line, state) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (peer) DO UPDATE
                 SET instance = excluded.instance, line = excluded.line, state = excluded.state
                 WHERE hub_lines.line <= excluded.line",
                &[&peer.to_string(), &&*self.instance, &(line as i64), &blob],
            )
            .await?;
        if n > 0 {
            Self::notify(
                &tx,
                Event::Line { peer, line, state }.payload(&self.instance),
            )
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// `peer`'s line `line` ended: its row and watch list go.
    pub async fn line_down(&self, peer: PeerId, line: u64) -> Result<(), StoreError> {
        let text = peer.to_string();
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let n = tx
            .execute(
                "DELETE FROM hub_lines WHERE peer = $1 AND line = $2",
                &[&text, &(line as i64)],
            )
            .await?;
        if n > 0 {
            tx.execute("DELETE FROM hub_watches WHERE watcher = $1", &[&text])
                .await?;
            Self::notify(&tx, Event::Down { peer, line }.payload(&self.instance)).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// `watcher`'s whole watch list is now `targets`.
    pub async fn set_watches(
        &self,
        watcher: PeerId,
        targets: Vec<PeerId>,
    ) -> Result<(), StoreError> {
        let text = watcher.to_string();
        let targets: Vec<String> = targets.iter().map(|t| t.to_string()).collect();
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        tx.execute("DELETE FROM hub_watches WHERE watcher = $1", &[&text])
            .await?;
        tx.execute(
            "INSERT INTO hub_watches (watcher, target) SELECT $1, unnest($2::TEXT[])",
            &[&text, &targets],
        )
        .await?;
        Self::notify(&tx, Event::Watches { watcher }.payload(&self.instance)).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Passes a connection signal to the instance holding `to`'s line.
    pub async fn signal(
        &self,
        to: PeerId,
        from: PeerId,
        observed: Option<SocketAddr>,
        body: Vec<u8>,
    ) -> Result<(), StoreError> {
        let client = self.pool.get().await?;
        let event = Event::Signal {
            to,
            from,
            observed,
            body,
        };
        Self::notify(&client, event.payload(&self.instance)).await
    }

    /// Stamps this instance's heartbeat; true when the row was missing (first start, or
    /// another instance took this one for dead: its lines must be recorded again).
    pub(crate) async fn heartbeat(&self) -> Result<bool, StoreError> {
        if self.leaving.load(std::sync::atomic::Ordering::SeqCst) {
            return Ok(false);
        }
        let addresses = Some(self.addresses.lock().unwrap().clone()).filter(|a| !a.is_empty());
        let client = self.pool.get().await?;
        // A heartbeat that read the addresses before they were set can land after the one
        // that set them (the beat task starts before the endpoint is bound): it must not
        // erase them, or hops to this instance fail ("recorded no address") until the next
        // beat. Addresses are set once, so a stamp without them keeps the recorded ones.
        let inserted: bool = client
            .query_one(
                "INSERT INTO hub_instances (id, heartbeat, addresses) VALUES ($1, now(), $2)
                 ON CONFLICT (id) DO UPDATE SET heartbeat = now(),
                     addresses = COALESCE(excluded.addresses, hub_instances.addresses)
                 RETURNING (xmax = 0)",
                &[&&*self.instance, &addresses],
            )
            .await?
            .get(0);
        Ok(inserted)
    }

    /// This instance stops: its lines end and the others hear it gone.
    pub async fn leave(&self) -> Result<(), StoreError> {
        self.leaving
            .store(true, std::sync::atomic::Ordering::SeqCst);
        self.bury(&self.instance).await
    }

    /// Ends every line of `instance` and announces it gone, in one transaction.
    async fn bury(&self, instance: &str) -> Result<(), StoreError> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        tx.execute(
            "DELETE FROM hub_watches WHERE watcher IN
             (SELECT peer FROM hub_lines WHERE instance = $1)",
            &[&instance],
        )
        .await?;
        tx.execute("DELETE FROM hub_lines WHERE instance = $1", &[&instance])
            .await?;
        tx.execute("DELETE FROM hub_relays WHERE instance = $1", &[&instance])
            .await?;
        tx.execute("DELETE FROM hub_instances WHERE id = $1", &[&instance])
            .await?;
        let gone = Event::Gone {
            instance: instance.to_string(),
        };
        Self::notify(&tx, gone.payload(&self.instance)).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Instances silent past the timeout (each taken by one reaper: `SKIP LOCKED`).
    pub(crate) async fn reap(&self) -> Result<Vec<String>, StoreError> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let rows = tx
            .query(
                "SELECT id FROM hub_instances
                 WHERE heartbeat < now() - make_interval(secs => $1::BIGINT / 1000.0)
                 FOR UPDATE SKIP LOCKED",
                &[&(self.config.instance_timeout_ms as i64)],
            )
            .await?;
        let mut dead = Vec::new();
        for row in rows {
            let id: String = row.get(0);
            tx.execute(
                "DELETE FROM hub_watches WHERE watcher IN
                 (SELECT peer FROM hub_lines WHERE instance = $1)",
                &[&id],
            )
            .await?;
            tx.execute("DELETE FROM hub_lines WHERE instance = $1", &[&id])
                .await?;
            tx.execute("DELETE FROM hub_relays WHERE instance = $1", &[&id])
                .await?;
            tx.execute("DELETE FROM hub_instances WHERE id = $1", &[&id])
                .await?;
            let gone = Event::Gone {
                instance: id.clone(),
            };
            Self::notify(&tx, gone.payload(&self.instance)).await?;
            dead.push(id);
        }
        tx.commit().await?;
        Ok(dead)
    }
}
