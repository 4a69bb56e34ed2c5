// The host going away, missing, or talking garbage: the panel says so plainly and
// recovers when the host is back. No sleeps: every wait is on the page's state.
import assert from "node:assert/strict";
import { renameSync } from "node:fs";
import { after, test } from "node:test";
import {
  allpeers,
  cleanupAll,
  epoch,
  hostManifestPath,
  installFakeHost,
  installHost,
  launch,
  makeNode,
  nativeHostPids,
  openPanel,
  waitConnected,
} from "./harness.mjs";

after(cleanupAll);

async function daemonPid(node) {
  return JSON.parse(await allpeers(node.dataDir, ["call", "status.get", "{}"])).pid;
}

test("the daemon stopping is reported and the panel reconnects to a new daemon", async () => {
  const node = await makeNode();
  await installHost(node);
  const context = await launch(node.profile);
  const page = await openPanel(context, "settings");
  await waitConnected(page);
  const before = await epoch(page);
  const pid = await daemonPid(node);
  await page.waitForSelector(`body[data-daemon-pid="${pid}"]`);

  await allpeers(node.dataDir, ["stop"]);
  // The bridge says the daemon closed; the background reconnects, which starts a new daemon.
  await page.waitForFunction(
    (e) => Number(document.body.dataset.epoch) > e && document.body.dataset.connection === "connected",
    before,
  );
  // The host says `bridge.closed` and the extension closes the port on it, before the host
  // exits: whatever the panel was sending meanwhile, the problem shown is the daemon's.
  assert.equal(await page.evaluate(() => document.body.dataset.lastProblem), "daemon-closed");
  assert.equal(await page.isHidden("#banner"), true);
  const newPid = await daemonPid(node);
  assert.notEqual(newPid, pid);
  // The panel reloads what it shows from the new daemon.
  await page.waitForSelector(`body[data-daemon-pid="${newPid}"]`);
  assert.equal(await page.textContent("#peer-id"), node.peerId);
  assert.deepEqual(page.errors, []);
});

test("a killed native host is reported and the panel reconnects", async () => {
  const node = await makeNode();
  await installHost(node);
  const context = await launch(node.profile);
  const page = await openPanel(context);
  await waitConnected(page);
  const before = await epoch(page);
  const pids = await nativeHostPids(node);
  assert.ok(pids.length >= 1, "the browser started a native host for this node");
  for (const pid of pids) process.kill(pid, "SIGKILL");
  await page.waitForFunction(
    (e) => Number(document.body.dataset.epoch) > e && document.body.dataset.connection === "connected",
    before,
  );
  assert.equal(await page.evaluate(() => document.body.dataset.lastProblem), "host-exited");
  assert.equal(await page.textContent("#peer-id"), node.peerId);
  assert.deepEqual(page.errors, []);
});

test("a missing host shows the banner, calls fail plainly, and Retry recovers once it is installed", async () => {
  const node = await makeNode();
  const manifest = await installHost(node);
  const context = await launch(node.profile);
  const page = await openPanel(context, "settings");
  await waitConnected(page);

  // Uninstall the host, then take the running one away.
  renameSync(manifest, `${manifest}.off`);
  await allpeers(node.dataDir, ["stop"]);
  await page.waitForSelector('body[data-problem="host-missing"]');
  await page.waitForSelector("#banner:visible");
  assert.equal(await page.textContent("#banner-title"), "AllPeers is not installed");
  assert.match(await page.textContent("#banner-hint"), /allpeers install/);
  assert.match(await page.textContent("#conn-text"), /Not connected|Reconnecting/);
  // A call while disconnected fails at once with a reason the user can read.
  await page.click("#status-refresh");
  await page.waitForSelector("#status-result:has-text('Not connected to AllPeers')");
  // Typed input survives: a log filter typed now stays in its box after a failed apply.
  await page.fill("#log-filter", "bone");
  await page.click("#log-apply");
  await page.waitForSelector("#log-result.error:has-text('Not applied')");
  assert.equal(await page.inputValue("#log-filter"), "bone");

  renameSync(`${manifest}.off`, manifest);
  await page.click("#banner-retry");
  await waitConnected(page);
  await page.waitForSelector("#banner", { state: "hidden" });
  await page.waitForSelector('#status-list dd[data-key="state"]:has-text("running")');
  assert.equal(await page.textContent("#status-result"), "");
  assert.deepEqual(page.errors, []);
});

// Chromium drops a frame that is not JSON without telling the extension, so a host that
// only sends such frames looks silent: it is reported when hello times out (20 s).
for (const [mode, kind, title, detail] of [
  ["garbage", "timeout", "AllPeers is not answering", /did not answer in time/],
  ["not-rpc", "host-garbage", "AllPeers is not answering correctly", /sent something that is not the protocol/],
  ["bad-hello", "host-garbage", "AllPeers is not answering correctly", /answered hello with something unexpected/],
]) {
  test(`a host replying ${mode} is reported plainly, and the real host then connects`, async () => {
    const node = await makeNode();
    installFakeHost(node.profile, mode);
    const context = await launch(node.profile);
    const page = await openPanel(context);
    await page.waitForSelector(`body[data-problem="${kind}"]`);
    await page.waitForSelector("#banner:visible");
    assert.equal(await page.textContent("#banner-title"), title);
    assert.match(await page.textContent("#banner-detail"), detail);
    // The real host is installed: the next attempt connects.
    await installHost(node);
    await page.click("#banner-retry");
    await waitConnected(page);
    await page.waitForFunction((id) => document.getElementById("peer-id")?.textContent === id, node.peerId);
    assert.equal(await page.isHidden("#banner"), true);
    assert.deepEqual(page.errors, []);
  });
}
