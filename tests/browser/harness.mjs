// Shared pieces of the browser tests: temporary AllPeers nodes (data dirs), Chromium
// profiles with the real native host registered, and the panel page.
import { execFile } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync, chmodSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { crc32, deflateSync } from "node:zlib";
import { chromium } from "playwright-core";

const execFileP = promisify(execFile);
export const HERE = dirname(fileURLToPath(import.meta.url));
export const EXTENSION_DIR = resolve(HERE, "../../extension/dist/chromium");
export const SCREENSHOTS = join(HERE, "screenshots");
export const ALLPEERS_BIN = resolve(process.env.ALLPEERS_BIN ?? join(HERE, "../../target/debug/allpeers"));
export const CHROMIUM = process.env.CHROMIUM_BIN ?? "/usr/bin/chromium";
const IDS = JSON.parse(readFileSync(resolve(HERE, "../../extension/identity.json"), "utf8"));
export const EXTENSION_ID = IDS.chromium_id;
export const HOST_NAME = "net.allpeers.host";
/** Upper bound of any single wait in a test. */
export const WAIT_MS = 30_000;

/** The environment of every process we start: no passphrase, no socket override. */
function cleanEnv(extra = {}) {
  const env = { ...process.env, ...extra };
  delete env.ALLPEERS_SOCKET;
  delete env.ALLPEERS_DATA_DIR;
  if (!("ALLPEERS_PASSPHRASE" in extra)) delete env.ALLPEERS_PASSPHRASE;
  return env;
}

/** Runs the allpeers CLI against a data dir; returns stdout (trimmed). */
export async function allpeers(dataDir, args, { env = {}, timeout = WAIT_MS } = {}) {
  const { stdout } = await execFileP(ALLPEERS_BIN, ["--data-dir", dataDir, ...args], {
    env: cleanEnv(env),
    timeout,
  });
  return stdout.trim();
}

const cleanups = [];

/** Registers a cleanup for `cleanupAll` (run in an `after` hook). */
export function onCleanup(fn) {
  cleanups.push(fn);
}

export async function cleanupAll() {
  while (cleanups.length) {
    const fn = cleanups.pop();
    try {
      await fn();
    } catch (e) {
      console.error("cleanup:", e.message);
    }
  }
}

/** A fresh node: a data dir with an identity (sealed with `passphrase` when given). */
export async function makeNode({ passphrase } = {}) {
  const root = mkdtempSync(join(tmpdir(), "allpeers-browser-"));
  const dataDir = join(root, "data");
  const profile = join(root, "profile");
  mkdirSync(dataDir);
  mkdirSync(profile);
  onCleanup(async () => {
    // The browser starts the daemon; it outlives the browser, so stop it.
    await allpeers(dataDir, ["stop"], { timeout: 10_000 }).catch(() => {});
    rmSync(root, { recursive: true, force: true, maxRetries: 10, retryDelay: 100 });
  });
  const peerId = await allpeers(dataDir, ["id"], passphrase ? { env: { ALLPEERS_PASSPHRASE: passphrase } } : {});
  return { root, dataDir, profile, peerId };
}

/** Registers the real native host for this node in its Chromium profile. */
export async function installHost(node) {
  await allpeers(node.dataDir, ["install", "--browser", "chromium", "--chromium-profile", node.profile]);
  return hostManifestPath(node.profile);
}

export function hostManifestPath(profile) {
  return join(profile, "NativeMessagingHosts", `${HOST_NAME}.json`);
}

/** Registers a fake native host: a node script that does `behaviour` (see fake-host.mjs). */
export function installFakeHost(profile, behaviour) {
  const dir = join(profile, "NativeMessagingHosts");
  mkdirSync(dir, { recursive: true });
  const script = join(dirname(profile), `fake-host-${behaviour}.sh`);
  writeFileSync(
    script,
    `#!/bin/sh\nexec '${process.execPath}' '${join(HERE, "fake-host.mjs")}' ${behaviour} "$@"\n`,
  );
  chmodSync(script, 0o700);
  writeFileSync(
    hostManifestPath(profile),
    JSON.stringify({
      name: HOST_NAME,
      description: "fake host for tests",
      path: script,
      type: "stdio",
      allowed_origins: [`chrome-extension://${EXTENSION_ID}/`],
    }),
  );
}

