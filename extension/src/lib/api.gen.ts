// Generated from allpeers-model's api::contract by host/model/tests/typescript.rs — do not edit.
// Regenerate: ALLPEERS_BLESS=1 cargo test -p allpeers-model --features ts --test typescript
/* eslint-disable */

/** The local API version this file describes (`hello`'s `api_version`). */
export const API_VERSION = 1;

/** Every method: its params and its result. */
export interface Methods {
  /** The first call of every session: names the client and the API version it speaks. */
  "hello": { params: HelloParams; result: HelloResult };
  /** Answers its params unchanged (latency checks, tests). */
  "ping": { params: JsonValue; result: JsonValue };
  /** The daemon's version, process, paths, clients and identity. */
  "status.get": { params: NoParams; result: StatusResult };
  /** The node's identity. */
  "identity.get": { params: NoParams; result: IdentityInfo };
  /** Opens a sealed identity with its passphrase (`WrongPassphrase` otherwise). */
  "identity.unlock": { params: UnlockParams; result: IdentityInfo };
  /** Seals the identity file with a passphrase (it was plain); the running daemon stays unlocked. */
  "identity.seal": { params: SealParams; result: IdentityInfo };
  /** A backup of the identity: its key file, sealed (with the given passphrase if it was plain). */
  "identity.export": { params: ExportParams; result: IdentityBackup };
  /** Restores a backup as the identity from the next start (`BadBackup`, `WrongPassphrase`; a different identity is replaced only with `replace: true`, else `IdentityExists`). */
  "identity.restore": { params: RestoreParams; result: RestoreResult };
  /** Adds topics to this client's subscriptions (an unknown topic is `InvalidParams`). */
  "events.subscribe": { params: SubscribeParams; result: SubscribeResult };
  /** Removes topics from this client's subscriptions. */
  "events.unsubscribe": { params: SubscribeParams; result: SubscribeResult };
  /** The log filter and the log files' directory. */
  "log.get": { params: NoParams; result: LogInfo };
  /** Sets the log filter (`skin`, `marrow`, `flesh`, `bone`, per area `area=level`). */
  "log.set": { params: LogSetParams; result: LogInfo };
  /** Stops the daemon: every session is closed, then it exits. */
  "daemon.shutdown": { params: NoParams; result: ShutdownResult };
  /** The endpoint, its connections, the hub line, connectivity and discovery. */
  "net.status": { params: NoParams; result: NetStatus };
  /** Reaches a peer through the connector (direct, callback, hole punched or relayed). */
  "net.connect": { params: PeerParams; result: ConnectResult };
  /** Measures throughput to and from a peer over the speed-test service. */
  "net.speedtest": { params: SpeedtestParams; result: SpeedtestResult };
  /** Registers a name at the home hub. */
  "hub.register": { params: NameParams; result: RegisterResult };
  /** Looks up a name or a PeerId at the home hub (a verified answer). */
  "hub.resolve": { params: ResolveParams; result: ResolveResult };
  /** Asks the hub for these peers' presence (`presence.changed` / `presence.refused`). */
  "hub.watch": { params: PeersParams; result: PeersParams };
  /** Stops watching these peers' presence. */
  "hub.unwatch": { params: PeersParams; result: PeersParams };
  /** A connection to the peer through the hub's relay (TLS end to end). */
  "hub.relay": { params: PeerParams; result: RelayResult };
  /** Makes a hub the home hub (a hub address, or an invite code's hub), from the daemon's next start. */
  "hub.set_home": { params: SetHomeParams; result: HomeHub };
  /** Our contacts (every state but `none`). */
  "contacts.list": { params: NoParams; result: Array<Contact> };
  /** Asks a peer (by `name@hub`, PeerId or invite code) to become a contact. */
  "contacts.add": { params: AddContactParams; result: AddedContact };
  /** Accepts a peer's contact request. */
  "contacts.accept": { params: PeerParams; result: Contact };
  /** Declines a contact request (the requester is not told). */
  "contacts.decline": { params: PeerParams; result: Contact };
  /** Removes a contact; the other side is told and stops seeing us. */
  "contacts.remove": { params: PeerParams; result: Contact };
  /** Blocks a peer: its letters are dropped unread, it cannot see our presence. */
  "contacts.block": { params: PeerParams; result: Contact };
  /** Unblocks a peer. */
  "contacts.unblock": { params: PeerParams; result: Contact };
  /** An invite code: a contact request carrying it is accepted at once. */
  "contacts.invite": { params: NoParams; result: Invite };
  /** Sets our presence; contacts hear it through the hub and, when connected, directly. */
  "presence.set": { params: PresenceParams; result: OwnPresence };
  /** Our presence. */
  "presence.get": { params: NoParams; result: OwnPresence };
  /** Every chat, most recent first. */
  "chat.list": { params: NoParams; result: Array<Chat> };
  /** The 1:1 chat with an accepted contact (the same id on both sides). */
  "chat.open": { params: PeerParams; result: Chat };
  /** Creates a group chat with contacts. */
  "chat.create_group": { params: CreateGroupParams; result: Chat };
  /** Sends a message: stored before the call returns, delivered in the background. */
  "chat.send": { params: SendParams; result: Message };
  /** A page of a chat's messages, oldest first. */
  "chat.history": { params: HistoryParams; result: Array<Message> };
  /** Edits one of our messages. */
  "chat.edit": { params: EditParams; result: Message };
  /** Deletes one of our messages (its body is emptied). */
  "chat.delete": { params: MessageParams; result: Message };
  /** Marks a chat read; the senders get read receipts. */
  "chat.read": { params: ChatParams; result: ReadResult };
  /** Tells connected members we are typing (never mailed). */
  "chat.typing": { params: ChatParams; result: ChatParams };
  /** Our e-mail registration at the home hub (the address masked). */
  "mail.status": { params: NoParams; result: MailStatus };
  /** Registers an e-mail address at the home hub; it mails a confirmation code there. */
  "mail.set_address": { params: SetAddressParams; result: SetAddressResult };
  /** Confirms the address with the mailed code. */
  "mail.confirm": { params: ConfirmParams; result: MailStatus };
  /** Reads (no params) or changes which kinds of mail the address accepts. */
  "mail.preferences": { params: PreferencesParams; result: MailPreferences };
  /** Invites an address to AllPeers by mail, with a fresh invite code of ours. */
  "mail.invite": { params: MailInviteParams; result: MailInviteResult };
  /** Mails a contact a notice (a share, waiting messages) if its address accepts it. */
  "mail.notify": { params: NotifyParams; result: NotifyResult };
  /** Stops all mail to our address and forgets it at the hub. */
  "mail.unsubscribe": { params: NoParams; result: UnsubscribeResult };
  /** Creates a resource. */
  "resources.create": { params: CreateParams; result: Resource };
  /** A resource by id, or null. */
  "resources.get": { params: IdParams; result: Resource | null };
  /** Patches a resource (`null` removes a property). */
  "resources.update": { params: UpdateParams; result: Resource };
  /** Deletes a resource. */
  "resources.delete": { params: IdParams; result: null };
  /** Resources (or their ids) matching a query. */
  "resources.query": { params: QueryParams; result: QueryResult };
  /** How many resources match a query. */
  "resources.count": { params: CountParams; result: number };
  /** Subscribes this client to resource changes (`resource.changed`, `list.changed`). */
  "resources.subscribe": { params: ResourceSubscribeParams; result: SubscriptionParams };
  /** Drops a subscription: false if it is not this client's. */
  "resources.unsubscribe": { params: SubscriptionParams; result: boolean };
  /** A list's items (and its query, when query-backed). */
  "lists.items": { params: IdParams; result: ListItems };
  /** Inserts an item into a list; answers its position. */
  "lists.insert": { params: ListItemParams; result: number };
  /** Moves an item in a list; answers its position. */
  "lists.move": { params: ListItemParams; result: number };
  /** Removes an item from a list. */
  "lists.remove": { params: ListItemParams; result: null };
  /** Shares a resource (a List with its items) with peers, each at a level. */
  "shares.create": { params: CreateShareParams; result: Share };
  /** Every share: ours, those we accepted, those offered to us. */
  "shares.list": { params: NoParams; result: Array<Share> };
  /** One share with its members. */
  "shares.get": { params: ShareParams; result: Share };
  /** Accepts a share offered to us: it syncs in from its members. */
  "shares.accept": { params: ShareParams; result: Share };
  /** Adds a member (admins only). */
  "shares.add_member": { params: AddMemberParams; result: Share };
  /** Revokes a member (admins only): it gets nothing new from any member that saw it. */
  "shares.revoke": { params: RevokeParams; result: Share };
  /** Stops syncing a share and forgets its ops (the resources stay as local copies). */
  "shares.leave": { params: ShareParams; result: null };
  /** Per share: members, who is online, last sync, ops pending, ops and bytes held. */
  "sync.status": { params: NoParams; result: SyncStatus };
  /** Registers (or evolves) a RELAX NG schema file. */
  "schemas.register": { params: RegisterSchemaParams; result: RegisterSchemaResult };
  /** The names of every registered type. */
  "schemas.list": { params: NoParams; result: Array<string> };
  /** A type's description: lineage, properties with `declaredBy`, children, metadata. */
  "schemas.describe": { params: TypeParams; result: JsonValue };
  /** Adds a download from a .torrent (a path or its bytes in base64). */
  "transfers.add": { params: AddTransferParams; result: Transfer };
  /** Every transfer, downloads and seeds. */
  "transfers.list": { params: NoParams; result: Array<Transfer> };
  /** One transfer (`TransferNotFound` otherwise). */
  "transfers.get": { params: TransferIdParams; result: Transfer };
  /** Pauses a transfer (kept paused across restarts). */
  "transfers.pause": { params: TransferIdParams; result: Transfer };
  /** Resumes a paused or failed transfer from what is on disk. */
  "transfers.resume": { params: TransferIdParams; result: Transfer };
  /** Stops and forgets a transfer, optionally deleting its downloaded files. */
  "transfers.cancel": { params: CancelParams; result: TransferIdParams };
  /** One transfer's upload and download limits. */
  "transfers.set_limits": { params: SetLimitsParams; result: Transfer };
  /** Changes a transfer's priority (which waiting transfer starts first). */
  "transfers.set_priority": { params: SetPriorityParams; result: Transfer };
  /** Where downloads go when none names a directory. */
  "transfers.download_dir.get": { params: NoParams; result: DownloadDir };
  /** Changes where downloads go (created if missing; kept in config.json). */
  "transfers.download_dir.set": { params: DownloadDir; result: DownloadDir };
  /** Who takes data from us, fastest first (the upload monitor). */
  "transfers.uploads": { params: NoParams; result: Array<Upload> };
  /** Shares a file from disk: makes its torrent and seeds it in place. */
  "transfers.seed": { params: SeedParams; result: SeedResult };
  /** The global upload and download limits of every transfer together. */
  "net.limits.get": { params: NoParams; result: Limits };
  /** Sets the global limits (`null`: no limit); answers them. */
  "net.limits.set": { params: Limits; result: Limits };
  /** Fetches a shared File's content from the members that hold it, verified (a transfer). */
  "files.get": { params: GetFileParams; result: Transfer };
  /** Starts bringing a file's bytes into the node's imports folder (a file dropped on the sidebar). */
  "files.import_start": { params: ImportStartParams; result: ImportStatus };
  /** The next bytes of an import, in order; the last ones give the file its final name and path. */
  "files.import_write": { params: ImportWriteParams; result: ImportStatus };
  /** Abandons an import (its partial file is deleted). */
  "files.import_cancel": { params: ImportIdParams; result: ImportStatus | null };
  /** Which shared files arrive by themselves: the size `small` means and each share's policy. */
  "files.auto_download.get": { params: NoParams; result: AutoDownload };
  /** Sets a share's policy and/or the size `small` means (kept across restarts); answers the whole setting. */
  "files.auto_download.set": { params: SetAutoDownloadParams; result: AutoDownload };
  /** Catalogues files and folders in the background (a job; `media.progress` reports on it). */
  "media.add": { params: AddMediaParams; result: AddResult };
  /** A catalogued file's resource (File, Audio, Image, Video or Text), by path or id. */
  "media.info": { params: InfoParams; result: Resource };
  /** The paths the catalog keeps up to date. */
  "media.watched": { params: NoParams; result: Array<WatchedPath> };
  /** Stops keeping a path up to date (its files stay catalogued). */
  "media.unwatch": { params: UnwatchParams; result: UnwatchResult };
  /** The apps granted something, with their scopes. */
  "apps.list": { params: NoParams; result: Array<AppEntry> };
  /** Grants an origin scopes (added to what it has). */
  "apps.grant": { params: GrantParams; result: AppEntry };
  /** Revokes scopes of an origin (none named: all, and the origin is forgotten; its data stays). */
  "apps.revoke": { params: RevokeAppParams; result: AppEntry | null };
}

