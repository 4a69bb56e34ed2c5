// Identity in the People panel: a sealed identity unlocks from the panel; two profiles
// with two data dirs are two different peers.
import assert from "node:assert/strict";
import { after, test } from "node:test";
import { allpeers, cleanupAll, installHost, launch, makeNode, openPanel, waitConnected } from "./harness.mjs";

after(cleanupAll);

test("a locked identity unlocks from the panel", async () => {
  const node = await makeNode({ passphrase: "correct horse battery staple" });
  await installHost(node);
  // The browser (and so the daemon it starts) runs without ALLPEERS_PASSPHRASE.
  const context = await launch(node.profile);
  const page = await openPanel(context);
  await waitConnected(page);
  await page.waitForSelector('body[data-identity="locked"]');
  assert.equal(await page.textContent("#peer-id"), node.peerId);
  assert.equal(await page.textContent("#identity-state"), "Locked");
  await page.waitForSelector("#unlock-form:visible");
  assert.equal(await page.textContent("#cert-sha"), "available after unlocking");

  // A wrong passphrase is refused plainly and stays in the box to be fixed.
  await page.fill("#passphrase", "wrong horse");
  await page.press("#passphrase", "Enter");
  await page.waitForSelector("#unlock-result:has-text('does not open your identity')");
  assert.equal(await page.inputValue("#passphrase"), "wrong horse");
  assert.equal(await page.evaluate(() => document.body.dataset.identity), "locked");

  // The right one unlocks it, in the panel and in the daemon.
  await page.fill("#passphrase", "correct horse battery staple");
  await page.click("#unlock-button");
  await page.waitForSelector('body[data-identity="unlocked"]');
  assert.equal(await page.textContent("#identity-state"), "Unlocked");
  await page.waitForSelector("#unlock-form", { state: "hidden" });
  assert.equal(await page.inputValue("#passphrase"), "", "the passphrase is not kept");
  const id = JSON.parse(await allpeers(node.dataDir, ["call", "identity.get", "{}"]));
  assert.equal(id.locked, false);
  assert.equal(id.sealed, true);
  assert.equal(await page.textContent("#cert-sha"), id.certificate_sha256);
  assert.deepEqual(page.errors, []);
});

test("an unlock from elsewhere reaches an open panel as an event", async () => {
  const node = await makeNode({ passphrase: "s3cret" });
  await installHost(node);
  const context = await launch(node.profile);
  const page = await openPanel(context);
  await waitConnected(page);
  await page.waitForSelector('body[data-identity="locked"]');
  await allpeers(node.dataDir, ["identity", "unlock"], { env: { ALLPEERS_PASSPHRASE: "s3cret" } });
  await page.waitForSelector('body[data-identity="unlocked"]');
  await page.waitForSelector("#unlock-form", { state: "hidden" });
});

test("two profiles with two data dirs show two different PeerIds", async () => {
  const alice = await makeNode();
  const bob = await makeNode();
  assert.notEqual(alice.peerId, bob.peerId);
  await installHost(alice);
  await installHost(bob);
  const [ca, cb] = await Promise.all([launch(alice.profile), launch(bob.profile)]);
  const [pa, pb] = await Promise.all([openPanel(ca), openPanel(cb)]);
  await Promise.all([waitConnected(pa), waitConnected(pb)]);
  for (const [page, node] of [
    [pa, alice],
    [pb, bob],
  ]) {
    await page.waitForFunction((id) => document.getElementById("peer-id")?.textContent === id, node.peerId);
  }
  assert.notEqual(await pa.textContent("#peer-id"), await pb.textContent("#peer-id"));
});
