//! Hostile or broken peers: each bad stream or connection is closed with a logged reason,
//! and the endpoint and its other connections carry on.

mod common;

use std::time::Duration;

use allpeers_net::service::{ErrorCode, ServiceError};
use allpeers_net::{Endpoint, EndpointConfig, NetError, ServiceFn, TransportKind};
use bytes::Bytes;
use common::*;

/// b serves echo (1 KiB limit); a knows b.
async fn setup(t: TransportKind, config: EndpointConfig) -> (Endpoint, Endpoint) {
    let a = endpoint_with(config.clone()).await;
    let b = endpoint_with(config).await;
    introduce(&a, &b, t);
    introduce(&b, &a, t);
    b.register(ns("echo"), echo().max_message_size(1024));
    (a, b)
}

async fn still_works(a: &Endpoint, b: &Endpoint) {
    let reply: String = a.request(b.peer_id(), &ns("echo"), "ok").await.unwrap();
    assert_eq!(reply, "ok");
}

/// Sends raw bytes as a stream and returns what the remote did: the reply frame, or the
/// error that ended the stream.
async fn raw_stream(a: &Endpoint, b: &Endpoint, bytes: &[u8]) -> Result<Option<Bytes>, String> {
    let conn = a.connect(b.peer_id()).await.unwrap();
    let (mut send, mut recv) = conn.open_bi().await.unwrap();
    send.write_all(bytes).await.map_err(|e| e.to_string())?;
    let _ = send.finish().await;
    recv.read_frame(4096).await.map_err(|e| e.to_string())
}

fn frame(payload: &[u8]) -> Vec<u8> {
    let mut out = (payload.len() as u32).to_be_bytes().to_vec();
    out.extend_from_slice(payload);
    out
}

fn head(namespace: &str) -> Vec<u8> {
    // A valid head, as the framework writes it: postcard of (namespace, kind = Request).
    let ns = allpeers_net::Namespace::new(namespace).unwrap();
    #[derive(serde::Serialize)]
    struct Head {
        namespace: allpeers_net::Namespace,
        kind: allpeers_net::service::StreamKind,
    }
    frame(
        &allpeers_net::service::encode(&Head {
            namespace: ns,
            kind: allpeers_net::service::StreamKind::Request,
        })
        .unwrap(),
    )
}

async fn frame_over_limit(t: TransportKind) {
    let (a, b) = setup(t, EndpointConfig::loopback()).await;
    still_works(&a, &b).await;
    let conn = a.connection(&b.peer_id()).unwrap();
    let big = "x".repeat(2000);
    let err = a
        .request::<_, String>(b.peer_id(), &ns("echo"), &big)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            NetError::Remote {
                code: ErrorCode::TooLarge,
                ..
            }
        ),
        "{err:?}"
    );
    // A head frame announcing 4 GiB: refused before any allocation.
    let r = raw_stream(&a, &b, &[0xff, 0xff, 0xff, 0xff, 1, 2, 3]).await;
    assert!(!matches!(r, Ok(Some(_))), "{r:?}");
    still_works(&a, &b).await;
    assert_eq!(a.connection(&b.peer_id()).unwrap().id(), conn.id());
}
both_transports!(frame_over_the_limit_is_refused, super::frame_over_limit);

async fn truncated_frame(t: TransportKind) {
    let (a, b) = setup(t, EndpointConfig::loopback()).await;
    still_works(&a, &b).await;
    let conn = a.connection(&b.peer_id()).unwrap();
    // A good head, then a request frame that announces 100 bytes and brings 10.
    let mut bytes = head("allpeers/echo/1");
    bytes.extend_from_slice(&100u32.to_be_bytes());
    bytes.extend_from_slice(&[1; 10]);
    let r = raw_stream(&a, &b, &bytes).await;
    assert!(!matches!(r, Ok(Some(_))), "{r:?}");
    // A head cut short.
    let r = raw_stream(&a, &b, &[0, 0, 0, 20, 1]).await;
    assert!(!matches!(r, Ok(Some(_))), "{r:?}");
    still_works(&a, &b).await;
    assert_eq!(a.connection(&b.peer_id()).unwrap().id(), conn.id());
}
both_transports!(truncated_frame_closes_the_stream, super::truncated_frame);

