// The panel's side of the runtime port to the background: calls, state, events.

import {
  BackgroundToPanel,
  ConnectionState,
  ExtErrorCode,
  PANEL_PORT,
  PanelToBackground,
  RpcErrorBody,
} from "../lib/protocol";
import type { Events, MethodName, ParamsOf, ResultOf, TopicName } from "../lib/api.gen";

/** A call's params and timeout: params may be left out when the method needs none. */
export type CallArgs<M extends MethodName> = {} extends ParamsOf<M>
  ? [params?: ParamsOf<M>, timeoutMs?: number]
  : [params: ParamsOf<M>, timeoutMs?: number];

export class CallError extends Error {
  constructor(
    readonly code: number,
    message: string,
    readonly data?: unknown,
  ) {
    super(message);
  }
}

/** The text to show for a failed call. */
export function errorText(e: unknown): string {
  if (e instanceof CallError) return e.message;
  return e instanceof Error ? e.message : String(e);
}

export class Client {
  private port: chrome.runtime.Port | null = null;
  private nextId = 1;
  private pending = new Map<number, { resolve(v: unknown): void; reject(e: CallError): void }>();
  private stateFns = new Set<(s: ConnectionState) => void>();
  private eventFns = new Map<string, Set<(data: unknown) => void>>();
  state: ConnectionState | null = null;

  constructor() {
    this.open();
  }

  private open() {
    const port = chrome.runtime.connect({ name: PANEL_PORT });
    this.port = port;
    port.onMessage.addListener((m: BackgroundToPanel) => this.receive(m));
    port.onDisconnect.addListener(() => {
      // The background was restarted (Chromium may stop an idle worker): fail what is
      // outstanding and connect again, which wakes it.
      this.port = null;
      for (const [, p] of this.pending) {
        p.reject(new CallError(ExtErrorCode.BackgroundGone, "The extension's background restarted; try again."));
      }
      this.pending.clear();
      setTimeout(() => this.open(), 100);
    });
  }

  private receive(m: BackgroundToPanel) {
    switch (m.type) {
      case "state":
        this.state = m.state;
        for (const fn of this.stateFns) fn(m.state);
        break;
      case "reply": {
        const p = this.pending.get(m.id);
        if (!p) return;
        this.pending.delete(m.id);
        if (m.error) {
          const e: RpcErrorBody = m.error;
          p.reject(new CallError(e.code, e.message, e.data));
        } else {
          p.resolve(m.result);
        }
        break;
      }
      case "event":
        for (const fn of this.eventFns.get(m.topic) ?? []) fn(m.data);
        break;
    }
  }

  private post(m: PanelToBackground) {
    if (!this.port) throw new CallError(ExtErrorCode.BackgroundGone, "The extension's background is restarting.");
    this.port.postMessage(m);
  }

  /** Calls a daemon method; params and result are the generated contract's. */
  call<M extends MethodName>(method: M, ...[params = {}, timeoutMs]: CallArgs<M>): Promise<ResultOf<M>> {
    return new Promise<ResultOf<M>>((resolve, reject) => {
      const id = this.nextId++;
      this.pending.set(id, { resolve: resolve as (v: unknown) => void, reject });
      try {
        this.post({ type: "call", id, method, params, timeoutMs });
      } catch (e) {
        this.pending.delete(id);
        reject(e);
      }
    });
  }

  retry() {
    try {
      this.post({ type: "retry" });
    } catch {
      /* reopening anyway */
    }
  }

  onState(fn: (s: ConnectionState) => void) {
    this.stateFns.add(fn);
    if (this.state) fn(this.state);
  }

  on<T extends TopicName>(topic: T, fn: (data: Events[T]) => void) {
    let set = this.eventFns.get(topic);
    if (!set) this.eventFns.set(topic, (set = new Set()));
    set.add(fn as (data: unknown) => void);
  }
}
