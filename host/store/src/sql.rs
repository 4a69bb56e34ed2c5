//! SQL text from validated names only, values always bound as parameters.
//!
//! Table and column names are built from type and property names that the schema registry has
//! already checked against [`allpeers_model::schema::is_valid_name`] (ASCII letters, digits, `_`),
//! and are quoted on top. Every value — property values, query operands, ids — is a bound
//! parameter; nothing the user supplies is ever spliced into SQL text.

use allpeers_model::query::{CheckedExpr, CheckedQuery, Op};
use allpeers_model::resource::Value;
use allpeers_model::schema::{DataType, PropDef, ROOT_TYPE, is_valid_name};
use base64::Engine as _;
use rusqlite::types::{Value as SqlValue, ValueRef};

use crate::error::StoreError;

/// `"t_File"`: the table of a non-anonymous type.
pub(crate) fn type_table(name: &str) -> String {
    debug_assert!(is_valid_name(name));
    format!("\"t_{name}\"")
}

/// `"c_Receipt"`: the table of an anonymous (child) type.
pub(crate) fn child_table(name: &str) -> String {
    debug_assert!(is_valid_name(name));
    format!("\"c_{name}\"")
}

/// `"p_size"`: the column of a property.
pub(crate) fn col(name: &str) -> String {
    debug_assert!(is_valid_name(name));
    format!("\"p_{name}\"")
}

pub(crate) fn sql_type(p: &PropDef) -> &'static str {
    if p.multi {
        return "TEXT";
    }
    match p.datatype {
        DataType::Boolean | DataType::Integer | DataType::Date => "INTEGER",
        DataType::Decimal => "REAL",
        DataType::Binary => "BLOB",
        DataType::String => "TEXT",
    }
}

fn json_elem(v: &Value) -> serde_json::Value {
    match v {
        Value::Bool(b) => serde_json::Value::from(*b),
        Value::Integer(i) | Value::Date(i) => serde_json::Value::from(*i),
        Value::Decimal(f) => serde_json::Value::from(*f),
        Value::Binary(b) => {
            serde_json::Value::from(base64::engine::general_purpose::STANDARD.encode(b))
        }
        Value::String(s) => serde_json::Value::from(s.as_str()),
        Value::Null | Value::List(_) => serde_json::Value::Null,
    }
}

/// A scalar as SQL (booleans and dates as integers).
pub(crate) fn scalar_to_sql(v: &Value) -> SqlValue {
    match v {
        Value::Null | Value::List(_) => SqlValue::Null,
        Value::Bool(b) => SqlValue::Integer(i64::from(*b)),
        Value::Integer(i) | Value::Date(i) => SqlValue::Integer(*i),
        Value::Decimal(f) => SqlValue::Real(*f),
        Value::Binary(b) => SqlValue::Blob(b.clone()),
        Value::String(s) => SqlValue::Text(s.clone()),
    }
}

/// A property value as a borrowed SQL parameter (no copy of strings and bytes).
pub(crate) fn to_sql_ref<'a>(
    v: Option<&'a Value>,
    def: &PropDef,
) -> rusqlite::types::ToSqlOutput<'a> {
    use rusqlite::types::ToSqlOutput;
    match v {
        Some(Value::String(s)) => ToSqlOutput::Borrowed(ValueRef::Text(s.as_bytes())),
        Some(Value::Binary(b)) => ToSqlOutput::Borrowed(ValueRef::Blob(b)),
        other => ToSqlOutput::Owned(to_sql(other, def)),
    }
}

/// An element of a list property as SQLite's `json_each` yields it.
fn elem_to_sql(v: &Value) -> SqlValue {
    match v {
        Value::Binary(b) => SqlValue::Text(base64::engine::general_purpose::STANDARD.encode(b)),
        v => scalar_to_sql(v),
    }
}

/// A property value as stored in its column (lists as a JSON array).
pub(crate) fn to_sql(v: Option<&Value>, def: &PropDef) -> SqlValue {
    match v {
        None | Some(Value::Null) => SqlValue::Null,
        Some(Value::List(items)) if def.multi => SqlValue::Text(
            serde_json::Value::Array(items.iter().map(json_elem).collect()).to_string(),
        ),
        Some(v) => scalar_to_sql(v),
    }
}

