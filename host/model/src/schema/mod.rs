//! The schema language: resource types written as RELAX NG (XML syntax) with type inheritance.
//!
//! A schema file is an ordinary RELAX NG grammar that standard validators (jing, xmllint) accept.
//! AllPeers reads a profile of it plus a few foreign-namespace annotations (`ap:` =
//! [`AP_NS`]), which RELAX NG validators ignore:
//!
//! ```xml
//! <grammar xmlns="http://relaxng.org/ns/structure/1.0" xmlns:ap="urn:allpeers:schema:1"
//!          ns="urn:allpeers:resource:1" datatypeLibrary="http://www.w3.org/2001/XMLSchema-datatypes">
//!   <include href="File.rng"><start><ref name="Image"/></start></include>
//!   <start><ref name="Image"/></start>   <!-- (only in files that do not include a parent) -->
//!   <define name="Image"><element name="Image"><ref name="Image.content"/></element></define>
//!   <define name="Image.content" ap:type="Image" ap:extends="File" ap:title="Image">
//!     <interleave>
//!       <ref name="File.content"/>                        <!-- inheritance: the parent's content -->
//!       <optional><element name="width" ap:index="true"><data type="long"/></element></optional>
//!     </interleave>
//!   </define>
//! </grammar>
//! ```
//!
//! * a type is a `define` named `T.content` carrying `ap:type="T"`; `ap:extends="P"` names the parent,
//!   whose content the define must `ref` (`P.content`), so the same file is valid RELAX NG;
//! * `ap:anonymous="true"` marks an anonymous complex type (children and local metadata);
//! * `ap:title` is the human title, `ap:metadata="M"` names the anonymous local-metadata type;
//! * a property is `element name="p"` holding `data type="…"` (XSD: boolean, long, double, dateTime,
//!   base64Binary, string) or `text`; `optional` makes it optional, `zeroOrMore`/`oneOrMore` a list
//!   of values; `ap:index="true"` asks the store for an index;
//! * a child is `element name="c"` holding `ref name="C.content"` of an anonymous type.

pub mod app;
mod builtin;
mod parse;
mod registry;

pub use builtin::BUILTIN_FILES;
pub use parse::parse_schema;
pub use registry::Registry;

use serde::{Deserialize, Serialize};

/// RELAX NG structure namespace.
pub const RNG_NS: &str = "http://relaxng.org/ns/structure/1.0";
/// Namespace of AllPeers' schema annotations.
pub const AP_NS: &str = "urn:allpeers:schema:1";
/// Namespace of resources serialised to XML.
pub const RESOURCE_NS: &str = "urn:allpeers:resource:1";
/// XML Schema datatypes library.
pub const XSD_DATATYPES: &str = "http://www.w3.org/2001/XMLSchema-datatypes";
/// The root of every non-anonymous type.
pub const ROOT_TYPE: &str = "Resource";
/// Upper bound on a schema file's size.
pub const MAX_SCHEMA_BYTES: usize = 1 << 20;
/// Upper bound on XML nesting in a schema file.
pub const MAX_SCHEMA_DEPTH: usize = 64;
/// Upper bound on the number of XML elements in a schema file.
pub const MAX_SCHEMA_NODES: usize = 20_000;
/// Upper bound on the length of type and property names.
pub const MAX_NAME_LEN: usize = 64;

/// A schema file was refused: where and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[error("{file}:{line}: {reason}")]
pub struct SchemaError {
    pub file: String,
    /// 1-based line; 0 when the problem is not tied to a line.
    pub line: u32,
    pub reason: String,
}

impl SchemaError {
    pub(crate) fn new(file: &str, line: u32, reason: impl Into<String>) -> Self {
        SchemaError {
            file: file.to_string(),
            line,
            reason: reason.into(),
        }
    }
}

/// The datatype of a property.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DataType {
    Boolean,
    /// 64-bit signed integer (`xsd:long`).
    Integer,
    /// IEEE double (`xsd:double`).
    Decimal,
    /// UTC instant with millisecond precision (`xsd:dateTime`).
    Date,
    /// Bytes (`xsd:base64Binary`).
    Binary,
    String,
}

impl DataType {
    /// The datatype for an XSD type name, if supported.
    pub fn from_xsd(name: &str) -> Option<DataType> {
        Some(match name {
            "boolean" => DataType::Boolean,
            "long" => DataType::Integer,
            "double" => DataType::Decimal,
            "dateTime" => DataType::Date,
            "base64Binary" => DataType::Binary,
            "string" => DataType::String,
            _ => return None,
        })
    }

    pub fn xsd_name(self) -> &'static str {
        match self {
            DataType::Boolean => "boolean",
            DataType::Integer => "long",
            DataType::Decimal => "double",
            DataType::Date => "dateTime",
            DataType::Binary => "base64Binary",
            DataType::String => "string",
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            DataType::Boolean => "boolean",
            DataType::Integer => "integer",
            DataType::Decimal => "decimal",
            DataType::Date => "date",
            DataType::Binary => "binary",
            DataType::String => "string",
        }
    }
}

/// A typed property of a type.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PropDef {
    pub name: String,
    pub datatype: DataType,
    pub required: bool,
    /// A list of values rather than one.
    pub multi: bool,
    /// The store keeps an index on it.
    pub indexed: bool,
    pub line: u32,
}

/// A child slot: anonymous complex values owned by the parent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChildDef {
    /// Element name of the slot.
    pub name: String,
    /// The anonymous type of its values.
    pub type_name: String,
    pub required: bool,
    pub multi: bool,
    pub line: u32,
}

/// A resource type (or an anonymous complex type) as declared by one schema file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TypeDef {
    pub name: String,
    pub parent: Option<String>,
    pub anonymous: bool,
    /// Human title (resource description).
    pub title: Option<String>,
    /// Anonymous type describing the local metadata (resource description).
    pub metadata: Option<String>,
    /// Properties declared by this type itself (not inherited).
    pub props: Vec<PropDef>,
    /// Child slots declared by this type itself.
    pub children: Vec<ChildDef>,
    /// The schema file that declares it.
    pub file: String,
    pub line: u32,
}

impl TypeDef {
    pub fn prop(&self, name: &str) -> Option<&PropDef> {
        self.props.iter().find(|p| p.name == name)
    }
    pub fn child(&self, name: &str) -> Option<&ChildDef> {
        self.children.iter().find(|c| c.name == name)
    }
}

/// Type and property names: an ASCII letter, then letters, digits or `_`; at most
/// [`MAX_NAME_LEN`]. These are the only identifiers that ever reach SQL (quoted), so the rule is
/// deliberately narrow.
pub fn is_valid_name(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b.len() <= MAX_NAME_LEN
        && b[0].is_ascii_alphabetic()
        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'_')
}

/// Names a property may not take: the resource's identity, which is structural.
pub const RESERVED_PROPS: &[&str] = &["id", "type", "rid"];

#[cfg(test)]
mod tests;
