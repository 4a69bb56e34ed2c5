//! The apps area in the daemon: the trusted `apps.*` methods, the app-facing methods served
//! to an app session ([`serve`]) and the filter on its events ([`deliverable`]).
//!
//! Each app-facing method is a thin wrapper: it checks what the app may touch (its scope, its
//! namespace's types, accepted contacts), shapes the params, and calls the area that serves
//! the built-in method through the routing table, on the app's session (so subscriptions are
//! the session's own and go with it).

use std::sync::Arc;
use std::time::Duration;

use allpeers_model::PeerId;
use allpeers_model::api::apps::{
    self as ap, AppContact, AppIdentity, AppPermissions, AppRevokeShareParams, AppSchemaParams,
    AppSendParams, AppSent, AppShareParams, GrantParams, PermissionsRequestParams, RevokeAppParams,
    Scope, topics,
};
use allpeers_model::api::contract::{NoParams, app_method_scope};
use allpeers_model::api::methods::{self as m, SubscribeParams, SubscribeResult};
use allpeers_model::api::shares::{
    self as sh, CreateShareParams, Share, ShareLevel, ShareMember, ShareParams,
};
use allpeers_model::api::{ErrorCode, Event, RpcError};
use allpeers_model::resource::Resource;
use allpeers_model::resource::api::{
    self as r, CreateParams, IdParams, QueryParams, QueryResult, RegisterSchemaParams,
    ResourceFilter, ResourceSubscribeParams, UpdateParams,
};
use allpeers_model::schema::parse_schema;
use serde_json::{Value, json};

use super::rules;
use super::state::permissions;
use crate::daemon::area::{Area, Call, Reply};
use crate::daemon::client::Session;
use crate::daemon::router::dispatch;
use crate::daemon::rpc::{parse, to_value};
use crate::daemon::state::Daemon;
use crate::social::contacts::{self, ContactState};

pub const AREA: Area = Area {
    name: "apps",
    methods: ap::METHODS,
    handle,
    slow: &[],
};

/// How long `identity.get` waits for the hub to tell our name.
const NAME_LOOKUP: Duration = Duration::from_secs(2);

fn now_ms() -> u64 {
    allpeers_model::hlc::now_ms()
}

fn handle(call: Call<'_>) -> Reply<'_> {
    Box::pin(async move {
        let Call {
            daemon,
            method,
            params,
            ..
        } = call;
        match method {
            ap::APPS_LIST => {
                let _: NoParams = parse(params)?;
                Ok(to_value(daemon.apps.list()))
            }
            ap::APPS_GRANT => {
                let p: GrantParams = parse(params)?;
                let origin = checked_origin(&p.origin)?;
                let d = daemon.clone();
                let entry = daemon
                    .on_store(move |store| d.apps.grant(store, &origin, &p.scopes, now_ms()))
                    .await?;
                publish_changed(daemon, &entry.origin, entry.scopes.clone());
                Ok(to_value(entry))
            }
            ap::APPS_REVOKE => {
                let p: RevokeAppParams = parse(params)?;
                let origin = checked_origin(&p.origin)?;
                let d = daemon.clone();
                let at = origin.clone();
                let entry = daemon
                    .on_store(move |store| d.apps.revoke(store, &at, p.scopes.as_deref()))
                    .await?;
                let scopes = entry.as_ref().map_or(Vec::new(), |e| e.scopes.clone());
                publish_changed(daemon, &origin, scopes);
                Ok(to_value(entry))
            }
            other => Err(RpcError::new(
                ErrorCode::MethodNotFound,
                format!("unknown method \"{other}\""),
            )),
        }
    })
}

/// An origin `apps.grant` / `apps.revoke` names: as `hello` would accept it.
fn checked_origin(origin: &str) -> Result<String, RpcError> {
    rules::check_origin(origin)
        .map(str::to_string)
        .map_err(|e| RpcError::new(ErrorCode::InvalidParams, e.to_string()))
}

fn publish_changed(daemon: &Daemon, origin: &str, scopes: Vec<Scope>) {
    daemon.publish(topics::APPS_CHANGED, to_value(permissions(origin, scopes)));
}

fn unauthorized(message: impl Into<String>) -> RpcError {
    RpcError::new(ErrorCode::Unauthorized, message)
}

/// What an app is told of a resource that is not one of its own: as of one that does not
/// exist.
fn not_found(id: &str) -> RpcError {
    RpcError::new(
        ErrorCode::NotFound,
        format!(
            "no resource with id '{}'",
            id.chars().take(80).collect::<String>()
        ),
    )
}

/// One call of an app session, checked: the origin is within its rate, the method is served
/// to apps, its scope is granted.
struct App<'a> {
    daemon: &'a Arc<Daemon>,
    session: &'a Session,
    origin: &'a str,
    namespace: String,
    granted: Vec<Scope>,
}

