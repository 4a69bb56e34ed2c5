// The app API in Firefox ESR (parity with apps.test.mjs, the core path): the provider in the
// page's world, the relay, the app session, the prompt window. selenium-webdriver + geckodriver
// as in firefox.test.mjs; the page and an iframe of another origin served on loopback.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { existsSync, mkdirSync, writeFileSync } from "node:fs";
import { createServer } from "node:http";
import { join, resolve } from "node:path";
import { after, test } from "node:test";
import { ALLPEERS_BIN, HERE, apiCall, cleanupAll, makeNode, onCleanup } from "./harness.mjs";
import { FIREFOX, FIREFOX_UUID, GECKODRIVER, launchFirefox } from "./firefox-driver.mjs";

const EXT = resolve(HERE, "../../extension");
const WAIT = 30_000;


after(cleanupAll);

async function serve(host, pages) {
  const server = createServer((req, res) => {
    const page = pages[new URL(req.url, "http://x").pathname];
    res.writeHead(page ? 200 : 404, { "content-type": "text/html; charset=utf-8", "cache-control": "no-store" });
    res.end(page ?? "not found");
  });
  await new Promise((r) => server.listen(0, host, r));
  onCleanup(() => {
    // The browser keeps connections open: close them, or close() waits for them.
    server.closeAllConnections();
    return new Promise((r) => server.close(r));
  });
  return `http://${host}:${server.address().port}`;
}

const page = (frame) => `<!doctype html><html><head><title>app</title></head><body>${frame ? `<iframe src="${frame}"></iframe>` : ""}</body></html>`;

// Run in the page (WebDriver scripts run in the page's own world): discover, then one call.
const DISCOVER = `
  const done = arguments[arguments.length - 1];
  window.addEventListener("allpeers:announceProvider", (e) => {
    window.provider = e.detail.provider;
    done({ name: e.detail.info.name, frozen: Object.isFrozen(e.detail.provider) });
  }, { once: true });
  window.dispatchEvent(new Event("allpeers:requestProvider"));
  setTimeout(() => done(null), 10000);`;
const CALL = `
  const done = arguments[arguments.length - 1];
  window.provider.request({ method: arguments[0], params: arguments[1] }).then(
    (result) => done({ result }), (e) => done({ error: { code: e.code, name: e.name, message: e.message } }));`;

test(
  "Firefox: a page finds the provider, gets 4100, asks, the prompt allows, reads identity; a frame is its own origin",
  {
    skip:
      (!existsSync(FIREFOX) && `no ${FIREFOX} (apt-get install firefox-esr)`) ||
      (!GECKODRIVER && "no geckodriver (cargo install geckodriver)"),
  },
  async () => {
    const { Builder, By, until: wdUntil } = await import("selenium-webdriver");
    const firefox = await import("selenium-webdriver/firefox.js");
    const node = await makeNode();
    const { driver, home } = await launchFirefox(node, { width: 800, height: 700 });
    // The panel first: the extension's own session starts the daemon.
    await driver.get(`moz-extension://${FIREFOX_UUID}/panel.html#settings`);
    await driver.wait(wdUntil.elementLocated(By.css('body[data-connection="connected"]')), WAIT);

    const frameOrigin = await serve("localhost", { "/frame.html": page() });
    const appOrigin = await serve("127.0.0.1", { "/app.html": page(`${frameOrigin}/frame.html`) });
    await driver.get(`${appOrigin}/app.html`);
    const main = await driver.getWindowHandle();
    assert.deepEqual(await driver.executeAsyncScript(DISCOVER), { name: "AllPeers", frozen: true });
    const permsReply = await driver.executeAsyncScript(CALL, "permissions.get", {});
    const perms = permsReply.result;
    assert.ok(perms, JSON.stringify(permsReply));
    assert.equal(perms.origin, appOrigin);
    assert.deepEqual(perms.scopes, []);
    assert.equal((await driver.executeAsyncScript(CALL, "identity.get", {})).error.code, 4100);

    // Asked: the prompt is a window of its own; Allow is disabled at first.
    const before = await driver.getAllWindowHandles();
    await driver.executeScript(
      "window.asked = window.provider.request({ method: 'permissions.request', params: { scopes: ['identity'] } }).then((r) => ({ r }), (e) => ({ code: e.code }));",
    );
    const prompt = await driver.wait(async () => (await driver.getAllWindowHandles()).find((x) => !before.includes(x)), WAIT);
    await driver.switchTo().window(prompt);
    await driver.wait(wdUntil.elementLocated(By.css('body[data-state="asking"], body[data-state="ready"]')), WAIT);
    assert.equal(await driver.findElement(By.id("site-origin")).getText(), appOrigin);
    const allow = await driver.findElement(By.id("allow"));
    assert.equal(await allow.isEnabled(), false, "Allow is disabled at first");
    await driver.wait(wdUntil.elementIsEnabled(allow), WAIT);
    mkdirSync(join(HERE, "screenshots"), { recursive: true });
    writeFileSync(join(HERE, "screenshots", "firefox-apps-prompt.png"), await driver.takeScreenshot(), "base64");
    await allow.click();
    await driver.switchTo().window(main);
    const answered = await driver.executeAsyncScript("window.asked.then(arguments[arguments.length - 1])");
    assert.deepEqual(answered.r.scopes, ["identity"]);
    assert.equal((await driver.executeAsyncScript(CALL, "identity.get", {})).result.peer_id, node.peerId);

    // The iframe (another origin): its own origin, nothing granted.
    await driver.switchTo().frame(await driver.findElement(By.css("iframe")));
    assert.equal((await driver.executeAsyncScript(DISCOVER)).name, "AllPeers");
    const framePerms = (await driver.executeAsyncScript(CALL, "permissions.get", {})).result;
    assert.equal(framePerms.origin, frameOrigin);
    assert.deepEqual(framePerms.scopes, []);
    assert.equal((await driver.executeAsyncScript(CALL, "identity.get", {})).error.code, 4100);
    await driver.switchTo().defaultContent();

    // Revoked in Settings (a tab of its own): the page gets 4100 at once.
    await driver.switchTo().newWindow("tab");
    await driver.get(`moz-extension://${FIREFOX_UUID}/panel.html#settings`);
    const row = `#apps-list li[data-origin="${appOrigin}"]`;
    await driver.wait(wdUntil.elementLocated(By.css(`${row} [data-scope="identity"]`)), WAIT);
    assert.deepEqual(await apiCall(node, "apps.list").then((l) => l.map((a) => a.origin)), [appOrigin]);
    await driver.findElement(By.css(`${row} .app-revoke`)).click();
    await driver.wait(async () => (await driver.findElements(By.css(row))).length === 0, WAIT);
    await driver.switchTo().window(main);
    assert.equal((await driver.executeAsyncScript(CALL, "identity.get", {})).error.code, 4100);
  },
);
