// @allpeers/sdk: a web page's way to AllPeers (identity, contacts, presence, replicated data)
// through the provider the AllPeers extension announces to pages that ask for it.
import type { Scope } from "./api.gen.js";
import { AllPeers, type Provider, type ProviderInfo } from "./client.js";
import { AllPeersError } from "./errors.js";

export * from "./client.js";
export { AllPeersError, type SdkErrorName } from "./errors.js";
// The contract's app-facing part, generated from the daemon's (host/model/src/api): constants and every type.
export { API_VERSION, APP_METHOD_SCOPES, APP_TOPIC_SCOPES, ErrorCode, SCOPES } from "./api.gen.js";
export type * from "./api.gen.js";

export const REQUEST_EVENT = "allpeers:requestProvider";
export const ANNOUNCE_EVENT = "allpeers:announceProvider";
/** The announcement's `info.rdns`: other announcements are ignored. */
export const RDNS = "org.allpeers";

export interface DiscoverOptions {
  /** How long to wait for the extension's answer (ms, default 1000). */
  timeout?: number;
  /** Where to ask (default: `window`); tests pass their own EventTarget. */
  target?: EventTarget;
}

export interface Announcement {
  info: ProviderInfo;
  provider: Provider;
}

/**
 * Asks the page for the AllPeers provider (the extension answers only when asked). Rejects with
 * `AllPeersError` `NotInstalled` when nothing answered in time.
 */
export function discover(options: DiscoverOptions = {}): Promise<Announcement> {
  const target = options.target ?? (globalThis as unknown as EventTarget);
  const timeout = options.timeout ?? 1000;
  return new Promise((resolve, reject) => {
    const onAnnounce = (event: Event) => {
      const found = announcementOf(event);
      if (!found) return;
      finish();
      resolve(found);
    };
    const timer = setTimeout(() => {
      finish();
      reject(
        new AllPeersError(
          4900,
          `AllPeers is not installed (no answer to ${REQUEST_EVENT} within ${timeout} ms): ` +
            "the user needs the AllPeers extension, https://allpeers.net",
          undefined,
          "NotInstalled",
        ),
      );
    }, timeout);
    const finish = () => {
      clearTimeout(timer);
      target.removeEventListener(ANNOUNCE_EVENT, onAnnounce);
    };
    target.addEventListener(ANNOUNCE_EVENT, onAnnounce);
    target.dispatchEvent(new Event(REQUEST_EVENT));
  });
}

function announcementOf(event: Event): Announcement | undefined {
  const detail = (event as CustomEvent).detail as Partial<Announcement> | null | undefined;
  const info = detail?.info;
  const provider = detail?.provider;
  if (!info || info.rdns !== RDNS || !provider) return undefined;
  if (typeof provider.request !== "function" || typeof provider.on !== "function") return undefined;
  if (typeof provider.removeListener !== "function") return undefined;
  return { info, provider };
}

export interface ConnectOptions extends DiscoverOptions {
  /** Scopes to ask the user for (a prompt only for those not granted yet). */
  scopes?: Array<Scope>;
  /** Use this provider instead of discovering one (tests, other extensions' wrappers). */
  provider?: Provider;
}

/**
 * Finds AllPeers and, with `scopes`, makes sure this origin holds them (asking the user once).
 * Rejects with `NotInstalled`, or `UserRejected` (4001) when the user declined.
 */
export async function connect(options: ConnectOptions = {}): Promise<AllPeers> {
  const { info, provider } = options.provider
    ? { provider: options.provider, info: { uuid: "", name: "AllPeers", icon: "", rdns: RDNS } }
    : await discover(options);
  const client = new AllPeers(provider, info);
  const wanted = options.scopes ?? [];
  if (wanted.length > 0) {
    const held = await client.permissions();
    if (!wanted.every((scope) => held.scopes.includes(scope))) await client.requestPermissions(wanted);
  }
  return client;
}
