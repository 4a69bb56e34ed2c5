// An album: a shared List of Images drawn as a grid of thumbnails. Only the rows in view
// (and a few around them) are in the DOM; the rest is an empty spacer of the right height,
// so a grid of thousands of photos costs what a screenful does. Thumbnails are read lazily:
// the ids of the cells shown are asked for in batches (`resources.query` with `ids`), kept
// as blob: URLs (bounded, oldest dropped), and each cell's <img> is filled when its batch
// answers. The scroller is focusable (arrows, Page Up/Down, Home/End scroll it), and each
// cell says its position (aria-posinset / aria-setsize), since most cells are not there.
// A member who may write sees a Remove button on each photo (marked pending until the daemon answers).

import type { Resource } from "../lib/api.gen";
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

/** What the grid knows of a photo. */
interface Photo {
  name: string;
  /** blob: URL of its thumbnail, "" when it has none. */
  url: string;
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
  /** Ids asked for and not answered yet. */
  private readonly asking = new Set<string>();
  private queue: string[] = [];
  private inFlight = 0;
  private columns = 1;
  private frame = 0;
  private drawn = "";
  private readonly resize: ResizeObserver;
  private firstPaint = false;
  /** Photos being removed (the daemon has not answered yet). */
  private readonly removing = new Set<string>();

  /**
   * `fetch`: given, each photo is a button that fetches its file (a share from someone else: `files.get`); the
   * label says so. `remove`: given (we may write), each photo has a Remove button.
   */
  constructor(
    private readonly client: Client,
    private label: string,
    private readonly fetch: ((id: string, name: string) => void) | null = null,
    private readonly remove: ((id: string, name: string) => Promise<void>) | null = null,
  ) {
    this.list = h("div", { role: "list", class: "album-cells" });
    this.spacer = h("div", { class: "album-spacer" }, this.list);
    this.el = h("div", { class: "album-grid", tabindex: 0, role: "region" }, this.spacer);
    this.setLabel(label);
    this.el.addEventListener("scroll", () => this.schedule(), { passive: true });
    this.el.addEventListener("keydown", (ev) => this.key(ev));
    this.resize = new ResizeObserver(() => this.schedule());
    this.resize.observe(this.el);
  }

  setLabel(label: string) {
    this.label = label;
    this.el.setAttribute("aria-label", `Photos of ${label} (${this.items.length}): scroll with the arrow keys`);
    this.list.setAttribute("aria-label", `Photos of ${label}`);
  }

  /** The album's items (ids, in order): redraws what is in view. */
  setItems(items: string[]) {
    this.items = items;
    this.el.dataset.count = String(items.length);
    this.setLabel(this.label);
    this.drawn = "";
    this.schedule();
  }

  /** An item changed: its thumbnail is read again when it is next shown. */
  invalidate(id: string) {
    const p = this.photos.get(id);
    if (p?.url) URL.revokeObjectURL(p.url);
    this.photos.delete(id);
    this.drawn = "";
    this.schedule();
  }

  /** Lets the blob: URLs go (the card is gone). */
  destroy() {
    this.resize.disconnect();
    cancelAnimationFrame(this.frame);
    for (const p of this.photos.values()) if (p.url) URL.revokeObjectURL(p.url);
    this.photos.clear();
  }

  private key(ev: KeyboardEvent) {
    const row = CELL;
    const page = Math.max(row, this.el.clientHeight - row);
    const by: Record<string, number> = { ArrowDown: row, ArrowUp: -row, PageDown: page, PageUp: -page };
    if (ev.key in by) this.el.scrollTop += by[ev.key];
    else if (ev.key === "Home") this.el.scrollTop = 0;
    else if (ev.key === "End") this.el.scrollTop = this.el.scrollHeight;
    else return;
    ev.preventDefault();
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
    const key = `${from}:${to}:${this.columns}`;
    if (key === this.drawn) return;
    this.drawn = key;
    this.list.style.transform = `translateY(${first * CELL}px)`;
    this.list.style.gridTemplateColumns = `repeat(${this.columns}, 1fr)`;
    const cells: HTMLElement[] = [];
    const want: string[] = [];
    for (let i = from; i < to; i++) {
      const id = this.items[i];
      cells.push(this.cell(id, i));
      if (!this.photos.has(id) && !this.asking.has(id)) want.push(id);
    }
    this.list.replaceChildren(...cells);
    this.el.dataset.from = String(from);
    this.el.dataset.to = String(to);
    this.ask(want);
    if (!this.firstPaint && cells.length) {
      this.firstPaint = true;
      // The grid's first frame with cells: the tests time the album from this mark.
      performance.mark("allpeers-album-grid");
      this.el.dataset.painted = "true";
    }
  }

