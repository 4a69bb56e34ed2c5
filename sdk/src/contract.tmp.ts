// TEMPORARY: the app session's part of the API contract, written from APPS_CONTRACT.md until
// apps-daemon generates sdk/src/api.gen.ts. Deleted when the generated file lands.

export const API_VERSION = 1;

export type PeerId = string;
export type PropertyValue = null | boolean | number | string | Array<PropertyValue>;
export type NoParams = Record<string, never>;
export type JsonValue = number | string | boolean | Array<JsonValue> | { [key in string]: JsonValue } | null;
export type Scope = "identity" | "contacts:read" | "presence" | "messages:send" | "resources" | "shares";
export const SCOPES: readonly Scope[] = ["identity", "contacts:read", "presence", "messages:send", "resources", "shares"];

export type PermissionsRequestParams = { scopes: Array<Scope> };
export type AppPermissions = { origin: string; scopes: Array<Scope>; namespace: string };
export type AppIdentity = { peer_id: PeerId; name?: string | null };
export type PresenceState = "online" | "away" | "busy" | "offline";
export type AppContact = { peer_id: PeerId; name?: string | null; online?: boolean; state?: PresenceState };
export type AppSendParams = { peer_id: PeerId; text: string };
export type AppSent = { id: string; chat: string };
export type AppSchemaParams = { schema: string; file?: string };
export type RegisterSchemaResult = { types: Array<string> };
export type Child = { properties: { [key in string]: PropertyValue } };
export type Resource = {
  id: string;
  type: string;
  properties: { [key in string]: PropertyValue };
  children?: { [key in string]: Array<Child> };
  meta?: { [key in string]: PropertyValue };
};
export type CreateParams = { resource: Resource };
export type IdParams = { id: string };
export type Patch = {
  properties: { [key in string]: PropertyValue };
  children?: { [key in string]: Array<Child> };
  meta?: { [key in string]: PropertyValue };
};
export type UpdateParams = { id: string; patch: Patch };
export type Op = "eq" | "ne" | "lt" | "le" | "gt" | "ge" | "contains" | "startsWith" | "exists";
export type Cond = { name: string; op: Op; value?: PropertyValue };
export type Expr = { prop: Cond } | { meta: Cond } | { any: Array<Expr> } | { all: Array<Expr> } | { not: Expr } | { isA: string } | { ids: Array<string> };
export type SortKey = { prop: string; desc?: boolean };
export type Query = { type: string; where?: Array<Expr>; sort?: Array<SortKey>; limit?: number; offset?: number };
export type QueryParams = { query: Query; ids_only?: boolean };
export type QueryResult = { resources: Array<Resource> } | { ids: Array<string> };
export type ResourceFilter = "all" | { type: { name: string; subtypes?: boolean } } | { id: string } | { query: Query };
export type ResourceSubscribeParams = { filter: ResourceFilter };
export type SubscriptionParams = { subscription: number };
export type ShareLevel = "read" | "write" | "admin";
export type ShareMember = { peer: PeerId; level: ShareLevel };
export type AppShareParams = { resource: string; members: Array<PeerId>; role?: ShareLevel };
export type ShareState = "offered" | "accepted";
export type Share = {
  id: string;
  resource: string;
  title: string;
  state: ShareState;
  owner: PeerId | null;
  from: PeerId;
  level: ShareLevel | null;
  members: Array<ShareMember>;
};
export type AppRevokeShareParams = { share: string; peer_id: PeerId };
export type SubscribeParams = { topics: Array<string> };
export type SubscribeResult = { topics: Array<string> };
export type ChangeKind = "created" | "updated" | "deleted" | "itemAdded" | "itemRemoved" | "itemMoved";
export type ResourceChange = {
  kind: ChangeKind;
  id: string;
  type: string;
  seq?: number;
  time: number;
  author: string;
  local: boolean;
  item?: string;
  position?: number;
  subscription?: number;
};
export type PresenceChange = { peer_id: PeerId; online: boolean; state: PresenceState; text: string };

export interface AppMethods {
  "permissions.get": { params: NoParams; result: AppPermissions };
  "permissions.request": { params: PermissionsRequestParams; result: AppPermissions };
  "identity.get": { params: NoParams; result: AppIdentity };
  "contacts.list": { params: NoParams; result: Array<AppContact> };
  "messages.send": { params: AppSendParams; result: AppSent };
  "schemas.register": { params: AppSchemaParams; result: RegisterSchemaResult };
  "resources.create": { params: CreateParams; result: Resource };
  "resources.get": { params: IdParams; result: Resource | null };
  "resources.update": { params: UpdateParams; result: Resource };
  "resources.delete": { params: IdParams; result: null };
  "resources.query": { params: QueryParams; result: QueryResult };
  "resources.subscribe": { params: ResourceSubscribeParams; result: SubscriptionParams };
  "resources.unsubscribe": { params: SubscriptionParams; result: boolean };
  "shares.create": { params: AppShareParams; result: Share };
  "shares.list": { params: NoParams; result: Array<Share> };
  "shares.revoke": { params: AppRevokeShareParams; result: Share };
  "events.subscribe": { params: SubscribeParams; result: SubscribeResult };
  "events.unsubscribe": { params: SubscribeParams; result: SubscribeResult };
}
export type AppMethodName = keyof AppMethods;
export type AppParamsOf<M extends AppMethodName> = AppMethods[M]["params"];
export type AppResultOf<M extends AppMethodName> = AppMethods[M]["result"];

export interface AppEvents {
  "presence.changed": PresenceChange;
  "contact.changed": AppContact;
  "resource.changed": ResourceChange;
  "list.changed": ResourceChange;
  "share.changed": Share;
}
export type AppTopicName = keyof AppEvents;

export const ErrorCode = {
  InvalidParams: -32602,
  Internal: -32603,
  HelloRequired: -32000,
  InvalidResource: -32010,
  NotFound: -32011,
  Exists: -32012,
  SchemaRefused: -32013,
  InvalidQuery: -32014,
  NoHub: -32027,
  NotAContact: -32030,
  TooLarge: -32034,
  NotAllowed: -32040,
  ShareNotFound: -32041,
  UserRejected: 4001,
  Unauthorized: 4100,
  Unsupported: 4200,
  Disconnected: 4900,
  RateLimited: -32080,
  BadOrigin: -32081,
} as const;
export type ErrorCodeName = keyof typeof ErrorCode;
