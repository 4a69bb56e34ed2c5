//! `allpeers contacts …`, `allpeers presence …`, `allpeers chat …`: contacts, presence and
//! conversations from a terminal, including an interactive chat.

use std::io::IsTerminal;

use allpeers_model::api::methods as m;
use allpeers_node::client::ApiClient;
use allpeers_node::paths::NodePaths;
use anyhow::{Context, bail};
use clap::Subcommand;
use serde_json::{Value, json};
use tokio::io::AsyncBufReadExt;

use super::{connect, runtime};

#[derive(Subcommand)]
pub enum ContactsCommand {
    /// Your contacts and requests, with presence
    List,
    /// Ask someone to be your contact: name@hub, a PeerId, or an invite code
    Add {
        who: String,
        /// A few words with the request
        #[arg(long, short, default_value = "")]
        message: String,
    },
    /// Accept a contact request (name, PeerId or its first characters)
    Accept { who: String },
    /// Decline a contact request (quietly: they are not told)
    Decline { who: String },
    /// Remove a contact (they are told, and stop seeing your presence)
    Remove { who: String },
    /// Block a peer: their letters are dropped and they cannot see your presence
    Block { who: String },
    /// Unblock a peer
    Unblock { who: String },
    /// Print an invite code to give someone (valid 14 days; accepted at once)
    Invite,
}

#[derive(Subcommand)]
pub enum PresenceCommand {
    /// Show your presence
    Get,
    /// Set your presence: online, away or busy, with an optional status text
    Set { state: String, text: Option<String> },
}

#[derive(Subcommand)]
pub enum ChatCommand {
    /// Your conversations, most recent first, with unread counts
    List,
    /// Send one message to a contact (name, PeerId) or a chat id
    Send {
        to: String,
        message: String,
        /// Share a link (shown as a card)
        #[arg(long)]
        link: Option<String>,
    },
    /// Show the last messages of a conversation
    History {
        with: String,
        #[arg(long, default_value_t = 30)]
        limit: u64,
    },
    /// Start a group with contacts
    Group { title: String, members: Vec<String> },
    /// Chat interactively: type lines to send; /read, /edit TEXT, /delete, /quit
    Open { with: String },
}

/// Finds a contact by PeerId, name@hub, name, title, or a PeerId prefix of 8+ characters.
pub(super) async fn find_contact(client: &ApiClient, who: &str) -> anyhow::Result<String> {
    let contacts = client.call(m::CONTACTS_LIST, json!({})).await?;
    let who = who.trim();
    let matches: Vec<&Value> = contacts
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| {
            let field = |k: &str| c[k].as_str().unwrap_or("");
            field("peer_id") == who
                || field("name").eq_ignore_ascii_case(who)
                || field("name")
                    .split('@')
                    .next()
                    .is_some_and(|n| n.eq_ignore_ascii_case(who))
                || field("title").eq_ignore_ascii_case(who)
                || (who.len() >= 8 && field("peer_id").starts_with(who))
        })
        .collect();
    match matches.as_slice() {
        [one] => Ok(one["peer_id"].as_str().unwrap_or_default().to_string()),
        [] => {
            if who.parse::<allpeers_model::PeerId>().is_ok() {
                Ok(who.to_string())
            } else {
                bail!("no contact {who:?} (see `allpeers contacts list`)")
            }
        }
        _ => bail!("{who:?} matches several contacts: use the PeerId"),
    }
}

/// A chat id for `with`: a chat id as is, else the 1:1 chat with that contact.
async fn find_chat(client: &ApiClient, with: &str) -> anyhow::Result<Value> {
    if with.starts_with("dm-") || with.starts_with("grp-") {
        let chats = client.call(m::CHAT_LIST, json!({})).await?;
        return chats
            .as_array()
            .into_iter()
            .flatten()
            .find(|c| c["id"] == with)
            .cloned()
            .with_context(|| format!("no chat {with}"));
    }
    let peer = find_contact(client, with).await?;
    Ok(client.call(m::CHAT_OPEN, json!({"peer": peer})).await?)
}

