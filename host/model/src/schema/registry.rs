//! The type registry: every known type, inheritance, and the checks that need all files.

use std::collections::{BTreeMap, BTreeSet};

use super::{BUILTIN_FILES, ChildDef, PropDef, ROOT_TYPE, SchemaError, TypeDef, parse_schema};

/// All registered types. Registration is atomic: a refused file leaves the registry unchanged.
#[derive(Debug, Clone, Default)]
pub struct Registry {
    types: BTreeMap<String, TypeDef>,
    /// Schema sources by file name, in registration order (for persisting and re-loading).
    files: Vec<(String, String)>,
}

impl Registry {
    /// An empty registry (not even `Resource`).
    pub fn new() -> Self {
        Registry::default()
    }

    /// A registry holding the built-in types of `schemas/`.
    pub fn builtin() -> Self {
        let mut r = Registry::new();
        #[allow(clippy::expect_used)]
        r.register_all(BUILTIN_FILES)
            .expect("the built-in schemas are valid");
        r
    }

    /// Registers one schema file; returns the names of the types it declares.
    pub fn register(&mut self, file: &str, text: &str) -> Result<Vec<String>, SchemaError> {
        self.register_all(&[(file, text)])
    }

    /// Registers several files at once (in any order: parents may come after children). All or
    /// nothing: on error the registry is unchanged.
    pub fn register_all(&mut self, files: &[(&str, &str)]) -> Result<Vec<String>, SchemaError> {
        let mut next = self.clone();
        let mut names = Vec::new();
        for (file, text) in files {
            if !is_valid_file_name(file) {
                return Err(SchemaError::new(
                    file,
                    0,
                    "schema file names are 1-128 characters of letters, digits, '.', '_' or '-'",
                ));
            }
            let parsed = parse_schema(file, text)?;
            // A re-registered file replaces its previous version.
            let old_names: Vec<String> = next
                .types
                .values()
                .filter(|t| t.file == *file)
                .map(|t| t.name.clone())
                .collect();
            for t in &parsed {
                if let Some(existing) = next
                    .types
                    .values()
                    .find(|e| e.name.eq_ignore_ascii_case(&t.name) && e.file != *file)
                {
                    return Err(SchemaError::new(
                        file,
                        t.line,
                        format!(
                            "type '{}' is already declared by {} ('{}')",
                            t.name, existing.file, existing.name
                        ),
                    ));
                }
            }
            for old in &old_names {
                let Some(new) = parsed.iter().find(|t| &t.name == old) else {
                    return Err(SchemaError::new(
                        file,
                        0,
                        format!(
                            "type '{old}' was declared by an earlier version of {file} and would be lost"
                        ),
                    ));
                };
                if let Some(prev) = self.types.get(old) {
                    check_evolution(prev, new)?;
                }
                next.types.remove(old);
            }
            for t in parsed {
                names.push(t.name.clone());
                next.types.insert(t.name.clone(), t);
            }
            next.files.retain(|(f, _)| f != file);
            next.files.push((file.to_string(), text.to_string()));
        }
        next.check_all(files.iter().map(|(f, _)| *f).collect())?;
        *self = next;
        Ok(names)
    }

