// Share from any page and "Download with AllPeers", in Chromium: Alice's browser (sidebar and
// context menu) and her node, Bob a node on the CLI, one hub; a test page served on loopback
// with a link, a .torrent link (a torrent Bob seeds through transfers.seed) and a magnet link.
// A headless browser has no context menu to click: the test checks the items are registered
// (contextMenus.update) and then calls, from the background, `allpeersMenuClicked(info, tab)`
// — the very function the contextMenus.onClicked listener calls, with the info a click gives.
import assert from "node:assert/strict";
import { createServer } from "node:http";
import { join } from "node:path";
import { writeFileSync } from "node:fs";
import { after, test } from "node:test";
import {
  apiCall,
  axeAudit,
  backgroundWorker,
  cleanupAll,
  installHost,
  launch,
  makeSocialNode,
  onCleanup,
  openPanel,
  registerAtHub,
  screenshot,
  startDaemon,
  startHub,
  until,
  waitConnected,
} from "./harness.mjs";

after(cleanupAll);

/** A loopback HTTP server on `host`: `routes[path]` → {type, body, headers}. */
async function serve(routes, host = "127.0.0.1") {
  const server = createServer((req, res) => {
    const r = routes[new URL(req.url, "http://x").pathname];
    if (!r) {
      res.writeHead(404, { "access-control-allow-origin": "*" }).end("not here");
      return;
    }
    res.writeHead(200, { "content-type": r.type, ...(r.headers ?? {}) });
    res.end(r.body);
  });
  await new Promise((ok) => server.listen(0, host, ok));
  onCleanup(() => {
    server.closeAllConnections();
    return new Promise((ok) => server.close(ok));
  });
  return `http://${host}:${server.address().port}`;
}