fn presence_label(c: &Value) -> String {
    let p = &c["presence"];
    let state = p["state"].as_str().unwrap_or("offline");
    match p["text"].as_str() {
        Some(t) if !t.is_empty() => format!("{state} ({t})"),
        _ => state.to_string(),
    }
}

pub fn contacts(paths: &NodePaths, command: ContactsCommand, json_out: bool) -> anyhow::Result<()> {
    runtime()?.block_on(async {
        let client = connect(paths).await?;
        let result = match &command {
            ContactsCommand::List => {
                let list = client.call(m::CONTACTS_LIST, json!({})).await?;
                if json_out {
                    println!("{}", serde_json::to_string_pretty(&list)?);
                    return Ok(());
                }
                let list = list.as_array().cloned().unwrap_or_default();
                if list.is_empty() {
                    println!("no contacts yet: `allpeers contacts add name@hub` or `allpeers contacts invite`");
                }
                for c in list {
                    let name = c["name"].as_str().or(c["title"].as_str()).unwrap_or("?");
                    let state = c["state"].as_str().unwrap_or("?");
                    let detail = match state {
                        "accepted" => presence_label(&c),
                        "incoming" => format!(
                            "wants to be your contact{}: `allpeers contacts accept {name}`",
                            c["request_message"]
                                .as_str()
                                .map(|m| format!(" ({m:?})"))
                                .unwrap_or_default()
                        ),
                        "outgoing" => "asked, waiting for an answer".into(),
                        other => other.into(),
                    };
                    println!(
                        "{:<24} {:<10} {}  {}",
                        name,
                        state,
                        detail,
                        c["peer_id"].as_str().unwrap_or("")
                    );
                }
                return Ok(());
            }
            ContactsCommand::Add { who, message } => {
                client
                    .call(m::CONTACTS_ADD, json!({"who": who, "message": message}))
                    .await?
            }
            ContactsCommand::Invite => {
                let invite = client.call(m::CONTACTS_INVITE, json!({})).await?;
                if json_out {
                    println!("{}", serde_json::to_string_pretty(&invite)?);
                } else {
                    println!("{}", invite["code"].as_str().unwrap_or(""));
                    if std::io::stdout().is_terminal() {
                        println!(
                            "\nGive this code to a friend: `allpeers contacts add <code>` makes you contacts at once."
                        );
                    }
                }
                return Ok(());
            }
            ContactsCommand::Accept { who }
            | ContactsCommand::Decline { who }
            | ContactsCommand::Remove { who }
            | ContactsCommand::Block { who }
            | ContactsCommand::Unblock { who } => {
                let peer = find_contact(&client, who).await?;
                let method = match command {
                    ContactsCommand::Accept { .. } => m::CONTACTS_ACCEPT,
                    ContactsCommand::Decline { .. } => m::CONTACTS_DECLINE,
                    ContactsCommand::Remove { .. } => m::CONTACTS_REMOVE,
                    ContactsCommand::Block { .. } => m::CONTACTS_BLOCK,
                    _ => m::CONTACTS_UNBLOCK,
                };
                client.call(method, json!({"peer": peer})).await?
            }
        };
        if json_out {
            println!("{}", serde_json::to_string_pretty(&result)?);
        } else {
            println!(
                "{}: {}",
                result["name"]
                    .as_str()
                    .or(result["peer_id"].as_str())
                    .unwrap_or("?"),
                result["state"].as_str().unwrap_or("?")
            );
        }
        Ok(())
    })
}

pub fn presence(paths: &NodePaths, command: PresenceCommand) -> anyhow::Result<()> {
    runtime()?.block_on(async {
        let client = connect(paths).await?;
        let result = match command {
            PresenceCommand::Get => client.call(m::PRESENCE_GET, json!({})).await?,
            PresenceCommand::Set { state, text } => {
                client
                    .call(
                        m::PRESENCE_SET,
                        json!({"state": state, "text": text.unwrap_or_default()}),
                    )
                    .await?
            }
        };
        let text = result["text"].as_str().unwrap_or("");
        println!(
            "{}{}",
            result["state"].as_str().unwrap_or("?"),
            if text.is_empty() {
                String::new()
            } else {
                format!(" ({text})")
            }
        );
        Ok(())
    })
}

