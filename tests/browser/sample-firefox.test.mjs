// The SDK's sample app in Firefox ESR with the real extension, host and daemon (the core path
// of sample.test.mjs): the SDK, loaded by a plain <script type="module">, finds the provider,
// the prompt window allows, the page registers its type, creates a board and a note, and its
// resources.subscribe reports a change made outside the page (through the CLI).
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { existsSync, mkdirSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { after, test } from "node:test";
import { ALLPEERS_BIN, HERE, apiCall, cleanupAll, makeSocialNode, onCleanup, registerAtHub, startHub } from "./harness.mjs";
import { FIREFOX, FIREFOX_UUID, GECKODRIVER, launchFirefox } from "./firefox-driver.mjs";
import { serveSample } from "./sample-server.mjs";

const EXT = resolve(HERE, "../../extension");
const WAIT = 30_000;


after(cleanupAll);

test(
  "Firefox: the board sample connects through the prompt, makes a board and a note, hears a change live",
  {
    skip:
      (!existsSync(FIREFOX) && `no ${FIREFOX} (apt-get install firefox-esr)`) ||
      (!GECKODRIVER && "no geckodriver (cargo install geckodriver)"),
  },
  async () => {
    const { Builder, By, until: wdUntil } = await import("selenium-webdriver");
    const firefox = await import("selenium-webdriver/firefox.js");
    const hub = await startHub();
    const node = await makeSocialNode(hub);
    const { driver, home } = await launchFirefox(node, { width: 1100, height: 700 });
    // The panel first: the extension's own session starts the daemon.
    await driver.get(`moz-extension://${FIREFOX_UUID}/panel.html#settings`);
    await driver.wait(wdUntil.elementLocated(By.css('body[data-connection="connected"]')), WAIT);
    const name = await registerAtHub(node, "carol");

    const url = await serveSample();
    await driver.get(url);
    const main = await driver.getWindowHandle();
    const before = await driver.getAllWindowHandles();
    await driver.findElement(By.id("connect")).click();
    const prompt = await driver.wait(async () => (await driver.getAllWindowHandles()).find((x) => !before.includes(x)), WAIT);
    await driver.switchTo().window(prompt);
    await driver.wait(wdUntil.elementLocated(By.css("#ask:not([hidden])")), WAIT);
    assert.equal(await driver.findElement(By.id("site-origin")).getText(), new URL(url).origin);
    const allow = await driver.findElement(By.id("allow"));
    await driver.wait(wdUntil.elementIsEnabled(allow), WAIT);
    await allow.click();
    await driver.switchTo().window(main);

    await driver.wait(wdUntil.elementLocated(By.css("#app:not([hidden])")), WAIT);
    assert.match(await driver.findElement(By.id("me")).getText(), new RegExp(name.replaceAll(".", "\\.")));
    await driver.findElement(By.id("new-board-title")).sendKeys("Firefox board");
    await driver.findElement(By.css("#new-board button")).click();
    await driver.wait(wdUntil.elementLocated(By.css("#board:not([hidden])")), WAIT);
    await driver.findElement(By.id("note-text")).sendKeys("Hello from Firefox");
    await driver.findElement(By.css("#add-note button")).click();
    const notes = () => driver.executeScript("return [...document.querySelectorAll('#notes li:not(.empty) > span:first-child')].map((e) => e.textContent)");
    await driver.wait(async () => (await notes()).includes("Hello from Firefox"), WAIT);

    // A change made outside the page (the user's own CLI, a trusted session) reaches the page's
    // subscription: the board's title, renamed.
    const boards = await apiCall(node, "resources.query", { query: { type: await boardType(driver) } });
    await apiCall(node, "resources.update", { id: boards.resources[0].id, patch: { properties: { title: "Renamed outside" } } });
    await driver.wait(async () => (await driver.findElement(By.id("board-title")).getText()) === "Renamed outside", WAIT);

    mkdirSync(join(HERE, "screenshots"), { recursive: true });
    writeFileSync(join(HERE, "screenshots", "firefox-board.png"), await driver.takeScreenshot(), "base64");
  },
);

/** The board's full type name, as the page registered it (namespace from permissions.get). */
async function boardType(driver) {
  return driver.executeAsyncScript(`
    const done = arguments[arguments.length - 1];
    window.addEventListener("allpeers:announceProvider", (e) => {
      e.detail.provider.request({ method: "permissions.get", params: {} }).then((p) => done(p.namespace + "Board"), () => done(null));
    }, { once: true });
    window.dispatchEvent(new Event("allpeers:requestProvider"));`);
}
