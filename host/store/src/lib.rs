//! `allpeers-store`: resources in SQLite.
//!
//! * One table per type (`t_<Type>`) holding that type's own properties, joined by an internal
//!   integer `rid`: `t_Resource` holds every resource (id, type, owner, created, modified,
//!   title); an Image has a row in `t_Resource`, `t_File` and `t_Image`, so a query on `File`
//!   returns Images too. Anonymous children live in `c_<AnonType>` keyed by owner and parent.
//!   List items in `ap_list_items`; local metadata in `ap_meta` (never replicated); every change in
//!   `ap_changes` (the change log the replication issue builds on); schema sources in `ap_schemas`.
//! * Every write is one transaction: it is applied whole or not at all, also if the process dies.
//!   Listeners hear of it only after the commit; a failed write is silent.
//! * The store is synchronous and single-threaded (`&mut self`); the daemon owns it behind a
//!   mutex or a dedicated thread. Listener callbacks run after the commit, on the writer's thread.
//!   A store on a file has one helper thread of its own: the WAL checkpointer.
//!
//! Modules, each importing only those above it:
//!
//! | module | what |
//! |---|---|
//! | `error` | [`StoreError`], [`Result`] |
//! | `sql` | SQL text from checked names; values to and from SQL; the query compiler |
//! | `adapter` | [`ResourceAdapter`]s by type |
//! | `schema` | the store's own tables, type tables and their evolution, run-time schemas |
//! | `changes` | the change log ([`Change`]) |
//! | `read` | a resource whole; queries; one resource against a query |
//! | `listen` | subscriptions ([`Filter`]) and their [`Event`]s |
//! | `list` | explicit and query-backed lists ([`ListInfo`]) |
//! | `write` | checks before writing; `WriteTx`, a transaction that dispatches its events on commit |
//! | `checkpoint` | the WAL checkpointer thread and its policy |
//! | [`api`] | the local API's resource methods, JSON in and out |
//! | [`ops`] | replicated shares: `allpeers_replica::store::OpStore` for [`Store`], share records |
//! | [`told`] | the notices already sent to peers (the node's mail area), bounded |
//! | [`grants`] | the scopes granted to web apps, by origin (the node's apps area) |
//! | [`watched`] | the paths the media catalog keeps up to date (the node's media area) |
//!
//! `lib.rs` holds [`Store`], which owns the parts and composes them; no module but the
//! façades (`api`, `ops`, `told`, `grants`, `watched`) imports it.

mod adapter;
pub mod api;
mod changes;
mod checkpoint;
mod error;
pub mod grants;
mod list;
mod listen;
pub mod ops;
mod read;
mod schema;
mod sql;
pub mod told;
pub mod watched;
mod write;

use std::path::Path;
use std::sync::Arc;

use allpeers_model::query::Query;
use allpeers_model::resource::{Patch, Resource, Value};
use allpeers_model::schema::Registry;
use rusqlite::Connection;

pub use adapter::ResourceAdapter;
pub use changes::Change;
pub use error::{Result, StoreError};
pub use list::{LIST_TYPE, ListInfo};
pub use listen::{Callback, Event, EventKind, Filter, SubscriptionId};

use adapter::Adapters;
use checkpoint::Checkpointer;
use list::QueryLists;
use read::Reader;
use write::{InsertSql, Target, WriteTx};

pub type Clock = Box<dyn Fn() -> i64 + Send>;

