//! Parsing one schema file (RELAX NG profile + `ap:` annotations) into [`TypeDef`]s.

use quick_xml::Reader;
use quick_xml::events::{BytesStart, Event};

use super::{
    AP_NS, ChildDef, DataType, MAX_SCHEMA_BYTES, MAX_SCHEMA_DEPTH, MAX_SCHEMA_NODES, PropDef,
    RESERVED_PROPS, RNG_NS, ROOT_TYPE, SchemaError, TypeDef, XSD_DATATYPES, is_valid_name,
};

/// A namespace-resolved XML element.
#[derive(Debug)]
struct Node {
    ns: Option<String>,
    local: String,
    /// (namespace, local name, value); unprefixed attributes have no namespace.
    attrs: Vec<(Option<String>, String, String)>,
    children: Vec<Node>,
    line: u32,
}

impl Node {
    fn attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(ns, n, _)| ns.is_none() && n == name)
            .map(|(_, _, v)| v.as_str())
    }
    fn ap_attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(ns, n, _)| ns.as_deref() == Some(AP_NS) && n == name)
            .map(|(_, _, v)| v.as_str())
    }
    fn is_rng(&self, local: &str) -> bool {
        self.ns.as_deref() == Some(RNG_NS) && self.local == local
    }
    fn rng_children(&self) -> impl Iterator<Item = &Node> {
        self.children
            .iter()
            .filter(|c| c.ns.as_deref() == Some(RNG_NS))
    }
}

struct LineCounter<'a> {
    text: &'a str,
    pos: usize,
    line: u32,
}

impl LineCounter<'_> {
    fn line_at(&mut self, pos: usize) -> u32 {
        let pos = pos.min(self.text.len());
        if pos < self.pos {
            self.pos = 0;
            self.line = 1;
        }
        self.line += self.text.as_bytes()[self.pos..pos]
            .iter()
            .filter(|b| **b == b'\n')
            .count() as u32;
        self.pos = pos;
        self.line
    }
}

type NsScope = Vec<(String, String)>;

fn resolve_prefix(scopes: &[NsScope], prefix: &str) -> Option<String> {
    scopes
        .iter()
        .rev()
        .flat_map(|s| s.iter().rev())
        .find(|(p, _)| p == prefix)
        .map(|(_, u)| u.clone())
}

fn make_node(
    file: &str,
    e: &BytesStart<'_>,
    line: u32,
    scopes: &mut Vec<NsScope>,
) -> Result<Node, SchemaError> {
    let err = |r: String| SchemaError::new(file, line, r);
    let mut scope = NsScope::new();
    let mut raw = Vec::new();
    for a in e.attributes() {
        let a = a.map_err(|e| err(format!("malformed attribute: {e}")))?;
        let key = a.key.0.to_string();
        let value = a
            .normalized_value(quick_xml::XmlVersion::Implicit1_0)
            .map_err(|e| err(format!("malformed attribute value: {e}")))?
            .into_owned();
        if key == "xmlns" {
            scope.push((String::new(), value));
        } else if let Some(p) = key.strip_prefix("xmlns:") {
            scope.push((p.to_string(), value));
        } else {
            raw.push((key, value));
        }
    }
    scopes.push(scope);
    let qname = e.name().0.to_string();
    let (prefix, local) = match qname.split_once(':') {
        Some((p, l)) => (p.to_string(), l.to_string()),
        None => (String::new(), qname.clone()),
    };
    let ns = resolve_prefix(scopes, &prefix).filter(|u| !u.is_empty());
    if !prefix.is_empty() && ns.is_none() {
        return Err(err(format!("undeclared namespace prefix '{prefix}'")));
    }
    let mut attrs = Vec::with_capacity(raw.len());
    for (key, value) in raw {
        match key.split_once(':') {
            Some(("xml", l)) => attrs.push((Some("xml".into()), l.to_string(), value)),
            Some((p, l)) => {
                let uri = resolve_prefix(scopes, p)
                    .ok_or_else(|| err(format!("undeclared namespace prefix '{p}'")))?;
                attrs.push((Some(uri), l.to_string(), value));
            }
            None => attrs.push((None, key, value)),
        }
    }
    Ok(Node {
        ns,
        local,
        attrs,
        children: Vec::new(),
        line,
    })
}