/// One line for a message: `12:04 alice: hello ✓✓`.
fn message_line(msg: &Value, names: &[(String, String)]) -> String {
    let sender = msg["sender"].as_str().unwrap_or("?");
    let who = if msg["outgoing"] == true {
        "me".to_string()
    } else {
        names
            .iter()
            .find(|(id, _)| id == sender)
            .map(|(_, n)| n.clone())
            .unwrap_or_else(|| sender.chars().take(10).collect())
    };
    let time = msg["sent"]
        .as_i64()
        .map(|ms| {
            let secs = ms / 1000;
            format!("{:02}:{:02}", (secs / 3600) % 24, (secs / 60) % 60)
        })
        .unwrap_or_default();
    let mut body = if msg["deleted"] == true {
        "(deleted)".to_string()
    } else {
        // Terminal safety: a peer's text never moves the cursor or changes colours.
        msg["body"]
            .as_str()
            .unwrap_or("")
            .chars()
            .map(|c| {
                if c.is_control() && c != '\n' {
                    '\u{FFFD}'
                } else {
                    c
                }
            })
            .collect()
    };
    if let Some(link) = msg["link"]["properties"].as_object() {
        body.push_str(&format!(
            " [link: {} <{}>]",
            link.get("title").and_then(Value::as_str).unwrap_or(""),
            link.get("url").and_then(Value::as_str).unwrap_or("")
        ));
    }
    let marks = if msg["outgoing"] == true {
        let receipts = msg["receipts"].as_array().cloned().unwrap_or_default();
        if !receipts.is_empty() && receipts.iter().all(|r| r["read"] == true) {
            " ✓✓ read"
        } else if !receipts.is_empty() {
            " ✓✓"
        } else if msg["pending"].as_array().is_some_and(|p| p.is_empty()) {
            " ✓"
        } else {
            " …"
        }
    } else {
        ""
    };
    let edited = if msg["edited"] == true {
        " (edited)"
    } else {
        ""
    };
    format!("{time} {who}: {body}{edited}{marks}")
}

async fn names(client: &ApiClient) -> Vec<(String, String)> {
    client
        .call(m::CONTACTS_LIST, json!({}))
        .await
        .ok()
        .and_then(|v| v.as_array().cloned())
        .unwrap_or_default()
        .iter()
        .map(|c| {
            (
                c["peer_id"].as_str().unwrap_or("").to_string(),
                c["name"]
                    .as_str()
                    .or(c["title"].as_str())
                    .unwrap_or("?")
                    .split('@')
                    .next()
                    .unwrap_or("?")
                    .to_string(),
            )
        })
        .collect()
}

pub fn chat(paths: &NodePaths, command: ChatCommand, json_out: bool) -> anyhow::Result<()> {
    runtime()?.block_on(async {
        let client = connect(paths).await?;
        match command {
            ChatCommand::List => {
                let chats = client.call(m::CHAT_LIST, json!({})).await?;
                if json_out {
                    println!("{}", serde_json::to_string_pretty(&chats)?);
                    return Ok(());
                }
                let names = names(&client).await;
                for c in chats.as_array().into_iter().flatten() {
                    let last = if c["last"].is_null() {
                        "(no messages)".to_string()
                    } else {
                        message_line(&c["last"], &names)
                    };
                    println!(
                        "{:<40} {:<20} {:>3} unread  {}",
                        c["id"].as_str().unwrap_or("?"),
                        c["title"].as_str().unwrap_or("?"),
                        c["unread"].as_u64().unwrap_or(0),
                        last
                    );
                }
            }
            ChatCommand::Send { to, message, link } => {
                let chat = find_chat(&client, &to).await?;
                let mut params = json!({"chat": chat["id"], "body": message});
                if let Some(url) = link {
                    params["link"] = json!({"url": url});
                }
                let sent = client.call(m::CHAT_SEND, params).await?;
                if json_out {
                    println!("{}", serde_json::to_string_pretty(&sent)?);
                } else {
                    println!("sent (stored; delivered as soon as possible)");
                }
            }
            ChatCommand::History { with, limit } => {
                let chat = find_chat(&client, &with).await?;
                let history = client
                    .call(m::CHAT_HISTORY, json!({"chat": chat["id"], "limit": limit}))
                    .await?;
                if json_out {
                    println!("{}", serde_json::to_string_pretty(&history)?);
                    return Ok(());
                }
                let names = names(&client).await;
                for msg in history.as_array().into_iter().flatten() {
                    println!("{}", message_line(msg, &names));
                }
            }
            ChatCommand::Group { title, members } => {
                let mut peers = Vec::new();
                for m in &members {
                    peers.push(find_contact(&client, m).await?);
                }
                let chat = client
                    .call(
                        m::CHAT_CREATE_GROUP,
                        json!({"title": title, "members": peers}),
                    )
                    .await?;
                println!("{}", chat["id"].as_str().unwrap_or("?"));
            }
            ChatCommand::Open { with } => interactive(&client, &with).await?,
        }
        Ok(())
    })
}

