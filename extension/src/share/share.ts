// The share window (a small popup window the context menu opens): the page, link or
// selected text, sent
// - into shared lists the user may write (accepted shares whose root is a List, level
//   write or admin): a Link resource (`resources.create`) inserted into each (`lists.insert`),
//   the selection (or else the message) as its description, as the Shared panel adds links;
// - to contacts and groups: a chat message with a link card; a 1:1 chat is opened with
//   `chat.open {peer}` (the same conversation the sidebar shows); a selection is quoted in
//   the message's text.

import type { Resource, Share } from "../lib/api.gen";
import { canWrite, visibleText } from "../lib/sharing";
import { contactName, safeHttpUrl } from "../lib/social";
import { Client, errorText } from "../panel/client";
import { byId, clear, h } from "../panel/dom";

const client = new Client();
const body = document.body;
const params = new URLSearchParams(location.search);
const url = params.get("url") ?? "";
const title = params.get("title") ?? "";
const kind = params.get("kind") ?? "link";
const selection = (params.get("selection") ?? "").trim();
const href = safeHttpUrl(url);
body.dataset.kind = kind;

const HEADINGS: Record<string, string> = {
  page: "Share this page",
  link: "Share this link",
  selection: "Share this selection",
};
byId("share-heading").textContent = HEADINGS[kind] ?? "Share with…";
document.title = `${HEADINGS[kind] ?? "Share"} — AllPeers`;

const card = byId("shared-card");
card.append(
  h(
    "div",
    { class: "link-card" },
    selection ? h("span", { class: "link-desc shared-selection", text: `“${visibleText(selection)}”` }) : null,
    h("span", { class: "link-title", text: visibleText(title || url) }),
    h("span", { class: "link-url", text: url }),
  ),
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

/** Accepted shares we may write whose root is a List (the only kind a link goes into). */
async function writableLists(): Promise<{ share: Share; list: Resource }[]> {
  const shares = (await client.call("shares.list")).filter((s) => canWrite(s));
  const roots = await Promise.all(
    shares.map((s) => client.call("resources.get", { id: s.resource }).catch(() => null)),
  );
  return shares
    .map((share, i) => ({ share, list: roots[i] as Resource | null }))
    .filter((x): x is { share: Share; list: Resource } => x.list?.type === "List")
    .sort((a, b) => a.share.title.localeCompare(b.share.title));
}

async function loadTargets() {
  const set = byId("targets");
  const lists = byId("list-targets");
  const err = byId("targets-error");
  try {
    const [contacts, chats, shared] = await Promise.all([
      client.call("contacts.list"),
      client.call("chat.list"),
      writableLists(),
    ]);
    for (const el of [...set.querySelectorAll("label, p"), ...lists.querySelectorAll("label, p")]) el.remove();
    const groups = chats.filter((c) => c.group);
    const people = contacts.filter((c) => c.state === "accepted").sort((a, b) => contactName(a).localeCompare(contactName(b)));
    for (const { share, list } of shared) {
      lists.append(choice(`list:${list.id}`, visibleText(share.title || "Untitled list"), "list", share.id));
    }
    if (!shared.length) lists.append(h("p", { class: "muted", text: "No shared list you can edit. Make one in the sidebar's Shared." }));
    for (const g of groups) set.append(choice(`chat:${g.id}`, visibleText(g.title || "Group"), "group"));
    for (const c of people) set.append(choice(`peer:${c.peer_id}`, visibleText(contactName(c)), "contact"));
    if (!groups.length && !people.length) set.append(h("p", { class: "muted", text: "No contacts yet: add one in the sidebar's People." }));
    err.textContent = "";
    byId<HTMLButtonElement>("share-send").disabled = !href;
    body.dataset.targets = String(groups.length + people.length);
    body.dataset.lists = String(shared.length);
  } catch (e) {
    err.textContent = `Cannot list where to share: ${errorText(e)}`;
  }
}

function choice(value: string, label: string, kind: string, share?: string) {
  const box = h("input", { type: "checkbox", name: "target", value, "data-kind": kind, "data-share": share });
  return h("label", {}, box, label, kind === "group" ? h("span", { class: "state-word", text: " (group)" }) : null);
}

byId("share-close").addEventListener("click", () => window.close());

/** The chat message's text: the selection quoted, then the user's message. */
function messageBody(comment: string): string {
  const quote = selection ? `“${selection}”` : "";
  return [quote, comment.trim()].filter(Boolean).join("\n\n");
}

byId<HTMLFormElement>("share-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  if (!href) return;
  const result = byId("share-result");
  const picked = [...document.querySelectorAll<HTMLInputElement>("#share-form input[name=target]:checked")];
  if (!picked.length) {
    result.className = "error";
    result.textContent = "Pick at least one list, contact or group.";
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
      if (box.value.startsWith("list:")) {
        const properties: Record<string, string> = { url: href };
        if (title) properties.title = title;
        const description = selection || comment.trim();
        if (description) properties.description = description;
        const link = await client.call("resources.create", { resource: { id: "", type: "Link", properties } });
        await client.call("lists.insert", { list: box.value.slice(5), item: link.id });
      } else {
        const chatId = box.value.startsWith("chat:")
          ? box.value.slice(5)
          : (await client.call("chat.open", { peer: box.value.slice(5) })).id;
        await client.call("chat.send", {
          chat: chatId,
          body: messageBody(comment),
          link: title ? { url: href, title } : { url: href },
        });
      }
      done.push(label);
      box.checked = false;
    } catch (e) {
      failed.push(`${label}: ${errorText(e)}`);
    }
  }
  clear(result);
  result.className = failed.length ? "error" : "muted";
  result.textContent = [
    done.length ? `Shared with ${done.join(", ")}.` : "",
    failed.length ? `Not shared with ${failed.join("; ")}.` : "",
  ]
    .filter(Boolean)
    .join(" ");
  body.dataset.shared = failed.length ? "partial" : "done";
  body.dataset.sharedCount = String(done.length);
  send.disabled = false;
});
