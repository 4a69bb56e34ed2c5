// Firefox smoke test, without a WebDriver: `web-ext run` loads the Firefox build into a
// headless Firefox ESR whose HOME holds the real host's manifest (written by
// `allpeers install --browser firefox`); the test then watches the node: the extension's
// background must connect through native messaging and say hello as "extension/firefox".
// The panel itself is driven only in Chromium for now (Firefox needs geckodriver).
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, readdirSync } from "node:fs";
import { join, resolve } from "node:path";
import { after, test } from "node:test";
import { setTimeout as delay } from "node:timers/promises";
import { HERE, allpeers, cleanupAll, makeNode, onCleanup } from "./harness.mjs";
import { FIREFOX, FIREFOX_UUID, GECKODRIVER, launchFirefox } from "./firefox-driver.mjs";

const EXT = resolve(HERE, "../../extension");

after(cleanupAll);

function daemonLog(dataDir) {
  const dir = join(dataDir, "logs");
  if (!existsSync(dir)) return "";
  return readdirSync(dir)
    .filter((f) => f.startsWith("daemon"))
    .map((f) => readFileSync(join(dir, f), "utf8"))
    .join("\n");
}

/** Polls `check` every 200 ms until it returns a truthy value or `ms` pass. */
async function until(check, ms, what) {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await check();
    if (v) return v;
    if (typeof what === "object" && what.exited()) throw new Error(`web-ext exited while waiting for ${what.name}`);
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what.name ?? what}`);
    await delay(200);
  }
}

test("Firefox: the background connects through the real native host and says hello", { skip: !existsSync(FIREFOX) && `no ${FIREFOX} (apt-get install firefox-esr)` }, async () => {
  const node = await makeNode();
  const home = join(node.root, "home");
  mkdirSync(home);
  const { execFile } = await import("node:child_process");
  await new Promise((res, rej) =>
    execFile(
      process.env.ALLPEERS_BIN ?? join(HERE, "../../target/debug/allpeers"),
      ["--data-dir", node.dataDir, "install", "--browser", "firefox"],
      { env: { ...process.env, HOME: home } },
      (e) => (e ? rej(e) : res()),
    ),
  );
  const manifest = JSON.parse(readFileSync(join(home, ".mozilla/native-messaging-hosts/net.allpeers.host.json"), "utf8"));
  assert.deepEqual(manifest.allowed_extensions, ["allpeers@allpeers.net"]);

  const env = { ...process.env, HOME: home, MOZ_HEADLESS: "1" };
  delete env.ALLPEERS_PASSPHRASE;
  delete env.DISPLAY;
  const webExt = spawn(
    join(EXT, "node_modules/.bin/web-ext"),
    ["run", "--source-dir", join(EXT, "dist/firefox"), `--firefox=${FIREFOX}`, "--no-reload", "--no-input",
     "--profile-create-if-missing", "--firefox-profile", join(node.root, "ff-profile")],
    { env, stdio: ["ignore", "pipe", "pipe"], detached: true },
  );
  let output = "";
  webExt.stdout.on("data", (d) => (output += d));
  webExt.stderr.on("data", (d) => (output += d));
  onCleanup(async () => {
    if (webExt.exitCode === null) {
      // web-ext and the Firefox it started form their own process group.
      const exited = new Promise((r) => webExt.once("exit", r));
      try {
        process.kill(-webExt.pid, "SIGTERM");
      } catch {}
      if ((await Promise.race([exited.then(() => "exited"), delay(5_000)])) !== "exited") {
        try {
          process.kill(-webExt.pid, "SIGKILL");
        } catch {}
      }
    }
  });

  try {
    await until(
      () => /client said hello.*extension\/firefox|extension\/firefox.*client said hello/.test(daemonLog(node.dataDir)),
      90_000,
      { name: "hello from extension/firefox in the daemon log", exited: () => webExt.exitCode !== null },
    );
  } catch (e) {
    throw new Error(`${e.message}\n--- web-ext output ---\n${output.slice(-3000)}`);
  }
  const status = JSON.parse(await allpeers(node.dataDir, ["status", "--json"]));
  assert.equal(status.identity.peer_id, node.peerId);
  assert.ok(status.clients >= 1, `the Firefox extension is a client (${status.clients})`);
});


/**
 * axe-core in a Firefox page driven by geckodriver: the source goes in through WebDriver's
 * script execution (not a <script> element, which the extension's CSP would refuse); any
 * serious or critical violation fails the test.
 */
async function firefoxAxe(driver, what) {
  const { AXE_SOURCE, axeJudge, axeReport } = await import("./harness.mjs");
  if (!(await driver.executeScript("return typeof window.axe === 'object'"))) {
    // The UMD bundle sets window.axe when there is no `module`; `this` must be the window.
    await driver.executeScript(`(function () { ${AXE_SOURCE}\n}).call(window);`);
  }
  assert.equal(await driver.executeScript("return typeof window.axe?.run"), "function", "axe-core loaded in Firefox");
  const violations = await driver.executeAsyncScript(`
    const done = arguments[arguments.length - 1];
    window.axe.run(document, { resultTypes: ["violations"] }).then(
      (r) => done(r.violations.map((v) => ({ id: v.id, impact: v.impact, help: v.help,
        nodes: v.nodes.map((n) => ({ target: n.target, failureSummary: n.failureSummary })) }))),
      (e) => done([{ id: "axe-error", impact: "critical", help: String(e), nodes: [] }]),
    );`);
  const failing = axeJudge(what, violations);
  if (failing.length) throw new Error(`accessibility (axe-core) in ${what}:\n${axeReport(failing)}`);
  console.log(`axe (${what}): ${violations.length} violations, none serious or critical`);
}

test(
  "Firefox: the sidebar panel connects, shows the PeerId, changes the log level and recovers from a daemon stop",
  {
    skip:
      (!existsSync(FIREFOX) && `no ${FIREFOX} (apt-get install firefox-esr)`) ||
      (!GECKODRIVER && "no geckodriver (cargo install geckodriver)"),
  },
  async () => {
    const { Builder, By, until: wdUntil } = await import("selenium-webdriver");
    const firefox = await import("selenium-webdriver/firefox.js");
    const node = await makeNode();
    const { driver, home } = await launchFirefox(node, { width: 420, height: 800 });
    await driver.get(`moz-extension://${FIREFOX_UUID}/panel.html#people`);
    const WAIT = 30_000;
    await driver.wait(wdUntil.elementLocated(By.css('body[data-connection="connected"]')), WAIT);
    await driver.wait(async () => (await driver.findElement(By.id("peer-id")).getText()) === node.peerId, WAIT);
    assert.equal(await driver.findElement(By.id("identity-state")).getText(), "Ready");
    assert.equal(
      await driver.executeScript("return document.querySelector('#about-list dd[data-key=\"browser\"]').textContent"),
      "Firefox",
    );
    const overflow = await driver.executeScript("return document.documentElement.scrollWidth - innerWidth");
    assert.ok(overflow <= 0, `the panel overflows by ${overflow} px`);
    mkdirSync(join(HERE, "screenshots"), { recursive: true });
    const { writeFileSync } = await import("node:fs");
    writeFileSync(join(HERE, "screenshots", "firefox-people-light.png"), await driver.takeScreenshot(), "base64");

    // Settings: log level through the panel reaches the daemon.
    await driver.findElement(By.id("tab-settings")).click();
    await driver.wait(wdUntil.elementLocated(By.css("body[data-log-filter]")), WAIT);
    const filter = await driver.findElement(By.id("log-filter"));
    await filter.clear();
    await filter.sendKeys("bone");
    await driver.findElement(By.id("log-apply")).click();
    await driver.wait(wdUntil.elementLocated(By.css('body[data-log-filter="bone"]')), WAIT);
    assert.equal(JSON.parse(await allpeers(node.dataDir, ["call", "log.get", "{}"])).filter, "bone");

    // Settings → Bandwidth (parity with settings.test.mjs): a bare number refused, then
    // 2 MiB/s down set from the panel is what the daemon's net.limits.get says.
    const down = await driver.findElement(By.id("limit-down"));
    await down.clear();
    await down.sendKeys("2");
    await driver.findElement(By.id("limits-apply")).click();
    await driver.wait(async () => /unit/.test(await driver.findElement(By.id("limit-down-error")).getText()), WAIT);
    assert.equal(await down.getAttribute("aria-invalid"), "true");
    await down.clear();
    await down.sendKeys("2 MiB/s", "\uE007");
    await driver.wait(wdUntil.elementLocated(By.css(`body[data-limit-down="${2 * 1024 * 1024}"]`)), WAIT);
    assert.deepEqual(JSON.parse(await allpeers(node.dataDir, ["call", "net.limits.get", "{}"])), { down: 2 * 1024 * 1024, up: null });

    // The daemon stops: the panel reports it and reconnects to a new one.
    const before = Number(await driver.executeScript("return document.body.dataset.epoch"));
    await allpeers(node.dataDir, ["stop"]);
    await driver.wait(
      async () =>
        (await driver.executeScript(
          "return Number(document.body.dataset.epoch) > arguments[0] && document.body.dataset.connection === 'connected'",
          before,
        )) === true,
      WAIT,
    );
    assert.match(await driver.executeScript("return document.body.dataset.lastProblem"), /^(daemon-closed|host-exited)$/);

    // The host uninstalled: Firefox's wording is classified as "not installed" too.
    const { renameSync } = await import("node:fs");
    const manifestPath = join(home, ".mozilla/native-messaging-hosts/net.allpeers.host.json");
    renameSync(manifestPath, `${manifestPath}.off`);
    await allpeers(node.dataDir, ["stop"]);
    await driver.wait(wdUntil.elementLocated(By.css('body[data-problem="host-missing"]')), WAIT);
    assert.equal(await driver.findElement(By.id("banner-title")).getText(), "AllPeers is not installed");
    renameSync(`${manifestPath}.off`, manifestPath);
    await driver.findElement(By.id("banner-retry")).click();
    await driver.wait(wdUntil.elementLocated(By.css('body[data-connection="connected"]')), WAIT);
  },
);

