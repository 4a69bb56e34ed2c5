// The sidebar panel: connection banner, navigation, People (identity here; presence,
// contacts and requests in people.ts), Chat (chat.ts), Shared (shared.ts), Transfers
// (transfers.ts), Settings.

import { AppEntry, ErrorCode, IdentityInfo, Limits, LogInfo } from "../lib/api.gen";
import { scopeWords } from "../lib/apps";
import { formatLimit, limitWords, parseRate } from "../lib/sharing";
import { ConnectionState, ProblemKind } from "../lib/protocol";
import { CallError, Client, errorText } from "./client";
import { initChat } from "./chat";
import { append, byId, clear, h } from "./dom";
import { initPeople } from "./people";
import { initDrop } from "./drop";
import { initSetup } from "./setup";
import { initShared } from "./shared";
import { initTransfers } from "./transfers";
import { loadSchemas } from "./views";

const LEVELS = ["skin", "marrow", "flesh", "bone"];

const client = new Client();
// First run and the identity/hub/downloads settings (before the first state arrives: it refreshes them).
const setup = initSetup(client, { refreshHub: () => refreshHub() });
const body = document.body;

// ---------------------------------------------------------------- navigation

const VIEWS = ["people", "chat", "shared", "transfers", "settings"] as const;
type View = (typeof VIEWS)[number];
const tabs = VIEWS.map((v) => byId<HTMLButtonElement>(`tab-${v}`));
let chat: ReturnType<typeof initChat> | null = null;

function show(view: View, focus = false) {
  VIEWS.forEach((v, i) => {
    const selected = v === view;
    tabs[i].setAttribute("aria-selected", String(selected));
    tabs[i].tabIndex = selected ? 0 : -1;
    byId(`view-${v}`).hidden = !selected;
  });
  if (focus) tabs[VIEWS.indexOf(view)].focus();
  body.dataset.view = view;
  if (location.hash !== `#${view}`) history.replaceState(null, "", `#${view}`);
  if (view === "settings" && client.state?.status === "connected") void refreshSettings();
  if (view === "chat") chat?.shown();
}

tabs.forEach((tab, i) => {
  tab.addEventListener("click", () => show(VIEWS[i]));
  tab.addEventListener("keydown", (ev) => {
    const next: Record<string, number> = {
      ArrowRight: (i + 1) % VIEWS.length,
      ArrowLeft: (i + VIEWS.length - 1) % VIEWS.length,
      Home: 0,
      End: VIEWS.length - 1,
    };
    if (ev.key in next) {
      ev.preventDefault();
      show(VIEWS[next[ev.key]], true);
    }
  });
});

const initial = location.hash.slice(1) as View;
show(VIEWS.includes(initial) ? initial : "people");

// ---------------------------------------------------------------- connection banner

const TITLES: Record<ProblemKind, string> = {
  "host-missing": "AllPeers is not installed",
  "host-exited": "AllPeers stopped",
  "host-garbage": "AllPeers is not answering correctly",
  "bridge-error": "AllPeers could not start",
  "daemon-closed": "The AllPeers service stopped",
  "hello-failed": "AllPeers refused the connection",
  timeout: "AllPeers is not answering",
};
const HINTS: Record<ProblemKind, string> = {
  "host-missing":
    "Install the AllPeers program, then run “allpeers install” so this browser can find it. This panel connects as soon as it is there.",
  "host-exited": "Reconnecting on its own. If this keeps happening, look at the log files in the AllPeers data folder.",
  "host-garbage":
    "The program that answered does not speak AllPeers' protocol: check that “allpeers install” points at a current AllPeers. Retrying on its own.",
  "bridge-error": "Run “allpeers status” in a terminal to see what is wrong. Retrying on its own.",
  "daemon-closed": "Restarting it on its own.",
  "hello-failed": "The extension and the program may be of different versions. Retrying on its own.",
  timeout: "Retrying on its own.",
};

