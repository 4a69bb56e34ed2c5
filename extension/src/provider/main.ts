// The app provider, run in the page's own world (manifest content script, world MAIN,
// document_start, every frame). It puts nothing on window: a page that wants AllPeers
// dispatches `allpeers:requestProvider` and gets `allpeers:announceProvider` back, with a
// frozen provider in the event's detail. A page that does not ask learns nothing.
//
// The page's scripts share this world and may later replace Object.prototype, Array.prototype,
// JSON, Promise, postMessage and the like. So everything used after start-up is captured here,
// before any page script runs, and called through the captured Reflect.apply; objects handed
// out are frozen; internal bookkeeping lives in captured Maps; descriptors and dictionaries
// have no prototype (so a getter on Object.prototype reads nothing of ours). Messages go over a
// MessageChannel to the relay (the isolated content script), which is opened on the first
// request. Whatever the page forges on that channel only makes it talk as itself: the
// background takes the origin from the browser.

(() => {
  const W = window;
  const O = Object;
  const freeze = O.freeze;
  const defineProperty = O.defineProperty;
  const descriptor = O.getOwnPropertyDescriptor;
  const hasOwn = O.hasOwn;
  const apply = Reflect.apply;
  const NativePromise = Promise;
  const NativeMap = Map;
  const mapGet = Map.prototype.get;
  const mapSet = Map.prototype.set;
  const mapDelete = Map.prototype.delete;
  const mapForEach = Map.prototype.forEach;
  const mapClear = Map.prototype.clear;
  const arrayValues = Array.prototype.values;
  const iteratorSymbol = Symbol.iterator;
  const NativeMessageChannel = MessageChannel;
  const channelPort1 = descriptor(MessageChannel.prototype, "port1")!.get!;
  const channelPort2 = descriptor(MessageChannel.prototype, "port2")!.get!;
  const portPost = MessagePort.prototype.postMessage;
  const portOnMessage = descriptor(MessagePort.prototype, "onmessage")!.set!;
  const eventData = descriptor(MessageEvent.prototype, "data")!.get!;
  const windowPost = W.postMessage;
  const addListener = EventTarget.prototype.addEventListener;
  const dispatch = EventTarget.prototype.dispatchEvent;
  const NativeCustomEvent = CustomEvent;
  const NativeError = Error;
  const later = queueMicrotask;
  const uuid = crypto.randomUUID();

  // Two peers on a disc, as the toolbar icon.
  const ICON =
    "data:image/svg+xml," +
    encodeURIComponent(
      '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 100 100"><circle cx="50" cy="50" r="48" fill="#1f5fbf"/>' +
        '<circle cx="37" cy="50" r="17" fill="#fff"/><circle cx="63" cy="50" r="17" fill="#fff"/></svg>',
    );

  /** An own property of an object from the channel (never the page's prototypes). */
  function own(o: unknown, key: string): unknown {
    return typeof o === "object" && o !== null && apply(hasOwn, O, [o, key]) ? (o as Record<string, unknown>)[key] : undefined;
  }

  /** A failed request: `code` as in EIP-1193 (4001, 4100, 4200, 4900) or the daemon's. */
  class ProviderRpcError extends NativeError {
    constructor(code: number, message: string, data?: unknown) {
      super(message);
      defineProperty(this, "code", { __proto__: null, value: code, enumerable: true } as PropertyDescriptor);
      if (data !== undefined) defineProperty(this, "data", { __proto__: null, value: data, enumerable: true } as PropertyDescriptor);
      freeze(this);
    }
  }
  defineProperty(ProviderRpcError.prototype, "name", { __proto__: null, value: "ProviderRpcError" } as PropertyDescriptor);
  freeze(ProviderRpcError.prototype);
  freeze(ProviderRpcError);

  function rpcError(body: unknown): ProviderRpcError {
    const code = own(body, "code");
    const message = own(body, "message");
    return new ProviderRpcError(
      typeof code === "number" ? code : 4900,
      typeof message === "string" ? message : "AllPeers failed",
      own(body, "data"),
    );
  }

  type Pending = { resolve(v: unknown): void; reject(e: unknown): void };
  const pending: Map<number, Pending> = new NativeMap();
  const listeners: Map<string, Map<(data: unknown) => void, true>> = new NativeMap();
  let port: MessagePort | null = null;
  let nextId = 1;

  function emit(event: string, data: unknown) {
    const set = apply(mapGet, listeners, [event]) as Map<(data: unknown) => void, true> | undefined;
    if (!set) return;
    apply(mapForEach, set, [
      (_: true, listener: (data: unknown) => void) => {
        try {
          apply(listener, undefined, [data]);
        } catch (e) {
          // A listener's failure is the page's, reported as uncaught; the others still run.
          later(() => {
            throw e;
          });
        }
      },
    ]);
  }

  function receive(ev: MessageEvent) {
    const m = apply(eventData, ev, []);
    const type = own(m, "type");
    if (type === "reply") {
      const id = own(m, "id") as number;
      const p = apply(mapGet, pending, [id]) as Pending | undefined;
      if (!p) return;
      apply(mapDelete, pending, [id]);
      const error = own(m, "error");
      if (error !== undefined) p.reject(rpcError(error));
      else p.resolve(own(m, "result"));
    } else if (type === "event") {
      const topic = own(m, "topic");
      if (typeof topic === "string" && topic !== "connect" && topic !== "disconnect") emit(topic, own(m, "data"));
    } else if (type === "connect") {
      emit("connect", freeze({}));
    } else if (type === "disconnect") {
      const error = rpcError(own(m, "error"));
      apply(mapForEach, pending, [(p: Pending) => p.reject(error)]);
      apply(mapClear, pending, []);
      emit("disconnect", error);
    }
  }

  /** The channel to the relay, opened on the first request (so an idle page shows nothing). */
  function channel(): MessagePort {
    if (port) return port;
    const ch = new NativeMessageChannel();
    const mine = apply(channelPort1, ch, []) as MessagePort;
    const theirs = apply(channelPort2, ch, []) as MessagePort;
    apply(portOnMessage, mine, [receive]);
    // The transfer list is read through its iterator: give it the original one.
    const transfer = [theirs];
    defineProperty(transfer, iteratorSymbol, { __proto__: null, value: arrayValues } as PropertyDescriptor);
    apply(windowPost, W, [{ "allpeers:channel": 1 }, "*", transfer]);
    port = mine;
    return mine;
  }

  function request(args: unknown): Promise<unknown> {
    return new NativePromise((resolve, reject) => {
      if (typeof args !== "object" || args === null) {
        reject(new ProviderRpcError(-32600, "request expects {method, params}"));
        return;
      }
      const { method, params } = args as { method?: unknown; params?: unknown };
      if (typeof method !== "string" || method.length === 0) {
        reject(new ProviderRpcError(-32600, "request: `method` must be a non-empty string"));
        return;
      }
      if (params !== undefined && (typeof params !== "object" || params === null)) {
        reject(new ProviderRpcError(-32602, "request: `params` must be an object"));
        return;
      }
      const id = nextId++;
      try {
        apply(portPost, channel(), [{ type: "request", id, method, params }]);
      } catch (e) {
        reject(new ProviderRpcError(-32602, `request: params cannot be sent (${String(e)})`));
        return;
      }
      apply(mapSet, pending, [id, { resolve, reject }]);
    });
  }

  function on(event: unknown, listener: unknown) {
    if (typeof event !== "string" || typeof listener !== "function") {
      throw new ProviderRpcError(-32602, "on(event: string, listener: function)");
    }
    let set = apply(mapGet, listeners, [event]) as Map<unknown, true> | undefined;
    if (!set) {
      set = new NativeMap();
      apply(mapSet, listeners, [event, set]);
    }
    apply(mapSet, set, [listener, true]);
    return provider;
  }

  function removeListener(event: unknown, listener: unknown) {
    const set = apply(mapGet, listeners, [event]) as Map<unknown, true> | undefined;
    if (set) apply(mapDelete, set, [listener]);
    return provider;
  }

  const provider = freeze({
    isAllPeers: true,
    request: freeze((args: unknown) => request(args)),
    on: freeze((event: unknown, listener: unknown) => on(event, listener)),
    removeListener: freeze((event: unknown, listener: unknown) => removeListener(event, listener)),
  });
  const detail = freeze({
    info: freeze({ uuid, name: "AllPeers", icon: ICON, rdns: "org.allpeers" }),
    provider,
  });

  apply(addListener, W, [
    "allpeers:requestProvider",
    () => {
      apply(dispatch, W, [new NativeCustomEvent("allpeers:announceProvider", { __proto__: null, detail } as CustomEventInit)]);
    },
  ]);
})();
