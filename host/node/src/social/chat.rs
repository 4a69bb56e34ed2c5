//! Conversations as Chat and Message resources, and the rules for what a peer may put in
//! them. No I/O beyond the store: the daemon decides how letters travel.
//!
//! * A 1:1 chat's id is derived from both PeerIds (`dm-…`), so both sides file messages in
//!   the same conversation without agreeing first; a group's id is its creator's random id
//!   (`grp-…`) and its members travel with every message.
//! * A message's resource id is `m:<sender>:<id>`: only its sender can collide with it, so a
//!   repeat (a retry, the same letter through the hub, a replay) is recognised and never
//!   shown twice.
//! * Order is the hybrid logical clock (`hlc`), not the sender's wall clock.
//! * Our own messages keep, in local metadata `pending`, the recipients they have not
//!   reached yet; the daemon's outbox retries those.

use allpeers_model::PeerId;
use allpeers_model::query::{Expr, Op, Query};
use allpeers_model::resource::{Child, Patch, Resource, Value};
use allpeers_store::{Store, StoreError};
use serde_json::{Value as Json, json};

use super::contacts::{self, ContactState};
use super::wire::{ChatPayload, ChatRef, LinkCard};

pub fn dm_id(a: &PeerId, b: &PeerId) -> String {
    let (x, y) = if a.to_string() <= b.to_string() {
        (a, b)
    } else {
        (b, a)
    };
    let mut h = blake3::Hasher::new();
    h.update(b"allpeers-dm-v1");
    h.update(x.public_key());
    h.update(y.public_key());
    format!("dm-{}", &h.finalize().to_hex()[..32])
}

pub fn new_group_id() -> String {
    format!("grp-{}", random_hex())
}

pub fn new_message_id() -> String {
    random_hex()
}

