//! Parameters and results of the local API's methods, and the event topics.
//!
//! Method names are `area.verb`. `docs/api.md` is the reference; keep the two in step.

use serde::{Deserialize, Serialize};

use crate::PeerId;

pub const HELLO: &str = "hello";
pub const PING: &str = "ping";
pub const STATUS_GET: &str = "status.get";
pub const IDENTITY_GET: &str = "identity.get";
pub const IDENTITY_UNLOCK: &str = "identity.unlock";
pub const IDENTITY_SEAL: &str = "identity.seal";
pub const IDENTITY_EXPORT: &str = "identity.export";
pub const IDENTITY_RESTORE: &str = "identity.restore";
pub const EVENTS_SUBSCRIBE: &str = "events.subscribe";
pub const EVENTS_UNSUBSCRIBE: &str = "events.unsubscribe";
pub const LOG_GET: &str = "log.get";
pub const LOG_SET: &str = "log.set";
pub const DAEMON_SHUTDOWN: &str = "daemon.shutdown";
pub const NET_STATUS: &str = "net.status";
pub const NET_CONNECT: &str = "net.connect";
pub const NET_SPEEDTEST: &str = "net.speedtest";
pub const HUB_REGISTER: &str = "hub.register";
pub const HUB_RESOLVE: &str = "hub.resolve";
pub const HUB_WATCH: &str = "hub.watch";
pub const HUB_UNWATCH: &str = "hub.unwatch";
pub const HUB_RELAY: &str = "hub.relay";
pub const HUB_SET_HOME: &str = "hub.set_home";
pub const CONTACTS_LIST: &str = "contacts.list";
pub const CONTACTS_ADD: &str = "contacts.add";
pub const CONTACTS_ACCEPT: &str = "contacts.accept";
pub const CONTACTS_DECLINE: &str = "contacts.decline";
pub const CONTACTS_REMOVE: &str = "contacts.remove";
pub const CONTACTS_BLOCK: &str = "contacts.block";
pub const CONTACTS_UNBLOCK: &str = "contacts.unblock";
pub const CONTACTS_INVITE: &str = "contacts.invite";
pub const PRESENCE_SET: &str = "presence.set";
pub const PRESENCE_GET: &str = "presence.get";
pub const CHAT_LIST: &str = "chat.list";
pub const CHAT_OPEN: &str = "chat.open";
pub const CHAT_CREATE_GROUP: &str = "chat.create_group";
pub const CHAT_SEND: &str = "chat.send";
pub const CHAT_HISTORY: &str = "chat.history";
pub const CHAT_EDIT: &str = "chat.edit";
pub const CHAT_DELETE: &str = "chat.delete";
pub const CHAT_READ: &str = "chat.read";
pub const CHAT_TYPING: &str = "chat.typing";

/// Every method this build serves, for `hello`'s capabilities.
pub const METHODS: &[&str] = &[
    HELLO,
    PING,
    STATUS_GET,
    IDENTITY_GET,
    IDENTITY_UNLOCK,
    IDENTITY_SEAL,
    IDENTITY_EXPORT,
    IDENTITY_RESTORE,
    EVENTS_SUBSCRIBE,
    EVENTS_UNSUBSCRIBE,
    LOG_GET,
    LOG_SET,
    DAEMON_SHUTDOWN,
    NET_STATUS,
    NET_CONNECT,
    NET_SPEEDTEST,
    HUB_REGISTER,
    HUB_RESOLVE,
    HUB_WATCH,
    HUB_UNWATCH,
    HUB_RELAY,
    HUB_SET_HOME,
    CONTACTS_LIST,
    CONTACTS_ADD,
    CONTACTS_ACCEPT,
    CONTACTS_DECLINE,
    CONTACTS_REMOVE,
    CONTACTS_BLOCK,
    CONTACTS_UNBLOCK,
    CONTACTS_INVITE,
    PRESENCE_SET,
    PRESENCE_GET,
    CHAT_LIST,
    CHAT_OPEN,
    CHAT_CREATE_GROUP,
    CHAT_SEND,
    CHAT_HISTORY,
    CHAT_EDIT,
    CHAT_DELETE,
    CHAT_READ,
    CHAT_TYPING,
];