export type MethodName = keyof Methods;
export type ParamsOf<M extends MethodName> = Methods[M]["params"];
export type ResultOf<M extends MethodName> = Methods[M]["result"];

/** Every event topic: the `data` of its events. */
export interface Events {
  /** A local API client connected or disconnected. */
  "clients.changed": ClientsChanged;
  /** The identity was unlocked. */
  "identity.changed": IdentityInfo;
  /** The log filter changed. */
  "log.changed": LogInfo;
  /** Schemas were registered or evolved. */
  "schema.changed": RegisterSchemaResult;
  /** The network changed: status, a connection, connectivity, discovery. */
  "net.changed": NetChange;
  /** The home hub's line went up or down. */
  "hub.changed": HubChange;
  /** A contact's presence changed. */
  "presence.changed": PresenceChange;
  /** The hub will not show this peer's presence (it does not watch us). */
  "presence.refused": PeerIdData;
  /** A peer asked to reach us through the hub's relay. */
  "relay.offered": RelayOffer;
  /** A peer asks to become a contact. */
  "contact.request": ContactRequestData;
  /** A contact's state or name changed. */
  "contact.changed": Contact;
  /** A message arrived, or one client sent one (others see it too). */
  "message.received": Message;
  /** A message was edited or deleted. */
  "message.updated": Message;
  /** A recipient got or read our message, or it was queued in their mailbox. */
  "chat.receipt": ReceiptData;
  /** Someone is typing. */
  "chat.typing": TypingData;
  /** A chat was created or changed (e.g. a group we were added to). */
  "chat.changed": Chat;
  /** This client lost events (it did not read fast enough); sent unsubscribed. */
  "events.dropped": DroppedData;
  /** A resource was created, updated or deleted (`resources.subscribe` only). */
  "resource.changed": ResourceChange;
  /** A list gained, lost or moved an item (`resources.subscribe` only). */
  "list.changed": ResourceChange;
  /** A transfer was added. */
  "transfer.added": Transfer;
  /** A running transfer's numbers (at most one per 250 ms per transfer). */
  "transfer.progress": ProgressEvent;
  /** A transfer's state changed. */
  "transfer.changed": ChangedEvent;
  /** A transfer was cancelled. */
  "transfer.removed": TransferIdParams;
  /** An indexing job advanced (a few times a second at most) or finished. */
  "media.progress": MediaProgress;
  /** A peer shared a resource with us: accept it or ignore it. */
  "share.received": ShareReceived;
  /** A share's members or state changed. */
  "share.changed": Share;
  /** A reconciliation with a peer completed. */
  "sync.progress": SyncProgress;
  /** An app's grant changed: its scopes now (empty once revoked). */
  "apps.changed": AppPermissions;
}

export type TopicName = keyof Events;

/** Every scope an app may be granted. */
export const SCOPES: readonly Scope[] = ["identity", "contacts:read", "presence", "messages:send", "resources", "shares"];

/** The methods served to an app session: their params and result. */
export interface AppMethods {
  /** The scopes granted to this app, and its type namespace. (scope: none) */
  "permissions.get": { params: NoParams; result: AppPermissions };
  /** Answers the grant if every scope asked for is granted, else `Unauthorized` (the extension prompts the user first and grants with `apps.grant`). (scope: none) */
  "permissions.request": { params: PermissionsRequestParams; result: AppPermissions };
  /** The user's PeerId and name. (scope: identity) */
  "identity.get": { params: NoParams; result: AppIdentity };
  /** The accepted contacts (their presence with the `presence` scope). (scope: contacts:read) */
  "contacts.list": { params: NoParams; result: Array<AppContact> };
  /** Sends a chat message to an accepted contact (shown as sent through the app). (scope: messages:send) */
  "messages.send": { params: AppSendParams; result: AppSent };
  /** Registers (or evolves) a schema file of the app's types, all named in its namespace. (scope: resources) */
  "schemas.register": { params: AppSchemaParams; result: RegisterSchemaResult };
  /** Creates a resource of one of the app's types. (scope: resources) */
  "resources.create": { params: CreateParams; result: Resource };
  /** One of the app's resources by id, or null (also for a resource of another type). (scope: resources) */
  "resources.get": { params: IdParams; result: Resource | null };
  /** Patches one of the app's resources (`null` removes a property). (scope: resources) */
  "resources.update": { params: UpdateParams; result: Resource };
  /** Deletes one of the app's resources. (scope: resources) */
  "resources.delete": { params: IdParams; result: null };
  /** The app's resources matching a query over its types. (scope: resources) */
  "resources.query": { params: QueryParams; result: QueryResult };
  /** Subscribes to changes of the app's resources (by type, id or query; `resource.changed`). (scope: resources) */
  "resources.subscribe": { params: ResourceSubscribeParams; result: SubscriptionParams };
  /** Drops a resource subscription: false if it is not this session's. (scope: resources) */
  "resources.unsubscribe": { params: SubscriptionParams; result: boolean };
  /** Shares one of the app's resources with accepted contacts. (scope: shares) */
  "shares.create": { params: AppShareParams; result: Share };
  /** The shares of the app's resources, ours and received. (scope: shares) */
  "shares.list": { params: NoParams; result: Array<Share> };
  /** Revokes a member of a share of the app's resources. (scope: shares) */
  "shares.revoke": { params: AppRevokeShareParams; result: Share };
  /** Adds app topics to this session's subscriptions (each behind its scope). (scope: none) */
  "events.subscribe": { params: SubscribeParams; result: SubscribeResult };
  /** Removes topics from this session's subscriptions. (scope: none) */
  "events.unsubscribe": { params: SubscribeParams; result: SubscribeResult };
}

