//! Fuzzes what the hub's STUN server does with one UDP packet (allpeers-net
//! `connectivity::responder::answer`, which runs the strict framing check and rtc-stun's
//! decoder): never a panic; an answer only from one of our sockets, at most `MAX_GROWTH`
//! bytes larger than the packet, and itself a valid STUN message. Also the client's reader.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    allpeers_nat::connectivity::responder::fuzz_answer(data);
    let _ = allpeers_nat::connectivity::stun::parse_binding_response(data, &[0; 12]);
});
