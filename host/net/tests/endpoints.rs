//! Real endpoints on loopback, over QUIC and over TCP+TLS.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use allpeers_net::endpoint::EndpointEvent;
use allpeers_net::service::{ErrorCode, Service, speed};
use allpeers_net::transport::Direction;
use allpeers_net::{Address, Endpoint, EndpointConfig, NetError, ServiceFn, TransportKind};
use common::*;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Sum {
    numbers: Vec<i64>,
}

async fn request_response(t: TransportKind) {
    let (a, b) = pair(t).await;
    b.register(ns("echo"), echo());
    b.register(
        ns("sum"),
        ServiceFn::new().on_request(|ctx, req: Sum| async move {
            assert_eq!(ctx.namespace.as_str(), "allpeers/sum/1");
            Ok(req.numbers.iter().sum::<i64>())
        }),
    );
    let reply: String = a.request(b.peer_id(), &ns("echo"), "hello").await.unwrap();
    assert_eq!(reply, "hello");
    let total: i64 = a
        .request(
            b.peer_id(),
            &ns("sum"),
            &Sum {
                numbers: vec![1, 2, 39],
            },
        )
        .await
        .unwrap();
    assert_eq!(total, 42);

    // The connection is reused, of the transport asked for, and authenticated both ways.
    let conn = a.connection(&b.peer_id()).unwrap();
    for i in 0..20 {
        let r: String = a
            .request(b.peer_id(), &ns("echo"), &format!("{i}"))
            .await
            .unwrap();
        assert_eq!(r, format!("{i}"));
    }
    assert_eq!(a.connection(&b.peer_id()).unwrap().id(), conn.id());
    assert_eq!(a.connections().len(), 1);
    assert_eq!(conn.transport(), t);
    assert_eq!(conn.remote_peer(), b.peer_id());
    let back = b.wait_connection(&a.peer_id(), BOUND).await.unwrap();
    assert_eq!(back.remote_peer(), a.peer_id());

    // Typed errors.
    let err = a
        .request::<_, String>(b.peer_id(), &ns("nothing"), "x")
        .await
        .unwrap_err();
    assert!(
        matches!(&err, NetError::UnknownNamespace { namespace, .. } if namespace == "allpeers/nothing/1"),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .contains("has no service allpeers/nothing/1")
    );
    let err = a
        .request::<_, String>(b.peer_id(), &ns("echo"), "fail")
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            NetError::Remote {
                code: ErrorCode::Refused,
                ..
            }
        ),
        "{err:?}"
    );
    // A request that does not decode is a bad request (postcard is not self-describing, so
    // this is a truncated varint rather than a value of another type).
    let err = a
        .request_bytes(
            b.peer_id(),
            &ns("sum"),
            bytes::Bytes::from_static(&[0xff]),
            1024,
            Duration::from_secs(10),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            NetError::Remote {
                code: ErrorCode::BadRequest,
                ..
            }
        ),
        "{err:?}"
    );

    // A service that never answers: the request times out, the connection carries on.
    b.register(
        ns("never"),
        ServiceFn::new()
            .on_request(|_ctx, _req: String| std::future::pending::<Result<String, _>>()),
    );
    let err = a
        .request_timeout::<_, String>(b.peer_id(), &ns("never"), "x", Duration::from_millis(300))
        .await
        .unwrap_err();
    assert!(matches!(err, NetError::Timeout(_)), "{err:?}");
    let reply: String = a
        .request(b.peer_id(), &ns("echo"), "still here")
        .await
        .unwrap();
    assert_eq!(reply, "still here");

    // Requests the other way reuse the same connection.
    a.register(ns("echo"), echo());
    let reply: String = b.request(a.peer_id(), &ns("echo"), "back").await.unwrap();
    assert_eq!(reply, "back");
    assert_eq!(a.connections().len(), 1);
}
both_transports!(request_response_works, super::request_response);

async fn channels(t: TransportKind) {
    let (a, b) = pair(t).await;
    let (tx, mut rx) = mpsc::channel::<Option<u32>>(200);
    b.register(
        ns("numbers"),
        ServiceFn::new().on_channel(move |_ctx, mut channel| {
            let tx = tx.clone();
            async move {
                while let Ok(Some(n)) = channel.recv::<u32>().await {
                    tx.send(Some(n)).await.unwrap();
                }
                tx.send(None).await.unwrap();
            }
        }),
    );
    let mut sender = a.open_channel(b.peer_id(), &ns("numbers")).await.unwrap();
    for n in 0..100u32 {
        sender.send(&n).await.unwrap();
    }
    sender.finish().await.unwrap();
    for n in 0..100u32 {
        assert_eq!(rx.recv().await.unwrap(), Some(n));
    }
    assert_eq!(rx.recv().await.unwrap(), None);

    // A channel to a namespace nobody serves, or to a service that takes no channels.
    b.register(ns("echo"), echo());
    let err = a
        .open_channel(b.peer_id(), &ns("none"))
        .await
        .err()
        .unwrap();
    assert!(matches!(err, NetError::UnknownNamespace { .. }), "{err:?}");
    let err = a
        .open_channel(b.peer_id(), &ns("echo"))
        .await
        .err()
        .unwrap();
    assert!(
        matches!(
            err,
            NetError::Remote {
                code: ErrorCode::Unsupported,
                ..
            }
        ),
        "{err:?}"
    );
}
both_transports!(channels_deliver_in_order, super::channels);

