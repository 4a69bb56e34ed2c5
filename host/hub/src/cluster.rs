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
//! Relays are per instance: a relay splices two streams in one process, so both ends must
//! hold their lines at the same instance; otherwise the request is refused with
//! `RELAY_REFUSED` saying so (the connector then tries its other ways).

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::{Arc, Weak};
use std::time::Duration;

use allpeers_hub_client::proto::{PeerStatus, PresenceDown};
use allpeers_model::PeerId;
use allpeers_net::Address;
use deadpool_postgres::Pool;
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::server::{At, Core, Online};
use crate::store::StoreError;
use crate::store::postgres::{PgStore, PostgresConfig, pg_config};

/// The one `LISTEN`/`NOTIFY` channel of a hub's instances.
pub const CHANNEL: &str = "allpeers_hub";
/// PostgreSQL refuses payloads of 8000 bytes or more.
pub const MAX_PAYLOAD: usize = 7999;
/// Notifications queued between the listening connection and the task applying them.
const QUEUE: usize = 4096;
/// Wait before the listening connection is opened again after it failed.
const RELISTEN_BACKOFF: Duration = Duration::from_secs(1);

/// What a presence line shows of its peer (the mirror's copy of a remote line).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LineState {
    pub observed: SocketAddr,
    pub addresses: Vec<Address>,
    pub accepts_relays: bool,
    pub status: PeerStatus,
}

/// One change, as sent on [`CHANNEL`] (postcard, then base64: payloads are text).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Event {
    /// `peer`'s line `line` is up at the sender, or its state changed.
    Line {
        peer: PeerId,
        line: u64,
        state: LineState,
    },
    /// `peer`'s line `line` ended.
    Down { peer: PeerId, line: u64 },
    /// `watcher`'s watch list changed (read it from `hub_watches`: a list of 4096 peers
    /// does not fit a payload).
    Watches { watcher: PeerId },
    /// A letter waits for `to` (sent in the deposit's transaction).
    MailWaiting { to: PeerId },
    /// A connection signal for `to`, whose line is held by another instance.
    Signal {
        to: PeerId,
        from: PeerId,
        observed: Option<SocketAddr>,
        body: Vec<u8>,
    },
    /// An instance died (or restarted): its lines are gone.
    Gone { instance: String },
}

#[derive(Serialize, Deserialize)]
struct Envelope {
    origin: String,
    event: Event,
}

impl Event {
    /// The `NOTIFY` payload, from instance `origin`. Bounded: signals are at most
    /// [`allpeers_hub_client::proto::MAX_SIGNAL`] bytes, states at most 16 addresses and
    /// a bounded status (a test checks the largest fit [`MAX_PAYLOAD`]).
    pub fn payload(self, origin: &str) -> String {
        let envelope = Envelope {
            origin: origin.to_string(),
            event: self,
        };
        let bytes = postcard::to_allocvec(&envelope).unwrap_or_default();
        data_encoding::BASE64.encode(&bytes)
    }

    fn parse(payload: &str) -> Option<(String, Event)> {
        if payload.len() > MAX_PAYLOAD {
            return None;
        }
        let bytes = data_encoding::BASE64.decode(payload.as_bytes()).ok()?;
        let e: Envelope = postcard::from_bytes(&bytes).ok()?;
        Some((e.origin, e.event))
    }
}

