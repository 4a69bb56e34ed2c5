//! The e-mail gateway against Debian's postfix, the realistic path: an instance of its own
//! (`tests/fixtures/postfix.rs`: `postfix -c DIR start` from the test's directory, stopped on
//! drop) with STARTTLS required, delivering into Maildirs. A 550 (an unknown user) is given
//! up at once and recorded, the address suppressed; postfix's per-client message rate limit
//! answers a 450, retried by the queue and delivered once the limit's window has passed.
//! Then faults from postfix's `smtp-sink` behind socat's TLS: a connection dropped after
//! the message's final dot without an answer, a server slower than the hub's timeout (both
//! retried), then a slow one within it (delivered). Skipped with a loud line without postfix
//! (or socat) or when not root (tests/run.sh installs them).

mod common;
mod mail_common;
#[path = "../../../tests/fixtures/postfix.rs"]
mod postfix;
#[path = "../../../tests/fixtures/smtpd.rs"]
mod smtpd;

use std::path::Path;
use std::time::{Duration, Instant};

use allpeers_hub::mail::proto::{MailRequest, MailResponse, code};
use mail_common::*;
use postfix::{DOMAIN, Postfix, PostfixOptions, TlsSink};
use smtpd::{free_port, make_cert, wait_in_maildir};

/// An invite code of the right form (the hub checks its form only).
const INVITE_CODE: &str = "apinvite1mfrggzdfmztwq2lknnwg23tpobyxe43uov3ho6dzpi";
/// postfix's window for its message rate limit: short, so the 4xx clears within the test.
const RATE_WINDOW_SECS: u32 = 3;

fn invite(to: &str) -> MailRequest {
    MailRequest::Invite {
        address: to.into(),
        invite_code: INVITE_CODE.into(),
        note: None,
    }
}

/// The hub's config for a server on `port` (`security`), answers awaited `timeout_secs`.
fn config(
    dir: &Path,
    port: u16,
    security: &str,
    cert: &Path,
    timeout_secs: u64,
) -> std::path::PathBuf {
    let path = hub_config(
        dir,
        &Setup {
            port,
            mode: security,
            auth: false,
            host: "localhost",
            cert,
            dkim: None,
            limits: serde_json::json!({
                "per_sender_burst": 20, "per_sender_per_hour": 20, "invite_repeat_days": 0,
            }),
        },
    );
    patch_config(&path, |mail| {
        mail["smtp"]["timeout_secs"] = timeout_secs.into()
    });
    path
}

