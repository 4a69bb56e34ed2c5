// Measures the panel's path to the node in headless Chromium with the real host:
//   node bench.mjs [N]
// - time from opening panel.html to first contentful paint and to the PeerId shown
// - round trips page -> background -> native host -> daemon -> back (`ping`), N of them
// - a 3 MiB ping (the reply comes back as chunk notifications)
// - JS heap of the panel page
// - chat: two browsers, two nodes, one hub on loopback; time from "Send" in one sidebar to
//   the message shown in the other, M messages (node bench.mjs [N] [M])
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import {
  apiCall,
  cleanupAll,
  installHost,
  launch,
  makeNode,
  makeSocialNode,
  openPanel,
  registerAtHub,
  startHub,
  waitConnected,
  EXTENSION_ID,
} from "./harness.mjs";

const N = Number(process.argv[2] ?? 2000);
const M = Number(process.argv[3] ?? 300);
const pct = (xs, p) => xs[Math.min(xs.length - 1, Math.floor((p / 100) * xs.length))];

try {
  const node = await makeNode();
  await installHost(node);
  const context = await launch(node.profile);
  // Warm: the first panel starts the host and the daemon.
  const warm = await openPanel(context);
  await waitConnected(warm);
  await warm.close();

  const loads = [];
  for (let i = 0; i < 5; i++) {
    const page = await context.newPage();
    await page.goto(`chrome-extension://${EXTENSION_ID}/panel.html#people`);
    await page.waitForFunction((id) => document.getElementById("peer-id")?.textContent === id, node.peerId);
    loads.push(
      await page.evaluate(() => ({
        fcp: performance.getEntriesByName("first-contentful-paint")[0]?.startTime ?? NaN,
        peerId: performance.now(),
      })),
    );
    await page.close();
  }

  const page = await openPanel(context);
  await waitConnected(page);
  const times = await page.evaluate(async (n) => {
    const port = chrome.runtime.connect({ name: "allpeers-panel" });
    const waiting = new Map();
    port.onMessage.addListener((m) => {
      if (m.type === "reply") waiting.get(m.id)?.(m);
    });
    const call = (id, params) =>
      new Promise((resolve) => {
        waiting.set(id, resolve);
        port.postMessage({ type: "call", id, method: "ping", params });
      });
    const out = [];
    for (let i = 1; i <= n + 50; i++) {
      const t0 = performance.now();
      const r = await call(i, { i });
      if (r.error) throw new Error(r.error.message);
      if (i > 50) out.push(performance.now() - t0);
    }
    port.disconnect();
    return out;
  }, N);
  times.sort((a, b) => a - b);

  const big = await page.evaluate(async () => {
    const blob = "x".repeat(3 * 1024 * 1024);
    const port = chrome.runtime.connect({ name: "allpeers-panel" });
    const out = [];
    for (let id = 1; id <= 6; id++) {
      const t0 = performance.now();
      await new Promise((resolve) => {
        const fn = (m) => m.type === "reply" && m.id === id && (port.onMessage.removeListener(fn), resolve(m));
        port.onMessage.addListener(fn);
        port.postMessage({ type: "call", id, method: "ping", params: { blob } });
      });
      if (id > 1) out.push(performance.now() - t0);
    }
    port.disconnect();
    return out;
  });

  const heapPage = await page.evaluate(() => performance.memory?.usedJSHeapSize ?? NaN);

  const med = (xs) => xs.slice().sort((a, b) => a - b)[Math.floor(xs.length / 2)];
  const f = (x) => x.toFixed(2);
  console.log(`panel load (median of ${loads.length}): first contentful paint ${f(med(loads.map((l) => l.fcp)))} ms, PeerId shown ${f(med(loads.map((l) => l.peerId)))} ms`);
  console.log(`ping page->host->daemon->page, ${N} calls: median ${f(pct(times, 50))} ms, p95 ${f(pct(times, 95))} ms, p99 ${f(pct(times, 99))} ms, max ${f(times.at(-1))} ms`);
  console.log(`3 MiB ping (out whole, back in 5 chunks), median of ${big.length}: ${f(med(big))} ms`);
  console.log(`JS heap of the panel page: ${(heapPage / 1024 / 1024).toFixed(1)} MiB`);

  await chatBench();
} finally {
  await cleanupAll();
}

