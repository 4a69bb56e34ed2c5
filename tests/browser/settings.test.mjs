// Settings → Bandwidth: the global download/upload limits (net.limits.get/set) typed with
// units in the panel, checked before sending, kept by the daemon (what net.limits.get says
// from the CLI), shown again after the panel is reloaded; a bad value refused with its reason
// and kept in its box. The per-transfer limits are driven in sharing.test.mjs (a real download).
import assert from "node:assert/strict";
import { after, test } from "node:test";
import { apiCall, axeAudit, cleanupAll, installHost, launch, makeNode, openPanel, screenshot, waitConnected } from "./harness.mjs";

after(cleanupAll);

const MiB = 1024 * 1024;

test("settings: bandwidth limits set in the panel are the daemon's, kept after a reload", async () => {
  const node = await makeNode();
  await installHost(node);
  const context = await launch(node.profile);
  let page = await openPanel(context, "settings");
  await waitConnected(page);
  await page.waitForSelector('body[data-limit-down=""][data-limit-up=""]');
  assert.equal(await page.inputValue("#limit-down"), "");

  // A bare number and a nonsense unit: refused in the panel, reasons under the boxes, kept typed.
  await page.fill("#limit-down", "2");
  await page.fill("#limit-up", "3 furlongs");
  await page.click("#limits-apply");
  await page.waitForSelector("#limit-down-error:has-text('unit')");
  await page.waitForSelector("#limit-up-error:has-text('Unknown unit')");
  assert.equal(await page.getAttribute("#limit-down", "aria-invalid"), "true");
  assert.equal(await page.evaluate(() => document.activeElement?.id), "limit-down");
  assert.equal(await page.inputValue("#limit-up"), "3 furlongs");
  await axeAudit(page, "settings with refused limits");
  await screenshot(page, "settings-limits-refused-light");
  assert.deepEqual(await apiCall(node, "net.limits.get"), { down: null, up: null });

  // Fixed from the keyboard: 2 MiB/s down, 500 KiB/s up, Enter.
  await page.fill("#limit-down", "2 MiB/s");
  await page.fill("#limit-up", "500 KiB/s");
  await page.press("#limit-up", "Enter");
  await page.waitForSelector(`body[data-limit-down="${2 * MiB}"][data-limit-up="${500 * 1024}"]`);
  await page.waitForSelector("#limits-result:has-text('Download: 2 MiB/s; upload: 500 KiB/s.')");
  assert.equal(await page.locator("#limits-form [aria-invalid]").count(), 0);
  assert.deepEqual(await apiCall(node, "net.limits.get"), { down: 2 * MiB, up: 500 * 1024 });
  await screenshot(page, "settings-limits-light");

  // The panel reloaded: the daemon's values are shown again, in units.
  await page.reload();
  await waitConnected(page);
  await page.waitForSelector(`body[data-limit-down="${2 * MiB}"]`);
  assert.equal(await page.inputValue("#limit-down"), "2 MiB/s");
  assert.equal(await page.inputValue("#limit-up"), "500 KiB/s");

  // Set from the CLI (decimal units): a new panel shows it as such; emptied boxes lift both.
  await apiCall(node, "net.limits.set", { down: 1_000_000, up: null });
  await page.close();
  page = await openPanel(context, "settings");
  await waitConnected(page);
  await page.waitForSelector(`body[data-limit-down="1000000"][data-limit-up=""]`);
  assert.equal(await page.inputValue("#limit-down"), "1 MB/s");
  await page.fill("#limit-down", "");
  await page.click("#limits-apply");
  await page.waitForSelector('body[data-limit-down=""][data-limit-up=""]');
  await page.waitForSelector("#limits-result:has-text('Download: no limit; upload: no limit.')");
  assert.deepEqual(await apiCall(node, "net.limits.get"), { down: null, up: null });
  assert.deepEqual(page.errors, []);
});
