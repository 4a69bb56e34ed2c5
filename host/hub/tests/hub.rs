//! Cross-process tests: the real `allpeers-hub` binary, real endpoints and hub clients.

mod common;

use std::sync::Arc;
use std::time::Duration;

use allpeers_hub_client::proto::{self, HubRequest, HubResponse, code};
use allpeers_hub_client::{
    AcceptAll, AcceptListed, Availability, HubError, HubEvent, HubState, PeerStatus, ProxyConfig,
    RefuseAll, WatchHolder,
};
use allpeers_net::{Identity, KeyFile, NetError, PathKind};
use common::*;

const SECONDS: Duration = Duration::from_secs(1);

/// Sending to a peer resolves it and the connector resolves it again a moment later: the
/// second answer is the first one reused, not a second trip to the hub.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_resolved_twice_in_a_moment_costs_one_hub_round_trip() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let mut hub = HubProc::spawn(dir.path(), &[]);
        let mut cfg = fast_config(hub.peer, hub.addresses());
        cfg.record_reuse = 60 * SECONDS;
        let alice = node(fast_config(hub.peer, hub.addresses()), Arc::new(AcceptAll)).await;
        let bob = node(cfg, Arc::new(AcceptAll)).await;
        assert!(alice.hub.wait_online(10 * SECONDS).await);
        assert!(bob.hub.wait_online(10 * SECONDS).await);
        let first = bob
            .hub
            .resolve(&alice.id().to_string())
            .await
            .unwrap()
            .expect("found");
        // With the hub gone, only a reused answer can come back.
        assert!(hub.terminate());
        let again = bob
            .hub
            .resolve_recent(alice.id())
            .await
            .expect("the first answer, reused");
        assert_eq!(again, Some(first));
    })
    .await;
}

