//! The e-mail gateway against real SMTP servers on loopback: Debian's aiosmtpd (python3-
//! aiosmtpd) with required STARTTLS + AUTH and with implicit TLS, delivering into a Maildir
//! that the tests read back (mailparse). Also: DKIM verified offline (python3-dkim), a 451
//! retried, a 550 given up (and the address suppressed), a hub restart with mail queued, a
//! certificate that does not match, one-click unsubscribe over HTTP. Skipped with a loud line
//! when python3-aiosmtpd is missing (tests/run.sh installs it).

mod common;
#[path = "../../../tests/fixtures/smtpd.rs"]
mod smtpd;

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use allpeers_hub::mail::proto::{
    MailRequest, MailResponse, Notice, NotifyOutcome, Preferences, code, mail_ns,
};
use allpeers_hub_client::AcceptAll;
use allpeers_net::NetError;
use allpeers_net::service::ErrorCode;
use common::*;
use smtpd::{MAIL_WAIT, Smtpd, SmtpdOptions, free_port, make_cert};

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
    Smtpd::start(dir, port, cert, &SmtpdOptions { mode, auth, faults }).expect("start aiosmtpd")
}

const DKIM_VERIFY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/common/dkim_verify.py");

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

fn run(cmd: &mut Command) -> Vec<u8> {
    let out = cmd.output().expect("run tool");
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// A DKIM key (PKCS#1 PEM) and its public key for the DNS record (base64 DER).
fn make_dkim_key(dir: &Path) -> (PathBuf, String) {
    let key = dir.join("dkim.pem");
    run(Command::new("openssl")
        .args(["genrsa", "-traditional", "-out"])
        .arg(&key)
        .arg("2048"));
    let der = run(Command::new("openssl")
        .args(["rsa", "-pubout", "-outform", "DER", "-in"])
        .arg(&key));
    (key, data_encoding::BASE64.encode(&der))
}

struct Setup<'a> {
    port: u16,
    mode: &'a str,
    auth: bool,
    host: &'a str,
    cert: &'a Path,
    dkim: Option<&'a Path>,
    limits: serde_json::Value,
}

fn hub_config(dir: &Path, s: &Setup) -> PathBuf {
    let mut mail = serde_json::json!({
        "smtp": {
            "host": s.host, "port": s.port, "security": s.mode,
            "root_certs": [s.cert], "pool_max": 2, "timeout_secs": 5,
        },
        "http": { "listen": "127.0.0.1:0" },
        "retry": { "first_ms": 200, "max_ms": 1000, "give_up_after_secs": 60 },
        "limits": s.limits,
    });
    if s.auth {
        mail["smtp"]["username"] = "hub".into();
        std::fs::write(dir.join("smtp-password"), "s3cret\n").unwrap();
        mail["smtp"]["password_file"] = dir.join("smtp-password").display().to_string().into();
    }
    if let Some(key) = s.dkim {
        mail["dkim"] = serde_json::json!({ "selector": "ap1", "key_file": key });
    }
    let path = dir.join("hub.json");
    std::fs::write(&path, serde_json::json!({ "mail": mail }).to_string()).unwrap();
    path
}

fn spawn_hub(dir: &Path, config: &Path) -> (HubProc, SocketAddr) {
    let hub = HubProc::spawn(dir, &["--config", config.to_str().unwrap()]);
    let http = hub.ready["mail_http"]
        .as_str()
        .expect("mail_http in the ready line")
        .parse()
        .unwrap();
    (hub, http)
}

async fn named_node(hub: &HubProc, name: Option<&str>) -> Node {
    let n = node(fast_config(hub.peer, hub.addresses()), Arc::new(AcceptAll)).await;
    if let Some(name) = name {
        bounded(n.hub.register(name)).await.unwrap();
    }
    n
}

async fn ask(n: &Node, hub: &HubProc, r: MailRequest) -> Result<MailResponse, NetError> {
    bounded(n.endpoint.request(hub.peer, &mail_ns(), &r)).await
}

fn app_code(r: &Result<MailResponse, NetError>) -> Option<u32> {
    match r {
        Err(NetError::Remote {
            code: ErrorCode::Application(c),
            ..
        }) => Some(*c),
        _ => None,
    }
}

/// A parsed delivered mail: headers, the two parts' bodies.
struct Mail {
    raw: Vec<u8>,
    headers: Vec<(String, String)>,
    text: String,
    html: String,
}

