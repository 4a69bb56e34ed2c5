//! App namespaces: a web app's own types are named in its origin's namespace
//! (`app_<hash>_<Name>`), the same on every node, so no app can declare a built-in type or
//! another app's; and the check a node makes of an app's schema file that arrives with a share
//! before it registers it.

use super::{ROOT_TYPE, TypeDef, parse_schema};

/// Base32 characters of the origin's hash in its namespace: 60 bits, so two origins meeting
/// by chance is out of reach, and the names stay short (type names are ≤ 64 characters).
const NAMESPACE_HASH: usize = 12;
const NAMESPACE_PREFIX: &str = "app_";
/// Longest schema file a share carries: a few KiB for any real app; far below an op's bound.
pub const MAX_CARRIED_SCHEMA_BYTES: usize = 64 * 1024;

/// The prefix of an origin's type names: `app_`, 12 base32 characters of BLAKE3(origin),
/// `_`. The same on every node, so an app's shared resources are its own on both sides.
pub fn namespace(origin: &str) -> String {
    let hash = blake3::hash(origin.as_bytes());
    let text = data_encoding::BASE32_NOPAD.encode(hash.as_bytes());
    format!("app_{}_", text[..NAMESPACE_HASH].to_ascii_lowercase())
}

/// Whether `type_name` is one of the namespace's types.
pub fn in_namespace(namespace: &str, type_name: &str) -> bool {
    type_name.len() > namespace.len() && type_name.starts_with(namespace)
}

/// The app namespace `name` (a type's or a schema file's) is in, if any: `app_`, 12 base32
/// characters (lowercase), `_`, and at least one character more.
pub fn namespace_of(name: &str) -> Option<&str> {
    let len = NAMESPACE_PREFIX.len() + NAMESPACE_HASH + 1;
    let hash = name.strip_prefix(NAMESPACE_PREFIX)?.get(..NAMESPACE_HASH)?;
    let well_formed = hash
        .bytes()
        .all(|b| b.is_ascii_lowercase() || (b'2'..=b'7').contains(&b))
        && name.as_bytes().get(len - 1) == Some(&b'_')
        && name.len() > len;
    well_formed.then(|| &name[..len])
}

/// Checks that every type a schema file declares is the app's: named in its namespace,
/// extending `Resource` or another of its types (never a built-in or another app's, whose
/// properties and resources it has no right to), its children and metadata of its own
/// anonymous types.
pub fn check_schema_types(namespace: &str, types: &[TypeDef]) -> Result<(), String> {
    if types.is_empty() {
        return Err("the schema declares no type".into());
    }
    for t in types {
        if !in_namespace(namespace, &t.name) {
            return Err(format!(
                "type '{}' is outside this app's namespace: name it {namespace}<Name>",
                t.name
            ));
        }
        if let Some(parent) = &t.parent
            && parent != ROOT_TYPE
            && !in_namespace(namespace, parent)
        {
            return Err(format!(
                "type '{}' extends '{parent}': an app's type extends Resource or another of its own types",
                t.name
            ));
        }
        let foreign = t
            .children
            .iter()
            .map(|c| &c.type_name)
            .chain(&t.metadata)
            .find(|used| !in_namespace(namespace, used));
        if let Some(used) = foreign {
            return Err(format!(
                "type '{}' uses '{used}': an app's children and metadata are of its own anonymous types",
                t.name
            ));
        }
    }
    Ok(())
}

