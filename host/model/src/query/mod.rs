//! Resource queries: a builder and its JSON form (pure data; the store compiles checked
//! queries to parameterised SQL).
//!
//! ```json
//! {"type": "File",
//!  "where": [{"prop": {"name": "size", "op": ">", "value": 1000}},
//!            {"any": [{"prop": {"name": "mimeType", "op": "prefix", "value": "image/"}},
//!                     {"meta": {"name": "rating", "op": ">=", "value": 4}}]}],
//!  "sort": [{"prop": "modified", "desc": true}], "limit": 50, "offset": 0}
//! ```
//! `where` is a conjunction. Conditions: `prop`, `meta` (local metadata), `any` (OR), `all`,
//! `not`, `isA` (type, with subtypes), `ids`, `listsContaining` (lists holding an item that
//! matches a query), `itemsOf` (items of lists that match a query). Queries are polymorphic:
//! `"type": "File"` also returns Images, Audio, ….

use serde::{Deserialize, Serialize};

use crate::resource::{MAX_STRING_BYTES, Value};
use crate::schema::{DataType, ROOT_TYPE, Registry};

/// Upper bound on nesting of `any`/`all`/`not`/list sub-queries.
pub const MAX_QUERY_DEPTH: usize = 8;
/// Upper bound on the number of conditions in a query, sub-queries included.
pub const MAX_QUERY_CONDITIONS: usize = 256;
/// Upper bound on `limit`.
pub const MAX_LIMIT: u64 = 100_000;
/// Upper bound on ids in one `ids` condition.
pub const MAX_IDS: usize = 1000;

fn default_type() -> String {
    ROOT_TYPE.to_string()
}

/// A query over resources of one type and its subtypes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(deny_unknown_fields)]
pub struct Query {
    #[serde(rename = "type", default = "default_type")]
    pub type_name: String,
    /// All must hold.
    #[serde(rename = "where", default, skip_serializing_if = "Vec::is_empty")]
    pub filter: Vec<Expr>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sort: Vec<SortKey>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "ts", ts(optional))]
    pub limit: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "ts", ts(optional))]
    pub offset: Option<u64>,
}

/// A condition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub enum Expr {
    Prop(Cond),
    Meta(Cond),
    Any(Vec<Expr>),
    All(Vec<Expr>),
    Not(Box<Expr>),
    IsA(String),
    Ids(Vec<String>),
    /// The resource is a list with at least one item matching the sub-query.
    ListsContaining(Box<Query>),
    /// The resource is an item of at least one list matching the sub-query.
    ItemsOf(Box<Query>),
}

/// A comparison of a property (or metadata entry) with a value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(deny_unknown_fields)]
pub struct Cond {
    pub name: String,
    pub op: Op,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "ts", ts(optional))]
    pub value: Option<Value>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub enum Op {
    #[serde(rename = "=", alias = "eq")]
    Eq,
    #[serde(rename = "!=", alias = "ne")]
    Ne,
    #[serde(rename = "<", alias = "lt")]
    Lt,
    #[serde(rename = "<=", alias = "le")]
    Le,
    #[serde(rename = ">", alias = "gt")]
    Gt,
    #[serde(rename = ">=", alias = "ge")]
    Ge,
    #[serde(rename = "prefix")]
    Prefix,
    #[serde(rename = "contains")]
    Contains,
    #[serde(rename = "isNull")]
    IsNull,
    #[serde(rename = "notNull")]
    NotNull,
}

