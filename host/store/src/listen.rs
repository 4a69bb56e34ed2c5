//! Listeners: callbacks for create/update/delete and list-item events, by type (with subtypes),
//! by resource id or by query. They run after the commit, on the writing thread; the daemon
//! forwards them to local API clients as `resource.changed` / `list.changed` events.

use std::sync::Arc;

use allpeers_model::query::{CheckedQuery, Query};
use allpeers_model::schema::Registry;
use rusqlite::Connection;
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::read;

pub type Callback = Arc<dyn Fn(&Event) + Send + Sync>;

/// What a subscription wants to hear about.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Filter {
    /// Every change.
    All,
    /// Changes to resources of a type (with its subtypes unless `subtypes` is false).
    Type {
        name: String,
        #[serde(default = "yes")]
        subtypes: bool,
    },
    /// Changes to one resource (for a list: also its items being added, moved, removed).
    Id(String),
    /// Changes to resources that match the query before or after the change.
    Query(Query),
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SubscriptionId(pub u64);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum EventKind {
    Created,
    Updated,
    Deleted,
    /// `item` joined list `id` (explicit insert, or a query-backed list's query now matches it).
    ItemAdded,
    ItemRemoved,
    ItemMoved,
}

/// One change, as listeners (and the local API's events) see it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub kind: EventKind,
    /// The resource changed (for item events: the list).
    pub id: String,
    #[serde(rename = "type")]
    pub type_name: String,
    /// Change-log sequence number (absent for local-only and derived changes).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seq: Option<i64>,
    pub time: i64,
    pub author: String,
    /// Only local metadata changed (nothing to replicate).
    #[serde(default)]
    pub local: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub item: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub position: Option<i64>,
    #[serde(skip)]
    pub(crate) rid: i64,
    /// Query subscriptions this change matched.
    #[serde(skip)]
    pub(crate) matched: Vec<u64>,
}

impl Event {
    pub(crate) fn new(
        kind: EventKind,
        id: &str,
        type_name: &str,
        time: i64,
        author: &str,
    ) -> Event {
        Event {
            kind,
            id: id.to_string(),
            type_name: type_name.to_string(),
            seq: None,
            time,
            author: author.to_string(),
            local: false,
            item: None,
            position: None,
            rid: 0,
            matched: Vec::new(),
        }
    }
}

struct Sub {
    id: u64,
    filter: Filter,
    checked: Option<CheckedQuery>,
    cb: Callback,
}

#[derive(Default)]
pub(crate) struct Listeners {
    next: u64,
    subs: Vec<Sub>,
}

impl Listeners {
    pub fn add(
        &mut self,
        filter: Filter,
        checked: Option<CheckedQuery>,
        cb: Callback,
    ) -> SubscriptionId {
        self.next += 1;
        self.subs.push(Sub {
            id: self.next,
            filter,
            checked,
            cb,
        });
        SubscriptionId(self.next)
    }

    pub fn is_empty(&self) -> bool {
        self.subs.is_empty()
    }

    pub fn remove(&mut self, id: SubscriptionId) -> bool {
        let before = self.subs.len();
        self.subs.retain(|s| s.id != id.0);
        before != self.subs.len()
    }

    /// Ids of the query subscriptions that resource `rid` matches now.
    pub fn query_matches(
        &self,
        conn: &Connection,
        reg: &Registry,
        rid: i64,
        type_name: &str,
    ) -> Result<Vec<u64>> {
        let mut out = Vec::new();
        for s in &self.subs {
            let Some(q) = &s.checked else { continue };
            if !reg.is_a(type_name, &q.type_name) {
                continue;
            }
            if read::matches(conn, q, rid)? {
                out.push(s.id);
            }
        }
        Ok(out)
    }

    pub fn dispatch(&self, reg: &Registry, events: &[Event]) {
        for ev in events {
            for s in &self.subs {
                let hit = match &s.filter {
                    Filter::All => true,
                    Filter::Type { name, subtypes } => {
                        &ev.type_name == name || (*subtypes && reg.is_a(&ev.type_name, name))
                    }
                    Filter::Id(id) => &ev.id == id,
                    Filter::Query(_) => ev.matched.contains(&s.id),
                };
                if hit {
                    let cb = s.cb.clone();
                    if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| cb(ev))).is_err() {
                        allpeers_log::skin!(subscription = s.id, "a store listener panicked");
                    }
                }
            }
        }
    }
}
