// The app API from a web page (issue 21), in Chromium with the real extension, host, daemons
// and a hub. Pages are served on loopback by a tiny static server of the test (two origins:
// the app on 127.0.0.1, an embedded frame on localhost). The page finds the provider only
// by asking; gets 4100 before a grant; the prompt window (Allow enabled after a second);
// identity and contacts after Allow. Attacks: an origin faked in the message body, an iframe
// of another origin, a call after revocation in Settings, prompts asked again after a Deny
// (and concurrently), prototype pollution before the page asks for the provider.
import assert from "node:assert/strict";
import { createServer } from "node:http";
import { after, before, test } from "node:test";
import {
  apiCall,
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

/** Serves `pages` (path → HTML) on `host`, a port of its own: one origin. */
async function serve(host, pages) {
  const server = createServer((req, res) => {
    const page = pages[new URL(req.url, "http://x").pathname];
    res.writeHead(page ? 200 : 404, { "content-type": "text/html; charset=utf-8", "cache-control": "no-store" });
    res.end(page ?? "not found");
  });
  await new Promise((r) => server.listen(0, host, r));
  onCleanup(() => new Promise((r) => server.close(r)));
  return `http://${host}:${server.address().port}`;
}

// The page records every window message from its first script on: before it asks, there is none.
const RECORDER = `<script>
  window.seen = [];
  window.addEventListener("message", (e) => window.seen.push(e.data));
</script>`;
// A page that, in its first script, replaces what a provider might use (getters and setters on
// Object.prototype and Array.prototype for the names a provider's messages have, JSON, Promise,
// postMessage, Map, Reflect.apply, Function.prototype.call ...), each replacement recording any
// use of it; then asks for the provider and calls it with only originals it kept; then puts
// everything back and logs what happened (the console, so that no test code runs in the page
// while it is polluted).
const POLLUTED_PAGE = `<!doctype html><html><head><script>
(() => {
  const apply = Reflect.apply, define = Object.defineProperty, describe = Object.getOwnPropertyDescriptor;
  const dispatch = EventTarget.prototype.dispatchEvent, listen = EventTarget.prototype.addEventListener;
  const NativeEvent = Event, stringify = JSON.stringify, log = console.log;
  let leaks = "";
  const saved = [];
  const trap = (name) => function () { leaks += name + "; "; throw new Error("polluted: " + name); };
  const replacements = [];
  const keys = ["type", "id", "method", "params", "resolve", "reject", "detail", "info", "provider", "code", "error",
    "result", "data", "topic", "allpeers:channel", "bubbles", "cancelable", "composed", "transfer", "targetOrigin",
    "get", "set", "value", "writable", "enumerable", "configurable"];
  for (const key of keys) replacements.push([Object.prototype, key, { __proto__: null, configurable: true,
    get() { leaks += "get " + key + "; "; }, set() { leaks += "set " + key + "; "; } }]);
  for (const i of ["0", "1"]) replacements.push([Array.prototype, i, { __proto__: null, configurable: true,
    get() { leaks += "get [" + i + "]; "; }, set() { leaks += "set [" + i + "]; "; } }]);
  const fns = [[Array.prototype, Symbol.iterator], [Array.prototype, "push"], [Array.prototype, "values"],
    [Map.prototype, "get"], [Map.prototype, "set"], [Map.prototype, "delete"], [Map.prototype, "forEach"],
    [Function.prototype, "call"], [Function.prototype, "apply"], [Function.prototype, "bind"], [Reflect, "apply"],
    [Object, "freeze"], [Object, "hasOwn"], [Object, "defineProperty"], [JSON, "stringify"], [JSON, "parse"],
    [window, "postMessage"], [MessagePort.prototype, "postMessage"], [EventTarget.prototype, "dispatchEvent"],
    [window, "CustomEvent"], [window, "MessageChannel"], [window, "Promise"], [window, "Error"], [window, "queueMicrotask"]];
  for (const [target, key] of fns) replacements.push([target, key, { __proto__: null, configurable: true, writable: true, value: trap(String(key)) }]);
  replacements.push([MessagePort.prototype, "onmessage", { __proto__: null, configurable: true, set: trap("onmessage"), get() {} }]);
  replacements.push([MessageEvent.prototype, "data", { __proto__: null, configurable: true, get: trap("MessageEvent data") }]);
  // Kept without a prototype: put back while Object.prototype still has "get" and "value".
  for (let i = 0; i < replacements.length; i++) {
    const d = describe(replacements[i][0], replacements[i][1]);
    saved[saved.length] = d && Object.setPrototypeOf(d, null);
  }
  const n = replacements.length;
  for (let i = 0; i < n; i++) define(replacements[i][0], replacements[i][1], replacements[i][2]);
  const restore = () => {
    for (let i = n - 1; i >= 0; i--) {
      const target = replacements[i][0], key = replacements[i][1];
      if (saved[i]) define(target, key, saved[i]); else delete target[key];
    }
  };
  const finish = (outcome) => {
    restore();
    log("apps-polluted " + stringify({ outcome, leaks }));
  };
  // Everything from here to finish() runs polluted, using only what was kept above.
  apply(listen, window, ["allpeers:announceProvider", (e) => {
    const provider = e.detail.provider;
    provider.request({ method: "identity.get", params: {} }).then(
      (id) => provider.request({ method: "contacts.list", params: {} }).then(
        () => finish({ peer: id.peer_id, contacts: "granted?" }),
        (err) => finish({ peer: id.peer_id, contactsCode: err.code, name: err.name, frozen: Object.isFrozen(provider) })),
      (err) => finish({ error: String(err.message) }));
  }]);
  apply(dispatch, window, [new NativeEvent("allpeers:requestProvider")]);
})();
</script></head><body>polluted</body></html>`;

const appPage = (frame) => `<!doctype html><html><head>${RECORDER}</head><body><h1>An app</h1>${frame ? `<iframe src="${frame}"></iframe>` : ""}</body></html>`;

/** Asks the frame for the provider (as an app does) and keeps it as window.provider. */
function discover(frame) {
  return frame.evaluate(
    () =>
      new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error("no provider announced")), 10_000);
        window.addEventListener("allpeers:announceProvider", (e) => {
          clearTimeout(timer);
          window.provider = e.detail.provider;
          window.events = [];
          window.provider.on("permissionsChanged", (d) => window.events.push(d));
          resolve({
            info: { name: e.detail.info.name, rdns: e.detail.info.rdns, icon: e.detail.info.icon.slice(0, 15) },
            frozen: [e.detail, e.detail.info, e.detail.provider, e.detail.provider.request].every(Object.isFrozen),
          });
        }, { once: true });
        window.dispatchEvent(new Event("allpeers:requestProvider"));
      }),
  );
}

