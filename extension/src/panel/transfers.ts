// Transfers: every download and upload with a progress bar, rates, ETA, peers, and pause /
// resume / cancel; the totals; a badge on the tab while something runs. Live from the
// transfer.* events (progress at most four times a second per transfer); rows are updated
// in place so the keyboard focus stays where it is. Names come from torrents (anyone's):
// text only, bidi controls shown. Each row has its own download/upload limits
// (transfers.set_limits; the global ones in Settings apply too) and its priority, chosen when a
// download is added (transfers.add's `priority`) and changed later from the row (transfers.set_priority).

import type { AddTransferParams, Transfer } from "../lib/api.gen";
import {
  RUNNING,
  formatBytes,
  formatEta,
  formatLimit,
  formatRate,
  limitWords,
  parseRate,
  percentDone,
  transferTotals,
  visibleText,
} from "../lib/sharing";
import { Client, errorText } from "./client";
import { byId, h } from "./dom";

const STATE_WORDS: Record<string, string> = {
  queued: "Queued",
  downloading: "Downloading",
  seeding: "Seeding",
  paused: "Paused",
  retrying: "Retrying",
  failed: "Failed",
};

interface Row {
  li: HTMLLIElement;
  bar: HTMLElement;
  fill: HTMLElement;
  state: HTMLElement;
  numbers: HTMLElement;
  reason: HTMLElement;
  pause: HTMLButtonElement;
  cancel: HTMLButtonElement;
  error: HTMLElement;
  limits: HTMLDetailsElement;
  limitDown: HTMLInputElement;
  limitUp: HTMLInputElement;
  limitResult: HTMLElement;
  priority: HTMLSelectElement;
  /** Pause/Resume pressed again while the daemon was still answering the last press: done after it. */
  again: boolean;
  /** The user typed in the limit boxes since they were last filled: a refresh leaves them alone. */
  limitsEdited: boolean;
}

function markInvalid(input: HTMLInputElement, bad: boolean) {
  if (bad) input.setAttribute("aria-invalid", "true");
  else input.removeAttribute("aria-invalid");
}

const PRIORITY_WORDS: Record<string, string> = { "1": "high priority", "-1": "low priority" };
function priorityWords(p: number): string {
  if (p === 0) return "";
  return PRIORITY_WORDS[String(p)] ?? `priority ${p}`;
}

