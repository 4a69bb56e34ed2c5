//! The social area's state in the daemon: contacts' presence (not stored: it is only true
//! while we hear it), the clock, and the outbox's wake-up.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use allpeers_hub_client::PeerStatus;
use allpeers_model::PeerId;
use allpeers_model::hlc::{Hlc, Timestamp};
use serde_json::{Value, json};
use tokio::sync::Notify;

/// Deliveries in flight at once from `chat.send`: each ends in a store write, and an
/// unbounded number of them would queue ahead of the user's next call for the store.
const MAX_DELIVERIES: usize = 16;

/// The daemon's social state: contacts' presence (not stored: it is only true while we
/// hear it), the clock, and the outbox's wake-up.
pub struct Social {
    pub(crate) presence: Mutex<HashMap<PeerId, (bool, PeerStatus)>>,
    pub(crate) clock: Mutex<Hlc>,
    pub(crate) outbox: Notify,
    pub(crate) deliveries: Arc<tokio::sync::Semaphore>,
}

impl Social {
    pub fn new(me: &PeerId) -> Social {
        Social {
            presence: Mutex::default(),
            clock: Mutex::new(Hlc::new(
                me.to_string().chars().take(16).collect::<String>(),
            )),
            outbox: Notify::new(),
            deliveries: Arc::new(tokio::sync::Semaphore::new(MAX_DELIVERIES)),
        }
    }

    pub(crate) fn presence_json(&self, peer: &PeerId) -> Option<Value> {
        self.presence
            .lock()
            .expect("presence lock")
            .get(peer)
            .map(|(online, s)| presence_value(*online, s))
    }

    pub(crate) fn tick(&self) -> Timestamp {
        self.clock
            .lock()
            .expect("clock lock")
            .tick(allpeers_model::hlc::now_ms())
    }
}

pub(crate) fn presence_value(online: bool, s: &PeerStatus) -> Value {
    json!({
        "online": online,
        "state": if online { s.availability.as_str() } else { "offline" },
        "text": if online { s.text.as_str() } else { "" },
    })
}