let countdown: ReturnType<typeof setInterval> | null = null;
let lastEpoch = 0;

function renderConnection(s: ConnectionState) {
  body.dataset.connection = s.status;
  body.dataset.epoch = String(s.epoch);
  if (s.problem) body.dataset.lastProblem = s.problem.kind;
  const connText = byId("conn-text");
  const banner = byId("banner");
  if (s.status === "connected") {
    connText.textContent = "Connected";
    banner.hidden = true;
    body.dataset.problem = "";
  } else if (!s.problem) {
    connText.textContent = "Connecting…";
    banner.hidden = true;
  } else {
    body.dataset.problem = s.problem.kind;
    connText.textContent = s.status === "connecting" ? "Reconnecting…" : "Not connected";
    banner.hidden = false;
    byId("banner-title").textContent = TITLES[s.problem.kind] ?? "AllPeers is not connected";
    byId("banner-detail").textContent = s.problem.message;
    byId("banner-hint").textContent = HINTS[s.problem.kind] ?? "";
  }
  if (countdown) clearInterval(countdown);
  countdown = null;
  const next = byId("banner-next");
  const tick = () => {
    if (s.status === "connecting") {
      next.textContent = "Trying now…";
    } else if (s.retryAt) {
      const secs = Math.max(0, Math.ceil((s.retryAt - Date.now()) / 1000));
      next.textContent = `Next try in ${secs} s (attempt ${s.attempt + 1})`;
    } else {
      next.textContent = "";
    }
  };
  tick();
  if (s.status === "disconnected") countdown = setInterval(tick, 1000);

  if (s.status === "connected" && s.epoch !== lastEpoch) {
    lastEpoch = s.epoch;
    if (s.server?.peer_id) renderPeerId(s.server.peer_id);
    void refreshIdentity();
    void refreshSettings();
    void refreshSocial();
  }
  renderAbout();
}

byId("banner-retry").addEventListener("click", () => client.retry());
client.onState(renderConnection);

// ---------------------------------------------------------------- People: identity

function renderPeerId(peerId: string) {
  const el = byId("peer-id");
  el.textContent = peerId;
  el.classList.remove("placeholder");
  byId<HTMLButtonElement>("copy-peer-id").disabled = false;
  body.dataset.peerId = peerId;
}

function renderIdentity(id: IdentityInfo) {
  renderPeerId(id.peer_id);
  const pill = byId("identity-state");
  pill.textContent = id.locked ? "Locked" : id.sealed ? "Unlocked" : "Ready";
  pill.className = `pill ${id.locked ? "pill-warn" : "pill-ok"}`;
  pill.title = id.locked
    ? "Your key is sealed with a passphrase and not unlocked yet"
    : id.sealed
      ? "Your key is sealed with a passphrase and unlocked for this session"
      : "Your key is stored without a passphrase";
  body.dataset.identity = id.locked ? "locked" : "unlocked";
  byId("unlock-form").hidden = !id.locked;
  byId("cert-sha").textContent = id.certificate_sha256 ?? (id.locked ? "available after unlocking" : "—");
}

async function refreshIdentity() {
  const err = byId("identity-error");
  try {
    renderIdentity(await client.call("identity.get"));
    err.textContent = "";
  } catch (e) {
    err.textContent = `Could not read your identity: ${errorText(e)}`;
  }
}

client.on("identity.changed", (data) => {
  renderIdentity(data);
  setup.identityChanged(data);
});

byId("copy-peer-id").addEventListener("click", async () => {
  const result = byId("copy-result");
  const text = byId("peer-id").textContent ?? "";
  try {
    await navigator.clipboard.writeText(text);
    result.textContent = "Copied";
  } catch {
    // Select it so the user can copy by hand.
    const range = document.createRange();
    range.selectNodeContents(byId("peer-id"));
    const sel = getSelection();
    sel?.removeAllRanges();
    sel?.addRange(range);
    result.textContent = "Selected: press Ctrl+C to copy";
  }
});

