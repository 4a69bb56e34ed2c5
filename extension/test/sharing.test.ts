import assert from "node:assert/strict";
import { test } from "node:test";
import type { Transfer } from "../src/lib/api.gen";
import { formatBytes, formatEta, percentDone, transferTotals, visibleText } from "../src/lib/sharing";

test("bytes, rates and ETA read well", () => {
  assert.equal(formatBytes(0), "0 B");
  assert.equal(formatBytes(1023), "1023 B");
  assert.equal(formatBytes(1536), "1.5 KiB");
  assert.equal(formatBytes(512 * 1024), "512 KiB");
  assert.equal(formatBytes(3 * 1024 ** 3), "3.0 GiB");
  assert.equal(formatBytes(-1), "—");
  assert.equal(formatEta(null), "—");
  assert.equal(formatEta(45), "45 s");
  assert.equal(formatEta(185), "3 min 5 s");
  assert.equal(formatEta(7800), "2 h 10 min");
});

test("percent is 100 only when every byte is there", () => {
  assert.equal(percentDone({ total_bytes: 0, done_bytes: 0 }), 0);
  assert.equal(percentDone({ total_bytes: 1000, done_bytes: 999 }), 99);
  assert.equal(percentDone({ total_bytes: 1000, done_bytes: 1000 }), 100);
  assert.equal(percentDone({ total_bytes: 1000, done_bytes: 280 }), 28);
});

function transfer(id: number, state: Transfer["state"], done: number, down = 0, up = 0): Transfer {
  return {
    id, name: `t${id}`, info_hash: "00", dir: "/d", state, reason: null, priority: 0, seed_in_place: false,
    limits: { down: null, up: null },
    progress: { total_bytes: 100, done_bytes: done, downloaded: done, uploaded: 0, down_rate: down, up_rate: up, peers: 1, eta_secs: null },
  };
}

test("totals count what runs, what seeds, and the rates", () => {
  const t = transferTotals([
    transfer(1, "downloading", 40, 10, 1),
    transfer(2, "queued", 0),
    transfer(3, "seeding", 100, 0, 5),
    transfer(4, "paused", 10),
    transfer(5, "failed", 0),
  ]);
  assert.deepEqual(t, { count: 5, running: 2, seeding: 1, paused: 1, failed: 1, downRate: 10, upRate: 6, remaining: 160 });
});

test("bidi controls in names are shown, not obeyed", () => {
  assert.equal(visibleText("abc\u202Etxt.exe"), "abc[U+202E]txt.exe");
  assert.equal(visibleText("\u2066x\u2069 \u200F"), "[U+2066]x[U+2069] [U+200F]");
  assert.equal(visibleText("<b>plain</b> é 日本"), "<b>plain</b> é 日本");
});