async fn datagrams(t: TransportKind) {
    let (a, b) = pair(t).await;
    let (tx, mut rx) = mpsc::channel::<(String, allpeers_net::transport::TransportKind)>(100);
    b.register(
        ns("ping"),
        ServiceFn::new().on_datagram(move |ctx, text: String| {
            let _ = tx.try_send((text, ctx.connection.transport()));
        }),
    );
    for i in 0..10 {
        a.send_datagram(b.peer_id(), &ns("ping"), &format!("ping {i}"))
            .await
            .unwrap();
    }
    // QUIC may drop datagrams; on loopback at least one arrives, and whatever arrives is whole.
    let (text, via) = rx.recv().await.unwrap();
    assert!(text.starts_with("ping "), "{text}");
    assert_eq!(via, t);
    let too_big = "x".repeat(5000);
    let err = a
        .send_datagram(b.peer_id(), &ns("ping"), &too_big)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("over the limit"), "{err}");
}
both_transports!(datagrams_arrive, super::datagrams);

async fn multicast(t: TransportKind) {
    let a = endpoint().await;
    let b = endpoint().await;
    let c = endpoint().await;
    let d = endpoint().await; // has no echo service
    for other in [&b, &c, &d] {
        introduce(&a, other, t);
    }
    b.register(ns("echo"), echo());
    c.register(ns("echo"), echo());
    let stranger = allpeers_net::Identity::generate().peer_id(); // no address known
    let peers = [b.peer_id(), c.peer_id(), d.peer_id(), stranger];
    let results = a
        .multicast::<_, String>(&peers, &ns("echo"), "to all", Duration::from_secs(10))
        .await;
    assert_eq!(results.len(), 4);
    assert_eq!(results[0].0, b.peer_id());
    assert_eq!(results[0].1.as_ref().unwrap(), "to all");
    assert_eq!(results[1].0, c.peer_id());
    assert_eq!(results[1].1.as_ref().unwrap(), "to all");
    assert!(
        matches!(results[2].1, Err(NetError::UnknownNamespace { .. })),
        "{:?}",
        results[2].1
    );
    assert!(
        matches!(results[3].1, Err(NetError::NoAddress(_))),
        "{:?}",
        results[3].1
    );
    assert_eq!(a.connections().len(), 3);
}
both_transports!(multicast_reports_per_peer, super::multicast);

async fn impersonation(t: TransportKind) {
    let alice = endpoint().await;
    let bob = endpoint().await;
    let eve = endpoint().await;
    eve.register(ns("echo"), echo());
    // Alice believes Bob is at Eve's address.
    let eve_addr = eve.local_address(t).unwrap();
    alice.add_peer_address(bob.peer_id(), eve_addr);
    let err = alice
        .request::<_, String>(bob.peer_id(), &ns("echo"), "secret")
        .await
        .unwrap_err();
    assert!(
        matches!(err, NetError::WrongPeer { expected, .. } if expected == bob.peer_id()),
        "{err:?}"
    );
    assert!(alice.connection(&bob.peer_id()).is_none());
    assert!(alice.connections().is_empty());
    // Eve is reachable as herself, so the refusal was about the key alone.
    let conn = alice.connect_addr(eve.peer_id(), eve_addr).await.unwrap();
    assert_eq!(conn.remote_peer(), eve.peer_id());
    let reply: String = alice
        .request(eve.peer_id(), &ns("echo"), "hi eve")
        .await
        .unwrap();
    assert_eq!(reply, "hi eve");
}
both_transports!(impersonation_is_refused, super::impersonation);

async fn simultaneous_dial(t: TransportKind) {
    let (a, b) = pair(t).await;
    a.register(ns("echo"), echo());
    b.register(ns("echo"), echo());
    let mut a_events = a.events();
    let mut b_events = b.events();
    let (ra, rb) = tokio::join!(a.connect(b.peer_id()), b.connect(a.peer_id()));
    ra.unwrap();
    rb.unwrap();
    // Both sides end up with the same single connection: when both dials got through, the
    // one dialled by the smaller PeerId (both sides apply the same rule); when one side's
    // dial found the other's connection already in place, that one.
    loop {
        let kept = a.connection(&b.peer_id());
        let kept_b = b.connection(&a.peer_id());
        if let (Some(x), Some(y)) = (kept, kept_b)
            && x.direction() != y.direction()
        {
            break;
        }
        // Either side's table may change next.
        tokio::select! {
            _ = a_events.recv() => {}
            _ = b_events.recv() => {}
        }
    }
    let r: String = a.request(b.peer_id(), &ns("echo"), "ab").await.unwrap();
    assert_eq!(r, "ab");
    let r: String = b.request(a.peer_id(), &ns("echo"), "ba").await.unwrap();
    assert_eq!(r, "ba");
    assert_eq!(a.connections().len(), 1);
    assert_eq!(b.connections().len(), 1);
    assert_ne!(
        a.connection(&b.peer_id()).unwrap().direction(),
        b.connection(&a.peer_id()).unwrap().direction()
    );
}
both_transports!(simultaneous_dials_resolve_to_one, super::simultaneous_dial);