/// Checks schema file `file` (`text`) that arrives with a share whose root is of type
/// `root_type`, before a node registers it: the root is an app's type, and the file and every
/// type it declares are in that app's namespace (see [`check_schema_types`]). So a share
/// speaks only for its own app: it can neither declare nor change a built-in type or another
/// app's. Changing a type already registered is left to the registry, which lets a new
/// version only add optional properties and children. Returns the types declared.
pub fn check_carried(root_type: &str, file: &str, text: &str) -> Result<Vec<TypeDef>, String> {
    let Some(ns) = namespace_of(root_type) else {
        return Err(format!(
            "the share's root is of type '{root_type}', not an app's: it carries no schema"
        ));
    };
    if !in_namespace(ns, file) {
        return Err(format!(
            "schema file '{file}' is outside the namespace of the share's app ({ns})"
        ));
    }
    if text.len() > MAX_CARRIED_SCHEMA_BYTES {
        return Err(format!(
            "schema file '{file}' is {} bytes, over {MAX_CARRIED_SCHEMA_BYTES}",
            text.len()
        ));
    }
    let types = parse_schema(file, text).map_err(|e| e.to_string())?;
    check_schema_types(ns, &types)?;
    Ok(types)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::ChildDef;

    #[test]
    fn a_namespace_is_fixed_per_origin_and_distinct() {
        let a = namespace("https://a.example");
        assert_eq!(a, namespace("https://a.example"));
        assert_ne!(a, namespace("https://b.example"));
        assert_eq!(a.len(), 4 + NAMESPACE_HASH + 1);
        assert!(a.starts_with("app_") && a.ends_with('_'));
        assert!(crate::schema::is_valid_name(&format!("{a}Todo")));
        assert!(in_namespace(&a, &format!("{a}Todo")));
        assert!(!in_namespace(&a, &a), "the bare prefix is no type");
        assert!(!in_namespace(&a, "Resource"));
        assert!(!in_namespace(
            &a,
            &format!("{}Todo", namespace("https://b.example"))
        ));
    }

    #[test]
    fn the_namespace_of_a_name_is_found_only_when_well_formed() {
        let a = namespace("https://a.example");
        assert_eq!(namespace_of(&format!("{a}Todo")), Some(a.as_str()));
        assert_eq!(namespace_of(&format!("{a}schema")), Some(a.as_str()));
        assert_eq!(namespace_of(&a), None, "the bare prefix");
        for name in [
            "Link",
            "Resource",
            "app_",
            "app_short_Todo",
            "app_ABCDEFGHIJKL_Todo",
            "app_abcdefghijk1_Todo",
            "app_abcdefghijklXTodo",
        ] {
            assert_eq!(namespace_of(name), None, "{name}");
        }
    }

    fn type_def(name: &str, parent: Option<&str>) -> TypeDef {
        TypeDef {
            name: name.into(),
            parent: parent.map(str::to_string),
            anonymous: parent.is_none(),
            title: None,
            metadata: None,
            props: vec![],
            children: vec![],
            file: "f".into(),
            line: 1,
        }
    }

    #[test]
    fn a_schema_declares_only_the_apps_types() {
        let ns = namespace("https://a.example");
        let other = namespace("https://b.example");
        let todo = format!("{ns}Todo");
        let ok = [
            type_def(&todo, Some("Resource")),
            type_def(&format!("{ns}Urgent"), Some(&todo)),
            type_def(&format!("{ns}Step"), None),
        ];
        assert_eq!(check_schema_types(&ns, &ok), Ok(()));
        assert!(check_schema_types(&ns, &[]).is_err());
        for bad in [
            type_def("Todo", Some("Resource")),
            type_def("Image", Some("File")),
            type_def(&format!("{other}Todo"), Some("Resource")),
            type_def(&format!("{ns}Photo"), Some("File")),
            type_def(&format!("{ns}Note"), Some(&format!("{other}Todo"))),
            type_def("Step", None),
            TypeDef {
                metadata: Some("FileMeta".into()),
                ..type_def(&format!("{ns}Doc"), Some("Resource"))
            },
            TypeDef {
                children: vec![ChildDef {
                    name: "steps".into(),
                    type_name: format!("{other}Step"),
                    required: false,
                    multi: true,
                    line: 1,
                }],
                ..type_def(&format!("{ns}Plan"), Some("Resource"))
            },
        ] {
            let name = bad.name.clone();
            assert!(
                check_schema_types(&ns, &[ok[0].clone(), bad]).is_err(),
                "{name}"
            );
        }
    }

    fn schema(ns: &str, name: &str, parent: &str) -> String {
        format!(
            r#"<grammar xmlns="http://relaxng.org/ns/structure/1.0" xmlns:ap="urn:allpeers:schema:1"
         ns="urn:allpeers:resource:1" datatypeLibrary="http://www.w3.org/2001/XMLSchema-datatypes">
  <include href="{parent}.rng"><start><ref name="{ns}{name}"/></start></include>
  <define name="{ns}{name}"><element name="{ns}{name}"><ref name="{ns}{name}.content"/></element></define>
  <define name="{ns}{name}.content" ap:type="{ns}{name}" ap:extends="{parent}">
    <interleave>
      <ref name="{parent}.content"/>
      <optional><element name="done"><data type="boolean"/></element></optional>
    </interleave>
  </define>
</grammar>"#
        )
    }

    #[test]
    fn a_carried_schema_speaks_only_for_the_share_roots_app() {
        let a = namespace("https://a.example");
        let b = namespace("https://b.example");
        let root = format!("{a}Todo");
        let file = format!("{a}schema");
        let types = check_carried(&root, &file, &schema(&a, "Todo", "Resource")).unwrap();
        assert_eq!(types[0].name, root);
        // A built-in root carries nothing.
        assert!(check_carried("List", &file, &schema(&a, "Todo", "Resource")).is_err());
        // Another app's file, or another app's type in the root app's file.
        assert!(
            check_carried(
                &root,
                &format!("{b}schema"),
                &schema(&b, "Todo", "Resource")
            )
            .is_err()
        );
        assert!(check_carried(&root, &file, &schema(&b, "Todo", "Resource")).is_err());
        // A built-in type's name or file, or a type extending a built-in other than Resource.
        assert!(check_carried(&root, &file, &schema("", "Link", "Resource")).is_err());
        assert!(check_carried(&root, "Link.rng", &schema(&a, "Todo", "Resource")).is_err());
        assert!(check_carried(&root, &file, &schema(&a, "Photo", "File")).is_err());
        // Bounded, and well-formed.
        let big = format!(
            "{}<!--{}-->",
            schema(&a, "Todo", "Resource"),
            "x".repeat(MAX_CARRIED_SCHEMA_BYTES)
        );
        assert!(check_carried(&root, &file, &big).is_err());
        assert!(check_carried(&root, &file, "<grammar").is_err());
    }
}
