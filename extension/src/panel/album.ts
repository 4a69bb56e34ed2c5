// An album: a shared List of Images drawn as a grid of thumbnails. Only the rows in view
// (and a few around them) are in the DOM; the rest is an empty spacer of the right height,
// so a grid of thousands of photos costs what a screenful does. Thumbnails are read lazily:
// the ids of the cells shown are asked for in batches (`resources.query` with `ids`), kept
// as blob: URLs (bounded, oldest dropped), and each cell's <img> is filled when its batch
// answers. The scroller is focusable (arrows, Page Up/Down, Home/End scroll it), and each
// cell says its position (aria-posinset / aria-setsize), since most cells are not there.
// The cells are kept by item id and updated in place (lib/keyed.ts): a reload or a thumbnail arriving
// touches only the cells whose photo, place or pending state changed, so a click never lands on a cell
// that was swapped for a copy under the pointer.
// A member who may write sees a Remove button on each photo and reorders the album: a photo dragged to
// another place, or moved earlier/later with its buttons or Alt+arrows (each marked pending until the
// daemon answers, put back if it refuses).

import type { Resource } from "../lib/api.gen";
import { keyedPlan } from "../lib/keyed";
import { visibleText } from "../lib/sharing";
import type { Client } from "./client";
import { h } from "./dom";

/** The side of a cell's square (thumbnail and gap), in CSS pixels. */
const CELL = 96;
/** Rows drawn above and below the visible ones, so a quick scroll does not show holes. */
const OVERSCAN_ROWS = 2;
/** Ids per `resources.query` (the store's `ids` condition takes at most 1000). */
const BATCH = 60;
/** Batches in flight at once. */
const PARALLEL = 2;
/** Thumbnails kept as blob: URLs; past this the least recently shown are let go. */
const CACHE = 1500;

/** The type of an album item being dragged to another place (never "Files": drop.ts leaves it alone). */
const ITEM_DRAG = "application/x-allpeers-item";

/** What the grid knows of a photo. */
interface Photo {
  name: string;
  /** blob: URL of its thumbnail, "" when it has none. */
  url: string;
  /** The name and a hash of the thumbnail's bytes: the same photo read again keeps its <img>. */
  sig: string;
}

/** A cell in the page, and what it was last drawn from. */
interface Cell {
  el: HTMLElement;
  /** Where the picture goes (replaced only when the photo's `sig` changes). */
  picture: HTMLElement;
  /** The `sig` drawn ("" while loading). */
  drawn: string;
  remove: HTMLButtonElement | null;
  earlier: HTMLButtonElement | null;
  later: HTMLButtonElement | null;
}

/** What a member may do from the grid (each null when not allowed). */
export interface AlbumActions {
  /** Fetches the photo's file (a share from someone else: `files.get`); each photo is a button. */
  fetch: ((id: string, name: string) => void) | null;
  /** Takes the photo out of the album. */
  remove: ((id: string, name: string) => Promise<void>) | null;
  /** Moves the photo to `index` (its place once moved); true when the daemon stored it. */
  move: ((id: string, index: number) => Promise<boolean>) | null;
}

/** FNV-1a of a string (32 bits): tells a changed thumbnail from the same one read again. */
function hashText(s: string): string {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return (h >>> 0).toString(16);
}

/** True for a List marked as holding Images (`itemType`); the panel also asks the store (`albumQuery`). */
export function isAlbumList(root: Resource | null): boolean {
  return root?.type === "List" && root.properties.itemType === "Image";
}

/** The query counting a list's items that are not Images (0 with items: an album). */
export function notImagesOf(list: string) {
  return {
    type: "Resource",
    where: [{ itemsOf: { type: "List", where: [{ ids: [list] }] } }, { not: { isA: "Image" } }],
  };
}