export type AppMethodName = keyof AppMethods;
export type AppParamsOf<M extends AppMethodName> = AppMethods[M]["params"];
export type AppResultOf<M extends AppMethodName> = AppMethods[M]["result"];

/** The scope each app method needs (`null`: none). */
export const APP_METHOD_SCOPES: { readonly [M in AppMethodName]: Scope | null } = {
  "permissions.get": null,
  "permissions.request": null,
  "identity.get": "identity",
  "contacts.list": "contacts:read",
  "messages.send": "messages:send",
  "schemas.register": "resources",
  "resources.create": "resources",
  "resources.get": "resources",
  "resources.update": "resources",
  "resources.delete": "resources",
  "resources.query": "resources",
  "resources.subscribe": "resources",
  "resources.unsubscribe": "resources",
  "shares.create": "shares",
  "shares.list": "shares",
  "shares.revoke": "shares",
  "events.subscribe": null,
  "events.unsubscribe": null,
};

/** The event topics an app session may receive: the `data` of their events. */
export interface AppEvents {
  /** A contact came online, went offline or changed status. (scope: presence) */
  "presence.changed": PresenceChange;
  /** A contact was accepted, or changed name. (scope: contacts:read) */
  "contact.changed": AppContact;
  /** One of the app's resources was created, updated or deleted (`resources.subscribe`). (scope: resources) */
  "resource.changed": ResourceChange;
  /** A list of the app's gained, lost or moved an item (`resources.subscribe`). (scope: resources) */
  "list.changed": ResourceChange;
  /** A share of one of the app's resources changed (members, state). (scope: shares) */
  "share.changed": Share;
}

export type AppTopicName = keyof AppEvents;

/** The scope each app topic needs. */
export const APP_TOPIC_SCOPES: { readonly [T in AppTopicName]: Scope } = {
  "presence.changed": "presence",
  "contact.changed": "contacts:read",
  "resource.changed": "resources",
  "list.changed": "resources",
  "share.changed": "shares",
};

/** The daemon's error codes (`error.code`), by name. */
export const ErrorCode = {
  /** parse error: the frame is not UTF-8 (offset given) or not JSON; the session goes on */
  ParseError: -32700,
  /** invalid request: JSON, but not a request (not an object, no `id`, no `method`, `jsonrpc` ≠ "2.0", `params` not object/array) */
  InvalidRequest: -32600,
  /** method not found: unknown method (named) */
  MethodNotFound: -32601,
  /** invalid params: params of the wrong shape (the field and expectation named), unknown topic, bad log filter, a request the store refuses (`BadRequest`) */
  InvalidParams: -32602,
  /** internal: the daemon failed (store, SQL, a task); logged */
  Internal: -32603,
  /** hello required: a method other than `hello` came first */
  HelloRequired: -32000,
  /** unsupported version: `hello` asked for an API version this daemon does not speak */
  UnsupportedVersion: -32001,
  /** frame too large: a length prefix over 8 MiB; the connection closes */
  FrameTooLarge: -32002,
  /** truncated frame: the stream ended inside a frame; the connection closes */
  TruncatedFrame: -32003,
  /** wrong passphrase: `identity.unlock` or `identity.restore` with a passphrase that does not open the key */
  WrongPassphrase: -32004,
  /** bad backup: `identity.restore`: the file is not an AllPeers identity backup (too large, not JSON, another format or version, a key that does not match its PeerId); the message says which */
  BadBackup: -32005,
  /** identity exists: `identity.restore` without `replace: true` while the node has a different identity; `data`: `{peer_id}` (the current one) */
  IdentityExists: -32006,
  /** invalid resource: the resource does not fit its type; `data`: `{errors: [{path, reason}]}` */
  InvalidResource: -32010,
  /** not found: no resource with that id */
  NotFound: -32011,
  /** exists: the id is taken, or the item is already in the list */
  Exists: -32012,
  /** schema refused: `schemas.register` refused the file; `data`: `{file, line, reason}` */
  SchemaRefused: -32013,
  /** invalid query: the query was refused; `data`: `{path, reason}` */
  InvalidQuery: -32014,
  /** adapter refused: a resource adapter refused the write; `data`: `{type, reason}` */
  AdapterRefused: -32015,
  /** name taken: `hub.register`: another key holds the name */
  NameTaken: -32020,
  /** bad name: 1–32 characters a-z 0-9 `-` `_` `.`, starting with a letter or digit (the message names the rule) */
  BadName: -32021,
  /** answer rejected: the hub's answer failed verification: wrong signature, answer to another question (replay), or stale */
  AnswerRejected: -32022,
  /** relay refused: the peer did not agree to be relayed to */
  RelayRefused: -32023,
  /** quota: the hub's relay quota is used up */
  Quota: -32024,
  /** hub unreachable: the hub (or the proxy to it) cannot be reached */
  HubUnreachable: -32025,
  /** peer offline: the peer has no presence line at the hub */
  PeerOffline: -32026,
  /** no hub: no home hub is configured, or the node is offline (identity locked); contacts, presence and chat need the node online */
  NoHub: -32027,
  /** connect failed: `net.connect` (or a contact request): no path worked; `data.attempts` lists what was tried and why each failed */
  ConnectFailed: -32028,
  /** not a contact: not an accepted contact (`chat.open`, group members) */
  NotAContact: -32030,
  /** unknown peer: a name the hub does not know (`contacts.add`) */
  UnknownPeer: -32031,
  /** not found (social): no contact request to accept, no such chat */
  RequestOrChatNotFound: -32032,
  /** too large: a message, group title, request or status text over its limit */
  TooLarge: -32034,
  /** refused by the peer: the peer refused the letter (e.g. a contact request) */
  RefusedByPeer: -32035,
  /** no mail gateway: the home hub has no e-mail gateway configured */
  MailNoGateway: -32070,
  /** bad address: `mail.set_address` / `mail.invite`: not a bare ASCII `local@domain` with a dotted domain (254 characters at most) */
  MailBadAddress: -32071,
  /** no address: no e-mail address registered (or not confirmed), or no name at the hub to sign mail with */
  MailNoAddress: -32072,
  /** bad code: `mail.confirm`: wrong or expired code, or too many tries (set the address again) */
  MailBadCode: -32073,
  /** mail rate limited: over a per-peer or per-address limit or the hub's daily cap: try later */
  MailRateLimited: -32074,
  /** bad mail field: a note or title empty or over its limit */
  MailBadField: -32075,
  /** declined: the address asked for no mail from this hub, bounced, or was invited lately */
  MailDeclined: -32076,
  /** transfer not found: no transfer with that id (`transfers.*`) */
  TransferNotFound: -32050,
  /** bad torrent: the .torrent is malformed, unsafe (a file path leaving the download directory) or not base64; the message says which */
  BadTorrent: -32051,
  /** unsupported source: `transfers.add` with a URL other than http(s) (`ftp://`, `file://`, …): give an http(s) URL, the file or a magnet link */
  UnsupportedSource: -32052,
  /** transfer exists: the torrent is already added (the message names its id) */
  TransferExists: -32053,
  /** unreadable: the .torrent path or the file to seed cannot be read, is not a regular file, or is empty */
  Unreadable: -32054,
  /** transfer failed: the transfers engine is not running (its port could not be bound), or the download directory cannot be written, or a seeded file does not match its torrent */
  TransferFailed: -32055,
  /** no metadata: `transfers.add` with a magnet link that names no peer (`x.pe`) and no tracker while the DHT is off: nobody could be asked for its metadata (a link that can be asked is listed at once, in state `fetching_metadata`) */
  NoMetadata: -32056,
  /** fetch failed: `transfers.add` with an http(s) URL: the .torrent could not be fetched within 30 s (connection, TLS certificate, HTTP status, over 16 MiB, too many redirects; the message says which) */
  FetchFailed: -32057,
  /** path not found: `media.add`: a path does not exist or cannot be read */
  MediaPathNotFound: -32060,
  /** not catalogued: `media.info`: the path or id is not a catalogued file (add it with `media.add`) */
  NotCatalogued: -32061,
  /** media busy: `media.add`: too many indexing jobs run at once; retry when one finishes */
  MediaBusy: -32062,
  /** too many watched paths: `media.add` with `watch`: the catalog already keeps 256 paths up to date; unwatch one (`media.unwatch`) or add with `watch: false` */
  TooManyWatched: -32063,
  /** not allowed: the share does not allow it: a read member writing, a non-admin adding or revoking, revoking the owner, sharing what we cannot share */
  NotAllowed: -32040,
  /** share not found: no share with that id on this node (or none offered) */
  ShareNotFound: -32041,
  /** user rejected: apps: the user denied the permission prompt (the extension answers it, EIP-1193 style) */
  UserRejected: 4001,
  /** unauthorized: apps: the origin has not been granted the scope the method needs (the message names it), or the type or resource is not the app's */
  Unauthorized: 4100,
  /** unsupported: apps: a method an app session is not served (every method but the app-facing ones) */
  Unsupported: 4200,
  /** disconnected: apps: the extension has no line to the daemon (answered by the extension) */
  Disconnected: 4900,
  /** rate limited: apps: the origin's sessions together made calls faster than its limit; retry shortly */
  RateLimited: -32080,
  /** bad origin: apps: `hello`'s `origin` is not `https://host[:port]`, a loopback `http` origin, or an extension's (lowercase, no path, ≤ 200 characters) */
  BadOrigin: -32081,
  /** file not shared: `files.get`: the resource is not a File (or a type extending it) with a `hash` and `size`, or no share holds it */
  FileNotShared: -32090,
  /** no source: `files.get`: no other member of a share naming the file (the peers that may hold it) */
  FileNoSource: -32091,
  /** file unreadable: `shares.create`: a File's linked file on disk cannot be read (or changed while it was hashed) */
  FileUnreadable: -32092,
  /** no such import: `files.import_write` / `files.import_cancel`: no open import has that number (finished, cancelled, or idle too long) */
  ImportUnknown: -32093,
  /** imports busy: `files.import_start`: 16 imports are open already; finish or cancel one */
  ImportBusy: -32094,
} as const;

