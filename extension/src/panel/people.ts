// People: my presence and invite code, adding contacts, incoming requests, the contact
// list with live presence. Names, status texts and request messages come from peers:
// they go into the page as text only (dom.ts).

import type { Availability } from "../lib/api.gen";
import { Contact, Presence, contactName } from "../lib/social";
import { Client, errorText } from "./client";
import { append, byId, clear, h } from "./dom";

/** The methods that act on one contact and answer it. */
type ContactAction = "contacts.accept" | "contacts.decline" | "contacts.block" | "contacts.unblock" | "contacts.remove";

export const contacts = new Map<string, Contact>();
const listeners = new Set<() => void>();

/** Called whenever the contact list changes (chat uses it for names and the group form). */
export function onContactsChanged(fn: () => void) {
  listeners.add(fn);
}

export function nameOf(peer: string): string {
  const c = contacts.get(peer);
  return c ? contactName(c) : contactName({ peer_id: peer, name: null, nickname: null, title: null });
}

export function acceptedContacts(): Contact[] {
  return [...contacts.values()].filter((c) => c.state === "accepted").sort(byName);
}

function byName(a: Contact, b: Contact) {
  return contactName(a).localeCompare(contactName(b));
}

export { errorText };

const PRESENCE_WORDS: Record<string, string> = {
  online: "online",
  away: "away",
  busy: "busy",
  offline: "offline",
};

export function presenceDot(p: Presence | undefined) {
  const state = p?.online ? p.state : "offline";
  return h("span", {
    class: "presence",
    "data-state": state,
    role: "img",
    "aria-label": PRESENCE_WORDS[state] ?? state,
    title: PRESENCE_WORDS[state] ?? state,
  });
}

