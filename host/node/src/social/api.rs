//! Contacts, presence and chat in the daemon: the `contacts.*`, `presence.*` and `chat.*`
//! methods, letters from peers (`take_letter`), presence from the hub, and the outbox that
//! keeps retrying our messages until every recipient has them (directly or in its mailbox).

use std::sync::Arc;
use std::time::Duration;

use allpeers_hub_client::proto::DirectoryRecord;
use allpeers_hub_client::{Availability, PeerStatus, WatchHolder};
use allpeers_model::PeerId;
use allpeers_model::api::methods::{self as m, topics};
use allpeers_model::api::net::PeerParams;
use allpeers_model::api::{ErrorCode, RpcError};
use allpeers_model::hlc::Timestamp;
use allpeers_net::mail::Letter;
use serde::Deserialize;
use serde_json::{Value, json};

use super::letters::{self, Delivered, SendError, TakeError, Via};
use crate::daemon::area::Area;
use crate::daemon::rpc::{app_error as err, codes, parse};
use crate::daemon::state::Daemon;
use crate::hub::foreign::{self, ForeignHubs, HomeHub};
use crate::social::chat::{self, Applied};
use crate::social::contacts::{self, ContactState};
use crate::social::invite::{self, Invite};
use crate::social::wire::{self, ChatPayload, ContactPayload, LinkCard};

/// How often the outbox retries undelivered messages without another reason to: soon after
/// a failure (a busy or briefly unreachable peer), backing off to the interval.
const OUTBOX_INTERVAL: Duration = Duration::from_secs(30);
const OUTBOX_RETRY_MIN: Duration = Duration::from_secs(1);
fn me(daemon: &Daemon) -> PeerId {
    daemon.peer_id()
}

/// Called when the endpoint and hub are up: watch accepted contacts, start the outbox.
pub async fn start(daemon: &Arc<Daemon>) {
    let accepted = daemon
        .on_store(|s| contacts::accepted(s))
        .await
        .unwrap_or_default();
    // Where contacts homed at other hubs live, before the first letter or watch.
    if let Some(foreign) = guest_lines(daemon) {
        let homes = daemon
            .on_store(|s| contacts::home_hubs(s))
            .await
            .unwrap_or_default();
        for (peer, text) in homes {
            if let Some(home) = HomeHub::parse(&text) {
                foreign.learn(peer, home);
            }
        }
        // The hub keys certificates taught us before a restart (all kept ones agree).
        let keys = daemon
            .on_store(|s| contacts::hub_keys(s))
            .await
            .unwrap_or_default();
        for (name, key) in keys {
            foreign.learn_hub_key(&name, key);
        }
    }
    if !accepted.is_empty() {
        watch_contacts(daemon, &accepted).await;
    }
    let weak = Arc::downgrade(daemon);
    let shutdown = daemon.shutdown.clone();
    tokio::spawn(async move {
        let mut retry = OUTBOX_RETRY_MIN;
        loop {
            let Some(daemon) = weak.upgrade() else { break };
            let delay = if flush_outbox(&daemon).await {
                retry = OUTBOX_RETRY_MIN;
                OUTBOX_INTERVAL
            } else {
                let d = retry;
                retry = (retry * 2).min(OUTBOX_INTERVAL);
                d
            };
            let wait = async {
                tokio::select! {
                    _ = daemon.social.outbox.notified() => {}
                    _ = tokio::time::sleep(delay) => {}
                }
            };
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = wait => {}
            }
        }
    });
}

/// The hub told us a contact's presence.
pub fn on_hub_presence(daemon: &Daemon, peer: PeerId, online: bool, status: PeerStatus) {
    let was_online = {
        let mut p = daemon.social.presence.lock().expect("presence lock");
        p.insert(peer, (online, status)).is_some_and(|(o, _)| o)
    };
    if online {
        daemon.mail.came_online(&peer);
    }
    if online && !was_online {
        daemon.social.outbox.notify_one();
    }
}

/// Tries every pending message once; true when nothing is left undelivered.
async fn flush_outbox(daemon: &Arc<Daemon>) -> bool {
    let me = me(daemon);
    let pending = match daemon
        .on_store(move |s| {
            let list = chat::pending(s, &me)?;
            let mut out = Vec::new();
            for (m, peers) in list {
                if let Some(p) = chat::payload_of(s, &m)? {
                    out.push((m.id.clone(), p, peers));
                }
            }
            Ok(out)
        })
        .await
    {
        Ok(p) => p,
        Err(e) => {
            allpeers_log::skin!("outbox: cannot read pending messages: {}", e.message);
            return false;
        }
    };
    // One unreachable peer costs one try per flush, not one per message.
    let mut unreachable: Vec<PeerId> = Vec::new();
    for (rid, payload, peers) in pending {
        for peer in peers {
            if unreachable.contains(&peer) {
                continue;
            }
            deliver_message(daemon, &rid, &payload, peer, &mut unreachable).await;
        }
    }
    unreachable.is_empty()
}