/** The image type of thumbnail bytes from their signature (the worker writes JPEG or WebP). */
function imageMime(bytes: Uint8Array): string {
  if (bytes[0] === 0xff && bytes[1] === 0xd8) return "image/jpeg";
  if (bytes[0] === 0x89 && bytes[1] === 0x50) return "image/png";
  if (bytes[0] === 0x52 && bytes[1] === 0x49 && bytes[8] === 0x57 && bytes[9] === 0x45) return "image/webp";
  if (bytes[0] === 0x47 && bytes[1] === 0x49) return "image/gif";
  return "";
}

function decodeBase64(b64: string): Uint8Array | null {
  try {
    const bin = atob(b64);
    const out = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
    return out;
  } catch {
    return null;
  }
}

export class AlbumGrid {
  /** The scroller: put it in the page once; `setItems` keeps it current. */
  readonly el: HTMLElement;
  private readonly spacer: HTMLElement;
  private readonly list: HTMLElement;
  private items: string[] = [];
  private readonly photos = new Map<string, Photo>();
  /** The cells in the page, by item id. */
  private readonly cells = new Map<string, Cell>();
  /** Ids asked for and not answered yet. */
  private readonly asking = new Set<string>();
  /** Ids whose resource changed: read again, their old photo shown meanwhile. */
  private readonly stale = new Set<string>();
  private queue: string[] = [];
  private inFlight = 0;
  private columns = 1;
  private frame = 0;
  private drawn = "";
  /** Bumped when the items or a cell's state change: the next frame redraws even at the same scroll. */
  private version = 0;
  private readonly resize: ResizeObserver;
  private firstPaint = false;
  /** Photos being removed (the daemon has not answered yet). */
  private readonly removing = new Set<string>();
  /** Photos being moved (shown at their new place, pending until the daemon answers). */
  private readonly moving = new Set<string>();
  /** The photo being dragged to another place. */
  private dragging: string | null = null;
  /** The cell showing where a dragged photo would go. */
  private dropMark: HTMLElement | null = null;

  constructor(
    private readonly client: Client,
    private label: string,
    private readonly actions: AlbumActions,
  ) {
    this.list = h("div", { role: "list", class: "album-cells" });
    this.spacer = h("div", { class: "album-spacer" }, this.list);
    this.el = h("div", { class: "album-grid", tabindex: 0, role: "region" }, this.spacer);
    this.setLabel(label);
    this.el.addEventListener("scroll", () => this.schedule(), { passive: true });
    this.el.addEventListener("keydown", (ev) => this.key(ev));
    if (actions.move) this.reorderable();
    this.resize = new ResizeObserver(() => this.schedule());
    this.resize.observe(this.el);
  }

  setLabel(label: string) {
    this.label = label;
    const how = this.actions.move ? "; Alt+arrows move the focused photo" : "";
    this.el.setAttribute("aria-label", `Photos of ${label} (${this.items.length}): scroll with the arrow keys${how}`);
    this.list.setAttribute("aria-label", `Photos of ${label}`);
  }

  /** The album's items (ids, in order): the cells in view follow (only those that changed are touched). */
  setItems(items: string[]) {
    this.el.dataset.count = String(items.length);
    if (items.length === this.items.length && items.every((id, i) => id === this.items[i])) return;
    this.items = items;
    this.setLabel(this.label);
    this.redraw();
  }

  /** An item changed: its thumbnail is read again (the old one stays until the new one is there). */
  invalidate(id: string) {
    if (!this.photos.has(id)) return;
    this.stale.add(id);
    this.redraw();
  }

  /** Lets the blob: URLs go (the card is gone). */
  destroy() {
    this.resize.disconnect();
    cancelAnimationFrame(this.frame);
    for (const p of this.photos.values()) if (p.url) URL.revokeObjectURL(p.url);
    this.photos.clear();
    this.cells.clear();
  }

  private key(ev: KeyboardEvent) {
    if (ev.altKey) return; // Alt+arrows move a photo (reorderable)
    const row = CELL;
    const page = Math.max(row, this.el.clientHeight - row);
    const by: Record<string, number> = { ArrowDown: row, ArrowUp: -row, PageDown: page, PageUp: -page };
    if (ev.key in by) this.el.scrollTop += by[ev.key];
    else if (ev.key === "Home") this.el.scrollTop = 0;
    else if (ev.key === "End") this.el.scrollTop = this.el.scrollHeight;
    else return;
    ev.preventDefault();
  }

