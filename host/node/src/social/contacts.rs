//! Contacts as Peer resources in the store, and the rules of the contact handshake.
//!
//! A contact is the Peer resource `peer:<PeerId>`. Its local metadata holds where the
//! handshake stands on this node (`state`): `outgoing` (we asked), `incoming` (they asked),
//! `accepted` (both agreed; `contact` = true), `declined`, or `blocked` (`blocked` = true:
//! their letters are dropped, their presence is not watched).

use allpeers_model::PeerId;
use allpeers_model::query::{Op, Query};
use allpeers_model::resource::{Patch, Resource, Value};
use allpeers_store::{Store, StoreError};
use serde_json::{Value as Json, json};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContactState {
    None,
    Outgoing,
    Incoming,
    Accepted,
    Declined,
    Blocked,
}

impl ContactState {
    pub fn as_str(self) -> &'static str {
        match self {
            ContactState::None => "none",
            ContactState::Outgoing => "outgoing",
            ContactState::Incoming => "incoming",
            ContactState::Accepted => "accepted",
            ContactState::Declined => "declined",
            ContactState::Blocked => "blocked",
        }
    }

    fn parse(s: &str) -> ContactState {
        match s {
            "outgoing" => ContactState::Outgoing,
            "incoming" => ContactState::Incoming,
            "accepted" => ContactState::Accepted,
            "declined" => ContactState::Declined,
            "blocked" => ContactState::Blocked,
            _ => ContactState::None,
        }
    }
}

pub fn resource_id(peer: &PeerId) -> String {
    format!("peer:{peer}")
}

/// The contact state of `peer` on this node.
pub fn state(store: &Store, peer: &PeerId) -> Result<ContactState, StoreError> {
    Ok(store
        .get(&resource_id(peer))?
        .map(|r| state_of(&r))
        .unwrap_or(ContactState::None))
}

/// The contact state stored on a Peer resource.
pub fn state_of(r: &Resource) -> ContactState {
    if r.meta.get("blocked") == Some(&Value::Bool(true)) {
        return ContactState::Blocked;
    }
    r.meta
        .get("state")
        .and_then(Value::as_str)
        .map(ContactState::parse)
        .unwrap_or(ContactState::None)
}

/// Sets `peer`'s state (creating its Peer resource), and its name when known.
pub fn set_state(
    store: &mut Store,
    peer: &PeerId,
    state: ContactState,
    name: Option<&str>,
    request_message: Option<&str>,
) -> Result<Resource, StoreError> {
    let id = resource_id(peer);
    let accepted = state == ContactState::Accepted;
    let blocked = state == ContactState::Blocked;
    match store.get(&id)? {
        None => {
            let mut r = Resource::new("Peer")
                .with_id(&id)
                .with("peerId", peer.to_string())
                .with("title", name.unwrap_or(&short_id(peer)).to_string())
                .with("contact", accepted)
                .with_meta("state", state.as_str())
                .with_meta("blocked", blocked);
            if let Some(name) = name {
                r = r.with("name", name.to_string());
            }
            if let Some(m) = request_message {
                r = r.with_meta("requestMessage", m.to_string());
            }
            store.create(r)
        }
        Some(_) => {
            let mut patch = Patch::default();
            patch
                .properties
                .insert("contact".into(), Value::Bool(accepted));
            if let Some(name) = name {
                name_patch(&mut patch, name);
            }
            patch
                .meta
                .insert("state".into(), Value::String(state.as_str().into()));
            patch.meta.insert("blocked".into(), Value::Bool(blocked));
            if let Some(m) = request_message {
                patch
                    .meta
                    .insert("requestMessage".into(), Value::String(m.into()));
            }
            store.update(&id, &patch)
        }
    }
}

/// Sets the name of a known peer (from a verified directory answer).
pub fn set_name(store: &mut Store, peer: &PeerId, name: &str) -> Result<(), StoreError> {
    let id = resource_id(peer);
    if store.get(&id)?.is_some() {
        let mut patch = Patch::default();
        name_patch(&mut patch, name);
        store.update(&id, &patch)?;
    }
    Ok(())
}

/// A peer's name is also its title (what lists show).
fn name_patch(patch: &mut Patch, name: &str) {
    patch
        .properties
        .insert("name".into(), Value::String(name.into()));
    patch
        .properties
        .insert("title".into(), Value::String(name.into()));
}

/// Every peer we have a contact state with.
pub fn list(store: &Store) -> Result<Vec<Resource>, StoreError> {
    store.query(&Query::of("Peer").sort_by("title", false))
}

/// Accepted contacts' PeerIds.
pub fn accepted(store: &Store) -> Result<Vec<PeerId>, StoreError> {
    Ok(store
        .query(&Query::of("Peer").where_prop("contact", Op::Eq, true))?
        .iter()
        .filter(|r| state_of(r) == ContactState::Accepted)
        .filter_map(peer_of)
        .collect())
}

/// Where a known peer lives (its home hub, `PeerId addr…`: see
/// `crate::hub::foreign::HomeHub`), kept in its local metadata; a peer not yet known is not
/// created for it.
pub fn set_home_hub(store: &mut Store, peer: &PeerId, home: &str) -> Result<(), StoreError> {
    set_known_peer_meta(store, peer, "homeHub", home.into())
}

