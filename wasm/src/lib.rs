//! `allpeers-wasm`: the data model for the browser extension, with the same code as the host.
//!
//! Every method takes and returns JSON text, so the JS side needs no generated type glue:
//! `{"ok": true, ...}` on success, `{"ok": false, "error": ...}` or `"errors": [...]` otherwise.
//! Build: `wasm/build.sh` (cargo for wasm32-unknown-unknown + wasm-bindgen-cli at the version
//! pinned in Cargo.lock); tests: `node --test wasm/test/`.

use allpeers_model::query::Query;
use allpeers_model::resource::Resource;
use allpeers_model::schema::Registry;
use serde_json::{Value as Json, json};
use wasm_bindgen::prelude::*;

/// Upper bound on JSON input accepted from the page.
const MAX_INPUT: usize = 32 << 20;

fn too_big(s: &str) -> Option<String> {
    (s.len() > MAX_INPUT).then(|| {
        json!({"ok": false, "error": format!("input larger than {MAX_INPUT} bytes")}).to_string()
    })
}

/// A type registry: the built-in schemas plus any registered at run time.
#[wasm_bindgen]
pub struct Schemas {
    reg: Registry,
}

impl Default for Schemas {
    fn default() -> Self {
        Schemas::new()
    }
}

#[wasm_bindgen]
impl Schemas {
    /// A registry holding the built-in types.
    #[wasm_bindgen(constructor)]
    pub fn new() -> Schemas {
        Schemas {
            reg: Registry::builtin(),
        }
    }

    /// Registers a schema file: `{"ok":true,"types":[…]}` or `{"ok":false,"error":{"file","line","reason"}}`.
    pub fn register(&mut self, file: &str, text: &str) -> String {
        match self.reg.register(file, text) {
            Ok(types) => json!({"ok": true, "types": types}).to_string(),
            Err(e) => json!({"ok": false, "error": e}).to_string(),
        }
    }

    /// Names of all non-anonymous types, sorted.
    #[wasm_bindgen(js_name = typeNames)]
    pub fn type_names(&self) -> String {
        let names: Vec<&str> = self
            .reg
            .types()
            .filter(|t| !t.anonymous)
            .map(|t| t.name.as_str())
            .collect();
        json!(names).to_string()
    }

    /// A type's description: title, lineage, properties (inherited first), children, metadata.
    pub fn describe(&self, type_name: &str) -> String {
        let Some(t) = self.reg.get(type_name) else {
            return json!({"ok": false, "error": format!("unknown type '{}'", type_name.chars().take(80).collect::<String>())}).to_string();
        };
        let props: Vec<Json> = self
            .reg
            .all_props(type_name)
            .into_iter()
            .map(|(owner, p)| {
                json!({"name": p.name, "datatype": p.datatype, "required": p.required, "multi": p.multi,
                       "indexed": p.indexed, "declaredBy": owner.name})
            })
            .collect();
        json!({
            "ok": true,
            "name": t.name,
            "title": self.reg.title(type_name),
            "parent": t.parent,
            "anonymous": t.anonymous,
            "lineage": self.reg.chain(type_name).iter().map(|t| t.name.clone()).collect::<Vec<_>>(),
            "properties": props,
            "children": self.reg.all_children(type_name),
            "metadata": self.reg.meta_props(type_name),
        })
        .to_string()
    }

    /// Validates a resource (JSON form): `{"ok":true,"resource":<normalised>}` or
    /// `{"ok":false,"errors":[{"path","reason"}]}`.
    pub fn validate(&self, resource_json: &str) -> String {
        if let Some(e) = too_big(resource_json) {
            return e;
        }
        let mut r: Resource = match serde_json::from_str(resource_json) {
            Ok(r) => r,
            Err(e) => return json!({"ok": false, "errors": [{"path": "", "reason": format!("malformed resource JSON: {e}")}]}).to_string(),
        };
        match self.reg.validate(&mut r) {
            Ok(()) => json!({"ok": true, "resource": r}).to_string(),
            Err(e) => json!({"ok": false, "errors": e.0}).to_string(),
        }
    }

