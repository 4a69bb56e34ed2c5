//! Resource values and their validation against the type registry.
//!
//! JSON form (the local API's):
//! ```json
//! {"id": "r1", "type": "Image",
//!  "properties": {"owner": "ap…", "created": "2026-11-25T03:00:00.000Z", "name": "a.png", "width": 640},
//!  "children": {"receipt": [{"properties": {"peer": "ap…"}}]},
//!  "meta": {"rating": 5}}
//! ```
//! Dates travel as RFC 3339 strings, binary as standard base64 strings; [`Registry::validate`]
//! turns them into typed values using the schema.

pub mod api;
pub mod date;
mod render;
mod xml;

use std::collections::BTreeMap;
use std::fmt;

use base64::Engine as _;
use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::ser::{SerializeSeq, Serializer};
use serde::{Deserialize, Serialize};

use crate::schema::{DataType, PropDef, Registry};

pub use date::{format_date, parse_date};
pub use render::{RenderChild, RenderField, RenderView};

/// Upper bound on a string value, in bytes.
pub const MAX_STRING_BYTES: usize = 1 << 20;
/// Upper bound on a binary value, in bytes.
pub const MAX_BINARY_BYTES: usize = 16 << 20;
/// Upper bound on the number of values of a list property, or of children in one slot.
pub const MAX_LIST_LEN: usize = 10_000;
/// Upper bound on the nesting of children.
pub const MAX_CHILD_DEPTH: usize = 8;
/// Upper bound on the length of a resource id.
pub const MAX_ID_LEN: usize = 128;
/// Validation stops collecting errors after this many.
const MAX_ERRORS: usize = 50;

/// A property value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Integer(i64),
    Decimal(f64),
    /// Milliseconds since the Unix epoch, UTC.
    Date(i64),
    Binary(Vec<u8>),
    String(String),
    List(Vec<Value>),
}

impl Value {
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Value::Integer(i) | Value::Date(i) => Some(*i),
            _ => None,
        }
    }
    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    /// Converts to `dt` where the JSON form is ambiguous (date and binary strings, integers
    /// for decimals). `Err` carries what was expected.
    pub fn coerce(self, dt: DataType) -> Result<Value, String> {
        let expected = || format!("expected {}", dt.name());
        match (dt, self) {
            (DataType::Boolean, v @ Value::Bool(_)) => Ok(v),
            (DataType::Integer, v @ Value::Integer(_)) => Ok(v),
            (DataType::Decimal, Value::Decimal(f)) if f.is_finite() => Ok(Value::Decimal(f)),
            (DataType::Decimal, Value::Decimal(_)) => Err("decimal must be finite".into()),
            (DataType::Decimal, Value::Integer(i)) => Ok(Value::Decimal(i as f64)),
            (DataType::Date, Value::Date(d)) | (DataType::Date, Value::Integer(d)) => {
                if (date::MIN_DATE_MS..=date::MAX_DATE_MS).contains(&d) {
                    Ok(Value::Date(d))
                } else {
                    Err("date out of range (years 1-9999)".into())
                }
            }
            (DataType::Date, Value::String(s)) => parse_date(&s)
                .map(Value::Date)
                .ok_or_else(|| "expected date (RFC 3339, e.g. 2026-11-25T03:00:00.000Z)".into()),
            (DataType::Binary, v @ Value::Binary(_)) => Ok(v),
            (DataType::Binary, Value::String(s)) => {
                if s.len() > MAX_BINARY_BYTES / 3 * 4 + 4 {
                    return Err(format!("binary longer than {MAX_BINARY_BYTES} bytes"));
                }
                base64::engine::general_purpose::STANDARD
                    .decode(s.as_bytes())
                    .map(Value::Binary)
                    .map_err(|_| "expected binary (standard base64)".into())
            }
            (DataType::String, v @ Value::String(_)) => Ok(v),
            _ => Err(expected()),
        }
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Self {
        Value::String(s.to_string())
    }
}
impl From<String> for Value {
    fn from(s: String) -> Self {
        Value::String(s)
    }
}
impl From<i64> for Value {
    fn from(i: i64) -> Self {
        Value::Integer(i)
    }
}
impl From<f64> for Value {
    fn from(f: f64) -> Self {
        Value::Decimal(f)
    }
}
impl From<bool> for Value {
    fn from(b: bool) -> Self {
        Value::Bool(b)
    }
}
impl From<Vec<u8>> for Value {
    fn from(b: Vec<u8>) -> Self {
        Value::Binary(b)
    }
}
impl<T: Into<Value>> From<Vec<T>> for Value
where
    T: NotBytes,
{
    fn from(v: Vec<T>) -> Self {
        Value::List(v.into_iter().map(Into::into).collect())
    }
}
/// Marker so `Vec<u8>` converts to binary, not to a list.
pub trait NotBytes {}
impl NotBytes for &str {}
impl NotBytes for String {}
impl NotBytes for i64 {}
impl NotBytes for f64 {}
impl NotBytes for bool {}