  private redraw() {
    this.version++;
    this.schedule();
  }

  /** One redraw per animation frame, however many scroll events came. */
  private schedule() {
    if (this.frame) return;
    this.frame = requestAnimationFrame(() => {
      this.frame = 0;
      this.draw();
    });
  }

  private draw() {
    const width = this.el.clientWidth;
    if (!width) return; // not in the page (another tab): drawn when it shows (ResizeObserver)
    this.columns = Math.max(2, Math.floor(width / CELL));
    const rows = Math.ceil(this.items.length / this.columns);
    const height = rows * CELL;
    this.spacer.style.height = `${height}px`;
    const top = this.el.scrollTop;
    const first = Math.max(0, Math.floor(top / CELL) - OVERSCAN_ROWS);
    const last = Math.min(rows, Math.ceil((top + this.el.clientHeight) / CELL) + OVERSCAN_ROWS);
    const from = first * this.columns;
    const to = Math.min(this.items.length, last * this.columns);
    const key = `${from}:${to}:${this.columns}:${this.version}`;
    if (key === this.drawn) return;
    this.drawn = key;
    this.list.style.transform = `translateY(${first * CELL}px)`;
    this.list.style.gridTemplateColumns = `repeat(${this.columns}, 1fr)`;
    const want = this.items.slice(from, to);
    const read: string[] = [];
    want.forEach((id, i) => {
      this.update(id, from + i);
      if ((!this.photos.has(id) || this.stale.has(id)) && !this.asking.has(id)) read.push(id);
    });
    this.arrange(want);
    this.el.dataset.from = String(from);
    this.el.dataset.to = String(to);
    this.ask(read);
    if (!this.firstPaint && want.length) {
      this.firstPaint = true;
      // The grid's first frame with cells: the tests time the album from this mark.
      performance.mark("allpeers-album-grid");
      this.el.dataset.painted = "true";
    }
  }

  /** Puts the cells of `want` in the page in that order: new ones in, gone ones out, only moved ones moved. */
  private arrange(want: string[]) {
    const have = [...this.list.children].map((c) => (c as HTMLElement).dataset.item ?? "");
    const plan = keyedPlan(have, want);
    if (!plan.remove.length && !plan.place.length) return;
    // A cell moved with the focus in it would lose it: given back after.
    const focused = document.activeElement as HTMLElement | null;
    for (const id of plan.remove) {
      this.cells.get(id)?.el.remove();
      this.cells.delete(id);
    }
    for (const { key, before } of plan.place) {
      this.list.insertBefore(this.cells.get(key)!.el, before === null ? null : this.cells.get(before)!.el);
    }
    if (focused && document.activeElement !== focused && this.list.contains(focused)) focused.focus({ preventScroll: true });
  }

  /** The cell of `id` at `index`, made if new; what changed is updated, nothing else. */
  private update(id: string, index: number) {
    let cell = this.cells.get(id);
    if (!cell) {
      cell = this.make(id);
      this.cells.set(id, cell);
    }
    const el = cell.el;
    const pos = String(index + 1);
    if (el.getAttribute("aria-posinset") !== pos) el.setAttribute("aria-posinset", pos);
    const size = String(this.items.length);
    if (el.getAttribute("aria-setsize") !== size) el.setAttribute("aria-setsize", size);
    const photo = this.photos.get(id);
    if (photo && photo.sig !== cell.drawn) this.paint(cell, id, photo);
    const removing = this.removing.has(id);
    const pending = removing || this.moving.has(id) ? "true" : "";
    if ((el.dataset.pending ?? "") !== pending) {
      if (pending) el.dataset.pending = pending;
      else delete el.dataset.pending;
    }
    if (cell.remove && cell.remove.disabled !== removing) {
      cell.remove.disabled = removing;
      cell.remove.textContent = removing ? "…" : "×";
    }
    // aria-disabled, not disabled: a button pressed from the keyboard keeps the focus as its photo moves.
    const still = (b: HTMLButtonElement | null, off: boolean) => {
      if (b && (b.getAttribute("aria-disabled") === "true") !== off) b.setAttribute("aria-disabled", String(off));
    };
    still(cell.earlier, index === 0 || pending !== "");
    still(cell.later, index === this.items.length - 1 || pending !== "");
  }

