//! What the gateway's tests against real SMTP servers share (`mail.rs`: aiosmtpd;
//! `mail_postfix.rs`: postfix and smtp-sink): the hub's config, a hub process, named nodes,
//! asking the gateway, parsing a delivered mail, HTTP to the hub, waiting on its database.

#![allow(dead_code)] // Each test binary uses its own part.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use allpeers_hub::mail::proto::{MailRequest, MailResponse, mail_ns};
use allpeers_hub_client::AcceptAll;
use allpeers_net::NetError;
use allpeers_net::service::ErrorCode;

use crate::common::*;

/// Longest wait for a mail or a queue state (a loaded CI machine is slow).
pub const MAIL_WAIT: Duration = Duration::from_secs(20);

pub const DKIM_VERIFY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/common/dkim_verify.py");

pub fn run(cmd: &mut Command) -> Vec<u8> {
    let out = cmd.output().expect("run tool");
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// A DKIM key (PKCS#1 PEM) and its public key for the DNS record (base64 DER).
pub fn make_dkim_key(dir: &Path) -> (PathBuf, String) {
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

pub struct Setup<'a> {
    pub port: u16,
    pub mode: &'a str,
    pub auth: bool,
    pub host: &'a str,
    pub cert: &'a Path,
    pub dkim: Option<&'a Path>,
    pub limits: serde_json::Value,
}

pub fn hub_config(dir: &Path, s: &Setup) -> PathBuf {
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

/// Changes the `mail` section of the hub config at `path`.
pub fn patch_config(path: &Path, change: impl FnOnce(&mut serde_json::Value)) {
    let mut json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    change(&mut json["mail"]);
    std::fs::write(path, json.to_string()).unwrap();
}

pub fn spawn_hub(dir: &Path, config: &Path) -> (HubProc, SocketAddr) {
    let hub = HubProc::spawn(dir, &["--config", config.to_str().unwrap()]);
    let http = hub.ready["mail_http"]
        .as_str()
        .expect("mail_http in the ready line")
        .parse()
        .unwrap();
    (hub, http)
}

pub async fn named_node(hub: &HubProc, name: Option<&str>) -> Node {
    let n = node(fast_config(hub.peer, hub.addresses()), Arc::new(AcceptAll)).await;
    if let Some(name) = name {
        bounded(n.hub.register(name)).await.unwrap();
    }
    n
}

pub async fn ask(n: &Node, hub: &HubProc, r: MailRequest) -> Result<MailResponse, NetError> {
    bounded(n.endpoint.request(hub.peer, &mail_ns(), &r)).await
}

pub fn app_code(r: &Result<MailResponse, NetError>) -> Option<u32> {
    match r {
        Err(NetError::Remote {
            code: ErrorCode::Application(c),
            ..
        }) => Some(*c),
        _ => None,
    }
}

/// A parsed delivered mail: headers, the two parts' bodies.
pub struct Mail {
    pub raw: Vec<u8>,
    pub headers: Vec<(String, String)>,
    pub text: String,
    pub html: String,
}

impl Mail {
    pub fn parse(raw: Vec<u8>) -> Mail {
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
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    }
    pub fn count(&self, name: &str) -> usize {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .count()
    }
    /// The confirmation code (the indented line of the plain part).
    pub fn code(&self) -> String {
        self.text
            .lines()
            .find(|l| l.starts_with("    "))
            .expect("a code line")
            .trim()
            .to_string()
    }
    pub fn unsubscribe_url(&self) -> String {
        let v = self.header("List-Unsubscribe").expect("List-Unsubscribe");
        v.trim()
            .trim_start_matches('<')
            .trim_end_matches('>')
            .to_string()
    }
    /// Every delivered mail: envelope, From on the hub's domain, RFC 8058 headers.
    pub fn check_common(&self, to: &str) {
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
pub fn http(addr: SocketAddr, method: &str, url_or_path: &str, body: &str) -> u16 {
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
pub fn wait_db(dir: &Path, what: &str, query: &str) {
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

pub fn db_value<T: rusqlite::types::FromSql>(dir: &Path, query: &str) -> T {
    let conn = rusqlite::Connection::open_with_flags(
        dir.join("hub.db"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    conn.query_row(query, [], |r| r.get(0)).unwrap()
}
