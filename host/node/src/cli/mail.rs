//! `allpeers mail …`: e-mail through the home hub — register and confirm an address,
//! choose which mail it accepts, invite someone by e-mail, stop all mail.

use allpeers_model::api::mail as m;
use allpeers_node::paths::NodePaths;
use anyhow::bail;
use clap::Subcommand;
use serde_json::{Map, Value, json};

use super::{connect, runtime};

#[derive(Subcommand)]
pub enum MailCommand {
    /// Your address at the hub (masked), whether it is confirmed, and which mail it accepts
    Status,
    /// Register an e-mail address at your hub; it mails you a code to confirm it
    Address { address: String },
    /// Confirm your address with the code from the mail
    Confirm { code: String },
    /// Invite someone to AllPeers by e-mail (the mail carries a fresh invite code of yours)
    Invite {
        address: String,
        /// A few words shown in the mail
        #[arg(long, short)]
        note: Option<String>,
    },
    /// Show or change which mail you accept: `prefs waiting=off share=on`
    /// (kinds: share, invitation, waiting, digest)
    Prefs { settings: Vec<String> },
    /// Stop all mail from your hub and forget your address there
    Unsubscribe,
}

/// `kind=on|off` pairs as `mail.preferences` params.
fn preference_params(settings: &[String]) -> anyhow::Result<Value> {
    let mut params = Map::new();
    for s in settings {
        let Some((kind, value)) = s.split_once('=') else {
            bail!("{s:?}: expected kind=on or kind=off");
        };
        if !["share", "invitation", "waiting", "digest"].contains(&kind) {
            bail!("{kind:?}: the kinds are share, invitation, waiting, digest");
        }
        let on = match value {
            "on" | "yes" | "true" => true,
            "off" | "no" | "false" => false,
            other => bail!("{other:?}: expected on or off"),
        };
        params.insert(kind.into(), json!(on));
    }
    Ok(Value::Object(params))
}

fn print_preferences(p: &Value) {
    let on = |k: &str| if p[k] == true { "on" } else { "off" };
    println!(
        "accepts: share {}, invitation {}, waiting {}, digest {}",
        on("share"),
        on("invitation"),
        on("waiting"),
        on("digest")
    );
}

fn print_status(s: &Value) {
    match s["address"].as_str() {
        None => println!("no e-mail address: `allpeers mail address you@example.org`"),
        Some(a) if s["confirmed"] == true => {
            println!("{a} (confirmed)");
            print_preferences(&s["preferences"]);
        }
        Some(a) => {
            println!("{a} (not confirmed: `allpeers mail confirm CODE` with the mailed code)")
        }
    }
}

pub fn mail(paths: &NodePaths, command: Option<MailCommand>, json_out: bool) -> anyhow::Result<()> {
    let command = command.unwrap_or(MailCommand::Status);
    runtime()?.block_on(async {
        let client = connect(paths).await?;
        let (method, params) = match &command {
            MailCommand::Status => (m::MAIL_STATUS, json!({})),
            MailCommand::Address { address } => (m::MAIL_SET_ADDRESS, json!({"address": address})),
            MailCommand::Confirm { code } => (m::MAIL_CONFIRM, json!({"code": code})),
            MailCommand::Invite { address, note } => {
                (m::MAIL_INVITE, json!({"address": address, "note": note}))
            }
            MailCommand::Prefs { settings } => (m::MAIL_PREFERENCES, preference_params(settings)?),
            MailCommand::Unsubscribe => (m::MAIL_UNSUBSCRIBE, json!({})),
        };
        let result = client.call(method, params).await?;
        if json_out {
            println!("{}", serde_json::to_string_pretty(&result)?);
            return Ok(());
        }
        match &command {
            MailCommand::Status | MailCommand::Confirm { .. } => print_status(&result),
            MailCommand::Address { .. } if result["confirmed"] == true => println!(
                "{} is already confirmed",
                result["address"].as_str().unwrap_or("?")
            ),
            MailCommand::Address { .. } => println!(
                "a code is on its way to {} (valid {} min): `allpeers mail confirm CODE`",
                result["address"].as_str().unwrap_or("?"),
                result["expires_in_secs"].as_u64().unwrap_or(0) / 60
            ),
            MailCommand::Invite { .. } => println!(
                "invitation queued to {} (its invite code works 14 days)",
                result["address"].as_str().unwrap_or("?")
            ),
            MailCommand::Prefs { .. } => print_preferences(&result),
            MailCommand::Unsubscribe => {
                println!("no more mail: your address is forgotten at the hub")
            }
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preference_settings_parse() {
        let p = preference_params(&["waiting=off".into(), "share=on".into()]).unwrap();
        assert_eq!(p, json!({"waiting": false, "share": true}));
        assert!(preference_params(&["spam=on".into()]).is_err());
        assert!(preference_params(&["waiting".into()]).is_err());
        assert!(preference_params(&["waiting=maybe".into()]).is_err());
    }
}
