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
    id, kind: "torrent", name: `t${id}`, info_hash: "00", dir: "/d", state, reason: null, priority: 0, seed_in_place: false,
    limits: { down: null, up: null },
    progress: { total_bytes: 100, done_bytes: done, downloaded: done, uploaded: 0, down_rate: down, up_rate: up, peers: 1, eta_secs: null,
      peer_sources: { given: 1, tracker: 0, dht: 0, pex: 0 } },
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

test("rates typed by a person: units, empty is no limit, bad input explained", async () => {
  const { parseRate, formatLimit, limitWords } = await import("../src/lib/sharing");
  const ok = (s: string) => {
    const r = parseRate(s);
    assert.ok(r.ok, `${s}: ${!r.ok ? r.reason : ""}`);
    return r.value;
  };
  assert.equal(ok(""), null);
  assert.equal(ok("  "), null);
  assert.equal(ok("No limit"), null);
  assert.equal(ok("2 MiB/s"), 2 * 1024 * 1024);
  assert.equal(ok("2MiB"), 2 * 1024 * 1024);
  assert.equal(ok("500 KiB/s"), 500 * 1024);
  assert.equal(ok("1.5 MB/s"), 1_500_000);
  assert.equal(ok("1,5 mb/s"), 1_500_000);
  assert.equal(ok("800 kB"), 800_000);
  assert.equal(ok("1 GiB/s"), 1024 ** 3);
  assert.equal(ok("128 K"), 128 * 1024);
  assert.equal(ok("4096 B/s"), 4096);
  for (const bad of ["2", "2 furlongs", "-1 MiB/s", "0 KiB/s", "100 B/s", "2 TiB/s", "fast", "1e9 B/s", "2 MiB/s/s"]) {
    const r = parseRate(bad);
    assert.equal(r.ok, false, bad);
  }
  const bare = parseRate("2");
  assert.ok(!bare.ok && /unit/.test(bare.reason));
  assert.equal(formatLimit(null), "");
  assert.equal(formatLimit(2 * 1024 * 1024), "2 MiB/s");
  assert.equal(formatLimit(128 * 1024), "128 KiB/s");
  assert.equal(formatLimit(1_500_000), "1500 kB/s");
  assert.equal(formatLimit(1500), "1.46 KiB/s");
  assert.equal(limitWords(null), "no limit");
  for (const v of [1024, 2 * 1024 * 1024, 1_500_000, 1500, 1024 ** 3, 123_457]) {
    const back = parseRate(formatLimit(v));
    assert.ok(back.ok && Math.abs((back.value ?? 0) - v) <= 5, `${v} → ${formatLimit(v)}`);
  }
});

test("download links: magnet, http(s) and the rest; .torrent paths", async () => {
  const { downloadLinkKind, looksLikeTorrent } = await import("../src/lib/sharing");
  assert.equal(downloadLinkKind("magnet:?xt=urn:btih:abc"), "magnet");
  assert.equal(downloadLinkKind(" MAGNET:?xt=1"), "magnet");
  assert.equal(downloadLinkKind("https://x.example/a.torrent"), "http");
  assert.equal(downloadLinkKind("http://127.0.0.1:8/a.torrent?x=1"), "http");
  for (const bad of ["file:///etc/passwd", "javascript:alert(1)", "data:,x", "ftp://x/a.torrent", "not a url"]) {
    assert.equal(downloadLinkKind(bad), "refused", bad);
  }
  assert.ok(looksLikeTorrent("https://x.example/dir/A.Torrent"));
  assert.ok(looksLikeTorrent("https://x.example/a.torrent?key=1#f"));
  assert.ok(!looksLikeTorrent("https://x.example/a.torrent.html"));
});

test("a fetched body is bounded: by its Content-Length, and while it streams", async () => {
  const { readBounded, toBase64, TooLarge } = await import("../src/lib/sharing");
  const small = await readBounded(new Response(new Uint8Array([1, 2, 3])), 10);
  assert.deepEqual([...small], [1, 2, 3]);
  await assert.rejects(
    readBounded(new Response("x".repeat(20), { headers: { "content-length": "20" } }), 10),
    (e) => e instanceof TooLarge && /more than 10 B/.test((e as Error).message),
  );
  // No Content-Length: counted while reading, cancelled past the bound.
  let pulled = 0;
  const endless = new ReadableStream<Uint8Array>({
    pull(c) {
      pulled++;
      c.enqueue(new Uint8Array(4));
    },
  });
  await assert.rejects(readBounded(new Response(endless), 10), TooLarge);
  assert.ok(pulled < 10, `stopped early (${pulled} chunks)`);
  const bytes = new Uint8Array(100_000).map((_, i) => i % 251);
  assert.equal(toBase64(bytes), Buffer.from(bytes).toString("base64"));
});