/// Two dials of one peer begun at once on one side (a hub line's dial to a given address and a
/// request's dial by PeerId) make one connection: two dialled by one side are told apart by
/// which came last, and the two ends may see a different order and each keep the one the
/// other closed.
async fn one_side_dialling_twice_at_once(t: TransportKind) {
    let (a, b) = pair(t).await;
    b.register(ns("echo"), echo());
    let address = b.local_address(t).unwrap();
    let (by_address, by_peer) =
        tokio::join!(a.connect_addr(b.peer_id(), address), a.connect(b.peer_id()));
    let (by_address, by_peer) = (by_address.unwrap(), by_peer.unwrap());
    assert_eq!(by_address.id(), by_peer.id(), "one connection, not two");
    let reply: String = a.request(b.peer_id(), &ns("echo"), "once").await.unwrap();
    assert_eq!(reply, "once");
    assert!(!by_address.is_closed());
}
both_transports!(
    one_side_dialling_a_peer_twice_at_once_makes_one_connection,
    super::one_side_dialling_twice_at_once
);

/// A service sending back every byte of each stream it is given, to the stream's end.
fn pipe() -> ServiceFn {
    ServiceFn::new().on_stream(|_ctx, mut send, mut recv| async move {
        let mut buf = [0u8; 64];
        while let Ok(n @ 1..) = recv.read(&mut buf).await {
            if send.write_all(&buf[..n]).await.is_err() {
                return;
            }
        }
        let _ = send.finish().await;
    })
}

/// Sends `bytes` on a [`pipe`] stream and checks they come back.
async fn through(
    send: &mut allpeers_net::transport::SendStream,
    recv: &mut allpeers_net::transport::RecvStream,
    bytes: &[u8],
) {
    let mut back = vec![0u8; bytes.len()];
    send.write_all(bytes).await.unwrap();
    tokio::io::AsyncReadExt::read_exact(recv, &mut back)
        .await
        .unwrap();
    assert_eq!(back, bytes);
}

/// Dials that cross while a stream runs on the first connection: the duplicate rule keeps the
/// other one, and the stream running on the loser goes on to its end instead of being cut.
async fn crossed_dial_with_a_running_stream(t: TransportKind) {
    let (a, b) = pair(t).await;
    // `big` dials first; `small`'s later dial then wins on both sides (the smaller PeerId's).
    let (small, big) = if a.peer_id() < b.peer_id() {
        (a, b)
    } else {
        (b, a)
    };
    small.register(ns("pipe"), pipe());
    let (mut send, mut recv) = big.open_stream(small.peer_id(), &ns("pipe")).await.unwrap();
    let first = big.connection(&small.peer_id()).unwrap();
    through(&mut send, &mut recv, b"before").await;

    let mut big_events = big.events();
    let crossed = small
        .handshake(big.peer_id(), big.local_address(t).unwrap(), None)
        .await
        .unwrap();
    let kept = small.adopt(crossed);
    assert_eq!(
        kept.direction(),
        Direction::Outbound,
        "small's own dial wins"
    );
    // Big keeps it too (its table changes to the inbound connection).
    loop {
        if big
            .connection(&small.peer_id())
            .is_some_and(|c| c.id() != first.id())
        {
            break;
        }
        big_events.recv().await.unwrap();
    }
    // The stream on the loser still carries bytes both ways, to its end.
    through(&mut send, &mut recv, b"after").await;
    send.finish().await.unwrap();
    assert!(recv.read_to_end(64).await.unwrap().is_empty());
    drop((send, recv));
    // Then the loser is closed, and requests go over the winner.
    first.closed().await;
    small.register(ns("echo"), echo());
    let reply: String = big
        .request(small.peer_id(), &ns("echo"), "hi")
        .await
        .unwrap();
    assert_eq!(reply, "hi");
    assert_eq!(big.connections().len(), 1);
}
both_transports!(
    a_crossed_dial_lets_the_stream_on_its_loser_finish,
    super::crossed_dial_with_a_running_stream
);

/// One side dialling twice while a stream runs on its first connection (its connector and an
/// area's dial racing as the peer comes back): the newer connection is kept on both sides, and the
/// stream on the older goes on to its end instead of being cut. Until 2026-12-06 the older was
/// closed at once with its streams (the files service then asked again; a chat letter or a
/// share push retried on its own path).
async fn one_side_dialling_twice_with_a_running_stream(t: TransportKind) {
    let (a, b) = pair(t).await;
    b.register(ns("pipe"), pipe());
    let (mut send, mut recv) = a.open_stream(b.peer_id(), &ns("pipe")).await.unwrap();
    let first = a.connection(&b.peer_id()).unwrap();
    through(&mut send, &mut recv, b"before").await;

    let second = a
        .handshake(b.peer_id(), b.local_address(t).unwrap(), None)
        .await
        .unwrap();
    let kept = a.adopt(second);
    assert_ne!(kept.id(), first.id(), "the newer dial wins");
    // The stream on the older connection still carries bytes both ways, to its end.
    through(&mut send, &mut recv, b"after").await;
    send.finish().await.unwrap();
    assert!(recv.read_to_end(64).await.unwrap().is_empty());
    drop((send, recv));
    // Then the older is closed, and requests go over the newer.
    first.closed().await;
    b.register(ns("echo"), echo());
    let reply: String = a.request(b.peer_id(), &ns("echo"), "hi").await.unwrap();
    assert_eq!(reply, "hi");
    assert_eq!(a.connections().len(), 1);
    assert_eq!(a.connection(&b.peer_id()).unwrap().id(), kept.id());
}
both_transports!(
    one_side_dialling_twice_lets_the_stream_on_the_older_connection_finish,
    super::one_side_dialling_twice_with_a_running_stream
);

