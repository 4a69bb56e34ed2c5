import assert from "node:assert/strict";
import { test } from "node:test";
import { keyedPlan, longestIncreasing } from "../src/lib/keyed";

/** Applies a plan the way the grid does to its cells (insertBefore semantics: a placed key leaves its old place). */
function apply<K>(have: K[], want: K[]) {
  const plan = keyedPlan(have, want);
  const out = have.filter((k) => !plan.remove.includes(k));
  for (const { key, before } of plan.place) {
    const old = out.indexOf(key);
    if (old >= 0) out.splice(old, 1);
    if (before === null) out.push(key);
    else {
      const at = out.indexOf(before);
      assert.ok(at >= 0, `placed before ${String(before)}, which is not in the page`);
      out.splice(at, 0, key);
    }
  }
  return { out, plan };
}

test("the longest increasing run", () => {
  assert.deepEqual(longestIncreasing([]), []);
  assert.deepEqual(longestIncreasing([3, 1, 2]), [1, 2]);
  assert.deepEqual(longestIncreasing([0, 1, 2, 3]), [0, 1, 2, 3]);
  assert.equal(longestIncreasing([5, 4, 3, 2, 1]).length, 1);
  assert.deepEqual(longestIncreasing([2, 0, 3, 1, 4]).length, 3);
});

test("nothing changed: nothing touched", () => {
  const { out, plan } = apply(["a", "b", "c"], ["a", "b", "c"]);
  assert.deepEqual(out, ["a", "b", "c"]);
  assert.deepEqual(plan, { remove: [], place: [] });
});

test("new cells added, gone ones removed, the rest untouched", () => {
  const { out, plan } = apply(["a", "b", "c", "d"], ["b", "c", "x", "d", "y"]);
  assert.deepEqual(out, ["b", "c", "x", "d", "y"]);
  assert.deepEqual(plan.remove, ["a"]);
  assert.deepEqual(plan.place.map((p) => p.key).sort(), ["x", "y"]);
});

test("one photo moved: only that cell is placed", () => {
  const have = Array.from({ length: 30 }, (_, i) => `p${i}`);
  const want = [...have];
  want.splice(3, 0, ...want.splice(20, 1)); // p20 moved to the 4th place
  const { out, plan } = apply(have, want);
  assert.deepEqual(out, want);
  assert.deepEqual(plan.place, [{ key: "p20", before: "p3" }]);
  // Moved to the end.
  const last = [...have.slice(1), have[0]];
  assert.deepEqual(apply(have, last).plan.place, [{ key: "p0", before: null }]);
});

test("a scroll: the window slides, the overlap stays put", () => {
  const have = Array.from({ length: 24 }, (_, i) => i);
  const want = Array.from({ length: 24 }, (_, i) => i + 8);
  const { out, plan } = apply(have, want);
  assert.deepEqual(out, want);
  assert.equal(plan.remove.length, 8);
  assert.equal(plan.place.length, 8);
});

test("any change of a random order ends in the wanted order, with the fewest placements", () => {
  let seed = 7;
  const rand = (n: number) => {
    seed = (seed * 1103515245 + 12345) % 2 ** 31;
    return seed % n;
  };
  for (let round = 0; round < 500; round++) {
    const have = Array.from({ length: rand(20) }, (_, i) => i);
    for (let i = have.length - 1; i > 0; i--) {
      const j = rand(i + 1);
      [have[i], have[j]] = [have[j], have[i]];
    }
    const want = have.filter(() => rand(4) > 0).concat(Array.from({ length: rand(4) }, (_, i) => 100 + i));
    for (let i = want.length - 1; i > 0; i--) {
      if (rand(3) > 0) continue;
      const j = rand(i + 1);
      [want[i], want[j]] = [want[j], want[i]];
    }
    const { out, plan } = apply(have, want);
    assert.deepEqual(out, want, `from ${have} to ${want}`);
    const kept = want.filter((k) => have.includes(k)).map((k) => have.filter((h) => want.includes(h)).indexOf(k));
    assert.equal(plan.place.length, want.length - longestIncreasing(kept).length);
  }
});
