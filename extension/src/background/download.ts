// "Download with AllPeers" on a .torrent link: the background fetches the file (http and
// https only, at most 10 MiB, 30 s), and gives its bytes (base64) to the daemon's
// transfers.add; the Transfers panel shows the new download from the transfer.added event.
// A magnet link goes to transfers.add as it is: the daemon fetches its metadata from the link's
// peers and trackers first (up to 60 s), so the answer may take a while.
// Every outcome is said in a notification (the user clicked a menu item and expects news).
//
// Fetching from another site needs its host permission (without it the fetch is subject to
// CORS): the origin's permission is asked for at once, while the click still counts as a
// user gesture; if it is refused the fetch is tried anyway (a site that allows it works).

import type { Connection } from "../lib/connection";
import type { Transfer } from "../lib/api.gen";
import { MAX_TORRENT_BYTES, TooLarge, downloadLinkKind, formatBytes, readBounded, toBase64, visibleText } from "../lib/sharing";
import { show } from "./notify";

let connection: Connection | null = null;
export function setDownloadConnection(c: Connection) {
  connection = c;
}

const FETCH_TIMEOUT_MS = 30_000;
/** The daemon waits up to 60 s for a magnet's metadata; a little more for the answer. */
const MAGNET_TIMEOUT_MS = 70_000;

function sameOrigin(u: URL, pageUrl: string): boolean {
  try {
    return new URL(pageUrl).origin === u.origin;
  } catch {
    return false;
  }
}

export type DownloadOutcome =
  | { ok: true; transfer: Transfer; message: string }
  | { ok: false; kind: "magnet" | "refused" | "fetch" | "too-large" | "daemon"; message: string };

let seq = 0;
function tell(outcome: DownloadOutcome): DownloadOutcome {
  show(`allpeers-download-${++seq}`, outcome.ok ? "AllPeers is downloading" : "Not downloaded", outcome.message);
  return outcome;
}

/** `pageUrl`: the page the link is on (its own site is readable through activeTab: not asked). */
export async function downloadFromMenu(url: string, pageUrl = ""): Promise<DownloadOutcome> {
  const kind = downloadLinkKind(url);
  if (kind === "magnet") {
    if (!connection) return tell({ ok: false, kind: "daemon", message: "AllPeers is not running." });
    try {
      const transfer = (await connection.request("transfers.add", { torrent: url.trim() }, MAGNET_TIMEOUT_MS)) as Transfer;
      return tell({
        ok: true,
        transfer,
        message: `${visibleText(transfer.name)} (${formatBytes(transfer.progress.total_bytes)}): see Transfers in the sidebar.`,
      });
    } catch (e) {
      return tell({ ok: false, kind: "magnet", message: `AllPeers could not start the magnet link: ${(e as Error).message || String(e)}` });
    }
  }
  if (kind !== "http") {
    return tell({ ok: false, kind: "refused", message: "Only .torrent files on web addresses (http or https) can be downloaded." });
  }
  const u = new URL(url);
  // Another site's file: its permission is asked for before any await, while the click is a
  // user gesture (refused without one, or by the user: the fetch is tried anyway).
  if (!sameOrigin(u, pageUrl)) await chrome.permissions?.request({ origins: [`${u.origin}/*`] }).catch(() => false);

  let bytes: Uint8Array;
  const abort = new AbortController();
  const timer = setTimeout(() => abort.abort(), FETCH_TIMEOUT_MS);
  try {
    const response = await fetch(u.href, { signal: abort.signal, redirect: "follow" });
    if (downloadLinkKind(response.url || u.href) !== "http") throw new Error("it was redirected away from the web");
    if (!response.ok) throw new Error(`the site answered ${response.status} ${response.statusText}`.trim());
    bytes = await readBounded(response, MAX_TORRENT_BYTES);
  } catch (e) {
    const why =
      e instanceof TooLarge
        ? e.message
        : abort.signal.aborted
          ? "it took too long"
          : e instanceof TypeError
            ? // fetch's only word for "unreachable" and "not allowed to read it" (CORS)
              "the site could not be reached, or it does not let AllPeers read the file (allow AllPeers on that site and try again)"
            : (e as Error).message || String(e);
    return tell({
      ok: false,
      kind: e instanceof TooLarge ? "too-large" : "fetch",
      message: `Could not fetch the .torrent from ${u.host}: ${why}.`,
    });
  } finally {
    clearTimeout(timer);
  }
  if (!connection) return tell({ ok: false, kind: "daemon", message: "AllPeers is not running." });
  try {
    const transfer = (await connection.request("transfers.add", { torrent: toBase64(bytes) }, 30_000)) as Transfer;
    return tell({
      ok: true,
      transfer,
      message: `${visibleText(transfer.name)} (${formatBytes(transfer.progress.total_bytes)}): see Transfers in the sidebar.`,
    });
  } catch (e) {
    return tell({ ok: false, kind: "daemon", message: `AllPeers refused the .torrent: ${(e as Error).message || String(e)}` });
  }
}