fn random_hex() -> String {
    let bytes: [u8; 16] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn message_resource_id(sender: &PeerId, id: &str) -> String {
    format!("m:{sender}:{id}")
}

/// Why an incoming payload was not applied (the sender gets this as a refusal).
#[derive(Debug, thiserror::Error)]
pub enum ChatError {
    #[error("not a contact: messages are taken from accepted contacts only")]
    NotAContact,
    #[error("not a member of this chat")]
    NotAMember,
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What applying an incoming payload did.
#[derive(Debug)]
pub enum Applied {
    /// A new message, and the chat if it was created for it.
    Message {
        message: Resource,
        new_chat: Option<Resource>,
    },
    /// We had this one already.
    Duplicate,
    /// A message was edited or deleted.
    Updated(Resource),
    /// A receipt for our messages.
    Receipt {
        chat: String,
        ids: Vec<String>,
        read: bool,
    },
    Typing {
        chat: String,
    },
    /// Nothing to do (e.g. an edit of a message we never got).
    Ignored(&'static str),
}

fn text(r: &Resource, name: &str) -> Option<String> {
    r.get(name).and_then(Value::as_str).map(str::to_string)
}

fn peers(v: Option<&Value>) -> Vec<PeerId> {
    match v {
        Some(Value::List(items)) => items
            .iter()
            .filter_map(|v| v.as_str()?.parse().ok())
            .collect(),
        Some(Value::String(s)) => s.parse().ok().into_iter().collect(),
        _ => Vec::new(),
    }
}

pub fn participants(chat: &Resource) -> Vec<PeerId> {
    peers(chat.get("participants"))
}

pub fn chat_ref(chat: &Resource) -> ChatRef {
    ChatRef {
        id: chat.id.clone(),
        group: chat.get("group") == Some(&Value::Bool(true)),
        title: text(chat, "topic"),
        creator: text(chat, "creator")
            .and_then(|c| c.parse().ok())
            .or_else(|| participants(chat).first().copied())
            .expect("a chat has participants"),
        members: participants(chat),
    }
}

fn peer_list(peers: &[PeerId]) -> Value {
    Value::List(peers.iter().map(|p| Value::String(p.to_string())).collect())
}

/// The 1:1 chat with `peer`, created if needed.
pub fn open_dm(store: &mut Store, me: &PeerId, peer: &PeerId) -> Result<Resource, StoreError> {
    let id = dm_id(me, peer);
    if let Some(chat) = store.get(&id)? {
        return Ok(chat);
    }
    let title = store
        .get(&contacts::resource_id(peer))?
        .and_then(|r| text(&r, "title"))
        .unwrap_or_else(|| peer.to_string());
    store.create(
        Resource::new("Chat")
            .with_id(&id)
            .with("title", title)
            .with("participants", peer_list(&[*me, *peer]))
            .with("group", false)
            .with("creator", me.to_string()),
    )
}

/// A new group of `me` and `members`.
pub fn create_group(
    store: &mut Store,
    me: &PeerId,
    title: &str,
    members: &[PeerId],
) -> Result<Resource, StoreError> {
    let mut all = vec![*me];
    for m in members {
        if !all.contains(m) {
            all.push(*m);
        }
    }
    store.create(
        Resource::new("Chat")
            .with_id(&new_group_id())
            .with("title", title.to_string())
            .with("topic", title.to_string())
            .with("participants", peer_list(&all))
            .with("group", true)
            .with("creator", me.to_string()),
    )
}

/// Stores our own new message (pending for every other participant) and its link card.
/// What a message says: its body, a link card, and the web app that sent it (its origin).
#[derive(Debug, Clone, Copy, Default)]
pub struct Content<'a> {
    pub body: &'a str,
    pub link: Option<&'a LinkCard>,
    pub via: Option<&'a str>,
}

pub fn create_outgoing(
    store: &mut Store,
    me: &PeerId,
    chat: &Resource,
    content: Content<'_>,
    hlc: &str,
    now_ms: u64,
) -> Result<(Resource, String), StoreError> {
    let id = new_message_id();
    let recipients: Vec<PeerId> = participants(chat).into_iter().filter(|p| p != me).collect();
    let link = content.link;
    let message = message_resource(chat, me, &id, content, hlc, now_ms)
        .with_meta("read", true)
        .with_meta("pending", peer_list(&recipients));
    let mut batch = Vec::new();
    if let Some(link) = link {
        batch.push(link_resource(&message.id, link));
    }
    batch.push(message);
    let mut stored = store.create_many(batch)?;
    Ok((stored.pop().expect("the message"), id))
}

fn link_resource_id(message_rid: &str) -> String {
    format!("link:{}", &message_rid[2..])
}

fn link_resource(message_rid: &str, link: &LinkCard) -> Resource {
    let mut r = Resource::new("Link")
        .with_id(&link_resource_id(message_rid))
        .with("url", link.url.clone())
        .with(
            "title",
            link.title.clone().unwrap_or_else(|| link.url.clone()),
        );
    if let Some(d) = &link.description {
        r = r.with("description", d.clone());
    }
    if let Some(p) = &link.preview {
        r = r.with("favicon", p.clone());
    }
    r
}

fn message_resource(
    chat: &Resource,
    sender: &PeerId,
    id: &str,
    content: Content<'_>,
    hlc: &str,
    sent_ms: u64,
) -> Resource {
    let Content { body, link, via } = content;
    let rid = message_resource_id(sender, id);
    let mut r = Resource::new("Message")
        .with_id(&rid)
        .with("chat", chat.id.clone())
        .with("sender", sender.to_string())
        .with("owner", sender.to_string())
        .with("body", body.to_string())
        .with("sent", Value::Date(sent_ms as i64))
        .with("hlc", hlc.to_string());
    if link.is_some() {
        r = r.with(
            "attachments",
            Value::List(vec![Value::String(link_resource_id(&rid))]),
        );
    }
    if let Some(via) = via {
        r = r.with("via", via.to_string());
    }
    r
}

/// Applies what `from` sent us. Contacts only, except group messages from members of a
/// group we already know (members of a group need not all be each other's contacts).
pub fn apply_incoming(
    store: &mut Store,
    me: &PeerId,
    from: &PeerId,
    payload: &ChatPayload,
) -> Result<Applied, ChatError> {
    payload
        .check()
        .map_err(|e| ChatError::Invalid(e.to_string()))?;
    let state = contacts::state(store, from)?;
    if state == ContactState::Blocked {
        return Err(ChatError::NotAContact);
    }
    let is_contact = state == ContactState::Accepted;
    let known_chat = store.get(payload.chat_id())?;
    let member = known_chat
        .as_ref()
        .is_some_and(|c| participants(c).contains(from) && participants(c).contains(me));
    match payload {
        ChatPayload::Message {
            chat,
            id,
            hlc,
            sent_ms,
            body,
            link,
            via,
        } => {
            let mut new_chat = None;
            let chat_resource = match known_chat {
                Some(c) => {
                    if !member {
                        return Err(ChatError::NotAMember);
                    }
                    if !is_contact && !(chat_ref(&c).group) {
                        return Err(ChatError::NotAContact);
                    }
                    c
                }
                None => {
                    if !is_contact {
                        return Err(ChatError::NotAContact);
                    }
                    let c = if chat.group {
                        if !chat.members.contains(me) || !chat.members.contains(from) {
                            return Err(ChatError::NotAMember);
                        }
                        if !chat.id.starts_with("grp-") {
                            return Err(ChatError::Invalid("a group id starts with grp-".into()));
                        }
                        let title = chat.title.clone().unwrap_or_else(|| "Group".into());
                        store.create(
                            Resource::new("Chat")
                                .with_id(&chat.id)
                                .with("title", title.clone())
                                .with("topic", title)
                                .with("participants", peer_list(&chat.members))
                                .with("group", true)
                                .with("creator", chat.creator.to_string()),
                        )?
                    } else {
                        // A 1:1 chat's id is fixed by the two PeerIds: one naming another
                        // conversation is refused.
                        if chat.id != dm_id(me, from) {
                            return Err(ChatError::NotAMember);
                        }
                        open_dm(store, me, from)?
                    };
                    new_chat = Some(c.clone());
                    c
                }
            };
            let rid = message_resource_id(from, id);
            if store.get(&rid)?.is_some() {
                return Ok(Applied::Duplicate);
            }
            let content = Content {
                body,
                link: link.as_ref(),
                via: via.as_deref(),
            };
            let message = message_resource(&chat_resource, from, id, content, hlc, *sent_ms)
                .with_meta("read", false);
            let mut batch = Vec::new();
            if let Some(link) = link {
                batch.push(link_resource(&rid, link));
            }
            batch.push(message);
            let mut stored = store.create_many(batch)?;
            Ok(Applied::Message {
                message: stored.pop().expect("the message"),
                new_chat,
            })
        }
        ChatPayload::Edit {
            chat,
            id,
            edited_ms,
            body,
        } => {
            let rid = message_resource_id(from, id);
            let Some(old) = store.get(&rid)? else {
                return Ok(Applied::Ignored("edit of an unknown message"));
            };
            if text(&old, "chat").as_deref() != Some(chat.as_str()) {
                return Err(ChatError::NotAMember);
            }
            if old.get("deleted") == Some(&Value::Bool(true)) {
                return Ok(Applied::Ignored("edit of a deleted message"));
            }
            // Last writer wins by edit time: a late or replayed older edit changes nothing.
            if let Some(Value::Date(prev)) = old.get("edited")
                && *prev >= *edited_ms as i64
            {
                return Ok(Applied::Ignored("an older edit"));
            }
            let mut patch = Patch::default();
            patch
                .properties
                .insert("body".into(), Value::String(body.clone()));
            patch
                .properties
                .insert("edited".into(), Value::Date(*edited_ms as i64));
            Ok(Applied::Updated(store.update(&rid, &patch)?))
        }
        ChatPayload::Delete { chat, id } => {
            let rid = message_resource_id(from, id);
            let Some(old) = store.get(&rid)? else {
                return Ok(Applied::Ignored("delete of an unknown message"));
            };
            if text(&old, "chat").as_deref() != Some(chat.as_str()) {
                return Err(ChatError::NotAMember);
            }
            Ok(Applied::Updated(delete_body(store, &rid)?))
        }
        ChatPayload::Receipt { chat, ids, read } => {
            if !member {
                return Err(ChatError::NotAMember);
            }
            let now = allpeers_model::hlc::now_ms() as i64;
            let mut taken = Vec::new();
            for id in ids {
                let rid = message_resource_id(me, id);
                let Some(m) = store.get(&rid)? else { continue };
                if text(&m, "chat").as_deref() != Some(chat.as_str()) {
                    continue;
                }
                set_receipt(store, &m, from, now, *read)?;
                taken.push(id.clone());
            }
            Ok(Applied::Receipt {
                chat: chat.clone(),
                ids: taken,
                read: *read,
            })
        }
        ChatPayload::Typing { chat } => {
            if !member {
                return Err(ChatError::NotAMember);
            }
            Ok(Applied::Typing { chat: chat.clone() })
        }
    }
}

/// Empties a message's body and marks it deleted (a tombstone: the slot stays so a late
/// copy of the message is still recognised as a duplicate).
pub fn delete_body(store: &mut Store, rid: &str) -> Result<Resource, StoreError> {
    let mut patch = Patch::default();
    patch
        .properties
        .insert("body".into(), Value::String(String::new()));
    patch.properties.insert("deleted".into(), Value::Bool(true));
    patch.properties.insert("attachments".into(), Value::Null);
    store.update(rid, &patch)
}

/// Records that `peer` received (and maybe read) our message, and that it is no longer
/// pending for `peer`.
pub fn set_receipt(
    store: &mut Store,
    message: &Resource,
    peer: &PeerId,
    at_ms: i64,
    read: bool,
) -> Result<Resource, StoreError> {
    let mut receipts: Vec<Child> = message.children.get("receipt").cloned().unwrap_or_default();
    let who = peer.to_string();
    let pos = receipts
        .iter()
        .position(|c| c.properties.get("peer").and_then(Value::as_str) == Some(who.as_str()));
    let receipt = match pos {
        Some(i) => &mut receipts[i],
        None => {
            receipts.push(Child {
                properties: [("peer".to_string(), Value::String(who.clone()))]
                    .into_iter()
                    .collect(),
                children: Default::default(),
            });
            receipts.last_mut().expect("pushed")
        }
    };
    receipt
        .properties
        .entry("delivered".into())
        .or_insert(Value::Date(at_ms));
    if read {
        receipt
            .properties
            .entry("read".into())
            .or_insert(Value::Date(at_ms));
    }
    let mut patch = Patch::default();
    patch.children.insert("receipt".into(), receipts);
    let pending: Vec<PeerId> = peers(message.meta.get("pending"))
        .into_iter()
        .filter(|p| p != peer)
        .collect();
    patch.meta.insert("pending".into(), peer_list(&pending));
    store.update(&message.id, &patch)
}

/// `peer` no longer needs our message delivered (it reached their hub's mailbox).
pub fn clear_pending(store: &mut Store, rid: &str, peer: &PeerId) -> Result<(), StoreError> {
    let Some(m) = store.get(rid)? else {
        return Ok(());
    };
    let pending: Vec<PeerId> = peers(m.meta.get("pending"))
        .into_iter()
        .filter(|p| p != peer)
        .collect();
    let mut patch = Patch::default();
    patch.meta.insert("pending".into(), peer_list(&pending));
    store.update(rid, &patch)?;
    Ok(())
}

/// Our messages that have not reached every recipient, oldest first.
pub fn pending(store: &Store, me: &PeerId) -> Result<Vec<(Resource, Vec<PeerId>)>, StoreError> {
    let mine = store.query(
        &Query::of("Message")
            .where_prop("sender", Op::Eq, me.to_string())
            .and(Expr::meta("pending", Op::NotNull, Value::Null))
            .sort_by("hlc", false)
            .limit(2000),
    )?;
    Ok(mine
        .into_iter()
        .filter_map(|m| {
            let p = peers(m.meta.get("pending"));
            (!p.is_empty()).then_some((m, p))
        })
        .collect())
}

/// The wire form of one of our stored messages.
pub fn payload_of(store: &Store, message: &Resource) -> Result<Option<ChatPayload>, StoreError> {
    let Some(chat_id) = text(message, "chat") else {
        return Ok(None);
    };
    let Some(chat) = store.get(&chat_id)? else {
        return Ok(None);
    };
    let link = match message.get("attachments") {
        Some(Value::List(ids)) => match ids.first().and_then(Value::as_str) {
            Some(link_id) => store.get(link_id)?.map(|l| LinkCard {
                url: text(&l, "url").unwrap_or_default(),
                title: text(&l, "title"),
                description: text(&l, "description"),
                preview: match l.get("favicon") {
                    Some(Value::Binary(b)) => Some(b.clone()),
                    _ => None,
                },
            }),
            None => None,
        },
        _ => None,
    };
    let id = message
        .id
        .rsplit(':')
        .next()
        .unwrap_or_default()
        .to_string();
    Ok(Some(ChatPayload::Message {
        chat: chat_ref(&chat),
        id,
        hlc: text(message, "hlc").unwrap_or_default(),
        sent_ms: match message.get("sent") {
            Some(Value::Date(d)) => *d as u64,
            _ => 0,
        },
        body: text(message, "body").unwrap_or_default(),
        link,
        via: text(message, "via"),
    }))
}

/// Messages of a chat in conversation order: the `limit` before `before` (an hlc), oldest
/// first.
pub fn history(
    store: &Store,
    chat: &str,
    before: Option<&str>,
    limit: u64,
) -> Result<Vec<Resource>, StoreError> {
    let mut q = Query::of("Message").where_prop("chat", Op::Eq, chat.to_string());
    if let Some(b) = before {
        q = q.where_prop("hlc", Op::Lt, b.to_string());
    }
    let mut out = store.query(&q.sort_by("hlc", true).limit(limit.clamp(1, 500)))?;
    out.reverse();
    Ok(out)
}

/// Marks every unread message of the chat read; returns them by sender (for receipts).
pub fn mark_read(store: &mut Store, chat: &str) -> Result<Vec<(PeerId, Vec<String>)>, StoreError> {
    let unread = store.query(
        &Query::of("Message")
            .where_prop("chat", Op::Eq, chat.to_string())
            .and(Expr::meta("read", Op::Eq, false))
            .sort_by("hlc", false),
    )?;
    let mut by_sender: Vec<(PeerId, Vec<String>)> = Vec::new();
    for m in unread {
        let mut patch = Patch::default();
        patch.meta.insert("read".into(), Value::Bool(true));
        store.update(&m.id, &patch)?;
        let Some(sender) = text(&m, "sender").and_then(|s| s.parse::<PeerId>().ok()) else {
            continue;
        };
        let id = m.id.rsplit(':').next().unwrap_or_default().to_string();
        match by_sender.iter_mut().find(|(p, _)| *p == sender) {
            Some((_, ids)) => ids.push(id),
            None => by_sender.push((sender, vec![id])),
        }
    }
    Ok(by_sender)
}

pub fn unread(store: &Store, chat: &str) -> Result<u64, StoreError> {
    store.count(
        &Query::of("Message")
            .where_prop("chat", Op::Eq, chat.to_string())
            .and(Expr::meta("read", Op::Eq, false)),
    )
}

/// The API's JSON form of a message (with its link card, if any).
pub fn message_json(store: &Store, me: &PeerId, m: &Resource) -> Json {
    let link = match m.get("attachments") {
        Some(Value::List(ids)) => ids
            .first()
            .and_then(Value::as_str)
            .and_then(|id| store.get(id).ok().flatten())
            .map(|l| serde_json::to_value(&l).unwrap_or(Json::Null)),
        _ => None,
    };
    let receipts: Vec<Json> = m
        .children
        .get("receipt")
        .map(|rs| {
            rs.iter()
                .map(|c| {
                    json!({
                        "peer_id": c.properties.get("peer").and_then(Value::as_str),
                        "delivered": matches!(c.properties.get("delivered"), Some(Value::Date(_))),
                        "read": matches!(c.properties.get("read"), Some(Value::Date(_))),
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    let sender = text(m, "sender").unwrap_or_default();
    let mut json = json!({
        "id": m.id,
        "chat": text(m, "chat"),
        "sender": sender,
        "outgoing": sender == me.to_string(),
        "body": text(m, "body").unwrap_or_default(),
        "sent": match m.get("sent") { Some(Value::Date(d)) => Json::from(*d), _ => Json::Null },
        "hlc": text(m, "hlc"),
        "edited": matches!(m.get("edited"), Some(Value::Date(_))),
        "deleted": m.get("deleted") == Some(&Value::Bool(true)),
        "read": m.meta.get("read") == Some(&Value::Bool(true)),
        "pending": peers(m.meta.get("pending")).iter().map(ToString::to_string).collect::<Vec<_>>(),
        "receipts": receipts,
        "link": link,
    });
    if let Some(via) = text(m, "via") {
        json["via"] = Json::from(via);
    }
    json
}

/// The API's JSON form of a chat, with its unread count and last message.
pub fn chat_json(store: &Store, me: &PeerId, chat: &Resource) -> Result<Json, StoreError> {
    let last = history(store, &chat.id, None, 1)?;
    Ok(json!({
        "id": chat.id,
        "title": text(chat, "title"),
        "group": chat.get("group") == Some(&Value::Bool(true)),
        "participants": participants(chat).iter().map(ToString::to_string).collect::<Vec<_>>(),
        "creator": text(chat, "creator"),
        "unread": unread(store, &chat.id)?,
        "last": last.first().map(|m| message_json(store, me, m)),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use allpeers_model::hlc::Hlc;

    struct World {
        store: Store,
        me: PeerId,
        friend: PeerId,
        stranger: PeerId,
    }

    fn world() -> World {
        let me = allpeers_net::Identity::generate().peer_id();
        let friend = allpeers_net::Identity::generate().peer_id();
        let stranger = allpeers_net::Identity::generate().peer_id();
        let mut store = Store::open_in_memory(&me.to_string()).unwrap();
        contacts::set_state(&mut store, &friend, ContactState::Accepted, None, None).unwrap();
        World {
            store,
            me,
            friend,
            stranger,
        }
    }

    fn msg(w: &World, from: &PeerId, id: &str, hlc: &str, group: Option<&ChatRef>) -> ChatPayload {
        ChatPayload::Message {
            chat: group.cloned().unwrap_or(ChatRef {
                id: dm_id(&w.me, from),
                group: false,
                title: None,
                creator: *from,
                members: vec![*from, w.me],
            }),
            id: id.into(),
            hlc: hlc.into(),
            sent_ms: 1,
            body: format!("body {id}"),
            link: None,
            via: None,
        }
    }

    #[test]
    fn contact_messages_are_filed_once_and_in_hlc_order() {
        let mut w = world();
        let (me, friend) = (w.me, w.friend);
        let mut clock = Hlc::new("f");
        let t1 = clock.tick(100).to_string();
        let t2 = clock.tick(50).to_string(); // sender's wall clock went back
        let second = msg(&w, &friend, "b", &t2, None);
        let first = msg(&w, &friend, "a", &t1, None);
        assert!(matches!(
            apply_incoming(&mut w.store, &me, &friend, &second).unwrap(),
            Applied::Message {
                new_chat: Some(_),
                ..
            }
        ));
        assert!(matches!(
            apply_incoming(&mut w.store, &me, &friend, &first).unwrap(),
            Applied::Message { new_chat: None, .. }
        ));
        assert!(matches!(
            apply_incoming(&mut w.store, &me, &friend, &first).unwrap(),
            Applied::Duplicate
        ));
        let h = history(&w.store, &dm_id(&me, &friend), None, 10).unwrap();
        let bodies: Vec<_> = h.iter().map(|m| text(m, "body").unwrap()).collect();
        assert_eq!(bodies, ["body a", "body b"]);
        assert_eq!(unread(&w.store, &dm_id(&me, &friend)).unwrap(), 2);
        let read = mark_read(&mut w.store, &dm_id(&me, &friend)).unwrap();
        assert_eq!(read, vec![(friend, vec!["a".to_string(), "b".to_string()])]);
        assert_eq!(unread(&w.store, &dm_id(&me, &friend)).unwrap(), 0);
    }

    #[test]
    fn strangers_and_forged_chats_are_refused() {
        let mut w = world();
        let (me, friend, stranger) = (w.me, w.friend, w.stranger);
        let p = msg(&w, &stranger, "x", "000000000000000100-00000000-s", None);
        assert!(matches!(
            apply_incoming(&mut w.store, &me, &stranger, &p),
            Err(ChatError::NotAContact)
        ));
        // A friend naming the 1:1 chat of someone else.
        let mut forged = msg(&w, &friend, "y", "000000000000000100-00000000-f", None);
        if let ChatPayload::Message { chat, .. } = &mut forged {
            chat.id = dm_id(&me, &stranger);
        }
        assert!(matches!(
            apply_incoming(&mut w.store, &me, &friend, &forged),
            Err(ChatError::NotAMember)
        ));
        assert_eq!(w.store.count(&Query::of("Message")).unwrap(), 0);
    }

    #[test]
    fn only_the_sender_edits_and_deletes_and_old_edits_lose() {
        let mut w = world();
        let (me, friend) = (w.me, w.friend);
        let chat = dm_id(&me, &friend);
        let first = msg(&w, &friend, "a", "000000000000000100-00000000-f", None);
        apply_incoming(&mut w.store, &me, &friend, &first).unwrap();
        let edit = |ms, body: &str| ChatPayload::Edit {
            chat: chat.clone(),
            id: "a".into(),
            edited_ms: ms,
            body: body.into(),
        };
        apply_incoming(&mut w.store, &me, &friend, &edit(20, "new")).unwrap();
        assert!(matches!(
            apply_incoming(&mut w.store, &me, &friend, &edit(10, "older")).unwrap(),
            Applied::Ignored(_)
        ));
        let rid = message_resource_id(&friend, "a");
        assert_eq!(
            text(&w.store.get(&rid).unwrap().unwrap(), "body").unwrap(),
            "new"
        );
        // "a" of mine does not exist: my edits only touch my messages.
        assert!(matches!(
            apply_incoming(&mut w.store, &me, &me, &edit(30, "hijack")),
            Ok(Applied::Ignored(_)) | Err(_)
        ));
        apply_incoming(
            &mut w.store,
            &me,
            &friend,
            &ChatPayload::Delete {
                chat,
                id: "a".into(),
            },
        )
        .unwrap();
        let m = w.store.get(&rid).unwrap().unwrap();
        assert_eq!(text(&m, "body").unwrap(), "");
        assert_eq!(m.get("deleted"), Some(&Value::Bool(true)));
    }

    #[test]
    fn outgoing_messages_stay_pending_until_received() {
        let mut w = world();
        let (me, friend) = (w.me, w.friend);
        let chat = open_dm(&mut w.store, &me, &friend).unwrap();
        let (m, id) = create_outgoing(
            &mut w.store,
            &me,
            &chat,
            Content {
                body: "hi",
                ..Content::default()
            },
            "000000000000000100-00000000-m",
            100,
        )
        .unwrap();
        assert_eq!(pending(&w.store, &me).unwrap().len(), 1);
        assert!(payload_of(&w.store, &m).unwrap().is_some());
        let receipt = ChatPayload::Receipt {
            chat: chat.id.clone(),
            ids: vec![id],
            read: true,
        };
        apply_incoming(&mut w.store, &me, &friend, &receipt).unwrap();
        assert!(pending(&w.store, &me).unwrap().is_empty());
        let m = w.store.get(&m.id).unwrap().unwrap();
        assert_eq!(message_json(&w.store, &me, &m)["receipts"][0]["read"], true);
    }
}
