// Measures the panel's path to the node in headless Chromium with the real host:
//   node bench.mjs [N]
// - time from opening panel.html to first contentful paint and to the PeerId shown
// - round trips page -> background -> native host -> daemon -> back (`ping`), N of them
// - a 3 MiB ping (the reply comes back as chunk notifications)
// - JS heap of the panel page
import { cleanupAll, installHost, launch, makeNode, openPanel, waitConnected, EXTENSION_ID } from "./harness.mjs";

const N = Number(process.argv[2] ?? 2000);
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
} finally {
  await cleanupAll();
}
