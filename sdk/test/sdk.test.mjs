// Unit tests of the SDK against a fake provider (node --test; build first: node build.mjs).
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { AllPeers, AllPeersError, connect, discover, ErrorCode } from "../dist/allpeers.js";
import { FakeProvider, next, pageAnnouncing, rpcError } from "./fake-provider.mjs";

const INFO = Object.freeze({ uuid: "u-1", name: "AllPeers", icon: "data:,", rdns: "org.allpeers" });

describe("discovery", () => {
  it("finds the provider the page announces when asked", async () => {
    const provider = new FakeProvider();
    const found = await discover({ target: pageAnnouncing(Object.freeze({ info: INFO, provider })), timeout: 500 });
    assert.equal(found.provider, provider);
    assert.equal(found.info.rdns, "org.allpeers");
  });

  it("says AllPeers is not installed when nothing answers in time", async () => {
    const started = Date.now();
    const error = await discover({ target: new EventTarget(), timeout: 50 }).catch((e) => e);
    assert.ok(error instanceof AllPeersError);
    assert.equal(error.codeName, "NotInstalled");
    assert.match(error.message, /AllPeers is not installed/);
    assert.ok(Date.now() - started < 1000);
  });

  it("ignores announcements of other providers and malformed ones", async () => {
    const target = new EventTarget();
    target.addEventListener("allpeers:requestProvider", () => {
      const other = { info: { ...INFO, rdns: "com.evil" }, provider: new FakeProvider() };
      target.dispatchEvent(new CustomEvent("allpeers:announceProvider", { detail: other }));
      target.dispatchEvent(new CustomEvent("allpeers:announceProvider", { detail: null }));
      target.dispatchEvent(new CustomEvent("allpeers:announceProvider", { detail: { info: INFO, provider: {} } }));
    });
    const error = await discover({ target, timeout: 50 }).catch((e) => e);
    assert.equal(error.codeName, "NotInstalled");
  });
});

describe("permissions", () => {
  it("asks only for scopes not held yet", async () => {
    const provider = new FakeProvider((method, params) => {
      if (method === "permissions.get") return { origin: "http://localhost:8000", scopes: ["identity"] };
      if (method === "permissions.request") return { origin: "http://localhost:8000", scopes: params.scopes };
      throw new Error(`unexpected ${method}`);
    });
    await connect({ provider, scopes: ["identity"] });
    assert.deepEqual(provider.methods(), ["permissions.get"]);
    await connect({ provider, scopes: ["identity", "resources"] });
    assert.deepEqual(provider.calls.at(-1), {
      method: "permissions.request",
      params: { scopes: ["identity", "resources"] },
    });
  });

  it("explains a refusal by the user (4001)", async () => {
    const provider = new FakeProvider((method) => {
      if (method === "permissions.get") return { origin: "http://localhost:8000", scopes: [] };
      throw rpcError(4001, "User rejected the request.");
    });
    const error = await connect({ provider, scopes: ["contacts:read"] }).catch((e) => e);
    assert.ok(error instanceof AllPeersError);
    assert.equal(error.code, 4001);
    assert.equal(error.codeName, "UserRejected");
    assert.match(error.message, /declined access to contacts:read/);
  });
});

