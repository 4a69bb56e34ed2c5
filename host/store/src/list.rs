//! Lists: explicit lists (items in `ap_list_items` with positions kept dense, 0..len) and
//! query-backed lists (a List with a `query` property; its items follow the query and are kept
//! live on every write by one indexed membership check per list, independent of list sizes).

use allpeers_model::query::{CheckedQuery, Query};
use allpeers_model::resource::{Resource, ValidationError, ValidationErrors, Value};
use allpeers_model::schema::Registry;
use rusqlite::types::Value as SqlValue;
use rusqlite::{Connection, OptionalExtension, params_from_iter};
use serde::{Deserialize, Serialize};

use crate::error::{Result, StoreError};
use crate::listen::EventKind;
use crate::read::{self, Reader};
use crate::sql::{self, col, type_table};

/// The built-in type whose resources can hold items.
pub const LIST_TYPE: &str = "List";

/// A list's contents.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ListInfo {
    pub id: String,
    /// Set for a query-backed list.
    pub query: Option<Query>,
    pub items: Vec<String>,
}

/// A query-backed list, its query checked against the registry.
pub(crate) struct QueryList {
    pub rid: i64,
    pub id: String,
    query: CheckedQuery,
}

/// Which query-backed lists a change may affect.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scope {
    /// The resource's own properties changed: lists over its type, and lists whose query has
    /// list conditions.
    Resource,
    /// Only list memberships changed: lists whose query has list conditions (itemsOf,
    /// listsContaining).
    Memberships,
}

/// Items a store keeps in [`Arranged`], all lists together (~50 bytes each): past this, a list
/// is read back from the database on its next commit instead.
pub(crate) const MAX_ARRANGED_ITEMS: usize = 1_000_000;

/// Explicit lists as the store's last replicated commits left them: each list's items in
/// order with their row ids (positions 0..len, as `WriteTx::list_arrange` writes them). A commit
/// to a list that only grew at its end — an initial sync commits every few thousand ops — then
/// appends the new items without reading the list back and looking up every item's row id
/// (which made a 100,000-item sync quadratic). Valid only while nothing else wrote: the store
/// clears it on every other write, and [`Arranged::check`] on a commit by another connection.
#[derive(Default)]
pub(crate) struct Arranged {
    /// SQLite's `data_version` when it was last checked.
    version: Option<i64>,
    lists: std::collections::HashMap<String, Vec<(String, i64)>>,
    items: usize,
}

impl Arranged {
    pub fn clear(&mut self) {
        *self = Arranged::default();
    }

    /// Forgets everything if another connection committed since the last check.
    pub fn check(&mut self, conn: &Connection) -> Result<()> {
        let version: i64 = conn.query_row("PRAGMA data_version", [], |r| r.get(0))?;
        if self.version != Some(version) {
            self.clear();
            self.version = Some(version);
        }
        Ok(())
    }

    /// How many of `wanted`'s first items (list `id`'s items in order) are stored at those
    /// positions as kept here: the run both start with. Only the rest is arranged. `None` if
    /// the list is not kept (then all of it is).
    ///
    /// A commit's items can fall among the last ones of the commit before, not only after
    /// them: an item joins once its create arrived, and ops of several writers interleave.
    pub fn prefix(&self, id: &str, wanted: &[&str]) -> Option<usize> {
        let kept = self.lists.get(id)?;
        Some(
            kept.iter()
                .zip(wanted)
                .take_while(|((item, _), w)| item == *w)
                .count(),
        )
    }

    /// Keeps `items` after the first `from` items kept for list `id` (what
    /// [`Arranged::prefix`] said; 0 after arranging it afresh), in place of the rest.
    pub fn extend(
        &mut self,
        id: &str,
        from: usize,
        items: impl IntoIterator<Item = (String, i64)>,
    ) {
        let mut list = self.lists.remove(id).unwrap_or_default();
        self.items -= list.len();
        list.truncate(from);
        list.extend(items);
        if self.items + list.len() <= MAX_ARRANGED_ITEMS {
            self.items += list.len();
            self.lists.insert(id.to_owned(), list);
        }
    }

