//! The shares methods (`shares.*`, `sync.status`) and the write hook that turns edits of a
//! shared resource (`resources.update` / `delete`, `lists.insert` / `remove`) into signed ops.

use std::collections::BTreeSet;
use std::sync::Arc;

use allpeers_model::PeerId;
use allpeers_model::api::shares::{
    self as sh, AddMemberParams, CreateShareParams, RevokeParams, ShareParams, SyncStatus, topics,
};
use allpeers_model::api::{ErrorCode, RpcError};
use allpeers_model::resource::Resource;
use allpeers_model::resource::api::{self as r, IdParams, ListItemParams, UpdateParams};
use allpeers_replica::store::OpStore;
use allpeers_replica::{Action, Replica, ShareId, Stamp, position};
use allpeers_store::ops::ShareRecord;
use allpeers_store::{LIST_TYPE, Store};
use ed25519_dalek::SigningKey;
use serde_json::Value;

use super::rules;
use super::service::{store_error, with_shares};
use super::state::{ACCEPTED, Inner, OFFERED};
use crate::daemon::area::Area;
use crate::daemon::rpc::{app_error, internal, parse, to_value};
use crate::daemon::state::{Daemon, HookReply};

/// Items shared with a List at creation: a list's own bound (`MAX_LIST_LEN`) keeps the
/// genesis batch within one store transaction of reasonable size.
const MAX_SHARED_ITEMS: usize = allpeers_model::resource::MAX_LIST_LEN;

pub const AREA: Area = Area {
    name: "shares",
    methods: sh::METHODS,
    handle: |call| Box::pin(handle(call.daemon, call.method, call.params)),
    slow: &[sh::SHARES_CREATE],
};

fn not_allowed(why: impl Into<String>) -> RpcError {
    app_error(ErrorCode::NotAllowed.code(), why)
}

fn share_not_found(share: &str) -> RpcError {
    app_error(
        ErrorCode::ShareNotFound.code(),
        format!("no share {}", share.chars().take(64).collect::<String>()),
    )
}

fn now_ms() -> u64 {
    allpeers_model::hlc::now_ms()
}

/// Our signing key (ops are signed with the node's identity), unless it is still sealed.
fn signing_key(daemon: &Daemon) -> Result<SigningKey, RpcError> {
    let identity = daemon.identity.lock().expect("identity lock");
    let key = identity
        .key
        .as_ref()
        .ok_or_else(|| not_allowed("the identity is locked: unlock it to sign changes"))?;
    Ok(SigningKey::from_bytes(&key.secret()))
}

fn title_of(r: &Resource) -> String {
    ["title", "name"]
        .iter()
        .find_map(|p| r.get(p).and_then(|v| v.as_str()))
        .unwrap_or(&r.id)
        .to_string()
}

async fn handle(daemon: &Arc<Daemon>, method: &str, params: Value) -> Result<Value, RpcError> {
    match method {
        sh::SHARES_CREATE => create(daemon, parse(params)?).await,
        sh::SHARES_LIST => {
            let me = daemon.peer_id();
            let inner = daemon.shares.lock();
            let views: Vec<_> = inner
                .records
                .keys()
                .filter_map(|s| inner.view(s, &me))
                .collect();
            Ok(to_value(views))
        }
        sh::SHARES_GET => {
            let p: ShareParams = parse(params)?;
            let share = find(&daemon.shares.lock(), &p.share)?;
            view(daemon, &share)
        }
        sh::SHARES_ACCEPT => accept(daemon, parse(params)?).await,
        sh::SHARES_ADD_MEMBER => {
            let p: AddMemberParams = parse(params)?;
            let action = Action::Grant {
                member: p.peer,
                level: rules::to_level(p.level),
            };
            manage(daemon, &p.share, p.peer, action).await
        }
        sh::SHARES_REVOKE => {
            let p: RevokeParams = parse(params)?;
            // The core fills in what we have seen of the member.
            let action = Action::Revoke {
                member: p.peer,
                after_seq: 0,
                also: vec![],
            };
            manage(daemon, &p.share, p.peer, action).await
        }
        sh::SHARES_LEAVE => leave(daemon, parse(params)?).await,
        sh::SYNC_STATUS => {
            let me = daemon.peer_id();
            let online = |p: &PeerId| {
                daemon
                    .network
                    .get()
                    .is_some_and(|n| n.endpoint.connection(p).is_some())
            };
            let inner = daemon.shares.lock();
            let shares = inner
                .replicas
                .keys()
                .filter_map(|s| inner.sync_view(s, &me, online))
                .collect();
            Ok(to_value(SyncStatus { shares }))
        }
        _ => Err(RpcError::new(
            ErrorCode::MethodNotFound,
            format!("unknown method \"{method}\""),
        )),
    }
}