/// A dead QUIC address first in the hub's list (a UDP socket that never answers: what a
/// dead instance's host looks like) costs the client's short first try, not the endpoint's
/// whole 10 s connect timeout, before the next address brings the line up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_quic_address_costs_the_short_first_try_not_the_connect_timeout() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let hub = HubProc::spawn(dir.path(), &[]);
        let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let dead = allpeers_net::Address::quic(silent.local_addr().unwrap());
        for live in hub.addresses() {
            let started = std::time::Instant::now();
            let n = node(fast_config(hub.peer, vec![dead, live]), Arc::new(AcceptAll)).await;
            assert!(
                n.hub.wait_online(10 * SECONDS).await,
                "online through {live}"
            );
            let took = started.elapsed();
            eprintln!("dead QUIC address, then {live}: online in {took:?}");
            assert!(
                took >= allpeers_hub_client::client::FIRST_TRY && took < 6 * SECONDS,
                "{took:?}: the dead address's first try is {:?}; the connect timeout is 10 s",
                allpeers_hub_client::client::FIRST_TRY
            );
            n.stop();
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn register_and_resolve() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let hub = HubProc::spawn(dir.path(), &[]);
        let cfg = || fast_config(hub.peer, hub.addresses());
        let alice_id = Identity::generate();
        let key = dir.path().join("alice.key");
        KeyFile::new(&alice_id, None).write(&key).unwrap();
        let alice = node_with(alice_id, cfg(), Arc::new(AcceptAll)).await;
        let bob = node(cfg(), Arc::new(AcceptAll)).await;
        assert!(alice.hub.wait_online(10 * SECONDS).await);
        assert!(bob.hub.wait_online(10 * SECONDS).await);

        let cert = alice.hub.register("Alice").await.unwrap();
        assert_eq!(cert.full_name(), "alice@hub.test");
        assert!(cert.verify(&hub.peer));
        assert_eq!(cert.peer, alice.id());

        // By name (any case, with or without the hub part) and by PeerId.
        for q in ["alice@hub.test", "ALICE", "alice@HUB.test"] {
            let rec = bob.hub.resolve(q).await.unwrap().expect("found");
            assert_eq!(rec.peer, alice.id());
            assert!(rec.online);
            assert_eq!(rec.online_at.as_ref().unwrap().peer, hub.peer);
            assert!(!rec.addresses.is_empty());
            assert_eq!(rec.certificate.as_ref().unwrap().name, "alice");
        }
        let rec = bob.hub.resolve(&alice.id().to_string()).await.unwrap().unwrap();
        assert_eq!(rec.certificate.unwrap().name, "alice");
        assert!(bob.hub.resolve("nobody").await.unwrap().is_none());
        assert!(bob.hub.resolve("alice@other.hub").await.unwrap().is_none());

        // The name is Alice's: Bob cannot take it, in any case.
        let e = bob.hub.register("aLiCe").await.unwrap_err();
        assert_eq!(e.app_code(), Some(code::NAME_TAKEN), "{e}");
        // Bad names are refused locally with the reason...
        assert!(matches!(bob.hub.register("bad name").await, Err(HubError::Name(_))));
        assert!(matches!(bob.hub.register("-x").await, Err(HubError::Name(_))));
        // ...and by the hub, for a client that skips the check.
        let raw: Result<HubResponse, NetError> = bob
            .endpoint
            .request(hub.peer, &proto::registry_ns(), &HubRequest::Register { name: "bad name".into(), peer: bob.id() })
            .await;
        assert!(matches!(raw, Err(NetError::Remote { code: allpeers_net::service::ErrorCode::Application(c), .. }) if c == code::BAD_NAME));
        // A registration for someone else's key is refused.
        let raw: Result<HubResponse, NetError> = bob
            .endpoint
            .request(hub.peer, &proto::registry_ns(), &HubRequest::Register { name: "mallory".into(), peer: alice.id() })
            .await;
        assert!(matches!(raw, Err(NetError::Remote { code: allpeers_net::service::ErrorCode::Application(c), .. }) if c == code::NOT_YOURS), "{raw:?}");
        // Malformed request bytes: a clear error, the hub carries on.
        let raw = bob
            .endpoint
            .request_bytes(hub.peer, &proto::registry_ns(), bytes::Bytes::from_static(&[0xff, 0xff, 0xff]), 1024, 5 * SECONDS)
            .await;
        assert!(matches!(raw, Err(NetError::Remote { code: allpeers_net::service::ErrorCode::BadRequest, .. })), "{raw:?}");

        // The same key from a new device re-registers (and keeps the name).
        alice.stop();
        let again = KeyFile::read(&key).unwrap().open(None, "alice.key").unwrap();
        let alice2 = node_with(again, cfg(), Arc::new(AcceptAll)).await;
        let cert2 = alice2.hub.register("alice@hub.test").await.unwrap();
        assert_eq!(cert2.peer, cert.peer);
        let rec = bob.hub.resolve("alice").await.unwrap().unwrap();
        assert_eq!(rec.peer, alice2.id());
        // Bob registers his own name fine.
        assert_eq!(bob.hub.register("bob").await.unwrap().name, "bob");
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_up_and_down_within_seconds() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let hub = HubProc::spawn(dir.path(), &[]);
        let cfg = || fast_config(hub.peer, hub.addresses());
        let a = node(cfg(), Arc::new(AcceptAll)).await;
        let b = node(cfg(), Arc::new(AcceptAll)).await;
        let c = node(cfg(), Arc::new(AcceptAll)).await;
        let mut b_events = b.hub.events();
        let mut c_events = c.hub.events();
        assert!(b.hub.wait_online(10 * SECONDS).await);

        // Mutual rule: B's watch on A is refused until A watches B too.
        b.hub.watch(WatchHolder::Contacts, &[a.id()]).await;
        let e = wait_event(&mut b_events, 5 * SECONDS, |e| {
            matches!(e, HubEvent::WatchRefused { .. })
        })
        .await;
        assert_eq!(e, Some(HubEvent::WatchRefused { peer: a.id() }));
        assert!(a.hub.wait_online(10 * SECONDS).await);
        a.hub.watch(WatchHolder::Contacts, &[b.id()]).await;
        let e = wait_event(&mut b_events, 5 * SECONDS, |e| {
            matches!(e, HubEvent::PresenceChanged { .. })
        })
        .await;
        assert_eq!(
            e,
            Some(HubEvent::PresenceChanged {
                peer: a.id(),
                online: true,
                status: Default::default()
            })
        );
        // C watches A one-sidedly: refused, never told.
        c.hub.watch(WatchHolder::Contacts, &[a.id()]).await;
        let e = wait_event(&mut c_events, 5 * SECONDS, |e| {
            matches!(
                e,
                HubEvent::WatchRefused { .. } | HubEvent::PresenceChanged { .. }
            )
        })
        .await;
        assert_eq!(e, Some(HubEvent::WatchRefused { peer: a.id() }));

        // A leaves cleanly: B sees it within seconds.
        let t = std::time::Instant::now();
        a.stop();
        let e = wait_event(&mut b_events, 5 * SECONDS, |e| {
            matches!(e, HubEvent::PresenceChanged { .. })
        })
        .await;
        assert_eq!(
            e,
            Some(HubEvent::PresenceChanged {
                peer: a.id(),
                online: false,
                status: Default::default()
            })
        );
        eprintln!("clean leave seen after {:?}", t.elapsed());

        // A watcher joining later gets the current state; C never heard about A.
        let e = wait_event(&mut c_events, Duration::from_millis(300), |e| {
            matches!(e, HubEvent::PresenceChanged { .. })
        })
        .await;
        assert_eq!(e, None);
    })
    .await
}