    pub fn forget(&mut self, id: &str) {
        if let Some(list) = self.lists.remove(id) {
            self.items -= list.len();
        }
    }
}

/// The query-backed lists of a store, kept in memory so writes need not look them up.
#[derive(Default)]
pub(crate) struct QueryLists(Vec<QueryList>);

impl QueryLists {
    /// Every stored List with a query that is still valid for `r`'s registry.
    pub fn load(r: Reader<'_>) -> Result<QueryLists> {
        let rows: Vec<(i64, String)> = r
            .conn
            .prepare(&format!(
                "SELECT rid, {} FROM {} WHERE {} IS NOT NULL",
                col("query"),
                type_table(LIST_TYPE),
                col("query")
            ))?
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<rusqlite::Result<_>>()?;
        let mut out = Vec::new();
        for (rid, q) in rows {
            let Some((id, _)) = r.id_of(rid)? else {
                continue;
            };
            match Query::from_json(&q).and_then(|q| r.reg.check_query(&q)) {
                Ok(query) => out.push(QueryList { rid, id, query }),
                Err(e) => {
                    allpeers_log::marrow!(list = %id, error = %e, "stored list query no longer valid; list not kept live")
                }
            }
        }
        Ok(QueryLists(out))
    }

    pub fn get(&self, rid: i64) -> Option<&QueryList> {
        self.0.iter().find(|q| q.rid == rid)
    }

    /// Forgets the list `rid` (deleted, or its query changed) and keeps `replacement`.
    pub fn replace(&mut self, rid: i64, replacement: Option<QueryList>) {
        self.0.retain(|q| q.rid != rid);
        self.0.extend(replacement);
    }

    pub fn extend(&mut self, lists: Vec<QueryList>) {
        self.0.extend(lists);
    }

    /// The query-backed lists whose membership of `rid` changed, after `rid` (of `type_name`)
    /// was written, each with whether it gained or lost it. Updates `ap_list_items` to match.
    pub fn upkeep(
        &self,
        conn: &Connection,
        reg: &Registry,
        rid: i64,
        type_name: &str,
        scope: Scope,
    ) -> Result<Vec<(&QueryList, EventKind)>> {
        let mut out = Vec::new();
        for ql in &self.0 {
            if ql.rid == rid {
                continue;
            }
            let relevant = ql.query.has_list_conditions()
                || (scope == Scope::Resource && reg.is_a(type_name, &ql.query.type_name));
            if !relevant {
                continue;
            }
            let now = read::matches(conn, &ql.query, rid)?;
            if now == contains(conn, ql.rid, rid)? {
                continue;
            }
            let kind = if now {
                conn.prepare_cached(
                    "INSERT INTO ap_list_items(list, item, pos) VALUES (?1, ?2, 0)",
                )?
                .execute([ql.rid, rid])?;
                EventKind::ItemAdded
            } else {
                conn.prepare_cached("DELETE FROM ap_list_items WHERE list = ?1 AND item = ?2")?
                    .execute([ql.rid, rid])?;
                EventKind::ItemRemoved
            };
            out.push((ql, kind));
        }
        Ok(out)
    }
}