/// Sends `total` bytes over a raw stream to `b`'s sink and returns (bytes, seconds) seen by the
/// receiver from first to last byte.
async fn sink_pair(
    t: TransportKind,
) -> (
    allpeers_net::Endpoint,
    allpeers_net::Endpoint,
    mpsc::Receiver<(u64, f64)>,
) {
    let (a, b) = pair(t).await;
    let (tx, rx) = mpsc::channel(4);
    b.register(
        ns("sink"),
        ServiceFn::new().on_stream(move |_ctx, _send, mut recv| {
            let tx = tx.clone();
            async move {
                let mut buf = vec![0u8; 64 * 1024];
                let mut total = 0u64;
                let mut start = None;
                loop {
                    match recv.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            start.get_or_insert_with(Instant::now);
                            total += n as u64;
                        }
                    }
                }
                let secs = start.map(|s| s.elapsed().as_secs_f64()).unwrap_or(0.0);
                let _ = tx.send((total, secs)).await;
            }
        }),
    );
    (a, b, rx)
}

/// Checks a throttled rate: never more than 10% over the limit, and within 10% of it in at
/// least one of three attempts (a starved CPU can make a run slower than its limit, which is
/// not the throttle's fault; going faster always is).
async fn assert_rate<F, Fut>(what: &str, limit: f64, mut attempt: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = f64>,
{
    let mut seen = Vec::new();
    for _ in 0..3 {
        let measured = attempt().await;
        assert!(
            measured < limit * 1.10,
            "{what}: {measured:.0} B/s is over the limit of {limit:.0} (+10%)"
        );
        seen.push(measured);
        if (measured - limit).abs() / limit < 0.10 {
            return;
        }
    }
    panic!("{what}: {seen:.0?} B/s, never within 10% of the limit of {limit:.0}");
}

async fn throttle_upload(t: TransportKind) {
    let rate = 1_000_000u64;
    assert_rate("upload, per-peer limit", rate as f64, || async {
        let (a, b, mut done) = sink_pair(t).await;
        a.throttle().set_peer(&b.peer_id(), Some(rate), None);
        let (mut send, _recv) = a.open_stream(b.peer_id(), &ns("sink")).await.unwrap();
        let chunk = vec![7u8; 16 * 1024];
        let total = 3 * rate;
        let start = Instant::now();
        let mut sent = 0;
        while sent < total {
            send.write_all(&chunk).await.unwrap();
            sent += chunk.len() as u64;
        }
        let send_secs = start.elapsed().as_secs_f64();
        let stats = a.connection(&b.peer_id()).unwrap().stats();
        send.finish().await.unwrap();
        let (got, _) = done.recv().await.unwrap();
        assert_eq!(got, sent);
        // The connection's own meter saw about the same rate (never much more).
        assert!(
            stats.send_rate < rate as f64 * 1.25 && stats.send_rate > rate as f64 * 0.5,
            "meter says {:.0}",
            stats.send_rate
        );
        sent as f64 / send_secs
    })
    .await;
}
both_transports!(throttle_holds_upload_rate, super::throttle_upload);

/// A bulk stream over QUIC on loopback: datagrams go out in GSO batches, and MTU discovery
/// climbs past Ethernet's 1472 bytes to the bound (loopback allows 65,536) and stays there —
/// a bound above what one GSO send can carry once made the kernel refuse whole batches, which
/// quinn took for an MTU black hole and fell back to 1200 bytes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quic_bulk_uses_gso_batches_and_large_datagrams_on_loopback() {
    bounded(async {
        let (a, b, mut done) = sink_pair(TransportKind::Quic).await;
        let (mut send, _recv) = a.open_stream(b.peer_id(), &ns("sink")).await.unwrap();
        let chunk = vec![7u8; 1 << 20];
        for _ in 0..24 {
            send.write_all(&chunk).await.unwrap();
        }
        send.finish().await.unwrap();
        let (got, _) = done.recv().await.unwrap();
        assert_eq!(got, 24 << 20);
        let stats = a.connection(&b.peer_id()).unwrap().stats();
        let q = stats.quic.expect("a QUIC connection");
        assert_eq!(q.black_holes, 0, "{stats:?}");
        assert_eq!(
            stats.path_mtu,
            Some(allpeers_net::transport::quic::MTU_UPPER_BOUND),
            "{stats:?}"
        );
        let probe = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        if quinn::udp::UdpSocketState::new((&probe).into())
            .unwrap()
            .max_gso_segments()
            > 1
        {
            assert!(
                q.datagrams_sent > 3 * q.send_calls,
                "GSO batches expected: {stats:?}"
            );
        } else {
            eprintln!("SKIPPED the GSO check: no UDP GSO on this kernel");
        }
    })
    .await
}

async fn throttle_download_runtime_change(t: TransportKind) {
    assert_rate(
        "download, global limit changed at run time",
        1e6,
        || async {
            let (a, b, mut done) = sink_pair(t).await;
            // The receiver limits its download globally; the sender is unlimited.
            b.throttle().set_global(None, Some(4_000_000));
            // ... and changes its mind at run time, before the transfer.
            b.throttle().set_global(None, Some(1_000_000));
            let (mut send, _recv) = a.open_stream(b.peer_id(), &ns("sink")).await.unwrap();
            let data = vec![1u8; 3_000_000];
            send.write_all(&data).await.unwrap();
            send.finish().await.unwrap();
            let (got, secs) = done.recv().await.unwrap();
            assert_eq!(got, 3_000_000);
            got as f64 / secs
        },
    )
    .await;
}
both_transports!(
    throttle_holds_download_rate,
    super::throttle_download_runtime_change
);