byId<HTMLFormElement>("unlock-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const input = byId<HTMLInputElement>("passphrase");
  const button = byId<HTMLButtonElement>("unlock-button");
  const result = byId("unlock-result");
  result.textContent = "";
  button.disabled = true;
  button.textContent = "Unlocking…";
  try {
    const id = await client.call("identity.unlock", { passphrase: input.value }, 60_000);
    input.value = "";
    renderIdentity(id);
  } catch (e) {
    // The passphrase stays in the box so a typo can be fixed.
    result.textContent =
      e instanceof CallError && e.code === ErrorCode.WrongPassphrase
        ? "That passphrase does not open your identity. Try again."
        : `Could not unlock: ${errorText(e)}`;
    input.select();
  } finally {
    button.disabled = false;
    button.textContent = "Unlock";
  }
});

// ---------------------------------------------------------------- Settings

const levelSelect = byId<HTMLSelectElement>("log-level");
const filterInput = byId<HTMLInputElement>("log-filter");

function renderLog(info: LogInfo) {
  filterInput.value = info.filter;
  const base = info.filter.split(",")[0].trim();
  levelSelect.value = LEVELS.includes(base) ? base : "";
  byId("log-dir").textContent = info.dir;
  body.dataset.logFilter = info.filter;
}

levelSelect.addEventListener("change", () => {
  const rest = filterInput.value.split(",").slice(1).map((s) => s.trim()).filter(Boolean);
  filterInput.value = [levelSelect.value, ...rest].join(",");
});

byId<HTMLFormElement>("log-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const result = byId("log-result");
  result.className = "muted";
  result.textContent = "Applying…";
  try {
    const info = await client.call("log.set", { filter: filterInput.value.trim() });
    renderLog(info);
    result.textContent = `Now logging at “${info.filter}”`;
  } catch (e) {
    result.className = "error";
    result.textContent = `Not applied: ${errorText(e)}`;
  }
});

client.on("log.changed", (data) => renderLog(data));

function formatUptime(ms: number): string {
  const s = Math.floor(ms / 1000);
  if (s < 60) return `${s} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ${s % 60} s`;
  const hr = Math.floor(m / 60);
  return hr < 48 ? `${hr} h ${m % 60} min` : `${Math.floor(hr / 24)} days`;
}

function facts(list: HTMLElement, rows: [string, string, string?][]) {
  clear(list);
  for (const [term, value, key] of rows) {
    append(list, h("dt", { text: term }), h("dd", { text: value, "data-key": key }));
  }
}

async function refreshStatus() {
  const err = byId("status-result");
  try {
    const s = await client.call("status.get");
    err.textContent = "";
    facts(byId("status-list"), [
      ["State", "running", "state"],
      ["Version", s.version, "version"],
      ["Process id", String(s.pid), "pid"],
      ["Up for", formatUptime(s.uptime_ms), "uptime"],
      ["Clients", String(s.clients), "clients"],
      ["Data folder", s.data_dir, "data_dir"],
      ["API socket", s.socket, "socket"],
    ]);
    body.dataset.daemonPid = String(s.pid);
  } catch (e) {
    err.textContent = `Could not read the status: ${errorText(e)}`;
  }
}

async function refreshLog() {
  try {
    renderLog(await client.call("log.get"));
  } catch (e) {
    const result = byId("log-result");
    result.className = "error";
    result.textContent = `Could not read the log settings: ${errorText(e)}`;
  }
}