impl Mail {
    fn parse(raw: Vec<u8>) -> Mail {
        let m = mailparse::parse_mail(&raw).unwrap();
        assert_eq!(m.ctype.mimetype, "multipart/alternative", "top-level type");
        assert_eq!(m.subparts.len(), 2, "plain and HTML");
        assert_eq!(m.subparts[0].ctype.mimetype, "text/plain");
        assert_eq!(m.subparts[1].ctype.mimetype, "text/html");
        let headers = m
            .headers
            .iter()
            .map(|h| (h.get_key(), h.get_value()))
            .collect();
        let text = m.subparts[0].get_body().unwrap();
        let html = m.subparts[1].get_body().unwrap();
        Mail {
            raw,
            headers,
            text,
            html,
        }
    }
    fn header(&self, name: &str) -> Option<String> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    }
    fn count(&self, name: &str) -> usize {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .count()
    }
    /// The confirmation code (the indented line of the plain part).
    fn code(&self) -> String {
        self.text
            .lines()
            .find(|l| l.starts_with("    "))
            .expect("a code line")
            .trim()
            .to_string()
    }
    fn unsubscribe_url(&self) -> String {
        let v = self.header("List-Unsubscribe").expect("List-Unsubscribe");
        v.trim()
            .trim_start_matches('<')
            .trim_end_matches('>')
            .to_string()
    }
    /// Every delivered mail: envelope, From on the hub's domain, RFC 8058 headers.
    fn check_common(&self, to: &str) {
        assert_eq!(
            self.header("X-MailFrom").as_deref(),
            Some("noreply@hub.test"),
            "envelope sender"
        );
        assert_eq!(
            self.header("X-RcptTo").as_deref(),
            Some(to),
            "envelope recipient"
        );
        assert_eq!(
            self.header("From").as_deref(),
            Some("AllPeers <noreply@hub.test>")
        );
        assert_eq!(self.header("To").as_deref(), Some(to));
        assert_eq!(
            self.header("List-Unsubscribe-Post").as_deref(),
            Some("List-Unsubscribe=One-Click")
        );
        assert!(
            self.unsubscribe_url().starts_with("http://127.0.0.1:"),
            "{:?}",
            self.unsubscribe_url()
        );
        assert!(
            self.text.contains(&self.unsubscribe_url())
                && self.html.contains(&self.unsubscribe_url())
        );
        assert_eq!(self.count("Bcc") + self.count("Cc"), 0);
    }
}

/// One HTTP/1.1 request to the hub's listener; returns the status code.
fn http(addr: SocketAddr, method: &str, url_or_path: &str, body: &str) -> u16 {
    let path = match url_or_path.find("/u/").or_else(|| url_or_path.find("/c/")) {
        Some(i) => &url_or_path[i..],
        None => url_or_path,
    };
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len()).unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

