// The Shared and Transfers panels with two Chromium sidebars, two real nodes and a real hub:
// Alice shares a list with Bob from her sidebar; Bob accepts it in his and adds a link;
// Alice sees it appear live; both edit (add, reorder, remove) with the change pending until
// the daemon answers; members, revoke, leave. Then a transfer: Alice seeds a file through
// the API, Bob downloads it from his Transfers panel (a .torrent file and Alice's address)
// with a download limit so the progress is seen moving; pause, resume, 100 %. Keyboard
// only where it matters (Enter and Space on buttons, every button named).
import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, test } from "node:test";
import {
  apiCall,
  backgroundWorker,
  axeAudit,
  cleanupAll,
  installHost,
  launch,
  makeSocialNode,
  openPanel,
  registerAtHub,
  screenshot,
  startHub,
  until,
  waitConnected,
} from "./harness.mjs";

after(cleanupAll);

/** A screenshot of what the page shows, and an axe-core audit of it (serious/critical fail). */
async function shot(page, name) {
  await screenshot(page, name);
  await axeAudit(page, name);
}

async function browserNode(hub, name) {
  const node = await makeSocialNode(hub);
  await installHost(node);
  const context = await launch(node.profile);
  const page = await openPanel(context, "shared");
  await waitConnected(page);
  node.name = await registerAtHub(node, name);
  return { ...node, context, page };
}

/** Records on the page whether an element matching `selector` ever appeared (body[data-saw-…]). */
function watchFor(page, flag, selector) {
  return page.evaluate(
    ([flag, selector]) => {
      const observer = new MutationObserver(() => seen());
      const seen = () => {
        if (!document.querySelector(selector)) return;
        observer.disconnect();
        document.body.dataset[flag] = "true";
      };
      observer.observe(document.body, { subtree: true, childList: true, attributes: true });
      seen();
    },
    [flag, selector],
  );
}

/** Every button in the view has an accessible name (its text or aria-label). */
async function allButtonsNamed(page, view) {
  const unnamed = await page.$$eval(`#view-${view} button:not([hidden])`, (bs) =>
    bs.filter((b) => !(b.getAttribute("aria-label") || b.textContent || "").trim()).map((b) => b.outerHTML),
  );
  assert.deepEqual(unnamed, [], `unnamed buttons in ${view}`);
}