impl Op {
    pub fn takes_value(self) -> bool {
        !matches!(self, Op::IsNull | Op::NotNull)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(deny_unknown_fields)]
pub struct SortKey {
    pub prop: String,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub desc: bool,
}

impl Query {
    /// All resources of `type_name` (and its subtypes).
    pub fn of(type_name: &str) -> Self {
        Query {
            type_name: type_name.to_string(),
            filter: Vec::new(),
            sort: Vec::new(),
            limit: None,
            offset: None,
        }
    }
    /// Adds a condition (AND).
    pub fn and(mut self, e: Expr) -> Self {
        self.filter.push(e);
        self
    }
    /// Adds `prop op value` (AND).
    pub fn where_prop(self, name: &str, op: Op, v: impl Into<Value>) -> Self {
        self.and(Expr::prop(name, op, v))
    }
    /// Adds a disjunction of conditions (AND).
    pub fn or(self, any: Vec<Expr>) -> Self {
        self.and(Expr::Any(any))
    }
    pub fn sort_by(mut self, prop: &str, desc: bool) -> Self {
        self.sort.push(SortKey {
            prop: prop.to_string(),
            desc,
        });
        self
    }
    pub fn limit(mut self, n: u64) -> Self {
        self.limit = Some(n);
        self
    }
    pub fn offset(mut self, n: u64) -> Self {
        self.offset = Some(n);
        self
    }
    /// Parses the JSON form, bounded (depth and size are checked by [`Registry::check_query`]).
    pub fn from_json(s: &str) -> Result<Query, QueryError> {
        if s.len() > 4 * MAX_STRING_BYTES {
            return Err(QueryError::new("", "query JSON too large"));
        }
        serde_json::from_str(s).map_err(|e| QueryError::new("", format!("malformed query: {e}")))
    }
}

impl Expr {
    pub fn prop(name: &str, op: Op, v: impl Into<Value>) -> Self {
        let value = if op.takes_value() {
            Some(v.into())
        } else {
            None
        };
        Expr::Prop(Cond {
            name: name.to_string(),
            op,
            value,
        })
    }
    pub fn is_null(name: &str) -> Self {
        Expr::Prop(Cond {
            name: name.to_string(),
            op: Op::IsNull,
            value: None,
        })
    }
    pub fn meta(name: &str, op: Op, v: impl Into<Value>) -> Self {
        let value = if op.takes_value() {
            Some(v.into())
        } else {
            None
        };
        Expr::Meta(Cond {
            name: name.to_string(),
            op,
            value,
        })
    }
}

/// A query was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[error("{}{reason}", if path.is_empty() { String::new() } else { format!("{path}: ") })]
pub struct QueryError {
    /// Where in the query, e.g. `where[1].any[0].prop`.
    pub path: String,
    pub reason: String,
}

impl QueryError {
    fn new(path: &str, reason: impl Into<String>) -> Self {
        QueryError {
            path: path.to_string(),
            reason: reason.into(),
        }
    }
}

/// A query resolved against a registry: every name known, every value of the right datatype.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckedQuery {
    pub type_name: String,
    /// Types from the root down to `type_name`.
    pub chain: Vec<String>,
    pub filter: Vec<CheckedExpr>,
    pub sort: Vec<CheckedSort>,
    pub limit: Option<u64>,
    pub offset: Option<u64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CheckedSort {
    pub owner: String,
    pub prop: String,
    pub desc: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub enum CheckedExpr {
    Prop {
        /// The type along the chain that declares the property (whose table holds it).
        owner: String,
        prop: String,
        datatype: DataType,
        multi: bool,
        op: Op,
        value: Option<Value>,
    },
    Meta {
        name: String,
        datatype: DataType,
        op: Op,
        value: Option<Value>,
    },
    Any(Vec<CheckedExpr>),
    All(Vec<CheckedExpr>),
    Not(Box<CheckedExpr>),
    IsA(String),
    Ids(Vec<String>),
    ListsContaining(Box<CheckedQuery>),
    ItemsOf(Box<CheckedQuery>),
}

struct QCheck<'a> {
    reg: &'a Registry,
    conditions: usize,
}

impl QCheck<'_> {
    fn query(&mut self, q: &Query, path: &str, depth: usize) -> Result<CheckedQuery, QueryError> {
        if depth > MAX_QUERY_DEPTH {
            return Err(QueryError::new(path, "query nested too deeply"));
        }
        let Some(t) = self.reg.get(&q.type_name) else {
            return Err(QueryError::new(
                &format!("{path}type"),
                format!(
                    "unknown type '{}'",
                    q.type_name.chars().take(80).collect::<String>()
                ),
            ));
        };
        if t.anonymous {
            return Err(QueryError::new(
                &format!("{path}type"),
                "anonymous types cannot be queried",
            ));
        }
        let chain: Vec<String> = self
            .reg
            .chain(&q.type_name)
            .iter()
            .map(|t| t.name.clone())
            .collect();
        let mut filter = Vec::with_capacity(q.filter.len());
        for (i, e) in q.filter.iter().enumerate() {
            filter.push(self.expr(&q.type_name, e, &format!("{path}where[{i}]"), depth + 1)?);
        }
        let mut sort = Vec::new();
        for (i, s) in q.sort.iter().enumerate() {
            let p = format!("{path}sort[{i}]");
            let Some((owner, def)) = self.reg.prop(&q.type_name, &s.prop) else {
                return Err(QueryError::new(
                    &p,
                    format!("unknown property for type {}", q.type_name),
                ));
            };
            if def.multi {
                return Err(QueryError::new(&p, "cannot sort by a list property"));
            }
            sort.push(CheckedSort {
                owner: owner.name.clone(),
                prop: def.name.clone(),
                desc: s.desc,
            });
        }
        if q.limit.is_some_and(|l| l > MAX_LIMIT) {
            return Err(QueryError::new(
                &format!("{path}limit"),
                format!("limit above {MAX_LIMIT}"),
            ));
        }
        if q.offset.is_some_and(|o| o > i64::MAX as u64) {
            return Err(QueryError::new(
                &format!("{path}offset"),
                "offset too large",
            ));
        }
        Ok(CheckedQuery {
            type_name: q.type_name.clone(),
            chain,
            filter,
            sort,
            limit: q.limit,
            offset: q.offset,
        })
    }

