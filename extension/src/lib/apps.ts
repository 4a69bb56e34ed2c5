// The app API's pieces shared by the background, the page relay, the prompt and the panel:
// the messages on the ports, the scopes in plain words, the origin rule and the prompt gate
// (one prompt at a time per origin, a cool-down after a refusal). Browser-free, so it runs
// under node's test runner too.

import { ErrorCode, SCOPES, Scope } from "./api.gen";
import type { RpcErrorBody } from "./protocol";

/** The relay's runtime port to the background (one per page channel). */
export const APP_PORT = "allpeers-app";
/** The prompt window's runtime port to the background. */
export const PROMPT_PORT = "allpeers-prompt";

/** Page → background, through the relay. */
export type PageToBackground = { type: "request"; id: number; method: string; params?: unknown };

/** Background → page, through the relay. */
export type BackgroundToPage =
  | { type: "reply"; id: number; result?: unknown; error?: RpcErrorBody }
  | { type: "event"; topic: string; data: unknown }
  | { type: "connect" }
  | { type: "disconnect"; error: RpcErrorBody };

/** Prompt → background. */
export type PromptToBackground = { type: "open"; prompt: string } | { type: "answer"; prompt: string; allow: boolean };

/** Background → prompt. */
export type BackgroundToPrompt = { type: "ask"; origin: string; scopes: Scope[] } | { type: "gone" };

/** Every scope, in the words the prompt and Settings show. */
export const SCOPE_WORDS: Record<Scope, string> = {
  identity: "See your AllPeers identity (your PeerId and name)",
  "contacts:read": "See your contacts (their PeerIds and names)",
  presence: "See when your contacts are online",
  "messages:send": "Send chat messages to your contacts in your name",
  resources: "Store its own data in AllPeers and read what your contacts shared with it",
  shares: "Share its data with your contacts, and see and revoke those shares",
};

function isScope(s: unknown): s is Scope {
  return typeof s === "string" && (SCOPES as readonly string[]).includes(s);
}

export function scopeWords(scope: string): string {
  return isScope(scope) ? SCOPE_WORDS[scope] : scope;
}

/** Checks `permissions.request`'s scopes: a non-empty list of known scopes, deduplicated. */
export function parseScopes(params: unknown): Scope[] | RpcErrorBody {
  const scopes = typeof params === "object" && params !== null ? (params as { scopes?: unknown }).scopes : undefined;
  if (!Array.isArray(scopes) || scopes.length === 0 || scopes.length > 16) {
    return { code: ErrorCode.InvalidParams, message: "permissions.request: `scopes` must be a list of 1 to 16 scopes" };
  }
  const out: Scope[] = [];
  for (const s of scopes) {
    if (!isScope(s)) {
      return {
        code: ErrorCode.InvalidParams,
        message: `permissions.request: unknown scope ${JSON.stringify(s)} (known: ${SCOPES.join(", ")})`,
      };
    }
    if (!out.includes(s)) out.push(s);
  }
  return out;
}

const LOOPBACK = new Set(["localhost", "127.0.0.1", "[::1]"]);

/**
 * The origin of a message's sender as the browser reports it, or null when it is not one
 * the daemon serves (opaque "null" origins of sandboxed frames, file:, data:, plain http
 * other than loopback). The daemon checks again at hello; this only avoids opening a
 * session that cannot work.
 */
export function senderOrigin(sender: { origin?: string; url?: string }): string | null {
  let origin = sender.origin;
  if (origin === undefined && sender.url) {
    try {
      origin = new URL(sender.url).origin;
    } catch {
      return null;
    }
  }
  if (!origin || origin.length > 200) return null;
  let url: URL;
  try {
    url = new URL(origin);
  } catch {
    return null;
  }
  origin = origin.toLowerCase();
  if (url.protocol === "https:" && url.origin === origin) return origin;
  if (url.protocol === "http:" && LOOPBACK.has(url.hostname) && url.origin === origin) return origin;
  if (/^(chrome-extension:\/\/[a-p]{32}|moz-extension:\/\/[0-9a-f-]{36})$/.test(origin)) return origin;
  return null;
}

/** Error bodies the extension itself answers with (codes from the one table). */
export const appErrors = {
  rejected: (): RpcErrorBody => ({ code: ErrorCode.UserRejected, message: "The user rejected the request." }),
  coolingDown: (seconds: number): RpcErrorBody => ({
    code: ErrorCode.UserRejected,
    message: `The user rejected a request from this site; no new prompt for ${seconds} s.`,
  }),
  disconnected: (why: string): RpcErrorBody => ({ code: ErrorCode.Disconnected, message: `AllPeers is not connected. ${why}`.trim() }),
  unsupported: (method: string): RpcErrorBody => ({ code: ErrorCode.Unsupported, message: `${method}: not available to apps` }),
  badOrigin: (): RpcErrorBody => ({ code: ErrorCode.BadOrigin, message: "This page's origin cannot use AllPeers (https or loopback only)." }),
  badRequest: (why: string): RpcErrorBody => ({ code: ErrorCode.InvalidRequest, message: why }),
};

/**
 * One prompt at a time per origin; after a refusal, no prompt for `coolDownMs` (a page
 * cannot wear the user down by asking again and again). `ask` opens the prompt and
 * resolves with the user's answer.
 */
export class PromptGate {
  private open = new Map<string, Promise<boolean>>();
  private deniedUntil = new Map<string, number>();

  constructor(
    private readonly ask: (origin: string, scopes: Scope[]) => Promise<boolean>,
    private readonly coolDownMs = 60_000,
    private readonly now: () => number = () => Date.now(),
  ) {}

  /** Seconds left of the origin's cool-down, 0 when it may be asked. */
  coolingDown(origin: string): number {
    const until = this.deniedUntil.get(origin) ?? 0;
    const left = until - this.now();
    if (left <= 0) {
      this.deniedUntil.delete(origin);
      return 0;
    }
    return Math.ceil(left / 1000);
  }

  /** The prompt open for this origin, if any (a second request waits for its answer). */
  pending(origin: string): Promise<boolean> | undefined {
    return this.open.get(origin);
  }

  /** Opens a prompt (the caller checked that none is open and no cool-down runs). */
  prompt(origin: string, scopes: Scope[]): Promise<boolean> {
    const answer = this.ask(origin, scopes)
      .catch(() => false)
      .then((allow) => {
        this.open.delete(origin);
        if (!allow) this.deniedUntil.set(origin, this.now() + this.coolDownMs);
        return allow;
      });
    this.open.set(origin, answer);
    return answer;
  }

  /** Forgets a cool-down (the user granted the site from elsewhere). */
  forgive(origin: string) {
    this.deniedUntil.delete(origin);
  }
}