/// Parses XML into a namespace-resolved tree, bounded in size, depth and element count.
fn parse_tree(file: &str, text: &str) -> Result<Node, SchemaError> {
    if text.len() > MAX_SCHEMA_BYTES {
        return Err(SchemaError::new(
            file,
            0,
            format!(
                "schema file is {} bytes, the limit is {MAX_SCHEMA_BYTES}",
                text.len()
            ),
        ));
    }
    let mut reader = Reader::from_str(text);
    let mut lines = LineCounter {
        text,
        pos: 0,
        line: 1,
    };
    let mut stack: Vec<Node> = Vec::new();
    let mut scopes: Vec<NsScope> = Vec::new();
    let mut root: Option<Node> = None;
    let mut count = 0usize;
    loop {
        let start = reader.buffer_position() as usize;
        let ev = reader.read_event();
        let ev = match ev {
            Ok(ev) => ev,
            Err(e) => {
                let line = lines.line_at(reader.error_position() as usize);
                return Err(SchemaError::new(file, line, format!("malformed XML: {e}")));
            }
        };
        let line = lines.line_at(start);
        match ev {
            Event::Start(e) | Event::Empty(e) if root.is_some() => {
                let _ = e;
                return Err(SchemaError::new(
                    file,
                    line,
                    "malformed XML: content after the root element",
                ));
            }
            Event::Start(e) => {
                count += 1;
                if count > MAX_SCHEMA_NODES {
                    return Err(SchemaError::new(file, line, "too many elements"));
                }
                if stack.len() >= MAX_SCHEMA_DEPTH {
                    return Err(SchemaError::new(file, line, "elements nested too deeply"));
                }
                let node = make_node(file, &e, line, &mut scopes)?;
                stack.push(node);
            }
            Event::Empty(e) => {
                count += 1;
                if count > MAX_SCHEMA_NODES {
                    return Err(SchemaError::new(file, line, "too many elements"));
                }
                let node = make_node(file, &e, line, &mut scopes)?;
                scopes.pop();
                match stack.last_mut() {
                    Some(parent) => parent.children.push(node),
                    None => root = Some(node),
                }
            }
            Event::End(_) => {
                scopes.pop();
                let node = stack.pop().ok_or_else(|| {
                    SchemaError::new(file, line, "malformed XML: unexpected end tag")
                })?;
                match stack.last_mut() {
                    Some(parent) => parent.children.push(node),
                    None => root = Some(node),
                }
            }
            Event::Text(t) => {
                let raw: &str = t.as_ref();
                if !raw.bytes().all(|b| b.is_ascii_whitespace()) {
                    let in_foreign = stack
                        .last()
                        .is_some_and(|n| n.ns.as_deref() != Some(RNG_NS));
                    let in_param = stack
                        .last()
                        .is_some_and(|n| n.is_rng("param") || n.is_rng("value"));
                    if !in_foreign && !in_param {
                        return Err(SchemaError::new(
                            file,
                            line,
                            "unexpected text in a RELAX NG element",
                        ));
                    }
                }
            }
            Event::CData(_) | Event::GeneralRef(_) => {}
            Event::DocType(_) => {
                return Err(SchemaError::new(
                    file,
                    line,
                    "a DOCTYPE is not allowed in a schema file",
                ));
            }
            Event::Comment(_) | Event::Decl(_) | Event::PI(_) => {}
            Event::Eof => break,
        }
    }
    if !stack.is_empty() {
        let line = lines.line_at(text.len());
        return Err(SchemaError::new(
            file,
            line,
            "malformed XML: unexpected end of file (unclosed element)",
        ));
    }
    root.ok_or_else(|| SchemaError::new(file, 1, "malformed XML: no root element"))
}

/// Parses one schema file into the types it declares. Checks that do not need other files
/// (names, datatypes, duplicate properties, the inheritance `ref`) happen here; the registry
/// checks the rest (parents, cycles, collisions with inherited properties).
pub fn parse_schema(file: &str, text: &str) -> Result<Vec<TypeDef>, SchemaError> {
    let root = parse_tree(file, text)?;
    if !root.is_rng("grammar") {
        return Err(SchemaError::new(
            file,
            root.line,
            "the root element must be a RELAX NG <grammar>",
        ));
    }
    let lib = root.attr("datatypeLibrary").unwrap_or("");
    let mut types: Vec<TypeDef> = Vec::new();
    for child in root.rng_children() {
        if !child.is_rng("define") {
            continue;
        }
        let Some(tname) = child.ap_attr("type") else {
            continue;
        };
        let t = parse_type(file, child, tname, lib)?;
        if let Some(prev) = types.iter().find(|p| p.name.eq_ignore_ascii_case(&t.name)) {
            return Err(SchemaError::new(
                file,
                child.line,
                format!(
                    "type '{}' is declared twice (first at line {})",
                    t.name, prev.line
                ),
            ));
        }
        types.push(t);
    }
    if types.is_empty() {
        return Err(SchemaError::new(
            file,
            root.line,
            "the grammar declares no type (no <define> with ap:type)",
        ));
    }
    Ok(types)
}

