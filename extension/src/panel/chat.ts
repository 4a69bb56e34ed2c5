// Chat: the conversation list with unread counts, a conversation with history scrolling
// back, the send box, receipts, typing and link cards, and creating a group. Bodies,
// titles, names and URLs come from peers: text only (dom.ts); a link is clickable only if
// it is http or https, and opens in a new tab without access to this page (views.ts).

import {
  Chat,
  Message,
  applyReceipt,
  deliveryStatus,
  linkLabel,
  throttle,
} from "../lib/social";
import { Client } from "./client";
import { byId, clear, h } from "./dom";
import { acceptedContacts, errorText, nameOf, onContactsChanged } from "./people";
import { ResourceJson, renderResource } from "./views";

const PAGE = 50;
const TYPING_EVERY_MS = 3000;
const TYPING_SHOWN_MS = 5000;

interface Open {
  chat: Chat;
  messages: Message[];
  elements: Map<string, HTMLElement>;
  hasMore: boolean;
}

export function initChat(client: Client, showView: (v: "chat") => void) {
  const body = document.body;
  const chats = new Map<string, Chat>();
  const drafts = new Map<string, string>();
  let open: Open | null = null;
  const input = byId<HTMLTextAreaElement>("message-input");

  const me = () => body.dataset.peerId ?? "";

  function title(c: Chat): string {
    if (c.group) return c.title || "Group";
    const other = c.participants.find((p) => p !== me()) ?? c.participants[0] ?? "";
    return nameOf(other);
  }

  function visible() {
    return document.visibilityState === "visible" && body.dataset.view === "chat";
  }

  // ------------------------------------------------------------ conversation list

  function renderList() {
    const list = byId("chats");
    clear(list);
    const sorted = [...chats.values()].sort((a, b) => (b.last?.hlc ?? "").localeCompare(a.last?.hlc ?? ""));
    let unread = 0;
    for (const c of sorted) {
      unread += c.unread;
      const preview = c.last
        ? `${c.last.outgoing ? "You: " : c.group ? `${nameOf(c.last.sender)}: ` : ""}${
            c.last.deleted ? "(deleted)" : c.last.body || linkLabel(c.last.link)
          }`
        : "No messages yet";
      const item = h(
        "button",
        { type: "button", class: "chat-item", "data-chat": c.id },
        h(
          "span",
          { class: "who" },
          h("span", { class: "name", text: title(c) }),
          c.unread ? h("span", { class: "unread", text: String(c.unread), "aria-label": `${c.unread} unread` }) : null,
        ),
        h("span", { class: "preview", text: preview }),
      );
      item.addEventListener("click", () => void openChat(c.id));
      list.append(h("li", { "data-chat": c.id, "data-unread": c.unread, "data-group": String(c.group) }, item));
    }
    byId("chats-empty").hidden = chats.size > 0;
    body.dataset.unread = String(unread);
    const tab = byId("tab-chat");
    tab.textContent = unread ? `Chat (${unread})` : "Chat";
  }

  async function loadList() {
    const list = await client.call("chat.list");
    chats.clear();
    for (const c of list) chats.set(c.id, c);
    renderList();
  }

  // Unread counts come from the node (chat.list), re-read after each message from a peer;
  // calls coalesce while one is on its way.
  let listRun: Promise<void> | null = null;
  let listAgain = false;
  async function reloadList() {
    if (listRun) {
      listAgain = true;
      return;
    }
    listRun = (async () => {
      do {
        listAgain = false;
        try {
          await loadList();
        } catch (e) {
          byId("chats-error").textContent = `Conversations are not available: ${errorText(e)}`;
        }
      } while (listAgain);
    })();
    await listRun;
    listRun = null;
  }

  async function refresh() {
    const err = byId("chats-error");
    try {
      await loadList();
      err.textContent = "";
      if (open) {
        const c = chats.get(open.chat.id);
        if (c) await openChat(c.id, true);
      }
      body.dataset.chats = "ready";
    } catch (e) {
      err.textContent = `Conversations are not available: ${errorText(e)}`;
    }
  }

  // ------------------------------------------------------------ a conversation

  function statusWord(m: Message): string {
    const s = deliveryStatus(m, Math.max(1, (open?.chat.participants.length ?? 2) - 1));
    return { sending: "Sending…", sent: "Sent", delivered: "Delivered", read: "Read" }[s];
  }

  function messageElement(m: Message): HTMLElement {
    const group = open?.chat.group ?? false;
    const el = h("div", {
      class: "msg",
      "data-id": m.id,
      "data-outgoing": String(m.outgoing),
      "data-status": m.outgoing ? deliveryStatus(m, Math.max(1, (open?.chat.participants.length ?? 2) - 1)) : null,
    });
    if (group && !m.outgoing) el.append(h("div", { class: "sender", text: nameOf(m.sender) }));
    if (m.deleted) {
      el.append(h("span", { class: "deleted", text: "This message was deleted" }));
    } else {
      if (m.body) el.append(h("span", { class: "body", text: m.body }));
      // The attachment through the resource views: Link's template, or any type's generic view.
      if (m.link) el.append(renderResource(m.link as unknown as ResourceJson));
    }
    const when = m.sent ? new Date(m.sent).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" }) : "";
    const meta = [when, m.edited && !m.deleted ? "edited" : "", m.outgoing ? statusWord(m) : ""].filter(Boolean);
    const metaEl = h("div", { class: "meta" }, meta.join(" · "));
    if (m.outgoing && !m.deleted) {
      const edit = h("button", { type: "button", class: "msg-action", "data-action": "edit", text: "Edit" });
      const del = h("button", { type: "button", class: "msg-action", "data-action": "delete", text: "Delete" });
      edit.addEventListener("click", () => startEdit(m));
      del.addEventListener("click", () => {
        // Asked twice: the first click turns the button into the question.
        if (del.dataset.confirm !== "1") {
          del.dataset.confirm = "1";
          del.textContent = "Delete for everyone?";
          return;
        }
        void client
          .call("chat.delete", { message: m.id })
          .then((u) => addMessage(u))
          .catch((e) => (byId("send-result").textContent = `Not deleted: ${errorText(e)}`));
      });
      metaEl.append(h("span", { class: "msg-actions" }, edit, del));
    }
    el.append(metaEl);
    return el;
  }

  function renderMessages(keepScroll = false) {
    if (!open) return;
    const box = byId("messages");
    const list = byId("message-list");
    const fromBottom = box.scrollHeight - box.scrollTop;
    clear(list);
    open.elements.clear();
    for (const m of open.messages) {
      const el = messageElement(m);
      open.elements.set(m.id, el);
      list.append(el);
    }
    byId("load-earlier").hidden = !open.hasMore;
    if (keepScroll) box.scrollTop = box.scrollHeight - fromBottom;
    else box.scrollTop = box.scrollHeight;
    body.dataset.messages = String(open.messages.length);
  }

  function replaceMessage(m: Message) {
    if (!open) return;
    const old = open.elements.get(m.id);
    if (!old) return;
    const el = messageElement(m);
    old.replaceWith(el);
    open.elements.set(m.id, el);
  }

  function addMessage(m: Message) {
    if (!open || m.chat !== open.chat.id) return;
    const i = open.messages.findIndex((x) => x.id === m.id);
    if (i >= 0) {
      open.messages[i] = m;
      replaceMessage(m);
      return;
    }
    const box = byId("messages");
    const atBottom = box.scrollHeight - box.scrollTop - box.clientHeight < 40;
    open.messages.push(m);
    open.messages.sort((a, b) => a.hlc.localeCompare(b.hlc));
    const el = messageElement(m);
    open.elements.set(m.id, el);
    const next = open.messages[open.messages.indexOf(m) + 1];
    const nextEl = next ? open.elements.get(next.id) : null;
    if (nextEl) nextEl.before(el);
    else byId("message-list").append(el);
    if (atBottom || m.outgoing) box.scrollTop = box.scrollHeight;
    body.dataset.messages = String(open.messages.length);
  }

  async function openChat(id: string, reload = false) {
    const c = chats.get(id);
    if (!c) return;
    // Only a switch to another conversation swaps the send box's text: opening the one
    // shown again (from a contact's Chat button, or a reload) keeps what is being typed.
    if (open?.chat.id !== id) {
      stopEdit();
      if (open) drafts.set(open.chat.id, input.value);
      input.value = drafts.get(id) ?? "";
      byId("send-result").textContent = "";
    }
    open = { chat: c, messages: [], elements: new Map(), hasMore: false };
    byId("chat-home").hidden = true;
    byId("conversation").hidden = false;
    byId("conv-title").textContent = title(c);
    byId("conv-members").textContent = c.group
      ? `With ${c.participants.filter((p) => p !== me()).map(nameOf).join(", ")}`
      : "";
    byId("typing").textContent = "";
    body.dataset.chat = id;
    try {
      const history = await client.call("chat.history", { chat: id, limit: PAGE });
      if (open?.chat.id !== id) return;
      // Messages that arrived (as events) while the history was on its way stay.
      const known = new Set(history.map((m) => m.id));
      open.messages = [...history, ...open.messages.filter((m) => !known.has(m.id))].sort((a, b) =>
        a.hlc.localeCompare(b.hlc),
      );
      open.hasMore = history.length >= PAGE;
      renderMessages();
      await markRead();
    } catch (e) {
      byId("send-result").textContent = `Could not load the messages: ${errorText(e)}`;
    }
    if (!reload) input.focus();
  }

  function closeChat() {
    stopEdit();
    if (open) drafts.set(open.chat.id, input.value);
    open = null;
    delete body.dataset.chat;
    byId("conversation").hidden = true;
    byId("chat-home").hidden = false;
    renderList();
  }

  async function markRead() {
    if (!open || !visible()) return;
    const c = chats.get(open.chat.id);
    const unreadHere = open.messages.some((m) => !m.outgoing && !m.read) || (c?.unread ?? 0) > 0;
    if (!unreadHere) return;
    const id = open.chat.id;
    try {
      await client.call("chat.read", { chat: id });
      for (const m of open?.messages ?? []) m.read = true;
      const cc = chats.get(id);
      if (cc) cc.unread = 0;
      renderList();
    } catch {
      /* shown as unread still; tried again on the next message or visit */
    }
  }

  // While messages keep arriving in the open conversation, one chat.read covers a burst.
  let readTimer: ReturnType<typeof setTimeout> | null = null;
  const READ_EVERY_MS = 200;
  function markReadSoon() {
    if (readTimer) return;
    readTimer = setTimeout(() => {
      readTimer = null;
      void markRead();
    }, READ_EVERY_MS);
  }

  async function openWithPeer(peer: string) {
    showView("chat");
    try {
      const c = await client.call("chat.open", { peer });
      chats.set(c.id, { ...c, unread: chats.get(c.id)?.unread ?? c.unread });
      renderList();
      await openChat(c.id);
    } catch (e) {
      byId("chats-error").textContent = `Could not open the chat: ${errorText(e)}`;
    }
  }

  byId("conv-back").addEventListener("click", closeChat);
  byId("conversation").addEventListener("keydown", (ev) => {
    if (ev.key === "Escape") {
      if (editing) stopEdit();
      else closeChat();
    }
  });

  byId("load-earlier").addEventListener("click", async () => {
    if (!open || open.messages.length === 0) return;
    const id = open.chat.id;
    const before = open.messages[0].hlc;
    try {
      const older = await client.call("chat.history", { chat: id, before, limit: PAGE });
      if (open?.chat.id !== id) return;
      const known = new Set(open.messages.map((m) => m.id));
      open.messages = [...older.filter((m) => !known.has(m.id)), ...open.messages];
      open.hasMore = older.length >= PAGE;
      renderMessages(true);
    } catch (e) {
      byId("send-result").textContent = `Could not load earlier messages: ${errorText(e)}`;
    }
  });

  // ------------------------------------------------------------ sending

  const sendTyping = throttle(TYPING_EVERY_MS, () => {
    if (open) client.call("chat.typing", { chat: open.chat.id }).catch(() => {});
  });
  input.addEventListener("input", () => {
    if (input.value.trim()) sendTyping();
  });
  input.addEventListener("keydown", (ev) => {
    if (ev.key === "Enter" && !ev.shiftKey && !ev.isComposing) {
      ev.preventDefault();
      byId<HTMLFormElement>("send-form").requestSubmit();
    }
  });

  // Editing one of my messages: the send box holds its text until saved or cancelled.
  let editing: { id: string; draft: string } | null = null;
  function startEdit(m: Message) {
    if (!editing) editing = { id: m.id, draft: input.value };
    else editing.id = m.id;
    input.value = m.body;
    byId("edit-banner").hidden = false;
    byId("send-button").textContent = "Save";
    body.dataset.editing = m.id;
    input.focus();
  }
  function stopEdit() {
    if (!editing) return;
    // Saved or cancelled, the box gets back what was being written before.
    input.value = editing.draft;
    editing = null;
    byId("edit-banner").hidden = true;
    byId("send-button").textContent = "Send";
    delete body.dataset.editing;
  }
  byId("edit-cancel").addEventListener("click", () => stopEdit());

  byId<HTMLFormElement>("send-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    if (!open) return;
    const text = input.value;
    if (!text.trim()) return;
    const result = byId("send-result");
    const button = byId<HTMLButtonElement>("send-button");
    if (editing) {
      try {
        const m = await client.call("chat.edit", { message: editing.id, body: text });
        stopEdit();
        result.textContent = "";
        addMessage(m);
      } catch (e) {
        result.textContent = `Not saved (the text is still in the box): ${errorText(e)}`;
      }
      return;
    }
    button.disabled = true;
    try {
      const m = await client.call("chat.send", { chat: open.chat.id, body: text });
      // Cleared only once the node has it: a failed send leaves the text in the box.
      if (input.value === text) input.value = "";
      drafts.delete(m.chat);
      result.textContent = "";
      addMessage(m);
      bumpList(m);
    } catch (e) {
      result.textContent = `Not sent (your message is still in the box): ${errorText(e)}`;
    } finally {
      button.disabled = false;
    }
  });

  // ------------------------------------------------------------ groups

  function renderMemberChoices() {
    const set = byId("group-members");
    const checked = new Set(
      [...set.querySelectorAll<HTMLInputElement>("input:checked")].map((i) => i.value),
    );
    for (const el of [...set.querySelectorAll("label, p")]) el.remove();
    const list = acceptedContacts();
    if (list.length === 0) set.append(h("p", { class: "muted", text: "Add contacts first: groups are made of contacts." }));
    for (const c of list) {
      const box = h("input", { type: "checkbox", value: c.peer_id, "data-peer": c.peer_id });
      box.checked = checked.has(c.peer_id);
      set.append(h("label", {}, box, nameOf(c.peer_id)));
    }
  }
  onContactsChanged(() => {
    renderMemberChoices();
    renderList();
    if (open) byId("conv-title").textContent = title(open.chat);
  });

  byId("new-group").addEventListener("click", () => {
    const form = byId("group-form");
    form.hidden = !form.hidden;
    if (!form.hidden) {
      renderMemberChoices();
      byId("group-title").focus();
    }
  });
  byId("group-cancel").addEventListener("click", () => (byId("group-form").hidden = true));
  byId<HTMLFormElement>("group-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const result = byId("group-result");
    const members = [...byId("group-members").querySelectorAll<HTMLInputElement>("input:checked")].map((i) => i.value);
    if (members.length === 0) {
      result.textContent = "Pick at least one contact.";
      return;
    }
    try {
      const c = await client.call("chat.create_group", {
        title: byId<HTMLInputElement>("group-title").value.trim(),
        members,
      });
      chats.set(c.id, c);
      result.textContent = "";
      byId<HTMLInputElement>("group-title").value = "";
      byId("group-form").hidden = true;
      renderList();
      await openChat(c.id);
    } catch (e) {
      result.textContent = `Not created: ${errorText(e)}`;
    }
  });

  // ------------------------------------------------------------ events

  function bumpList(m: Message) {
    const c = chats.get(m.chat);
    if (!c) {
      void refresh();
      return;
    }
    if (!c.last || c.last.hlc <= m.hlc) c.last = m;
    renderList();
  }

  client.on("message.received", (d) => {
    const m = d;
    addMessage(m);
    if (!m.outgoing && !(open?.chat.id === m.chat && visible())) void reloadList();
    else bumpList(m);
    if (open?.chat.id === m.chat && !m.outgoing) {
      byId("typing").textContent = "";
      markReadSoon();
    }
  });
  client.on("message.updated", (d) => {
    const m = d;
    if (open?.chat.id === m.chat) addMessage(m);
    const c = chats.get(m.chat);
    if (c?.last?.id === m.id) {
      c.last = m;
      renderList();
    }
  });
  client.on("chat.receipt", (d) => {
    const r = d;
    const m = open?.messages.find((x) => x.id === r.message);
    if (m && applyReceipt(m, r.peer_id, r.kind)) replaceMessage(m);
  });
  let typingTimer: ReturnType<typeof setTimeout> | null = null;
  client.on("chat.typing", (d) => {
    const t = d;
    if (open?.chat.id !== t.chat || t.peer_id === me()) return;
    const el = byId("typing");
    el.textContent = `${nameOf(t.peer_id)} is typing…`;
    body.dataset.typing = t.peer_id;
    if (typingTimer) clearTimeout(typingTimer);
    typingTimer = setTimeout(() => {
      el.textContent = "";
      delete body.dataset.typing;
    }, TYPING_SHOWN_MS);
  });
  client.on("chat.changed", (d) => {
    const c = d;
    if (!c?.id) return;
    chats.set(c.id, c);
    renderList();
  });

  document.addEventListener("visibilitychange", () => void markRead());

  return {
    refresh,
    openWithPeer,
    /** The conversation shown in the Chat view (files dropped on it are shared with it), or null. */
    shownChat: (): Chat | null => (open && body.dataset.view === "chat" && !byId("conversation").hidden ? open.chat : null),
    /** The view became visible: mark the open conversation read. */
    shown: () => void markRead(),
  };
}