export type ErrorCodeName = keyof typeof ErrorCode;

/**
 * `contacts.add`'s params.
 */
export type AddContactParams = {
  /** `name@hub`, a PeerId or an invite code (`apinvite1…`). */
  who: string;
  /** A note to the peer (≤ 512 bytes). */
  message?: string;
};

/**
 * `media.add`'s params.
 */
export type AddMediaParams = {
  /** Absolute paths of files and folders. */
  paths: Array<string>;
  /** Descend into sub-folders (otherwise a folder's own files only). */
  recursive?: boolean;
  /**
   * Keep the paths up to date as files change or vanish. Default: folders yes, single
   * files no (`true` watches the files given too; `false` nothing).
   */
  watch?: boolean;
};

/**
 * `shares.add_member`'s params.
 */
export type AddMemberParams = {
  share: string;
  peer: PeerId;
  level: ShareLevel;
};

/**
 * `media.add`'s result: the job that indexes in the background.
 */
export type AddResult = {
  job: number;
};

/**
 * `transfers.add`'s params.
 */
export type AddTransferParams = {
  /**
   * The .torrent: an absolute path the daemon can read, the file's bytes in base64, or a magnet link (listed at
   * once in state `fetching_metadata` while its metadata is asked of the link's peers and trackers), or the
   * `http://` / `https://` URL of the file (fetched before the call answers: at most 16 MiB, 30 s, 5 redirects;
   * `FetchFailed` says why not). Other URLs are refused with `UnsupportedSource`.
   */
  torrent: string;
  /** Where the files go (absolute); absent: the configured download directory. */
  dir?: string | null;
  /** Peers to dial besides the torrent's trackers. */
  peers?: Array<string>;
  /** Add without starting. */
  paused?: boolean;
  /** Fetch pieces in order (for playing while downloading). */
  sequential?: boolean;
  /** Higher starts first when downloads queue. */
  priority?: number;
  /** This transfer's own limits (the global ones apply too); absent: none of its own. */
  limits?: Limits;
};

/**
 * `contacts.add`'s result: the contact, and how the request went when one was sent.
 */
export type AddedContact = {
  /** Absent when no request was sent (already a contact, or they had asked us). */
  delivered?: Delivered;
  peer_id: PeerId;
  /** `alice@hub`, from the hub's signed directory. */
  name: string | null;
  title: string | null;
  state: ContactState;
  /** The text of their contact request. */
  request_message: string | null;
  nickname: string | null;
  presence: Presence;
};

/**
 * An address to dial: the transport and the socket address.
 */
export type Address = {
  transport: TransportKind;
  addr: string;
};

/**
 * An accepted contact as an app sees it (`contacts.list` on an app session).
 */
export type AppContact = {
  peer_id: PeerId;
  name?: string;
  /** With the `presence` scope only. */
  online?: boolean;
  /** With the `presence` scope only. */
  state?: PresenceState;
};

/**
 * An app the user granted something: `apps.list`'s entries, `apps.grant`'s result.
 */
export type AppEntry = {
  /** `https://example.com`, `chrome-extension://<id>`, … */
  origin: string;
  /** Sorted, each once. */
  scopes: Array<Scope>;
  /** When the first scope still held was granted (unix ms). */
  granted_at_ms: number;
  /** When an app session of this origin last made a call (unix ms). */
  last_used_ms?: number;
};

/**
 * The identity as an app sees it (`identity.get` on an app session).
 */
export type AppIdentity = {
  peer_id: PeerId;
  /** `alice@hub`, once registered at the home hub. */
  name?: string;
};

/**
 * `apps.changed`'s data, and what `permissions.get` / `permissions.request` answer.
 */
export type AppPermissions = {
  origin: string;
  /** The scopes granted now (empty once revoked). */
  scopes: Array<Scope>;
  /**
   * The prefix of this app's resource type names (`app_<hash>_`): a type the app
   * registers is named `<namespace><Name>`, e.g. `app_k3v9q2m7x4ab_Todo`.
   */
  namespace: string;
};

/**
 * `shares.revoke`'s params on an app session.
 */
export type AppRevokeShareParams = {
  share: string;
  peer_id: PeerId;
};

/**
 * `schemas.register`'s params on an app session: RELAX NG text whose types are all named
 * in the app's namespace.
 */
export type AppSchemaParams = {
  /** The RELAX NG text (as for the built-in `schemas.register`). */
  schema: string;
  /**
   * Which of the app's schema files this is (1-64 of letters, digits, `.`, `_`, `-`;
   * default `schema`): registering the same file again evolves its types.
   */
  file?: string;
};

/**
 * `messages.send`'s params: a chat message to an accepted contact.
 */
export type AppSendParams = {
  peer_id: PeerId;
  /** ≤ 16 KiB. */
  text: string;
};

/**
 * `messages.send`'s result.
 */
export type AppSent = {
  /** The message's id. */
  id: string;
  /** The 1:1 chat's id. */
  chat: string;
};

/**
 * `shares.create`'s params on an app session.
 */
export type AppShareParams = {
  /** The app's resource to share (of one of its types). */
  resource: string;
  /** Accepted contacts. */
  members: Array<PeerId>;
  /** Their level (default `read`). */
  role?: ShareLevel;
};

/**
 * One dial, signal, punch, birthday or relay attempt of a connect.
 */
export type Attempt = {
  method: string;
  outcome: string;
  /** Milliseconds after the start of the connect. */
  at_ms: number;
};

/**
 * `files.auto_download.get`'s answer (and `.set`'s).
 */
export type AutoDownload = {
  /** What `small` means: files of at most this many bytes. */
  max_bytes: number;
  /** Shares whose policy is not the default. */
  shares: Array<ShareAutoDownload>;
};

/**
 * Which shared files a node fetches by itself when they arrive in a share.
 */
export type AutoDownloadPolicy = "off" | "small" | "all";

/**
 * What a peer (or we) can be set to.
 */
export type Availability = "online" | "away" | "busy";

/**
 * The `bulk` part of `net.status`: connections of their own that file transfers over TCP
 * opened (no multiplexer; the other transfers are streams on the peer's connection).
 */
export type BulkStatus = {
  /** Bulk connections this node dialled (its downloads). */
  dialled: number;
  /** Bulk connections peers dialled to this node (their downloads from it). */
  accepted: number;
  /** Stream bytes written and read on them, both directions. */
  bytes_sent: number;
  bytes_received: number;
};

/**
 * `transfers.cancel`'s params.
 */
export type CancelParams = {
  id: number;
  /** Delete the downloaded files too (a file seeded in place is never deleted). */
  delete_files?: boolean;
};

/**
 * A name certificate signed by the hub.
 */
export type Certificate = {
  name: string;
  hub_name: string;
  /** `name@hub_name`. */
  full_name: string;
  peer_id: PeerId;
  hub_peer_id: PeerId;
  /** Unix milliseconds. */
  issued_at: number;
  /** Base64 of the hub's signature. */
  signature: string;
};

/**
 * What happened to a resource or a list.
 */
