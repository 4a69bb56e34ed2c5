// Drag-and-share: files (or folders) dropped on the sidebar, or picked with "Share files…",
// become a shared List (an album when they are all Images) for the contacts or groups picked;
// dropped on an open conversation, they are shared with its people and announced in it;
// dropped on an album we may write (or picked with its "Add photos…"), they are added to it.
// A dropped File has no path on disk: its bytes go to the daemon in order, in bounded chunks
// (`files.import_start` / `_write`), into the node's imports folder; then `media.add`
// catalogues them (type, metadata, thumbnails; `media.progress` says when), `media.info`
// names their resources, and `lists.insert` + `shares.create` share them. One file and one
// chunk at a time, each an awaited call: the page stays responsive, and the progress (bytes,
// files) is drawn at most every 100 ms. A file the daemon refuses is listed with its reason;
// the others go on.

import type { Chat, MediaProgress, Resource, ShareMember } from "../lib/api.gen";
import { MAX_DROP_FILES, MEDIA_BATCH, chunkRanges, dropTitle, skipReason, toBase64 } from "../lib/drop";
import { Share, ShareLevel, formatBytes, visibleText } from "../lib/sharing";
import { Client, errorText } from "./client";
import { byId, clear, h } from "./dom";
import { acceptedContacts, nameOf } from "./people";

interface Picked {
  files: File[];
  /** Left out, with why (hidden files only counted). */
  skipped: { name: string; why: string }[];
  hidden: number;
  tooMany: boolean;
}

/** Where dropped files go: a new share, a conversation's new share, or an album's list. */
type Target =
  | { kind: "new"; name: string; members: ShareMember[] }
  | { kind: "chat"; chat: Chat; name: string; members: ShareMember[] }
  | { kind: "album"; share: Share };

interface Deps {
  show: (view: "shared" | "chat") => void;
  /** The conversation shown in Chat, if any: a drop on it shares with it. */
  shownChat: () => Chat | null;
  /** A share was made: the Shared panel shows it. */
  shared: (share: Share) => void;
  /** The share with this id, as the Shared panel has it. */
  shareOf: (id: string) => Share | undefined;
}

/** Walks what was dropped: files, and folders' files (depth-first), stopping past the limit. */
async function collect(items: DataTransferItemList | null, files: FileList | null): Promise<Picked> {
  const out: Picked = { files: [], skipped: [], hidden: 0, tooMany: false };
  const take = (f: File) => {
    if (out.files.length >= MAX_DROP_FILES) {
      out.tooMany = true;
      return;
    }
    const why = skipReason(f.name, f.size);
    if (why === "hidden") out.hidden++;
    else if (why) out.skipped.push({ name: f.name, why });
    else out.files.push(f);
  };
  // Entries must be taken while the drop event runs; they are read after.
  const entries = items ? [...items].map((i) => (i.kind === "file" ? i.webkitGetAsEntry?.() : null)) : [];
  if (!entries.some((e) => e?.isDirectory)) {
    for (const f of files ?? []) take(f);
    return out;
  }
  const fileOf = (e: FileSystemFileEntry) => new Promise<File>((resolve, reject) => e.file(resolve, reject));
  const readAll = async (dir: FileSystemDirectoryEntry) => {
    const reader = dir.createReader();
    const all: FileSystemEntry[] = [];
    for (;;) {
      const batch = await new Promise<FileSystemEntry[]>((resolve, reject) => reader.readEntries(resolve, reject));
      if (!batch.length) return all;
      all.push(...batch);
    }
  };
  const walk = async (e: FileSystemEntry): Promise<void> => {
    if (out.tooMany) return;
    if (e.name.startsWith(".")) {
      out.hidden++;
      return;
    }
    if (e.isFile) take(await fileOf(e as FileSystemFileEntry));
    else if (e.isDirectory) for (const child of await readAll(e as FileSystemDirectoryEntry)) await walk(child);
  };
  for (const e of entries) if (e) await walk(e);
  return out;
}