/// A local client's `hub.unwatch` of a contact (the sidebar closing a view, an app) does not
/// end the contact's presence the node keeps for its contacts — nor, by the mutual rule, the
/// contact's view of us.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clients_unwatch_leaves_a_contacts_presence_watched() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let hub = HubProc::spawn(dir.path(), &[]);
        let cfg = || fast_config(hub.peer, hub.addresses());
        let a = node(cfg(), Arc::new(AcceptAll)).await;
        let b = node(cfg(), Arc::new(AcceptAll)).await;
        let mut a_events = a.hub.events();
        let mut b_events = b.hub.events();
        assert!(a.hub.wait_online(10 * SECONDS).await);
        assert!(b.hub.wait_online(10 * SECONDS).await);
        a.hub.watch(WatchHolder::Contacts, &[b.id()]).await;
        b.hub.watch(WatchHolder::Contacts, &[a.id()]).await;
        b.hub.watch(WatchHolder::Client(1), &[a.id()]).await;
        let online = |e: &HubEvent| matches!(e, HubEvent::PresenceChanged { online: true, .. });
        assert!(
            wait_event(&mut b_events, 5 * SECONDS, online)
                .await
                .is_some()
        );

        b.hub.unwatch(WatchHolder::Client(1), &[a.id()]).await;
        // b's next status goes on the same line, after the unwatch: once a is told of it,
        // the hub has taken the unwatch — and a still sees b (the mutual rule holds).
        let busy = PeerStatus {
            availability: Availability::Busy,
            text: "call".into(),
        };
        status_told(&b.hub, &mut a_events, busy).await;
        // (The second watch may have brought the current presence again first.)
        let away = PeerStatus {
            availability: Availability::Away,
            text: "lunch".into(),
        };
        status_told(&a.hub, &mut b_events, away).await;
    })
    .await
}