fn find(inner: &Inner, text: &str) -> Result<ShareId, RpcError> {
    rules::parse_share(text)
        .filter(|s| inner.records.contains_key(s))
        .ok_or_else(|| share_not_found(text))
}

fn view(daemon: &Daemon, share: &ShareId) -> Result<Value, RpcError> {
    let me = daemon.peer_id();
    daemon
        .shares
        .lock()
        .view(share, &me)
        .map(to_value)
        .ok_or_else(|| share_not_found(&rules::share_text(share)))
}

fn publish_changed(daemon: &Daemon, inner: &Inner, share: &ShareId) {
    if let Some(v) = inner.view(share, &daemon.peer_id()) {
        daemon.publish(topics::SHARE_CHANGED, to_value(v));
    }
}

/// Signs the share's genesis (the root whole), a grant per member, and a create placing each
/// item of a List (`CreateInList`), in one commit; offers it to each member.
async fn create(daemon: &Arc<Daemon>, p: CreateShareParams) -> Result<Value, RpcError> {
    let key = signing_key(daemon)?;
    // Files linked to disk are hashed first: the members learn what to fetch from the share itself.
    crate::files::service::hash_for_share(daemon, &p.resource).await?;
    let (share, granted, title) = with_shares(daemon, None, move |store, inner, d| {
        let me = d.peer_id();
        let root = store
            .get(&p.resource)
            .map_err(store_error)?
            .ok_or_else(|| store_error(allpeers_store::StoreError::NotFound(p.resource.clone())))?;
        if inner.share_of(&root.id).is_some() {
            return Err(not_allowed("the resource is already shared"));
        }
        let now = now_ms();
        let mut replica =
            Replica::create_share(&key, &root.id, &root.type_name, create_value(&root), now)
                .map_err(internal)?;
        // The grants first: a membership op makes a replica judge every op it holds again,
        // so it is cheap only before the items (here, and at a member fetching them in
        // stamp order).
        for m in p.members.iter().filter(|m| m.peer != me) {
            let grant = Action::Grant {
                member: m.peer,
                level: rules::to_level(m.level),
            };
            replica.author(&key, grant, now).map_err(internal)?;
        }
        carry_schemas(&mut replica, &key, now, store, &root.type_name)?;
        if store.registry().is_a(&root.type_name, LIST_TYPE) {
            let mut items = store.list_items(&root.id).map_err(store_error)?.items;
            items.truncate(MAX_SHARED_ITEMS);
            // One read of every item (reading them one by one was most of a share's cost).
            let items = store.get_many(&items).map_err(store_error)?;
            let mut actions = Vec::with_capacity(items.len());
            let mut types = BTreeSet::new();
            for r in &items {
                if types.insert(r.type_name.as_str()) {
                    carry_schemas(&mut replica, &key, now, store, &r.type_name)?;
                }
                // One op per item: its create places it in the list.
                actions.push(rules::create_in_list_action(r, &root.id));
            }
            // Under batch signatures: one signing per few hundred ops, not one per op.
            replica.author_many(&key, actions, now).map_err(internal)?;
        }
        let share = replica.share();
        // The share's resources are this node's own, as stored, and the ops say just that: the
        // ops are written, nothing is materialised again (reading every item of a big list
        // back cost more than signing it), and nothing is pushed (the members fetch the share
        // when they accept it).
        let mut changes = replica.take_changes();
        changes.resources.clear();
        OpStore::commit(store, &share, &changes, &replica).map_err(store_error)?;
        let record = ShareRecord {
            share,
            root: root.id.clone(),
            peer: me.to_string(),
            state: ACCEPTED.into(),
            title: title_of(&root),
        };
        store.put_share_record(&record).map_err(store_error)?;
        inner.records.insert(share, record);
        inner.replicas.insert(share, replica);
        let offer = inner.offer(&share).expect("just recorded");
        for m in p.members.iter().filter(|m| m.peer != me) {
            inner.extra.push((m.peer, offer.clone()));
        }
        let granted: Vec<PeerId> = p
            .members
            .iter()
            .map(|m| m.peer)
            .filter(|m| *m != me)
            .collect();
        Ok((share, granted, root_title(inner, &share)))
    })
    .await?;
    publish_changed(daemon, &daemon.shares.lock(), &share);
    for peer in granted {
        crate::mail::notices::share_granted(daemon, peer, rules::share_text(&share), &title);
    }
    view(daemon, &share)
}

