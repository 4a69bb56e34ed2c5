// Shared: what friends shared with me and what I shared, one card per share. An offer can
// be accepted or ignored; a shared List is shown as a list (add a link, remove, reorder
// where our level allows, each change marked pending until the daemon answers); any other
// root resource through views.ts (its template, else the generic schema view); members and
// their levels, revoke, add, leave. Live: share.* events, and a resources.subscribe per
// accepted share's root (list.changed / resource.changed as changes replicate in).
// Everything from peers goes in as text (dom.ts), names through visibleText (bidi controls
// shown, not obeyed) inside <bdi>.

import { ErrorCode } from "../lib/api.gen";
import type { AutoDownload, AutoDownloadPolicy, Resource, ResourceChange, ShareMember } from "../lib/api.gen";
import { safeHttpUrl, shortPeer } from "../lib/social";
import { LEVEL_WORDS, Share, ShareLevel, canWrite, isAdmin, shareOrder, visibleText } from "../lib/sharing";
import { CallError, Client, errorText } from "./client";
import { append, byId, clear, h } from "./dom";
import { acceptedContacts, contacts, nameOf, onContactsChanged, presenceDot } from "./people";
import { AlbumGrid, isAlbumList, notImagesOf } from "./album";
import { renderResource } from "./views";

const IGNORED_KEY = "allpeers.ignoredShares";

/** A change sent to the daemon and not answered yet (or refused: then `error`). */
interface Pending {
  key: number;
  kind: "add" | "remove" | "move";
  item?: string;
  label: string;
  error?: string;
}

interface Card {
  share: Share;
  li: HTMLLIElement;
  /** What the card was built for: rebuilt when it changes (state, level). */
  shape: string;
  content: HTMLElement;
  members: HTMLElement;
  root: Resource | null;
  items: string[] | null;
  resources: Map<string, Resource>;
  /** Set while the root is an album (a List of Images): drawn as a virtualised grid. */
  album: AlbumGrid | null;
  pending: Pending[];
  subscription: number | null;
  loading: boolean;
  again: boolean;
  error: string;
}

interface Deps {
  /** "Add photos…" on an album we may write: the file picker, its files added to that share (drop.ts). */
  addPhotos: (share: Share) => void;
}

