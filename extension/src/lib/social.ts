// Small pure helpers on the contacts/presence/chat API's shapes, shared by the panel, the
// share page and the background. The shapes themselves are generated (api.gen.ts).

import type { Contact, Message, ReceiptKind, Resource, TopicName } from "./api.gen";

export type { Chat, Contact, Message, Presence, PresenceState } from "./api.gen";

/** The topics the extension subscribes to (those the daemon serves). */
export const SOCIAL_TOPICS: TopicName[] = [
  "hub.changed",
  "presence.changed",
  "contact.request",
  "contact.changed",
  "message.received",
  "message.updated",
  "chat.receipt",
  "chat.typing",
  "chat.changed",
];

/**
 * The URL as a string if it may be made clickable: http and https only. Anything else
 * (javascript:, data:, file:, chrome:, garbage) is shown as text and never linked.
 */
export function safeHttpUrl(raw: unknown): string | null {
  if (typeof raw !== "string") return null;
  let url: URL;
  try {
    url = new URL(raw.trim());
  } catch {
    return null;
  }
  return url.protocol === "http:" || url.protocol === "https:" ? url.href : null;
}

/** A URL the share menu may send: the daemon refuses other schemes too. */
export function shareableUrl(raw: unknown): boolean {
  return safeHttpUrl(raw) !== null;
}

/** What to show for a message's link card in one line: its title, else its URL. */
export function linkLabel(link: Resource | null): string {
  for (const v of [link?.properties.title, link?.properties.url]) {
    if (typeof v === "string" && v) return v;
  }
  return "";
}

/** Short form of a PeerId for display where no name is known. */
export function shortPeer(peerId: string): string {
  return peerId.length > 14 ? `${peerId.slice(0, 8)}…${peerId.slice(-4)}` : peerId;
}

export function contactName(c: Pick<Contact, "peer_id" | "name" | "nickname" | "title">): string {
  return c.nickname || c.name || c.title || shortPeer(c.peer_id);
}

export type DeliveryStatus = "sending" | "sent" | "delivered" | "read";

/** Where an outgoing message is: every recipient read it, got it, or it left us. */
export function deliveryStatus(m: Pick<Message, "pending" | "receipts">, recipients: number): DeliveryStatus {
  const n = Math.max(recipients, 1);
  const read = m.receipts.filter((r) => r.read).length;
  const delivered = m.receipts.filter((r) => r.delivered || r.read).length;
  if (read >= n) return "read";
  if (delivered >= n) return "delivered";
  if (m.pending.length === 0) return "sent";
  return "sending";
}

/**
 * Applies a `chat.receipt` event to a message (returns whether it changed): `delivered`
 * and `read` from the peer; `queued` (it waits in the peer's mailbox at the hub) only
 * means it left us. Other kinds are ignored.
 */
export function applyReceipt(m: Message, peer: string, kind: ReceiptKind | string): boolean {
  if (kind !== "delivered" && kind !== "read" && kind !== "queued") return false;
  const pendingBefore = m.pending.length;
  m.pending = m.pending.filter((p) => p !== peer);
  if (kind === "queued") return m.pending.length !== pendingBefore;
  let r = m.receipts.find((x) => x.peer_id === peer);
  if (!r) {
    r = { peer_id: peer, delivered: false, read: false };
    m.receipts.push(r);
  }
  const before = `${r.delivered}${r.read}`;
  r.delivered = true;
  if (kind === "read") r.read = true;
  return before !== `${r.delivered}${r.read}` || m.pending.length !== pendingBefore;
}

/** Calls `fn` at most once per `ms` (the first call goes through at once). */
export function throttle(ms: number, fn: () => void, now: () => number = Date.now): () => boolean {
  let last = -Infinity;
  return () => {
    const t = now();
    if (t - last < ms) return false;
    last = t;
    fn();
    return true;
  };
}