impl Serialize for Value {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Value::Null => s.serialize_unit(),
            Value::Bool(b) => s.serialize_bool(*b),
            Value::Integer(i) => s.serialize_i64(*i),
            Value::Decimal(f) => s.serialize_f64(*f),
            Value::Date(d) => s.serialize_str(&format_date(*d)),
            Value::Binary(b) => {
                s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(b))
            }
            Value::String(t) => s.serialize_str(t),
            Value::List(l) => {
                let mut seq = s.serialize_seq(Some(l.len()))?;
                for v in l {
                    seq.serialize_element(v)?;
                }
                seq.end()
            }
        }
    }
}

impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Value;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a boolean, number, string, array of those, or null")
            }
            fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
                Ok(Value::Bool(v))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
                Ok(Value::Integer(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
                i64::try_from(v)
                    .map(Value::Integer)
                    .map_err(|_| E::custom("integer out of the 64-bit signed range"))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
                Ok(Value::Decimal(v))
            }
            fn visit_str<E>(self, v: &str) -> Result<Value, E> {
                Ok(Value::String(v.to_string()))
            }
            fn visit_string<E>(self, v: String) -> Result<Value, E> {
                Ok(Value::String(v))
            }
            fn visit_unit<E>(self) -> Result<Value, E> {
                Ok(Value::Null)
            }
            fn visit_none<E>(self) -> Result<Value, E> {
                Ok(Value::Null)
            }
            fn visit_some<D2: Deserializer<'de>>(self, d: D2) -> Result<Value, D2::Error> {
                Value::deserialize(d)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut a: A) -> Result<Value, A::Error> {
                let mut out = Vec::new();
                while let Some(v) = a.next_element::<Value>()? {
                    if out.len() >= MAX_LIST_LEN {
                        return Err(de::Error::custom(format!(
                            "more than {MAX_LIST_LEN} values in a list"
                        )));
                    }
                    out.push(v);
                }
                Ok(Value::List(out))
            }
        }
        d.deserialize_any(V)
    }
}

/// Properties by name.
pub type Props = BTreeMap<String, Value>;

/// A resource: identity, type, typed properties, anonymous children and local metadata.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(deny_unknown_fields)]
pub struct Resource {
    /// Empty means "assign one" when the resource is created in a store.
    #[serde(default)]
    pub id: String,
    #[serde(rename = "type")]
    pub type_name: String,
    #[serde(default)]
    pub properties: Props,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub children: BTreeMap<String, Vec<Child>>,
    /// Local metadata: stored on this node only, never replicated.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub meta: Props,
}

/// An anonymous complex value owned by its parent.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(deny_unknown_fields)]
pub struct Child {
    #[serde(default)]
    pub properties: Props,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub children: BTreeMap<String, Vec<Child>>,
}

impl Child {
    pub fn with(mut self, name: &str, v: impl Into<Value>) -> Self {
        self.properties.insert(name.to_string(), v.into());
        self
    }
}