async fn deliver_message(
    daemon: &Arc<Daemon>,
    rid: &str,
    payload: &ChatPayload,
    peer: PeerId,
    unreachable: &mut Vec<PeerId>,
) {
    let body = wire::encode(payload);
    match letters::send(daemon, peer, wire::CHAT, body, true).await {
        Ok(how) => {
            if how == Delivered::Mailed {
                // Waiting at the hub: the contact may want to hear of it by e-mail.
                crate::mail::notices::message_waiting(daemon, peer);
            }
            let rid = rid.to_string();
            let chat_id = payload.chat_id().to_string();
            let message_id = rid.clone();
            let result = daemon
                .on_store(move |s| {
                    if how == Delivered::Mailed {
                        chat::clear_pending(s, &rid, &peer)?;
                        Ok(None)
                    } else {
                        // A direct answer means it is stored there: delivered.
                        match s.get(&rid)? {
                            Some(m) => Ok(Some(chat::set_receipt(
                                s,
                                &m,
                                &peer,
                                allpeers_model::hlc::now_ms() as i64,
                                false,
                            )?)),
                            None => Ok(None),
                        }
                    }
                })
                .await;
            match result {
                Ok(Some(m)) => daemon.publish(
                    topics::CHAT_RECEIPT,
                    json!({"message": m.id, "chat": chat_id, "peer_id": peer, "kind": "delivered", "via": how}),
                ),
                // In the recipient's mailbox at the hub: "delivered" comes when it fetches it.
                Ok(None) => daemon.publish(
                    topics::CHAT_RECEIPT,
                    json!({"message": message_id, "chat": chat_id, "peer_id": peer, "kind": "queued", "via": how}),
                ),
                Err(e) => allpeers_log::skin!("receipt not stored: {}", e.message),
            }
        }
        Err(SendError::Refused(why)) => {
            allpeers_log::flesh!(?peer, "message refused: {why}");
            let rid = rid.to_string();
            let _ = daemon
                .on_store(move |s| chat::clear_pending(s, &rid, &peer))
                .await;
        }
        Err(SendError::Unreachable(why)) => {
            allpeers_log::bone!(?peer, "message not delivered yet: {why}");
            unreachable.push(peer);
        }
    }
}

/// A letter from a peer (directly or from our mailbox), already checked: signed by its
/// author, addressed to us.
/// The letters' [`letters::Sink`].
pub fn letter_sink<'a>(daemon: &'a Arc<Daemon>, letter: Letter, via: Via) -> letters::Taken<'a> {
    Box::pin(take_letter(daemon, letter, via))
}

async fn take_letter(daemon: &Arc<Daemon>, letter: Letter, via: Via) -> Result<(), TakeError> {
    match letter.service.as_str() {
        wire::CONTACTS => {
            let payload: ContactPayload =
                wire::decode(&letter.body).map_err(|e| TakeError::Refused(e.to_string()))?;
            payload
                .check()
                .map_err(|e| TakeError::Refused(e.to_string()))?;
            take_contact(daemon, letter.from, payload).await
        }
        wire::CHAT => {
            let payload: ChatPayload =
                wire::decode(&letter.body).map_err(|e| TakeError::Refused(e.to_string()))?;
            take_chat(daemon, letter.from, payload, via).await
        }
        other => Err(TakeError::Refused(format!("no letter service {other:?}"))),
    }
}

fn local(e: RpcError) -> TakeError {
    TakeError::Local(e.message)
}

async fn take_contact(
    daemon: &Arc<Daemon>,
    from: PeerId,
    payload: ContactPayload,
) -> Result<(), TakeError> {
    let state = daemon
        .on_store(move |s| contacts::state(s, &from))
        .await
        .map_err(local)?;
    if state == ContactState::Blocked {
        // Dropped without a word: a blocked peer learns nothing.
        return Ok(());
    }
    match payload {
        ContactPayload::Request { message, invite } => {
            let key = letters::unlocked_key(daemon);
            let invited = match (invite, key) {
                (Some(token), Some(key)) => {
                    invite::check_token(&key, &token, allpeers_model::hlc::now_ms())
                }
                _ => false,
            };
            if matches!(state, ContactState::Outgoing | ContactState::Accepted) || invited {
                // We asked them too, or they hold our invite: accept at once.
                accept(daemon, from).await.map_err(local)?;
            } else {
                let msg = message.clone();
                let r = daemon
                    .on_store(move |s| {
                        contacts::set_state(s, &from, ContactState::Incoming, None, Some(&msg))
                    })
                    .await
                    .map_err(local)?;
                fill_name(daemon, from);
                daemon.publish(
                    topics::CONTACT_REQUEST,
                    json!({"peer_id": from, "message": message, "contact": contacts::to_json(&r, None)}),
                );
            }
        }
        ContactPayload::Accept => {
            // Only an answer to our own request counts: nobody makes us their contact.
            if state == ContactState::Outgoing {
                let r = daemon
                    .on_store(move |s| {
                        contacts::set_state(s, &from, ContactState::Accepted, None, None)
                    })
                    .await
                    .map_err(local)?;
                watch_contacts(daemon, &[from]).await;
                fill_name(daemon, from);
                daemon.publish(
                    topics::CONTACT_CHANGED,
                    contacts::to_json(&r, daemon.social.presence_json(&from).as_ref()),
                );
                daemon.social.outbox.notify_one();
            }
        }
        ContactPayload::Remove => {
            if state != ContactState::None {
                let r = daemon
                    .on_store(move |s| {
                        contacts::set_state(s, &from, ContactState::None, None, None)
                    })
                    .await
                    .map_err(local)?;
                unwatch_contacts(daemon, &[from]).await;
                daemon.publish(topics::CONTACT_CHANGED, contacts::to_json(&r, None));
            }
        }
        ContactPayload::Home {
            hub,
            addresses,
            certificate,
        } => {
            if state == ContactState::None {
                // Not someone we know: nothing to remember.
                return Ok(());
            }
            let Some(home) = HomeHub::from_parts(hub, &addresses) else {
                return Err(TakeError::Refused("a home hub without addresses".into()));
            };
            learn_home(daemon, from, home).await;
            // The name only when its hub signed it for this peer (a forged one is ignored).
            if let Some(cert) = certificate {
                match foreign::certified_name(&cert, &hub, &from) {
                    Some(name) => {
                        if let Some(foreign) = guest_lines(daemon)
                            && foreign.learn_hub_key(&cert.hub_name, hub)
                        {
                            let hub_name = cert.hub_name.clone();
                            if let Err(e) = daemon
                                .on_store(move |s| contacts::set_hub_key(s, &from, &hub_name, &hub))
                                .await
                            {
                                allpeers_log::marrow!(?from, "hub key not stored: {}", e.message);
                            }
                        }
                        if let Ok(Some(r)) = daemon
                            .on_store(move |s| {
                                contacts::set_name(s, &from, &name)?;
                                s.get(&contacts::resource_id(&from))
                            })
                            .await
                        {
                            daemon.publish(
                                topics::CONTACT_CHANGED,
                                contacts::to_json(&r, daemon.social.presence_json(&from).as_ref()),
                            );
                        }
                    }
                    None => allpeers_log::marrow!(
                        ?from,
                        "home letter with a forged certificate: name ignored"
                    ),
                }
            }
            if matches!(state, ContactState::Accepted | ContactState::Outgoing) {
                watch_contacts(daemon, &[from]).await;
            }
            daemon.social.outbox.notify_one();
        }
        ContactPayload::Presence { availability, text } => {
            if state == ContactState::Accepted {
                let status = PeerStatus { availability, text }.bounded();
                let data = json!({"peer_id": from, "online": true, "state": status.availability.as_str(), "text": status.text});
                daemon
                    .social
                    .presence
                    .lock()
                    .expect("presence lock")
                    .insert(from, (true, status));
                daemon.publish(topics::PRESENCE_CHANGED, data);
            }
        }
    }
    Ok(())
}

