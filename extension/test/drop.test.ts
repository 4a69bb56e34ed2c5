import assert from "node:assert/strict";
import { test } from "node:test";
import { chunkRanges, dropTitle, skipReason, toBase64 } from "../src/lib/drop";

test("dropped names the daemon would refuse are left out, hidden ones quietly", () => {
  assert.equal(skipReason("a.jpg", 10), null);
  assert.equal(skipReason("été (1).png", 10), null);
  assert.equal(skipReason(".DS_Store", 10), "hidden");
  assert.match(skipReason("a\u0007b", 1)!, /control/);
  assert.match(skipReason("x.part", 1)!, /partial/);
  assert.match(skipReason("big.iso", 5 * 1024 ** 3)!, /4 GiB/);
  assert.match(skipReason("x".repeat(256), 1)!, /too long/);
});

test("chunks cover the file in order, none for an empty file", () => {
  assert.deepEqual(chunkRanges(0), []);
  assert.deepEqual(chunkRanges(10, 4), [[0, 4], [4, 8], [8, 10]]);
  assert.deepEqual(chunkRanges(8, 4), [[0, 4], [4, 8]]);
});

test("a share's title says what was dropped", () => {
  assert.equal(dropTitle(["a.jpg"]), "a.jpg");
  assert.equal(dropTitle(["a.jpg", "b.jpg"]), "a.jpg and b.jpg");
  assert.equal(dropTitle(["a.jpg", "b", "c"]), "a.jpg and 2 more");
});

test("base64 matches node's", () => {
  const bytes = new Uint8Array(100_000).map((_, i) => (i * 7) & 255);
  assert.equal(toBase64(bytes), Buffer.from(bytes).toString("base64"));
});