fn flag(node: &Node, name: &str, file: &str) -> Result<bool, SchemaError> {
    match node.ap_attr(name) {
        None | Some("false") => Ok(false),
        Some("true") => Ok(true),
        Some(other) => Err(SchemaError::new(
            file,
            node.line,
            format!("ap:{name} must be \"true\" or \"false\", not \"{other}\""),
        )),
    }
}

fn parse_type(file: &str, def: &Node, tname: &str, lib: &str) -> Result<TypeDef, SchemaError> {
    let err = |line: u32, r: String| SchemaError::new(file, line, r);
    if !is_valid_name(tname) {
        return Err(err(
            def.line,
            format!("invalid type name '{}'", truncate(tname)),
        ));
    }
    let expected = format!("{tname}.content");
    if def.attr("name") != Some(expected.as_str()) {
        return Err(err(
            def.line,
            format!("the define of type '{tname}' must be named \"{expected}\""),
        ));
    }
    let anonymous = flag(def, "anonymous", file)?;
    let parent = def.ap_attr("extends").map(str::to_string);
    if let Some(p) = &parent {
        if !is_valid_name(p) {
            return Err(err(
                def.line,
                format!("invalid parent type name '{}'", truncate(p)),
            ));
        }
        if anonymous {
            return Err(err(
                def.line,
                format!("anonymous type '{tname}' cannot extend another type"),
            ));
        }
    } else if !anonymous && tname != ROOT_TYPE {
        return Err(err(
            def.line,
            format!(
                "type '{tname}' must extend a type (every non-anonymous type derives from {ROOT_TYPE})"
            ),
        ));
    }
    let metadata = def.ap_attr("metadata").map(str::to_string);
    if let Some(m) = &metadata
        && !is_valid_name(m)
    {
        return Err(err(
            def.line,
            format!("invalid metadata type name '{}'", truncate(m)),
        ));
    }
    let mut t = TypeDef {
        name: tname.to_string(),
        parent,
        anonymous,
        title: def.ap_attr("title").map(str::to_string),
        metadata,
        props: Vec::new(),
        children: Vec::new(),
        file: file.to_string(),
        line: def.line,
    };
    let lib = def.attr("datatypeLibrary").unwrap_or(lib);
    let mut parent_ref = false;
    let mut walker = Walker {
        file,
        t: &mut t,
        parent_ref: &mut parent_ref,
    };
    let mut n = 0;
    for c in def.rng_children() {
        n += 1;
        walker.pattern(c, true, false, lib)?;
    }
    if n != 1 {
        return Err(err(
            def.line,
            format!(
                "the define of type '{tname}' must hold exactly one pattern (e.g. <interleave>)"
            ),
        ));
    }
    if t.parent.is_some() && !parent_ref {
        let p = t.parent.as_deref().unwrap_or_default();
        return Err(err(
            def.line,
            format!("type '{tname}' extends '{p}' but does not <ref name=\"{p}.content\"/>"),
        ));
    }
    Ok(t)
}

fn truncate(s: &str) -> String {
    s.chars().take(80).collect()
}

struct Walker<'a> {
    file: &'a str,
    t: &'a mut TypeDef,
    parent_ref: &'a mut bool,
}

