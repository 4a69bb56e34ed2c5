// Adding to an album that exists, and taking photos out of it (a Chromium sidebar, a real hub; Bob on the CLI):
// Alice's drop makes an album shared with Bob; photos dropped on that album's grid go into the same share (no
// second share for Bob); "Add photos…" (the file picker) adds more, a file that is not a photo said and left
// out; a photo's Remove button takes it out, pending until the daemon answers; photos reordered from the keyboard
// and by dragging, the order still there after a reload; Bob's copy follows each change; a move the daemon
// refuses (its store locked by another program) is put back, with the reason.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { join } from "node:path";
import { after, test } from "node:test";
import {
  apiCall,
  cleanupAll,
  dropFiles,
  installHost,
  launch,
  makeSocialNode,
  openPanel,
  pngBase64,
  registerAtHub,
  screenshotBoth,
  startDaemon,
  startHub,
  until,
  waitConnected,
} from "./harness.mjs";

after(cleanupAll);

/** Holds SQLite's write lock on the file named by argv[1] until stdin closes; says "locked" once it has it. */
const LOCK_STORE = `import sqlite3, sys
db = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=10)
db.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
sys.stdin.read()`;

const photo = (name, rgb) => ({ name, type: "image/png", b64: pngBase64(40, 30, rgb) });