test("two sidebars: a shared list edited from both sides, members, a download with progress", async () => {
  const hub = await startHub();
  const [alice, bob] = await Promise.all([browserNode(hub, "alice"), browserNode(hub, "bob")]);
  const a = alice.page;
  let b = bob.page;
  await apiCall(alice, "contacts.add", { who: bob.name });
  await until("bob sees alice's request", async () =>
    (await apiCall(bob, "contacts.list")).some((c) => c.peer_id === alice.peerId && c.state === "incoming"),
  );
  await apiCall(bob, "contacts.accept", { peer: alice.peerId });
  for (const p of [a, b]) await p.waitForSelector('body[data-social="ready"]');
  await b.waitForSelector("#shares-empty:visible");

  // --- Alice makes a shared list for Bob (write) in her sidebar. Its name has markup and a
  // right-to-left override: shown as text, the override as a visible marker.
  const title = "Trip <b>ideas</b> \u202Eevil";
  // The form opens from the keyboard (Enter), Escape closes it and gives the focus back.
  await a.focus("#new-share");
  await a.keyboard.press("Enter");
  await a.waitForSelector("#share-form:visible");
  assert.equal(await a.evaluate(() => document.activeElement?.id), "share-title");
  await a.keyboard.press("Escape");
  await a.waitForSelector("#share-form", { state: "hidden" });
  assert.equal(await a.evaluate(() => document.activeElement?.id), "new-share");
  await a.keyboard.press(" ");
  await a.waitForSelector("#share-form:visible");
  await a.fill("#share-title", title);
  await a.waitForSelector(`#share-members input[value="${bob.peerId}"]`);
  await a.check(`#share-members input[value="${bob.peerId}"]`);
  await a.click("#share-create");
  const mine = "#shares-mine li.share";
  await a.waitForSelector(`${mine}[data-synced="true"]`);
  const shareId = await a.getAttribute(mine, "data-share");
  assert.equal(await a.textContent(`${mine} .share-title`), "Trip <b>ideas</b> [U+202E]evil");
  assert.equal(await a.locator(`${mine} .share-title b`).count(), 0);
  await a.waitForSelector(`${mine} .member-list li[data-peer="${bob.peerId}"][data-level="write"]:has-text("bob@hub.test")`);

  // --- Bob gets the offer live, and accepts it from the keyboard (Enter on the button).
  const offer = `#offers li[data-share="${shareId}"]`;
  await b.waitForSelector(`${offer} button[data-action="accept"]`);
  assert.equal(await b.textContent(`${offer} .share-from`), "alice@hub.test");
  assert.equal(await b.locator(`${offer} .share-title b`).count(), 0);
  await allButtonsNamed(b, "shared");
  await shot(b, "shared-offer-light");
  await b.focus(`${offer} button[data-action="accept"]`);
  await b.keyboard.press("Enter");
  const theirs = `#shares-theirs li[data-share="${shareId}"]`;
  await b.waitForSelector(`${theirs}[data-synced="true"][data-level="write"]`);
  await b.waitForSelector(`${theirs} .member-list li[data-peer="${alice.peerId}"]:has-text("owner")`);

  // --- Bob adds a link: pending until the daemon answers, then in the list; Alice sees it.
  await watchFor(b, "sawPendingAdd", `${theirs} .share-item[data-pending="true"]`);
  // Typed from the keyboard: the link, Tab, its title, Tab, Enter on Add.
  await b.focus(`${theirs} input[name="url"]`);
  await b.keyboard.type("https://museum.example/");
  await b.keyboard.press("Tab");
  await b.keyboard.type("The museum <i>x</i>");
  await b.keyboard.press("Tab");
  assert.equal(await b.evaluate(() => document.activeElement?.dataset.action), "add");
  await b.keyboard.press("Enter");
  await b.waitForSelector(`${theirs}[data-items="1"][data-pending="0"]`);
  assert.equal(await b.evaluate(() => document.body.dataset.sawPendingAdd), "true", "the add was shown pending first");
  await a.waitForSelector(`${mine}[data-items="1"] .share-item a[href="https://museum.example/"]`);
  assert.equal(await a.textContent(`${mine} .share-item .link-title`), "The museum <i>x</i>");
  assert.equal(await a.locator(`${mine} .share-item i`).count(), 0);
  // A javascript: link is refused before anything is sent.
  await b.fill(`${theirs} input[name="url"]`, "javascript:alert(1)");
  await b.click(`${theirs} button[data-action="add"]`);
  await b.waitForSelector(`${theirs} .share-result:has-text("Only web links")`);

  // --- Alice adds two more; Bob sees them; Alice reorders (her order only) and Bob removes one.
  for (const [url, t] of [["https://beach.example/", "Beach"], ["https://zoo.example/", "Zoo"]]) {
    await a.fill(`${mine} input[name="url"]`, url);
    await a.fill(`${mine} input[name="title"]`, t);
    await a.click(`${mine} button[data-action="add"]`);
  }
  await a.waitForSelector(`${mine}[data-items="3"][data-pending="0"]`);
  await b.waitForSelector(`${theirs}[data-items="3"]`);
  const titles = (page, card) => page.$$eval(`${card} .share-item .link-title`, (els) => els.map((e) => e.textContent));
  assert.deepEqual(await titles(a, mine), ["The museum <i>x</i>", "Beach", "Zoo"]);
  const zoo = await a.getAttribute(`${mine} .share-item:has-text("Zoo")`, "data-item");
  await a.click(`${mine} .share-item[data-item="${zoo}"] button[data-action="up"]`);
  await a.waitForFunction(
    (card) => [...document.querySelectorAll(`${card} .share-item .link-title`)].map((e) => e.textContent)[1] === "Zoo",
    mine,
  );
  await a.waitForSelector(`${mine}[data-pending="0"]`);
  // The focus followed the item's button (keyboard users keep their place).
  assert.equal(await a.evaluate(() => document.activeElement?.closest("[data-item]")?.dataset.item), zoo);
  // Bob removes the beach with Space on the focused Remove button.
  const beach = `${theirs} .share-item:has-text("Beach")`;
  await b.focus(`${beach} button[data-action="remove"]`);
  await b.keyboard.press(" ");
  await b.waitForSelector(`${theirs}[data-items="2"][data-pending="0"]`);
  await a.waitForSelector(`${mine}[data-items="2"]`);
  assert.deepEqual(await titles(a, mine), ["The museum <i>x</i>", "Zoo"]);
  // Alt+↓ on an item's button moves it down; the focus stays on that item.
  const museum = await a.getAttribute(`${mine} .share-item:has-text("The museum")`, "data-item");
  await a.focus(`${mine} .share-item[data-item="${museum}"] button[data-action="remove"]`);
  await a.keyboard.press("Alt+ArrowDown");
  await a.waitForFunction(
    (card) => [...document.querySelectorAll(`${card} .share-item .link-title`)].map((e) => e.textContent)[0] === "Zoo",
    mine,
  );
  await a.waitForSelector(`${mine}[data-pending="0"]`);
  assert.equal(await a.evaluate(() => document.activeElement?.closest("[data-item]")?.dataset.item), museum);
  await allButtonsNamed(a, "shared");
  await shot(a, "shared-list-light");
  await a.emulateMedia({ colorScheme: "dark" });
  await shot(a, "shared-list-dark");
  await a.emulateMedia({ colorScheme: "light" });
  await shot(b, "shared-theirs-light");
  // Nothing overflows sideways at Firefox's narrowest sidebar.
  await a.setViewportSize({ width: 200, height: 900 });
  const overflow = await a.evaluate(() => document.documentElement.scrollWidth - innerWidth);
  assert.ok(overflow <= 0, `shared overflows by ${overflow} px at 200 px`);
  await a.setViewportSize({ width: 360, height: 720 });

  // --- A transfer: Alice seeds a file (through the API); Bob downloads it from his
  // Transfers panel, slowed by a download limit so the progress moves visibly.
  const file = join(alice.root, "holiday-notes.bin");
  writeFileSync(file, Buffer.alloc(512 * 1024, 7));
  const seeded = await apiCall(alice, "transfers.seed", { path: file });
  const port = seeded.listen.split(":").pop();
  const torrent = join(bob.root, "holiday-notes.torrent");
  writeFileSync(torrent, Buffer.from(seeded.torrent, "base64"));
  // Bob slows his downloads in Settings → Bandwidth (the daemon's net.limits.get agrees).
  await b.click("#tab-settings");
  await b.fill("#limit-down", "128 KiB/s");
  await b.click("#limits-apply");
  await b.waitForSelector(`body[data-limit-down="${128 * 1024}"]`);
  assert.deepEqual(await apiCall(bob, "net.limits.get"), { down: 128 * 1024, up: null });
  await b.click("#tab-transfers");
  await b.waitForSelector("#transfers-empty:visible");
  await b.click("#torrent-details summary");
  await b.setInputFiles("#torrent-file", torrent);
  await b.fill("#torrent-peers", `127.0.0.1:${port}`);
  await b.selectOption("#torrent-priority", "1");
  await watchFor(b, "sawPartial", '#transfers li[data-state="downloading"]:not([data-percent="0"]):not([data-percent="100"])');
  await b.click("#torrent-add");
  const row = `#transfers li[data-transfer="${(await until("bob's transfer", async () => (await apiCall(bob, "transfers.list"))[0])).id}"]`;
  await b.waitForSelector(`${row}[data-state="downloading"][data-priority="1"]`);
  // The toolbar button says a transfer runs (no unread message to show instead).
  const bobWorker = await backgroundWorker(bob.context);
  await until("bob's action badge ↓1", async () => (await bobWorker.evaluate(() => chrome.action.getBadgeText({}))) === "↓1");
  await b.waitForSelector("#transfers-badge:visible");
  assert.equal(await b.textContent("#transfers-badge"), "1");
  // The tab's accessible name counts what runs (the badge's digit itself is hidden from it).
  assert.match(await b.locator("#tab-transfers").ariaSnapshot(), /tab "Transfers \(1 running\)"/);
  await b.waitForSelector('body[data-saw-partial="true"]');
  assert.match(await b.textContent(`${row} .transfer-numbers`), /of 512 KiB · ↓ .*\/s · ETA .* · 1 peer/);
  assert.match(await b.textContent(`${row} .transfer-numbers`), /high priority/);
  // Its own limit (transfers.set_limits) from the row: a bad one refused, 64 KiB/s set, then lifted.
  await b.click(`${row} .transfer-limits summary`);
  await b.fill(`${row} input[name="down"]`, "fast please");
  await b.click(`${row} button[data-action="limits"]`);
  await b.waitForSelector(`${row} .limit-result.error:has-text("Download limit:")`);
  assert.equal(await b.getAttribute(`${row} input[name="down"]`, "aria-invalid"), "true");
  await b.fill(`${row} input[name="down"]`, "64 KiB/s");
  await b.press(`${row} input[name="down"]`, "Enter");
  await b.waitForSelector(`${row}[data-limit-down="${64 * 1024}"]`);
  const rowId = Number(await b.getAttribute(row, "data-transfer"));
  assert.deepEqual((await apiCall(bob, "transfers.get", { id: rowId })).limits, { down: 64 * 1024, up: null });
  assert.equal((await apiCall(bob, "transfers.get", { id: rowId })).priority, 1);
  assert.match(await b.textContent(`${row} .transfer-numbers`), /limit ↓ 64 KiB\/s/);
  await shot(b, "transfers-progress-light");
  await b.fill(`${row} input[name="down"]`, "");
  await b.click(`${row} button[data-action="limits"]`);
  await b.waitForSelector(`${row}[data-limit-down=""]`);
  assert.deepEqual((await apiCall(bob, "transfers.get", { id: rowId })).limits, { down: null, up: null });
  // Its priority changed after it was added (transfers.set_priority), from the keyboard: High → Low.
  await b.focus(`${row} select[data-action="priority"]`);
  assert.equal(await b.inputValue(`${row} select[data-action="priority"]`), "1");
  await b.selectOption(`${row} select[data-action="priority"]`, "-1");
  await b.waitForSelector(`${row}[data-priority="-1"]`);
  assert.equal((await apiCall(bob, "transfers.get", { id: rowId })).priority, -1);
  assert.match(await b.textContent(`${row} .transfer-numbers`), /low priority/);
  assert.match(await b.textContent(`${row} .limit-result`), /Priority: low priority/);
  await b.click(`${row} .transfer-limits summary`);
  await b.emulateMedia({ colorScheme: "dark" });
  await shot(b, "transfers-progress-dark");
  await b.emulateMedia({ colorScheme: "light" });
  // Pause and resume (keyboard: Enter on the focused button).
  await b.focus(`${row} button[data-action="pause"]`);
  await b.keyboard.press("Enter");
  await b.waitForSelector(`${row}[data-state="paused"] button[data-action="resume"]`);
  await b.waitForSelector("#transfers-badge", { state: "hidden" });
  await b.keyboard.press("Enter"); // the same button, now Resume, kept the focus
  await b.waitForSelector(`${row}:not([data-state="paused"])`);
  // Bob closes his sidebar; the download finishes meanwhile: a notification says so.
  await b.waitForSelector(`${row}[data-state="downloading"]`);
  await b.close();
  await apiCall(bob, "net.limits.set", {});
  await until("bob's download-finished notification", async () =>
    Object.keys(await bobWorker.evaluate(() => chrome.notifications.getAll())).some((k) => k.startsWith("allpeers-transfer-")),
  );
  b = await openPanel(bob.context, "transfers");
  await waitConnected(b);
  await b.waitForSelector(`${row}[data-state="seeding"][data-percent="100"]`);
  assert.equal(await b.getAttribute(`${row} [role="progressbar"]`, "aria-valuenow"), "100");
  await b.waitForSelector("#transfers-badge", { state: "hidden" });
  assert.match(await b.textContent("#totals-text"), /1 transfer · 1 seeding/);
  await allButtonsNamed(b, "transfers");
  await shot(b, "transfers-done-light");
  // Alice's panel shows her seed, and the bytes that went up.
  await a.click("#tab-transfers");
  await a.waitForSelector(`#transfers li[data-state="seeding"][data-seed-in-place="true"][data-percent="100"]`);

  // --- Members: Alice revokes Bob; then Bob leaves the share (asked once, then done).
  await a.click("#tab-shared");
  const revoke = `${mine} .member-list li[data-peer="${bob.peerId}"] button[data-action="revoke"]`;
  await a.click(revoke);
  await a.waitForSelector(`${revoke}:has-text("Revoke access?")`);
  await a.click(revoke);
  await a.waitForSelector(`${mine} .member-list li[data-peer="${bob.peerId}"]`, { state: "detached" });
  await b.click("#tab-shared");
  // Bob's sidebar hears of it (share.changed): his copy stays, marked as no longer syncing.
  await b.waitForSelector(`${theirs}[data-level="none"]:has-text("Your access was revoked")`);
  await b.click(`${theirs} button[data-action="leave"]`);
  await b.click(`${theirs} button[data-action="leave"]`);
  await b.waitForSelector(theirs, { state: "detached" });

  // --- A share of another type (a Text file, no template): offered to Bob (read), ignored,
  // brought back, accepted; drawn by the generic schema view; no edit controls for a reader.
  const text = await apiCall(alice, "resources.create", {
    resource: { type: "Text", properties: { name: "notes <b>.txt", size: 1234, mimeType: "text/plain", lines: 42 } },
  });
  const textShare = await apiCall(alice, "shares.create", { resource: text.id, members: [{ peer: bob.peerId, level: "read" }] });
  const textOffer = `#offers li[data-share="${textShare.id}"]`;
  await b.click(`${textOffer} button[data-action="ignore"]`);
  await b.waitForSelector(textOffer, { state: "detached" });
  await b.waitForSelector('#shares-ignored:has-text("Show ignored offers (1)")');
  await b.click("#shares-ignored");
  await b.click(`${textOffer} button[data-action="accept"]`);
  const textCard = `#shares-theirs li[data-share="${textShare.id}"][data-level="read"]`;
  await b.waitForSelector(`${textCard} .resource-card[data-type="Text"][data-generic="true"] dd[data-field="lines"]`);
  assert.equal(await b.textContent(`${textCard} dd[data-field="name"]`), "notes <b>.txt");
  assert.equal(await b.locator(`${textCard} form, ${textCard} button[data-action="remove"], ${textCard} button[data-action="revoke"]`).count(), 0);
  await shot(b, "shared-generic-light");
  assert.equal((await apiCall(bob, "shares.list")).filter((s) => s.id === shareId).length, 0);
  assert.deepEqual(a.errors, []);
  assert.deepEqual(b.errors, []);
});
