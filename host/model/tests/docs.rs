//! `docs/api.md` against the model: its error table is generated from [`ErrorCode`], it names
//! every method and event topic of the contract (the app-facing methods too), and no code it mentions is unknown.
//! `ALLPEERS_BLESS=1` rewrites the generated table instead of comparing.

use std::path::PathBuf;

use allpeers_model::api::ErrorCode;
use allpeers_model::api::contract::{APP_METHOD_NAMES, METHOD_NAMES, TOPIC_NAMES};

const BEGIN: &str = "<!-- error codes: generated from allpeers_model::api::ErrorCode -->\n";
const END: &str = "<!-- end of error codes -->";

fn api_md() -> (PathBuf, String) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/api.md");
    let text = std::fs::read_to_string(&path).expect("read docs/api.md");
    (path, text)
}

fn error_table() -> String {
    let mut out = String::from("| code | name | meaning |\n|---|---|---|\n");
    for code in ErrorCode::ALL {
        out.push_str(&format!(
            "| {} | {} (`{}`) | {} |\n",
            code.code(),
            code.name(),
            code.ident(),
            code.meaning()
        ));
    }
    out
}

#[test]
fn the_error_table_is_generated_from_the_model() {
    let (path, text) = api_md();
    let start = text
        .find(BEGIN)
        .expect("docs/api.md has the error table's markers")
        + BEGIN.len();
    let end = start + text[start..].find(END).expect("the end marker");
    let fresh = error_table();
    if std::env::var_os("ALLPEERS_BLESS").is_some() {
        let updated = format!("{}{fresh}{}", &text[..start], &text[end..]);
        std::fs::write(&path, updated).expect("write docs/api.md");
        return;
    }
    assert_eq!(
        &text[start..end],
        fresh,
        "docs/api.md's error table is stale: ALLPEERS_BLESS=1 cargo test -p allpeers-model --test docs"
    );
}

#[test]
fn every_method_and_topic_is_documented() {
    let (_, text) = api_md();
    let missing: Vec<&str> = METHOD_NAMES
        .iter()
        .chain(TOPIC_NAMES)
        .chain(APP_METHOD_NAMES)
        .filter(|name| !text.contains(&format!("`{name}`")))
        .copied()
        .collect();
    assert!(missing.is_empty(), "not in docs/api.md: {missing:?}");
}

#[test]
fn every_code_the_docs_mention_is_in_the_table() {
    let (_, text) = api_md();
    let unknown: Vec<i32> = text
        .split(|c: char| c != '-' && !c.is_ascii_digit())
        .filter(|w| w.len() == 6 && w.starts_with("-32"))
        .filter_map(|w| w.parse().ok())
        .filter(|&n: &i32| ErrorCode::from_code(n).is_none())
        .collect();
    assert!(
        unknown.is_empty(),
        "codes in docs/api.md the model does not know: {unknown:?}"
    );
}
