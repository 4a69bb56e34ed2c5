//! `allpeers-hub`: the hub server. Registration of `name@hub` with hub-signed certificates,
//! a directory with signed answers, presence lines with a watch policy hook, and a relay
//! that splices end-to-end encrypted streams between agreeing peers, under quotas.
//!
//! The protocol and the client live in `allpeers_hub_client`; this crate is the server:
//! * [`config`] — the JSON config file and its defaults.
//! * [`store`] — the state behind one seam: SQLite ([`db`] names and last seen, [`mailbox`]
//!   offline letters) or PostgreSQL.
//! * [`cluster`] — several instances of one hub over PostgreSQL (`LISTEN`/`NOTIFY`).
//! * [`db`] — SQLite state (names, last seen).
//! * [`dht`] — the hub's signed address record on the Mainline DHT, under its own key.
//! * [`mailbox`] — offline letters (sealed), quotas and expiry.
//! * [`mail`] — the e-mail gateway: `allpeers/hub-mail/1`, consent, templates, the SMTP
//!   queue, one-click unsubscribe over HTTP.
//! * [`server`] — the three services over one [`allpeers_net::Endpoint`].
//! * [`watch`] — [`watch::WatchPolicy`], the presence authorisation hook.
//! * [`guest`] — what peers this hub does not host may do (cross-hub reach).
//! * [`hubs`] — the other hubs this hub's peers introduced: "which key and addresses is
//!   hub X" (records signed by those hubs).
//! * [`stun`] — the STUN server (RFC 5389 binding, RFC 5780 behaviour discovery).
//! * [`probe`] — `allpeers/hub-connectivity/1`: STUN addresses and the TCP reachability probe.

pub mod cluster;
pub mod config;
pub mod db;
pub mod dht;
pub mod guest;
pub mod hubs;
pub mod mail;
pub mod mailbox;
pub mod probe;
pub mod server;
pub mod store;
pub mod stun;
pub mod watch;

use std::sync::Arc;
use std::time::Duration;

use allpeers_hub_client::proto;
use allpeers_net::{Endpoint, EndpointConfig, Identity, KeyFile};

pub use config::HubConfig;
pub use server::Core;

/// A running hub.
pub struct Hub {
    pub endpoint: Endpoint,
    pub core: Arc<Core>,
    /// The STUN server, when configured.
    pub stun: Option<stun::StunServer>,
    pub connectivity: Arc<probe::ConnectivityCore>,
    /// The e-mail gateway, when configured.
    pub mail: Option<mail::MailGateway>,
    /// Cluster mode: this instance's handle.
    pub cluster: Option<Arc<cluster::Cluster>>,
    /// The address record on the DHT, when configured.
    pub dht: Option<dht::DhtPublisher>,
}

/// Loads the hub's identity from `<data_dir>/hub.key`, making one at first run.
pub fn load_identity(data_dir: &std::path::Path) -> anyhow::Result<Identity> {
    std::fs::create_dir_all(data_dir)
        .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", data_dir.display()))?;
    let path = data_dir.join("hub.key");
    if path.exists() {
        let file = KeyFile::read(&path)?;
        Ok(file.open(None, &path.display().to_string())?)
    } else {
        let identity = Identity::generate();
        KeyFile::new(&identity, None).write(&path)?;
        Ok(identity)
    }
}

