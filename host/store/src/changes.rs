//! The change log (`ap_changes`): one entry per replicated change, in commit order, with what
//! changed as JSON. Local metadata never enters it. The replication issue builds on it.

use std::collections::BTreeMap;

use allpeers_model::resource::{Child, Props, Resource, Value};
use rusqlite::{Connection, params};
use serde::{Deserialize, Serialize};

use crate::error::{Result, StoreError};

/// One entry of the change log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Change {
    pub seq: i64,
    /// Milliseconds since the epoch.
    pub time: i64,
    pub author: String,
    /// `create`, `update`, `delete`, `list.insert`, `list.move`, `list.remove`.
    pub op: String,
    pub id: String,
    #[serde(rename = "type")]
    pub type_name: String,
    /// What changed (JSON): properties/children for create and update, item and index for lists.
    pub data: serde_json::Value,
}

/// One change to append: who did what to which resource.
pub(crate) struct Entry<'a> {
    pub time: i64,
    pub author: &'a str,
    pub op: &'a str,
    pub id: &'a str,
    pub type_name: &'a str,
}

/// Appends `entry` with `data` (JSON text); returns its sequence number.
pub(crate) fn append(conn: &Connection, entry: &Entry<'_>, data: &str) -> Result<i64> {
    conn.prepare_cached(
        "INSERT INTO ap_changes(time, author, op, id, type, data) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![
        entry.time,
        entry.author,
        entry.op,
        entry.id,
        entry.type_name,
        data
    ])?;
    Ok(conn.last_insert_rowid())
}

/// Appends `entries` (each with its data, JSON text) in order, in multi-row statements;
/// returns their sequence numbers.
pub(crate) fn append_many(conn: &Connection, entries: &[(Entry<'_>, String)]) -> Result<Vec<i64>> {
    use rusqlite::types::{ToSqlOutput, ValueRef};
    fn text(s: &str) -> ToSqlOutput<'_> {
        ToSqlOutput::Borrowed(ValueRef::Text(s.as_bytes()))
    }
    let values: Vec<ToSqlOutput<'_>> = entries
        .iter()
        .flat_map(|(e, data)| {
            [
                ToSqlOutput::Borrowed(ValueRef::Integer(e.time)),
                text(e.author),
                text(e.op),
                text(e.id),
                text(e.type_name),
                text(data),
            ]
        })
        .collect();
    crate::sql::insert_rows(
        conn,
        "INSERT INTO ap_changes(time, author, op, id, type, data)",
        6,
        &values,
    )
}

/// The log from `after_seq` (exclusive), oldest first, at most `limit` entries.
pub(crate) fn since(conn: &Connection, after_seq: i64, limit: u32) -> Result<Vec<Change>> {
    let mut st = conn.prepare_cached(
        "SELECT seq, time, author, op, id, type, data FROM ap_changes WHERE seq > ?1 ORDER BY seq LIMIT ?2",
    )?;
    let rows = st.query_map(params![after_seq, limit], |r| {
        Ok((
            Change {
                seq: r.get(0)?,
                time: r.get(1)?,
                author: r.get(2)?,
                op: r.get(3)?,
                id: r.get(4)?,
                type_name: r.get(5)?,
                data: serde_json::Value::Null,
            },
            r.get::<_, String>(6)?,
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (mut change, data) = row?;
        change.data = serde_json::from_str(&data)
            .map_err(|e| StoreError::Corrupt(format!("change {}: {e}", change.seq)))?;
        out.push(change);
    }
    Ok(out)
}

#[derive(Serialize)]
struct Content<'a> {
    properties: &'a Props,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    children: &'a BTreeMap<String, Vec<Child>>,
}

/// The data of a create: the resource's properties and children, serialised once, straight to
/// text (no intermediate `serde_json::Value`).
pub(crate) fn created(r: &Resource) -> String {
    serde_json::to_string(&Content {
        properties: &r.properties,
        children: &r.children,
    })
    .unwrap_or_default()
}

/// The data of an update from `old` to `new`: changed properties (removed ones as null) and,
/// if any child changed, all children.
pub(crate) fn updated(old: &Resource, new: &Resource) -> String {
    let changed: Props = new
        .properties
        .iter()
        .filter(|(k, v)| old.properties.get(*k) != Some(*v))
        .map(|(k, v)| (k.clone(), v.clone()))
        .chain(
            old.properties
                .keys()
                .filter(|k| !new.properties.contains_key(*k))
                .map(|k| (k.clone(), Value::Null)),
        )
        .collect();
    #[derive(Serialize)]
    struct Update<'a> {
        properties: &'a Props,
        #[serde(skip_serializing_if = "Option::is_none")]
        children: Option<&'a BTreeMap<String, Vec<Child>>>,
    }
    serde_json::to_string(&Update {
        properties: &changed,
        children: (old.children != new.children).then_some(&new.children),
    })
    .unwrap_or_default()
}