  private cell(id: string, index: number): HTMLElement {
    const photo = this.photos.get(id);
    const cell = h("div", {
      role: "listitem",
      class: "album-cell",
      "data-item": id,
      "aria-posinset": index + 1,
      "aria-setsize": this.items.length,
    });
    if (photo) this.fill(cell, photo);
    else cell.dataset.state = "loading";
    return cell;
  }

  private fill(cell: HTMLElement, photo: Photo) {
    cell.replaceChildren();
    delete cell.dataset.pending;
    const name = visibleText(photo.name || "Photo");
    const picture = photo.url
      ? h("img", { src: photo.url, alt: name, loading: "lazy", decoding: "async", draggable: "false" })
      : h("span", { class: "album-none", text: name });
    cell.dataset.state = photo.url ? "ready" : "none";
    const fetch = this.fetch;
    if (fetch) {
      const id = cell.dataset.item ?? "";
      const b = h("button", { type: "button", class: "album-get", "data-action": "get", "aria-label": `Download ${name}` }, picture);
      b.addEventListener("click", () => fetch(id, name));
      cell.append(b);
    } else {
      cell.append(picture);
    }
    cell.title = fetch ? `${name} (click to download)` : name;
    const remove = this.remove;
    if (remove) {
      const id = cell.dataset.item ?? "";
      const busy = this.removing.has(id);
      if (busy) cell.dataset.pending = "true";
      const b = h("button", {
        type: "button",
        class: "album-remove",
        "data-action": "remove",
        "aria-label": `Remove ${name}`,
        title: busy ? "Removing…" : `Remove ${name}`,
        text: busy ? "…" : "×",
        ...(busy ? { disabled: "" } : {}),
      });
      b.addEventListener("click", () => {
        this.removing.add(id);
        this.fill(cell, photo);
        void remove(id, name).finally(() => {
          this.removing.delete(id);
          // Still listed (refused): the button comes back; removed: the next setItems drops the cell.
          const again = this.list.querySelector<HTMLElement>(`[data-item="${CSS.escape(id)}"]`);
          const p = this.photos.get(id);
          if (again && p) this.fill(again, p);
        });
      });
      cell.append(b);
    }
  }

  private ask(ids: string[]) {
    if (!ids.length) return;
    // The newest request goes first: what is in view now matters more than what scrolled past.
    this.queue = [...ids, ...this.queue.filter((id) => !ids.includes(id))];
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
      this.remember(id, this.photoOf(r));
    }
    this.show(now);
  }

  private photoOf(r: Resource): Photo {
    const p = r.properties;
    const name = typeof p.name === "string" ? p.name : typeof p.title === "string" ? p.title : "";
    const bytes = typeof p.thumbnail === "string" ? decodeBase64(p.thumbnail) : null;
    const mime = bytes ? imageMime(bytes) : "";
    // Only bytes that are a picture become one (anything else: the name, as text).
    const url = bytes && mime ? URL.createObjectURL(new Blob([bytes as BlobPart], { type: mime })) : "";
    return { name, url };
  }

  private remember(id: string, photo: Photo) {
    const old = this.photos.get(id);
    if (old?.url) URL.revokeObjectURL(old.url);
    this.photos.delete(id);
    this.photos.set(id, photo);
    // The oldest entries first (Map keeps insertion order); never those in view.
    if (this.photos.size <= CACHE) return;
    const inView = new Set(this.items.slice(Number(this.el.dataset.from ?? 0), Number(this.el.dataset.to ?? 0)));
    for (const [k, p] of this.photos) {
      if (this.photos.size <= CACHE) break;
      if (inView.has(k)) continue;
      if (p.url) URL.revokeObjectURL(p.url);
      this.photos.delete(k);
    }
  }

  /** Fills the cells in view that just got their photo (no redraw of the rest). */
  private show(ids: string[]) {
    for (const id of ids) {
      const photo = this.photos.get(id);
      if (!photo) continue;
      const cell = this.list.querySelector<HTMLElement>(`[data-item="${CSS.escape(id)}"]`);
      if (cell) this.fill(cell, photo);
    }
    this.el.dataset.loaded = String(this.list.querySelectorAll('[data-state="ready"], [data-state="none"]').length);
  }
}