async function chatBench() {
  const hub = await startHub();
  const side = async (name) => {
    const node = await makeSocialNode(hub);
    await installHost(node);
    const context = await launch(node.profile);
    const page = await openPanel(context, "people");
    await waitConnected(page);
    node.name = await registerAtHub(node, name);
    await page.waitForSelector('body[data-social="ready"]');
    return { ...node, context, page };
  };
  const alice = await side("alice");
  const bob = await side("bob");
  await apiCall(alice, "contacts.add", { who: bob.name });
  await bob.page.waitForSelector(`#requests li[data-peer="${alice.peerId}"]`);
  await bob.page.click(`#requests li[data-peer="${alice.peerId}"] button[data-action="accept"]`);
  for (const [me, other] of [[alice, bob], [bob, alice]]) {
    const sel = `#contacts li[data-peer="${other.peerId}"][data-state="accepted"][data-presence="online"]`;
    await me.page.waitForSelector(sel);
    await me.page.click(`${sel} button[data-action="chat"]`);
    await me.page.waitForSelector("#conversation:visible");
  }
  // BENCH_BOB_VIEW=people: Bob looks at People meanwhile (nothing is marked read: no read
  // receipts), to see what marking read costs.
  if (process.env.BENCH_BOB_VIEW) await bob.page.click(`#tab-${process.env.BENCH_BOB_VIEW}`);
  // Bob's page notes when each message appears in its list (the same clock as Alice's:
  // one machine; performance.timeOrigin + now is wall-clock based in both processes).
  await bob.page.evaluate(() => {
    window.seen = new Map();
    new MutationObserver((records) => {
      const t = performance.timeOrigin + performance.now();
      for (const r of records)
        for (const n of r.addedNodes)
          if (n.dataset?.outgoing === "false") {
            const body = n.querySelector(".body")?.textContent;
            if (body && !window.seen.has(body)) window.seen.set(body, t);
          }
    }).observe(document.getElementById("message-list"), { childList: true });
    // The same event as the panel gets it, on a port of its own: splits the time into
    // "reached the page" and "drawn".
    window.arrived = new Map();
    const port = chrome.runtime.connect({ name: "allpeers-panel" });
    port.onMessage.addListener((m) => {
      if (m.type === "event" && m.topic === "message.received" && !m.data.outgoing)
        window.arrived.set(m.data.body, performance.timeOrigin + performance.now());
    });
  });
  // Alice's page notes when her own message shows (chat.send answered: stored by her node).
  await alice.page.evaluate(() => {
    window.acked = new Map();
    new MutationObserver((records) => {
      const t = performance.timeOrigin + performance.now();
      for (const r of records)
        for (const n of r.addedNodes)
          if (n.dataset?.outgoing === "true") {
            const body = n.querySelector(".body")?.textContent;
            if (body && !window.acked.has(body)) window.acked.set(body, t);
          }
    }).observe(document.getElementById("message-list"), { childList: true });
  });
  const send = (body) =>
    alice.page.evaluate((body) => {
      const input = document.getElementById("message-input");
      input.value = body;
      const t0 = performance.timeOrigin + performance.now();
      document.getElementById("send-form").requestSubmit();
      return t0;
    }, body);
  const lat = [];
  const reach = [];
  const acks = [];
  const warm = 20;
  for (let i = 0; i < M + warm; i++) {
    const body = `lat ${i}`;
    const t0 = await send(body);
    const t1 = await bob.page.waitForFunction((b) => window.seen.get(b), body).then((h) => h.jsonValue());
    const ta = await bob.page.evaluate((b) => window.arrived.get(b), body);
    if (i >= warm) {
      lat.push(t1 - t0);
      reach.push(ta - t0);
      // (Missing when the element was redrawn before the observer saw it: left out.)
      const ack = (await alice.page.evaluate((b) => window.acked.get(b), body)) - t0;
      if (Number.isFinite(ack)) acks.push(ack);
    }
  }
  // The same through a bare runtime port from Alice's page (no form, no drawing): chat.send
  // answered, and Bob's page getting the event.
  const chatId = await alice.page.evaluate(() => document.body.dataset.chat);
  const rawAck = [];
  const rawReach = [];
  for (let i = 0; i < M + warm; i++) {
    const body = `raw ${i}`;
    const { t0, t1 } = await alice.page.evaluate(
      ([chat, body]) =>
        new Promise((resolve, reject) => {
          const port = window.benchPort ?? (window.benchPort = chrome.runtime.connect({ name: "allpeers-panel" }));
          const id = (window.benchId = (window.benchId ?? 0) + 1);
          const t0 = performance.timeOrigin + performance.now();
          const fn = (m) => {
            if (m.type !== "reply" || m.id !== id) return;
            port.onMessage.removeListener(fn);
            if (m.error) reject(new Error(m.error.message));
            else resolve({ t0, t1: performance.timeOrigin + performance.now() });
          };
          port.onMessage.addListener(fn);
          port.postMessage({ type: "call", id, method: "chat.send", params: { chat, body } });
        }),
      [chatId, body],
    );
    const ta = await bob.page.waitForFunction((b) => window.arrived.get(b), body).then((h) => h.jsonValue());
    if (i >= warm) {
      rawAck.push(t1 - t0);
      rawReach.push(ta - t0);
    }
  }
  // And straight to Alice's daemon's socket from this process (no browser on the way), with
  // both browsers still running: chat.send answered, and the event at Bob's page.
  const socket = (await apiCall(alice, "status.get")).socket;
  const direct = await directClient(socket);
  await direct.call("hello", { client: "bench", api_version: 1 });
  const dirAck = [];
  const dirReach = [];
  for (let i = 0; i < M + warm; i++) {
    const body = `direct ${i}`;
    const t0 = performance.timeOrigin + performance.now();
    await direct.call("chat.send", { chat: chatId, body });
    const t1 = performance.timeOrigin + performance.now();
    const ta = await bob.page.waitForFunction((b) => window.arrived.get(b), body).then((h) => h.jsonValue());
    if (i >= warm) {
      dirAck.push(t1 - t0);
      dirReach.push(ta - t0);
    }
  }
  direct.close();
  dirAck.sort((a, b) => a - b);
  dirReach.sort((a, b) => a - b);
  rawAck.sort((a, b) => a - b);
  rawReach.sort((a, b) => a - b);
  lat.sort((a, b) => a - b);
  reach.sort((a, b) => a - b);
  acks.sort((a, b) => a - b);
  const heap = await bob.page.evaluate(() => performance.memory?.usedJSHeapSize ?? NaN);
  const shown = await bob.page.evaluate(() => document.querySelectorAll("#message-list .msg").length);
  const f = (x) => x.toFixed(1);
  console.log(
    `chat: Send in one sidebar -> shown in the other, ${M} messages: p50 ${f(pct(lat, 50))} ms, p90 ${f(pct(lat, 90))} ms, p99 ${f(pct(lat, 99))} ms, max ${f(lat.at(-1))} ms`,
  );
  console.log(
    `chat: Send -> the message.received event at the other page (both daemons, the network, hosts, backgrounds): p50 ${f(pct(reach, 50))} ms, p99 ${f(pct(reach, 99))} ms`,
  );
  console.log(`chat, bare port from Alice's page: chat.send answered p50 ${f(pct(rawAck, 50))} ms, p99 ${f(pct(rawAck, 99))} ms; the event at Bob's page p50 ${f(pct(rawReach, 50))} ms, p99 ${f(pct(rawReach, 99))} ms`);
  console.log(`chat, straight to Alice's daemon socket (browsers running): chat.send answered p50 ${f(pct(dirAck, 50))} ms, p99 ${f(pct(dirAck, 99))} ms; the event at Bob's page p50 ${f(pct(dirReach, 50))} ms, p99 ${f(pct(dirReach, 99))} ms`);
  console.log(`chat: Send -> own message shown (chat.send answered: stored by the sender's node): p50 ${f(pct(acks, 50))} ms, p99 ${f(pct(acks, 99))} ms`);
  for (const who of [alice, bob]) {
    const m = extensionProcessMemory(who.profile);
    console.log(
      `${who === alice ? "Alice" : "Bob"}'s extension process (the panel page and the background worker share it): ${m}`,
    );
  }
  console.log(`JS heap of the receiving panel with ${shown} messages shown: ${(heap / 1024 / 1024).toFixed(1)} MiB`);
}

