import assert from "node:assert/strict";
import { test } from "node:test";
import { Message, applyReceipt, deliveryStatus, safeHttpUrl, throttle } from "../src/lib/social";

test("only http and https URLs are clickable", () => {
  assert.equal(safeHttpUrl("https://example.org/a?b#c"), "https://example.org/a?b#c");
  assert.equal(safeHttpUrl("http://example.org"), "http://example.org/");
  for (const bad of [
    "javascript:alert(1)",
    " JavaScript:alert(1)",
    "java\tscript:alert(1)",
    "data:text/html,<b>x</b>",
    "file:///etc/passwd",
    "chrome://settings",
    "vbscript:x",
    "//example.org",
    "not a url",
    "",
    null,
    42,
  ]) {
    assert.equal(safeHttpUrl(bad), null, String(bad));
  }
});

function msg(): Message {
  return {
    id: "m", chat: "c", sender: "me", outgoing: true, body: "x", sent: 0, hlc: "h",
    edited: false, deleted: false, read: false, pending: ["a", "b"], receipts: [], link: null,
  };
}

test("delivery status follows receipts", () => {
  const m = msg();
  assert.equal(deliveryStatus(m, 2), "sending");
  applyReceipt(m, "a", "delivered");
  assert.equal(deliveryStatus(m, 2), "sending");
  m.pending = [];
  assert.equal(deliveryStatus(m, 2), "sent");
  applyReceipt(m, "b", "delivered");
  assert.equal(deliveryStatus(m, 2), "delivered");
  applyReceipt(m, "a", "read");
  assert.equal(deliveryStatus(m, 2), "delivered");
  assert.equal(applyReceipt(m, "b", "read"), true);
  assert.equal(deliveryStatus(m, 2), "read");
  assert.equal(applyReceipt(m, "b", "read"), false);
});

test("a message queued at the hub is sent, not delivered", () => {
  const m = msg();
  assert.equal(applyReceipt(m, "a", "queued"), true);
  assert.deepEqual(m.pending, ["b"]);
  assert.equal(m.receipts.length, 0);
  assert.equal(applyReceipt(m, "b", "queued"), true);
  assert.equal(deliveryStatus(m, 2), "sent");
  assert.equal(applyReceipt(m, "b", "something-new"), false);
  applyReceipt(m, "a", "delivered");
  applyReceipt(m, "b", "delivered");
  assert.equal(deliveryStatus(m, 2), "delivered");
});

test("throttle lets one call through per interval", () => {
  let t = 0;
  let n = 0;
  const f = throttle(3000, () => n++, () => t);
  assert.equal(f(), true);
  t = 1000;
  assert.equal(f(), false);
  t = 3000;
  assert.equal(f(), true);
  assert.equal(n, 2);
});

test("the share menu shares the link it was opened on, else the page", async () => {
  const { sharedLink } = await import("../src/background/share");
  assert.deepEqual(
    sharedLink({ linkUrl: "https://a.example/x", linkText: " A link ", pageUrl: "https://page.example/" }, { title: "Page" }),
    { url: "https://a.example/x", title: "A link" },
  );
  assert.deepEqual(sharedLink({ pageUrl: "https://page.example/" }, { title: " The page " }), {
    url: "https://page.example/",
    title: "The page",
  });
  assert.deepEqual(sharedLink({}, { url: "https://tab.example/", title: "" }), { url: "https://tab.example/", title: "" });
});
