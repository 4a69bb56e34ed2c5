//! The extension's generated TypeScript matches the model: regenerating changes nothing.
//! `ALLPEERS_BLESS=1` writes the file instead of comparing.
#![cfg(feature = "ts")]

use std::path::PathBuf;

use allpeers_model::api::typescript::{OUTPUT, render};

#[test]
fn generated_typescript_is_checked_in() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(OUTPUT);
    let fresh = render();
    if std::env::var_os("ALLPEERS_BLESS").is_some() {
        std::fs::write(&path, &fresh).expect("write the generated TypeScript");
        return;
    }
    let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
    if checked_in != fresh {
        let line = checked_in
            .lines()
            .zip(fresh.lines())
            .position(|(a, b)| a != b)
            .map_or(checked_in.lines().count().min(fresh.lines().count()), |n| n)
            + 1;
        panic!(
            "{OUTPUT} is not what the model generates (first difference at line {line}); \
             regenerate with ALLPEERS_BLESS=1 cargo test -p allpeers-model --features ts --test typescript"
        );
    }
}
