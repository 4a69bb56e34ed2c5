//! The TypeScript generated from the contract (feature `ts`):
//! - the extension's `extension/src/lib/api.gen.ts` ([`render`]): every type the methods and
//!   events use, the method and event maps, the app-facing maps (the extension relays app
//!   sessions), and the error codes;
//! - the SDK's `sdk/src/api.gen.ts` ([`render_sdk`]): what a web page may call and hear — the
//!   app-facing methods and topics with their scopes, the scopes, the codes an app may see, and
//!   the types they use.
//!
//! `tests/typescript.rs` checks that the checked-in files are what this renders
//! (`ALLPEERS_BLESS=1` rewrites them), so a change on one side only fails CI.

use std::any::TypeId;
use std::collections::{BTreeMap, HashSet};

use ts_rs::{Config, TS, TypeVisitor};

use super::apps::{APP_ERRORS, Scope};
use super::contract::{
    AppMethod, AppMethodVisitor, AppTopic, AppTopicVisitor, Method, MethodVisitor, NoParams,
    Topic, TopicVisitor, visit_app_methods, visit_app_topics, visit_methods, visit_topics,
};
use super::{API_VERSION, ErrorCode};
use crate::PeerId;
use crate::resource::Value;

/// Where the extension's generated file lives, from the repository's root.
pub const OUTPUT: &str = "extension/src/lib/api.gen.ts";
/// Where the SDK's generated file lives, from the repository's root.
pub const SDK_OUTPUT: &str = "sdk/src/api.gen.ts";

impl TS for PeerId {
    type WithoutGenerics = PeerId;
    type OptionInnerType = PeerId;
    fn docs() -> Option<String> {
        Some(doc(
            "A node's identity: `ap` and the base32 of its Ed25519 public key.",
        ))
    }
    fn name(_: &Config) -> String {
        "PeerId".into()
    }
    fn inline(_: &Config) -> String {
        "string".into()
    }
    fn decl(_: &Config) -> String {
        "type PeerId = string;".into()
    }
    fn decl_concrete(cfg: &Config) -> String {
        Self::decl(cfg)
    }
    fn output_path() -> Option<std::path::PathBuf> {
        Some("PeerId.ts".into())
    }
}

impl TS for Value {
    type WithoutGenerics = Value;
    type OptionInnerType = Value;
    fn docs() -> Option<String> {
        Some(doc(
            "A property value: dates are ISO 8601 strings, binary values base64 strings.",
        ))
    }
    fn name(_: &Config) -> String {
        "PropertyValue".into()
    }
    fn inline(_: &Config) -> String {
        "null | boolean | number | string | Array<PropertyValue>".into()
    }
    fn decl(cfg: &Config) -> String {
        format!("type PropertyValue = {};", Self::inline(cfg))
    }
    fn decl_concrete(cfg: &Config) -> String {
        Self::decl(cfg)
    }
    fn output_path() -> Option<std::path::PathBuf> {
        Some("PropertyValue.ts".into())
    }
}

impl TS for NoParams {
    type WithoutGenerics = NoParams;
    type OptionInnerType = NoParams;
    fn docs() -> Option<String> {
        Some(doc("Params of a method that takes none."))
    }
    fn name(_: &Config) -> String {
        "NoParams".into()
    }
    fn inline(_: &Config) -> String {
        "Record<string, never>".into()
    }
    fn decl(cfg: &Config) -> String {
        format!("type NoParams = {};", Self::inline(cfg))
    }
    fn decl_concrete(cfg: &Config) -> String {
        Self::decl(cfg)
    }
    fn output_path() -> Option<std::path::PathBuf> {
        Some("NoParams.ts".into())
    }
}

fn doc(text: &str) -> String {
    format!("/**\n * {text}\n */\n")
}

fn config() -> Config {
    // Every integer of the API fits a JS number (ids, counts, unix ms).
    Config::new().with_large_int("number")
}

/// Collects the declarations of a type and everything it uses, once each.
struct Declarations<'a> {
    cfg: &'a Config,
    seen: HashSet<TypeId>,
    /// By TypeScript name: the file lists them in alphabetical order.
    decls: BTreeMap<String, String>,
}

