// Builds the extension for Chromium and Firefox from one source:
//   node build.mjs            -> dist/chromium, dist/firefox
//   node build.mjs --tests    -> also dist/test (unit tests for node --test)
import { build } from "esbuild";
import { deflateSync } from "node:zlib";
import { copyFileSync, existsSync, mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = dirname(fileURLToPath(import.meta.url));
const pkg = JSON.parse(readFileSync(join(root, "package.json"), "utf8"));
const ids = JSON.parse(readFileSync(join(root, "identity.json"), "utf8"));
const withTests = process.argv.includes("--tests");
const WASM = join(root, "../wasm/pkg/web/allpeers_wasm_bg.wasm");
if (!existsSync(WASM)) {
  console.error(`no ${WASM}: build the wasm model first (wasm/build.sh; PROFILE=debug for a faster build)`);
  process.exit(2);
}

const ICON_SIZES = [16, 32, 48, 128];
// Pages that may ask for the app provider: the origins the daemon accepts (https, loopback http).
const APP_MATCHES = ["https://*/*", "http://localhost/*", "http://127.0.0.1/*", "http://[::1]/*"];
// 'wasm-unsafe-eval': the wasm model (generic resource views) is compiled from the
// extension's own allpeers_wasm_bg.wasm; no JS eval is allowed.
const CSP = "script-src 'self' 'wasm-unsafe-eval'; object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

function manifest(browser) {
  const icons = Object.fromEntries(ICON_SIZES.map((s) => [String(s), `icons/icon-${s}.png`]));
  const common = {
    manifest_version: 3,
    name: "AllPeers",
    version: pkg.version,
    description: "Peer-to-peer sharing and chat with your contacts, from the sidebar. No cloud in between.",
    icons,
    action: { default_title: "AllPeers", default_icon: icons },
    // activeTab: a click on our context-menu item lets us read that tab's URL and title (the
    // page shared) and fetch from its site (a .torrent linked from it), nothing more.
    permissions: ["nativeMessaging", "clipboardWrite", "contextMenus", "notifications", "activeTab"],
    // "Download with AllPeers" fetches a .torrent from the link's site: that origin's
    // permission is asked for when the item is clicked (never at install).
    optional_host_permissions: ["http://*/*", "https://*/*"],
    content_security_policy: { extension_pages: CSP },
    // The app API (docs/architecture.md, "Apps"): the provider in the page's own world, the
    // relay to the background in the isolated one; in every frame, before the page's scripts.
    content_scripts: [
      { matches: APP_MATCHES, js: ["provider.js"], run_at: "document_start", all_frames: true, world: "MAIN" },
      { matches: APP_MATCHES, js: ["relay.js"], run_at: "document_start", all_frames: true },
    ],
  };
  if (browser === "chromium") {
    return {
      ...common,
      key: ids.chromium_key,
      minimum_chrome_version: "116",
      permissions: [...common.permissions, "sidePanel"],
      background: { service_worker: "background.js" },
      side_panel: { default_path: "panel.html" },
    };
  }
  return {
    ...common,
    background: { scripts: ["background.js"] },
    sidebar_action: { default_panel: "panel.html", default_title: "AllPeers", default_icon: icons },
    browser_specific_settings: {
      gecko: {
        id: ids.firefox_id,
        // 140 is the current ESR (Debian's firefox-esr); data_collection_permissions is
        // known from 140 on desktop, 142 on Android.
        strict_min_version: "140.0",
        data_collection_permissions: { required: ["none"] },
      },
      gecko_android: { strict_min_version: "142.0" },
    },
  };
}

// ---- icons: drawn here so the repository holds no binaries (two overlapping peers on a disc)
function crc32(buf) {
  let c, crc = 0xffffffff;
  for (let n = 0; n < buf.length; n++) {
    c = (crc ^ buf[n]) & 0xff;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    crc = (crc >>> 8) ^ c;
  }
  return (crc ^ 0xffffffff) >>> 0;
}
function chunk(type, data) {
  const len = Buffer.alloc(4);
  len.writeUInt32BE(data.length);
  const td = Buffer.concat([Buffer.from(type, "ascii"), data]);
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(td));
  return Buffer.concat([len, td, crc]);
}
function icon(size) {
  const ss = 4;
  const raw = Buffer.alloc(size * (size * 4 + 1));
  const inCircle = (x, y, cx, cy, r) => (x - cx) ** 2 + (y - cy) ** 2 <= r * r;
  for (let y = 0; y < size; y++) {
    raw[y * (size * 4 + 1)] = 0;
    for (let x = 0; x < size; x++) {
      let disc = 0, peer = 0;
      for (let sy = 0; sy < ss; sy++)
        for (let sx = 0; sx < ss; sx++) {
          const u = (x + (sx + 0.5) / ss) / size, v = (y + (sy + 0.5) / ss) / size;
          if (inCircle(u, v, 0.5, 0.5, 0.48)) {
            disc++;
            if (inCircle(u, v, 0.37, 0.5, 0.17) || inCircle(u, v, 0.63, 0.5, 0.17)) peer++;
          }
        }
      const a = disc / (ss * ss), p = disc ? peer / disc : 0;
      const mix = (bg, fg) => Math.round(bg * (1 - p) + fg * p);
      const o = y * (size * 4 + 1) + 1 + x * 4;
      raw[o] = mix(0x1f, 0xff);
      raw[o + 1] = mix(0x5f, 0xff);
      raw[o + 2] = mix(0xbf, 0xff);
      raw[o + 3] = Math.round(a * 255);
    }
  }
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(size, 0);
  ihdr.writeUInt32BE(size, 4);
  ihdr[8] = 8; ihdr[9] = 6; ihdr[10] = 0; ihdr[11] = 0; ihdr[12] = 0;
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk("IHDR", ihdr),
    chunk("IDAT", deflateSync(raw)),
    chunk("IEND", Buffer.alloc(0)),
  ]);
}

