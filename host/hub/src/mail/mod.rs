//! The hub's e-mail gateway: peers register an address (double opt-in), choose which
//! notices they accept, and other peers cause fixed-template mails to them or invitations
//! to an address, never learning the address. Delivery goes through a configured SMTP
//! server (lettre over tokio + rustls) from a queue in the hub's database (SQLite, or the
//! cluster's PostgreSQL, where every instance delivers and each mail is leased to one).
//!
//! * [`proto`] — `allpeers/hub-mail/1`: requests, answers, bounds, the checked decoder.
//! * [`config`] — the `mail` section of the hub config.
//! * [`service`] — the namespace's request handling: consent, limits, queuing.
//! * [`template`] — the letters, HTML escaping, MIME composition with unsubscribe headers.
//! * [`delivery`] — retry decisions, the SMTP transport, the queue worker.
//! * [`digest`] — "3 messages are waiting for you", from the hub, to peers that accept it.
//! * [`store`] — the tables (registrations, suppressions, invitations, queue, digests).
//! * [`tokens`] — recipient keys, signed unsubscribe tokens, confirmation codes.
//! * [`http`] — the HTTP listener for one-click unsubscribe (RFC 8058) and confirm links.

pub mod config;
pub mod delivery;
pub mod digest;
pub mod http;
pub mod proto;
pub mod service;
pub mod store;
pub mod template;
pub mod tokens;

use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::path::Path;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

use allpeers_model::PeerId;
use allpeers_net::Identity;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use lettre::Tokio1Executor;
use lettre::message::Mailbox;
use lettre::message::dkim::{
    DkimCanonicalization, DkimCanonicalizationType, DkimSigningAlgorithm, DkimSigningKey,
};
use lettre::message::header::HeaderName;
use lettre::transport::smtp::AsyncSmtpTransport;

pub use config::MailConfig;
pub use service::MailService;

pub(crate) fn now_ms() -> u64 {
    allpeers_model::hlc::now_ms()
}

/// Counters for tests and the log.
#[derive(Debug, Default)]
pub struct MailCounters {
    pub queued: AtomicU64,
    pub sent: AtomicU64,
    pub unsubscribed: AtomicU64,
}

/// The gateway's shared state.
pub struct Inner {
    config: MailConfig,
    hub_name: String,
    from: Mailbox,
    keys: tokens::Keys,
    store: store::MailStore,
    /// Replaced by a fresh one when a send overruns its deadline (see
    /// [`delivery::send_deadline`]): the abandoned connection must not go back to the pool.
    transport: Mutex<AsyncSmtpTransport<Tokio1Executor>>,
    dkim: Option<lettre::message::dkim::DkimConfig>,
    backoff: delivery::Backoff,
    /// Mails each peer may cause (`limits.per_sender_per_hour`, burst `per_sender_burst`).
    per_sender: DefaultKeyedRateLimiter<PeerId>,
    /// Wakes the worker when a mail is queued.
    wake: Arc<tokio::sync::Notify>,
    base_url: String,
    pub counters: MailCounters,
}

/// Where the gateway keeps its tables.
pub enum MailDb<'a> {
    /// The hub's SQLite file (`hub.db`, which also holds the names).
    Sqlite(&'a Path),
    /// The cluster's database (the hub's pool), as this instance.
    Postgres {
        pool: deadpool_postgres::Pool,
        instance: &'a str,
    },
}