fn elem_from_json(j: &serde_json::Value, dt: DataType) -> Option<Value> {
    Some(match dt {
        DataType::Boolean => Value::Bool(j.as_bool().or_else(|| j.as_i64().map(|i| i != 0))?),
        DataType::Integer => Value::Integer(j.as_i64()?),
        DataType::Date => Value::Date(j.as_i64()?),
        DataType::Decimal => Value::Decimal(j.as_f64()?),
        DataType::String => Value::String(j.as_str()?.to_string()),
        DataType::Binary => Value::Binary(
            base64::engine::general_purpose::STANDARD
                .decode(j.as_str()?)
                .ok()?,
        ),
    })
}

/// A stored column back to a value; `None` for SQL NULL.
pub(crate) fn from_sql(
    v: ValueRef<'_>,
    dt: DataType,
    multi: bool,
) -> Result<Option<Value>, StoreError> {
    let bad = || {
        StoreError::Corrupt(format!(
            "a stored {} value has the wrong SQL type",
            dt.name()
        ))
    };
    if matches!(v, ValueRef::Null) {
        return Ok(None);
    }
    if multi {
        let ValueRef::Text(t) = v else {
            return Err(bad());
        };
        let j: serde_json::Value = serde_json::from_slice(t).map_err(|_| bad())?;
        let arr = j.as_array().ok_or_else(bad)?;
        let items = arr
            .iter()
            .map(|e| elem_from_json(e, dt))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(bad)?;
        return Ok(Some(Value::List(items)));
    }
    Ok(Some(match (dt, v) {
        (DataType::Boolean, ValueRef::Integer(i)) => Value::Bool(i != 0),
        (DataType::Integer, ValueRef::Integer(i)) => Value::Integer(i),
        (DataType::Date, ValueRef::Integer(i)) => Value::Date(i),
        (DataType::Decimal, ValueRef::Real(f)) => Value::Decimal(f),
        (DataType::Decimal, ValueRef::Integer(i)) => Value::Decimal(i as f64),
        (DataType::Binary, ValueRef::Blob(b)) => Value::Binary(b.to_vec()),
        (DataType::String, ValueRef::Text(t)) => {
            Value::String(std::str::from_utf8(t).map_err(|_| bad())?.to_string())
        }
        _ => return Err(bad()),
    }))
}

/// Rows a multi-row INSERT of [`insert_rows`] carries: a statement's fixed cost (reset, VM
/// start, the b-tree cursors' descent) is paid once for this many rows. 128 rows of the widest
/// caller (6 columns) stay under SQLite's 999-parameter floor.
pub(crate) const ROWS_PER_INSERT: usize = 128;

/// Inserts rows of `width` values each (`values`, row after row) with `head`, an
/// `INSERT … INTO t(c1, …)` without its `VALUES`: [`ROWS_PER_INSERT`] rows a statement, the
/// rest one a statement (both statements kept in the connection's cache, where a statement of
/// every remainder's size would evict others). Returns the row id of each row, for a rowid
/// table whose rows all went in (no `OR IGNORE` skipped one): SQLite gives the rows of one
/// statement consecutive row ids, in order.
pub(crate) fn insert_rows<P: rusqlite::ToSql>(
    conn: &rusqlite::Connection,
    head: &str,
    width: usize,
    values: &[P],
) -> Result<Vec<i64>, StoreError> {
    debug_assert!(width > 0 && values.len().is_multiple_of(width));
    let row = format!("({})", vec!["?"; width].join(", "));
    let full = format!(
        "{head} VALUES {}",
        vec![row.as_str(); ROWS_PER_INSERT].join(", ")
    );
    let one = format!("{head} VALUES {row}");
    let mut rids = Vec::with_capacity(values.len() / width);
    for chunk in values.chunks(ROWS_PER_INSERT * width) {
        let (sql, rows) = if chunk.len() == ROWS_PER_INSERT * width {
            (&full, vec![chunk])
        } else {
            (&one, chunk.chunks(width).collect())
        };
        let mut st = conn.prepare_cached(sql)?;
        for rows in rows {
            st.execute(rusqlite::params_from_iter(rows))?;
            let last = conn.last_insert_rowid();
            let n = (rows.len() / width) as i64;
            rids.extend((0..n).map(|i| last - (n - 1) + i));
        }
    }
    Ok(rids)
}

/// A query compiled to SQL text plus its parameters.
pub(crate) struct Compiled {
    pub sql: String,
    pub params: Vec<SqlValue>,
}

/// An extra condition on the root alias, added by the caller.
pub(crate) type Extra<'a> = &'a dyn Fn(&str, &mut Compiler) -> String;

