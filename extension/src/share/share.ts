// The share window: the page or link from the context menu, sent as a chat message with
// a link card to the contacts and groups the user picks. A 1:1 chat is opened with
// `chat.open {peer}` (the same conversation the sidebar shows).

import { contactName, safeHttpUrl } from "../lib/social";
import { Client, errorText } from "../panel/client";
import { byId, clear, h } from "../panel/dom";

const client = new Client();
const body = document.body;
const params = new URLSearchParams(location.search);
const url = params.get("url") ?? "";
const title = params.get("title") ?? "";
const href = safeHttpUrl(url);

const card = byId("shared-card");
card.append(
  h("div", { class: "link-card" }, h("span", { class: "link-title", text: title || url }), h("span", { class: "link-url", text: url })),
);
if (!href) {
  byId("share-refused").hidden = false;
  byId("share-form").hidden = true;
}

let loadedEpoch = -1;
client.onState((s) => {
  body.dataset.connection = s.status;
  byId("conn-text").textContent = s.status === "connected" ? "Connected" : s.status === "connecting" ? "Connecting…" : "Not connected";
  if (s.status === "connected" && s.epoch !== loadedEpoch) {
    loadedEpoch = s.epoch;
    void loadTargets();
  }
});

async function loadTargets() {
  const set = byId("targets");
  const err = byId("targets-error");
  try {
    const [contacts, chats] = await Promise.all([
      client.call("contacts.list"),
      client.call("chat.list"),
    ]);
    for (const el of [...set.querySelectorAll("label, p")]) el.remove();
    const groups = chats.filter((c) => c.group);
    const people = contacts.filter((c) => c.state === "accepted").sort((a, b) => contactName(a).localeCompare(contactName(b)));
    for (const g of groups) set.append(choice(`chat:${g.id}`, g.title || "Group", "group"));
    for (const c of people) set.append(choice(`peer:${c.peer_id}`, contactName(c), "contact"));
    if (!groups.length && !people.length) set.append(h("p", { class: "muted", text: "No contacts yet: add one in the sidebar's People." }));
    err.textContent = "";
    byId<HTMLButtonElement>("share-send").disabled = !href;
    body.dataset.targets = String(groups.length + people.length);
  } catch (e) {
    err.textContent = `Cannot list your contacts: ${errorText(e)}`;
  }
}

function choice(value: string, label: string, kind: string) {
  const box = h("input", { type: "checkbox", name: "target", value, "data-kind": kind });
  return h("label", {}, box, label, kind === "group" ? h("span", { class: "state-word", text: " (group)" }) : null);
}

byId("share-close").addEventListener("click", () => window.close());

byId<HTMLFormElement>("share-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  if (!href) return;
  const result = byId("share-result");
  const picked = [...byId("targets").querySelectorAll<HTMLInputElement>("input:checked")];
  if (!picked.length) {
    result.className = "error";
    result.textContent = "Pick at least one contact or group.";
    return;
  }
  const send = byId<HTMLButtonElement>("share-send");
  send.disabled = true;
  result.className = "muted";
  result.textContent = "Sending…";
  const comment = byId<HTMLTextAreaElement>("share-comment").value;
  const done: string[] = [];
  const failed: string[] = [];
  for (const box of picked) {
    const label = box.parentElement?.textContent ?? box.value;
    try {
      const chatId = box.value.startsWith("chat:")
        ? box.value.slice(5)
        : (await client.call("chat.open", { peer: box.value.slice(5) })).id;
      await client.call("chat.send", {
        chat: chatId,
        body: comment,
        link: title ? { url: href, title } : { url: href },
      });
      done.push(label);
      box.checked = false;
    } catch (e) {
      failed.push(`${label}: ${errorText(e)}`);
    }
  }
  clear(result);
  result.className = failed.length ? "error" : "muted";
  result.textContent = [
    done.length ? `Sent to ${done.join(", ")}.` : "",
    failed.length ? `Not sent to ${failed.join("; ")}.` : "",
  ]
    .filter(Boolean)
    .join(" ");
  body.dataset.shared = failed.length ? "partial" : "done";
  body.dataset.sharedCount = String(done.length);
  send.disabled = false;
});