impl TypeVisitor for Declarations<'_> {
    fn visit<T: TS + 'static + ?Sized>(&mut self) {
        if !self.seen.insert(TypeId::of::<T>()) {
            return;
        }
        if T::output_path().is_none() {
            // A primitive or a wrapper (`Vec<T>`, `Option<T>`): no declaration of its own,
            // but what it wraps may have one.
            T::visit_dependencies(self);
            T::visit_generics(self);
            return;
        }
        let mut text = T::docs().unwrap_or_default();
        text.push_str("export ");
        text.push_str(&layout(&T::decl(self.cfg)));
        // TypeScript has one namespace where Rust has a module per area: two different types of one
        // name would leave one silently declared as the other.
        let name = T::ident(self.cfg);
        assert!(
            self.decls.get(&name).is_none_or(|other| *other == text),
            "two API types are named {name} in TypeScript: rename one (e.g. after its area)"
        );
        self.decls.insert(name, text);
        T::visit_dependencies(self);
    }
}

impl<'a> Declarations<'a> {
    fn new(cfg: &'a Config) -> Self {
        Declarations {
            cfg,
            seen: HashSet::new(),
            decls: BTreeMap::new(),
        }
    }

    /// Declares `T` (when it has a declaration) and what it uses; the name to write.
    fn use_type<T: TS + 'static + ?Sized>(&mut self) -> String {
        self.visit::<T>();
        T::name(self.cfg)
    }
}

struct Methods<'a, 'b> {
    decls: &'a mut Declarations<'b>,
    entries: Vec<String>,
}

impl MethodVisitor for Methods<'_, '_> {
    fn visit<M: Method + 'static>(&mut self) {
        let params = self.decls.use_type::<M::Params>();
        let result = self.decls.use_type::<M::Result>();
        self.entries.push(format!(
            "  /** {} */\n  \"{}\": {{ params: {params}; result: {result} }};\n",
            M::DOC.trim(),
            M::NAME
        ));
    }
}

struct Topics<'a, 'b> {
    decls: &'a mut Declarations<'b>,
    entries: Vec<String>,
}

impl TopicVisitor for Topics<'_, '_> {
    fn visit<T: Topic + 'static>(&mut self) {
        let data = self.decls.use_type::<T::Data>();
        self.entries.push(format!(
            "  /** {} */\n  \"{}\": {data};\n",
            T::DOC.trim(),
            T::NAME
        ));
    }
}

struct AppMethods<'a, 'b> {
    decls: &'a mut Declarations<'b>,
    entries: Vec<String>,
    scopes: Vec<String>,
}

impl AppMethodVisitor for AppMethods<'_, '_> {
    fn visit<M: AppMethod + 'static>(&mut self) {
        let params = self.decls.use_type::<M::Params>();
        let result = self.decls.use_type::<M::Result>();
        let scope = M::SCOPE.map_or("null".to_string(), |s| format!("\"{s}\""));
        self.entries.push(format!(
            "  /** {} (scope: {}) */\n  \"{}\": {{ params: {params}; result: {result} }};\n",
            M::DOC.trim(),
            M::SCOPE.map_or("none", Scope::as_str),
            M::NAME
        ));
        self.scopes
            .push(format!("  \"{}\": {scope},\n", M::NAME));
    }
}

struct AppTopics<'a, 'b> {
    decls: &'a mut Declarations<'b>,
    entries: Vec<String>,
    scopes: Vec<String>,
}

impl AppTopicVisitor for AppTopics<'_, '_> {
    fn visit<T: AppTopic + 'static>(&mut self) {
        let data = self.decls.use_type::<T::Data>();
        self.entries.push(format!(
            "  /** {} (scope: {}) */\n  \"{}\": {data};\n",
            T::DOC.trim(),
            T::SCOPE,
            T::NAME
        ));
        self.scopes
            .push(format!("  \"{}\": \"{}\",\n", T::NAME, T::SCOPE));
    }
}

