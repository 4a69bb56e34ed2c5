//! Mail gateway benchmark (harness = false; prints a table): mails per second and latency
//! per mail to a real local SMTP server (Debian's aiosmtpd, STARTTLS, Maildir), through the
//! hub (a node's `Notify` request -> queue in SQLite -> worker -> SMTP) against the baseline
//! of the same messages sent with lettre directly (same transport, same pool). The
//! difference is what the hub adds: the request, two durable SQLite writes, rendering.
//!
//! `MAIL_BENCH_N` (default 300) mails per run. Needs python3-aiosmtpd and openssl;
//! `MAIL_BENCH_SERVER=postfix`: Debian's postfix instead (as root).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use allpeers_hub::mail::config::{MailConfig, MailLimits, SmtpConfig, SmtpSecurity};
use allpeers_hub::mail::proto::{MailRequest, MailResponse, Notice, NotifyOutcome, mail_ns};
use allpeers_hub::mail::{delivery, template};
use allpeers_hub::{Hub, HubConfig};
use allpeers_hub_client::{AcceptAll, HubClient, HubClientConfig};
use allpeers_net::{Endpoint, EndpointConfig, Identity};
use futures::StreamExt as _;
use lettre::AsyncTransport as _;

#[path = "../../../tests/fixtures/postfix.rs"]
mod postfix;
#[path = "../../../tests/fixtures/smtpd.rs"]
mod smtpd;

/// The server the mails go to: aiosmtpd, or with `MAIL_BENCH_SERVER=postfix` Debian's postfix
/// (an instance of its own, `tests/fixtures/postfix.rs`; root only).
enum Server {
    Aiosmtpd(smtpd::Smtpd),
    Postfix(postfix::Postfix),
}