/// Opens the hub's database read-only and waits (bounded) until `query` yields `true`.
fn wait_db(dir: &Path, what: &str, query: &str) {
    let start = Instant::now();
    loop {
        let conn = rusqlite::Connection::open_with_flags(
            dir.join("hub.db"),
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )
        .unwrap();
        let ok: bool = conn.query_row(query, [], |r| r.get(0)).unwrap_or(false);
        if ok {
            return;
        }
        if start.elapsed() > MAIL_WAIT {
            let rows: Option<String> = conn
                .query_row(
                    "SELECT group_concat(state || ' ' || attempts || ' ' || ifnull(last_error, ''), ' | ') FROM mail_queue",
                    [],
                    |r| r.get(0),
                )
                .unwrap_or(None);
            panic!("{what}: not within {MAIL_WAIT:?}; queue: {rows:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn db_value<T: rusqlite::types::FromSql>(dir: &Path, query: &str) -> T {
    let conn = rusqlite::Connection::open_with_flags(
        dir.join("hub.db"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    conn.query_row(query, [], |r| r.get(0)).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn starttls_auth_consent_templates_dkim_and_one_click_unsubscribe() {
    if !have_tools() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let cert = make_cert(dir.path());
    let (dkim_key, dkim_public) = make_dkim_key(dir.path());
    let port = free_port();
    let smtpd = start_smtpd(
        dir.path(),
        port,
        "starttls",
        Some("hub:s3cret"),
        (0, 0),
        &cert,
    );
    let config = hub_config(
        dir.path(),
        &Setup {
            port,
            mode: "starttls",
            auth: true,
            host: "localhost",
            cert: &cert.0,
            dkim: Some(&dkim_key),
            limits: serde_json::json!({}),
        },
    );
    let (hub, http_addr) = spawn_hub(&dir.path().join("hub"), &config);
    let alice = named_node(&hub, Some("alice")).await;
    let bob = named_node(&hub, Some("bob")).await;

    // Bob registers his address: a confirmation mail, nothing else until confirmed.
    let r = ask(
        &bob,
        &hub,
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
        ask(&alice, &hub, share("too early")).await.unwrap(),
        MailResponse::Notified(NotifyOutcome::NotSent),
        "unconfirmed"
    );
    assert_eq!(
        app_code(
            &ask(
                &bob,
                &hub,
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
            &hub,
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
        ask(&alice, &hub, MailRequest::Status).await.unwrap(),
        MailResponse::Status(None)
    );

    // Waiting messages; then preferences: no shares.
    assert_eq!(
        ask(
            &alice,
            &hub,
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
        ask(&bob, &hub, MailRequest::SetPreferences(no_shares))
            .await
            .unwrap(),
        MailResponse::Preferences(no_shares)
    );
    assert_eq!(
        ask(&alice, &hub, share("Another")).await.unwrap(),
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
        app_code(&ask(&alice, &hub, share("\r\n")).await),
        Some(code::BAD_FIELD)
    );

    // One click: a GET only shows a page; a forged token is refused; the POST stops all mail.
    let url = m.unsubscribe_url();
    assert_eq!(http(http_addr, "GET", &url, ""), 200);
    assert_eq!(
        ask(
            &alice,
            &hub,
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
            &hub,
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
    let dir = tempfile::tempdir().unwrap();
    let cert = make_cert(dir.path());
    let port = free_port();
    let smtpd = start_smtpd(dir.path(), port, "tls", Some("hub:s3cret"), (0, 0), &cert);
    let limits = serde_json::json!({ "per_sender_burst": 4, "per_sender_per_hour": 4, "invite_repeat_days": 0 });
    let config = hub_config(
        dir.path(),
        &Setup {
            port,
            mode: "tls",
            auth: true,
            host: "localhost",
            cert: &cert.0,
            dkim: None,
            limits,
        },
    );
    let (hub, http_addr) = spawn_hub(&dir.path().join("hub"), &config);
    let alice = named_node(&hub, Some("alice")).await;
    let carol = named_node(&hub, None).await;
    let code = "apinvite1mfrggzdfmztwq2lknnwg23tpobyxe43uov3ho6dzpi";
    let invite = |to: &str| MailRequest::Invite {
        address: to.into(),
        invite_code: code.into(),
        note: Some("Come and see\r\nBcc: eve@example.test".into()),
    };

    assert_eq!(
        ask(&alice, &hub, invite("dave@example.test"))
            .await
            .unwrap(),
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
        app_code(&ask(&alice, &hub, invite("DAVE@example.test")).await),
        Some(code::DECLINED)
    );
    // Bad fields: not an invite code, not an address; no name at this hub.
    assert_eq!(
        app_code(
            &ask(
                &alice,
                &hub,
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
        app_code(&ask(&alice, &hub, invite("erin@example.test\r\nBcc: x@y.test")).await),
        Some(code::BAD_ADDRESS)
    );
    assert_eq!(
        app_code(&ask(&carol, &hub, invite("erin@example.test")).await),
        Some(code::NO_ADDRESS)
    );
    // A flood: the sender's budget (4 mails, 2 spent on invites that passed the checks
    // before it) runs out.
    assert_eq!(
        ask(&alice, &hub, invite("erin@example.test"))
            .await
            .unwrap(),
        MailResponse::Invited
    );
    assert_eq!(
        ask(&alice, &hub, invite("frank@example.test"))
            .await
            .unwrap(),
        MailResponse::Invited
    );
    assert_eq!(
        app_code(&ask(&alice, &hub, invite("gina@example.test")).await),
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
    let dir = tempfile::tempdir().unwrap();
    let cert = make_cert(dir.path());
    let port = free_port();
    // The first DATA loses its connection mid-command, the second gets a 451.
    let smtpd = start_smtpd(dir.path(), port, "starttls", None, (1, 1), &cert);
    let config = hub_config(
        dir.path(),
        &Setup {
            port,
            mode: "starttls",
            auth: false,
            host: "localhost",
            cert: &cert.0,
            dkim: None,
            limits: serde_json::json!({}),
        },
    );
    let hub_dir = dir.path().join("hub");
    let (hub, http_addr) = spawn_hub(&hub_dir, &config);
    let bob = named_node(&hub, Some("bob")).await;
    ask(
        &bob,
        &hub,
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
    let status = ask(&bob, &hub, MailRequest::Status).await.unwrap();
    assert!(
        matches!(&status, MailResponse::Status(Some(s)) if !s.confirmed),
        "{status:?}"
    );
    assert_eq!(http(http_addr, "POST", &link, ""), 200);
    let status = ask(&bob, &hub, MailRequest::Status).await.unwrap();
    assert!(
        matches!(&status, MailResponse::Status(Some(s)) if s.confirmed && s.masked == "b***@peer.test"),
        "{status:?}"
    );
    assert_eq!(http(http_addr, "POST", &link, ""), 404, "a link works once");
    wait_db(
        &hub_dir,
        "sent after a dropped DATA and a 451",
        "SELECT state = 'sent' AND attempts = 3 AND last_error LIKE '%451%' FROM mail_queue WHERE address = 'bob@peer.test'",
    );

    // 550 at RCPT: given up at once, and the address is suppressed (a hard bounce).
    let carol = named_node(&hub, Some("carol")).await;
    ask(
        &carol,
        &hub,
        MailRequest::SetAddress {
            address: "nosuch@peer.test".into(),
        },
    )
    .await
    .unwrap();
    wait_db(
        &hub_dir,
        "given up",
        "SELECT state = 'failed' AND attempts = 1 AND last_error LIKE '%550%' FROM mail_queue WHERE address = 'nosuch@peer.test'",
    );
    assert_eq!(
        app_code(
            &ask(
                &carol,
                &hub,
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
    let dir = tempfile::tempdir().unwrap();
    let cert = make_cert(dir.path());
    // Nothing listens there yet: the first attempts fail to connect.
    let port = free_port();
    let config = hub_config(
        dir.path(),
        &Setup {
            port,
            mode: "starttls",
            auth: false,
            host: "localhost",
            cert: &cert.0,
            dkim: None,
            limits: serde_json::json!({}),
        },
    );
    let hub_dir = dir.path().join("hub");
    let (mut hub, _) = spawn_hub(&hub_dir, &config);
    let identity = allpeers_net::Identity::generate();
    let bob = node_with(
        identity,
        fast_config(hub.peer, hub.addresses()),
        Arc::new(AcceptAll),
    )
    .await;
    bounded(bob.hub.register("bob")).await.unwrap();
    ask(
        &bob,
        &hub,
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
    assert!(hub.terminate(), "clean exit");

    let smtpd = start_smtpd(dir.path(), port, "starttls", None, (0, 0), &cert);
    let (mut hub, _) = spawn_hub(&hub_dir, &config);
    Mail::parse(smtpd.wait_for(1)).check_common("bob@peer.test");
    wait_db(
        &hub_dir,
        "recorded as sent",
        "SELECT state = 'sent' FROM mail_queue",
    );
    assert!(hub.terminate());
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
    let dir = tempfile::tempdir().unwrap();
    let cert = make_cert(dir.path());
    let port = free_port();
    let smtpd = start_smtpd(dir.path(), port, "tls", None, (0, 0), &cert);
    // The certificate names localhost; the hub is told the server is 127.0.0.1.
    let config = hub_config(
        dir.path(),
        &Setup {
            port,
            mode: "tls",
            auth: false,
            host: "127.0.0.1",
            cert: &cert.0,
            dkim: None,
            limits: serde_json::json!({}),
        },
    );
    let hub_dir = dir.path().join("hub");
    let (hub, _) = spawn_hub(&hub_dir, &config);
    let bob = named_node(&hub, Some("bob")).await;
    ask(
        &bob,
        &hub,
        MailRequest::SetAddress {
            address: "bob@peer.test".into(),
        },
    )
    .await
    .unwrap();
    wait_db(
        &hub_dir,
        "a TLS failure recorded",
        "SELECT state = 'queued' AND attempts >= 2 AND last_error LIKE '%not valid for name%' FROM mail_queue",
    );
    assert!(smtpd.mails().is_empty());
    bob.stop();
}
