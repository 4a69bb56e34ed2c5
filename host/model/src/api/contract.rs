//! The contract of the local API as types: for every method its name, params and result
//! ([`Method`]), for every event topic its payload ([`Topic`]). The daemon parses
//! `M::Params` and answers `M::Result`; the extension's TypeScript is generated from the same
//! table (`api::typescript`, feature `ts`), so a method cannot change shape on one side only.
//!
//! As in `lsp-types` (`lsp_types::request::Request`), each method is a type with no values
//! (`enum ChatSend {}`) carrying its name and its types.

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::apps::{self as ap, *};
use super::files::{
    self, GetFileParams, ImportIdParams, ImportStartParams, ImportStatus, ImportWriteParams,
};
use super::mail::{self, *};
use super::media::{self, MediaProgress};
use super::methods::{self as m, topics as t};
use super::net::*;
use super::shares::{self as sh, *};
use super::social::*;
use super::transfers::{self as tr, *};
use super::{ErrorCode, Event, RpcError};
use crate::resource::Resource;
use crate::resource::api::{self as r, *};

/// What the TypeScript generator needs of a type (nothing without the `ts` feature).
#[cfg(feature = "ts")]
pub trait ApiType: ts_rs::TS + 'static {}
#[cfg(feature = "ts")]
impl<T: ts_rs::TS + 'static> ApiType for T {}
/// What the TypeScript generator needs of a type (nothing without the `ts` feature).
#[cfg(not(feature = "ts"))]
pub trait ApiType {}
#[cfg(not(feature = "ts"))]
impl<T> ApiType for T {}

/// One method of the local API.
pub trait Method {
    /// The method's name on the wire (`area.verb`).
    const NAME: &'static str;
    /// One line for the docs and the generated TypeScript.
    const DOC: &'static str;
    type Params: Serialize + DeserializeOwned + ApiType;
    type Result: Serialize + DeserializeOwned + ApiType;
}

/// One event topic: the `data` of `{"topic": NAME, "data": …}`.
pub trait Topic {
    const NAME: &'static str;
    const DOC: &'static str;
    type Data: Serialize + DeserializeOwned + ApiType;
}

/// Called once per method by [`visit_methods`].
pub trait MethodVisitor {
    fn visit<M: Method + 'static>(&mut self);
}

/// Called once per topic by [`visit_topics`].
pub trait TopicVisitor {
    fn visit<T: Topic + 'static>(&mut self);
}

/// A method's params from a request, or `InvalidParams` naming what is wrong. No params
/// (`null`) reads as `{}`.
pub fn parse_params<M: Method>(params: Json) -> Result<M::Params, RpcError> {
    let params = if params.is_null() {
        Json::Object(Default::default())
    } else {
        params
    };
    serde_json::from_value(params).map_err(|e| {
        RpcError::new(
            ErrorCode::InvalidParams,
            format!("invalid params for {}: {e}", M::NAME),
        )
    })
}

/// An event of topic `T`, its data typed.
pub fn event<T: Topic>(data: &T::Data) -> Event {
    Event {
        topic: T::NAME.into(),
        data: serde_json::to_value(data).expect("API event data serialises"),
    }
}

/// Params of a method that takes none: any object (or none) is accepted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct NoParams {}

pub use super::Json;