export type ChangeKind = "created" | "updated" | "deleted" | "itemAdded" | "itemRemoved" | "itemMoved";

/**
 * `transfer.changed`'s data.
 */
export type ChangedEvent = {
  id: number;
  state: TransferState;
  reason: string | null;
};

/**
 * A conversation: a Chat resource with its unread count and last message.
 */
export type Chat = {
  /** `dm-…` (the same on both sides) or `grp-…`. */
  id: string;
  title: string | null;
  group: boolean;
  participants: Array<PeerId>;
  creator: PeerId | null;
  unread: number;
  last: Message | null;
};

/**
 * `{"chat": id}`: `chat.read`'s and `chat.typing`'s params, `chat.typing`'s result.
 */
export type ChatParams = {
  chat: string;
};

/**
 * An anonymous complex value owned by its parent.
 */
export type Child = {
  properties: { [key in string]: PropertyValue };
  children?: { [key in string]: Array<Child> };
};

export type ClientsChanged = {
  clients: number;
  /** The client that connected or left. */
  client: string;
  connected: boolean;
};

/**
 * A comparison of a property (or metadata entry) with a value.
 */
export type Cond = {
  name: string;
  op: Op;
  value?: PropertyValue;
};

/**
 * `mail.confirm`'s params: the code from the confirmation mail.
 */
export type ConfirmParams = {
  code: string;
};

/**
 * `net.connect`'s result: the path that won, why, and every attempt.
 */
export type ConnectResult = {
  peer_id: PeerId;
  path: PathKind;
  transport: TransportKind;
  /** Which way won and why. */
  why: string;
  elapsed_ms: number;
  local: NatFacts | null;
  /** The target's facts, when it answered our signal. */
  remote: NatFacts | null;
  attempts: Array<Attempt>;
};

/**
 * A peer connected.
 */
export type Connected = {
  peer: PeerId;
  transport: TransportKind;
  direction: Direction;
};

/**
 * A live connection in `net.status`.
 */
export type ConnectionInfo = {
  peer: PeerId;
  transport: TransportKind;
  direction: Direction;
  path: PathKind;
  /** The connector's reason, when it made the connection. */
  why: string | null;
};

/**
 * A contact: a Peer resource (`peer:<PeerId>`) with its presence.
 */
export type Contact = {
  peer_id: PeerId;
  /** `alice@hub`, from the hub's signed directory. */
  name: string | null;
  title: string | null;
  state: ContactState;
  /** The text of their contact request. */
  request_message: string | null;
  nickname: string | null;
  presence: Presence;
};

/**
 * `contact.request`'s data.
 */
export type ContactRequestData = {
  peer_id: PeerId;
  message: string;
  contact: Contact;
};

/**
 * A contact's state, ours to them.
 */
export type ContactState = "none" | "outgoing" | "incoming" | "accepted" | "declined" | "blocked";

/**
 * `resources.count`'s params.
 */
export type CountParams = {
  query: Query;
};

/**
 * `chat.create_group`'s params.
 */
export type CreateGroupParams = {
  title: string;
  /** PeerIds of contacts (fewer than 64). */
  members: Array<PeerId>;
};

export type CreateParams = {
  resource: Resource;
};

/**
 * `shares.create`'s params.
 */
export type CreateShareParams = {
  /** The root resource's id (a List shares its items too). */
  resource: string;
  members: Array<ShareMember>;
};

/**
 * How a letter was delivered.
 */
export type Delivered = "direct" | "relayed" | "mailed";

/**
 * Our record was stored on the DHT.
 */
export type DhtPublished = {
  /** Unix milliseconds. */
  at_ms: number | null;
  /** DHT nodes that stored it. */
  stored_at: number | null;
  /** What the record carries. */
  addresses: unknown[];
};

/**
 * Who opened the connection.
 */
export type Direction = "outbound" | "inbound";

/**
 * A peer disconnected.
 */
export type Disconnected = {
  peer: PeerId;
  reason: string;
};

/**
 * Where downloads go when none names a directory: `transfers.download_dir.get`'s result and `.set`'s params and
 * result (an absolute path, at most 4096 bytes).
 */
export type DownloadDir = {
  dir: string;
};

/**
 * `events.dropped`'s data.
 */
export type DroppedData = {
  /** Events this client lost. */
  dropped: number;
};

/**
 * `chat.edit`'s params.
 */
export type EditParams = {
  /** One of our own messages. */
  message: string;
  body: string;
};

/**
 * `identity.export`'s params: the backup's passphrase, needed when the identity itself is not sealed (a sealed
 * identity is backed up as it is, under its own passphrase).
 */
export type ExportParams = {
  passphrase?: string;
};

/**
 * A condition.
 */
export type Expr = { "prop": Cond } | { "meta": Cond } | { "any": Array<Expr> } | { "all": Array<Expr> } | { "not": Expr } | { "isA": string } | { "ids": Array<string> } | { "listsContaining": Query } | { "itemsOf": Query };

/**
 * Which inbound packets the NAT lets through to a mapping (RFC 5780 §4.4).
 */
export type Filtering = "endpoint-independent" | "address-dependent" | "address-and-port-dependent" | "unknown";

/**
 * `files.get`'s params.
 */
export type GetFileParams = {
  /** The File resource's id (or of a type extending File: Image, Audio, Video, Text). */
  resource: string;
  /** Where the file goes (absolute); absent: the configured download directory. */
  dir?: string | null;
  /** Add without starting. */
  paused?: boolean;
};

/**
 * `apps.grant`'s params: adds scopes to an origin's grant.
 */
export type GrantParams = {
  origin: string;
  scopes: Array<Scope>;
};

export type HelloParams = {
  /** Who is calling, e.g. "allpeers-cli", "extension/chromium". */
  client: string;
  api_version: number;
  /**
   * Set by the extension for an **app session** (a web page's or another extension's):
   * the caller's origin as the browser reports it (`https://example.com`,
   * `chrome-extension://<id>`). Such a session is served only the app-facing methods,
   * each behind a scope granted to that origin. Absent: a trusted session.
   */
  origin?: string;
};

export type HelloResult = {
  server: string;
  server_version: string;
  api_version: number;
  /** Methods and event topics this daemon serves. */
  methods: Array<string>;
  topics: Array<string>;
  /**
   * This node's PeerId; absent in an app session's answer (an app learns who the user is
   * through `identity.get`, with the `identity` scope, and nothing before a grant).
   */
  peer_id?: PeerId;
};

/**
 * `chat.history`'s params.
 */
export type HistoryParams = {
  chat: string;
  /** Only messages before this `hlc`. */
  before?: string;
  /** Default 50, at most 500. */
  limit?: number;
};

/**
 * The home hub written to `config.json`: used from the daemon's next start (`restart_needed` until then).
 */
export type HomeHub = {
  peer_id: PeerId;
  addresses: Array<string>;
  restart_needed: boolean;
};

/**
 * `hub.changed`'s data.
 */
export type HubChange = { "state": "online", observed: string, } | { "state": "offline", reason: string, };

/**
 * The home hub line's state.
 */
export type HubState = "connecting" | "online" | "offline" | "stopped";

/**
 * The hub part of `net.status`.
 */
export type HubStatus = {
  /** The hub's PeerId. */
  hub: PeerId;
  state: HubState;
  /** The address the hub sees us at (while online). */
  observed: string | null;
  via_proxy: boolean;
  proxy_error: string | null;
  /** Why the line went down last. */
  last_error: string | null;
  /** Peers we ask the hub to watch: contacts, and local clients' `hub.watch` (each client's end with its session). */
  watching: number;
};

export type IdParams = {
  id: string;
};

/**
 * `identity.export`'s result: the backup, a sealed key file (JSON text) as `allpeers identity import` reads it.
 */
export type IdentityBackup = {
  peer_id: PeerId;
  file: string;
};

export type IdentityInfo = {
  peer_id: PeerId;
  /**
   * True while the private key is sealed and not yet unlocked: the node cannot sign or
   * connect until `identity.unlock`.
   */
  locked: boolean;
  sealed: boolean;
  /** SHA-256 of the DER certificate, hex: what a peer's TLS stack will see. */
  certificate_sha256?: string;
};

/**
 * `files.import_cancel`'s params.
 */
export type ImportIdParams = {
  import: number;
};

/**
 * `files.import_start`'s params: the file's name (a plain name: no path separators, not hidden, no control
 * characters, at most 255 bytes) and its size in bytes (at most [`MAX_IMPORT_BYTES`]).
 */
export type ImportStartParams = {
  name: string;
  size: number;
};

/**
 * Where an import stands: `path` (absolute) is set once every byte is in and the file has its final name (a
 * file already there is never replaced: `name (1).ext`).
 */
export type ImportStatus = {
  import: number;
  received: number;
  size: number;
  path: string | null;
};

/**
 * `files.import_write`'s params: the next bytes of an import (`offset` = the bytes received so far), base64, at
 * most [`MAX_IMPORT_CHUNK`] of them.
 */
