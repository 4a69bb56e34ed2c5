// The SDK's sample app (sdk/examples/board) in two browsers, as two friends use it: two
// Chromium profiles with the real extension and host, two daemons, a real hub; the sample
// served as static files on loopback (one origin, so one app namespace, in both browsers).
// Alice connects (the prompt: Allow), creates a board, adds a note and shares the board with
// Bob, picked from her contacts; Bob connects, accepts the share in his sidebar's Shared panel
// (his node learns the board's type from the share), sees the board and her note;
// his note appears live on Alice's page and hers on his. Presence is asked for later, from
// the page's button, and shows Bob online. Alice's daemon restarts and her page keeps
// hearing Bob's notes (the SDK re-subscribes). The two screenshots are the README's
// (docs/img/board-alice.png, docs/img/board-bob.png).
import assert from "node:assert/strict";
import { join, resolve } from "node:path";
import { after, test } from "node:test";
import {
  HERE,
  allpeers,
  apiCall,
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
import { serveSample } from "./sample-server.mjs";

after(cleanupAll);

const IMAGES = resolve(HERE, "../../docs/img");

/** A friend: a node on the hub, Chromium with the extension, the sample app open in a tab. */
async function friend(hub, name) {
  const node = await makeSocialNode(hub);
  await installHost(node);
  const context = await launch(node.profile);
  const prompts = [];
  context.on("page", (p) => {
    if (p.url().includes("/prompt.html")) prompts.push(p);
  });
  const panel = await openPanel(context, "people");
  await waitConnected(panel);
  node.name = await registerAtHub(node, name);
  return { ...node, context, panel, prompts };
}

/** Waits for the `count`-th prompt window of a browser and allows it (Allow is enabled after a delay). */
async function allow(who, count) {
  await until(`${who.name}'s prompt #${count}`, async () => who.prompts.length >= count);
  const prompt = who.prompts[count - 1];
  await prompt.waitForSelector("#ask:not([hidden])");
  const origin = await prompt.textContent("#site-origin");
  await prompt.waitForSelector("#allow:enabled");
  // The window closes itself on the click, sometimes before Playwright has seen the click end.
  await prompt.click("#allow").catch((e) => {
    if (!prompt.isClosed()) throw e;
  });
  await until("the prompt window closed", async () => prompt.isClosed());
  return origin;
}

async function openSample(who, url) {
  const page = await who.context.newPage();
  await page.setViewportSize({ width: 1100, height: 620 });
  const errors = [];
  page.on("pageerror", (e) => errors.push(e));
  page.errors = errors;
  await page.goto(url);
  return page;
}

const noteTexts = (page) => page.$$eval("#notes li:not(.empty) > span:first-child", (els) => els.map((e) => e.textContent));

test("the board sample: two friends share a board from their own browsers", async () => {
  const hub = await startHub();
  const [alice, bob] = await Promise.all([friend(hub, "alice"), friend(hub, "bob")]);
  await apiCall(alice, "contacts.add", { who: bob.name });
  await until("bob sees alice's request", async () =>
    (await apiCall(bob, "contacts.list")).some((c) => c.peer_id === alice.peerId && c.state === "incoming"),
  );
  await apiCall(bob, "contacts.accept", { peer: alice.peerId });
  const url = await serveSample();

  // --- Alice: connect (one prompt), a board, a note, shared with Bob (write).
  const a = await openSample(alice, url);
  await axeAudit(a, "the board sample (welcome)");
  await a.click("#connect");
  assert.equal(await allow(alice, 1), new URL(url).origin);
  await a.waitForSelector("#app:not([hidden])");
  assert.match(await a.textContent("#me"), /alice@hub\.test/);
  await a.fill("#new-board-title", "Weekend trip");
  await a.click("#new-board button");
  await a.waitForSelector("#board:not([hidden])");
  await a.fill("#note-text", "Bring the tent");
  await a.fill("#note-url", "https://example.com/tents");
  await a.click("#add-note button");
  await until("alice's note", async () => (await noteTexts(a)).includes("Bring the tent"));
  await a.waitForSelector(`#share-contact option[value="${bob.peerId}"]`, { state: "attached" });
  await a.selectOption("#share-contact", bob.peerId);
  await a.click("#share button");
  await a.waitForSelector('#members li:has-text("bob@hub.test (write)")');

  // --- Bob: connect, accept the share in AllPeers, the board arrives with Alice's note.
  const b = await openSample(bob, url);
  await b.click("#connect");
  await allow(bob, 1);
  await b.waitForSelector("#app:not([hidden])");
  // Bob accepts in his AllPeers sidebar, as a user does: the Shared panel lists the offer.
  await bob.panel.click("#tab-shared");
  const offer = '#offers li:has(.share-title:text-is("Weekend trip"))';
  await bob.panel.waitForSelector(`${offer} button[data-action="accept"]`);
  assert.equal(await bob.panel.textContent(`${offer} .share-from`), "alice@hub.test");
  await bob.panel.click(`${offer} button[data-action="accept"]`);
  await bob.panel.waitForSelector('#shares-theirs li:has(.share-title:text-is("Weekend trip"))');
  await b.waitForSelector('#boards button:has-text("Weekend trip")');
  await b.click('#boards button:has-text("Weekend trip")');
  await until("alice's note on bob's page", async () => (await noteTexts(b)).includes("Bring the tent"));
  assert.match(await b.textContent("#board-owner"), /alice@hub\.test/);

  // --- Bob writes; Alice's page shows it without a reload (resources.subscribe), and back.
  await b.fill("#note-text", "I'll bring snacks");
  await b.click("#add-note button");
  await until("bob's note on alice's page", async () => (await noteTexts(a)).includes("I'll bring snacks"));
  await a.fill("#note-text", "Leave at 9");
  await a.click("#add-note button");
  await until("alice's second note on bob's page", async () => (await noteTexts(b)).includes("Leave at 9"));
  // Bob may write but not share further (only admins share): no share form on his page.
  await b.waitForSelector("#share", { state: "hidden" });
  assert.match(await b.textContent("#members"), /alice@hub\.test \(owner\)/);

  // --- Presence, asked for only now (a second prompt): Bob shows online on Alice's page.
  await a.click("#presence");
  await allow(alice, 2);
  await a.waitForSelector("#presence", { state: "hidden" });
  await a.waitForSelector("#contacts li .dot.online");

  for (const page of [a, b]) assert.deepEqual(page.errors, []);
  await axeAudit(a, "the board sample (alice)");
  await axeAudit(b, "the board sample (bob)");
  await screenshot(a, "board-alice");
  await screenshot(b, "board-bob");
  // ALLPEERS_README_SHOTS=1 refreshes the README's pictures.
  if (process.env.ALLPEERS_README_SHOTS) {
    await a.screenshot({ path: join(IMAGES, "board-alice.png") });
    await b.screenshot({ path: join(IMAGES, "board-bob.png") });
  }

  // --- A friend's text stays text: markup in a note arrives as the characters typed.
  await b.fill("#note-text", "<b>bold</b><img src=x onerror=alert(1)>");
  await b.click("#add-note button");
  await until("bob's markup note on alice's page", async () =>
    (await noteTexts(a)).includes("<b>bold</b><img src=x onerror=alert(1)>"),
  );
  assert.equal(await a.locator("#notes li b, #notes li img").count(), 0);

  // --- Alice's daemon stops; the extension starts a new one; the SDK re-subscribes on its
  // own, so a note Bob adds afterwards still appears on her page without a reload.
  await allpeers(alice.dataDir, ["stop"]);
  await a.waitForFunction(() => Number(document.body.dataset.lineLosses ?? 0) >= 1 && document.body.dataset.line === "up");
  await b.fill("#note-text", "Back online?");
  await b.click("#add-note button");
  await until("bob's note on alice's page after her restart", async () => (await noteTexts(a)).includes("Back online?"));
  assert.deepEqual(a.errors, []);
});