async fn per_stream_limit(t: TransportKind) {
    assert_rate("upload, per-stream limit", 2e6, || async {
        let (a, b, mut done) = sink_pair(t).await;
        let (mut send, _recv) = a.open_stream(b.peer_id(), &ns("sink")).await.unwrap();
        send.set_rate_limit(Some(2_000_000));
        let chunk = vec![7u8; 32 * 1024];
        let start = Instant::now();
        let mut sent = 0u64;
        while sent < 6_000_000 {
            send.write_all(&chunk).await.unwrap();
            sent += chunk.len() as u64;
        }
        let measured = sent as f64 / start.elapsed().as_secs_f64();
        send.finish().await.unwrap();
        done.recv().await.unwrap();
        measured
    })
    .await;
}
both_transports!(throttle_holds_per_stream_rate, super::per_stream_limit);

/// A stream used through tokio's `AsyncRead`/`AsyncWrite` (as hyper uses it): every byte arrives in order both ways
/// (over TCP the first write carries the kind byte in front), and the receiver's download limit holds.
async fn tokio_io(t: TransportKind) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rate = 1_000_000u64;
    assert_rate(
        "echo through tokio's traits, download limit",
        rate as f64,
        || async {
            let (a, b) = pair(t).await;
            b.register(
                ns("echo-io"),
                ServiceFn::new().on_stream(|_ctx, mut send, mut recv| async move {
                    if tokio::io::copy(&mut recv, &mut send).await.is_ok() {
                        let _ = send.shutdown().await;
                    }
                }),
            );
            b.throttle().set_global(None, Some(rate));
            let (mut send, mut recv) = a.open_stream(b.peer_id(), &ns("echo-io")).await.unwrap();
            let data: Vec<u8> = (0..3 * rate as u32).map(|i| (i % 251) as u8).collect();
            let start = Instant::now();
            let writer = {
                let data = data.clone();
                tokio::spawn(async move {
                    AsyncWriteExt::write_all(&mut send, &data).await.unwrap();
                    send.shutdown().await.unwrap();
                })
            };
            let mut back = Vec::new();
            tokio::time::timeout(
                Duration::from_secs(30),
                AsyncReadExt::read_to_end(&mut recv, &mut back),
            )
            .await
            .expect("the echo ends in time")
            .unwrap();
            let secs = start.elapsed().as_secs_f64();
            writer.await.unwrap();
            assert!(back == data, "the echo differs from what was sent");
            back.len() as f64 / secs
        },
    )
    .await;
}
both_transports!(tokio_traits_carry_bytes_and_honour_limits, super::tokio_io);

async fn speed_test(t: TransportKind) {
    let (a, b) = pair(t).await;
    b.register(speed::namespace(), speed::service());
    let result = speed::measure(&a, b.peer_id(), 4 << 20, 4 << 20)
        .await
        .unwrap();
    assert_eq!(result.upload_bytes, 4 << 20);
    assert!(
        result.upload_rate > 1e6 && result.download_rate > 1e6,
        "{result:?}"
    );
}
both_transports!(speed_test_measures, super::speed_test);

/// A speed test whose connection is closed under it (as the duplicate rule closes a crossed
/// dial's loser) runs again on a new connection instead of failing.
async fn speed_test_survives_losing_its_connection(t: TransportKind) {
    let (a, b) = pair(t).await;
    let real = Arc::new(speed::service());
    let cut = Arc::new(AtomicBool::new(false));
    b.register(
        speed::namespace(),
        ServiceFn::new().on_stream(move |ctx, send, recv| {
            let (real, cut) = (real.clone(), cut.clone());
            async move {
                if !cut.swap(true, Ordering::SeqCst) {
                    ctx.connection.close(1, "duplicate connection");
                    return;
                }
                real.stream(ctx, send, recv).await
            }
        }),
    );
    let result = bounded(speed::measure(&a, b.peer_id(), 1 << 20, 1 << 20))
        .await
        .unwrap();
    assert_eq!(result.download_bytes, 1 << 20);
}
both_transports!(
    a_speed_test_survives_losing_its_connection,
    super::speed_test_survives_losing_its_connection
);

