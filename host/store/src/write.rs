//! Writing: the checks every resource passes before it is written (defaults, adapters, schema)
//! and [`WriteTx`], one SQLite transaction that also collects the listener events of what it
//! did. The events reach the listeners only after the commit; a transaction dropped without a
//! commit (any error on the way) rolls back and its events vanish with it.

use std::collections::{BTreeMap, HashMap};

use allpeers_model::resource::{Child, Resource, Value};
use allpeers_model::schema::{ROOT_TYPE, Registry};
use rusqlite::types::{ToSqlOutput, Value as SqlValue, ValueRef};
use rusqlite::{Connection, Transaction, params_from_iter};

use crate::adapter::Chain;
use crate::changes::{self, Entry};
use crate::error::{Result, StoreError};
use crate::list::{self, QueryList, QueryLists, Scope};
use crate::listen::{Event, EventKind, Listeners};
use crate::read::Slots;
use crate::sql::{self, child_table, col, to_sql, type_table};

/// A new resource made ready to store: a generated id if it has none, owner (`author`),
/// created and modified (`now`) unless given, then the adapters' `initialise` and the checks of
/// [`check`].
pub(crate) fn prepare_new(
    reg: &Registry,
    adapters: &Chain,
    mut r: Resource,
    now: i64,
    author: &str,
) -> Result<Resource> {
    if r.id.is_empty() {
        r.id = new_id();
    }
    r.properties
        .entry("owner".into())
        .or_insert_with(|| Value::String(author.to_string()));
    r.properties
        .entry("created".into())
        .or_insert(Value::Date(now));
    r.properties
        .entry("modified".into())
        .or_insert(Value::Date(now));
    adapters.initialise(&mut r)?;
    check(reg, adapters, r)
}

/// The checks of every write, new or changed: the adapters derive, the schema validates (and
/// coerces), a List's query must be valid, then the adapters validate.
pub(crate) fn check(reg: &Registry, adapters: &Chain, mut r: Resource) -> Result<Resource> {
    adapters.derive(&mut r)?;
    reg.validate(&mut r)?;
    list::check_query_property(reg, &r)?;
    adapters.validate(&r)?;
    Ok(r)
}

fn new_id() -> String {
    let bytes: [u8; 16] = rand::random();
    data_encoding::BASE32_NOPAD
        .encode(&bytes)
        .to_ascii_lowercase()
}

/// The INSERT statement text of each type table, built once per registry.
#[derive(Default)]
pub(crate) struct InsertSql(HashMap<String, String>);

impl InsertSql {
    /// Forgets every statement (the registry changed).
    pub fn clear(&mut self) {
        self.0.clear();
    }

    fn get(&mut self, t: &allpeers_model::schema::TypeDef) -> &str {
        // Looked up by `&str` first: the hot path allocates nothing.
        if !self.0.contains_key(&t.name) {
            let mut cols: Vec<String> = if t.name == ROOT_TYPE {
                vec!["id".into(), "type".into()]
            } else {
                vec!["rid".into()]
            };
            cols.extend(t.props.iter().map(|p| col(&p.name)));
            let ph: Vec<String> = (1..=cols.len()).map(|i| format!("?{i}")).collect();
            let sql = format!(
                "INSERT INTO {}({}) VALUES ({})",
                type_table(&t.name),
                cols.join(", "),
                ph.join(", ")
            );
            self.0.insert(t.name.clone(), sql);
        }
        self.0.get(&t.name).map(String::as_str).unwrap_or_default()
    }
}

/// A resource a write is about: its row id, id and type.
#[derive(Clone, Copy)]
pub(crate) struct Target<'s> {
    pub rid: i64,
    pub id: &'s str,
    pub type_name: &'s str,
}

/// One write transaction and the events it will dispatch on commit.
pub(crate) struct WriteTx<'a> {
    tx: Transaction<'a>,
    reg: &'a Registry,
    listeners: &'a Listeners,
    author: &'a str,
    /// The time of every change in this transaction (milliseconds since the epoch).
    time: i64,
    events: Vec<Event>,
}

