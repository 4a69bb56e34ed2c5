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

const FIREFOX = process.env.FIREFOX_BIN ?? "/usr/bin/firefox-esr";
const EXT = resolve(HERE, "../../extension");
const FIREFOX_UUID = "5c3a1f0e-7d2b-4b8e-9a61-3f4e2d1c0b9a";
const WAIT = 30_000;

function findGeckodriver() {
  if (process.env.GECKODRIVER_BIN) return process.env.GECKODRIVER_BIN;
  for (const dir of (process.env.PATH ?? "").split(":").concat([join(process.env.HOME ?? "", ".cargo/bin")])) {
    if (dir && existsSync(join(dir, "geckodriver"))) return join(dir, "geckodriver");
  }
  return null;
}
const GECKODRIVER = findGeckodriver();

after(cleanupAll);

async function serve(host, pages) {
  const server = createServer((req, res) => {
    const page = pages[new URL(req.url, "http://x").pathname];
    res.writeHead(page ? 200 : 404, { "content-type": "text/html; charset=utf-8", "cache-control": "no-store" });
    res.end(page ?? "not found");
  });
  await new Promise((r) => server.listen(0, host, r));
  onCleanup(() => new Promise((r) => server.close(r)));
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
    const home = join(node.root, "home");
    mkdirSync(home);
    await new Promise((res, rej) =>
      execFile(ALLPEERS_BIN, ["--data-dir", node.dataDir, "install", "--browser", "firefox"], { env: { ...process.env, HOME: home } }, (e) =>
        e ? rej(e) : res(),
      ),
    );
    const env = { ...process.env, HOME: home, MOZ_HEADLESS: "1" };
    delete env.ALLPEERS_PASSPHRASE;
    delete env.DISPLAY;
    const service = new firefox.ServiceBuilder(GECKODRIVER).addArguments("--allow-system-access").setEnvironment(env);
    const options = new firefox.Options()
      .setBinary(FIREFOX)
      .addArguments("-headless")
      .setPreference("extensions.webextensions.uuids", JSON.stringify({ "allpeers@allpeers.net": FIREFOX_UUID }))
      .windowSize({ width: 800, height: 700 });
    const driver = await new Builder().forBrowser("firefox").setFirefoxOptions(options).setFirefoxService(service).build();
    onCleanup(() => driver.quit());
    await driver.installAddon(join(EXT, "dist/firefox"), true);
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

    // Revoked from the CLI: the page gets 4100 at once.
    await apiCall(node, "apps.revoke", { origin: appOrigin });
    assert.equal((await driver.executeAsyncScript(CALL, "identity.get", {})).error.code, 4100);
  },
);