/// The app-facing part: `Scope`, `SCOPES`, `AppMethods`, `APP_METHOD_SCOPES`, `AppEvents`,
/// `APP_TOPIC_SCOPES` (the types they use go to `decls`).
fn app_section(decls: &mut Declarations<'_>) -> String {
    let scope = decls.use_type::<Scope>();
    let mut methods = AppMethods {
        decls,
        entries: Vec::new(),
        scopes: Vec::new(),
    };
    visit_app_methods(&mut methods);
    let (method_entries, method_scopes) = (methods.entries, methods.scopes);
    let mut topics = AppTopics {
        decls,
        entries: Vec::new(),
        scopes: Vec::new(),
    };
    visit_app_topics(&mut topics);
    let (topic_entries, topic_scopes) = (topics.entries, topics.scopes);

    let mut out = String::new();
    out.push_str("/** Every scope an app may be granted. */\nexport const SCOPES: readonly ");
    out.push_str(&scope);
    out.push_str("[] = [");
    let names: Vec<String> = Scope::ALL.iter().map(|s| format!("\"{s}\"")).collect();
    out.push_str(&names.join(", "));
    out.push_str("];\n\n");
    out.push_str(
        "/** The methods served to an app session: their params and result. */\nexport interface AppMethods {\n",
    );
    out.extend(method_entries);
    out.push_str("}\n\n");
    out.push_str(
        "export type AppMethodName = keyof AppMethods;\n\
         export type AppParamsOf<M extends AppMethodName> = AppMethods[M][\"params\"];\n\
         export type AppResultOf<M extends AppMethodName> = AppMethods[M][\"result\"];\n\n",
    );
    out.push_str(&format!(
        "/** The scope each app method needs (`null`: none). */\n\
         export const APP_METHOD_SCOPES: {{ readonly [M in AppMethodName]: {scope} | null }} = {{\n"
    ));
    out.extend(method_scopes);
    out.push_str("};\n\n");
    out.push_str(
        "/** The event topics an app session may receive: the `data` of their events. */\nexport interface AppEvents {\n",
    );
    out.extend(topic_entries);
    out.push_str("}\n\nexport type AppTopicName = keyof AppEvents;\n\n");
    out.push_str(&format!(
        "/** The scope each app topic needs. */\n\
         export const APP_TOPIC_SCOPES: {{ readonly [T in AppTopicName]: {scope} }} = {{\n"
    ));
    out.extend(topic_scopes);
    out.push_str("};\n\n");
    out
}

/// The SDK's generated file.
pub fn render_sdk() -> String {
    let cfg = config();
    let mut decls = Declarations::new(&cfg);
    let apps = app_section(&mut decls);
    let mut out = String::new();
    out.push_str(
        "// Generated from allpeers-model's api::contract (the app-facing tables) by\n\
         // host/model/tests/typescript.rs — do not edit.\n\
         // Regenerate: ALLPEERS_BLESS=1 cargo test -p allpeers-model --features ts --test typescript\n\
         /* eslint-disable */\n\n",
    );
    out.push_str(&format!(
        "/** The local API version this file describes. */\n\
         export const API_VERSION = {API_VERSION};\n\n"
    ));
    out.push_str(&apps);
    out.push_str(&error_codes(
        APP_ERRORS,
        "The error codes an app may see (`error.code`), by name.",
    ));
    out.push('\n');
    push_decls(&mut out, &decls);
    out
}

/// The whole generated file.
pub fn render() -> String {
    let cfg = config();
    let mut decls = Declarations::new(&cfg);
    let mut methods = Methods {
        decls: &mut decls,
        entries: Vec::new(),
    };
    visit_methods(&mut methods);
    let method_entries = methods.entries;
    let mut topics = Topics {
        decls: &mut decls,
        entries: Vec::new(),
    };
    visit_topics(&mut topics);
    let topic_entries = topics.entries;

    let mut out = String::new();
    out.push_str(
        "// Generated from allpeers-model's api::contract by host/model/tests/typescript.rs — do not edit.\n\
         // Regenerate: ALLPEERS_BLESS=1 cargo test -p allpeers-model --features ts --test typescript\n\
         /* eslint-disable */\n\n",
    );
    out.push_str(&format!(
        "/** The local API version this file describes (`hello`'s `api_version`). */\n\
         export const API_VERSION = {API_VERSION};\n\n"
    ));
    out.push_str("/** Every method: its params and its result. */\nexport interface Methods {\n");
    out.extend(method_entries);
    out.push_str("}\n\n");
    out.push_str(
        "export type MethodName = keyof Methods;\n\
         export type ParamsOf<M extends MethodName> = Methods[M][\"params\"];\n\
         export type ResultOf<M extends MethodName> = Methods[M][\"result\"];\n\n",
    );
    out.push_str(
        "/** Every event topic: the `data` of its events. */\nexport interface Events {\n",
    );
    out.extend(topic_entries);
    out.push_str("}\n\nexport type TopicName = keyof Events;\n\n");
    out.push_str(&app_section(&mut decls));
    out.push_str(&error_codes(
        ErrorCode::ALL,
        "The daemon's error codes (`error.code`), by name.",
    ));
    out.push('\n');
    push_decls(&mut out, &decls);
    out
}

