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

const FIREFOX = process.env.FIREFOX_BIN ?? "/usr/bin/firefox-esr";
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