async fn interactive(client: &ApiClient, with: &str) -> anyhow::Result<()> {
    let chat = find_chat(client, with).await?;
    let chat_id = chat["id"].as_str().unwrap_or_default().to_string();
    let names = names(client).await;
    client
        .call(
            m::EVENTS_SUBSCRIBE,
            json!({"topics": ["message.received", "message.updated", "chat.receipt", "chat.typing", "presence.changed"]}),
        )
        .await?;
    println!(
        "── {} ── (type to send; /read, /edit TEXT, /delete, /quit)",
        chat["title"].as_str().unwrap_or("chat")
    );
    let history = client
        .call(m::CHAT_HISTORY, json!({"chat": chat_id, "limit": 20}))
        .await?;
    for msg in history.as_array().into_iter().flatten() {
        println!("{}", message_line(msg, &names));
    }
    client.call(m::CHAT_READ, json!({"chat": chat_id})).await?;
    let mut last_own: Option<String> = None;
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    loop {
        tokio::select! {
            line = lines.next_line() => {
                let Some(line) = line? else { break };
                let line = line.trim_end().to_string();
                if line.is_empty() {
                    continue;
                }
                if line == "/quit" {
                    break;
                } else if line == "/read" {
                    client.call(m::CHAT_READ, json!({"chat": chat_id})).await?;
                } else if line == "/delete" {
                    match &last_own {
                        Some(id) => { client.call(m::CHAT_DELETE, json!({"message": id})).await?; }
                        None => println!("(nothing of yours to delete yet)"),
                    }
                } else if let Some(text) = line.strip_prefix("/edit ") {
                    match &last_own {
                        Some(id) => { client.call(m::CHAT_EDIT, json!({"message": id, "body": text})).await?; }
                        None => println!("(nothing of yours to edit yet)"),
                    }
                } else {
                    match client.call(m::CHAT_SEND, json!({"chat": chat_id, "body": line})).await {
                        Ok(sent) => last_own = sent["id"].as_str().map(str::to_string),
                        Err(e) => println!("(not sent: {e})"),
                    }
                }
            }
            event = client.next_event() => {
                let Some(event) = event else { bail!("the daemon closed the connection") };
                let data = &event.data;
                match event.topic.as_str() {
                    "message.received" if data["chat"] == chat_id.as_str() && data["outgoing"] != true => {
                        println!("{}", message_line(data, &names));
                        client.call(m::CHAT_READ, json!({"chat": chat_id})).await?;
                    }
                    "message.updated" if data["chat"] == chat_id.as_str() => {
                        println!("{}", message_line(data, &names));
                    }
                    "chat.receipt" if data["chat"] == chat_id.as_str() && data["kind"] == "read" => {
                        println!("   ✓✓ read");
                    }
                    "chat.typing" if data["chat"] == chat_id.as_str() => {
                        let who = data["peer_id"].as_str().unwrap_or("?");
                        let name = names.iter().find(|(id, _)| id == who).map(|(_, n)| n.as_str()).unwrap_or("someone");
                        println!("   {name} is typing…");
                    }
                    "presence.changed" => {
                        let who = data["peer_id"].as_str().unwrap_or("?");
                        if let Some((_, name)) = names.iter().find(|(id, _)| id == who) {
                            println!("   {name} is {}", data["state"].as_str().unwrap_or("?"));
                        }
                    }
                    _ => {}
                }
            }
        }
    }
    Ok(())
}
