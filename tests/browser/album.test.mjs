// Albums in the Shared panel: a shared List of 1,000 Images (tiny generated PNG thumbnails,
// made through the API like any resource) drawn as a virtualised grid of thumbnails. Alice
// holds the album and shares it with Bob; each has a Chromium sidebar, one real hub. The
// grid keeps only the rows in view in the DOM, reads thumbnails as they come into view, and
// scrolls from the keyboard. Timed: panel opened → first paint of the grid, → the visible
// thumbnails drawn; a scroll through the whole grid (frame intervals); Bob's accept → his grid.
import assert from "node:assert/strict";
import { after, test } from "node:test";
import {
  apiCall,
  axeAudit,
  cleanupAll,
  installHost,
  launch,
  makeAlbum,
  makeSocialNode,
  openPanel,
  registerAtHub,
  screenshotBoth,
  startHub,
  until,
  waitConnected,
} from "./harness.mjs";

after(cleanupAll);

const PHOTOS = 1000;

/** The album grid's numbers: cells in the DOM, which positions, thumbnails drawn. */
function gridState(page, share) {
  return page.evaluate((share) => {
    const grid = document.querySelector(`li[data-share="${share}"] .album-grid`);
    if (!grid) return null;
    const cells = [...grid.querySelectorAll(".album-cell")];
    const box = grid.getBoundingClientRect();
    const visible = cells.filter((c) => {
      const r = c.getBoundingClientRect();
      return r.bottom > box.top && r.top < box.bottom;
    });
    return {
      count: Number(grid.dataset.count),
      cells: cells.length,
      positions: cells.map((c) => Number(c.getAttribute("aria-posinset"))),
      visible: visible.length,
      visibleReady: visible.filter((c) => c.dataset.state === "ready" && c.querySelector("img")?.complete && c.querySelector("img").naturalWidth > 0).length,
      scrollHeight: grid.scrollHeight,
      clientHeight: grid.clientHeight,
    };
  }, share);
}