impl Resource {
    pub fn new(type_name: &str) -> Self {
        Resource {
            id: String::new(),
            type_name: type_name.to_string(),
            properties: Props::new(),
            children: BTreeMap::new(),
            meta: Props::new(),
        }
    }
    pub fn with_id(mut self, id: &str) -> Self {
        self.id = id.to_string();
        self
    }
    /// Sets a property (builder style).
    pub fn with(mut self, name: &str, v: impl Into<Value>) -> Self {
        self.properties.insert(name.to_string(), v.into());
        self
    }
    pub fn with_meta(mut self, name: &str, v: impl Into<Value>) -> Self {
        self.meta.insert(name.to_string(), v.into());
        self
    }
    pub fn with_child(mut self, slot: &str, c: Child) -> Self {
        self.children.entry(slot.to_string()).or_default().push(c);
        self
    }
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.properties.get(name).filter(|v| !v.is_null())
    }
    /// Applies a patch: `null` removes a property or metadata entry; child slots named in the
    /// patch are replaced whole, then `append`'s children added at the end of theirs.
    pub fn apply(&mut self, patch: &Patch) {
        for (k, v) in &patch.properties {
            if v.is_null() {
                self.properties.remove(k);
            } else {
                self.properties.insert(k.clone(), v.clone());
            }
        }
        for (k, v) in &patch.children {
            if v.is_empty() {
                self.children.remove(k);
            } else {
                self.children.insert(k.clone(), v.clone());
            }
        }
        for (k, v) in &patch.append {
            if !v.is_empty() {
                self.children
                    .entry(k.clone())
                    .or_default()
                    .extend(v.iter().cloned());
            }
        }
        for (k, v) in &patch.meta {
            if v.is_null() {
                self.meta.remove(k);
            } else {
                self.meta.insert(k.clone(), v.clone());
            }
        }
    }
}

/// A change to a resource (JSON form of `resources.update`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(deny_unknown_fields)]
pub struct Patch {
    /// New values; `null` removes.
    #[serde(default)]
    pub properties: Props,
    /// Child slots to replace (an empty array clears the slot).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub children: BTreeMap<String, Vec<Child>>,
    /// Children to add at the end of a slot, after whatever it holds when the write is
    /// applied: unlike replacing the slot with what was read before, this never overwrites a
    /// child someone else added meanwhile (on a shared resource, a friend's concurrent append).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub append: BTreeMap<String, Vec<Child>>,
    /// Local metadata to set; `null` removes.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub meta: Props,
}

impl Patch {
    pub fn set(mut self, name: &str, v: impl Into<Value>) -> Self {
        self.properties.insert(name.to_string(), v.into());
        self
    }
    pub fn set_meta(mut self, name: &str, v: impl Into<Value>) -> Self {
        self.meta.insert(name.to_string(), v.into());
        self
    }
    /// Whether the patch touches replicated data (properties or children), not only metadata.
    pub fn touches_content(&self) -> bool {
        !self.properties.is_empty() || !self.children.is_empty() || !self.append.is_empty()
    }
}

/// One reason a resource does not fit its type.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct ValidationError {
    /// Where: `properties.width`, `children.receipt[1].properties.peer`, `meta.rating`, `id`, `type`.
    pub path: String,
    pub reason: String,
}

/// Every reason a resource was refused (at least one).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[error("{}", .0.iter().map(|e| format!("{}: {}", e.path, e.reason)).collect::<Vec<_>>().join("; "))]
pub struct ValidationErrors(pub Vec<ValidationError>);

/// Whether `id` is a valid resource id: 1-128 of `A-Z a-z 0-9 . _ : @ -`.
pub fn is_valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'@' | b'-'))
}

/// Whether a character may appear in XML 1.0 text (so every string survives serialisation).
fn is_xml_char(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r') || (c >= ' ' && c != '\u{FFFE}' && c != '\u{FFFF}')
}

struct Checker<'a> {
    reg: &'a Registry,
    errors: Vec<ValidationError>,
}