macro_rules! methods {
    ($(
        $(#[doc = $doc:literal])+
        $marker:ident = $name:path, $params:ty => $result:ty;
    )*) => {
        $(
            $(#[doc = $doc])+
            pub enum $marker {}
            impl Method for $marker {
                const NAME: &'static str = $name;
                const DOC: &'static str = concat!($($doc),+);
                type Params = $params;
                type Result = $result;
            }
        )*
        /// Visits every method, in the order of the table.
        pub fn visit_methods(visitor: &mut impl MethodVisitor) {
            $(visitor.visit::<$marker>();)*
        }
        /// Every method's name, in the order of the table.
        pub const METHOD_NAMES: &[&str] = &[$($name),*];
    };
}

macro_rules! topics {
    ($(
        $(#[doc = $doc:literal])+
        $marker:ident = $name:path, $data:ty;
    )*) => {
        $(
            $(#[doc = $doc])+
            pub enum $marker {}
            impl Topic for $marker {
                const NAME: &'static str = $name;
                const DOC: &'static str = concat!($($doc),+);
                type Data = $data;
            }
        )*
        /// Visits every event topic.
        pub fn visit_topics(visitor: &mut impl TopicVisitor) {
            $(visitor.visit::<$marker>();)*
        }
        /// Every topic's name, in the order of the table.
        pub const TOPIC_NAMES: &[&str] = &[$($name),*];
    };
}

methods! {
    /// The first call of every session: names the client and the API version it speaks.
    Hello = m::HELLO, m::HelloParams => m::HelloResult;
    /// Answers its params unchanged (latency checks, tests).
    Ping = m::PING, Json => Json;
    /// The daemon's version, process, paths, clients and identity.
    StatusGet = m::STATUS_GET, NoParams => m::StatusResult;
    /// The node's identity.
    IdentityGet = m::IDENTITY_GET, NoParams => m::IdentityInfo;
    /// Opens a sealed identity with its passphrase (`WrongPassphrase` otherwise).
    IdentityUnlock = m::IDENTITY_UNLOCK, m::UnlockParams => m::IdentityInfo;
    /// Seals the identity file with a passphrase (it was plain); the running daemon stays unlocked.
    IdentitySeal = m::IDENTITY_SEAL, m::SealParams => m::IdentityInfo;
    /// A backup of the identity: its key file, sealed (with the given passphrase if it was plain).
    IdentityExport = m::IDENTITY_EXPORT, m::ExportParams => m::IdentityBackup;
    /// Restores a backup as the identity from the next start (`BadBackup`, `WrongPassphrase`; a different
    /// identity is replaced only with `replace: true`, else `IdentityExists`).
    IdentityRestore = m::IDENTITY_RESTORE, m::RestoreParams => m::RestoreResult;
    /// Adds topics to this client's subscriptions (an unknown topic is `InvalidParams`).
    EventsSubscribe = m::EVENTS_SUBSCRIBE, m::SubscribeParams => m::SubscribeResult;
    /// Removes topics from this client's subscriptions.
    EventsUnsubscribe = m::EVENTS_UNSUBSCRIBE, m::SubscribeParams => m::SubscribeResult;
    /// The log filter and the log files' directory.
    LogGet = m::LOG_GET, NoParams => m::LogInfo;
    /// Sets the log filter (`skin`, `marrow`, `flesh`, `bone`, per area `area=level`).
    LogSet = m::LOG_SET, m::LogSetParams => m::LogInfo;
    /// Stops the daemon: every session is closed, then it exits.
    DaemonShutdown = m::DAEMON_SHUTDOWN, NoParams => ShutdownResult;
    /// The endpoint, its connections, the hub line, connectivity and discovery.
    NetStatus = m::NET_STATUS, NoParams => super::net::NetStatus;
    /// Reaches a peer through the connector (direct, callback, hole punched or relayed).
    NetConnect = m::NET_CONNECT, PeerParams => ConnectResult;
    /// Measures throughput to and from a peer over the speed-test service.
    NetSpeedtest = m::NET_SPEEDTEST, SpeedtestParams => SpeedtestResult;
    /// Registers a name at the home hub.
    HubRegister = m::HUB_REGISTER, NameParams => RegisterResult;
    /// Looks up a name or a PeerId at the home hub (a verified answer).
    HubResolve = m::HUB_RESOLVE, ResolveParams => ResolveResult;
    /// Asks the hub for these peers' presence (`presence.changed` / `presence.refused`).
    HubWatch = m::HUB_WATCH, PeersParams => PeersParams;
    /// Stops watching these peers' presence.
    HubUnwatch = m::HUB_UNWATCH, PeersParams => PeersParams;
    /// A connection to the peer through the hub's relay (TLS end to end).
    HubRelay = m::HUB_RELAY, PeerParams => RelayResult;
    /// Makes a hub the home hub (a hub address, or an invite code's hub), from the daemon's next start.
    HubSetHome = m::HUB_SET_HOME, m::SetHomeParams => m::HomeHub;
    /// Our contacts (every state but `none`).
    ContactsList = m::CONTACTS_LIST, NoParams => Vec<Contact>;
    /// Asks a peer (by `name@hub`, PeerId or invite code) to become a contact.
    ContactsAdd = m::CONTACTS_ADD, AddContactParams => AddedContact;
    /// Accepts a peer's contact request.
    ContactsAccept = m::CONTACTS_ACCEPT, PeerParams => Contact;
    /// Declines a contact request (the requester is not told).
    ContactsDecline = m::CONTACTS_DECLINE, PeerParams => Contact;
    /// Removes a contact; the other side is told and stops seeing us.
    ContactsRemove = m::CONTACTS_REMOVE, PeerParams => Contact;
    /// Blocks a peer: its letters are dropped unread, it cannot see our presence.
    ContactsBlock = m::CONTACTS_BLOCK, PeerParams => Contact;
    /// Unblocks a peer.
    ContactsUnblock = m::CONTACTS_UNBLOCK, PeerParams => Contact;
    /// An invite code: a contact request carrying it is accepted at once.
    ContactsInvite = m::CONTACTS_INVITE, NoParams => Invite;
    /// Sets our presence; contacts hear it through the hub and, when connected, directly.
    PresenceSet = m::PRESENCE_SET, PresenceParams => OwnPresence;
    /// Our presence.
    PresenceGet = m::PRESENCE_GET, NoParams => OwnPresence;
    /// Every chat, most recent first.
    ChatList = m::CHAT_LIST, NoParams => Vec<Chat>;
    /// The 1:1 chat with an accepted contact (the same id on both sides).
    ChatOpen = m::CHAT_OPEN, PeerParams => Chat;
    /// Creates a group chat with contacts.
    ChatCreateGroup = m::CHAT_CREATE_GROUP, CreateGroupParams => Chat;
    /// Sends a message: stored before the call returns, delivered in the background.
    ChatSend = m::CHAT_SEND, SendParams => Message;
    /// A page of a chat's messages, oldest first.
    ChatHistory = m::CHAT_HISTORY, HistoryParams => Vec<Message>;
    /// Edits one of our messages.
    ChatEdit = m::CHAT_EDIT, EditParams => Message;
    /// Deletes one of our messages (its body is emptied).
    ChatDelete = m::CHAT_DELETE, MessageParams => Message;
    /// Marks a chat read; the senders get read receipts.
    ChatRead = m::CHAT_READ, ChatParams => ReadResult;
    /// Tells connected members we are typing (never mailed).
    ChatTyping = m::CHAT_TYPING, ChatParams => ChatParams;
    /// Our e-mail registration at the home hub (the address masked).
    MailStatusGet = mail::MAIL_STATUS, NoParams => MailStatus;
    /// Registers an e-mail address at the home hub; it mails a confirmation code there.
    MailSetAddress = mail::MAIL_SET_ADDRESS, SetAddressParams => SetAddressResult;
    /// Confirms the address with the mailed code.
    MailConfirm = mail::MAIL_CONFIRM, ConfirmParams => MailStatus;
    /// Reads (no params) or changes which kinds of mail the address accepts.
    MailPreferencesSet = mail::MAIL_PREFERENCES, PreferencesParams => MailPreferences;
    /// Invites an address to AllPeers by mail, with a fresh invite code of ours.
    MailInvite = mail::MAIL_INVITE, MailInviteParams => MailInviteResult;
    /// Mails a contact a notice (a share, waiting messages) if its address accepts it.
    MailNotify = mail::MAIL_NOTIFY, NotifyParams => NotifyResult;
    /// Stops all mail to our address and forgets it at the hub.
    MailUnsubscribe = mail::MAIL_UNSUBSCRIBE, NoParams => UnsubscribeResult;
    /// Creates a resource.
    ResourcesCreate = r::RESOURCES_CREATE, CreateParams => Resource;
    /// A resource by id, or null.
    ResourcesGet = r::RESOURCES_GET, IdParams => Option<Resource>;
    /// Patches a resource (`null` removes a property).
    ResourcesUpdate = r::RESOURCES_UPDATE, UpdateParams => Resource;
    /// Deletes a resource.
    ResourcesDelete = r::RESOURCES_DELETE, IdParams => ();
    /// Resources (or their ids) matching a query.
    ResourcesQuery = r::RESOURCES_QUERY, QueryParams => QueryResult;
    /// How many resources match a query.
    ResourcesCount = r::RESOURCES_COUNT, CountParams => u64;
    /// Subscribes this client to resource changes (`resource.changed`, `list.changed`).
    ResourcesSubscribe = r::RESOURCES_SUBSCRIBE, ResourceSubscribeParams => SubscriptionParams;
    /// Drops a subscription: false if it is not this client's.
    ResourcesUnsubscribe = r::RESOURCES_UNSUBSCRIBE, SubscriptionParams => bool;
    /// A list's items (and its query, when query-backed).
    ListsItems = r::LISTS_ITEMS, IdParams => ListItems;
    /// Inserts an item into a list; answers its position.
    ListsInsert = r::LISTS_INSERT, ListItemParams => u64;
    /// Moves an item in a list; answers its position.
    ListsMove = r::LISTS_MOVE, ListItemParams => u64;
    /// Removes an item from a list.
    ListsRemove = r::LISTS_REMOVE, ListItemParams => ();
    /// Shares a resource (a List with its items) with peers, each at a level.
    SharesCreate = sh::SHARES_CREATE, CreateShareParams => Share;
    /// Every share: ours, those we accepted, those offered to us.
    SharesList = sh::SHARES_LIST, NoParams => Vec<Share>;
    /// One share with its members.
    SharesGet = sh::SHARES_GET, ShareParams => Share;
    /// Accepts a share offered to us: it syncs in from its members.
    SharesAccept = sh::SHARES_ACCEPT, ShareParams => Share;
    /// Adds a member (admins only).
    SharesAddMember = sh::SHARES_ADD_MEMBER, AddMemberParams => Share;
    /// Revokes a member (admins only): it gets nothing new from any member that saw it.
    SharesRevoke = sh::SHARES_REVOKE, RevokeParams => Share;
    /// Stops syncing a share and forgets its ops (the resources stay as local copies).
    SharesLeave = sh::SHARES_LEAVE, ShareParams => ();
    /// Per share: members, who is online, last sync, ops pending, ops and bytes held.
    SyncStatusGet = sh::SYNC_STATUS, NoParams => SyncStatus;
    /// Registers (or evolves) a RELAX NG schema file.
    SchemasRegister = r::SCHEMAS_REGISTER, RegisterSchemaParams => RegisterSchemaResult;
    /// The names of every registered type.
    SchemasList = r::SCHEMAS_LIST, NoParams => Vec<String>;
    /// A type's description: lineage, properties with `declaredBy`, children, metadata.
    SchemasDescribe = r::SCHEMAS_DESCRIBE, TypeParams => TypeDescription;
    /// Adds a download from a .torrent (a path or its bytes in base64).
    TransfersAdd = tr::TRANSFERS_ADD, AddTransferParams => Transfer;
    /// Every transfer, downloads and seeds.
    TransfersList = tr::TRANSFERS_LIST, NoParams => Vec<Transfer>;
    /// One transfer (`TransferNotFound` otherwise).
    TransfersGet = tr::TRANSFERS_GET, TransferIdParams => Transfer;
    /// Pauses a transfer (kept paused across restarts).
    TransfersPause = tr::TRANSFERS_PAUSE, TransferIdParams => Transfer;
    /// Resumes a paused or failed transfer from what is on disk.
    TransfersResume = tr::TRANSFERS_RESUME, TransferIdParams => Transfer;
    /// Stops and forgets a transfer, optionally deleting its downloaded files.
    TransfersCancel = tr::TRANSFERS_CANCEL, CancelParams => TransferIdParams;
    /// One transfer's upload and download limits.
    TransfersSetLimits = tr::TRANSFERS_SET_LIMITS, SetLimitsParams => Transfer;
    /// Changes a transfer's priority (which waiting transfer starts first).
    TransfersSetPriority = tr::TRANSFERS_SET_PRIORITY, SetPriorityParams => Transfer;
    /// Where downloads go when none names a directory.
    TransfersDownloadDirGet = tr::TRANSFERS_DOWNLOAD_DIR_GET, NoParams => DownloadDir;
    /// Changes where downloads go (created if missing; kept in config.json).
    TransfersDownloadDirSet = tr::TRANSFERS_DOWNLOAD_DIR_SET, DownloadDir => DownloadDir;
    /// Who takes data from us, fastest first (the upload monitor).
    TransfersUploads = tr::TRANSFERS_UPLOADS, NoParams => Vec<Upload>;
    /// Shares a file from disk: makes its torrent and seeds it in place.
    TransfersSeed = tr::TRANSFERS_SEED, SeedParams => SeedResult;
    /// The global upload and download limits of every transfer together.
    NetLimitsGet = tr::NET_LIMITS_GET, NoParams => Limits;
    /// Sets the global limits (`null`: no limit); answers them.
    NetLimitsSet = tr::NET_LIMITS_SET, Limits => Limits;
    /// Fetches a shared File's content from the members that hold it, verified (a transfer).
    FilesGet = files::FILES_GET, GetFileParams => Transfer;
    /// Starts bringing a file's bytes into the node's imports folder (a file dropped on the sidebar).
    FilesImportStart = files::FILES_IMPORT_START, ImportStartParams => ImportStatus;
    /// The next bytes of an import, in order; the last ones give the file its final name and path.
    FilesImportWrite = files::FILES_IMPORT_WRITE, ImportWriteParams => ImportStatus;
    /// Abandons an import (its partial file is deleted).
    FilesImportCancel = files::FILES_IMPORT_CANCEL, ImportIdParams => Option<ImportStatus>;
    /// Which shared files arrive by themselves: the size `small` means and each share's policy.
    FilesAutoDownloadGet = files::FILES_AUTO_DOWNLOAD_GET, NoParams => files::AutoDownload;
    /// Sets a share's policy and/or the size `small` means (kept across restarts); answers the whole setting.
    FilesAutoDownloadSet = files::FILES_AUTO_DOWNLOAD_SET, files::SetAutoDownloadParams => files::AutoDownload;
    /// Catalogues files and folders in the background (a job; `media.progress` reports on it).
    MediaAdd = media::MEDIA_ADD, media::AddMediaParams => media::AddResult;
    /// A catalogued file's resource (File, Audio, Image, Video or Text), by path or id.
    MediaInfo = media::MEDIA_INFO, media::InfoParams => Resource;
    /// The paths the catalog keeps up to date.
    MediaWatched = media::MEDIA_WATCHED, NoParams => Vec<media::WatchedPath>;
    /// Stops keeping a path up to date (its files stay catalogued).
    MediaUnwatch = media::MEDIA_UNWATCH, media::UnwatchParams => media::UnwatchResult;
    /// The apps granted something, with their scopes.
    AppsList = ap::APPS_LIST, NoParams => Vec<AppEntry>;
    /// Grants an origin scopes (added to what it has).
    AppsGrant = ap::APPS_GRANT, GrantParams => AppEntry;
    /// Revokes scopes of an origin (none named: all, and the origin is forgotten; its data stays).
    AppsRevoke = ap::APPS_REVOKE, RevokeAppParams => Option<AppEntry>;
}

topics! {
    /// A local API client connected or disconnected.
    ClientsChangedTopic = t::CLIENTS_CHANGED, m::ClientsChanged;
    /// The identity was unlocked.
    IdentityChanged = t::IDENTITY_CHANGED, m::IdentityInfo;
    /// The log filter changed.
    LogChanged = t::LOG_CHANGED, m::LogInfo;
    /// Schemas were registered or evolved.
    SchemaChanged = t::SCHEMA_CHANGED, RegisterSchemaResult;
    /// The network changed: status, a connection, connectivity, discovery.
    NetChanged = t::NET_CHANGED, NetChange;
    /// The home hub's line went up or down.
    HubChanged = t::HUB_CHANGED, HubChange;
    /// A contact's presence changed.
    PresenceChanged = t::PRESENCE_CHANGED, PresenceChange;
    /// The hub will not show this peer's presence (it does not watch us).
    PresenceRefused = t::PRESENCE_REFUSED, PeerIdData;
    /// A peer asked to reach us through the hub's relay.
    RelayOffered = t::RELAY_OFFERED, RelayOffer;
    /// A peer asks to become a contact.
    ContactRequest = t::CONTACT_REQUEST, ContactRequestData;
    /// A contact's state or name changed.
    ContactChanged = t::CONTACT_CHANGED, Contact;
    /// A message arrived, or one client sent one (others see it too).
    MessageReceived = t::MESSAGE_RECEIVED, Message;
    /// A message was edited or deleted.
    MessageUpdated = t::MESSAGE_UPDATED, Message;
    /// A recipient got or read our message, or it was queued in their mailbox.
    ChatReceipt = t::CHAT_RECEIPT, ReceiptData;
    /// Someone is typing.
    ChatTypingTopic = t::CHAT_TYPING, TypingData;
    /// A chat was created or changed (e.g. a group we were added to).
    ChatChanged = t::CHAT_CHANGED, Chat;
    /// This client lost events (it did not read fast enough); sent unsubscribed.
    EventsDropped = t::EVENTS_DROPPED, DroppedData;
    /// A resource was created, updated or deleted (`resources.subscribe` only).
    ResourceChanged = r::topics::RESOURCE_CHANGED, ResourceChange;
    /// A list gained, lost or moved an item (`resources.subscribe` only).
    ListChanged = r::topics::LIST_CHANGED, ResourceChange;
    /// A transfer was added.
    TransferAdded = tr::topics::TRANSFER_ADDED, Transfer;
    /// A running transfer's numbers (at most one per 250 ms per transfer).
    TransferProgressTopic = tr::topics::TRANSFER_PROGRESS, ProgressEvent;
    /// A transfer's state changed.
    TransferChanged = tr::topics::TRANSFER_CHANGED, ChangedEvent;
    /// A transfer was cancelled.
    TransferRemoved = tr::topics::TRANSFER_REMOVED, TransferIdParams;
    /// An indexing job advanced (a few times a second at most) or finished.
    MediaProgressTopic = media::topics::MEDIA_PROGRESS, MediaProgress;
    /// A peer shared a resource with us: accept it or ignore it.
    ShareReceivedTopic = sh::topics::SHARE_RECEIVED, ShareReceived;
    /// A share's members or state changed.
    ShareChanged = sh::topics::SHARE_CHANGED, Share;
    /// A reconciliation with a peer completed.
    SyncProgressTopic = sh::topics::SYNC_PROGRESS, SyncProgress;
    /// An app's grant changed: its scopes now (empty once revoked).
    AppsChanged = ap::topics::APPS_CHANGED, AppPermissions;
}

/// A method served to an app session, and the scope its origin needs for it.
pub trait AppMethod: Method {
    /// `None`: any app session may call it.
    const SCOPE: Option<Scope>;
}

/// An event topic an app session may receive, and the scope its origin needs for it.
pub trait AppTopic: Topic {
    const SCOPE: Scope;
}

/// Called once per app-facing method by [`visit_app_methods`].
pub trait AppMethodVisitor {
    fn visit<M: AppMethod + 'static>(&mut self);
}

/// Called once per app topic by [`visit_app_topics`].
pub trait AppTopicVisitor {
    fn visit<T: AppTopic + 'static>(&mut self);
}

macro_rules! app_methods {
    ($(
        $(#[doc = $doc:literal])+
        $marker:ident = $name:path, $scope:expr, $params:ty => $result:ty;
    )*) => {
        $(
            $(#[doc = $doc])+
            pub enum $marker {}
            impl Method for $marker {
                const NAME: &'static str = $name;
                const DOC: &'static str = concat!($($doc),+);
                type Params = $params;
                type Result = $result;
            }
            impl AppMethod for $marker {
                const SCOPE: Option<Scope> = $scope;
            }
        )*
        /// Visits every app-facing method, in the order of the table.
        pub fn visit_app_methods(visitor: &mut impl AppMethodVisitor) {
            $(visitor.visit::<$marker>();)*
        }
        /// Every app-facing method's name, in the order of the table.
        pub const APP_METHOD_NAMES: &[&str] = &[$($name),*];

        /// An app-facing method's scope: `None` if an app session is not served `method`,
        /// `Some(None)` if it needs no scope.
        pub fn app_method_scope(method: &str) -> Option<Option<Scope>> {
            match method {
                $($name => Some($scope),)*
                _ => None,
            }
        }
    };
}

macro_rules! app_topics {
    ($(
        $(#[doc = $doc:literal])+
        $marker:ident = $name:path, $scope:expr, $data:ty;
    )*) => {
        $(
            $(#[doc = $doc])+
            pub enum $marker {}
            impl Topic for $marker {
                const NAME: &'static str = $name;
                const DOC: &'static str = concat!($($doc),+);
                type Data = $data;
            }
            impl AppTopic for $marker {
                const SCOPE: Scope = $scope;
            }
        )*
        /// Visits every topic an app session may receive.
        pub fn visit_app_topics(visitor: &mut impl AppTopicVisitor) {
            $(visitor.visit::<$marker>();)*
        }
        /// Every app topic's name, in the order of the table.
        pub const APP_TOPIC_NAMES: &[&str] = &[$($name),*];

        /// The scope an app needs to receive `topic`; `None` if apps never receive it.
        pub fn app_topic_scope(topic: &str) -> Option<Scope> {
            match topic {
                $($name => Some($scope),)*
                _ => None,
            }
        }
    };
}

// The methods served to an app session (a `hello` with an `origin`), and nothing else: the
// daemon answers any other method `Unsupported` (4200), and one of these without its scope
// `Unauthorized` (4100). Names may be those of trusted methods, with the app's shapes.
app_methods! {
    /// The scopes granted to this app, and its type namespace.
    AppPermissionsGet = ap::PERMISSIONS_GET, None, NoParams => AppPermissions;
    /// Answers the grant if every scope asked for is granted, else `Unauthorized` (the
    /// extension prompts the user first and grants with `apps.grant`).
    AppPermissionsRequest = ap::PERMISSIONS_REQUEST, None, PermissionsRequestParams => AppPermissions;
    /// The user's PeerId and name.
    AppIdentityGet = m::IDENTITY_GET, Some(Scope::Identity), NoParams => AppIdentity;
    /// The accepted contacts (their presence with the `presence` scope).
    AppContactsList = m::CONTACTS_LIST, Some(Scope::ContactsRead), NoParams => Vec<AppContact>;
    /// Sends a chat message to an accepted contact (shown as sent through the app).
    AppMessagesSend = ap::MESSAGES_SEND, Some(Scope::MessagesSend), AppSendParams => AppSent;
    /// Registers (or evolves) a schema file of the app's types, all named in its namespace.
    AppSchemasRegister = r::SCHEMAS_REGISTER, Some(Scope::Resources), AppSchemaParams => RegisterSchemaResult;
    /// Creates a resource of one of the app's types.
    AppResourcesCreate = r::RESOURCES_CREATE, Some(Scope::Resources), CreateParams => Resource;
    /// One of the app's resources by id, or null (also for a resource of another type).
    AppResourcesGet = r::RESOURCES_GET, Some(Scope::Resources), IdParams => Option<Resource>;
    /// Patches one of the app's resources (`null` removes a property).
    AppResourcesUpdate = r::RESOURCES_UPDATE, Some(Scope::Resources), UpdateParams => Resource;
    /// Deletes one of the app's resources.
    AppResourcesDelete = r::RESOURCES_DELETE, Some(Scope::Resources), IdParams => ();
    /// The app's resources matching a query over its types.
    AppResourcesQuery = r::RESOURCES_QUERY, Some(Scope::Resources), QueryParams => QueryResult;
    /// Subscribes to changes of the app's resources (by type, id or query; `resource.changed`).
    AppResourcesSubscribe = r::RESOURCES_SUBSCRIBE, Some(Scope::Resources), ResourceSubscribeParams => SubscriptionParams;
    /// Drops a resource subscription: false if it is not this session's.
    AppResourcesUnsubscribe = r::RESOURCES_UNSUBSCRIBE, Some(Scope::Resources), SubscriptionParams => bool;
    /// Shares one of the app's resources with accepted contacts.
    AppSharesCreate = sh::SHARES_CREATE, Some(Scope::Shares), AppShareParams => Share;
    /// The shares of the app's resources, ours and received.
    AppSharesList = sh::SHARES_LIST, Some(Scope::Shares), NoParams => Vec<Share>;
    /// Revokes a member of a share of the app's resources.
    AppSharesRevoke = sh::SHARES_REVOKE, Some(Scope::Shares), AppRevokeShareParams => Share;
    /// Adds app topics to this session's subscriptions (each behind its scope).
    AppEventsSubscribe = m::EVENTS_SUBSCRIBE, None, m::SubscribeParams => m::SubscribeResult;
    /// Removes topics from this session's subscriptions.
    AppEventsUnsubscribe = m::EVENTS_UNSUBSCRIBE, None, m::SubscribeParams => m::SubscribeResult;
}

// The events an app session may receive, each checked against the origin's live grant when
// it is delivered (a revoke silences subscriptions already made).
app_topics! {
    /// A contact came online, went offline or changed status.
    AppPresenceChanged = t::PRESENCE_CHANGED, Scope::Presence, PresenceChange;
    /// A contact was accepted, or changed name.
    AppContactChanged = t::CONTACT_CHANGED, Scope::ContactsRead, AppContact;
    /// One of the app's resources was created, updated or deleted (`resources.subscribe`).
    AppResourceChanged = r::topics::RESOURCE_CHANGED, Scope::Resources, ResourceChange;
    /// A list of the app's gained, lost or moved an item (`resources.subscribe`).
    AppListChanged = r::topics::LIST_CHANGED, Scope::Resources, ResourceChange;
    /// A share of one of the app's resources changed (members, state).
    AppShareChanged = sh::topics::SHARE_CHANGED, Scope::Shares, Share;
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn params_parse_by_method_and_name_the_problem() {
        let p = parse_params::<ChatSend>(json!({"chat": "c", "body": "hi"})).unwrap();
        assert_eq!(p.body, "hi");
        assert!(parse_params::<ContactsList>(Json::Null).is_ok());
        let e = parse_params::<ChatSend>(json!({"body": "hi"})).unwrap_err();
        assert_eq!(e.kind(), Some(ErrorCode::InvalidParams));
        assert!(e.message.contains("chat.send") && e.message.contains("chat"));
    }

    #[test]
    fn events_carry_their_topic() {
        let e = event::<EventsDropped>(&DroppedData { dropped: 3 });
        assert_eq!(e.topic, "events.dropped");
        assert_eq!(e.data, json!({"dropped": 3}));
    }

    #[test]
    fn the_table_holds_every_served_method_once() {
        let mut served: Vec<&str> = m::METHODS
            .iter()
            .chain(r::METHODS)
            .chain(mail::METHODS)
            .chain(tr::METHODS)
            .chain(media::METHODS)
            .chain(files::METHODS)
            .chain(sh::METHODS)
            .chain(ap::METHODS)
            .copied()
            .collect();
        let mut table = METHOD_NAMES.to_vec();
        served.sort_unstable();
        table.sort_unstable();
        let before = table.len();
        table.dedup();
        assert_eq!(table.len(), before, "a method is in the table twice");
        assert_eq!(table, served);
    }

    #[test]
    fn app_methods_and_topics_are_named_once_and_scoped() {
        let mut names = APP_METHOD_NAMES.to_vec();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), APP_METHOD_NAMES.len());
        assert_eq!(
            app_method_scope("identity.get"),
            Some(Some(Scope::Identity))
        );
        assert_eq!(app_method_scope("permissions.get"), Some(None));
        assert_eq!(app_method_scope("apps.grant"), None);
        assert_eq!(app_method_scope("resources.count"), None);
        for topic in APP_TOPIC_NAMES {
            assert!(TOPIC_NAMES.contains(topic), "{topic} is not a daemon topic");
        }
        assert_eq!(app_topic_scope("presence.changed"), Some(Scope::Presence));
        assert_eq!(app_topic_scope("apps.changed"), None);
    }

    #[test]
    fn the_table_holds_every_topic_once() {
        let mut known: Vec<&str> = t::ALL
            .iter()
            .chain(r::topics::ALL)
            .chain([&t::EVENTS_DROPPED])
            .copied()
            .collect();
        known.sort_unstable();
        known.dedup();
        let mut table = TOPIC_NAMES.to_vec();
        table.sort_unstable();
        assert_eq!(table, known);
    }
}
