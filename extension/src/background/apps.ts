// The app API's background side. Per origin (of a page, frame or other extension) one app
// session: its own native port whose hello names the origin, shared by every tab and frame
// of that origin, closed a little after its last page went away. The origin always comes
// from the browser (`port.sender`), never from a message. The daemon enforces the grants;
// the extension answers `permissions.request` itself with a prompt window (one at a time
// per origin, a cool-down after a refusal) and grants on its own trusted session.

import { Connection, PortFactory, RpcError } from "../lib/connection";
import {
  APP_PORT,
  BackgroundToPage,
  BackgroundToPrompt,
  PROMPT_PORT,
  PageToBackground,
  PromptGate,
  PromptToBackground,
  appErrors,
  parseScopes,
  senderOrigin,
} from "../lib/apps";
import { ExtErrorCode, RpcErrorBody } from "../lib/protocol";
import type { AppPermissions, Scope } from "../lib/api.gen";

declare const BROWSER: "chromium" | "firefox";

/** How long an app session stays open after its last page left (a reload comes back). */
const LINGER_MS = 10_000;
/** Requests one page may have outstanding; more are refused (the daemon limits the rate). */
const MAX_PENDING = 64;
const COOL_DOWN_MS = 60_000;
/** Methods the background never forwards for an app: the session's own `hello`. */
const NEVER_FORWARDED = new Set(["hello"]);

/** A page-side endpoint: a relay's runtime port, or one external message. */
interface Endpoint {
  post(message: BackgroundToPage): void;
}

class AppSession {
  readonly endpoints = new Set<Endpoint>();
  private lingerTimer: ReturnType<typeof setTimeout> | null = null;
  readonly connection: Connection;

  constructor(
    readonly origin: string,
    connect: PortFactory,
    private readonly onIdle: (s: AppSession) => void,
  ) {
    this.connection = new Connection({
      connect,
      client: `extension/${BROWSER} app`,
      topics: [],
      hello: { origin },
      log: (...args) => console.warn(`[allpeers app ${origin}]`, ...args),
    });
    let connected = false;
    this.connection.onState((s) => {
      if (s.status === "connected" && !connected) {
        connected = true;
        this.fanOut({ type: "connect" });
      } else if (s.status !== "connected" && connected) {
        connected = false;
        this.fanOut({ type: "disconnect", error: appErrors.disconnected(s.problem?.message ?? "") });
      }
    });
    this.connection.onEvent((topic, data) => this.fanOut({ type: "event", topic, data }));
  }

  fanOut(message: BackgroundToPage) {
    for (const e of this.endpoints) e.post(message);
  }

  attach(e: Endpoint) {
    if (this.lingerTimer) clearTimeout(this.lingerTimer);
    this.lingerTimer = null;
    this.endpoints.add(e);
    this.connection.start();
    if (this.connection.current.status === "connected") e.post({ type: "connect" });
  }

  detach(e: Endpoint) {
    this.endpoints.delete(e);
    if (this.endpoints.size || this.lingerTimer) return;
    this.lingerTimer = setTimeout(() => {
      this.lingerTimer = null;
      if (this.endpoints.size) return;
      this.connection.close();
      this.onIdle(this);
    }, LINGER_MS);
  }

  /** Waits (bounded) while the session is still connecting, then calls. */
  async call(method: string, params: unknown): Promise<unknown> {
    this.connection.start();
    if (this.connection.current.status === "connecting") {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(done, 20_000);
        const off = this.connection.onState((s) => {
          if (s.status !== "connecting") done();
        });
        function done() {
          clearTimeout(timer);
          off();
          resolve();
        }
      });
    }
    return this.connection.request(method, params);
  }
}

/** A failure as the page sees it: the daemon's error, or 4900 when the line is gone. */
function toBody(e: unknown): RpcErrorBody {
  if (e instanceof RpcError) {
    return Object.values(ExtErrorCode).includes(e.code as never) ? appErrors.disconnected(e.message) : e.toBody();
  }
  return appErrors.disconnected(String(e));
}