/// The guest lines to contacts' home hubs (once the network is up).
fn guest_lines(daemon: &Daemon) -> Option<&Arc<ForeignHubs>> {
    daemon.network.get().map(|n| &n.foreign)
}

/// Watches contacts' presence: at our hub (the mutual rule needs our asking there for
/// contacts who are guests of it) and, for contacts homed elsewhere, at their hubs.
async fn watch_contacts(daemon: &Daemon, peers: &[PeerId]) {
    if let Some(hub) = daemon.hub() {
        hub.watch(WatchHolder::Contacts, peers).await;
    }
    if let Some(foreign) = guest_lines(daemon) {
        foreign.watch(peers).await;
    }
}

async fn unwatch_contacts(daemon: &Daemon, peers: &[PeerId]) {
    if let Some(hub) = daemon.hub() {
        hub.unwatch(WatchHolder::Contacts, peers).await;
    }
    if let Some(foreign) = guest_lines(daemon) {
        foreign.unwatch(peers).await;
    }
}

/// Remembers where `peer` lives (in memory for the guest lines, on its Peer resource).
async fn learn_home(daemon: &Daemon, peer: PeerId, home: HomeHub) {
    let text = home.to_text();
    if let Some(foreign) = guest_lines(daemon) {
        foreign.learn(peer, home);
    }
    if let Err(e) = daemon
        .on_store(move |s| contacts::set_home_hub(s, &peer, &text))
        .await
    {
        allpeers_log::marrow!(?peer, "home hub not stored: {}", e.message);
    }
}

/// Tells `peer` where we live (our home hub and our name there), so its letters for us are
/// deposited where we fetch them and it watches our presence there.
async fn send_home(daemon: &Arc<Daemon>, peer: PeerId) {
    let Some(section) = daemon.hub_config.as_ref() else {
        return;
    };
    let Ok(hub) = section.peer_id.parse::<PeerId>() else {
        return;
    };
    let certificate = match daemon.hub() {
        Some(h) => h
            .resolve(&daemon.peer_id().to_string())
            .await
            .ok()
            .flatten()
            .and_then(|r| r.certificate),
        None => None,
    };
    let body = wire::encode(&ContactPayload::Home {
        hub,
        addresses: section.addresses.clone(),
        certificate,
    });
    if let Err(e) = letters::send(daemon, peer, wire::CONTACTS, body, true).await {
        allpeers_log::marrow!(?peer, "home hub not told: {e}");
    }
}

/// Looks the peer's name up at the hub (a signed answer), stores it and tells clients
/// (`contact.changed`).
fn fill_name(daemon: &Arc<Daemon>, peer: PeerId) {
    let Some(hub) = daemon.hub().cloned() else {
        return;
    };
    let weak = Arc::downgrade(daemon);
    tokio::spawn(async move {
        let Ok(Some(record)) = hub.resolve(&peer.to_string()).await else {
            return;
        };
        let Some(cert) = record.certificate else {
            return;
        };
        let Some(daemon) = weak.upgrade() else { return };
        let name = cert.full_name();
        // Clients learn the name as soon as the node does.
        if let Ok(Some(r)) = daemon
            .on_store(move |s| {
                contacts::set_name(s, &peer, &name)?;
                s.get(&contacts::resource_id(&peer))
            })
            .await
        {
            daemon.publish(
                topics::CONTACT_CHANGED,
                contacts::to_json(&r, daemon.social.presence_json(&peer).as_ref()),
            );
        }
    });
}