/** A provider call from the page: `{result}` or `{error: {name, code, message}}`. */
function call(frame, method, params) {
  return frame.evaluate(
    ([method, params]) =>
      window.provider.request({ method, params }).then(
        (result) => ({ result }),
        (e) => ({ error: { name: e.name, code: e.code, message: e.message, isError: e instanceof Error } }),
      ),
    [method, params],
  );
}

/** Starts a call without waiting (a prompt will answer it); `settle` waits for it. */
async function start(frame, key, method, params) {
  await frame.evaluate(
    ([key, method, params]) => {
      window[key] = window.provider.request({ method, params }).then(
        (result) => ({ result }),
        (e) => ({ error: { code: e.code, message: e.message } }),
      );
    },
    [key, method, params],
  );
  return () => frame.evaluate((key) => window[key], key);
}

let hub, alice, bob, context, appOrigin, frameOrigin;
const pages = [];
const prompts = () => pages.filter((p) => p.url().includes("/prompt.html"));

before(async () => {
  hub = await startHub();
  alice = await makeSocialNode(hub);
  bob = await makeSocialNode(hub);
  await installHost(alice);
  await startDaemon(bob);
  context = await launch(alice.profile);
  // Every page ever opened (a popup's URL may be set only after the event); prompts() filters.
  context.on("page", (p) => pages.push(p));
  const panel = await openPanel(context, "people");
  await waitConnected(panel);
  await Promise.all([registerAtHub(alice, "alice"), registerAtHub(bob, "bob")]);
  await apiCall(alice, "contacts.add", { who: "bob@hub.test" });
  await until("bob sees alice's request", async () =>
    (await apiCall(bob, "contacts.list")).some((c) => c.peer_id === alice.peerId && c.state === "incoming"),
  );
  await apiCall(bob, "contacts.accept", { peer: alice.peerId });
  frameOrigin = await serve("localhost", { "/frame.html": appPage() });
  appOrigin = await serve("127.0.0.1", {
    "/app.html": appPage(`${frameOrigin}/frame.html`),
    "/polluted.html": POLLUTED_PAGE,
  });
});