/// Serves one call of an app session bound to `origin`.
pub async fn serve(
    daemon: &Arc<Daemon>,
    session: &Session,
    origin: &str,
    method: &str,
    params: Value,
) -> Result<Value, RpcError> {
    if !daemon.apps.limit.allows(&origin.to_string()) {
        return Err(RpcError::new(
            ErrorCode::RateLimited,
            format!(
                "{origin} is over its limit of {} calls a second: retry shortly",
                super::state::CALLS_PER_SECOND
            ),
        ));
    }
    let Some(needed) = app_method_scope(method) else {
        return Err(RpcError::new(
            ErrorCode::Unsupported,
            format!(
                "\"{}\" is not served to apps",
                method.chars().take(80).collect::<String>()
            ),
        ));
    };
    let granted = daemon.apps.scopes(origin);
    if let Some(scope) = rules::missing_scope(&granted, needed) {
        return Err(unauthorized(format!(
            "{method} needs the \"{scope}\" scope, not granted to {origin}"
        )));
    }
    let now = now_ms();
    if daemon.apps.used(origin, now) {
        let origin = origin.to_string();
        let _ = daemon
            .on_store(move |store| store.touch_grant(&origin, now))
            .await;
    }
    let app = App {
        daemon,
        session,
        origin,
        namespace: rules::namespace(origin),
        granted,
    };
    app.call(method, params).await
}