describe("requests", () => {
  it("sends each method its params and answers its result", async () => {
    const provider = new FakeProvider((method, params) => {
      switch (method) {
        case "identity.get":
          return { peer_id: "apalice", name: "alice@hub" };
        case "messages.send":
          return { id: "m1", chat: "c1" };
        case "resources.query":
          return { resources: [{ id: "r1", type: params.query.type, properties: {} }] };
        case "shares.create":
          return { id: "s1", resource: params.resource, members: params.members.map((peer) => ({ peer, level: "write" })) };
        default:
          return null;
      }
    });
    const client = await connect({ provider });
    assert.deepEqual(await client.identity(), { peer_id: "apalice", name: "alice@hub" });
    await client.sendMessage({ peer_id: "apbob" }, "hi");
    assert.deepEqual(provider.calls.at(-1), { method: "messages.send", params: { peer_id: "apbob", text: "hi" } });
    const found = await client.resources.query({ type: "Board" });
    assert.equal(found[0].id, "r1");
    const share = await client.share({ id: "r1" }, ["apbob", { peer_id: "apcarol" }]);
    assert.deepEqual(provider.calls.at(-1).params, { resource: "r1", members: ["apbob", "apcarol"] });
    assert.equal(share.id, "s1");
    await client.resources.update("r1", { properties: { title: "t" } });
    assert.deepEqual(provider.calls.at(-1), {
      method: "resources.update",
      params: { id: "r1", patch: { properties: { title: "t" } } },
    });
    await client.resources.delete("r1");
    assert.deepEqual(provider.calls.at(-1), { method: "resources.delete", params: { id: "r1" } });
  });

  it("hands registerSchema's function the app's namespace (asked once)", async () => {
    const provider = new FakeProvider((method, params) => {
      if (method === "permissions.get") return { origin: "https://board.example", scopes: ["resources"], namespace: "app_k3v9_" };
      if (method === "schemas.register") return { types: [/ap:type="([^"]+)"/.exec(params.schema)[1]] };
      return null;
    });
    const client = await connect({ provider });
    const schema = (ns) => `<define name="${ns}Board.content" ap:type="${ns}Board"/>`;
    assert.deepEqual(await client.registerSchema(schema, "board"), { types: ["app_k3v9_Board"] });
    assert.deepEqual(provider.calls.at(-1).params, { schema: schema("app_k3v9_"), file: "board" });
    await client.registerSchema(schema);
    assert.deepEqual(provider.calls.at(-1).params, { schema: schema("app_k3v9_") });
    assert.equal(provider.methods().filter((m) => m === "permissions.get").length, 1);
  });

  it("maps rejections to AllPeersError with code and name", async () => {
    const failures = {
      "identity.get": rpcError(4100, "scope identity not granted"),
      "contacts.list": rpcError(-32080, "rate limited"),
      "resources.get": rpcError(-32999, "from the future", { x: 1 }),
      "shares.list": new TypeError("boom"),
    };
    const client = new AllPeers(new FakeProvider((method) => { throw failures[method]; }), INFO);
    const unauthorized = await client.identity().catch((e) => e);
    assert.ok(unauthorized instanceof AllPeersError && unauthorized instanceof Error);
    assert.deepEqual([unauthorized.code, unauthorized.codeName, unauthorized.message],
      [ErrorCode.Unauthorized, "Unauthorized", "scope identity not granted"]);
    assert.equal((await client.contacts().catch((e) => e)).codeName, "RateLimited");
    const unknown = await client.resources.get("x").catch((e) => e);
    assert.deepEqual([unknown.code, unknown.codeName, unknown.data], [-32999, "Unknown", { x: 1 }]);
    const internal = await client.shares().catch((e) => e);
    assert.deepEqual([internal.codeName, internal.message], ["Internal", "boom"]);
  });
});

/** A provider answering subscriptions with fresh ids (1, 2, ...) as a daemon session does. */
function subscribingProvider() {
  let nextId = 1;
  return new FakeProvider((method, params) => {
    if (method === "resources.subscribe") return { subscription: nextId++ };
    if (method === "events.subscribe" || method === "events.unsubscribe") return { topics: params.topics };
    if (method === "resources.unsubscribe") return true;
    return null;
  });
}

describe("subscriptions", () => {
  it("delivers the changes of its subscription only", async () => {
    const provider = subscribingProvider();
    const client = new AllPeers(provider, INFO);
    const seen = [];
    await client.resources.subscribe({ id: "board" }, (change) => seen.push(change.id));
    provider.emit("resource.changed", { kind: "updated", id: "board", subscription: 1 });
    provider.emit("resource.changed", { kind: "updated", id: "other", subscription: 7 });
    provider.emit("list.changed", { kind: "itemAdded", id: "board", subscription: 1 });
    assert.deepEqual(seen, ["board", "board"]);
  });

  it("re-subscribes what the app subscribed after the line comes back", async () => {
    const provider = subscribingProvider();
    const client = new AllPeers(provider, INFO);
    const changes = [];
    const presence = [];
    await client.resources.subscribe({ id: "board" }, (change) => changes.push(change.subscription));
    await client.on("presence.changed", (p) => presence.push(p.peer_id));
    let connects = 0;
    await client.on("connect", () => connects++);
    provider.emit("connect"); // the line opening: nothing lost, nothing to tell
    assert.equal(connects, 0);
    const disconnected = next((resolve) => client.on("disconnect", resolve));
    provider.emit("disconnect", { code: 4900, message: "no daemon" });
    assert.equal((await disconnected).code, 4900);

    const reconnected = next((resolve) => client.on("connect", resolve));
    provider.calls.length = 0;
    provider.emit("connect");
    await reconnected;
    assert.deepEqual(provider.calls.map((c) => [c.method, c.params]).sort(), [
      ["events.subscribe", { topics: ["presence.changed"] }],
      ["resources.subscribe", { filter: { id: "board" } }],
    ]);
    // The new session's subscription is 2: changes of the old id are not ours any more.
    provider.emit("resource.changed", { kind: "updated", id: "board", subscription: 1 });
    provider.emit("resource.changed", { kind: "updated", id: "board", subscription: 2 });
    provider.emit("presence.changed", { peer_id: "apbob", online: true });
    assert.deepEqual(changes, [2]);
    assert.deepEqual(presence, ["apbob"]);
    assert.equal(connects, 1);
  });

  it("reports a re-subscription the daemon refuses (grant revoked meanwhile)", async () => {
    let revoked = false;
    const provider = new FakeProvider((method) => {
      if (revoked) throw rpcError(4100, "scope resources not granted");
      return method === "resources.subscribe" ? { subscription: 1 } : null;
    });
    const client = new AllPeers(provider, INFO);
    await client.resources.subscribe("all", () => {});
    const failed = next((resolve) => client.on("error", resolve));
    provider.emit("disconnect", { code: 4900 });
    revoked = true;
    provider.emit("connect");
    const error = await failed;
    assert.equal(error.codeName, "Unauthorized");
  });
});

