//! E-mail through the hub's gateway with real processes: a hub whose gateway sends through a
//! real SMTP server on loopback (Debian's aiosmtpd, STARTTLS, Maildir; the shared fixture
//! `tests/fixtures/smtpd.rs`) and two `allpeers daemon`s driven through their local API.
//! Alice registers and confirms her address with the code read from the Maildir (and
//! `allpeers mail status` shows it); bob invites dave by mail and alice joins bob with the
//! mailed invite code; while alice is offline, bob's messages make the hub mail her one
//! "message waiting" notice (never the text), and none again when bob restarts (the told-set
//! is in his store); once she stops all mail, none comes. Alice
//! shares a list with bob and carol (three daemons): bob is mailed "alice shared ..." once,
//! the title's CR/LF flattened, and not again when alice restarts and adds him anew; carol,
//! who turned share mail off, gets none; a list shared while the hub is down is mailed when
//! alice's hub line is back. Skipped with a
//! loud line without python3-aiosmtpd.

use std::path::Path;
use std::time::Duration;

use allpeers_tests::smtpd::{self, Smtpd, SmtpdOptions};
use allpeers_tests::social::*;
use allpeers_tests::*;
use serde_json::{Value, json};

/// Longest wait for one mail (a delivery on loopback takes milliseconds).
const MAIL_WAIT: Duration = Duration::from_secs(15);
/// How long "no further mail" is watched for: the notice is asked for right after the
/// letter is mailed, so a second one would come within this.
const QUIET: Duration = Duration::from_millis(1000);
/// Text of bob's messages that must never reach a mail.
const SECRET: &str = "pancake-recipe-canary-41c9";

async fn raw_mail(server: &Smtpd, n: usize) -> Vec<u8> {
    let maildir = server.maildir.clone();
    tokio::task::spawn_blocking(move || smtpd::wait_in_maildir(&maildir, n, MAIL_WAIT))
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("no mail #{n} within {MAIL_WAIT:?}"))
}

/// The mail's plain and HTML parts, decoded.
fn parts(raw: &[u8]) -> (String, String) {
    let m = mailparse::parse_mail(raw).unwrap();
    assert_eq!(m.ctype.mimetype, "multipart/alternative");
    (
        m.subparts[0].get_body().unwrap(),
        m.subparts[1].get_body().unwrap(),
    )
}

fn header(raw: &[u8], name: &str) -> String {
    use mailparse::MailHeaderMap;
    mailparse::parse_mail(raw)
        .unwrap()
        .headers
        .get_first_value(name)
        .unwrap_or_default()
}

fn hub_config(dir: &Path, port: u16, cert: &Path) -> String {
    let path = dir.join("hub.json");
    let config = json!({"mail": {
        "smtp": {"host": "localhost", "port": port, "security": "starttls",
                 "root_certs": [cert], "timeout_secs": 5},
        "http": {"listen": "127.0.0.1:0"},
        "retry": {"first_ms": 200, "max_ms": 1000, "give_up_after_secs": 60},
    }});
    std::fs::write(&path, config.to_string()).unwrap();
    path.display().to_string()
}

/// `who` sends `bodies` in `chat` while the recipient is offline (at once: a delivery
/// first tries the connection the recipient left, for a few seconds); waits until each is
/// sealed into the recipient's mailbox at the hub.
async fn send_mailed(who: &mut Node, chat: &str, bodies: &[&str]) {
    let mut ids = Vec::new();
    for body in bodies {
        let sent = who
            .call("chat.send", json!({"chat": chat, "body": body}))
            .await;
        ids.push(sent["id"].clone());
    }
    let wanted: Vec<(&str, Check)> = ids
        .into_iter()
        .map(|id| {
            let check: Check =
                Box::new(move |d: &Value| d["message"] == id && d["via"] == "mailed");
            ("chat.receipt", check)
        })
        .collect();
    wait_all(&mut who.client, wanted).await;
}