/** The next prompt window (opened by the background), loaded. */
async function nextPrompt(count) {
  await until("a prompt window", async () => prompts().length >= count);
  const prompt = prompts()[count - 1];
  await prompt.waitForSelector('body[data-state="asking"], body[data-state="ready"]');
  return prompt;
}

test("apps: discovery, 4100 before the grant, the prompt, identity and contacts, the attacks", async () => {
  const page = await context.newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(e));
  await page.goto(`${appOrigin}/app.html`);

  // --- A page that does not ask learns nothing: no global, no message.
  assert.equal(await page.evaluate(() => Object.keys(window).filter((k) => /allpeers/i.test(k)).length), 0);
  assert.deepEqual(await page.evaluate(() => window.seen), []);
  const found = await discover(page);
  assert.deepEqual(found, { info: { name: "AllPeers", rdns: "org.allpeers", icon: "data:image/svg+" }, frozen: true });
  assert.equal(await page.evaluate(() => { "use strict"; try { window.provider.request = null; return "changed"; } catch { return "refused"; } }), "refused");

  // --- Before a grant: the page's own origin, no scopes; identity is 4100.
  assert.deepEqual((await call(page, "permissions.get", {})).result.scopes, []);
  assert.equal((await call(page, "permissions.get", {})).result.origin, appOrigin);
  const denied = (await call(page, "identity.get", {})).error;
  assert.equal(denied.code, 4100);
  assert.equal(denied.name, "ProviderRpcError");
  assert.ok(denied.isError);
  assert.match(denied.message, /identity/);

  // --- A method that is not the app's: 4200 (the daemon), and hello (the background).
  assert.equal((await call(page, "apps.grant", { origin: appOrigin, scopes: ["identity"] })).error.code, 4200);
  assert.equal((await call(page, "hello", { client: "x", api_version: 1, origin: frameOrigin })).error.code, 4200);

  // --- The page asks: one prompt window, Allow enabled only after a second; both requests
  // made while it is open get its answer.
  const asked = await start(page, "asked", "permissions.request", { scopes: ["identity", "contacts:read"] });
  const prompt = await nextPrompt(1);
  const again = await start(page, "again", "permissions.request", { scopes: ["identity"] });
  assert.equal(await prompt.textContent("#site-origin"), appOrigin);
  assert.deepEqual(await prompt.$$eval("#scopes li", (l) => l.map((li) => li.dataset.scope)), ["identity", "contacts:read"]);
  assert.match(await prompt.textContent("#scopes"), /PeerId and name.*contacts/s);
  const shownAt = Date.now();
  assert.equal(await prompt.isDisabled("#allow"), true, "Allow is disabled at first");
  await screenshot(prompt, "apps-prompt");
  await prompt.waitForSelector("#allow:enabled");
  assert.ok(Date.now() - shownAt >= 500, "Allow stayed disabled for a while");
  await prompt.click("#allow");
  const granted = await asked();
  assert.deepEqual(granted.result.scopes.sort(), ["contacts:read", "identity"]);
  assert.equal(granted.result.origin, appOrigin);
  assert.deepEqual((await again()).result.origin, appOrigin);
  assert.equal(prompts().length, 1, "one prompt for both requests");
  await until("the prompt window closed", async () => prompt.isClosed());

  // --- Granted: identity and contacts.
  const id = (await call(page, "identity.get", {})).result;
  assert.equal(id.peer_id, alice.peerId);
  const contacts = (await call(page, "contacts.list", {})).result;
  assert.ok(contacts.some((c) => c.peer_id === bob.peerId), `bob among the contacts: ${JSON.stringify(contacts)}`);
  // Not granted: presence is left out of the contacts, and messages.send is 4100.
  assert.ok(contacts.every((c) => c.online === undefined));
  assert.equal((await call(page, "messages.send", { peer_id: bob.peerId, text: "hi" })).error.code, 4100);

  // --- The origin faked in the message body: the page opens its own channel to the relay and
  // names another origin in every field it can. The daemon still sees the page's own.
  const forged = await page.evaluate(
    (other) =>
      new Promise((resolve) => {
        const ch = new MessageChannel();
        ch.port1.onmessage = (e) => {
          if (e.data.type === "reply") resolve(e.data);
        };
        window.postMessage({ "allpeers:channel": 1, origin: other }, "*", [ch.port2]);
        ch.port1.postMessage({ type: "request", id: 7, method: "permissions.get", params: {}, origin: other, sender: { origin: other, url: other } });
      }),
    frameOrigin,
  );
  assert.equal(forged.result.origin, appOrigin);

  // --- An iframe of another origin: its own origin, nothing granted; its prompt names it.
  const frame = page.frames().find((f) => f.url().startsWith(frameOrigin));
  assert.ok(frame, "the frame loaded");
  await discover(frame);
  const framePerms = (await call(frame, "permissions.get", {})).result;
  assert.equal(framePerms.origin, frameOrigin);
  assert.deepEqual(framePerms.scopes, []);
  assert.equal((await call(frame, "identity.get", {})).error.code, 4100);

  // --- Deny: 4001; asked again (at once, and concurrently), refused without a new prompt.
  const first = await start(frame, "first", "permissions.request", { scopes: ["identity"] });
  const framePrompt = await nextPrompt(2);
  assert.equal(await framePrompt.textContent("#site-origin"), frameOrigin);
  const second = await start(frame, "second", "permissions.request", { scopes: ["contacts:read"] });
  await framePrompt.click("#deny");
  assert.equal((await first()).error.code, 4001);
  assert.equal((await second()).error.code, 4001);
  for (let i = 0; i < 5; i++) {
    const refused = (await call(frame, "permissions.request", { scopes: ["identity"] })).error;
    assert.equal(refused.code, 4001);
    assert.match(refused.message, /no new prompt/);
  }
  assert.equal(prompts().length, 2, "no prompt after the refusal");
  assert.equal((await call(frame, "identity.get", {})).error.code, 4100);
  // The app's own grant is untouched by its frame's refusal.
  assert.equal((await call(page, "identity.get", {})).result.peer_id, alice.peerId);

  // --- Revoked in Settings: the site is listed; Revoke; the page hears it and gets 4100 at once.
  const settings = await openPanel(context, "settings");
  await waitConnected(settings);
  const row = `#apps-list li[data-origin="${appOrigin}"]`;
  await settings.waitForSelector(row);
  assert.deepEqual(await settings.$$eval(`${row} [data-scope]`, (l) => l.map((li) => li.dataset.scope).sort()), ["contacts:read", "identity"]);
  assert.equal(await settings.locator(`#apps-list li[data-origin="${frameOrigin}"]`).count(), 0);
  await screenshot(settings, "apps-settings");
  await settings.click(`${row} .app-revoke`);
  await settings.waitForSelector(row, { state: "detached" });
  assert.equal((await call(page, "identity.get", {})).error.code, 4100);
  await page.waitForFunction(() => window.events.some((e) => e.scopes.length === 0));
  assert.deepEqual(await apiCall(alice, "apps.list"), []);

  // --- Granted from the CLI: Settings shows it live (apps.changed).
  await apiCall(alice, "apps.grant", { origin: appOrigin, scopes: ["identity"] });
  await settings.waitForSelector(`${row} [data-scope="identity"]`);
  assert.deepEqual(errors, []);
  assert.deepEqual(settings.errors, []);
});

test("apps: prototype pollution before the page asks neither breaks nor leaks the provider", async () => {
  await apiCall(alice, "apps.grant", { origin: appOrigin, scopes: ["identity"] });
  const page = await context.newPage();
  const logged = page.waitForEvent("console", { predicate: (m) => m.text().startsWith("apps-polluted ") });
  await page.goto(`${appOrigin}/polluted.html`);
  const { outcome, leaks } = JSON.parse((await logged).text().slice("apps-polluted ".length));
  assert.deepEqual(outcome, { peer: alice.peerId, contactsCode: 4100, name: "ProviderRpcError", frozen: true });
  assert.equal(leaks, "", "nothing of the provider reached the page's replacements");
});