/// Sets `status` on `hub`'s line and waits until a watcher (`events`) is told of it.
async fn status_told(
    hub: &allpeers_hub_client::HubClient,
    events: &mut tokio::sync::broadcast::Receiver<HubEvent>,
    status: PeerStatus,
) {
    hub.set_status(status.clone()).await;
    let e = wait_event(
        events,
        5 * SECONDS,
        |e| matches!(e, HubEvent::PresenceChanged { status: s, .. } if *s == status),
    )
    .await;
    assert_eq!(
        e,
        Some(HubEvent::PresenceChanged {
            peer: hub.endpoint().peer_id(),
            online: true,
            status
        }),
        "the watcher is told"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_loss_seen_within_seconds_and_client_reconnects() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let hub = HubProc::spawn(dir.path(), &[]);
        let proxy = TestProxy::start().await;
        // A reaches the hub through a proxy that will go silent (a network loss, no FIN).
        let mut cfg_a = fast_config(hub.peer, hub.addresses());
        cfg_a.proxy = Some(ProxyConfig::Http {
            addr: proxy.addr,
            auth: None,
        });
        let a = node(cfg_a, Arc::new(AcceptAll)).await;
        let b = node(fast_config(hub.peer, hub.addresses()), Arc::new(AcceptAll)).await;
        let mut a_events = a.hub.events();
        let mut b_events = b.hub.events();
        assert!(a.hub.wait_online(10 * SECONDS).await);
        assert!(b.hub.wait_online(10 * SECONDS).await);
        a.hub.watch(WatchHolder::Contacts, &[b.id()]).await;
        b.hub.watch(WatchHolder::Contacts, &[a.id()]).await;
        let e = wait_event(&mut b_events, 5 * SECONDS, |e| {
            matches!(e, HubEvent::PresenceChanged { .. })
        })
        .await;
        assert_eq!(
            e,
            Some(HubEvent::PresenceChanged {
                peer: a.id(),
                online: true,
                status: Default::default()
            })
        );

        let t = std::time::Instant::now();
        proxy.set(ProxyMode::Freeze);
        // The hub notices the silence (2 s presence timeout) and tells B.
        let e = wait_event(&mut b_events, 6 * SECONDS, |e| {
            matches!(e, HubEvent::PresenceChanged { .. })
        })
        .await;
        assert_eq!(
            e,
            Some(HubEvent::PresenceChanged {
                peer: a.id(),
                online: false,
                status: Default::default()
            })
        );
        let hub_saw = t.elapsed();
        // A notices too (2 s line timeout).
        let e = wait_event(&mut a_events, 6 * SECONDS, |e| {
            matches!(e, HubEvent::Offline { .. })
        })
        .await;
        assert!(e.is_some());
        assert!(a.hub.status().last_error.is_some());
        eprintln!(
            "silent loss: hub told watchers after {hub_saw:?}, the client knew after {:?}",
            t.elapsed()
        );
        assert!(hub_saw < 5 * SECONDS);

        // The network comes back: A reconnects by itself (backoff) and B sees it online.
        proxy.set(ProxyMode::Forward);
        let e = wait_event(&mut b_events, 20 * SECONDS, |e| {
            matches!(e, HubEvent::PresenceChanged { .. })
        })
        .await;
        assert_eq!(
            e,
            Some(HubEvent::PresenceChanged {
                peer: a.id(),
                online: true,
                status: Default::default()
            })
        );
        assert!(a.hub.wait_online(5 * SECONDS).await);
        assert_eq!(a.hub.state(), HubState::Online);
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_between_nodes_not_connecting_directly_is_end_to_end_encrypted() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let tap = dir.path().join("relay.tap");
        let hub = HubProc::spawn(dir.path(), &["--relay-tap", tap.to_str().unwrap()]);
        let cfg = || fast_config(hub.peer, hub.addresses());
        let a = node(cfg(), Arc::new(AcceptAll)).await;
        let b = node(cfg(), Arc::new(AcceptAll)).await;
        assert!(a.hub.wait_online(10 * SECONDS).await);
        assert!(b.hub.wait_online(10 * SECONDS).await);
        // A knows no address of B: only the relay can join them.
        assert!(a.endpoint.peer_addresses(&b.id()).is_empty());

        let conn = a.hub.connect_relayed(b.id()).await.unwrap();
        assert_eq!(conn.path(), PathKind::Relayed);
        assert_eq!(a.hub.path_of(&conn), PathKind::Relayed);
        assert_eq!(
            a.endpoint.connection(&b.id()).unwrap().path(),
            PathKind::Relayed
        );
        assert_eq!(conn.remote_peer(), b.id());
        let marker = "PLAINTEXT-MARKER-0123456789-".repeat(4096);
        let reply: String = a
            .endpoint
            .request(b.id(), &echo_ns(), &marker)
            .await
            .unwrap();
        assert_eq!(reply, marker);
        // B sees an ordinary connection from A, which it can use back.
        let back = b
            .endpoint
            .wait_connection(&a.id(), 5 * SECONDS)
            .await
            .unwrap();
        assert_eq!(back.path(), PathKind::Relayed);
        assert_eq!(b.hub.path_of(&back), PathKind::Relayed);
        let r: String = b
            .endpoint
            .request(a.id(), &echo_ns(), &"hi back".to_string())
            .await
            .unwrap();
        assert_eq!(r, "hi back");

        // What the hub forwarded: at least the marker's size, and no plaintext.
        let tapped = std::fs::read(&tap).unwrap();
        assert!(
            tapped.len() > 2 * marker.len(),
            "tap holds {} bytes",
            tapped.len()
        );
        let needle = b"PLAINTEXT-MARKER";
        assert!(
            !tapped.windows(needle.len()).any(|w| w == needle),
            "plaintext crossed the relay"
        );
        assert!(!tapped.windows(7).any(|w| w == b"hi back"));
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_refusals_and_quotas() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let hub = HubProc::spawn(
            dir.path(),
            &[
                "--relay-max-concurrent",
                "1",
                "--relay-max-bytes",
                "1000000",
            ],
        );
        let cfg = || fast_config(hub.peer, hub.addresses());
        let a = node(cfg(), Arc::new(AcceptAll)).await;
        let b = node(cfg(), Arc::new(AcceptAll)).await;
        let refuser = node(cfg(), Arc::new(RefuseAll)).await;
        let picky = node(cfg(), Arc::new(AcceptListed::default())).await;
        let other = node(cfg(), Arc::new(AcceptAll)).await;
        for n in [&a, &b, &refuser, &picky, &other] {
            assert!(n.hub.wait_online(10 * SECONDS).await);
        }
        // Peers that did not agree.
        let e = a.hub.connect_relayed(refuser.id()).await.unwrap_err();
        assert_eq!(e.app_code(), Some(code::RELAY_REFUSED), "{e}");
        let mut picky_events = picky.hub.events();
        let e = a.hub.connect_relayed(picky.id()).await.unwrap_err();
        assert_eq!(e.app_code(), Some(code::RELAY_REFUSED), "{e}");
        assert!(e.to_string().contains("did not agree"), "{e}");
        let seen = wait_event(&mut picky_events, 2 * SECONDS, |e| {
            matches!(e, HubEvent::RelayOffered { .. })
        })
        .await;
        assert_eq!(
            seen,
            Some(HubEvent::RelayOffered {
                from: a.id(),
                accepted: false
            })
        );
        // Offline target.
        let nobody = Identity::generate().peer_id();
        let e = a.hub.connect_relayed(nobody).await.unwrap_err();
        assert_eq!(e.app_code(), Some(code::OFFLINE), "{e}");
        // Joining a session that is not ours.
        let (mut send, mut recv) = other
            .endpoint
            .open_stream(hub.peer, &proto::relay_ns())
            .await
            .unwrap();
        send.write_frame(
            &allpeers_net::service::encode(&proto::RelayJoin { session: [9; 16] }).unwrap(),
            1024,
        )
        .await
        .unwrap();
        let f = recv.read_frame(1024).await.unwrap().unwrap();
        let ready: proto::RelayReady = allpeers_net::service::decode(&f).unwrap();
        assert!(matches!(ready, proto::RelayReady::Refused(_)));

        // One relay at once per peer: the second is refused while the first lives.
        let conn = a.hub.connect_relayed(b.id()).await.unwrap();
        let e = other.hub.connect_relayed(b.id()).await.unwrap_err();
        assert_eq!(e.app_code(), Some(code::QUOTA), "{e}");
        // A flood past the byte budget (1 MB/hour) is cut...
        let big = "x".repeat(600_000);
        let mut cut = false;
        for _ in 0..4 {
            let r: Result<String, NetError> = a.endpoint.request(b.id(), &echo_ns(), &big).await;
            if r.is_err() {
                cut = true;
                break;
            }
        }
        assert!(cut, "the relay was not cut past its budget");
        let reason = tokio::time::timeout(10 * SECONDS, conn.closed()).await;
        assert!(
            reason.is_ok(),
            "the relayed connection outlived its cut relay"
        );
        // ...and further relays of the spent peer are refused.
        let e = a.hub.connect_relayed(b.id()).await.unwrap_err();
        assert_eq!(e.app_code(), Some(code::QUOTA), "{e}");
        // The hub serves everyone else meanwhile.
        other.hub.register("other").await.unwrap();
        assert!(other.hub.resolve("other").await.unwrap().is_some());
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hub_restart_clients_reconnect_direct_connections_survive() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let mut hub = HubProc::spawn(dir.path(), &[]);
        let (quic, tcp, peer) = (hub.quic, hub.tcp, hub.peer);
        let cfg = || {
            fast_config(
                peer,
                vec![
                    allpeers_net::Address::quic(quic),
                    allpeers_net::Address::tcp(tcp),
                ],
            )
        };
        let a = node(cfg(), Arc::new(AcceptAll)).await;
        let b = node(cfg(), Arc::new(AcceptAll)).await;
        assert!(a.hub.wait_online(10 * SECONDS).await);
        assert!(b.hub.wait_online(10 * SECONDS).await);
        a.hub.register("anna").await.unwrap();
        // A finds B through the hub and connects directly.
        let rec = a.hub.resolve(&b.id().to_string()).await.unwrap().unwrap();
        assert!(!rec.addresses.is_empty());
        let direct = a.endpoint.connect(b.id()).await.unwrap();
        assert_eq!(direct.path(), PathKind::Direct);
        assert_eq!(a.hub.path_of(&direct), PathKind::Direct);
        let mut a_events = a.hub.events();

        // SIGTERM: a clean exit.
        assert!(hub.terminate(), "the hub did not exit cleanly on SIGTERM");
        let e = wait_event(&mut a_events, 10 * SECONDS, |e| {
            matches!(e, HubEvent::Offline { .. })
        })
        .await;
        assert!(e.is_some());
        // Direct connection unaffected while the hub is down.
        let r: String = a
            .endpoint
            .request(b.id(), &echo_ns(), &"still here".to_string())
            .await
            .unwrap();
        assert_eq!(r, "still here");
        assert!(!direct.is_closed());

        // Same ports, same data: both come back by themselves; state survived.
        let hub2 = HubProc::spawn_at(dir.path(), quic, tcp, &[]);
        assert_eq!(hub2.peer, peer, "the hub's key persists");
        assert!(a.hub.wait_online(20 * SECONDS).await);
        assert!(b.hub.wait_online(20 * SECONDS).await);
        let rec = b.hub.resolve("anna").await.unwrap().unwrap();
        assert_eq!(rec.peer, a.id());
        assert!(rec.online);
        let r: String = b
            .endpoint
            .request(a.id(), &echo_ns(), &"after".to_string())
            .await
            .unwrap();
        assert_eq!(r, "after");
        assert!(!direct.is_closed());
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_clients_do_not_block_others() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("hub.json");
        std::fs::write(
            &config,
            r#"{ "handshake_timeout_secs": 2, "max_handshakes": 64 }"#,
        )
        .unwrap();
        let hub = HubProc::spawn(dir.path(), &["--config", config.to_str().unwrap()]);
        // 40 TCP clients that start a TLS record and never finish it.
        let mut slow = Vec::new();
        for _ in 0..40 {
            let mut s = tokio::net::TcpStream::connect(hub.tcp).await.unwrap();
            use tokio::io::AsyncWriteExt;
            s.write_all(&[0x16, 0x03, 0x01]).await.unwrap();
            slow.push(s);
        }
        // A peer that opens a presence line and never says Hello.
        let mute = node(
            fast_config(Identity::generate().peer_id(), hub.addresses()),
            Arc::new(AcceptAll),
        )
        .await;
        mute.hub.stop();
        mute.endpoint
            .add_peer_address(hub.peer, allpeers_net::Address::quic(hub.quic));
        let (_send, mut recv) = mute
            .endpoint
            .open_stream(hub.peer, &proto::presence_ns())
            .await
            .unwrap();

        // Everyone else is served at once, over both transports.
        let mut tcp_only = fast_config(hub.peer, vec![allpeers_net::Address::tcp(hub.tcp)]);
        tcp_only.request_timeout = 5 * SECONDS;
        let t = std::time::Instant::now();
        let good = node(tcp_only, Arc::new(AcceptAll)).await;
        assert!(good.hub.wait_online(5 * SECONDS).await);
        good.hub.register("good").await.unwrap();
        let quick = node(fast_config(hub.peer, hub.addresses()), Arc::new(AcceptAll)).await;
        assert!(quick.hub.resolve("good").await.unwrap().is_some());
        eprintln!("served in {:?} beside 40 slow sockets", t.elapsed());

        // The hub drops the slow ones (2 s handshake timeout) and the mute line (5 s).
        for mut s in slow {
            use tokio::io::AsyncReadExt;
            let mut buf = [0u8; 64];
            let r = tokio::time::timeout(10 * SECONDS, s.read(&mut buf)).await;
            assert!(
                matches!(r, Ok(Ok(0)) | Ok(Err(_))),
                "slow socket still open: {r:?}"
            );
        }
        let r = tokio::time::timeout(10 * SECONDS, recv.read_frame(1024)).await;
        assert!(
            matches!(r, Ok(Err(_)) | Ok(Ok(None))),
            "mute line still open: {r:?}"
        );
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_that_refuses_or_drops_gives_clear_errors() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let hub = HubProc::spawn(dir.path(), &[]);
        let proxy = TestProxy::start().await;
        proxy.set(ProxyMode::Refuse);
        let mut cfg = fast_config(hub.peer, hub.addresses());
        cfg.proxy = Some(ProxyConfig::Http {
            addr: proxy.addr,
            auth: None,
        });
        cfg.request_timeout = 5 * SECONDS;
        let a = node(cfg.clone(), Arc::new(AcceptAll)).await;
        let e = a.hub.register("alice").await.unwrap_err();
        assert!(
            matches!(&e, HubError::Proxy(p) if p.to_string().contains("403")),
            "{e}"
        );
        assert!(!a.hub.wait_online(SECONDS).await);

        proxy.set(ProxyMode::Drop);
        let e = a.hub.resolve("alice").await.unwrap_err();
        assert!(
            matches!(
                &e,
                HubError::Proxy(allpeers_hub_client::proxy::ProxyError::Dropped(_))
            ),
            "{e}"
        );

        // A proxy that is not there at all.
        let mut cfg2 = cfg.clone();
        cfg2.proxy = Some(ProxyConfig::Http {
            addr: "127.0.0.1:9".parse().unwrap(),
            auth: None,
        });
        let c = node(cfg2, Arc::new(AcceptAll)).await;
        let e = c.hub.register("carol").await.unwrap_err();
        assert!(
            matches!(&e, HubError::Proxy(p) if p.to_string().contains("cannot reach the proxy")),
            "{e}"
        );

        // The hub is fine for everyone else; A gets through once the proxy forwards.
        let b = node(fast_config(hub.peer, hub.addresses()), Arc::new(AcceptAll)).await;
        b.hub.register("bob").await.unwrap();
        proxy.set(ProxyMode::Forward);
        assert!(a.hub.wait_online(10 * SECONDS).await);
        a.hub.register("alice").await.unwrap();
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn through_real_tinyproxy() {
    let Ok(path) = which("tinyproxy") else {
        eprintln!(
            "\n\n*** SKIPPED through_real_tinyproxy: the tinyproxy binary is missing (apt-get install tinyproxy) ***\n"
        );
        return;
    };
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let hub = HubProc::spawn(dir.path(), &[]);
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let conf = dir.path().join("tinyproxy.conf");
        std::fs::write(
            &conf,
            format!(
                "Port {port}\nListen 127.0.0.1\nTimeout 600\nAllow 127.0.0.1\nMaxClients 100\nLogLevel Info\nLogFile \"{}\"\nPidFile \"{}\"\n",
                dir.path().join("tinyproxy.log").display(),
                dir.path().join("tinyproxy.pid").display()
            ),
        )
        .unwrap();
        let tiny = std::process::Command::new(path)
            .args(["-d", "-c", conf.to_str().unwrap()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        struct Kill(std::process::Child);
        impl Drop for Kill {
            fn drop(&mut self) {
                let _ = self.0.kill();
                let _ = self.0.wait();
            }
        }
        let _guard = Kill(tiny);
        let proxy_addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        // Wait until tinyproxy listens (bounded).
        let mut up = false;
        for _ in 0..100 {
            if tokio::net::TcpStream::connect(proxy_addr).await.is_ok() {
                up = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(up, "tinyproxy did not start listening");

        let mut cfg = fast_config(hub.peer, hub.addresses());
        cfg.proxy = Some(ProxyConfig::parse(&format!("http://{proxy_addr}")).unwrap());
        let a = node(cfg, Arc::new(AcceptAll)).await;
        let b = node(fast_config(hub.peer, hub.addresses()), Arc::new(AcceptAll)).await;
        assert!(a.hub.wait_online(10 * SECONDS).await, "no line through tinyproxy: {:?}", a.hub.proxy_error());
        assert!(b.hub.wait_online(10 * SECONDS).await);
        let st = a.hub.status();
        assert!(st.via_proxy && st.observed.is_some(), "{st:?}");
        a.hub.register("proxied").await.unwrap();
        let rec = b.hub.resolve("proxied").await.unwrap().unwrap();
        assert_eq!(rec.peer, a.id());
        // A relay through the proxied hub connection.
        a.hub.connect_relayed(b.id()).await.unwrap();
        let r: String = a.endpoint.request(b.id(), &echo_ns(), &"via tinyproxy".to_string()).await.unwrap();
        assert_eq!(r, "via tinyproxy");
        let log = std::fs::read_to_string(dir.path().join("tinyproxy.log")).unwrap_or_default();
        assert!(log.contains("CONNECT"), "tinyproxy's log shows no CONNECT:\n{log}");
    })
    .await
}

fn which(name: &str) -> Result<std::path::PathBuf, ()> {
    for dir in std::env::var("PATH")
        .unwrap_or_default()
        .split(':')
        .chain(["/usr/bin", "/usr/sbin"])
    {
        let p = std::path::Path::new(dir).join(name);
        if p.is_file() {
            return Ok(p);
        }
    }
    Err(())
}

/// A hub that answers directory queries badly: signed by another key, replaying an
/// earlier answer, or stale. The client must reject each.
mod fake_hub {
    use super::*;
    use allpeers_hub_client::proto::{DirectoryAnswer, Query, SignedAnswer};
    use allpeers_net::service::{BoxFuture, decode, encode};
    use allpeers_net::{Context, Endpoint, EndpointConfig, RemoteError, Service};
    use bytes::Bytes;
    use std::sync::Mutex;

    #[derive(Clone, Copy, PartialEq)]
    pub enum Mode {
        Forged,
        Replay,
        Stale,
    }

    struct Fake {
        mode: Mode,
        hub_key: Identity,
        other_key: Identity,
        first: Mutex<Option<SignedAnswer>>,
    }

    impl Service for Fake {
        fn request(&self, _ctx: Context, body: Bytes) -> BoxFuture<Result<Bytes, RemoteError>> {
            let req: HubRequest = decode(&body).unwrap();
            let HubRequest::Resolve { query, nonce } = req else {
                return Box::pin(async { Err(RemoteError::refused("fake")) });
            };
            let mut answer = DirectoryAnswer {
                query,
                nonce,
                time: allpeers_model::hlc::now_ms(),
                hub: self.hub_key.peer_id(),
                record: None,
            };
            let signed = match self.mode {
                Mode::Forged => SignedAnswer::sign(&self.other_key, &answer),
                Mode::Stale => {
                    answer.time -= 10 * 60 * 1000;
                    SignedAnswer::sign(&self.hub_key, &answer)
                }
                Mode::Replay => {
                    let mut first = self.first.lock().unwrap();
                    first
                        .get_or_insert_with(|| SignedAnswer::sign(&self.hub_key, &answer))
                        .clone()
                }
            };
            let bytes = encode(&HubResponse::Resolved(signed)).unwrap();
            Box::pin(async move { Ok(bytes) })
        }
    }

    pub async fn start(mode: Mode) -> (Endpoint, allpeers_net::Address) {
        let hub_key = Identity::generate();
        let same = KeyFile::new(&hub_key, None);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k");
        same.write(&path).unwrap();
        let endpoint_key = KeyFile::read(&path).unwrap().open(None, "k").unwrap();
        let ep = Endpoint::bind(endpoint_key, EndpointConfig::loopback())
            .await
            .unwrap();
        ep.register(
            proto::registry_ns(),
            Fake {
                mode,
                hub_key,
                other_key: Identity::generate(),
                first: Mutex::new(None),
            },
        );
        let addr = ep.local_address(allpeers_net::TransportKind::Quic).unwrap();
        let _ = Query::Name(String::new());
        (ep, addr)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_replayed_and_stale_directory_answers_are_rejected() {
    use allpeers_hub_client::proto::AnswerError;
    bounded(async {
        for (mode, expect) in [
            (fake_hub::Mode::Forged, "forged"),
            (fake_hub::Mode::Replay, "replay"),
            (fake_hub::Mode::Stale, "stale"),
        ] {
            let (hub_ep, addr) = fake_hub::start(mode).await;
            let n = node(
                fast_config(hub_ep.peer_id(), vec![addr]),
                Arc::new(AcceptAll),
            )
            .await;
            let first = n.hub.resolve("alice").await;
            let second = n.hub.resolve("alice").await;
            match expect {
                "forged" => {
                    assert!(
                        matches!(first, Err(HubError::Answer(AnswerError::BadSignature))),
                        "{first:?}"
                    );
                }
                "replay" => {
                    // The first answer is genuine; the same answer again is a replay.
                    assert!(first.is_ok(), "{first:?}");
                    assert!(
                        matches!(second, Err(HubError::Answer(AnswerError::WrongQuestion))),
                        "{second:?}"
                    );
                }
                _ => {
                    assert!(
                        matches!(first, Err(HubError::Answer(AnswerError::Stale(_)))),
                        "{first:?}"
                    );
                }
            }
            n.stop();
            hub_ep.close();
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn through_a_socks5_proxy() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let hub = HubProc::spawn(dir.path(), &[]);
        let socks = Socks5::start().await;
        let mut cfg = fast_config(hub.peer, hub.addresses());
        cfg.proxy = Some(ProxyConfig::parse(&format!("socks5://{}", socks.addr)).unwrap());
        let a = node(cfg, Arc::new(AcceptAll)).await;
        assert!(
            a.hub.wait_online(10 * SECONDS).await,
            "{:?}",
            a.hub.proxy_error()
        );
        a.hub.register("socksy").await.unwrap();
        assert!(socks.tunnels() > 0);
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_rate_quota_paces_the_splice() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        // 256 KiB/s per relay direction.
        let hub = HubProc::spawn(dir.path(), &["--relay-rate", "262144"]);
        let cfg = || fast_config(hub.peer, hub.addresses());
        let a = node(cfg(), Arc::new(AcceptAll)).await;
        let b = node(cfg(), Arc::new(AcceptAll)).await;
        assert!(a.hub.wait_online(10 * SECONDS).await);
        assert!(b.hub.wait_online(10 * SECONDS).await);
        a.hub.connect_relayed(b.id()).await.unwrap();
        let body = "r".repeat(768 * 1024);
        let t = std::time::Instant::now();
        let r: String = a.endpoint.request(b.id(), &echo_ns(), &body).await.unwrap();
        let took = t.elapsed();
        assert_eq!(r.len(), body.len());
        // 768 KiB each way at 256 KiB/s (the bucket may start full): well over a second.
        assert!(
            took >= Duration::from_millis(1500),
            "the relay was not paced: {took:?}"
        );
        eprintln!("768 KiB echoed through a 256 KiB/s relay in {took:?}");
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_presence_frames_close_only_that_line() {
    use allpeers_net::service::encode;
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let hub = HubProc::spawn(dir.path(), &[]);
        let good = node(fast_config(hub.peer, hub.addresses()), Arc::new(AcceptAll)).await;
        assert!(good.hub.wait_online(10 * SECONDS).await);
        let bad = node(
            fast_config(Identity::generate().peer_id(), hub.addresses()),
            Arc::new(AcceptAll),
        )
        .await;
        bad.hub.stop();
        bad.endpoint
            .add_peer_address(hub.peer, allpeers_net::Address::quic(hub.quic));
        let hello = encode(&proto::PresenceUp::Hello {
            addresses: vec![],
            accepts_relays: false,
            status: Default::default(),
        })
        .unwrap();
        // Garbage after a good Hello; an oversized length prefix; a second Hello.
        let cases: Vec<Vec<u8>> = vec![
            allpeers_net::frame::encode_frame(&[0xff, 0xfe, 0xfd], 1024)
                .unwrap()
                .to_vec(),
            vec![0xff, 0xff, 0xff, 0xff, 1, 2, 3],
            allpeers_net::frame::encode_frame(&hello, 1024)
                .unwrap()
                .to_vec(),
        ];
        for case in cases {
            let (mut send, mut recv) = bad
                .endpoint
                .open_stream(hub.peer, &proto::presence_ns())
                .await
                .unwrap();
            send.write_frame(&hello, 1024).await.unwrap();
            let welcome = recv.read_frame(1024).await.unwrap().unwrap();
            assert!(matches!(
                allpeers_net::service::decode::<proto::PresenceDown>(&welcome).unwrap(),
                proto::PresenceDown::Welcome { .. }
            ));
            send.write_all(&case).await.unwrap();
            // The hub ends this line (read end or reset), within the bound.
            let end = tokio::time::timeout(5 * SECONDS, async {
                loop {
                    match recv.read_frame(1024).await {
                        Ok(Some(_)) => continue, // a Pong or event queued before the cut
                        other => return other,
                    }
                }
            })
            .await;
            assert!(end.is_ok(), "the hub kept a line that sent {case:?}");
        }
        // Everyone else carries on; the same peer can open a good line again.
        good.hub.register("good").await.unwrap();
        assert!(good.hub.resolve("good").await.unwrap().is_some());
    })
    .await
}

/// A guest (a peer homed at another hub, on a guest line) flooding a hub with connection
/// signals or letters for a peer it hosts: past its burst each is refused by the guest's
/// own rate limit, and another guest still gets through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guest_flooding_signals_or_letters_is_cut_by_its_own_rate_limit() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let hub = HubProc::spawn(dir.path(), &[]);
        let bob = node(fast_config(hub.peer, hub.addresses()), Arc::new(AcceptAll)).await;
        assert!(bob.hub.wait_online(10 * SECONDS).await);
        let guest = async || {
            let mut config = fast_config(hub.peer, hub.addresses());
            config.guest = true;
            let n = node(config, Arc::new(RefuseAll)).await;
            assert!(n.hub.wait_online(10 * SECONDS).await);
            n
        };
        let (mallory, carol) = (guest().await, guest().await);
        let limited = |r: Result<(), HubError>| match r {
            Ok(()) => false,
            Err(e) if e.app_code() == Some(code::RATE_LIMITED) => true,
            Err(e) => panic!("only the rate limit may refuse: {e}"),
        };
        let mut signals = 0;
        let mut letters = 0;
        for _ in 0..100 {
            signals += limited(mallory.hub.signal(bob.id(), b"punch".to_vec()).await) as u32;
            letters += limited(
                mallory
                    .hub
                    .mail_deposit(bob.id(), vec![7; 64])
                    .await
                    .map(|_| ()),
            ) as u32;
        }
        // Bursts of 20 signals and 30 letters, refilled at 5 and 2 a second.
        assert!(signals >= 60, "only {signals} of 100 signals refused");
        assert!(letters >= 50, "only {letters} of 100 letters refused");
        assert!(!limited(
            carol.hub.signal(bob.id(), b"punch".to_vec()).await
        ));
        assert!(!limited(
            carol
                .hub
                .mail_deposit(bob.id(), vec![7; 64])
                .await
                .map(|_| ())
        ));
        for n in [&bob, &mallory, &carol] {
            n.stop();
        }
    })
    .await
}