  private make(id: string): Cell {
    const el = h("div", { role: "listitem", class: "album-cell", "data-item": id, "data-state": "loading" });
    const picture = h("span", { class: "album-picture" });
    el.append(picture);
    const cell: Cell = { el, picture, drawn: "", remove: null, earlier: null, later: null };
    const { remove, move } = this.actions;
    if (move) {
      el.draggable = true;
      const go = (by: number) => () => this.step(id, by);
      cell.earlier = h("button", { type: "button", class: "album-move album-earlier", "data-action": "earlier", text: "‹" });
      cell.later = h("button", { type: "button", class: "album-move album-later", "data-action": "later", text: "›" });
      cell.earlier.addEventListener("click", go(-1));
      cell.later.addEventListener("click", go(1));
      el.append(cell.earlier, cell.later);
    }
    if (remove) {
      const b = h("button", { type: "button", class: "album-remove", "data-action": "remove", text: "×" });
      b.addEventListener("click", () => {
        if (this.removing.has(id)) return;
        const name = this.photos.get(id)?.name || "Photo";
        this.removing.add(id);
        this.refresh(id);
        void remove(id, visibleText(name)).finally(() => {
          this.removing.delete(id);
          // Still listed (refused): the button comes back; removed: the next setItems drops the cell.
          this.refresh(id);
        });
      });
      cell.remove = b;
      el.append(b);
    }
    this.name(cell, "Photo");
    return cell;
  }

  /** The labels that carry the photo's name. */
  private name(cell: Cell, name: string) {
    const fetching = this.actions.fetch !== null;
    cell.el.title = fetching ? `${name} (click to download)` : name;
    cell.remove?.setAttribute("aria-label", `Remove ${name}`);
    if (cell.remove) cell.remove.title = `Remove ${name}`;
    cell.earlier?.setAttribute("aria-label", `Move ${name} earlier (Alt+←)`);
    cell.later?.setAttribute("aria-label", `Move ${name} later (Alt+→)`);
  }

  /** Draws the photo of a cell (its thumbnail or its name): only when it differs from what is drawn. */
  private paint(cell: Cell, id: string, photo: Photo) {
    const name = visibleText(photo.name || "Photo");
    const picture = photo.url
      ? h("img", { src: photo.url, alt: name, loading: "lazy", decoding: "async", draggable: "false" })
      : h("span", { class: "album-none", text: name });
    const fetch = this.actions.fetch;
    if (fetch) {
      // The button stays (its focus with it); only what it shows changes.
      let b = cell.picture.querySelector<HTMLButtonElement>("button.album-get");
      if (!b) {
        b = h("button", { type: "button", class: "album-get", "data-action": "get" });
        b.addEventListener("click", () => fetch(id, visibleText(this.photos.get(id)?.name || "Photo")));
        cell.picture.replaceChildren(b);
      }
      b.setAttribute("aria-label", `Download ${name}`);
      b.replaceChildren(picture);
    } else {
      cell.picture.replaceChildren(picture);
    }
    cell.el.dataset.state = photo.url ? "ready" : "none";
    cell.drawn = photo.sig;
    this.name(cell, name);
  }

  /** A cell's state changed (pending or not): updated where it is, if it is in view. */
  private refresh(id: string) {
    const index = Number(this.cells.get(id)?.el.getAttribute("aria-posinset") ?? 0) - 1;
    if (index >= 0 && this.items[index] === id) this.update(id, index);
    this.redraw();
  }

  // ------------------------------------------------------------ reorder