/// A real SMTP server and a hub whose gateway sends through it.
async fn gateway(dir: &Path) -> (Smtpd, HubProcess) {
    let cert = smtpd::make_cert(dir);
    let port = smtpd::free_port();
    let server = Smtpd::start(dir, port, &cert, &SmtpdOptions::default()).unwrap();
    let hub_dir = dir.join("hub");
    std::fs::create_dir_all(&hub_dir).unwrap();
    let config = hub_config(dir, port, &cert.0);
    let hub = HubProcess::start_with(&hub_dir, &["--config", &config]).await;
    (server, hub)
}

/// `node` registers `address` and confirms it with the code of mail #`n`.
async fn confirm_address(node: &mut Node, address: &str, server: &Smtpd, n: usize) {
    node.call("mail.set_address", json!({ "address": address }))
        .await;
    let mail = raw_mail(server, n).await;
    assert_eq!(header(&mail, "To"), address);
    let code = smtpd::indented_code(&mail).expect("a code in the confirmation mail");
    let confirmed = node.call("mail.confirm", json!({ "code": code })).await;
    assert_eq!(confirmed["confirmed"], true, "{confirmed}");
}

/// Asserts that no mail #`n` comes within [`QUIET`].
async fn no_mail(server: &Smtpd, n: usize, why: &str) {
    let maildir = server.maildir.clone();
    let extra = tokio::task::spawn_blocking(move || smtpd::wait_in_maildir(&maildir, n, QUIET))
        .await
        .unwrap();
    assert!(extra.is_none(), "{why}");
}

