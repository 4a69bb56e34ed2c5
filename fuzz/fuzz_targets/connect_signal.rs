//! Fuzzes the connector's wire input (allpeers-net `connector`): signed connection signals
//! as the hub passes them on, the signed content behind the signature, and punch packets.
//! Never a panic; every length bounded by the bytes present.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    allpeers_nat::connector::signal::fuzz_open(data);
    let _ = allpeers_nat::connector::punch::parse(data);
});
