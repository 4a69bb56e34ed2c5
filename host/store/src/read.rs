//! Reading: a resource whole from its type tables, children and metadata; queries (ids,
//! resources, counts) and the one-resource match that listeners and query-backed lists use.
//! Works on any connection, a write transaction included (it reads its own writes).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use allpeers_model::query::{CheckedQuery, Query};
use allpeers_model::resource::{Child, MAX_CHILD_DEPTH, Resource};
use allpeers_model::schema::{Registry, TypeDef};
use rusqlite::{Connection, OptionalExtension, params, params_from_iter};

use crate::error::{Result, StoreError};
use crate::sql::{self, child_table, col, type_table};

/// A child type's slots: (slot name, anonymous type name).
pub(crate) type Slots = Vec<(String, String)>;

/// The child slots the types of a chain declare.
fn slots_of(chain: &[&TypeDef]) -> Slots {
    chain
        .iter()
        .flat_map(|t| {
            t.children
                .iter()
                .map(|c| (c.name.clone(), c.type_name.clone()))
        })
        .collect()
}

/// Keys bound per statement by the reads of many resources at once: one statement text (a
/// short last batch is padded with its last key), far below SQLite's bound on parameters.
const KEYS_PER_QUERY: usize = 500;

/// `keys` in batches of [`KEYS_PER_QUERY`], each padded to that length with its last key (an
/// `IN` list ignores repeats): the statements' text, and so their cache entry, is one.
fn padded_batches<T: Clone>(keys: &[T]) -> impl Iterator<Item = Vec<T>> + '_ {
    keys.chunks(KEYS_PER_QUERY).map(|chunk| {
        let mut batch = chunk.to_vec();
        let last = chunk.last().expect("chunks are not empty").clone();
        batch.resize(KEYS_PER_QUERY, last);
        batch
    })
}