fn maildir_count(dir: &Path) -> usize {
    std::fs::read_dir(dir.join("new"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// Waits until the Maildir holds `n` mails (polled every 200 µs: the bench's clock).
fn wait_count(dir: &Path, n: usize) {
    let start = Instant::now();
    while maildir_count(dir) < n {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "mail {n} never arrived"
        );
        std::thread::sleep(Duration::from_micros(200));
    }
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    if !smtpd::have_aiosmtpd() {
        println!("SKIPPED: python3-aiosmtpd or openssl not installed");
        return;
    }
    let n: usize = std::env::var("MAIL_BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300);
    let use_postfix = std::env::var("MAIL_BENCH_SERVER").as_deref() == Ok("postfix");
    if use_postfix && !postfix::have_postfix() {
        println!("SKIPPED: postfix not installed, or not root");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = smtpd::make_cert(dir.path());
    let port = smtpd::free_port();
    let (server, maildir, name) = if use_postfix {
        let server = postfix::Postfix::start(
            dir.path(),
            port,
            &(cert.clone(), key),
            &["bob"],
            &postfix::PostfixOptions::default(),
        )
        .expect("start postfix");
        let maildir = server.maildir("bob");
        (Server::Postfix(server), maildir, "postfix")
    } else {
        let server = smtpd::Smtpd::start(
            dir.path(),
            port,
            &(cert.clone(), key),
            &smtpd::SmtpdOptions::default(),
        )
        .expect("start aiosmtpd");
        let maildir = server.maildir.clone();
        (Server::Aiosmtpd(server), maildir, "aiosmtpd")
    };

    let smtp = SmtpConfig {
        host: "localhost".into(),
        port,
        security: SmtpSecurity::Starttls,
        root_certs: vec![cert.clone()],
        pool_max: 4,
        ..SmtpConfig::default()
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let (direct_rate, direct_latency) = rt.block_on(direct(&smtp, n, &maildir));
    let (hub_rate, hub_latency) = rt.block_on(through_hub(&smtp, n, dir.path(), &maildir));
    match server {
        Server::Aiosmtpd(s) => drop(s),
        Server::Postfix(s) => drop(s),
    }

    println!("mail gateway, {n} mails, {name} on loopback (STARTTLS), pool 4");
    println!(
        "{:<42} {:>12} {:>16}",
        "path", "mails/s", "latency (median)"
    );
    println!(
        "{:<42} {:>12.0} {:>13.2} ms",
        "lettre direct (baseline)",
        direct_rate,
        ms(direct_latency)
    );
    println!(
        "{:<42} {:>12.0} {:>13.2} ms",
        "node -> hub queue -> SMTP",
        hub_rate,
        ms(hub_latency)
    );
    println!(
        "ratio hub/direct: throughput {:.2}x, latency {:.2}x; the hub adds {:.2} ms per mail",
        hub_rate / direct_rate,
        ms(hub_latency) / ms(direct_latency),
        ms(hub_latency) - ms(direct_latency)
    );
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn letter(i: usize) -> template::Rendered {
    template::render(
        &template::Letter::Shared {
            sender: "alice@hub.test".into(),
            title: format!("Holiday {i}"),
        },
        &template::Site {
            hub_name: "hub.test",
            unsubscribe_url: "http://127.0.0.1/u/x",
        },
    )
}

/// The baseline: the same messages through the same lettre transport, no hub.
async fn direct(smtp: &SmtpConfig, n: usize, maildir: &Path) -> (f64, Duration) {
    let transport = delivery::transport(smtp).unwrap();
    let from: lettre::message::Mailbox = "AllPeers <noreply@hub.test>".parse().unwrap();
    let message = |i: usize| {
        template::compose(
            letter(i),
            &from,
            "bob@peer.test",
            format!("<{i}@hub.test>"),
            "http://127.0.0.1/u/x",
            None,
        )
        .unwrap()
    };
    let before = maildir_count(maildir);
    let mut latencies = Vec::new();
    for i in 0..50 {
        let t = Instant::now();
        transport.send(message(i)).await.unwrap();
        latencies.push(t.elapsed());
    }
    let start = Instant::now();
    futures::stream::iter(0..n)
        .for_each_concurrent(4, |i| {
            let m = message(i);
            let t = &transport;
            async move {
                t.send(m).await.unwrap();
            }
        })
        .await;
    // Until the last is in the Maildir, like the hub's path (aiosmtpd writes it before its
    // 250; postfix queues it first and delivers it a moment later).
    let m = maildir.to_path_buf();
    tokio::task::spawn_blocking(move || wait_count(&m, before + 50 + n))
        .await
        .unwrap();
    let rate = n as f64 / start.elapsed().as_secs_f64();
    assert_eq!(maildir_count(maildir), before + 50 + n);
    (rate, median(latencies))
}

async fn through_hub(smtp: &SmtpConfig, n: usize, dir: &Path, maildir: &Path) -> (f64, Duration) {
    let config = HubConfig {
        name: "hub.test".into(),
        data_dir: dir.join("hub"),
        quic: Some("127.0.0.1:0".parse().unwrap()),
        tcp: None,
        mail: Some(MailConfig {
            smtp: smtp.clone(),
            http: allpeers_hub::mail::config::HttpConfig {
                listen: "127.0.0.1:0".parse().unwrap(),
                ..Default::default()
            },
            limits: MailLimits {
                per_sender_per_hour: 1_000_000,
                per_sender_burst: 1_000_000,
                per_recipient_per_day: 1_000_000,
                daily_cap: 1_000_000,
                ..MailLimits::default()
            },
            ..MailConfig::default()
        }),
        ..HubConfig::default()
    };
    let hub = Hub::start(config).await.unwrap();
    let hub_peer = hub.endpoint.peer_id();
    let addrs = hub.endpoint.local_addresses();
    let node = |name: &'static str| {
        let addrs = addrs.clone();
        async move {
            let e = Endpoint::bind(Identity::generate(), EndpointConfig::loopback())
                .await
                .unwrap();
            let c = HubClient::start(
                e.clone(),
                HubClientConfig::new(hub_peer, addrs),
                Arc::new(AcceptAll),
            )
            .await
            .unwrap();
            assert!(c.wait_online(Duration::from_secs(30)).await);
            c.register(name).await.unwrap();
            (e, c)
        }
    };
    let (alice, _ca) = node("alice").await;
    let (bob, _cb) = node("bob").await;
    let ask = |e: &Endpoint, r: MailRequest| {
        let e = e.clone();
        async move {
            e.request::<_, MailResponse>(hub_peer, &mail_ns(), &r)
                .await
                .unwrap()
        }
    };
    let before = maildir_count(maildir);
    ask(
        &bob,
        MailRequest::SetAddress {
            address: "bob@peer.test".into(),
        },
    )
    .await;
    let newest = tokio::task::spawn_blocking({
        let m = maildir.to_path_buf();
        move || {
            wait_count(&m, before + 1);
            newest_mail(&m)
        }
    })
    .await
    .unwrap();
    let text = String::from_utf8_lossy(&std::fs::read(newest).unwrap()).to_string();
    let code = text
        .lines()
        .find(|l| l.starts_with("    "))
        .unwrap()
        .trim()
        .to_string();
    assert_eq!(
        ask(&bob, MailRequest::Confirm { code }).await,
        MailResponse::Confirmed
    );
    let notify = |i: usize| MailRequest::Notify {
        to: bob.peer_id(),
        notice: Notice::Shared {
            title: format!("Holiday {i}"),
        },
    };
    let mut count = before + 1;
    let mut latencies = Vec::new();
    for i in 0..50 {
        let t = Instant::now();
        assert_eq!(
            ask(&alice, notify(i)).await,
            MailResponse::Notified(NotifyOutcome::Queued)
        );
        count += 1;
        let m = maildir.to_path_buf();
        tokio::task::spawn_blocking(move || wait_count(&m, count))
            .await
            .unwrap();
        latencies.push(t.elapsed());
    }
    let start = Instant::now();
    for i in 0..n {
        ask(&alice, notify(i)).await;
    }
    let m = maildir.to_path_buf();
    let target = count + n;
    tokio::task::spawn_blocking(move || wait_count(&m, target))
        .await
        .unwrap();
    let rate = n as f64 / start.elapsed().as_secs_f64();
    hub.endpoint.shutdown().await;
    (rate, median(latencies))
}

fn newest_mail(maildir: &Path) -> PathBuf {
    std::fs::read_dir(maildir.join("new"))
        .unwrap()
        .filter_map(|e| e.ok())
        .max_by_key(|e| e.metadata().and_then(|m| m.modified()).ok())
        .unwrap()
        .path()
}
