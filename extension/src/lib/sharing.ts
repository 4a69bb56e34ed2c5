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
export const RUNNING: ReadonlySet<TransferState> = new Set<TransferState>(["queued", "downloading", "retrying"]);

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
