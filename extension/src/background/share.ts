// The context menu ("Share page / link / selection with AllPeers…", "Download with AllPeers").
// The share items open the share window (share.html, a small popup window, not an overlay
// in the page) with the page's or link's URL and title (and the selected text), where the
// user picks shared lists they may write (the link goes in as a Link resource) and contacts
// or groups (a chat message with a link card). The download item fetches a .torrent link
// and hands it to the daemon (download.ts).

import { shareableUrl } from "../lib/social";
import { downloadFromMenu } from "./download";

/** Kept for the old single item's id: "Share page with AllPeers…". */
export const MENU_ID = "allpeers-share";
export const MENU_SHARE_PAGE = MENU_ID;
export const MENU_SHARE_LINK = "allpeers-share-link";
export const MENU_SHARE_SELECTION = "allpeers-share-selection";
export const MENU_DOWNLOAD = "allpeers-download";
export const MENU_DOWNLOAD_MAGNET = "allpeers-download-magnet";

export interface MenuInfo {
  menuItemId?: string | number;
  linkUrl?: string;
  linkText?: string;
  selectionText?: string;
  pageUrl?: string;
}
type Tab = { url?: string; title?: string };

/** Links the download item is offered on (match patterns: the path ends in .torrent). */
const TORRENT_PATTERNS = ["*://*/*.torrent", "*://*/*.torrent?*", "*://*/*.TORRENT"];

/** Firefox's menus API has onShown/refresh (to show an item only on some links). */
type FirefoxMenus = { onShown: { addListener(fn: (info: { linkUrl?: string }) => void): void }; refresh(): void };

export function setupShareMenu() {
  const menus = chrome.contextMenus;
  if (!menus) return;
  const maybe = menus as unknown as Partial<FirefoxMenus>;
  const firefoxMenus = maybe.onShown && maybe.refresh ? (maybe as FirefoxMenus) : null;
  const ignore = () => void chrome.runtime.lastError; // e.g. created twice during a restart
  // Menus outlive the background in both browsers; recreate them so an update applies.
  menus.removeAll(() => {
    menus.create({ id: MENU_SHARE_PAGE, title: "Share page with AllPeers…", contexts: ["page"] }, ignore);
    menus.create({ id: MENU_SHARE_LINK, title: "Share link with AllPeers…", contexts: ["link"] }, ignore);
    menus.create({ id: MENU_SHARE_SELECTION, title: "Share selection with AllPeers…", contexts: ["selection"] }, ignore);
    menus.create(
      { id: MENU_DOWNLOAD, title: "Download with AllPeers", contexts: ["link"], targetUrlPatterns: TORRENT_PATTERNS },
      ignore,
    );
    // Magnet links get the item too, to be told they are not supported yet. Chromium accepts
    // the pattern magnet:*; Firefox refuses it: there the item is hidden and shown from
    // menus.onShown when the link is a magnet link.
    const magnetByHand = () =>
      menus.create({ id: MENU_DOWNLOAD_MAGNET, title: "Download with AllPeers", contexts: ["link"], visible: false }, ignore);
    try {
      menus.create(
        { id: MENU_DOWNLOAD_MAGNET, title: "Download with AllPeers", contexts: ["link"], targetUrlPatterns: ["magnet:*"] },
        () => {
          if (chrome.runtime.lastError && firefoxMenus) magnetByHand();
        },
      );
    } catch {
      if (firefoxMenus) magnetByHand();
    }
  });
  firefoxMenus?.onShown.addListener((info) => {
    const magnet = /^magnet:/i.test(info.linkUrl ?? "");
    // Only the hand-made item (no pattern) is touched; updating an unknown id just fails.
    menus.update(MENU_DOWNLOAD_MAGNET, { visible: magnet }, () => {
      if (!chrome.runtime.lastError) firefoxMenus.refresh();
    });
  });
  menus.onClicked.addListener((info, tab) => void menuClicked(info as MenuInfo, tab));
  // The functions the menu calls, for the tests (a headless browser has no menu to click):
  // `allpeersMenuClicked({menuItemId, linkUrl, pageUrl, selectionText}, tab)` from the
  // background's console is exactly what a click does.
  const g = globalThis as unknown as Record<string, unknown>;
  g.allpeersMenuClicked = menuClicked;
  g.allpeersShareFromMenu = shareFromMenu;
}

/** What a click on one of our menu items does (the listener, and the tests' entry point). */
export async function menuClicked(info: MenuInfo, tab?: Tab): Promise<unknown> {
  switch (info.menuItemId) {
    case MENU_SHARE_PAGE:
      return openShareWindow({ url: info.pageUrl || tab?.url || "", title: (tab?.title || "").trim(), kind: "page" });
    case MENU_SHARE_LINK:
      return openShareWindow({ url: info.linkUrl || "", title: (info.linkText || "").trim(), kind: "link" });
    case MENU_SHARE_SELECTION:
      return openShareWindow({
        url: info.pageUrl || tab?.url || "",
        title: (tab?.title || "").trim(),
        kind: "selection",
        selection: info.selectionText || "",
      });
    case MENU_DOWNLOAD:
    case MENU_DOWNLOAD_MAGNET:
      return downloadFromMenu(info.linkUrl || "", info.pageUrl || tab?.url || "");
    default:
      return null;
  }
}

/** What is shared: the link if the menu was opened on one, else the page. */
export function sharedLink(info: MenuInfo, tab?: Tab): { url: string; title: string } {
  if (info.linkUrl) {
    return { url: info.linkUrl, title: (info.linkText || info.selectionText || "").trim() };
  }
  return { url: info.pageUrl || tab?.url || "", title: (tab?.title || "").trim() };
}

/** The old single item's function: the link if there is one, else the page. */
export async function shareFromMenu(info: MenuInfo, tab?: Tab): Promise<string> {
  return openShareWindow({ ...sharedLink(info, tab), kind: info.linkUrl ? "link" : "page" });
}

/** The longest selection carried to the share window (a chat message holds 16,000 characters). */
const MAX_SELECTION = 4000;

async function openShareWindow(what: { url: string; title: string; kind: string; selection?: string }): Promise<string> {
  const params = new URLSearchParams({ url: what.url, title: what.title, kind: what.kind });
  if (what.selection) params.set("selection", what.selection.slice(0, MAX_SELECTION));
  if (!shareableUrl(what.url)) params.set("refused", "1");
  const url = chrome.runtime.getURL(`share.html?${params}`);
  await chrome.windows.create({ url, type: "popup", width: 420, height: 640 });
  return url;
}