impl Walker<'_> {
    fn err(&self, line: u32, r: String) -> SchemaError {
        SchemaError::new(self.file, line, r)
    }

    fn pattern(
        &mut self,
        n: &Node,
        required: bool,
        multi: bool,
        lib: &str,
    ) -> Result<(), SchemaError> {
        let lib = n.attr("datatypeLibrary").unwrap_or(lib);
        match n.local.as_str() {
            "interleave" | "group" => {
                for c in n.rng_children() {
                    self.pattern(c, required, multi, lib)?;
                }
                Ok(())
            }
            "optional" => {
                for c in n.rng_children() {
                    self.pattern(c, false, multi, lib)?;
                }
                Ok(())
            }
            "zeroOrMore" => {
                for c in n.rng_children() {
                    self.pattern(c, false, true, lib)?;
                }
                Ok(())
            }
            "oneOrMore" => {
                for c in n.rng_children() {
                    self.pattern(c, required, true, lib)?;
                }
                Ok(())
            }
            "empty" => Ok(()),
            "ref" => {
                let name = n.attr("name").unwrap_or("");
                match &self.t.parent {
                    Some(p) if name == format!("{p}.content") => {
                        if multi || !required {
                            return Err(self.err(
                                n.line,
                                "the parent's content must be referenced once, not optional or repeated".into(),
                            ));
                        }
                        *self.parent_ref = true;
                        Ok(())
                    }
                    _ => Err(self.err(
                        n.line,
                        format!(
                            "<ref name=\"{}\"/> here must name the parent's content (ap:extends)",
                            truncate(name)
                        ),
                    )),
                }
            }
            "attribute" => {
                if self.t.name == ROOT_TYPE && n.attr("name") == Some("id") {
                    Ok(())
                } else {
                    Err(self.err(
                        n.line,
                        "attributes are not supported in a type; use <element>".into(),
                    ))
                }
            }
            "element" => self.element(n, required, multi, lib),
            other => Err(self.err(
                n.line,
                format!(
                    "unsupported RELAX NG pattern <{other}> in type '{}'",
                    self.t.name
                ),
            )),
        }
    }

    fn element(
        &mut self,
        n: &Node,
        required: bool,
        multi: bool,
        lib: &str,
    ) -> Result<(), SchemaError> {
        let Some(name) = n.attr("name") else {
            return Err(self.err(
                n.line,
                "an <element> in a type needs a name=\"…\" attribute".into(),
            ));
        };
        if !is_valid_name(name) {
            return Err(self.err(
                n.line,
                format!("invalid property name '{}'", truncate(name)),
            ));
        }
        if RESERVED_PROPS.contains(&name) {
            return Err(self.err(n.line, format!("property name '{name}' is reserved")));
        }
        let clash = self
            .t
            .props
            .iter()
            .map(|p| (&p.name, p.line))
            .chain(self.t.children.iter().map(|c| (&c.name, c.line)))
            .find(|(p, _)| p.eq_ignore_ascii_case(name));
        if let Some((_, line)) = clash {
            return Err(self.err(
                n.line,
                format!("duplicate property '{name}' (first declared at line {line})"),
            ));
        }
        let indexed = flag(n, "index", self.file)?;
        let content: Vec<&Node> = n.rng_children().collect();
        if content.len() != 1 {
            return Err(self.err(
                n.line,
                format!("element '{name}' must hold exactly one of <data>, <text/> or <ref> of an anonymous type"),
            ));
        }
        let c = content[0];
        let lib = c.attr("datatypeLibrary").unwrap_or(lib);
        let datatype = match c.local.as_str() {
            "text" => DataType::String,
            "data" => {
                if lib != super::XSD_DATATYPES {
                    return Err(self.err(
                        c.line,
                        format!("datatypes must come from the XSD library ({XSD_DATATYPES})"),
                    ));
                }
                let ty = c.attr("type").unwrap_or("");
                DataType::from_xsd(ty).ok_or_else(|| {
                    self.err(
                        c.line,
                        format!(
                            "unknown datatype '{}' for property '{name}' (expected boolean, long, double, dateTime, base64Binary or string)",
                            truncate(ty)
                        ),
                    )
                })?
            }
            "ref" => {
                let target = c.attr("name").unwrap_or("");
                let Some(ct) = target.strip_suffix(".content").filter(|t| is_valid_name(t)) else {
                    return Err(self.err(
                        c.line,
                        format!("child '{name}' must <ref> a type's content (\"T.content\")"),
                    ));
                };
                if indexed {
                    return Err(self.err(n.line, format!("child '{name}' cannot be indexed")));
                }
                self.t.children.push(ChildDef {
                    name: name.to_string(),
                    type_name: ct.to_string(),
                    required,
                    multi,
                    line: n.line,
                });
                return Ok(());
            }
            other => {
                return Err(self.err(
                    c.line,
                    format!("unsupported content <{other}> in element '{name}'"),
                ));
            }
        };
        if indexed && (multi || datatype == DataType::Binary) {
            return Err(self.err(
                n.line,
                format!(
                    "property '{name}': only single-valued, non-binary properties can be indexed"
                ),
            ));
        }
        self.t.props.push(PropDef {
            name: name.to_string(),
            datatype,
            required,
            multi,
            indexed,
            line: n.line,
        });
        Ok(())
    }
}