    /// The generic render description of a resource (validated first).
    pub fn render(&self, resource_json: &str) -> String {
        if let Some(e) = too_big(resource_json) {
            return e;
        }
        let mut r: Resource = match serde_json::from_str(resource_json) {
            Ok(r) => r,
            Err(e) => {
                return json!({"ok": false, "error": format!("malformed resource JSON: {e}")})
                    .to_string();
            }
        };
        if let Err(e) = self.reg.validate(&mut r) {
            return json!({"ok": false, "errors": e.0}).to_string();
        }
        json!({"ok": true, "view": self.reg.render(&r)}).to_string()
    }

    /// The resource as XML (validated first), valid against its type's RELAX NG schema.
    #[wasm_bindgen(js_name = toXml)]
    pub fn to_xml(&self, resource_json: &str) -> String {
        if let Some(e) = too_big(resource_json) {
            return e;
        }
        let mut r: Resource = match serde_json::from_str(resource_json) {
            Ok(r) => r,
            Err(e) => {
                return json!({"ok": false, "error": format!("malformed resource JSON: {e}")})
                    .to_string();
            }
        };
        match self.reg.validate(&mut r) {
            Ok(()) => json!({"ok": true, "xml": self.reg.to_xml(&r)}).to_string(),
            Err(e) => json!({"ok": false, "errors": e.0}).to_string(),
        }
    }

    /// Checks a query's JSON form against the registry.
    #[wasm_bindgen(js_name = checkQuery)]
    pub fn check_query(&self, query_json: &str) -> String {
        match Query::from_json(query_json).and_then(|q| self.reg.check_query(&q).map(|_| q)) {
            Ok(q) => json!({"ok": true, "query": q}).to_string(),
            Err(e) => json!({"ok": false, "error": e}).to_string(),
        }
    }
}

/// The crate's version, for the extension's about page.
#[wasm_bindgen]
pub fn version() -> String {
    env!("CARGO_PKG_VERSION").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn j(s: String) -> Json {
        serde_json::from_str(&s).unwrap()
    }

    #[test]
    fn validate_render_and_errors() {
        let s = Schemas::new();
        let img = r#"{"id":"i1","type":"Image","properties":{"owner":"me","created":"2026-01-01T00:00:00Z","modified":"2026-01-01T00:00:00Z","name":"a.png","width":3}}"#;
        let v = j(s.validate(img));
        assert_eq!(v["ok"], true);
        assert_eq!(
            v["resource"]["properties"]["created"],
            "2026-01-01T00:00:00.000Z"
        );
        let v = j(s.render(img));
        assert_eq!(v["view"]["title"], "a.png");
        let v = j(s.validate(r#"{"id":"i1","type":"Image","properties":{"width":"x"}}"#));
        assert_eq!(v["ok"], false);
        assert!(
            v["errors"]
                .as_array()
                .unwrap()
                .iter()
                .any(|e| e["path"] == "properties.width")
        );
        let v = j(s.validate("{not json"));
        assert_eq!(v["ok"], false);
        assert!(
            j(s.to_xml(img))["xml"]
                .as_str()
                .unwrap()
                .contains("<width>3</width>")
        );
    }

    #[test]
    fn register_reports_file_line_reason() {
        let mut s = Schemas::new();
        let v = j(s.register(
            "Bad.rng",
            "<grammar xmlns=\"http://relaxng.org/ns/structure/1.0\">\n<oops>\n</grammar>",
        ));
        assert_eq!(v["ok"], false);
        assert_eq!(v["error"]["file"], "Bad.rng");
        assert_eq!(v["error"]["line"], 3);
        assert!(
            j(s.describe("Image"))["properties"]
                .as_array()
                .unwrap()
                .len()
                > 10
        );
        assert_eq!(
            j(s.check_query(
                r#"{"type":"File","where":[{"prop":{"name":"size","op":">","value":1}}]}"#
            ))["ok"],
            true
        );
        assert_eq!(
            j(s.check_query(
                r#"{"type":"File","where":[{"prop":{"name":"nope","op":">","value":1}}]}"#
            ))["ok"],
            false
        );
    }
}
