//! The daemon's shared state and its event bus.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use allpeers_log::LogHandle;
use allpeers_model::PeerId;
use allpeers_model::api::methods::IdentityInfo;
use allpeers_model::api::{ErrorCode, Event, RpcError};
use allpeers_net::EndpointConfig;
use allpeers_store::Store;

use crate::net::parts::Network;
use crate::social::state::Social;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use crate::identity::NodeIdentity;
use crate::paths::NodePaths;

/// What a write hook answers: `None` when the write is not its business.
pub type HookReply<'a> = std::pin::Pin<
    Box<dyn std::future::Future<Output = Option<Result<serde_json::Value, RpcError>>> + Send + 'a>,
>;
/// Asked by the resources area before the store takes a write (`resources.update` /
/// `delete`, `lists.insert` / `remove`): a shared resource's edits become signed ops.
pub type WriteHook = for<'a> fn(&'a Arc<Daemon>, &'a str, &'a serde_json::Value) -> HookReply<'a>;

/// Events buffered for slow subscribers before they start losing them (and are told so).
const EVENT_BACKLOG: usize = 1024;

pub struct Daemon {
    pub paths: NodePaths,
    /// The network, once the identity is unlocked and the endpoint started.
    pub network: OnceLock<Network>,
    pub net_config: EndpointConfig,
    pub hub_config: Option<crate::config::HubSection>,
    pub discovery_config: crate::config::DiscoverySection,
    /// Why the endpoint did not start, if it failed.
    pub net_error: Mutex<Option<String>>,
    /// The resource store. rusqlite is synchronous: callers lock it on the blocking pool.
    pub store: Arc<Mutex<Store>>,
    pub started: Instant,
    pub identity: Mutex<NodeIdentity>,
    pub log: Option<LogHandle>,
    pub shutdown: CancellationToken,
    /// Contacts' presence, the clock and the outbox.
    pub social: Social,
    /// The notices already mailed to contacts (kept in the store).
    pub mail: crate::mail::state::MailState,
    /// The download manager once started, or why it did not start.
    pub transfers: OnceLock<Result<crate::transfers::state::Transfers, String>>,
    /// The media catalog's worker pool and jobs.
    pub media: crate::media::state::Media,
    /// The replicated shares held, their sync sessions and pumps.
    pub shares: crate::shares::state::Shares,
    /// See [`WriteHook`]; set once at start (`daemon::run`).
    pub write_hook: OnceLock<WriteHook>,
    /// Web apps' grants and their rate limit.
    pub apps: crate::apps::state::Apps,
    /// Files being brought in by clients in chunks (`files.import_*`).
    pub imports: crate::files::imports::Imports,
    /// Which content hashes each share names: the files service's entitlement check.
    pub file_hashes: Mutex<crate::files::rules::HashIndex>,
    /// Which shared files arrive by themselves (`files.auto_download.*`).
    pub files_auto: crate::files::policy::AutoDownloads,
    events: broadcast::Sender<Event>,
    clients: AtomicUsize,
}

impl Daemon {
    pub fn new(
        paths: NodePaths,
        identity: NodeIdentity,
        store: Store,
        net_config: EndpointConfig,
        config: &crate::config::NodeConfig,
        log: Option<LogHandle>,
        started: Instant,
    ) -> Self {
        let identity_peer = identity.file.peer_id;
        let shares = crate::shares::state::Shares::load(&store);
        let apps = crate::apps::state::Apps::load(&store);
        let store = Arc::new(Mutex::new(store));
        Daemon {
            paths,
            network: OnceLock::new(),
            net_config,
            net_error: Mutex::new(None),
            hub_config: config.hub.clone(),
            discovery_config: config.discovery.clone(),
            shares,
            apps,
            imports: Default::default(),
            file_hashes: Default::default(),
            files_auto: Default::default(),
            write_hook: OnceLock::new(),
            mail: crate::mail::state::MailState::load(&store),
            store,
            started,
            identity: Mutex::new(identity),
            log,
            shutdown: CancellationToken::new(),
            social: Social::new(&identity_peer),
            transfers: OnceLock::new(),
            media: crate::media::state::Media::for_this_binary(),
            events: broadcast::channel(EVENT_BACKLOG).0,
            clients: AtomicUsize::new(0),
        }
    }

    /// The home hub's client, once online with a hub configured.
    pub fn hub(&self) -> Option<&allpeers_hub_client::HubClient> {
        self.network.get()?.hub.as_ref()
    }

    /// The connector, once online.
    pub fn connector(&self) -> Option<&allpeers_nat::connector::Connector> {
        Some(&self.network.get()?.connector)
    }

    /// Runs `work` on the store on the blocking pool (rusqlite is synchronous); store errors
    /// become the API's resource error codes.
    pub async fn on_store<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Store) -> Result<T, allpeers_store::StoreError> + Send + 'static,
    ) -> Result<T, RpcError> {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || work(&mut store.lock().expect("store lock")))
            .await
            .map_err(|e| RpcError::new(ErrorCode::Internal, e.to_string()))?
            .map_err(|e| {
                let api = allpeers_store::api::ApiError::from(e);
                RpcError {
                    code: i32::try_from(api.code).unwrap_or(ErrorCode::Internal.code()),
                    message: api.message,
                    data: api.data,
                }
            })
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
