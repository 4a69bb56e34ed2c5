//! One hub (one name, one key) whose instances share a PostgreSQL of the test's own
//! (cluster mode), for the cluster and hub directory tests: the database, the instances'
//! data dirs under one temporary root (kept across an instance's restarts), the hub key
//! the first instance made copied to every other, and nodes homed at the instances.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use allpeers_hub_client::{AcceptAll, HubEvent, WatchHolder};
use allpeers_model::PeerId;
use allpeers_net::Address;
use tokio::sync::broadcast::Receiver;

use super::postgres::Postgres;
use super::{HubProc, Node, fast_config, node, wait_event};

/// Every instance stamps its heartbeat this often.
pub const HEARTBEAT_MS: u64 = 200;
/// An instance silent this long is taken for dead (its lines end, its hops are cut).
pub const INSTANCE_TIMEOUT_MS: u64 = 1500;
/// Time a node has to come online at its instance.
const UP: Duration = Duration::from_secs(10);

/// The config of one instance beside its `backend`, given the instance's data dir.
type InstanceConfig = Box<dyn Fn(&Path) -> serde_json::Value + Send + Sync>;

/// A hub whose instances share one test PostgreSQL.
pub struct PgHub {
    pub pg: Postgres,
    root: tempfile::TempDir,
    name: String,
    config: InstanceConfig,
}

impl PgHub {
    /// Starts PostgreSQL for hub `name` (no instance yet); each instance's config file is
    /// `config(its data dir)` with the backend section added.
    pub fn start(
        name: &str,
        config: impl Fn(&Path) -> serde_json::Value + Send + Sync + 'static,
    ) -> PgHub {
        PgHub {
            pg: Postgres::start(),
            root: tempfile::tempdir().unwrap(),
            name: name.into(),
            config: Box::new(config),
        }
    }

    /// Instance `instance` on free loopback ports.
    pub fn instance(&self, instance: &str) -> HubProc {
        let any = "127.0.0.1:0".parse().unwrap();
        self.instance_at(instance, any, any)
    }

    /// Instance `instance` on these loopback addresses (its old ones: a restart); its data
    /// dir is `<root>/<instance>`.
    pub fn instance_at(&self, instance: &str, quic: SocketAddr, tcp: SocketAddr) -> HubProc {
        let dir = self.root.path().join(instance);
        std::fs::create_dir_all(&dir).unwrap();
        let shared_key = self.root.path().join("hub.key");
        if shared_key.exists() {
            std::fs::copy(&shared_key, dir.join("hub.key")).unwrap();
        }
        let mut config = (self.config)(&dir);
        config["backend"] = serde_json::json!({"postgres": {
            "url": self.pg.url(),
            "instance": instance,
            "pool_size": 8,
            "heartbeat_ms": HEARTBEAT_MS,
            "instance_timeout_ms": INSTANCE_TIMEOUT_MS,
        }});
        let path = dir.join("hub.json");
        std::fs::write(&path, config.to_string()).unwrap();
        let hub = HubProc::spawn_named_at(
            &dir,
            &self.name,
            quic,
            tcp,
            &["--config", path.to_str().unwrap()],
        );
        if !shared_key.exists() {
            std::fs::copy(dir.join("hub.key"), &shared_key).unwrap();
        }
        hub
    }

    /// Where the instances' data dirs are.
    pub fn root(&self) -> &Path {
        self.root.path()
    }
}

/// A node homed at `hub`, dialling `at` in this order, accepting every relay; online.
pub async fn online_at(hub: PeerId, at: &[Address]) -> Node {
    let n = node(fast_config(hub, at.to_vec()), Arc::new(AcceptAll)).await;
    assert!(n.hub.wait_online(UP).await, "home line");
    n
}

/// Whether `peer`'s presence turns `online` for the owner of `rx` within `within`.
pub async fn presence_of(
    rx: &mut Receiver<HubEvent>,
    peer: PeerId,
    online: bool,
    within: Duration,
) -> bool {
    wait_event(rx, within, |e| {
        matches!(e, HubEvent::PresenceChanged { peer: p, online: o, .. } if *p == peer && *o == online)
    })
    .await
    .is_some()
}

/// `watcher` watches `target` and sees it online (through its instance's mirror when
/// `target`'s line is at another); its events from before the watch, to wait on more.
pub async fn sees_online(watcher: &Node, target: PeerId) -> Receiver<HubEvent> {
    let mut events = watcher.hub.events();
    watcher.hub.watch(WatchHolder::Contacts, &[target]).await;
    assert!(
        presence_of(&mut events, target, true, UP).await,
        "{target:?} online for {:?}",
        watcher.id()
    );
    events
}
