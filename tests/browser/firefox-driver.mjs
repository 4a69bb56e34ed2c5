// Firefox ESR driven by geckodriver through selenium-webdriver (RECIPES.md): the one set-up every driven Firefox
// test shares. geckodriver is built with cargo; without it on PATH (GECKODRIVER_BIN to point at one) the tests
// using it are skipped, loudly.
import { existsSync, mkdirSync } from "node:fs";
import { join, resolve } from "node:path";
import { HERE, allpeers, onCleanup } from "./harness.mjs";

export const FIREFOX = process.env.FIREFOX_BIN ?? "/usr/bin/firefox-esr";
/** The extension's moz-extension:// host, fixed through a preference so the tests can open its pages. */
export const FIREFOX_UUID = "5c3a1f0e-7d2b-4b8e-9a61-3f4e2d1c0b9a";
const EXT = resolve(HERE, "../../extension");

function findGeckodriver() {
  if (process.env.GECKODRIVER_BIN) return process.env.GECKODRIVER_BIN;
  for (const dir of (process.env.PATH ?? "").split(":").concat([join(process.env.HOME ?? "", ".cargo/bin")])) {
    if (dir && existsSync(join(dir, "geckodriver"))) return join(dir, "geckodriver");
  }
  return null;
}
export const GECKODRIVER = findGeckodriver();

/**
 * Registers the native host for `node` in a HOME of its own, starts headless Firefox there (no passphrase, no
 * display in its environment) with the extension installed, and quits it at cleanup. `downloads`: a folder that
 * downloads are saved to without asking.
 */
export async function launchFirefox(node, { width, height, downloads }) {
  const { Builder } = await import("selenium-webdriver");
  const firefox = await import("selenium-webdriver/firefox.js");
  const home = join(node.root, "home");
  mkdirSync(home);
  await allpeers(node.dataDir, ["install", "--browser", "firefox"], { env: { HOME: home } });
  const env = { ...process.env, HOME: home, MOZ_HEADLESS: "1" };
  delete env.ALLPEERS_PASSPHRASE;
  delete env.DISPLAY;
  const service = new firefox.ServiceBuilder(GECKODRIVER).addArguments("--allow-system-access").setEnvironment(env);
  const options = new firefox.Options()
    .setBinary(FIREFOX)
    .addArguments("-headless")
    .setPreference("extensions.webextensions.uuids", JSON.stringify({ "allpeers@allpeers.net": FIREFOX_UUID }))
    .windowSize({ width, height });
  if (downloads) {
    options
      .setPreference("browser.download.folderList", 2)
      .setPreference("browser.download.dir", downloads)
      .setPreference("browser.download.useDownloadDir", true)
      .setPreference("browser.download.always_ask_before_handling_new_types", false)
      .setPreference("browser.download.start_downloads_in_tmp_dir", false)
      .setPreference("browser.helperApps.neverAsk.saveToDisk", "application/json");
  }
  const driver = await new Builder().forBrowser("firefox").setFirefoxOptions(options).setFirefoxService(service).build();
  onCleanup(() => driver.quit());
  await driver.installAddon(join(EXT, "dist/firefox"), true);
  return { driver, home };
}