export type ImportWriteParams = {
  import: number;
  offset: number;
  data: string;
};

/**
 * `media.info`'s params: exactly one of `path` (absolute) and `id`.
 */
export type InfoParams = {
  path?: string;
  id?: string;
};

/**
 * `contacts.invite`'s result.
 */
export type Invite = {
  /**
   * `apinvite1…`: our PeerId, name, home hub, and a token that makes a request
   * carrying it accepted at once.
   */
  code: string;
  /** Unix milliseconds (14 days on). */
  expires: number;
};

export type JsonValue = number | string | boolean | Array<JsonValue> | { [key in string]: JsonValue } | null;

/**
 * A peer seen on the LAN for the first time (`new`), or with changed addresses.
 */
export type LanPeer = {
  peer: PeerId;
  /** `[{kind: local/observed/mapped, address: {transport, addr}}]`. */
  addresses: unknown[];
  /** Where the announcement came from (ip:port). */
  from: string;
  new: boolean;
};

/**
 * Upload and download limits in bytes per second; `null` for no limit.
 */
export type Limits = {
  down: number | null;
  up: number | null;
};

/**
 * A link attached to a message.
 */
export type LinkParams = {
  /** http or https only. */
  url: string;
  title?: string;
  description?: string;
  /** Base64 of a small preview image (≤ 16 KiB). */
  preview?: string;
};

export type ListItemParams = {
  list: string;
  item: string;
  /** Insert/move target position (insert: absent = append). */
  index?: number;
};

/**
 * `lists.items`'s result.
 */
export type ListItems = {
  id: string;
  /** Set for a query-backed list. */
  query: Query | null;
  /** Item ids, in order. */
  items: Array<string>;
};

export type LogInfo = {
  filter: string;
  dir: string;
};

/**
 * `log.set`: the default level and per-area overrides, in the seed's level names.
 */
export type LogSetParams = {
  /** e.g. `"flesh,allpeers_net=bone"`. */
  filter: string;
};

/**
 * `mail.invite`'s params.
 */
export type MailInviteParams = {
  /** Who to invite. */
  address: string;
  /** A few words shown in the mail as plain text (at most 280 characters). */
  note: string | null;
};

/**
 * `mail.invite`'s result: the mail is queued at the hub with a fresh invite code.
 */
export type MailInviteResult = {
  address: string;
  /** Unix milliseconds when the mailed invite code stops working. */
  expires: number;
};

/**
 * What a notice tells a contact.
 */
export type MailNotice = { "kind": "shared", title: string, } | { "kind": "waiting", count: number, };

/**
 * Which kinds of mail the address accepts.
 */
export type MailPreferences = {
  /** "Alice shared 'Holiday 2026' with you". */
  share: boolean;
  /** Invitations to AllPeers sent to this address. */
  invitation: boolean;
  /** "A message from alice is waiting for you" while we are offline. */
  waiting: boolean;
  /**
   * A digest from the hub, "3 messages are waiting for you", while letters wait for us
   * there (at most daily, and only when the count changed).
   */
  digest: boolean;
};

/**
 * `mail.status`, and the answer of `mail.confirm`.
 */
export type MailStatus = {
  /** The registered address, masked (`a***@example.org`); null: none. */
  address: string | null;
  confirmed: boolean;
  /** Null without an address. */
  preferences: MailPreferences | null;
};

/**
 * How the NAT maps an internal address to external ones (RFC 4787 / RFC 5780 §4.3).
 */
export type Mapping = "none" | "endpoint-independent" | "address-dependent" | "address-and-port-dependent" | "unknown";

/**
 * `media.progress`: a job's progress, at most a few times a second, and once when it ends
 * (`finished`, with its `summary`). Jobs the watcher starts report the same way.
 */
export type MediaProgress = {
  job: number;
  /** Files handled so far. */
  done: number;
  /** Files found (grows while folders are walked). */
  total: number;
  /** The file handled last. */
  current: string | null;
  finished: boolean;
  /** Set once the job has finished. */
  summary: MediaSummary | null;
};

/**
 * What a finished job did.
 */
export type MediaSummary = {
  /** Files seen for the first time. */
  added: number;
  /** Files whose size or modification time changed: described again. */
  updated: number;
  /** Files unchanged since the last time: skipped. */
  unchanged: number;
  /** Catalogued files no longer on disk: marked `missing`. */
  missing: number;
  /**
   * Files that could not be described (also counted as added or updated): catalogued
   * as plain Files with an `error` in their local metadata.
   */
  failed: number;
};

/**
 * A message: a Message resource (`m:<sender>:<id>`) as the API shows it.
 */
export type Message = {
  id: string;
  /** The chat's id. */
  chat: string;
  sender: PeerId;
  /** We sent it. */
  outgoing: boolean;
  body: string;
  /** The sender's clock, unix ms. */
  sent: number | null;
  /** Hybrid logical clock: the conversation's order, right across clock skew. */
  hlc: string;
  edited: boolean;
  /** Deleted: the body is empty. */
  deleted: boolean;
  read: boolean;
  /** Recipients not reached yet. */
  pending: Array<PeerId>;
  receipts: Array<Receipt>;
  /** The attached Link resource. */
  link: Resource | null;
  /** The web app (its origin) that sent it on the sender's behalf (`messages.send`). */
  via?: string;
};

/**
 * `chat.delete`'s params.
 */
export type MessageParams = {
  /** One of our own messages. */
  message: string;
};

/**
 * `hub.register`'s params.
 */
export type NameParams = {
  /** `alice` or `alice@hub`. */
  name: string;
};

/**
 * What a peer knows about its own network.
 */
export type NatFacts = {
  mapping: Mapping;
  filtering: Filtering;
  /** UDP reaches the internet (a STUN answer came back). */
  udp: boolean;
  /** The hub reached our TCP listener from outside. */
  tcp_reachable: boolean;
};

/**
 * `net.changed`'s data: one of its members.
 */
export type NetChange = { "status": StatusEvent } | { "connected": Connected } | { "disconnected": Disconnected } | { "connectivity": Record<string, unknown> | null } | { "dht_published": DhtPublished } | { "lan_peer": LanPeer };

/**
 * The endpoint is running.
 */
export type NetRunning = {
  /** True. */
  running: true;
  /** Some non-loopback interface has an address. */
  online: boolean;
  /** Non-loopback interface addresses. */
  addresses: Array<string>;
  listening: Array<Address>;
  connections: Array<ConnectionInfo>;
  /**
   * What bulk connections (file transfers over a TCP+TLS connection of their own) carried
   * since the node started.
   */
  bulk: BulkStatus;
  /** Null without a home hub. */
  hub: HubStatus | null;
  /**
   * What discovery through the home hub found (`state` unknown/checking/done, the NAT
   * report's fields; `docs/api.md`).
   */
  connectivity: Record<string, unknown>;
  /**
   * DHT and LAN discovery (`dht`, `lan`, `addresses`, `errors`; `docs/api.md`), null
   * until configured.
   */
  discovery: Record<string, unknown> | null;
};

/**
 * `net.status`'s result: stopped (identity locked, endpoint down), or running.
 */
export type NetStatus = NetStopped | NetRunning;

/**
 * The endpoint is not running.
 */
export type NetStopped = {
  /** False. */
  running: false;
  reason: string;
};

/**
 * Params of a method that takes none.
 */
export type NoParams = Record<string, never>;

/**
 * `{"found": false, "verified": true}`.
 */
export type NotFound = {
  /** False. */
  found: false;
  /** Always true: a forged, replayed or stale answer is an error instead. */
  verified: boolean;
};

/**
 * `mail.notify`'s params: a notice to a contact, if its address accepts the kind.
 */
export type NotifyParams = {
  peer: PeerId;
  notice: MailNotice;
};

/**
 * `mail.notify`'s result. `sent: false` is one answer for every reason (no address, not
 * accepted, over the recipient's limit): the sender learns nothing about the address.
 */
export type NotifyResult = {
  sent: boolean;
};

/**
 * The hub a peer is online at.
 */
export type OnlineAt = {
  name: string;
  peer_id: PeerId;
  /** `quic://ip:port`, `tcp://ip:port`. */
  addresses: Array<string>;
};

export type Op = "=" | "!=" | "<" | "<=" | ">" | ">=" | "prefix" | "contains" | "isNull" | "notNull";

/**
 * Our own presence (`presence.set`, `presence.get`).
 */
export type OwnPresence = {
  state: Availability;
  text: string;
};

/**
 * A change to a resource (JSON form of `resources.update`).
 */
export type Patch = {
  /** New values; `null` removes. */
  properties: { [key in string]: PropertyValue };
  /** Child slots to replace (an empty array clears the slot). */
  children?: { [key in string]: Array<Child> };
  /**
   * Children to add at the end of a slot, after whatever it holds when the write is
   * applied: unlike replacing the slot with what was read before, this never overwrites a
   * child someone else added meanwhile (on a shared resource, a friend's concurrent append).
   */
  append?: { [key in string]: Array<Child> };
  /** Local metadata to set; `null` removes. */
  meta?: { [key in string]: PropertyValue };
};

