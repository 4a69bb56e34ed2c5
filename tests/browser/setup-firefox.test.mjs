// Firefox parity for the first run and Settings (Firefox ESR + geckodriver, the real native host, one hub): a
// node with no hub is greeted in the sidebar; from the keyboard it joins the hub by address (the daemon
// restarts with it), registers a name and protects its identity with a passphrase; Settings changes the
// download folder. (The backup's download is checked in Chromium: Firefox's headless download folder is
// not the test's to read without changing its preferences.)
import assert from "node:assert/strict";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, test } from "node:test";
import { apiCall, cleanupAll, makeNode, startHub, until } from "./harness.mjs";
import { FIREFOX, FIREFOX_UUID, GECKODRIVER, launchFirefox } from "./firefox-driver.mjs";

after(cleanupAll);

test(
  "Firefox: first run joins a hub, registers a name, seals the identity; Settings sets the download folder",
  {
    skip:
      (!existsSync(FIREFOX) && `no ${FIREFOX} (apt-get install firefox-esr)`) ||
      (!GECKODRIVER && "no geckodriver (cargo install geckodriver)"),
  },
  async () => {
    const { By, Key, until: wdUntil } = await import("selenium-webdriver");
    const { AXE_SOURCE, axeJudge, axeReport } = await import("./harness.mjs");
    const hub = await startHub();
    const node = await makeNode();
    writeFileSync(
      join(node.dataDir, "config.json"),
      JSON.stringify({ net: { quic: "127.0.0.1:0", tcp: "127.0.0.1:0" }, transfers: { listen: "127.0.0.1:0", use_trackers: false } }),
    );
    const { driver } = await launchFirefox(node, { width: 400, height: 900 });
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