// The chat part in Firefox: Alice in the Firefox sidebar, Bob a node driven from the CLI,
// one real hub. A contact request accepted in Firefox, presence, messages both ways, a
// link card (clickable only as http/https, in a new tab).
test(
  "Firefox: contact request, presence and chat both ways with a link card",
  {
    skip:
      (!existsSync(FIREFOX) && `no ${FIREFOX} (apt-get install firefox-esr)`) ||
      (!GECKODRIVER && "no geckodriver (cargo install geckodriver)"),
  },
  async () => {
    const h = await import("./harness.mjs");
    const { Builder, By, until: wdUntil } = await import("selenium-webdriver");
    const firefox = await import("selenium-webdriver/firefox.js");
    const hub = await h.startHub();
    const node = await h.makeSocialNode(hub);
    const { driver, home } = await launchFirefox(node, { width: 420, height: 900 });
    await driver.get(`moz-extension://${FIREFOX_UUID}/panel.html#people`);
    const WAIT = 30_000;
    const css = (s) => wdUntil.elementLocated(By.css(s));
    await driver.wait(css('body[data-connection="connected"]'), WAIT);
    await h.registerAtHub(node, "alice");
    await driver.wait(css('body[data-social="ready"]'), WAIT);

    // The list is redrawn on every change (presence, a name found at the hub): click what is there now.
    const clickNow = (sel) =>
      driver.wait(async () => {
        try {
          await driver.findElement(By.css(sel)).click();
          return true;
        } catch {
          return false;
        }
      }, WAIT);
    const bob = await h.makeSocialNode(hub);
    await h.startDaemon(bob);
    await h.registerAtHub(bob, "bob");
    // By PeerId this time (the Chromium test adds by name and by invite code).
    await h.apiCall(bob, "contacts.add", { who: node.peerId, message: "Bob, from the command line" });
    const request = `#requests li[data-peer="${bob.peerId}"] button[data-action="accept"]`;
    await driver.wait(css(request), WAIT);
    await clickNow(request);
    const contact = `#contacts li[data-peer="${bob.peerId}"][data-state="accepted"][data-presence="online"]`;
    await driver.wait(css(contact), WAIT);
    await h.apiCall(bob, "presence.set", { state: "busy", text: "compiling" });
    await driver.wait(css(`#contacts li[data-peer="${bob.peerId}"][data-presence="busy"]`), WAIT);

    await clickNow(`#contacts li[data-peer="${bob.peerId}"] button[data-action="chat"]`);
    await driver.wait(css("#conversation:not([hidden])"), WAIT);
    await driver.findElement(By.id("message-input")).sendKeys("hello from Firefox");
    await driver.findElement(By.id("send-button")).click();
    const chat = await h.apiCall(bob, "chat.open", { peer: node.peerId });
    await h.until("Bob has the message", async () =>
      (await h.apiCall(bob, "chat.history", { chat: chat.id })).some((m) => m.body === "hello from Firefox"),
    );
    await h.apiCall(bob, "chat.send", { chat: chat.id, body: "hi Firefox <i>plain</i>" });
    await h.apiCall(bob, "chat.send", {
      chat: chat.id,
      body: "a page",
      link: { url: "https://example.org/ff", title: "Example in Firefox" },
    });
    await driver.wait(css('.msg[data-outgoing="false"] .link-card a[href="https://example.org/ff"]'), WAIT);
    const texts = await driver.executeScript(
      "return [...document.querySelectorAll('#message-list .msg .body')].map((e) => e.textContent)",
    );
    assert.deepEqual(texts, ["hello from Firefox", "hi Firefox <i>plain</i>", "a page"]);
    assert.equal(await driver.executeScript("return document.querySelectorAll('#message-list i').length"), 0);
    const link = await driver.findElement(By.css(".link-card a"));
    assert.equal(await link.getAttribute("target"), "_blank");
    assert.match(await link.getAttribute("rel"), /noopener/);
    // Bob reads Alice's message: Firefox shows it read.
    await h.apiCall(bob, "chat.read", { chat: chat.id });
    await driver.wait(css('.msg[data-outgoing="true"][data-status="read"]'), WAIT);
    // And the Firefox panel, showing the conversation, marked Bob's messages read.
    await h.until("Bob's messages read by Alice", async () =>
      (await h.apiCall(bob, "chat.history", { chat: chat.id }))
        .filter((m) => m.outgoing)
        .every((m) => m.receipts.some((r) => r.read)),
    );
    // The wasm model (generic resource views) loads under Firefox's CSP too.
    await driver.wait(css('body[data-wasm="ready"]'), WAIT);
    const { writeFileSync } = await import("node:fs");
    writeFileSync(join(HERE, "screenshots", "firefox-chat-light.png"), await driver.takeScreenshot(), "base64");
  },
);

