// Pure helpers for the Shared and Transfers panels (and the background's badge): the
// topics, how numbers read (bytes, rates, ETA, percent), transfer totals, and names from
// the network made safe to show (bidi controls made visible). The shapes are generated
// (api.gen.ts).

import type { Share, ShareLevel, TopicName, Transfer, TransferProgress, TransferState } from "./api.gen";

export type { Share, ShareLevel, ShareMember, Transfer, TransferProgress, TransferState } from "./api.gen";

/** The topics of shares and transfers the extension subscribes to (those the daemon serves). */
export const SHARING_TOPICS: TopicName[] = [
  "share.received",
  "share.changed",
  "sync.progress",
  "media.progress",
  "transfer.added",
  "transfer.progress",
  "transfer.changed",
  "transfer.removed",
];

const UNITS = ["B", "KiB", "MiB", "GiB", "TiB"];

/** 1536 → "1.5 KiB"; whole bytes below 1 KiB. */
export function formatBytes(n: number): string {
  if (!Number.isFinite(n) || n < 0) return "—";
  let i = 0;
  let v = n;
  while (v >= 1024 && i < UNITS.length - 1) {
    v /= 1024;
    i++;
  }
  return i === 0 ? `${v} B` : `${v >= 100 ? v.toFixed(0) : v.toFixed(1)} ${UNITS[i]}`;
}

export function formatRate(bytesPerSec: number): string {
  return `${formatBytes(bytesPerSec)}/s`;
}

/** Seconds left in words: "45 s", "3 min 5 s", "2 h 10 min"; "—" when unknown. */
export function formatEta(secs: number | null | undefined): string {
  if (secs === null || secs === undefined || !Number.isFinite(secs) || secs < 0) return "—";
  const s = Math.round(secs);
  if (s < 60) return `${s} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ${s % 60} s`;
  const h = Math.floor(m / 60);
  if (h < 48) return `${h} h ${m % 60} min`;
  return `${Math.floor(h / 24)} days`;
}

/** Whole percent done, 0–100; 100 only when every byte is there. */
export function percentDone(p: Pick<TransferProgress, "total_bytes" | "done_bytes">): number {
  if (p.total_bytes <= 0) return 0;
  if (p.done_bytes >= p.total_bytes) return 100;
  return Math.min(99, Math.floor((p.done_bytes / p.total_bytes) * 100));
}

/** States in which a transfer is moving data or about to (the badge counts them). */
export const RUNNING: ReadonlySet<TransferState> = new Set<TransferState>(["queued", "fetching_metadata", "downloading", "retrying"]);

export interface TransferTotals {
  count: number;
  /** Downloads not finished and not failed or paused: queued, downloading, retrying. */
  running: number;
  seeding: number;
  paused: number;
  failed: number;
  downRate: number;
  upRate: number;
  /** Bytes still to download across running transfers. */
  remaining: number;
}

export function transferTotals(list: Iterable<Transfer>): TransferTotals {
  const t: TransferTotals = { count: 0, running: 0, seeding: 0, paused: 0, failed: 0, downRate: 0, upRate: 0, remaining: 0 };
  for (const x of list) {
    t.count++;
    if (RUNNING.has(x.state)) {
      t.running++;
      t.remaining += Math.max(0, x.progress.total_bytes - x.progress.done_bytes);
    }
    if (x.state === "seeding") t.seeding++;
    if (x.state === "paused") t.paused++;
    if (x.state === "failed") t.failed++;
    t.downRate += x.progress.down_rate;
    t.upRate += x.progress.up_rate;
  }
  return t;
}

// Bidi controls (embeddings, overrides, isolates, marks) can make a name read backwards or
// hide part of it. They are shown as visible markers instead.
const BIDI = /[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]/g;

/** Text from the network for display: bidi controls shown as `[U+202E]`, nothing else changed. */
export function visibleText(s: string): string {
  return s.replace(BIDI, (c) => `[U+${c.charCodeAt(0).toString(16).toUpperCase().padStart(4, "0")}]`);
}

export const LEVEL_WORDS: Record<ShareLevel, string> = {
  read: "can view",
  write: "can edit",
  admin: "admin",
};

/** May we change the share's resources (items, title)? */
export function canWrite(s: Pick<Share, "level" | "state">): boolean {
  return s.state === "accepted" && (s.level === "write" || s.level === "admin");
}

/** May we add and revoke members? */
export function isAdmin(s: Pick<Share, "level" | "state">): boolean {
  return s.state === "accepted" && s.level === "admin";
}

/** The share list's order: offers first (they wait for an answer), then by title. */
export function shareOrder(a: Share, b: Share): number {
  if (a.state !== b.state) return a.state === "offered" ? -1 : 1;
  return a.title.localeCompare(b.title) || a.id.localeCompare(b.id);
}

// ------------------------------------------------------------------ bandwidth limits

const RATE_UNITS: Record<string, number> = {
  b: 1,
  kb: 1000,
  kib: 1024,
  mb: 1000 ** 2,
  mib: 1024 ** 2,
  gb: 1000 ** 3,
  gib: 1024 ** 3,
};
/** The smallest limit the panel accepts (below it a transfer would all but stop). */
export const MIN_RATE = 1024;
/** The largest: 1 TiB/s, far above any link (and exact in a JSON number). */
export const MAX_RATE = 1024 ** 4;

export type ParsedRate = { ok: true; value: number | null } | { ok: false; reason: string };