    fn value(
        &self,
        path: &str,
        op: Op,
        v: &Option<Value>,
        dt: DataType,
    ) -> Result<Option<Value>, QueryError> {
        if !op.takes_value() {
            return match v {
                None | Some(Value::Null) => Ok(None),
                Some(_) => Err(QueryError::new(path, "isNull/notNull take no value")),
            };
        }
        let Some(v) = v.clone().filter(|v| !v.is_null()) else {
            return Err(QueryError::new(
                path,
                "this operator needs a value (use isNull to test for absence)",
            ));
        };
        if matches!(op, Op::Prefix | Op::Contains) && dt != DataType::String {
            return Err(QueryError::new(
                path,
                "prefix and contains apply to string properties only",
            ));
        }
        if matches!(op, Op::Lt | Op::Le | Op::Gt | Op::Ge)
            && matches!(dt, DataType::Binary | DataType::Boolean)
        {
            return Err(QueryError::new(
                path,
                format!("cannot order {} values", dt.name()),
            ));
        }
        if let Value::String(s) = &v
            && s.len() > MAX_STRING_BYTES
        {
            return Err(QueryError::new(
                path,
                format!("value longer than {MAX_STRING_BYTES} bytes"),
            ));
        }
        v.coerce(dt).map(Some).map_err(|e| QueryError::new(path, e))
    }

