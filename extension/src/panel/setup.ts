// First run and the identity/hub/downloads parts of Settings: one set of actions, two places.
// - Join a hub (`hub.set_home`: a hub address `PeerId@quic://…`, or an invite code, which
//   carries the inviter's hub), then restart the daemon (`daemon.shutdown`; the background
//   reconnects and the host starts a new daemon, which uses the new hub).
// - Choose a name (`hub.register`), protect the identity with a passphrase (`identity.seal`),
//   download a backup (`identity.export`: a sealed key file, saved through a blob: link).
// - Restore a backup (`identity.restore`; replacing another identity only once confirmed), then restart and
//   unlock with the backup's passphrase.
// - The download folder (`transfers.download_dir.get/.set`).
// The welcome card (People) shows until "Done" (remembered in localStorage) while the node
// has no hub or no name there; every step is optional and can be done again in Settings.

import { ErrorCode, type IdentityInfo } from "../lib/api.gen";
import { shortPeer } from "../lib/social";
import { CallError, Client, errorText } from "./client";
import { byId } from "./dom";

const DONE_KEY = "allpeers.welcomeDone";
/** A backup is a few hundred bytes; the daemon refuses more than this (`MAX_BACKUP_BYTES`). */
const MAX_BACKUP_BYTES = 64 * 1024;

/** An invite code or a hub address, told apart by their shape. */
export function hubParams(text: string): { invite: string } | { hub: string } {
  const t = text.trim();
  return t.startsWith("apinvite") ? { invite: t } : { hub: t };
}

interface Deps {
  /** The hub line's state and our name there: re-read after a change. */
  refreshHub: () => Promise<void>;
}

