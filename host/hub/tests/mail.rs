//! The e-mail gateway against real SMTP servers on loopback: Debian's aiosmtpd (python3-
//! aiosmtpd) with required STARTTLS + AUTH and with implicit TLS, delivering into a Maildir
//! that the tests read back (mailparse). Also: DKIM verified offline (python3-dkim), a 451
//! retried, a 550 given up (and the address suppressed), a hub restart with mail queued, a
//! certificate that does not match, one-click unsubscribe over HTTP. Skipped with a loud line
//! when python3-aiosmtpd is missing (tests/run.sh installs it).

mod common;
mod mail_common;
#[path = "../../../tests/fixtures/smtpd.rs"]
mod smtpd;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use allpeers_hub::mail::proto::{
    MailRequest, MailResponse, Notice, NotifyOutcome, Preferences, code, mail_ns,
};
use allpeers_hub_client::AcceptAll;
use allpeers_net::NetError;
use allpeers_net::service::ErrorCode;
use common::*;
use mail_common::*;
use smtpd::{Smtpd, SmtpdOptions, free_port, make_cert};

const PYTHON: &str = smtpd::PYTHON;

/// The shared fixture's server (`tests/fixtures/smtpd.rs`) in `mode`, with AUTH and faults.
fn start_smtpd(
    dir: &Path,
    port: u16,
    mode: &str,
    auth: Option<&str>,
    faults: (u32, u32),
    cert: &(PathBuf, PathBuf),
) -> Smtpd {
    Smtpd::start(
        dir,
        port,
        cert,
        &SmtpdOptions {
            mode,
            auth,
            faults,
            ..SmtpdOptions::default()
        },
    )
    .expect("start aiosmtpd")
}

/// How a test's server and gateway are set up ([`Gateway::start`]).
struct GatewayOptions<'a> {
    /// `starttls` or `tls`, for both the server and the hub.
    mode: &'a str,
    /// AUTH required (`hub:s3cret`).
    auth: bool,
    /// The server's faults (see `SmtpdOptions::faults`).
    faults: (u32, u32),
    /// The name the hub connects to (the certificate names `localhost`).
    host: &'a str,
    /// DKIM signing with a fresh key.
    dkim: bool,
    limits: serde_json::Value,
    /// More of the hub's `mail` section (e.g. `digest_every_secs`).
    extra: serde_json::Value,
    /// Start the server now (false: [`Gateway::start_smtpd`] later).
    smtpd: bool,
}

impl Default for GatewayOptions<'_> {
    fn default() -> Self {
        GatewayOptions {
            mode: "starttls",
            auth: false,
            faults: (0, 0),
            host: "localhost",
            dkim: false,
            limits: serde_json::json!({}),
            extra: serde_json::json!({}),
            smtpd: true,
        }
    }
}

/// The set-up every test shares: a temporary directory, a certificate for localhost, an
/// aiosmtpd on a free port, and an `allpeers-hub` whose gateway sends through it.
struct Gateway {
    dir: tempfile::TempDir,
    cert: (PathBuf, PathBuf),
    port: u16,
    mode: String,
    auth: bool,
    faults: (u32, u32),
    smtpd: Option<Smtpd>,
    /// The DKIM key's public half (base64 DER), with `dkim`.
    dkim_public: Option<String>,
    config: PathBuf,
    hub_dir: PathBuf,
    hub: HubProc,
    http: SocketAddr,
}

impl Gateway {
    fn start(o: GatewayOptions) -> Gateway {
        let dir = tempfile::tempdir().unwrap();
        let cert = make_cert(dir.path());
        let port = free_port();
        let dkim = o.dkim.then(|| make_dkim_key(dir.path()));
        let config = hub_config(
            dir.path(),
            &Setup {
                port,
                mode: o.mode,
                auth: o.auth,
                host: o.host,
                cert: &cert.0,
                dkim: dkim.as_ref().map(|(key, _)| key.as_path()),
                limits: o.limits,
            },
        );
        patch_config(&config, |mail| {
            for (k, v) in o.extra.as_object().unwrap() {
                mail[k] = v.clone();
            }
        });
        let hub_dir = dir.path().join("hub");
        let (hub, http) = spawn_hub(&hub_dir, &config);
        let mut g = Gateway {
            dir,
            cert,
            port,
            mode: o.mode.into(),
            auth: o.auth,
            faults: o.faults,
            smtpd: None,
            dkim_public: dkim.map(|(_, public)| public),
            config,
            hub_dir,
            hub,
            http,
        };
        if o.smtpd {
            g.start_smtpd();
        }
        g
    }