export function initShared(client: Client, deps: Deps) {
  const body = document.body;
  const cards = new Map<string, Card>();
  let nextKey = 1;
  let ignored = new Set<string>(readIgnored());
  let showIgnored = false;
  let loaded = false;
  /** Shares left from this page: a late share.changed does not bring them back. */
  const left = new Set<string>();
  /** Which shared files arrive by themselves (files.auto_download.get), read with the shares. */
  let autoDownload: AutoDownload | null = null;

  function readIgnored(): string[] {
    try {
      const v = JSON.parse(localStorage.getItem(IGNORED_KEY) ?? "[]");
      return Array.isArray(v) ? v.filter((x) => typeof x === "string") : [];
    } catch {
      return [];
    }
  }
  function saveIgnored() {
    try {
      localStorage.setItem(IGNORED_KEY, JSON.stringify([...ignored]));
    } catch {
      /* storage unavailable: ignoring lasts for this page only */
    }
  }

  const me = () => body.dataset.peerId ?? "";
  const who = (peer: string) => (peer === me() ? "you" : visibleText(nameOf(peer)));
  const bdi = (text: string, cls = "") => h("bdi", { class: cls || undefined, text });
  /** A share's title for labels and text: bidi controls shown. */
  const titleOf = (s: Share) => visibleText(s.title || "Untitled");

  // ------------------------------------------------------------ loading

  async function refresh() {
    const err = byId("shares-error");
    let list: Share[];
    try {
      list = await client.call("shares.list");
      autoDownload = await client.call("files.auto_download.get").catch(() => null);
      err.textContent = "";
    } catch (e) {
      err.textContent = `Could not read the shares: ${errorText(e)}`;
      return;
    }
    const seen = new Set(list.map((s) => s.id));
    for (const [id, card] of cards) {
      if (!seen.has(id)) drop(card);
    }
    for (const s of list) upsert(s, false);
    loaded = true;
    draw();
    body.dataset.shares = String(list.length);
  }

  function drop(card: Card) {
    cards.delete(card.share.id);
    card.li.remove();
    card.album?.destroy();
    if (card.subscription !== null) {
      void client.call("resources.unsubscribe", { subscription: card.subscription }).catch(() => {});
    }
  }

  function upsert(s: Share, redraw = true) {
    const card = cards.get(s.id);
    if (!card) {
      cards.set(s.id, build(s));
    } else {
      card.share = s;
      if (card.shape !== shapeOf(s)) {
        rebuild(card);
      } else {
        // Renamed: the title in place (the add form keeps what is being typed).
        const title = card.li.querySelector(".share-title");
        if (title && title.textContent !== titleOf(s)) title.textContent = titleOf(s);
        drawMembers(card);
      }
    }
    const c = cards.get(s.id)!;
    if (s.state === "accepted") {
      void subscribe(c);
      void load(c);
    }
    if (redraw) draw();
  }

  async function subscribe(card: Card) {
    if (card.subscription !== null) return;
    card.subscription = -1; // asked
    try {
      const r = await client.call("resources.subscribe", { filter: { id: card.share.resource } });
      if (cards.get(card.share.id) === card) card.subscription = r.subscription;
      else void client.call("resources.unsubscribe", r).catch(() => {});
    } catch {
      card.subscription = null;
    }
  }

  /** Reads the root resource, its items and the items' resources; one run at a time per card. */
  async function load(card: Card) {
    if (card.loading) {
      card.again = true;
      return;
    }
    card.loading = true;
    try {
      do {
        card.again = false;
        try {
          card.root = await client.call("resources.get", { id: card.share.resource });
          if (card.root?.type === "List") {
            const items = await client.call("lists.items", { id: card.share.resource });
            if (await isAlbum(card.root, items.items)) {
              // An album reads its photos lazily, as they come into view (album.ts).
              // Someone else's photos can be fetched from the grid; ours are here already.
              // A member who may write removes photos from the grid and reorders them; not in a query-backed
              // list, whose items and order are its query's (the daemon refuses both).
              const writable = canWrite(card.share) && typeof card.root.properties.query !== "string";
              card.album ??= new AlbumGrid(client, titleOf(card.share), {
                fetch: card.share.owner === me() ? null : (id, name) => void fetchFile(card, id, name),
                remove: writable ? (id, name) => removePhoto(card, id, name) : null,
                move: writable ? (id, index) => movePhoto(card, id, index) : null,
              });
              card.items = items.items;
              card.error = "";
              drawContent(card);
              continue;
            }
            card.album?.destroy();
            card.album = null;
            for (const id of items.items) {
              if (card.resources.has(id)) continue;
              const r = await client.call("resources.get", { id });
              if (r) card.resources.set(id, r);
            }
            card.items = items.items;
          } else {
            card.items = null;
          }
          card.error = "";
        } catch (e) {
          card.error = `Could not read it: ${errorText(e)}`;
        }
        drawContent(card);
      } while (card.again);
    } finally {
      card.loading = false;
    }
  }

  /** A List marked as holding Images, or one whose items are all Images (at least one of them here). */
  async function isAlbum(root: Resource, items: string[]): Promise<boolean> {
    if (isAlbumList(root)) return true;
    if (!items.length) return false;
    const others = await client.call("resources.count", { query: notImagesOf(root.id) });
    if (others > 0) return false;
    const images = await client.call("resources.count", { query: { type: "Image", where: [{ itemsOf: { type: "List", where: [{ ids: [root.id] }] } }] } });
    return images > 0;
  }

  // ------------------------------------------------------------ drawing

  const shapeOf = (s: Share) => `${s.state}/${s.level ?? "none"}/${s.owner === me()}`;

  function build(s: Share): Card {
    const li = h("li", { class: "share", "data-share": s.id });
    const card: Card = {
      share: s,
      li,
      shape: "",
      content: h("div", { class: "share-content" }),
      members: h("div", { class: "share-members" }),
      root: null,
      items: null,
      resources: new Map(),
      album: null,
      pending: [],
      subscription: null,
      loading: false,
      again: false,
      error: "",
    };
    rebuild(card);
    return card;
  }

  function rebuild(card: Card) {
    const s = card.share;
    const li = card.li;
    clear(li);
    // The grid is made for a level (Remove buttons or not): made again for the new one.
    card.album?.destroy();
    card.album = null;
    card.shape = shapeOf(s);
    li.dataset.state = s.state;
    li.dataset.writable = String(s.state === "accepted" && canWrite(s));
    li.dataset.level = s.level ?? "none";
    li.dataset.mine = String(s.owner === me() || s.from === me());
    const titleId = `share-title-${s.id}`;
    li.setAttribute("aria-labelledby", titleId);
    const head = h(
      "div",
      { class: "who share-head" },
      h("bdi", { class: "grow share-title", id: titleId, text: titleOf(s) }),
      h("span", { class: "pill", text: s.state === "offered" ? "offered" : s.level ? LEVEL_WORDS[s.level] : "no access" }),
    );
    const byLine =
      s.from === me()
        ? h("p", { class: "status-text", text: "Shared by you" })
        : h("p", { class: "status-text" }, "From ", bdi(who(s.from), "share-from"));
    append(li, head, byLine);

    if (s.state === "offered") {
      append(
        li,
        h("p", { class: "muted", text: "Nothing of it is on this device until you accept." }),
        h(
          "div",
          { class: "actions" },
          button("accept", "Accept", `Accept “${titleOf(s)}”`, () => accept(card), { class: "primary" }),
          ignored.has(s.id)
            ? button("unignore", "Show again", `Stop ignoring “${titleOf(s)}”`, () => setIgnored(s.id, false))
            : button("ignore", "Ignore", `Ignore “${titleOf(s)}”`, () => setIgnored(s.id, true)),
        ),
        h("p", { class: "error share-result", role: "alert" }),
      );
      return;
    }
    if (!s.level) {
      append(li, h("p", { class: "muted", text: "Your access was revoked: what you have is a local copy that no longer syncs." }));
    }
    append(li, card.content);
    if (canWrite(s)) {
      // Shown while the root is an album (drawContent); dropping files on the album does the same.
      const more = button("add-photos", "Add photos…", `Add photos to “${titleOf(s)}” (or drop them on it)`, () => deps.addPhotos(card.share), {
        class: "share-add-photos",
      });
      more.hidden = true;
      append(li, more, addForm(card));
    }
    append(li, card.members);
    const actions = h("div", { class: "actions" });
    if (s.owner !== me() && s.level && autoDownload) actions.append(autoDownloadControl(card));
    if (s.owner !== me()) {
      actions.append(confirmButton("leave", "Leave", "Leave and stop syncing?", `Leave “${titleOf(s)}”`, () => leave(card)));
    }
    if (actions.childElementCount) li.append(actions);
    li.append(h("p", { class: "error share-result", role: "alert" }));
    drawContent(card);
    drawMembers(card);
  }

  /** Which of the share's files arrive by themselves: off, small files (the default), everything. */
  function autoDownloadControl(card: Card): HTMLElement {
    const s = card.share;
    const setting = autoDownload;
    const mib = setting ? Math.round(setting.max_bytes / (1024 * 1024)) : 0;
    const select = h("select", { "data-action": "auto-download", "aria-label": `Download the files of “${titleOf(s)}” by themselves` });
    const choices: [AutoDownloadPolicy, string][] = [
      ["off", "Only when I ask"],
      ["small", `Files up to ${mib} MiB`],
      ["all", "Every file"],
    ];
    for (const [value, text] of choices) select.append(h("option", { value, text }));
    select.value = setting?.shares.find((x) => x.share === s.id)?.policy ?? "small";
    select.addEventListener("change", async () => {
      try {
        autoDownload = await client.call("files.auto_download.set", { share: s.id, policy: select.value as AutoDownloadPolicy });
        result(card, "Saved", true);
      } catch (e) {
        result(card, `Not saved: ${errorText(e)}`);
      }
    });
    return h("label", { class: "auto-download" }, "Download files: ", select);
  }

  function button(action: string, text: string, label: string, fn: () => void, extra: Record<string, string> = {}) {
    const b = h("button", { type: "button", "data-action": action, "aria-label": label, ...extra, text });
    b.addEventListener("click", fn);
    return b;
  }

  /** A button that asks once ("Leave and stop syncing?") before it acts. */
  function confirmButton(action: string, text: string, ask: string, label: string, fn: () => void) {
    const b = h("button", { type: "button", "data-action": action, "aria-label": label, text });
    b.addEventListener("click", () => {
      if (b.dataset.confirm !== "1") {
        b.dataset.confirm = "1";
        b.textContent = ask;
        b.setAttribute("aria-label", `${label}: press again to confirm`);
        return;
      }
      fn();
    });
    b.addEventListener("blur", () => {
      b.dataset.confirm = "";
      b.textContent = text;
      b.setAttribute("aria-label", label);
    });
    return b;
  }

  /** The card's message line: an error unless `ok` (then plain). */
  function result(card: Card, text: string, ok = false) {
    const el = card.li.querySelector<HTMLElement>(".share-result");
    if (!el) return;
    el.className = `${ok ? "muted" : "error"} share-result`;
    el.textContent = text;
  }

  /** Redraws a part of a card keeping the keyboard focus on the same button of the same item. */
  function keepFocus(container: HTMLElement, drawFn: () => void) {
    const f = document.activeElement as HTMLElement | null;
    const keep =
      f && container.contains(f) && f.dataset.action
        ? { action: f.dataset.action, item: f.closest<HTMLElement>("[data-item]")?.dataset.item, peer: f.dataset.peer }
        : null;
    drawFn();
    if (!keep) return;
    let sel = `[data-action="${CSS.escape(keep.action)}"]`;
    if (keep.peer) sel += `[data-peer="${CSS.escape(keep.peer)}"]`;
    if (keep.item) sel = `[data-item="${CSS.escape(keep.item)}"] ${sel}`;
    const again = container.querySelector<HTMLElement>(sel);
    if (again && !(again as HTMLButtonElement).disabled) {
      again.focus();
      return;
    }
    // That button is disabled now (↑ on the first item): another of the same item, else any.
    const sameItem = keep.item ? `[data-item="${CSS.escape(keep.item)}"] button:not(:disabled)` : "";
    ((sameItem && container.querySelector<HTMLElement>(sameItem)) || container.querySelector<HTMLElement>("button:not(:disabled)"))?.focus();
  }

  function drawContent(card: Card) {
    if (card.share.state !== "accepted") return;
    const addForm = card.li.querySelector<HTMLElement>(".share-add");
    if (addForm) addForm.hidden = card.album !== null; // links do not go into an album
    const addPhotos = card.li.querySelector<HTMLElement>(".share-add-photos");
    if (addPhotos) addPhotos.hidden = card.album === null;
    if (card.album && card.root && card.items && !card.error) {
      // The grid stays in the page (its scroll position with it); only its items change.
      if (card.content.firstChild !== card.album.el || card.content.childNodes.length !== 1) card.content.replaceChildren(card.album.el);
      card.album.setLabel(titleOf(card.share));
      card.album.setItems(card.items);
      card.li.dataset.synced = "true";
      card.li.dataset.album = "true";
      card.li.dataset.items = String(card.items.length);
      return;
    }
    delete card.li.dataset.album;
    keepFocus(card.content, () => {
      const el = card.content;
      clear(el);
      if (card.error) el.append(h("p", { class: "error", role: "alert", text: card.error }));
      if (!card.root) {
        el.append(h("p", { class: "muted", text: card.loading || !card.error ? "Syncing…" : "Not here yet." }));
        card.li.dataset.synced = "false";
        return;
      }
      card.li.dataset.synced = "true";
      if (card.root.type !== "List" || !card.items) {
        el.append(renderResource(card.root));
        return;
      }
      drawList(card, el);
    });
  }

  function drawList(card: Card, el: HTMLElement) {
    const s = card.share;
    const writable = canWrite(s);
    const items = card.items ?? [];
    const ol = h("ol", { class: "share-items", "aria-label": `Items of ${titleOf(s)}` });
    const removing = new Set(card.pending.filter((p) => p.kind === "remove" && !p.error).map((p) => p.item));
    const moving = new Set(card.pending.filter((p) => p.kind === "move" && !p.error).map((p) => p.item));
    items.forEach((id, i) => {
      const r = card.resources.get(id);
      const li = h("li", { class: "share-item", "data-item": id });
      if (writable) {
        // Keyboard: Alt+↑ / Alt+↓ on any of the item's buttons moves it.
        li.addEventListener("keydown", (ev) => {
          if (!ev.altKey || (ev.key !== "ArrowUp" && ev.key !== "ArrowDown")) return;
          ev.preventDefault();
          const to = i + (ev.key === "ArrowUp" ? -1 : 1);
          if (to >= 0 && to < items.length) void move(card, id, to);
        });
      }
      const name = itemLabel(r, id);
      li.append(r ? renderResource(r) : h("span", { class: "muted", text: "Syncing this item…" }));
      if (removing.has(id) || moving.has(id)) {
        li.dataset.pending = "true";
        li.append(h("span", { class: "pending-word", text: removing.has(id) ? "Removing…" : "Moving…" }));
      }
      if (writable) {
        const busy = removing.has(id);
        li.append(
          h(
            "div",
            { class: "actions" },
            button("up", "↑", `Move “${name}” up (Alt+↑)`, () => move(card, id, i - 1), i === 0 || busy ? { disabled: "" } : {}),
            button("down", "↓", `Move “${name}” down (Alt+↓)`, () => move(card, id, i + 1), i === items.length - 1 || busy ? { disabled: "" } : {}),
            button("remove", "Remove", `Remove “${name}”`, () => remove(card, id), busy ? { disabled: "" } : {}),
          ),
        );
      }
      ol.append(li);
    });
    for (const p of card.pending.filter((p) => p.kind === "add")) {
      const li = h(
        "li",
        { class: "share-item", "data-pending": p.error ? "failed" : "true", "data-key": String(p.key) },
        h("span", { class: "link-title", text: p.label }),
        h("span", { class: p.error ? "error" : "pending-word", text: p.error ? `Not added: ${p.error}` : "Adding…" }),
      );
      if (p.error) {
        li.append(h("div", { class: "actions" }, button("dismiss", "Dismiss", `Dismiss “${p.label}”`, () => unpend(card, p))));
      }
      ol.append(li);
    }
    for (const p of card.pending.filter((p) => p.kind !== "add" && p.error)) {
      ol.append(
        h(
          "li",
          { class: "share-item", "data-pending": "failed" },
          h("span", { class: "error", text: `${p.kind === "remove" ? "Not removed" : "Not moved"}: ${p.label}: ${p.error}` }),
          h("div", { class: "actions" }, button("dismiss", "Dismiss", `Dismiss the error about “${p.label}”`, () => unpend(card, p))),
        ),
      );
    }
    card.li.dataset.items = String(items.length);
    card.li.dataset.pending = String(card.pending.filter((p) => !p.error).length);
    if (!ol.childElementCount) {
      el.append(h("p", { class: "muted", text: writable ? "The list is empty: add a link below." : "The list is empty." }));
    } else {
      el.append(ol);
    }
  }

  function itemLabel(r: Resource | undefined, id: string): string {
    const p = r?.properties ?? {};
    for (const v of [p.title, p.name, p.url]) if (typeof v === "string" && v) return visibleText(v);
    return r?.type ?? shortPeer(id);
  }

  function addForm(card: Card): HTMLElement {
    const s = card.share;
    const form = h("form", { class: "stack share-add", "aria-label": `Add a link to ${titleOf(s)}` });
    const url = h("input", {
      name: "url",
      required: true,
      autocomplete: "off",
      spellcheck: "false",
      placeholder: "https://…",
      "aria-label": `Link to add to ${titleOf(s)}`,
      "data-action": "add-url",
    });
    const title = h("input", {
      name: "title",
      autocomplete: "off",
      maxlength: 300,
      placeholder: "Title (optional)",
      "aria-label": "Title of the link (optional)",
      "data-action": "add-title",
    });
    const submit = h("button", { type: "submit", "data-action": "add", text: "Add" });
    // Tab order: the link, its title, Add.
    form.append(url, h("div", { class: "row" }, title, submit));
    form.addEventListener("submit", (ev) => {
      ev.preventDefault();
      const u = url.value.trim();
      const href = safeHttpUrl(u);
      if (!href) {
        result(card, "Only web links (http or https) can be added.");
        url.focus();
        return;
      }
      result(card, "");
      void add(card, href, title.value.trim());
      url.value = "";
      title.value = "";
      url.focus();
    });
    return form;
  }

  function drawMembers(card: Card) {
    const s = card.share;
    if (s.state !== "accepted") return;
    keepFocus(card.members, () => {
      const el = card.members;
      clear(el);
      const admin = isAdmin(s);
      const ul = h("ul", { class: "member-list", "aria-label": `Members of ${titleOf(s)}` });
      const sorted = [...s.members].sort(
        (a, b) => Number(b.peer === s.owner) - Number(a.peer === s.owner) || who(a.peer).localeCompare(who(b.peer)),
      );
      for (const m of sorted) {
        const owner = m.peer === s.owner;
        const li = h(
          "li",
          { "data-peer": m.peer, "data-level": m.level },
          m.peer === me() ? null : presenceDot(contacts.get(m.peer)?.presence),
          bdi(who(m.peer), "member-name"),
          h("span", { class: "state-word", text: owner ? "owner" : LEVEL_WORDS[m.level] }),
        );
        if (admin && !owner && m.peer !== me()) {
          li.append(
            h(
              "span",
              { class: "actions" },
              confirmButton("revoke", "Revoke", "Revoke access?", `Revoke ${who(m.peer)}'s access`, () => revoke(card, m)),
            ),
          );
          li.querySelector<HTMLElement>('[data-action="revoke"]')!.dataset.peer = m.peer;
        }
        ul.append(li);
      }
      el.append(h("p", { class: "members-title", text: `Members (${s.members.length})` }), ul);
      if (admin) el.append(addMemberForm(card));
    });
  }

  function addMemberForm(card: Card): HTMLElement {
    const s = card.share;
    const candidates = acceptedContacts().filter((c) => !s.members.some((m) => m.peer === c.peer_id));
    if (!candidates.length) return h("span");
    const form = h("form", { class: "row share-add-member" });
    const who = h("select", { "aria-label": "Contact to add", "data-action": "member-peer" });
    for (const c of candidates) who.append(h("option", { value: c.peer_id, text: visibleText(nameOf(c.peer_id)) }));
    const level = levelSelect("Their level");
    form.append(who, level, h("button", { type: "submit", "data-action": "add-member", text: "Add member" }));
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      try {
        upsert(await client.call("shares.add_member", { share: s.id, peer: who.value, level: level.value as ShareLevel }));
        result(card, "");
      } catch (e) {
        result(card, `Not added: ${errorText(e)}`);
      }
    });
    return form;
  }

  function levelSelect(label: string) {
    const sel = h("select", { "aria-label": label, "data-action": "level" });
    for (const l of ["write", "read", "admin"] as ShareLevel[]) sel.append(h("option", { value: l, text: LEVEL_WORDS[l] }));
    return sel;
  }

  /** Places the cards in their lists (offers, mine, theirs) in order, moving only what moved. */
  function draw() {
    const all = [...cards.values()].map((c) => c.share).sort(shareOrder);
    const offers = all.filter((s) => s.state === "offered" && (showIgnored || !ignored.has(s.id)));
    const hiddenCount = all.filter((s) => s.state === "offered" && ignored.has(s.id)).length;
    const mine = all.filter((s) => s.state === "accepted" && s.from === me());
    const theirs = all.filter((s) => s.state === "accepted" && s.from !== me());
    place(byId("offers"), offers);
    place(byId("shares-mine"), mine);
    place(byId("shares-theirs"), theirs);
    byId("offers-section").hidden = offers.length === 0;
    byId("shares-mine-section").hidden = mine.length === 0;
    byId("shares-theirs-section").hidden = theirs.length === 0;
    const toggle = byId<HTMLButtonElement>("shares-ignored");
    toggle.hidden = hiddenCount === 0;
    toggle.textContent = showIgnored ? "Hide ignored offers" : `Show ignored offers (${hiddenCount})`;
    byId("shares-empty").hidden = !loaded || offers.length + mine.length + theirs.length > 0;
    body.dataset.offers = String(offers.length);
  }

  function place(ul: HTMLElement, shares: Share[]) {
    const want = shares.map((s) => cards.get(s.id)!.li);
    const have = [...ul.children];
    if (want.length === have.length && want.every((li, i) => have[i] === li)) return;
    // Moving the element that has the focus would lose it: put it back after.
    const focused = document.activeElement as HTMLElement | null;
    for (const li of have) if (!want.includes(li as HTMLLIElement)) li.remove();
    want.forEach((li, i) => {
      if (ul.children[i] !== li) ul.insertBefore(li, ul.children[i] ?? null);
    });
    if (focused && document.activeElement !== focused && document.contains(focused)) focused.focus();
  }

  // ------------------------------------------------------------ actions

  async function accept(card: Card) {
    const b = card.li.querySelector<HTMLButtonElement>('[data-action="accept"]');
    if (b) {
      b.disabled = true;
      b.textContent = "Accepting…";
    }
    try {
      const s = await client.call("shares.accept", { share: card.share.id }, 30_000);
      setIgnored(s.id, false, false);
      upsert(s);
      card.li.querySelector<HTMLElement>("button, input")?.focus();
    } catch (e) {
      if (b) {
        b.disabled = false;
        b.textContent = "Accept";
      }
      result(card, `Not accepted: ${errorText(e)}`);
    }
  }

  function setIgnored(id: string, on: boolean, redraw = true) {
    if (on) ignored.add(id);
    else ignored.delete(id);
    saveIgnored();
    const card = cards.get(id);
    if (card && redraw) {
      rebuild(card);
      draw();
      byId("shares-ignored").focus();
      if (!on || showIgnored) card.li.querySelector<HTMLElement>("button")?.focus();
    }
  }

  function pend(card: Card, p: Omit<Pending, "key">): Pending {
    const full = { ...p, key: nextKey++ };
    card.pending.push(full);
    drawContent(card);
    return full;
  }
  function unpend(card: Card, p: Pending) {
    card.pending = card.pending.filter((x) => x !== p);
    drawContent(card);
  }
  function failed(card: Card, p: Pending, e: unknown) {
    p.error = errorText(e);
    drawContent(card);
  }

  async function add(card: Card, url: string, title: string) {
    const p = pend(card, { kind: "add", label: visibleText(title || url) });
    try {
      const link = await client.call("resources.create", {
        resource: { id: "", type: "Link", properties: title ? { url, title } : { url } },
      });
      await client.call("lists.insert", { list: card.share.resource, item: link.id });
      card.resources.set(link.id, link);
      card.pending = card.pending.filter((x) => x !== p);
      await load(card);
    } catch (e) {
      failed(card, p, e);
    }
  }

  async function remove(card: Card, item: string) {
    const p = pend(card, { kind: "remove", item, label: itemLabel(card.resources.get(item), item) });
    try {
      await client.call("lists.remove", { list: card.share.resource, item });
      card.pending = card.pending.filter((x) => x !== p);
      await load(card);
    } catch (e) {
      failed(card, p, e);
    }
  }

  async function move(card: Card, item: string, index: number) {
    if (!card.items || index < 0 || index >= card.items.length) return;
    // Shown at once where it goes; marked pending until the daemon answers.
    const order = card.items.filter((x) => x !== item);
    order.splice(index, 0, item);
    card.items = order;
    const p = pend(card, { kind: "move", item, label: itemLabel(card.resources.get(item), item) });
    try {
      await client.call("lists.move", { list: card.share.resource, item, index });
      card.pending = card.pending.filter((x) => x !== p);
      await load(card);
    } catch (e) {
      failed(card, p, e);
      await load(card);
    }
  }

  /** A photo taken out of an album (the grid shows it pending until the daemon answers). */
  async function removePhoto(card: Card, item: string, name: string) {
    try {
      await client.call("lists.remove", { list: card.share.resource, item });
      result(card, `Removed “${name}”.`, true);
      await load(card);
    } catch (e) {
      result(card, `“${name}” not removed: ${errorText(e)}`);
    }
  }

  /**
   * A photo moved in an album (the grid shows it at its new place, pending, until the daemon answers;
   * refused, the grid puts it back and the card says why). True when stored.
   */
  async function movePhoto(card: Card, item: string, index: number): Promise<boolean> {
    try {
      await client.call("lists.move", { list: card.share.resource, item, index });
      result(card, "");
      await load(card);
      return true;
    } catch (e) {
      result(card, `Not moved: ${errorText(e)}`);
      await load(card);
      return false;
    }
  }

  /** A photo of an album shared with us, fetched from the members (`files.get`): a transfer in Transfers. */
  async function fetchFile(card: Card, id: string, name: string) {
    result(card, `Asking for “${name}”…`, true);
    try {
      await client.call("files.get", { resource: id }, 30_000);
      result(card, `Downloading “${name}”: its progress is in Transfers.`, true);
    } catch (e) {
      // Already a transfer: most often it came by itself (the share's auto-download).
      if (e instanceof CallError && e.code === ErrorCode.TransferExists) {
        result(card, `Downloading “${name}”: its progress is in Transfers.`, true);
        return;
      }
      result(card, `“${name}” not downloaded: ${errorText(e)}`);
    }
  }

  async function revoke(card: Card, m: ShareMember) {
    try {
      upsert(await client.call("shares.revoke", { share: card.share.id, peer: m.peer }, 30_000));
      result(card, "");
    } catch (e) {
      result(card, `Not revoked: ${errorText(e)}`);
    }
  }

  async function leave(card: Card) {
    try {
      await client.call("shares.leave", { share: card.share.id }, 30_000);
      left.add(card.share.id);
      drop(card);
      draw();
      byId("new-share").focus();
    } catch (e) {
      result(card, `Could not leave: ${errorText(e)}`);
    }
  }

  // ------------------------------------------------------------ a new shared list

  const form = byId<HTMLFormElement>("share-form");
  const newButton = byId<HTMLButtonElement>("new-share");

  function drawCandidates() {
    const box = byId("share-members");
    const checked = new Map<string, string>();
    for (const row of box.querySelectorAll<HTMLElement>(".member-pick")) {
      const cb = row.querySelector<HTMLInputElement>("input")!;
      if (cb.checked) checked.set(cb.value, row.querySelector<HTMLSelectElement>("select")!.value);
    }
    clear(box);
    box.append(h("legend", { text: "Share with" }));
    const list = acceptedContacts();
    if (!list.length) box.append(h("p", { class: "muted", text: "No contacts yet: add one in People first." }));
    for (const c of list) {
      const id = `share-pick-${c.peer_id}`;
      const cb = h("input", { type: "checkbox", id, value: c.peer_id, checked: checked.has(c.peer_id) });
      const level = levelSelect(`${nameOf(c.peer_id)}'s level`);
      level.value = checked.get(c.peer_id) ?? "write";
      box.append(
        h("div", { class: "row member-pick" }, cb, h("label", { for: id, class: "grow" }, bdi(visibleText(nameOf(c.peer_id)))), level),
      );
    }
  }

  newButton.addEventListener("click", () => {
    form.hidden = !form.hidden;
    newButton.setAttribute("aria-expanded", String(!form.hidden));
    if (!form.hidden) {
      drawCandidates();
      byId("share-title").focus();
    }
  });
  function closeForm() {
    form.hidden = true;
    newButton.setAttribute("aria-expanded", "false");
    newButton.focus();
  }
  byId("share-cancel").addEventListener("click", closeForm);
  form.addEventListener("keydown", (ev) => {
    if (ev.key === "Escape") {
      ev.preventDefault();
      closeForm();
    }
  });
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const title = byId<HTMLInputElement>("share-title").value.trim();
    const members: ShareMember[] = [];
    for (const row of byId("share-members").querySelectorAll<HTMLElement>(".member-pick")) {
      const cb = row.querySelector<HTMLInputElement>("input")!;
      if (cb.checked) members.push({ peer: cb.value, level: row.querySelector<HTMLSelectElement>("select")!.value as ShareLevel });
    }
    const out = byId("share-result");
    if (!title) {
      out.textContent = "Give the list a name.";
      return;
    }
    if (!members.length) {
      out.textContent = "Pick at least one contact to share with.";
      return;
    }
    const submit = byId<HTMLButtonElement>("share-create");
    submit.disabled = true;
    out.textContent = "";
    try {
      const list = await client.call("resources.create", { resource: { id: "", type: "List", properties: { title } } });
      const share = await client.call("shares.create", { resource: list.id, members }, 30_000);
      form.reset();
      form.hidden = true;
      newButton.setAttribute("aria-expanded", "false");
      upsert(share);
      cards.get(share.id)?.li.querySelector<HTMLElement>("input, button")?.focus();
    } catch (e) {
      out.textContent = `Not shared: ${errorText(e)}`;
    } finally {
      submit.disabled = false;
    }
  });
  byId("shares-ignored").addEventListener("click", () => {
    showIgnored = !showIgnored;
    draw();
  });

  // ------------------------------------------------------------ events

  const cardsOf = (change: ResourceChange) =>
    [...cards.values()].filter((c) => c.share.resource === change.id || (c.items?.includes(change.id) ?? false));

  client.on("share.received", (d) => {
    left.delete(d.share);
    void refresh();
  });
  client.on("share.changed", (s) => {
    if (!left.has(s.id)) upsert(s);
  });
  client.on("list.changed", (d) => {
    for (const c of cardsOf(d)) void load(c);
  });
  client.on("resource.changed", (d) => {
    for (const c of cardsOf(d)) {
      if (d.id !== c.share.resource) {
        // An item changed: read it again.
        c.resources.delete(d.id);
        c.album?.invalidate(d.id);
      }
      void load(c);
    }
  });
  // A reconciliation brought ops in: a safety net for changes no subscription reported.
  client.on("sync.progress", (d) => {
    const c = cards.get(d.share);
    if (c && d.received > 0) void load(c);
  });
  onContactsChanged(() => {
    for (const c of cards.values()) {
      if (c.share.state === "accepted") drawMembers(c);
      else rebuild(c);
    }
    if (!form.hidden) drawCandidates();
  });
  addEventListener("pagehide", () => {
    for (const c of cards.values()) {
      if (c.subscription !== null && c.subscription >= 0) {
        void client.call("resources.unsubscribe", { subscription: c.subscription }).catch(() => {});
      }
    }
  });

  return {
    /** A share made elsewhere in the panel (drag-and-share): its card at once. */
    show: (s: Share) => upsert(s),
    shareOf: (id: string) => cards.get(id)?.share,
    /** Re-reads everything (after a (re)connection: subscriptions are per connection). */
    async refresh(reconnected = false) {
      if (reconnected) for (const c of cards.values()) c.subscription = null;
      await refresh();
    },
  };
}