  /** Earlier (-1) or later (+1) by one place, or by a row (±columns): from the buttons and Alt+arrows. */
  private step(id: string, by: number) {
    const from = this.items.indexOf(id);
    if (from < 0) return;
    const to = Math.max(0, Math.min(this.items.length - 1, from + by));
    if (to !== from) void this.moveTo(id, to);
  }

  /** Shown at its new place at once, pending; the daemon's answer keeps it there or puts it back. */
  private async moveTo(id: string, index: number) {
    const move = this.actions.move;
    if (!move || this.moving.has(id) || this.removing.has(id)) return;
    const before = this.items;
    const order = before.filter((x) => x !== id);
    order.splice(index, 0, id);
    this.moving.add(id);
    this.setItems(order);
    this.reveal(index);
    let stored = false;
    try {
      stored = await move(id, index);
    } finally {
      this.moving.delete(id);
      // Refused, and nothing read since: back where it was (the caller says why).
      if (!stored && this.items === order) this.setItems(before);
      this.refresh(id);
    }
  }

  /** Scrolls so that the photo at `index` is in view (a moved photo is followed). */
  private reveal(index: number) {
    const top = Math.floor(index / this.columns) * CELL;
    if (top < this.el.scrollTop) this.el.scrollTop = top;
    else if (top + CELL > this.el.scrollTop + this.el.clientHeight) this.el.scrollTop = top + CELL - this.el.clientHeight;
  }

  /** Drag a photo to another place; Alt+arrows on a focused photo's buttons. */
  private reorderable() {
    const cellOf = (t: EventTarget | null) => (t instanceof Element ? t.closest<HTMLElement>(".album-cell") : null);
    this.list.addEventListener("keydown", (ev) => {
      if (!ev.altKey) return;
      const by: Record<string, number> = { ArrowLeft: -1, ArrowRight: 1, ArrowUp: -this.columns, ArrowDown: this.columns };
      const id = cellOf(ev.target)?.dataset.item;
      if (!(ev.key in by) || !id) return;
      ev.preventDefault();
      this.step(id, by[ev.key]);
    });
    this.list.addEventListener("dragstart", (ev) => {
      const id = cellOf(ev.target)?.dataset.item;
      if (!id || !ev.dataTransfer || this.moving.has(id)) return;
      this.dragging = id;
      ev.dataTransfer.setData(ITEM_DRAG, id);
      ev.dataTransfer.effectAllowed = "move";
      this.cells.get(id)?.el.setAttribute("data-dragging", "true");
    });
    /** Where a drop at this point puts the photo: before the cell under it, or after it (its right half). */
    const slot = (ev: DragEvent): { cell: HTMLElement; at: number; after: boolean } | null => {
      const cell = cellOf(ev.target);
      const index = Number(cell?.getAttribute("aria-posinset") ?? 0) - 1;
      if (!cell || index < 0) return null;
      const box = cell.getBoundingClientRect();
      const after = ev.clientX > box.left + box.width / 2;
      return { cell, at: index + (after ? 1 : 0), after };
    };
    const mark = (cell: HTMLElement | null, after = false) => {
      if (this.dropMark && this.dropMark !== cell) delete this.dropMark.dataset.drop;
      this.dropMark = cell;
      if (cell) cell.dataset.drop = after ? "after" : "before";
    };
    this.list.addEventListener("dragover", (ev) => {
      if (!this.dragging || !ev.dataTransfer?.types.includes(ITEM_DRAG)) return;
      ev.preventDefault();
      ev.dataTransfer.dropEffect = "move";
      const s = slot(ev);
      mark(s?.cell ?? null, s?.after);
    });
    this.list.addEventListener("drop", (ev) => {
      const id = this.dragging;
      if (!id || !ev.dataTransfer?.types.includes(ITEM_DRAG)) return;
      ev.preventDefault();
      const s = slot(ev);
      mark(null);
      const from = this.items.indexOf(id);
      if (!s || from < 0) return;
      // The slot counts the photo itself: past its old place, one less once it is taken out.
      const to = s.at > from ? s.at - 1 : s.at;
      if (to !== from) void this.moveTo(id, to);
    });
    this.list.addEventListener("dragend", () => {
      if (this.dragging) this.cells.get(this.dragging)?.el.removeAttribute("data-dragging");
      this.dragging = null;
      mark(null);
    });
  }

