// A stand-in for the extension's provider object: records requests, answers them with a
// handler the test gives, and emits events as the extension would.

export class FakeProvider {
  /** Every request in order: {method, params}. */
  calls = [];
  #listeners = new Map();
  #handler;

  /** `handler(method, params)` answers (or throws, as the provider rejects). */
  constructor(handler = () => null) {
    this.#handler = handler;
  }

  async request({ method, params }) {
    this.calls.push({ method, params });
    return this.#handler(method, params);
  }

  on(event, listener) {
    if (!this.#listeners.has(event)) this.#listeners.set(event, new Set());
    this.#listeners.get(event).add(listener);
  }

  removeListener(event, listener) {
    this.#listeners.get(event)?.delete(listener);
  }

  emit(event, data) {
    for (const listener of [...(this.#listeners.get(event) ?? [])]) listener(data);
  }

  listenerCount(event) {
    return this.#listeners.get(event)?.size ?? 0;
  }

  methods() {
    return this.calls.map((c) => c.method);
  }
}

/** The provider's rejection: an Error with the RPC code (as the extension's ProviderRpcError). */
export function rpcError(code, message, data) {
  return Object.assign(new Error(message), { code, data });
}

/** A page's window: answers allpeers:requestProvider with the given announcement detail. */
export function pageAnnouncing(detail) {
  const target = new EventTarget();
  target.addEventListener("allpeers:requestProvider", () => {
    target.dispatchEvent(new CustomEvent("allpeers:announceProvider", { detail }));
  });
  return target;
}

/** Resolves with the next value `register(resolve)` delivers, or rejects after `ms`. */
export function next(register, ms = 2000) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`nothing within ${ms} ms`)), ms);
    register((value) => {
      clearTimeout(timer);
      resolve(value);
    });
  });
}