impl App<'_> {
    async fn call(&self, method: &str, params: Value) -> Result<Value, RpcError> {
        match method {
            ap::PERMISSIONS_GET => {
                let _: NoParams = parse(params)?;
                Ok(to_value(self.permissions()))
            }
            ap::PERMISSIONS_REQUEST => {
                let p: PermissionsRequestParams = parse(params)?;
                let missing: Vec<&str> = p
                    .scopes
                    .iter()
                    .filter(|s| !self.granted.contains(s))
                    .map(|s| s.as_str())
                    .collect();
                if !missing.is_empty() {
                    return Err(unauthorized(format!(
                        "not granted to {}: {} (the user grants scopes through the extension)",
                        self.origin,
                        missing.join(", ")
                    )));
                }
                Ok(to_value(self.permissions()))
            }
            m::IDENTITY_GET => {
                let _: NoParams = parse(params)?;
                Ok(to_value(AppIdentity {
                    peer_id: self.daemon.peer_id(),
                    name: own_name(self.daemon).await,
                }))
            }
            m::CONTACTS_LIST => {
                let _: NoParams = parse(params)?;
                self.contacts().await
            }
            ap::MESSAGES_SEND => self.send(parse(params)?).await,
            r::SCHEMAS_REGISTER => self.register(parse(params)?).await,
            r::RESOURCES_CREATE => {
                let p: CreateParams = parse(params.clone())?;
                self.own_type(&p.resource.type_name)?;
                rules::check_new_id(&self.namespace, &p.resource.id)
                    .map_err(|e| RpcError::new(ErrorCode::InvalidParams, e))?;
                self.dispatch(method, params).await
            }
            r::RESOURCES_GET => {
                let p: IdParams = parse(params)?;
                Ok(to_value(self.own_resource(&p.id).await?))
            }
            r::RESOURCES_UPDATE => {
                let p: UpdateParams = parse(params.clone())?;
                self.existing(&p.id).await?;
                self.dispatch(method, params).await
            }
            r::RESOURCES_DELETE => {
                let p: IdParams = parse(params.clone())?;
                self.existing(&p.id).await?;
                self.dispatch(method, params).await
            }
            r::RESOURCES_QUERY => {
                let p: QueryParams = parse(params.clone())?;
                if let Some(foreign) = rules::foreign_query_type(&self.namespace, &p.query) {
                    return Err(self.foreign_type(foreign));
                }
                let result: QueryResult = parse(self.dispatch(method, params).await?)?;
                // The query named only the app's types; its results are of them. Checked
                // once more, since an answer is what leaks.
                Ok(to_value(match result {
                    QueryResult::Resources { resources } => QueryResult::Resources {
                        resources: resources
                            .into_iter()
                            .filter(|r| rules::in_namespace(&self.namespace, &r.type_name))
                            .collect(),
                    },
                    ids => ids,
                }))
            }
            r::RESOURCES_SUBSCRIBE => {
                let p: ResourceSubscribeParams = parse(params.clone())?;
                match &p.filter {
                    ResourceFilter::All => {
                        return Err(unauthorized(
                            "an app subscribes to its own types: by type, id or query",
                        ));
                    }
                    ResourceFilter::Type { name, .. } => self.own_type(name)?,
                    ResourceFilter::Id(id) => self.existing(id).await?,
                    ResourceFilter::Query(q) => {
                        if let Some(foreign) = rules::foreign_query_type(&self.namespace, q) {
                            return Err(self.foreign_type(foreign));
                        }
                    }
                }
                self.dispatch(method, params).await
            }
            r::RESOURCES_UNSUBSCRIBE => self.dispatch(method, params).await,
            sh::SHARES_CREATE => self.share(parse(params)?).await,
            sh::SHARES_LIST => {
                let _: NoParams = parse(params)?;
                let shares: Vec<Share> = parse(self.dispatch(sh::SHARES_LIST, json!({})).await?)?;
                let mut own = Vec::new();
                for share in shares {
                    if self.own_resource(&share.resource).await?.is_some() {
                        own.push(share);
                    }
                }
                Ok(to_value(own))
            }
            sh::SHARES_REVOKE => {
                let p: AppRevokeShareParams = parse(params)?;
                self.own_share(&p.share).await?;
                self.dispatch(
                    sh::SHARES_REVOKE,
                    json!({"share": p.share, "peer": p.peer_id}),
                )
                .await
            }
            m::EVENTS_SUBSCRIBE => {
                let p: SubscribeParams = parse(params)?;
                for topic in &p.topics {
                    let Some(scope) = rules::subscribable_topic(topic) else {
                        return Err(RpcError::new(
                            ErrorCode::InvalidParams,
                            format!(
                                "an app subscribes to presence.changed, contact.changed or share.changed, not \"{}\" (resource events: resources.subscribe)",
                                topic.chars().take(80).collect::<String>()
                            ),
                        ));
                    };
                    if !self.granted.contains(&scope) {
                        return Err(unauthorized(format!(
                            "{topic} needs the \"{scope}\" scope, not granted to {}",
                            self.origin
                        )));
                    }
                }
                let topics = self.session.topics();
                topics.send_modify(|set| set.extend(p.topics));
                Ok(self.subscriptions())
            }
            m::EVENTS_UNSUBSCRIBE => {
                let p: SubscribeParams = parse(params)?;
                self.session
                    .topics()
                    .send_modify(|set| set.retain(|t| !p.topics.contains(t)));
                Ok(self.subscriptions())
            }
            other => Err(RpcError::new(
                ErrorCode::Unsupported,
                format!("\"{other}\" is not served to apps"),
            )),
        }
    }

    fn permissions(&self) -> AppPermissions {
        permissions(self.origin, self.granted.clone())
    }

    fn subscriptions(&self) -> Value {
        to_value(SubscribeResult {
            topics: self.session.topics().borrow().iter().cloned().collect(),
        })
    }

    async fn dispatch(&self, method: &str, params: Value) -> Result<Value, RpcError> {
        dispatch(self.daemon, self.session, method, params).await
    }

    fn foreign_type(&self, type_name: &str) -> RpcError {
        unauthorized(format!(
            "type '{}' is not {}'s: an app reads and writes only its own types ({}<Name>)",
            type_name.chars().take(80).collect::<String>(),
            self.origin,
            self.namespace
        ))
    }

    fn own_type(&self, type_name: &str) -> Result<(), RpcError> {
        if rules::in_namespace(&self.namespace, type_name) {
            Ok(())
        } else {
            Err(self.foreign_type(type_name))
        }
    }

    /// The resource if it exists and is of one of the app's types.
    async fn own_resource(&self, id: &str) -> Result<Option<Resource>, RpcError> {
        let id = id.to_string();
        let found = self.daemon.on_store(move |store| store.get(&id)).await?;
        Ok(found.filter(|r| rules::in_namespace(&self.namespace, &r.type_name)))
    }

    /// `NotFound` unless the resource exists and is the app's.
    async fn existing(&self, id: &str) -> Result<(), RpcError> {
        match self.own_resource(id).await? {
            Some(_) => Ok(()),
            None => Err(not_found(id)),
        }
    }

    /// `ShareNotFound` unless the share's root is one of the app's resources.
    async fn own_share(&self, share: &str) -> Result<Share, RpcError> {
        let found: Share = parse(
            self.dispatch(
                sh::SHARES_GET,
                to_value(ShareParams {
                    share: share.into(),
                }),
            )
            .await?,
        )?;
        match self.own_resource(&found.resource).await? {
            Some(_) => Ok(found),
            None => Err(RpcError::new(
                ErrorCode::ShareNotFound,
                format!(
                    "no share '{}' of this app's",
                    share.chars().take(80).collect::<String>()
                ),
            )),
        }
    }

    async fn contacts(&self) -> Result<Value, RpcError> {
        let list = self.daemon.on_store(|s| contacts::list(s)).await?;
        let presence = self.granted.contains(&Scope::Presence);
        let out: Vec<AppContact> = list
            .iter()
            .filter(|r| contacts::state_of(r) == ContactState::Accepted)
            .filter_map(|r| {
                let peer_id = contacts::peer_of(r)?;
                let seen = presence.then(|| self.daemon.social.presence_json(&peer_id));
                let seen =
                    seen.map(|p| p.unwrap_or_else(|| json!({"online": false, "state": "offline"})));
                Some(AppContact {
                    peer_id,
                    name: r.get("name").and_then(|v| v.as_str()).map(str::to_string),
                    online: seen.as_ref().and_then(|p| p["online"].as_bool()),
                    state: seen.and_then(|p| serde_json::from_value(p["state"].clone()).ok()),
                })
            })
            .collect();
        Ok(to_value(out))
    }

    async fn send(&self, p: AppSendParams) -> Result<Value, RpcError> {
        let chat = self
            .dispatch(m::CHAT_OPEN, json!({"peer": p.peer_id}))
            .await?;
        let chat = chat["id"].as_str().unwrap_or_default().to_string();
        // The chat area's own send, with the app's origin on the message (both sides see it).
        let send = crate::social::api::SendParams {
            chat: chat.clone(),
            body: p.text,
            link: None,
        };
        let message =
            crate::social::api::send_message(self.daemon, send, Some(self.origin.to_string()))
                .await?;
        Ok(to_value(AppSent {
            id: message["id"].as_str().unwrap_or_default().to_string(),
            chat,
        }))
    }

    async fn register(&self, p: AppSchemaParams) -> Result<Value, RpcError> {
        let file = rules::schema_file(&self.namespace, p.file.as_deref())
            .map_err(|e| RpcError::new(ErrorCode::InvalidParams, e))?;
        let refused = |line: u32, reason: String| RpcError {
            code: ErrorCode::SchemaRefused.code(),
            message: format!("{file}:{line}: {reason}"),
            data: Some(json!({"file": file, "line": line, "reason": reason})),
        };
        let types = parse_schema(&file, &p.schema).map_err(|e| refused(e.line, e.reason))?;
        rules::check_schema_types(&self.namespace, &types).map_err(|reason| refused(0, reason))?;
        self.dispatch(
            r::SCHEMAS_REGISTER,
            to_value(RegisterSchemaParams {
                file: file.clone(),
                text: p.schema,
            }),
        )
        .await
    }

    async fn share(&self, p: AppShareParams) -> Result<Value, RpcError> {
        self.existing(&p.resource).await?;
        let members = p.members.clone();
        let states = self
            .daemon
            .on_store(move |s| {
                members
                    .iter()
                    .map(|peer| Ok((*peer, contacts::state(s, peer)?)))
                    .collect::<Result<Vec<(PeerId, ContactState)>, _>>()
            })
            .await?;
        if let Some((peer, _)) = states.iter().find(|(_, s)| *s != ContactState::Accepted) {
            return Err(RpcError::new(
                ErrorCode::NotAContact,
                format!("{peer} is not an accepted contact"),
            ));
        }
        let level = p.role.unwrap_or(ShareLevel::Read);
        let params = CreateShareParams {
            resource: p.resource,
            members: p
                .members
                .into_iter()
                .map(|peer| ShareMember { peer, level })
                .collect(),
        };
        self.dispatch(sh::SHARES_CREATE, to_value(params)).await
    }
}

