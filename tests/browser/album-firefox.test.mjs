// Firefox parity for albums and drag-and-share (Firefox ESR + geckodriver, the real native host):
// Alice in the Firefox sidebar, Bob on the CLI, one hub. A 1,000-photo album drawn as a virtualised
// grid (timed, scrolled to the end from the keyboard); photos dropped on the sidebar (a DragEvent
// with a DataTransfer of Files) imported, catalogued and shared with Bob, whose node gets the offer.
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { after, test } from "node:test";
import {
  albumColours,
  apiCall,
  cleanupAll,
  makeSocialNode,
  pngBase64,
  registerAtHub,
  seedAlbumInPage,
  startDaemon,
  startHub,
  until,
} from "./harness.mjs";
import { FIREFOX, FIREFOX_UUID, GECKODRIVER, launchFirefox } from "./firefox-driver.mjs";

after(cleanupAll);

const PHOTOS = 1000;

test(
  "Firefox: a 1,000-photo album as a virtualised grid; photos dropped on the sidebar shared with a contact",
  {
    skip:
      (!existsSync(FIREFOX) && `no ${FIREFOX} (apt-get install firefox-esr)`) ||
      (!GECKODRIVER && "no geckodriver (cargo install geckodriver)"),
  },
  async () => {
    const { By, until: wdUntil } = await import("selenium-webdriver");
    const { AXE_SOURCE, axeJudge, axeReport } = await import("./harness.mjs");
    const hub = await startHub();
    const alice = await makeSocialNode(hub);
    const { driver } = await launchFirefox(alice, { width: 400, height: 900 });
    const PANEL = `moz-extension://${FIREFOX_UUID}/panel.html#shared`;
    const WAIT = 30_000;
    const css = (s) => wdUntil.elementLocated(By.css(s));
    const js = (script, ...args) => driver.executeScript(script, ...args);
    await driver.get(PANEL);
    await driver.wait(css('body[data-connection="connected"]'), WAIT);
    const bob = await makeSocialNode(hub);
    await startDaemon(bob);
    await Promise.all([registerAtHub(alice, "alice"), registerAtHub(bob, "bob")]);
    await apiCall(alice, "contacts.add", { who: "bob@hub.test" });
    await until("bob sees alice's request", async () =>
      (await apiCall(bob, "contacts.list")).some((c) => c.peer_id === alice.peerId && c.state === "incoming"),
    );
    await apiCall(bob, "contacts.accept", { peer: alice.peerId });

    // --- The album, made through the panel's port, then the panel opened afresh: timed.
    const list = await driver.executeAsyncScript(
      `const done = arguments[arguments.length - 1];
       (${seedAlbumInPage})(arguments[0]).then(done, (e) => done({ error: String(e) }));`,
      ["Firefox album", PHOTOS, albumColours()],
    );
    assert.equal(typeof list, "string", JSON.stringify(list));
    const share = await apiCall(alice, "shares.create", { resource: list, members: [{ peer: bob.peerId, level: "read" }] });
    await driver.get("about:blank");
    await driver.get(PANEL);
    const card = `#shares-mine li[data-share="${share.id}"]`;
    await driver.wait(css(`${card}[data-album="true"] .album-grid[data-painted="true"]`), WAIT);
    const state = () =>
      js(
        `const grid = document.querySelector(arguments[0] + " .album-grid");
         const box = grid.getBoundingClientRect();
         const cells = [...grid.querySelectorAll(".album-cell")];
         const visible = cells.filter((c) => { const r = c.getBoundingClientRect(); return r.bottom > box.top && r.top < box.bottom; });
         return { cells: cells.length, count: Number(grid.dataset.count),
                  positions: cells.map((c) => Number(c.getAttribute("aria-posinset"))),
                  visible: visible.length,
                  ready: visible.filter((c) => c.dataset.state === "ready" && c.querySelector("img")?.complete && c.querySelector("img").naturalWidth > 0).length };`,
        card,
      );
    await driver.wait(async () => {
      const s = await state();
      return s.visible > 0 && s.ready === s.visible;
    }, WAIT);
    const times = await js(
      `return { grid: performance.getEntriesByName("allpeers-album-grid")[0]?.startTime, now: performance.now() };`,
    );
    const s = await state();
    console.log(`firefox album: panel opened → grid painted ${times.grid.toFixed(0)} ms, → ${s.visible} thumbnails drawn ≤ ${times.now.toFixed(0)} ms`);
    assert.equal(s.count, PHOTOS);
    assert.ok(s.cells < 120, `${s.cells} cells in the DOM`);
    // The keyboard: the grid takes the focus, End reaches the last photo.
    await driver.findElement(By.css(`${card} .album-grid`)).sendKeys("\uE010"); // End
    await driver.wait(async () => {
      const e = await state();
      return e.positions.includes(PHOTOS) && e.ready === e.visible;
    }, WAIT);
    assert.ok((await state()).cells < 120);

    // --- Two photos dropped on the sidebar, shared with Bob from the form.
    const photos = [
      { name: "fox <b>1.png", type: "image/png", b64: pngBase64(48, 32, [200, 90, 20]) },
      { name: "fox 2.png", type: "image/png", b64: pngBase64(40, 40, [20, 90, 200]) },
      { name: ".hidden", type: "text/plain", b64: Buffer.from("x").toString("base64") },
    ];
    await js(
      `const dt = new DataTransfer();
       for (const f of arguments[0]) dt.items.add(new File([Uint8Array.from(atob(f.b64), (c) => c.charCodeAt(0))], f.name, { type: f.type }));
       const target = document.getElementById("view-shared");
       for (const type of ["dragenter", "dragover", "drop"]) target.dispatchEvent(new DragEvent(type, { dataTransfer: dt, bubbles: true, cancelable: true }));`,
      photos,
    );
    await driver.wait(css("#drop-form:not([hidden])"), WAIT);
    assert.match(await driver.findElement(By.id("drop-summary")).getText(), /^2 files, .*; 1 hidden left out/);
    await driver.wait(css(`#drop-members input[value="${bob.peerId}"]`), WAIT);
    await driver.findElement(By.css(`#drop-members input[value="${bob.peerId}"]`)).click();
    await driver.findElement(By.id("drop-title")).clear();
    await driver.findElement(By.id("drop-title")).sendKeys("Foxes", "\uE007"); // Enter submits
    await driver.wait(css('body[data-drop="done"]'), 60_000);
    const offer = await until("bob's offer", async () =>
      (await apiCall(bob, "shares.list")).find((x) => x.state === "offered" && x.title === "Foxes"),
    );
    await driver.wait(css(`#shares-mine li[data-share="${offer.id}"][data-album="true"] .album-grid[data-count="2"]`), WAIT);

    // --- axe-core on the album and the result.
    if (!(await js("return typeof window.axe === 'object'"))) await js(`(function () { ${AXE_SOURCE}\n}).call(window);`);
    const violations = await driver.executeAsyncScript(`
      const done = arguments[arguments.length - 1];
      window.axe.run(document, { resultTypes: ["violations"] }).then(
        (r) => done(r.violations.map((v) => ({ id: v.id, impact: v.impact, help: v.help,
          nodes: v.nodes.map((n) => ({ target: n.target, failureSummary: n.failureSummary })) }))),
        (e) => done([{ id: "axe-error", impact: "critical", help: String(e), nodes: [] }]));`);
    const failing = axeJudge("firefox album and drop", violations);
    assert.equal(failing.length, 0, axeReport(failing));
  },
);