impl Hub {
    pub async fn start(config: HubConfig) -> anyhow::Result<Hub> {
        let identity = load_identity(&config.data_dir)?;
        let policy = watch::by_name(&config.watch_policy).ok_or_else(|| {
            anyhow::anyhow!(
                "watch_policy {:?}: expected \"mutual\" or \"open\"",
                config.watch_policy
            )
        })?;
        let advertised = config.advertised()?;
        let config_dht = config.dht.clone();
        let identity_for_dht = identity.clone();
        let endpoint_config = EndpointConfig {
            quic: config.quic,
            tcp: config.tcp,
            connect_timeout: Duration::from_secs(config.handshake_timeout_secs.max(1)),
            head_timeout: Duration::from_secs(5),
            max_handshakes: config.max_handshakes.max(1),
            max_concurrent_streams: config.max_concurrent_streams.max(1),
            ..EndpointConfig::default()
        };
        let stun = match &config.stun {
            Some(c) => Some(stun::StunServer::start(c).await?),
            None => None,
        };
        let stun_servers = allpeers_nat::connectivity::StunServers {
            primary: stun.as_ref().map(|s| s.primary()),
            alternate: stun.as_ref().and_then(|s| s.alternate()),
        };
        let connectivity = probe::ConnectivityCore::new(stun_servers, config.probe.clone())?;
        let signer = load_identity(&config.data_dir)?;
        // The sender-hash key is derived from the hub's key: stable across restarts, and
        // unknown to anyone who only has the database.
        let sender_key = blake3::derive_key(
            "allpeers hub mailbox sender key v1",
            &signer.sign(b"allpeers-hub-mailbox-sender-key"),
        );
        let (store, cluster) = match &config.backend {
            config::Backend::Sqlite => {
                let db = db::Db::open(&config.data_dir.join("hub.db"))?;
                let mailbox = mailbox::Mailbox::open(
                    &config.data_dir.join("mail.sqlite"),
                    config.mailbox.clone(),
                    sender_key,
                )?;
                (store::Store::sqlite(db, mailbox), None)
            }
            config::Backend::Postgres(pg) => {
                let pg =
                    store::postgres::PgStore::open(pg.clone(), config.mailbox.clone(), sender_key)
                        .await
                        .map_err(|e| anyhow::anyhow!("backend postgres: {e}"))?;
                let cluster = cluster::Cluster::join(&pg)
                    .await
                    .map_err(|e| anyhow::anyhow!("joining the cluster: {e}"))?;
                (store::Store::Postgres(pg), Some(cluster))
            }
        };
        let sqlite_path = config.data_dir.join("hub.db");
        let mut mail = match &config.mail {
            Some(c) => {
                let db = match (&store, &cluster) {
                    (store::Store::Postgres(pg), Some(cluster)) => mail::MailDb::Postgres {
                        pool: pg.pool().clone(),
                        instance: cluster.instance(),
                    },
                    _ => mail::MailDb::Sqlite(&sqlite_path),
                };
                let gateway = mail::MailGateway::start(
                    c.clone(),
                    &allpeers_hub_client::names::fold_hub_name(&config.name)?,
                    &signer,
                    db,
                )
                .await?;
                if let Some(cluster) = &cluster {
                    cluster.set_mail_wake(gateway.worker_wake());
                }
                Some(gateway)
            }
            None => None,
        };
        let core = Core::new(signer, config, store, cluster.clone(), policy)?;
        if let Some(cluster) = &cluster {
            cluster::mirror::run(&core, cluster.clone());
        }
        if let Some(gateway) = &mut mail {
            let core = core.clone();
            gateway.start_digests(std::sync::Arc::new(move |peer| {
                let core = core.clone();
                Box::pin(async move { core.waiting_letters(&peer).await })
            }));
        }
        let endpoint = Endpoint::bind(identity, endpoint_config).await?;
        let advertised = if advertised.is_empty() {
            endpoint.local_addresses()
        } else {
            advertised
        };
        let dht = match &config_dht {
            Some(c) => Some(dht::publish(identity_for_dht, c, &advertised).await?),
            None => None,
        };
        core.set_advertised(advertised);
        endpoint.register(proto::registry_ns(), server::RegistryService(core.clone()));
        endpoint.register(proto::presence_ns(), server::PresenceService(core.clone()));
        endpoint.register(proto::relay_ns(), server::RelayService(core.clone()));
        endpoint.register(
            allpeers_nat::connectivity::connectivity_ns(),
            probe::ConnectivityService(connectivity.clone()),
        );
        if let Some(gateway) = &mail {
            endpoint.register(mail::proto::mail_ns(), gateway.service());
        }
        if let Some(cluster) = &cluster {
            endpoint.register(
                cluster::relay::instance_relay_ns(),
                server::InstanceRelayService(core.clone()),
            );
            let mut addresses = cluster
                .config()
                .instance_addresses
                .iter()
                .map(|a| config::parse_address(a))
                .collect::<anyhow::Result<Vec<_>>>()
                .map_err(|e| anyhow::anyhow!("backend.postgres.instance_addresses: {e}"))?;
            if addresses.is_empty() {
                addresses = endpoint.local_addresses();
                for a in &mut addresses {
                    if a.addr.ip().is_unspecified() {
                        a.addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
                    }
                }
            }
            cluster
                .set_addresses(addresses)
                .await
                .map_err(|e| anyhow::anyhow!("recording this instance's addresses: {e}"))?;
        }
        Ok(Hub {
            endpoint,
            core,
            stun,
            connectivity,
            mail,
            cluster,
            dht,
        })
    }

    /// Closes every connection; in cluster mode this instance then leaves at once (its
    /// lines end for the other instances' watchers now, not at the heartbeat timeout).
    pub async fn shutdown(&self) {
        self.endpoint.shutdown().await;
        if let Some(cluster) = &self.cluster
            && let Err(e) = cluster.leave().await
        {
            tracing::warn!("leaving the cluster: {e}");
        }
    }
}
