//! QUIC (quinn) configuration: one UDP socket per endpoint serves and dials.
//!
//! Tuning for bulk transfer on fast paths: larger stream and connection windows than quinn's
//! defaults (which target ~100 Mbit/s at 100 ms), GSO on (quinn's default where the OS has
//! it), larger socket buffers. Stream counts are capped so a flood of streams waits on QUIC
//! flow control instead of growing state; the cap is per endpoint
//! ([`EndpointConfig::max_concurrent_streams`](crate::EndpointConfig::max_concurrent_streams)),
//! because quinn sets up state for every stream the remote may open: a hub holding thousands
//! of mostly idle connections takes a small cap. The stateless-reset key is derived from the
//! identity (as is the connection-id hash key), so a restarted node resets its old
//! connections at once rather than leaving the remote to time out.
//!
//! Left at quinn's defaults on purpose, each measured at a 1500-byte path MTU (a veth pair;
//! docs/benchmarks.md, "QUIC for bulk"): Cubic (BBR sent 2.2x the ACKs and smaller GSO
//! batches, NewReno was no better), no ACK-frequency extension (the receiver already
//! acknowledges once per batch it processes, ~1 ACK per 110-125 packets, so there is
//! nothing for it to remove), rustls's suite order (AES-256-GCM; AES-128 would save at most
//! ~3-4% of QUIC's CPU, within the noise here), and pacing (no switch in quinn 0.11). What
//! costs at 1500 bytes is quinn's per-packet work and its extra copies, none of it
//! configurable: larger datagrams ([`MTU_UPPER_BOUND`]) are the lever where the path allows.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};

use super::udp::HookedUdpSocket;
use crate::identity::Identity;

/// Default for the most streams of each kind the remote may have open at once. Their
/// buffering is bounded by the connection's receive window, not by this count; quinn's
/// per-connection state grows with it (~170 KiB per idle connection at 1024, ~40 KiB at 64).
pub const MAX_STREAMS: u32 = 1024;
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
pub const KEEP_ALIVE: Duration = Duration::from_secs(5);

/// The transport settings; `max_streams` is the most streams of each kind (bidi, uni) the
/// remote may have open at once (at least 1). A peer past it waits, it is not refused.
pub fn transport_config(max_streams: u32) -> quinn::TransportConfig {
    let max_streams = max_streams.max(1);
    let mut t = quinn::TransportConfig::default();
    t.max_concurrent_bidi_streams(max_streams.into())
        .max_concurrent_uni_streams(max_streams.into())
        .max_idle_timeout(Some(IDLE_TIMEOUT.try_into().expect("small")))
        .keep_alive_interval(Some(KEEP_ALIVE))
        .stream_receive_window((8u32 * 1024 * 1024).into())
        .receive_window((32u32 * 1024 * 1024).into())
        .send_window(32 * 1024 * 1024)
        .datagram_receive_buffer_size(Some(256 * 1024))
        .datagram_send_buffer_size(256 * 1024);
    // Discover datagrams as large as the path allows, up to MTU_UPPER_BOUND (see there).
    let mut mtu = quinn::MtuDiscoveryConfig::default();
    mtu.upper_bound(MTU_UPPER_BOUND);
    t.mtu_discovery_config(Some(mtu));
    t
}

