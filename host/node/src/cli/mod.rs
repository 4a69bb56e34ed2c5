//! The command line's commands over the local API.

pub mod apps;
pub mod demo;
mod demo_apps;
mod demo_files;
mod demo_hubs;
mod demo_mail;
mod demo_media;
pub mod demo_shares;
pub mod demo_transfers;
pub mod mail;
pub mod media;
pub mod resource;
pub mod shares;
pub mod social;
pub mod transfers;

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use allpeers_model::api::methods::{self as m, IdentityInfo, LogInfo, StatusResult};
use allpeers_net::KeyFile;
use allpeers_node::client::{ApiClient, ClientError};
use allpeers_node::identity::{ENV_BACKUP_PASSPHRASE, ENV_PASSPHRASE};
use allpeers_node::install::{Browser, InstallOptions};
use allpeers_node::lock::DataDirLock;
use allpeers_node::paths::NodePaths;
use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use serde_json::{Value, json};

/// A quiet exit with a specific code (e.g. `status` when no daemon runs: 3).
#[derive(Debug)]
pub struct Exit(pub u8);

impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "exit {}", self.0)
    }
}

impl std::error::Error for Exit {}

#[derive(Args)]
pub struct InstallArgs {
    /// Browsers to register with [default: all three]
    #[arg(long = "browser", value_enum)]
    browsers: Vec<Browser>,
    /// A Chromium/Chrome --user-data-dir to register in instead of the default profile
    #[arg(long, value_name = "DIR")]
    chromium_profile: Option<PathBuf>,
}

#[derive(Subcommand)]
pub enum IdentityCommand {
    /// Show your PeerId, whether the key is sealed, and the certificate fingerprint
    Show,
    /// Write a backup of your identity (sealed with a passphrase) to FILE
    Export {
        file: PathBuf,
        /// Write the key unsealed (anyone with the file becomes you)
        #[arg(long)]
        no_passphrase: bool,
    },
    /// Restore your identity from a backup FILE (the daemon must be stopped)
    Import {
        file: PathBuf,
        /// Replace an existing, different identity (it is kept beside the new one)
        #[arg(long)]
        force: bool,
    },
    /// Give the running daemon the passphrase of a sealed identity
    Unlock,
}

#[derive(Subcommand)]
pub enum NetCommand {
    /// Where the node listens, its hub line, and each connected peer with its path
    Status,
    /// Reach a peer (resolve it first): direct if possible, else relayed by the hub
    Connect { peer: String },
}

#[derive(Subcommand)]
pub enum LogCommand {
    /// Show the current filter and the log directory
    Get,
    /// Set the filter, e.g. `flesh` or `marrow,allpeers_net=bone`
    Set { filter: String },
}

pub(crate) fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

/// A client of the daemon, started on demand the same race-free way the browser's native
/// host starts it (`allpeers daemon` stays for foreground use).
pub(crate) async fn connect(paths: &NodePaths) -> anyhow::Result<ApiClient> {
    let stream = allpeers_node::native_host::connect_or_start(paths).await?;
    Ok(ApiClient::over(stream, "allpeers-cli").await?)
}

/// A client of a daemon that is already running (to stop it, say): none is started.
pub(crate) async fn connect_running(paths: &NodePaths) -> anyhow::Result<ApiClient> {
    match ApiClient::connect(&paths.socket, "allpeers-cli").await {
        Ok(client) => Ok(client),
        Err(ClientError::Connect { .. }) => bail!(
            "the daemon is not running for {} (start it with `allpeers daemon`; the browser starts it on demand)",
            paths.data_dir.display()
        ),
        Err(e) => Err(e.into()),
    }
}

pub fn install(args: &InstallArgs, data_dir: Option<&Path>, install: bool) -> anyhow::Result<()> {
    let home = directories::BaseDirs::new()
        .context("cannot find the home directory")?
        .home_dir()
        .to_path_buf();
    let options = InstallOptions {
        browsers: if args.browsers.is_empty() {
            Browser::ALL.to_vec()
        } else {
            args.browsers.clone()
        },
        chromium_profile: args.chromium_profile.clone(),
        data_dir: data_dir.map(Path::to_path_buf),
        home,
    };
    if install {
        for path in allpeers_node::install::install(&options)? {
            println!("wrote {}", path.display());
        }
        println!("Load the extension (see README.md); it starts AllPeers when it opens.");
    } else {
        let removed = allpeers_node::install::uninstall(&options)?;
        if removed.is_empty() {
            println!("nothing to remove");
        }
        for path in removed {
            println!("removed {}", path.display());
        }
    }
    Ok(())
}

