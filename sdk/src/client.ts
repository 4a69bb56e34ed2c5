import type {
  AppContact,
  AppEvents,
  AppIdentity,
  AppMethodName,
  AppParamsOf,
  AppPermissions,
  AppResultOf,
  AppSent,
  AppTopicName,
  Patch,
  Query,
  Resource,
  ResourceChange,
  ResourceFilter,
  Scope,
  Share,
  ShareLevel,
} from "./api.gen.js";
import { AllPeersError } from "./errors.js";

/** The object the AllPeers extension announces to a page (EIP-1193 style). */
export interface Provider {
  request(args: { method: string; params?: unknown }): Promise<unknown>;
  on(event: string, listener: (data: unknown) => void): unknown;
  removeListener(event: string, listener: (data: unknown) => void): unknown;
}

/** The announcement's `info` (EIP-6963 style). */
export interface ProviderInfo {
  uuid: string;
  name: string;
  icon: string;
  rdns: string;
}

/** A resource to create: `id` may be empty (AllPeers assigns one). */
export type NewResource = AppParamsOf<"resources.create">["resource"];

/** A daemon topic an app may listen to with `on` (each needs its scope); resource events come through `resources.subscribe`. */
export type DaemonTopic = Exclude<AppTopicName, "resource.changed" | "list.changed">;

/** Events of the line to AllPeers itself, and the SDK's own. */
export interface LineEvents {
  /** The line to the daemon is back; the SDK has re-subscribed everything. Re-read your data. */
  connect: undefined;
  /** The extension lost its line to the daemon (`{code: 4900, message}`); calls fail until `connect`. */
  disconnect: { code: number; message?: string };
  /** The user granted or revoked scopes for this origin (in the extension's Settings). */
  permissionsChanged: { scopes: Array<Scope> };
  /** A re-subscription after a reconnect failed (e.g. the grant was revoked meanwhile). */
  error: AllPeersError;
}

export type EventMap = LineEvents & { [T in DaemonTopic]: AppEvents[T] };
export type EventName = keyof EventMap;
export type Listener<E extends EventName> = (data: EventMap[E]) => void;

/** A live `resources.subscribe`: survives reconnects until `unsubscribe()`. */
export interface Subscription {
  readonly filter: ResourceFilter;
  unsubscribe(): Promise<void>;
}

const LINE_EVENTS: ReadonlySet<string> = new Set(["connect", "disconnect", "permissionsChanged", "error"]);
/** The topics `resources.subscribe` delivers, each change naming its subscription. */
const RESOURCE_TOPICS = ["resource.changed", "list.changed"] as const;

type AnyListener = (data: unknown) => void;

interface TopicState {
  listeners: Set<AnyListener>;
  /** The daemon subscription (daemon topics only): settles once `events.subscribe` answered. */
  ready: Promise<void>;
}

class LiveSubscription implements Subscription {
  /** The daemon's id of the current session's subscription (changes on reconnect). */
  id = -1;
  active = true;
  constructor(
    readonly filter: ResourceFilter,
    readonly onChange: (change: ResourceChange) => void,
    private readonly client: AllPeers,
  ) {}
  unsubscribe(): Promise<void> {
    return this.client._dropSubscription(this);
  }
}

/** Reports an exception thrown by an app's listener without stopping the other listeners. */
function report(error: unknown): void {
  const reportError = (globalThis as { reportError?: (e: unknown) => void }).reportError;
  if (typeof reportError === "function") reportError(error);
  else console.error("AllPeers listener failed:", error);
}

/**
 * A connection to AllPeers for this page's origin. Get one with `connect()`.
 * Every method rejects with an `AllPeersError`.
 */
export class AllPeers {
  readonly provider: Provider;
  readonly info: ProviderInfo;
  readonly resources: ResourcesApi;

  #topics = new Map<string, TopicState>();
  /** Handlers this client installed on the provider, by event, to remove on `close()`. */
  #installed = new Map<string, AnyListener>();
  #subscriptions = new Set<LiveSubscription>();
  #byId = new Map<number, LiveSubscription>();
  #lineLost = false;
  #closed = false;
  #namespace: string | undefined;

