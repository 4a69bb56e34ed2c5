//! Fuzzes what anyone on the DHT or the LAN can hand a node as discovery input
//! (allpeers-net `discovery`): address records (a BEP 44 item's value) and LAN packets
//! (announcements carrying a record, queries). Everything must fail cleanly, never panic
//! or allocate without bound; a record that decodes must round-trip through its fields.
#![no_main]

use std::sync::OnceLock;

use allpeers_discovery::lan::LanPacket;
use allpeers_net::Identity;
use allpeers_net::record::AddressRecord;
use libfuzzer_sys::fuzz_target;

fn me() -> &'static Identity {
    static ME: OnceLock<Identity> = OnceLock::new();
    ME.get_or_init(Identity::generate)
}

fuzz_target!(|data: &[u8]| {
    if let Ok(record) = AddressRecord::decode(data) {
        // Only a real signature decodes; re-signing with our key must then be refused
        // unless it is ours.
        assert_eq!(record.sign(me()).is_ok(), record.peer == me().peer_id());
        let _ = record.check_fresh(u64::MAX);
        let _ = record.check_fresh(0);
    }
    let _ = AddressRecord::decode_for(data, &me().peer_id(), 0);
    let _ = LanPacket::decode(data);
    // The fuzzer's bytes as the payload of a well-formed announcement header.
    let _ = LanPacket::decode(&LanPacket::encode_announce(data));
});
