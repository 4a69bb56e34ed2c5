// The permission prompt: an extension window (never an overlay in the page) that names the
// site and what it asks for, in plain words. Allow is enabled only after a second, so a
// click meant for the page cannot land on it. Closing the window is a refusal.

import { BackgroundToPrompt, PROMPT_PORT, PromptToBackground, scopeWords } from "../lib/apps";

const ALLOW_DELAY_MS = 1000;
const id = location.hash.slice(1);
const $ = (x: string) => document.getElementById(x)!;
const allow = $("allow") as HTMLButtonElement;
const deny = $("deny") as HTMLButtonElement;

/** The site as a person reads it: the host (and port), or "the extension <id>". */
function siteName(origin: string): string {
  const url = new URL(origin);
  return url.protocol === "http:" || url.protocol === "https:" ? url.host : `the extension ${url.host}`;
}

const port = chrome.runtime.connect({ name: PROMPT_PORT });
const send = (m: PromptToBackground) => port.postMessage(m);

port.onMessage.addListener((m: BackgroundToPrompt) => {
  if (m.type === "gone") {
    $("ask").hidden = true;
    $("gone").hidden = false;
    document.body.dataset.state = "gone";
    return;
  }
  $("site-host").textContent = siteName(m.origin);
  $("site-origin").textContent = m.origin;
  document.title = `AllPeers: ${siteName(m.origin)} asks for access`;
  const list = $("scopes");
  for (const s of m.scopes) {
    const li = document.createElement("li");
    li.textContent = scopeWords(s);
    li.dataset.scope = s;
    list.appendChild(li);
  }
  $("ask").hidden = false;
  document.body.dataset.state = "asking";
  deny.focus();
  setTimeout(() => {
    allow.disabled = false;
    document.body.dataset.state = "ready";
  }, ALLOW_DELAY_MS);
});

allow.addEventListener("click", () => send({ type: "answer", prompt: id, allow: true }));
deny.addEventListener("click", () => send({ type: "answer", prompt: id, allow: false }));
send({ type: "open", prompt: id });