async function refreshHub() {
  const err = byId("hub-result");
  try {
    const net = await client.call("net.status");
    const hub = net.running ? net.hub : null;
    if (!hub) {
      facts(byId("hub-list"), [["Home hub", "none configured", "hub_state"]]);
      body.dataset.hub = "none";
    } else {
      let name = "not registered";
      const me = body.dataset.peerId;
      if (me && hub.state === "online") {
        const r = await client
          .call("hub.resolve", { query: me })
          .catch(() => null);
        if (r?.found && r.name) name = r.name;
      }
      const rows: [string, string, string?][] = [
        ["State", hub.state, "hub_state"],
        ["Your name", name, "hub_name"],
        ["Hub PeerId", hub.hub, "hub_peer_id"],
      ];
      if (hub.observed) rows.push(["Seen at", hub.observed, "hub_observed"]);
      if (hub.via_proxy) rows.push(["Through", "a proxy", "hub_proxy"]);
      if (hub.last_error) rows.push(["Last problem", hub.last_error, "hub_error"]);
      facts(byId("hub-list"), rows);
      body.dataset.hub = hub.state;
      byId("register-form").hidden = !(hub.state === "online" && name === "not registered");
    }
    err.textContent = "";
  } catch (e) {
    err.textContent = `Could not read the hub's state: ${errorText(e)}`;
  }
}

byId<HTMLFormElement>("register-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const input = byId<HTMLInputElement>("register-name");
  const result = byId("register-result");
  result.className = "muted";
  result.textContent = "Registering…";
  try {
    const r = await client.call("hub.register", { name: input.value.trim() }, 30_000);
    result.textContent = `You are ${r.certificate.full_name ?? input.value.trim()}`;
    input.value = "";
    await refreshHub();
  } catch (e) {
    // The name stays in the box to be changed (taken, or not a valid name).
    result.className = "error";
    result.textContent = `Not registered: ${errorText(e)}`;
  }
});

// Bandwidth: the global limits (net.limits.get/set), typed with units ("2 MiB/s"; empty: no
// limit), checked here before anything is sent; a refused value stays typed, with the reason
// under its box. What the user is typing is not overwritten by a refresh.

const limitInputs = { down: byId<HTMLInputElement>("limit-down"), up: byId<HTMLInputElement>("limit-up") };
let limitsEdited = false;
for (const input of Object.values(limitInputs)) input.addEventListener("input", () => (limitsEdited = true));

function renderLimits(l: Limits, force = false) {
  body.dataset.limitDown = String(l.down ?? "");
  body.dataset.limitUp = String(l.up ?? "");
  if (limitsEdited && !force) return;
  for (const dir of ["down", "up"] as const) {
    limitInputs[dir].value = formatLimit(l[dir]);
    fieldError(dir, "");
  }
}

function fieldError(dir: "down" | "up", reason: string) {
  const input = limitInputs[dir];
  byId(`limit-${dir}-error`).textContent = reason;
  if (reason) input.setAttribute("aria-invalid", "true");
  else input.removeAttribute("aria-invalid");
}

async function refreshLimits() {
  try {
    renderLimits(await client.call("net.limits.get"));
  } catch (e) {
    const result = byId("limits-result");
    result.className = "error";
    result.textContent = `Could not read the limits: ${errorText(e)}`;
  }
}

byId<HTMLFormElement>("limits-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const result = byId("limits-result");
  const limits: Limits = { down: null, up: null };
  let firstBad: HTMLInputElement | null = null;
  for (const dir of ["down", "up"] as const) {
    const parsed = parseRate(limitInputs[dir].value);
    if (parsed.ok) {
      limits[dir] = parsed.value;
      fieldError(dir, "");
    } else {
      fieldError(dir, parsed.reason);
      firstBad ??= limitInputs[dir];
    }
  }
  if (firstBad) {
    result.className = "error";
    result.textContent = "Not applied: fix the limit marked above.";
    firstBad.focus();
    return;
  }
  result.className = "muted";
  result.textContent = "Applying…";
  try {
    const now = await client.call("net.limits.set", limits);
    limitsEdited = false;
    renderLimits(now, true);
    result.textContent = `Download: ${limitWords(now.down)}; upload: ${limitWords(now.up)}.`;
  } catch (e) {
    result.className = "error";
    result.textContent = `Not applied: ${errorText(e)}`;
  }
});

// Sites using AllPeers: the origins with grants (apps.list), each revocable at once; kept
// current by apps.changed (a prompt answered, a revocation from the CLI).