pub(crate) struct Compiler {
    params: Vec<SqlValue>,
    next_alias: usize,
}

impl Compiler {
    pub fn new() -> Self {
        Compiler {
            params: Vec::new(),
            next_alias: 0,
        }
    }

    pub fn bind(&mut self, v: SqlValue) -> String {
        self.params.push(v);
        format!("?{}", self.params.len())
    }

    fn alias(&mut self) -> String {
        self.next_alias += 1;
        format!("a{}", self.next_alias)
    }

    /// `SELECT <root>.rid FROM … WHERE …` (optionally ORDER/LIMIT) for `q`; `extra` is an
    /// additional condition on the root alias (e.g. `rid = ?`), given the alias.
    pub fn select(
        &mut self,
        q: &CheckedQuery,
        with_order: bool,
        extra: Option<Extra<'_>>,
    ) -> String {
        let root = self.alias();
        let mut aliases: Vec<(String, String)> = vec![(ROOT_TYPE.to_string(), root.clone())];
        let mut from = format!("{} {root}", type_table(ROOT_TYPE));
        for t in q.chain.iter().skip(1) {
            let a = self.alias();
            from.push_str(&format!(
                " JOIN {} {a} ON {a}.rid = {root}.rid",
                type_table(t)
            ));
            aliases.push((t.clone(), a));
        }
        let mut conds: Vec<String> = q
            .filter
            .iter()
            .map(|e| self.expr(e, &root, &aliases))
            .collect();
        if let Some(f) = extra {
            conds.push(f(&root, self));
        }
        let mut sql = format!("SELECT {root}.rid FROM {from}");
        if !conds.is_empty() {
            sql.push_str(" WHERE ");
            sql.push_str(&conds.join(" AND "));
        }
        if with_order {
            let mut keys: Vec<String> = q
                .sort
                .iter()
                .map(|s| {
                    let a = alias_of(&aliases, &s.owner);
                    format!(
                        "{a}.{} {}",
                        col(&s.prop),
                        if s.desc { "DESC" } else { "ASC" }
                    )
                })
                .collect();
            if !keys.is_empty() {
                keys.push(format!("{root}.rid"));
                sql.push_str(" ORDER BY ");
                sql.push_str(&keys.join(", "));
            }
            if q.limit.is_some() || q.offset.is_some() {
                let lim = q.limit.map_or(-1, |l| l as i64);
                let l = self.bind(SqlValue::Integer(lim));
                let o = self.bind(SqlValue::Integer(q.offset.unwrap_or(0) as i64));
                sql.push_str(&format!(" LIMIT {l} OFFSET {o}"));
            }
        }
        sql
    }

    pub fn finish(self, sql: String) -> Compiled {
        Compiled {
            sql,
            params: self.params,
        }
    }

    fn cmp(&mut self, lhs: &str, op: Op, v: &Value, elem: bool) -> String {
        let p = self.bind(if elem {
            elem_to_sql(v)
        } else {
            scalar_to_sql(v)
        });
        match op {
            Op::Eq => format!("{lhs} = {p}"),
            Op::Ne => format!("{lhs} IS NOT {p}"),
            Op::Lt => format!("{lhs} < {p}"),
            Op::Le => format!("{lhs} <= {p}"),
            Op::Gt => format!("{lhs} > {p}"),
            Op::Ge => format!("{lhs} >= {p}"),
            Op::Prefix => format!("({lhs} >= {p} AND instr({lhs}, {p}) = 1)"),
            Op::Contains => format!("instr({lhs}, {p}) > 0"),
            Op::IsNull => format!("{lhs} IS NULL"),
            Op::NotNull => format!("{lhs} IS NOT NULL"),
        }
    }

