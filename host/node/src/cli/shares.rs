//! `allpeers share <resource> with bob carol [--write|--admin]`, `allpeers shares …`,
//! `allpeers sync status`: shared resources from a terminal.

use allpeers_model::api::shares as sh;
use allpeers_node::client::ApiClient;
use allpeers_node::paths::NodePaths;
use anyhow::bail;
use clap::Subcommand;
use serde_json::{Value, json};

use super::social::find_contact;
use super::{connect, runtime};

#[derive(Subcommand)]
pub enum SharesCommand {
    /// Your shares and those offered to you (the default)
    List,
    /// Accept a share offered to you: it syncs in from its members
    Accept { share: String },
    /// Add a member (admins only)
    Add {
        share: String,
        who: String,
        /// They may edit (default: read only)
        #[arg(long, conflicts_with = "admin")]
        write: bool,
        /// They may edit, and add and revoke members
        #[arg(long)]
        admin: bool,
    },
    /// Revoke a member (admins only): they get no further changes
    Revoke { share: String, who: String },
    /// Stop syncing a share (its resources stay here as local copies)
    Leave { share: String },
}

#[derive(Subcommand)]
pub enum SyncCommand {
    /// Per share: members, who is online, last sync, ops pending, size
    Status,
}

fn level(write: bool, admin: bool) -> &'static str {
    if admin {
        "admin"
    } else if write {
        "write"
    } else {
        "read"
    }
}

fn short(text: &str) -> &str {
    text.get(..12).unwrap_or(text)
}

/// A share id from its full id or a prefix of 8+ characters.
async fn find_share(client: &ApiClient, text: &str) -> anyhow::Result<String> {
    let shares = client.call(sh::SHARES_LIST, json!({})).await?;
    let matches: Vec<String> = shares
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s["id"].as_str())
        .filter(|id| *id == text || (text.len() >= 8 && id.starts_with(text)))
        .map(str::to_string)
        .collect();
    match matches.as_slice() {
        [one] => Ok(one.clone()),
        [] => bail!("no share {text:?} (see `allpeers shares`)"),
        _ => bail!("{text:?} matches several shares: give more of the id"),
    }
}

fn print_share(s: &Value) {
    let members: Vec<String> = s["members"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|m| {
            format!(
                "{}:{}",
                short(m["peer"].as_str().unwrap_or("?")),
                m["level"].as_str().unwrap_or("?")
            )
        })
        .collect();
    println!(
        "{}  {:<8}  {:<24}  from {}  members: {}",
        short(s["id"].as_str().unwrap_or("?")),
        s["state"].as_str().unwrap_or("?"),
        s["title"].as_str().unwrap_or(""),
        short(s["from"].as_str().unwrap_or("?")),
        if members.is_empty() {
            "(not synced yet)".to_string()
        } else {
            members.join(" ")
        }
    );
}

fn output(value: &Value, json_out: bool) -> anyhow::Result<()> {
    if json_out {
        println!("{}", serde_json::to_string_pretty(value)?);
    } else if value.is_object() {
        print_share(value);
    }
    Ok(())
}

/// `allpeers share <resource> with bob carol [--write|--admin]`.
pub fn share(
    paths: &NodePaths,
    resource: &str,
    with: &str,
    who: &[String],
    level_of: (bool, bool),
    json_out: bool,
) -> anyhow::Result<()> {
    if with != "with" || who.is_empty() {
        bail!("usage: allpeers share <resource-id> with <who>... [--write|--admin]");
    }
    runtime()?.block_on(async {
        let client = connect(paths).await?;
        let mut members = Vec::new();
        for w in who {
            let peer = find_contact(&client, w).await?;
            members.push(json!({"peer": peer, "level": level(level_of.0, level_of.1)}));
        }
        let share = client
            .call(
                sh::SHARES_CREATE,
                json!({"resource": resource, "members": members}),
            )
            .await?;
        output(&share, json_out)
    })
}

pub fn shares(
    paths: &NodePaths,
    command: Option<SharesCommand>,
    json_out: bool,
) -> anyhow::Result<()> {
    runtime()?.block_on(async {
        let client = connect(paths).await?;
        let result = match command.unwrap_or(SharesCommand::List) {
            SharesCommand::List => {
                let list = client.call(sh::SHARES_LIST, json!({})).await?;
                if json_out {
                    println!("{}", serde_json::to_string_pretty(&list)?);
                    return Ok(());
                }
                let list = list.as_array().cloned().unwrap_or_default();
                if list.is_empty() {
                    println!("no shares yet: `allpeers share <resource-id> with <contact>`");
                }
                for s in &list {
                    print_share(s);
                }
                return Ok(());
            }
            SharesCommand::Accept { share } => {
                let share = find_share(&client, &share).await?;
                client
                    .call(sh::SHARES_ACCEPT, json!({"share": share}))
                    .await?
            }
            SharesCommand::Add {
                share,
                who,
                write,
                admin,
            } => {
                let share = find_share(&client, &share).await?;
                let peer = find_contact(&client, &who).await?;
                client
                    .call(
                        sh::SHARES_ADD_MEMBER,
                        json!({"share": share, "peer": peer, "level": level(write, admin)}),
                    )
                    .await?
            }
            SharesCommand::Revoke { share, who } => {
                let share = find_share(&client, &share).await?;
                let peer = find_contact(&client, &who).await?;
                client
                    .call(sh::SHARES_REVOKE, json!({"share": share, "peer": peer}))
                    .await?
            }
            SharesCommand::Leave { share } => {
                let share = find_share(&client, &share).await?;
                client
                    .call(sh::SHARES_LEAVE, json!({"share": share}))
                    .await?;
                println!("left {}", short(&share));
                return Ok(());
            }
        };
        output(&result, json_out)
    })
}

pub fn sync(paths: &NodePaths, command: SyncCommand, json_out: bool) -> anyhow::Result<()> {
    let SyncCommand::Status = command;
    runtime()?.block_on(async {
        let client = connect(paths).await?;
        let status = client.call(sh::SYNC_STATUS, json!({})).await?;
        if json_out {
            println!("{}", serde_json::to_string_pretty(&status)?);
            return Ok(());
        }
        let shares = status["shares"].as_array().cloned().unwrap_or_default();
        if shares.is_empty() {
            println!("no shares held");
        }
        for s in shares {
            let now = allpeers_model::hlc::now_ms();
            let last = match s["last_sync_ms"].as_u64() {
                Some(ms) => format!("{} s ago", now.saturating_sub(ms) / 1000),
                None => "never".into(),
            };
            println!(
                "{}  {:<24}  members {}  online {}  last sync {}  pending {}  {} ops, {} bytes",
                short(s["share"].as_str().unwrap_or("?")),
                s["title"].as_str().unwrap_or(""),
                s["members"].as_array().map_or(0, Vec::len),
                s["online"].as_array().map_or(0, Vec::len),
                last,
                s["ops_pending"],
                s["ops"],
                s["bytes"],
            );
        }
        Ok(())
    })
}
