// The relay between the page's provider (provider/main.ts, the page's world) and the
// background, run as an isolated content script in every frame. The provider hands over one
// end of a MessageChannel in a window message on its first request; each such channel gets a
// runtime port of its own to the background. Only messages from this very window are taken
// (a parent frame posting into this frame's window would otherwise speak as this frame's
// origin). The background takes the origin from the port's sender, never from the messages.

import { APP_PORT, BackgroundToPage } from "../lib/apps";
import { ErrorCode } from "../lib/api.gen";

/** Channels per frame (the page may open its own; each is a port to the background). */
const MAX_CHANNELS = 8;
let channels = 0;

function disconnected(message: string): BackgroundToPage {
  return { type: "disconnect", error: { code: ErrorCode.Disconnected, message } };
}

function relay(page: MessagePort) {
  let background: chrome.runtime.Port | null = null;
  const toPage = (m: unknown) => {
    try {
      page.postMessage(m);
    } catch {
      /* the page went away */
    }
  };
  const open = (): chrome.runtime.Port | null => {
    let port: chrome.runtime.Port;
    try {
      port = chrome.runtime.connect({ name: APP_PORT });
    } catch (e) {
      // The extension was updated or removed under this page.
      toPage(disconnected(`AllPeers is not available: ${String(e)}`));
      return null;
    }
    port.onMessage.addListener(toPage);
    port.onDisconnect.addListener(() => {
      if (background === port) background = null;
      toPage(disconnected("The connection to AllPeers ended."));
    });
    background = port;
    return port;
  };
  page.onmessage = (ev) => {
    const port = background ?? open();
    try {
      port?.postMessage(ev.data);
    } catch {
      background = null;
      toPage(disconnected("The connection to AllPeers ended."));
    }
  };
  open();
}

window.addEventListener("message", (ev) => {
  if (ev.source !== window || ev.ports.length !== 1) return;
  const data: unknown = ev.data;
  if (typeof data !== "object" || data === null || (data as Record<string, unknown>)["allpeers:channel"] !== 1) return;
  const page = ev.ports[0];
  if (channels >= MAX_CHANNELS) {
    page.postMessage(disconnected(`more than ${MAX_CHANNELS} channels from one page`));
    return;
  }
  channels++;
  relay(page);
});