/// Largest UDP payload MTU discovery tries, and the largest this endpoint accepts (its
/// `max_udp_payload_size`): discovery goes no higher than the smaller of the two ends' values.
///
/// quinn sends up to [`GSO_BATCH`] datagrams in one `sendmsg` (UDP GSO), and Linux refuses a
/// send whose UDP payload as a whole exceeds 65,535 bytes minus headers (EMSGSIZE), which
/// quinn-udp swallows as it does for an oversized MTU probe. So with a segment size above
/// 65,507 / 10 a full batch vanishes: quinn counts it lost, its black-hole detection judges
/// the path MTU to have shrunk, and the connection drops to 1200 bytes for a minute. That is
/// what we saw when trying 8952 on loopback ("discovery stayed at 1200"; measured again:
/// 239 packets lost, 1 black hole, MTU 1200). Where the path allows more (loopback, jumbo-frame
/// LANs) datagrams are up to 4.5x larger and quinn's per-packet costs (headers, crypto calls,
/// ACK bookkeeping, wake-ups) fall with them: -38% CPU per GB on loopback. On a 1500-byte path
/// the larger sizes are probed first and refused locally by the interface (silently, and not
/// as congestion), so discovery reaches ~1470 later than with a bound of 1472: the first
/// megabytes go at 1200-1450 bytes (measured on a veth: 1200-1449 after 8 MiB, where a bound
/// of 1472 had reached 1472), the rest at 1469-1472.
///
/// quinn sizes its receive buffer by this value (x 64 GRO segments x 32 slots, ~13 MiB of
/// address space), but a GRO buffer never exceeds 64 KiB, so at most ~2 MiB of it is touched.
pub const MTU_UPPER_BOUND: u16 = ((65_535 - 20 - 8) / GSO_BATCH) as u16;
/// Datagrams quinn puts in one GSO send (its `MAX_TRANSMIT_SEGMENTS`, not exported).
pub const GSO_BATCH: u32 = 10;
/// Socket buffers asked for (the OS may cap them: net.core.rmem_max / wmem_max).
pub const SOCKET_BUFFER: usize = 4 * 1024 * 1024;

pub(crate) fn server_config(
    tls: rustls::ServerConfig,
    max_streams: u32,
) -> Result<quinn::ServerConfig, String> {
    let crypto = QuicServerConfig::try_from(tls).map_err(|e| e.to_string())?;
    let mut config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    config.transport_config(Arc::new(transport_config(max_streams)));
    Ok(config)
}

pub(crate) fn client_config(
    tls: rustls::ClientConfig,
    max_streams: u32,
) -> Result<quinn::ClientConfig, String> {
    let crypto = QuicClientConfig::try_from(tls).map_err(|e| e.to_string())?;
    let mut config = quinn::ClientConfig::new(Arc::new(crypto));
    config.transport_config(Arc::new(transport_config(max_streams)));
    Ok(config)
}

/// Binds the endpoint's UDP socket, wrapped so other protocols (STUN, hole punching) can
/// share it ([`super::udp`]).
pub(crate) fn bind(
    identity: &Identity,
    addr: SocketAddr,
    server: quinn::ServerConfig,
    client: quinn::ClientConfig,
) -> std::io::Result<(quinn::Endpoint, Arc<HookedUdpSocket>)> {
    let reset_seed = identity.sign(b"allpeers quic stateless reset key v1");
    let reset_key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &reset_seed[..32]);
    let mut endpoint_config = quinn::EndpointConfig::new(Arc::new(reset_key));
    endpoint_config
        .max_udp_payload_size(MTU_UPPER_BOUND)
        .expect("within QUIC's limits");
    // Connection ids carry a hash keyed per endpoint; keying it from the identity too lets a
    // restarted node recognise its old ids as its own and answer them with a reset.
    let cid_key = u64::from_le_bytes(reset_seed[32..40].try_into().expect("8 bytes"));
    endpoint_config.cid_generator(move || {
        Box::new(quinn_proto::HashedConnectionIdGenerator::from_key(cid_key))
    });
    let socket = std::net::UdpSocket::bind(addr)?;
    // Larger socket buffers keep bursts (GSO batches) from being dropped at high rates.
    if let Ok(state) = quinn::udp::UdpSocketState::new((&socket).into()) {
        let _ = state.set_recv_buffer_size((&socket).into(), SOCKET_BUFFER);
        let _ = state.set_send_buffer_size((&socket).into(), SOCKET_BUFFER);
    }
    let runtime = Arc::new(quinn::TokioRuntime);
    let hooked = HookedUdpSocket::new(quinn::Runtime::wrap_udp_socket(&*runtime, socket)?);
    let mut endpoint = quinn::Endpoint::new_with_abstract_socket(
        endpoint_config,
        Some(server),
        hooked.clone(),
        runtime,
    )?;
    endpoint.set_default_client_config(client);
    Ok((endpoint, hooked))
}