impl Checker<'_> {
    fn push(&mut self, path: String, reason: impl Into<String>) {
        if self.errors.len() < MAX_ERRORS {
            self.errors.push(ValidationError {
                path,
                reason: reason.into(),
            });
        }
    }

    fn scalar(&mut self, path: &dyn Fn() -> String, v: Value, def: &PropDef) -> Option<Value> {
        if matches!(v, Value::List(_)) {
            self.push(
                path(),
                format!("expected one {}, not a list", def.datatype.name()),
            );
            return None;
        }
        match v.coerce(def.datatype) {
            Ok(v) => {
                match &v {
                    Value::String(s) => {
                        if s.len() > MAX_STRING_BYTES {
                            self.push(
                                path(),
                                format!("string longer than {MAX_STRING_BYTES} bytes"),
                            );
                            return None;
                        }
                        if let Some(c) = s.chars().find(|c| !is_xml_char(*c)) {
                            self.push(
                                path(),
                                format!("character U+{:04X} is not allowed in a string", c as u32),
                            );
                            return None;
                        }
                    }
                    Value::Binary(b) if b.len() > MAX_BINARY_BYTES => {
                        self.push(
                            path(),
                            format!("binary longer than {MAX_BINARY_BYTES} bytes"),
                        );
                        return None;
                    }
                    _ => {}
                }
                Some(v)
            }
            Err(e) => {
                self.push(path(), e);
                None
            }
        }
    }

    /// Normalises and checks a property map against `defs`.
    fn props(&mut self, base: &str, props: &mut Props, defs: &[&PropDef], type_name: &str) {
        // In place: values are coerced where they are; refused or null ones are dropped after.
        for (name, slot) in props.iter_mut() {
            let Some(def) = defs.iter().find(|d| d.name == *name) else {
                self.push(
                    format!("{base}.{name}"),
                    format!("unknown property for type {type_name}"),
                );
                *slot = Value::Null;
                continue;
            };
            let v = std::mem::replace(slot, Value::Null);
            if v.is_null() {
                continue;
            }
            let path = || format!("{base}.{name}");
            if def.multi {
                let items = match v {
                    Value::List(items) => items,
                    _ => {
                        self.push(
                            path(),
                            format!("expected a list of {}", def.datatype.name()),
                        );
                        continue;
                    }
                };
                if items.len() > MAX_LIST_LEN {
                    self.push(path(), format!("more than {MAX_LIST_LEN} values"));
                    continue;
                }
                let mut out = Vec::with_capacity(items.len());
                let mut ok = true;
                for (i, item) in items.into_iter().enumerate() {
                    match self.scalar(&|| format!("{base}.{name}[{i}]"), item, def) {
                        Some(v) => out.push(v),
                        None => ok = false,
                    }
                }
                if ok {
                    if def.required && out.is_empty() {
                        self.push(path(), "required: at least one value");
                        continue;
                    }
                    *slot = Value::List(out);
                }
            } else if let Some(v) = self.scalar(&path, v, def) {
                *slot = v;
            }
        }
        props.retain(|_, v| !v.is_null());
        for d in defs {
            if d.required
                && !props.contains_key(&d.name)
                && !self
                    .errors
                    .iter()
                    .any(|e| e.path == format!("{base}.{}", d.name))
            {
                self.push(
                    format!("{base}.{}", d.name),
                    format!("required {} is missing", d.datatype.name()),
                );
            }
        }
    }

    fn children(
        &mut self,
        base: &str,
        children: &mut BTreeMap<String, Vec<Child>>,
        owner_type: &str,
        anon: bool,
        depth: usize,
    ) {
        if depth > MAX_CHILD_DEPTH {
            self.push(base.to_string(), "children nested too deeply");
            return;
        }
        let slots: Vec<crate::schema::ChildDef> = if anon {
            self.reg
                .get(owner_type)
                .map(|t| t.children.clone())
                .unwrap_or_default()
        } else {
            self.reg
                .all_children(owner_type)
                .into_iter()
                .cloned()
                .collect()
        };
        children.retain(|_, v| !v.is_empty());
        for (slot, values) in children.iter_mut() {
            let path = if base.is_empty() {
                format!("children.{slot}")
            } else {
                format!("{base}.children.{slot}")
            };
            let Some(def) = slots.iter().find(|s| &s.name == slot) else {
                self.push(path, format!("unknown child for type {owner_type}"));
                continue;
            };
            if !def.multi && values.len() > 1 {
                self.push(path.clone(), "only one child allowed");
            }
            if values.len() > MAX_LIST_LEN {
                self.push(path, format!("more than {MAX_LIST_LEN} children"));
                continue;
            }
            let reg = self.reg;
            let Some(ct) = reg.get(&def.type_name) else {
                continue;
            };
            let defs: Vec<&PropDef> = ct.props.iter().collect();
            for (i, c) in values.iter_mut().enumerate() {
                let cpath = format!("{path}[{i}]");
                self.props(
                    &format!("{cpath}.properties"),
                    &mut c.properties,
                    &defs,
                    &def.type_name,
                );
                self.children(&cpath, &mut c.children, &def.type_name, true, depth + 1);
            }
        }
        for s in &slots {
            if s.required && !children.contains_key(&s.name) {
                let path = if base.is_empty() {
                    format!("children.{}", s.name)
                } else {
                    format!("{base}.children.{}", s.name)
                };
                self.push(path, "required child is missing");
            }
        }
    }
}

