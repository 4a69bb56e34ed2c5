//! The demo's mail part: a hub with an e-mail gateway sending through a real SMTP server on
//! loopback (Debian's aiosmtpd, STARTTLS, delivering into a Maildir the demo reads), a node
//! that registers and confirms its address with the mailed code, then invites
//! dave@example.test by mail. Skipped with a line when no local mail server is installed.

use std::path::Path;
use std::time::Duration;

use allpeers_model::api::mail as m;
use anyhow::Context;
use serde_json::json;

use super::demo::{start_hub_with, start_node, step};

#[path = "../../../../tests/fixtures/smtpd.rs"]
mod smtpd;

/// Longest wait for a mail in the demo's Maildir.
const MAIL_WAIT: Duration = Duration::from_secs(10);

/// The subject of a delivered mail (lettre writes it on one line for these short subjects).
fn subject(raw: &[u8]) -> String {
    String::from_utf8_lossy(raw)
        .lines()
        .find_map(|l| l.strip_prefix("Subject: "))
        .unwrap_or("?")
        .to_string()
}

async fn wait_mail(server: &smtpd::Smtpd, n: usize) -> anyhow::Result<Vec<u8>> {
    let maildir = server.maildir.clone();
    tokio::task::spawn_blocking(move || smtpd::wait_in_maildir(&maildir, n, MAIL_WAIT))
        .await?
        .with_context(|| format!("mail #{n} did not arrive within {MAIL_WAIT:?}"))
}

pub(super) async fn run(exe: &Path, dir: &Path) -> anyhow::Result<()> {
    println!("\n[16/16] Alice confirms her e-mail address and invites dave@example.test by mail");
    if !smtpd::have_aiosmtpd() {
        println!(
            "      skipped: no local mail server to send to (install python3-aiosmtpd and openssl)"
        );
        return Ok(());
    }
    let mail_dir = dir.join("mail");
    std::fs::create_dir_all(mail_dir.join("hub"))?;
    let cert = smtpd::make_cert(&mail_dir);
    let port = smtpd::free_port();
    let server = smtpd::Smtpd::start(&mail_dir, port, &cert, &smtpd::SmtpdOptions::default())?;
    let config = mail_dir.join("hub.json");
    std::fs::write(
        &config,
        json!({"mail": {
            "smtp": {"host": "localhost", "port": port, "security": "starttls",
                     "root_certs": [cert.0], "timeout_secs": 5},
            "http": {"listen": "127.0.0.1:0"},
        }})
        .to_string(),
    )?;
    let config = config.display().to_string();
    let hub = start_hub_with(exe, &mail_dir.join("hub"), &["--config", &config]).await?;
    println!(
        "      a hub with an e-mail gateway: SMTP to aiosmtpd on 127.0.0.1:{port} (STARTTLS), unsubscribe links on {}",
        hub.ready["mail_http"].as_str().unwrap_or("?")
    );
    let mut alice = start_node(exe, &mail_dir.join("alice"), &hub, "alice").await?;
    alice
        .api
        .call("hub.register", json!({"name": "alice"}))
        .await?;
    let set = alice
        .api
        .call(
            m::MAIL_SET_ADDRESS,
            json!({"address": "alice@example.test"}),
        )
        .await?;
    let confirm = wait_mail(&server, 1).await?;
    let code = smtpd::indented_code(&confirm).context("no code in the confirmation mail")?;
    println!(
        "      alice registers {}: the hub mails \"{}\" with code {code}",
        set["address"].as_str().unwrap_or("?"),
        subject(&confirm)
    );
    let status = alice
        .api
        .call(m::MAIL_CONFIRM, json!({"code": code}))
        .await?;
    println!(
        "      she types it in: confirmed = {}; only her hub knows the address",
        status["confirmed"]
    );
    alice
        .api
        .call(
            m::MAIL_INVITE,
            json!({"address": "dave@example.test", "note": "Come and see my photos!"}),
        )
        .await?;
    let invite = wait_mail(&server, 2).await?;
    let text = String::from_utf8_lossy(&invite);
    println!(
        "      dave@example.test gets \"{}\" with her invite code (HTML and plain text; one-click unsubscribe: {})",
        subject(&invite),
        if text.contains("List-Unsubscribe-Post") {
            "yes"
        } else {
            "no"
        }
    );
    alice.api.call("daemon.shutdown", json!({})).await?;
    step("alice (mail) exit", async { Ok(alice.child.wait().await?) }).await?;
    drop(server);
    Ok(())
}
