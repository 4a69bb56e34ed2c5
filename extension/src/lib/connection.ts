// The connection to the native host: connectNative, hello, request/response matching,
// chunk reassembly, bridge notices, and reconnection with backoff. Independent of the
// browser API (the port comes from a factory), so it runs under node's test runner too.

import { ChunkError, Reassembler, parseChunkParams } from "./chunk";
import {
  API_VERSION,
  ConnectionState,
  ExtErrorCode,
  HelloResult,
  Problem,
  RpcErrorBody,
} from "./protocol";

/** A native port as the factory hands it out. */
export interface PortHandle {
  post(message: unknown): void;
  close(): void;
}

export interface PortHandlers {
  onMessage(message: unknown): void;
  /** The port closed by the other side; `error` is the browser's reason, if any. */
  onDisconnect(error: string | undefined): void;
}

export type PortFactory = (handlers: PortHandlers) => PortHandle;

export interface ConnectionOptions {
  connect: PortFactory;
  /** Name sent in `hello`, e.g. "extension/chromium". */
  client: string;
  /** Topics to subscribe to after hello (those the daemon serves). */
  topics: string[];
  /** More `hello` params: an app session names its origin here. */
  hello?: Record<string, unknown>;
  helloTimeoutMs?: number;
  requestTimeoutMs?: number;
  backoffBaseMs?: number;
  backoffMaxMs?: number;
  now?: () => number;
  setTimer?: (fn: () => void, ms: number) => unknown;
  clearTimer?: (handle: unknown) => void;
  log?: (...args: unknown[]) => void;
}

export class RpcError extends Error {
  constructor(
    readonly code: number,
    message: string,
    readonly data?: unknown,
  ) {
    super(message);
  }
  toBody(): RpcErrorBody {
    return this.data === undefined
      ? { code: this.code, message: this.message }
      : { code: this.code, message: this.message, data: this.data };
  }
}

interface Pending {
  resolve(result: unknown): void;
  reject(error: RpcError): void;
  timer: unknown;
  method: string;
}

const HELLO_ID = "hello";

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function isHelloResult(v: unknown): v is HelloResult {
  return (
    isObject(v) &&
    typeof v.server === "string" &&
    typeof v.server_version === "string" &&
    v.api_version === API_VERSION &&
    Array.isArray(v.methods) &&
    Array.isArray(v.topics) &&
    (v.peer_id === undefined || typeof v.peer_id === "string")
  );
}

/** Turns the browser's disconnect reason into what the user is told. */
export function classifyDisconnect(error: string | undefined): Problem {
  const text = (error ?? "").trim().replace(/\.$/, "");
  const said = text ? ` The browser says: “${text}”.` : "";
  if (/not found|no such native application|not allowed|access .*forbidden/i.test(text)) {
    return { kind: "host-missing", message: `The AllPeers program is not installed for this browser.${said}` };
  }
  if (/error when communicating|invalid|parse|too large|exceeded/i.test(text)) {
    return {
      kind: "host-garbage",
      message: `The AllPeers program sent something the browser could not read.${said}`,
    };
  }
  return { kind: "host-exited", message: `The AllPeers program stopped.${said}` };
}

class GarbageError extends Error {}

export class Connection {
  private state: ConnectionState = {
    status: "disconnected",
    problem: null,
    server: null,
    attempt: 0,
    retryAt: null,
    epoch: 0,
  };
  private port: PortHandle | null = null;
  /** Bumped per port so late callbacks of an old port are ignored. */
  private generation = 0;
  private pending = new Map<number | string, Pending>();
  private nextId = 1;
  private reassembler = new Reassembler();
  private helloTimer: unknown = null;
  private retryTimer: unknown = null;
  /** What the host told us before it went away (bridge.error / bridge.closed). */
  private notice: Problem | null = null;
  private stateListeners = new Set<(s: ConnectionState) => void>();
  private eventListeners = new Set<(topic: string, data: unknown) => void>();
  private readonly o: Required<ConnectionOptions>;
  /** Set by `close()`: no more attempts until `start()`. */
  private closed = false;

  constructor(options: ConnectionOptions) {
    this.o = {
      helloTimeoutMs: 20_000,
      requestTimeoutMs: 15_000,
      backoffBaseMs: 250,
      backoffMaxMs: 10_000,
      now: () => Date.now(),
      setTimer: (fn, ms) => setTimeout(fn, ms),
      clearTimer: (h) => clearTimeout(h as ReturnType<typeof setTimeout>),
      log: (...args) => console.warn("[allpeers]", ...args),
      hello: {},
      ...options,
    };
  }

  get current(): ConnectionState {
    return { ...this.state };
  }

  onState(fn: (s: ConnectionState) => void): () => void {
    this.stateListeners.add(fn);
    return () => this.stateListeners.delete(fn);
  }

  onEvent(fn: (topic: string, data: unknown) => void): () => void {
    this.eventListeners.add(fn);
    return () => this.eventListeners.delete(fn);
  }