/// Event topics a client may subscribe to.
pub mod topics {
    /// A local API client connected or disconnected (e.g. a second browser attached).
    pub const CLIENTS_CHANGED: &str = "clients.changed";
    /// The identity was unlocked.
    pub const IDENTITY_CHANGED: &str = "identity.changed";
    /// The log levels were changed.
    pub const LOG_CHANGED: &str = "log.changed";
    /// The network changed: `data.status` (online/offline, an address added or removed),
    /// or a peer `connected` / `disconnected`.
    pub const NET_CHANGED: &str = "net.changed";
    /// The home hub's line went up or down: `state`, `observed` or `reason`.
    pub const HUB_CHANGED: &str = "hub.changed";
    /// A contact came online, went offline or changed status: `peer_id`, `online`,
    /// `state` (online/away/busy/offline), `text`.
    pub const PRESENCE_CHANGED: &str = "presence.changed";
    /// A peer asks to become a contact: `peer_id`, `name`, `message`.
    pub const CONTACT_REQUEST: &str = "contact.request";
    /// A contact's state changed (accepted, declined, removed, blocked): the contact.
    pub const CONTACT_CHANGED: &str = "contact.changed";
    /// A message arrived (or was sent from another client): the message.
    pub const MESSAGE_RECEIVED: &str = "message.received";
    /// A message was edited or deleted: the message.
    pub const MESSAGE_UPDATED: &str = "message.updated";
    /// A recipient received or read our message: `message`, `chat`, `peer_id`, `kind`.
    pub const CHAT_RECEIPT: &str = "chat.receipt";
    /// Someone is typing: `chat`, `peer_id`.
    pub const CHAT_TYPING: &str = "chat.typing";
    /// A chat was created or changed (a group we were added to): the chat.
    pub const CHAT_CHANGED: &str = "chat.changed";
    /// The hub refused to show a peer's presence: `peer_id`.
    pub const PRESENCE_REFUSED: &str = "presence.refused";
    /// A peer asked to reach us through the hub's relay: `from`, `accepted`.
    pub const RELAY_OFFERED: &str = "relay.offered";
    /// Sent to a client whose event queue overflowed: `data.dropped` events were lost.
    pub const EVENTS_DROPPED: &str = "events.dropped";

    /// An indexing job advanced or finished (`media.add`).
    pub use crate::api::media::topics::MEDIA_PROGRESS;
    /// A schema was registered or evolved (`schemas.register`).
    pub use crate::resource::api::topics::SCHEMA_CHANGED;

