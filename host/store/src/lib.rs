//! `allpeers-store`: resources in SQLite.
//!
//! * One table per type (`t_<Type>`) holding that type's own properties, joined by an internal
//!   integer `rid`: `t_Resource` holds every resource (id, type, owner, created, modified,
//!   title); an Image has a row in `t_Resource`, `t_File` and `t_Image`, so a query on `File`
//!   returns Images too. Anonymous children live in `c_<AnonType>` keyed by owner and parent.
//!   List items in `ap_list_items`; local metadata in `ap_meta` (never replicated); every change in
//!   `ap_changes` (the change log the replication issue builds on); schema sources in `ap_schemas`.
//! * Every write is one transaction: it is applied whole or not at all, also if the process dies.
//! * The store is synchronous and single-threaded (`&mut self`); the daemon owns it behind a
//!   mutex or a dedicated thread. Listener callbacks run after the commit, on the writer's thread.

pub mod api;
mod listen;
mod sql;

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;

use allpeers_model::query::{CheckedQuery, Query, QueryError};
use allpeers_model::resource::{
    Child, Patch, Props, Resource, ValidationError, ValidationErrors, Value,
};
use allpeers_model::schema::{ROOT_TYPE, Registry, SchemaError, TypeDef};
use rusqlite::types::Value as SqlValue;
use rusqlite::{Connection, OptionalExtension, Transaction, params, params_from_iter};
use serde::{Deserialize, Serialize};

pub use listen::{Callback, Event, EventKind, Filter, SubscriptionId};
use sql::{child_table, col, sql_type, to_sql, type_table};