async fn garbage(t: TransportKind) {
    let (a, b) = setup(t, EndpointConfig::loopback()).await;
    still_works(&a, &b).await;
    let conn = a.connection(&b.peer_id()).unwrap();
    let r = raw_stream(&a, &b, b"GET / HTTP/1.1\r\nHost: example\r\n\r\n").await;
    assert!(!matches!(r, Ok(Some(_))), "{r:?}");
    // A frame of the right size whose content is not a head.
    let r = raw_stream(&a, &b, &frame(&[0xde, 0xad, 0xbe, 0xef, 0xff])).await;
    assert!(!matches!(r, Ok(Some(_))), "{r:?}");
    // A head naming a namespace that is not well formed.
    let mut bad = frame(&[5, b'A', b'/', b'b', b'/', b'1', 0]);
    bad.extend_from_slice(&frame(b"x"));
    let r = raw_stream(&a, &b, &bad).await;
    assert!(!matches!(r, Ok(Some(_))), "{r:?}");
    // A good head and a reply that cannot be decoded as the request type.
    let mut bytes = head("allpeers/echo/1");
    bytes.extend_from_slice(&frame(&[0xff, 0xff]));
    let reply = raw_stream(&a, &b, &bytes).await.unwrap().unwrap();
    assert_eq!(reply[0], 1, "an error reply");
    still_works(&a, &b).await;
    assert_eq!(a.connection(&b.peer_id()).unwrap().id(), conn.id());
}
both_transports!(garbage_instead_of_frames_closes_the_stream, super::garbage);

async fn stream_flood(t: TransportKind) {
    let config = EndpointConfig {
        max_inbound_streams: 8,
        ..EndpointConfig::loopback()
    };
    let (a, b) = setup(t, config.clone()).await;
    b.register(
        ns("hang"),
        ServiceFn::new().on_request(|_ctx, _req: String| {
            std::future::pending::<Result<String, ServiceError>>()
        }),
    );
    let conn = a.connect(b.peer_id()).await.unwrap();
    let mut request = head("allpeers/hang/1");
    request.extend_from_slice(&frame(&allpeers_net::service::encode("x").unwrap()));
    let mut streams = Vec::new();
    let mut refused_early = 0;
    for _ in 0..40 {
        let (mut send, recv) = conn.open_bi().await.unwrap();
        // Over TCP a refused stream may already be closed when we write.
        match send.write_all(&request).await {
            Ok(()) => streams.push((send, recv)),
            Err(_) => refused_early += 1,
        }
    }
    // Streams past the limit are refused (reset / closed) at once; the first 8 hang.
    let outcomes = futures::future::join_all(streams.iter_mut().map(|(_, recv)| async move {
        tokio::time::timeout(Duration::from_secs(4), recv.read_frame(4096)).await
    }))
    .await;
    let refused = outcomes
        .iter()
        .filter(|o| matches!(o, Ok(Err(_)) | Ok(Ok(None))))
        .count();
    let hanging = outcomes.iter().filter(|o| o.is_err()).count();
    assert_eq!(hanging, 8, "{outcomes:?}");
    assert_eq!(refused + refused_early, 32);
    // The endpoint carries on: another peer is served.
    let c = endpoint_with(config).await;
    introduce(&c, &b, t);
    still_works(&c, &b).await;
}
both_transports!(a_flood_of_streams_is_bounded, super::stream_flood);

async fn stopped_reader(t: TransportKind) {
    let config = EndpointConfig {
        send_timeout: Duration::from_millis(700),
        ..EndpointConfig::loopback()
    };
    let (a, b) = setup(t, config).await;
    // A channel service that takes the channel and never reads it.
    b.register(
        ns("deaf"),
        ServiceFn::new().on_channel(|_ctx, channel| async move {
            let _keep = channel;
            std::future::pending::<()>().await
        }),
    );
    let mut sender = a.open_channel(b.peer_id(), &ns("deaf")).await.unwrap();
    let message = vec![0u8; 256 * 1024];
    let mut sent = 0usize;
    let err = loop {
        match sender.send_bytes(&message).await {
            Ok(()) => sent += message.len(),
            Err(e) => break e,
        }
        assert!(sent < 128 << 20, "no back-pressure after {sent} bytes");
    };
    assert!(matches!(err, NetError::Timeout(_)), "{err:?}");
    // Flow control bounded what was buffered (QUIC: stream window + send buffer; TCP: yamux
    // window + socket buffers).
    assert!(sent <= 48 << 20, "{sent} bytes went into buffers");
    still_works(&a, &b).await;
}
both_transports!(a_peer_that_stops_reading_is_cut_off, super::stopped_reader);