fn queue_row(hub_dir: &Path, address: &str) -> String {
    db_value(
        hub_dir,
        &format!(
            "SELECT state || ' ' || attempts || ' ' || ifnull(last_error, '') FROM mail_queue \
             WHERE address = '{address}'"
        ),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn postfix_starttls_delivery_a_450_retried_and_a_550_given_up() {
    if !postfix::have_postfix() {
        eprintln!("SKIPPED: postfix not installed or not root (tests/run.sh installs it)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let cert = make_cert(dir.path());
    let port = free_port();
    let started = Instant::now();
    let server = Postfix::start(
        dir.path(),
        port,
        &cert,
        &["bob", "carol"],
        &PostfixOptions {
            message_rate_limit: Some(2),
            rate_window_secs: RATE_WINDOW_SECS,
        },
    )
    .expect("start postfix");
    eprintln!("postfix up in {:?}", started.elapsed());
    let hub_dir = dir.path().join("hub");
    let config = config(dir.path(), port, "starttls", &cert.0, 5);
    let (hub, _) = spawn_hub(&hub_dir, &config);
    let alice = named_node(&hub, Some("alice")).await;

    // An unknown user: 550 at RCPT, given up at once, the address suppressed. (The first
    // message of postfix's rate window.)
    let nosuch = format!("nosuch@{DOMAIN}");
    assert_eq!(
        ask(&alice, &hub, invite(&nosuch)).await.unwrap(),
        MailResponse::Invited
    );
    wait_db(
        &hub_dir,
        "a 550 given up",
        &format!(
            "SELECT state = 'failed' AND attempts = 1 AND last_error LIKE '%550%' \
             FROM mail_queue WHERE address = '{nosuch}'"
        ),
    );
    assert_eq!(
        app_code(&ask(&alice, &hub, invite(&nosuch)).await),
        Some(code::DECLINED),
        "a hard bounce is never mailed again"
    );

    // Two more within the window: one is the second (delivered), the other the third (450,
    // retried until the window has passed, then delivered). The gateway sends the two at
    // once (two delivery slots), so which one postfix refuses is a race.
    let (bob, carol) = (format!("bob@{DOMAIN}"), format!("carol@{DOMAIN}"));
    for to in [&bob, &carol] {
        assert_eq!(
            ask(&alice, &hub, invite(to)).await.unwrap(),
            MailResponse::Invited
        );
    }
    let raw = wait_in_maildir(&server.maildir("bob"), 1, MAIL_WAIT).expect("bob's mail");
    let m = Mail::parse(raw);
    assert_eq!(m.header("To").as_deref(), Some(bob.as_str()));
    assert_eq!(
        m.header("From").as_deref(),
        Some("AllPeers <noreply@hub.test>")
    );
    assert_eq!(
        m.header("Return-Path").as_deref(),
        Some("<noreply@hub.test>"),
        "envelope sender"
    );
    assert_eq!(m.header("Delivered-To").as_deref(), Some(bob.as_str()));
    assert_eq!(
        m.header("List-Unsubscribe-Post").as_deref(),
        Some("List-Unsubscribe=One-Click")
    );
    assert_eq!(
        m.header("Subject").as_deref(),
        Some("alice invites you to AllPeers")
    );
    assert!(m.text.contains(INVITE_CODE) && m.html.contains(INVITE_CODE));
    let received = m.header("Received").unwrap_or_default();
    assert!(
        received.contains("using TLS"),
        "postfix received it over TLS: {received}"
    );

    wait_db(
        &hub_dir,
        "one sent at once, the other after a 450 retried",
        &format!(
            "SELECT COUNT(*) = 2 AND SUM(attempts = 1) = 1 \
                    AND SUM(attempts >= 2 AND last_error LIKE '%450%') = 1 \
             FROM mail_queue WHERE state = 'sent' AND address IN ('{bob}', '{carol}')"
        ),
    );
    let raw = wait_in_maildir(&server.maildir("carol"), 1, MAIL_WAIT).expect("carol's mail");
    assert_eq!(
        Mail::parse(raw).header("To").as_deref(),
        Some(carol.as_str())
    );
    eprintln!(
        "bob: {}; carol: {}",
        queue_row(&hub_dir, &bob),
        queue_row(&hub_dir, &carol)
    );
    let log = server.log();
    assert!(
        log.contains("too much mail") || log.contains("rate limit exceeded"),
        "postfix refused for the rate: {log}"
    );
    // Each got exactly one copy.
    for user in ["bob", "carol"] {
        assert_eq!(
            smtpd::maildir_mails(&server.maildir(user)).len(),
            1,
            "{user}: one copy"
        );
    }
    alice.stop();
}

#[tokio::test(flavor = "multi_thread")]
async fn smtp_sink_dropped_mid_data_and_slow_then_delivered() {
    if !postfix::have_smtp_sink() {
        eprintln!(
            "SKIPPED: smtp-sink (postfix) / socat not installed or not root (tests/run.sh installs them)"
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let cert = make_cert(dir.path());
    let (port, sink_port) = (free_port(), free_port());
    // Disconnects, without an answer, once the message's final dot has come.
    let mut sink = TlsSink::start(dir.path(), port, sink_port, &cert, &["-q", "."])
        .expect("start smtp-sink behind socat");
    let hub_dir = dir.path().join("hub");
    let config = config(dir.path(), port, "tls", &cert.0, 3);
    let (hub, _) = spawn_hub(&hub_dir, &config);
    let alice = named_node(&hub, Some("alice")).await;
    let bob = format!("bob@{DOMAIN}");
    assert_eq!(
        ask(&alice, &hub, invite(&bob)).await.unwrap(),
        MailResponse::Invited
    );
    wait_db(
        &hub_dir,
        "a connection dropped mid-DATA, retried",
        "SELECT state = 'queued' AND attempts >= 2 FROM mail_queue",
    );
    eprintln!("after drops: {}", queue_row(&hub_dir, &bob));

    // Slower than the hub's 3 s for a whole mail: the answer to DATA comes after 6 s.
    sink.restart_sink(sink_port, &["-w", "6"]).unwrap();
    let attempts: i64 = db_value(&hub_dir, "SELECT attempts FROM mail_queue");
    wait_db(
        &hub_dir,
        "a slow server timed out, retried",
        &format!(
            "SELECT state = 'queued' AND attempts >= {} AND last_error LIKE '%timed out%' FROM mail_queue",
            attempts + 1
        ),
    );
    eprintln!("after slow answers: {}", queue_row(&hub_dir, &bob));

    // Slow within the timeout: delivered, once.
    sink.restart_sink(sink_port, &["-w", "1"]).unwrap();
    wait_db(
        &hub_dir,
        "sent by a slow server",
        "SELECT state = 'sent' FROM mail_queue",
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    while sink.mails() == 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(sink.mails() >= 1, "smtp-sink kept the mail");
    alice.stop();
}