function isRequest(m: unknown): m is PageToBackground {
  if (typeof m !== "object" || m === null) return false;
  const r = m as Record<string, unknown>;
  return (
    r.type === "request" &&
    Number.isSafeInteger(r.id) &&
    typeof r.method === "string" &&
    r.method.length > 0 &&
    r.method.length <= 100 &&
    (r.params === undefined || (typeof r.params === "object" && r.params !== null))
  );
}

export interface AppsOptions {
  /** Opens a native port (a new one per app session). */
  connect: PortFactory;
  /** The extension's own trusted session (for `apps.grant`). */
  trusted: Connection;
}

export function setupApps({ connect, trusted }: AppsOptions) {
  const sessions = new Map<string, AppSession>();
  const session = (origin: string) => {
    let s = sessions.get(origin);
    if (!s) {
      s = new AppSession(origin, connect, (idle) => {
        if (sessions.get(idle.origin) === idle) sessions.delete(idle.origin);
      });
      sessions.set(origin, s);
    }
    return s;
  };

  // ---- the prompt windows: one per origin at a time; the answer comes over its port
  const prompts = new Map<string, { origin: string; scopes: Scope[]; answer(allow: boolean): void; windowId?: number }>();
  const gate = new PromptGate(
    (origin, scopes) =>
      new Promise<boolean>((resolve, reject) => {
        const id = crypto.randomUUID();
        let settled = false;
        const entry = {
          origin,
          scopes,
          windowId: undefined as number | undefined,
          answer(allow: boolean) {
            if (settled) return;
            settled = true;
            prompts.delete(id);
            if (entry.windowId !== undefined) chrome.windows.remove(entry.windowId).catch(() => {});
            resolve(allow);
          },
        };
        prompts.set(id, entry);
        chrome.windows
          .create({ url: chrome.runtime.getURL(`prompt.html#${id}`), type: "popup", width: 440, height: 560, focused: true })
          .then((w) => {
            entry.windowId = w?.id;
            // Closed before the background learnt its id: a refusal too.
            if (settled && w?.id !== undefined) chrome.windows.remove(w.id).catch(() => {});
          })
          .catch((e) => {
            prompts.delete(id);
            settled = true;
            reject(e);
          });
      }),
    COOL_DOWN_MS,
  );
  // Closing the prompt window is a refusal.
  chrome.windows.onRemoved.addListener((windowId) => {
    for (const p of [...prompts.values()]) if (p.windowId === windowId) p.answer(false);
  });

  chrome.runtime.onConnect.addListener((port) => {
    if (port.name !== PROMPT_PORT) return;
    const sender = port.sender;
    if (sender?.id !== chrome.runtime.id || !sender.url?.startsWith(chrome.runtime.getURL("prompt.html"))) {
      port.disconnect();
      return;
    }
    let id: string | null = null;
    port.onMessage.addListener((m: PromptToBackground) => {
      const p = typeof m?.prompt === "string" ? prompts.get(m.prompt) : undefined;
      if (!p) {
        port.postMessage({ type: "gone" } satisfies BackgroundToPrompt);
        return;
      }
      if (m.type === "open") {
        id = m.prompt;
        port.postMessage({ type: "ask", origin: p.origin, scopes: p.scopes } satisfies BackgroundToPrompt);
      } else if (m.type === "answer" && m.prompt === id) {
        p.answer(m.allow === true);
      }
    });
    port.onDisconnect.addListener(() => {
      if (id) prompts.get(id)?.answer(false);
    });
  });

  /** `permissions.request`: granted already, or asked (one prompt per origin), then granted. */
  async function requestPermissions(s: AppSession, params: unknown): Promise<unknown> {
    const scopes = parseScopes(params);
    if (!Array.isArray(scopes)) throw scopes;
    // Each turn waits for a user's answer or ends: bounded by the user, not by the page.
    for (;;) {
      const now = (await s.call("permissions.get", {})) as AppPermissions;
      if (scopes.every((x) => now.scopes.includes(x))) return now;
      const open = gate.pending(s.origin);
      if (open) {
        await open;
        continue;
      }
      const wait = gate.coolingDown(s.origin);
      if (wait) throw appErrors.coolingDown(wait);
      const allow = await gate.prompt(s.origin, scopes);
      if (!allow) throw appErrors.rejected();
      await trusted.request("apps.grant", { origin: s.origin, scopes });
      return s.call("permissions.request", { scopes });
    }
  }

  async function handle(s: AppSession, method: string, params: unknown): Promise<unknown> {
    if (NEVER_FORWARDED.has(method)) throw appErrors.unsupported(method);
    if (method === "permissions.request") return requestPermissions(s, params);
    return s.call(method, params ?? {});
  }

  /** Serves one endpoint's messages for `origin`. Returns what to call when it goes away. */
  function serve(origin: string, endpoint: Endpoint) {
    const s = session(origin);
    s.attach(endpoint);
    let pending = 0;
    return {
      request(m: unknown) {
        if (!isRequest(m)) return;
        if (pending >= MAX_PENDING) {
          endpoint.post({ type: "reply", id: m.id, error: appErrors.badRequest(`more than ${MAX_PENDING} requests outstanding`) });
          return;
        }
        pending++;
        handle(s, m.method, m.params).then(
          (result) => endpoint.post({ type: "reply", id: m.id, result: result ?? null }),
          (e: unknown) => {
            const body =
              typeof e === "object" && e !== null && "code" in e && !(e instanceof Error) ? (e as RpcErrorBody) : toBody(e);
            endpoint.post({ type: "reply", id: m.id, error: body });
          },
        ).finally(() => pending--);
      },
      gone: () => s.detach(endpoint),
    };
  }

  /** A runtime port from our relay (pages) or from another extension. */
  function servePort(port: chrome.runtime.Port, origin: string | null) {
    if (!origin) {
      port.postMessage({ type: "disconnect", error: appErrors.badOrigin() } satisfies BackgroundToPage);
      port.disconnect();
      return;
    }
    let alive = true;
    const endpoint: Endpoint = {
      post(message) {
        if (!alive) return;
        try {
          port.postMessage(message);
        } catch {
          alive = false;
        }
      },
    };
    const served = serve(origin, endpoint);
    port.onMessage.addListener((m: unknown) => served.request(m));
    port.onDisconnect.addListener(() => {
      alive = false;
      served.gone();
    });
  }

  chrome.runtime.onConnect.addListener((port) => {
    if (port.name !== APP_PORT) return;
    // Only our own content script (in a tab) opens this port; the origin is the frame's.
    const sender = port.sender;
    if (sender?.id !== chrome.runtime.id || !sender.tab) {
      port.disconnect();
      return;
    }
    servePort(port, senderOrigin(sender));
  });

  // ---- other extensions: keyed by their own origin (chrome-extension://<id>, moz-extension://<uuid>)
  const externalOrigin = (sender: chrome.runtime.MessageSender) =>
    sender.id && sender.id !== chrome.runtime.id
      ? senderOrigin(sender.url ? sender : { origin: `chrome-extension://${sender.id}` })
      : null;
  chrome.runtime.onConnectExternal?.addListener((port) => {
    servePort(port, port.sender ? externalOrigin(port.sender) : null);
  });
  chrome.runtime.onMessageExternal?.addListener((message, sender, sendResponse) => {
    const origin = externalOrigin(sender);
    if (!origin) {
      sendResponse({ error: appErrors.badOrigin() });
      return false;
    }
    const m = message as { method?: unknown; params?: unknown };
    const request = { type: "request", id: 0, method: m?.method, params: m?.params };
    const endpoint: Endpoint = {
      post(reply) {
        if (reply.type !== "reply") return;
        served.gone();
        sendResponse(reply.error ? { error: reply.error } : { result: reply.result });
      },
    };
    const served = serve(origin, endpoint);
    if (!isRequest(request)) {
      served.gone();
      sendResponse({ error: appErrors.badRequest("expected {method, params}") });
      return false;
    }
    served.request(request);
    return true; // answered asynchronously
  });

  // A grant or revocation (from Settings, the CLI or a prompt): that origin's pages hear it.
  trusted.onEvent((topic, data) => {
    if (topic !== "apps.changed") return;
    const entry = data as AppPermissions;
    if (entry.scopes.length) gate.forgive(entry.origin);
    sessions.get(entry.origin)?.fanOut({ type: "event", topic: "permissionsChanged", data: { scopes: entry.scopes } });
  });
}