async fn take_chat(
    daemon: &Arc<Daemon>,
    from: PeerId,
    payload: ChatPayload,
    via: Via,
) -> Result<(), TakeError> {
    // A clock far ahead is refused before anything is stored; the clock itself only
    // follows messages that were taken (a stranger cannot push it).
    let stamp = match &payload {
        ChatPayload::Message { hlc, .. } => {
            let ts = Timestamp::parse(hlc).map_err(|e| TakeError::Refused(e.to_string()))?;
            let now = allpeers_model::hlc::now_ms();
            if ts.wall_ms > now.saturating_add(allpeers_model::hlc::MAX_DRIFT_MS) {
                return Err(TakeError::Refused(format!(
                    "the message's clock is more than {} h ahead of ours",
                    allpeers_model::hlc::MAX_DRIFT_MS / 3_600_000
                )));
            }
            Some(ts)
        }
        _ => None,
    };
    let me = me(daemon);
    let p = payload.clone();
    let store = daemon.store.clone();
    let applied = tokio::task::spawn_blocking(move || {
        let mut s = store.lock().expect("store lock");
        let applied = chat::apply_incoming(&mut s, &me, &from, &p);
        applied.map(|a| {
            let json = match &a {
                Applied::Message { message, new_chat } => Some((
                    chat::message_json(&s, &me, message),
                    new_chat
                        .as_ref()
                        .and_then(|c| chat::chat_json(&s, &me, c).ok()),
                )),
                Applied::Updated(m) => Some((chat::message_json(&s, &me, m), None)),
                _ => None,
            };
            (a, json)
        })
    })
    .await
    .map_err(|e| TakeError::Local(e.to_string()))?;
    let (applied, json) = match applied {
        Ok(a) => a,
        Err(chat::ChatError::Store(e)) => return Err(TakeError::Local(e.to_string())),
        Err(e) => {
            allpeers_log::flesh!(?from, "chat letter refused: {e}");
            return Err(TakeError::Refused(e.to_string()));
        }
    };
    match applied {
        Applied::Message { .. } => {
            if let Some(ts) = stamp {
                let now = allpeers_model::hlc::now_ms();
                // Checked above: within the allowed drift.
                let _ = daemon
                    .social
                    .clock
                    .lock()
                    .expect("clock lock")
                    .observe(&ts, now);
            }
            let (message, new_chat) = json.expect("message json");
            if let Some(c) = new_chat {
                daemon.publish(topics::CHAT_CHANGED, c);
            }
            daemon.publish(topics::MESSAGE_RECEIVED, message);
            if via == Via::Mail {
                // It came through the hub: tell the sender it arrived.
                let ChatPayload::Message { chat, id, .. } = payload else {
                    unreachable!()
                };
                send_receipt(daemon, from, chat.id, vec![id], false);
            }
        }
        Applied::Duplicate | Applied::Ignored(_) => {}
        Applied::Updated(_) => {
            daemon.publish(topics::MESSAGE_UPDATED, json.expect("message json").0);
        }
        Applied::Receipt { chat, ids, read } => {
            for id in ids {
                daemon.publish(
                    topics::CHAT_RECEIPT,
                    json!({"message": chat::message_resource_id(&me, &id), "chat": chat, "peer_id": from, "kind": if read { "read" } else { "delivered" }}),
                );
            }
        }
        Applied::Typing { chat } => {
            daemon.publish(topics::CHAT_TYPING, json!({"chat": chat, "peer_id": from}));
        }
    }
    Ok(())
}

fn send_receipt(daemon: &Arc<Daemon>, to: PeerId, chat: String, ids: Vec<String>, read: bool) {
    let daemon = daemon.clone();
    tokio::spawn(async move {
        for chunk in ids.chunks(wire::MAX_RECEIPT_IDS) {
            let body = wire::encode(&ChatPayload::Receipt {
                chat: chat.clone(),
                ids: chunk.to_vec(),
                read,
            });
            if let Err(e) = letters::send(&daemon, to, wire::CHAT, body, true).await {
                allpeers_log::bone!(?to, "receipt not sent: {e}");
            }
        }
    });
}

