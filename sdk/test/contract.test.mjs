// The SDK and its guide against the generated contract (src/api.gen.ts): every app method has
// its call, and docs/sdk.md lists every scope, topic and error code there is, and no other.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { test } from "node:test";
import { APP_METHOD_SCOPES, APP_TOPIC_SCOPES, AllPeers, ErrorCode, SCOPES } from "../dist/allpeers.js";
import { FakeProvider } from "./fake-provider.mjs";

const GUIDE = readFileSync(new URL("../../docs/sdk.md", import.meta.url), "utf8");

/** The rows of the first table at or after `heading` in the guide (cells, backticks removed). */
function firstCells(heading) {
  const lines = GUIDE.slice(GUIDE.indexOf(heading)).split("\n");
  const start = lines.findIndex((line) => line.startsWith("|"));
  const end = lines.findIndex((line, i) => i > start && !line.startsWith("|"));
  return lines
    .slice(start + 2, end) // past the header row and the separator
    .map((line) => line.split("|").slice(1, -1).map((cell) => cell.trim().replaceAll("`", "")));
}

test("every app method of the contract has its SDK call", async () => {
  const provider = new FakeProvider((method, params) => {
    if (method === "permissions.get") return { origin: "https://a.example", scopes: [], namespace: "app_x_" };
    if (method === "resources.subscribe") return { subscription: 1 };
    if (method === "resources.query") return { resources: [] };
    if (method === "events.subscribe" || method === "events.unsubscribe") return { topics: params.topics };
    return null;
  });
  const client = new AllPeers(provider, { uuid: "", name: "AllPeers", icon: "", rdns: "org.allpeers" });
  await client.permissions();
  await client.requestPermissions(["identity"]);
  await client.identity();
  await client.contacts();
  await client.sendMessage("apbob", "hi");
  await client.registerSchema("<grammar/>");
  await client.resources.create({ id: "", type: "app_x_T", properties: {} });
  await client.resources.get("r");
  await client.resources.update("r", { properties: {} });
  await client.resources.delete("r");
  await client.resources.query({ type: "app_x_T" });
  const subscription = await client.resources.subscribe({ id: "r" }, () => {});
  await subscription.unsubscribe();
  await client.share("r", ["apbob"]);
  await client.shares();
  await client.revokeShare("s", "apbob");
  const off = await client.on("presence.changed", () => {});
  await off();
  assert.deepEqual([...new Set(provider.methods())].sort(), Object.keys(APP_METHOD_SCOPES).sort());
});

test("docs/sdk.md's error table is the contract's app codes (and the SDK's NotInstalled)", () => {
  const rows = firstCells("The codes an app may see").map(([code, name]) => [name, code]);
  const documented = Object.fromEntries(rows.filter(([name]) => name !== "NotInstalled").map(([n, c]) => [n, Number(c)]));
  assert.deepEqual(documented, { ...ErrorCode });
  assert.ok(rows.some(([name]) => name === "NotInstalled"));
});

test("docs/sdk.md lists every scope and every app topic", () => {
  assert.deepEqual(firstCells("| scope | what the page gets |").map(([s]) => s).sort(), [...SCOPES].sort());
  const events = firstCells("| event | scope | data |").flatMap(([e]) => e.split(",").map((x) => x.trim()));
  for (const topic of Object.keys(APP_TOPIC_SCOPES)) assert.ok(events.includes(topic), `${topic} not in the events table`);
  for (const [topic, scope] of Object.entries(APP_TOPIC_SCOPES)) {
    const row = firstCells("| event | scope | data |").find(([e]) => e.split(",").map((x) => x.trim()).includes(topic));
    assert.equal(row[1], scope, `${topic}'s scope in the guide`);
  }
});
