// Firefox parity for the first run and Settings (Firefox ESR + geckodriver, the real native host, two hubs): a
// node with no hub is greeted in the sidebar; from the keyboard it joins the hub by address (the daemon
// restarts with it), registers a name, protects its identity with a passphrase and downloads a backup (saved
// to a folder the test set in Firefox's preferences) that `allpeers identity import` restores elsewhere;
// Settings changes the home hub with a friend's invite code (restart, then the unlock the passphrase asks
// for) and the download folder.
import assert from "node:assert/strict";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { allpeers, apiCall, cleanupAll, makeNode, makeSocialNode, onCleanup, registerAtHub, startDaemon, startHub, until } from "./harness.mjs";
import { FIREFOX, FIREFOX_UUID, GECKODRIVER, launchFirefox } from "./firefox-driver.mjs";

after(cleanupAll);

test(
  "Firefox: first run joins a hub, registers a name, seals the identity, downloads a backup; Settings: a hub by invite code, the download folder",
  {
    skip:
      (!existsSync(FIREFOX) && `no ${FIREFOX} (apt-get install firefox-esr)`) ||
      (!GECKODRIVER && "no geckodriver (cargo install geckodriver)"),
  },
  async () => {
    const { By, Key, until: wdUntil } = await import("selenium-webdriver");
    const { AXE_SOURCE, axeJudge, axeReport } = await import("./harness.mjs");
    const [hub, hub2] = await Promise.all([startHub(), startHub()]);
    const node = await makeNode();
    writeFileSync(
      join(node.dataDir, "config.json"),
      JSON.stringify({ net: { quic: "127.0.0.1:0", tcp: "127.0.0.1:0" }, transfers: { listen: "127.0.0.1:0", use_trackers: false } }),
    );
    const downloads = join(node.root, "firefox downloads");
    mkdirSync(downloads);
    const { driver } = await launchFirefox(node, { width: 400, height: 900, downloads });
    const WAIT = 30_000;
    const css = (s) => wdUntil.elementLocated(By.css(s));
    const text = async (id) => driver.findElement(By.id(id)).getText();
    await driver.get(`moz-extension://${FIREFOX_UUID}/panel.html#people`);
    await driver.wait(css('body[data-connection="connected"]'), WAIT);
    await driver.wait(css('body[data-welcome="no-hub"]'), WAIT);

    // --- The hub, typed and sent with Enter: the daemon restarts with it.
    await driver.findElement(By.id("welcome-hub")).sendKeys(`${hub.peerId}@quic://${hub.quic},tcp://${hub.tcp}`, Key.ENTER);
    await driver.wait(css('body[data-welcome="hub"]'), WAIT);
    assert.equal((await apiCall(node, "net.status")).hub.hub, hub.peerId);

    // --- A name, then a passphrase (typed twice).
    await driver.wait(css("#welcome-name:not([disabled])"), WAIT);
    await driver.findElement(By.id("welcome-name")).sendKeys("fox", Key.ENTER);
    await driver.wait(async () => /You are fox@hub\.test now/.test(await text("welcome-name-result")), WAIT);
    await driver.findElement(By.id("welcome-seal")).sendKeys("firefox passphrase");
    await driver.findElement(By.id("welcome-seal-again")).sendKeys("firefox passphrase", Key.ENTER);
    await until("sealed", async () => (await apiCall(node, "identity.get")).sealed === true);

    // --- A backup: saved as a download; it restores the same identity in another data dir.
    await driver.findElement(By.id("welcome-backup-get")).click();
    const saved = await until("the backup's download", async () => {
      const name = readdirSync(downloads).find((n) => n.startsWith("allpeers-identity-") && n.endsWith(".json"));
      return name && JSON.parse(readFileSync(join(downloads, name), "utf8"));
    });
    assert.equal(saved.peer_id, node.peerId);
    const elsewhere = mkdtempSync(join(tmpdir(), "allpeers-restore-"));
    onCleanup(() => rmSync(elsewhere, { recursive: true, force: true }));
    const backupPath = join(downloads, readdirSync(downloads).find((n) => n.startsWith("allpeers-identity-")));
    await allpeers(elsewhere, ["identity", "import", backupPath], { env: { ALLPEERS_BACKUP_PASSPHRASE: "firefox passphrase" } });
    assert.equal(await allpeers(elsewhere, ["id"], { env: { ALLPEERS_PASSPHRASE: "firefox passphrase" } }), node.peerId);

    // --- axe-core on the welcome card.
    if (!(await driver.executeScript("return typeof window.axe === 'object'"))) {
      await driver.executeScript(`(function () { ${AXE_SOURCE}\n}).call(window);`);
    }
    const violations = await driver.executeAsyncScript(`
      const done = arguments[arguments.length - 1];
      window.axe.run(document, { resultTypes: ["violations"] }).then(
        (r) => done(r.violations.map((v) => ({ id: v.id, impact: v.impact, help: v.help,
          nodes: v.nodes.map((n) => ({ target: n.target, failureSummary: n.failureSummary })) }))),
        (e) => done([{ id: "axe-error", impact: "critical", help: String(e), nodes: [] }]));`);
    const failing = axeJudge("firefox welcome", violations);
    assert.equal(failing.length, 0, axeReport(failing));
    await driver.findElement(By.id("welcome-done")).click();
    await driver.wait(wdUntil.elementIsNotVisible(driver.findElement(By.id("welcome"))), WAIT);

    // --- Settings: another home hub, from a friend's invite code (it carries the friend's hub); after the
    // restart the sealed identity asks for its passphrase.
    const bob = await makeSocialNode(hub2);
    await startDaemon(bob);
    await registerAtHub(bob, "bob");
    const invite = (await apiCall(bob, "contacts.invite")).code;
    await driver.findElement(By.id("tab-settings")).click();
    await driver.findElement(By.id("home-hub")).sendKeys(invite, Key.ENTER);
    await driver.wait(wdUntil.elementIsVisible(driver.findElement(By.id("home-hub-restart"))), WAIT);
    assert.match(await text("home-hub-result"), /Home hub set to .*restarts/);
    await driver.findElement(By.id("home-hub-restart")).click();
    await driver.findElement(By.id("tab-people")).click();
    await driver.wait(wdUntil.elementIsVisible(driver.findElement(By.id("unlock-form"))), WAIT);
    await driver.findElement(By.id("passphrase")).sendKeys("firefox passphrase", Key.ENTER);
    await until("online at the second hub", async () => {
      const hubStatus = (await apiCall(node, "net.status")).hub;
      return hubStatus?.hub === hub2.peerId && hubStatus.state === "online";
    });

    // --- Settings: the download folder.
    await driver.findElement(By.id("tab-settings")).click();
    const dirBox = driver.findElement(By.id("download-dir"));
    await driver.wait(async () => (await dirBox.getAttribute("value")).endsWith("/downloads"), WAIT);
    const dir = join(node.root, "fox downloads");
    await dirBox.clear();
    await dirBox.sendKeys(dir, Key.ENTER);
    await driver.wait(async () => (await text("download-dir-result")).includes(dir), WAIT);
    assert.deepEqual(await apiCall(node, "transfers.download_dir.get"), { dir });
    assert.equal(JSON.parse(readFileSync(join(node.dataDir, "config.json"), "utf8")).transfers.download_dir, dir);
  },
);