  /** Connects now unless connected or connecting; resets the backoff timer. */
  start(): void {
    this.closed = false;
    if (this.state.status !== "disconnected") return;
    this.cancelRetry();
    this.open();
  }

  /**
   * The user asked to try again: connects now, also abandoning an attempt in progress
   * (which may be waiting on a host that will never answer).
   */
  retryNow(): void {
    if (this.state.status === "connected") return;
    if (this.state.status === "connecting" && this.port) {
      const port = this.port;
      this.generation++;
      this.port = null;
      this.o.clearTimer(this.helloTimer);
      this.rejectPending("connection attempt abandoned.");
      try {
        port.close();
      } catch {
        /* already closed */
      }
      this.setState({ status: "disconnected" });
    }
    this.start();
  }

  /**
   * Ends the connection for good (an app session nobody uses any more): outstanding calls
   * fail, no retry is scheduled. `start()` opens it again.
   */
  close(): void {
    this.closed = true;
    this.cancelRetry();
    const port = this.port;
    this.generation++;
    this.port = null;
    this.o.clearTimer(this.helloTimer);
    this.reassembler.clear();
    this.rejectPending("the connection was closed.");
    try {
      port?.close();
    } catch {
      /* already closed */
    }
    if (this.state.status !== "disconnected" || this.state.retryAt !== null) {
      this.setState({ status: "disconnected", server: null, retryAt: null });
    }
  }

  private rejectPending(why: string) {
    for (const [, p] of this.pending) {
      this.o.clearTimer(p.timer);
      p.reject(new RpcError(ExtErrorCode.ConnectionLost, `${p.method}: connection lost. ${why}`));
    }
    this.pending.clear();
  }

  /** Calls a method; fails at once when not connected (nothing is queued). */
  request(method: string, params: unknown = {}, timeoutMs?: number): Promise<unknown> {
    if (this.state.status !== "connected" || !this.port) {
      const why = this.state.problem ? ` ${this.state.problem.message}` : "";
      return Promise.reject(
        new RpcError(
          ExtErrorCode.NotConnected,
          this.state.status === "connecting"
            ? "Still connecting to AllPeers; try again in a moment."
            : `Not connected to AllPeers.${why}`,
        ),
      );
    }
    const id = this.nextId++;
    return this.send(id, method, params, timeoutMs ?? this.o.requestTimeoutMs);
  }

  private send(id: number | string, method: string, params: unknown, timeoutMs: number) {
    return new Promise<unknown>((resolve, reject) => {
      const timer = this.o.setTimer(() => {
        if (this.pending.delete(id)) {
          reject(new RpcError(ExtErrorCode.Timeout, `${method}: no reply within ${timeoutMs} ms`));
        }
      }, timeoutMs);
      this.pending.set(id, { resolve, reject, timer, method });
      try {
        this.port!.post({ jsonrpc: "2.0", id, method, params });
      } catch (e) {
        this.pending.delete(id);
        this.o.clearTimer(timer);
        reject(new RpcError(ExtErrorCode.ConnectionLost, `${method}: ${String(e)}`));
      }
    });
  }

  private setState(patch: Partial<ConnectionState>) {
    this.state = { ...this.state, ...patch };
    const snapshot = this.current;
    for (const fn of this.stateListeners) {
      try {
        fn(snapshot);
      } catch (e) {
        this.o.log("state listener failed", e);
      }
    }
  }

  private open() {
    const generation = ++this.generation;
    this.notice = null;
    this.reassembler.clear();
    this.setState({ status: "connecting", retryAt: null, server: null });
    let port: PortHandle;
    try {
      port = this.o.connect({
        onMessage: (m) => {
          if (generation === this.generation) this.receive(m);
        },
        onDisconnect: (error) => {
          if (generation === this.generation) this.lost(classifyDisconnect(error));
        },
      });
    } catch (e) {
      this.lost(classifyDisconnect(String(e)));
      return;
    }
    if (generation !== this.generation) return; // disconnected synchronously
    this.port = port;
    this.helloTimer = this.o.setTimer(() => {
      this.fail({ kind: "timeout", message: "AllPeers did not answer in time." });
    }, this.o.helloTimeoutMs);
    this.send(HELLO_ID, "hello", { ...this.o.hello, client: this.o.client, api_version: API_VERSION }, this.o.helloTimeoutMs)
      .then((result) => {
        if (generation !== this.generation) return;
        this.o.clearTimer(this.helloTimer);
        if (isObject(result) && typeof result.api_version === "number" && result.api_version !== API_VERSION) {
          this.fail({
            kind: "hello-failed",
            message: `The AllPeers program speaks local API version ${result.api_version}; this extension speaks ${API_VERSION}. Update the one that is older.`,
          });
          return;
        }
        if (!isHelloResult(result)) {
          this.fail({
            kind: "host-garbage",
            message: "AllPeers answered hello with something unexpected.",
          });
          return;
        }
        this.setState({
          status: "connected",
          problem: null,
          server: result,
          attempt: 0,
          epoch: this.state.epoch + 1,
        });
        const topics = this.o.topics.filter((t) => result.topics.includes(t));
        if (topics.length) {
          this.request("events.subscribe", { topics }).catch((e) =>
            this.o.log("events.subscribe failed", e),
          );
        }
      })
      .catch((e: RpcError) => {
        if (generation !== this.generation) return;
        if (e.code === ExtErrorCode.ConnectionLost || e.code === ExtErrorCode.Timeout) return;
        this.fail({ kind: "hello-failed", message: `AllPeers refused the connection: ${e.message}` });
      });
  }