// Shared and Transfers in Firefox: Alice in the Firefox sidebar, Bob a node driven from the
// CLI, one hub. Alice makes a shared list for Bob in her sidebar; Bob accepts it (API) and
// adds a link, which appears in Firefox live; Alice adds one from the sidebar, which Bob
// gets. Bob seeds a file; Alice downloads it from her Transfers panel (a .torrent file and
// Bob's address) under a download limit: progress seen between 1 and 99 %, then 100 %.
test(
  "Firefox: a shared list edited from both sides, and a download with progress",
  {
    skip:
      (!existsSync(FIREFOX) && `no ${FIREFOX} (apt-get install firefox-esr)`) ||
      (!GECKODRIVER && "no geckodriver (cargo install geckodriver)"),
  },
  async () => {
    const h = await import("./harness.mjs");
    const { writeFileSync } = await import("node:fs");
    const { Builder, By, until: wdUntil } = await import("selenium-webdriver");
    const firefox = await import("selenium-webdriver/firefox.js");
    const hub = await h.startHub();
    const alice = await h.makeSocialNode(hub);
    const { driver, home } = await launchFirefox(alice, { width: 420, height: 1000 });
    await driver.get(`moz-extension://${FIREFOX_UUID}/panel.html#shared`);
    const WAIT = 30_000;
    const css = (s) => wdUntil.elementLocated(By.css(s));
    const js = (script, ...args) => driver.executeScript(script, ...args);
    // Cards are redrawn as changes arrive: click what is there now.
    const clickNow = (sel) =>
      driver.wait(async () => {
        try {
          await driver.findElement(By.css(sel)).click();
          return true;
        } catch {
          return false;
        }
      }, WAIT);
    await driver.wait(css('body[data-connection="connected"]'), WAIT);
    const bob = await h.makeSocialNode(hub);
    await h.startDaemon(bob);
    await Promise.all([h.registerAtHub(alice, "alice"), h.registerAtHub(bob, "bob")]);
    await h.apiCall(alice, "contacts.add", { who: "bob@hub.test" });
    await h.until("bob sees alice's request", async () =>
      (await h.apiCall(bob, "contacts.list")).some((c) => c.peer_id === alice.peerId && c.state === "incoming"),
    );
    await h.apiCall(bob, "contacts.accept", { peer: alice.peerId });
    await driver.wait(css(`body[data-social="ready"]`), WAIT);

    // --- Alice shares a list with Bob from the Firefox sidebar.
    await driver.findElement(By.id("new-share")).click();
    await driver.findElement(By.id("share-title")).sendKeys("Reading <list>");
    await clickNow(`#share-members input[value="${bob.peerId}"]`);
    await driver.findElement(By.id("share-create")).click();
    const mine = "#shares-mine li.share[data-synced='true']";
    await driver.wait(css(mine), WAIT);
    const shareId = await driver.findElement(By.css(mine)).getAttribute("data-share");
    assert.equal(await js(`return document.querySelector("${mine} .share-title").textContent`), "Reading <list>");

    // --- Bob accepts (API) and adds a link: it appears in Firefox live.
    await h.until("bob has the offer", async () => (await h.apiCall(bob, "shares.list")).some((s) => s.id === shareId));
    const share = await h.apiCall(bob, "shares.accept", { share: shareId });
    await h.until("the list synced to bob", async () => await h.apiCall(bob, "resources.get", { id: share.resource }));
    const link = await h.apiCall(bob, "resources.create", {
      resource: { type: "Link", properties: { url: "https://bob.example/", title: "From Bob <em>cli</em>" } },
    });
    await h.apiCall(bob, "lists.insert", { list: share.resource, item: link.id });
    await driver.wait(css(`${mine}[data-items="1"] .share-item a[href="https://bob.example/"]`), WAIT);
    assert.equal(await js(`return document.querySelectorAll("${mine} .share-item em").length`), 0);
    await driver.wait(css(`${mine} .member-list li[data-peer="${bob.peerId}"][data-level="write"]`), WAIT);

    // --- Alice adds one from the sidebar (Enter in the box): Bob's list gets it.
    await driver.findElement(By.css(`${mine} input[name="url"]`)).sendKeys("https://firefox.example/", "\uE007");
    await driver.wait(css(`#shares-mine li.share[data-items="2"][data-pending="0"]`), WAIT);
    await h.until("bob has alice's link", async () => (await h.apiCall(bob, "lists.items", { id: share.resource })).items.length === 2);
    mkdirSync(join(HERE, "screenshots"), { recursive: true });
    writeFileSync(join(HERE, "screenshots", "firefox-shared-light.png"), await driver.takeScreenshot(), "base64");
    await firefoxAxe(driver, "Firefox Shared");

    // --- Bob seeds a file; Alice downloads it from her Transfers panel, slowed down.
    const file = join(bob.root, "firefox-clip.bin");
    writeFileSync(file, Buffer.alloc(512 * 1024, 3));
    const seeded = await h.apiCall(bob, "transfers.seed", { path: file });
    const torrent = join(alice.root, "firefox-clip.torrent");
    writeFileSync(torrent, Buffer.from(seeded.torrent, "base64"));
    await h.apiCall(alice, "net.limits.set", { down: 128 * 1024 });
    await driver.findElement(By.id("tab-transfers")).click();
    await driver.findElement(By.css("#torrent-details summary")).click();
    await driver.findElement(By.id("torrent-file")).sendKeys(torrent);
    await driver.findElement(By.id("torrent-peers")).sendKeys(`127.0.0.1:${seeded.listen.split(":").pop()}`);
    await js(`
      const sel = '#transfers li[data-state="downloading"]:not([data-percent="0"]):not([data-percent="100"])';
      const observer = new MutationObserver(() => seen());
      const seen = () => { if (document.querySelector(sel)) { observer.disconnect(); document.body.dataset.sawPartial = "true"; } };
      observer.observe(document.body, { subtree: true, childList: true, attributes: true });
    `);
    await driver.findElement(By.id("torrent-add")).click();
    await driver.wait(css('body[data-saw-partial="true"]'), WAIT);
    await driver.wait(css("#transfers-badge:not([hidden])"), WAIT);
    writeFileSync(join(HERE, "screenshots", "firefox-transfers-light.png"), await driver.takeScreenshot(), "base64");
    await firefoxAxe(driver, "Firefox Transfers");
    // Pause and resume from the keyboard (Enter on the focused button, which keeps the focus).
    const pause = await driver.findElement(By.css('#transfers li button[data-action="pause"]'));
    await pause.sendKeys("\uE007");
    await driver.wait(css('#transfers li[data-state="paused"] button[data-action="resume"]'), WAIT);
    await driver.wait(css("#transfers-badge[hidden]"), WAIT);
    assert.equal(await js("return document.activeElement?.dataset.action"), "resume");
    await driver.switchTo().activeElement().sendKeys("\uE007");
    await driver.wait(css('#transfers li:not([data-state="paused"])'), WAIT);
    await h.apiCall(alice, "net.limits.set", {});
    await driver.wait(css('#transfers li[data-state="seeding"][data-percent="100"]'), WAIT);
    await driver.wait(css("#transfers-badge[hidden]"), WAIT);
    assert.equal(await js(`return document.querySelector('#transfers [role="progressbar"]').getAttribute("aria-valuenow")`), "100");

    // Alice revokes Bob (the button asks once): her card and Bob's node agree.
    await driver.findElement(By.id("tab-shared")).click();
    const revoke = `#shares-mine li.share .member-list li[data-peer="${bob.peerId}"] button[data-action="revoke"]`;
    await clickNow(revoke);
    await driver.wait(css(`${revoke}[data-confirm="1"]`), WAIT);
    await clickNow(revoke);
    await driver.wait(async () => (await driver.findElements(By.css(`#shares-mine .member-list li[data-peer="${bob.peerId}"]`))).length === 0, WAIT);
    await h.until("bob's node knows it is revoked", async () => {
      const s = (await h.apiCall(bob, "shares.list")).find((x) => x.id === shareId);
      return s && !s.members.some((m) => m.peer === bob.peerId);
    });
  },
);