    fn start_smtpd(&mut self) {
        let auth = self.auth.then_some("hub:s3cret");
        self.smtpd = Some(start_smtpd(
            self.dir.path(),
            self.port,
            &self.mode,
            auth,
            self.faults,
            &self.cert,
        ));
    }

    fn smtpd(&self) -> &Smtpd {
        self.smtpd.as_ref().expect("the server is started")
    }

    /// Starts the hub again on the same database (after `hub.terminate()`).
    fn respawn_hub(&mut self) {
        let (hub, http) = spawn_hub(&self.hub_dir, &self.config);
        self.hub = hub;
        self.http = http;
    }
}

fn have_tools() -> bool {
    let ok = Command::new(PYTHON)
        .args(["-c", "import aiosmtpd, dkim"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        eprintln!(
            "SKIPPED: python3-aiosmtpd / python3-dkim not installed (tests/run.sh installs them)"
        );
    }
    ok
}

#[tokio::test(flavor = "multi_thread")]
async fn starttls_auth_consent_templates_dkim_and_one_click_unsubscribe() {
    if !have_tools() {
        return;
    }
    let g = Gateway::start(GatewayOptions {
        auth: true,
        dkim: true,
        ..Default::default()
    });
    let (dir, hub, http_addr, smtpd) = (&g.dir, &g.hub, g.http, g.smtpd());
    let dkim_public = g.dkim_public.clone().unwrap();
    let alice = named_node(hub, Some("alice")).await;
    let bob = named_node(hub, Some("bob")).await;

    // Bob registers his address: a confirmation mail, nothing else until confirmed.
    let r = ask(
        &bob,
        hub,
        MailRequest::SetAddress {
            address: "Bob@Peer.test".into(),
        },
    )
    .await
    .unwrap();
    assert!(
        matches!(&r, MailResponse::AddressSet { masked, .. } if masked == "b***@peer.test"),
        "{r:?}"
    );
    let confirm = Mail::parse(smtpd.wait_for(1));
    confirm.check_common("bob@peer.test");
    assert!(
        confirm
            .header("Subject")
            .unwrap()
            .starts_with("Confirm your e-mail address")
    );
    let verify = |m: &Mail, name: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, &m.raw).unwrap();
        let out = Command::new(PYTHON)
            .arg(DKIM_VERIFY)
            .arg(&path)
            .arg(&dkim_public)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "DKIM: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        let sig = m.header("DKIM-Signature").unwrap();
        assert!(sig.contains("d=hub.test") && sig.contains("s=ap1"), "{sig}");
        let signed = sig
            .split("h=")
            .nth(1)
            .unwrap()
            .split(';')
            .next()
            .unwrap()
            .to_ascii_lowercase();
        assert!(
            signed.contains("list-unsubscribe:list-unsubscribe-post"),
            "h= {signed}"
        );
    };
    verify(&confirm, "confirm.eml");
    // A tampered copy does not verify (the check can fail).
    let mut tampered = confirm.raw.clone();
    let i = tampered.windows(9).position(|w| w == b"One-Click").unwrap();
    tampered[i] = b'X';
    let path = dir.path().join("tampered.eml");
    std::fs::write(&path, &tampered).unwrap();
    assert!(
        !Command::new(PYTHON)
            .arg(DKIM_VERIFY)
            .arg(&path)
            .arg(&dkim_public)
            .status()
            .unwrap()
            .success()
    );

    let share = |title: &str| MailRequest::Notify {
        to: bob.id(),
        notice: Notice::Shared {
            title: title.into(),
        },
    };
    assert_eq!(
        ask(&alice, hub, share("too early")).await.unwrap(),
        MailResponse::Notified(NotifyOutcome::NotSent),
        "unconfirmed"
    );
    assert_eq!(
        app_code(
            &ask(
                &bob,
                hub,
                MailRequest::Confirm {
                    code: "WRONG123".into()
                }
            )
            .await
        ),
        Some(code::BAD_CODE)
    );
    assert_eq!(
        ask(
            &bob,
            hub,
            MailRequest::Confirm {
                code: confirm.code().to_lowercase()
            }
        )
        .await
        .unwrap_or_else(|e| panic!("{e}: code {:?} from {}", confirm.code(), confirm.text)),
        MailResponse::Confirmed
    );

    // A share notice with an injection attempt in the title.
    let title = "Holiday <b>2026</b>\r\nBcc: eve@evil.test";
    let answer = bounded(alice.endpoint.request_bytes(
        hub.peer,
        &mail_ns(),
        allpeers_net::service::encode(&share(title)).unwrap(),
        4096,
        Duration::from_secs(10),
    ))
    .await
    .unwrap();
    assert!(
        !String::from_utf8_lossy(&answer).contains("peer.test"),
        "the answer names no address"
    );
    assert_eq!(
        allpeers_net::service::decode::<MailResponse>(&answer).unwrap(),
        MailResponse::Notified(NotifyOutcome::Queued)
    );
    let m = Mail::parse(smtpd.wait_for(2));
    m.check_common("bob@peer.test");
    verify(&m, "share.eml");
    assert_eq!(
        m.header("Subject").unwrap(),
        "alice shared 'Holiday <b>2026</b> Bcc: eve@evil.test' with you"
    );
    assert!(
        m.text
            .contains("alice@hub.test shared 'Holiday <b>2026</b> Bcc: eve@evil.test' with you"),
        "{}",
        m.text
    );
    assert!(
        m.html
            .contains("Holiday &lt;b&gt;2026&lt;/b&gt; Bcc: eve@evil.test")
            && !m.html.contains("<b>"),
        "{}",
        m.html
    );
    // Alice learns nothing of Bob's address: her own status is empty.
    assert_eq!(
        ask(&alice, hub, MailRequest::Status).await.unwrap(),
        MailResponse::Status(None)
    );

    // Waiting messages; then preferences: no shares.
    assert_eq!(
        ask(
            &alice,
            hub,
            MailRequest::Notify {
                to: bob.id(),
                notice: Notice::Waiting { count: 3 }
            }
        )
        .await
        .unwrap(),
        MailResponse::Notified(NotifyOutcome::Queued)
    );
    let m = Mail::parse(smtpd.wait_for(3));
    assert_eq!(
        m.header("Subject").unwrap(),
        "3 messages are waiting for you"
    );
    let no_shares = Preferences {
        share: false,
        ..Preferences::ALL
    };
    assert_eq!(
        ask(&bob, hub, MailRequest::SetPreferences(no_shares))
            .await
            .unwrap(),
        MailResponse::Preferences(no_shares)
    );
    assert_eq!(
        ask(&alice, hub, share("Another")).await.unwrap(),
        MailResponse::Notified(NotifyOutcome::NotSent)
    );

    // Bad input: undecodable bytes, an empty title.
    let raw = bounded(alice.endpoint.request_bytes(
        hub.peer,
        &mail_ns(),
        bytes::Bytes::from_static(&[0xff, 0xff, 0xff]),
        1024,
        Duration::from_secs(5),
    ))
    .await;
    assert!(
        matches!(
            raw,
            Err(NetError::Remote {
                code: ErrorCode::BadRequest,
                ..
            })
        ),
        "{raw:?}"
    );
    assert_eq!(
        app_code(&ask(&alice, hub, share("\r\n")).await),
        Some(code::BAD_FIELD)
    );

    // One click: a GET only shows a page; a forged token is refused; the POST stops all mail.
    let url = m.unsubscribe_url();
    assert_eq!(http(http_addr, "GET", &url, ""), 200);
    assert_eq!(
        ask(
            &alice,
            hub,
            MailRequest::Notify {
                to: bob.id(),
                notice: Notice::Waiting { count: 1 }
            }
        )
        .await
        .unwrap(),
        MailResponse::Notified(NotifyOutcome::Queued),
        "a GET changes nothing"
    );
    smtpd.wait_for(4);
    let token = url.rsplit('/').next().unwrap();
    let mut forged = token.to_string().into_bytes();
    forged[50] = if forged[50] == b'A' { b'B' } else { b'A' };
    assert_eq!(
        http(
            http_addr,
            "POST",
            &format!("/u/{}", String::from_utf8(forged).unwrap()),
            "List-Unsubscribe=One-Click"
        ),
        404
    );
    assert_eq!(http(http_addr, "POST", "/u/%3Cscript%3E", ""), 404);
    assert_eq!(
        http(http_addr, "POST", &url, "List-Unsubscribe=One-Click"),
        200
    );
    assert_eq!(
        ask(
            &alice,
            hub,
            MailRequest::Notify {
                to: bob.id(),
                notice: Notice::Waiting { count: 2 }
            }
        )
        .await
        .unwrap(),
        MailResponse::Notified(NotifyOutcome::NotSent)
    );
    assert_eq!(smtpd.mails().len(), 4);
    alice.stop();
    bob.stop();
}

