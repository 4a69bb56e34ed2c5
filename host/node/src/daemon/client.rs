//! What the daemon knows about one local API client: its name, the origin it is bound to
//! when it is an app session, its event subscriptions (topics on the bus, and store
//! subscriptions with their own bounded queue).

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use allpeers_model::api::Event;
use allpeers_store::SubscriptionId;
use tokio::sync::{mpsc, watch};

/// What the daemon knows about one client.
pub struct Session {
    /// Unique among the daemon's sessions: what holds this client's hub watches (the hub client keeps who holds
    /// which).
    id: u64,
    client: Mutex<Option<String>>,
    /// Set once, at the `hello` that names it: the session is then an app session for good,
    /// served only the app-facing methods under that origin's grant.
    origin: OnceLock<String>,
    /// Topics of the shared bus this client subscribed to (its event forwarder watches it).
    topics: watch::Sender<BTreeSet<String>>,
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
    pub fn new(queue: mpsc::Sender<Event>, topics: watch::Sender<BTreeSet<String>>) -> Self {
        static NEXT_ID: AtomicU64 = AtomicU64::new(1);
        Session {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            client: Mutex::new(None),
            origin: OnceLock::new(),
            topics,
            events: EventSink {
                queue,
                dropped: Arc::default(),
            },
            store_subscriptions: Mutex::new(Vec::new()),
        }
    }

    pub fn id(&self) -> u64 {
        self.id
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

    pub fn topics(&self) -> &watch::Sender<BTreeSet<String>> {
        &self.topics
    }

    pub fn said_hello(&self, client: String) {
        *self.client.lock().expect("session lock") = Some(client);
    }

    /// Binds the session to an app's origin; false if it is bound to another one already.
    pub fn bind_origin(&self, origin: &str) -> bool {
        self.origin.get_or_init(|| origin.to_string()) == origin
    }

    /// The app's origin, for an app session.
    pub fn origin(&self) -> Option<&str> {
        self.origin.get().map(String::as_str)
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