/// A running gateway: the worker and the HTTP listener live as long as it does.
pub struct MailGateway {
    inner: Arc<Inner>,
    http_addr: SocketAddr,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for MailGateway {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl MailGateway {
    /// Opens the tables in `db`, builds the SMTP transport, binds the HTTP listener and
    /// starts the queue worker (which at once sends what an earlier run left queued).
    pub async fn start(
        config: MailConfig,
        hub_name: &str,
        identity: &Identity,
        db: MailDb<'_>,
    ) -> anyhow::Result<MailGateway> {
        let from_address = config
            .from_address
            .clone()
            .unwrap_or_else(|| format!("noreply@{hub_name}"));
        let from_address: lettre::Address = from_address
            .parse()
            .map_err(|e| anyhow::anyhow!("mail.from_address {from_address:?}: {e}"))?;
        let domain = from_address.domain().to_ascii_lowercase();
        if domain != hub_name && !domain.ends_with(&format!(".{hub_name}")) {
            anyhow::bail!(
                "mail.from_address {from_address}: its domain must be the hub's name {hub_name} \
                 (or under it), so replies and DKIM point at this hub"
            );
        }
        let from = Mailbox::new(Some(config.from_name.clone()), from_address);
        let dkim = match &config.dkim {
            Some(d) => Some(dkim_config(d, &domain)?),
            None => None,
        };
        let keys = tokens::Keys::derive(&identity.sign(b"allpeers-hub-mail-keys"));
        let store = match db {
            MailDb::Sqlite(path) => {
                store::MailStore::Sqlite(Mutex::new(store::sqlite::Store::open(path)?))
            }
            MailDb::Postgres { pool, instance } => store::MailStore::Postgres(
                store::postgres::PgMailStore::open(pool, instance).await?,
            ),
        };
        let transport = delivery::transport(&config.smtp)?;
        let listener = tokio::net::TcpListener::bind(config.http.listen)
            .await
            .map_err(|e| anyhow::anyhow!("mail.http.listen {}: {e}", config.http.listen))?;
        let http_addr = listener.local_addr()?;
        let base_url = config
            .http
            .base_url
            .clone()
            .unwrap_or_else(|| format!("http://{http_addr}"))
            .trim_end_matches('/')
            .to_string();
        let limits = &config.limits;
        let quota = Quota::per_hour(NonZeroU32::new(limits.per_sender_per_hour.max(1)).unwrap())
            .allow_burst(NonZeroU32::new(limits.per_sender_burst.max(1)).unwrap());
        let inner = Arc::new(Inner {
            backoff: delivery::Backoff::new(&config.retry),
            hub_name: hub_name.to_string(),
            from,
            keys,
            store,
            transport: Mutex::new(transport),
            dkim,
            per_sender: RateLimiter::keyed(quota),
            wake: Arc::new(tokio::sync::Notify::new()),
            base_url,
            counters: MailCounters::default(),
            config,
        });
        let tasks = vec![
            tokio::spawn(delivery::run(Arc::downgrade(&inner))),
            tokio::spawn(http::serve(listener, Arc::downgrade(&inner))),
        ];
        allpeers_log::flesh!(http = %http_addr, smtp = %inner.config.smtp.host, "mail gateway up");
        Ok(MailGateway {
            inner,
            http_addr,
            tasks,
        })
    }

    /// Starts the digest worker (unless `digest_every_secs` is 0); `waiting` counts a peer's
    /// letters in the hub's mailbox.
    pub fn start_digests(&mut self, waiting: digest::WaitingLetters) {
        let every = self.inner.config.digest_every_secs;
        if every == 0 {
            return;
        }
        self.tasks.push(tokio::spawn(digest::run(
            Arc::downgrade(&self.inner),
            waiting,
            std::time::Duration::from_secs(every),
        )));
    }

    /// What wakes the delivery worker (in a cluster: when another instance queued a mail).
    pub fn worker_wake(&self) -> Arc<tokio::sync::Notify> {
        self.inner.wake.clone()
    }

    /// Where the unsubscribe / confirm listener is bound.
    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// The service to register under [`proto::mail_ns`].
    pub fn service(&self) -> MailService {
        MailService(self.inner.clone())
    }

    pub fn counters(&self) -> &MailCounters {
        &self.inner.counters
    }
}

impl Inner {
    fn unsubscribe_url(&self, recipient: &[u8; 32]) -> String {
        format!(
            "{}/u/{}",
            self.base_url,
            self.keys.token(tokens::Purpose::Unsubscribe, recipient)
        )
    }

    fn confirm_url(&self, link_secret: &str) -> String {
        format!("{}/c/{link_secret}", self.base_url)
    }
}

fn dkim_config(
    d: &config::DkimConfig,
    from_domain: &str,
) -> anyhow::Result<lettre::message::dkim::DkimConfig> {
    let algorithm = match d.algorithm.as_str() {
        "rsa" => DkimSigningAlgorithm::Rsa,
        "ed25519" => DkimSigningAlgorithm::Ed25519,
        other => anyhow::bail!("mail.dkim.algorithm {other:?}: expected \"rsa\" or \"ed25519\""),
    };
    let key = std::fs::read_to_string(&d.key_file)
        .map_err(|e| anyhow::anyhow!("mail.dkim.key_file {}: {e}", d.key_file.display()))?;
    let key = DkimSigningKey::new(key.trim(), algorithm)
        .map_err(|e| anyhow::anyhow!("mail.dkim.key_file {}: {e}", d.key_file.display()))?;
    Ok(lettre::message::dkim::DkimConfig::new(
        d.selector.clone(),
        d.domain.clone().unwrap_or_else(|| from_domain.to_string()),
        key,
        template::SIGNED_HEADERS
            .iter()
            .map(|h| HeaderName::new_from_ascii_str(h))
            .collect(),
        // Relaxed both ways: survives the header refolding and whitespace changes relays do.
        DkimCanonicalization {
            header: DkimCanonicalizationType::Relaxed,
            body: DkimCanonicalizationType::Relaxed,
        },
    ))
}