// Parity with the Chromium-only parts of social.test.mjs and pageshare.test.mjs: share from a
// page (context menu → share window → a shared list and a contact), Download with AllPeers on
// a .torrent link and a magnet link (its metadata from bob), a group of three made in the Firefox sidebar, and
// notifications + badge while no AllPeers page is open. Alice in Firefox; Bob and Carol on
// the CLI; one hub. geckodriver has no context menu to click either: the background's own
// listener function is called (`allpeersMenuClicked`, reached with runtime.getBackgroundPage).
// "No page open" is an extension document without the panel's port (panel.css): it still has
// the extension API, to read notifications and the badge.
test(
  "Firefox: share from a page, download a .torrent link, a group of three, notifications and badge",
  {
    skip:
      (!existsSync(FIREFOX) && `no ${FIREFOX} (apt-get install firefox-esr)`) ||
      (!GECKODRIVER && "no geckodriver (cargo install geckodriver)"),
  },
  async () => {
    const h = await import("./harness.mjs");
    const { writeFileSync } = await import("node:fs");
    const { createServer } = await import("node:http");
    const { Builder, By, until: wdUntil } = await import("selenium-webdriver");
    const firefox = await import("selenium-webdriver/firefox.js");
    const hub = await h.startHub();
    const alice = await h.makeSocialNode(hub);
    const { driver, home } = await launchFirefox(alice, { width: 420, height: 1000 });
    const PANEL = `moz-extension://${FIREFOX_UUID}/panel.html`;
    await driver.get(`${PANEL}#chat`);
    const WAIT = 30_000;
    const css = (s) => wdUntil.elementLocated(By.css(s));
    const js = (script, ...args) => driver.executeScript(script, ...args);
    /** Runs `body` (async, may use `bg`, the background's window) in the page; its JSON back. */
    const inBackground = async (body, ...args) =>
      JSON.parse(
        await driver.executeAsyncScript(
          `const done = arguments[arguments.length - 1];
           const args = Array.prototype.slice.call(arguments, 0, -1);
           browser.runtime.getBackgroundPage()
             .then((bg) => (async (bg, args) => { ${body} })(bg, args))
             .then((v) => done(JSON.stringify(v ?? null)), (e) => done(JSON.stringify({ thrown: String(e) })));`,
          ...args,
        ),
      );
    const clickNow = (sel) =>
      driver.wait(async () => {
        try {
          await driver.findElement(By.css(sel)).click();
          return true;
        } catch {
          return false;
        }
      }, WAIT);
    await driver.wait(css('body[data-connection="connected"]'), WAIT);
    const [bob, carol] = await Promise.all([h.makeSocialNode(hub), h.makeSocialNode(hub)]);
    await Promise.all([h.startDaemon(bob), h.startDaemon(carol)]);
    await Promise.all([h.registerAtHub(alice, "alice"), h.registerAtHub(bob, "bob"), h.registerAtHub(carol, "carol")]);
    for (const friend of [bob, carol]) {
      await h.apiCall(alice, "contacts.add", { who: friend.peerId });
      await h.until("the request arrives", async () =>
        (await h.apiCall(friend, "contacts.list")).some((c) => c.peer_id === alice.peerId && c.state === "incoming"),
      );
      await h.apiCall(friend, "contacts.accept", { peer: alice.peerId });
    }
    await driver.wait(css('body[data-social="ready"]'), WAIT);

    // --- Share from a page: the menu items exist; the listener opens the share window.
    const list = await h.apiCall(alice, "resources.create", { resource: { id: "", type: "List", properties: { title: "Firefox finds" } } });
    const listShare = await h.apiCall(alice, "shares.create", { resource: list.id, members: [{ peer: bob.peerId, level: "write" }] });
    const items = await inBackground(`
      const out = {};
      for (const id of args[0]) out[id] = await bg.browser.menus.update(id, {}).then(() => true, () => false);
      return out;`, ["allpeers-share", "allpeers-share-link", "allpeers-share-selection", "allpeers-download", "allpeers-download-magnet"]);
    // Every item, the magnet one too (Firefox refuses a magnet: pattern: it is shown by hand
    // from menus.onShown on magnet links).
    assert.deepEqual(Object.entries(items).filter(([, ok]) => !ok).map(([id]) => id), [], `menu items: ${JSON.stringify(items)}`);
    const main = await driver.getWindowHandle();
    const before = await driver.getAllWindowHandles();
    await inBackground(`await bg.allpeersMenuClicked(args[0], { title: "ignored for a link" }); return true;`, {
      menuItemId: "allpeers-share-link",
      linkUrl: "https://example.org/from-firefox",
      linkText: "Found in <b>Firefox</b>",
      pageUrl: "https://example.org/",
    });
    const popup = await driver.wait(async () => (await driver.getAllWindowHandles()).find((x) => !before.includes(x)), WAIT);
    await driver.switchTo().window(popup);
    await driver.wait(css("body[data-lists][data-targets]"), WAIT);
    assert.equal(await driver.findElement(By.id("share-heading")).getText(), "Share this link");
    assert.equal(await js(`return document.querySelector('#shared-card .link-title').textContent`), "Found in <b>Firefox</b>");
    await driver.findElement(By.css(`#list-targets input[value="list:${list.id}"]`)).click();
    await driver.findElement(By.css(`#targets input[value="peer:${bob.peerId}"]`)).click();
    await firefoxAxe(driver, "Firefox share window");
    writeFileSync(join(HERE, "screenshots", "firefox-share-light.png"), await driver.takeScreenshot(), "base64");
    await driver.findElement(By.id("share-send")).click();
    await driver.wait(css('body[data-shared="done"][data-shared-count="2"]'), WAIT);
    await driver.close();
    await driver.switchTo().window(main);
    const { items: inList } = await h.apiCall(alice, "lists.items", { id: list.id });
    assert.equal(inList.length, 1);
    const link = await h.apiCall(alice, "resources.get", { id: inList[0] });
    assert.deepEqual([link.type, link.properties.url, link.properties.title], ["Link", "https://example.org/from-firefox", "Found in <b>Firefox</b>"]);
    const bobChat = await h.apiCall(bob, "chat.open", { peer: alice.peerId });
    await h.until("bob has the shared link", async () =>
      (await h.apiCall(bob, "chat.history", { chat: bobChat.id })).some((m) => m.link?.properties?.url === "https://example.org/from-firefox"),
    );
    assert.ok(listShare.id);

    // --- Download with AllPeers: a .torrent on a loopback site (CORS allowed); a magnet link.
    const file = join(bob.root, "ff-menu.bin");
    writeFileSync(file, Buffer.alloc(128 * 1024, 9));
    const seeded = await h.apiCall(bob, "transfers.seed", { path: file });
    const server = createServer((req, res) => {
      if (req.url !== "/ff-menu.torrent") return void res.writeHead(404).end();
      res.writeHead(200, { "content-type": "application/x-bittorrent", "access-control-allow-origin": "*" });
      res.end(Buffer.from(seeded.torrent, "base64"));
    });
    await new Promise((ok) => server.listen(0, "127.0.0.1", ok));
    onCleanup(() => {
      server.closeAllConnections();
      return new Promise((ok) => server.close(ok));
    });
    const torrentUrl = `http://127.0.0.1:${server.address().port}/ff-menu.torrent`;
    await driver.findElement(By.id("tab-transfers")).click();
    const got = await inBackground(`return await bg.allpeersMenuClicked(args[0]);`, { menuItemId: "allpeers-download", linkUrl: torrentUrl });
    assert.equal(got.ok, true, got.message ?? got.thrown);
    await driver.wait(css(`#transfers li[data-transfer="${got.transfer.id}"]`), WAIT);
    // It waits for peers (no trackers on loopback, the menu gives none): cancelled, so the
    // badge below counts messages only.
    await h.apiCall(alice, "transfers.cancel", { id: got.transfer.id, delete_files: true });
    await driver.wait(async () => (await driver.findElements(By.css(`#transfers li[data-transfer="${got.transfer.id}"]`))).length === 0, WAIT);
    // The magnet link names bob's BitTorrent port: alice's daemon gets the metadata from bob (BEP 9).
    const magnet = await inBackground(`return await bg.allpeersMenuClicked(args[0]);`, {
      menuItemId: "allpeers-download-magnet",
      linkUrl: `magnet:?xt=urn:btih:${seeded.transfer.info_hash}&x.pe=${seeded.listen}`,
    });
    assert.equal(magnet.ok, true, magnet.message ?? magnet.thrown);
    // Listed at once, named by its info-hash (the link has no dn) while its metadata is fetched.
    assert.equal(magnet.transfer.name, seeded.transfer.info_hash);
    await driver.wait(css(`#transfers li[data-transfer="${magnet.transfer.id}"]`), WAIT);
    await driver.wait(async () => (await h.apiCall(alice, "transfers.get", { id: magnet.transfer.id })).name === "ff-menu.bin", WAIT);
    await h.apiCall(alice, "transfers.cancel", { id: magnet.transfer.id, delete_files: true });

    // --- A group of three made in the Firefox sidebar; messages from all three, names shown.
    await driver.findElement(By.id("tab-chat")).click();
    await driver.findElement(By.id("new-group")).click();
    await driver.findElement(By.id("group-title")).sendKeys("Firefox <trio>");
    await clickNow(`#group-members input[value="${bob.peerId}"]`);
    await clickNow(`#group-members input[value="${carol.peerId}"]`);
    await driver.findElement(By.id("group-create")).click();
    await driver.wait(async () => (await driver.findElement(By.id("conv-title")).getText()) === "Firefox <trio>", WAIT);
    const groupId = await js("return document.body.dataset.chat");
    await driver.findElement(By.id("message-input")).sendKeys("hello trio from Firefox");
    await driver.findElement(By.id("send-button")).click();
    for (const friend of [bob, carol]) {
      await h.until("the group message arrives", async () =>
        (await h.apiCall(friend, "chat.history", { chat: groupId }).catch(() => [])).some((m) => m.body === "hello trio from Firefox"),
      );
    }
    await h.apiCall(carol, "chat.send", { chat: groupId, body: "carol in the trio" });
    await h.apiCall(bob, "chat.send", { chat: groupId, body: "bob in the trio" });
    await driver.wait(
      async () =>
        (await js(`return [...document.querySelectorAll('#message-list .msg[data-outgoing="false"]')].map((m) => m.querySelector('.sender')?.textContent + ': ' + m.querySelector('.body')?.textContent).sort().join('|')`)) ===
        "bob@hub.test: bob in the trio|carol@hub.test: carol in the trio",
      WAIT,
    );
    await firefoxAxe(driver, "Firefox group conversation");
    writeFileSync(join(HERE, "screenshots", "firefox-group-light.png"), await driver.takeScreenshot(), "base64");

    // --- No AllPeers page open: a message and a share offer raise notifications, the badge counts.
    await driver.findElement(By.id("conv-back")).click();
    // The sidebar's tab closed (a page navigated away may linger in the back-forward cache
    // with its port), another tab on an extension document without a port.
    await driver.switchTo().newWindow("tab");
    const quiet = await driver.getWindowHandle();
    await driver.get(`moz-extension://${FIREFOX_UUID}/panel.css`);
    await driver.switchTo().window(main);
    await driver.close();
    await driver.switchTo().window(quiet);
    // Firefox opened the real sidebar when the add-on was installed (sidebar_action's
    // open_at_install): closed here from the browser's own UI code (chrome context, allowed
    // by geckodriver's --allow-system-access), as the user's sidebar button would.
    await driver.setContext(firefox.Context.CHROME);
    await driver.executeScript("(window.SidebarController ?? window.SidebarUI).hide()");
    await driver.setContext(firefox.Context.CONTENT);
    let panelCount;
    await driver.wait(async () => (panelCount = await inBackground("return bg.allpeersPanelCount();")) === 0, WAIT).catch((e) => {
      throw new Error(`${e.message}: ${JSON.stringify(panelCount)} AllPeers pages still connected`);
    });
    // Record what the background asks for (headless Firefox may close a notification at once,
    // as it has no desktop to show it on, so getAll alone can come back empty).
    await inBackground(`
      const api = bg.browser.notifications;
      bg.allpeersTestNotes = {};
      bg.allpeersTestClosed = [];
      const create = api.create.bind(api);
      api.create = (id, opts) => { bg.allpeersTestNotes[id] = opts; return create(id, opts); };
      api.onClosed.addListener((id) => bg.allpeersTestClosed.push(id));
      return true;`);
    await h.apiCall(bob, "chat.send", { chat: bobChat.id, body: "Bob, while the <sidebar> is closed" });
    const bobOffer = await h.apiCall(bob, "shares.create", {
      resource: (await h.apiCall(bob, "resources.create", { resource: { id: "", type: "List", properties: { title: "Bob's picks" } } })).id,
      members: [{ peer: alice.peerId, level: "read" }],
    });
    const notes = () => inBackground("return { ...bg.allpeersTestNotes, ...(await bg.browser.notifications.getAll()) };");
    let lastNotes;
    await driver.wait(async () => {
      const n = await notes();
      lastNotes = n;
      return n[`allpeers-chat-${bobChat.id}`] && n[`allpeers-share-${bobOffer.id}`];
    }, WAIT).catch((e) => {
      throw new Error(`${e.message}: notifications ${JSON.stringify(lastNotes)}`);
    });
    const n = await notes();
    assert.equal(n[`allpeers-chat-${bobChat.id}`].title, "bob@hub.test");
    assert.equal(n[`allpeers-chat-${bobChat.id}`].message, "Bob, while the <sidebar> is closed");
    assert.match(n[`allpeers-share-${bobOffer.id}`].message, /bob@hub\.test shared “Bob's picks”/);
    let badge;
    await driver.wait(async () => (badge = await inBackground("return await bg.browser.action.getBadgeText({});")) === "1", WAIT).catch((e) => {
      throw new Error(`${e.message}: the badge says ${JSON.stringify(badge)}`);
    });
    // Headless Firefox has no desktop to show them on: it closes them at once (onClosed).
    // The sidebar again: Bob's conversation read there, the badge clears.
    await driver.get(`${PANEL}#chat`);
    await driver.wait(css(`#chats li[data-chat="${bobChat.id}"][data-unread="1"]`), WAIT, "Bob's conversation unread in the list");
    await clickNow(`#chats li[data-chat="${bobChat.id}"] button`);
    await driver.wait(css(`.msg[data-outgoing="false"]`), WAIT, "Bob's conversation open");
    await driver.wait(async () => (badge = await inBackground("return await bg.browser.action.getBadgeText({});")) === "", WAIT).catch((e) => {
      throw new Error(`${e.message}: the badge still says ${JSON.stringify(badge)}`);
    });
  },
);
