// Generated from allpeers-model's api::contract (the app-facing tables) by
// host/model/tests/typescript.rs — do not edit.
// Regenerate: ALLPEERS_BLESS=1 cargo test -p allpeers-model --features ts --test typescript
/* eslint-disable */

/** The local API version this file describes. */
export const API_VERSION = 1;

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

/** The error codes an app may see (`error.code`), by name. */
export const ErrorCode = {
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
  /** invalid params: params of the wrong shape (the field and expectation named), unknown topic, bad log filter, a request the store refuses (`BadRequest`) */
  InvalidParams: -32602,
  /** internal: the daemon failed (store, SQL, a task); logged */
  Internal: -32603,
  /** hello required: a method other than `hello` came first */
  HelloRequired: -32000,
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
  /** no hub: no home hub is configured, or the node is offline (identity locked); contacts, presence and chat need the node online */
  NoHub: -32027,
  /** not a contact: not an accepted contact (`chat.open`, group members) */
  NotAContact: -32030,
  /** too large: a message, group title, request or status text over its limit */
  TooLarge: -32034,
  /** not allowed: the share does not allow it: a read member writing, a non-admin adding or revoking, revoking the owner, sharing what we cannot share */
  NotAllowed: -32040,
  /** share not found: no share with that id on this node (or none offered) */
  ShareNotFound: -32041,
} as const;

export type ErrorCodeName = keyof typeof ErrorCode;

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
 * What happened to a resource or a list.
 */
export type ChangeKind = "created" | "updated" | "deleted" | "itemAdded" | "itemRemoved" | "itemMoved";

/**
 * An anonymous complex value owned by its parent.
 */
export type Child = {
  properties: { [key in string]: PropertyValue };
  children?: { [key in string]: Array<Child> };
};

/**
 * A comparison of a property (or metadata entry) with a value.
 */
export type Cond = {
  name: string;
  op: Op;
  value?: PropertyValue;
};

export type CreateParams = {
  resource: Resource;
};

/**
 * A condition.
 */
export type Expr = { "prop": Cond } | { "meta": Cond } | { "any": Array<Expr> } | { "all": Array<Expr> } | { "not": Expr } | { "isA": string } | { "ids": Array<string> } | { "listsContaining": Query } | { "itemsOf": Query };

export type IdParams = {
  id: string;
};

/**
 * Params of a method that takes none.
 */
export type NoParams = Record<string, never>;

export type Op = "=" | "!=" | "<" | "<=" | ">" | ">=" | "prefix" | "contains" | "isNull" | "notNull";

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
 * A node's identity: `ap` and the base32 of its Ed25519 public key.
 */
export type PeerId = string;

/**
 * `permissions.request`'s params.
 */
export type PermissionsRequestParams = {
  scopes: Array<Scope>;
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
 * A contact's presence as shown: `offline` unless the hub or the peer says otherwise.
 */
export type PresenceState = "online" | "away" | "busy" | "offline";

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

export type RegisterSchemaResult = {
  types: Array<string>;
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
 * What an app may be granted. The wire names are `identity`, `contacts:read`,
 * `presence`, `messages:send`, `resources`, `shares`.
 */
export type Scope = "identity" | "contacts:read" | "presence" | "messages:send" | "resources" | "shares";

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
 * Where a share stands on this node.
 */
export type ShareState = "offered" | "accepted";

export type SortKey = {
  prop: string;
  desc?: boolean;
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

export type UpdateParams = {
  id: string;
  patch: Patch;
};