async function buildBrowser(browser) {
  const out = join(root, "dist", browser);
  rmSync(out, { recursive: true, force: true });
  mkdirSync(join(out, "icons"), { recursive: true });
  await build({
    entryPoints: {
      background: "src/background.ts",
      panel: "src/panel/panel.ts",
      share: "src/share/share.ts",
      prompt: "src/prompt/prompt.ts",
      provider: "src/provider/main.ts",
      relay: "src/provider/relay.ts",
    },
    absWorkingDir: root,
    bundle: true,
    format: "iife",
    target: browser === "chromium" ? "chrome116" : "firefox140",
    outdir: out,
    sourcemap: "linked",
    // The wasm-bindgen glue's default path uses import.meta.url, which an IIFE has not: the
    // panel always passes the .wasm's URL, so the default is never used.
    define: { BROWSER: JSON.stringify(browser), "import.meta.url": JSON.stringify("chrome-extension://invalid/") },
    logLevel: "warning",
  });
  for (const f of readdirSync(join(root, "static"))) copyFileSync(join(root, "static", f), join(out, f));
  copyFileSync(WASM, join(out, "allpeers_wasm_bg.wasm"));
  for (const s of ICON_SIZES) writeFileSync(join(out, "icons", `icon-${s}.png`), icon(s));
  writeFileSync(join(out, "manifest.json"), JSON.stringify(manifest(browser), null, 2) + "\n");
  console.log(`built dist/${browser}`);
}

await buildBrowser("chromium");
await buildBrowser("firefox");

if (withTests) {
  const out = join(root, "dist", "test");
  rmSync(out, { recursive: true, force: true });
  const entries = readdirSync(join(root, "test")).filter((f) => f.endsWith(".test.ts"));
  await build({
    entryPoints: entries.map((f) => join("test", f)),
    absWorkingDir: root,
    bundle: true,
    format: "esm",
    platform: "node",
    target: "node20",
    outdir: out,
    outExtension: { ".js": ".mjs" },
    external: ["node:*"],
    logLevel: "warning",
  });
  console.log("built dist/test");
}
