// Two browser profiles, two nodes, one real hub on loopback (and a third node driven from
// the CLI for the group of three): contacts, presence, chat both ways, receipts, typing, a
// group, share-from-page through the context menu's code path, notifications and the
// badge, and the host killed mid-conversation with the typed message kept.
import assert from "node:assert/strict";
import { rmSync } from "node:fs";
import { after, test } from "node:test";
import {
  allpeers,
  apiCall,
  backgroundWorker,
  axeAudit,
  cleanupAll,
  epoch,
  hostManifestPath,
  installHost,
  launch,
  makeSocialNode,
  nativeHostPids,
  openPanel,
  panelCall,
  registerAtHub,
  screenshot,
  startDaemon,
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

async function browserNode(hub, name, { register = true } = {}) {
  const node = await makeSocialNode(hub);
  await installHost(node);
  const context = await launch(node.profile);
  const page = await openPanel(context, "people");
  await waitConnected(page);
  if (register) node.name = await registerAtHub(node, name);
  return { ...node, context, page };
}

const contact = (peer) => `#contacts li[data-peer="${peer}"]`;

test("two sidebars: contact, presence, chat, group, share, notifications, host killed", async () => {
  const hub = await startHub();
  const alice = await browserNode(hub, "alice", { register: false });
  const bob = await browserNode(hub, "bob");
  const a = alice.page;
  const b = bob.page;

  // Alice registers her name in Settings (Bob did from the CLI): a taken name is refused
  // and stays in the box; then hers.
  await a.click("#tab-settings");
  await a.waitForSelector('#hub-list dd[data-key="hub_state"]:has-text("online")');
  await a.waitForSelector("#register-form:visible");
  await a.fill("#register-name", "bob");
  await a.click("#register-button");
  await a.waitForSelector('#register-result.error:has-text("Not registered")');
  assert.equal(await a.inputValue("#register-name"), "bob");
  await a.fill("#register-name", "alice");
  await a.click("#register-button");
  await a.waitForSelector('#hub-list dd[data-key="hub_name"]:has-text("alice@hub.test")');
  await a.waitForSelector("#register-form", { state: "hidden" });
  assert.equal(await a.textContent('#hub-list dd[data-key="hub_peer_id"]'), hub.peerId);
  alice.name = "alice@hub.test";
  await shot(a, "settings-hub-light");
  await a.click("#tab-people");
  for (const p of [a, b]) await p.waitForSelector('body[data-social="ready"]');

  // --- Alice asks Bob by name; Bob accepts in his sidebar.
  await a.fill("#add-who", "bob@hub.test");
  await a.fill("#add-message", "hi, it's Alice <b>not bold</b>");
  await a.click("#add-button");
  await a.waitForSelector(`${contact(bob.peerId)}[data-state="outgoing"]`);
  await b.waitForSelector(`#requests li[data-peer="${alice.peerId}"]`);
  // The request message is text, not markup.
  assert.equal(await b.locator(`#requests li[data-peer="${alice.peerId}"] b`).count(), 0);
  await b.waitForSelector(`#requests li[data-peer="${alice.peerId}"] .request-message:has-text("<b>not bold</b>")`);
  await shot(b, "people-request-light");
  await b.click(`#requests li[data-peer="${alice.peerId}"] button[data-action="accept"]`);
  await a.waitForSelector(`${contact(bob.peerId)}[data-state="accepted"][data-presence="online"]`);
  await b.waitForSelector(`${contact(alice.peerId)}[data-state="accepted"][data-presence="online"]`);
  assert.equal(await a.textContent(`${contact(bob.peerId)} .name`), "bob@hub.test");

  // --- Presence: Bob goes away with a status text; Alice sees it live.
  await b.selectOption("#presence-state", "busy");
  await b.waitForSelector('body[data-my-presence="busy"]');
  await a.waitForSelector(`${contact(bob.peerId)}[data-presence="busy"]`);
  await b.fill("#presence-text", "in a meeting");
  await b.selectOption("#presence-state", "away");
  await b.click("#presence-set");
  await a.waitForSelector(`${contact(bob.peerId)}[data-presence="away"] .status-text:has-text("in a meeting")`);
  await shot(a, "people-contacts-light");

  // --- Chat both ways: Alice opens it from the contact, Bob from his conversation list.
  await a.click(`${contact(bob.peerId)} button[data-action="chat"]`);
  await a.waitForSelector("#conversation:visible");
  await a.fill("#message-input", "hello bob");
  await a.press("#message-input", "Enter");
  await a.waitForSelector('.msg[data-outgoing="true"]:has-text("hello bob")');
  assert.equal(await a.inputValue("#message-input"), "", "the box is cleared once sent");
  await b.click("#tab-chat");
  const bobItem = `#chats li[data-unread="1"]`;
  await b.waitForSelector(bobItem);
  await shot(b, "chat-list-light");
  await b.click(`${bobItem} button`);
  await b.waitForSelector('.msg[data-outgoing="false"]:has-text("hello bob")');
  // Bob has it open and visible: read, and Alice sees "Read".
  await a.waitForSelector('.msg[data-outgoing="true"][data-status="read"]:has-text("hello bob")');

  // Typing reaches the other side.
  await b.type("#message-input", "hi al");
  await a.waitForSelector(`body[data-typing="${bob.peerId}"]`);
  await a.waitForSelector('#typing:has-text("is typing")');
  await b.type("#message-input", "ice");
  await b.click("#send-button");
  await a.waitForSelector('.msg[data-outgoing="false"]:has-text("hi alice")');
  await b.waitForSelector('.msg[data-outgoing="true"][data-status="read"]:has-text("hi alice")');

  // Alice edits and deletes her own messages; Bob's sidebar follows.
  const mine = (text) => `.msg[data-outgoing="true"]:has-text("${text}")`;
  await a.click(`${mine("hello bob")} button[data-action="edit"]`);
  await a.waitForSelector("body[data-editing]");
  assert.equal(await a.inputValue("#message-input"), "hello bob");
  await a.fill("#message-input", "hello, bob!");
  await a.click("#send-button");
  await b.waitForSelector('.msg[data-outgoing="false"]:has-text("hello, bob!"):has-text("edited")');
  await a.fill("#message-input", "oops, wrong chat");
  await a.click("#send-button");
  await b.waitForSelector('.msg:has-text("oops, wrong chat")');
  await a.click(`${mine("oops, wrong chat")} button[data-action="delete"]`);
  await a.click(`${mine("oops, wrong chat")} button[data-action="delete"]`); // "Delete for everyone?"
  await b.waitForSelector(".msg .deleted");
  assert.equal(await b.locator('.msg:has-text("oops, wrong chat")').count(), 0);

  // A peer's HTML is text; a javascript: URL in a link card is never clickable (the daemon
  // refuses to send one, so the check is on what we render from our own store's shape).
  await b.fill("#message-input", '<img src=x onerror="document.body.dataset.pwned=1"> & <script>x</script>');
  await b.click("#send-button");
  await a.waitForSelector('.msg:has-text("<script>x</script>")');
  assert.equal(await a.locator("#message-list img, #message-list script").count(), 0);
  assert.equal(await a.evaluate(() => document.body.dataset.pwned), undefined);
  await shot(a, "chat-conversation-light");
  await a.emulateMedia({ colorScheme: "dark" });
  await shot(a, "chat-conversation-dark");
  await a.emulateMedia({ colorScheme: "light" });
  // At Firefox's narrowest sidebar nothing overflows sideways: the conversation, People.
  await a.setViewportSize({ width: 200, height: 900 });
  for (const view of ["chat", "people"]) {
    await a.click(`#tab-${view}`);
    const overflow = await a.evaluate(() => document.documentElement.scrollWidth - innerWidth);
    assert.ok(overflow <= 0, `${view} overflows by ${overflow} px at 200 px`);
    await shot(a, `narrow-${view}-social-light`);
  }
  await a.setViewportSize({ width: 360, height: 720 });
  await a.click("#tab-chat");
  await a.waitForSelector("#conversation:visible");

  // --- Share from a page, through the function the context menu's handler calls.
  const worker = await backgroundWorker(alice.context);
  const menu = await worker.evaluate(async () => {
    await new Promise((r) => chrome.contextMenus.update("allpeers-share", {}, r));
    return chrome.runtime.lastError?.message ?? "registered";
  });
  assert.equal(menu, "registered", "the Share with… menu item exists");
  const shareOpened = alice.context.waitForEvent("page", (p) => p.url().includes("/share.html"));
  await worker.evaluate(() =>
    globalThis.allpeersShareFromMenu(
      { menuItemId: "allpeers-share", pageUrl: "https://example.org/article?id=7" },
      { url: "https://example.org/article?id=7", title: "An article worth reading" },
    ),
  );
  const share = await shareOpened;
  await share.waitForSelector('body[data-connection="connected"]');
  await share.waitForSelector(`#targets input[value="peer:${bob.peerId}"]`);
  await share.check(`#targets input[value="peer:${bob.peerId}"]`);
  await share.fill("#share-comment", "look at this");
  await shot(share, "share-light");
  await share.click("#share-send");
  await share.waitForSelector('body[data-shared="done"]');
  const card = `.msg[data-outgoing="false"] .link-card a[href="https://example.org/article?id=7"]`;
  await b.waitForSelector(card);
  assert.equal(await b.getAttribute(card, "target"), "_blank");
  assert.match(await b.getAttribute(card, "rel"), /noopener/);
  assert.equal(await b.textContent(card), "An article worth reading");
  await shot(b, "chat-link-card-light");
  await share.close();

  // A link the menu was opened on; and a javascript: link is refused by the share window.
  const jsOpened = alice.context.waitForEvent("page", (p) => p.url().includes("/share.html"));
  await worker.evaluate(() =>
    globalThis.allpeersShareFromMenu({ menuItemId: "allpeers-share", linkUrl: "javascript:alert(1)", pageUrl: "https://example.org/" }),
  );
  const jsShare = await jsOpened;
  await jsShare.waitForSelector("#share-refused:visible");
  assert.equal(await jsShare.locator("#share-form:visible").count(), 0);
  await jsShare.close();

  // --- Carol, a node driven from the CLI, joins with Alice's invite code (accepted at once).
  const carol = await makeSocialNode(hub);
  await startDaemon(carol);
  carol.name = await registerAtHub(carol, "carol");
  await a.click("#tab-people");
  await a.click("#invite-make");
  await a.waitForSelector('body[data-invite="ready"]');
  const code = (await a.textContent("#invite-code")).trim();
  await apiCall(carol, "contacts.add", { who: code });
  await a.waitForSelector(`${contact(carol.peerId)}[data-state="accepted"]`);

  // --- Notifications and the badge while Bob's sidebar is closed: a message from Alice
  // and a contact request from Carol.
  await b.close();
  const bobWorker = await backgroundWorker(bob.context);
  await a.click(`${contact(bob.peerId)} button[data-action="chat"]`);
  await a.fill("#message-input", "are you there?");
  await a.click("#send-button");
  await apiCall(carol, "contacts.add", { who: "bob@hub.test", message: "Carol here" });
  let badge;
  await until("bob's badge", async () => (badge = await bobWorker.evaluate(() => chrome.action.getBadgeText({}))) === "1").catch((e) => {
    throw new Error(`${e.message} (badge: ${JSON.stringify(badge)})`);
  });
  const notes = await until("bob's notifications", async () => {
    const ids = Object.keys(await bobWorker.evaluate(() => chrome.notifications.getAll()));
    return ids.some((k) => k.startsWith("allpeers-chat-")) && ids.includes(`allpeers-request-${carol.peerId}`) && ids;
  });
  assert.ok(notes);
  const b2 = await openPanel(bob.context, "people");
  await waitConnected(b2);
  await b2.click(`#requests li[data-peer="${carol.peerId}"] button[data-action="accept"]`);
  await b2.waitForSelector(`${contact(carol.peerId)}[data-state="accepted"]`);
  await b2.click("#tab-chat");
  await b2.waitForSelector('#chats li[data-unread="1"]');
  await b2.click('#chats li[data-unread="1"] button');
  await b2.waitForSelector('.msg:has-text("are you there?")');
  await until("bob's badge cleared", async () => (await bobWorker.evaluate(() => chrome.action.getBadgeText({}))) === "");

  // --- A group of three, made in Alice's sidebar (a half-written message to Bob waits
  // in his conversation's box meanwhile).
  await a.fill("#message-input", "half-written");
  await a.click("#conv-back");
  await a.click("#new-group");
  await a.fill("#group-title", "Trip <planning>");
  await a.check(`#group-members input[value="${bob.peerId}"]`);
  await a.check(`#group-members input[value="${carol.peerId}"]`);
  await shot(a, "chat-new-group-light");
  await a.click("#group-create");
  await a.waitForSelector('#conv-title:has-text("Trip <planning>")');
  const groupId = await a.evaluate(() => document.body.dataset.chat);
  await a.fill("#message-input", "group hello");
  await a.click("#send-button");
  await b2.click("#conv-back");
  await b2.waitForSelector(`#chats li[data-chat="${groupId}"][data-group="true"][data-unread="1"]`);
  await until("carol has the group message", async () => {
    const h = await apiCall(carol, "chat.history", { chat: groupId });
    return h.some((m) => m.body === "group hello");
  });
  await apiCall(carol, "chat.send", { chat: groupId, body: "carol says hi" });
  await a.waitForSelector('.msg[data-outgoing="false"]:has(.sender:has-text("carol@hub.test")):has-text("carol says hi")');
  await b2.click(`#chats li[data-chat="${groupId}"] button`);
  await b2.waitForSelector('.msg:has(.sender:has-text("carol@hub.test")):has-text("carol says hi")');
  // Bob read it, Carol's node only received it: delivered to both.
  await a.waitForSelector('.msg[data-outgoing="true"]:is([data-status="delivered"],[data-status="read"]):has-text("group hello")');
  await shot(b2, "chat-group-light");

  // --- History scrolls back: 60 more messages; Bob sees the latest 50, then the rest.
  for (let i = 0; i < 60; i++) await panelCall(a, "chat.send", { chat: groupId, body: `bulk ${String(i).padStart(2, "0")}` });
  await b2.waitForSelector('.msg:has-text("bulk 59")');
  await b2.click("#conv-back");
  await b2.click(`#chats li[data-chat="${groupId}"] button`);
  await b2.waitForSelector('body[data-messages="50"]');
  await b2.waitForSelector("#load-earlier:visible");
  assert.equal(await b2.locator('.msg:has-text("group hello")').count(), 0);
  await b2.click("#load-earlier");
  await b2.waitForSelector('.msg:has-text("group hello")');
  assert.equal(await b2.evaluate(() => document.body.dataset.messages), "62");
  const order = await b2.$$eval("#message-list .msg .body", (els) => els.map((e) => e.textContent));
  assert.deepEqual(order.slice(0, 3), ["group hello", "carol says hi", "bulk 00"]);
  assert.equal(order.at(-1), "bulk 59");

  // --- Alice's host dies while she is writing (in the 1:1 chat): the message stays in the box, is refused
  // while the host is gone (its manifest removed, so it stays gone), and goes out after.
  const before = await epoch(a);
  await a.click("#conv-back");
  await a.click(`#chats li:not([data-chat="${groupId}"]) button`);
  await a.waitForFunction(() => document.getElementById("message-input").value === "half-written");
  rmSync(hostManifestPath(alice.profile));
  for (const pid of await nativeHostPids(alice)) process.kill(pid, "SIGKILL");
  await a.waitForSelector('body[data-connection="disconnected"][data-problem]');
  await a.fill("#message-input", "written while the host was down");
  await a.click("#send-button");
  await a.waitForSelector('#send-result:has-text("Not sent")');
  assert.equal(await a.inputValue("#message-input"), "written while the host was down");
  await shot(a, "chat-host-down-light");
  await installHost(alice);
  // The background's next try (backoff of at most 10 s) finds it again.
  await a.waitForFunction((e) => Number(document.body.dataset.epoch) > e && document.body.dataset.connection === "connected", before);
  await a.click("#send-button");
  await a.waitForSelector('.msg[data-outgoing="true"]:has-text("written while the host was down")');
  assert.equal(await a.inputValue("#message-input"), "");
  await b2.click("#conv-back");
  await b2.click(`#chats li:not([data-chat="${groupId}"]) button`);
  await b2.waitForSelector('.msg:has-text("written while the host was down")');

  // --- A card with a javascript: URL (which no AllPeers node sends: a hostile peer's, put
  // straight into Alice's store here) is shown as text, never as a link.
  const history = await panelCall(a, "chat.history", { chat: await a.evaluate(() => document.body.dataset.chat) });
  const last = history.at(-1);
  const evil = JSON.parse(
    await allpeers(alice.dataDir, ["--json", "resource", "create", JSON.stringify({ type: "Link", properties: { url: "javascript:document.body.dataset.pwned=1", title: "click me" } })]),
  );
  await allpeers(alice.dataDir, [
    "resource", "create",
    JSON.stringify({
      type: "Message",
      properties: { chat: last.chat, sender: bob.peerId, body: "hostile card", sent: new Date().toISOString(), hlc: `${last.hlc}~`, attachments: [evil.id] },
    }),
  ]);
  await a.click("#conv-back");
  await a.click(`#chats li[data-chat="${last.chat}"] button`);
  await a.waitForSelector('.msg:has-text("hostile card") .link-card[data-safe="false"]');
  assert.equal(await a.locator('.msg:has-text("hostile card") a').count(), 0);
  await a.click('.msg:has-text("hostile card") .link-title');
  assert.equal(await a.evaluate(() => document.body.dataset.pwned), undefined);

  // --- An attachment of a type the panel has no template for (a Text file) is drawn from its
  // schema by the wasm model: the generic view, with labelled fields, text only.
  const text = JSON.parse(
    await allpeers(alice.dataDir, ["--json", "resource", "create", JSON.stringify({ type: "Text", properties: { name: "notes.txt", size: 1234, mimeType: "text/plain", lines: 42, preview: "<b>not bold</b>" } })]),
  );
  await allpeers(alice.dataDir, [
    "resource", "create",
    JSON.stringify({
      type: "Message",
      properties: { chat: last.chat, sender: bob.peerId, body: "a file card", sent: new Date().toISOString(), hlc: `${last.hlc}~~`, attachments: [text.id] },
    }),
  ]);
  await a.click("#conv-back");
  await a.click(`#chats li[data-chat="${last.chat}"] button`);
  await a.waitForSelector('body[data-wasm="ready"]');
  const generic = '.msg:has-text("a file card") .resource-card[data-type="Text"][data-generic="true"]';
  await a.waitForSelector(`${generic} dd[data-field="lines"]`);
  assert.equal(await a.textContent(`${generic} dd[data-field="lines"]`), "42");
  assert.equal(await a.textContent(`${generic} dd[data-field="preview"]`), "<b>not bold</b>");
  assert.equal(await a.locator(`${generic} b`).count(), 0);
  await shot(a, "chat-generic-view-light");

  // --- Decline, then block, a request; remove a contact.
  await a.click("#tab-people");
  await a.click(`${contact(carol.peerId)} button[data-action="remove"]`);
  await a.waitForSelector(`${contact(carol.peerId)}`, { state: "detached" });
  await apiCall(carol, "contacts.add", { who: alice.name, message: "again?" });
  await a.waitForSelector(`#requests li[data-peer="${carol.peerId}"]`);
  await a.click(`#requests li[data-peer="${carol.peerId}"] button[data-action="decline"]`);
  await a.waitForSelector("#requests-section", { state: "hidden" });
  await a.click("#tab-chat"); // leave People and come back: the declined request stays gone
  await a.click("#tab-people");
  assert.equal(await a.locator(`#requests li[data-peer="${carol.peerId}"]`).count(), 0);
  await apiCall(carol, "contacts.remove", { peer: alice.peerId });
  await apiCall(carol, "contacts.add", { who: alice.name, message: "please" });
  await a.waitForSelector(`#requests li[data-peer="${carol.peerId}"]`);
  await a.click(`#requests li[data-peer="${carol.peerId}"] button[data-action="block"]`);
  await a.waitForSelector(`${contact(carol.peerId)}[data-state="blocked"] button[data-action="unblock"]`);
  assert.deepEqual(a.errors, []);
});
