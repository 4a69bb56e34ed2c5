//! The local API's methods. Each handler takes typed params and returns a JSON result or
//! an [`RpcError`]; this module maps names to handlers and params errors to `-32602`.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use allpeers_model::api::Event;
use allpeers_model::api::methods::{self as m, topics};
use allpeers_model::api::{API_VERSION, ErrorCode, Request, Response, RpcError};
use allpeers_net::IdentityError;
use allpeers_store::SubscriptionId;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tokio::sync::{mpsc, watch};

use super::resources;

use super::state::Daemon;

/// What the daemon knows about one client.
pub struct Session {
    client: Mutex<Option<String>>,
    events: EventSink,
    store_subscriptions: Mutex<Vec<SubscriptionId>>,
}

/// Events meant for one client only (its resource subscriptions), bounded: when the client
/// does not keep up, events are counted as dropped instead of queued without end.
#[derive(Clone)]
pub struct EventSink {
    queue: mpsc::Sender<Event>,
    dropped: Arc<AtomicU64>,
}

impl EventSink {
    pub fn send(&self, event: Event) {
        if self.queue.try_send(event).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Events lost since the last call.
    pub fn take_dropped(&self) -> u64 {
        self.dropped.swap(0, Ordering::Relaxed)
    }
}

impl Session {
    pub fn new(queue: mpsc::Sender<Event>) -> Self {
        Session {
            client: Mutex::new(None),
            events: EventSink {
                queue,
                dropped: Arc::default(),
            },
            store_subscriptions: Mutex::new(Vec::new()),
        }
    }

    pub fn event_sink(&self) -> EventSink {
        self.events.clone()
    }

    pub fn remember_subscription(&self, id: SubscriptionId) {
        self.store_subscriptions
            .lock()
            .expect("session lock")
            .push(id);
    }

    /// False if the subscription is not this client's.
    pub fn forget_subscription(&self, id: SubscriptionId) -> bool {
        let mut subscriptions = self.store_subscriptions.lock().expect("session lock");
        let before = subscriptions.len();
        subscriptions.retain(|s| *s != id);
        subscriptions.len() != before
    }

    pub fn take_subscriptions(&self) -> Vec<SubscriptionId> {
        std::mem::take(&mut *self.store_subscriptions.lock().expect("session lock"))
    }

    pub fn has_said_hello(&self) -> bool {
        self.client.lock().expect("session lock").is_some()
    }

