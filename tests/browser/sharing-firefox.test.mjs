// Firefox parity for receiving and dropping (Firefox ESR + geckodriver, the real native host, one hub): Alice in
// the Firefox sidebar, Bob on the CLI. Bob's album (a real photo, catalogued by his media worker) is accepted in
// Alice's Shared panel and a photo downloaded from its grid, with its progress in Transfers; Alice may edit it, so
// a photo she drops on its grid goes into Bob's album, she removes his photo from it, adds one with its "Add
// photos…" and moves that one first with Alt+← and back by dragging; a file dropped on the open conversation with Bob is shared with
// him and announced there, then 1,000 files at once (progress, no freeze); files picked through "Share files…"'s
// file input go through the same form.
import assert from "node:assert/strict";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, test } from "node:test";
import { apiCall, cleanupAll, makeSocialNode, png, pngBase64, registerAtHub, startDaemon, startHub, until } from "./harness.mjs";
import { FIREFOX, FIREFOX_UUID, GECKODRIVER, launchFirefox } from "./firefox-driver.mjs";

after(cleanupAll);

test(
  "Firefox: a photo downloaded from a received album, one added to it and one removed; a file dropped on a conversation; the file picker",
  {
    skip:
      (!existsSync(FIREFOX) && `no ${FIREFOX} (apt-get install firefox-esr)`) ||
      (!GECKODRIVER && "no geckodriver (cargo install geckodriver)"),
  },
  async () => {
    const { By, Key, until: wdUntil } = await import("selenium-webdriver");
    const hub = await startHub();
    const alice = await makeSocialNode(hub);
    const { driver } = await launchFirefox(alice, { width: 400, height: 900 });
    const WAIT = 30_000;
    const css = (s) => wdUntil.elementLocated(By.css(s));
    const js = (script, ...args) => driver.executeScript(script, ...args);
    const text = async (id) => driver.findElement(By.id(id)).getText();
    await driver.get(`moz-extension://${FIREFOX_UUID}/panel.html#shared`);
    await driver.wait(css('body[data-connection="connected"]'), WAIT);
    const bob = await makeSocialNode(hub);
    await startDaemon(bob);
    await Promise.all([registerAtHub(alice, "alice"), registerAtHub(bob, "bob")]);
    await apiCall(alice, "contacts.add", { who: "bob@hub.test" });
    await until("bob sees alice's request", async () =>
      (await apiCall(bob, "contacts.list")).some((c) => c.peer_id === alice.peerId && c.state === "incoming"),
    );
    await apiCall(bob, "contacts.accept", { peer: alice.peerId });
    await driver.wait(css('body[data-social="ready"]'), WAIT);

    // --- Bob's album: a photo on his disk, catalogued, listed and shared with Alice.
    const photos = join(bob.root, "photos");
    mkdirSync(photos);
    const bytes = png(300, 200, (x, y) => [x % 256, y % 256, (x * y) % 256]);
    writeFileSync(join(photos, "sea.png"), bytes);
    await apiCall(bob, "media.add", { paths: [join(photos, "sea.png")] });
    const image = await until("bob's photo catalogued", () => apiCall(bob, "media.info", { path: join(photos, "sea.png") }).catch(() => null));
    const list = await apiCall(bob, "resources.create", { resource: { id: "", type: "List", properties: { title: "Seaside", itemType: "Image" } } });
    await apiCall(bob, "lists.insert", { list: list.id, item: image.id });
    const share = await apiCall(bob, "shares.create", { resource: list.id, members: [{ peer: alice.peerId, level: "write" }] });

    // --- Alice accepts in the sidebar; the photo's thumbnail shows; a click downloads it (Transfers: 100 %).
    await driver.wait(css(`#offers li[data-share="${share.id}"] button[data-action="accept"]`), WAIT);
    await driver.findElement(By.css(`#offers li[data-share="${share.id}"] button[data-action="accept"]`)).click();
    const theirs = `#shares-theirs li[data-share="${share.id}"]`;
    await driver.wait(css(`${theirs} .album-cell[data-state="ready"] button[aria-label="Download sea.png"]`), WAIT);
    // The grid keeps its cells (updated in place as thumbnails and items come in): one click lands.
    await driver.findElement(By.css(`${theirs} button[aria-label="Download sea.png"]`)).click();
    await driver.wait(async () => /Downloading “sea\.png”/.test(await driver.findElement(By.css(`${theirs} .share-result`)).getText()), WAIT);
    await driver.findElement(By.id("tab-transfers")).click();
    await driver.wait(css('#transfers li[data-state="seeding"][data-percent="100"]'), WAIT);
    assert.match(await driver.findElement(By.css("#transfers li")).getText(), /sea\.png/);
    assert.ok(readFileSync(join(alice.dataDir, "downloads", "sea.png")).equals(bytes), "alice has bob's bytes");

    // --- Alice may edit Bob's album: a photo dropped on its grid goes into his list; she removes his photo.
    await driver.findElement(By.id("tab-shared")).click();
    const bobItems = async () => (await apiCall(bob, "lists.items", { id: list.id })).items;
    await js(
      `const dt = new DataTransfer();
       dt.items.add(new File([Uint8Array.from(atob(arguments[0]), (c) => c.charCodeAt(0))], "shell.png", { type: "image/png" }));
       const target = document.querySelector(arguments[1]);
       for (const type of ["dragenter", "dragover", "drop"]) target.dispatchEvent(new DragEvent(type, { dataTransfer: dt, bubbles: true, cancelable: true }));`,
      pngBase64(40, 30, [240, 200, 160]),
      `${theirs}[data-writable="true"] .album-grid`,
    );
    await driver.wait(async () => /Added 1 file to “Seaside”/.test(await driver.findElement(By.css(`${theirs} .share-result`)).getText()), WAIT);
    await until("bob's album has alice's photo", async () => (await bobItems()).length === 2);
    await driver.wait(css(`${theirs} .album-grid[data-count="2"]`), WAIT);
    await driver.findElement(By.css(`${theirs} .album-cell[data-item="${image.id}"] button[data-action="remove"]`)).click();
    await driver.wait(css(`${theirs} .album-grid[data-count="1"]`), WAIT);
    await until("bob's album without his photo", async () => {
      const items = await bobItems();
      return items.length === 1 && !items.includes(image.id);
    });

    // --- "Add photos…" on Bob's album: the button arms the file input (the native picker is not driven), the
    // photo given to it goes into his album.
    const rock = join(alice.root, "rock.png");
    writeFileSync(rock, png(40, 30, () => [90, 90, 90]));
    await driver.findElement(By.css(`${theirs} button[data-action="add-photos"]`)).sendKeys("\uE007"); // Enter
    await driver.findElement(By.id("drop-input")).sendKeys(rock);
    await driver.wait(async () => /Added 1 file to “Seaside”/.test(await driver.findElement(By.css(`${theirs} .share-result`)).getText()), WAIT);
    await driver.wait(css(`${theirs} .album-grid[data-count="2"]`), WAIT);
    await until("bob's album has the picked photo", async () => (await bobItems()).length === 2);
    // Reorder from the keyboard: Alt+← on the picked photo's button puts it first, in Bob's album too.
    const [shell, added] = await bobItems();
    await driver.findElement(By.css(`${theirs} .album-cell[data-item="${added}"] button[data-action="remove"]`)).sendKeys(Key.ALT, Key.ARROW_LEFT, Key.NULL);
    await until("bob's album in the new order", async () => (await bobItems()).join() === [added, shell].join());
    await driver.wait(css(`${theirs} .album-cell[data-item="${added}"][aria-posinset="1"]:not([data-pending])`), WAIT);
    assert.match(await driver.getCurrentUrl(), /panel\.html#shared$/, "Alt+← moved the photo, not the page back");
    // Reorder by dragging: the events a drag fires, carrying one DataTransfer, dispatched as the drops above are.
    // The first photo dropped on the right half of the second goes after it, in Bob's album too.
    await js(
      `const [from, to] = [document.querySelector(arguments[0]), document.querySelector(arguments[1])];
       const dt = new DataTransfer();
       const box = to.getBoundingClientRect();
       const at = { clientX: box.left + box.width * 0.8, clientY: box.top + box.height / 2 };
       from.dispatchEvent(new DragEvent("dragstart", { dataTransfer: dt, bubbles: true, cancelable: true }));
       for (const type of ["dragenter", "dragover", "drop"]) to.dispatchEvent(new DragEvent(type, { dataTransfer: dt, bubbles: true, cancelable: true, ...at }));
       from.dispatchEvent(new DragEvent("dragend", { dataTransfer: dt, bubbles: true }));`,
      `${theirs} .album-cell[data-item="${added}"]`,
      `${theirs} .album-cell[data-item="${shell}"]`,
    );
    await until("bob's album in the dragged order", async () => (await bobItems()).join() === [shell, added].join());
    await driver.wait(css(`${theirs} .album-cell[data-item="${added}"][aria-posinset="2"]:not([data-pending])`), WAIT);

    // --- A file dropped on the open conversation with Bob: shared with him, announced in it.
    await driver.findElement(By.id("tab-people")).click();
    await driver.wait(css(`#contacts li[data-peer="${bob.peerId}"] button[data-action="chat"]`), WAIT);
    await driver.findElement(By.css(`#contacts li[data-peer="${bob.peerId}"] button[data-action="chat"]`)).click();
    await driver.wait(wdUntil.elementIsVisible(driver.findElement(By.id("conversation"))), WAIT);
    await js(
      `const dt = new DataTransfer();
       dt.items.add(new File(["meet at 8"], "notes.txt", { type: "text/plain" }));
       const target = document.getElementById("conversation");
       for (const type of ["dragenter", "dragover", "drop"]) target.dispatchEvent(new DragEvent(type, { dataTransfer: dt, bubbles: true, cancelable: true }));`,
    );
    await driver.wait(async () => /Shared “notes\.txt”/.test(await text("conv-drop-status")), WAIT);
    await driver.wait(css('#messages [data-outgoing="true"]'), WAIT);
    await until("bob's offer of notes.txt", async () =>
      (await apiCall(bob, "shares.list")).some((s) => s.state === "offered" && s.title === "notes.txt"),
    );
    assert.equal(await js("return document.body.dataset.view"), "chat", "a drop on a conversation stays there");

    // --- 1,000 files dropped on the conversation: progress as it goes, no freeze (the longest gap between
    // animation frames is measured), one share of them all announced.
    const started = Date.now();
    await js(
      `delete document.body.dataset.drop;
       const w = (window.__frames = { longest: 0, texts: new Set(), frames: 0 });
       let last = performance.now();
       const tick = (t) => {
         w.longest = Math.max(w.longest, t - last);
         last = t;
         w.texts.add(document.getElementById("conv-drop-status").textContent);
         w.frames++;
         if (!["done", "failed"].includes(document.body.dataset.drop)) requestAnimationFrame(tick);
       };
       requestAnimationFrame((t) => { last = t; requestAnimationFrame(tick); });
       const dt = new DataTransfer();
       for (let i = 1; i <= 1000; i++) dt.items.add(new File([\`note \${i}\\n\`], \`note-\${String(i).padStart(4, "0")}.txt\`, { type: "text/plain" }));
       const target = document.getElementById("conversation");
       for (const type of ["dragenter", "dragover", "drop"]) target.dispatchEvent(new DragEvent(type, { dataTransfer: dt, bubbles: true, cancelable: true }));`,
    );
    await driver.wait(css('body[data-drop="done"], body[data-drop="failed"]'), 240_000);
    const frames = await js("return { longest: window.__frames.longest, steps: window.__frames.texts.size, count: window.__frames.frames };");
    console.log(
      `firefox drop on a conversation: 1,000 files shared in ${Date.now() - started} ms; longest frame gap ${frames.longest.toFixed(0)} ms over ${frames.count} frames, ${frames.steps} progress texts seen`,
    );
    assert.match(await text("conv-drop-status"), /Shared “note-0001\.txt and 999 more” \(1000 files\)/);
    await driver.wait(css('#messages [data-outgoing="true"]:last-child'), WAIT);
    assert.ok(frames.steps > 10, "the progress moved while it worked");
    assert.ok(frames.longest < 500, `the page froze for ${frames.longest} ms`);
    await until("bob's offer of the 1,000", async () =>
      (await apiCall(bob, "shares.list")).some((s) => s.state === "offered" && s.title === "note-0001.txt and 999 more"),
    );

    // --- The file picker: files chosen in "Share files…"'s input open the same form; Escape closes it.
    await driver.findElement(By.id("tab-shared")).click();
    const picked = join(alice.root, "list.txt");
    writeFileSync(picked, "one\ntwo\n");
    await driver.findElement(By.id("drop-input")).sendKeys(picked);
    await driver.wait(css("#drop-form:not([hidden])"), WAIT);
    assert.match(await text("drop-summary"), /^1 file, /);
    assert.equal(await driver.findElement(By.id("drop-title")).getAttribute("value"), "list.txt");
    await driver.findElement(By.id("drop-title")).sendKeys("\uE00C"); // Escape
    await driver.wait(css("#drop-form[hidden]"), WAIT);
    assert.equal(await js("return document.activeElement?.id"), "share-files");
  },
);