export function initPeople(client: Client, openChat: (peer: string) => void) {
  const body = document.body;

  function changed() {
    render();
    for (const fn of listeners) fn();
    resolveNames();
  }

  // The node looks a new contact's name up at the hub by itself, but says nothing when it
  // has it (no contact.changed follows): ask the hub here for contacts still nameless.
  const resolved = new Map<string, string | null>();
  function resolveNames() {
    for (const c of contacts.values()) {
      if (c.name) continue;
      const known = resolved.get(c.peer_id);
      if (known) {
        c.name = known;
        continue;
      }
      if (resolved.has(c.peer_id)) continue;
      resolved.set(c.peer_id, null);
      client
        .call("hub.resolve", { query: c.peer_id })
        .then((r) => {
          const cc = contacts.get(c.peer_id);
          if (!r.found || !r.name) return;
          resolved.set(c.peer_id, r.name);
          if (cc && !cc.name) {
            cc.name = r.name;
            changed();
          }
        })
        .catch(() => resolved.delete(c.peer_id));
    }
  }

  function render() {
    // Redrawn on every change: keep the keyboard focus on the same button of the same person.
    const focused = document.activeElement as HTMLElement | null;
    const keep = focused?.dataset.action
      ? { peer: focused.closest("li")?.dataset.peer, action: focused.dataset.action, list: focused.closest("ul")?.id }
      : null;
    draw();
    if (keep?.peer && keep.list) {
      byId(keep.list)
        .querySelector<HTMLElement>(`li[data-peer="${CSS.escape(keep.peer)}"] [data-action="${CSS.escape(keep.action ?? "")}"]`)
        ?.focus();
    }
  }

  function draw() {
    const all = [...contacts.values()];
    const requests = all.filter((c) => c.state === "incoming").sort(byName);
    const shown = all
      .filter((c) => c.state === "accepted" || c.state === "outgoing" || c.state === "blocked")
      .sort((a, b) => {
        const rank = (c: Contact) =>
          c.state === "accepted" ? (c.presence.online ? 0 : 1) : c.state === "outgoing" ? 2 : 3;
        return rank(a) - rank(b) || byName(a, b);
      });

    const reqList = byId("requests");
    clear(reqList);
    byId("requests-section").hidden = requests.length === 0;
    for (const c of requests) {
      const li = h(
        "li",
        { "data-peer": c.peer_id, "data-state": c.state },
        h("div", { class: "who" }, h("span", { class: "name", text: contactName(c) })),
        h("div", { class: "muted", text: c.peer_id }),
        c.request_message ? h("p", { class: "status-text request-message", text: `“${c.request_message}”` }) : null,
      );
      const actions = h("div", { class: "actions" });
      actions.append(
        button("Accept", "accept", () => act("contacts.accept", c.peer_id, `${contactName(c)} is now a contact`)),
        button("Decline", "decline", () => act("contacts.decline", c.peer_id, "Request declined")),
        button("Block", "block", () => act("contacts.block", c.peer_id, `${contactName(c)} is blocked`)),
      );
      li.append(actions);
      reqList.append(li);
    }

    const list = byId("contacts");
    clear(list);
    for (const c of shown) {
      const state = c.state === "accepted" ? (c.presence.online ? c.presence.state : "offline") : c.state;
      const who = h("div", { class: "who" });
      if (c.state === "accepted") who.append(presenceDot(c.presence));
      append(
        who,
        h("span", { class: "name grow", text: contactName(c) }),
        h("span", {
          class: "state-word",
          text:
            c.state === "outgoing"
              ? "request sent"
              : c.state === "blocked"
                ? "blocked"
                : (PRESENCE_WORDS[state] ?? state),
        }),
      );
      const li = h(
        "li",
        { "data-peer": c.peer_id, "data-state": c.state, "data-presence": state },
        who,
        c.state === "accepted" && c.presence.online && c.presence.text
          ? h("p", { class: "status-text", text: c.presence.text })
          : null,
      );
      const actions = h("div", { class: "actions" });
      if (c.state === "accepted") {
        actions.append(button("Chat", "chat", () => openChat(c.peer_id)));
      }
      if (c.state === "blocked") {
        actions.append(button("Unblock", "unblock", () => act("contacts.unblock", c.peer_id, "Unblocked")));
      } else {
        actions.append(
          button(c.state === "outgoing" ? "Cancel" : "Remove", "remove", () =>
            act("contacts.remove", c.peer_id, `${contactName(c)} removed`),
          ),
          button("Block", "block", () => act("contacts.block", c.peer_id, `${contactName(c)} is blocked`)),
        );
      }
      li.append(actions);
      list.append(li);
    }
    byId("contacts-empty").hidden = shown.length > 0;
    body.dataset.contacts = String(acceptedContacts().length);
    body.dataset.requests = String(requests.length);
  }

  function button(label: string, action: string, fn: () => void) {
    const b = h("button", { type: "button", "data-action": action, text: label });
    b.addEventListener("click", fn);
    return b;
  }

  async function act(method: ContactAction, peer: string, done: string) {
    const err = byId("contacts-error");
    try {
      const c = await client.call(method, { peer });
      upsert(c);
      err.textContent = "";
      byId("add-result").textContent = done;
    } catch (e) {
      err.textContent = `${errorText(e)}`;
    }
  }

  function upsert(c: Contact) {
    if (!c?.peer_id) return;
    const old = contacts.get(c.peer_id);
    if (c.state === "none" || c.state === "declined") contacts.delete(c.peer_id);
    else contacts.set(c.peer_id, { ...c, presence: c.presence ?? old?.presence });
    changed();
  }

  async function refresh() {
    const err = byId("contacts-error");
    try {
      const [list, presence] = await Promise.all([
        client.call("contacts.list"),
        client.call("presence.get"),
      ]);
      contacts.clear();
      for (const c of list) contacts.set(c.peer_id, c);
      byId<HTMLSelectElement>("presence-state").value = presence.state;
      const text = byId<HTMLInputElement>("presence-text");
      if (document.activeElement !== text) text.value = presence.text;
      body.dataset.myPresence = presence.state;
      err.textContent = "";
      body.dataset.social = "ready";
      changed();
    } catch (e) {
      body.dataset.social = "offline";
      err.textContent = `Contacts are not available: ${errorText(e)}`;
    }
  }

  client.on("contact.changed", (d) => upsert(d));
  client.on("contact.request", (d) => upsert(d.contact));
  client.on("presence.changed", (d) => {
    const p = d;
    const c = contacts.get(p.peer_id);
    if (!c) return;
    c.presence = { online: p.online, state: p.state, text: p.text ?? "" };
    changed();
  });

  byId<HTMLFormElement>("presence-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const result = byId("presence-result");
    const state = byId<HTMLSelectElement>("presence-state").value;
    const text = byId<HTMLInputElement>("presence-text").value;
    try {
      const r = await client.call("presence.set", { state: state as Availability, text });
      body.dataset.myPresence = r.state;
      result.className = "muted";
      result.textContent = `You are ${r.state}${r.text ? `: ${r.text}` : ""}`;
    } catch (e) {
      result.className = "error";
      result.textContent = `Not changed: ${errorText(e)}`;
    }
  });
  byId("presence-state").addEventListener("change", () => byId<HTMLFormElement>("presence-form").requestSubmit());

  byId("invite-make").addEventListener("click", async () => {
    const result = byId("invite-result");
    try {
      const r = await client.call("contacts.invite");
      const code = byId("invite-code");
      code.textContent = r.code;
      code.hidden = false;
      byId("copy-invite").hidden = false;
      result.textContent = `Valid until ${new Date(r.expires).toLocaleString()}`;
      body.dataset.invite = "ready";
    } catch (e) {
      result.textContent = `No invite code: ${errorText(e)}`;
    }
  });
  byId("copy-invite").addEventListener("click", () => copyText(byId("invite-code"), byId("invite-result")));

  byId<HTMLFormElement>("add-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const who = byId<HTMLInputElement>("add-who");
    const message = byId<HTMLInputElement>("add-message");
    const result = byId("add-result");
    const button = byId<HTMLButtonElement>("add-button");
    button.disabled = true;
    result.className = "muted";
    result.textContent = "Sending the request…";
    try {
      const c = await client.call(
        "contacts.add",
        { who: who.value.trim(), message: message.value },
        45_000,
      );
      upsert(c);
      result.textContent =
        c.state === "accepted"
          ? `${contactName(c)} is a contact`
          : `Request sent to ${contactName(c)}${c.delivered === "mailed" ? " (they are offline: it waits at the hub)" : ""}`;
      who.value = "";
      message.value = "";
    } catch (e) {
      // What was typed stays, to be fixed.
      result.className = "error";
      result.textContent = `Not sent: ${errorText(e)}`;
    } finally {
      button.disabled = false;
    }
  });

  return { refresh };
}

export async function copyText(source: HTMLElement, result: HTMLElement) {
  try {
    await navigator.clipboard.writeText(source.textContent ?? "");
    result.textContent = "Copied";
  } catch {
    const range = document.createRange();
    range.selectNodeContents(source);
    const sel = getSelection();
    sel?.removeAllRanges();
    sel?.addRange(range);
    result.textContent = "Selected: press Ctrl+C to copy";
  }
}
