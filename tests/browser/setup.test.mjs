// First run and Settings with a real node, two real hubs and headless Chromium: a node with no
// hub is greeted in People; from the keyboard it joins a hub by pasting its address (the daemon
// restarts with it), registers a name, protects its identity with a passphrase and downloads a
// backup that `allpeers identity import` restores elsewhere. Then Settings: the home hub changed
// with a friend's invite code (its hub), the restart and the unlock that the passphrase now
// asks for; the download folder changed (a relative one refused).
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import {
  allpeers,
  apiCall,
  axeAudit,
  cleanupAll,
  installHost,
  launch,
  makeNode,
  makeSocialNode,
  onCleanup,
  openPanel,
  registerAtHub,
  screenshot,
  screenshotBoth,
  startDaemon,
  startHub,
  until,
  waitConnected,
} from "./harness.mjs";

after(cleanupAll);

const PASSPHRASE = "correct horse battery";

test("first run: join a hub, a name, a passphrase, a backup; Settings: another hub by invite code, the download folder", async () => {
  const [hub, hub2] = await Promise.all([startHub(), startHub()]);
  const node = await makeNode();
  // Loopback only, and no hub: what a fresh install has.
  writeFileSync(
    join(node.dataDir, "config.json"),
    JSON.stringify({ net: { quic: "127.0.0.1:0", tcp: "127.0.0.1:0" }, transfers: { listen: "127.0.0.1:0", use_trackers: false } }),
  );
  await installHost(node);
  const context = await launch(node.profile);
  const page = await openPanel(context, "people");
  await waitConnected(page);
  await page.waitForSelector('#welcome:visible');
  await page.waitForSelector('body[data-welcome="no-hub"]');
  assert.ok(await page.isDisabled("#welcome-name"), "no name before a hub");
  await screenshotBoth(page, "welcome");

  // --- 1. A hub address that is not one: said so. Then the real one, typed and sent with Enter.
  await page.focus("#welcome-hub");
  await page.keyboard.type("not a hub");
  await page.keyboard.press("Enter");
  await until("the refusal", async () => /Not changed: .*expected/.test(await page.textContent("#welcome-hub-result")));
  await page.fill("#welcome-hub", `${hub.peerId}@quic://${hub.quic},tcp://${hub.tcp}`);
  await page.keyboard.press("Enter");
  await page.waitForSelector('body[data-welcome="hub"]');
  assert.equal((await apiCall(node, "net.status")).hub.hub, hub.peerId);
  assert.equal(JSON.parse(readFileSync(join(node.dataDir, "config.json"), "utf8")).hub.peer_id, hub.peerId);

  // --- 2. A name.
  await page.waitForSelector("#welcome-name:not([disabled])");
  await page.focus("#welcome-name");
  await page.keyboard.type("alice");
  await page.keyboard.press("Enter");
  await until("the name", async () => /You are alice@hub\.test now/.test(await page.textContent("#welcome-name-result")));
  assert.equal((await apiCall(node, "hub.resolve", { query: node.peerId })).name, "alice@hub.test");

  // --- 3. A passphrase: two that differ are refused; then sealed.
  await page.fill("#welcome-seal", PASSPHRASE);
  await page.fill("#welcome-seal-again", "something else");
  await page.click("#welcome-seal-set");
  assert.match(await page.textContent("#welcome-seal-result"), /differ/);
  await page.fill("#welcome-seal-again", PASSPHRASE);
  await page.keyboard.press("Enter");
  await until("sealed", async () => (await apiCall(node, "identity.get")).sealed === true);
  assert.equal((await apiCall(node, "identity.get")).locked, false, "the running daemon stays unlocked");

  // --- 4. A backup: a download; it restores the same identity in another data dir.
  const [download] = await Promise.all([page.waitForEvent("download"), page.click("#welcome-backup-get")]);
  const backupPath = join(node.root, "backup.json");
  await download.saveAs(backupPath);
  const backup = JSON.parse(readFileSync(backupPath, "utf8"));
  assert.equal(backup.peer_id, node.peerId);
  const elsewhere = mkdtempSync(join(tmpdir(), "allpeers-restore-"));
  onCleanup(() => import("node:fs").then((fs) => fs.rmSync(elsewhere, { recursive: true, force: true })));
  await allpeers(elsewhere, ["identity", "import", backupPath], { env: { ALLPEERS_BACKUP_PASSPHRASE: PASSPHRASE } });
  assert.equal(await allpeers(elsewhere, ["id"], { env: { ALLPEERS_PASSPHRASE: PASSPHRASE } }), node.peerId);
  await axeAudit(page, "welcome-done-light");
  await page.click("#welcome-done");
  await page.waitForSelector("#welcome", { state: "hidden" });
  const again = await openPanel(context, "people");
  await waitConnected(again);
  await again.waitForSelector("#peer-id:not(.placeholder)");
  assert.ok(await again.isHidden("#welcome"), "Done is remembered");
  await again.close();

  // --- Settings: another home hub, from a friend's invite code (it carries the friend's hub).
  const bob = await makeSocialNode(hub2);
  await startDaemon(bob);
  await registerAtHub(bob, "bob");
  const invite = (await apiCall(bob, "contacts.invite")).code;
  await page.click("#tab-settings");
  await page.fill("#home-hub", invite);
  await page.keyboard.press("Enter");
  await page.waitForSelector("#home-hub-restart:visible");
  assert.match(await page.textContent("#home-hub-result"), /Home hub set to .*restarts/);
  assert.equal(JSON.parse(readFileSync(join(node.dataDir, "config.json"), "utf8")).hub.peer_id, hub2.peerId);
  await page.click("#home-hub-restart");
  // The new daemon starts sealed: locked until the passphrase is given (People).
  await page.click("#tab-people");
  await page.waitForSelector("#unlock-form:visible");
  await page.fill("#passphrase", PASSPHRASE);
  await page.keyboard.press("Enter");
  await until("online at the second hub", async () => {
    const hubStatus = (await apiCall(node, "net.status")).hub;
    return hubStatus?.hub === hub2.peerId && hubStatus.state === "online";
  });

  // --- Settings: the download folder; a relative one refused.
  await page.click("#tab-settings");
  await until("the current folder", async () => (await page.inputValue("#download-dir")).endsWith("/downloads"));
  await page.fill("#download-dir", "relative/dir");
  await page.click("#download-dir-set");
  await until("the refusal", async () => /Not changed/.test(await page.textContent("#download-dir-result")));
  const dir = join(node.root, "my downloads");
  await page.fill("#download-dir", dir);
  await page.keyboard.press("Enter");
  await until("the new folder", async () => (await page.textContent("#download-dir-result")).includes(dir));
  assert.deepEqual(await apiCall(node, "transfers.download_dir.get"), { dir });
  assert.equal(JSON.parse(readFileSync(join(node.dataDir, "config.json"), "utf8")).transfers.download_dir, dir);
  await screenshot(page, "settings-setup-light");
  await axeAudit(page, "settings-setup-light");
  assert.deepEqual(page.errors, []);
});