impl Registry {
    /// Validates `r` against its type, normalising values on the way (date and binary strings
    /// become typed values, nulls are dropped). On error nothing about `r` should be stored.
    pub fn validate(&self, r: &mut Resource) -> Result<(), ValidationErrors> {
        let mut ck = Checker {
            reg: self,
            errors: Vec::new(),
        };
        if !is_valid_id(&r.id) {
            ck.push(
                "id".into(),
                format!(
                    "a resource id is 1-{MAX_ID_LEN} characters of letters, digits and . _ : @ -"
                ),
            );
        }
        match self.get(&r.type_name) {
            None => {
                ck.push(
                    "type".into(),
                    format!(
                        "unknown type '{}'",
                        r.type_name.chars().take(80).collect::<String>()
                    ),
                );
            }
            Some(t) if t.anonymous => {
                ck.push(
                    "type".into(),
                    format!(
                        "'{}' is an anonymous type; it has no resources of its own",
                        t.name
                    ),
                );
            }
            Some(_) => {
                let defs: Vec<&PropDef> = self
                    .all_props(&r.type_name)
                    .into_iter()
                    .map(|(_, p)| p)
                    .collect();
                ck.props("properties", &mut r.properties, &defs, &r.type_name);
                let tn = r.type_name.clone();
                ck.children("", &mut r.children, &tn, false, 0);
                if !r.meta.is_empty() {
                    let meta_defs = self.meta_props(&r.type_name);
                    let label = format!("{} (local metadata)", r.type_name);
                    ck.props("meta", &mut r.meta, &meta_defs, &label);
                }
            }
        }
        if ck.errors.is_empty() {
            Ok(())
        } else {
            Err(ValidationErrors(ck.errors))
        }
    }

    /// Validates the metadata part of a patch alone (metadata changes skip full validation).
    pub fn validate_value(
        &self,
        type_name: &str,
        prop: &str,
        v: Value,
    ) -> Result<Value, ValidationErrors> {
        let mut r = Resource::new(type_name);
        r.properties.insert(prop.to_string(), v);
        let defs: Vec<&PropDef> = self
            .all_props(type_name)
            .into_iter()
            .map(|(_, p)| p)
            .collect();
        let mut ck = Checker {
            reg: self,
            errors: Vec::new(),
        };
        ck.props("properties", &mut r.properties, &defs, type_name);
        ck.errors
            .retain(|e| e.path.starts_with(&format!("properties.{prop}")));
        if ck.errors.is_empty() {
            Ok(r.properties.remove(prop).unwrap_or(Value::Null))
        } else {
            Err(ValidationErrors(ck.errors))
        }
    }
}

#[cfg(test)]
mod tests;