pub fn id(paths: &NodePaths) -> anyhow::Result<()> {
    match KeyFile::read(&paths.identity()) {
        Ok(file) => println!("{}", file.peer_id),
        Err(allpeers_net::IdentityError::NotFound(_)) => {
            // First run: create the identity under the data dir lock (a daemon that holds
            // it has already created one, so this only runs without a daemon).
            let _lock = DataDirLock::acquire(paths)?;
            let passphrase = std::env::var(ENV_PASSPHRASE).ok();
            let identity = allpeers_node::identity::load_or_create(paths, passphrase.as_deref())?;
            println!("{}", identity.file.peer_id);
        }
        Err(e) => return Err(e.into()),
    }
    Ok(())
}

pub fn status(paths: &NodePaths, json_out: bool) -> anyhow::Result<()> {
    runtime()?.block_on(async {
        let client = match ApiClient::connect(&paths.socket, "allpeers-cli").await {
            Ok(client) => client,
            Err(ClientError::Connect { .. }) => {
                if json_out {
                    println!("{}", json!({"running": false, "data_dir": paths.data_dir}));
                } else {
                    println!("daemon:   not running");
                    println!("data dir: {}", paths.data_dir.display());
                }
                return Err(Exit(3).into());
            }
            Err(e) => return Err(e.into()),
        };
        let status: StatusResult = client.call_typed(m::STATUS_GET, json!({})).await?;
        if json_out {
            println!("{}", serde_json::to_string_pretty(&status)?);
            return Ok(());
        }
        println!(
            "daemon:   running (pid {}, version {}, up {:.1} s)",
            status.pid,
            status.version,
            status.uptime_ms as f64 / 1000.0
        );
        println!(
            "peer id:  {}{}",
            status.identity.peer_id,
            if status.identity.locked {
                "  (locked: run `allpeers identity unlock`)"
            } else {
                ""
            }
        );
        println!("data dir: {}", status.data_dir);
        println!("socket:   {}", status.socket);
        println!("clients:  {}", status.clients);
        Ok(())
    })
}

pub fn stop(paths: &NodePaths) -> anyhow::Result<()> {
    runtime()?.block_on(async {
        let client = connect_running(paths).await?;
        client.call(m::DAEMON_SHUTDOWN, json!({})).await?;
        println!("daemon stopping");
        Ok(())
    })
}

/// A passphrase from the environment, else asked on the terminal (twice when `confirm`).
fn passphrase(env: &str, prompt: &str, confirm: bool) -> anyhow::Result<Option<String>> {
    if let Ok(p) = std::env::var(env) {
        return Ok(Some(p));
    }
    if !std::io::stdin().is_terminal() {
        return Ok(None);
    }
    let first = rpassword::prompt_password(prompt)?;
    if confirm && rpassword::prompt_password("Again: ")? != first {
        bail!("the passphrases differ");
    }
    Ok((!first.is_empty()).then_some(first))
}

pub fn identity(paths: &NodePaths, command: IdentityCommand) -> anyhow::Result<()> {
    match command {
        IdentityCommand::Show => {
            let file = KeyFile::read(&paths.identity())?;
            let running = runtime()?.block_on(async {
                let client = ApiClient::connect(&paths.socket, "allpeers-cli")
                    .await
                    .ok()?;
                client
                    .call_typed::<_, IdentityInfo>(m::IDENTITY_GET, json!({}))
                    .await
                    .ok()
            });
            println!("peer id:     {}", file.peer_id);
            println!(
                "sealed:      {}",
                if file.is_sealed() {
                    "yes (passphrase)"
                } else {
                    "no"
                }
            );
            if let Some(info) = running {
                println!(
                    "daemon:      {}",
                    if info.locked {
                        "running, locked"
                    } else {
                        "running, unlocked"
                    }
                );
                if let Some(sha) = info.certificate_sha256 {
                    println!("certificate: sha256 {sha}");
                }
            }
        }
        IdentityCommand::Export {
            file,
            no_passphrase,
        } => {
            let backup_passphrase = if no_passphrase {
                None
            } else {
                passphrase(ENV_BACKUP_PASSPHRASE, "Passphrase for the backup: ", true)?
            };
            let written = allpeers_node::identity::export(
                paths,
                &file,
                backup_passphrase.as_deref(),
                no_passphrase,
            )?;
            println!(
                "wrote a backup of {} to {}{}",
                written.peer_id,
                file.display(),
                if written.is_sealed() {
                    ""
                } else {
                    " (NOT sealed: keep it safe)"
                }
            );
        }
        IdentityCommand::Import { file, force } => {
            let _lock = DataDirLock::acquire(paths)
                .context("stop the daemon before importing an identity")?;
            let backup = KeyFile::read(&file)?;
            let backup_passphrase = if backup.is_sealed() {
                passphrase(ENV_BACKUP_PASSPHRASE, "Passphrase of the backup: ", false)?
            } else {
                None
            };
            let imported =
                allpeers_node::identity::import(paths, &file, backup_passphrase.as_deref(), force)?;
            println!("restored identity {}", imported.peer_id);
            if imported.is_sealed() {
                println!(
                    "it stays sealed with the backup's passphrase (set {ENV_PASSPHRASE} or run `allpeers identity unlock`)"
                );
            }
        }
        IdentityCommand::Unlock => {
            let passphrase = passphrase(ENV_PASSPHRASE, "Passphrase: ", false)?.context(
                format!("no passphrase: set {ENV_PASSPHRASE} or run on a terminal"),
            )?;
            runtime()?.block_on(async {
                let client = connect(paths).await?;
                let info: IdentityInfo = client
                    .call_typed(m::IDENTITY_UNLOCK, m::UnlockParams { passphrase })
                    .await?;
                println!("unlocked {}", info.peer_id);
                anyhow::Ok(())
            })?;
        }
    }
    Ok(())
}

