import assert from "node:assert/strict";
import { test } from "node:test";
import { Connection, ConnectionOptions, PortHandlers, RpcError, classifyDisconnect } from "../src/lib/connection";
import { ConnectionState, ExtErrorCode } from "../src/lib/protocol";

const flush = () => new Promise((r) => setImmediate(r));

/** A scripted host plus manual timers. */
function harness(extra: Partial<ConnectionOptions> = {}) {
  const timers: { fn: () => void; at: number; id: number }[] = [];
  let now = 0;
  let nextTimer = 1;
  const ports: { handlers: PortHandlers; sent: any[]; closed: boolean }[] = [];
  const states: ConnectionState[] = [];
  const events: [string, unknown][] = [];
  const c = new Connection({
    client: "extension/test",
    topics: ["log.changed"],
    connect: (handlers) => {
      const port = { handlers, sent: [] as any[], closed: false };
      ports.push(port);
      return { post: (m) => port.sent.push(m), close: () => (port.closed = true) };
    },
    now: () => now,
    setTimer: (fn, ms) => {
      const id = nextTimer++;
      timers.push({ fn, at: now + ms, id });
      return id;
    },
    clearTimer: (id) => {
      const i = timers.findIndex((t) => t.id === id);
      if (i >= 0) timers.splice(i, 1);
    },
    log: () => {},
    ...extra,
  });
  c.onState((s) => states.push(s));
  c.onEvent((t, d) => events.push([t, d]));
  const advance = (ms: number) => {
    now += ms;
    for (;;) {
      timers.sort((a, b) => a.at - b.at);
      const t = timers[0];
      if (!t || t.at > now) break;
      timers.shift();
      t.fn();
    }
  };
  const port = () => ports[ports.length - 1];
  const reply = (m: unknown) => port().handlers.onMessage(m);
  const hello = {
    server: "allpeers",
    server_version: "0.1.0",
    api_version: 1,
    methods: ["hello"],
    topics: ["log.changed", "clients.changed"],
    peer_id: "apxyz",
  };
  const connect = async () => {
    c.start();
    const h = port().sent[0];
    assert.equal(h.method, "hello");
    assert.deepEqual(h.params, { client: "extension/test", api_version: 1 });
    reply({ jsonrpc: "2.0", id: h.id, result: hello });
    await flush();
    assert.equal(c.current.status, "connected");
  };
  return { c, ports, port, reply, states, events, advance, connect, hello };
}

test("hello, subscribe, request/response by id", async () => {
  const t = harness();
  await t.connect();
  assert.equal(t.c.current.epoch, 1);
  const sub = t.port().sent[1];
  assert.equal(sub.method, "events.subscribe");
  assert.deepEqual(sub.params, { topics: ["log.changed"] });
  const a = t.c.request("log.get");
  const b = t.c.request("status.get");
  const [ra, rb] = t.port().sent.slice(2);
  t.reply({ jsonrpc: "2.0", id: rb.id, result: { pid: 1 } });
  t.reply({ jsonrpc: "2.0", id: ra.id, error: { code: -32602, message: "bad" } });
  assert.deepEqual(await b, { pid: 1 });
  await assert.rejects(a, (e: RpcError) => e.code === -32602 && e.message === "bad");
  t.reply({ jsonrpc: "2.0", method: "event", params: { topic: "log.changed", data: { filter: "bone" } } });
  assert.deepEqual(t.events, [["log.changed", { filter: "bone" }]]);
});

test("requests while disconnected fail at once; nothing is queued", async () => {
  const t = harness();
  await assert.rejects(t.c.request("log.get"), (e: RpcError) => e.code === ExtErrorCode.NotConnected);
  t.c.start();
  await assert.rejects(t.c.request("log.get"), /Still connecting/);
  assert.equal(t.port().sent.length, 1, "only hello went out");
});

test("a chunked reply is reassembled", async () => {
  const t = harness();
  await t.connect();
  const p = t.c.request("big.get");
  const id = t.port().sent.at(-1).id;
  const text = JSON.stringify({ jsonrpc: "2.0", id, result: { blob: "x".repeat(1000) } });
  const bytes = Buffer.from(text);
  const half = 600;
  for (const [index, part] of [bytes.subarray(half), bytes.subarray(0, half)].entries()) {
    const realIndex = index === 0 ? 1 : 0;
    t.reply({
      jsonrpc: "2.0",
      method: "chunk",
      params: { message: 0, index: realIndex, count: 2, total_len: bytes.length, data: part.toString("base64") },
    });
  }
  assert.deepEqual(await p, { blob: "x".repeat(1000) });
});

