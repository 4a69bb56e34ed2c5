//! The `mail` section of the hub's config: the SMTP server, the sender, DKIM, the HTTP
//! listener for one-click unsubscribe, rate limits and the retry schedule.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MailConfig {
    pub smtp: SmtpConfig,
    /// The sender's display name (`From: AllPeers <...>`).
    pub from_name: String,
    /// The sender address; its domain must be the hub's name or under it. Null:
    /// `noreply@<hub name>`.
    pub from_address: Option<String>,
    pub dkim: Option<DkimConfig>,
    pub http: HttpConfig,
    pub limits: MailLimits,
    pub retry: RetryConfig,
    /// A digest ("3 messages are waiting for you") to each peer that accepts digests and
    /// has letters waiting in its mailbox here: at most once per this many seconds, and
    /// only when the count changed since the last one. 0: no digests.
    pub digest_every_secs: u64,
}

impl Default for MailConfig {
    fn default() -> Self {
        MailConfig {
            smtp: SmtpConfig::default(),
            from_name: "AllPeers".into(),
            from_address: None,
            dkim: None,
            http: HttpConfig::default(),
            limits: MailLimits::default(),
            retry: RetryConfig::default(),
            digest_every_secs: 24 * 3600,
        }
    }
}

/// How the hub reaches its SMTP server. Only encrypted submission: implicit TLS (port 465)
/// or STARTTLS that must succeed (587); the certificate must match `host`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SmtpConfig {
    /// The server's DNS name (checked against its certificate).
    pub host: String,
    pub port: u16,
    pub security: SmtpSecurity,
    pub username: Option<String>,
    /// The password, or better `password_file` (first line; keeps it out of the config).
    pub password: Option<String>,
    pub password_file: Option<PathBuf>,
    /// Extra PEM root certificates to trust besides the WebPKI roots (a private CA).
    pub root_certs: Vec<PathBuf>,
    /// Connections kept open to the server (lettre's pool), and mails in flight at once.
    pub pool_max: u32,
    /// Seconds an idle pooled connection is kept.
    pub pool_idle_secs: u64,
    /// Seconds connecting may take, and one mail's whole SMTP transaction (greeting to the
    /// answer after the message); past it the attempt is a temporary failure.
    pub timeout_secs: u64,
}

impl Default for SmtpConfig {
    fn default() -> Self {
        SmtpConfig {
            host: "localhost".into(),
            port: 587,
            security: SmtpSecurity::Starttls,
            username: None,
            password: None,
            password_file: None,
            root_certs: Vec::new(),
            pool_max: 4,
            pool_idle_secs: 60,
            timeout_secs: 30,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtpSecurity {
    /// TLS from the first byte (submissions, port 465).
    Tls,
    /// Plain connection upgraded with STARTTLS; refusing or failing it stops the send.
    Starttls,
}

/// DKIM signing (RFC 6376) of every mail; the signature covers From, To, Subject, Date,
/// Message-ID and both List-Unsubscribe headers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DkimConfig {
    /// The selector (`<selector>._domainkey.<domain>` in DNS).
    pub selector: String,
    /// The signing domain; null: the From address's domain.
    #[serde(default)]
    pub domain: Option<String>,
    /// `rsa`: a PKCS#1 PEM file (`openssl genrsa -traditional 2048`); `ed25519`: a file
    /// holding the base64 of the 32-byte secret.
    #[serde(default = "DkimConfig::default_algorithm")]
    pub algorithm: String,
    pub key_file: PathBuf,
}

impl DkimConfig {
    fn default_algorithm() -> String {
        "rsa".into()
    }
}

/// The listener for unsubscribe and confirmation links. Put it behind the hub's HTTPS
/// reverse proxy in production and set `base_url` to the public prefix.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    pub listen: SocketAddr,
    /// The links' prefix, e.g. `https://hub.example.org/mail`; null: `http://<listen>`.
    pub base_url: Option<String>,
    /// Connections served at once.
    pub max_connections: usize,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8025)),
            base_url: None,
            max_connections: 256,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MailLimits {
    /// Mails one peer may cause per hour (notices, invitations, its own confirmations),
    /// and its burst.
    pub per_sender_per_hour: u32,
    pub per_sender_burst: u32,
    /// Mails one address may receive per day, whoever sends.
    pub per_recipient_per_day: u32,
    /// Mails the whole hub may queue per day.
    pub daily_cap: u32,
    /// Days before the same address may be invited again (by anyone).
    pub invite_repeat_days: u32,
    /// Minutes a confirmation code works; wrong tries allowed per code.
    pub confirm_minutes: u32,
    pub confirm_attempts: u32,
}

impl Default for MailLimits {
    fn default() -> Self {
        MailLimits {
            per_sender_per_hour: 30,
            per_sender_burst: 10,
            per_recipient_per_day: 10,
            daily_cap: 5000,
            invite_repeat_days: 30,
            confirm_minutes: 24 * 60,
            confirm_attempts: 5,
        }
    }
}

/// Retries after a temporary failure (4xx, connection or TLS errors): the delay starts at
/// `first_ms` and doubles to `max_ms`; past `give_up_after_secs` since queuing, the mail is
/// given up and recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetryConfig {
    pub first_ms: u64,
    pub max_ms: u64,
    pub give_up_after_secs: u64,
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            first_ms: 60_000,
            max_ms: 3_600_000,
            give_up_after_secs: 3 * 24 * 3600,
        }
    }
}
