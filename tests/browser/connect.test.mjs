// The panel connects through the real native host and shows this node's identity;
// settings round-trip through the daemon.
import assert from "node:assert/strict";
import { after, test } from "node:test";
import { allpeers, cleanupAll, installHost, launch, makeNode, openPanel, waitConnected } from "./harness.mjs";

after(cleanupAll);

test("the panel connects and shows the PeerId that `allpeers id` prints", async () => {
  const node = await makeNode();
  await installHost(node);
  const context = await launch(node.profile);
  const page = await openPanel(context);
  await waitConnected(page);
  await page.waitForFunction((id) => document.getElementById("peer-id")?.textContent === id, node.peerId);
  assert.equal(await page.textContent("#identity-state"), "Ready");
  assert.equal(await page.isHidden("#banner"), true);
  assert.equal(await page.isHidden("#unlock-form"), true);
  // The copy button puts the PeerId on the clipboard.
  await context.grantPermissions(["clipboard-read", "clipboard-write"]);
  await page.click("#copy-peer-id");
  await page.waitForSelector("#copy-result:has-text('Copied')");
  assert.equal(await page.evaluate(() => navigator.clipboard.readText()), node.peerId);
  // The daemon the browser started is this node's.
  const status = JSON.parse(await allpeers(node.dataDir, ["call", "status.get", "{}"]));
  assert.equal(status.identity.peer_id, node.peerId);
  assert.ok(status.clients >= 2, `the extension and the CLI are clients (${status.clients})`);
  // The worker registered the side panel (Chromium's face of the sidebar).
  const [worker] = context.serviceWorkers().length
    ? context.serviceWorkers()
    : [await context.waitForEvent("serviceworker")];
  const options = await worker.evaluate(() => chrome.sidePanel.getOptions({}));
  assert.equal(options.path, "panel.html");
  assert.deepEqual(page.errors, []);
});

test("log level changes round-trip between the panel and the daemon", async () => {
  const node = await makeNode();
  await installHost(node);
  const context = await launch(node.profile);
  const page = await openPanel(context, "settings");
  await waitConnected(page);
  await page.waitForSelector('body[data-log-filter="flesh"]');
  // Panel -> daemon.
  await page.selectOption("#log-level", "bone");
  assert.equal(await page.inputValue("#log-filter"), "bone");
  await page.click("#log-apply");
  await page.waitForSelector("#log-result:has-text('Now logging at “bone”')");
  const log = JSON.parse(await allpeers(node.dataDir, ["call", "log.get", "{}"]));
  assert.equal(log.filter, "bone");
  // Daemon -> panel: a change made elsewhere arrives as a log.changed event.
  await allpeers(node.dataDir, ["log", "set", "marrow,allpeers_node=bone"]);
  await page.waitForSelector('body[data-log-filter="marrow,allpeers_node=bone"]');
  assert.equal(await page.inputValue("#log-filter"), "marrow,allpeers_node=bone");
  assert.equal(await page.inputValue("#log-level"), "marrow");
  // A bad filter is refused with the daemon's reason, and what was typed stays.
  await page.fill("#log-filter", "loud");
  await page.click("#log-apply");
  await page.waitForSelector("#log-result.error:has-text('Not applied')");
  assert.equal(await page.inputValue("#log-filter"), "loud");
  // Status and about are filled from the daemon.
  await page.waitForSelector('#status-list dd[data-key="pid"]');
  assert.equal(await page.textContent('#status-list dd[data-key="data_dir"]'), node.dataDir);
  assert.match(await page.textContent('#about-list dd[data-key="server"]'), /^allpeers \d+\.\d+\.\d+/);
  assert.deepEqual(page.errors, []);
});

test("a reply over the browser's 1 MiB limit arrives whole (chunks reassembled)", async () => {
  const node = await makeNode();
  await installHost(node);
  const context = await launch(node.profile);
  const page = await openPanel(context);
  await waitConnected(page);
  // `ping` echoes its params: 3 MiB out comes back as chunk notifications from the host.
  const result = await page.evaluate(async () => {
    const blob = Array.from({ length: 3 * 1024 * 1024 + 17 }, (_, i) => String.fromCharCode(97 + (i % 26))).join("");
    const port = chrome.runtime.connect({ name: "allpeers-panel" });
    const reply = await new Promise((resolve) => {
      port.onMessage.addListener((m) => m.type === "reply" && m.id === 1 && resolve(m));
      port.postMessage({ type: "call", id: 1, method: "ping", params: { blob, emoji: "✓ ünïcode 🎉" } });
    });
    port.disconnect();
    return {
      error: reply.error ?? null,
      same: reply.result?.blob === blob,
      length: reply.result?.blob?.length,
      emoji: reply.result?.emoji,
    };
  });
  assert.deepEqual(result, { error: null, same: true, length: 3 * 1024 * 1024 + 17, emoji: "✓ ünïcode 🎉" });
  // And the connection is still up afterwards.
  assert.equal(await page.evaluate(() => document.body.dataset.connection), "connected");
  assert.deepEqual(page.errors, []);
});