#[tokio::test(flavor = "multi_thread")]
async fn implicit_tls_invitations_and_rate_limits() {
    if !have_tools() {
        return;
    }
    let g = Gateway::start(GatewayOptions {
        mode: "tls",
        auth: true,
        limits: serde_json::json!({ "per_sender_burst": 4, "per_sender_per_hour": 4, "invite_repeat_days": 0 }),
        ..Default::default()
    });
    let (hub, http_addr, smtpd) = (&g.hub, g.http, g.smtpd());
    let alice = named_node(hub, Some("alice")).await;
    let carol = named_node(hub, None).await;
    let code = "apinvite1mfrggzdfmztwq2lknnwg23tpobyxe43uov3ho6dzpi";
    let invite = |to: &str| MailRequest::Invite {
        address: to.into(),
        invite_code: code.into(),
        note: Some("Come and see\r\nBcc: eve@example.test".into()),
    };

    assert_eq!(
        ask(&alice, hub, invite("dave@example.test")).await.unwrap(),
        MailResponse::Invited
    );
    let m = Mail::parse(smtpd.wait_for(1));
    m.check_common("dave@example.test");
    assert_eq!(
        m.header("Subject").unwrap(),
        "alice invites you to AllPeers"
    );
    assert!(m.text.contains(code) && m.html.contains(code) && m.text.contains("hub.test"));
    // The note's CR/LF became a space: no header was injected.
    assert!(
        m.text
            .contains("alice wrote: \"Come and see Bcc: eve@example.test\"")
    );
    assert_eq!(m.count("Bcc"), 0);
    // Dave declines in one click: never invited again.
    assert_eq!(
        http(
            http_addr,
            "POST",
            &m.unsubscribe_url(),
            "List-Unsubscribe=One-Click"
        ),
        200
    );
    assert_eq!(
        app_code(&ask(&alice, hub, invite("DAVE@example.test")).await),
        Some(code::DECLINED)
    );
    // Bad fields: not an invite code, not an address; no name at this hub.
    assert_eq!(
        app_code(
            &ask(
                &alice,
                hub,
                MailRequest::Invite {
                    address: "erin@example.test".into(),
                    invite_code: "<a href=x>".into(),
                    note: None,
                }
            )
            .await
        ),
        Some(code::BAD_FIELD)
    );
    assert_eq!(
        app_code(&ask(&alice, hub, invite("erin@example.test\r\nBcc: x@y.test")).await),
        Some(code::BAD_ADDRESS)
    );
    assert_eq!(
        app_code(&ask(&carol, hub, invite("erin@example.test")).await),
        Some(code::NO_ADDRESS)
    );
    // A flood: the sender's budget (4 mails, 2 spent on invites that passed the checks
    // before it) runs out.
    assert_eq!(
        ask(&alice, hub, invite("erin@example.test")).await.unwrap(),
        MailResponse::Invited
    );
    assert_eq!(
        ask(&alice, hub, invite("frank@example.test"))
            .await
            .unwrap(),
        MailResponse::Invited
    );
    assert_eq!(
        app_code(&ask(&alice, hub, invite("gina@example.test")).await),
        Some(code::RATE_LIMITED)
    );
    smtpd.wait_for(3);
    alice.stop();
    carol.stop();
}

