//! The `resources` area: the resource methods (`resources.*`, `lists.*`, `schemas.*`) over
//! the store, and per-client resource subscriptions forwarded as `resource.changed` /
//! `list.changed` events.

use std::sync::{Arc, OnceLock};

use allpeers_model::api::{ErrorCode, Event, RpcError};
use allpeers_model::resource::api::{self as m, topics};
use allpeers_store::SubscriptionId;
use allpeers_store::{EventKind, Filter};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::daemon::area::Area;
use crate::daemon::client::Session;
use crate::daemon::rpc::{parse, to_value};
use crate::daemon::state::Daemon;

pub const AREA: Area = Area {
    name: "resources",
    methods: m::METHODS,
    handle: |call| Box::pin(handle(call.daemon, call.session, call.method, call.params)),
    slow: &[],
};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SubscribeParams {
    filter: Filter,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SubscriptionParams {
    subscription: u64,
}

async fn handle(
    daemon: &Arc<Daemon>,
    session: &Session,
    method: &str,
    params: Value,
) -> Result<Value, RpcError> {
    if let Some(hook) = daemon.write_hook.get()
        && let Some(answer) = hook(daemon, method, &params).await
    {
        return answer;
    }
    match method {
        m::RESOURCES_SUBSCRIBE => subscribe(daemon, session, parse(params)?).await,
        m::RESOURCES_UNSUBSCRIBE => {
            let p: SubscriptionParams = parse(params)?;
            let id = SubscriptionId(p.subscription);
            if !session.forget_subscription(id) {
                return Ok(Value::Bool(false));
            }
            let removed = daemon
                .on_store(move |store| Ok(store.unsubscribe(id)))
                .await?;
            Ok(Value::Bool(removed))
        }
        _ => {
            let method_owned = method.to_string();
            let store = daemon.store.clone();
            let result = tokio::task::spawn_blocking(move || {
                let mut store = store.lock().expect("store lock");
                allpeers_store::api::handle(&mut store, &method_owned, params)
            })
            .await
            .map_err(|e| RpcError::new(ErrorCode::Internal, e.to_string()))?;
            match result {
                Some(Ok(value)) => {
                    if method == m::SCHEMAS_REGISTER {
                        daemon.publish(topics::SCHEMA_CHANGED, value.clone());
                    }
                    Ok(value)
                }
                Some(Err(e)) => Err(RpcError {
                    code: i32::try_from(e.code).unwrap_or(ErrorCode::Internal.code()),
                    message: e.message,
                    data: e.data,
                }),
                None => Err(RpcError::new(
                    ErrorCode::MethodNotFound,
                    format!("unknown method \"{method}\""),
                )),
            }
        }
    }
}

/// Subscribes this client to store changes. The callback runs on the writing thread after
/// each commit and only queues the event for this client (bounded; overflow is counted
/// and reported as `events.dropped`).
async fn subscribe(
    daemon: &Daemon,
    session: &Session,
    params: SubscribeParams,
) -> Result<Value, RpcError> {
    let sink = session.event_sink();
    let subscription_id: Arc<OnceLock<u64>> = Arc::default();
    let id_for_events = subscription_id.clone();
    let callback: allpeers_store::Callback = Arc::new(move |event: &allpeers_store::Event| {
        let topic = match event.kind {
            EventKind::ItemAdded | EventKind::ItemRemoved | EventKind::ItemMoved => {
                topics::LIST_CHANGED
            }
            EventKind::Created | EventKind::Updated | EventKind::Deleted => {
                topics::RESOURCE_CHANGED
            }
        };
        let mut data = serde_json::to_value(event).expect("store events serialise");
        if let (Value::Object(map), Some(id)) = (&mut data, id_for_events.get()) {
            map.insert("subscription".into(), Value::from(*id));
        }
        sink.send(Event {
            topic: topic.into(),
            data,
        });
    });
    let filter = params.filter;
    let id = daemon
        .on_store(move |store| {
            let id = store.subscribe(filter, callback)?;
            // Set while the store is still locked: no event of this subscription can be
            // delivered before its id is known.
            let _ = subscription_id.set(id.0);
            Ok(id)
        })
        .await?;
    session.remember_subscription(id);
    Ok(to_value(SubscriptionParams { subscription: id.0 }))
}

/// Drops a finished client's store subscriptions.
pub async fn forget_client(daemon: &Daemon, subscriptions: Vec<SubscriptionId>) {
    if subscriptions.is_empty() {
        return;
    }
    let _ = daemon
        .on_store(move |store| {
            for id in subscriptions {
                store.unsubscribe(id);
            }
            Ok(())
        })
        .await;
}
