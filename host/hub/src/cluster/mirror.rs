//! The mirror: the other instances' lines and watch lists applied to this instance's
//! presence picture, and the tasks that keep it current (the listener, the heartbeat and
//! reaper).

use std::collections::HashSet;
use std::sync::{Arc, Weak};
use std::time::Duration;

use allpeers_hub_client::proto::PresenceDown;
use allpeers_model::PeerId;
use futures::StreamExt;
use tokio::sync::mpsc;

use crate::cluster::Cluster;
use crate::cluster::event::{CHANNEL, Event, LineState};
use crate::server::{At, Core, Online};
use crate::store::StoreError;
use crate::store::postgres::pg_config;

/// Notifications queued between the listening connection and the task applying them.
const QUEUE: usize = 4096;
/// Wait before the listening connection is opened again after it failed.
const RELISTEN_BACKOFF: Duration = Duration::from_secs(1);

/// Starts the listener (events -> the mirror) and the heartbeat/reaper; both end with the
/// hub (they hold it weakly).
pub fn run(core: &Arc<Core>, cluster: Arc<Cluster>) {
    tokio::spawn(listen(Arc::downgrade(core), cluster.clone()));
    tokio::spawn(beat(Arc::downgrade(core), cluster));
}

async fn beat(core: Weak<Core>, cluster: Arc<Cluster>) {
    let mut tick =
        tokio::time::interval(Duration::from_millis(cluster.config().heartbeat_ms.max(50)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(core) = core.upgrade() else { return };
        match cluster.heartbeat().await {
            Ok(true) => {
                tracing::warn!(
                    instance = %cluster.instance(),
                    "this instance was taken for dead: recording its lines again"
                );
                core.republish(&cluster).await;
            }
            Ok(false) => {}
            Err(e) => tracing::warn!("heartbeat not stored: {e}"),
        }
        match cluster.reap().await {
            Ok(dead) => {
                for id in &dead {
                    tracing::warn!(instance = %id, "instance silent past the timeout: its lines ended");
                    core.apply_gone(id);
                }
                if !dead.is_empty() {
                    cluster.wake_mail();
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
    let (client, mut connection) = pg_config(cluster.config())?
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
        if *origin == **cluster.instance() {
            continue;
        }
        core.apply(cluster, &origin, event).await;
    }
    pump.abort();
    Ok(())
}

impl Core {
    async fn apply(self: &Arc<Self>, cluster: &Cluster, origin: &str, event: Event) {
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
            Event::Gone { instance } => {
                self.apply_gone(&instance);
                // Mails the instance had in flight are free now.
                cluster.wake_mail();
            }
            Event::MailQueued => cluster.wake_mail(),
            Event::RelayOffer {
                ticket,
                from,
                to,
                instance,
            } if instance == **cluster.instance() => {
                self.offer_hop(ticket, from, to, origin.into());
            }
            Event::RelayOffer { .. } => {}
            Event::RelayAnswer { ticket, accept } => self.relay_answered(ticket, accept),
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
        let status = state.status.bounded();
        // Watchers hear only news (a resync re-reads lines they already know); a guest line
        // is not presence, and a home line that a guest line replaced ended for them.
        let replaced_home = p.online.get(&peer).is_some_and(|o| !o.guest);
        let news = !p
            .online
            .get(&peer)
            .is_some_and(|o| o.line == line && o.status == status && o.guest == state.guest);
        // A line of this peer held here is older: the peer moved; dropping its sender ends it.
        p.online.insert(
            peer,
            Online {
                line,
                at: At::Instance(instance.into()),
                observed: state.observed,
                addresses,
                accepts_relays: state.accepts_relays,
                status,
                guest: state.guest,
            },
        );
        if news && (!state.guest || replaced_home) {
            self.announce(&p, &peer);
        }
    }

    fn apply_down(&self, peer: PeerId, line: u64) {
        let mut p = self.presence.lock().unwrap();
        if let Some(o) = p.online.get(&peer).filter(|o| o.line == line) {
            let guest = o.guest;
            p.online.remove(&peer);
            if !guest {
                self.announce(&p, &peer);
            }
            Self::forget_wants(&mut p, &peer);
        }
    }

    pub(crate) fn apply_gone(&self, instance: &str) {
        self.cut_hops(instance);
        let mut p = self.presence.lock().unwrap();
        let gone: Vec<(PeerId, bool)> = p
            .online
            .iter()
            .filter(|(_, o)| matches!(&o.at, At::Instance(i) if &**i == instance))
            .map(|(peer, o)| (*peer, o.guest))
            .collect();
        for (peer, guest) in gone {
            p.online.remove(&peer);
            if !guest {
                self.announce(&p, &peer);
            }
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
        let client = cluster.pool().get().await?;
        let rows = client
            .query(
                "SELECT peer, instance, line, state FROM hub_lines WHERE instance <> $1",
                &[&&**cluster.instance()],
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
                &[&&**cluster.instance()],
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
                            guest: o.guest,
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
    let client = cluster.pool().get().await?;
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