    pub fn client_name(&self) -> String {
        self.client
            .lock()
            .expect("session lock")
            .clone()
            .unwrap_or_else(|| "(before hello)".into())
    }
}

/// Methods that take long enough (CPU or waiting) to run beside the session rather than
/// hold up the client's next requests.
pub fn is_slow(method: &str) -> bool {
    matches!(method, m::IDENTITY_UNLOCK)
}

pub async fn handle(
    daemon: &Arc<Daemon>,
    session: &Session,
    subscriptions: &watch::Sender<BTreeSet<String>>,
    request: Request,
) -> Response {
    let id = request.id.clone();
    let result = if request.method != m::HELLO && !session.has_said_hello() {
        Err(RpcError::new(
            ErrorCode::HelloRequired,
            format!("call \"hello\" before \"{}\"", request.method),
        ))
    } else {
        route(daemon, session, subscriptions, request).await
    };
    match result {
        Ok(value) => Response::ok(id, value),
        Err(error) => Response::err(id, error),
    }
}

async fn route(
    daemon: &Arc<Daemon>,
    session: &Session,
    subscriptions: &watch::Sender<BTreeSet<String>>,
    request: Request,
) -> Result<Value, RpcError> {
    let params = request.params;
    match request.method.as_str() {
        m::HELLO => hello(daemon, session, parse(params)?),
        m::PING => Ok(params),
        m::STATUS_GET => Ok(to_value(m::StatusResult {
            version: env!("CARGO_PKG_VERSION").into(),
            pid: std::process::id(),
            uptime_ms: daemon.started.elapsed().as_millis() as u64,
            data_dir: daemon.paths.data_dir.display().to_string(),
            socket: daemon.paths.socket.display().to_string(),
            clients: daemon.clients(),
            identity: daemon.identity_info(),
        })),
        m::IDENTITY_GET => Ok(to_value(daemon.identity_info())),
        m::IDENTITY_UNLOCK => unlock(daemon, parse(params)?).await,
        m::EVENTS_SUBSCRIBE => {
            let p: m::SubscribeParams = parse(params)?;
            check_topics(&p.topics)?;
            subscriptions.send_modify(|set| set.extend(p.topics));
            Ok(to_value(m::SubscribeResult {
                topics: subscriptions.borrow().iter().cloned().collect(),
            }))
        }
        m::EVENTS_UNSUBSCRIBE => {
            let p: m::SubscribeParams = parse(params)?;
            subscriptions.send_modify(|set| set.retain(|t| !p.topics.contains(t)));
            Ok(to_value(m::SubscribeResult {
                topics: subscriptions.borrow().iter().cloned().collect(),
            }))
        }
        m::LOG_GET => {
            let log = daemon
                .log
                .as_ref()
                .ok_or_else(|| RpcError::new(ErrorCode::Internal, "logging is not set up"))?;
            Ok(to_value(m::LogInfo {
                filter: log.filter(),
                dir: log.dir().display().to_string(),
            }))
        }
        m::LOG_SET => {
            let p: m::LogSetParams = parse(params)?;
            let log = daemon
                .log
                .as_ref()
                .ok_or_else(|| RpcError::new(ErrorCode::Internal, "logging is not set up"))?;
            log.set_filter(&p.filter)
                .map_err(|e| RpcError::new(ErrorCode::InvalidParams, e.to_string()))?;
            let info = m::LogInfo {
                filter: log.filter(),
                dir: log.dir().display().to_string(),
            };
            daemon.publish(topics::LOG_CHANGED, to_value(&info));
            Ok(to_value(info))
        }
        m::NET_STATUS => Ok(super::network::status(daemon)),
        m::NET_CONNECT
        | m::HUB_REGISTER
        | m::HUB_RESOLVE
        | m::HUB_WATCH
        | m::HUB_UNWATCH
        | m::HUB_RELAY => super::hub::handle(daemon, &request.method, params).await,
        m::DAEMON_SHUTDOWN => {
            allpeers_log::flesh!(client = session.client_name(), "shutdown requested");
            daemon.shutdown.cancel();
            Ok(json!({"stopping": true}))
        }
        method if super::social::is_social_method(method) => {
            super::social::handle(daemon, method, params).await
        }
        method if resources::is_resource_method(method) => {
            resources::handle(daemon, session, method, params).await
        }
        other => Err(RpcError::new(
            ErrorCode::MethodNotFound,
            format!("unknown method \"{other}\""),
        )),
    }
}

fn hello(daemon: &Daemon, session: &Session, params: m::HelloParams) -> Result<Value, RpcError> {
    if params.api_version != API_VERSION {
        return Err(RpcError::new(
            ErrorCode::UnsupportedVersion,
            format!(
                "API version {} is not supported; this daemon speaks version {API_VERSION}",
                params.api_version
            ),
        ));
    }
    let client: String = params
        .client
        .chars()
        .filter(|c| !c.is_control())
        .take(64)
        .collect();
    allpeers_log::flesh!(client = %client, "client said hello");
    *session.client.lock().expect("session lock") = Some(client);
    Ok(to_value(m::HelloResult {
        server: "allpeers".into(),
        server_version: env!("CARGO_PKG_VERSION").into(),
        api_version: API_VERSION,
        methods: m::METHODS
            .iter()
            .chain(allpeers_model::resource::api::METHODS)
            .map(|s| s.to_string())
            .collect(),
        topics: topics::ALL.iter().map(|s| s.to_string()).collect(),
        peer_id: daemon.peer_id(),
    }))
}

async fn unlock(daemon: &Arc<Daemon>, params: m::UnlockParams) -> Result<Value, RpcError> {
    let file = {
        let identity = daemon.identity.lock().expect("identity lock");
        if identity.key.is_some() {
            return Ok(to_value(identity.info()));
        }
        identity.file.clone()
    };
    let path = daemon.paths.identity().display().to_string();
    // Argon2 takes tens of milliseconds of CPU: keep it off the async workers.
    let opened = tokio::task::spawn_blocking(move || file.open(Some(&params.passphrase), &path))
        .await
        .map_err(|e| RpcError::new(ErrorCode::Internal, e.to_string()))?;
    match opened {
        Ok(key) => {
            daemon.identity.lock().expect("identity lock").key = Some(key.clone());
            super::go_online(daemon, key).await;
            let info = daemon.identity_info();
            daemon.publish(topics::IDENTITY_CHANGED, to_value(&info));
            Ok(to_value(info))
        }
        Err(IdentityError::WrongPassphrase) => Err(RpcError::new(
            ErrorCode::WrongPassphrase,
            "wrong passphrase",
        )),
        Err(e) => Err(RpcError::new(ErrorCode::Internal, e.to_string())),
    }
}

fn check_topics(requested: &[String]) -> Result<(), RpcError> {
    for topic in requested {
        if !topics::ALL.contains(&topic.as_str()) {
            return Err(RpcError::new(
                ErrorCode::InvalidParams,
                format!(
                    "unknown topic \"{topic}\"; topics are: {}",
                    topics::ALL.join(", ")
                ),
            ));
        }
    }
    Ok(())
}

/// Typed params, or `-32602` naming what is wrong.
pub(super) fn parse<T: DeserializeOwned>(params: Value) -> Result<T, RpcError> {
    let params = if params.is_null() { json!({}) } else { params };
    serde_json::from_value(params)
        .map_err(|e| RpcError::new(ErrorCode::InvalidParams, format!("invalid params: {e}")))
}

pub(super) fn to_value<T: serde::Serialize>(value: T) -> Value {
    serde_json::to_value(value).expect("API results serialise")
}
