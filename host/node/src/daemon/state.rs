//! The daemon's shared state and its event bus.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use allpeers_log::LogHandle;
use allpeers_model::PeerId;
use allpeers_model::api::Event;
use allpeers_model::api::methods::IdentityInfo;
use allpeers_net::EndpointConfig;
use allpeers_store::Store;

use super::network::Network;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use crate::identity::NodeIdentity;
use crate::paths::NodePaths;

/// Events buffered for slow subscribers before they start losing them (and are told so).
const EVENT_BACKLOG: usize = 1024;

pub struct Daemon {
    pub paths: NodePaths,
    /// The peer endpoint, once the identity is unlocked.
    pub network: OnceLock<Network>,
    pub net_config: EndpointConfig,
    /// The home hub's client, once online with a hub configured.
    pub hub: OnceLock<allpeers_net::hub::HubClient>,
    /// Reaches peers by the cheapest path that works (direct, callback, punch, relay).
    pub connector: OnceLock<allpeers_net::connector::Connector>,
    pub hub_config: Option<crate::config::HubSection>,
    /// Why the endpoint did not start, if it failed.
    pub net_error: Mutex<Option<String>>,
    /// The resource store. rusqlite is synchronous: callers lock it on the blocking pool.
    pub store: Arc<Mutex<Store>>,
    pub started: Instant,
    pub identity: Mutex<NodeIdentity>,
    pub log: Option<LogHandle>,
    pub shutdown: CancellationToken,
    /// Contacts' presence, the clock and the outbox (`social.rs`).
    pub social: super::social::Social,
    pub discovery: super::discovery::Discovery,
    events: broadcast::Sender<Event>,
    clients: AtomicUsize,
}

impl Daemon {
    pub fn new(
        paths: NodePaths,
        identity: NodeIdentity,
        store: Store,
        net_config: EndpointConfig,
        hub_config: Option<crate::config::HubSection>,
        log: Option<LogHandle>,
        started: Instant,
    ) -> Self {
        let identity_peer = identity.file.peer_id;
        Daemon {
            paths,
            network: OnceLock::new(),
            connector: OnceLock::new(),
            net_config,
            net_error: Mutex::new(None),
            hub: OnceLock::new(),
            hub_config,
            store: Arc::new(Mutex::new(store)),
            started,
            identity: Mutex::new(identity),
            log,
            shutdown: CancellationToken::new(),
            social: super::social::Social::new(&identity_peer),
            discovery: Default::default(),
            events: broadcast::channel(EVENT_BACKLOG).0,
            clients: AtomicUsize::new(0),
        }
    }

    pub fn peer_id(&self) -> PeerId {
        self.identity.lock().expect("identity lock").file.peer_id
    }

    pub fn identity_info(&self) -> IdentityInfo {
        self.identity.lock().expect("identity lock").info()
    }

    pub fn publish(&self, topic: &str, data: serde_json::Value) {
        // No subscribers is fine: events are not stored.
        let _ = self.events.send(Event {
            topic: topic.into(),
            data,
        });
    }

    /// Publishes on the bus what `to_event` makes of each item from `source` (None: nothing),
    /// until the daemon shuts down or the source closes; a lagging source skips what it lost.
    /// Holds the daemon weakly, so the task never keeps it alive.
    pub fn forward_events<E: Clone + Send + 'static>(
        self: &Arc<Self>,
        mut source: broadcast::Receiver<E>,
        mut to_event: impl FnMut(&Arc<Daemon>, E) -> Option<(&'static str, serde_json::Value)>
        + Send
        + 'static,
    ) {
        let weak = Arc::downgrade(self);
        let shutdown = self.shutdown.clone();
        tokio::spawn(async move {
            loop {
                let item = tokio::select! {
                    _ = shutdown.cancelled() => break,
                    item = source.recv() => match item {
                        Ok(item) => item,
                        Err(broadcast::error::RecvError::Lagged(_)) => continue,
                        Err(broadcast::error::RecvError::Closed) => break,
                    },
                };
                let Some(daemon) = weak.upgrade() else { break };
                if let Some((topic, data)) = to_event(&daemon, item) {
                    daemon.publish(topic, data);
                }
            }
        });
    }

    pub fn subscribe_events(&self) -> broadcast::Receiver<Event> {
        self.events.subscribe()
    }

    pub fn client_joined(&self) -> usize {
        self.clients.fetch_add(1, Ordering::SeqCst) + 1
    }

    pub fn client_left(&self) -> usize {
        self.clients.fetch_sub(1, Ordering::SeqCst) - 1
    }

    pub fn clients(&self) -> usize {
        self.clients.load(Ordering::SeqCst)
    }
}