/// `?1, ?2, ...` for one batch of [`padded_batches`].
fn batch_placeholders() -> String {
    (1..=KEYS_PER_QUERY)
        .map(|i| format!("?{i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Reads through `conn` with the types of `reg`.
#[derive(Clone, Copy)]
pub(crate) struct Reader<'a> {
    pub conn: &'a Connection,
    pub reg: &'a Registry,
}

impl<'a> Reader<'a> {
    pub fn new(conn: &'a Connection, reg: &'a Registry) -> Self {
        Reader { conn, reg }
    }

    /// The internal row id and type of the resource `id`.
    pub fn rid_of(&self, id: &str) -> Result<Option<(i64, String)>> {
        Ok(self
            .conn
            .prepare_cached("SELECT rid, type FROM t_Resource WHERE id = ?1")?
            .query_row([id], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?)
    }

    /// Where each of `ids` is stored (row id and type), in a few statements rather than one
    /// per id; ids not stored are absent.
    pub fn rids_of<'i>(
        &self,
        ids: impl IntoIterator<Item = &'i str>,
    ) -> Result<HashMap<String, (i64, String)>> {
        let ids: Vec<&str> = ids
            .into_iter()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let mut out = HashMap::with_capacity(ids.len());
        let q = format!(
            "SELECT id, rid, type FROM t_Resource WHERE id IN ({})",
            batch_placeholders()
        );
        for batch in padded_batches(&ids) {
            let mut st = self.conn.prepare_cached(&q)?;
            let rows = st.query_map(params_from_iter(batch), |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    (r.get::<_, i64>(1)?, r.get::<_, String>(2)?),
                ))
            })?;
            for row in rows {
                let (id, at) = row?;
                out.insert(id, at);
            }
        }
        Ok(out)
    }

    /// The resources stored under `ids`, whole as [`Reader::get`] reads each, in the order of
    /// `ids` (each once; ids not stored are skipped), in a few statements per type rather than
    /// several per resource.
    pub fn get_many(&self, ids: &[String]) -> Result<Vec<Resource>> {
        let stored = self.rids_of(ids.iter().map(String::as_str))?;
        let mut by_type: BTreeMap<&str, Vec<i64>> = BTreeMap::new();
        let mut loaded: HashMap<i64, Resource> = HashMap::with_capacity(stored.len());
        for (id, (rid, type_name)) in &stored {
            by_type.entry(type_name.as_str()).or_default().push(*rid);
            loaded.insert(*rid, Resource::new(type_name).with_id(id));
        }
        for (type_name, rids) in &by_type {
            let chain: Vec<&TypeDef> = self.reg.chain(type_name);
            if chain.is_empty() {
                return Err(StoreError::Corrupt(format!(
                    "a resource has unknown type '{type_name}'"
                )));
            }
            for t in chain.iter().filter(|t| !t.props.is_empty()) {
                let cols: Vec<String> = t.props.iter().map(|p| col(&p.name)).collect();
                let q = format!(
                    "SELECT rid, {} FROM {} WHERE rid IN ({})",
                    cols.join(", "),
                    type_table(&t.name),
                    batch_placeholders()
                );
                let mut found = 0;
                for batch in padded_batches(rids) {
                    let mut st = self.conn.prepare_cached(&q)?;
                    let mut rows = st.query(params_from_iter(batch))?;
                    while let Some(row) = rows.next()? {
                        let rid: i64 = row.get(0)?;
                        let r = loaded.get_mut(&rid).expect("asked for");
                        for (i, p) in t.props.iter().enumerate() {
                            if let Some(v) =
                                sql::from_sql(row.get_ref(i + 1)?, p.datatype, p.multi)?
                            {
                                r.properties.insert(p.name.clone(), v);
                            }
                        }
                        found += 1;
                    }
                }
                if found != rids.len() {
                    return Err(StoreError::Corrupt(format!(
                        "a {type_name} lacks its {} row",
                        t.name
                    )));
                }
            }
            let slots = slots_of(&chain);
            if !slots.is_empty() {
                for rid in rids {
                    let children = self.load_children(*rid, None, &slots, 0)?;
                    loaded.get_mut(rid).expect("asked for").children = children;
                }
            }
        }
        let rids: Vec<i64> = loaded.keys().copied().collect();
        let q = format!(
            "SELECT rid, name, value FROM ap_meta WHERE rid IN ({})",
            batch_placeholders()
        );
        for batch in padded_batches(&rids) {
            let mut st = self.conn.prepare_cached(&q)?;
            let mut rows = st.query(params_from_iter(batch))?;
            while let Some(row) = rows.next()? {
                let rid: i64 = row.get(0)?;
                let name: String = row.get(1)?;
                let r = loaded.get_mut(&rid).expect("asked for");
                if let Some(def) = self
                    .reg
                    .meta_props(&r.type_name)
                    .into_iter()
                    .find(|p| p.name == name)
                    && let Some(v) = sql::from_sql(row.get_ref(2)?, def.datatype, def.multi)?
                {
                    r.meta.insert(name, v);
                }
            }
        }
        Ok(ids
            .iter()
            .filter_map(|id| loaded.remove(&stored.get(id)?.0))
            .collect())
    }

    /// The id and type of the resource stored under `rid`.
    pub fn id_of(&self, rid: i64) -> Result<Option<(String, String)>> {
        Ok(self
            .conn
            .prepare_cached("SELECT id, type FROM t_Resource WHERE rid = ?1")?
            .query_row([rid], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?)
    }

    /// Like [`Reader::rid_of`], but a missing resource is [`StoreError::NotFound`].
    pub fn existing(&self, id: &str) -> Result<(i64, String)> {
        self.rid_of(id)?
            .ok_or_else(|| StoreError::NotFound(id.to_string()))
    }

    pub fn get(&self, id: &str) -> Result<Option<Resource>> {
        match self.rid_of(id)? {
            None => Ok(None),
            Some((rid, _)) => self.load(rid).map(Some),
        }
    }

    /// The whole resource stored under `rid`: its row in every table of its type chain, its
    /// children and its local metadata.
    pub fn load(&self, rid: i64) -> Result<Resource> {
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
        let slots = slots_of(&chain);
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
        if depth > MAX_CHILD_DEPTH {
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
            let sub = slots_of(&[t]);
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

    /// Row ids of the resources matching `q`, in its order, limited.
    pub fn query_rids(&self, q: &Query) -> Result<Vec<i64>> {
        let checked = self.reg.check_query(q)?;
        let c = sql::compile_select(&checked);
        allpeers_log::bone!(sql = %c.sql, "query");
        let mut st = self.conn.prepare_cached(&c.sql)?;
        let rows = st.query_map(params_from_iter(c.params.iter()), |r| r.get::<_, i64>(0))?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    }

    /// The ids of `rids`, skipping any that vanished.
    pub fn ids(&self, rids: Vec<i64>) -> Result<Vec<String>> {
        let mut out = Vec::with_capacity(rids.len());
        for rid in rids {
            if let Some((id, _)) = self.id_of(rid)? {
                out.push(id);
            }
        }
        Ok(out)
    }

    pub fn count(&self, q: &Query) -> Result<u64> {
        let checked = self.reg.check_query(q)?;
        let c = sql::compile_count(&checked);
        let n: i64 = self
            .conn
            .prepare_cached(&c.sql)?
            .query_row(params_from_iter(c.params.iter()), |r| r.get(0))?;
        Ok(n as u64)
    }
}

/// Whether the resource `rid` matches the checked query `q` now.
pub(crate) fn matches(conn: &Connection, q: &CheckedQuery, rid: i64) -> Result<bool> {
    let c = sql::compile_matches(q, rid);
    Ok(conn
        .prepare_cached(&c.sql)?
        .query_row(params_from_iter(c.params.iter()), |r| r.get(0))?)
}
