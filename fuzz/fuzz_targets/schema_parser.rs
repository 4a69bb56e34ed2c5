//! Fuzzes the schema parser and registry: arbitrary bytes as a schema file must be refused
//! with a file/line/reason error or accepted, never panic, and a refusal leaves the registry
//! unchanged.
#![no_main]

use allpeers_model::schema::Registry;
use libfuzzer_sys::fuzz_target;

fn builtin() -> &'static Registry {
    static REG: std::sync::OnceLock<Registry> = std::sync::OnceLock::new();
    REG.get_or_init(Registry::builtin)
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut reg = builtin().clone();
    let before = reg.types().count();
    match reg.register("Fuzz.rng", text) {
        Ok(names) => assert!(!names.is_empty()),
        Err(e) => {
            assert_eq!(e.file, "Fuzz.rng");
            assert!(!e.reason.is_empty());
            assert_eq!(reg.types().count(), before);
        }
    }
});