/// The query-backed list that `r` (stored under `rid`) is, if it is one.
pub(crate) fn query_list_of(reg: &Registry, rid: i64, r: &Resource) -> Result<Option<QueryList>> {
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

/// Refuses a List whose `query` property is not a valid query (before anything is written).
pub(crate) fn check_query_property(reg: &Registry, r: &Resource) -> Result<()> {
    if !reg.is_a(&r.type_name, LIST_TYPE) {
        return Ok(());
    }
    let Some(q) = r.get("query") else {
        return Ok(());
    };
    let q = q.as_str().unwrap_or_default();
    match Query::from_json(q).and_then(|q| reg.check_query(&q)) {
        Ok(_) => Ok(()),
        Err(e) => Err(StoreError::Invalid(ValidationErrors(vec![
            ValidationError {
                path: "properties.query".into(),
                reason: e.to_string(),
            },
        ]))),
    }
}

/// Fills a new (or re-queried) query-backed list with everything its query matches.
pub(crate) fn populate(conn: &Connection, ql: &QueryList) -> Result<()> {
    let mut c = sql::Compiler::new();
    let list = c.bind(SqlValue::Integer(ql.rid));
    let s = c.select(&ql.query, false, None);
    let compiled = c.finish(s);
    let q = format!(
        "INSERT OR IGNORE INTO ap_list_items(list, item, pos) SELECT {list}, sub.rid, 0 FROM ({}) sub",
        compiled.sql
    );
    conn.execute(&q, params_from_iter(compiled.params.iter()))?;
    Ok(())
}

/// Empties list `rid` (its query changed).
pub(crate) fn clear(conn: &Connection, rid: i64) -> Result<()> {
    conn.prepare_cached("DELETE FROM ap_list_items WHERE list = ?1")?
        .execute([rid])?;
    Ok(())
}

/// The list `list_id` (row id and type); `explicit` refuses query-backed lists, whose items
/// only their query decides.
pub(crate) fn find(
    r: Reader<'_>,
    lists: &QueryLists,
    list_id: &str,
    explicit: bool,
) -> Result<(i64, String)> {
    let (rid, t) = r.existing(list_id)?;
    if !r.reg.is_a(&t, LIST_TYPE) {
        return Err(StoreError::BadRequest(format!(
            "{list_id} is a {t}, not a List"
        )));
    }
    if explicit && lists.get(rid).is_some() {
        return Err(StoreError::BadRequest(format!(
            "{list_id} is query-backed: its items follow its query"
        )));
    }
    Ok((rid, t))
}

fn contains(conn: &Connection, list: i64, item: i64) -> Result<bool> {
    Ok(conn
        .prepare_cached("SELECT EXISTS(SELECT 1 FROM ap_list_items WHERE list = ?1 AND item = ?2)")?
        .query_row([list, item], |r| r.get(0))?)
}

/// The length of explicit list `list`: its greatest position plus one (positions are dense,
/// 0..len), read from the end of the (list, pos) index instead of counting every row — a
/// `count(*)` made appending n items one by one cost n²/2 row visits.
fn len(conn: &Connection, list: i64) -> Result<i64> {
    Ok(conn
        .prepare_cached("SELECT coalesce(max(pos) + 1, 0) FROM ap_list_items WHERE list = ?1")?
        .query_row([list], |r| r.get(0))?)
}

fn position(conn: &Connection, list: i64, item: i64) -> Result<Option<i64>> {
    Ok(conn
        .prepare_cached("SELECT pos FROM ap_list_items WHERE list = ?1 AND item = ?2")?
        .query_row([list, item], |r| r.get(0))
        .optional()?)
}

/// Inserts `item` into explicit list `list` at `index` (None or past the end: append); returns
/// the position, or None if the item is already in the list.
pub(crate) fn insert(
    conn: &Connection,
    list: i64,
    item: i64,
    index: Option<u64>,
) -> Result<Option<i64>> {
    if contains(conn, list, item)? {
        return Ok(None);
    }
    let len = len(conn, list)?;
    let pos = index.map_or(len, |i| (i.min(len as u64)) as i64);
    conn.prepare_cached("UPDATE ap_list_items SET pos = pos + 1 WHERE list = ?1 AND pos >= ?2")?
        .execute([list, pos])?;
    conn.prepare_cached("INSERT INTO ap_list_items(list, item, pos) VALUES (?1, ?2, ?3)")?
        .execute([list, item, pos])?;
    Ok(Some(pos))
}

/// Every item of explicit list `list` at position `from` or later, with its position.
pub(crate) fn positions(
    conn: &Connection,
    list: i64,
    from: i64,
) -> Result<std::collections::HashMap<i64, i64>> {
    Ok(conn
        .prepare_cached("SELECT item, pos FROM ap_list_items WHERE list = ?1 AND pos >= ?2")?
        .query_map([list, from], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<rusqlite::Result<_>>()?)
}

/// Writes `item`'s position in `list` as it is (inserting the row if needed), shifting nobody:
/// for `WriteTx::list_arrange`, which writes every position.
pub(crate) fn place(conn: &Connection, list: i64, item: i64, pos: i64) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO ap_list_items(list, item, pos) VALUES (?1, ?2, ?3)
         ON CONFLICT(list, item) DO UPDATE SET pos = excluded.pos",
    )?
    .execute([list, item, pos])?;
    Ok(())
}

