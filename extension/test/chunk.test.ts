import assert from "node:assert/strict";
import { test } from "node:test";
import { ChunkError, MAX_PARTIAL_MESSAGES, Reassembler, parseChunkParams } from "../src/lib/chunk";

const CHUNK = 640 * 1024;

function split(bytes: Uint8Array, message: number) {
  const count = Math.ceil(bytes.length / CHUNK);
  return Array.from({ length: count }, (_, index) => ({
    message,
    index,
    count,
    total_len: bytes.length,
    data: Buffer.from(bytes.subarray(index * CHUNK, (index + 1) * CHUNK)).toString("base64"),
  }));
}

test("chunks reassemble in any order", () => {
  const big = new Uint8Array(3 * 1024 * 1024 + 17).map((_, i) => i % 251);
  const chunks = split(big, 5).reverse();
  const r = new Reassembler();
  let out: Uint8Array | null = null;
  for (const c of chunks) out = r.add(parseChunkParams(c)) ?? out;
  assert.deepEqual(out, big);
  assert.equal(r.inFlight, 0);
});

test("a repeated chunk does not complete a message early", () => {
  const data = new Uint8Array(CHUNK + 10).fill(7);
  const [a, b] = split(data, 1);
  const r = new Reassembler();
  assert.equal(r.add(a), null);
  assert.equal(r.add(a), null);
  assert.deepEqual(r.add(b), data);
});

test("hostile chunks are refused", () => {
  const r = new Reassembler();
  const c = (message: number, index: number, count: number, total_len: number, data = "") => ({
    message,
    index,
    count,
    total_len,
    data,
  });
  assert.throws(() => r.add(c(1, 3, 2, 10)), ChunkError);
  assert.throws(() => r.add(c(1, 0, 0, 10)), ChunkError);
  assert.throws(() => r.add(c(1, 0, 2, 2 ** 40)), /over the limit/);
  assert.throws(() => r.add(c(1, 0, 2, 10, "!!!")), /not base64/);
  for (let m = 0; m < MAX_PARTIAL_MESSAGES; m++) assert.equal(r.add(c(m, 0, 2, 10)), null);
  assert.throws(() => r.add(c(99, 0, 2, 10)), /too many/);
  assert.throws(() => r.add(c(0, 1, 3, 10)), /does not agree/);
  // More bytes than announced.
  const r2 = new Reassembler();
  assert.throws(() => r2.add(c(1, 0, 2, 3, Buffer.from("abcdef").toString("base64"))), /does not agree/);
  assert.throws(() => parseChunkParams({ message: -1, index: 0, count: 1, total_len: 1, data: "" }), ChunkError);
  assert.throws(() => parseChunkParams(null), ChunkError);
});