/// The title the share was offered with.
fn root_title(inner: &Inner, share: &ShareId) -> String {
    inner
        .records
        .get(share)
        .map(|r| r.title.clone())
        .unwrap_or_default()
}

fn create_value(r: &Resource) -> Value {
    allpeers_store::ops::create_value(r)
}

/// Accepts an offered share: an empty replica that fills from the member that offered it.
async fn accept(daemon: &Arc<Daemon>, p: ShareParams) -> Result<Value, RpcError> {
    let share = with_shares(daemon, None, move |store, inner, _| {
        let share = find(inner, &p.share)?;
        let record = inner.records.get_mut(&share).expect("found");
        if record.state == OFFERED {
            record.state = ACCEPTED.into();
            store.put_share_record(record).map_err(store_error)?;
            inner.replicas.insert(share, Replica::new(share));
        }
        let from: Option<PeerId> = inner.records[&share].peer.parse().ok();
        if let Some(from) = from {
            inner.reconcile(share, from, now_ms());
        }
        Ok(share)
    })
    .await?;
    publish_changed(daemon, &daemon.shares.lock(), &share);
    view(daemon, &share)
}

/// A grant or a revocation by an admin; a new member is offered the share.
async fn manage(
    daemon: &Arc<Daemon>,
    share: &str,
    target: PeerId,
    action: Action,
) -> Result<Value, RpcError> {
    let key = signing_key(daemon)?;
    let text = share.to_string();
    let (share, joins) = with_shares(daemon, None, move |_, inner, d| {
        let me = d.peer_id();
        let share = find(inner, &text)?;
        let replica = inner
            .replicas
            .get_mut(&share)
            .ok_or_else(|| share_not_found(&text))?;
        if !rules::may_manage(replica.level(&me), &target, replica.owner()) {
            return Err(not_allowed(
                "only an admin adds or revokes members, and nobody revokes the owner",
            ));
        }
        let grant = matches!(action, Action::Grant { .. });
        // A new member (not a change of level): told by mail too.
        let joins = grant && target != me && replica.level(&target).is_none();
        replica.author(&key, action, now_ms()).map_err(internal)?;
        if grant
            && target != me
            && let Some(offer) = inner.offer(&share)
        {
            inner.extra.push((target, offer));
        }
        Ok((share, joins.then(|| root_title(inner, &share))))
    })
    .await?;
    if let Some(title) = joins {
        crate::mail::notices::share_granted(daemon, target, rules::share_text(&share), &title);
    }
    view(daemon, &share)
}

/// Leaves a share: first our own revocation, signed and queued to the other members (they stop
/// counting us and sending to us; any of them passes it on), then the share is forgotten here
/// and its ops with it; the resources stay as local copies. The owner cannot be revoked: its
/// leave only forgets the share here.
async fn leave(daemon: &Arc<Daemon>, p: ShareParams) -> Result<Value, RpcError> {
    let key = signing_key(daemon)?;
    let text = p.share.clone();
    with_shares(daemon, None, move |_, inner, d| {
        let me = d.peer_id();
        let share = find(inner, &text)?;
        if let Some(replica) = inner.replicas.get_mut(&share)
            && replica.level(&me).is_some()
            && replica.owner() != Some(me)
        {
            // The core fills in what the other members keep of ours (all of it).
            let leave = Action::Revoke {
                member: me,
                after_seq: 0,
                also: vec![],
            };
            replica.author(&key, leave, now_ms()).map_err(internal)?;
        }
        Ok(())
    })
    .await?;
    with_shares(daemon, None, move |store, inner, d| {
        let share = find(inner, &p.share)?;
        store.forget_share(&share).map_err(store_error)?;
        inner.records.remove(&share);
        inner.replicas.remove(&share);
        inner.last_sync.remove(&share);
        // No op is stored for this: the files area is woken itself, so downloads stop naming its members.
        d.files_auto.wake();
        Ok(())
    })
    .await?;
    Ok(Value::Null)
}

