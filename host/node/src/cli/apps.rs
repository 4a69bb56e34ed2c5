//! `allpeers apps` (the web apps granted something, with their scopes) and
//! `allpeers apps revoke ORIGIN [SCOPE…]`.

use allpeers_model::api::apps as ap;
use allpeers_node::paths::NodePaths;
use clap::Subcommand;
use serde_json::{Value, json};

use super::{connect, runtime};

#[derive(Subcommand)]
pub enum AppsCommand {
    /// The web apps granted something, with their scopes (the default)
    List,
    /// Take back an app's scopes (none named: all, and the app is forgotten; its data stays)
    Revoke {
        /// The app's origin, e.g. https://example.com
        origin: String,
        /// Scopes to take back: identity, contacts:read, presence, messages:send, resources, shares
        scopes: Vec<String>,
    },
}

fn print_app(app: &Value) {
    let scopes: Vec<&str> = app["scopes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    let now = allpeers_model::hlc::now_ms();
    let used = match app["last_used_ms"].as_u64() {
        Some(ms) => format!("used {} s ago", now.saturating_sub(ms) / 1000),
        None => "never used".into(),
    };
    println!(
        "{:<40}  {:<50}  {used}",
        app["origin"].as_str().unwrap_or("?"),
        scopes.join(" ")
    );
}

pub fn apps(paths: &NodePaths, command: Option<AppsCommand>, json_out: bool) -> anyhow::Result<()> {
    runtime()?.block_on(async {
        let client = connect(paths).await?;
        match command.unwrap_or(AppsCommand::List) {
            AppsCommand::List => {
                let list = client.call(ap::APPS_LIST, json!({})).await?;
                if json_out {
                    println!("{}", serde_json::to_string_pretty(&list)?);
                    return Ok(());
                }
                let list = list.as_array().cloned().unwrap_or_default();
                if list.is_empty() {
                    println!("no web app holds a grant");
                }
                for app in &list {
                    print_app(app);
                }
            }
            AppsCommand::Revoke { origin, scopes } => {
                let mut params = json!({"origin": origin});
                if !scopes.is_empty() {
                    params["scopes"] = json!(scopes);
                }
                let left = client.call(ap::APPS_REVOKE, params).await?;
                if json_out {
                    println!("{}", serde_json::to_string_pretty(&left)?);
                } else if left.is_null() {
                    println!("{origin}: every grant revoked");
                } else {
                    print_app(&left);
                }
            }
        }
        Ok(())
    })
}