  constructor(provider: Provider, info: ProviderInfo) {
    this.provider = provider;
    this.info = info;
    this.resources = new ResourcesApi(this);
    this.#install("disconnect", (data) => {
      this.#lineLost = true;
      this.#emit("disconnect", data);
    });
    this.#install("connect", () => {
      // The provider also says `connect` when its line first opens: news only after a loss.
      if (!this.#lineLost) return;
      this.#lineLost = false;
      void this.#resubscribe().then(() => this.#emit("connect", undefined));
    });
    this.#install("permissionsChanged", (data) => this.#emit("permissionsChanged", data));
  }

  /** Calls any app method of the contract, typed by its name. */
  async request<M extends AppMethodName>(method: M, params: AppParamsOf<M>): Promise<AppResultOf<M>> {
    if (this.#closed) throw new AllPeersError(4900, "this AllPeers client was closed");
    try {
      return (await this.provider.request({ method, params })) as AppResultOf<M>;
    } catch (error) {
      throw AllPeersError.from(error);
    }
  }

  /** The scopes this origin holds now. */
  permissions(): Promise<AppPermissions> {
    return this.request("permissions.get", {});
  }

  /**
   * Asks the user for scopes (a prompt in an AllPeers window; nothing is asked for scopes
   * already granted). Rejects with `UserRejected` (4001) when the user says no.
   */
  async requestPermissions(scopes: Array<Scope>): Promise<AppPermissions> {
    try {
      return await this.request("permissions.request", { scopes });
    } catch (error) {
      const e = AllPeersError.from(error);
      if (e.code !== 4001) throw e;
      throw new AllPeersError(
        4001,
        `The user declined access to ${scopes.join(", ")} (${e.message}) Ask again only when the user acts (e.g. a button), ` +
          "and explain first why your app needs it; AllPeers shows one prompt at a time.",
        e.data,
      );
    }
  }

  /** This user's PeerId and name [identity]. */
  identity(): Promise<AppIdentity> {
    return this.request("identity.get", {});
  }

  /** The user's accepted contacts; `online`/`state` only with the `presence` scope [contacts:read]. */
  contacts(): Promise<Array<AppContact>> {
    return this.request("contacts.list", {});
  }

  /** Sends a chat message to a contact; the chat shows it came via this origin [messages:send]. */
  sendMessage(peer: string | { peer_id: string }, text: string): Promise<AppSent> {
    return this.request("messages.send", { peer_id: peerIdOf(peer), text });
  }

  /**
   * This app's type-name prefix (`app_<hash>_`, derived by AllPeers from the origin): every type
   * the app declares is named `<namespace><Name>`.
   */
  async namespace(): Promise<string> {
    this.#namespace ??= (await this.permissions()).namespace;
    return this.#namespace;
  }

  /**
   * Registers (or evolves) this app's types from RELAX NG text [resources]. Pass a function to
   * get the namespace its type names need: `registerSchema((ns) => boardSchema(ns))`, where the
   * schema declares `ap:type="${ns}Board"`.
   * `file` names the schema file (default `schema`): registering the same file again evolves it.
   * Answers the types' full names.
   */
  async registerSchema(
    schema: string | ((namespace: string) => string),
    file?: string,
  ): Promise<AppResultOf<"schemas.register">> {
    const text = typeof schema === "function" ? schema(await this.namespace()) : schema;
    const params: AppParamsOf<"schemas.register"> = { schema: text };
    if (file !== undefined) params.file = file;
    return this.request("schemas.register", params);
  }

  /** Shares one of this app's resources with contacts, at `role` (default `read`: give `write` to let them edit) [shares]. */
  share(resource: string | { id: string }, peers: Array<string | { peer_id: string }>, role?: ShareLevel): Promise<Share> {
    const params: AppParamsOf<"shares.create"> = { resource: idOf(resource), members: peers.map(peerIdOf) };
    if (role !== undefined) params.role = role;
    return this.request("shares.create", params);
  }

  /** The shares of this app's resources, own and received [shares]. */
  shares(): Promise<Array<Share>> {
    return this.request("shares.list", {});
  }

  /** Takes a member out of a share of this app [shares]. */
  revokeShare(share: string | { id: string }, peer: string | { peer_id: string }): Promise<Share> {
    return this.request("shares.revoke", { share: idOf(share), peer_id: peerIdOf(peer) });
  }

  /**
   * Listens to an event: a line event (`connect`, `disconnect`, `permissionsChanged`, `error`)
   * or a daemon topic (`presence.changed` [presence], `contact.changed` [contacts:read] ...).
   * Resolves, once the daemon subscribed this session, with a function that removes the listener;
   * rejects (e.g. `Unauthorized` without the scope) with the listener not added.
   */
  async on<E extends EventName>(event: E, listener: Listener<E>): Promise<() => Promise<void>> {
    const fn = listener as AnyListener;
    const off = () => this.off(event, listener);
    let state = this.#topics.get(event);
    if (state) {
      state.listeners.add(fn);
      try {
        await state.ready;
      } catch (error) {
        state.listeners.delete(fn);
        throw error;
      }
      return off;
    }
    if (LINE_EVENTS.has(event)) {
      this.#topics.set(event, { listeners: new Set([fn]), ready: Promise.resolve() });
      return off;
    }
    const ready = this.request("events.subscribe", { topics: [event] }).then(() => {});
    state = { listeners: new Set([fn]), ready };
    this.#topics.set(event, state);
    this.#install(event, (data) => this.#emit(event, data));
    try {
      await ready;
    } catch (error) {
      if (this.#topics.get(event) === state) {
        this.#topics.delete(event);
        this.#uninstall(event);
      }
      throw error;
    }
    return off;
  }

  /** Removes a listener; the last one of a daemon topic unsubscribes the session from it. */
  async off<E extends EventName>(event: E, listener: Listener<E>): Promise<void> {
    const state = this.#topics.get(event);
    if (!state || !state.listeners.delete(listener as AnyListener) || state.listeners.size > 0) return;
    this.#topics.delete(event);
    if (LINE_EVENTS.has(event)) return;
    this.#uninstall(event);
    // Losing the line loses the daemon's subscriptions too: nothing left to undo then.
    if (!this.#lineLost) await this.request("events.unsubscribe", { topics: [event] }).catch(() => {});
  }

  /** Drops every listener and subscription of this client; later calls reject. */
  async close(): Promise<void> {
    if (this.#closed) return;
    const subscriptions = [...this.#subscriptions];
    const topics = [...this.#topics.keys()].filter((t) => !LINE_EVENTS.has(t));
    await Promise.allSettled([
      ...subscriptions.map((s) => s.unsubscribe()),
      ...(topics.length && !this.#lineLost ? [this.request("events.unsubscribe", { topics })] : []),
    ]);
    this.#closed = true;
    for (const event of [...this.#installed.keys()]) this.#uninstall(event);
    this.#topics.clear();
  }

  /** @internal `resources.subscribe` for `ResourcesApi`. */
  async _subscribe(filter: ResourceFilter, onChange: (change: ResourceChange) => void): Promise<Subscription> {
    const subscription = new LiveSubscription(filter, onChange, this);
    this.#installResourceTopics();
    this.#subscriptions.add(subscription);
    try {
      await this.#open(subscription);
    } catch (error) {
      this.#subscriptions.delete(subscription);
      this.#uninstallResourceTopicsIfIdle();
      throw error;
    }
    return subscription;
  }

  /** @internal `Subscription.unsubscribe`. */
  async _dropSubscription(subscription: LiveSubscription): Promise<void> {
    if (!subscription.active) return;
    subscription.active = false;
    this.#subscriptions.delete(subscription);
    this.#byId.delete(subscription.id);
    this.#uninstallResourceTopicsIfIdle();
    if (!this.#lineLost && subscription.id >= 0) {
      await this.request("resources.unsubscribe", { subscription: subscription.id }).catch(() => {});
    }
  }

  async #open(subscription: LiveSubscription): Promise<void> {
    const { subscription: id } = await this.request("resources.subscribe", { filter: subscription.filter });
    if (!subscription.active) {
      // Unsubscribed while the daemon was answering.
      await this.request("resources.unsubscribe", { subscription: id }).catch(() => {});
      return;
    }
    this.#byId.delete(subscription.id);
    subscription.id = id;
    this.#byId.set(id, subscription);
  }

  /** After a reconnect: the new daemon session has none of our subscriptions; make them again. */
  async #resubscribe(): Promise<void> {
    this.#byId.clear();
    for (const s of this.#subscriptions) s.id = -1;
    const topics = [...this.#topics.keys()].filter((t) => !LINE_EVENTS.has(t));
    // One call per topic: a scope revoked meanwhile fails its own topic only.
    const work: Array<Promise<unknown>> = [
      ...[...this.#subscriptions].map((s) => this.#open(s)),
      ...topics.map((topic) => this.request("events.subscribe", { topics: [topic] })),
    ];
    for (const result of await Promise.allSettled(work)) {
      if (result.status === "rejected") this.#emit("error", AllPeersError.from(result.reason));
    }
  }

  #installResourceTopics(): void {
    for (const topic of RESOURCE_TOPICS) {
      if (this.#installed.has(topic)) continue;
      this.#install(topic, (data) => {
        const change = data as ResourceChange;
        const subscription = typeof change?.subscription === "number" ? this.#byId.get(change.subscription) : undefined;
        if (!subscription) return;
        try {
          subscription.onChange(change);
        } catch (error) {
          report(error);
        }
      });
    }
  }

  #uninstallResourceTopicsIfIdle(): void {
    if (this.#subscriptions.size > 0) return;
    for (const topic of RESOURCE_TOPICS) this.#uninstall(topic);
  }

  #install(event: string, handler: AnyListener): void {
    this.#uninstall(event);
    this.#installed.set(event, handler);
    this.provider.on(event, handler);
  }

  #uninstall(event: string): void {
    const handler = this.#installed.get(event);
    if (!handler) return;
    this.#installed.delete(event);
    this.provider.removeListener(event, handler);
  }

  #emit(event: string, data: unknown): void {
    const state = this.#topics.get(event);
    if (!state) {
      if (event === "error") report(data);
      return;
    }
    for (const listener of [...state.listeners]) {
      try {
        listener(data);
      } catch (error) {
        report(error);
      }
    }
  }
}

/** `client.resources`: this app's own resources and those shared with the user [resources]. */
export class ResourcesApi {
  constructor(private readonly client: AllPeers) {}

  /** Creates a resource of one of this app's types (`id` may be empty: the daemon assigns one). */
  create(resource: NewResource): Promise<Resource> {
    return this.client.request("resources.create", { resource });
  }

  /** A resource by id, or null (also for ids of types this app cannot see). */
  get(id: string): Promise<Resource | null> {
    return this.client.request("resources.get", { id });
  }

  /** Patches a resource: properties to set (`null` removes), child slots to replace. */
  update(id: string, patch: Patch): Promise<Resource> {
    return this.client.request("resources.update", { id, patch });
  }

  /** Deletes a resource (a shared one is deleted for every member). */
  async delete(id: string): Promise<void> {
    await this.client.request("resources.delete", { id });
  }

  /** The resources matching a query (of this app's types). */
  async query(query: Query): Promise<Array<Resource>> {
    const result = await this.client.request("resources.query", { query });
    return "resources" in result ? result.resources : [];
  }

  /**
   * Calls `onChange` for every change of the matching resources (local or replicated from a
   * friend) until `unsubscribe()`; kept across reconnects.
   */
  subscribe(filter: ResourceFilter, onChange: (change: ResourceChange) => void): Promise<Subscription> {
    return this.client._subscribe(filter, onChange);
  }
}

function idOf(value: string | { id: string }): string {
  return typeof value === "string" ? value : value.id;
}

function peerIdOf(value: string | { peer_id: string }): string {
  return typeof value === "string" ? value : value.peer_id;
}