export function initSetup(client: Client, deps: Deps) {
  const body = document.body;
  const welcome = byId("welcome");
  let identity: IdentityInfo | null = null;

  const say = (id: string, text: string, error = false) => {
    const el = byId(id);
    el.textContent = text;
    el.className = `${error ? "error" : "muted"} step-result`;
  };
  const wasDone = () => {
    try {
      return localStorage.getItem(DONE_KEY) === "1";
    } catch {
      return false;
    }
  };

  // ------------------------------------------------------------ joining a hub

  async function joinHub(input: HTMLInputElement, result: string): Promise<boolean> {
    if (!input.value.trim()) {
      say(result, "Paste a hub address or an invite code.", true);
      return false;
    }
    say(result, "Saving…");
    try {
      const home = await client.call("hub.set_home", hubParams(input.value));
      input.value = "";
      if (!home.restart_needed) {
        say(result, `That is your home hub already (${shortPeer(home.peer_id)}).`);
        return false;
      }
      say(result, `Home hub set to ${shortPeer(home.peer_id)}; AllPeers restarts to use it…`);
      return true;
    } catch (e) {
      say(result, `Not changed: ${errorText(e)}`, true);
      return false;
    }
  }

  /** Stops the daemon; the background reconnects and the host starts a new one (with the new config). */
  async function restart(result: string, done = "Restarted with the new home hub."): Promise<boolean> {
    body.dataset.restarting = "true";
    try {
      await client.call("daemon.shutdown");
    } catch {
      /* the connection going is the point */
    }
    const epoch = client.state?.epoch ?? 0;
    // Wait for the new connection (the background retries by itself); bounded.
    const deadline = Date.now() + 30_000;
    await new Promise<void>((resolve) => {
      const check = () => {
        if ((client.state?.epoch ?? 0) > epoch && client.state?.status === "connected") return resolve();
        if (Date.now() > deadline) return resolve();
        setTimeout(check, 100);
      };
      check();
    });
    delete body.dataset.restarting;
    const connected = client.state?.status === "connected";
    say(result, connected ? done : "Not reconnected yet: see the banner.", !connected);
    await deps.refreshHub();
    return connected;
  }

  byId<HTMLFormElement>("welcome-hub-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    if (await joinHub(byId<HTMLInputElement>("welcome-hub"), "welcome-hub-result")) await restart("welcome-hub-result");
    await drawWelcome();
  });
  byId<HTMLFormElement>("home-hub-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    byId("home-hub-restart").hidden = !(await joinHub(byId<HTMLInputElement>("home-hub"), "home-hub-result"));
  });
  byId("home-hub-restart").addEventListener("click", async () => {
    byId("home-hub-restart").hidden = true;
    await restart("home-hub-result");
    byId("home-hub").focus();
  });

  // ------------------------------------------------------------ a name

  byId<HTMLFormElement>("welcome-name-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const input = byId<HTMLInputElement>("welcome-name");
    say("welcome-name-result", "Registering…");
    try {
      const r = await client.call("hub.register", { name: input.value.trim() });
      say("welcome-name-result", `You are ${r.certificate.full_name} now.`);
      body.dataset.welcomeName = r.certificate.full_name;
      await deps.refreshHub();
    } catch (e) {
      say("welcome-name-result", `Not registered: ${errorText(e)}`, true);
    }
  });

  // ------------------------------------------------------------ passphrase and backup

  async function seal(first: HTMLInputElement, again: HTMLInputElement, result: string) {
    if (first.value.length < 8) {
      say(result, "At least 8 characters.", true);
      first.focus();
      return;
    }
    if (first.value !== again.value) {
      say(result, "The two passphrases differ.", true);
      again.focus();
      return;
    }
    say(result, "Protecting…");
    try {
      identity = await client.call("identity.seal", { passphrase: first.value }, 60_000);
      first.value = "";
      again.value = "";
      say(result, "Protected: AllPeers asks for the passphrase when it starts.");
      drawIdentity();
    } catch (e) {
      say(result, `Not protected: ${errorText(e)}`, true);
    }
  }

  async function backup(passphrase: HTMLInputElement, result: string) {
    say(result, "Making the backup…");
    try {
      const sealed = identity?.sealed ?? false;
      const b = await client.call("identity.export", sealed || !passphrase.value ? {} : { passphrase: passphrase.value }, 60_000);
      passphrase.value = "";
      const url = URL.createObjectURL(new Blob([b.file], { type: "application/json" }));
      const a = Object.assign(document.createElement("a"), { href: url, download: `allpeers-identity-${shortPeer(b.peer_id).replace(/[^A-Za-z0-9]/g, "")}.json` });
      document.body.append(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(url), 60_000);
      say(result, "Saved as a download: keep it somewhere safe (it is sealed with the passphrase).");
    } catch (e) {
      say(result, `No backup: ${errorText(e)}`, true);
    }
  }

  byId<HTMLFormElement>("welcome-seal-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    void seal(byId("welcome-seal"), byId("welcome-seal-again"), "welcome-seal-result");
  });
  byId<HTMLFormElement>("seal-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    void seal(byId("seal-passphrase"), byId("seal-again"), "seal-result");
  });
  byId<HTMLFormElement>("welcome-backup-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    void backup(byId("welcome-backup"), "welcome-backup-result");
  });
  byId<HTMLFormElement>("backup-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    void backup(byId("backup-passphrase"), "backup-result");
  });

  function drawIdentity() {
    const sealed = identity?.sealed ?? false;
    byId("seal-state").textContent = sealed
      ? "Your identity is protected with a passphrase."
      : "Your identity is not protected: anyone who can read this computer's files can use it.";
    for (const id of ["seal-passphrase", "seal-again", "seal-set"]) (byId(id) as HTMLInputElement).disabled = sealed;
    byId("welcome-seal-form").hidden = sealed && !byId("welcome-seal-result").textContent;
    // A sealed identity is backed up under its own passphrase: no box for another.
    for (const id of ["backup-passphrase", "welcome-backup"]) byId(id).hidden = sealed;
  }

  // ------------------------------------------------------------ restoring a backup

  /**
   * `identity.restore` with the chosen file and passphrase. A different identity here is replaced only after the
   * person confirms (the daemon answers `IdentityExists` first); then the daemon restarts with the restored one and
   * is unlocked with the same passphrase, so nothing more is asked.
   */
  function restoreForm(prefix: string) {
    const file = byId<HTMLInputElement>(`${prefix}restore-file`);
    const passphrase = byId<HTMLInputElement>(`${prefix}restore-passphrase`);
    const confirm = byId(`${prefix}restore-confirm`);
    const result = `${prefix}restore-result`;
    let pending: { text: string; passphrase: string } | null = null;

    async function restore(replace: boolean) {
      if (!pending) return;
      const { text, passphrase: secret } = pending;
      confirm.hidden = true;
      say(result, "Checking the backup…");
      try {
        const r = await client.call(
          "identity.restore",
          { file: text, ...(secret ? { passphrase: secret } : {}), ...(replace ? { replace: true } : {}) },
          60_000,
        );
        pending = null;
        passphrase.value = "";
        file.value = "";
        if (!r.restart_needed) {
          say(result, `That is your identity already (${shortPeer(r.peer_id)}).`);
          return;
        }
        say(result, `Restored ${shortPeer(r.peer_id)}; AllPeers restarts to use it…`);
        if (!(await restart(result, `You are ${shortPeer(r.peer_id)} again.`))) return;
        if (r.sealed) {
          try {
            identity = await client.call("identity.unlock", { passphrase: secret }, 60_000);
            drawIdentity();
          } catch (e) {
            say(result, `Restored ${shortPeer(r.peer_id)}, but not unlocked: ${errorText(e)} (unlock it in People).`, true);
            return;
          }
        }
        body.dataset.restored = r.peer_id;
      } catch (e) {
        if (e instanceof CallError && e.code === ErrorCode.IdentityExists) {
          const current = (e.data as { peer_id?: string } | undefined)?.peer_id;
          say(result, `This replaces your current identity${current ? ` (${shortPeer(current)})` : ""}; it is kept as a file beside the restored one. Replace it?`, true);
          confirm.hidden = false;
          byId(`${prefix}restore-replace`).focus();
          return;
        }
        pending = null;
        say(result, `Not restored: ${errorText(e)}`, true);
      }
    }

    byId<HTMLFormElement>(`${prefix}restore-form`).addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const chosen = file.files?.[0];
      if (!chosen) {
        say(result, "Choose the backup file.", true);
        return;
      }
      if (chosen.size > MAX_BACKUP_BYTES) {
        say(result, `Not restored: ${chosen.name} is not a backup (far too large).`, true);
        return;
      }
      pending = { text: await chosen.text(), passphrase: passphrase.value };
      await restore(false);
    });
    byId(`${prefix}restore-replace`).addEventListener("click", () => void restore(true));
    byId(`${prefix}restore-keep`).addEventListener("click", () => {
      pending = null;
      confirm.hidden = true;
      say(result, "Kept your identity.");
      file.focus();
    });
  }
  restoreForm("welcome-");
  restoreForm("");

  // ------------------------------------------------------------ downloads

  byId<HTMLFormElement>("download-dir-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const input = byId<HTMLInputElement>("download-dir");
    say("download-dir-result", "Setting…");
    try {
      const r = await client.call("transfers.download_dir.set", { dir: input.value.trim() });
      input.value = r.dir;
      say("download-dir-result", `Downloads go to ${r.dir}.`);
    } catch (e) {
      say("download-dir-result", `Not changed: ${errorText(e)}`, true);
    }
  });

  // ------------------------------------------------------------ the welcome card

  async function drawWelcome() {
    if (wasDone()) {
      welcome.hidden = true;
      return;
    }
    try {
      const net = await client.call("net.status");
      const hub = net.running ? net.hub : null;
      let named = false;
      if (hub?.state === "online" && body.dataset.peerId) {
        const r = await client.call("hub.resolve", { query: body.dataset.peerId }).catch(() => null);
        named = Boolean(r?.found && r.name);
      }
      // A node set up already (a hub and a name) is not greeted; one that is being set up stays greeted.
      if (hub && named && welcome.hidden) return;
      welcome.hidden = false;
      body.dataset.welcome = hub ? (hub.state === "online" ? "hub" : "hub-offline") : "no-hub";
      byId<HTMLInputElement>("welcome-name").disabled = hub?.state !== "online";
      byId<HTMLButtonElement>("welcome-name-set").disabled = hub?.state !== "online";
      if (hub && !byId("welcome-hub-result").textContent) say("welcome-hub-result", `Your home hub: ${shortPeer(hub.hub)} (${hub.state}).`);
    } catch {
      /* not connected: drawn again on connect */
    }
  }
  byId("welcome-done").addEventListener("click", () => {
    try {
      localStorage.setItem(DONE_KEY, "1");
    } catch {
      /* storage unavailable: the card shows again next time */
    }
    welcome.hidden = true;
    byId("copy-peer-id").focus();
  });
  client.on("hub.changed", () => void drawWelcome());

  return {
    /** After (re)connecting, and when Settings is shown. */
    async refresh() {
      try {
        identity = await client.call("identity.get");
        drawIdentity();
      } catch {
        /* shown by the identity card */
      }
      const dir = byId<HTMLInputElement>("download-dir");
      if (document.activeElement !== dir) {
        const r = await client.call("transfers.download_dir.get").catch(() => null);
        if (r) dir.value = r.dir;
      }
      await drawWelcome();
    },
    identityChanged(info: IdentityInfo) {
      identity = info;
      drawIdentity();
    },
  };
}