/// Our `name@hub`: remembered once the hub has told it; asked for (briefly) until then.
async fn own_name(daemon: &Daemon) -> Option<String> {
    if let Some(name) = daemon.apps.own_name.lock().expect("name lock").clone() {
        return Some(name);
    }
    let hub = daemon.hub()?;
    let me = daemon.peer_id().to_string();
    let record = tokio::time::timeout(NAME_LOOKUP, hub.resolve(&me))
        .await
        .ok()?
        .ok()??;
    let name = record.certificate?.full_name();
    *daemon.apps.own_name.lock().expect("name lock") = Some(name.clone());
    Some(name)
}

/// The event as an app session of `origin` may see it, or `None`: checked against the grant
/// as it is now, so a revoke takes effect on subscriptions already made.
pub async fn deliverable(daemon: &Arc<Daemon>, origin: &str, event: Event) -> Option<Event> {
    let granted = daemon.apps.scopes(origin);
    if !rules::may_deliver(&event.topic, &granted) {
        return None;
    }
    match event.topic.as_str() {
        // An app sees accepted contacts only, and only their PeerId and name.
        m::topics::CONTACT_CHANGED => {
            if event.data["state"] != ContactState::Accepted.as_str() {
                return None;
            }
            let contact = AppContact {
                peer_id: serde_json::from_value(event.data["peer_id"].clone()).ok()?,
                name: event.data["name"].as_str().map(str::to_string),
                online: None,
                state: None,
            };
            Some(Event {
                topic: event.topic,
                data: to_value(contact),
            })
        }
        // Only the shares of its own resources.
        sh::topics::SHARE_CHANGED => {
            let root = event.data["resource"].as_str()?.to_string();
            let namespace = rules::namespace(origin);
            let found = daemon.on_store(move |s| s.get(&root)).await.ok()??;
            rules::in_namespace(&namespace, &found.type_name).then_some(event)
        }
        _ => Some(event),
    }
}
