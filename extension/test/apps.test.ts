import assert from "node:assert/strict";
import { test } from "node:test";
import { PromptGate, parseScopes, senderOrigin } from "../src/lib/apps";

test("the sender's origin: https and loopback http, extensions; nothing else", () => {
  assert.equal(senderOrigin({ origin: "https://app.example", url: "https://evil.example/x" }), "https://app.example");
  assert.equal(senderOrigin({ url: "https://App.Example:8443/a/b?c#d" }), "https://app.example:8443");
  assert.equal(senderOrigin({ origin: "http://127.0.0.1:8080" }), "http://127.0.0.1:8080");
  assert.equal(senderOrigin({ origin: "http://localhost:3000" }), "http://localhost:3000");
  assert.equal(senderOrigin({ origin: "http://[::1]:3000" }), "http://[::1]:3000");
  assert.equal(senderOrigin({ origin: "chrome-extension://abcdefghijklmnopabcdefghijklmnop" }), "chrome-extension://abcdefghijklmnopabcdefghijklmnop");
  assert.equal(senderOrigin({ origin: "moz-extension://0a1b2c3d-0000-4000-8000-00000000abcd" }), "moz-extension://0a1b2c3d-0000-4000-8000-00000000abcd");
  for (const origin of ["null", "http://example.com", "file://", "data:text/html,x", "https://a.example/path", "https://a.example:443", "", "https://" + "a".repeat(200) + ".example"]) {
    assert.equal(senderOrigin({ origin }), null, origin);
  }
  assert.equal(senderOrigin({ url: "not a url" }), null);
  assert.equal(senderOrigin({}), null);
});

test("permissions.request's scopes: known, 1 to 16, deduplicated", () => {
  assert.deepEqual(parseScopes({ scopes: ["identity", "contacts:read", "identity"] }), ["identity", "contacts:read"]);
  for (const bad of [undefined, null, {}, { scopes: [] }, { scopes: "identity" }, { scopes: ["root"] }, { scopes: [1] }, { scopes: Array(17).fill("identity") }]) {
    const r = parseScopes(bad);
    assert.ok(!Array.isArray(r) && r.code === -32602, JSON.stringify(bad));
  }
  assert.match((parseScopes({ scopes: ["toString"] }) as { message: string }).message, /unknown scope "toString"/);
});

test("the prompt gate: one prompt per origin; a refusal cools the origin down", async () => {
  let now = 1_000;
  const asked: [string, string[]][] = [];
  const answers: ((allow: boolean) => void)[] = [];
  const gate = new PromptGate(
    (origin, scopes) => {
      asked.push([origin, scopes]);
      return new Promise((r) => answers.push(r));
    },
    60_000,
    () => now,
  );
  assert.equal(gate.pending("https://a.example"), undefined);
  const first = gate.prompt("https://a.example", ["identity"]);
  assert.equal(gate.pending("https://a.example"), first, "a second request waits for the same answer");
  assert.equal(gate.pending("https://b.example"), undefined, "another origin has its own");
  answers[0](false);
  assert.equal(await first, false);
  assert.equal(gate.pending("https://a.example"), undefined);
  assert.equal(gate.coolingDown("https://a.example"), 60);
  now += 59_001;
  assert.equal(gate.coolingDown("https://a.example"), 1);
  now += 1_000;
  assert.equal(gate.coolingDown("https://a.example"), 0);
  // Allowed: no cool-down. A failing prompt (no window) counts as a refusal.
  const second = gate.prompt("https://a.example", ["identity"]);
  answers[1](true);
  assert.equal(await second, true);
  assert.equal(gate.coolingDown("https://a.example"), 0);
  const broken = new PromptGate(() => Promise.reject(new Error("no window")), 60_000, () => now);
  assert.equal(await broken.prompt("https://c.example", ["identity"]), false);
  assert.equal(broken.coolingDown("https://c.example"), 60);
  broken.forgive("https://c.example");
  assert.equal(broken.coolingDown("https://c.example"), 0);
  assert.equal(asked.length, 2);
});