    /// Whole-registry checks: parents, cycles, inherited-name collisions, child and metadata types.
    fn check_all(&self, new_files: BTreeSet<&str>) -> Result<(), SchemaError> {
        // Check the new files' types first, so errors point at the file being registered.
        let mut order: Vec<&TypeDef> = self.types.values().collect();
        order.sort_by_key(|t| !new_files.contains(t.file.as_str()));
        for t in order {
            let err = |line: u32, r: String| SchemaError::new(&t.file, line, r);
            if let Some(p) = &t.parent {
                match self.types.get(p) {
                    None => {
                        return Err(err(
                            t.line,
                            format!("missing parent type '{p}' of '{}'", t.name),
                        ));
                    }
                    Some(pt) if pt.anonymous => {
                        return Err(err(
                            t.line,
                            format!("'{}' cannot extend anonymous type '{p}'", t.name),
                        ));
                    }
                    _ => {}
                }
            }
            // Walk up: cycles and the root.
            let mut seen = vec![t.name.as_str()];
            let mut cur = t;
            while let Some(p) = &cur.parent {
                if seen.contains(&p.as_str()) {
                    seen.push(p);
                    return Err(err(
                        t.line,
                        format!("cycle in inheritance: {}", seen.join(" -> ")),
                    ));
                }
                seen.push(p);
                match self.types.get(p) {
                    Some(pt) => cur = pt,
                    None => {
                        return Err(err(
                            cur.line,
                            format!("missing parent type '{p}' of '{}'", cur.name),
                        ));
                    }
                }
            }
            if !t.anonymous && cur.name != ROOT_TYPE {
                return Err(err(
                    t.line,
                    format!("type '{}' does not derive from {ROOT_TYPE}", t.name),
                ));
            }
            // Names unique along the chain (case-insensitively: they become SQL columns).
            let mut names: BTreeMap<String, (String, u32)> = BTreeMap::new();
            for a in self.chain(&t.name) {
                for (n, line) in a
                    .props
                    .iter()
                    .map(|p| (&p.name, p.line))
                    .chain(a.children.iter().map(|c| (&c.name, c.line)))
                {
                    if let Some((owner, _)) =
                        names.insert(n.to_ascii_lowercase(), (a.name.clone(), line))
                    {
                        let (file, line) = if a.name == t.name {
                            (&t.file, line)
                        } else {
                            (&t.file, t.line)
                        };
                        return Err(SchemaError::new(
                            file,
                            line,
                            format!(
                                "duplicate property '{n}': '{}' already has it from '{owner}'",
                                t.name
                            ),
                        ));
                    }
                }
            }
            for c in &t.children {
                match self.types.get(&c.type_name) {
                    None => {
                        return Err(err(
                            c.line,
                            format!(
                                "child '{}' refers to unknown type '{}'",
                                c.name, c.type_name
                            ),
                        ));
                    }
                    Some(ct) if !ct.anonymous => {
                        return Err(err(
                            c.line,
                            format!(
                                "child '{}' must be of an anonymous type, '{}' is not",
                                c.name, c.type_name
                            ),
                        ));
                    }
                    _ => {}
                }
            }
            if let Some(m) = &t.metadata {
                match self.types.get(m) {
                    None => {
                        return Err(err(
                            t.line,
                            format!("metadata type '{m}' of '{}' is unknown", t.name),
                        ));
                    }
                    Some(mt) if !mt.anonymous || !mt.children.is_empty() => {
                        return Err(err(
                            t.line,
                            format!(
                                "metadata type '{m}' must be anonymous and hold properties only"
                            ),
                        ));
                    }
                    _ => {}
                }
            }
        }
        // Anonymous types must not contain themselves (children nest finitely).
        for t in self.types.values().filter(|t| t.anonymous) {
            let mut stack = vec![(t.name.as_str(), vec![t.name.as_str()])];
            while let Some((cur, path)) = stack.pop() {
                if let Some(ct) = self.types.get(cur) {
                    for c in &ct.children {
                        if path.contains(&c.type_name.as_str()) {
                            return Err(SchemaError::new(
                                &t.file,
                                c.line,
                                format!(
                                    "anonymous type '{}' contains itself through child '{}'",
                                    t.name, c.name
                                ),
                            ));
                        }
                        let mut p = path.clone();
                        p.push(&c.type_name);
                        stack.push((&c.type_name, p));
                    }
                }
            }
        }
        Ok(())
    }

    pub fn get(&self, name: &str) -> Option<&TypeDef> {
        self.types.get(name)
    }

    pub fn types(&self) -> impl Iterator<Item = &TypeDef> {
        self.types.values()
    }

    /// Registered schema files, in registration order: (file name, source).
    pub fn files(&self) -> &[(String, String)] {
        &self.files
    }

    /// The inheritance chain from the root down to `name` (empty if unknown).
    pub fn chain(&self, name: &str) -> Vec<&TypeDef> {
        let mut out = Vec::new();
        let mut cur = self.types.get(name);
        while let Some(t) = cur {
            if out.iter().any(|o: &&TypeDef| o.name == t.name) {
                break;
            }
            out.push(t);
            cur = t.parent.as_deref().and_then(|p| self.types.get(p));
        }
        out.reverse();
        out
    }

    /// Whether `name` is `ancestor` or derives from it.
    pub fn is_a(&self, name: &str, ancestor: &str) -> bool {
        self.chain(name).iter().any(|t| t.name == ancestor)
    }

    /// `name` and every type deriving from it.
    pub fn subtypes(&self, name: &str) -> Vec<&TypeDef> {
        self.types
            .values()
            .filter(|t| self.is_a(&t.name, name))
            .collect()
    }