export function initTransfers(client: Client) {
  const body = document.body;
  const transfers = new Map<number, Transfer>();
  const rows = new Map<number, Row>();
  const list = byId("transfers");

  let refreshing: Promise<void> | null = null;
  let refreshAgain = false;
  /** Re-reads transfers.list; calls while one runs make one more run after it, not one each. */
  function refresh(): Promise<void> {
    if (refreshing) {
      refreshAgain = true;
      return refreshing;
    }
    refreshing = (async () => {
      do {
        refreshAgain = false;
        await readAll();
      } while (refreshAgain);
    })().finally(() => (refreshing = null));
    return refreshing;
  }

  async function readAll() {
    try {
      const all = await client.call("transfers.list");
      byId("transfers-error").textContent = "";
      const seen = new Set(all.map((t) => t.id));
      for (const id of [...transfers.keys()]) if (!seen.has(id)) removeRow(id);
      for (const t of all) put(t);
      totals();
    } catch (e) {
      byId("transfers-error").textContent = `Could not read the transfers: ${errorText(e)}`;
    }
  }

  function put(t: Transfer) {
    transfers.set(t.id, t);
    let row = rows.get(t.id);
    if (!row) {
      row = build(t);
      rows.set(t.id, row);
      // By id: the order the daemon lists them in.
      const after = [...rows.keys()].filter((id) => id > t.id).sort((a, b) => a - b)[0];
      list.insertBefore(row.li, after !== undefined ? rows.get(after)!.li : null);
    }
    update(row, t);
  }

  function removeRow(id: number) {
    const row = rows.get(id);
    const hadFocus = row?.li.contains(document.activeElement);
    row?.li.remove();
    rows.delete(id);
    transfers.delete(id);
    if (hadFocus) (list.querySelector<HTMLElement>("button") ?? byId("torrent-details").querySelector("summary"))?.focus();
  }

  function build(t: Transfer): Row {
    const name = visibleText(t.name);
    const nameId = `transfer-name-${t.id}`;
    const fill = h("span", { class: "bar-fill" });
    const bar = h(
      "div",
      {
        class: "bar",
        role: "progressbar",
        "aria-valuemin": 0,
        "aria-valuemax": 100,
        "aria-labelledby": nameId,
      },
      fill,
    );
    const pause = h("button", { type: "button", "data-action": "pause" });
    const cancel = h("button", { type: "button", "data-action": "cancel", text: "Cancel", "aria-label": `Cancel ${name}` });
    const down = h("input", {
      id: `transfer-${t.id}-down`,
      name: "down",
      autocomplete: "off",
      spellcheck: "false",
      placeholder: "no limit of its own",
      "aria-describedby": `transfer-${t.id}-limit-result`,
    });
    const up = h("input", {
      id: `transfer-${t.id}-up`,
      name: "up",
      autocomplete: "off",
      spellcheck: "false",
      placeholder: "no limit of its own",
      "aria-describedby": `transfer-${t.id}-limit-result`,
    });
    const limitResult = h("p", { class: "muted limit-result", id: `transfer-${t.id}-limit-result`, role: "status" });
    const limitForm = h(
      "form",
      { class: "stack limits-form", "aria-label": `Speed limits of ${name}`, novalidate: true },
      h("label", { for: down.id, text: "Download limit" }),
      down,
      h("label", { for: up.id, text: "Upload limit" }),
      up,
      h("div", { class: "row" }, h("button", { type: "submit", "data-action": "limits", text: "Set limits", "aria-label": `Set limits of ${name}` })),
      limitResult,
    );
    const priority = h("select", { id: `transfer-${t.id}-priority`, "data-action": "priority", "aria-describedby": limitResult.id });
    for (const [value, text] of [["1", "High"], ["0", "Normal"], ["-1", "Low"]]) priority.append(h("option", { value, text }));
    priority.addEventListener("change", () => void setPriority(t.id, Number(priority.value)));
    const limits = h(
      "details",
      { class: "transfer-limits" },
      h("summary", { text: "Speed limits and priority", "aria-label": `Speed limits and priority of ${name}` }),
      limitForm,
      h("div", { class: "stack" }, h("label", { for: priority.id, text: "Priority (when downloads wait in a queue)" }), priority),
    );
    const row: Row = {
      li: h("li", { class: "transfer", "data-transfer": String(t.id), "aria-labelledby": nameId }),
      bar,
      fill,
      state: h("span", { class: "state-word" }),
      numbers: h("p", { class: "status-text transfer-numbers" }),
      reason: h("p", { class: "muted transfer-reason" }),
      pause,
      cancel,
      error: h("p", { class: "error", role: "alert" }),
      limits,
      limitDown: down,
      limitUp: up,
      limitResult,
      priority,
      again: false,
      limitsEdited: false,
    };
    for (const input of [down, up]) input.addEventListener("input", () => (row.limitsEdited = true));
    limitForm.addEventListener("submit", (ev) => {
      ev.preventDefault();
      void setLimits(t.id);
    });
    row.li.append(
      h("div", { class: "who" }, h("bdi", { class: "grow transfer-name", id: nameId, text: name }), row.state),
      bar,
      row.numbers,
      row.reason,
      h("div", { class: "actions" }, pause, cancel),
      row.error,
      limits,
    );
    pause.addEventListener("click", () => void pauseOrResume(t.id));
    cancel.addEventListener("click", () => {
      const tt = transfers.get(t.id);
      if (cancel.dataset.confirm !== "1") {
        cancel.dataset.confirm = "1";
        cancel.textContent = tt?.seed_in_place ? "Stop sharing?" : "Cancel the download?";
        cancel.setAttribute("aria-label", `Cancel ${name}: press again to confirm`);
        return;
      }
      void cancelTransfer(t.id);
    });
    cancel.addEventListener("blur", () => {
      cancel.dataset.confirm = "";
      cancel.textContent = "Cancel";
      cancel.setAttribute("aria-label", `Cancel ${name}`);
    });
    return row;
  }

  function update(row: Row, t: Transfer) {
    const p = t.progress;
    const pct = percentDone(p);
    const li = row.li;
    li.dataset.state = t.state;
    li.dataset.percent = String(pct);
    li.dataset.seedInPlace = String(t.seed_in_place);
    row.fill.style.width = `${pct}%`;
    row.bar.setAttribute("aria-valuenow", String(pct));
    row.bar.setAttribute("aria-valuetext", `${pct} percent, ${STATE_WORDS[t.state] ?? t.state}`);
    row.state.textContent = `${STATE_WORDS[t.state] ?? t.state} · ${pct} %`;
    const parts = [`${formatBytes(p.done_bytes)} of ${formatBytes(p.total_bytes)}`];
    if (t.state === "downloading" || p.down_rate > 0) parts.push(`↓ ${formatRate(p.down_rate)}`);
    if (p.up_rate > 0 || t.state === "seeding") parts.push(`↑ ${formatRate(p.up_rate)}`);
    if (RUNNING.has(t.state)) parts.push(`ETA ${formatEta(p.eta_secs)}`);
    parts.push(`${p.peers} ${p.peers === 1 ? "peer" : "peers"}`);
    if (t.limits.down !== null) parts.push(`limit ↓ ${formatLimit(t.limits.down)}`);
    if (t.limits.up !== null) parts.push(`limit ↑ ${formatLimit(t.limits.up)}`);
    const prio = priorityWords(t.priority);
    if (prio) parts.push(prio);
    row.numbers.textContent = parts.join(" · ");
    row.reason.textContent = t.reason ? visibleText(t.reason) : "";
    const paused = t.state === "paused";
    const name = visibleText(t.name);
    row.pause.dataset.action = paused ? "resume" : "pause";
    row.pause.textContent = paused ? "Resume" : "Pause";
    row.pause.setAttribute("aria-label", `${paused ? "Resume" : "Pause"} ${name}`);
    row.pause.disabled = t.state === "failed";
    li.dataset.limitDown = String(t.limits.down ?? "");
    li.dataset.limitUp = String(t.limits.up ?? "");
    li.dataset.priority = String(t.priority);
    // A priority set elsewhere that none of the three words names gets an option of its own.
    if (![...row.priority.options].some((o) => o.value === String(t.priority))) {
      row.priority.append(h("option", { value: String(t.priority), text: `Priority ${t.priority}` }));
    }
    if (document.activeElement !== row.priority) row.priority.value = String(t.priority);
    if (!row.limitsEdited) {
      row.limitDown.value = formatLimit(t.limits.down);
      row.limitUp.value = formatLimit(t.limits.up);
    }
  }

  /** This transfer's own limits (transfers.set_limits), checked before sending. */
  async function setLimits(id: number) {
    const row = rows.get(id);
    if (!row) return;
    const out = row.limitResult;
    const down = parseRate(row.limitDown.value);
    const up = parseRate(row.limitUp.value);
    markInvalid(row.limitDown, !down.ok);
    markInvalid(row.limitUp, !up.ok);
    if (!down.ok || !up.ok) {
      out.className = "error limit-result";
      out.textContent = !down.ok ? `Download limit: ${down.reason}` : `Upload limit: ${!up.ok ? up.reason : ""}`;
      (!down.ok ? row.limitDown : row.limitUp).focus();
      return;
    }
    out.className = "muted limit-result";
    out.textContent = "Setting…";
    try {
      const t = await client.call("transfers.set_limits", { id, limits: { down: down.value, up: up.value } });
      row.limitsEdited = false;
      put(t);
      out.textContent = `Its own limits: download ${limitWords(t.limits.down)}, upload ${limitWords(t.limits.up)}.`;
    } catch (e) {
      out.className = "error limit-result";
      out.textContent = `Not set: ${errorText(e)}`;
    }
  }

  /** This transfer's priority (transfers.set_priority): which waiting download starts first. */
  async function setPriority(id: number, priority: number) {
    const row = rows.get(id);
    if (!row) return;
    const out = row.limitResult;
    out.className = "muted limit-result";
    out.textContent = "Setting…";
    try {
      const t = await client.call("transfers.set_priority", { id, priority });
      put(t);
      out.textContent = `Priority: ${priorityWords(t.priority) || "normal priority"}.`;
    } catch (e) {
      out.className = "error limit-result";
      out.textContent = `Priority not set: ${errorText(e)}`;
      const t = transfers.get(id);
      if (t) row.priority.value = String(t.priority);
    }
  }

  async function pauseOrResume(id: number) {
    const t = transfers.get(id);
    const row = rows.get(id);
    if (!t || !row) return;
    // Not disabled while the daemon answers: a disabled button loses the keyboard focus. A press meanwhile
    // (the button already says Resume: the state event came before the answer) is done after it.
    if (row.li.dataset.pending === "true") {
      row.again = true;
      return;
    }
    const method = t.state === "paused" ? "transfers.resume" : "transfers.pause";
    row.pause.setAttribute("aria-disabled", "true");
    row.li.dataset.pending = "true";
    try {
      put(await client.call(method, { id }));
      row.error.textContent = "";
    } catch (e) {
      row.error.textContent = `${method === "transfers.pause" ? "Not paused" : "Not resumed"}: ${errorText(e)}`;
    } finally {
      row.li.dataset.pending = "false";
      row.pause.removeAttribute("aria-disabled");
      totals();
    }
    if (row.again) {
      row.again = false;
      // Only if the button still asks for the other action than the one just done.
      const now = transfers.get(id);
      if (now && (now.state === "paused") === (method === "transfers.pause")) await pauseOrResume(id);
    }
  }

  async function cancelTransfer(id: number) {
    const row = rows.get(id);
    if (!row) return;
    row.cancel.disabled = true;
    row.li.dataset.pending = "true";
    try {
      await client.call("transfers.cancel", { id, delete_files: false });
      removeRow(id);
      totals();
    } catch (e) {
      row.cancel.disabled = false;
      row.li.dataset.pending = "false";
      row.error.textContent = `Not cancelled: ${errorText(e)}`;
    }
  }

  let lastBadge = "";
  function totals() {
    const t = transferTotals(transfers.values());
    const text = !t.count
      ? "No transfers"
      : [
          `${t.count} ${t.count === 1 ? "transfer" : "transfers"}`,
          t.running ? `${t.running} running` : "",
          t.seeding ? `${t.seeding} seeding` : "",
          t.paused ? `${t.paused} paused` : "",
          t.failed ? `${t.failed} failed` : "",
          `↓ ${formatRate(t.downRate)}`,
          `↑ ${formatRate(t.upRate)}`,
          t.running ? `${formatBytes(t.remaining)} to go` : "",
        ]
          .filter(Boolean)
          .join(" · ");
    byId("totals-text").textContent = text;
    byId("transfers-empty").hidden = t.count > 0;
    byId("transfer-totals").hidden = t.count === 0;
    body.dataset.transfers = String(t.count);
    body.dataset.transfersRunning = String(t.running);
    const badge = byId("transfers-badge");
    const word = t.running ? String(t.running) : "";
    if (word !== lastBadge) {
      lastBadge = word;
      badge.hidden = !word;
      badge.textContent = word;
      // The tab's name is its text: "Transfers (2 running)" (the badge itself is hidden from it).
      byId("transfers-running").textContent = word ? `(${word} running)` : "";
    }
  }

  // ------------------------------------------------------------ adding a .torrent

  byId<HTMLFormElement>("torrent-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const input = byId<HTMLInputElement>("torrent-file");
    const out = byId("torrent-result");
    const file = input.files?.[0];
    if (!file) {
      out.className = "error";
      out.textContent = "Choose a .torrent file first.";
      input.focus();
      return;
    }
    if (file.size > 8 << 20) {
      out.className = "error";
      out.textContent = "That file is too large to be a .torrent.";
      return;
    }
    const peers = byId<HTMLInputElement>("torrent-peers")
      .value.split(/[\s,]+/)
      .map((s) => s.trim())
      .filter(Boolean);
    const limitInput = byId<HTMLInputElement>("torrent-limit");
    const limit = parseRate(limitInput.value);
    byId("torrent-limit-error").textContent = limit.ok ? "" : limit.reason;
    markInvalid(limitInput, !limit.ok);
    if (!limit.ok) {
      out.className = "error";
      out.textContent = "Not added: fix the limit.";
      limitInput.focus();
      return;
    }
    const priority = Number(byId<HTMLSelectElement>("torrent-priority").value) || 0;
    out.className = "muted";
    out.textContent = "Adding…";
    try {
      const bytes = new Uint8Array(await file.arrayBuffer());
      let bin = "";
      for (let i = 0; i < bytes.length; i += 0x8000) bin += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
      const params: AddTransferParams = { torrent: btoa(bin) };
      if (peers.length) params.peers = peers;
      if (priority) params.priority = priority;
      if (limit.value !== null) params.limits = { down: limit.value, up: null };
      const t = await client.call("transfers.add", params, 30_000);
      put(t);
      totals();
      input.value = "";
      limitInput.value = "";
      out.textContent = `Added ${visibleText(t.name)}`;
    } catch (e) {
      out.className = "error";
      out.textContent = `Not added: ${errorText(e)}`;
    }
  });

  // ------------------------------------------------------------ events

  client.on("transfer.added", (t) => {
    put(t);
    totals();
  });
  client.on("transfer.progress", (d) => {
    const t = transfers.get(d.id);
    if (!t) {
      void refresh();
      return;
    }
    t.progress = d.progress;
    update(rows.get(d.id)!, t);
    totals();
  });
  client.on("transfer.changed", (d) => {
    const t = transfers.get(d.id);
    if (!t) {
      void refresh();
      return;
    }
    t.state = d.state;
    t.reason = d.reason;
    update(rows.get(d.id)!, t);
    totals();
  });
  client.on("transfer.removed", (d) => {
    removeRow(d.id);
    totals();
  });

  return { refresh };
}