/// The built-in type whose resources can hold items.
pub const LIST_TYPE: &str = "List";

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("invalid resource: {0}")]
    Invalid(#[from] ValidationErrors),
    #[error("schema refused: {0}")]
    Schema(#[from] SchemaError),
    #[error("invalid query: {0}")]
    Query(#[from] QueryError),
    #[error("no resource with id {0}")]
    NotFound(String),
    #[error("a resource with id {0} already exists")]
    Exists(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("adapter for {type_name} refused the resource: {reason}")]
    Adapter { type_name: String, reason: String },
    #[error("database error: {0}")]
    Sql(#[from] rusqlite::Error),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
}

pub type Result<T> = std::result::Result<T, StoreError>;

/// Per-type hooks (the seed's resource adapters). Registered by type; they apply to subtypes too,
/// ancestors' adapters first.
pub trait ResourceAdapter: Send + Sync {
    /// Fills in a new resource before validation (defaults, generated values).
    fn initialise(&self, _r: &mut Resource) -> std::result::Result<(), String> {
        Ok(())
    }
    /// Recomputes derived properties, on create and on every update, before validation.
    fn derive(&self, _r: &mut Resource) -> std::result::Result<(), String> {
        Ok(())
    }
    /// Checks beyond the schema, after schema validation; an `Err` refuses the write.
    fn validate(&self, _r: &Resource) -> std::result::Result<(), String> {
        Ok(())
    }
}

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

/// A list's contents.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ListInfo {
    pub id: String,
    /// Set for a query-backed list.
    pub query: Option<Query>,
    pub items: Vec<String>,
}

struct QueryList {
    rid: i64,
    id: String,
    query: CheckedQuery,
}

pub type Clock = Box<dyn Fn() -> i64 + Send>;

/// The store. See the crate docs.
pub struct Store {
    conn: Connection,
    reg: Registry,
    author: String,
    clock: Clock,
    adapters: HashMap<String, Vec<Arc<dyn ResourceAdapter>>>,
    listeners: listen::Listeners,
    query_lists: Vec<QueryList>,
    /// Cached INSERT statements per type table.
    insert_sql: HashMap<String, String>,
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn new_id() -> String {
    let bytes: [u8; 16] = rand::random();
    data_encoding::BASE32_NOPAD
        .encode(&bytes)
        .to_ascii_lowercase()
}

const LOG_SQL: &str =
    "INSERT INTO ap_changes(time, author, op, id, type, data) VALUES (?1, ?2, ?3, ?4, ?5, ?6)";

const SYSTEM_SQL: &str = "
CREATE TABLE IF NOT EXISTS ap_schemas(seq INTEGER PRIMARY KEY AUTOINCREMENT, file TEXT NOT NULL UNIQUE, source TEXT NOT NULL, registered INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS ap_meta(rid INTEGER NOT NULL, name TEXT NOT NULL, value, PRIMARY KEY(rid, name)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS ap_meta_name ON ap_meta(name, value);
CREATE TABLE IF NOT EXISTS ap_list_items(list INTEGER NOT NULL, item INTEGER NOT NULL, pos INTEGER NOT NULL, PRIMARY KEY(list, item)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS ap_list_items_pos ON ap_list_items(list, pos);
CREATE INDEX IF NOT EXISTS ap_list_items_item ON ap_list_items(item);
CREATE TABLE IF NOT EXISTS ap_changes(seq INTEGER PRIMARY KEY AUTOINCREMENT, time INTEGER NOT NULL, author TEXT NOT NULL, op TEXT NOT NULL, id TEXT NOT NULL, type TEXT NOT NULL, data TEXT NOT NULL);
";

impl Store {
    /// Opens (creating if needed) the store at `path`; `author` (the local PeerId) is recorded
    /// as the author of local changes and the default owner of new resources.
    pub fn open(path: impl AsRef<Path>, author: &str) -> Result<Store> {
        let conn = Connection::open(path)?;
        Self::from_connection(conn, author)
    }

    /// An in-memory store (tests, tools).
    pub fn open_in_memory(author: &str) -> Result<Store> {
        Self::from_connection(Connection::open_in_memory()?, author)
    }

    fn from_connection(conn: Connection, author: &str) -> Result<Store> {
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        let _mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
        conn.execute_batch("PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=OFF;")?;
        conn.execute_batch(SYSTEM_SQL)?;
        let mut reg = Registry::builtin();
        let stored: Vec<(String, String)> = {
            let mut st = conn.prepare("SELECT file, source FROM ap_schemas ORDER BY seq")?;
            st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<rusqlite::Result<_>>()?
        };
        for (file, source) in &stored {
            reg.register(file, source)?;
        }
        let mut store = Store {
            conn,
            reg,
            author: author.to_string(),
            clock: Box::new(now_ms),
            adapters: HashMap::new(),
            listeners: listen::Listeners::default(),
            query_lists: Vec::new(),
            insert_sql: HashMap::new(),
        };
        let tx = store.conn.transaction()?;
        ensure_tables(&tx, &store.reg)?;
        tx.commit()?;
        store.load_query_lists()?;
        Ok(store)
    }

    /// Replaces the clock (milliseconds since the epoch), e.g. for tests or a hybrid logical clock.
    pub fn set_clock(&mut self, clock: Clock) {
        self.clock = clock;
    }

    pub fn author(&self) -> &str {
        &self.author
    }

    pub fn registry(&self) -> &Registry {
        &self.reg
    }

    /// Registers (or evolves) a schema file at run time. The tables gain the new types and
    /// columns; nothing is ever dropped. All or nothing.
    pub fn register_schema(&mut self, file: &str, text: &str) -> Result<Vec<String>> {
        let mut next = self.reg.clone();
        let names = next.register(file, text)?;
        let tx = self.conn.transaction()?;
        ensure_tables(&tx, &next)?;
        tx.execute(
            "INSERT INTO ap_schemas(file, source, registered) VALUES (?1, ?2, ?3)
             ON CONFLICT(file) DO UPDATE SET source = excluded.source, registered = excluded.registered",
            params![file, text, (self.clock)()],
        )?;
        tx.commit()?;
        self.reg = next;
        self.insert_sql.clear();
        tracing::info!(file, types = ?names, "schema registered");
        Ok(names)
    }

    /// Registers an adapter for `type_name` (and its subtypes).
    pub fn register_adapter(
        &mut self,
        type_name: &str,
        adapter: Arc<dyn ResourceAdapter>,
    ) -> Result<()> {
        if self.reg.get(type_name).is_none() {
            return Err(StoreError::BadRequest(format!(
                "unknown type '{type_name}'"
            )));
        }
        self.adapters
            .entry(type_name.to_string())
            .or_default()
            .push(adapter);
        Ok(())
    }

    fn adapters_for(&self, type_name: &str) -> Vec<(String, Arc<dyn ResourceAdapter>)> {
        self.reg
            .chain(type_name)
            .iter()
            .flat_map(|t| {
                self.adapters
                    .get(&t.name)
                    .into_iter()
                    .flatten()
                    .map(|a| (t.name.clone(), a.clone()))
            })
            .collect()
    }

    /// Subscribes to changes; the callback runs after each commit that matches `filter`.
    pub fn subscribe(
        &mut self,
        filter: Filter,
        callback: listen::Callback,
    ) -> Result<SubscriptionId> {
        let checked = match &filter {
            Filter::Query(q) => Some(self.reg.check_query(q)?),
            Filter::Type { name, .. } if self.reg.get(name).is_none() => {
                return Err(StoreError::BadRequest(format!("unknown type '{name}'")));
            }
            _ => None,
        };
        Ok(self.listeners.add(filter, checked, callback))
    }

    pub fn unsubscribe(&mut self, id: SubscriptionId) -> bool {
        self.listeners.remove(id)
    }

    // ---- reading ----

    fn rid_of(&self, id: &str) -> Result<Option<(i64, String)>> {
        Ok(self
            .conn
            .prepare_cached("SELECT rid, type FROM t_Resource WHERE id = ?1")?
            .query_row([id], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?)
    }

    fn id_of(&self, rid: i64) -> Result<Option<(String, String)>> {
        Ok(self
            .conn
            .prepare_cached("SELECT id, type FROM t_Resource WHERE rid = ?1")?
            .query_row([rid], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?)
    }

    /// The resource with `id`, if stored.
    pub fn get(&self, id: &str) -> Result<Option<Resource>> {
        match self.rid_of(id)? {
            None => Ok(None),
            Some((rid, _)) => self.load(rid).map(Some),
        }
    }

    fn load(&self, rid: i64) -> Result<Resource> {
        let (id, type_name) = self
            .id_of(rid)?
            .ok_or_else(|| StoreError::Corrupt(format!("rid {rid} vanished")))?;
        let chain: Vec<&TypeDef> = self.reg.chain(&type_name);
        if chain.is_empty() {
            return Err(StoreError::Corrupt(format!(
                "resource {id} has unknown type '{type_name}'"
            )));
        }
        let mut r = Resource::new(&type_name).with_id(&id);
        for t in &chain {
            if t.props.is_empty() {
                continue;
            }
            let cols: Vec<String> = t.props.iter().map(|p| col(&p.name)).collect();
            let q = format!(
                "SELECT {} FROM {} WHERE rid = ?1",
                cols.join(", "),
                type_table(&t.name)
            );
            let mut st = self.conn.prepare_cached(&q)?;
            let mut rows = st.query([rid])?;
            let row = rows.next()?.ok_or_else(|| {
                StoreError::Corrupt(format!("resource {id} lacks its {} row", t.name))
            })?;
            for (i, p) in t.props.iter().enumerate() {
                if let Some(v) = sql::from_sql(row.get_ref(i)?, p.datatype, p.multi)? {
                    r.properties.insert(p.name.clone(), v);
                }
            }
        }
        let slots: Vec<(String, String)> = chain
            .iter()
            .flat_map(|t| {
                t.children
                    .iter()
                    .map(|c| (c.name.clone(), c.type_name.clone()))
            })
            .collect();
        r.children = self.load_children(rid, None, &slots, 0)?;
        let mut st = self
            .conn
            .prepare_cached("SELECT name, value FROM ap_meta WHERE rid = ?1")?;
        let mut rows = st.query([rid])?;
        while let Some(row) = rows.next()? {
            let name: String = row.get(0)?;
            if let Some(def) = self
                .reg
                .meta_props(&type_name)
                .into_iter()
                .find(|p| p.name == name)
                && let Some(v) = sql::from_sql(row.get_ref(1)?, def.datatype, def.multi)?
            {
                r.meta.insert(name, v);
            }
        }
        Ok(r)
    }

    fn load_children(
        &self,
        owner: i64,
        parent: Option<i64>,
        slots: &[(String, String)],
        depth: usize,
    ) -> Result<BTreeMap<String, Vec<Child>>> {
        let mut out = BTreeMap::new();
        if depth > allpeers_model::resource::MAX_CHILD_DEPTH {
            return Ok(out);
        }
        for (slot, ty) in slots {
            let Some(t) = self.reg.get(ty) else {
                continue;
            };
            let cols: Vec<String> = std::iter::once("cid".to_string())
                .chain(t.props.iter().map(|p| col(&p.name)))
                .collect();
            let q = format!(
                "SELECT {} FROM {} WHERE owner = ?1 AND parent IS ?2 AND slot = ?3 ORDER BY pos",
                cols.join(", "),
                child_table(ty)
            );
            let mut rows_out = Vec::new();
            {
                let mut st = self.conn.prepare_cached(&q)?;
                let mut rows = st.query(params![owner, parent, slot])?;
                while let Some(row) = rows.next()? {
                    let cid: i64 = row.get(0)?;
                    let mut c = Child::default();
                    for (i, p) in t.props.iter().enumerate() {
                        if let Some(v) = sql::from_sql(row.get_ref(i + 1)?, p.datatype, p.multi)? {
                            c.properties.insert(p.name.clone(), v);
                        }
                    }
                    rows_out.push((cid, c));
                }
            }
            let sub: Vec<(String, String)> = t
                .children
                .iter()
                .map(|c| (c.name.clone(), c.type_name.clone()))
                .collect();
            let mut values = Vec::with_capacity(rows_out.len());
            for (cid, mut c) in rows_out {
                if !sub.is_empty() {
                    c.children = self.load_children(owner, Some(cid), &sub, depth + 1)?;
                }
                values.push(c);
            }
            if !values.is_empty() {
                out.insert(slot.clone(), values);
            }
        }
        Ok(out)
    }

    /// Resources matching `q` (polymorphic), sorted, limited.
    pub fn query(&self, q: &Query) -> Result<Vec<Resource>> {
        let ids = self.query_rids(q)?;
        ids.into_iter().map(|rid| self.load(rid)).collect()
    }

    /// Ids of the resources matching `q`.
    pub fn query_ids(&self, q: &Query) -> Result<Vec<String>> {
        let rids = self.query_rids(q)?;
        let mut out = Vec::with_capacity(rids.len());
        for rid in rids {
            if let Some((id, _)) = self.id_of(rid)? {
                out.push(id);
            }
        }
        Ok(out)
    }

    fn query_rids(&self, q: &Query) -> Result<Vec<i64>> {
        let checked = self.reg.check_query(q)?;
        let c = sql::compile_select(&checked);
        tracing::trace!(sql = %c.sql, "query");
        let mut st = self.conn.prepare_cached(&c.sql)?;
        let rows = st.query_map(params_from_iter(c.params.iter()), |r| r.get::<_, i64>(0))?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    }

    /// How many resources match `q` (limit/offset apply).
    pub fn count(&self, q: &Query) -> Result<u64> {
        let checked = self.reg.check_query(q)?;
        let c = sql::compile_count(&checked);
        let n: i64 = self
            .conn
            .prepare_cached(&c.sql)?
            .query_row(params_from_iter(c.params.iter()), |r| r.get(0))?;
        Ok(n as u64)
    }

    fn matches(conn: &Connection, q: &CheckedQuery, rid: i64) -> Result<bool> {
        let c = sql::compile_matches(q, rid);
        Ok(conn
            .prepare_cached(&c.sql)?
            .query_row(params_from_iter(c.params.iter()), |r| r.get(0))?)
    }

    /// The change log from `after_seq` (exclusive), oldest first, at most `limit` entries.
    pub fn changes_since(&self, after_seq: i64, limit: u32) -> Result<Vec<Change>> {
        let mut st = self.conn.prepare_cached(
            "SELECT seq, time, author, op, id, type, data FROM ap_changes WHERE seq > ?1 ORDER BY seq LIMIT ?2",
        )?;
        let rows = st.query_map(params![after_seq, limit], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, String>(4)?,
                r.get::<_, String>(5)?,
                r.get::<_, String>(6)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (seq, time, author, op, id, type_name, data) = row?;
            out.push(Change {
                seq,
                time,
                author,
                op,
                id,
                type_name,
                data: serde_json::from_str(&data)
                    .map_err(|e| StoreError::Corrupt(format!("change {seq}: {e}")))?,
            });
        }
        Ok(out)
    }

    // ---- writing ----

    fn prepare_new(&self, mut r: Resource) -> Result<Resource> {
        let now = (self.clock)();
        if r.id.is_empty() {
            r.id = new_id();
        }
        r.properties
            .entry("owner".into())
            .or_insert_with(|| Value::String(self.author.clone()));
        r.properties
            .entry("created".into())
            .or_insert(Value::Date(now));
        r.properties
            .entry("modified".into())
            .or_insert(Value::Date(now));
        let adapters = self.adapters_for(&r.type_name);
        for (t, a) in &adapters {
            a.initialise(&mut r).map_err(|reason| StoreError::Adapter {
                type_name: t.clone(),
                reason,
            })?;
        }
        self.finish_checks(r, &adapters)
    }

    fn finish_checks(
        &self,
        mut r: Resource,
        adapters: &[(String, Arc<dyn ResourceAdapter>)],
    ) -> Result<Resource> {
        for (t, a) in adapters {
            a.derive(&mut r).map_err(|reason| StoreError::Adapter {
                type_name: t.clone(),
                reason,
            })?;
        }
        self.reg.validate(&mut r)?;
        if self.reg.is_a(&r.type_name, LIST_TYPE)
            && let Some(q) = r.get("query")
        {
            let q = q.as_str().unwrap_or_default();
            if let Err(e) = Query::from_json(q).and_then(|q| self.reg.check_query(&q)) {
                return Err(StoreError::Invalid(ValidationErrors(vec![
                    ValidationError {
                        path: "properties.query".into(),
                        reason: e.to_string(),
                    },
                ])));
            }
        }
        for (t, a) in adapters {
            a.validate(&r).map_err(|reason| StoreError::Adapter {
                type_name: t.clone(),
                reason,
            })?;
        }
        Ok(r)
    }

    /// Makes a resource persistent. Fills in a missing id, owner (this node), created and
    /// modified; runs adapters; validates; writes everything in one transaction.
    pub fn create(&mut self, r: Resource) -> Result<Resource> {
        let mut out = self.create_many(vec![r])?;
        out.pop()
            .ok_or_else(|| StoreError::Corrupt("create returned nothing".into()))
    }

    /// Creates several resources in one transaction (all or none).
    pub fn create_many(&mut self, rs: Vec<Resource>) -> Result<Vec<Resource>> {
        let rs = rs
            .into_iter()
            .map(|r| self.prepare_new(r))
            .collect::<Result<Vec<_>>>()?;
        let time = (self.clock)();
        let mut events = Vec::new();
        let mut new_qlists = Vec::new();
        let listening = !self.listeners.is_empty();
        let tx = self.conn.transaction()?;
        {
            let mut stmts: InsertStmts<'_, '_> = HashMap::new();
            let mut log = tx.prepare_cached(LOG_SQL)?;
            for r in &rs {
                let rid = insert_resource(&tx, &self.reg, &mut self.insert_sql, &mut stmts, r)?;
                log.execute(params![
                    time,
                    &self.author,
                    "create",
                    &r.id,
                    &r.type_name,
                    content_json(r)
                ])?;
                let seq = tx.last_insert_rowid();
                if let Some(ql) = query_list_of(&self.reg, rid, r)? {
                    populate_query_list(&tx, &ql)?;
                    new_qlists.push(ql);
                }
                if listening {
                    let mut ev =
                        Event::new(EventKind::Created, &r.id, &r.type_name, time, &self.author);
                    ev.seq = Some(seq);
                    ev.rid = rid;
                    events.push(ev);
                }
                maintain_query_lists(
                    &tx,
                    &self.reg,
                    &self.query_lists,
                    rid,
                    (&r.id, &r.type_name),
                    time,
                    &self.author,
                    &mut events,
                    false,
                )?;
            }
        }
        // Query listeners: match after.
        for ev in events.iter_mut() {
            if matches!(ev.kind, EventKind::Created) {
                ev.matched = self
                    .listeners
                    .query_matches(&tx, &self.reg, ev.rid, &ev.type_name)?;
            }
        }
        tx.commit()?;
        self.query_lists.extend(new_qlists);
        self.listeners.dispatch(&self.reg, &events);
        Ok(rs)
    }

    /// Changes a persistent resource (write-through): properties set or removed, child slots
    /// replaced, local metadata set. Validated whole; one transaction.
    pub fn update(&mut self, id: &str, patch: &Patch) -> Result<Resource> {
        let (rid, type_name) = self
            .rid_of(id)?
            .ok_or_else(|| StoreError::NotFound(id.to_string()))?;
        let old = self.load(rid)?;
        let mut r = old.clone();
        r.apply(patch);
        if patch.properties.contains_key("id") || patch.properties.contains_key("type") {
            return Err(StoreError::BadRequest("id and type cannot change".into()));
        }
        let content = patch.touches_content();
        if content && !patch.properties.contains_key("modified") {
            r.properties
                .insert("modified".into(), Value::Date((self.clock)()));
        }
        let adapters = self.adapters_for(&type_name);
        let r = self.finish_checks(r, &adapters)?;
        let time = (self.clock)();
        let before = self
            .listeners
            .query_matches(&self.conn, &self.reg, rid, &type_name)?;
        let tx = self.conn.transaction()?;
        // Tables whose own properties changed.
        for t in self.reg.chain(&type_name) {
            if t.props
                .iter()
                .any(|p| old.properties.get(&p.name) != r.properties.get(&p.name))
            {
                let sets: Vec<String> = t
                    .props
                    .iter()
                    .enumerate()
                    .map(|(i, p)| format!("{} = ?{}", col(&p.name), i + 2))
                    .collect();
                let q = format!(
                    "UPDATE {} SET {} WHERE rid = ?1",
                    type_table(&t.name),
                    sets.join(", ")
                );
                let mut vals = vec![SqlValue::Integer(rid)];
                vals.extend(t.props.iter().map(|p| to_sql(r.properties.get(&p.name), p)));
                tx.prepare_cached(&q)?
                    .execute(params_from_iter(vals.iter()))?;
            }
        }
        if old.children != r.children {
            delete_children(&tx, &self.reg, rid, &type_name)?;
            insert_children(&tx, &self.reg, rid, &type_name, &r.children)?;
        }
        if old.meta != r.meta {
            tx.prepare_cached("DELETE FROM ap_meta WHERE rid = ?1")?
                .execute([rid])?;
            insert_meta(&tx, &self.reg, rid, &r)?;
        }
        let mut ev = Event::new(EventKind::Updated, id, &type_name, time, &self.author);
        ev.rid = rid;
        ev.local = !content && old.properties == r.properties;
        if !ev.local {
            let mut data = serde_json::Map::new();
            let changed: Props = r
                .properties
                .iter()
                .filter(|(k, v)| old.properties.get(*k) != Some(*v))
                .map(|(k, v)| (k.clone(), v.clone()))
                .chain(
                    old.properties
                        .keys()
                        .filter(|k| !r.properties.contains_key(*k))
                        .map(|k| (k.clone(), Value::Null)),
                )
                .collect();
            data.insert(
                "properties".into(),
                serde_json::to_value(&changed).unwrap_or_default(),
            );
            if old.children != r.children {
                data.insert(
                    "children".into(),
                    serde_json::to_value(&r.children).unwrap_or_default(),
                );
            }
            ev.seq = Some(log_change(
                &tx,
                time,
                &self.author,
                "update",
                id,
                &type_name,
                &serde_json::Value::Object(data),
            )?);
        }
        let mut events = vec![ev];
        // A list whose query changed is re-populated.
        let mut replaced_ql = None;
        if old.get("query") != r.get("query") && self.reg.is_a(&type_name, LIST_TYPE) {
            tx.prepare_cached("DELETE FROM ap_list_items WHERE list = ?1")?
                .execute([rid])?;
            let ql = query_list_of(&self.reg, rid, &r)?;
            if let Some(ql) = &ql {
                populate_query_list(&tx, ql)?;
            }
            replaced_ql = Some(ql);
        }
        maintain_query_lists(
            &tx,
            &self.reg,
            &self.query_lists,
            rid,
            (id, &type_name),
            time,
            &self.author,
            &mut events,
            false,
        )?;
        let after = self
            .listeners
            .query_matches(&tx, &self.reg, rid, &type_name)?;
        events[0].matched = before.into_iter().chain(after).collect();
        tx.commit()?;
        if let Some(ql) = replaced_ql {
            self.query_lists.retain(|q| q.rid != rid);
            self.query_lists.extend(ql);
        }
        self.listeners.dispatch(&self.reg, &events);
        Ok(r)
    }

    /// Sets one property (write-through of a single change).
    pub fn set_property(&mut self, id: &str, name: &str, v: impl Into<Value>) -> Result<Resource> {
        self.update(id, &Patch::default().set(name, v))
    }

    /// Makes a resource unpersistent: removes it, its children, metadata and list memberships.
    pub fn delete(&mut self, id: &str) -> Result<()> {
        let (rid, type_name) = self
            .rid_of(id)?
            .ok_or_else(|| StoreError::NotFound(id.to_string()))?;
        let time = (self.clock)();
        let before = self
            .listeners
            .query_matches(&self.conn, &self.reg, rid, &type_name)?;
        let tx = self.conn.transaction()?;
        let mut events = Vec::new();
        // Query lists and explicit lists lose the item.
        {
            let mut st = tx.prepare_cached(
                "SELECT r.id, r.type FROM ap_list_items li JOIN t_Resource r ON r.rid = li.list WHERE li.item = ?1",
            )?;
            let lists = st.query_map([rid], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
            })?;
            for l in lists {
                let (lid, ltype) = l?;
                let mut ev = Event::new(EventKind::ItemRemoved, &lid, &ltype, time, &self.author);
                ev.item = Some(id.to_string());
                events.push(ev);
            }
        }
        remove_from_lists(&tx, rid)?;
        tx.prepare_cached("DELETE FROM ap_list_items WHERE list = ?1")?
            .execute([rid])?;
        delete_children(&tx, &self.reg, rid, &type_name)?;
        for t in self.reg.chain(&type_name) {
            tx.prepare_cached(&format!(
                "DELETE FROM {} WHERE rid = ?1",
                type_table(&t.name)
            ))?
            .execute([rid])?;
        }
        tx.prepare_cached("DELETE FROM ap_meta WHERE rid = ?1")?
            .execute([rid])?;
        let seq = log_change(
            &tx,
            time,
            &self.author,
            "delete",
            id,
            &type_name,
            &serde_json::Value::Null,
        )?;
        let mut ev = Event::new(EventKind::Deleted, id, &type_name, time, &self.author);
        ev.seq = Some(seq);
        ev.rid = rid;
        ev.matched = before;
        events.insert(0, ev);
        tx.commit()?;
        self.query_lists.retain(|q| q.rid != rid);
        self.listeners.dispatch(&self.reg, &events);
        Ok(())
    }

    // ---- lists ----

    fn list_rid(&self, list_id: &str, explicit: bool) -> Result<(i64, String)> {
        let (rid, t) = self
            .rid_of(list_id)?
            .ok_or_else(|| StoreError::NotFound(list_id.to_string()))?;
        if !self.reg.is_a(&t, LIST_TYPE) {
            return Err(StoreError::BadRequest(format!(
                "{list_id} is a {t}, not a List"
            )));
        }
        if explicit && self.query_lists.iter().any(|q| q.rid == rid) {
            return Err(StoreError::BadRequest(format!(
                "{list_id} is query-backed: its items follow its query"
            )));
        }
        Ok((rid, t))
    }

    /// Inserts `item` into the explicit list at `index` (None or past the end: append).
    pub fn list_insert(&mut self, list_id: &str, item_id: &str, index: Option<u64>) -> Result<u64> {
        let (lrid, ltype) = self.list_rid(list_id, true)?;
        let (irid, itype) = self
            .rid_of(item_id)?
            .ok_or_else(|| StoreError::NotFound(item_id.to_string()))?;
        let time = (self.clock)();
        let tx = self.conn.transaction()?;
        let exists: bool = tx
            .prepare_cached(
                "SELECT EXISTS(SELECT 1 FROM ap_list_items WHERE list = ?1 AND item = ?2)",
            )?
            .query_row([lrid, irid], |r| r.get(0))?;
        if exists {
            return Err(StoreError::Exists(format!("{item_id} in list {list_id}")));
        }
        let len: i64 = tx
            .prepare_cached("SELECT count(*) FROM ap_list_items WHERE list = ?1")?
            .query_row([lrid], |r| r.get(0))?;
        let pos = index.map_or(len, |i| (i.min(len as u64)) as i64);
        tx.prepare_cached("UPDATE ap_list_items SET pos = pos + 1 WHERE list = ?1 AND pos >= ?2")?
            .execute([lrid, pos])?;
        tx.prepare_cached("INSERT INTO ap_list_items(list, item, pos) VALUES (?1, ?2, ?3)")?
            .execute([lrid, irid, pos])?;
        let seq = log_change(
            &tx,
            time,
            &self.author,
            "list.insert",
            list_id,
            &ltype,
            &serde_json::json!({"item": item_id, "index": pos}),
        )?;
        // Queries with list conditions (itemsOf, listsContaining) may now match differently.
        let mut derived = Vec::new();
        for (rid, id, ty) in [
            (irid, item_id, itype.as_str()),
            (lrid, list_id, ltype.as_str()),
        ] {
            maintain_query_lists(
                &tx,
                &self.reg,
                &self.query_lists,
                rid,
                (id, ty),
                time,
                &self.author,
                &mut derived,
                true,
            )?;
        }
        tx.commit()?;
        let mut ev = Event::new(EventKind::ItemAdded, list_id, &ltype, time, &self.author);
        ev.item = Some(item_id.to_string());
        ev.position = Some(pos);
        ev.seq = Some(seq);
        derived.insert(0, ev);
        self.listeners.dispatch(&self.reg, &derived);
        Ok(pos as u64)
    }

    /// Moves `item` to `index` in the explicit list.
    pub fn list_move(&mut self, list_id: &str, item_id: &str, index: u64) -> Result<u64> {
        let (lrid, ltype) = self.list_rid(list_id, true)?;
        let (irid, _) = self
            .rid_of(item_id)?
            .ok_or_else(|| StoreError::NotFound(item_id.to_string()))?;
        let time = (self.clock)();
        let tx = self.conn.transaction()?;
        let old: Option<i64> = tx
            .prepare_cached("SELECT pos FROM ap_list_items WHERE list = ?1 AND item = ?2")?
            .query_row([lrid, irid], |r| r.get(0))
            .optional()?;
        let old =
            old.ok_or_else(|| StoreError::NotFound(format!("{item_id} in list {list_id}")))?;
        let len: i64 = tx
            .prepare_cached("SELECT count(*) FROM ap_list_items WHERE list = ?1")?
            .query_row([lrid], |r| r.get(0))?;
        let new = (index.min((len - 1).max(0) as u64)) as i64;
        if new > old {
            tx.prepare_cached(
                "UPDATE ap_list_items SET pos = pos - 1 WHERE list = ?1 AND pos > ?2 AND pos <= ?3",
            )?
            .execute([lrid, old, new])?;
        } else if new < old {
            tx.prepare_cached(
                "UPDATE ap_list_items SET pos = pos + 1 WHERE list = ?1 AND pos >= ?2 AND pos < ?3",
            )?
            .execute([lrid, new, old])?;
        }
        tx.prepare_cached("UPDATE ap_list_items SET pos = ?3 WHERE list = ?1 AND item = ?2")?
            .execute([lrid, irid, new])?;
        let seq = log_change(
            &tx,
            time,
            &self.author,
            "list.move",
            list_id,
            &ltype,
            &serde_json::json!({"item": item_id, "index": new}),
        )?;
        tx.commit()?;
        let mut ev = Event::new(EventKind::ItemMoved, list_id, &ltype, time, &self.author);
        ev.item = Some(item_id.to_string());
        ev.position = Some(new);
        ev.seq = Some(seq);
        self.listeners.dispatch(&self.reg, &[ev]);
        Ok(new as u64)
    }

    /// Removes `item` from the explicit list.
    pub fn list_remove(&mut self, list_id: &str, item_id: &str) -> Result<()> {
        let (lrid, ltype) = self.list_rid(list_id, true)?;
        let (irid, itype) = self
            .rid_of(item_id)?
            .ok_or_else(|| StoreError::NotFound(item_id.to_string()))?;
        let time = (self.clock)();
        let tx = self.conn.transaction()?;
        let old: Option<i64> = tx
            .prepare_cached("SELECT pos FROM ap_list_items WHERE list = ?1 AND item = ?2")?
            .query_row([lrid, irid], |r| r.get(0))
            .optional()?;
        let old =
            old.ok_or_else(|| StoreError::NotFound(format!("{item_id} in list {list_id}")))?;
        tx.prepare_cached("DELETE FROM ap_list_items WHERE list = ?1 AND item = ?2")?
            .execute([lrid, irid])?;
        tx.prepare_cached("UPDATE ap_list_items SET pos = pos - 1 WHERE list = ?1 AND pos > ?2")?
            .execute([lrid, old])?;
        let seq = log_change(
            &tx,
            time,
            &self.author,
            "list.remove",
            list_id,
            &ltype,
            &serde_json::json!({"item": item_id}),
        )?;
        // Queries with list conditions (itemsOf, listsContaining) may now match differently.
        let mut derived = Vec::new();
        for (rid, id, ty) in [
            (irid, item_id, itype.as_str()),
            (lrid, list_id, ltype.as_str()),
        ] {
            maintain_query_lists(
                &tx,
                &self.reg,
                &self.query_lists,
                rid,
                (id, ty),
                time,
                &self.author,
                &mut derived,
                true,
            )?;
        }
        tx.commit()?;
        let mut ev = Event::new(EventKind::ItemRemoved, list_id, &ltype, time, &self.author);
        ev.item = Some(item_id.to_string());
        ev.seq = Some(seq);
        derived.insert(0, ev);
        self.listeners.dispatch(&self.reg, &derived);
        Ok(())
    }

    /// Item ids of a list: explicit lists in their order; query-backed lists in the query's
    /// sort order (its limit and offset apply here).
    pub fn list_items(&self, list_id: &str) -> Result<ListInfo> {
        let (lrid, _) = self.list_rid(list_id, false)?;
        if let Some(ql) = self.query_lists.iter().find(|q| q.rid == lrid) {
            let mut c = sql::Compiler::new();
            let f = move |root: &str, c: &mut sql::Compiler| {
                let p = c.bind(SqlValue::Integer(lrid));
                format!("{root}.rid IN (SELECT item FROM ap_list_items WHERE list = {p})")
            };
            let s = c.select(&ql.query, true, Some(&f));
            let compiled = c.finish(s);
            let rids: Vec<i64> = self
                .conn
                .prepare_cached(&compiled.sql)?
                .query_map(params_from_iter(compiled.params.iter()), |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()?;
            let mut items = Vec::with_capacity(rids.len());
            for rid in rids {
                if let Some((id, _)) = self.id_of(rid)? {
                    items.push(id);
                }
            }
            let q = self.get(list_id)?.and_then(|r| {
                r.get("query")
                    .and_then(Value::as_str)
                    .and_then(|s| Query::from_json(s).ok())
            });
            return Ok(ListInfo {
                id: list_id.to_string(),
                query: q,
                items,
            });
        }
        let items: Vec<String> = self
            .conn
            .prepare_cached(
                "SELECT r.id FROM ap_list_items li JOIN t_Resource r ON r.rid = li.item WHERE li.list = ?1 ORDER BY li.pos",
            )?
            .query_map([lrid], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        Ok(ListInfo {
            id: list_id.to_string(),
            query: None,
            items,
        })
    }

    fn load_query_lists(&mut self) -> Result<()> {
        let rows: Vec<(i64, String)> = self
            .conn
            .prepare(&format!(
                "SELECT rid, {} FROM {} WHERE {} IS NOT NULL",
                col("query"),
                type_table(LIST_TYPE),
                col("query")
            ))?
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<rusqlite::Result<_>>()?;
        self.query_lists.clear();
        for (rid, q) in rows {
            let Some((id, _)) = self.id_of(rid)? else {
                continue;
            };
            match Query::from_json(&q).and_then(|q| self.reg.check_query(&q)) {
                Ok(query) => self.query_lists.push(QueryList { rid, id, query }),
                Err(e) => {
                    tracing::warn!(list = %id, error = %e, "stored list query no longer valid; list not kept live")
                }
            }
        }
        Ok(())
    }

    /// Runs SQLite's integrity check (tests, `allpeers doctor`).
    pub fn integrity_check(&self) -> Result<String> {
        Ok(self
            .conn
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))?)
    }

    /// The underlying connection, read-only use (benchmarks, diagnostics).
    pub fn connection(&self) -> &Connection {
        &self.conn
    }
}

#[derive(Serialize)]
struct Content<'a> {
    properties: &'a Props,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    children: &'a BTreeMap<String, Vec<Child>>,
}

/// The change-log data of a created resource (serialised once, straight to text).
fn content_json(r: &Resource) -> String {
    serde_json::to_string(&Content {
        properties: &r.properties,
        children: &r.children,
    })
    .unwrap_or_default()
}

fn log_change(
    tx: &Transaction<'_>,
    time: i64,
    author: &str,
    op: &str,
    id: &str,
    type_name: &str,
    data: &impl LogData,
) -> Result<i64> {
    tx.prepare_cached(LOG_SQL)?
        .execute(params![time, author, op, id, type_name, data.text()])?;
    Ok(tx.last_insert_rowid())
}

trait LogData {
    fn text(&self) -> std::borrow::Cow<'_, str>;
}
impl LogData for serde_json::Value {
    fn text(&self) -> std::borrow::Cow<'_, str> {
        self.to_string().into()
    }
}
impl LogData for String {
    fn text(&self) -> std::borrow::Cow<'_, str> {
        self.as_str().into()
    }
}

/// Prepared INSERT statements of one write, by type name (kept for the whole transaction, as
/// hand-written code would).
type InsertStmts<'r, 'c> = HashMap<&'r str, rusqlite::CachedStatement<'c>>;

fn insert_resource<'r, 'c>(
    tx: &'c Transaction<'_>,
    reg: &'r Registry,
    cache: &mut HashMap<String, String>,
    stmts: &mut InsertStmts<'r, 'c>,
    r: &Resource,
) -> Result<i64> {
    let mut rid = 0i64;
    for t in reg.chain(&r.type_name) {
        let root = t.name == ROOT_TYPE;
        if !stmts.contains_key(t.name.as_str()) && !cache.contains_key(&t.name) {
            let mut cols: Vec<String> = if root {
                vec!["id".into(), "type".into()]
            } else {
                vec!["rid".into()]
            };
            cols.extend(t.props.iter().map(|p| col(&p.name)));
            let ph: Vec<String> = (1..=cols.len()).map(|i| format!("?{i}")).collect();
            let q = format!(
                "INSERT INTO {}({}) VALUES ({})",
                type_table(&t.name),
                cols.join(", "),
                ph.join(", ")
            );
            cache.insert(t.name.clone(), q);
        }
        let stmt = match stmts.entry(t.name.as_str()) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => {
                let sql = cache.get(&t.name).map(String::as_str).unwrap_or_default();
                e.insert(tx.prepare_cached(sql)?)
            }
        };
        use rusqlite::types::ToSqlOutput;
        let mut vals: Vec<ToSqlOutput<'_>> = Vec::with_capacity(t.props.len() + 2);
        if root {
            vals.push(ToSqlOutput::Borrowed(rusqlite::types::ValueRef::Text(
                r.id.as_bytes(),
            )));
            vals.push(ToSqlOutput::Borrowed(rusqlite::types::ValueRef::Text(
                r.type_name.as_bytes(),
            )));
        } else {
            vals.push(ToSqlOutput::Owned(SqlValue::Integer(rid)));
        }
        vals.extend(
            t.props
                .iter()
                .map(|p| sql::to_sql_ref(r.properties.get(&p.name), p)),
        );
        match stmt.execute(params_from_iter(vals.iter())) {
            Ok(_) => {}
            // The UNIQUE index on t_Resource.id: the id is taken.
            Err(rusqlite::Error::SqliteFailure(e, _))
                if root && e.code == rusqlite::ErrorCode::ConstraintViolation =>
            {
                return Err(StoreError::Exists(r.id.clone()));
            }
            Err(e) => return Err(e.into()),
        }
        if root {
            rid = tx.last_insert_rowid();
        }
    }
    insert_children(tx, reg, rid, &r.type_name, &r.children)?;
    insert_meta(tx, reg, rid, r)?;
    Ok(rid)
}

fn insert_meta(tx: &Transaction<'_>, reg: &Registry, rid: i64, r: &Resource) -> Result<()> {
    if r.meta.is_empty() {
        return Ok(());
    }
    let defs = reg.meta_props(&r.type_name);
    for (k, v) in &r.meta {
        let Some(def) = defs.iter().find(|d| &d.name == k) else {
            continue;
        };
        tx.prepare_cached("INSERT INTO ap_meta(rid, name, value) VALUES (?1, ?2, ?3)")?
            .execute(params![rid, k, to_sql(Some(v), def)])?;
    }
    Ok(())
}

fn insert_children(
    tx: &Transaction<'_>,
    reg: &Registry,
    owner: i64,
    type_name: &str,
    children: &BTreeMap<String, Vec<Child>>,
) -> Result<()> {
    if children.is_empty() {
        return Ok(());
    }
    let slots: Vec<(String, String)> = reg
        .all_children(type_name)
        .into_iter()
        .map(|c| (c.name.clone(), c.type_name.clone()))
        .collect();
    insert_child_rows(tx, reg, owner, None, &slots, children)
}

fn insert_child_rows(
    tx: &Transaction<'_>,
    reg: &Registry,
    owner: i64,
    parent: Option<i64>,
    slots: &[(String, String)],
    children: &BTreeMap<String, Vec<Child>>,
) -> Result<()> {
    for (slot, ty) in slots {
        let Some(values) = children.get(slot) else {
            continue;
        };
        let Some(t) = reg.get(ty) else { continue };
        let mut cols = vec![
            "owner".to_string(),
            "parent".into(),
            "slot".into(),
            "pos".into(),
        ];
        cols.extend(t.props.iter().map(|p| col(&p.name)));
        let ph: Vec<String> = (1..=cols.len()).map(|i| format!("?{i}")).collect();
        let q = format!(
            "INSERT INTO {}({}) VALUES ({})",
            child_table(ty),
            cols.join(", "),
            ph.join(", ")
        );
        let sub: Vec<(String, String)> = t
            .children
            .iter()
            .map(|c| (c.name.clone(), c.type_name.clone()))
            .collect();
        for (pos, c) in values.iter().enumerate() {
            let mut vals = vec![
                SqlValue::Integer(owner),
                parent.map_or(SqlValue::Null, SqlValue::Integer),
                SqlValue::Text(slot.clone()),
                SqlValue::Integer(pos as i64),
            ];
            vals.extend(t.props.iter().map(|p| to_sql(c.properties.get(&p.name), p)));
            tx.prepare_cached(&q)?
                .execute(params_from_iter(vals.iter()))?;
            if !sub.is_empty() && !c.children.is_empty() {
                let cid = tx.last_insert_rowid();
                insert_child_rows(tx, reg, owner, Some(cid), &sub, &c.children)?;
            }
        }
    }
    Ok(())
}

fn delete_children(
    tx: &Transaction<'_>,
    reg: &Registry,
    owner: i64,
    type_name: &str,
) -> Result<()> {
    let mut tables: Vec<String> = Vec::new();
    let mut stack: Vec<String> = reg
        .all_children(type_name)
        .into_iter()
        .map(|c| c.type_name.clone())
        .collect();
    while let Some(t) = stack.pop() {
        if tables.contains(&t) {
            continue;
        }
        if let Some(td) = reg.get(&t) {
            stack.extend(td.children.iter().map(|c| c.type_name.clone()));
        }
        tables.push(t);
    }
    for t in tables {
        tx.prepare_cached(&format!("DELETE FROM {} WHERE owner = ?1", child_table(&t)))?
            .execute([owner])?;
    }
    Ok(())
}

fn remove_from_lists(tx: &Transaction<'_>, rid: i64) -> Result<()> {
    // Close the gaps in explicit lists' positions.
    let positions: Vec<(i64, i64)> = tx
        .prepare_cached("SELECT list, pos FROM ap_list_items WHERE item = ?1")?
        .query_map([rid], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<rusqlite::Result<_>>()?;
    tx.prepare_cached("DELETE FROM ap_list_items WHERE item = ?1")?
        .execute([rid])?;
    for (list, pos) in positions {
        tx.prepare_cached("UPDATE ap_list_items SET pos = pos - 1 WHERE list = ?1 AND pos > ?2")?
            .execute([list, pos])?;
    }
    Ok(())
}

fn query_list_of(reg: &Registry, rid: i64, r: &Resource) -> Result<Option<QueryList>> {
    if !reg.is_a(&r.type_name, LIST_TYPE) {
        return Ok(None);
    }
    let Some(q) = r.get("query").and_then(Value::as_str) else {
        return Ok(None);
    };
    let q = Query::from_json(q)?;
    let query = reg.check_query(&q)?;
    Ok(Some(QueryList {
        rid,
        id: r.id.clone(),
        query,
    }))
}

fn populate_query_list(tx: &Transaction<'_>, ql: &QueryList) -> Result<()> {
    let mut c = sql::Compiler::new();
    let list = c.bind(SqlValue::Integer(ql.rid));
    let s = c.select(&ql.query, false, None);
    let compiled = c.finish(s);
    let q = format!(
        "INSERT OR IGNORE INTO ap_list_items(list, item, pos) SELECT {list}, sub.rid, 0 FROM ({}) sub",
        compiled.sql
    );
    tx.execute(&q, params_from_iter(compiled.params.iter()))?;
    Ok(())
}

/// Keeps query-backed lists live after `r` (rid) was created or changed: one indexed membership
/// check per list whose query may involve the resource's type — independent of list sizes.
#[allow(clippy::too_many_arguments)]
fn maintain_query_lists(
    tx: &Transaction<'_>,
    reg: &Registry,
    lists: &[QueryList],
    rid: i64,
    r: (&str, &str),
    time: i64,
    author: &str,
    events: &mut Vec<Event>,
    only_list_conditions: bool,
) -> Result<()> {
    let (id, type_name) = r;
    for ql in lists {
        if ql.rid == rid {
            continue;
        }
        let relevant = if only_list_conditions {
            ql.query.has_list_conditions()
        } else {
            reg.is_a(type_name, &ql.query.type_name) || ql.query.has_list_conditions()
        };
        if !relevant {
            continue;
        }
        let now = Store::matches(tx, &ql.query, rid)?;
        let was: bool = tx
            .prepare_cached(
                "SELECT EXISTS(SELECT 1 FROM ap_list_items WHERE list = ?1 AND item = ?2)",
            )?
            .query_row([ql.rid, rid], |row| row.get(0))?;
        if now == was {
            continue;
        }
        let kind = if now {
            tx.prepare_cached("INSERT INTO ap_list_items(list, item, pos) VALUES (?1, ?2, 0)")?
                .execute([ql.rid, rid])?;
            EventKind::ItemAdded
        } else {
            tx.prepare_cached("DELETE FROM ap_list_items WHERE list = ?1 AND item = ?2")?
                .execute([ql.rid, rid])?;
            EventKind::ItemRemoved
        };
        let ltype = reg
            .get(LIST_TYPE)
            .map(|t| t.name.clone())
            .unwrap_or_default();
        let mut ev = Event::new(kind, &ql.id, &ltype, time, author);
        ev.item = Some(id.to_string());
        events.push(ev);
    }
    Ok(())
}

/// Creates missing tables, columns and indexes for every type in `reg`. Never drops anything.
fn ensure_tables(tx: &Transaction<'_>, reg: &Registry) -> Result<()> {
    for t in reg.types() {
        let (table, base): (String, &str) = if t.anonymous {
            (
                child_table(&t.name),
                "cid INTEGER PRIMARY KEY, owner INTEGER NOT NULL, parent INTEGER, slot TEXT NOT NULL, pos INTEGER NOT NULL",
            )
        } else if t.name == ROOT_TYPE {
            (
                type_table(&t.name),
                "rid INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, type TEXT NOT NULL",
            )
        } else {
            (type_table(&t.name), "rid INTEGER PRIMARY KEY")
        };
        tx.execute_batch(&format!("CREATE TABLE IF NOT EXISTS {table}({base})"))?;
        let existing: Vec<String> = tx
            .prepare(&format!("PRAGMA table_info({table})"))?
            .query_map([], |r| r.get::<_, String>(1))?
            .collect::<rusqlite::Result<_>>()?;
        for p in &t.props {
            let c = format!("p_{}", p.name);
            if !existing.iter().any(|e| e.eq_ignore_ascii_case(&c)) {
                tx.execute_batch(&format!(
                    "ALTER TABLE {table} ADD COLUMN {} {}",
                    col(&p.name),
                    sql_type(p)
                ))?;
                tracing::info!(table, column = %c, "column added");
            }
            if p.indexed {
                let prefix = if t.anonymous { "c" } else { "t" };
                tx.execute_batch(&format!(
                    // '.' cannot occur in names, so index names cannot collide.
                    "CREATE INDEX IF NOT EXISTS \"i.{prefix}.{}.{}\" ON {table}({})",
                    t.name,
                    p.name,
                    col(&p.name)
                ))?;
            }
        }
        if t.anonymous {
            tx.execute_batch(&format!(
                "CREATE INDEX IF NOT EXISTS \"i.c.{}\" ON {table}(owner, parent, slot, pos)",
                t.name
            ))?;
        } else if t.name == ROOT_TYPE {
            tx.execute_batch("CREATE INDEX IF NOT EXISTS i_t_Resource_type ON t_Resource(type)")?;
        }
    }
    Ok(())
}