/**
 * A rate typed by a person → bytes per second. Empty, "none", "no limit" or "unlimited" →
 * `null` (no limit). Numbers need a unit: "2 MiB/s", "500 KiB/s", "1.5 MB/s", "800 kB", "1 GiB/s"
 * (binary units are 1024-based, decimal ones 1000-based; "/s" optional; "K", "M", "G" alone
 * read as KiB, MiB, GiB). Refused: a bare number, an unknown unit, 0 or negative, under 1 KiB/s,
 * over 1 TiB/s.
 */
export function parseRate(input: string): ParsedRate {
  const s = input.trim().toLowerCase().replace(/\s+/g, " ");
  if (s === "" || s === "none" || s === "no limit" || s === "unlimited" || s === "∞") return { ok: true, value: null };
  const m = /^(\d+(?:[.,]\d+)?)\s*([a-z]*)\s*(?:\/\s*s|ps)?$/.exec(s);
  if (!m) return { ok: false, reason: "Write a rate such as “2 MiB/s” or “500 KiB/s”, or leave it empty for no limit." };
  const n = Number(m[1].replace(",", "."));
  let unit = m[2];
  if (unit === "") return { ok: false, reason: `Say the unit, e.g. “${m[1]} MiB/s” or “${m[1]} KiB/s”.` };
  if (unit === "k" || unit === "m" || unit === "g") unit = `${unit}ib`;
  if (unit === "bytes" || unit === "byte") unit = "b";
  const factor = RATE_UNITS[unit];
  if (!factor) return { ok: false, reason: `Unknown unit “${m[2]}”: use B, KiB, MiB or GiB (or kB, MB, GB) per second.` };
  const value = Math.round(n * factor);
  if (!(value > 0)) return { ok: false, reason: "A limit must be more than 0; leave it empty for no limit." };
  if (value < MIN_RATE) return { ok: false, reason: "The smallest limit is 1 KiB/s." };
  if (value > MAX_RATE) return { ok: false, reason: "That is more than 1 TiB/s; leave it empty for no limit." };
  return { ok: true, value };
}

/** A limit for its input box: `null` → "" (no limit); whole units where they fit ("2 MiB/s"). */
export function formatLimit(bytesPerSec: number | null | undefined): string {
  if (bytesPerSec === null || bytesPerSec === undefined) return "";
  for (const [unit, f] of [["GiB", 1024 ** 3], ["MiB", 1024 ** 2], ["KiB", 1024]] as const) {
    if (bytesPerSec >= f && bytesPerSec % f === 0) return `${bytesPerSec / f} ${unit}/s`;
  }
  for (const [unit, f] of [["GB", 1000 ** 3], ["MB", 1000 ** 2], ["kB", 1000]] as const) {
    if (bytesPerSec >= f && bytesPerSec % f === 0) return `${bytesPerSec / f} ${unit}/s`;
  }
  return bytesPerSec >= 1024 ? `${Math.round((bytesPerSec / 1024) * 100) / 100} KiB/s` : `${bytesPerSec} B/s`;
}

/** How a limit reads in a sentence: "no limit" or "2 MiB/s". */
export function limitWords(bytesPerSec: number | null | undefined): string {
  return bytesPerSec === null || bytesPerSec === undefined ? "no limit" : formatLimit(bytesPerSec);
}

// ------------------------------------------------------------------ "Download with AllPeers"

/** The largest .torrent the background fetches (a torrent of a huge file is a few MiB at most). */
export const MAX_TORRENT_BYTES = 10 * 1024 * 1024;

/**
 * What a link offered to "Download with AllPeers" is: a magnet link (not supported yet: the
 * daemon refuses them), an http(s) URL to fetch (normally one ending in .torrent), or
 * something else (refused: file:, data:, javascript:, …).
 */
export function downloadLinkKind(raw: string): "magnet" | "http" | "refused" {
  const s = raw.trim();
  if (/^magnet:/i.test(s)) return "magnet";
  try {
    const u = new URL(s);
    return u.protocol === "http:" || u.protocol === "https:" ? "http" : "refused";
  } catch {
    return "refused";
  }
}

/** Does the URL's path end in .torrent (what the menu item is shown on)? */
export function looksLikeTorrent(raw: string): boolean {
  try {
    return /\.torrent$/i.test(new URL(raw).pathname);
  } catch {
    return false;
  }
}

export class TooLarge extends Error {}

/**
 * A response's body, at most `max` bytes: refused at once when Content-Length says more,
 * and stopped (the stream cancelled) as soon as more arrive than that.
 */
export async function readBounded(response: Response, max: number): Promise<Uint8Array> {
  const declared = Number(response.headers.get("content-length") ?? "");
  if (Number.isFinite(declared) && declared > max) {
    await response.body?.cancel().catch(() => {});
    throw new TooLarge(`it is ${formatBytes(declared)}, more than ${formatBytes(max)}`);
  }
  if (!response.body) return new Uint8Array(await response.arrayBuffer());
  const reader = response.body.getReader();
  const parts: Uint8Array[] = [];
  let total = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    total += value.byteLength;
    if (total > max) {
      await reader.cancel().catch(() => {});
      throw new TooLarge(`it is more than ${formatBytes(max)}`);
    }
    parts.push(value);
  }
  const out = new Uint8Array(total);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.byteLength;
  }
  return out;
}

/** Bytes → base64 (native where the browser has it, else in chunks through btoa). */
export function toBase64(bytes: Uint8Array): string {
  const native = (bytes as Uint8Array & { toBase64?: () => string }).toBase64;
  if (typeof native === "function") return native.call(bytes);
  let bin = "";
  for (let i = 0; i < bytes.length; i += 0x8000) bin += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(bin);
}
