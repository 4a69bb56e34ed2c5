//! Resources serialised to XML, valid against their type's RELAX NG schema (jing, xmllint).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use base64::Engine as _;
use quick_xml::escape::escape;

use super::{Child, Props, Resource, Value, format_date};
use crate::schema::{RESOURCE_NS, Registry};

fn scalar_text(v: &Value) -> String {
    match v {
        Value::Null | Value::List(_) => String::new(),
        Value::Bool(b) => b.to_string(),
        Value::Integer(i) => i.to_string(),
        Value::Decimal(f) => {
            if f.is_finite() {
                format!("{f:?}")
            } else if f.is_nan() {
                "NaN".into()
            } else if *f > 0.0 {
                "INF".into()
            } else {
                "-INF".into()
            }
        }
        Value::Date(d) => format_date(*d),
        Value::Binary(b) => base64::engine::general_purpose::STANDARD.encode(b),
        Value::String(s) => s.clone(),
    }
}

fn write_props(out: &mut String, order: &[String], props: &Props, indent: &str) {
    for name in order {
        let Some(v) = props.get(name) else { continue };
        let values: Vec<&Value> = match v {
            Value::List(l) => l.iter().collect(),
            Value::Null => continue,
            v => vec![v],
        };
        for v in values {
            let _ = writeln!(
                out,
                "{indent}<{name}>{}</{name}>",
                escape(scalar_text(v).as_str())
            );
        }
    }
}

fn write_children(
    reg: &Registry,
    out: &mut String,
    children: &BTreeMap<String, Vec<Child>>,
    slot_types: &[(String, String)],
    indent: &str,
) {
    for (slot, type_name) in slot_types {
        let Some(values) = children.get(slot) else {
            continue;
        };
        let order: Vec<String> = reg
            .get(type_name)
            .map(|t| t.props.iter().map(|p| p.name.clone()).collect())
            .unwrap_or_default();
        let sub: Vec<(String, String)> = reg
            .get(type_name)
            .map(|t| {
                t.children
                    .iter()
                    .map(|c| (c.name.clone(), c.type_name.clone()))
                    .collect()
            })
            .unwrap_or_default();
        for c in values {
            let _ = writeln!(out, "{indent}<{slot}>");
            let inner = format!("{indent}  ");
            write_props(out, &order, &c.properties, &inner);
            write_children(reg, out, &c.children, &sub, &inner);
            let _ = writeln!(out, "{indent}</{slot}>");
        }
    }
}

impl Registry {
    /// The resource as an XML document whose root element is named after its type. Local
    /// metadata is not included (it never leaves the node).
    pub fn to_xml(&self, r: &Resource) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>");
        let _ = writeln!(
            out,
            "<{} xmlns=\"{RESOURCE_NS}\" id=\"{}\">",
            r.type_name,
            escape(r.id.as_str())
        );
        let order: Vec<String> = self
            .all_props(&r.type_name)
            .into_iter()
            .map(|(_, p)| p.name.clone())
            .collect();
        write_props(&mut out, &order, &r.properties, "  ");
        let slots: Vec<(String, String)> = self
            .all_children(&r.type_name)
            .into_iter()
            .map(|c| (c.name.clone(), c.type_name.clone()))
            .collect();
        write_children(self, &mut out, &r.children, &slots, "  ");
        let _ = writeln!(out, "</{}>", r.type_name);
        out
    }
}