    fn expr(&mut self, e: &CheckedExpr, root: &str, aliases: &[(String, String)]) -> String {
        match e {
            CheckedExpr::Prop {
                owner,
                prop,
                multi,
                op,
                value,
                ..
            } => {
                let c = format!("{}.{}", alias_of(aliases, owner), col(prop));
                match (multi, op, value) {
                    (false, _, Some(v)) => self.cmp(&c, *op, v, false),
                    (false, Op::NotNull, None) => format!("{c} IS NOT NULL"),
                    (false, _, None) => format!("{c} IS NULL"),
                    (true, Op::IsNull, _) => format!("({c} IS NULL OR json_array_length({c}) = 0)"),
                    (true, Op::NotNull, _) => {
                        format!("({c} IS NOT NULL AND json_array_length({c}) > 0)")
                    }
                    (true, Op::Ne, Some(v)) => {
                        let inner = self.cmp("j.value", Op::Eq, v, true);
                        format!("NOT EXISTS (SELECT 1 FROM json_each({c}) j WHERE {inner})")
                    }
                    (true, _, Some(v)) => {
                        let inner = self.cmp("j.value", *op, v, true);
                        format!("EXISTS (SELECT 1 FROM json_each({c}) j WHERE {inner})")
                    }
                    (true, _, None) => "0".into(),
                }
            }
            CheckedExpr::Meta {
                name, op, value, ..
            } => {
                let n = self.bind(SqlValue::Text(name.clone()));
                let base =
                    format!("SELECT 1 FROM ap_meta m WHERE m.rid = {root}.rid AND m.name = {n}");
                match (op, value) {
                    (Op::IsNull, _) => format!("NOT EXISTS ({base})"),
                    (Op::NotNull, _) => format!("EXISTS ({base})"),
                    (Op::Ne, Some(v)) => {
                        let c = self.cmp("m.value", Op::Eq, v, false);
                        format!("NOT EXISTS ({base} AND {c})")
                    }
                    (_, Some(v)) => {
                        let c = self.cmp("m.value", *op, v, false);
                        format!("EXISTS ({base} AND {c})")
                    }
                    (_, None) => "0".into(),
                }
            }
            CheckedExpr::Any(v) => {
                if v.is_empty() {
                    return "0".into();
                }
                let parts: Vec<String> = v.iter().map(|x| self.expr(x, root, aliases)).collect();
                format!("({})", parts.join(" OR "))
            }
            CheckedExpr::All(v) => {
                if v.is_empty() {
                    return "1".into();
                }
                let parts: Vec<String> = v.iter().map(|x| self.expr(x, root, aliases)).collect();
                format!("({})", parts.join(" AND "))
            }
            CheckedExpr::Not(x) => format!("NOT coalesce(({}), 0)", self.expr(x, root, aliases)),
            CheckedExpr::IsA(t) => {
                if t == ROOT_TYPE {
                    "1".into()
                } else {
                    format!(
                        "EXISTS (SELECT 1 FROM {} x WHERE x.rid = {root}.rid)",
                        type_table(t)
                    )
                }
            }
            CheckedExpr::Ids(ids) => {
                if ids.is_empty() {
                    return "0".into();
                }
                let ps: Vec<String> = ids
                    .iter()
                    .map(|i| self.bind(SqlValue::Text(i.clone())))
                    .collect();
                format!("{root}.id IN ({})", ps.join(", "))
            }
            CheckedExpr::ListsContaining(sub) => {
                let s = self.select(sub, true, None);
                format!(
                    "{root}.rid IN (SELECT li.list FROM ap_list_items li WHERE li.item IN ({s}))"
                )
            }
            CheckedExpr::ItemsOf(sub) => {
                let s = self.select(sub, true, None);
                format!(
                    "{root}.rid IN (SELECT li.item FROM ap_list_items li WHERE li.list IN ({s}))"
                )
            }
        }
    }
}

fn alias_of<'a>(aliases: &'a [(String, String)], owner: &str) -> &'a str {
    aliases
        .iter()
        .find(|(t, _)| t == owner)
        .map(|(_, a)| a.as_str())
        .unwrap_or("a1")
}

/// The rids matching `q`, in order, honouring limit/offset.
pub(crate) fn compile_select(q: &CheckedQuery) -> Compiled {
    let mut c = Compiler::new();
    let sql = c.select(q, true, None);
    c.finish(sql)
}

/// `SELECT count(*)` over `q` (limit/offset apply).
pub(crate) fn compile_count(q: &CheckedQuery) -> Compiled {
    let mut c = Compiler::new();
    let inner = c.select(q, true, None);
    c.finish(format!("SELECT count(*) FROM ({inner})"))
}

/// `SELECT EXISTS(…)`: whether resource `rid` matches `q`'s conditions (sort/limit ignored).
pub(crate) fn compile_matches(q: &CheckedQuery, rid: i64) -> Compiled {
    let mut c = Compiler::new();
    let f = move |root: &str, c: &mut Compiler| {
        let p = c.bind(SqlValue::Integer(rid));
        format!("{root}.rid = {p}")
    };
    let inner = c.select(q, false, Some(&f));
    c.finish(format!("SELECT EXISTS ({inner})"))
}
