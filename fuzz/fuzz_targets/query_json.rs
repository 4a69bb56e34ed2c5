//! Fuzzes the JSON query form: parsing and checking against the built-in registry must never
//! panic; a checked query's JSON form round-trips.
#![no_main]

use allpeers_model::query::Query;
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
    let Ok(q) = Query::from_json(text) else {
        return;
    };
    let reg = builtin();
    if reg.check_query(&q).is_ok() {
        let again =
            Query::from_json(&serde_json::to_string(&q).expect("serialise")).expect("round trip");
        assert!(reg.check_query(&again).is_ok());
    }
});