// ---- the local API ----

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AddParams {
    who: String,
    #[serde(default)]
    message: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PresenceParams {
    state: String,
    #[serde(default)]
    text: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GroupParams {
    title: String,
    members: Vec<PeerId>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct LinkParams {
    url: String,
    title: Option<String>,
    description: Option<String>,
    /// Base64 of a small preview image.
    preview: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SendParams {
    pub(crate) chat: String,
    #[serde(default)]
    pub(crate) body: String,
    pub(crate) link: Option<LinkParams>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HistoryParams {
    chat: String,
    before: Option<String>,
    limit: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EditParams {
    message: String,
    body: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MessageParams {
    message: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ChatParams {
    chat: String,
}

pub const AREA: Area = Area {
    name: "social",
    methods: &[
        m::CONTACTS_LIST,
        m::CONTACTS_ADD,
        m::CONTACTS_ACCEPT,
        m::CONTACTS_DECLINE,
        m::CONTACTS_REMOVE,
        m::CONTACTS_BLOCK,
        m::CONTACTS_UNBLOCK,
        m::CONTACTS_INVITE,
        m::PRESENCE_SET,
        m::PRESENCE_GET,
        m::CHAT_LIST,
        m::CHAT_OPEN,
        m::CHAT_CREATE_GROUP,
        m::CHAT_SEND,
        m::CHAT_HISTORY,
        m::CHAT_EDIT,
        m::CHAT_DELETE,
        m::CHAT_READ,
        m::CHAT_TYPING,
    ],
    handle: |call| Box::pin(handle(call.daemon, call.method, call.params)),
    slow: &[],
};

async fn handle(daemon: &Arc<Daemon>, method: &str, params: Value) -> Result<Value, RpcError> {
    if daemon.network.get().is_none() {
        return Err(err(
            codes::NO_HUB,
            "the node is offline (identity locked or endpoint down): see net.status",
        ));
    }
    match method {
        m::CONTACTS_LIST => {
            let list = daemon.on_store(|s| contacts::list(s)).await?;
            Ok(Value::Array(
                list.iter()
                    .filter(|r| contacts::state_of(r) != ContactState::None)
                    .map(|r| {
                        let presence =
                            contacts::peer_of(r).and_then(|p| daemon.social.presence_json(&p));
                        contacts::to_json(r, presence.as_ref())
                    })
                    .collect(),
            ))
        }
        m::CONTACTS_ADD => add_contact(daemon, parse(params)?).await,
        m::CONTACTS_ACCEPT => {
            let p: PeerParams = parse(params)?;
            let state = daemon
                .on_store(move |s| contacts::state(s, &p.peer))
                .await?;
            if !matches!(state, ContactState::Incoming | ContactState::Declined) {
                return Err(err(
                    codes::NOT_FOUND,
                    format!(
                        "no contact request from {} (state: {})",
                        p.peer,
                        state.as_str()
                    ),
                ));
            }
            accept(daemon, p.peer).await
        }
        m::CONTACTS_DECLINE => {
            let p: PeerParams = parse(params)?;
            // Declined quietly: the requester is not told (as with most messengers).
            set_and_tell(daemon, p.peer, ContactState::Declined).await
        }
        m::CONTACTS_REMOVE => {
            let p: PeerParams = parse(params)?;
            let body = wire::encode(&ContactPayload::Remove);
            let result = set_and_tell(daemon, p.peer, ContactState::None).await?;
            unwatch_contacts(daemon, &[p.peer]).await;
            let daemon = daemon.clone();
            tokio::spawn(async move {
                let _ = letters::send(&daemon, p.peer, wire::CONTACTS, body, true).await;
            });
            Ok(result)
        }
        m::CONTACTS_BLOCK => {
            let p: PeerParams = parse(params)?;
            let result = set_and_tell(daemon, p.peer, ContactState::Blocked).await?;
            unwatch_contacts(daemon, &[p.peer]).await;
            daemon
                .social
                .presence
                .lock()
                .expect("presence lock")
                .remove(&p.peer);
            Ok(result)
        }
        m::CONTACTS_UNBLOCK => {
            let p: PeerParams = parse(params)?;
            set_and_tell(daemon, p.peer, ContactState::None).await
        }
        m::CONTACTS_INVITE => {
            let (code, expires) = issue_invite(daemon).await?;
            Ok(json!({"code": code, "expires": expires}))
        }
        m::PRESENCE_SET => {
            let p: PresenceParams = parse(params)?;
            let availability: Availability = p
                .state
                .parse()
                .map_err(|e: String| RpcError::new(ErrorCode::InvalidParams, e))?;
            if p.text.len() > wire::MAX_SHORT {
                return Err(err(
                    codes::TOO_LARGE,
                    format!("status text is at most {} bytes", wire::MAX_SHORT),
                ));
            }
            let status = PeerStatus {
                availability,
                text: p.text,
            }
            .bounded();
            if let Some(hub) = daemon.hub() {
                hub.set_status(status.clone()).await;
            }
            // Contacts we are connected to hear it directly too.
            let connected: Vec<PeerId> = {
                let network = daemon.network.get().expect("checked above");
                daemon
                    .on_store(|s| contacts::accepted(s))
                    .await?
                    .into_iter()
                    .filter(|p| network.endpoint.connection(p).is_some())
                    .collect()
            };
            let body = wire::encode(&ContactPayload::Presence {
                availability: status.availability,
                text: status.text.clone(),
            });
            for peer in connected {
                let daemon = daemon.clone();
                let body = body.clone();
                tokio::spawn(async move {
                    let _ = letters::send(&daemon, peer, wire::CONTACTS, body, false).await;
                });
            }
            Ok(json!({"state": status.availability.as_str(), "text": status.text}))
        }
        m::PRESENCE_GET => {
            let status = daemon.hub().map(|h| h.own_status()).unwrap_or_default();
            Ok(json!({"state": status.availability.as_str(), "text": status.text}))
        }
        m::CHAT_LIST => {
            let me = me(daemon);
            daemon
                .on_store(move |s| {
                    let chats = s.query(&allpeers_model::query::Query::of("Chat"))?;
                    let mut out = Vec::new();
                    for c in &chats {
                        out.push(chat::chat_json(s, &me, c)?);
                    }
                    // Most recent conversation first.
                    out.sort_by(|a, b| {
                        b["last"]["hlc"]
                            .as_str()
                            .unwrap_or("")
                            .cmp(a["last"]["hlc"].as_str().unwrap_or(""))
                    });
                    Ok(Value::Array(out))
                })
                .await
        }
        m::CHAT_OPEN => {
            let p: PeerParams = parse(params)?;
            let me = me(daemon);
            let state = daemon
                .on_store(move |s| contacts::state(s, &p.peer))
                .await?;
            if state != ContactState::Accepted {
                return Err(err(
                    codes::NOT_A_CONTACT,
                    format!("{} is not a contact (state: {})", p.peer, state.as_str()),
                ));
            }
            daemon
                .on_store(move |s| {
                    let c = chat::open_dm(s, &me, &p.peer)?;
                    chat::chat_json(s, &me, &c)
                })
                .await
        }
        m::CHAT_CREATE_GROUP => {
            let p: GroupParams = parse(params)?;
            if p.title.len() > wire::MAX_SHORT || p.members.len() >= wire::MAX_MEMBERS {
                return Err(err(
                    codes::TOO_LARGE,
                    format!(
                        "a group has a title of at most {} bytes and fewer than {} members",
                        wire::MAX_SHORT,
                        wire::MAX_MEMBERS
                    ),
                ));
            }
            let me = me(daemon);
            let members = p.members.clone();
            let accepted = daemon.on_store(|s| contacts::accepted(s)).await?;
            if let Some(stranger) = members.iter().find(|m| !accepted.contains(m) && **m != me) {
                return Err(err(
                    codes::NOT_A_CONTACT,
                    format!("{stranger} is not a contact: only contacts can be added to a group"),
                ));
            }
            let c = daemon
                .on_store(move |s| {
                    let c = chat::create_group(s, &me, &p.title, &members)?;
                    chat::chat_json(s, &me, &c)
                })
                .await?;
            daemon.publish(topics::CHAT_CHANGED, c.clone());
            Ok(c)
        }
        m::CHAT_SEND => send_message(daemon, parse(params)?, None).await,
        m::CHAT_HISTORY => {
            let p: HistoryParams = parse(params)?;
            let me = me(daemon);
            daemon
                .on_store(move |s| {
                    if s.get(&p.chat)?.is_none() {
                        return Err(allpeers_store::StoreError::NotFound(p.chat.clone()));
                    }
                    let h = chat::history(s, &p.chat, p.before.as_deref(), p.limit.unwrap_or(50))?;
                    Ok(Value::Array(
                        h.iter().map(|m| chat::message_json(s, &me, m)).collect(),
                    ))
                })
                .await
        }
        m::CHAT_EDIT | m::CHAT_DELETE => edit_or_delete(daemon, method, params).await,
        m::CHAT_READ => {
            let p: ChatParams = parse(params)?;
            let chat_id = p.chat.clone();
            let me = me(daemon);
            let by_sender = daemon
                .on_store(move |s| chat::mark_read(s, &chat_id))
                .await?;
            let mut count = 0;
            for (sender, ids) in by_sender {
                count += ids.len();
                if sender != me {
                    send_receipt(daemon, sender, p.chat.clone(), ids, true);
                }
            }
            Ok(json!({"chat": p.chat, "marked": count}))
        }
        m::CHAT_TYPING => {
            let p: ChatParams = parse(params)?;
            let me = me(daemon);
            let chat_id = p.chat.clone();
            let c = daemon
                .on_store(move |s| s.get(&chat_id))
                .await?
                .ok_or_else(|| err(codes::NOT_FOUND, format!("no chat {}", p.chat)))?;
            let body = wire::encode(&ChatPayload::Typing {
                chat: p.chat.clone(),
            });
            // Typing is only worth telling peers we are connected to: never mailed.
            let network = daemon.network.get().expect("checked above");
            for peer in chat::participants(&c) {
                if peer != me && network.endpoint.connection(&peer).is_some() {
                    let daemon = daemon.clone();
                    let body = body.clone();
                    tokio::spawn(async move {
                        let _ = letters::send(&daemon, peer, wire::CHAT, body, false).await;
                    });
                }
            }
            Ok(json!({"chat": p.chat}))
        }
        other => Err(RpcError::new(
            ErrorCode::MethodNotFound,
            format!("unknown method \"{other}\""),
        )),
    }
}

/// A fresh invite code of ours (with our name and home hub) and when it expires (unix ms):
/// for `contacts.invite`, and for the mail area's invitations by e-mail.
pub async fn issue_invite(daemon: &Daemon) -> Result<(String, u64), RpcError> {
    let key = letters::unlocked_key(daemon)
        .ok_or_else(|| err(ErrorCode::Internal.code(), "the identity is locked"))?;
    let name = match daemon.hub() {
        Some(h) => h
            .resolve(&key.peer_id().to_string())
            .await
            .ok()
            .flatten()
            .and_then(|r| r.certificate)
            .map(|c| c.full_name()),
        None => None,
    };
    let hub = daemon
        .hub_config
        .as_ref()
        .and_then(|h| Some((h.peer_id.parse().ok()?, h.addresses.clone())));
    let now = allpeers_model::hlc::now_ms();
    let code = Invite {
        peer: key.peer_id(),
        name,
        hub,
        token: invite::issue_token(&key, now),
    }
    .encode();
    Ok((code, now + invite::VALIDITY.as_millis() as u64))
}

async fn set_and_tell(
    daemon: &Arc<Daemon>,
    peer: PeerId,
    state: ContactState,
) -> Result<Value, RpcError> {
    let r = daemon
        .on_store(move |s| contacts::set_state(s, &peer, state, None, None))
        .await?;
    let json = contacts::to_json(&r, daemon.social.presence_json(&peer).as_ref());
    daemon.publish(topics::CONTACT_CHANGED, json.clone());
    Ok(json)
}

async fn accept(daemon: &Arc<Daemon>, peer: PeerId) -> Result<Value, RpcError> {
    let result = set_and_tell(daemon, peer, ContactState::Accepted).await?;
    watch_contacts(daemon, &[peer]).await;
    let body = wire::encode(&ContactPayload::Accept);
    let daemon2 = daemon.clone();
    tokio::spawn(async move {
        if let Err(e) = letters::send(&daemon2, peer, wire::CONTACTS, body, true).await {
            allpeers_log::marrow!(?peer, "acceptance not delivered: {e}");
        }
        send_home(&daemon2, peer).await;
    });
    fill_name(daemon, peer);
    Ok(result)
}

async fn add_contact(daemon: &Arc<Daemon>, p: AddParams) -> Result<Value, RpcError> {
    if p.message.len() > wire::MAX_SHORT {
        return Err(err(
            codes::TOO_LARGE,
            format!("the request message is at most {} bytes", wire::MAX_SHORT),
        ));
    }
    let me = me(daemon);
    let mut home = None;
    let (peer, name, token) = if Invite::looks_like(&p.who) {
        let invite = Invite::decode(&p.who)
            .map_err(|e| RpcError::new(ErrorCode::InvalidParams, e.to_string()))?;
        home = invite
            .hub
            .as_ref()
            .and_then(|(hub, addresses)| HomeHub::from_parts(*hub, addresses));
        (invite.peer, invite.name, Some(invite.token))
    } else if let Ok(peer) = p.who.trim().parse::<PeerId>() {
        (peer, None, None)
    } else {
        let hub = daemon.hub().ok_or_else(|| {
            err(
                codes::NO_HUB,
                "adding by name needs a home hub (config.json: hub)",
            )
        })?;
        // Our hub first: it answers for its own names (and for no other hub's), so a key
        // learned for our hub's name can never redirect a lookup of our neighbours.
        let at_home = hub.resolve(p.who.trim()).await.map_err(|e| {
            err(
                codes::UNKNOWN_PEER,
                format!("cannot resolve {}: {e}", p.who),
            )
        })?;
        let record = match at_home {
            Some(record) => record,
            None => {
                let (record, at) =
                    resolve_at_its_hub(daemon, p.who.trim())
                        .await?
                        .ok_or_else(|| {
                            err(
                                codes::UNKNOWN_PEER,
                                format!(
                                    "{} is not registered at our hub, and no contact's certificate nor our hub's directory named the key of a hub by that name",
                                    p.who
                                ),
                            )
                        })?;
                home = Some(at);
                record
            }
        };
        let name = record.certificate.as_ref().map(|c| c.full_name());
        (record.peer, name, None)
    };
    if peer == me {
        return Err(RpcError::new(
            ErrorCode::InvalidParams,
            "that is your own PeerId",
        ));
    }
    let state = daemon.on_store(move |s| contacts::state(s, &peer)).await?;
    match state {
        ContactState::Accepted => {
            return set_and_tell(daemon, peer, ContactState::Accepted).await;
        }
        ContactState::Incoming => return accept(daemon, peer).await,
        _ => {}
    }
    // An invite is its issuer's consent given in advance: once our request (carrying its
    // token) is delivered, they accept it on arrival, so we are contacts.
    let invited = token
        .as_deref()
        .and_then(invite::token_expires)
        .is_some_and(|expires| expires > allpeers_model::hlc::now_ms());
    let name2 = name.clone();
    let mut r = daemon
        .on_store(move |s| {
            contacts::set_state(s, &peer, ContactState::Outgoing, name2.as_deref(), None)
        })
        .await?;
    // The invite says where they live: letters and presence go through their hub.
    if let Some(home) = home {
        learn_home(daemon, peer, home).await;
    }
    // Watch now: when they accept (and watch us), the hub shows presence both ways.
    watch_contacts(daemon, &[peer]).await;
    let body = wire::encode(&ContactPayload::Request {
        message: p.message,
        invite: token,
    });
    let delivered = match letters::send(daemon, peer, wire::CONTACTS, body, true).await {
        Ok(how) => json!(how),
        Err(SendError::Refused(why)) => return Err(err(codes::REFUSED, why)),
        Err(SendError::Unreachable(why)) => {
            return Err(err(
                codes::CONNECT_FAILED,
                format!("the request could not be delivered: {why}"),
            ));
        }
    };
    // Where we live, for their letters and presence (after the request it goes with).
    let daemon2 = daemon.clone();
    tokio::spawn(async move { send_home(&daemon2, peer).await });
    if invited {
        r = daemon
            .on_store(move |s| contacts::set_state(s, &peer, ContactState::Accepted, None, None))
            .await?;
    }
    let mut json = contacts::to_json(&r, None);
    json["delivered"] = delivered;
    daemon.publish(topics::CONTACT_CHANGED, json.clone());
    Ok(json)
}

/// `name@hub` for a hub other than ours whose key a certificate taught us
/// ([`ForeignHubs::learn_hub_key`]) or, failing that, our own hub's directory named (the
/// hub's own signed record, as introduced by our hub's peers): the hub's addresses from its
/// signed record on the DHT under that key (a record signed by another key is refused
/// there), else from our hub's directory (signed by that key), else from a contact homed
/// there; then the name is resolved in that hub's directory over a guest line and its
/// certificate checked against the key. `None`: no hub of that name is known.
async fn resolve_at_its_hub(
    daemon: &Arc<Daemon>,
    who: &str,
) -> Result<Option<(DirectoryRecord, HomeHub)>, RpcError> {
    let Ok((_, Some(hub_name))) = allpeers_hub_client::names::parse_full_name(who) else {
        return Ok(None);
    };
    let Some(foreign) = guest_lines(daemon) else {
        return Ok(None);
    };
    let home_hub = daemon.hub();
    // A key a certificate taught us wins; else our own hub's directory may know a hub of
    // that name from its peers' guest lines (only as trusted as our hub: names are not
    // unique, and a name several keys claim is refused there).
    let (key, mut from_home) = match (foreign.hub_key(&hub_name), home_hub) {
        (Some(key), _) => (key, None),
        (None, None) => return Ok(None),
        (None, Some(home_hub)) => match home_hub.lookup_hub_name(&hub_name).await {
            Ok(Some(record)) => (record.hub, Some(record.addresses)),
            Ok(None) => return Ok(None),
            Err(e) => {
                return Err(err(
                    codes::UNKNOWN_PEER,
                    format!("hub {hub_name} in our hub's directory: {e}"),
                ));
            }
        },
    };
    // Our own hub answered for its names already (a guest line to it would replace our line).
    if home_hub.is_some_and(|h| h.hub() == key) {
        return Ok(None);
    }
    let dht = daemon
        .network
        .get()
        .and_then(|n| n.discovery.get())
        .and_then(|d| d.dht.get());
    let mut why = String::from("the DHT is off");
    let mut addresses = None;
    if let Some(dht) = dht {
        match dht.resolve(&key).await {
            Ok(record) => addresses = Some(record.dialable()),
            Err(e) => why = format!("not on the DHT: {e}"),
        }
    }
    // Not on the DHT: what that hub last told our hub's directory (signed by its key),
    // then a contact's (perhaps old).
    if addresses.as_ref().is_none_or(|a| a.is_empty())
        && from_home.is_none()
        && let Some(home_hub) = home_hub
    {
        match home_hub.lookup_hub_key(key).await {
            Ok(record) => from_home = record.map(|r| r.addresses),
            Err(e) => why = format!("{why}; our hub's directory: {e}"),
        }
    }
    let Some(addresses) = addresses
        .filter(|a| !a.is_empty())
        .or(from_home)
        .filter(|a| !a.is_empty())
        .or_else(|| foreign.known_addresses(&key))
    else {
        return Err(err(
            codes::UNKNOWN_PEER,
            format!("where hub {hub_name} is, is unknown ({why})"),
        ));
    };
    let home = HomeHub {
        peer: key,
        addresses,
    };
    let record = foreign
        .resolve_at(&home, who)
        .await
        .map_err(|e| err(codes::UNKNOWN_PEER, format!("cannot resolve {who}: {e}")))?
        .ok_or_else(|| err(codes::UNKNOWN_PEER, format!("{who} is not registered")))?;
    // The hub client checked the answer's signature; the certificate must be that hub's
    // too, for this peer and this name.
    let certified = record
        .certificate
        .as_ref()
        .and_then(|c| foreign::certified_name(c, &key, &record.peer));
    let (local, _) = allpeers_hub_client::names::parse_full_name(who)
        .map_err(|e| RpcError::new(ErrorCode::InvalidParams, e.to_string()))?;
    if certified != Some(format!("{local}@{hub_name}")) {
        return Err(err(
            codes::UNKNOWN_PEER,
            format!("hub {hub_name} answered for {who} without its certificate"),
        ));
    }
    Ok(Some((record, home)))
}

/// Sends a message; `via`: the web app (its origin) sending it on the user's behalf, shown
/// with the message on both sides.
pub(crate) async fn send_message(
    daemon: &Arc<Daemon>,
    p: SendParams,
    via: Option<String>,
) -> Result<Value, RpcError> {
    if p.body.len() > wire::MAX_BODY {
        return Err(err(
            codes::TOO_LARGE,
            format!("a message is at most {} bytes", wire::MAX_BODY),
        ));
    }
    let link = match p.link {
        Some(l) => {
            let preview = match l.preview {
                Some(b64) => Some(
                    base64::Engine::decode(&base64::engine::general_purpose::STANDARD, b64)
                        .map_err(|e| {
                            RpcError::new(ErrorCode::InvalidParams, format!("link.preview: {e}"))
                        })?,
                ),
                None => None,
            };
            let card = LinkCard {
                url: l.url,
                title: l.title,
                description: l.description,
                preview,
            };
            card.check()
                .map_err(|e| RpcError::new(ErrorCode::InvalidParams, e.to_string()))?;
            Some(card)
        }
        None => None,
    };
    if p.body.trim().is_empty() && link.is_none() {
        return Err(RpcError::new(
            ErrorCode::InvalidParams,
            "a message needs a body or a link",
        ));
    }
    let me = me(daemon);
    let hlc = daemon.social.tick().to_string();
    let now = allpeers_model::hlc::now_ms();
    let chat_id = p.chat.clone();
    let (message, payload) = daemon
        .on_store(move |s| {
            let c = s
                .get(&chat_id)?
                .ok_or_else(|| allpeers_store::StoreError::NotFound(chat_id.clone()))?;
            if !chat::participants(&c).contains(&me) {
                return Err(allpeers_store::StoreError::BadRequest(
                    "you are not a member of this chat".into(),
                ));
            }
            let content = chat::Content {
                body: &p.body,
                link: link.as_ref(),
                via: via.as_deref(),
            };
            let (m, _) = chat::create_outgoing(s, &me, &c, content, &hlc, now)?;
            let payload = chat::payload_of(s, &m)?;
            Ok((chat::message_json(s, &me, &m), payload))
        })
        .await?;
    daemon.publish(topics::MESSAGE_RECEIVED, message.clone());
    // Stored: acknowledged to the caller. Delivery goes on in the background (the outbox
    // retries whatever does not get through now).
    if let Some(payload) = payload {
        let daemon = daemon.clone();
        let rid = message["id"].as_str().unwrap_or_default().to_string();
        let recipients: Vec<PeerId> = message["pending"]
            .as_array()
            .map(|a| a.iter().filter_map(|p| p.as_str()?.parse().ok()).collect())
            .unwrap_or_default();
        tokio::spawn(async move {
            let sends = recipients.into_iter().map(|peer| {
                let daemon = daemon.clone();
                let rid = rid.clone();
                let payload = payload.clone();
                async move {
                    let Ok(_permit) = daemon.social.deliveries.clone().acquire_owned().await else {
                        return;
                    };
                    let mut unreachable = Vec::new();
                    deliver_message(&daemon, &rid, &payload, peer, &mut unreachable).await;
                }
            });
            futures::future::join_all(sends).await;
        });
    }
    Ok(message)
}

async fn edit_or_delete(
    daemon: &Arc<Daemon>,
    method: &str,
    params: Value,
) -> Result<Value, RpcError> {
    let me = me(daemon);
    let (rid, body) = if method == m::CHAT_EDIT {
        let p: EditParams = parse(params)?;
        if p.body.len() > wire::MAX_BODY {
            return Err(err(
                codes::TOO_LARGE,
                format!("a message is at most {} bytes", wire::MAX_BODY),
            ));
        }
        (p.message, Some(p.body))
    } else {
        let p: MessageParams = parse(params)?;
        (p.message, None)
    };
    let now = allpeers_model::hlc::now_ms();
    let rid2 = rid.clone();
    let (json, chat_resource, payload) = daemon
        .on_store(move |s| {
            let m = s
                .get(&rid2)?
                .ok_or_else(|| allpeers_store::StoreError::NotFound(rid2.clone()))?;
            if m.type_name != "Message"
                || m.get("sender").and_then(|v| v.as_str()) != Some(me.to_string().as_str())
            {
                return Err(allpeers_store::StoreError::BadRequest(
                    "only your own messages can be edited or deleted".into(),
                ));
            }
            let chat_id = m
                .get("chat")
                .and_then(|v| v.as_str())
                .unwrap_or_default()
                .to_string();
            let id = rid2.rsplit(':').next().unwrap_or_default().to_string();
            let (updated, payload) = match &body {
                Some(body) => {
                    let mut patch = allpeers_model::resource::Patch::default();
                    patch.properties.insert(
                        "body".into(),
                        allpeers_model::resource::Value::String(body.clone()),
                    );
                    patch.properties.insert(
                        "edited".into(),
                        allpeers_model::resource::Value::Date(now as i64),
                    );
                    (
                        s.update(&rid2, &patch)?,
                        ChatPayload::Edit {
                            chat: chat_id.clone(),
                            id,
                            edited_ms: now,
                            body: body.clone(),
                        },
                    )
                }
                None => (
                    chat::delete_body(s, &rid2)?,
                    ChatPayload::Delete {
                        chat: chat_id.clone(),
                        id,
                    },
                ),
            };
            let chat_resource = s.get(&chat_id)?;
            Ok((chat::message_json(s, &me, &updated), chat_resource, payload))
        })
        .await?;
    daemon.publish(topics::MESSAGE_UPDATED, json.clone());
    if let Some(c) = chat_resource {
        let body = wire::encode(&payload);
        for peer in chat::participants(&c) {
            if peer == me {
                continue;
            }
            let daemon = daemon.clone();
            let body = body.clone();
            tokio::spawn(async move {
                if let Err(e) = letters::send(&daemon, peer, wire::CHAT, body, true).await {
                    allpeers_log::marrow!(?peer, "edit/delete not delivered: {e}");
                }
            });
        }
    }
    Ok(json)
}