/// The write hook (`Daemon::write_hook`): a write to a resource of a share we hold becomes
/// signed ops, committed with the resource in one transaction and pushed to the members;
/// `None` for any other resource (the store takes it as usual).
pub fn local_write<'a>(
    daemon: &'a Arc<Daemon>,
    method: &'a str,
    params: &'a Value,
) -> HookReply<'a> {
    Box::pin(async move {
        let target = match method {
            r::RESOURCES_UPDATE | r::RESOURCES_DELETE => params.get("id")?.as_str()?,
            r::LISTS_INSERT | r::LISTS_REMOVE | r::LISTS_MOVE => params.get("list")?.as_str()?,
            _ => return None,
        };
        daemon.shares.lock().share_of(target)?;
        Some(shared_write(daemon, method.to_string(), params.clone()).await)
    })
}

async fn shared_write(
    daemon: &Arc<Daemon>,
    method: String,
    params: Value,
) -> Result<Value, RpcError> {
    let key = signing_key(daemon)?;
    with_shares(daemon, None, move |store, inner, d| {
        let me = d.peer_id();
        let now = now_ms();
        let target = match method.as_str() {
            r::LISTS_INSERT | r::LISTS_REMOVE | r::LISTS_MOVE => params.get("list"),
            _ => params.get("id"),
        }
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
        let share = inner
            .share_of(&target)
            .ok_or_else(|| store_error(allpeers_store::StoreError::NotFound(target.clone())))?;
        let replica = inner.replicas.get_mut(&share).expect("found");
        if !rules::may_write(replica.level(&me)) {
            return Err(not_allowed("this share is read-only for us"));
        }
        if matches!(
            method.as_str(),
            r::LISTS_INSERT | r::LISTS_REMOVE | r::LISTS_MOVE
        ) {
            // A query-backed list's items follow its query, shared or not: refused as the
            // store refuses it before sharing (ops would change nothing it shows).
            store.check_explicit_list(&target).map_err(store_error)?;
        }
        let result = match method.as_str() {
            r::RESOURCES_UPDATE => {
                let p: UpdateParams = parse(params)?;
                if !p.patch.meta.is_empty() {
                    // Local metadata is ours alone: written as usual, never an op.
                    let meta = allpeers_model::resource::Patch {
                        meta: p.patch.meta.clone(),
                        ..Default::default()
                    };
                    store.update(&p.id, &meta).map_err(store_error)?;
                }
                let (old, new) = store.check_update(&p.id, &p.patch).map_err(store_error)?;
                carry_schemas(replica, &key, now, store, &new.type_name)?;
                for action in rules::edit_actions(&old, &new, replica.state(), &me, now) {
                    sign(replica, &key, now, action)?;
                }
                Resulting::Resource(p.id)
            }
            r::RESOURCES_DELETE => {
                let p: IdParams = parse(params)?;
                sign(replica, &key, now, Action::Delete { resource: p.id })?;
                Resulting::Nothing
            }
            r::LISTS_INSERT => {
                let p: ListItemParams = parse(params)?;
                if !replica.state().add_tags(&p.list, &p.item).is_empty() {
                    return Err(store_error(allpeers_store::StoreError::Exists(format!(
                        "{} in list {}",
                        p.item, p.list
                    ))));
                }
                let shared = replica
                    .resource(&p.item)
                    .is_some_and(|v| v.get("deleted").is_none());
                if shared {
                    let add = Action::ListAdd {
                        list: p.list.clone(),
                        item: p.item.clone(),
                    };
                    sign(replica, &key, now, add)?;
                } else {
                    // A new item joins the share: one op creates it in the list.
                    let item = store.get(&p.item).map_err(store_error)?.ok_or_else(|| {
                        store_error(allpeers_store::StoreError::NotFound(p.item.clone()))
                    })?;
                    carry_schemas(replica, &key, now, store, &item.type_name)?;
                    let action = rules::create_in_list_action(&item, &p.list);
                    sign(replica, &key, now, action)?;
                }
                if let Some(index) = p.index {
                    place(replica, &key, now, &p.list, &p.item, index)?;
                }
                Resulting::Position(p.list, p.item)
            }
            r::LISTS_MOVE => {
                let p: ListItemParams = parse(params)?;
                let index = p.index.ok_or_else(|| {
                    RpcError::new(ErrorCode::InvalidParams, "lists.move needs an `index`")
                })?;
                if replica.state().add_tags(&p.list, &p.item).is_empty() {
                    return Err(store_error(allpeers_store::StoreError::NotFound(format!(
                        "{} in list {}",
                        p.item, p.list
                    ))));
                }
                place(replica, &key, now, &p.list, &p.item, index)?;
                Resulting::Position(p.list, p.item)
            }
            r::LISTS_REMOVE => {
                let p: ListItemParams = parse(params)?;
                let tags = replica.state().add_tags(&p.list, &p.item);
                if tags.is_empty() {
                    return Err(store_error(allpeers_store::StoreError::NotFound(format!(
                        "{} in list {}",
                        p.item, p.list
                    ))));
                }
                sign(
                    replica,
                    &key,
                    now,
                    Action::ListRemove {
                        list: p.list,
                        item: p.item,
                        tags,
                    },
                )?;
                Resulting::Nothing
            }
            _ => unreachable!("the hook takes these five"),
        };
        // Committed now (not after `work`) so the answer reads the written resource.
        inner.commit_all(store, me, None).map_err(store_error)?;
        result.read(store)
    })
    .await
}