test("an album of 1,000 photos: a virtualised grid, lazy thumbnails, keyboard, shared to a second sidebar", async () => {
  const hub = await startHub();
  const nodes = await Promise.all(
    ["alice", "bob"].map(async (name) => {
      const node = await makeSocialNode(hub);
      await installHost(node);
      const context = await launch(node.profile);
      const page = await openPanel(context, "shared");
      await waitConnected(page);
      node.name = await registerAtHub(node, name);
      return { ...node, context, page };
    }),
  );
  const [alice, bob] = nodes;
  await apiCall(alice, "contacts.add", { who: bob.name });
  await until("bob sees alice's request", async () =>
    (await apiCall(bob, "contacts.list")).some((c) => c.peer_id === alice.peerId && c.state === "incoming"),
  );
  await apiCall(bob, "contacts.accept", { peer: alice.peerId });

  const made = Date.now();
  const list = await makeAlbum(alice.page, "Holiday <b>2026</b>", PHOTOS);
  const share = await apiCall(alice, "shares.create", { resource: list, members: [{ peer: bob.peerId, level: "read" }] });
  console.log(`album: ${PHOTOS} Images made, listed and shared in ${Date.now() - made} ms`);

  // --- Alice opens her sidebar on Shared: the album's grid, timed from the page's start.
  const page = await openPanel(alice.context, "shared");
  const card = `#shares-mine li[data-share="${share.id}"]`;
  await page.waitForSelector(`${card}[data-album="true"] .album-grid[data-painted="true"]`);
  const s = await until("the visible thumbnails", async () => {
    const g = await gridState(page, share.id);
    return g && g.visible > 0 && g.visibleReady === g.visible ? g : null;
  });
  const times = await page.evaluate(() => ({
    grid: performance.getEntriesByName("allpeers-album-grid")[0]?.startTime,
    thumbs: performance.now(),
  }));
  console.log(
    `album: panel opened → grid painted ${times.grid.toFixed(0)} ms, → ${s.visible} visible thumbnails drawn ≤ ${times.thumbs.toFixed(0)} ms`,
  );
  assert.equal(s.count, PHOTOS);
  // Virtualised: a screenful and a few rows more, not a thousand cells.
  assert.ok(s.cells < 120, `${s.cells} cells in the DOM`);
  assert.ok(s.scrollHeight > s.clientHeight * 10, "the spacer is as tall as the whole grid");
  assert.equal(s.positions[0], 1);
  assert.equal(await page.textContent(`${card} .share-title`), "Holiday <b>2026</b>");
  // No add-a-link form on an album.
  assert.equal(await page.locator(`${card} form.share-add:visible`).count(), 0);
  await screenshotBoth(page, "shared-album");

  // --- The keyboard: Tab reaches the grid, End scrolls to the last photo (read then, lazily).
  await page.focus(`${card} .album-grid`);
  await page.keyboard.press("End");
  const end = await until("the last photos drawn", async () => {
    const g = await gridState(page, share.id);
    return g?.positions.includes(PHOTOS) && g.visibleReady === g.visible ? g : null;
  });
  assert.ok(end.cells < 120, `${end.cells} cells in the DOM at the end`);
  assert.equal(await page.getAttribute(`${card} .album-cell[aria-posinset="${PHOTOS}"] img`, "alt"), `photo-${PHOTOS}.png`);
  await page.keyboard.press("Home");
  await until("back at the top", async () => (await gridState(page, share.id))?.positions[0] === 1);
  await page.keyboard.press("PageDown");
  await until("a page further", async () => (await gridState(page, share.id))?.positions[0] > 1);

  // --- Smooth: scrolled through the whole grid one frame at a time (150 px a frame), the
  // intervals between frames (rAF) and the largest number of cells the DOM held.
  const scroll = await page.evaluate(async (share) => {
    const grid = document.querySelector(`li[data-share="${share}"] .album-grid`);
    grid.scrollTop = 0;
    const gaps = [];
    let most = 0;
    let last = await new Promise(requestAnimationFrame);
    while (grid.scrollTop + grid.clientHeight < grid.scrollHeight - 1) {
      grid.scrollTop += 150;
      const t = await new Promise(requestAnimationFrame);
      gaps.push(t - last);
      last = t;
      most = Math.max(most, grid.querySelectorAll(".album-cell").length);
    }
    gaps.sort((a, b) => a - b);
    return {
      frames: gaps.length,
      p50: gaps[Math.floor(gaps.length * 0.5)],
      p95: gaps[Math.floor(gaps.length * 0.95)],
      max: gaps[gaps.length - 1],
      most,
    };
  }, share.id);
  console.log(
    `album: scrolled through in ${scroll.frames} frames: frame interval p50 ${scroll.p50.toFixed(1)} ms, p95 ${scroll.p95.toFixed(1)} ms, max ${scroll.max.toFixed(1)} ms; at most ${scroll.most} cells in the DOM`,
  );
  assert.ok(scroll.most < 120, `${scroll.most} cells in the DOM while scrolling`);
  assert.deepEqual(page.errors, []);

  // --- Bob accepts in his sidebar: the 1,000 photos replicate in and his grid shows them.
  const b = bob.page;
  const offer = `#offers li[data-share="${share.id}"]`;
  await b.waitForSelector(`${offer} button[data-action="accept"]`);
  const accepted = Date.now();
  await b.click(`${offer} button[data-action="accept"]`);
  const theirs = `#shares-theirs li[data-share="${share.id}"]`;
  await b.waitForSelector(`${theirs}[data-album="true"] .album-grid[data-count="${PHOTOS}"]`, { timeout: 90_000 });
  await until(
    "bob's visible thumbnails",
    async () => {
      const g = await gridState(b, share.id);
      return g && g.visible > 0 && g.visibleReady === g.visible;
    },
    90_000,
  );
  console.log(`album: bob accepted → his grid of ${PHOTOS} with thumbnails in ${Date.now() - accepted} ms`);
  // Read-only for Bob: no add form, no remove buttons.
  assert.equal(await b.locator(`${theirs} form.share-add:visible, ${theirs} button[data-action="remove"]`).count(), 0);
  await axeAudit(b, "shared-album-theirs-light");
  assert.deepEqual(b.errors, []);
});