    /// A property of `type_name` or of one of its ancestors, with the type that declares it.
    pub fn prop(&self, type_name: &str, prop: &str) -> Option<(&TypeDef, &PropDef)> {
        self.chain(type_name)
            .into_iter()
            .find_map(|t| t.prop(prop).map(|p| (t, p)))
    }

    /// A child slot of `type_name` or of one of its ancestors.
    pub fn child(&self, type_name: &str, child: &str) -> Option<&ChildDef> {
        self.chain(type_name)
            .into_iter()
            .find_map(|t| t.child(child))
    }

    /// Every property of `type_name`, inherited first, with its declaring type.
    pub fn all_props(&self, type_name: &str) -> Vec<(&TypeDef, &PropDef)> {
        self.chain(type_name)
            .into_iter()
            .flat_map(|t| t.props.iter().map(move |p| (t, p)))
            .collect()
    }

    /// Every child slot of `type_name`, inherited first.
    pub fn all_children(&self, type_name: &str) -> Vec<&ChildDef> {
        self.chain(type_name)
            .into_iter()
            .flat_map(|t| t.children.iter())
            .collect()
    }

    /// The local-metadata properties of `type_name` (from the metadata types along its chain).
    pub fn meta_props(&self, type_name: &str) -> Vec<&PropDef> {
        self.chain(type_name)
            .into_iter()
            .filter_map(|t| t.metadata.as_deref().and_then(|m| self.types.get(m)))
            .flat_map(|m| m.props.iter())
            .collect()
    }

    /// A local-metadata property by name, looked up on the type, then on its subtypes.
    pub fn meta_prop(&self, type_name: &str, name: &str) -> Option<&PropDef> {
        self.meta_props(type_name)
            .into_iter()
            .find(|p| p.name == name)
            .or_else(|| {
                self.subtypes(type_name)
                    .into_iter()
                    .filter_map(|t| t.metadata.as_deref().and_then(|m| self.types.get(m)))
                    .find_map(|m| m.prop(name))
            })
    }

    /// Human title of a type: its `ap:title`, else the nearest ancestor's, else its name.
    pub fn title(&self, type_name: &str) -> String {
        self.get(type_name)
            .and_then(|t| t.title.clone())
            .unwrap_or_else(|| type_name.to_string())
    }
}

fn is_valid_file_name(f: &str) -> bool {
    !f.is_empty()
        && f.len() <= 128
        && f.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
}

/// A changed version of a type may add optional properties and children; it may not change
/// or drop what stored data relies on.
fn check_evolution(prev: &TypeDef, new: &TypeDef) -> Result<(), SchemaError> {
    let err = |line: u32, r: String| SchemaError::new(&new.file, line, r);
    if prev.parent != new.parent {
        return Err(err(
            new.line,
            format!(
                "type '{}' cannot change its parent (was {:?})",
                new.name, prev.parent
            ),
        ));
    }
    if prev.anonymous != new.anonymous {
        return Err(err(
            new.line,
            format!("type '{}' cannot change whether it is anonymous", new.name),
        ));
    }
    for p in &prev.props {
        match new.prop(&p.name) {
            None => {
                return Err(err(
                    new.line,
                    format!(
                        "property '{}' of '{}' would be lost (a new version may only add properties)",
                        p.name, new.name
                    ),
                ));
            }
            Some(np) if np.datatype != p.datatype || np.multi != p.multi => {
                return Err(err(
                    np.line,
                    format!(
                        "property '{}' of '{}' cannot change from {}{} to {}{}",
                        p.name,
                        new.name,
                        p.datatype.name(),
                        if p.multi { " list" } else { "" },
                        np.datatype.name(),
                        if np.multi { " list" } else { "" }
                    ),
                ));
            }
            Some(np) if np.required && !p.required => {
                return Err(err(
                    np.line,
                    format!(
                        "property '{}' of '{}' cannot become required: stored resources lack it",
                        p.name, new.name
                    ),
                ));
            }
            _ => {}
        }
    }
    for np in &new.props {
        if prev.prop(&np.name).is_none() && np.required && !new.anonymous {
            return Err(err(
                np.line,
                format!(
                    "new property '{}' of '{}' must be optional: stored resources lack it",
                    np.name, new.name
                ),
            ));
        }
    }
    for c in &prev.children {
        match new.child(&c.name) {
            Some(nc) if nc.type_name == c.type_name && nc.multi == c.multi => {}
            _ => {
                return Err(err(
                    new.line,
                    format!(
                        "child '{}' of '{}' cannot be removed or changed",
                        c.name, new.name
                    ),
                ));
            }
        }
    }
    Ok(())
}
