// The board sample shared between two friends, both in Firefox ESR (two browsers, each with the
// real extension and host, two daemons, a real hub): Firefox's counterpart of sample.test.mjs's
// two-browser path. Alice's page connects (the prompt: Allow), makes a board and a note and
// shares it with Bob; Bob accepts the offer in his sidebar's Shared panel (his node learns the
// board's type from the share itself: his page has not run yet), then his page connects and shows
// her note. Both add a note at the same moment: both pages end with both notes.
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { after, test } from "node:test";
import { apiCall, cleanupAll, makeSocialNode, registerAtHub, startHub, until } from "./harness.mjs";
import { FIREFOX, FIREFOX_UUID, GECKODRIVER, launchFirefox } from "./firefox-driver.mjs";
import { serveSample } from "./sample-server.mjs";

const WAIT = 30_000;

after(cleanupAll);

test(
  "Firefox: two friends share the board sample; the offer accepted in the sidebar; simultaneous notes both kept",
  {
    skip:
      (!existsSync(FIREFOX) && `no ${FIREFOX} (apt-get install firefox-esr)`) ||
      (!GECKODRIVER && "no geckodriver (cargo install geckodriver)"),
  },
  async () => {
    const { By, until: wdUntil } = await import("selenium-webdriver");
    const hub = await startHub();
    const [alice, bob] = await Promise.all([makeSocialNode(hub), makeSocialNode(hub)]);
    const [a, b] = await Promise.all(
      [alice, bob].map(async (node) => (await launchFirefox(node, { width: 1100, height: 700 })).driver),
    );
    // The sidebar's page first: the extension's own session starts each daemon.
    await Promise.all(
      [a, b].map(async (driver) => {
        await driver.get(`moz-extension://${FIREFOX_UUID}/panel.html#shared`);
        await driver.wait(wdUntil.elementLocated(By.css('body[data-connection="connected"]')), WAIT);
      }),
    );
    await Promise.all([registerAtHub(alice, "alice"), registerAtHub(bob, "bob")]);
    await apiCall(alice, "contacts.add", { who: "bob@hub.test" });
    await until("bob sees alice's request", async () =>
      (await apiCall(bob, "contacts.list")).some((c) => c.peer_id === alice.peerId && c.state === "incoming"),
    );
    await apiCall(bob, "contacts.accept", { peer: alice.peerId });
    const url = await serveSample();
    const css = (s) => wdUntil.elementLocated(By.css(s));
    const notes = (driver) =>
      driver.executeScript(
        "return [...document.querySelectorAll('#notes li:not(.empty) > span:first-child')].map((e) => e.textContent)",
      );

    /** Opens the sample, clicks Connect and allows the prompt window. */
    async function connect(driver) {
      await driver.get(url);
      const main = await driver.getWindowHandle();
      const before = await driver.getAllWindowHandles();
      await driver.findElement(By.id("connect")).click();
      const prompt = await driver.wait(
        async () => (await driver.getAllWindowHandles()).find((x) => !before.includes(x)),
        WAIT,
      );
      await driver.switchTo().window(prompt);
      await driver.wait(css("#ask:not([hidden])"), WAIT);
      const allow = await driver.findElement(By.id("allow"));
      await driver.wait(wdUntil.elementIsEnabled(allow), WAIT);
      await allow.click();
      await driver.switchTo().window(main);
      await driver.wait(css("#app:not([hidden])"), WAIT);
    }

    async function addNote(driver, text) {
      await driver.findElement(By.id("note-text")).sendKeys(text);
      await driver.findElement(By.css("#add-note button")).click();
    }

    // --- Alice: a board with a note, shared with Bob (write), from the page.
    await connect(a);
    await a.findElement(By.id("new-board-title")).sendKeys("Firefox trip");
    await a.findElement(By.css("#new-board button")).click();
    await a.wait(css("#board:not([hidden])"), WAIT);
    await addNote(a, "Pack the stove");
    await a.wait(async () => (await notes(a)).includes("Pack the stove"), WAIT);
    await a.wait(css(`#share-contact option[value="${bob.peerId}"]`), WAIT);
    await a.findElement(By.css(`#share-contact option[value="${bob.peerId}"]`)).click();
    await a.findElement(By.css("#share button")).click();
    await a.wait(async () => /bob@hub\.test \(write\)/.test(await a.findElement(By.id("members")).getText()), WAIT);

    // --- Bob accepts in his sidebar before his page ever ran: the share brings the board's type.
    const offer = await b.wait(async () => {
      for (const li of await b.findElements(By.css("#offers li"))) {
        if ((await li.getText()).includes("Firefox trip")) return li;
      }
      return null;
    }, WAIT);
    assert.match(await offer.findElement(By.css(".share-from")).getText(), /alice@hub\.test/);
    await offer.findElement(By.css('button[data-action="accept"]')).click();
    await b.wait(async () => {
      for (const li of await b.findElements(By.css("#shares-theirs li"))) {
        if ((await li.getText()).includes("Firefox trip")) return true;
      }
      return false;
    }, WAIT);
    await connect(b);
    await b.wait(css("#boards button"), WAIT);
    await b.wait(async () => (await notes(b)).includes("Pack the stove"), WAIT);

    // --- Both add a note at the same moment: neither overwrites the other.
    await Promise.all([addNote(a, "Alice: maps"), addNote(b, "Bob: snacks")]);
    for (const driver of [a, b]) {
      await driver.wait(async () => {
        const all = await notes(driver);
        return all.includes("Alice: maps") && all.includes("Bob: snacks");
      }, WAIT);
    }
    assert.deepEqual(await notes(a), await notes(b));
  },
);