/// This instance's handle on the cluster tables.
pub struct Cluster {
    instance: Arc<str>,
    pool: Pool,
    config: PostgresConfig,
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
            pool: store.pool().clone(),
            config,
        });
        cluster.bury(&cluster.instance).await?;
        cluster.heartbeat().await?;
        Ok(cluster)
    }

    pub fn instance(&self) -> &Arc<str> {
        &self.instance
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

    async fn notify(
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
    async fn heartbeat(&self) -> Result<bool, StoreError> {
        let client = self.pool.get().await?;
        let inserted: bool = client
            .query_one(
                "INSERT INTO hub_instances (id, heartbeat) VALUES ($1, now())
                 ON CONFLICT (id) DO UPDATE SET heartbeat = now()
                 RETURNING (xmax = 0)",
                &[&&*self.instance],
            )
            .await?
            .get(0);
        Ok(inserted)
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
    async fn reap(&self) -> Result<Vec<String>, StoreError> {
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

/// Starts the listener (events -> the mirror) and the heartbeat/reaper; both end with the
/// hub (they hold it weakly).
pub fn run(core: &Arc<Core>, cluster: Arc<Cluster>) {
    tokio::spawn(listen(Arc::downgrade(core), cluster.clone()));
    tokio::spawn(beat(Arc::downgrade(core), cluster));
}

async fn beat(core: Weak<Core>, cluster: Arc<Cluster>) {
    let mut tick =
        tokio::time::interval(Duration::from_millis(cluster.config.heartbeat_ms.max(50)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(core) = core.upgrade() else { return };
        match cluster.heartbeat().await {
            Ok(true) => {
                tracing::warn!(
                    instance = %cluster.instance,
                    "this instance was taken for dead: recording its lines again"
                );
                core.republish(&cluster).await;
            }
            Ok(false) => {}
            Err(e) => tracing::warn!("heartbeat not stored: {e}"),
        }
        match cluster.reap().await {
            Ok(dead) => {
                for id in dead {
                    tracing::warn!(instance = %id, "instance silent past the timeout: its lines ended");
                    core.apply_gone(&id);
                }
            }
            Err(e) => tracing::warn!("instance reaper: {e}"),
        }
    }
}

async fn listen(core: Weak<Core>, cluster: Arc<Cluster>) {
    loop {
        if let Err(e) = listen_once(&core, &cluster).await {
            tracing::warn!("cluster listener: {e}");
        }
        if core.strong_count() == 0 {
            return;
        }
        tokio::time::sleep(RELISTEN_BACKOFF).await;
    }
}

/// One listening connection: `LISTEN`, read the tables, then apply events until the
/// connection fails.
async fn listen_once(core: &Weak<Core>, cluster: &Arc<Cluster>) -> Result<(), StoreError> {
    let (client, mut connection) = pg_config(&cluster.config)?
        .connect(tokio_postgres::NoTls)
        .await?;
    let (tx, mut rx) = mpsc::channel::<String>(QUEUE);
    let pump = tokio::spawn(async move {
        let mut messages = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(message) = messages.next().await {
            match message {
                Ok(tokio_postgres::AsyncMessage::Notification(n)) => {
                    if tx.send(n.payload().to_string()).await.is_err() {
                        return;
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!("cluster listener connection: {e}");
                    return;
                }
            }
        }
    });
    client.batch_execute(&format!("LISTEN {CHANNEL}")).await?;
    {
        let Some(core) = core.upgrade() else {
            return Ok(());
        };
        core.resync(cluster).await?;
    }
    while let Some(payload) = rx.recv().await {
        let Some(core) = core.upgrade() else { break };
        let Some((origin, event)) = Event::parse(&payload) else {
            tracing::warn!("cluster event not understood ({} bytes)", payload.len());
            continue;
        };
        if *origin == *cluster.instance {
            continue;
        }
        core.apply(cluster, &origin, event).await;
    }
    pump.abort();
    Ok(())
}

// ---- the mirror: remote state applied to this instance's presence picture ----

impl Core {
    async fn apply(&self, cluster: &Cluster, origin: &str, event: Event) {
        match event {
            Event::Line { peer, line, state } => self.apply_line(peer, origin, line, state),
            Event::Down { peer, line } => self.apply_down(peer, line),
            Event::Watches { watcher } => match read_watches(cluster, &watcher).await {
                Ok(targets) => self.apply_watches(watcher, targets),
                Err(e) => tracing::warn!("watch list of {watcher:?} not read: {e}"),
            },
            Event::MailWaiting { to } => {
                self.tell_here(&to, PresenceDown::MailWaiting { count: 1 })
            }
            Event::Signal {
                to,
                from,
                observed,
                body,
            } => self.tell_here(
                &to,
                PresenceDown::Signal {
                    from,
                    observed,
                    body,
                },
            ),
            Event::Gone { instance } => self.apply_gone(&instance),
        }
    }

    /// Tells `to` if its line is held here.
    fn tell_here(&self, to: &PeerId, msg: PresenceDown) {
        let p = self.presence.lock().unwrap();
        Self::tell(&p, to, msg);
    }

    fn apply_line(&self, peer: PeerId, instance: &str, line: u64, state: LineState) {
        let mut p = self.presence.lock().unwrap();
        if p.online.get(&peer).is_some_and(|o| o.line > line) {
            return;
        }
        let mut addresses = state.addresses;
        addresses.truncate(allpeers_hub_client::proto::MAX_ADDRESSES);
        // A line of this peer held here is older: the peer moved; dropping its sender ends it.
        p.online.insert(
            peer,
            Online {
                line,
                at: At::Instance(instance.into()),
                observed: state.observed,
                addresses,
                accepts_relays: state.accepts_relays,
                status: state.status.bounded(),
            },
        );
        self.announce(&p, &peer);
    }

    fn apply_down(&self, peer: PeerId, line: u64) {
        let mut p = self.presence.lock().unwrap();
        if p.online.get(&peer).is_some_and(|o| o.line == line) {
            p.online.remove(&peer);
            self.announce(&p, &peer);
            Self::forget_wants(&mut p, &peer);
        }
    }

    pub(crate) fn apply_gone(&self, instance: &str) {
        let mut p = self.presence.lock().unwrap();
        let gone: Vec<PeerId> = p
            .online
            .iter()
            .filter(|(_, o)| matches!(&o.at, At::Instance(i) if &**i == instance))
            .map(|(peer, _)| *peer)
            .collect();
        for peer in gone {
            p.online.remove(&peer);
            self.announce(&p, &peer);
            Self::forget_wants(&mut p, &peer);
        }
    }

    /// A remote watcher's list is now `targets`: the same rules as a local Watch/Unwatch
    /// (they tell only the lines held here).
    fn apply_watches(&self, watcher: PeerId, targets: HashSet<PeerId>) {
        let old = self
            .presence
            .lock()
            .unwrap()
            .wants
            .get(&watcher)
            .cloned()
            .unwrap_or_default();
        let removed: Vec<PeerId> = old.difference(&targets).copied().collect();
        let added: Vec<PeerId> = targets.difference(&old).copied().collect();
        if !removed.is_empty() {
            self.unwatch(watcher, removed);
        }
        if !added.is_empty() {
            self.watch(watcher, added);
        }
    }

    /// Reads the other instances' lines and watch lists and makes the mirror match them
    /// (at start and whenever the listening connection was lost: events may have been
    /// missed).
    async fn resync(&self, cluster: &Cluster) -> Result<(), StoreError> {
        let client = cluster.pool.get().await?;
        let rows = client
            .query(
                "SELECT peer, instance, line, state FROM hub_lines WHERE instance <> $1",
                &[&&*cluster.instance],
            )
            .await?;
        let mut lines = Vec::with_capacity(rows.len());
        for row in rows {
            let (Ok(peer), Ok(state)) = (
                row.get::<_, &str>(0).parse::<PeerId>(),
                postcard::from_bytes::<LineState>(row.get::<_, &[u8]>(3)),
            ) else {
                tracing::warn!("a corrupt presence line row skipped");
                continue;
            };
            lines.push((
                peer,
                row.get::<_, String>(1),
                row.get::<_, i64>(2) as u64,
                state,
            ));
        }
        let rows = client
            .query(
                "SELECT w.watcher, w.target FROM hub_watches w
                 JOIN hub_lines l ON l.peer = w.watcher WHERE l.instance <> $1",
                &[&&*cluster.instance],
            )
            .await?;
        let mut watches: std::collections::HashMap<PeerId, HashSet<PeerId>> = Default::default();
        for row in rows {
            if let (Ok(w), Ok(t)) = (
                row.get::<_, &str>(0).parse::<PeerId>(),
                row.get::<_, &str>(1).parse::<PeerId>(),
            ) {
                watches.entry(w).or_default().insert(t);
            }
        }
        // Remote lines the tables no longer hold ended while we were not listening.
        let live: HashSet<(PeerId, u64)> = lines.iter().map(|(p, _, l, _)| (*p, *l)).collect();
        let stale: Vec<(PeerId, u64)> = self
            .presence
            .lock()
            .unwrap()
            .online
            .iter()
            .filter(|(peer, o)| {
                matches!(o.at, At::Instance(_)) && !live.contains(&(**peer, o.line))
            })
            .map(|(peer, o)| (*peer, o.line))
            .collect();
        for (peer, line) in stale {
            self.apply_down(peer, line);
        }
        for (peer, instance, line, state) in lines {
            self.apply_line(peer, &instance, line, state);
        }
        for (watcher, targets) in watches {
            self.apply_watches(watcher, targets);
        }
        Ok(())
    }

    /// Records this instance's lines and watch lists again (after another instance took
    /// this one for dead and removed them).
    async fn republish(&self, cluster: &Cluster) {
        let (lines, wants) = {
            let p = self.presence.lock().unwrap();
            let lines: Vec<(PeerId, u64, LineState)> = p
                .online
                .iter()
                .filter(|(_, o)| matches!(o.at, At::Here(_)))
                .map(|(peer, o)| {
                    (
                        *peer,
                        o.line,
                        LineState {
                            observed: o.observed,
                            addresses: o.addresses.clone(),
                            accepts_relays: o.accepts_relays,
                            status: o.status.clone(),
                        },
                    )
                })
                .collect();
            let wants: Vec<(PeerId, Vec<PeerId>)> = lines
                .iter()
                .filter_map(|(peer, _, _)| {
                    p.wants
                        .get(peer)
                        .map(|w| (*peer, w.iter().copied().collect()))
                })
                .collect();
            (lines, wants)
        };
        for (peer, line, state) in lines {
            if let Err(e) = cluster.line_up(peer, line, state).await {
                tracing::warn!(?peer, "line not recorded again: {e}");
            }
        }
        for (watcher, targets) in wants {
            if let Err(e) = cluster.set_watches(watcher, targets).await {
                tracing::warn!(?watcher, "watch list not recorded again: {e}");
            }
        }
    }
}

async fn read_watches(cluster: &Cluster, watcher: &PeerId) -> Result<HashSet<PeerId>, StoreError> {
    let client = cluster.pool.get().await?;
    let rows = client
        .query(
            "SELECT target FROM hub_watches WHERE watcher = $1",
            &[&watcher.to_string()],
        )
        .await?;
    Ok(rows
        .iter()
        .filter_map(|r| r.get::<_, &str>(0).parse().ok())
        .take(crate::server::MAX_WATCHES_PER_PEER)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use allpeers_hub_client::proto::{MAX_ADDRESSES, MAX_SIGNAL, MAX_STATUS_TEXT};
    use allpeers_net::Identity;

    #[test]
    fn the_largest_events_fit_a_notify_payload() {
        let peer = Identity::generate().peer_id();
        let observed: SocketAddr = "[2001:db8::1]:65535".parse().unwrap();
        let instance = "i".repeat(64);
        let signal = Event::Signal {
            to: peer,
            from: peer,
            observed: Some(observed),
            body: vec![0xff; MAX_SIGNAL],
        }
        .payload(&instance);
        let state = LineState {
            observed,
            addresses: vec![Address::quic(observed); MAX_ADDRESSES],
            accepts_relays: true,
            status: PeerStatus {
                text: "\u{10ffff}".repeat(MAX_STATUS_TEXT / 4),
                ..PeerStatus::default()
            },
        };
        let line = Event::Line {
            peer,
            line: u64::MAX,
            state,
        }
        .payload(&instance);
        for p in [signal, line] {
            assert!(p.len() <= MAX_PAYLOAD, "{} bytes", p.len());
            assert!(Event::parse(&p).is_some());
        }
        assert!(Event::parse(&"A".repeat(MAX_PAYLOAD + 1)).is_none());
        assert!(Event::parse("not base64!").is_none());
    }
}
