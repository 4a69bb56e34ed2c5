// Types shared by the background script and the panel: the connection's state and the
// messages on the runtime port between them. The daemon's API (methods, events, error
// codes) is in api.gen.ts, generated from the Rust model.

import type { HelloResult } from "./api.gen";

export { API_VERSION } from "./api.gen";
export type { HelloResult } from "./api.gen";
export const HOST_NAME = "net.allpeers.host";
export const PANEL_PORT = "allpeers-panel";

export type ProblemKind =
  /** No host manifest: AllPeers is not installed for this browser. */
  | "host-missing"
  /** The host process ended without saying why (crashed or killed). */
  | "host-exited"
  /** The host sent something that is not the protocol (bad framing, not JSON-RPC). */
  | "host-garbage"
  /** The host could not reach or start the daemon (`bridge.error`). */
  | "bridge-error"
  /** The daemon closed the connection: stopped or crashed (`bridge.closed`). */
  | "daemon-closed"
  /** `hello` was refused (e.g. unsupported API version). */
  | "hello-failed"
  /** `hello` got no reply in time. */
  | "timeout";

export interface Problem {
  kind: ProblemKind;
  message: string;
}

export interface ConnectionState {
  status: "connecting" | "connected" | "disconnected";
  /** Why the last connection ended or failed; null while all is well. */
  problem: Problem | null;
  /** The daemon's hello reply while connected. */
  server: HelloResult | null;
  /** Failed attempts since the last successful connection. */
  attempt: number;
  /** When the next automatic attempt is due (ms since epoch), while disconnected. */
  retryAt: number | null;
  /** Number of successful connections so far (increments on every reconnect). */
  epoch: number;
}

/** Error codes of the extension itself (the daemon's are `ErrorCode` in api.gen.ts). */
export const ExtErrorCode = {
  /** Not connected to the host: nothing is queued, the call fails at once. */
  NotConnected: -1,
  /** No reply in time. */
  Timeout: -2,
  /** The connection ended before the reply came. */
  ConnectionLost: -3,
  /** The panel's port to the background closed. */
  BackgroundGone: -4,
} as const;

export interface RpcErrorBody {
  code: number;
  message: string;
  data?: unknown;
}

export type PanelToBackground =
  | { type: "call"; id: number; method: string; params?: unknown; timeoutMs?: number }
  | { type: "retry" };

export type BackgroundToPanel =
  | { type: "state"; state: ConnectionState }
  | { type: "reply"; id: number; result?: unknown; error?: RpcErrorBody }
  | { type: "event"; topic: string; data: unknown };