test("bridge.closed closes the port and explains why; pending calls fail; backoff then reconnect", async () => {
  const t = harness();
  await t.connect();
  const p = t.c.request("log.get");
  t.reply({ jsonrpc: "2.0", method: "bridge.closed", params: { reason: "daemon stopped" } });
  // Closed at once, before the host exits: no message of ours can race its exit.
  assert.equal(t.port().closed, true);
  // The browser's own report that follows (here the broken pipe's) changes nothing.
  t.port().handlers.onDisconnect("Error when communicating with the native messaging host.");
  await assert.rejects(p, (e: RpcError) => e.code === ExtErrorCode.ConnectionLost);
  const s = t.c.current;
  assert.equal(s.status, "disconnected");
  assert.equal(s.problem?.kind, "daemon-closed");
  assert.match(s.problem!.message, /daemon stopped/);
  assert.equal(s.retryAt, 250);
  t.advance(249);
  assert.equal(t.ports.length, 1);
  t.advance(1);
  assert.equal(t.ports.length, 2);
  assert.equal(t.c.current.status, "connecting");
  // A second failure doubles the delay.
  t.port().handlers.onDisconnect("Specified native messaging host not found.");
  assert.equal(t.c.current.problem?.kind, "host-missing");
  assert.equal(t.c.current.retryAt, 250 + 500);
  t.advance(500);
  const h = t.port().sent[0];
  t.reply({ jsonrpc: "2.0", id: h.id, result: t.hello });
  await flush();
  assert.equal(t.c.current.status, "connected");
  assert.equal(t.c.current.problem, null);
  assert.equal(t.c.current.attempt, 0);
  assert.equal(t.c.current.epoch, 2);
});

test("garbage from the host drops the port and is reported", async () => {
  for (const garbage of [
    42,
    { hello: "world" },
    { jsonrpc: "2.0", id: 1 },
    { jsonrpc: "2.0", method: "event", params: { data: 1 } },
    { jsonrpc: "2.0", method: "chunk", params: { message: 0, index: 5, count: 2, total_len: 9, data: "" } },
  ]) {
    const t = harness();
    await t.connect();
    t.reply(garbage);
    assert.equal(t.c.current.status, "disconnected", JSON.stringify(garbage));
    assert.equal(t.c.current.problem?.kind, "host-garbage");
    assert.ok(t.ports[0].closed);
  }
  const t = harness();
  t.c.start();
  t.reply({ jsonrpc: "2.0", id: t.port().sent[0].id, result: { server: 1 } });
  await flush();
  assert.equal(t.c.current.problem?.kind, "host-garbage");
});

test("silence is reported when hello times out; retryNow abandons a hanging attempt", () => {
  const t = harness();
  t.c.start();
  t.advance(20_000);
  assert.equal(t.c.current.status, "disconnected");
  assert.equal(t.c.current.problem?.kind, "timeout");
  t.advance(250);
  assert.equal(t.c.current.status, "connecting");
  t.c.retryNow();
  assert.equal(t.ports.length, 3);
  assert.ok(t.ports[1].closed);
  assert.equal(t.c.current.status, "connecting");
});

test("a daemon speaking another API version is reported as such", async () => {
  const t = harness();
  t.c.start();
  t.reply({ jsonrpc: "2.0", id: t.port().sent[0].id, result: { ...t.hello, api_version: 2 } });
  await flush();
  assert.equal(t.c.current.problem?.kind, "hello-failed");
  assert.match(t.c.current.problem!.message, /version 2; this extension speaks 1/);
});

test("a reply to an unknown id is ignored, not fatal", async () => {
  const t = harness();
  await t.connect();
  t.reply({ jsonrpc: "2.0", id: 999, result: 1 });
  assert.equal(t.c.current.status, "connected");
});

test("the browser's disconnect reasons are classified", () => {
  assert.equal(classifyDisconnect("Specified native messaging host not found.").kind, "host-missing");
  assert.equal(classifyDisconnect("No such native application net.allpeers.host").kind, "host-missing");
  assert.equal(classifyDisconnect("Error when communicating with the native messaging host.").kind, "host-garbage");
  assert.equal(classifyDisconnect("Native host has exited.").kind, "host-exited");
  assert.equal(classifyDisconnect(undefined).kind, "host-exited");
});

test("an app session's hello names its origin; close() ends it for good until start()", async () => {
  const t = harness({ hello: { origin: "https://app.example" }, topics: [] });
  t.c.start();
  const h = t.port().sent[0];
  assert.deepEqual(h.params, { origin: "https://app.example", client: "extension/test", api_version: 1 });
  t.reply({ jsonrpc: "2.0", id: h.id, result: t.hello });
  await flush();
  assert.equal(t.port().sent.length, 1, "no topics: no events.subscribe");
  const p = t.c.request("permissions.get");
  t.c.close();
  await assert.rejects(p, (e: RpcError) => e.code === ExtErrorCode.ConnectionLost);
  assert.equal(t.port().closed, true);
  assert.equal(t.c.current.status, "disconnected");
  assert.equal(t.c.current.retryAt, null);
  // The port's late disconnect schedules nothing; no timer brings it back.
  t.port().handlers.onDisconnect("Native host has exited.");
  t.advance(60_000);
  assert.equal(t.ports.length, 1);
  t.c.start();
  assert.equal(t.ports.length, 2);
  assert.equal(t.c.current.status, "connecting");
});