/// Sets one text field of a known peer's local metadata; a peer not yet known is not created.
fn set_known_peer_meta(
    store: &mut Store,
    peer: &PeerId,
    field: &str,
    text: String,
) -> Result<(), StoreError> {
    let id = resource_id(peer);
    if store.get(&id)?.is_some() {
        let mut patch = Patch::default();
        patch.meta.insert(field.into(), Value::String(text));
        store.update(&id, &patch)?;
    }
    Ok(())
}

/// Every known peer's home hub as kept by [`set_home_hub`].
pub fn home_hubs(store: &Store) -> Result<Vec<(PeerId, String)>, StoreError> {
    Ok(store
        .query(&Query::of("Peer"))?
        .iter()
        .filter_map(|r| {
            let home = r.meta.get("homeHub")?.as_str()?.to_string();
            Some((peer_of(r)?, home))
        })
        .collect())
}

/// Keeps on `peer`'s resource that its certificate's hub `hub_name` signs with `key` (a key
/// [`crate::hub::foreign::ForeignHubs::learn_hub_key`] kept), so a restart knows the hub
/// again before the next home letter.
pub fn set_hub_key(
    store: &mut Store,
    peer: &PeerId,
    hub_name: &str,
    key: &PeerId,
) -> Result<(), StoreError> {
    set_known_peer_meta(store, peer, "hubKey", format!("{hub_name} {key}"))
}

/// Every hub name and key kept by [`set_hub_key`].
pub fn hub_keys(store: &Store) -> Result<Vec<(String, PeerId)>, StoreError> {
    Ok(store
        .query(&Query::of("Peer"))?
        .iter()
        .filter_map(|r| {
            // "name key" (a hub name holds no space).
            let (name, key) = r.meta.get("hubKey")?.as_str()?.split_once(' ')?;
            Some((name.to_string(), key.parse().ok()?))
        })
        .collect())
}

pub fn peer_of(r: &Resource) -> Option<PeerId> {
    r.get("peerId")?.as_str()?.parse().ok()
}

fn short_id(peer: &PeerId) -> String {
    peer.to_string().chars().take(12).collect()
}

/// The JSON form the API shows for a contact.
pub fn to_json(r: &Resource, presence: Option<&Json>) -> Json {
    let text = |v: Option<&Value>| v.and_then(Value::as_str).map(str::to_string);
    json!({
        "peer_id": text(r.get("peerId")),
        "name": text(r.get("name")),
        "title": text(r.get("title")),
        "state": state_of(r).as_str(),
        "request_message": text(r.meta.get("requestMessage")),
        "nickname": text(r.meta.get("nickname")),
        "presence": presence.cloned().unwrap_or_else(|| json!({"online": false, "state": "offline", "text": ""})),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_round_trip_in_the_store() {
        let mut store = Store::open_in_memory("me").unwrap();
        let peer = allpeers_net::Identity::generate().peer_id();
        assert_eq!(state(&store, &peer).unwrap(), ContactState::None);
        set_state(&mut store, &peer, ContactState::Incoming, None, Some("hi")).unwrap();
        assert_eq!(state(&store, &peer).unwrap(), ContactState::Incoming);
        assert!(accepted(&store).unwrap().is_empty());
        set_state(
            &mut store,
            &peer,
            ContactState::Accepted,
            Some("bob@hub"),
            None,
        )
        .unwrap();
        assert_eq!(accepted(&store).unwrap(), vec![peer]);
        set_state(&mut store, &peer, ContactState::Blocked, None, None).unwrap();
        assert_eq!(state(&store, &peer).unwrap(), ContactState::Blocked);
        assert!(accepted(&store).unwrap().is_empty());
        let r = store.get(&resource_id(&peer)).unwrap().unwrap();
        assert_eq!(to_json(&r, None)["name"], "bob@hub");
    }

    #[test]
    fn home_hubs_are_kept_on_known_peers() {
        // The schema once lacked `homeHub`: the store refused it and home hubs were never kept.
        let mut store = Store::open_in_memory("me").unwrap();
        let peer = allpeers_net::Identity::generate().peer_id();
        set_state(
            &mut store,
            &peer,
            ContactState::Accepted,
            Some("bob@two.test"),
            None,
        )
        .unwrap();
        let home = format!(
            "{} 127.0.0.1:4000",
            allpeers_net::Identity::generate().peer_id()
        );
        set_home_hub(&mut store, &peer, &home).unwrap();
        assert_eq!(home_hubs(&store).unwrap(), vec![(peer, home)]);
    }

    #[test]
    fn hub_keys_are_kept_on_known_peers_only() {
        let mut store = Store::open_in_memory("me").unwrap();
        let (peer, stranger) = (
            allpeers_net::Identity::generate().peer_id(),
            allpeers_net::Identity::generate().peer_id(),
        );
        let key = allpeers_net::Identity::generate().peer_id();
        set_state(
            &mut store,
            &peer,
            ContactState::Accepted,
            Some("bob@two.test"),
            None,
        )
        .unwrap();
        assert!(hub_keys(&store).unwrap().is_empty());
        set_hub_key(&mut store, &peer, "two.test", &key).unwrap();
        // A peer with no resource here gets none (no resource made for a stranger).
        set_hub_key(&mut store, &stranger, "three.test", &key).unwrap();
        assert_eq!(
            hub_keys(&store).unwrap(),
            vec![("two.test".to_string(), key)]
        );
    }
}