export function initDrop(client: Client, deps: Deps) {
  const body = document.body;
  const form = byId<HTMLFormElement>("drop-form");
  const summary = byId("drop-summary");
  const title = byId<HTMLInputElement>("drop-title");
  const who = byId("drop-members");
  const level = byId<HTMLSelectElement>("drop-level");
  const submit = byId<HTMLButtonElement>("drop-share");
  const cancel = byId<HTMLButtonElement>("drop-cancel");
  const out = byId("drop-result");
  const progress = byId<HTMLProgressElement>("drop-progress");
  const status = byId("drop-status");
  const picker = byId<HTMLInputElement>("drop-input");
  const pickButton = byId<HTMLButtonElement>("share-files");
  let picked: Picked | null = null;
  let busy = false;
  /** Jobs' last `media.progress`, by job (an event can come before `media.add` answers). */
  const jobs = new Map<number, MediaProgress>();
  const jobWaiters = new Map<number, () => void>();
  client.on("media.progress", (p) => {
    jobs.set(p.job, p);
    if (p.finished) jobWaiters.get(p.job)?.();
  });

  // ------------------------------------------------------------ dragging over the panel

  const hasFiles = (ev: DragEvent) => [...(ev.dataTransfer?.types ?? [])].includes("Files");
  let depth = 0;
  addEventListener("dragenter", (ev) => {
    if (!hasFiles(ev)) return;
    ev.preventDefault();
    depth++;
    body.dataset.dragging = deps.shownChat() ? "chat" : "panel";
  });
  addEventListener("dragover", (ev) => {
    if (!hasFiles(ev)) return;
    ev.preventDefault();
    if (ev.dataTransfer) ev.dataTransfer.dropEffect = busy ? "none" : "copy";
  });
  addEventListener("dragleave", () => {
    depth = Math.max(0, depth - 1);
    if (!depth) delete body.dataset.dragging;
  });
  addEventListener("drop", (ev) => {
    if (!hasFiles(ev)) return;
    ev.preventDefault();
    depth = 0;
    delete body.dataset.dragging;
    const chat = deps.shownChat();
    const album = albumAt(ev.target);
    const collecting = collect(ev.dataTransfer?.items ?? null, ev.dataTransfer?.files ?? null);
    void collecting.then((p) => (chat ? void shareInChat(chat, p) : album ? void addToAlbum(album, p) : offer(p)));
  });

  /** The album card (one we may write) under a drop, if any. */
  function albumAt(target: EventTarget | null): Share | null {
    const li = target instanceof Element ? target.closest<HTMLElement>('li.share[data-album="true"][data-writable="true"]') : null;
    return (li && deps.shareOf(li.dataset.share ?? "")) || null;
  }

  // The keyboard's way to the same thing: a file picker (for a new share, or for an album's "Add photos…").
  let pickingFor: Share | null = null;
  pickButton.addEventListener("click", () => {
    pickingFor = null;
    picker.click();
  });
  picker.addEventListener("change", () => {
    const files = picker.files;
    const album = pickingFor;
    pickingFor = null;
    void collect(null, files).then((p) => {
      picker.value = "";
      if (album) void addToAlbum(album, p);
      else offer(p);
    });
  });

  // ------------------------------------------------------------ the form: whom to share with

  function describe(p: Picked): string {
    const bytes = p.files.reduce((n, f) => n + f.size, 0);
    const parts = [`${p.files.length} ${p.files.length === 1 ? "file" : "files"}, ${formatBytes(bytes)}`];
    if (p.hidden) parts.push(`${p.hidden} hidden left out`);
    if (p.skipped.length) parts.push(`${p.skipped.length} left out`);
    if (p.tooMany) parts.push(`only the first ${MAX_DROP_FILES.toLocaleString("en")} are taken`);
    return parts.join("; ");
  }

  function skippedList(p: Picked): HTMLElement | null {
    if (!p.skipped.length) return null;
    const ul = h("ul", { class: "drop-skipped", "aria-label": "Files left out" });
    for (const s of p.skipped.slice(0, 20)) ul.append(h("li", { text: `${visibleText(s.name)}: ${s.why}` }));
    if (p.skipped.length > 20) ul.append(h("li", { text: `and ${p.skipped.length - 20} more` }));
    return ul;
  }

  async function drawWho() {
    clear(who);
    who.append(h("legend", { text: "Share with" }));
    let groups: Chat[] = [];
    try {
      groups = (await client.call("chat.list")).filter((c) => c.group);
    } catch {
      /* no groups offered: contacts still are */
    }
    const contacts = acceptedContacts();
    if (!contacts.length && !groups.length) who.append(h("p", { class: "muted", text: "No contacts yet: add one in People first." }));
    for (const g of groups) {
      const id = `drop-pick-${g.id}`;
      who.append(
        h(
          "div",
          { class: "row member-pick" },
          h("input", { type: "checkbox", id, value: g.id, "data-group": "true", "data-members": JSON.stringify(g.participants) }),
          h("label", { for: id, class: "grow" }, h("bdi", { text: `${visibleText(g.title || "Group")} (group)` })),
        ),
      );
    }
    for (const c of contacts) {
      const id = `drop-pick-${c.peer_id}`;
      who.append(
        h(
          "div",
          { class: "row member-pick" },
          h("input", { type: "checkbox", id, value: c.peer_id }),
          h("label", { for: id, class: "grow" }, h("bdi", { text: visibleText(nameOf(c.peer_id)) })),
        ),
      );
    }
  }

  function offer(p: Picked) {
    if (busy) return;
    deps.show("shared");
    picked = p;
    out.textContent = "";
    status.textContent = "";
    progress.hidden = true;
    clear(summary);
    summary.append(h("span", { text: describe(p) }));
    const skipped = skippedList(p);
    if (skipped) summary.append(skipped);
    title.value = dropTitle(p.files.map((f) => f.name));
    form.hidden = false;
    submit.disabled = !p.files.length;
    body.dataset.drop = "picking";
    void drawWho().then(() => title.focus());
  }

  function close() {
    form.hidden = true;
    picked = null;
    delete body.dataset.drop;
    pickButton.focus();
  }
  cancel.addEventListener("click", () => {
    if (!busy) close();
  });
  form.addEventListener("keydown", (ev) => {
    if (ev.key === "Escape" && !busy) {
      ev.preventDefault();
      close();
    }
  });
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    if (!picked || busy) return;
    const peers = new Set<string>();
    for (const cb of who.querySelectorAll<HTMLInputElement>("input:checked")) {
      if (cb.dataset.group) for (const p of JSON.parse(cb.dataset.members ?? "[]") as string[]) peers.add(p);
      else peers.add(cb.value);
    }
    peers.delete(body.dataset.peerId ?? "");
    if (!peers.size) {
      out.textContent = "Pick at least one contact or group to share with.";
      return;
    }
    const name = title.value.trim() || dropTitle(picked.files.map((f) => f.name));
    const members = [...peers].map((peer) => ({ peer, level: level.value as ShareLevel }));
    void run(picked, { kind: "new", name, members });
  });

  // ------------------------------------------------------------ doing it

  async function shareInChat(chat: Chat, p: Picked) {
    if (busy) return;
    const peers = chat.participants.filter((x) => x !== body.dataset.peerId);
    const line = byId("conv-drop-status");
    if (!p.files.length) {
      line.textContent = `Nothing to share: ${describe(p)}.`;
      return;
    }
    const members = peers.map((peer) => ({ peer, level: "read" as ShareLevel }));
    await run(p, { kind: "chat", chat, name: dropTitle(p.files.map((f) => f.name)), members });
  }

  async function addToAlbum(share: Share, p: Picked) {
    if (busy) return;
    if (!p.files.length) {
      line({ kind: "album", share }).textContent = `Nothing to add: ${describe(p)}.`;
      return;
    }
    await run(p, { kind: "album", share });
  }

  /** The status line of a conversation or an album card (the form has its own). */
  function line(target: Target): HTMLElement {
    if (target.kind === "album") {
      const el = document.querySelector<HTMLElement>(`li.share[data-share="${CSS.escape(target.share.id)}"] .share-result`);
      if (el) {
        el.className = "muted share-result";
        return el;
      }
    }
    return byId("conv-drop-status");
  }

  /** Where progress shows: the form in Shared, else the conversation's or the album's status line. */
  function report(target: Target, text: string, done?: number, total?: number) {
    if (target.kind !== "new") {
      line(target).textContent = text;
      return;
    }
    status.textContent = text;
    if (total !== undefined && done !== undefined) {
      progress.hidden = false;
      progress.max = Math.max(1, total);
      progress.value = done;
      progress.setAttribute("aria-valuetext", text);
    }
  }

  async function run(p: Picked, target: Target) {
    const name = target.kind === "album" ? target.share.title || "the album" : target.name;
    busy = true;
    submit.disabled = true;
    body.dataset.drop = "sharing";
    const total = p.files.reduce((n, f) => n + f.size, 0) || 1;
    let sent = 0;
    let lastDraw = 0;
    const draw = (text: string, force = false) => {
      const now = performance.now();
      if (!force && now - lastDraw < 100) return;
      lastDraw = now;
      report(target, text, sent, total);
    };
    const failed: { name: string; why: string }[] = [];
    const paths: string[] = [];
    try {
      // 1. The bytes, file by file, chunk by chunk.
      for (const [i, f] of p.files.entries()) {
        draw(`Sending ${i + 1} of ${p.files.length}: ${visibleText(f.name)} (${formatBytes(sent)} of ${formatBytes(total)})`);
        try {
          paths.push(await importFile(f, (n) => {
            sent += n;
            draw(`Sending ${i + 1} of ${p.files.length}: ${visibleText(f.name)} (${formatBytes(sent)} of ${formatBytes(total)})`);
          }));
        } catch (e) {
          failed.push({ name: f.name, why: errorText(e) });
        }
      }
      if (!paths.length) throw new Error(failed[0] ? `${visibleText(failed[0].name)}: ${failed[0].why}` : "nothing to share");
      // 2. Catalogued: type, metadata, thumbnails.
      for (let i = 0; i < paths.length; i += MEDIA_BATCH) {
        const batch = paths.slice(i, i + MEDIA_BATCH);
        draw(`Describing ${Math.min(paths.length, i + batch.length)} of ${paths.length} (type, metadata, thumbnails)…`, true);
        const { job } = await client.call("media.add", { paths: batch }, 60_000);
        await finished(job);
      }
      // 3. Their resources.
      const ids: Resource[] = [];
      for (const [i, path] of paths.entries()) {
        draw(`Adding ${i + 1} of ${paths.length} to “${visibleText(name)}”…`);
        try {
          ids.push(await client.call("media.info", { path }));
        } catch (e) {
          failed.push({ name: path.split("/").pop() ?? path, why: errorText(e) });
        }
      }
      const count = (n: number) => `${n} ${n === 1 ? "file" : "files"}`;
      // 4. Into the album's list, or a new list (an album when they are all Images) then shared.
      let list: string;
      let inserted = ids;
      if (target.kind === "album") {
        // Only photos go into an album; anything else is said, not added.
        inserted = ids.filter((r) => r.type === "Image");
        for (const r of ids) if (r.type !== "Image") failed.push({ name: String(r.properties.name ?? r.id), why: "not a photo" });
        list = target.share.resource;
      } else {
        const album = ids.length > 0 && ids.every((r) => r.type === "Image");
        const made = await client.call("resources.create", {
          resource: { id: "", type: "List", properties: album ? { title: name, itemType: "Image" } : { title: name } },
        });
        list = made.id;
      }
      for (const [i, r] of inserted.entries()) {
        draw(`Adding ${i + 1} of ${inserted.length} to “${visibleText(name)}”…`);
        await client.call("lists.insert", { list, item: r.id });
      }
      if (target.kind !== "album") {
        draw(`Sharing “${visibleText(name)}”…`, true);
        deps.shared(await client.call("shares.create", { resource: list, members: target.members }, 60_000));
      }
      if (target.kind === "chat") {
        await client.call("chat.send", {
          chat: target.chat.id,
          body: `Shared “${name}”: ${count(ids.length)} (in Shared)`,
        });
      }
      const note = failed.length ? `; ${failed.length} not shared (${failed.slice(0, 3).map((f) => `${visibleText(f.name)}: ${f.why}`).join("; ")})` : "";
      const done = target.kind === "album" ? `Added ${count(inserted.length)} to “${visibleText(name)}”${note}.` : `Shared “${visibleText(name)}” (${count(ids.length)})${note}.`;
      report(target, done, total, total);
      body.dataset.drop = "done";
      if (target.kind === "new") {
        form.hidden = true;
        picked = null;
        byId("drop-done").textContent = done;
        pickButton.focus();
      }
    } catch (e) {
      body.dataset.drop = "failed";
      const text = `${target.kind === "album" ? "Not added" : "Not shared"}: ${errorText(e)}`;
      if (target.kind === "new") out.textContent = text;
      else {
        const el = line(target);
        el.textContent = text;
        if (target.kind === "album") el.className = "error share-result";
      }
    } finally {
      busy = false;
      submit.disabled = false;
    }
  }

  /** Sends one file's bytes in order; answers its path in the node. */
  async function importFile(f: File, sentBytes: (n: number) => void): Promise<string> {
    const started = await client.call("files.import_start", { name: f.name, size: f.size });
    if (started.path) return started.path;
    try {
      for (const [a, b] of chunkRanges(f.size)) {
        const bytes = new Uint8Array(await f.slice(a, b).arrayBuffer());
        const s = await client.call("files.import_write", { import: started.import, offset: a, data: toBase64(bytes) }, 60_000);
        sentBytes(b - a);
        if (s.path) return s.path;
      }
    } catch (e) {
      void client.call("files.import_cancel", { import: started.import }).catch(() => {});
      throw e;
    }
    throw new Error("the daemon did not finish the file");
  }

  /** Waits for a media job's last `media.progress` (bounded: 10 minutes). */
  function finished(job: number): Promise<void> {
    if (jobs.get(job)?.finished) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        jobWaiters.delete(job);
        reject(new Error("describing the files took more than 10 minutes"));
      }, 600_000);
      jobWaiters.set(job, () => {
        clearTimeout(timer);
        jobWaiters.delete(job);
        resolve();
      });
    });
  }

  return {
    /** "Add photos…" of an album: the file picker, its files added to `share`. */
    pickInto(share: Share) {
      if (busy) return;
      pickingFor = share;
      picker.click();
    },
  };
}