test("share from any page into a shared list and to a contact; download a .torrent link; a magnet nobody has", async () => {
  const hub = await startHub();
  const alice = await makeSocialNode(hub);
  await installHost(alice);
  const context = await launch(alice.profile);
  const panel = await openPanel(context, "transfers");
  await waitConnected(panel);
  const bob = await makeSocialNode(hub);
  await startDaemon(bob);
  await Promise.all([registerAtHub(alice, "alice"), registerAtHub(bob, "bob")]);
  await apiCall(alice, "contacts.add", { who: "bob@hub.test" });
  await until("bob sees alice's request", async () =>
    (await apiCall(bob, "contacts.list")).some((c) => c.peer_id === alice.peerId && c.state === "incoming"),
  );
  await apiCall(bob, "contacts.accept", { peer: alice.peerId });
  await panel.waitForSelector('body[data-social="ready"]');

  // Alice's own shared list (she may write), and one Bob shares with her read-only (not offered).
  const list = await apiCall(alice, "resources.create", { resource: { id: "", type: "List", properties: { title: "Reading <b>list</b>" } } });
  const mine = await apiCall(alice, "shares.create", { resource: list.id, members: [{ peer: bob.peerId, level: "write" }] });
  const bobList = await apiCall(bob, "resources.create", { resource: { id: "", type: "List", properties: { title: "Bob's, read only" } } });
  const theirs = await apiCall(bob, "shares.create", { resource: bobList.id, members: [{ peer: alice.peerId, level: "read" }] });
  await until("alice has bob's offer", async () => (await apiCall(alice, "shares.list")).some((s) => s.id === theirs.id));
  await apiCall(alice, "shares.accept", { share: theirs.id });
  await until("bob has alice's offer", async () => (await apiCall(bob, "shares.list")).some((s) => s.id === mine.id));
  await apiCall(bob, "shares.accept", { share: mine.id });

  // Bob seeds a file; the test page links to its .torrent.
  const file = join(bob.root, "page-clip.bin");
  writeFileSync(file, Buffer.alloc(256 * 1024, 5));
  const seeded = await apiCall(bob, "transfers.seed", { path: file });
  const site = await serve({
    "/page.html": {
      type: "text/html",
      body: `<!doctype html><title>A page <i>to share</i></title><p id="text">Some words worth sharing.</p>
        <a id="article" href="/article.html">An article</a>
        <a id="torrent" href="/files/page-clip.torrent">the torrent</a>
        <a id="magnet" href="magnet:?xt=urn:btih:${seeded.transfer.info_hash}">a magnet</a>`,
    },
    "/article.html": { type: "text/html", body: "<title>Article</title>" },
    "/files/page-clip.torrent": {
      type: "application/x-bittorrent",
      body: Buffer.from(seeded.torrent, "base64"),
      headers: { "access-control-allow-origin": "*" },
    },
    "/files/huge.torrent": {
      type: "application/x-bittorrent",
      body: Buffer.alloc(11 * 1024 * 1024, 1),
      headers: { "access-control-allow-origin": "*" },
    },
    "/files/broken.torrent": {
      type: "application/x-bittorrent",
      body: "not bencode",
      headers: { "access-control-allow-origin": "*" },
    },
  });
  // A site without CORS headers, on a loopback address outside the extension's host access (its
  // content scripts for the app provider cover https and http on localhost and 127.0.0.1).
  const otherSite = await serve(
    { "/files/nocors.torrent": { type: "application/x-bittorrent", body: Buffer.from(seeded.torrent, "base64") } },
    "127.0.0.2",
  );
  const page = await context.newPage();
  await page.goto(`${site}/page.html`);
  const worker = await backgroundWorker(context);
  // The items exist (update fails for an unknown id).
  for (const id of ["allpeers-share", "allpeers-share-link", "allpeers-share-selection", "allpeers-download"]) {
    await worker.evaluate((id) => new Promise((ok, no) => chrome.contextMenus.update(id, {}, () => (chrome.runtime.lastError ? no(new Error(chrome.runtime.lastError.message)) : ok()))), id);
  }
  // The item on magnet links, where the browser accepts a magnet: pattern.
  const magnetItem = await worker.evaluate(
    () => new Promise((ok) => chrome.contextMenus.update("allpeers-download-magnet", {}, () => ok(!chrome.runtime.lastError))),
  );
  assert.ok(magnetItem, "the item for magnet links (Chromium accepts the pattern magnet:*)");
  // The tab a click passes: with `activeTab` (granted by the click) it carries the page's URL
  // and title; without a click the background cannot read them, so the test adds what it knows.
  await page.bringToFront();
  const tabId = await worker.evaluate(async () => (await chrome.tabs.query({ active: true, lastFocusedWindow: true }))[0]?.id);
  assert.ok(tabId, "the test page's tab");
  const tab = { id: tabId, url: page.url(), title: await page.title() };
  const click = (info) => worker.evaluate(([info, tab]) => globalThis.allpeersMenuClicked(info, tab), [info, tab]);
  const shareWindow = async (info) => {
    const opened = context.waitForEvent("page", (p) => p.url().includes("/share.html"));
    await click(info);
    const w = await opened;
    await w.waitForSelector("body[data-lists][data-targets]");
    return w;
  };

  // --- "Share link with AllPeers…" on the article link: into Alice's list and to Bob.
  let w = await shareWindow({ menuItemId: "allpeers-share-link", linkUrl: `${site}/article.html`, linkText: "An article", pageUrl: `${site}/page.html` });
  assert.equal(await w.textContent("#share-heading"), "Share this link");
  // Only lists she may write are offered (hers; not Bob's read-only one); titles as text.
  assert.deepEqual(
    await w.$$eval("#list-targets input", (els) => els.map((e) => [e.value, e.dataset.share, e.parentElement.textContent])),
    [[`list:${list.id}`, mine.id, "Reading <b>list</b>"]],
  );
  await w.check(`#list-targets input[value="list:${list.id}"]`);
  await w.check(`#targets input[value="peer:${bob.peerId}"]`);
  await screenshot(w, "share-page-light");
  await axeAudit(w, "share window (link)");
  await w.click("#share-send");
  await w.waitForSelector('body[data-shared="done"][data-shared-count="2"]');
  const linksIn = async () => {
    const { items } = await apiCall(alice, "lists.items", { id: list.id });
    return Promise.all(items.map((id) => apiCall(alice, "resources.get", { id })));
  };
  let items = await linksIn();
  assert.equal(items.length, 1);
  assert.equal(items[0].type, "Link");
  assert.equal(items[0].properties.url, `${site}/article.html`);
  assert.equal(items[0].properties.title, "An article");
  // Bob's node gets both: the list item (he is a member) and the chat message with the card.
  await until("bob's copy of the list has the link", async () => (await apiCall(bob, "lists.items", { id: list.id }).catch(() => ({ items: [] }))).items.length === 1);
  const chat = await apiCall(bob, "chat.open", { peer: alice.peerId });
  await until("bob has the link message", async () =>
    (await apiCall(bob, "chat.history", { chat: chat.id })).some((m) => m.link?.properties?.url === `${site}/article.html`),
  );
  // The sidebar's Shared panel shows it in the list.
  await panel.click("#tab-shared");
  await panel.waitForSelector(`#shares-mine li[data-share="${mine.id}"][data-items="1"] .share-item a[href="${site}/article.html"]`);
  await w.close();

  // --- "Share selection with AllPeers…": into the list, the selection as the Link's description.
  w = await shareWindow({ menuItemId: "allpeers-share-selection", selectionText: "Some words <b>worth</b> sharing.", pageUrl: `${site}/page.html` }, tab);
  assert.equal(await w.textContent("#share-heading"), "Share this selection");
  assert.equal(await w.textContent(".shared-selection"), "“Some words <b>worth</b> sharing.”");
  await w.check(`#list-targets input[value="list:${list.id}"]`);
  await w.check(`#targets input[value="peer:${bob.peerId}"]`);
  await w.click("#share-send");
  await w.waitForSelector('body[data-shared="done"]');
  items = await linksIn();
  assert.equal(items.length, 2);
  const sel = items.find((r) => r.properties.description);
  assert.equal(sel.properties.url, `${site}/page.html`);
  assert.equal(sel.properties.title, "A page <i>to share</i>");
  assert.equal(sel.properties.description, "Some words <b>worth</b> sharing.");
  // Alice's sidebar (on Shared) shows it as a Link card, the selection as its description, as text.
  await panel.waitForSelector(`#shares-mine li[data-share="${mine.id}"][data-items="2"] .share-item .link-desc`);
  assert.equal(
    await panel.textContent(`#shares-mine li[data-share="${mine.id}"] .share-item .link-desc`),
    "Some words <b>worth</b> sharing.",
  );
  await until("bob has the quoted selection", async () =>
    (await apiCall(bob, "chat.history", { chat: chat.id })).some((m) => m.body.startsWith("“Some words <b>worth</b> sharing.”")),
  );
  await w.close();

  // --- "Share page with AllPeers…": to Bob only, with a message.
  w = await shareWindow({ menuItemId: "allpeers-share", pageUrl: `${site}/page.html` }, tab);
  assert.equal(await w.textContent("#share-heading"), "Share this page");
  await w.check(`#targets input[value="peer:${bob.peerId}"]`);
  await w.fill("#share-comment", "have a look");
  await w.click("#share-send");
  await w.waitForSelector('body[data-shared="done"][data-shared-count="1"]');
  await until("bob has the page", async () =>
    (await apiCall(bob, "chat.history", { chat: chat.id })).some((m) => m.body === "have a look" && m.link?.properties?.title === "A page <i>to share</i>"),
  );
  assert.equal((await linksIn()).length, 2, "nothing went into the list");
  await w.close();

  // --- "Download with AllPeers" on the .torrent link: fetched, added, shown in Transfers.
  await panel.click("#tab-transfers");
  const outcome = await click({ menuItemId: "allpeers-download", linkUrl: `${site}/files/page-clip.torrent`, pageUrl: `${site}/page.html` });
  assert.equal(outcome.ok, true, outcome.message);
  assert.equal(outcome.transfer.name, "page-clip.bin");
  const row = `#transfers li[data-transfer="${outcome.transfer.id}"]`;
  await panel.waitForSelector(row);
  assert.equal(await panel.textContent(`${row} .transfer-name`), "page-clip.bin");
  const notes = async () => Object.keys(await worker.evaluate(() => chrome.notifications.getAll()));
  await until("the download's notification", async () => (await notes()).some((k) => k.startsWith("allpeers-download-")));
  // The daemon has the same torrent Bob seeds (the menu gives no peers, and there are no
  // trackers on loopback: it waits for peers; sharing.test.mjs downloads with Bob's address).
  assert.equal((await apiCall(alice, "transfers.get", { id: outcome.transfer.id })).info_hash, seeded.transfer.info_hash);
  await screenshot(panel, "transfers-from-menu-light");

  // --- A magnet link nobody has (no peer, no tracker): told plainly, nothing added.
  const before = (await apiCall(alice, "transfers.list")).length;
  const magnet = await click({ menuItemId: "allpeers-download-magnet", linkUrl: "magnet:?xt=urn:btih:0123456789abcdef0123456789abcdef01234567" });
  assert.equal(magnet.ok, false);
  assert.equal(magnet.kind, "magnet");
  assert.match(magnet.message, /could not start the magnet link: .*no peer to ask/);
  // Too large, not a torrent, not on the web: each refused with its reason.
  const huge = await click({ menuItemId: "allpeers-download", linkUrl: `${site}/files/huge.torrent` });
  assert.equal(huge.kind, "too-large", huge.message);
  assert.match(huge.message, /more than 10\.0 MiB/);
  const broken = await click({ menuItemId: "allpeers-download", linkUrl: `${site}/files/broken.torrent` });
  assert.equal(broken.kind, "daemon", broken.message);
  const missing = await click({ menuItemId: "allpeers-download", linkUrl: `${site}/files/gone.torrent` });
  assert.equal(missing.kind, "fetch");
  assert.match(missing.message, /404/);
  // A site that does not let the extension read the file (no CORS, no permission granted):
  // a reason that says what to do.
  const nocors = await click({ menuItemId: "allpeers-download", linkUrl: `${otherSite}/files/nocors.torrent` });
  assert.equal(nocors.kind, "fetch");
  assert.match(nocors.message, /does not let AllPeers read the file/);
  const local = await click({ menuItemId: "allpeers-download", linkUrl: "file:///etc/passwd.torrent" });
  assert.equal(local.kind, "refused");
  assert.equal((await apiCall(alice, "transfers.list")).length, before);
  assert.deepEqual(panel.errors, []);
});
