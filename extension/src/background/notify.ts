// The toolbar badge (unread messages across conversations; else "↓N" while N transfers
// run) and notifications for new messages, contact requests and shares offered while no
// AllPeers page (sidebar, share window) is open.
// Text from peers goes into notifications as plain text (the browser does not parse it).

import { Connection } from "../lib/connection";
import { Chat, Contact, Message, contactName, linkLabel, shortPeer } from "../lib/social";
import { ShareReceived } from "../lib/api.gen";
import { Transfer, transferTotals } from "../lib/sharing";

let connection: Connection | null = null;
const ICON = "icons/icon-128.png";

export function setupNotifications(c: Connection) {
  connection = c;
  chrome.notifications?.onClicked.addListener((id) => {
    chrome.notifications.clear(id);
    openSidebar();
  });
}

function openSidebar() {
  // Both need a user gesture; a click on a notification counts in Firefox, and in
  // Chromium only sometimes: failing quietly leaves the notification's text as the news.
  const sidePanel = (chrome as unknown as { sidePanel?: typeof chrome.sidePanel }).sidePanel;
  const browserApi = (globalThis as unknown as { browser?: { sidebarAction?: { open(): Promise<void> } } }).browser;
  if (sidePanel) {
    chrome.windows.getLastFocused((w) => {
      if (w?.id !== undefined) sidePanel.open({ windowId: w.id }).catch(() => {});
    });
  } else {
    browserApi?.sidebarAction?.open().catch(() => {});
  }
}

let badgeRun: Promise<void> | null = null;
let badgeAgain = false;
let badgeTimer: ReturnType<typeof setTimeout> | null = null;
/** A burst of messages re-reads the counts a few times a second, not once per message. */
const BADGE_EVERY_MS = 250;

/** Schedules a badge refresh (trailing, at most one per BADGE_EVERY_MS). */
export function badgeSoon() {
  if (badgeTimer) return;
  badgeTimer = setTimeout(() => {
    badgeTimer = null;
    void refreshBadge();
  }, BADGE_EVERY_MS);
}

/** Re-reads the unread counts and shows their sum on the toolbar button. */
export async function refreshBadge(): Promise<void> {
  if (badgeRun) {
    badgeAgain = true;
    return badgeRun;
  }
  badgeRun = (async () => {
    do {
      badgeAgain = false;
      try {
        const chats = (await connection?.request("chat.list", {})) as Chat[] | undefined;
        const unread = (chats ?? []).reduce((n, c) => n + (c.unread || 0), 0);
        const list = (await connection?.request("transfers.list", {}).catch(() => [])) as Transfer[] | undefined;
        const running = transferTotals(list ?? []).running;
        // Known from now on (a state already in the map came from an event: newer).
        for (const t of list ?? []) if (!transferStates.has(t.id)) transferStates.set(t.id, t);
        const text = unread ? (unread > 99 ? "99+" : String(unread)) : running ? `↓${running > 9 ? "9+" : running}` : "";
        const title = [unread ? `${unread} unread` : "", running ? `${running} ${running === 1 ? "transfer" : "transfers"} running` : ""]
          .filter(Boolean)
          .join(", ");
        await chrome.action.setBadgeBackgroundColor({ color: unread || !running ? "#1f5fbf" : "#1d7a3c" });
        await chrome.action.setBadgeText({ text });
        await chrome.action.setTitle({ title: title ? `AllPeers: ${title}` : "AllPeers" });
      } catch {
        // Not connected, or the node is offline: keep what the badge shows.
      }
    } while (badgeAgain);
  })();
  try {
    await badgeRun;
  } finally {
    badgeRun = null;
  }
}

async function nameOf(peer: string): Promise<string> {
  try {
    const list = (await connection?.request("contacts.list", {})) as Contact[];
    const c = list.find((x) => x.peer_id === peer);
    if (c) return contactName(c);
  } catch {
    /* the PeerId will do */
  }
  return shortPeer(peer);
}

export function show(id: string, title: string, message: string) {
  chrome.notifications?.create(id, {
    type: "basic",
    iconUrl: chrome.runtime.getURL(ICON),
    title: title.slice(0, 200),
    message: message.slice(0, 500),
  });
}

/** The transfers' last known states, for "Download finished" (a move to seeding from a download). */
const transferStates = new Map<number, Pick<Transfer, "name" | "state" | "seed_in_place">>();

/** Every event from the host passes here; `panelOpen` says whether a page shows it already. */
export function notify(topic: string, data: unknown, panelOpen: boolean) {
  if (topic.startsWith("transfer.")) {
    transferEvent(topic, data, panelOpen);
    return;
  }
  if (topic === "message.received") {
    const m = data as Message;
    if (m.outgoing) return;
    badgeSoon();
    if (panelOpen) return;
    void nameOf(m.sender).then((name) => {
      const text = m.body || linkLabel(m.link) || "(a message)";
      show(`allpeers-chat-${m.chat}`, name, text);
    });
  } else if (topic === "chat.changed") {
    badgeSoon();
  } else if (topic === "share.received") {
    if (panelOpen) return;
    const r = data as ShareReceived;
    void nameOf(r.from).then((name) => show(`allpeers-share-${r.share}`, "Shared with you", `${name} shared “${r.title}”`));
  } else if (topic === "contact.request") {
    if (panelOpen) return;
    const r = data as { peer_id: string; message?: string; contact?: Contact };
    const name = r.contact ? contactName(r.contact) : shortPeer(r.peer_id);
    show(
      `allpeers-request-${r.peer_id}`,
      "Contact request",
      r.message ? `${name}: “${r.message}”` : `${name} would like to be your contact`,
    );
  }
}

/** The badge follows the running transfers; a download that completes raises "Download finished". */
function transferEvent(topic: string, data: unknown, panelOpen: boolean) {
  if (topic === "transfer.progress") return;
  badgeSoon();
  if (topic === "transfer.added") {
    const t = data as Transfer;
    transferStates.set(t.id, t);
  } else if (topic === "transfer.removed") {
    transferStates.delete((data as { id: number }).id);
  } else if (topic === "transfer.changed") {
    const d = data as { id: number; state: Transfer["state"] };
    const before = transferStates.get(d.id);
    if (!before) return;
    if (d.state === "seeding" && before.state !== "seeding" && !before.seed_in_place && !panelOpen) {
      show(`allpeers-transfer-${d.id}`, "Download finished", before.name);
    }
    transferStates.set(d.id, { ...before, state: d.state });
  }
}