/** Headless Chromium with the extension, on the given profile dir. */
export async function launch(profile, { colorScheme = "light" } = {}) {
  if (!existsSync(join(EXTENSION_DIR, "manifest.json"))) {
    throw new Error(`no built extension at ${EXTENSION_DIR}: run npm run build in extension/`);
  }
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    colorScheme,
    viewport: { width: 360, height: 720 },
    env: cleanEnv(),
    timeout: WAIT_MS,
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      `--disable-extensions-except=${EXTENSION_DIR}`,
      `--load-extension=${EXTENSION_DIR}`,
    ],
  });
  context.setDefaultTimeout(WAIT_MS);
  onCleanup(() => context.close());
  return context;
}

/** Opens the panel page in a tab (the real side panel needs a user gesture). */
export async function openPanel(context, view = "people") {
  const page = await context.newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(e));
  page.errors = errors;
  await page.goto(`chrome-extension://${EXTENSION_ID}/panel.html#${view}`);
  return page;
}

export async function waitConnected(page) {
  await page.waitForSelector('body[data-connection="connected"]');
}

/** The current connection epoch (how many times the panel's background connected). */
export async function epoch(page) {
  return Number(await page.evaluate(() => document.body.dataset.epoch ?? "0"));
}

export async function screenshot(page, name) {
  mkdirSync(SCREENSHOTS, { recursive: true });
  const path = join(SCREENSHOTS, `${name}.png`);
  await page.screenshot({ path, fullPage: true });
  return path;
}

/** PIDs of this node's native-host processes (matched by the node's own data dir). */
export async function nativeHostPids(node) {
  const { stdout } = await execFileP("ps", ["-eo", "pid=,args="]);
  return stdout
    .split("\n")
    .map((l) => l.trim())
    .filter((l) => l.includes(node.dataDir) && / native-host( |$)/.test(l))
    .map((l) => Number(l.split(/\s+/)[0]));
}

// ---------------------------------------------------------------- hub and social nodes

/** A real `allpeers-hub` on loopback (the binary next to ALLPEERS_BIN), its own data dir. */
export async function startHub() {
  const { spawn } = await import("node:child_process");
  const { createInterface } = await import("node:readline");
  const dir = mkdtempSync(join(tmpdir(), "allpeers-hub-"));
  const bin = process.env.ALLPEERS_HUB_BIN ?? join(dirname(ALLPEERS_BIN), "allpeers-hub");
  const child = spawn(
    bin,
    ["--data-dir", dir, "--name", "hub.test", "--quic", "127.0.0.1:0", "--tcp", "127.0.0.1:0", "--presence-timeout", "2"],
    { stdio: ["ignore", "pipe", "ignore"], env: cleanEnv() },
  );
  onCleanup(() => {
    child.kill("SIGTERM");
    rmSync(dir, { recursive: true, force: true });
  });
  const line = await new Promise((resolveLine, reject) => {
    const timer = setTimeout(() => reject(new Error("the hub did not say it is ready")), WAIT_MS);
    child.once("exit", (code) => reject(new Error(`the hub exited (${code})`)));
    createInterface({ input: child.stdout }).once("line", (l) => {
      clearTimeout(timer);
      resolveLine(l);
    });
  });
  const ready = JSON.parse(line);
  return { child, dir, peerId: ready.peer_id, quic: ready.quic, tcp: ready.tcp };
}

/** A node whose home hub is `hub`, listening on loopback (config.json as tests/src/lib.rs writes it). */
export async function makeSocialNode(hub) {
  const node = await makeNode();
  writeFileSync(
    join(node.dataDir, "config.json"),
    JSON.stringify({
      net: { quic: "127.0.0.1:0", tcp: "127.0.0.1:0" },
      // BitTorrent on loopback, no trackers, no DHT: transfers go between the test's nodes only.
      transfers: { listen: "127.0.0.1:0", use_trackers: false, dht: { enabled: false } },
      hub: { peer_id: hub.peerId, addresses: [`quic://${hub.quic}`, `tcp://${hub.tcp}`] },
    }),
  );
  return node;
}

/** Calls a local API method through the CLI (the daemon must run). */
export async function apiCall(node, method, params = {}) {
  const out = await allpeers(node.dataDir, ["call", method, JSON.stringify(params)]);
  return out ? JSON.parse(out) : null;
}