/**
 * How a connection was established.
 */
export type PathKind = "direct" | "callback" | "hole_punched" | "relayed";

/**
 * A node's identity: `ap` and the base32 of its Ed25519 public key.
 */
export type PeerId = string;

/**
 * `{"peer_id": PeerId}` (`presence.refused`).
 */
export type PeerIdData = {
  peer_id: PeerId;
};

/**
 * `{"peer": PeerId}`: the params of `net.connect`, `hub.relay`, `contacts.*`, `chat.open`.
 */
export type PeerParams = {
  peer: PeerId;
};

/**
 * A torrent's peer addresses learned this run, per source; each address counts once, under the source that named
 * it first.
 */
export type PeerSources = {
  /** Given with `transfers.add` (`peers`) or by the magnet link (`x.pe`). */
  given: number;
  tracker: number;
  /** The Mainline DHT (BEP 5). */
  dht: number;
  /** Peer exchange (BEP 11). */
  pex: number;
};

/**
 * `hub.watch` / `hub.unwatch`: params and result.
 */
export type PeersParams = {
  peers: Array<PeerId>;
};

/**
 * `permissions.request`'s params.
 */
export type PermissionsRequestParams = {
  scopes: Array<Scope>;
};

/**
 * `mail.preferences`' params: the kinds to change; none given reads them.
 */
export type PreferencesParams = {
  share: boolean | null;
  invitation: boolean | null;
  waiting: boolean | null;
  digest: boolean | null;
};

/**
 * A contact's presence (not stored: only true while we hear it).
 */
export type Presence = {
  online: boolean;
  state: PresenceState;
  /** The status text (≤ 280 bytes); empty while offline. */
  text: string;
};

/**
 * `presence.changed`'s data.
 */
export type PresenceChange = {
  peer_id: PeerId;
  online: boolean;
  state: PresenceState;
  text: string;
};

/**
 * `presence.set`'s params.
 */
export type PresenceParams = {
  state: Availability;
  /** ≤ 280 bytes are kept. */
  text?: string;
};

/**
 * A contact's presence as shown: `offline` unless the hub or the peer says otherwise.
 */
export type PresenceState = "online" | "away" | "busy" | "offline";

/**
 * `transfer.progress`'s data.
 */
export type ProgressEvent = {
  id: number;
  progress: TransferProgress;
};

/**
 * A property value: dates are ISO 8601 strings, binary values base64 strings.
 */
export type PropertyValue = null | boolean | number | string | Array<PropertyValue>;

/**
 * A query over resources of one type and its subtypes.
 */
export type Query = {
  type: string;
  /** All must hold. */
  where?: Array<Expr>;
  sort?: Array<SortKey>;
  limit?: number;
  offset?: number;
};

export type QueryParams = {
  query: Query;
  /** Return ids only (default: full resources). */
  ids_only?: boolean;
};

/**
 * `{"resources": [...]}`, or `{"ids": [...]}` with `ids_only` (present even when empty).
 */
export type QueryResult = { resources: Array<Resource>, } | { ids: Array<string>, };

/**
 * `chat.read`'s result.
 */
export type ReadResult = {
  chat: string;
  /** Messages marked read. */
  marked: number;
};

/**
 * A recipient's receipt of a message.
 */
export type Receipt = {
  peer_id: PeerId;
  delivered: boolean;
  read: boolean;
};

/**
 * `chat.receipt`'s data.
 */
export type ReceiptData = {
  /** The message's id. */
  message: string;
  chat: string;
  peer_id: PeerId;
  kind: ReceiptKind;
  /** How our letter went, for receipts we made on sending. */
  via?: Delivered;
};

/**
 * What a receipt says.
 */
export type ReceiptKind = "queued" | "delivered" | "read";

/**
 * `hub.register`'s result.
 */
export type RegisterResult = {
  certificate: Certificate;
};

export type RegisterSchemaParams = {
  /** File name, e.g. `Photo.rng` (1-128 of letters, digits, `.`, `_`, `-`). */
  file: string;
  /** The RELAX NG text. */
  text: string;
};

export type RegisterSchemaResult = {
  types: Array<string>;
};

/**
 * `relay.offered`'s data.
 */
export type RelayOffer = {
  from: PeerId;
  accepted: boolean;
};

/**
 * `hub.relay`'s result.
 */
export type RelayResult = {
  peer_id: PeerId;
  /** `relayed`. */
  path: PathKind;
  transport: TransportKind;
};

/**
 * `hub.resolve`'s params.
 */
export type ResolveParams = {
  /** `name`, `name@hub` or a PeerId. */
  query: string;
};

/**
 * `hub.resolve`'s result: not found, or the peer's verified directory entry.
 */
export type ResolveResult = NotFound | Resolved;

/**
 * A peer's entry in the hub's directory.
 */
export type Resolved = {
  /** True. */
  found: true;
  /** Always true: a forged, replayed or stale answer is an error instead. */
  verified: boolean;
  peer_id: PeerId;
  /** `name@hub`, when the peer registered one. */
  name: string | null;
  certificate: Certificate | null;
  /** `quic://ip:port`, `tcp://ip:port`. */
  addresses: Array<string>;
  online: boolean;
  online_at: OnlineAt | null;
  /** Unix milliseconds of the last presence, if ever seen. */
  last_seen: number | null;
};

/**
 * A resource: identity, type, typed properties, anonymous children and local metadata.
 */
export type Resource = {
  /** Empty means "assign one" when the resource is created in a store. */
  id: string;
  type: string;
  properties: { [key in string]: PropertyValue };
  children?: { [key in string]: Array<Child> };
  /** Local metadata: stored on this node only, never replicated. */
  meta?: { [key in string]: PropertyValue };
};

/**
 * `resource.changed` / `list.changed`'s data: one change, for one subscription.
 */
export type ResourceChange = {
  kind: ChangeKind;
  /** The resource changed (for item events: the list). */
  id: string;
  type: string;
  /** Change-log sequence number (absent for local-only and derived changes). */
  seq?: number;
  /** Unix milliseconds. */
  time: number;
  author: string;
  /** Only local metadata changed (nothing to replicate). */
  local: boolean;
  /** The item (item events). */
  item?: string;
  /** The item's position (item events). */
  position?: number;
  /** The subscription this change is for. */
  subscription?: number;
};

/**
 * What a resource subscription wants to hear about.
 */
export type ResourceFilter = "all" | { "type": { name: string, subtypes?: boolean, } } | { "id": string } | { "query": Query };

/**
 * `resources.subscribe`'s params.
 */
export type ResourceSubscribeParams = {
  filter: ResourceFilter;
};

/**
 * `identity.restore`'s params: a backup (the key file's JSON text, as `identity.export` or `allpeers identity
 * export` wrote it) and its passphrase (needed when it is sealed). `replace` confirms that a *different* identity
 * this node has now is put aside (kept as a file beside it); without it that is refused with `IdentityExists`.
 */
export type RestoreParams = {
  file: string;
  passphrase?: string;
  replace?: boolean;
};

/**
 * `identity.restore`'s result. The restored identity is used from the daemon's next start (`restart_needed`);
 * `replaced` names the file the previous identity was kept in.
 */
export type RestoreResult = {
  peer_id: PeerId;
  sealed: boolean;
  restart_needed: boolean;
  replaced?: string;
};

/**
 * `apps.revoke`'s params: these scopes, or (none given) every scope: the origin is forgotten
 * (its data stays).
 */
export type RevokeAppParams = {
  origin: string;
  scopes?: Array<Scope>;
};

/**
 * `shares.revoke`'s params.
 */
export type RevokeParams = {
  share: string;
  peer: PeerId;
};

/**
 * What an app may be granted. The wire names are `identity`, `contacts:read`,
 * `presence`, `messages:send`, `resources`, `shares`.
 */
export type Scope = "identity" | "contacts:read" | "presence" | "messages:send" | "resources" | "shares";

/**
 * `identity.seal`'s params: the passphrase the identity file is sealed with from now on.
 */
export type SealParams = {
  passphrase: string;
};

/**
 * `transfers.seed`'s params: share a file from disk, in place.
 */
export type SeedParams = {
  /**
   * The file or folder (absolute path); it is hashed once and never copied. A folder is one torrent of the
   * regular files under it (hidden entries, links and empty files left out).
   */
  path: string;
  /** Trackers to put in the torrent (none: peers dial us directly). */
  trackers?: Array<string>;
  /** Peers to offer it to at once (e.g. a leecher waiting for it). */
  peers?: Array<string>;
};

/**
 * `transfers.seed`'s result: the transfer and the torrent to give others.
 */
export type SeedResult = {
  transfer: Transfer;
  /** The .torrent's bytes, base64. */
  torrent: string;
  /** Where peers reach this node's BitTorrent listener (`ip:port`; an unspecified ip means every interface). */
  listen: string;
};