/// Writes the rows of `items` (item, position), none of them in `list` yet, in multi-row
/// statements: for `WriteTx::list_arrange`, whose new items (an initial sync's thousands) need
/// no conflict check.
pub(crate) fn place_new(conn: &Connection, list: i64, items: &[(i64, i64)]) -> Result<()> {
    let values: Vec<i64> = items
        .iter()
        .flat_map(|&(item, pos)| [list, item, pos])
        .collect();
    sql::insert_rows(
        conn,
        "INSERT INTO ap_list_items(list, item, pos)",
        3,
        &values,
    )?;
    Ok(())
}

/// Deletes `item`'s row from `list` without closing the gap: for `WriteTx::list_arrange`.
pub(crate) fn unplace(conn: &Connection, list: i64, item: i64) -> Result<()> {
    conn.prepare_cached("DELETE FROM ap_list_items WHERE list = ?1 AND item = ?2")?
        .execute([list, item])?;
    Ok(())
}

/// Of `(index, position)` pairs in index order, the indexes on a longest run of ascending
/// positions (patience sorting, O(n log n)): the items that kept their order.
pub(crate) fn longest_run(pairs: &[(usize, i64)]) -> std::collections::HashSet<usize> {
    // tails[k]: the pair index ending the best run of length k + 1 found so far.
    let mut tails: Vec<usize> = Vec::new();
    let mut before: Vec<Option<usize>> = vec![None; pairs.len()];
    for (i, &(_, pos)) in pairs.iter().enumerate() {
        let k = tails.partition_point(|&t| pairs[t].1 < pos);
        before[i] = k.checked_sub(1).map(|k| tails[k]);
        if k == tails.len() {
            tails.push(i);
        } else {
            tails[k] = i;
        }
    }
    let mut run = std::collections::HashSet::new();
    let mut at = tails.last().copied();
    while let Some(i) = at {
        run.insert(pairs[i].0);
        at = before[i];
    }
    run
}

/// Moves `item` to `index` (clamped to the list) in explicit list `list`; returns the new
/// position, or None if the item is not in the list.
pub(crate) fn move_to(conn: &Connection, list: i64, item: i64, index: u64) -> Result<Option<i64>> {
    let Some(old) = position(conn, list, item)? else {
        return Ok(None);
    };
    let len = len(conn, list)?;
    let new = (index.min((len - 1).max(0) as u64)) as i64;
    if new > old {
        conn.prepare_cached(
            "UPDATE ap_list_items SET pos = pos - 1 WHERE list = ?1 AND pos > ?2 AND pos <= ?3",
        )?
        .execute([list, old, new])?;
    } else if new < old {
        conn.prepare_cached(
            "UPDATE ap_list_items SET pos = pos + 1 WHERE list = ?1 AND pos >= ?2 AND pos < ?3",
        )?
        .execute([list, new, old])?;
    }
    conn.prepare_cached("UPDATE ap_list_items SET pos = ?3 WHERE list = ?1 AND item = ?2")?
        .execute([list, item, new])?;
    Ok(Some(new))
}

