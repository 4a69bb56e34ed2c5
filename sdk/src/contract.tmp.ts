// TEMPORARY: the app session's part of the API contract, written from APPS_CONTRACT.md until
// apps-daemon generates sdk/src/api.gen.ts. Deleted when the generated file lands.

export const API_VERSION = 1;

export type PeerId = string;
export type PropertyValue = null | boolean | number | string | Array<PropertyValue>;
export type NoParams = Record<string, never>;
export type JsonValue = number | string | boolean | Array<JsonValue> | { [key in string]: JsonValue } | null;
export type Scope = "identity" | "contacts:read" | "presence" | "messages:send" | "resources" | "shares";

export type ScopesParams = { scopes: Array<Scope> };
export type Permissions = { origin: string; scopes: Array<Scope> };
export type AppIdentity = { peer_id: PeerId; name?: string | null };
export type PresenceState = "online" | "away" | "busy" | "offline";
export type AppContact = { peer_id: PeerId; name?: string | null; online?: boolean; state?: PresenceState };
export type AppMessageParams = { peer_id: PeerId; text: string };
export type AppMessageSent = { id: string; chat: string };
export type AppSchemaParams = { schema: string };
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
export type AppRevokeParams = { share: string; peer_id: PeerId };
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
export type Contact = { peer_id: PeerId; name: string | null; state: string };

export interface Methods {
  "permissions.get": { params: NoParams; result: Permissions };
  "permissions.request": { params: ScopesParams; result: Permissions };
  "identity.get": { params: NoParams; result: AppIdentity };
  "contacts.list": { params: NoParams; result: Array<AppContact> };
  "messages.send": { params: AppMessageParams; result: AppMessageSent };
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
  "shares.revoke": { params: AppRevokeParams; result: Share };
  "events.subscribe": { params: SubscribeParams; result: SubscribeResult };
  "events.unsubscribe": { params: SubscribeParams; result: SubscribeResult };
}
export type MethodName = keyof Methods;
export type ParamsOf<M extends MethodName> = Methods[M]["params"];
export type ResultOf<M extends MethodName> = Methods[M]["result"];

export interface Events {
  "presence.changed": PresenceChange;
  "contact.changed": Contact;
  "resource.changed": ResourceChange;
  "list.changed": ResourceChange;
  "share.changed": Share;
}
export type TopicName = keyof Events;

export const ErrorCode = {
  InvalidParams: -32602,
  Internal: -32603,
  NotFound: -32011,
  InvalidResource: -32010,
  SchemaRefused: -32013,
  NotAllowed: -32040,
  UserRejected: 4001,
  Unauthorized: 4100,
  Unsupported: 4200,
  Disconnected: 4900,
  RateLimited: -32080,
  BadOrigin: -32081,
} as const;
export type ErrorCodeName = keyof typeof ErrorCode;