impl<'a> WriteTx<'a> {
    pub fn begin(
        conn: &'a mut Connection,
        reg: &'a Registry,
        listeners: &'a Listeners,
        author: &'a str,
        time: i64,
    ) -> Result<WriteTx<'a>> {
        Ok(WriteTx {
            tx: conn.transaction()?,
            reg,
            listeners,
            author,
            time,
            events: Vec::new(),
        })
    }

    /// The transaction, for the store's own tables written in the same commit (replicated ops).
    pub fn sql(&self) -> &Connection {
        &self.tx
    }

    /// Reads inside the transaction (sees its own writes).
    pub fn reader(&self) -> crate::read::Reader<'_> {
        crate::read::Reader::new(&self.tx, self.reg)
    }

    /// Commits, then hands the collected events to the listeners (on this thread).
    pub fn commit(self) -> Result<()> {
        self.tx.commit()?;
        self.listeners.dispatch(self.reg, &self.events);
        Ok(())
    }

    fn event(&self, kind: EventKind, id: &str, type_name: &str) -> Event {
        Event::new(kind, id, type_name, self.time, self.author)
    }

    /// An event of list `list_id` (a `list_type`) about its item `item`.
    fn item_event(&self, kind: EventKind, list_id: &str, list_type: &str, item: &str) -> Event {
        let mut ev = self.event(kind, list_id, list_type);
        ev.item = Some(item.to_string());
        ev
    }

    /// Appends to the change log; returns the entry's sequence number.
    fn log(&self, op: &str, target: Target<'_>, data: &str) -> Result<i64> {
        let entry = Entry {
            time: self.time,
            author: self.author,
            op,
            id: target.id,
            type_name: target.type_name,
        };
        changes::append(&self.tx, &entry, data)
    }

    /// Keeps the query-backed lists live after `target` changed (`scope` says how): their
    /// `ap_list_items` rows, and an item event per list that gained or lost it.
    fn upkeep(&self, lists: &QueryLists, target: Target<'_>, scope: Scope) -> Result<Vec<Event>> {
        Ok(lists
            .upkeep(&self.tx, self.reg, target.rid, target.type_name, scope)?
            .into_iter()
            .map(|(ql, kind)| self.item_event(kind, &ql.id, list::LIST_TYPE, target.id))
            .collect())
    }

    /// Query-backed lists (by `itemsOf`/`listsContaining`) after the membership of `item` in
    /// `list` changed: both may now match differently.
    fn upkeep_memberships(
        &mut self,
        lists: &QueryLists,
        list: Target<'_>,
        item: Target<'_>,
    ) -> Result<()> {
        for target in [item, list] {
            let events = self.upkeep(lists, target, Scope::Memberships)?;
            self.events.extend(events);
        }
        Ok(())
    }

    /// Stores `rs` (prepared by [`prepare_new`]), logs each create, populates new query-backed
    /// lists (returned, for the store to keep live once committed) and updates existing ones.
    /// Also returns each resource's row id, in `rs`'s order.
    pub fn create(
        &mut self,
        inserts: &mut InsertSql,
        lists: &QueryLists,
        rs: &[Resource],
    ) -> Result<(Vec<QueryList>, Vec<i64>)> {
        let listening = !self.listeners.is_empty();
        let mut new_lists = Vec::new();
        let mut events = Vec::new();
        let mut rids = Vec::with_capacity(rs.len());
        {
            // The INSERT statements of this transaction by type, kept for all of `rs`, as
            // hand-written code would.
            let mut stmts: HashMap<&str, rusqlite::CachedStatement<'_>> = HashMap::new();
            for r in rs {
                let rid = self.insert(inserts, &mut stmts, r)?;
                rids.push(rid);
                let target = Target {
                    rid,
                    id: &r.id,
                    type_name: &r.type_name,
                };
                let seq = self.log("create", target, &changes::created(r))?;
                if let Some(ql) = list::query_list_of(self.reg, rid, r)? {
                    list::populate(&self.tx, &ql)?;
                    new_lists.push(ql);
                }
                if listening {
                    let mut ev = self.event(EventKind::Created, &r.id, &r.type_name);
                    ev.seq = Some(seq);
                    ev.rid = rid;
                    events.push(ev);
                }
                events.extend(self.upkeep(lists, target, Scope::Resource)?);
            }
        }
        // Query subscriptions match against the state after the whole batch.
        for ev in events.iter_mut() {
            if ev.kind == EventKind::Created {
                ev.matched =
                    self.listeners
                        .query_matches(&self.tx, self.reg, ev.rid, &ev.type_name)?;
            }
        }
        self.events.extend(events);
        Ok((new_lists, rids))
    }

    /// Rows of `r` in every table of its type chain, then its children and metadata; returns
    /// its row id.
    fn insert<'s>(
        &'s self,
        inserts: &mut InsertSql,
        stmts: &mut HashMap<&'s str, rusqlite::CachedStatement<'s>>,
        r: &Resource,
    ) -> Result<i64> {
        let mut rid = 0i64;
        for t in self.reg.chain(&r.type_name) {
            let root = t.name == ROOT_TYPE;
            let stmt = match stmts.entry(t.name.as_str()) {
                std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
                std::collections::hash_map::Entry::Vacant(e) => {
                    e.insert(self.tx.prepare_cached(inserts.get(t))?)
                }
            };
            let mut vals: Vec<ToSqlOutput<'_>> = Vec::with_capacity(t.props.len() + 2);
            if root {
                vals.push(ToSqlOutput::Borrowed(ValueRef::Text(r.id.as_bytes())));
                vals.push(ToSqlOutput::Borrowed(ValueRef::Text(
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
                rid = self.tx.last_insert_rowid();
            }
        }
        self.insert_children(rid, &r.type_name, &r.children)?;
        self.insert_meta(rid, r)?;
        Ok(rid)
    }

    fn insert_meta(&self, rid: i64, r: &Resource) -> Result<()> {
        if r.meta.is_empty() {
            return Ok(());
        }
        let defs = self.reg.meta_props(&r.type_name);
        for (k, v) in &r.meta {
            let Some(def) = defs.iter().find(|d| &d.name == k) else {
                continue;
            };
            self.tx
                .prepare_cached("INSERT INTO ap_meta(rid, name, value) VALUES (?1, ?2, ?3)")?
                .execute(rusqlite::params![rid, k, to_sql(Some(v), def)])?;
        }
        Ok(())
    }

    fn insert_children(
        &self,
        owner: i64,
        type_name: &str,
        children: &BTreeMap<String, Vec<Child>>,
    ) -> Result<()> {
        if children.is_empty() {
            return Ok(());
        }
        let slots: Slots = self
            .reg
            .all_children(type_name)
            .into_iter()
            .map(|c| (c.name.clone(), c.type_name.clone()))
            .collect();
        self.insert_child_rows(owner, None, &slots, children)
    }

    fn insert_child_rows(
        &self,
        owner: i64,
        parent: Option<i64>,
        slots: &[(String, String)],
        children: &BTreeMap<String, Vec<Child>>,
    ) -> Result<()> {
        for (slot, ty) in slots {
            let Some(values) = children.get(slot) else {
                continue;
            };
            let Some(t) = self.reg.get(ty) else { continue };
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
            let sub: Slots = t
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
                self.tx
                    .prepare_cached(&q)?
                    .execute(params_from_iter(vals.iter()))?;
                if !sub.is_empty() && !c.children.is_empty() {
                    let cid = self.tx.last_insert_rowid();
                    self.insert_child_rows(owner, Some(cid), &sub, &c.children)?;
                }
            }
        }
        Ok(())
    }

    /// Every child row of `owner` (a `type_name`), at any depth.
    fn delete_children(&self, owner: i64, type_name: &str) -> Result<()> {
        let mut tables: Vec<String> = Vec::new();
        let mut stack: Vec<String> = self
            .reg
            .all_children(type_name)
            .into_iter()
            .map(|c| c.type_name.clone())
            .collect();
        while let Some(t) = stack.pop() {
            if tables.contains(&t) {
                continue;
            }
            if let Some(td) = self.reg.get(&t) {
                stack.extend(td.children.iter().map(|c| c.type_name.clone()));
            }
            tables.push(t);
        }
        for t in tables {
            self.tx
                .prepare_cached(&format!("DELETE FROM {} WHERE owner = ?1", child_table(&t)))?
                .execute([owner])?;
        }
        Ok(())
    }

    /// Writes `new` over `old` (stored under `rid`; `new` already checked): only the tables
    /// whose properties changed, children and metadata only if they changed. Logs the change
    /// unless only local metadata changed. Returns the list's new query-backed form if `new` is
    /// a List whose query changed (None inside: no longer query-backed).
    pub fn update(
        &mut self,
        lists: &QueryLists,
        rid: i64,
        old: &Resource,
        new: &Resource,
        content: bool,
    ) -> Result<Option<Option<QueryList>>> {
        let target = Target {
            rid,
            id: &new.id,
            type_name: &new.type_name,
        };
        let before = self
            .listeners
            .query_matches(&self.tx, self.reg, rid, target.type_name)?;
        for t in self.reg.chain(target.type_name) {
            if t.props
                .iter()
                .any(|p| old.properties.get(&p.name) != new.properties.get(&p.name))
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
                vals.extend(
                    t.props
                        .iter()
                        .map(|p| to_sql(new.properties.get(&p.name), p)),
                );
                self.tx
                    .prepare_cached(&q)?
                    .execute(params_from_iter(vals.iter()))?;
            }
        }
        if old.children != new.children {
            self.delete_children(rid, target.type_name)?;
            self.insert_children(rid, target.type_name, &new.children)?;
        }
        if old.meta != new.meta {
            self.tx
                .prepare_cached("DELETE FROM ap_meta WHERE rid = ?1")?
                .execute([rid])?;
            self.insert_meta(rid, new)?;
        }
        let mut ev = self.event(EventKind::Updated, target.id, target.type_name);
        ev.rid = rid;
        ev.local = !content && old.properties == new.properties;
        if !ev.local {
            ev.seq = Some(self.log("update", target, &changes::updated(old, new))?);
        }
        // A list whose query changed is re-populated.
        let mut replaced = None;
        if old.get("query") != new.get("query") && self.reg.is_a(target.type_name, list::LIST_TYPE)
        {
            list::clear(&self.tx, rid)?;
            let ql = list::query_list_of(self.reg, rid, new)?;
            if let Some(ql) = &ql {
                list::populate(&self.tx, ql)?;
            }
            replaced = Some(ql);
        }
        let derived = self.upkeep(lists, target, Scope::Resource)?;
        let after = self
            .listeners
            .query_matches(&self.tx, self.reg, rid, target.type_name)?;
        ev.matched = before.into_iter().chain(after).collect();
        self.events.push(ev);
        self.events.extend(derived);
        Ok(replaced)
    }

    /// Removes `target`, its children, metadata and list memberships (each list that held it
    /// hears `itemRemoved`).
    pub fn delete(&mut self, target: Target<'_>) -> Result<()> {
        let before =
            self.listeners
                .query_matches(&self.tx, self.reg, target.rid, target.type_name)?;
        let held_by = list::containing(&self.tx, target.rid)?;
        list::forget(&self.tx, target.rid)?;
        self.delete_children(target.rid, target.type_name)?;
        for t in self.reg.chain(target.type_name) {
            self.tx
                .prepare_cached(&format!(
                    "DELETE FROM {} WHERE rid = ?1",
                    type_table(&t.name)
                ))?
                .execute([target.rid])?;
        }
        self.tx
            .prepare_cached("DELETE FROM ap_meta WHERE rid = ?1")?
            .execute([target.rid])?;
        let mut ev = self.event(EventKind::Deleted, target.id, target.type_name);
        ev.seq = Some(self.log("delete", target, "null")?);
        ev.rid = target.rid;
        ev.matched = before;
        self.events.push(ev);
        for (lid, ltype) in held_by {
            let ev = self.item_event(EventKind::ItemRemoved, &lid, &ltype, target.id);
            self.events.push(ev);
        }
        Ok(())
    }

    /// Inserts `item` into explicit `list` at `index`; returns its position.
    pub fn list_insert(
        &mut self,
        lists: &QueryLists,
        list: Target<'_>,
        item: Target<'_>,
        index: Option<u64>,
    ) -> Result<i64> {
        let pos = list::insert(&self.tx, list.rid, item.rid, index)?
            .ok_or_else(|| StoreError::Exists(format!("{} in list {}", item.id, list.id)))?;
        let data = serde_json::json!({"item": item.id, "index": pos}).to_string();
        let mut ev = self.item_event(EventKind::ItemAdded, list.id, list.type_name, item.id);
        ev.position = Some(pos);
        ev.seq = Some(self.log("list.insert", list, &data)?);
        self.events.push(ev);
        self.upkeep_memberships(lists, list, item)?;
        Ok(pos)
    }

    /// Moves `item` to `index` in explicit `list`; returns its new position.
    pub fn list_move(&mut self, list: Target<'_>, item: Target<'_>, index: u64) -> Result<i64> {
        let pos = list::move_to(&self.tx, list.rid, item.rid, index)?
            .ok_or_else(|| StoreError::NotFound(format!("{} in list {}", item.id, list.id)))?;
        let data = serde_json::json!({"item": item.id, "index": pos}).to_string();
        let mut ev = self.item_event(EventKind::ItemMoved, list.id, list.type_name, item.id);
        ev.position = Some(pos);
        ev.seq = Some(self.log("list.move", list, &data)?);
        self.events.push(ev);
        Ok(pos)
    }

    /// Makes explicit `list` hold exactly `order` from position `from` on (the items before it
    /// stay as they are), in that order: items not in it are removed, missing ones added at
    /// their place and the others moved there, in one pass of position writes — a replicated
    /// list's items arrive in any order, and inserting or moving one at a time shifts the whole
    /// list each time. Events and log entries are those of `list_remove` / `list_insert` /
    /// `list_move`; an item counts as moved only when its order among the items already there
    /// changed (it is off their longest run in order).
    pub fn list_arrange(
        &mut self,
        lists: &QueryLists,
        list: Target<'_>,
        from: usize,
        order: &[Target<'_>],
    ) -> Result<()> {
        let mut current = list::positions(&self.tx, list.rid, from as i64)?;
        let kept: std::collections::HashSet<i64> = order.iter().map(|t| t.rid).collect();
        let gone: Vec<i64> = current
            .keys()
            .copied()
            .filter(|rid| !kept.contains(rid))
            .collect();
        for rid in gone {
            current.remove(&rid);
            let Some((id, type_name)) = self.reader().id_of(rid)? else {
                continue;
            };
            let item = Target {
                rid,
                id: &id,
                type_name: &type_name,
            };
            // Positions are all written below: no gap to close.
            list::unplace(&self.tx, list.rid, rid)?;
            let data = serde_json::json!({"item": item.id}).to_string();
            let mut ev = self.item_event(EventKind::ItemRemoved, list.id, list.type_name, item.id);
            ev.seq = Some(self.log("list.remove", list, &data)?);
            self.events.push(ev);
            self.upkeep_memberships(lists, list, item)?;
        }
        let present: Vec<(usize, i64)> = order
            .iter()
            .enumerate()
            .filter_map(|(i, t)| current.get(&t.rid).map(|p| (i, *p)))
            .collect();
        let stay = list::longest_run(&present);
        // New items are written in runs, many rows a statement (an initial sync adds thousands
        // at once); a logged move ends a run, so the change log keeps the order of the pass.
        let mut run: Vec<(usize, Target<'_>)> = Vec::new();
        for (i, item) in order.iter().enumerate() {
            let index = from + i;
            let pos = index as i64;
            match current.get(&item.rid) {
                None => run.push((index, *item)),
                Some(&old) if old != pos => {
                    list::place(&self.tx, list.rid, item.rid, pos)?;
                    if !stay.contains(&i) {
                        self.list_add_new(lists, list, &std::mem::take(&mut run))?;
                        let data = serde_json::json!({"item": item.id, "index": pos}).to_string();
                        let mut ev =
                            self.item_event(EventKind::ItemMoved, list.id, list.type_name, item.id);
                        ev.position = Some(pos);
                        ev.seq = Some(self.log("list.move", list, &data)?);
                        self.events.push(ev);
                    }
                }
                Some(_) => {}
            }
        }
        self.list_add_new(lists, list, &run)
    }

    /// Adds `items` (each with its index), none of them in explicit `list` yet, at their
    /// indexes as `list_insert` would one by one: their rows and change-log entries in multi-row
    /// statements, then each one's event and the query-backed lists' upkeep.
    pub fn list_add_new(
        &mut self,
        lists: &QueryLists,
        list: Target<'_>,
        items: &[(usize, Target<'_>)],
    ) -> Result<()> {
        if items.is_empty() {
            return Ok(());
        }
        let rows: Vec<(i64, i64)> = items.iter().map(|(i, t)| (t.rid, *i as i64)).collect();
        list::place_new(&self.tx, list.rid, &rows)?;
        let entries: Vec<(Entry<'_>, String)> = items
            .iter()
            .map(|(index, item)| {
                let entry = Entry {
                    time: self.time,
                    author: self.author,
                    op: "list.insert",
                    id: list.id,
                    type_name: list.type_name,
                };
                let data = serde_json::json!({"item": item.id, "index": index}).to_string();
                (entry, data)
            })
            .collect();
        let seqs = changes::append_many(&self.tx, &entries)?;
        let listening = !self.listeners.is_empty();
        for ((index, item), seq) in items.iter().zip(seqs) {
            if listening {
                let mut ev =
                    self.item_event(EventKind::ItemAdded, list.id, list.type_name, item.id);
                ev.position = Some(*index as i64);
                ev.seq = Some(seq);
                self.events.push(ev);
            }
            self.upkeep_memberships(lists, list, *item)?;
        }
        Ok(())
    }

    /// Removes `item` from explicit `list`.
    pub fn list_remove(
        &mut self,
        lists: &QueryLists,
        list: Target<'_>,
        item: Target<'_>,
    ) -> Result<()> {
        if !list::remove(&self.tx, list.rid, item.rid)? {
            return Err(StoreError::NotFound(format!(
                "{} in list {}",
                item.id, list.id
            )));
        }
        let data = serde_json::json!({"item": item.id}).to_string();
        let mut ev = self.item_event(EventKind::ItemRemoved, list.id, list.type_name, item.id);
        ev.seq = Some(self.log("list.remove", list, &data)?);
        self.events.push(ev);
        self.upkeep_memberships(lists, list, item)
    }
}