#[tokio::test(flavor = "multi_thread")]
async fn address_invite_and_offline_notices_through_a_real_smtp_server() {
    if !smtpd::have_aiosmtpd() {
        eprintln!("SKIPPED: python3-aiosmtpd / openssl not installed (tests/run.sh installs them)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (server, hub) = gateway(dir.path()).await;
    let mut alice = Node::start(&hub, "alice").await;
    let mut bob = Node::start(&hub, "bob").await;

    // Alice registers her address (double opt-in): the code comes by mail.
    let status = alice.call("mail.status", json!({})).await;
    assert_eq!(status["address"], Value::Null, "{status}");
    let set = alice
        .call("mail.set_address", json!({"address": "Alice@Example.test"}))
        .await;
    assert_eq!(set["address"], "a***@example.test", "{set}");
    assert_eq!(set["confirmed"], false);
    let confirm = raw_mail(&server, 1).await;
    assert_eq!(header(&confirm, "To"), "alice@example.test");
    let code = smtpd::indented_code(&confirm).expect("a code in the confirmation mail");
    let wrong = alice
        .client
        .call("mail.confirm", json!({"code": "WRONG000"}))
        .await;
    assert_eq!(error_code(&wrong), -32073);
    // An address with a header in it is refused.
    let bad = alice
        .client
        .call(
            "mail.set_address",
            json!({"address": "alice@example.test\r\nBcc: x@y.test"}),
        )
        .await;
    assert_eq!(error_code(&bad), -32071);
    let confirmed = alice.call("mail.confirm", json!({"code": code})).await;
    assert_eq!(confirmed["confirmed"], true, "{confirmed}");
    assert_eq!(confirmed["preferences"]["waiting"], true);
    // The command line says the same.
    let out = timeout(
        "allpeers mail",
        allpeers(alice.dir.path()).args(["mail", "status"]).output(),
    )
    .await
    .unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("a***@example.test (confirmed)"), "{said}");
    assert!(said.contains("waiting on"), "{said}");

    // Bob invites dave by mail; alice joins bob with the code dave got.
    let invited = bob
        .call(
            "mail.invite",
            json!({"address": "dave@example.test", "note": "See you\r\nBcc: eve@x.test"}),
        )
        .await;
    assert_eq!(invited["address"], "dave@example.test");
    let invitation = raw_mail(&server, 2).await;
    assert_eq!(header(&invitation, "To"), "dave@example.test");
    assert_eq!(
        header(&invitation, "Subject"),
        "bob invites you to AllPeers"
    );
    assert_eq!(
        header(&invitation, "Bcc"),
        "",
        "no header injected by the note"
    );
    let (text, html) = parts(&invitation);
    assert!(
        text.contains("bob wrote: \"See you Bcc: eve@x.test\""),
        "{text}"
    );
    let invite_code = smtpd::indented_code(text.as_bytes()).expect("an invite code");
    assert!(invite_code.starts_with("apinvite1") && html.contains(&invite_code));
    let again = bob
        .client
        .call("mail.invite", json!({"address": "dave@example.test"}))
        .await;
    assert_eq!(error_code(&again), -32076, "invited lately: declined");
    let added = alice
        .call("contacts.add", json!({"who": invite_code}))
        .await;
    assert_eq!(added["state"], "accepted", "{added}");
    let alice_id = alice.id.clone();
    wait_all(
        &mut bob.client,
        vec![
            (
                "contact.changed",
                Box::new(|d: &Value| d["peer_id"] == alice_id && d["state"] == "accepted"),
            ),
            (
                "presence.changed",
                Box::new(|d: &Value| d["peer_id"] == alice_id && d["online"] == true),
            ),
        ],
    )
    .await;
    let chat = bob.call("chat.open", json!({"peer": alice.id})).await;
    let chat = chat["id"].as_str().unwrap().to_string();

    // Alice goes offline; bob writes twice: one notice, without the text.
    alice.stop().await;
    wait_event(&mut bob.client, "presence.changed", |d| {
        d["peer_id"] == alice_id && d["online"] == false
    })
    .await;
    let (first, second) = (format!("first {SECRET}"), format!("second {SECRET}"));
    send_mailed(&mut bob, &chat, &[&first, &second]).await;
    let notice = raw_mail(&server, 3).await;
    assert_eq!(header(&notice, "To"), "alice@example.test");
    assert_eq!(header(&notice, "Subject"), "1 message is waiting for you");
    let (text, html) = parts(&notice);
    assert!(text.contains("bob@hub.test"), "{text}");
    for part in [&text, &html, &String::from_utf8_lossy(&notice).into_owned()] {
        assert!(
            !part.contains(SECRET),
            "the message's text is in the notice"
        );
    }
    assert!(header(&notice, "List-Unsubscribe-Post").contains("One-Click"));
    let maildir = server.maildir.clone();
    let extra = tokio::task::spawn_blocking(move || smtpd::wait_in_maildir(&maildir, 4, QUIET))
        .await
        .unwrap();
    assert!(extra.is_none(), "one notice per absence");
    // Bob restarts while alice is still away: the told-set is kept, no second notice.
    bob.stop().await;
    bob.restart("bob").await;
    send_mailed(&mut bob, &chat, &["after bob's restart"]).await;
    no_mail(&server, 4, "one notice per absence, across a restart").await;

    // Back online: she reads both; then stops all mail, and goes away again.
    alice.restart("alice").await;
    wait_event(&mut bob.client, "presence.changed", |d| {
        d["peer_id"] == alice_id && d["online"] == true
    })
    .await;
    let stopped = alice.call("mail.unsubscribe", json!({})).await;
    assert_eq!(stopped["unsubscribed"], true);
    let status = alice.call("mail.status", json!({})).await;
    assert_eq!(status["address"], Value::Null, "{status}");
    alice.stop().await;
    wait_event(&mut bob.client, "presence.changed", |d| {
        d["peer_id"] == alice_id && d["online"] == false
    })
    .await;
    send_mailed(&mut bob, &chat, &["third"]).await;
    let maildir = server.maildir.clone();
    let extra = tokio::task::spawn_blocking(move || smtpd::wait_in_maildir(&maildir, 4, QUIET))
        .await
        .unwrap();
    assert!(extra.is_none(), "no notice after unsubscribing");
    // Notices go to contacts only.
    let stranger = bob
        .client
        .call(
            "mail.notify",
            json!({"peer": hub.peer_id, "notice": {"kind": "waiting", "count": 1}}),
        )
        .await;
    assert_eq!(error_code(&stranger), -32030);
    bob.stop().await;
}

/// Alice shares a list with bob and carol: bob (who accepts share mail) gets one "alice
/// shared 'Holiday 2026' with you", its title's CR/LF unable to add a header; carol (who
/// turned share mail off) gets none.
#[tokio::test(flavor = "multi_thread")]
async fn a_share_is_mailed_to_members_who_accept_it() {
    if !smtpd::have_aiosmtpd() {
        eprintln!("SKIPPED: python3-aiosmtpd / openssl not installed (tests/run.sh installs them)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (server, hub) = gateway(dir.path()).await;
    let mut alice = Node::start(&hub, "alice").await;
    let mut bob = Node::start(&hub, "bob").await;
    let mut carol = Node::start(&hub, "carol").await;
    befriend(&mut alice, &mut bob, "bob@hub.test").await;
    befriend(&mut alice, &mut carol, "carol@hub.test").await;
    confirm_address(&mut bob, "bob@example.test", &server, 1).await;
    confirm_address(&mut carol, "carol@example.test", &server, 2).await;
    let prefs = carol
        .call("mail.preferences", json!({"share": false}))
        .await;
    assert_eq!(prefs["share"], false, "{prefs}");
    assert_eq!(prefs["waiting"], true, "{prefs}");

    let list = alice
        .call(
            "resources.create",
            json!({"resource": {"type": "List",
                "properties": {"title": "Holiday 2026\r\nBcc: eve@x.test"}}}),
        )
        .await;
    let list = list["id"].as_str().unwrap().to_string();
    let share = alice
        .call(
            "shares.create",
            json!({"resource": list, "members": [
                {"peer": bob.id, "level": "write"},
                {"peer": carol.id, "level": "read"},
            ]}),
        )
        .await;
    let share = share["id"].as_str().unwrap().to_string();
    let notice = raw_mail(&server, 3).await;
    assert_eq!(header(&notice, "To"), "bob@example.test");
    assert_eq!(
        header(&notice, "Subject"),
        "alice shared 'Holiday 2026 Bcc: eve@x.test' with you"
    );
    assert_eq!(
        header(&notice, "Bcc"),
        "",
        "no header injected by the title"
    );
    let (text, html) = parts(&notice);
    assert!(text.contains("alice@hub.test shared"), "{text}");
    assert!(html.contains("Holiday 2026 Bcc: eve@x.test"), "{html}");
    assert!(header(&notice, "List-Unsubscribe-Post").contains("One-Click"));
    no_mail(
        &server,
        4,
        "carol did not accept share mail; bob is told once",
    )
    .await;

    // A change of level is no new membership: no mail.
    alice
        .call(
            "shares.add_member",
            json!({"share": share, "peer": bob.id, "level": "read"}),
        )
        .await;
    no_mail(&server, 4, "a change of level is not mailed").await;
    // Alice restarts, revokes bob and adds him again: he was told of this share already.
    alice.stop().await;
    alice.restart("alice").await;
    alice
        .call("shares.revoke", json!({"share": share, "peer": bob.id}))
        .await;
    alice
        .call(
            "shares.add_member",
            json!({"share": share, "peer": bob.id, "level": "read"}),
        )
        .await;
    no_mail(&server, 4, "told once per share, across a restart").await;

    // The hub is down when alice shares another list with bob: the notice is asked for when
    // her hub line is back.
    let (quic, tcp) = (hub.quic.clone(), hub.tcp.clone());
    let mut hub = hub;
    hub.child.start_kill().unwrap();
    hub.child.wait().await.unwrap();
    wait_event(&mut alice.client, "hub.changed", |d| d["state"] != "online").await;
    let trip = alice
        .call(
            "resources.create",
            json!({"resource": {"type": "List", "properties": {"title": "Trip"}}}),
        )
        .await;
    alice
        .call(
            "shares.create",
            json!({"resource": trip["id"], "members": [{"peer": bob.id, "level": "read"}]}),
        )
        .await;
    no_mail(&server, 4, "no hub, no mail").await;
    let config = dir.path().join("hub.json").display().to_string();
    let _hub =
        HubProcess::start_on_with(&dir.path().join("hub"), &quic, &tcp, &["--config", &config])
            .await;
    let notice = raw_mail(&server, 4).await;
    assert_eq!(header(&notice, "To"), "bob@example.test");
    assert_eq!(header(&notice, "Subject"), "alice shared 'Trip' with you");
    no_mail(&server, 5, "asked once").await;
    for node in [&mut alice, &mut bob, &mut carol] {
        node.stop().await;
    }
}