#[tokio::test(flavor = "multi_thread")]
async fn temporary_failure_retried_permanent_given_up_and_suppressed() {
    if !have_tools() {
        return;
    }
    // The first DATA loses its connection mid-command, the second gets a 451.
    let g = Gateway::start(GatewayOptions {
        faults: (1, 1),
        ..Default::default()
    });
    let (hub, http_addr, smtpd, hub_dir) = (&g.hub, g.http, g.smtpd(), &g.hub_dir);
    let bob = named_node(hub, Some("bob")).await;
    ask(
        &bob,
        hub,
        MailRequest::SetAddress {
            address: "bob@peer.test".into(),
        },
    )
    .await
    .unwrap();
    let confirm = Mail::parse(smtpd.wait_for(1));
    confirm.check_common("bob@peer.test");
    // Confirmed by the mailed link: a GET only shows the button, the POST confirms.
    let link = confirm
        .text
        .lines()
        .find(|l| l.contains("/c/"))
        .expect("a link")
        .trim()
        .to_string();
    assert_eq!(http(http_addr, "GET", &link, ""), 200);
    let status = ask(&bob, hub, MailRequest::Status).await.unwrap();
    assert!(
        matches!(&status, MailResponse::Status(Some(s)) if !s.confirmed),
        "{status:?}"
    );
    assert_eq!(http(http_addr, "POST", &link, ""), 200);
    let status = ask(&bob, hub, MailRequest::Status).await.unwrap();
    assert!(
        matches!(&status, MailResponse::Status(Some(s)) if s.confirmed && s.masked == "b***@peer.test"),
        "{status:?}"
    );
    assert_eq!(http(http_addr, "POST", &link, ""), 404, "a link works once");
    wait_db(
        hub_dir,
        "sent after a dropped DATA and a 451",
        "SELECT state = 'sent' AND attempts = 3 AND last_error LIKE '%451%' FROM mail_queue WHERE address = 'bob@peer.test'",
    );

    // 550 at RCPT: given up at once, and the address is suppressed (a hard bounce).
    let carol = named_node(hub, Some("carol")).await;
    ask(
        &carol,
        hub,
        MailRequest::SetAddress {
            address: "nosuch@peer.test".into(),
        },
    )
    .await
    .unwrap();
    wait_db(
        hub_dir,
        "given up",
        "SELECT state = 'failed' AND attempts = 1 AND last_error LIKE '%550%' FROM mail_queue WHERE address = 'nosuch@peer.test'",
    );
    assert_eq!(
        app_code(
            &ask(
                &carol,
                hub,
                MailRequest::SetAddress {
                    address: "nosuch@peer.test".into()
                }
            )
            .await
        ),
        Some(code::DECLINED)
    );
    assert_eq!(smtpd.mails().len(), 1);
    bob.stop();
    carol.stop();
}

