//! The generated TypeScript matches the model: regenerating changes nothing, for the
//! extension's file and the SDK's. `ALLPEERS_BLESS=1` writes the files instead of comparing.
#![cfg(feature = "ts")]

use std::path::PathBuf;

use allpeers_model::api::typescript::{OUTPUT, SDK_OUTPUT, render, render_sdk};

fn check(output: &str, fresh: &str) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(output);
    if std::env::var_os("ALLPEERS_BLESS").is_some() {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).expect("create the generated file's directory");
        }
        std::fs::write(&path, fresh).expect("write the generated TypeScript");
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
            "{output} is not what the model generates (first difference at line {line}); \
             regenerate with ALLPEERS_BLESS=1 cargo test -p allpeers-model --features ts --test typescript"
        );
    }
}

#[test]
fn generated_typescript_is_checked_in() {
    check(OUTPUT, &render());
}

#[test]
fn generated_sdk_typescript_is_checked_in() {
    check(SDK_OUTPUT, &render_sdk());
}