/// A connection this side closed says so at once and opens no more streams, even while its
/// socket is still closing (TCP's driver once held such opens until the socket closed, ~10 s); a
/// request then goes over a new connection.
async fn closed_connection_refuses_streams_at_once(t: TransportKind) {
    let (a, b) = pair(t).await;
    b.register(ns("echo"), echo());
    let conn = a.connect(b.peer_id()).await.unwrap();
    conn.close(1, "closed by the test");
    assert!(conn.is_closed());
    let open = tokio::time::timeout(Duration::from_secs(2), conn.open_bi()).await;
    assert!(
        matches!(open, Ok(Err(_))),
        "a stream on a closed connection must fail at once"
    );
    let reply: String = a
        .request_timeout(b.peer_id(), &ns("echo"), "again", Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(reply, "again");
}
both_transports!(
    a_closed_connection_refuses_streams_at_once,
    super::closed_connection_refuses_streams_at_once
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_report_connects_and_disconnects() {
    bounded(async {
        let (a, b) = pair(TransportKind::Quic).await;
        b.register(ns("echo"), echo());
        let mut events = a.events();
        let _: String = a.request(b.peer_id(), &ns("echo"), "x").await.unwrap();
        match events.recv().await.unwrap() {
            EndpointEvent::Connected {
                peer,
                transport,
                direction,
            } => {
                assert_eq!(peer, b.peer_id());
                assert_eq!(transport, TransportKind::Quic);
                assert_eq!(direction, Direction::Outbound);
            }
            other => panic!("{other:?}"),
        }
        b.shutdown().await;
        match events.recv().await.unwrap() {
            EndpointEvent::Disconnected { peer, .. } => assert_eq!(peer, b.peer_id()),
            other => panic!("{other:?}"),
        }
        assert!(a.connection(&b.peer_id()).is_none());
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn falls_back_to_tcp_when_quic_is_unreachable() {
    bounded(async {
        let a = endpoint_with(allpeers_net::EndpointConfig {
            connect_timeout: Duration::from_secs(1),
            ..allpeers_net::EndpointConfig::loopback()
        })
        .await;
        let b = endpoint().await;
        b.register(ns("echo"), echo());
        // A QUIC address where nothing listens, then b's TCP address.
        let dead = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let dead_addr = dead.local_addr().unwrap();
        drop(dead);
        a.add_peer_address(b.peer_id(), Address::quic(dead_addr));
        introduce(&a, &b, TransportKind::Tcp);
        let reply: String = a
            .request(b.peer_id(), &ns("echo"), "via tcp")
            .await
            .unwrap();
        assert_eq!(reply, "via tcp");
        assert_eq!(
            a.connection(&b.peer_id()).unwrap().transport(),
            TransportKind::Tcp
        );
    })
    .await
}

async fn thousand_concurrent(t: TransportKind) {
    let (a, b) = pair(t).await;
    b.register(ns("echo"), echo());
    let requests = (0..1000).map(|i| {
        let a = a.clone();
        let peer = b.peer_id();
        async move {
            let r: String = a.request(peer, &ns("echo"), &format!("{i}")).await.unwrap();
            assert_eq!(r, format!("{i}"));
        }
    });
    futures::future::join_all(requests).await;
    assert_eq!(a.connections().len(), 1);
}
both_transports!(
    a_thousand_concurrent_requests_on_one_connection,
    super::thousand_concurrent
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_an_endpoint_closes_its_connections() {
    bounded(async {
        for t in [TransportKind::Quic, TransportKind::Tcp] {
            let (a, b) = pair(t).await;
            b.register(ns("echo"), echo());
            let _: String = a.request(b.peer_id(), &ns("echo"), "x").await.unwrap();
            let conn = a.connection(&b.peer_id()).unwrap();
            let mut events = a.events();
            drop(b);
            let reason = conn.closed().await;
            assert!(!reason.is_empty());
            assert!(matches!(
                events.recv().await.unwrap(),
                EndpointEvent::Disconnected { .. }
            ));
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_protocol_version_is_refused() {
    bounded(async {
        let b = endpoint().await;
        let me = allpeers_net::Identity::generate();
        let mut config = allpeers_net::tls::client_config(&me).unwrap();
        config.alpn_protocols = vec![b"allpeers/999".to_vec()];
        let tcp = tokio::net::TcpStream::connect(b.local_address(TransportKind::Tcp).unwrap().addr)
            .await
            .unwrap();
        let result = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
            .connect(allpeers_net::tls::server_name(&b.peer_id()), tcp)
            .await;
        assert!(
            result.is_err(),
            "a handshake with ALPN allpeers/999 went through"
        );
        assert!(b.connections().is_empty());
    })
    .await
}

/// `max_concurrent_streams` is applied: with a cap of 4 (both ends), a peer that makes 6
/// requests at once gets 4 handled, the 5th waits (it is not refused, the connection stays
/// up) until one of the 4 ends, and all 6 succeed. Over QUIC the cap is the remote's stream
/// credit; over TCP it is the opener's own outbound cap.
async fn stream_limit(t: TransportKind) {
    const LIMIT: u32 = 4;
    let config = allpeers_net::EndpointConfig {
        max_concurrent_streams: LIMIT,
        ..allpeers_net::EndpointConfig::loopback()
    };
    let a = endpoint_with(config.clone()).await;
    let b = endpoint_with(config).await;
    introduce(&a, &b, t);
    introduce(&b, &a, t);
    let (entered_tx, mut entered) = mpsc::unbounded_channel::<u32>();
    let release = std::sync::Arc::new(tokio::sync::Semaphore::new(0));
    let gate = release.clone();
    b.register(
        ns("hold"),
        ServiceFn::new().on_request(move |_ctx, i: u32| {
            let entered_tx = entered_tx.clone();
            let gate = gate.clone();
            async move {
                let _ = entered_tx.send(i);
                gate.acquire().await.unwrap().forget();
                Ok(i)
            }
        }),
    );
    // Connect first so every request below shares one connection.
    a.connect(b.peer_id()).await.unwrap();
    let total = LIMIT + 2;
    let requests: Vec<_> = (0..total)
        .map(|i| {
            let a = a.clone();
            let peer = b.peer_id();
            tokio::spawn(async move { a.request::<_, u32>(peer, &ns("hold"), &i).await })
        })
        .collect();
    for _ in 0..LIMIT {
        entered.recv().await.unwrap();
    }
    // The next request waits for a free stream (bounded look: nothing may arrive).
    assert!(
        tokio::time::timeout(Duration::from_millis(500), entered.recv())
            .await
            .is_err(),
        "more than {LIMIT} streams were open at once"
    );
    release.add_permits(1);
    entered.recv().await.unwrap();
    release.add_permits(total as usize);
    for r in requests {
        r.await.unwrap().unwrap();
    }
    let conn = a.connection(&b.peer_id()).unwrap();
    assert!(!conn.is_closed());
    assert_eq!(conn.transport(), t);
    assert_eq!(a.connections().len(), 1);
}
both_transports!(concurrent_streams_past_the_limit_wait, super::stream_limit);

/// A `read_frame` dropped mid-frame (a timeout around it) keeps what it read: the next call
/// returns the whole frame. Before, the bytes read by the dropped call were lost and the
/// rest of the frame was taken for a new header.
async fn read_frame_is_cancel_safe(t: TransportKind) {
    const LIMIT: usize = 256 * 1024;
    let (a, b) = pair(t).await;
    let (go_tx, mut go_rx) = mpsc::channel::<()>(1);
    let (got_tx, mut got_rx) = mpsc::channel::<(usize, Result<Vec<u8>, String>)>(1);
    b.register(
        ns("frames"),
        ServiceFn::new().on_stream(move |_ctx, _send, mut recv| {
            let (go_tx, got_tx) = (go_tx.clone(), got_tx.clone());
            async move {
                let mut cancelled = 0;
                let got = loop {
                    match tokio::time::timeout(Duration::from_millis(50), recv.read_frame(LIMIT))
                        .await
                    {
                        Ok(frame) => break frame.map_err(|e| e.to_string()),
                        Err(_) => {
                            cancelled += 1;
                            // A few dropped reads mid-frame, then the rest may come.
                            if cancelled == 3 {
                                let _ = go_tx.send(()).await;
                            }
                        }
                    }
                };
                let got = got.and_then(|f| f.map(|b| b.to_vec()).ok_or("end".into()));
                let _ = got_tx.send((cancelled, got)).await;
            }
        }),
    );
    let (mut send, _recv) = a.open_stream(b.peer_id(), &ns("frames")).await.unwrap();
    let body: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    let mut framed = (body.len() as u32).to_be_bytes().to_vec();
    framed.extend_from_slice(&body);
    let (first, rest) = framed.split_at(60_000);
    send.write_all(first).await.unwrap();
    go_rx
        .recv()
        .await
        .expect("the reader was cancelled mid-frame");
    send.write_all(rest).await.unwrap();
    let (cancelled, got) = got_rx.recv().await.unwrap();
    assert!(cancelled >= 3);
    assert_eq!(got.expect("the whole frame"), body);
}
both_transports!(
    read_frame_cancelled_midway_loses_nothing,
    super::read_frame_is_cancel_safe
);

/// A peer reached directly over QUIC, or that dialled us over TCP, with a TCP listener on the same IP: bulk streams
/// take a TCP+TLS connection of their own (QUIC at a 1,500-byte path costs about twice the CPU per byte, a yamux
/// stream about a third more); a TCP address that never finishes the
/// handshake is given up within a few round trips, the stream goes on the QUIC connection, and that address is not
/// tried again for the next stream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_streams_beside_quic_or_an_inbound_connection_take_tcp_where_the_peer_listens() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    fn echo_io() -> ServiceFn {
        ServiceFn::new().on_stream(move |_ctx, mut send, mut recv| async move {
            if tokio::io::copy(&mut recv, &mut send).await.is_ok() {
                let _ = send.shutdown().await;
            }
        })
    }
    async fn round_trip(from: &Endpoint, to: &Endpoint) {
        let (mut send, mut recv) = from
            .open_bulk_stream(to.peer_id(), &ns("echo-io"))
            .await
            .unwrap();
        send.write_all(b"over and back").await.unwrap();
        send.shutdown().await.unwrap();
        let mut back = Vec::new();
        AsyncReadExt::read_to_end(&mut recv, &mut back)
            .await
            .unwrap();
        assert_eq!(back, b"over and back");
    }
    bounded(async {
        let (a, b) = pair(TransportKind::Quic).await;
        b.register(ns("echo-io"), echo_io());
        introduce(&a, &b, TransportKind::Tcp);
        round_trip(&a, &b).await;
        assert_eq!(
            a.connection(&b.peer_id()).unwrap().transport(),
            TransportKind::Quic
        );
        assert_eq!(a.bulk_stats().dialled, 1, "a TCP connection of its own");
        assert_eq!(b.bulk_stats().accepted, 1);

        // Dave dialled Alice over TCP: her bulk stream to him dials his listener too.
        let (a, dave) = (endpoint().await, endpoint().await);
        introduce(&dave, &a, TransportKind::Tcp);
        dave.register(ns("echo-io"), echo_io());
        let mut events = a.events();
        dave.connect(a.peer_id()).await.unwrap();
        // Alice has adopted his connection before she opens the stream (else she would dial him herself).
        match events.recv().await.unwrap() {
            EndpointEvent::Connected { peer, .. } => assert_eq!(peer, dave.peer_id()),
            other => panic!("{other:?}"),
        }
        introduce(&a, &dave, TransportKind::Tcp);
        round_trip(&a, &dave).await;
        let kept = a.connection(&dave.peer_id()).unwrap();
        assert_eq!(
            (kept.transport(), kept.direction()),
            (TransportKind::Tcp, Direction::Inbound)
        );
        assert_eq!(a.bulk_stats().dialled, 1, "a TCP connection of its own");

        // Carol's TCP address is a listener that accepts and never answers the TLS handshake. Alice's connect
        // timeout is longer than the test's bound: only the few round trips' bound lets the stream through.
        let a = endpoint_with(EndpointConfig {
            connect_timeout: Duration::from_secs(120),
            ..EndpointConfig::loopback()
        })
        .await;
        let carol = endpoint().await;
        introduce(&a, &carol, TransportKind::Quic);
        introduce(&carol, &a, TransportKind::Quic);
        carol.register(ns("echo-io"), echo_io());
        let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let silent_addr = silent.local_addr().unwrap();
        let (accepted_tx, mut accepted) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((socket, _)) = silent.accept().await {
                held.push(socket);
                let _ = accepted_tx.send(());
            }
        });
        a.add_peer_address(carol.peer_id(), Address::tcp(silent_addr));
        round_trip(&a, &carol).await;
        accepted.recv().await.expect("the TCP address was tried");
        assert_eq!(a.bulk_stats().dialled, 0);
        // The next stream does not try it again.
        round_trip(&a, &carol).await;
        assert!(accepted.try_recv().is_err(), "tried once only");
    })
    .await;
}

/// A bulk stream over TCP: a connection of its own beside the peer's (not the one kept), the serving side told the
/// dialler's PeerId, every byte through both ways and counted in both ends' bulk totals; a dial to an address whose
/// key is not the PeerId is refused as for any connection; over QUIC it is an ordinary stream on the connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_streams_have_a_connection_of_their_own_with_the_same_authentication() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    bounded(async {
        for t in [TransportKind::Tcp, TransportKind::Quic] {
            let (a, b) = pair(t).await;
            let (seen_tx, mut seen) = mpsc::channel(4);
            b.register(
                ns("echo-io"),
                ServiceFn::new().on_stream(move |ctx, mut send, mut recv| {
                    let seen_tx = seen_tx.clone();
                    async move {
                        let _ = seen_tx.send((ctx.peer, ctx.connection.id())).await;
                        if tokio::io::copy(&mut recv, &mut send).await.is_ok() {
                            let _ = send.shutdown().await;
                        }
                    }
                }),
            );
            let (mut send, mut recv) = a
                .open_bulk_stream(b.peer_id(), &ns("echo-io"))
                .await
                .unwrap();
            let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
            let writer = {
                let data = data.clone();
                tokio::spawn(async move {
                    AsyncWriteExt::write_all(&mut send, &data).await.unwrap();
                    send.shutdown().await.unwrap();
                })
            };
            let mut back = Vec::new();
            AsyncReadExt::read_to_end(&mut recv, &mut back)
                .await
                .unwrap();
            writer.await.unwrap();
            assert!(back == data, "{t:?}: the echo differs from what was sent");
            let (peer, served_on) = seen.recv().await.unwrap();
            assert_eq!(peer, a.peer_id());
            let kept = b.connection(&a.peer_id()).unwrap().id();
            match t {
                TransportKind::Tcp => assert_ne!(served_on, kept, "a connection of its own"),
                TransportKind::Quic => assert_eq!(served_on, kept, "a stream on the connection"),
            }
            // What the bulk connections carried, on each end (the head and its answer besides).
            let (dialled, accepted) = (a.bulk_stats(), b.bulk_stats());
            let len = data.len() as u64;
            match t {
                TransportKind::Tcp => {
                    assert_eq!((dialled.dialled, accepted.accepted), (1, 1));
                    assert!(dialled.bytes_sent >= len && dialled.bytes_received >= len);
                    assert!(accepted.bytes_sent >= len && accepted.bytes_received >= len);
                }
                TransportKind::Quic => {
                    assert_eq!(dialled, Default::default());
                    assert_eq!(accepted, Default::default());
                }
            }
            assert_eq!(a.connections().len(), 1);
            assert_eq!(b.connections().len(), 1);
        }
        // Alice believes Bob listens at Eve's TCP address: the bulk dial is refused on the key.
        let (alice, bob, eve) = (endpoint().await, endpoint().await, endpoint().await);
        eve.register(
            ns("echo-io"),
            ServiceFn::new().on_stream(|_ctx, _send, _recv| async {}),
        );
        let eve_tcp = eve.local_address(TransportKind::Tcp).unwrap();
        let Err(err) = alice
            .open_bulk_stream_at(bob.peer_id(), eve_tcp, &ns("echo-io"))
            .await
        else {
            panic!("a bulk stream to Eve's address as Bob");
        };
        assert!(
            matches!(err, NetError::WrongPeer { expected, .. } if expected == bob.peer_id()),
            "{err:?}"
        );
        // And Eve as herself is reached.
        assert!(
            alice
                .open_bulk_stream_at(eve.peer_id(), eve_tcp, &ns("echo-io"))
                .await
                .is_ok()
        );
    })
    .await;
}
