// "Share with…" in the context menu of a page and of a link: opens the share window
// (share.html) with the page's or link's URL and title, where the user picks contacts or
// a group; the share window sends it as a chat message with a link card.

import { shareableUrl } from "../lib/social";

export const MENU_ID = "allpeers-share";

export interface MenuInfo {
  menuItemId?: string | number;
  linkUrl?: string;
  linkText?: string;
  selectionText?: string;
  pageUrl?: string;
}

export function setupShareMenu() {
  const menus = chrome.contextMenus;
  if (!menus) return;
  // Menus outlive the background in both browsers; recreate them so an update applies.
  menus.removeAll(() => {
    menus.create({ id: MENU_ID, title: "Share with…", contexts: ["page", "link"] }, () => {
      void chrome.runtime.lastError; // e.g. created twice during a restart
    });
  });
  menus.onClicked.addListener((info, tab) => {
    if (info.menuItemId === MENU_ID) void shareFromMenu(info as MenuInfo, tab);
  });
  // The same function the menu calls, for the tests (a headless browser has no menu to
  // click): `allpeersShareFromMenu({pageUrl}, {title})` from the background's console.
  (globalThis as unknown as { allpeersShareFromMenu: typeof shareFromMenu }).allpeersShareFromMenu = shareFromMenu;
}

/** What is shared: the link if the menu was opened on one, else the page. */
export function sharedLink(info: MenuInfo, tab?: { url?: string; title?: string }): { url: string; title: string } {
  if (info.linkUrl) {
    return { url: info.linkUrl, title: (info.linkText || info.selectionText || "").trim() };
  }
  return { url: info.pageUrl || tab?.url || "", title: (tab?.title || "").trim() };
}

export async function shareFromMenu(info: MenuInfo, tab?: { url?: string; title?: string }): Promise<string> {
  const link = sharedLink(info, tab);
  const params = new URLSearchParams({ url: link.url, title: link.title });
  if (!shareableUrl(link.url)) params.set("refused", "1");
  const url = chrome.runtime.getURL(`share.html?${params}`);
  await chrome.windows.create({ url, type: "popup", width: 400, height: 600 });
  return url;
}
