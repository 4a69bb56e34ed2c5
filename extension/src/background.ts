// Background (Chromium: service worker; Firefox: event page). Owns the one native port to
// the AllPeers host and serves the panels over runtime ports: connection state, calls,
// events. Requests while disconnected fail at once with a clear error. Also: the toolbar
// badge (unread messages), notifications while no panel is open, and the context menu
// (share a page, link or selection; download a .torrent). Web pages and other extensions
// reach the app API through background/apps.ts, each origin on a session of its own.

import { Connection, PortFactory, RpcError } from "./lib/connection";
import { badgeSoon, notify, refreshBadge, setupNotifications } from "./background/notify";
import { setDownloadConnection } from "./background/download";
import { setupShareMenu } from "./background/share";
import { setupApps } from "./background/apps";
import { SOCIAL_TOPICS } from "./lib/social";
import { SHARING_TOPICS } from "./lib/sharing";
import {
  BackgroundToPanel,
  ExtErrorCode,
  HOST_NAME,
  PANEL_PORT,
  PanelToBackground,
} from "./lib/protocol";

declare const BROWSER: "chromium" | "firefox";

type Port = chrome.runtime.Port & { error?: { message?: string } };

const connectNative: PortFactory = (handlers) => {
  const port = chrome.runtime.connectNative(HOST_NAME) as Port;
  port.onMessage.addListener((m: unknown) => handlers.onMessage(m));
  port.onDisconnect.addListener((p: Port) => {
    // Chromium reports through lastError, Firefox through port.error.
    const error = chrome.runtime.lastError?.message ?? p.error?.message;
    handlers.onDisconnect(error);
  });
  return {
    post: (m) => port.postMessage(m),
    close: () => port.disconnect(),
  };
};

const connection = new Connection({
  connect: connectNative,
  client: `extension/${BROWSER}`,
  topics: ["identity.changed", "log.changed", "clients.changed", "apps.changed", ...SOCIAL_TOPICS, ...SHARING_TOPICS],
});

const panels = new Set<chrome.runtime.Port>();
// For the tests: how many AllPeers pages are connected (notifications wait for none).
(globalThis as unknown as { allpeersPanelCount: () => number }).allpeersPanelCount = () => panels.size;

function post(port: chrome.runtime.Port, message: BackgroundToPanel) {
  try {
    port.postMessage(message);
  } catch {
    panels.delete(port);
  }
}

connection.onState((state) => {
  for (const p of panels) post(p, { type: "state", state });
});
connection.onEvent((topic, data) => {
  for (const p of panels) post(p, { type: "event", topic, data });
  notify(topic, data, panels.size > 0);
});
connection.onState((state) => {
  if (state.status === "connected") void refreshBadge();
});

chrome.runtime.onConnect.addListener((port) => {
  if (port.name !== PANEL_PORT) return; // app and prompt ports: background/apps.ts
  // Our own pages only: content scripts share our id but run in web pages.
  if (port.sender?.id !== chrome.runtime.id || !port.sender.url?.startsWith(chrome.runtime.getURL(""))) {
    port.disconnect();
    return;
  }
  panels.add(port);
  port.onDisconnect.addListener(() => panels.delete(port));
  port.onMessage.addListener((message: PanelToBackground) => {
    if (message?.type === "retry") {
      connection.retryNow();
      return;
    }
    if (message?.type !== "call" || typeof message.method !== "string") return;
    const id = message.id;
    connection
      .request(message.method, message.params ?? {}, message.timeoutMs)
      .then(
        (result) => {
          post(port, { type: "reply", id, result });
          if (message.method === "chat.read") badgeSoon();
        },
        (e: unknown) =>
          post(port, {
            type: "reply",
            id,
            error:
              e instanceof RpcError
                ? e.toBody()
                : { code: ExtErrorCode.ConnectionLost, message: String(e) },
          }),
      );
  });
  post(port, { type: "state", state: connection.current });
  // A panel opening is a good moment to try again without waiting for the backoff.
  connection.start();
});

// Chromium: the toolbar button opens the side panel. Firefox: it toggles the sidebar.
const sidePanel = (chrome as unknown as { sidePanel?: typeof chrome.sidePanel }).sidePanel;
if (sidePanel) {
  sidePanel.setPanelBehavior({ openPanelOnActionClick: true }).catch(() => {});
} else {
  const browserApi = (globalThis as unknown as { browser?: { sidebarAction?: { toggle(): Promise<void> } } }).browser;
  chrome.action?.onClicked.addListener(() => {
    browserApi?.sidebarAction?.toggle().catch(() => {});
  });
}

setupNotifications(connection);
setDownloadConnection(connection);
setupShareMenu();
setupApps({ connect: connectNative, trusted: connection });
connection.start();