test("an album: photos dropped on it or picked with Add photos… join the same share; Remove takes one out; reorder", async () => {
  const hub = await startHub();
  const alice = await makeSocialNode(hub);
  await installHost(alice);
  const context = await launch(alice.profile);
  const a = await openPanel(context, "shared");
  await waitConnected(a);
  const bob = await makeSocialNode(hub);
  await startDaemon(bob);
  await Promise.all([registerAtHub(alice, "alice"), registerAtHub(bob, "bob")]);
  await apiCall(alice, "contacts.add", { who: "bob@hub.test" });
  await until("bob sees alice's request", async () =>
    (await apiCall(bob, "contacts.list")).some((c) => c.peer_id === alice.peerId && c.state === "incoming"),
  );
  await apiCall(bob, "contacts.accept", { peer: alice.peerId });
  await a.waitForSelector('body[data-social="ready"]');

  // --- The album: two photos dropped on Shared, shared with Bob, who accepts on his node.
  await dropFiles(a, "#view-shared", [photo("red.png", [200, 30, 30]), photo("green.png", [30, 200, 30])]);
  await a.waitForSelector(`#drop-members input[value="${bob.peerId}"]`);
  await a.check(`#drop-members input[value="${bob.peerId}"]`);
  await a.fill("#drop-title", "Colours");
  await a.click("#drop-share");
  await a.waitForSelector('body[data-drop="done"]');
  const card = '#shares-mine li.share[data-album="true"][data-writable="true"]';
  await a.waitForSelector(`${card} .album-grid[data-count="2"]`);
  const shareId = await a.getAttribute(card, "data-share");
  const offer = await until("bob's offer", async () => (await apiCall(bob, "shares.list")).find((s) => s.id === shareId));
  await apiCall(bob, "shares.accept", { share: offer.id });
  const bobItems = async () => (await apiCall(bob, "lists.items", { id: offer.resource })).items;
  await until("bob has the two photos", async () => (await bobItems()).length === 2);

  // --- A photo dropped on the album's grid: added to this share, not a new one.
  await a.evaluate(() => delete document.body.dataset.drop);
  await dropFiles(a, `${card} .album-grid`, [photo("blue.png", [30, 30, 200])]);
  await a.waitForSelector(`${card} .album-grid[data-count="3"]`);
  assert.match(await a.textContent(`${card} .share-result`), /Added 1 file to “Colours”/);
  assert.ok(await a.isHidden("#drop-form"), "no form: the album's members are whom it goes to");
  await until("bob has three", async () => (await bobItems()).length === 3);
  assert.equal((await apiCall(bob, "shares.list")).length, 1, "still one share for Bob");

  // --- Add photos… (Enter): the file picker; a text file is left out with its reason.
  const [chooser] = await Promise.all([a.waitForEvent("filechooser"), a.press(`${card} button[data-action="add-photos"]`, "Enter")]);
  await chooser.setFiles([
    { name: "yellow.png", mimeType: "image/png", buffer: Buffer.from(pngBase64(40, 30, [220, 220, 30]), "base64") },
    { name: "notes.txt", mimeType: "text/plain", buffer: Buffer.from("not a photo\n") },
  ]);
  await a.waitForSelector(`${card} .album-grid[data-count="4"]`);
  await until("the result", async () => /Added 1 file to “Colours”; 1 not shared \(notes\.txt: not a photo\)/.test(await a.textContent(`${card} .share-result`)));
  await until("bob has four", async () => (await bobItems()).length === 4);
  await until("every thumbnail", async () => (await a.locator(`${card} .album-cell[data-state="ready"]`).count()) === 4);
  await screenshotBoth(a, "shared-album-edit");

  // --- Remove green.png from the grid (the keyboard: its button, Enter).
  const greenId = await a.getAttribute(`${card} .album-cell:has(img[alt="green.png"])`, "data-item");
  await a.press(`${card} .album-cell[data-item="${greenId}"] button[data-action="remove"]`, "Enter");
  await a.waitForSelector(`${card} .album-grid[data-count="3"]`);
  assert.equal(await a.locator(`${card} .album-cell[data-item="${greenId}"]`).count(), 0);
  assert.match(await a.textContent(`${card} .share-result`), /Removed “green\.png”/);
  await until("bob's album without it", async () => {
    const items = await bobItems();
    return items.length === 3 && !items.includes(greenId);
  });

  // --- Reorder: Alt+← on a photo's button moves it one place earlier (the focus stays on it); a photo dragged
  // onto the right half of another goes after it. Each is stored (lists.move), survives a reload, reaches Bob.
  const order = () => a.$$eval(`${card} .album-cell`, (cells) => cells.map((c) => c.getAttribute("data-item")));
  const stored = async () => (await apiCall(alice, "lists.items", { id: offer.resource })).items;
  const [red, blue, yellow] = await order();
  assert.deepEqual(await stored(), [red, blue, yellow]);
  await a.focus(`${card} .album-cell[data-item="${yellow}"] button[data-action="remove"]`);
  await a.keyboard.press("Alt+ArrowLeft");
  await until("yellow stored second", async () => (await stored()).join() === [red, yellow, blue].join());
  await a.waitForSelector(`${card} .album-cell[data-item="${yellow}"][aria-posinset="2"]:not([data-pending])`);
  assert.deepEqual(await order(), [red, yellow, blue]);
  assert.equal(await a.evaluate(() => document.activeElement?.closest(".album-cell")?.getAttribute("data-item")), yellow, "the focus moved with it");
  const redCell = `${card} .album-cell[data-item="${red}"]`;
  const box = await a.locator(`${card} .album-cell[data-item="${blue}"]`).boundingBox();
  await a.dragAndDrop(redCell, `${card} .album-cell[data-item="${blue}"]`, { targetPosition: { x: box.width * 0.8, y: box.height / 2 } });
  await until("red stored last", async () => (await stored()).join() === [yellow, blue, red].join());
  await a.waitForSelector(`${redCell}[aria-posinset="3"]:not([data-pending])`);
  await a.reload();
  await a.waitForSelector(`${card} .album-grid[data-count="3"] .album-cell[data-state="ready"]`);
  assert.deepEqual(await order(), [yellow, blue, red], "the order after a reload is the one stored");
  await until("bob's album in the new order", async () => (await bobItems()).join() === [yellow, blue, red].join());

  // --- A move the daemon refuses: another program holds the store's write lock for longer than the daemon waits
  // (5 s), so lists.move fails. The photo goes back to its place, the card says why, nothing is stored or sent.
  const locker = spawn("python3", ["-c", LOCK_STORE, join(alice.dataDir, "store.sqlite")], { stdio: ["pipe", "pipe", "inherit"] });
  await new Promise((resolve, reject) => {
    locker.stdout.once("data", resolve);
    locker.once("exit", (code) => reject(new Error(`the store's lock was not taken (exit ${code})`)));
  });
  await a.focus(`${card} .album-cell[data-item="${red}"] button[data-action="remove"]`);
  await a.keyboard.press("Alt+ArrowLeft");
  await a.waitForSelector(`${redCell}[aria-posinset="2"]`); // shown at once where it is going
  await until("the refusal", async () => /Not moved/.test(await a.textContent(`${card} .share-result`)), 20_000);
  await a.waitForSelector(`${redCell}[aria-posinset="3"]:not([data-pending])`);
  assert.deepEqual(await order(), [yellow, blue, red], "put back where it was");
  const exited = new Promise((resolve) => locker.once("exit", resolve));
  locker.stdin.end();
  await exited;
  assert.deepEqual(await stored(), [yellow, blue, red], "nothing stored");
  assert.deepEqual(await bobItems(), [yellow, blue, red], "nothing replicated");

  // --- A query-backed album (its items and order are the query's): no Remove, no reorder.
  const everything = await apiCall(alice, "resources.create", {
    resource: { id: "", type: "List", properties: { title: "All photos", itemType: "Image", query: JSON.stringify({ type: "Image" }) } },
  });
  const all = await apiCall(alice, "shares.create", { resource: everything.id, members: [{ peer: bob.peerId, level: "read" }] });
  const allCard = `#shares-mine li.share[data-share="${all.id}"][data-album="true"]`;
  await a.waitForSelector(`${allCard} .album-cell[aria-posinset="2"]`);
  assert.equal(await a.locator(`${allCard} .album-cell[draggable="true"], ${allCard} .album-cell button`).count(), 0);
  assert.deepEqual(a.errors, []);
});
