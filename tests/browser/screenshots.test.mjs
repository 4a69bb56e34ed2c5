// Screenshots of the panel at sidebar width, light and dark, into screenshots/.
// Also checks the basics of accessibility that a screenshot cannot: keyboard navigation
// of the tabs and no inline script; and every screen photographed is audited with axe-core
// (light and dark): any serious or critical violation fails the test.
import assert from "node:assert/strict";
import { after, test } from "node:test";
import { cleanupAll, installHost, launch, makeNode, openPanel, screenshot, screenshotBoth, waitConnected } from "./harness.mjs";

after(cleanupAll);

const both = screenshotBoth;

test("panel screenshots: people, settings, empty state, locked, host missing", async () => {
  const node = await makeNode();
  await installHost(node);
  const context = await launch(node.profile);
  const page = await openPanel(context);
  await waitConnected(page);
  await page.waitForFunction((id) => document.getElementById("peer-id")?.textContent === id, node.peerId);
  await both(page, "people");

  // Keyboard: arrows move between tabs and show their panels.
  await page.focus("#tab-people");
  await page.keyboard.press("ArrowRight");
  await page.waitForSelector("#view-chat:visible");
  assert.equal(await page.evaluate(() => document.activeElement?.id), "tab-chat");
  await both(page, "chat");
  // Shared and Transfers with nothing in them yet (filled ones: sharing.test.mjs).
  await page.keyboard.press("ArrowRight");
  await page.waitForSelector("#shares-empty:visible");
  assert.equal(await page.evaluate(() => document.activeElement?.id), "tab-shared");
  await both(page, "shared-empty");
  await page.keyboard.press("ArrowRight");
  await page.waitForSelector("#transfers-empty:visible");
  await both(page, "transfers-empty");
  await page.keyboard.press("End");
  await page.waitForSelector("#view-settings:visible");
  await page.waitForSelector('#status-list dd[data-key="pid"]');
  await page.waitForSelector("body[data-log-filter]");
  await both(page, "settings");

  // At the narrowest sidebar (Firefox allows about 200 px) nothing overflows sideways.
  await page.emulateMedia({ colorScheme: "light" });
  await page.setViewportSize({ width: 200, height: 900 });
  for (const view of ["settings", "people", "shared", "transfers"]) {
    await page.click(`#tab-${view}`);
    await page.waitForSelector(`#view-${view}:visible`);
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - innerWidth);
    assert.ok(overflow <= 0, `${view} overflows by ${overflow} px at 200 px`);
    await screenshot(page, `narrow-${view}-light`);
  }
  await page.setViewportSize({ width: 360, height: 720 });

  // No inline script anywhere, and the CSP is in the manifest.
  assert.equal(await page.evaluate(() => [...document.scripts].filter((s) => !s.src).length), 0);
  const csp = await page.evaluate(() => chrome.runtime.getManifest().content_security_policy.extension_pages);
  assert.match(csp, /script-src 'self'/);
});

test("panel screenshots: locked identity", async () => {
  const node = await makeNode({ passphrase: "pw" });
  await installHost(node);
  const context = await launch(node.profile);
  const page = await openPanel(context);
  await waitConnected(page);
  await page.waitForSelector("#unlock-form:visible");
  await page.fill("#passphrase", "nope");
  await page.click("#unlock-button");
  await page.waitForSelector("#unlock-result:has-text('does not open')");
  await both(page, "locked");
});

test("panel screenshots: AllPeers not installed", async () => {
  const node = await makeNode();
  const context = await launch(node.profile);
  const page = await openPanel(context);
  await page.waitForSelector('body[data-problem="host-missing"]');
  await page.waitForSelector("#banner:visible");
  await both(page, "not-installed");
});