  // ------------------------------------------------------------ thumbnails

  private ask(ids: string[]) {
    if (!ids.length) return;
    // The newest request goes first: what is in view now matters more than what scrolled past.
    const asked = new Set(ids);
    this.queue = [...ids, ...this.queue.filter((id) => !asked.has(id))];
    for (const id of ids) this.asking.add(id);
    this.pump();
  }

  private pump() {
    while (this.inFlight < PARALLEL && this.queue.length) {
      const batch = this.queue.splice(0, BATCH);
      this.inFlight++;
      void this.read(batch).finally(() => {
        this.inFlight--;
        this.pump();
      });
    }
  }

  private async read(ids: string[]) {
    // Ids scrolled out of view while waiting are not read now (asked again if they come back).
    const inView = new Set(this.items.slice(Number(this.el.dataset.from ?? 0), Number(this.el.dataset.to ?? 0)));
    const now = ids.filter((id) => inView.has(id));
    for (const id of ids) if (!inView.has(id)) this.asking.delete(id);
    if (!now.length) return;
    let found: Resource[] = [];
    try {
      const r = await this.client.call("resources.query", { query: { type: "Resource", where: [{ ids: now }] } });
      found = "resources" in r ? r.resources : [];
    } catch {
      // Not read (connection lost): asked again when next shown.
      for (const id of now) this.asking.delete(id);
      return;
    }
    const byId = new Map(found.map((r) => [r.id, r]));
    for (const id of now) {
      this.asking.delete(id);
      const r = byId.get(id);
      if (!r) continue; // not synced here yet: stays "loading", asked again on the next draw
      this.stale.delete(id);
      this.remember(id, r);
    }
    this.show(now);
  }

  /** Keeps what was read of a photo; the same thumbnail read again keeps its blob: URL (and the <img>). */
  private remember(id: string, r: Resource) {
    const p = r.properties;
    const name = typeof p.name === "string" ? p.name : typeof p.title === "string" ? p.title : "";
    const thumb = typeof p.thumbnail === "string" ? p.thumbnail : "";
    const sig = `${hashText(thumb)}:${thumb.length}:${name}`;
    const old = this.photos.get(id);
    this.photos.delete(id);
    if (old && old.sig === sig) {
      this.photos.set(id, old); // the most recently shown again (the Map's order)
      return;
    }
    if (old?.url) URL.revokeObjectURL(old.url);
    const bytes = thumb ? decodeBase64(thumb) : null;
    const mime = bytes ? imageMime(bytes) : "";
    // Only bytes that are a picture become one (anything else: the name, as text).
    const url = bytes && mime ? URL.createObjectURL(new Blob([bytes as BlobPart], { type: mime })) : "";
    this.photos.set(id, { name, url, sig });
    // The oldest entries first (Map keeps insertion order); never those in view.
    if (this.photos.size <= CACHE) return;
    const inView = new Set(this.items.slice(Number(this.el.dataset.from ?? 0), Number(this.el.dataset.to ?? 0)));
    for (const [k, photo] of this.photos) {
      if (this.photos.size <= CACHE) break;
      if (inView.has(k)) continue;
      if (photo.url) URL.revokeObjectURL(photo.url);
      this.photos.delete(k);
    }
  }

  /** Fills the cells in view that just got their photo, if it differs from what they show. */
  private show(ids: string[]) {
    for (const id of ids) {
      const photo = this.photos.get(id);
      const cell = this.cells.get(id);
      if (photo && cell && cell.drawn !== photo.sig) this.paint(cell, id, photo);
    }
    this.el.dataset.loaded = String(this.list.querySelectorAll('[data-state="ready"], [data-state="none"]').length);
  }
}
