//! Parameters and results of the local API's resource methods (`resources.*`, `lists.*`,
//! `schemas.*`). The daemon (host/node) maps them onto `allpeers-store`; `docs/resources.md` and `docs/api.md`
//! is the reference.

use serde::{Deserialize, Serialize};

use super::{Patch, Resource};
use crate::query::Query;

pub const RESOURCES_CREATE: &str = "resources.create";
pub const RESOURCES_GET: &str = "resources.get";
pub const RESOURCES_UPDATE: &str = "resources.update";
pub const RESOURCES_DELETE: &str = "resources.delete";
pub const RESOURCES_QUERY: &str = "resources.query";
pub const RESOURCES_COUNT: &str = "resources.count";
pub const RESOURCES_SUBSCRIBE: &str = "resources.subscribe";
pub const RESOURCES_UNSUBSCRIBE: &str = "resources.unsubscribe";
pub const LISTS_ITEMS: &str = "lists.items";
pub const LISTS_INSERT: &str = "lists.insert";
pub const LISTS_MOVE: &str = "lists.move";
pub const LISTS_REMOVE: &str = "lists.remove";
pub const SCHEMAS_REGISTER: &str = "schemas.register";
pub const SCHEMAS_LIST: &str = "schemas.list";
pub const SCHEMAS_DESCRIBE: &str = "schemas.describe";

/// Every resource method, for `hello`'s capabilities.
pub const METHODS: &[&str] = &[
    RESOURCES_CREATE,
    RESOURCES_GET,
    RESOURCES_UPDATE,
    RESOURCES_DELETE,
    RESOURCES_QUERY,
    RESOURCES_COUNT,
    RESOURCES_SUBSCRIBE,
    RESOURCES_UNSUBSCRIBE,
    LISTS_ITEMS,
    LISTS_INSERT,
    LISTS_MOVE,
    LISTS_REMOVE,
    SCHEMAS_REGISTER,
    SCHEMAS_LIST,
    SCHEMAS_DESCRIBE,
];

/// Event topics.
pub mod topics {
    /// A resource was created, updated or deleted (`data`: the store's event).
    pub const RESOURCE_CHANGED: &str = "resource.changed";
    /// An item was added to, moved in or removed from a list (explicit or query-backed).
    pub const LIST_CHANGED: &str = "list.changed";
    /// A schema was registered or evolved.
    pub const SCHEMA_CHANGED: &str = "schema.changed";
    pub const ALL: &[&str] = &[RESOURCE_CHANGED, LIST_CHANGED, SCHEMA_CHANGED];
}

/// The resource methods' codes as the store still names them (`i64`). The table is
/// [`crate::api::ErrorCode`]; these go when the store answers with `RpcError`.
pub mod codes {
    use crate::api::ErrorCode;

    pub const INVALID_RESOURCE: i64 = ErrorCode::InvalidResource.code() as i64;
    pub const NOT_FOUND: i64 = ErrorCode::NotFound.code() as i64;
    pub const EXISTS: i64 = ErrorCode::Exists.code() as i64;
    pub const SCHEMA_REFUSED: i64 = ErrorCode::SchemaRefused.code() as i64;
    pub const INVALID_QUERY: i64 = ErrorCode::InvalidQuery.code() as i64;
    pub const ADAPTER_REFUSED: i64 = ErrorCode::AdapterRefused.code() as i64;
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(deny_unknown_fields)]
pub struct CreateParams {
    pub resource: Resource,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(deny_unknown_fields)]
pub struct IdParams {
    pub id: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(deny_unknown_fields)]
pub struct UpdateParams {
    pub id: String,
    pub patch: Patch,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(deny_unknown_fields)]
pub struct QueryParams {
    pub query: Query,
    /// Return ids only (default: full resources).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub ids_only: bool,
}

/// `{"resources": [...]}`, or `{"ids": [...]}` with `ids_only` (present even when empty).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(untagged)]
pub enum QueryResult {
    Resources { resources: Vec<Resource> },
    Ids { ids: Vec<String> },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(deny_unknown_fields)]
pub struct ListItemParams {
    pub list: String,
    pub item: String,
    /// Insert/move target position (insert: absent = append).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "ts", ts(optional))]
    pub index: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(deny_unknown_fields)]
