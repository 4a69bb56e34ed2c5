//! The local API's resource methods over a [`Store`], JSON in and out, so the daemon only
//! routes: `if let Some(result) = allpeers_store::api::handle(&mut store, method, params)`.
//! Subscriptions (`resources.subscribe`/`unsubscribe`) are per client and stay in the daemon:
//! it calls [`Store::subscribe`] with a callback that forwards [`crate::Event`]s.
//! Method names, parameter types and error codes are in `allpeers_model::resource::api`.

use allpeers_model::query::Query;
use allpeers_model::resource::api::{
    self as m, CreateParams, IdParams, ListItemParams, QueryParams, QueryResult,
    RegisterSchemaParams, RegisterSchemaResult, UpdateParams, codes,
};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Value as Json, json};

use crate::{Store, StoreError};

/// A JSON-RPC error for the daemon to return as is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApiError {
    pub code: i64,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Json>,
}

/// JSON-RPC "invalid params".
pub const INVALID_PARAMS: i64 = -32602;
/// JSON-RPC "internal error".
pub const INTERNAL_ERROR: i64 = -32603;

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        let message = e.to_string();
        let (code, data) = match &e {
            StoreError::Invalid(v) => (codes::INVALID_RESOURCE, Some(json!({"errors": v.0}))),
            StoreError::NotFound(_) => (codes::NOT_FOUND, None),
            StoreError::Exists(_) => (codes::EXISTS, None),
            StoreError::Schema(s) => (codes::SCHEMA_REFUSED, serde_json::to_value(s).ok()),
            StoreError::Query(q) => (codes::INVALID_QUERY, serde_json::to_value(q).ok()),
            StoreError::Adapter { type_name, reason } => (
                codes::ADAPTER_REFUSED,
                Some(json!({"type": type_name, "reason": reason})),
            ),
            StoreError::BadRequest(_) => (INVALID_PARAMS, None),
            StoreError::Sql(_) | StoreError::Corrupt(_) | StoreError::Io { .. } => {
                allpeers_log::skin!(error = %e, "store failure");
                (INTERNAL_ERROR, None)
            }
        };
        ApiError {
            code,
            message,
            data,
        }
    }
}

fn params<T: DeserializeOwned>(p: Json) -> Result<T, ApiError> {
    serde_json::from_value(p).map_err(|e| ApiError {
        code: INVALID_PARAMS,
        message: format!("invalid params: {e}"),
        data: None,
    })
}

fn to_json<T: Serialize>(v: &T) -> Result<Json, ApiError> {
    serde_json::to_value(v).map_err(|e| ApiError {
        code: INTERNAL_ERROR,
        message: e.to_string(),
        data: None,
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CountParams {
    query: Query,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TypeParams {
    #[serde(rename = "type")]
    type_name: String,
}

/// Serves `method` if it is one of the resource methods; `None` otherwise.
pub fn handle(store: &mut Store, method: &str, p: Json) -> Option<Result<Json, ApiError>> {
    Some(match method {
        m::RESOURCES_CREATE => {
            params::<CreateParams>(p).and_then(|c| to_json(&store.create(c.resource)?))
        }
        m::RESOURCES_GET => params::<IdParams>(p).and_then(|c| to_json(&store.get(&c.id)?)),
        m::RESOURCES_UPDATE => {
            params::<UpdateParams>(p).and_then(|c| to_json(&store.update(&c.id, &c.patch)?))
        }
        m::RESOURCES_DELETE => params::<IdParams>(p).and_then(|c| {
            store.delete(&c.id)?;
            Ok(Json::Null)
        }),
        m::RESOURCES_QUERY => params::<QueryParams>(p).and_then(|c| {
            let r = if c.ids_only {
                QueryResult::Ids {
                    ids: store.query_ids(&c.query)?,
                }
            } else {
                QueryResult::Resources {
                    resources: store.query(&c.query)?,
                }
            };
            to_json(&r)
        }),
        m::RESOURCES_COUNT => {
            params::<CountParams>(p).and_then(|c| to_json(&store.count(&c.query)?))
        }
        m::LISTS_ITEMS => params::<IdParams>(p).and_then(|c| to_json(&store.list_items(&c.id)?)),
        m::LISTS_INSERT => params::<ListItemParams>(p)
            .and_then(|c| to_json(&store.list_insert(&c.list, &c.item, c.index)?)),
        m::LISTS_MOVE => params::<ListItemParams>(p).and_then(|c| {
            let index = c.index.ok_or_else(|| ApiError {
                code: INVALID_PARAMS,
                message: "lists.move needs an index".into(),
                data: None,
            })?;
            to_json(&store.list_move(&c.list, &c.item, index)?)
        }),
        m::LISTS_REMOVE => params::<ListItemParams>(p).and_then(|c| {
            store.list_remove(&c.list, &c.item)?;
            Ok(Json::Null)
        }),
        m::SCHEMAS_REGISTER => params::<RegisterSchemaParams>(p).and_then(|c| {
            let types = store.register_schema(&c.file, &c.text)?;
            to_json(&RegisterSchemaResult { types })
        }),
        m::SCHEMAS_LIST => {
            let names: Vec<&str> = store
                .registry()
                .types()
                .filter(|t| !t.anonymous)
                .map(|t| t.name.as_str())
                .collect();
            to_json(&names)
        }
        m::SCHEMAS_DESCRIBE => params::<TypeParams>(p).and_then(|c| describe(store, &c.type_name)),
        _ => return None,
    })
}

fn describe(store: &Store, type_name: &str) -> Result<Json, ApiError> {
    let reg = store.registry();
    let Some(t) = reg.get(type_name) else {
        return Err(StoreError::BadRequest(format!(
            "unknown type '{}'",
            type_name.chars().take(80).collect::<String>()
        ))
        .into());
    };
    let props: Vec<Json> = reg
        .all_props(type_name)
        .into_iter()
        .map(|(owner, p)| {
            json!({"name": p.name, "datatype": p.datatype, "required": p.required, "multi": p.multi,
                   "indexed": p.indexed, "declaredBy": owner.name})
        })
        .collect();
    Ok(json!({
        "name": t.name,
        "title": reg.title(type_name),
        "parent": t.parent,
        "anonymous": t.anonymous,
        "file": t.file,
        "lineage": reg.chain(type_name).iter().map(|t| t.name.clone()).collect::<Vec<_>>(),
        "subtypes": reg.subtypes(type_name).iter().map(|t| t.name.clone()).collect::<Vec<_>>(),
        "properties": props,
        "children": reg.all_children(type_name),
        "metadata": reg.meta_props(type_name),
    }))
}