describe("reconnect with a scope revoked meanwhile", () => {
  it("keeps the topics still granted and reports the one refused", async () => {
    let presenceRevoked = false;
    const provider = new FakeProvider((method, params) => {
      if (method === "events.subscribe" && presenceRevoked && params.topics.includes("presence.changed")) {
        throw rpcError(4100, "scope presence not granted");
      }
      return { topics: params?.topics ?? [] };
    });
    const client = new AllPeers(provider, INFO);
    const contacts = [];
    await client.on("presence.changed", () => {});
    await client.on("contact.changed", (c) => contacts.push(c.peer_id));
    const failed = next((resolve) => client.on("error", resolve));
    provider.emit("disconnect", { code: 4900 });
    presenceRevoked = true;
    provider.emit("connect");
    assert.equal((await failed).codeName, "Unauthorized");
    assert.ok(provider.calls.some((c) => c.method === "events.subscribe" && c.params.topics[0] === "contact.changed"));
    provider.emit("contact.changed", { peer_id: "apbob" });
    assert.deepEqual(contacts, ["apbob"]);
  });
});

describe("listener removal", () => {
  it("off() stops delivery and unsubscribes the session from the topic", async () => {
    const provider = subscribingProvider();
    const client = new AllPeers(provider, INFO);
    const seen = [];
    const listener = (p) => seen.push(p.peer_id);
    const off = await client.on("presence.changed", listener);
    await client.on("presence.changed", listener); // the same function once
    provider.emit("presence.changed", { peer_id: "a" });
    await off();
    provider.emit("presence.changed", { peer_id: "b" });
    assert.deepEqual(seen, ["a"]);
    assert.equal(provider.listenerCount("presence.changed"), 0);
    assert.deepEqual(provider.calls.at(-1), { method: "events.unsubscribe", params: { topics: ["presence.changed"] } });
  });

  it("the last of several listeners unsubscribes, not the first", async () => {
    const provider = subscribingProvider();
    const client = new AllPeers(provider, INFO);
    const a = () => {};
    const b = () => {};
    await client.on("contact.changed", a);
    await client.on("contact.changed", b);
    assert.equal(provider.methods().filter((m) => m === "events.subscribe").length, 1);
    await client.off("contact.changed", a);
    assert.ok(!provider.methods().includes("events.unsubscribe"));
    await client.off("contact.changed", b);
    assert.ok(provider.methods().includes("events.unsubscribe"));
  });

  it("a refused on() leaves no listener behind", async () => {
    const provider = new FakeProvider(() => { throw rpcError(4100, "scope presence not granted"); });
    const client = new AllPeers(provider, INFO);
    const error = await client.on("presence.changed", () => {}).catch((e) => e);
    assert.equal(error.codeName, "Unauthorized");
    assert.equal(provider.listenerCount("presence.changed"), 0);
  });

  it("unsubscribe() stops a resource subscription; close() removes every provider listener", async () => {
    const provider = subscribingProvider();
    const client = new AllPeers(provider, INFO);
    const seen = [];
    const subscription = await client.resources.subscribe({ id: "x" }, (c) => seen.push(c.id));
    await subscription.unsubscribe();
    assert.deepEqual(provider.calls.at(-1), { method: "resources.unsubscribe", params: { subscription: 1 } });
    provider.emit("resource.changed", { id: "x", subscription: 1 });
    assert.deepEqual(seen, []);
    assert.equal(provider.listenerCount("resource.changed"), 0);
    await client.on("presence.changed", () => {});
    await client.close();
    for (const event of ["connect", "disconnect", "permissionsChanged", "presence.changed"]) {
      assert.equal(provider.listenerCount(event), 0, event);
    }
    assert.equal((await client.identity().catch((e) => e)).code, 4900);
  });

  it("a throwing listener does not stop the others", async () => {
    const provider = subscribingProvider();
    const client = new AllPeers(provider, INFO);
    const reported = [];
    const saved = globalThis.reportError;
    globalThis.reportError = (e) => reported.push(e.message);
    try {
      const seen = [];
      await client.on("presence.changed", () => { throw new Error("app bug"); });
      await client.on("presence.changed", (p) => seen.push(p.peer_id));
      provider.emit("presence.changed", { peer_id: "a" });
      assert.deepEqual(seen, ["a"]);
      assert.deepEqual(reported, ["app bug"]);
    } finally {
      globalThis.reportError = saved;
    }
  });
});
