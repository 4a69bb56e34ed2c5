//! Type tables and their evolution: the store's own tables, one table per type (`t_<Type>`,
//! `c_<AnonType>` for children), columns added as schemas evolve (nothing is ever dropped), and
//! schema files registered at run time (kept in `ap_schemas`, replayed on open).

use allpeers_model::schema::{ROOT_TYPE, Registry};
use rusqlite::{Connection, OptionalExtension, params};

use crate::error::Result;
use crate::sql::{child_table, col, sql_type, type_table};

/// The store's own tables: schema sources, local metadata (never replicated), explicit and
/// query-backed list items, the change log, and the replicated shares (`ap_shares`: the shares
/// offered to us or held; `ap_ops`: every op kept, in wire form, rows in arrival order and an
/// index by (share, op id); `ap_op_seqs`: per-author seq
/// high-water marks), the notices a peer was already sent (`ap_told`, see `told.rs`), and the
/// web apps' grants (`ap_app_grants`, see `grants.rs`) and the paths the media catalog watches (`ap_watched`,
/// see `watched.rs`).
const SYSTEM_SQL: &str = "
CREATE TABLE IF NOT EXISTS ap_schemas(seq INTEGER PRIMARY KEY AUTOINCREMENT, file TEXT NOT NULL UNIQUE, source TEXT NOT NULL, registered INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS ap_meta(rid INTEGER NOT NULL, name TEXT NOT NULL, value, PRIMARY KEY(rid, name)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS ap_meta_name ON ap_meta(name, value);
CREATE TABLE IF NOT EXISTS ap_list_items(list INTEGER NOT NULL, item INTEGER NOT NULL, pos INTEGER NOT NULL, PRIMARY KEY(list, item)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS ap_list_items_pos ON ap_list_items(list, pos);
CREATE INDEX IF NOT EXISTS ap_list_items_item ON ap_list_items(item);
CREATE TABLE IF NOT EXISTS ap_changes(seq INTEGER PRIMARY KEY AUTOINCREMENT, time INTEGER NOT NULL, author TEXT NOT NULL, op TEXT NOT NULL, id TEXT NOT NULL, type TEXT NOT NULL, data TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS ap_shares(share BLOB PRIMARY KEY, root TEXT NOT NULL, peer TEXT NOT NULL, state TEXT NOT NULL, title TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS ap_ops(seq INTEGER PRIMARY KEY, share BLOB NOT NULL, id BLOB NOT NULL, wire BLOB NOT NULL);
CREATE UNIQUE INDEX IF NOT EXISTS ap_ops_share_id ON ap_ops(share, id);
CREATE TABLE IF NOT EXISTS ap_op_seqs(share BLOB NOT NULL, peer TEXT NOT NULL, seq INTEGER NOT NULL, PRIMARY KEY(share, peer)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS ap_told(kind TEXT NOT NULL, peer TEXT NOT NULL, subject TEXT NOT NULL, at INTEGER NOT NULL, PRIMARY KEY(kind, peer, subject)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS ap_told_at ON ap_told(at);
CREATE TABLE IF NOT EXISTS ap_app_grants(origin TEXT PRIMARY KEY, scopes TEXT NOT NULL, granted_at INTEGER NOT NULL, last_used INTEGER) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS ap_watched(path TEXT PRIMARY KEY, recursive INTEGER NOT NULL, added_at INTEGER NOT NULL) WITHOUT ROWID;
";

/// Creates the system tables, replays the registered schema files over the built-in types and
/// makes sure every type has its tables. Returns the registry.
pub(crate) fn open(conn: &mut Connection) -> Result<Registry> {
    migrate_ops(conn)?;
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
    let tx = conn.transaction()?;
    ensure_tables(&tx, &reg)?;
    tx.commit()?;
    Ok(reg)
}

/// Moves the ops of a store made before 2026-12-05 into today's `ap_ops`, in one transaction.
///
/// `ap_ops` was a `WITHOUT ROWID` table keyed by (share, op id): its ~300-600-byte rows sat in
/// the key's b-tree, a few to a page, and every op (ids are hashes) landed on a random page,
/// splitting it. SQLite advises rowid tables for rows above ~200 bytes: the rows now append to a
/// rowid table and only the 64-byte keys go into an index.
fn migrate_ops(conn: &mut Connection) -> Result<()> {
    let sql: Option<String> = conn
        .query_row(
            "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'ap_ops'",
            [],
            |r| r.get(0),
        )
        .optional()?;
    if !sql.is_some_and(|s| s.to_ascii_uppercase().contains("WITHOUT ROWID")) {
        return Ok(());
    }
    let tx = conn.transaction()?;
    tx.execute_batch(
        "ALTER TABLE ap_ops RENAME TO ap_ops_without_rowid;
         CREATE TABLE ap_ops(seq INTEGER PRIMARY KEY, share BLOB NOT NULL, id BLOB NOT NULL, wire BLOB NOT NULL);
         CREATE UNIQUE INDEX ap_ops_share_id ON ap_ops(share, id);
         INSERT INTO ap_ops(share, id, wire) SELECT share, id, wire FROM ap_ops_without_rowid;
         DROP TABLE ap_ops_without_rowid;",
    )?;
    tx.commit()?;
    allpeers_log::flesh!("ap_ops moved to a rowid table");
    Ok(())
}

/// Registers (or evolves) schema file `file` over `reg`: all or nothing. Returns the new
/// registry and the names of the types the file declares.
pub(crate) fn register(
    conn: &mut Connection,
    reg: &Registry,
    file: &str,
    text: &str,
    now: i64,
) -> Result<(Registry, Vec<String>)> {
    let mut next = reg.clone();
    let names = next.register(file, text)?;
    let tx = conn.transaction()?;
    store_registered(&tx, &next, file, text, now)?;
    tx.commit()?;
    Ok((next, names))
}

/// Inside the caller's transaction: the tables `next` (a registry with `file` registered)
/// needs, and the file's source kept for the next open.
pub(crate) fn store_registered(
    tx: &Connection,
    next: &Registry,
    file: &str,
    text: &str,
    now: i64,
) -> Result<()> {
    ensure_tables(tx, next)?;
    tx.execute(
        "INSERT INTO ap_schemas(file, source, registered) VALUES (?1, ?2, ?3)
         ON CONFLICT(file) DO UPDATE SET source = excluded.source, registered = excluded.registered",
        params![file, text, now],
    )?;
    Ok(())
}

/// Creates missing tables, columns and indexes for every type in `reg`. Never drops anything.
fn ensure_tables(tx: &Connection, reg: &Registry) -> Result<()> {
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
                allpeers_log::flesh!(table, column = %c, "column added");
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