/// The declarations, then one final newline.
fn push_decls(out: &mut String, decls: &Declarations<'_>) {
    for decl in decls.decls.values() {
        out.push_str(decl);
        out.push_str("\n\n");
    }
    out.truncate(out.trim_end().len());
    out.push('\n');
}

/// Lays an object type out one member a line, each under its doc comment: ts-rs writes
/// `type X = { /** doc */ a: string, b: number, };` on one line. Anything else (unions,
/// aliases) is left as it is.
fn layout(decl: &str) -> String {
    let Some((head, body)) = decl.split_once(" = { ") else {
        return decl.to_string();
    };
    let Some(body) = body.strip_suffix(" };") else {
        return decl.to_string();
    };
    let Some(members) = split_members(body) else {
        return decl.to_string();
    };
    let mut out = format!("{head} = {{\n");
    for member in members {
        let (doc, field) = match member.rsplit_once("*/") {
            Some((doc, field)) if member.starts_with("/**") => (Some(doc), field.trim()),
            _ => (None, member.as_str()),
        };
        if let Some(doc) = doc {
            let lines: Vec<&str> = doc
                .trim_start_matches("/**")
                .lines()
                .map(|l| l.trim().trim_start_matches('*').trim())
                .filter(|l| !l.is_empty())
                .collect();
            if let [line] = lines.as_slice() {
                out.push_str(&format!("  /** {line} */\n"));
            } else {
                out.push_str("  /**\n");
                for line in lines {
                    out.push_str(&format!("   * {line}\n"));
                }
                out.push_str("   */\n");
            }
        }
        out.push_str(&format!("  {field};\n"));
    }
    out.push_str("};");
    out
}

/// The members of an object type's body, split at its top-level commas (`None` when the
/// body is not one object: a brace closes early).
fn split_members(body: &str) -> Option<Vec<String>> {
    let mut members = Vec::new();
    let mut depth = 0i32;
    let mut current = String::new();
    let mut in_comment = false;
    let mut in_string = false;
    let chars: Vec<char> = body.chars().collect();
    for (i, &c) in chars.iter().enumerate() {
        current.push(c);
        if in_comment {
            in_comment = !(c == '/' && i > 0 && chars[i - 1] == '*');
            continue;
        }
        if in_string {
            in_string = c != '"';
            continue;
        }
        match c {
            '/' if chars.get(i + 1) == Some(&'*') => in_comment = true,
            '"' => in_string = true,
            '{' | '<' | '(' | '[' => depth += 1,
            '}' | '>' | ')' | ']' => {
                depth -= 1;
                if depth < 0 {
                    return None;
                }
            }
            ',' if depth == 0 => {
                current.pop();
                members.push(current.trim().to_string());
                current.clear();
            }
            _ => {}
        }
    }
    if !current.trim().is_empty() {
        members.push(current.trim().to_string());
    }
    Some(members)
}

fn error_codes(codes: &[ErrorCode], doc: &str) -> String {
    let mut out = format!("/** {doc} */\nexport const ErrorCode = {{\n");
    for code in codes {
        out.push_str(&format!(
            "  /** {}: {} */\n  {}: {},\n",
            code.name(),
            code.meaning(),
            code.ident(),
            code.code()
        ));
    }
    out.push_str("} as const;\n\nexport type ErrorCodeName = keyof typeof ErrorCode;\n");
    out
}