    fn expr(
        &mut self,
        type_name: &str,
        e: &Expr,
        path: &str,
        depth: usize,
    ) -> Result<CheckedExpr, QueryError> {
        self.conditions += 1;
        if self.conditions > MAX_QUERY_CONDITIONS {
            return Err(QueryError::new(
                path,
                format!("more than {MAX_QUERY_CONDITIONS} conditions"),
            ));
        }
        if depth > MAX_QUERY_DEPTH {
            return Err(QueryError::new(path, "query nested too deeply"));
        }
        Ok(match e {
            Expr::Prop(c) => {
                let p = format!("{path}.prop");
                let Some((owner, def)) = self.reg.prop(type_name, &c.name) else {
                    return Err(QueryError::new(
                        &p,
                        format!(
                            "unknown property '{}' for type {type_name}",
                            c.name.chars().take(80).collect::<String>()
                        ),
                    ));
                };
                CheckedExpr::Prop {
                    owner: owner.name.clone(),
                    prop: def.name.clone(),
                    datatype: def.datatype,
                    multi: def.multi,
                    op: c.op,
                    value: self.value(&p, c.op, &c.value, def.datatype)?,
                }
            }
            Expr::Meta(c) => {
                let p = format!("{path}.meta");
                let Some(def) = self.reg.meta_prop(type_name, &c.name) else {
                    return Err(QueryError::new(
                        &p,
                        format!(
                            "unknown metadata '{}' for type {type_name}",
                            c.name.chars().take(80).collect::<String>()
                        ),
                    ));
                };
                CheckedExpr::Meta {
                    name: def.name.clone(),
                    datatype: def.datatype,
                    op: c.op,
                    value: self.value(&p, c.op, &c.value, def.datatype)?,
                }
            }
            Expr::Any(v) | Expr::All(v) => {
                let key = if matches!(e, Expr::Any(_)) {
                    "any"
                } else {
                    "all"
                };
                let mut out = Vec::with_capacity(v.len());
                for (i, x) in v.iter().enumerate() {
                    out.push(self.expr(type_name, x, &format!("{path}.{key}[{i}]"), depth + 1)?);
                }
                if matches!(e, Expr::Any(_)) {
                    CheckedExpr::Any(out)
                } else {
                    CheckedExpr::All(out)
                }
            }
            Expr::Not(x) => CheckedExpr::Not(Box::new(self.expr(
                type_name,
                x,
                &format!("{path}.not"),
                depth + 1,
            )?)),
            Expr::IsA(t) => match self.reg.get(t) {
                Some(td) if !td.anonymous => CheckedExpr::IsA(td.name.clone()),
                _ => {
                    return Err(QueryError::new(
                        &format!("{path}.isA"),
                        format!("unknown type '{}'", t.chars().take(80).collect::<String>()),
                    ));
                }
            },
            Expr::Ids(ids) => {
                if ids.len() > MAX_IDS {
                    return Err(QueryError::new(
                        &format!("{path}.ids"),
                        format!("more than {MAX_IDS} ids"),
                    ));
                }
                CheckedExpr::Ids(
                    ids.iter()
                        .filter(|i| i.len() <= crate::resource::MAX_ID_LEN)
                        .cloned()
                        .collect(),
                )
            }
            Expr::ListsContaining(q) => CheckedExpr::ListsContaining(Box::new(self.query(
                q,
                &format!("{path}.listsContaining."),
                depth + 1,
            )?)),
            Expr::ItemsOf(q) => CheckedExpr::ItemsOf(Box::new(self.query(
                q,
                &format!("{path}.itemsOf."),
                depth + 1,
            )?)),
        })
    }
}

impl Registry {
    /// Resolves and checks a query: types, properties, operators and values.
    pub fn check_query(&self, q: &Query) -> Result<CheckedQuery, QueryError> {
        QCheck {
            reg: self,
            conditions: 0,
        }
        .query(q, "", 0)
    }
}

impl CheckedQuery {
    /// Every type a change to which may alter this query's result: the query's type (with
    /// subtypes) and the types of list sub-queries. Used to skip unrelated listeners.
    pub fn types_involved(&self) -> Vec<String> {
        let mut out = vec![self.type_name.clone()];
        fn walk(e: &CheckedExpr, out: &mut Vec<String>) {
            match e {
                CheckedExpr::Any(v) | CheckedExpr::All(v) => v.iter().for_each(|x| walk(x, out)),
                CheckedExpr::Not(x) => walk(x, out),
                CheckedExpr::ListsContaining(q) | CheckedExpr::ItemsOf(q) => {
                    out.extend(q.types_involved())
                }
                _ => {}
            }
        }
        for e in &self.filter {
            walk(e, &mut out);
        }
        out
    }

    /// Whether the query has list conditions (membership can change without the resource changing).
    pub fn has_list_conditions(&self) -> bool {
        fn walk(e: &CheckedExpr) -> bool {
            match e {
                CheckedExpr::Any(v) | CheckedExpr::All(v) => v.iter().any(walk),
                CheckedExpr::Not(x) => walk(x),
                CheckedExpr::ListsContaining(_) | CheckedExpr::ItemsOf(_) => true,
                _ => false,
            }
        }
        self.filter.iter().any(walk)
    }
}

#[cfg(test)]
mod tests;
