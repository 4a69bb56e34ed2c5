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

/// Application error codes (JSON-RPC `error.code`) of these methods.
pub mod codes {
    /// The resource does not fit its type; `error.data.errors` = [{path, reason}].
    pub const INVALID_RESOURCE: i64 = -32010;
    /// No resource with that id.
    pub const NOT_FOUND: i64 = -32011;
    /// The id is taken, or the item is already in the list.
    pub const EXISTS: i64 = -32012;
    /// The schema file was refused; `error.data` = {file, line, reason}.
    pub const SCHEMA_REFUSED: i64 = -32013;
    /// The query was refused; `error.data` = {path, reason}.
    pub const INVALID_QUERY: i64 = -32014;
    /// A resource adapter refused the write.
    pub const ADAPTER_REFUSED: i64 = -32015;
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateParams {
    pub resource: Resource,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdParams {
    pub id: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateParams {
    pub id: String,
    pub patch: Patch,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueryParams {
    pub query: Query,
    /// Return ids only (default: full resources).
    #[serde(default)]
    pub ids_only: bool,
}

/// `{"resources": [...]}`, or `{"ids": [...]}` with `ids_only` (present even when empty).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum QueryResult {
    Resources { resources: Vec<Resource> },
    Ids { ids: Vec<String> },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListItemParams {
    pub list: String,
    pub item: String,
    /// Insert/move target position (insert: absent = append).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegisterSchemaParams {
    /// File name, e.g. `Photo.rng` (1-128 of letters, digits, `.`, `_`, `-`).
    pub file: String,
    /// The RELAX NG text.
    pub text: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RegisterSchemaResult {
    pub types: Vec<String>,
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
}