  /** Our side gives up on this port (garbage, hello failure) and retries later. */
  private fail(problem: Problem) {
    const port = this.port;
    this.lost(problem);
    try {
      port?.close();
    } catch {
      /* already closed */
    }
  }

  private lost(problem: Problem) {
    if (this.closed || (this.state.status === "disconnected" && this.port === null)) return;
    this.generation++;
    this.port = null;
    this.o.clearTimer(this.helloTimer);
    this.reassembler.clear();
    // What the host said before leaving explains more than the browser's generic reason.
    const why = this.notice && problem.kind !== "host-garbage" ? this.notice : problem;
    this.rejectPending(why.message);
    const attempt = this.state.attempt + 1;
    const delay = Math.min(this.o.backoffBaseMs * 2 ** (attempt - 1), this.o.backoffMaxMs);
    this.setState({
      status: "disconnected",
      problem: why,
      server: null,
      attempt,
      retryAt: this.o.now() + delay,
    });
    this.retryTimer = this.o.setTimer(() => {
      this.retryTimer = null;
      this.start();
    }, delay);
  }

  private cancelRetry() {
    if (this.retryTimer !== null) this.o.clearTimer(this.retryTimer);
    this.retryTimer = null;
  }

  private receive(message: unknown) {
    try {
      this.handle(message, false);
    } catch (e) {
      if (e instanceof GarbageError || e instanceof ChunkError) {
        this.o.log("garbage from the host:", e.message);
        this.fail({
          kind: "host-garbage",
          message: `AllPeers sent something that is not the protocol: ${e.message}.`,
        });
      } else {
        throw e;
      }
    }
  }

  private handle(message: unknown, reassembled: boolean) {
    if (!isObject(message) || message.jsonrpc !== "2.0") {
      throw new GarbageError("a message that is not JSON-RPC 2.0");
    }
    if (typeof message.method === "string") {
      const params = message.params;
      switch (message.method) {
        case "chunk": {
          if (reassembled) throw new GarbageError("a chunk inside a chunk");
          const whole = this.reassembler.add(parseChunkParams(params));
          if (whole) {
            let parsed: unknown;
            try {
              parsed = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(whole));
            } catch {
              throw new GarbageError("a chunked message that is not UTF-8 JSON");
            }
            this.handle(parsed, true);
          }
          return;
        }
        case "event": {
          if (!isObject(params) || typeof params.topic !== "string") {
            throw new GarbageError("an event without a topic");
          }
          for (const fn of this.eventListeners) {
            try {
              fn(params.topic, params.data);
            } catch (e) {
              this.o.log("event listener failed", e);
            }
          }
          return;
        }
        case "bridge.error": {
          const why = isObject(params) && typeof params.message === "string" ? params.message : "unknown";
          this.notice = {
            kind: "bridge-error",
            message: `AllPeers could not start its background service: ${why}`,
          };
          return;
        }
        case "bridge.closed": {
          const why = isObject(params) && typeof params.reason === "string" ? params.reason : "closed";
          this.notice = {
            kind: "daemon-closed",
            message: `The AllPeers background service stopped (${why}).`,
          };
          // Nothing more comes on this port: close it now rather than wait for the host to
          // exit, so no message of ours races its exit (a broken pipe Chromium would report
          // as "Error when communicating", as if the host had sent garbage).
          this.fail(this.notice);
          return;
        }
        default:
          // A notification this version does not know: ignore, for forward compatibility.
          return;
      }
    }
    if (!("id" in message)) throw new GarbageError("a message that is neither request nor reply");
    const id = message.id as number | string | null;
    const hasResult = "result" in message;
    const error = message.error;
    if (hasResult === (error !== undefined)) {
      throw new GarbageError("a reply with both or neither of result and error");
    }
    if (error !== undefined && (!isObject(error) || typeof error.code !== "number" || typeof error.message !== "string")) {
      throw new GarbageError("a malformed error object");
    }
    const pending = id === null ? undefined : this.pending.get(id);
    if (!pending) {
      // A reply after its timeout, or to a request we never sent: note it, keep going.
      this.o.log("reply to an unknown request id", id, error ?? "");
      return;
    }
    this.pending.delete(id as number | string);
    this.o.clearTimer(pending.timer);
    if (error !== undefined) {
      const e = error as Record<string, unknown>;
      pending.reject(new RpcError(e.code as number, e.message as string, e.data));
    } else {
      pending.resolve(message.result);
    }
  }
}