pub fn log(paths: &NodePaths, command: LogCommand) -> anyhow::Result<()> {
    runtime()?.block_on(async {
        let client = connect(paths).await?;
        let info: LogInfo = match command {
            LogCommand::Get => client.call_typed(m::LOG_GET, json!({})).await?,
            LogCommand::Set { filter } => {
                client
                    .call_typed(m::LOG_SET, m::LogSetParams { filter })
                    .await?
            }
        };
        println!("filter: {}\nfiles:  {}", info.filter, info.dir);
        Ok(())
    })
}

pub fn call(paths: &NodePaths, method: &str, params: Option<&str>) -> anyhow::Result<()> {
    let params: Value = match params {
        Some(text) => serde_json::from_str(text).context("params must be JSON")?,
        None => json!({}),
    };
    runtime()?.block_on(async {
        let client = connect(paths).await?;
        let result = client.call(method, params).await?;
        println!("{}", serde_json::to_string_pretty(&result)?);
        Ok(())
    })
}

/// `net.status`'s listening addresses as `quic 127.0.0.1:4433, tcp …`.
pub(crate) fn listening_addresses(status: &Value) -> String {
    status["listening"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|a| {
            format!(
                "{} {}",
                a["transport"].as_str().unwrap_or("?"),
                a["addr"].as_str().unwrap_or("?")
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// `net.status`'s `connectivity` object as the CLI's `nat:` and `tcp:` lines.
pub(crate) fn connectivity_lines(c: &Value) -> Vec<String> {
    let s = |v: &Value| v.as_str().unwrap_or("?").to_string();
    if c.is_null() {
        return Vec::new();
    }
    let state = c["state"].as_str().unwrap_or("unknown");
    if c.get("nat_type").is_none() {
        return vec![match state {
            "checking" => "nat:      checking...".to_string(),
            _ => format!(
                "nat:      unknown ({})",
                c["reason"].as_str().unwrap_or("not checked")
            ),
        }];
    }
    let mut nat = format!(
        "nat:      {} (mapping {}, filtering {})",
        s(&c["nat_type"]),
        s(&c["mapping"]),
        s(&c["filtering"])
    );
    if let Some(mapped) = c["udp_mapped"].as_str() {
        nat.push_str(&format!(", UDP seen at {mapped}"));
    }
    if let Some(quic) = c["quic_observed"].as_str() {
        nat.push_str(&format!(", QUIC at {quic}"));
    }
    if state == "checking" {
        nat.push_str(" [rechecking]");
    }
    let mut lines = vec![nat];
    if let Some(tcp) = c["tcp"].as_object() {
        let at = tcp
            .get("target")
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or_else(|| format!("port {}", tcp.get("port").unwrap_or(&Value::Null)));
        lines.push(format!(
            "tcp:      {} at {at} ({})",
            if tcp.get("reachable") == Some(&Value::Bool(true)) {
                "reachable"
            } else {
                "not reachable"
            },
            tcp.get("reason").and_then(Value::as_str).unwrap_or("?")
        ));
    }
    for e in c["errors"].as_array().into_iter().flatten() {
        lines.push(format!("nat:      ! {}", s(e)));
    }
    lines
}

/// `net.status`'s `discovery` object as the CLI's `dht:` and `lan:` lines (none when both
/// are off).
pub(crate) fn discovery_lines(d: &Value) -> Vec<String> {
    let mut lines = Vec::new();
    let dht = &d["dht"];
    if dht["running"] == true {
        let joined = match dht["bootstrapped"].as_bool() {
            Some(true) => "joined",
            Some(false) => "not joined (no bootstrap node answered)",
            None => "joining",
        };
        let published = match dht["last_publish_ms"].as_u64() {
            Some(ms) => format!(
                "record published {} s ago (stored by {} nodes)",
                allpeers_model::hlc::now_ms().saturating_sub(ms) / 1000,
                dht["last_publish_stored_at"].as_u64().unwrap_or(0)
            ),
            None => "record not published yet".to_string(),
        };
        let mut line = format!("dht:      {joined}, {published}");
        if let Some(e) = dht["last_publish_error"].as_str() {
            line.push_str(&format!(", last error: {e}"));
        }
        lines.push(line);
        if let Some(e) = dht["last_lookup_error"].as_str() {
            lines.push(format!("dht:      last lookup failed: {e}"));
        }
    } else if dht["enabled"] == true {
        lines.push("dht:      enabled but not running".to_string());
    }
    let lan = &d["lan"];
    if lan["running"] == true {
        let peers = lan["peers"].as_array().map(Vec::len).unwrap_or(0);
        lines.push(format!(
            "lan:      {peers} peer(s) seen on {}, {} refused announcement(s)",
            lan["group"].as_str().unwrap_or("?"),
            lan["refused"].as_u64().unwrap_or(0)
        ));
        for p in lan["peers"].as_array().into_iter().flatten() {
            lines.push(format!(
                "lan peer: {} from {}",
                p["peer"].as_str().unwrap_or("?"),
                p["from"].as_str().unwrap_or("?")
            ));
        }
    } else if lan["enabled"] == true {
        lines.push("lan:      enabled but not running".to_string());
    }
    for e in d["errors"].as_array().into_iter().flatten() {
        lines.push(format!("discovery: ! {}", e.as_str().unwrap_or("?")));
    }
    lines
}

pub fn register(paths: &NodePaths, name: &str, json_out: bool) -> anyhow::Result<()> {
    runtime()?.block_on(async {
        let client = connect(paths).await?;
        let result = client.call(m::HUB_REGISTER, json!({"name": name})).await?;
        if json_out {
            println!("{}", serde_json::to_string_pretty(&result)?);
        } else {
            let cert = &result["certificate"];
            println!(
                "registered {} for {}",
                cert["full_name"].as_str().unwrap_or("?"),
                cert["peer_id"].as_str().unwrap_or("?")
            );
            println!(
                "signed by hub {}",
                cert["hub_peer_id"].as_str().unwrap_or("?")
            );
        }
        Ok(())
    })
}

pub fn resolve(paths: &NodePaths, query: &str, json_out: bool) -> anyhow::Result<()> {
    runtime()?.block_on(async {
        let client = connect(paths).await?;
        let result = client.call(m::HUB_RESOLVE, json!({"query": query})).await?;
        if json_out {
            println!("{}", serde_json::to_string_pretty(&result)?);
        } else if result["found"] != true {
            println!("{query}: not found (answer verified)");
            return Err(Exit(4).into());
        } else {
            println!("peer id:   {}", result["peer_id"].as_str().unwrap_or("?"));
            if let Some(name) = result["name"].as_str() {
                println!("name:      {name}");
            }
            println!(
                "online:    {}",
                if result["online"] == true {
                    "yes"
                } else {
                    "no"
                }
            );
            let addresses: Vec<&str> = result["addresses"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            println!(
                "addresses: {}",
                if addresses.is_empty() {
                    "-".into()
                } else {
                    addresses.join(", ")
                }
            );
            println!("verified:  hub signature, fresh answer to our question");
        }
        Ok(())
    })
}

pub fn net(paths: &NodePaths, command: NetCommand, json_out: bool) -> anyhow::Result<()> {
    runtime()?.block_on(async {
        let client = connect(paths).await?;
        let result = match command {
            NetCommand::Status => client.call(m::NET_STATUS, json!({})).await?,
            NetCommand::Connect { peer } => {
                let r = client.call(m::NET_CONNECT, json!({"peer": peer})).await?;
                if !json_out {
                    println!(
                        "connected: {} over {} in {} ms — {}",
                        r["path"].as_str().unwrap_or("?"),
                        r["transport"].as_str().unwrap_or("?"),
                        r["elapsed_ms"],
                        r["why"].as_str().unwrap_or("")
                    );
                    for a in r["attempts"].as_array().into_iter().flatten() {
                        println!(
                            "  {:>6} ms  {}: {}",
                            a["at_ms"],
                            a["method"].as_str().unwrap_or("?"),
                            a["outcome"].as_str().unwrap_or("")
                        );
                    }
                    return Ok(());
                }
                r
            }
        };
        if json_out || result.get("running").is_none() {
            println!("{}", serde_json::to_string_pretty(&result)?);
            return Ok(());
        }
        if result["running"] != true {
            println!(
                "network:  offline ({})",
                result["reason"].as_str().unwrap_or("?")
            );
            return Ok(());
        }
        let listening = listening_addresses(&result);
        println!(
            "network:  {}",
            if result["online"] == true {
                "online"
            } else {
                "no network interface up"
            }
        );
        println!("listening: {}", listening);
        match result["hub"].as_object() {
            Some(hub) => println!(
                "hub:      {} ({}){}",
                hub.get("state").and_then(Value::as_str).unwrap_or("?"),
                hub.get("hub").and_then(Value::as_str).unwrap_or("?"),
                hub.get("observed")
                    .and_then(Value::as_str)
                    .map(|o| format!(", sees us at {o}"))
                    .unwrap_or_default()
            ),
            None => println!("hub:      none configured"),
        }
        for line in connectivity_lines(&result["connectivity"]) {
            println!("{line}");
        }
        for line in discovery_lines(&result["discovery"]) {
            println!("{line}");
        }
        for peer in result["connections"].as_array().into_iter().flatten() {
            println!(
                "peer:     {} {} {} ({})",
                peer["peer"].as_str().unwrap_or("?"),
                peer["path"].as_str().unwrap_or("?"),
                peer["transport"].as_str().unwrap_or("?"),
                peer["direction"].as_str().unwrap_or("?")
            );
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connectivity_lines_read_well() {
        let done = json!({
            "state": "done", "nat_type": "port-restricted-cone",
            "mapping": "endpoint-independent", "filtering": "address-and-port-dependent",
            "udp_mapped": "203.0.113.20:5000", "quic_observed": "203.0.113.20:7000",
            "tcp": {"port": 7001, "target": "203.0.113.20:7001", "reachable": false,
                    "reason": "no answer (filtered or not forwarded)"},
            "errors": []
        });
        assert_eq!(
            connectivity_lines(&done),
            vec![
                "nat:      port-restricted-cone (mapping endpoint-independent, filtering \
                 address-and-port-dependent), UDP seen at 203.0.113.20:5000, QUIC at \
                 203.0.113.20:7000",
                "tcp:      not reachable at 203.0.113.20:7001 (no answer (filtered or not \
                 forwarded))",
            ]
        );
        let unknown = json!({"state": "unknown", "reason": "no home hub is configured"});
        assert_eq!(
            connectivity_lines(&unknown),
            vec!["nat:      unknown (no home hub is configured)"]
        );
        assert!(connectivity_lines(&Value::Null).is_empty());
    }

    #[test]
    fn discovery_lines_read_well() {
        assert!(discovery_lines(&Value::Null).is_empty());
        let off = json!({"dht": {"enabled": false, "running": false},
                         "lan": {"enabled": false, "running": false}});
        assert!(discovery_lines(&off).is_empty());
        let on = json!({
            "dht": {"enabled": true, "running": true, "bootstrapped": true,
                    "last_publish_ms": allpeers_model::hlc::now_ms(), "last_publish_stored_at": 8,
                    "last_lookup_error": "apbob: no address record for apbob on the DHT"},
            "lan": {"enabled": true, "running": true, "group": "239.255.70.80:41730",
                    "refused": 1, "peers": [{"peer": "apbob", "from": "198.18.3.3:41730"}]},
            "errors": ["lan: nope"],
        });
        assert_eq!(
            discovery_lines(&on),
            vec![
                "dht:      joined, record published 0 s ago (stored by 8 nodes)",
                "dht:      last lookup failed: apbob: no address record for apbob on the DHT",
                "lan:      1 peer(s) seen on 239.255.70.80:41730, 1 refused announcement(s)",
                "lan peer: apbob from 198.18.3.3:41730",
                "discovery: ! lan: nope",
            ]
        );
    }
}