/// Removes `item` from explicit list `list`, closing the gap; false if it was not there.
pub(crate) fn remove(conn: &Connection, list: i64, item: i64) -> Result<bool> {
    let Some(old) = position(conn, list, item)? else {
        return Ok(false);
    };
    conn.prepare_cached("DELETE FROM ap_list_items WHERE list = ?1 AND item = ?2")?
        .execute([list, item])?;
    conn.prepare_cached("UPDATE ap_list_items SET pos = pos - 1 WHERE list = ?1 AND pos > ?2")?
        .execute([list, old])?;
    Ok(true)
}

/// The lists (id, type) holding `rid`.
pub(crate) fn containing(conn: &Connection, rid: i64) -> Result<Vec<(String, String)>> {
    Ok(conn
        .prepare_cached(
            "SELECT r.id, r.type FROM ap_list_items li JOIN t_Resource r ON r.rid = li.list WHERE li.item = ?1",
        )?
        .query_map([rid], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<rusqlite::Result<_>>()?)
}

/// Takes `rid` out of every list (closing the gaps in explicit lists' positions) and, if it is
/// a list, drops its items.
pub(crate) fn forget(conn: &Connection, rid: i64) -> Result<()> {
    let positions: Vec<(i64, i64)> = conn
        .prepare_cached("SELECT list, pos FROM ap_list_items WHERE item = ?1")?
        .query_map([rid], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<rusqlite::Result<_>>()?;
    conn.prepare_cached("DELETE FROM ap_list_items WHERE item = ?1")?
        .execute([rid])?;
    for (list, pos) in positions {
        conn.prepare_cached("UPDATE ap_list_items SET pos = pos - 1 WHERE list = ?1 AND pos > ?2")?
            .execute([list, pos])?;
    }
    clear(conn, rid)
}

/// Item ids of a list: explicit lists in their order; query-backed lists in the query's sort
/// order (its limit and offset apply here).
pub(crate) fn items(r: Reader<'_>, lists: &QueryLists, list_id: &str) -> Result<ListInfo> {
    let (lrid, _) = find(r, lists, list_id, false)?;
    if let Some(ql) = lists.get(lrid) {
        let mut c = sql::Compiler::new();
        let f = move |root: &str, c: &mut sql::Compiler| {
            let p = c.bind(SqlValue::Integer(lrid));
            format!("{root}.rid IN (SELECT item FROM ap_list_items WHERE list = {p})")
        };
        let s = c.select(&ql.query, true, Some(&f));
        let compiled = c.finish(s);
        let rids: Vec<i64> = r
            .conn
            .prepare_cached(&compiled.sql)?
            .query_map(params_from_iter(compiled.params.iter()), |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        let query = r.get(list_id)?.and_then(|l| {
            l.get("query")
                .and_then(Value::as_str)
                .and_then(|s| Query::from_json(s).ok())
        });
        return Ok(ListInfo {
            id: list_id.to_string(),
            query,
            items: r.ids(rids)?,
        });
    }
    let items: Vec<String> = r
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_longest_run_keeps_the_most_items_in_their_order() {
        let run = |positions: &[i64]| {
            let pairs: Vec<(usize, i64)> = positions.iter().copied().enumerate().collect();
            let mut kept: Vec<usize> = longest_run(&pairs).into_iter().collect();
            kept.sort();
            kept
        };
        assert_eq!(run(&[]), Vec::<usize>::new());
        assert_eq!(run(&[0, 1, 2, 3]), vec![0, 1, 2, 3]);
        // One item moved to the front: the others kept their order.
        assert_eq!(run(&[3, 0, 1, 2]), vec![1, 2, 3]);
        // One moved to the end.
        assert_eq!(run(&[1, 2, 3, 0]), vec![0, 1, 2]);
        assert_eq!(run(&[3, 2, 1, 0]).len(), 1);
        assert_eq!(run(&[0, 5, 1, 2, 6, 3]), vec![0, 2, 3, 5]);
    }
}