/// Moves `item` of shared `list` to `index` (counted without the item; past the end: last) by
/// a position key between its new neighbours'. A move to the end takes the arrival key of now,
/// so items added afterwards still append after it. When no key fits (keys grown long, or made
/// up by a peer), the whole list is numbered afresh: one move per item.
fn place(
    replica: &mut Replica,
    key: &SigningKey,
    now: u64,
    list: &str,
    item: &str,
    index: u64,
) -> Result<(), RpcError> {
    let others: Vec<(String, String)> = replica
        .state()
        .list_order(list)
        .into_iter()
        .filter(|(i, _)| i != item)
        .collect();
    let index = usize::try_from(index)
        .unwrap_or(usize::MAX)
        .min(others.len());
    let before = index.checked_sub(1).map(|i| others[i].1.as_str());
    let position = match others.get(index) {
        Some((_, after)) => position::between(before, Some(after)),
        None => {
            let now_key = position::arrival(Stamp {
                wall_ms: now,
                counter: 0,
            });
            if before.is_none_or(|b| now_key.as_str() > b) {
                Some(now_key)
            } else {
                position::between(before, None)
            }
        }
    };
    let mut moves = Vec::new();
    match position {
        Some(position) => moves.push((item.to_string(), position)),
        None => {
            let mut items: Vec<String> = others.into_iter().map(|(i, _)| i).collect();
            items.insert(index, item.to_string());
            let keys = position::spread(items.len());
            moves.extend(items.into_iter().zip(keys));
        }
    }
    for (item, position) in moves {
        let action = Action::ListMove {
            list: list.to_string(),
            item,
            position,
        };
        sign(replica, key, now, action)?;
    }
    Ok(())
}

/// Signs, before an op that writes a resource of `type_name`, the app schema files it needs
/// that the share does not carry as we hold them (the first time, or a newer version): a
/// member that never saw the app's type can then store it (its store checks and registers
/// them, see `allpeers_store::ops`).
fn carry_schemas(
    replica: &mut Replica,
    key: &SigningKey,
    now: u64,
    store: &Store,
    type_name: &str,
) -> Result<(), RpcError> {
    for (file, text) in rules::app_schemas(store.registry(), type_name) {
        if replica.state().schema(&file) != Some(text.as_str()) {
            sign(replica, key, now, Action::Schema { file, text })?;
        }
    }
    Ok(())
}

/// Signs `action` by us into `replica`.
fn sign(replica: &mut Replica, key: &SigningKey, now: u64, action: Action) -> Result<(), RpcError> {
    replica
        .author(key, action, now)
        .map(|_| ())
        .map_err(internal)
}

/// What a shared write answers, read back once committed.
enum Resulting {
    Resource(String),
    Position(String, String),
    Nothing,
}

impl Resulting {
    fn read(self, store: &Store) -> Result<Value, RpcError> {
        match self {
            Resulting::Resource(id) => Ok(to_value(store.get(&id).map_err(store_error)?)),
            Resulting::Position(list, item) => {
                let items = store.list_items(&list).map_err(store_error)?.items;
                Ok(to_value(
                    items.iter().position(|i| *i == item).map(|p| p as u64),
                ))
            }
            Resulting::Nothing => Ok(Value::Null),
        }
    }
}