/// The store. See the crate docs.
pub struct Store {
    /// Held for its thread; declared first so it is dropped (the thread joined) before `conn`
    /// closes.
    _checkpointer: Option<Checkpointer>,
    conn: Connection,
    reg: Registry,
    author: String,
    clock: Clock,
    adapters: Adapters,
    listeners: listen::Listeners,
    query_lists: QueryLists,
    insert_sql: InsertSql,
    /// Lists as the last replicated commits arranged them (see [`list::Arranged`]); every
    /// other write clears it.
    arranged: list::Arranged,
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl Store {
    /// Opens (creating if needed) the store at `path`; `author` (the local PeerId) is recorded
    /// as the author of local changes and the default owner of new resources.
    pub fn open(path: impl AsRef<Path>, author: &str) -> Result<Store> {
        let mut conn = Connection::open(path.as_ref())?;
        // A file system without WAL support (shared memory) keeps SQLite's rollback journal,
        // and its own checkpoint-free commits.
        let checkpointer = if configure(&conn)? {
            Some(Checkpointer::start(&mut conn, path.as_ref())?)
        } else {
            None
        };
        Self::from_connection(conn, checkpointer, author)
    }

    /// An in-memory store (tests, tools).
    pub fn open_in_memory(author: &str) -> Result<Store> {
        let conn = Connection::open_in_memory()?;
        configure(&conn)?; // in memory: no WAL, nothing to checkpoint
        Self::from_connection(conn, None, author)
    }

    fn from_connection(
        mut conn: Connection,
        checkpointer: Option<Checkpointer>,
        author: &str,
    ) -> Result<Store> {
        // A commit of replicated ops keeps a dozen statements of its own besides the type
        // tables' and the reads': SQLite's default of 16 would re-prepare them in turn.
        conn.set_prepared_statement_cache_capacity(64);
        let reg = schema::open(&mut conn)?;
        let query_lists = QueryLists::load(Reader::new(&conn, &reg))?;
        Ok(Store {
            _checkpointer: checkpointer,
            conn,
            reg,
            author: author.to_string(),
            clock: Box::new(now_ms),
            adapters: Adapters::default(),
            listeners: listen::Listeners::default(),
            query_lists,
            insert_sql: InsertSql::default(),
            arranged: list::Arranged::default(),
        })
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
        let (next, names) =
            schema::register(&mut self.conn, &self.reg, file, text, (self.clock)())?;
        self.reg = next;
        self.insert_sql.clear();
        allpeers_log::flesh!(file, types = ?names, "schema registered");
        Ok(names)
    }

    /// Registers an adapter for `type_name` (and its subtypes).
    pub fn register_adapter(
        &mut self,
        type_name: &str,
        adapter: Arc<dyn ResourceAdapter>,
    ) -> Result<()> {
        self.adapters.register(&self.reg, type_name, adapter)
    }

    /// Subscribes to changes; the callback runs after each commit that matches `filter`.
    pub fn subscribe(&mut self, filter: Filter, callback: Callback) -> Result<SubscriptionId> {
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

    fn reader(&self) -> Reader<'_> {
        Reader::new(&self.conn, &self.reg)
    }

    /// The resource with `id`, if stored.
    pub fn get(&self, id: &str) -> Result<Option<Resource>> {
        self.reader().get(id)
    }

    /// The resources with `ids`, as [`Store::get`] reads each, in the order of `ids` (each
    /// once; ids not stored are skipped): a few statements per type instead of several per
    /// resource, for reading a list's thousands of items.
    pub fn get_many(&self, ids: &[String]) -> Result<Vec<Resource>> {
        self.reader().get_many(ids)
    }

    /// Resources matching `q` (polymorphic), sorted, limited.
    pub fn query(&self, q: &Query) -> Result<Vec<Resource>> {
        let r = self.reader();
        r.query_rids(q)?
            .into_iter()
            .map(|rid| r.load(rid))
            .collect()
    }

    /// Ids of the resources matching `q`.
    pub fn query_ids(&self, q: &Query) -> Result<Vec<String>> {
        let r = self.reader();
        r.ids(r.query_rids(q)?)
    }

    /// How many resources match `q` (limit/offset apply).
    pub fn count(&self, q: &Query) -> Result<u64> {
        self.reader().count(q)
    }

    /// The change log from `after_seq` (exclusive), oldest first, at most `limit` entries.
    pub fn changes_since(&self, after_seq: i64, limit: u32) -> Result<Vec<Change>> {
        changes::since(&self.conn, after_seq, limit)
    }

    /// Item ids of a list: explicit lists in their order; query-backed lists in the query's
    /// sort order (its limit and offset apply here).
    pub fn list_items(&self, list_id: &str) -> Result<ListInfo> {
        list::items(self.reader(), &self.query_lists, list_id)
    }

    // ---- writing ----

    /// A write transaction at the clock's time, with the parts of the store a write reads or
    /// extends beside it.
    fn begin(&mut self) -> Result<(WriteTx<'_>, &QueryLists, &mut InsertSql)> {
        // Whatever this write does to lists, the replicated commits' record of them is stale
        // (a replicated commit takes it out first and puts it back once it committed).
        self.arranged.clear();
        let time = (self.clock)();
        let tx = WriteTx::begin(
            &mut self.conn,
            &self.reg,
            &self.listeners,
            &self.author,
            time,
        )?;
        Ok((tx, &self.query_lists, &mut self.insert_sql))
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
        let now = (self.clock)();
        let rs = rs
            .into_iter()
            .map(|r| {
                let adapters = self.adapters.chain(&self.reg, &r.type_name);
                write::prepare_new(&self.reg, &adapters, r, now, &self.author)
            })
            .collect::<Result<Vec<_>>>()?;
        let (mut tx, lists, inserts) = self.begin()?;
        let (new_lists, _) = tx.create(inserts, lists, &rs)?;
        tx.commit()?;
        self.query_lists.extend(new_lists);
        Ok(rs)
    }

    /// Changes a persistent resource (write-through): properties set or removed, child slots
    /// replaced, local metadata set. Validated whole; one transaction.
    pub fn update(&mut self, id: &str, patch: &Patch) -> Result<Resource> {
        let (rid, type_name) = self.reader().existing(id)?;
        let old = self.reader().load(rid)?;
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
        let adapters = self.adapters.chain(&self.reg, &type_name);
        let r = write::check(&self.reg, &adapters, r)?;
        let (mut tx, lists, _) = self.begin()?;
        let replaced = tx.update(lists, rid, &old, &r, content)?;
        tx.commit()?;
        if let Some(ql) = replaced {
            self.query_lists.replace(rid, ql);
        }
        Ok(r)
    }

    /// Sets one property (write-through of a single change).
    pub fn set_property(&mut self, id: &str, name: &str, v: impl Into<Value>) -> Result<Resource> {
        self.update(id, &Patch::default().set(name, v))
    }

    /// Makes a resource unpersistent: removes it, its children, metadata and list memberships.
    pub fn delete(&mut self, id: &str) -> Result<()> {
        let (rid, type_name) = self.reader().existing(id)?;
        let (mut tx, _, _) = self.begin()?;
        tx.delete(Target {
            rid,
            id,
            type_name: &type_name,
        })?;
        tx.commit()?;
        self.query_lists.replace(rid, None);
        Ok(())
    }

    // ---- lists ----

    /// The explicit list `list_id` and the resource `item_id`, both stored.
    fn list_and_item(
        &self,
        list_id: &str,
        item_id: &str,
    ) -> Result<((i64, String), (i64, String))> {
        let list = list::find(self.reader(), &self.query_lists, list_id, true)?;
        let item = self.reader().existing(item_id)?;
        Ok((list, item))
    }

    /// Refuses a list whose items are not the caller's to edit: not a List, or query-backed
    /// (its query decides its items). The shares area asks before it signs a list op, as the
    /// store's own list writes do.
    pub fn check_explicit_list(&self, list_id: &str) -> Result<()> {
        list::find(self.reader(), &self.query_lists, list_id, true).map(|_| ())
    }

    /// Inserts `item` into the explicit list at `index` (None or past the end: append).
    pub fn list_insert(&mut self, list_id: &str, item_id: &str, index: Option<u64>) -> Result<u64> {
        let ((lrid, ltype), (irid, itype)) = self.list_and_item(list_id, item_id)?;
        let (mut tx, lists, _) = self.begin()?;
        let list = Target {
            rid: lrid,
            id: list_id,
            type_name: &ltype,
        };
        let item = Target {
            rid: irid,
            id: item_id,
            type_name: &itype,
        };
        let pos = tx.list_insert(lists, list, item, index)?;
        tx.commit()?;
        Ok(pos as u64)
    }

    /// Moves `item` to `index` in the explicit list.
    pub fn list_move(&mut self, list_id: &str, item_id: &str, index: u64) -> Result<u64> {
        let ((lrid, ltype), (irid, itype)) = self.list_and_item(list_id, item_id)?;
        let (mut tx, _, _) = self.begin()?;
        let list = Target {
            rid: lrid,
            id: list_id,
            type_name: &ltype,
        };
        let item = Target {
            rid: irid,
            id: item_id,
            type_name: &itype,
        };
        let pos = tx.list_move(list, item, index)?;
        tx.commit()?;
        Ok(pos as u64)
    }

    /// Removes `item` from the explicit list.
    pub fn list_remove(&mut self, list_id: &str, item_id: &str) -> Result<()> {
        let ((lrid, ltype), (irid, itype)) = self.list_and_item(list_id, item_id)?;
        let (mut tx, lists, _) = self.begin()?;
        let list = Target {
            rid: lrid,
            id: list_id,
            type_name: &ltype,
        };
        let item = Target {
            rid: irid,
            id: item_id,
            type_name: &itype,
        };
        tx.list_remove(lists, list, item)?;
        tx.commit()
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

/// The connection's page cache, at most (SQLite's default is 2 MiB; pages are taken as they are
/// used). A transaction whose dirty pages outgrow the cache spills them into the WAL before it
/// commits and writes them again when it touches them again: an initial sync commits a few MiB
/// of ops with their resources and random-keyed index entries at a time, and with 2 MiB wrote
/// 745 MiB where it now writes 714 for 100,000 items (docs/benchmarks.md, "A page cache that
/// holds a commit").
const CACHE_KIB: u32 = 64 * 1024;

/// WAL with `synchronous=NORMAL`: a commit appends to the WAL without an fsync; the WAL is
/// fsynced before each checkpoint and the database after it. A crash of the process loses
/// nothing committed (the WAL is in the OS's cache); a power loss can take back the commits
/// since the last checkpoint's fsync (at most `checkpoint::INTERVAL` of them) but never
/// corrupts the database, because WAL frames are checksummed and replayed whole
/// transactions only. Foreign keys are off: the store keeps its own references. The page
/// cache is [`CACHE_KIB`]. Returns whether the database is in WAL mode.
fn configure(conn: &Connection) -> Result<bool> {
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    let mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
    conn.execute_batch(&format!(
        "PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=OFF; PRAGMA cache_size=-{CACHE_KIB};"
    ))?;
    Ok(mode.eq_ignore_ascii_case("wal"))
}

#[cfg(test)]
mod tests {
    /// The modules in their order: each may import only those before it, so there is no
    /// cycle; none but the façades over [`crate::Store`] (`api`, `ops`, `told`, `grants`,
    /// `watched`) reach into the crate root. Run with the crate's tests; a new module must be added here.
    const MODULES: [(&str, &str); 15] = [
        ("error", include_str!("error.rs")),
        ("sql", include_str!("sql.rs")),
        ("adapter", include_str!("adapter.rs")),
        ("schema", include_str!("schema.rs")),
        ("changes", include_str!("changes.rs")),
        ("read", include_str!("read.rs")),
        ("listen", include_str!("listen.rs")),
        ("list", include_str!("list.rs")),
        ("write", include_str!("write.rs")),
        ("checkpoint", include_str!("checkpoint.rs")),
        ("api", include_str!("api.rs")),
        ("ops", include_str!("ops.rs")),
        ("told", include_str!("told.rs")),
        ("grants", include_str!("grants.rs")),
        ("watched", include_str!("watched.rs")),
    ];

    /// The first path segment of everything `src` names under `crate::`, brace groups included.
    fn crate_imports(src: &str) -> Vec<String> {
        let ident = |s: &str| -> String {
            s.trim()
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect()
        };
        let mut out = Vec::new();
        for (at, _) in src.match_indices("crate::") {
            let rest = &src[at + "crate::".len()..];
            if let Some(group) = rest.strip_prefix('{') {
                let end = group.find('}').unwrap_or(group.len());
                out.extend(group[..end].split(',').map(ident));
            } else {
                out.push(ident(rest));
            }
        }
        out.retain(|s| !s.is_empty());
        out
    }

    #[test]
    fn modules_import_only_modules_above_them() {
        let files = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/src")).unwrap();
        let listed = files
            .filter_map(|f| f.ok()?.file_name().into_string().ok())
            .filter(|f| f != "lib.rs")
            .count();
        assert_eq!(listed, MODULES.len(), "a module is missing from MODULES");
        for (i, (name, src)) in MODULES.iter().enumerate() {
            for import in crate_imports(src) {
                match MODULES.iter().position(|(m, _)| *m == import) {
                    Some(j) => assert!(j < i, "{name} imports {import}, which is not above it"),
                    None => assert!(
                        ["api", "ops", "told", "grants", "watched"].contains(name),
                        "{name} imports crate::{import} from the root"
                    ),
                }
            }
        }
    }
}