#[tokio::test(flavor = "multi_thread")]
async fn queued_mail_survives_a_hub_restart_and_is_delivered_once() {
    if !have_tools() {
        return;
    }
    // Nothing listens there yet: the first attempts fail to connect.
    let mut g = Gateway::start(GatewayOptions {
        smtpd: false,
        ..Default::default()
    });
    let hub_dir = g.hub_dir.clone();
    let identity = allpeers_net::Identity::generate();
    let bob = node_with(
        identity,
        fast_config(g.hub.peer, g.hub.addresses()),
        Arc::new(AcceptAll),
    )
    .await;
    bounded(bob.hub.register("bob")).await.unwrap();
    ask(
        &bob,
        &g.hub,
        MailRequest::SetAddress {
            address: "bob@peer.test".into(),
        },
    )
    .await
    .unwrap();
    wait_db(
        &hub_dir,
        "a failed attempt",
        "SELECT state = 'queued' AND attempts >= 1 FROM mail_queue",
    );
    bob.stop();
    assert!(g.hub.terminate(), "clean exit");
    g.start_smtpd();
    g.respawn_hub();
    Mail::parse(g.smtpd().wait_for(1)).check_common("bob@peer.test");
    wait_db(
        &hub_dir,
        "recorded as sent",
        "SELECT state = 'sent' FROM mail_queue",
    );
    assert!(g.hub.terminate());
    let smtpd = g.smtpd();
    // Nothing in flight any more: exactly one copy arrived.
    assert_eq!(smtpd.mails().len(), 1);
    assert_eq!(
        db_value::<i64>(&hub_dir, "SELECT COUNT(*) FROM mail_queue"),
        1
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_certificate_that_does_not_match_is_never_sent_to() {
    if !have_tools() {
        return;
    }
    // The certificate names localhost; the hub is told the server is 127.0.0.1.
    let g = Gateway::start(GatewayOptions {
        mode: "tls",
        host: "127.0.0.1",
        ..Default::default()
    });
    let (hub, smtpd, hub_dir) = (&g.hub, g.smtpd(), &g.hub_dir);
    let bob = named_node(hub, Some("bob")).await;
    ask(
        &bob,
        hub,
        MailRequest::SetAddress {
            address: "bob@peer.test".into(),
        },
    )
    .await
    .unwrap();
    wait_db(
        hub_dir,
        "a TLS failure recorded",
        "SELECT state = 'queued' AND attempts >= 2 AND last_error LIKE '%not valid for name%' FROM mail_queue",
    );
    assert!(smtpd.mails().is_empty());
    bob.stop();
}

/// The digest: bob accepts digests and goes away; three letters wait for him at the hub, and
/// the hub mails him "3 messages are waiting for you" (from the hub, no sender, no content);
/// not again while the count stays; a fourth letter makes a new one.
#[tokio::test(flavor = "multi_thread")]
async fn a_digest_counts_the_letters_waiting() {
    if !have_tools() {
        return;
    }
    let g = Gateway::start(GatewayOptions {
        extra: serde_json::json!({ "digest_every_secs": 1 }),
        ..Default::default()
    });
    let (hub, smtpd) = (&g.hub, g.smtpd());
    let alice = named_node(hub, Some("alice")).await;
    let bob = named_node(hub, Some("bob")).await;
    ask(
        &bob,
        hub,
        MailRequest::SetAddress {
            address: "bob@peer.test".into(),
        },
    )
    .await
    .unwrap();
    let confirm = Mail::parse(smtpd.wait_for(1));
    ask(
        &bob,
        hub,
        MailRequest::Confirm {
            code: confirm.code(),
        },
    )
    .await
    .unwrap();
    let bob_id = bob.id();
    // Digests are off by default: letters wait, nothing is mailed.
    bounded(alice.hub.mail_deposit(bob_id, vec![1; 64]))
        .await
        .unwrap();
    assert!(
        smtpd.try_wait_for(2, Duration::from_millis(2500)).is_none(),
        "no digest unless accepted"
    );
    let mut all = Preferences::ALL;
    all.waiting = false;
    assert_eq!(
        ask(&bob, hub, MailRequest::SetPreferences(all))
            .await
            .unwrap(),
        MailResponse::Preferences(all)
    );
    bob.stop();
    for _ in 0..2 {
        bounded(alice.hub.mail_deposit(bob_id, vec![2; 64]))
            .await
            .unwrap();
    }
    // A round between the two deposits (the worker looks every second; a loaded machine can
    // take that long between them) mails "2 messages" first, then "3" at the next round.
    let mut mails = 2;
    let digest = loop {
        let digest = Mail::parse(smtpd.wait_for(mails));
        digest.check_common("bob@peer.test");
        match digest.header("Subject").as_deref() {
            Some("3 messages are waiting for you") => break digest,
            Some("2 messages are waiting for you") if mails == 2 => mails += 1,
            other => panic!("unexpected digest {other:?}"),
        }
    };
    assert!(
        digest
            .text
            .contains("3 messages are waiting for you at hub.test")
    );
    assert!(!digest.text.contains("alice"), "a digest names no sender");
    assert!(
        smtpd
            .try_wait_for(mails + 1, Duration::from_millis(2500))
            .is_none(),
        "not again while the count stays"
    );
    bounded(alice.hub.mail_deposit(bob_id, vec![3; 64]))
        .await
        .unwrap();
    let digest = Mail::parse(smtpd.wait_for(mails + 1));
    assert_eq!(
        digest.header("Subject").as_deref(),
        Some("4 messages are waiting for you")
    );
    alice.stop();
}