/**
 * `chat.send`'s params.
 */
export type SendParams = {
  chat: string;
  /** ≤ 16 KiB; may be empty with a link. */
  body?: string;
  link?: LinkParams;
};

/**
 * `mail.set_address`'s params.
 */
export type SetAddressParams = {
  /** A bare `local@domain` (ASCII, at most 254 characters). */
  address: string;
};

/**
 * `mail.set_address`'s result.
 */
export type SetAddressResult = {
  /** The address, masked. */
  address: string;
  /** True when this address was already confirmed (no mail is sent). */
  confirmed: boolean;
  /** How long the mailed code works (null when already confirmed). */
  expires_in_secs: number | null;
};

/**
 * `files.auto_download.set`'s params: a share's policy (both `share` and `policy`), the size `small` means, or
 * both.
 */
export type SetAutoDownloadParams = {
  share?: string;
  policy?: AutoDownloadPolicy;
  max_bytes?: number;
};

/**
 * `hub.set_home`'s params: exactly one of `hub` (`<hub PeerId>@quic://ip:port[,tcp://ip:port…]`) and `invite`
 * (an `apinvite1…` code: its inviter's hub).
 */
export type SetHomeParams = {
  hub?: string;
  invite?: string;
};

/**
 * `transfers.set_limits`'s params: one transfer's limits (the global ones apply too).
 */
export type SetLimitsParams = {
  id: number;
  limits: Limits;
};

/**
 * `transfers.set_priority`'s params: the transfer and its new priority (higher starts first when transfers
 * wait for a download slot; -1000…1000).
 */
export type SetPriorityParams = {
  id: number;
  priority: number;
};

/**
 * A share as `shares.list` / `shares.get` show it.
 */
export type Share = {
  id: string;
  /** The root resource's id. */
  resource: string;
  title: string;
  state: ShareState;
  /** The owner (who created it); unknown until the first sync of an offered share. */
  owner: PeerId | null;
  /** Who offered it to us (ourselves for our own). */
  from: PeerId;
  /** Our level (none once revoked). */
  level: ShareLevel | null;
  members: Array<ShareMember>;
};

/**
 * One share's policy (shares not listed have the default, `small`).
 */
export type ShareAutoDownload = {
  share: string;
  policy: AutoDownloadPolicy;
};

/**
 * A member's level: read, write (edit the shared resources), admin (also add and revoke
 * members).
 */
export type ShareLevel = "read" | "write" | "admin";

/**
 * A member and its level.
 */
export type ShareMember = {
  peer: PeerId;
  level: ShareLevel;
};

/**
 * `{"share": id}`: the params of `shares.get`, `shares.accept`, `shares.leave`.
 */
export type ShareParams = {
  share: string;
};

/**
 * `share.received`'s data: who offers what.
 */
export type ShareReceived = {
  share: string;
  resource: string;
  title: string;
  from: PeerId;
};

/**
 * Where a share stands on this node.
 */
export type ShareState = "offered" | "accepted";

/**
 * One share's sync state, in `sync.status`.
 */
export type ShareSync = {
  share: string;
  title: string;
  members: Array<ShareMember>;
  /** Members with a live connection now. */
  online: Array<PeerId>;
  /** When a reconciliation last completed (ms since the epoch). */
  last_sync_ms: number | null;
  /** Ops waiting for parents plus ops deferred (stamped ahead of our clock). */
  ops_pending: number;
  /** Ops held (every op kept, live or superseded). */
  ops: number;
  /** Bytes of the ops held, in wire form. */
  bytes: number;
};

/**
 * `daemon.shutdown`'s result: always `{"stopping": true}`.
 */
export type ShutdownResult = {
  stopping: true;
};

export type SortKey = {
  prop: string;
  desc?: boolean;
};

/**
 * `net.speedtest`'s params.
 */
export type SpeedtestParams = {
  peer: PeerId;
  /** Bytes to send each way (absent: 16 MiB; at most 1 GiB). */
  bytes?: number | null;
};

/**
 * `net.speedtest`'s result: throughput each way over the connection to the peer.
 */
export type SpeedtestResult = {
  peer: PeerId;
  upload_bytes: number;
  download_bytes: number;
  /** Bytes per second, to the peer (one round trip included). */
  upload_rate: number;
  /** Bytes per second, from the peer. */
  download_rate: number;
  elapsed_ms: number;
};

/**
 * A change of the interface addresses or of being online.
 */
export type StatusEvent = { "event": "online" } | { "event": "offline" } | { "event": "address_added", address: string, } | { "event": "address_removed", address: string, };

export type StatusResult = {
  version: string;
  pid: number;
  uptime_ms: number;
  data_dir: string;
  socket: string;
  clients: number;
  identity: IdentityInfo;
};

export type SubscribeParams = {
  topics: Array<string>;
};

export type SubscribeResult = {
  /** The client's subscriptions after the call. */
  topics: Array<string>;
};

/**
 * `resources.subscribe`'s result and `resources.unsubscribe`'s params.
 */
export type SubscriptionParams = {
  subscription: number;
};

/**
 * `sync.progress`'s data: one reconciliation with one peer completed.
 */
export type SyncProgress = {
  share: string;
  peer: PeerId;
  round_trips: number;
  sent: number;
  received: number;
  /** Ops the peer claimed and did not send in time (asked again next round). */
  missing: number;
};

/**
 * `sync.status`'s result.
 */
export type SyncStatus = {
  shares: Array<ShareSync>;
};

/**
 * A transfer as `transfers.list` / `transfers.get` show it.
 */
export type Transfer = {
  id: number;
  kind: TransferKind;
  name: string;
  /** Hex: a torrent's info-hash (SHA-1), a file's BLAKE3 hash. */
  info_hash: string;
  /** Where the files are. */
  dir: string;
  state: TransferState;
  /** Why it is paused, retrying or failed. */
  reason: string | null;
  priority: number;
  /** A user's own file, seeded where it is. */
  seed_in_place: boolean;
  limits: Limits;
  progress: TransferProgress;
  /**
   * A shared file's sources this run (peer ids) and the verified bytes each gave: the private swarm's members
   * that served it. Absent for torrents and before the transfer runs.
   */
  sources?: Array<TransferSource>;
};

/**
 * `{"id": …}`: the params of `transfers.get`, `.pause`, `.resume`.
 */
export type TransferIdParams = {
  id: number;
};

/**
 * What a transfer fetches.
 */
export type TransferKind = "torrent" | "file";

/**
 * A transfer's numbers.
 */
export type TransferProgress = {
  total_bytes: number;
  /** Verified and on disk. */
  done_bytes: number;
  /** Payload received and sent since the transfer started this run. */
  downloaded: number;
  uploaded: number;
  down_rate: number;
  up_rate: number;
  /** Connected peers. */
  peers: number;
  /** Seconds left at the current rate, rounded up; null when unknown or done. */
  eta_secs: number | null;
  /** Where the peer addresses known this run came from (torrents; all zero for shared files). */
  peer_sources: PeerSources;
};

/**
 * One source of a shared file's transfer.
 */
export type TransferSource = {
  peer: string;
  /** Verified bytes it gave this run. */
  bytes: number;
};

/**
 * Where a transfer is.
 */
export type TransferState = "queued" | "fetching_metadata" | "downloading" | "seeding" | "paused" | "retrying" | "failed";

/**
 * Which transport carries a connection.
 */
export type TransportKind = "quic" | "tcp";

/**
 * `schemas.describe`'s params.
 */
export type TypeParams = {
  type: string;
};

/**
 * `chat.typing`'s data.
 */
export type TypingData = {
  chat: string;
  peer_id: PeerId;
};

export type UnlockParams = {
  passphrase: string;
};

/**
 * `mail.unsubscribe`'s result: the address gets no more mail and is forgotten.
 */
export type UnsubscribeResult = {
  unsubscribed: boolean;
};

/**
 * `media.unwatch`'s params.
 */
export type UnwatchParams = {
  /** A path as `media.watched` lists it, or as given to `media.add`. */
  path: string;
};

/**
 * `media.unwatch`'s result.
 */
export type UnwatchResult = {
  /** False when the path was not watched. */
  removed: boolean;
};

export type UpdateParams = {
  id: string;
  patch: Patch;
};

/**
 * One peer taking data from us (the upload monitor), fastest first.
 */
export type Upload = {
  /** The transfer it takes from. */
  id: number;
  addr: string;
  /** Its BitTorrent client, when it said. */
  client: string | null;
  uploaded: number;
  up_rate: number;
};

/**
 * A path the catalog keeps up to date (`media.watched`).
 */
export type WatchedPath = {
  /** Absolute and canonical: a folder or a single file. */
  path: string;
  /** Its sub-folders are watched too. */
  recursive: boolean;
  /**
   * Why it is not watched now (the path is gone, or the system's limit on watches was
   * reached); `null` while it is.
   */
  error: string | null;
};