/** Polls `check` (async, returns truthy when done) every 50 ms until `timeout`. */
export async function until(what, check, timeout = WAIT_MS) {
  const deadline = Date.now() + timeout;
  let last;
  for (;;) {
    try {
      const v = await check();
      if (v) return v;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}${last ? `: ${last.message}` : ""}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Waits until the node's daemon is on its hub, then registers `name@hub.test`. */
export async function registerAtHub(node, name) {
  await until(`${name}'s hub line`, async () => (await apiCall(node, "net.status"))?.hub?.state === "online");
  await allpeers(node.dataDir, ["register", name]);
  return `${name}@hub.test`;
}

/** The extension's background service worker of a context. */
export async function backgroundWorker(context) {
  return context.serviceWorkers()[0] ?? (await context.waitForEvent("serviceworker"));
}

/** Calls a local API method from a panel page, through the background (as the panel does). */
export async function panelCall(page, method, params = {}) {
  return page.evaluate(
    ([method, params]) =>
      new Promise((resolve, reject) => {
        const port = chrome.runtime.connect({ name: "allpeers-panel" });
        port.onMessage.addListener((m) => {
          if (m.type !== "reply" || m.id !== 1) return;
          port.disconnect();
          if (m.error) reject(new Error(m.error.message));
          else resolve(m.result);
        });
        port.postMessage({ type: "call", id: 1, method, params });
      }),
    [method, params],
  );
}

/** Starts a node's daemon without a browser (for a peer driven from the CLI). */
export async function startDaemon(node) {
  const { spawn } = await import("node:child_process");
  const child = spawn(ALLPEERS_BIN, ["--data-dir", node.dataDir, "daemon"], { stdio: "ignore", env: cleanEnv() });
  onCleanup(() => child.kill("SIGTERM"));
  await until("the daemon's socket", async () => (await allpeers(node.dataDir, ["status"]).catch(() => "")).length > 0);
  return child;
}

// ---------------------------------------------------------------- accessibility (axe-core)

/** axe-core's source, injected into pages by the tests (the extension does not ship it). */
export const AXE_SOURCE = readFileSync(resolve(HERE, "node_modules/axe-core/axe.min.js"), "utf8");
/** Violations of these impacts fail a test; "minor" and "moderate" ones are printed. */
const AXE_FAILING = new Set(["serious", "critical"]);

/** Formats axe's violations, one line per node, for an assertion message. */
export function axeReport(violations) {
  return violations
    .flatMap((v) => v.nodes.map((n) => `  [${v.impact}] ${v.id}: ${v.help} — ${n.target.join(" ")} ${n.failureSummary?.split("\n").slice(1, 2).join("") ?? ""}`))
    .join("\n");
}

/** Splits axe's result into the failing violations and the rest (printed, not failing). */
export function axeJudge(what, violations) {
  const failing = violations.filter((v) => AXE_FAILING.has(v.impact));
  const other = violations.filter((v) => !AXE_FAILING.has(v.impact));
  if (other.length) console.log(`axe (${what}), not failing:\n${axeReport(other)}`);
  return failing;
}

/**
 * Runs axe-core on a Playwright page (the panel as it is now: hidden views are skipped by
 * axe itself) and fails on any serious or critical violation. Injected with `evaluate`
 * (the DevTools protocol), which the page's CSP does not block.
 */
export async function axeAudit(page, what) {
  if (!(await page.evaluate(() => typeof globalThis.axe === "object"))) await page.evaluate(AXE_SOURCE);
  const violations = await page.evaluate(async () => {
    const r = await globalThis.axe.run(document, { resultTypes: ["violations"] });
    return r.violations.map((v) => ({
      id: v.id,
      impact: v.impact,
      help: v.help,
      nodes: v.nodes.map((n) => ({ target: n.target, failureSummary: n.failureSummary })),
    }));
  });
  const failing = axeJudge(what, violations);
  if (failing.length) throw new Error(`accessibility (axe-core) in ${what}:\n${axeReport(failing)}`);
  return violations;
}

/**
 * Screenshots `<name>-light.png` and `<name>-dark.png` of the page as it is, each audited with axe-core (contrast
 * differs between the schemes); leaves the page in the light scheme.
 */
export async function screenshotBoth(page, name) {
  const paths = [];
  for (const scheme of ["light", "dark"]) {
    await page.emulateMedia({ colorScheme: scheme });
    // Styles follow prefers-color-scheme: wait until the page has applied it.
    await page.waitForFunction((s) => matchMedia(`(prefers-color-scheme: ${s})`).matches, scheme);
    paths.push(await screenshot(page, `${name}-${scheme}`));
    await axeAudit(page, `${name} (${scheme})`);
  }
  await page.emulateMedia({ colorScheme: "light" });
  return paths;
}

// ---------------------------------------------------------------- albums (a List of Images)

/** A w×h RGB PNG whose pixel (x, y) is `pixel(x, y)` ([r, g, b]); its bytes. */
export function png(w, h, pixel) {
  const chunk = (type, data) => {
    const len = Buffer.alloc(4);
    len.writeUInt32BE(data.length);
    const td = Buffer.concat([Buffer.from(type, "ascii"), data]);
    const crc = Buffer.alloc(4);
    crc.writeUInt32BE(crc32(td));
    return Buffer.concat([len, td, crc]);
  };
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(w, 0);
  ihdr.writeUInt32BE(h, 4);
  ihdr[8] = 8; // bit depth
  ihdr[9] = 2; // RGB
  const rows = [];
  for (let y = 0; y < h; y++) {
    const row = Buffer.alloc(1 + w * 3);
    for (let x = 0; x < w; x++) row.set(pixel(x, y), 1 + x * 3);
    rows.push(row);
  }
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk("IHDR", ihdr),
    chunk("IDAT", deflateSync(Buffer.concat(rows))),
    chunk("IEND", Buffer.alloc(0)),
  ]);
}

