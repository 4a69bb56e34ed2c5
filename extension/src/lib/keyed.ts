// Keyed updates of a list of elements: from the keys in the page to the keys wanted, which to take
// out and which to put where, touching as few elements as the order allows. The elements on the
// longest run already in the wanted order stay where they are (a moved element is taken out of the
// page and put back, which loses its hover, focus and a click in progress); the others are new or
// moved. Pure, so it is unit-tested without a DOM; album.ts applies it to the grid's cells.

/** What to do to turn `have` into `want`: remove these, then place these, in this order. */
export interface KeyedPlan<K> {
  /** Keys in `have` and not in `want`: their elements leave the page. */
  remove: K[];
  /**
   * Keys to put in place (new ones, and those whose order changed), from the last wanted to the first:
   * each goes right before `before` (null: at the end), which is already where it belongs when its turn comes.
   */
  place: { key: K; before: K | null }[];
}

/** Indices (into `seq`) of a longest strictly increasing subsequence of `seq` (O(n log n)). */
export function longestIncreasing(seq: readonly number[]): number[] {
  /** tails[k]: index in seq of the smallest tail of an increasing run of length k + 1. */
  const tails: number[] = [];
  const prev = new Array<number>(seq.length).fill(-1);
  for (let i = 0; i < seq.length; i++) {
    let lo = 0;
    let hi = tails.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (seq[tails[mid]] < seq[i]) lo = mid + 1;
      else hi = mid;
    }
    if (lo > 0) prev[i] = tails[lo - 1];
    tails[lo] = i;
  }
  const run: number[] = [];
  for (let i = tails.length ? tails[tails.length - 1] : -1; i >= 0; i = prev[i]) run.push(i);
  return run.reverse();
}

/** The plan from `have` to `want` (keys unique in each). Keys in both and in order stay untouched. */
export function keyedPlan<K>(have: readonly K[], want: readonly K[]): KeyedPlan<K> {
  const wanted = new Set(want);
  const remove = have.filter((k) => !wanted.has(k));
  const at = new Map<K, number>();
  have.filter((k) => wanted.has(k)).forEach((k, i) => at.set(k, i));
  // Wanted keys already in the page, by their place there: the longest increasing run stays.
  const present = want.filter((k) => at.has(k));
  const stay = new Set(longestIncreasing(present.map((k) => at.get(k)!)).map((i) => present[i]));
  const place: KeyedPlan<K>["place"] = [];
  let next: K | null = null;
  for (let i = want.length - 1; i >= 0; i--) {
    const key = want[i];
    if (!stay.has(key)) place.push({ key, before: next });
    next = key;
  }
  return { remove, place };
}