/** RSS and PSS of the profile's extension renderer process (Linux /proc). */
function extensionProcessMemory(profile) {
  const out = execFileSync("ps", ["-eo", "pid=,args="]).toString().split("\n");
  const line = out.find((l) => l.includes("--extension-process") && l.includes(`--user-data-dir=${profile}`));
  if (!line) return "not found";
  const pid = line.trim().split(/\s+/)[0];
  const rollup = readFileSync(`/proc/${pid}/smaps_rollup`, "utf8");
  const kb = (k) => Number(new RegExp(`^${k}:\\s+(\\d+) kB`, "m").exec(rollup)?.[1] ?? NaN);
  return `RSS ${(kb("Rss") / 1024).toFixed(0)} MiB, PSS ${(kb("Pss") / 1024).toFixed(0)} MiB`;
}

/** A minimal local API client on the daemon's Unix socket (u32 LE length + JSON frames). */
async function directClient(path) {
  const { createConnection } = await import("node:net");
  const sock = createConnection(path);
  await new Promise((r, j) => (sock.once("connect", r), sock.once("error", j)));
  let buf = Buffer.alloc(0);
  let next = 1;
  const waiting = new Map();
  sock.on("data", (d) => {
    buf = Buffer.concat([buf, d]);
    while (buf.length >= 4) {
      const n = buf.readUInt32LE(0);
      if (buf.length < 4 + n) break;
      const msg = JSON.parse(buf.subarray(4, 4 + n).toString("utf8"));
      buf = buf.subarray(4 + n);
      if (msg.id !== undefined) waiting.get(msg.id)?.(msg);
    }
  });
  return {
    call(method, params) {
      const id = next++;
      const frame = Buffer.from(JSON.stringify({ jsonrpc: "2.0", id, method, params }));
      const head = Buffer.alloc(4);
      head.writeUInt32LE(frame.length);
      return new Promise((resolve, reject) => {
        waiting.set(id, (m) => (waiting.delete(id), m.error ? reject(new Error(m.error.message)) : resolve(m.result)));
        sock.write(Buffer.concat([head, frame]));
      });
    },
    close: () => sock.end(),
  };
}