function renderApps(apps: AppEntry[]) {
  const list = byId("apps-list");
  clear(list);
  const granted = apps.filter((a) => a.scopes.length > 0).sort((a, b) => a.origin.localeCompare(b.origin));
  byId("apps-empty").hidden = granted.length > 0;
  body.dataset.apps = String(granted.length);
  for (const app of granted) {
    const revoke = h("button", { type: "button", class: "app-revoke", text: "Revoke", "aria-label": `Revoke ${app.origin}` });
    revoke.addEventListener("click", async () => {
      revoke.disabled = true;
      try {
        await client.call("apps.revoke", { origin: app.origin });
        byId("apps-result").textContent = "";
        await refreshApps();
      } catch (e) {
        revoke.disabled = false;
        byId("apps-result").textContent = `Not revoked: ${errorText(e)}`;
      }
    });
    append(
      list,
      h(
        "li",
        { "data-origin": app.origin },
        h("div", { class: "row" }, h("strong", { class: "app-origin", text: app.origin }), revoke),
        h("ul", { class: "app-scopes" }, ...app.scopes.map((s) => h("li", { "data-scope": s, text: scopeWords(s) }))),
      ),
    );
  }
}

async function refreshApps() {
  try {
    renderApps(await client.call("apps.list"));
  } catch (e) {
    byId("apps-result").textContent = `Could not read the sites: ${errorText(e)}`;
  }
}

client.on("apps.changed", () => {
  if (body.dataset.view === "settings") void refreshApps();
});

async function refreshSettings() {
  await Promise.all([refreshApps(), refreshLimits(), refreshLog(), refreshStatus(), refreshHub(), setup.refresh()]);
}

byId("status-refresh").addEventListener("click", () => void refreshStatus());
// Events were lost (the daemon's per-client queue overflowed): re-read everything shown.
client.on("events.dropped", () => {
  void refreshIdentity();
  void refreshSettings();
  void refreshSocial();
});
client.on("clients.changed", () => {
  if (body.dataset.view === "settings") void refreshStatus();
});

function renderAbout() {
  const manifest = chrome.runtime.getManifest();
  const server = client.state?.server;
  facts(byId("about-list"), [
    ["Extension", `${manifest.name} ${manifest.version}`, "extension"],
    ["Extension id", chrome.runtime.id, "extension_id"],
    ["Browser", navigator.userAgent.includes("Firefox") ? "Firefox" : "Chromium", "browser"],
    ["AllPeers program", server ? `${server.server} ${server.server_version}` : "not connected", "server"],
    ["Local API version", server ? String(server.api_version) : "—", "api_version"],
  ]);
}


// ---------------------------------------------------------------- People and Chat

// The wasm model (generic resource views) loads in the background; nothing waits for it.
void loadSchemas();

const people = initPeople(client, (peer) => void chat?.openWithPeer(peer));
chat = initChat(client, (v) => show(v));
const shared = initShared(client, { addPhotos: (s) => drop.pickInto(s) });
const drop = initDrop(client, {
  show: (v) => show(v),
  shownChat: () => chat?.shownChat() ?? null,
  shared: (s) => shared.show(s),
  shareOf: (id) => shared.shareOf(id),
});
const transfers = initTransfers(client);
let sharingEpoch = 0;

async function refreshSocial() {
  await people.refresh();
  await chat?.refresh();
  // Resource subscriptions belong to one connection: after a new one, made again.
  const epoch = client.state?.epoch ?? 0;
  await Promise.all([shared.refresh(epoch !== sharingEpoch), transfers.refresh()]);
  sharingEpoch = epoch;
}

// The node's network came up (e.g. after an unlock) or the hub line came back: what was
// unavailable before may be there now.
client.on("hub.changed", (d) => {
  if (d.state === "online") void refreshSocial();
  if (body.dataset.view === "settings") void refreshHub();
});
client.on("identity.changed", () => void refreshSocial());