pub struct RegisterSchemaParams {
    /// File name, e.g. `Photo.rng` (1-128 of letters, digits, `.`, `_`, `-`).
    pub file: String,
    /// The RELAX NG text.
    pub text: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct RegisterSchemaResult {
    pub types: Vec<String>,
}

/// `resources.count`'s params.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(deny_unknown_fields)]
pub struct CountParams {
    pub query: Query,
}

/// `schemas.describe`'s params.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(deny_unknown_fields)]
pub struct TypeParams {
    #[serde(rename = "type")]
    pub type_name: String,
}

/// A type's description (`schemas.describe`): `name`, `title`, `parent`, `anonymous`,
/// `file`, `lineage`, `subtypes`, `properties` (with `declaredBy`), `children`, `metadata`.
pub type TypeDescription = serde_json::Value;

/// What a resource subscription wants to hear about.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(rename_all = "camelCase")]
pub enum ResourceFilter {
    /// Every change.
    All,
    /// Changes to resources of a type (with its subtypes unless `subtypes` is false).
    Type {
        name: String,
        #[serde(default = "subtypes_by_default")]
        #[cfg_attr(feature = "ts", ts(optional, as = "Option<bool>"))]
        subtypes: bool,
    },
    /// Changes to one resource (for a list: also its items being added, moved, removed).
    Id(String),
    /// Changes to resources that match the query before or after the change.
    Query(Query),
}

fn subtypes_by_default() -> bool {
    true
}

/// `resources.subscribe`'s params.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(deny_unknown_fields)]
pub struct ResourceSubscribeParams {
    pub filter: ResourceFilter,
}

/// `resources.subscribe`'s result and `resources.unsubscribe`'s params.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(deny_unknown_fields)]
pub struct SubscriptionParams {
    pub subscription: u64,
}

/// `lists.items`'s result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct ListItems {
    pub id: String,
    /// Set for a query-backed list.
    pub query: Option<Query>,
    /// Item ids, in order.
    pub items: Vec<String>,
}

/// What happened to a resource or a list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(rename_all = "camelCase")]
pub enum ChangeKind {
    Created,
    Updated,
    Deleted,
    ItemAdded,
    ItemRemoved,
    ItemMoved,
}

/// `resource.changed` / `list.changed`'s data: one change, for one subscription.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct ResourceChange {
    pub kind: ChangeKind,
    /// The resource changed (for item events: the list).
    pub id: String,
    #[serde(rename = "type")]
    pub type_name: String,
    /// Change-log sequence number (absent for local-only and derived changes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "ts", ts(optional))]
    pub seq: Option<i64>,
    /// Unix milliseconds.
    pub time: i64,
    pub author: String,
    /// Only local metadata changed (nothing to replicate).
    #[serde(default)]
    pub local: bool,
    /// The item (item events).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "ts", ts(optional))]
    pub item: Option<String>,
    /// The item's position (item events).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "ts", ts(optional))]
    pub position: Option<i64>,
    /// The subscription this change is for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "ts", ts(optional))]
    pub subscription: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_parse() {
        let p: UpdateParams =
            serde_json::from_str(r#"{"id":"x","patch":{"properties":{"size":3,"title":null}}}"#)
                .unwrap();
        assert_eq!(p.patch.properties.len(), 2);
        let q: QueryParams =
            serde_json::from_str(r#"{"query":{"type":"File","limit":5}}"#).unwrap();
        assert_eq!(q.query.limit, Some(5));
        assert!(serde_json::from_str::<IdParams>(r#"{"id":"x","extra":1}"#).is_err());
    }

    #[test]
    fn filters_and_changes_keep_the_store_shapes() {
        let f: ResourceFilter = serde_json::from_str(r#"{"type":{"name":"File"}}"#).unwrap();
        assert_eq!(
            f,
            ResourceFilter::Type {
                name: "File".into(),
                subtypes: true
            }
        );
        let all: ResourceFilter = serde_json::from_str(r#""all""#).unwrap();
        assert_eq!(all, ResourceFilter::All);
        let wire = r#"{"kind":"itemAdded","id":"l","type":"List","time":5,"author":"a","local":false,"item":"x","position":0,"subscription":3}"#;
        let change: ResourceChange = serde_json::from_str(wire).unwrap();
        assert_eq!(serde_json::to_string(&change).unwrap(), wire);
    }
}
