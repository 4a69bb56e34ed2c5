// Restoring an identity backup from the sidebar, with the real native host (no hub needed): in the first-run
// card, a sealed backup made by `allpeers identity export` on another node — a wrong passphrase said plainly, the
// replacement of the identity the node has asked first (Keep / Replace), then the daemon restarted with the
// restored identity and unlocked with the backup's passphrase. In Settings, a file that is not a backup refused,
// and the identity that was put aside (a plain key file) restored back. Chromium, then Firefox.
import assert from "node:assert/strict";
import { existsSync, readFileSync, readdirSync, writeFileSync } from "node:fs";
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
  openPanel,
  screenshotBoth,
  until,
  waitConnected,
} from "./harness.mjs";
import { FIREFOX, FIREFOX_UUID, GECKODRIVER, launchFirefox } from "./firefox-driver.mjs";

after(cleanupAll);

const PASSPHRASE = "backup passphrase";

/** A node with no hub (what a fresh install has), and the sealed backup of another node's identity. */
async function nodeAndBackup() {
  const original = await makeNode();
  const backup = join(original.root, "backup.json");
  await allpeers(original.dataDir, ["identity", "export", backup], { env: { ALLPEERS_BACKUP_PASSPHRASE: PASSPHRASE } });
  const node = await makeNode();
  writeFileSync(
    join(node.dataDir, "config.json"),
    JSON.stringify({ net: { quic: "127.0.0.1:0", tcp: "127.0.0.1:0" }, transfers: { listen: "127.0.0.1:0", use_trackers: false } }),
  );
  return { node, backup, restored: original.peerId };
}

/** The key file the restore put aside, in the node's data dir. */
function keptIdentity(node) {
  const kept = readdirSync(node.dataDir).filter((n) => n.startsWith("identity.json.replaced-"));
  assert.equal(kept.length, 1, `one identity put aside: ${kept}`);
  return join(node.dataDir, kept[0]);
}

test("restore a backup: first-run card (sealed, replacing only once confirmed); Settings (a bad file, the old identity back)", async () => {
  const { node, backup, restored } = await nodeAndBackup();
  await installHost(node);
  const context = await launch(node.profile);
  const page = await openPanel(context, "people");
  await waitConnected(page);
  await page.waitForSelector("#welcome:visible");

  // --- A wrong passphrase: said so, nothing changed.
  await page.setInputFiles("#welcome-restore-file", backup);
  await page.fill("#welcome-restore-passphrase", "not the passphrase");
  await page.click("#welcome-restore-set");
  await until("the refusal", async () => /Not restored: wrong passphrase/.test(await page.textContent("#welcome-restore-result")));

  // --- The right one: the node's own identity is not replaced without asking; Keep keeps it.
  await page.fill("#welcome-restore-passphrase", PASSPHRASE);
  await page.keyboard.press("Enter");
  await page.waitForSelector("#welcome-restore-confirm:visible");
  assert.match(await page.textContent("#welcome-restore-result"), /replaces your current identity/);
  assert.equal(await page.evaluate(() => document.activeElement?.id), "welcome-restore-replace");
  await axeAudit(page, "welcome-restore-confirm-light");
  await page.click("#welcome-restore-keep");
  await page.waitForSelector("#welcome-restore-confirm", { state: "hidden" });
  assert.match(readFileSync(join(node.dataDir, "identity.json"), "utf8"), new RegExp(node.peerId));

  // --- Again, and Replace: the daemon restarts with the restored identity, unlocked with the same passphrase.
  await page.setInputFiles("#welcome-restore-file", backup);
  await page.fill("#welcome-restore-passphrase", PASSPHRASE);
  await page.click("#welcome-restore-set");
  await page.waitForSelector("#welcome-restore-confirm:visible");
  await page.click("#welcome-restore-replace");
  await page.waitForSelector(`body[data-restored="${restored}"]`);
  await until("the restored PeerId shown", async () => (await page.textContent("#peer-id")) === restored);
  const info = await apiCall(node, "identity.get");
  assert.deepEqual([info.peer_id, info.sealed, info.locked], [restored, true, false]);
  assert.match(await page.textContent("#welcome-restore-result"), /You are .* again/);

  // --- Settings: a file that is not a backup; then the identity that was put aside (plain: no passphrase).
  await page.click("#tab-settings");
  const junk = join(node.root, "holiday.json");
  writeFileSync(junk, JSON.stringify({ photos: ["a.jpg"] }));
  await page.setInputFiles("#restore-file", junk);
  await page.click("#restore-set");
  await until("the refusal", async () => /Not restored: not an identity backup/.test(await page.textContent("#restore-result")));
  await page.setInputFiles("#restore-file", keptIdentity(node));
  await page.click("#restore-set");
  await page.waitForSelector("#restore-confirm:visible");
  await page.click("#restore-replace");
  await page.waitForSelector(`body[data-restored="${node.peerId}"]`);
  const back = await apiCall(node, "identity.get");
  assert.deepEqual([back.peer_id, back.sealed, back.locked], [node.peerId, false, false]);
  await screenshotBoth(page, "settings-restore");
  assert.deepEqual(page.errors, []);
});

test(
  "Firefox: restore a sealed backup in the first-run card, replacing the identity once confirmed",
  {
    skip:
      (!existsSync(FIREFOX) && `no ${FIREFOX} (apt-get install firefox-esr)`) ||
      (!GECKODRIVER && "no geckodriver (cargo install geckodriver)"),
  },
  async () => {
    const { By, Key, until: wdUntil } = await import("selenium-webdriver");
    const { node, backup, restored } = await nodeAndBackup();
    const { driver } = await launchFirefox(node, { width: 400, height: 900 });
    const WAIT = 30_000;
    const css = (s) => wdUntil.elementLocated(By.css(s));
    const text = async (id) => driver.findElement(By.id(id)).getText();
    await driver.get(`moz-extension://${FIREFOX_UUID}/panel.html#people`);
    await driver.wait(css('body[data-connection="connected"]'), WAIT);
    await driver.wait(css('body[data-welcome="no-hub"]'), WAIT);

    await driver.findElement(By.id("welcome-restore-file")).sendKeys(backup);
    await driver.findElement(By.id("welcome-restore-passphrase")).sendKeys(PASSPHRASE, Key.ENTER);
    await driver.wait(css("#welcome-restore-confirm:not([hidden])"), WAIT);
    assert.match(await text("welcome-restore-result"), /replaces your current identity/);
    await driver.findElement(By.id("welcome-restore-replace")).click();
    await driver.wait(css(`body[data-restored="${restored}"]`), WAIT);
    await driver.wait(async () => (await text("peer-id")) === restored, WAIT);
    const info = await apiCall(node, "identity.get");
    assert.deepEqual([info.peer_id, info.sealed, info.locked], [restored, true, false]);
    keptIdentity(node);
  },
);
