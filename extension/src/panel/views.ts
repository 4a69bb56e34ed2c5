// Resource views: a template per type where there is one (Link, Peer), and for every other
// type a generic view built from the type's schema by the wasm crate (`Schemas.render`:
// title, fields with labels, children), so a new type renders without code here. All text
// goes in as text (dom.ts); only http(s) URLs become links.

import init, { Schemas } from "../../../wasm/pkg/web/allpeers_wasm.js";
import { safeHttpUrl, shortPeer } from "../lib/social";
import { h } from "./dom";

export interface ResourceJson {
  id?: string;
  type: string;
  properties: Record<string, unknown>;
  meta?: Record<string, unknown>;
  children?: Record<string, unknown>;
}

interface RenderField {
  name: string;
  label: string;
  text: string;
  present: boolean;
}
interface RenderView {
  id: string;
  type: string;
  type_title: string;
  title: string;
  lineage: string[];
  fields: RenderField[];
  children: { name: string; label: string; items: RenderField[][] }[];
}

let schemas: Schemas | null = null;
let loading: Promise<boolean> | null = null;
const waiting = new Set<() => void>();

/** Loads the wasm model once; true when the generic view is available. */
export function loadSchemas(): Promise<boolean> {
  loading ??= init({ module_or_path: chrome.runtime.getURL("allpeers_wasm_bg.wasm") })
    .then(() => {
      schemas = new Schemas();
      document.body.dataset.wasm = "ready";
      for (const fn of waiting) fn();
      waiting.clear();
      return true;
    })
    .catch((e: unknown) => {
      document.body.dataset.wasm = "failed";
      console.error("allpeers: the wasm model did not load", e);
      return false;
    });
  return loading;
}

const str = (v: unknown) => (typeof v === "string" ? v : "");

const TEMPLATES: Record<string, (r: ResourceJson) => HTMLElement> = {
  Link: (r) => {
    const p = r.properties;
    const url = str(p.url);
    const href = safeHttpUrl(url);
    const label = str(p.title) || url || "link";
    const card = h("span", { class: "link-card resource-card", "data-type": "Link", "data-safe": String(href !== null) });
    card.append(
      href
        ? h("a", { class: "link-title", href, target: "_blank", rel: "noopener noreferrer", text: label })
        : h("span", { class: "link-title", text: label }),
    );
    if (url) card.append(h("span", { class: "link-url", text: href ? url : `${url} (not a web link: not opened)` }));
    if (str(p.description)) card.append(h("span", { class: "link-desc", text: str(p.description) }));
    return card;
  },
  Peer: (r) => {
    const p = r.properties;
    return h(
      "span",
      { class: "link-card resource-card", "data-type": "Peer" },
      h("span", { class: "link-title", text: str(p.name) || shortPeer(str(p.peerId)) }),
      h("span", { class: "link-url", text: str(p.peerId) }),
    );
  },
};

/** The view of any resource: its type's template, else the schema's generic view. */
export function renderResource(r: ResourceJson): HTMLElement {
  const template = TEMPLATES[r.type];
  if (template) return template(r);
  const el = genericView(r);
  if (!schemas) {
    // Drawn again once the model is loaded.
    const redraw = () => el.replaceWith(genericView(r));
    waiting.add(redraw);
    void loadSchemas();
  }
  return el;
}

/** Fields worth showing in a card: present, not bookkeeping. */
const HIDDEN = new Set(["owner", "created", "modified"]);

function genericView(r: ResourceJson): HTMLElement {
  const card = h("span", { class: "link-card resource-card generic", "data-type": r.type, "data-generic": "true" });
  if (!schemas) {
    card.append(h("span", { class: "link-title", text: r.type }), h("span", { class: "link-url", text: "…" }));
    return card;
  }
  let answer: { ok: boolean; view?: RenderView; errors?: { path: string; reason: string }[]; error?: string };
  try {
    answer = JSON.parse(schemas.render(JSON.stringify(r)));
  } catch (e) {
    answer = { ok: false, error: String(e) };
  }
  if (!answer.ok || !answer.view) {
    const why = answer.errors?.[0] ? `${answer.errors[0].path}: ${answer.errors[0].reason}` : (answer.error ?? "");
    card.dataset.invalid = "true";
    card.append(
      h("span", { class: "link-title", text: `${r.type} (not valid for its type)` }),
      h("span", { class: "link-url", text: why }),
    );
    return card;
  }
  const v = answer.view;
  card.append(
    h("span", { class: "link-title", text: v.title || v.type_title }),
    h("span", { class: "link-url", text: v.type_title }),
  );
  const dl = h("dl", { class: "facts resource-fields" });
  for (const f of v.fields) {
    if (!f.present || HIDDEN.has(f.name) || !f.text) continue;
    dl.append(h("dt", { text: f.label }), h("dd", { text: f.text, "data-field": f.name }));
  }
  for (const c of v.children) {
    if (c.items.length) dl.append(h("dt", { text: c.label }), h("dd", { text: String(c.items.length) }));
  }
  card.append(dl);
  return card;
}