    /// Topics for `events.subscribe`. Resource and list changes come through
    /// `resources.subscribe`, filtered per client.
    pub const ALL: &[&str] = &[
        CLIENTS_CHANGED,
        IDENTITY_CHANGED,
        LOG_CHANGED,
        SCHEMA_CHANGED,
        NET_CHANGED,
        HUB_CHANGED,
        PRESENCE_CHANGED,
        PRESENCE_REFUSED,
        RELAY_OFFERED,
        CONTACT_REQUEST,
        CONTACT_CHANGED,
        MESSAGE_RECEIVED,
        MESSAGE_UPDATED,
        CHAT_RECEIPT,
        CHAT_TYPING,
        CHAT_CHANGED,
        crate::api::transfers::topics::TRANSFER_ADDED,
        crate::api::transfers::topics::TRANSFER_PROGRESS,
        crate::api::transfers::topics::TRANSFER_CHANGED,
        crate::api::transfers::topics::TRANSFER_REMOVED,
        MEDIA_PROGRESS,
        crate::api::shares::topics::SHARE_RECEIVED,
        crate::api::shares::topics::SHARE_CHANGED,
        crate::api::shares::topics::SYNC_PROGRESS,
        crate::api::apps::topics::APPS_CHANGED,
    ];
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct HelloParams {
    /// Who is calling, e.g. "allpeers-cli", "extension/chromium".
    pub client: String,
    pub api_version: u32,
    /// Set by the extension for an **app session** (a web page's or another extension's):
    /// the caller's origin as the browser reports it (`https://example.com`,
    /// `chrome-extension://<id>`). Such a session is served only the app-facing methods,
    /// each behind a scope granted to that origin. Absent: a trusted session.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "ts", ts(optional))]
    pub origin: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct HelloResult {
    pub server: String,
    pub server_version: String,
    pub api_version: u32,
    /// Methods and event topics this daemon serves.
    pub methods: Vec<String>,
    pub topics: Vec<String>,
    /// This node's PeerId; absent in an app session's answer (an app learns who the user is
    /// through `identity.get`, with the `identity` scope, and nothing before a grant).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "ts", ts(optional))]
    pub peer_id: Option<PeerId>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct IdentityInfo {
    pub peer_id: PeerId,
    /// True while the private key is sealed and not yet unlocked: the node cannot sign or
    /// connect until `identity.unlock`.
    pub locked: bool,
    pub sealed: bool,
    /// SHA-256 of the DER certificate, hex: what a peer's TLS stack will see.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "ts", ts(optional))]
    pub certificate_sha256: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct UnlockParams {
    pub passphrase: String,
}

/// The bounds of a passphrase that seals an identity or a backup, in characters.
pub const PASSPHRASE_CHARS: std::ops::RangeInclusive<usize> = 8..=1024;

/// `identity.seal`'s params: the passphrase the identity file is sealed with from now on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(deny_unknown_fields)]
pub struct SealParams {
    pub passphrase: String,
}

/// `identity.export`'s params: the backup's passphrase, needed when the identity itself is not sealed (a sealed
/// identity is backed up as it is, under its own passphrase).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(deny_unknown_fields)]
pub struct ExportParams {
    #[serde(default)]
    #[cfg_attr(feature = "ts", ts(optional))]
    pub passphrase: Option<String>,
}

/// `identity.export`'s result: the backup, a sealed key file (JSON text) as `allpeers identity import` reads it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct IdentityBackup {
    pub peer_id: PeerId,
    pub file: String,
}

/// A backup file is a few hundred bytes; `identity.restore` refuses anything over this many.
pub const MAX_BACKUP_BYTES: usize = 64 * 1024;

/// `identity.restore`'s params: a backup (the key file's JSON text, as `identity.export` or `allpeers identity
/// export` wrote it) and its passphrase (needed when it is sealed). `replace` confirms that a *different* identity
/// this node has now is put aside (kept as a file beside it); without it that is refused with `IdentityExists`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(deny_unknown_fields)]
pub struct RestoreParams {
    pub file: String,
    #[serde(default)]
    #[cfg_attr(feature = "ts", ts(optional))]
    pub passphrase: Option<String>,
    #[serde(default)]
    #[cfg_attr(feature = "ts", ts(optional))]
    pub replace: Option<bool>,
}

/// `identity.restore`'s result. The restored identity is used from the daemon's next start (`restart_needed`);
/// `replaced` names the file the previous identity was kept in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct RestoreResult {
    pub peer_id: PeerId,
    pub sealed: bool,
    pub restart_needed: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "ts", ts(optional))]
    pub replaced: Option<String>,
}

/// `hub.set_home`'s params: exactly one of `hub` (`<hub PeerId>@quic://ip:port[,tcp://ip:port…]`) and `invite`
/// (an `apinvite1…` code: its inviter's hub).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
#[serde(deny_unknown_fields)]
pub struct SetHomeParams {
    #[serde(default)]
    #[cfg_attr(feature = "ts", ts(optional))]
    pub hub: Option<String>,
    #[serde(default)]
    #[cfg_attr(feature = "ts", ts(optional))]
    pub invite: Option<String>,
}

/// The home hub written to `config.json`: used from the daemon's next start (`restart_needed` until then).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct HomeHub {
    pub peer_id: PeerId,
    pub addresses: Vec<String>,
    pub restart_needed: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct StatusResult {
    pub version: String,
    pub pid: u32,
    pub uptime_ms: u64,
    pub data_dir: String,
    pub socket: String,
    pub clients: usize,
    pub identity: IdentityInfo,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct SubscribeParams {
    pub topics: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct SubscribeResult {
    /// The client's subscriptions after the call.
    pub topics: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct ClientsChanged {
    pub clients: usize,
    /// The client that connected or left.
    pub client: String,
    pub connected: bool,
}

/// `log.set`: the default level and per-area overrides, in the seed's level names.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct LogSetParams {
    /// e.g. `"flesh,allpeers_net=bone"`.
    pub filter: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct LogInfo {
    pub filter: String,
    pub dir: String,
}
