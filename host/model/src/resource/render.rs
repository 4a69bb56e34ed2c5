//! A generic render description of a resource, derived from its schema: what the extension's
//! generic view shows for a type that has no template of its own.

use serde::{Deserialize, Serialize};

use super::{Child, Resource, Value, format_date};
use crate::schema::{DataType, Registry};

/// A resource as the generic view shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RenderView {
    pub id: String,
    #[serde(rename = "type")]
    pub type_name: String,
    /// Human title of the type (e.g. "Image").
    pub type_title: String,
    /// The resource's own title, else a name-like property, else its id.
    pub title: String,
    /// Types from the root down, for CSS classes and breadcrumbs.
    pub lineage: Vec<String>,
    pub fields: Vec<RenderField>,
    pub children: Vec<RenderChild>,
}

/// One property, ready to display.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RenderField {
    pub name: String,
    pub label: String,
    pub datatype: DataType,
    /// Declared by which type along the chain.
    pub declared_by: String,
    pub required: bool,
    /// Display text ("" when absent); lists are joined with ", ".
    pub text: String,
    pub present: bool,
}

/// One child slot's values.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RenderChild {
    pub name: String,
    pub label: String,
    pub items: Vec<Vec<RenderField>>,
}

/// "mimeType" -> "Mime type".
pub fn label(name: &str) -> String {
    let mut out = String::new();
    for (i, c) in name.chars().enumerate() {
        if i == 0 {
            out.extend(c.to_uppercase());
        } else if c.is_ascii_uppercase() {
            out.push(' ');
            out.push(c.to_ascii_lowercase());
        } else if c == '_' {
            out.push(' ');
        } else {
            out.push(c);
        }
    }
    out
}

fn text(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::Bool(b) => if *b { "yes" } else { "no" }.into(),
        Value::Integer(i) => i.to_string(),
        Value::Decimal(f) => f.to_string(),
        Value::Date(d) => format_date(*d),
        Value::Binary(b) => format!("{} bytes", b.len()),
        Value::String(s) => {
            if s.chars().count() > 200 {
                format!("{}…", s.chars().take(200).collect::<String>())
            } else {
                s.clone()
            }
        }
        Value::List(l) => l.iter().map(text).collect::<Vec<_>>().join(", "),
    }
}

fn fields(reg: &Registry, type_name: &str, anon: bool, props: &super::Props) -> Vec<RenderField> {
    let defs: Vec<(String, crate::schema::PropDef)> = if anon {
        reg.get(type_name)
            .map(|t| {
                t.props
                    .iter()
                    .map(|p| (t.name.clone(), p.clone()))
                    .collect()
            })
            .unwrap_or_default()
    } else {
        reg.all_props(type_name)
            .into_iter()
            .map(|(t, p)| (t.name.clone(), p.clone()))
            .collect()
    };
    defs.into_iter()
        .map(|(owner, p)| {
            let v = props.get(&p.name);
            RenderField {
                label: label(&p.name),
                text: v.map(text).unwrap_or_default(),
                present: v.is_some_and(|v| !v.is_null()),
                name: p.name,
                datatype: p.datatype,
                declared_by: owner,
                required: p.required,
            }
        })
        .collect()
}

impl Registry {
    /// The generic render description of `r` (validate it first for typed dates/binaries).
    pub fn render(&self, r: &Resource) -> RenderView {
        let own = fields(self, &r.type_name, false, &r.properties);
        let title = ["title", "name", "url", "peerId"]
            .iter()
            .find_map(|k| r.get(k).and_then(Value::as_str).map(str::to_string))
            .unwrap_or_else(|| r.id.clone());
        let children = self
            .all_children(&r.type_name)
            .into_iter()
            .map(|c| RenderChild {
                name: c.name.clone(),
                label: label(&c.name),
                items: r
                    .children
                    .get(&c.name)
                    .map(|v: &Vec<Child>| {
                        v.iter()
                            .map(|ch| fields(self, &c.type_name, true, &ch.properties))
                            .collect()
                    })
                    .unwrap_or_default(),
            })
            .collect();
        RenderView {
            id: r.id.clone(),
            type_name: r.type_name.clone(),
            type_title: self.title(&r.type_name),
            title,
            lineage: self
                .chain(&r.type_name)
                .iter()
                .map(|t| t.name.clone())
                .collect(),
            fields: own,
            children,
        }
    }
}

/// A cell for terminal output: control characters (ANSI escapes, newlines) replaced, long text cut.
fn cell(s: &str, width: usize) -> String {
    let clean: String = s
        .chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect();
    if clean.chars().count() > width {
        let mut out: String = clean.chars().take(width.saturating_sub(1)).collect();
        out.push('…');
        out
    } else {
        clean
    }
}

impl Registry {
    /// A plain-text table of resources for the CLI (`allpeers resource …`, `allpeers query`):
    /// id, type, title (or name/url/peerId), modified. Safe for terminals: control characters in
    /// values are replaced.
    pub fn table(&self, resources: &[Resource]) -> String {
        let rows: Vec<[String; 4]> = resources
            .iter()
            .map(|r| {
                let v = self.render(r);
                let modified = match r.get("modified") {
                    Some(Value::Date(d)) => format_date(*d),
                    Some(other) => text(other),
                    None => String::new(),
                };
                [
                    cell(&r.id, 40),
                    cell(&r.type_name, 16),
                    cell(&v.title, 48),
                    modified,
                ]
            })
            .collect();
        let head = ["ID", "TYPE", "TITLE", "MODIFIED"];
        let mut widths = head.map(str::len);
        for row in &rows {
            for (w, c) in widths.iter_mut().zip(row.iter()) {
                *w = (*w).max(c.chars().count());
            }
        }
        let line = |cols: [&str; 4]| {
            let mut s = String::new();
            for (i, (c, w)) in cols.iter().zip(widths.iter()).enumerate() {
                s.push_str(c);
                if i < 3 {
                    s.push_str(&" ".repeat(w - c.chars().count() + 2));
                }
            }
            s.trim_end().to_string()
        };
        let mut out = line(head);
        out.push('\n');
        for row in &rows {
            out.push_str(&line([&row[0], &row[1], &row[2], &row[3]]));
            out.push('\n');
        }
        out
    }
}