/** A w×h PNG of one colour (RGB), as base64: a thumbnail as the media worker would write one. */
export function pngBase64(w, h, rgb) {
  return png(w, h, () => rgb).toString("base64");
}

/**
 * Makes an album of `count` Images in the node behind `page` (its panel page's port to the
 * background, so 2,000 calls take seconds, not a CLI process each): returns the List's id.
 */
export async function makeAlbum(page, title, count) {
  return page.evaluate(seedAlbumInPage, [title, count, albumColours()]);
}

/** 24 thumbnails round the colour wheel. */
export function albumColours() {
  return Array.from({ length: 24 }, (_, i) => {
    const hue = (i * 360) / 24;
    const f = (n) => {
      const k = (n + hue / 30) % 12;
      return Math.round(255 * (0.55 - 0.45 * Math.max(-1, Math.min(k - 3, 9 - k, 1))));
    };
    return pngBase64(32, 32, [f(0), f(8), f(4)]);
  });
}

/**
 * Runs in a panel page (Chromium through Playwright, Firefox through WebDriver): makes the List and its `count`
 * Images over one port to the background and answers the List's id.
 */
export async function seedAlbumInPage([title, count, colours]) {
  const port = chrome.runtime.connect({ name: "allpeers-panel" });
  let next = 1;
  const waiting = new Map();
  port.onMessage.addListener((m) => {
    if (m.type !== "reply" || !waiting.has(m.id)) return;
    const { resolve, reject } = waiting.get(m.id);
    waiting.delete(m.id);
    if (m.error) reject(new Error(`${m.error.code}: ${m.error.message}`));
    else resolve(m.result);
  });
  const call = (method, params) =>
    new Promise((resolve, reject) => {
      const id = next++;
      waiting.set(id, { resolve, reject });
      port.postMessage({ type: "call", id, method, params, timeoutMs: 60_000 });
    });
  const list = await call("resources.create", {
    resource: { id: "", type: "List", properties: { title, itemType: "Image" } },
  });
  const ids = [];
  for (let i = 0; i < count; i += 50) {
    const made = await Promise.all(
      Array.from({ length: Math.min(50, count - i) }, (_, j) =>
        call("resources.create", {
          resource: {
            id: "",
            type: "Image",
            properties: {
              name: `photo-${String(i + j + 1).padStart(4, "0")}.png`,
              mimeType: "image/png",
              width: 32,
              height: 32,
              thumbnail: colours[(i + j) % colours.length],
            },
          },
        }),
      ),
    );
    ids.push(...made.map((r) => r.id));
  }
  for (const id of ids) await call("lists.insert", { list: list.id, item: id });
  port.disconnect();
  return list.id;
}

// ---------------------------------------------------------------- drag-and-share

/** Dispatches dragenter, dragover and drop of `files` ({name, type, b64}) on `selector`. */
export async function dropFiles(page, selector, files) {
  const dt = await page.evaluateHandle((files) => {
    const dt = new DataTransfer();
    for (const f of files) {
      const bytes = Uint8Array.from(atob(f.b64), (c) => c.charCodeAt(0));
      dt.items.add(new File([bytes], f.name, { type: f.type }));
    }
    return dt;
  }, files);
  for (const type of ["dragenter", "dragover"]) await page.dispatchEvent(selector, type, { dataTransfer: dt });
  if (!(await page.evaluate(() => document.body.dataset.dragging))) throw new Error("the sidebar does not show it takes the drop");
  await page.dispatchEvent(selector, "drop", { dataTransfer: dt });
}
