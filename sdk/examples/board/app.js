// Board: a shared list of notes and links, written only against @allpeers/sdk.
// Serve the sdk/ folder as static files (see docs/sdk.md) and open /examples/board/.
import { AllPeersError, connect } from "../../dist/allpeers.js";

// The app's own types: a Board (a titled resource) holding notes as children. Every type an
// app declares is named in its namespace (`app_<hash>_`, from AllPeers): the SDK passes it in.
const boardSchema = (ns) => `<?xml version="1.0" encoding="UTF-8"?>
<grammar xmlns="http://relaxng.org/ns/structure/1.0" xmlns:ap="urn:allpeers:schema:1"
         ns="urn:allpeers:resource:1" datatypeLibrary="http://www.w3.org/2001/XMLSchema-datatypes">
  <include href="Resource.rng"><start><ref name="${ns}Board"/></start></include>
  <define name="${ns}Board"><element name="${ns}Board"><ref name="${ns}Board.content"/></element></define>
  <define name="${ns}Board.content" ap:type="${ns}Board" ap:extends="Resource" ap:title="Board">
    <interleave>
      <ref name="Resource.content"/>
      <zeroOrMore><element name="note"><ref name="${ns}Note.content"/></element></zeroOrMore>
    </interleave>
  </define>
  <define name="${ns}Note.content" ap:type="${ns}Note" ap:anonymous="true">
    <interleave>
      <element name="text"><data type="string"/></element>
      <optional><element name="url"><data type="string"/></element></optional>
      <element name="author"><data type="string"/></element>
      <element name="added"><data type="dateTime"/></element>
    </interleave>
  </define>
</grammar>`;

const SCOPES = ["identity", "contacts:read", "resources", "shares"];

const state = {
  client: null,
  me: null,
  boardType: "",
  boards: new Map(), // id -> resource
  current: "",
  contacts: new Map(), // peer_id -> contact
  shares: [],
  presence: false,
  seenNotes: new Set(),
};

const $ = (id) => document.getElementById(id);

function el(tag, props = {}, ...children) {
  const node = Object.assign(document.createElement(tag), props);
  node.append(...children.filter((c) => c !== null && c !== undefined));
  return node;
}

function setStatus(text, isError = false) {
  $("status").textContent = text;
  $("status").classList.toggle("error", isError);
}

function explain(error) {
  if (!(error instanceof AllPeersError)) return String(error?.message ?? error);
  switch (error.codeName) {
    case "NotInstalled":
      return "AllPeers is not installed in this browser: install the extension, then reload.";
    case "UserRejected":
      return "You declined. The board needs these permissions to keep and share its data.";
    case "Unauthorized":
      return `AllPeers refused: ${error.message}. (Was access revoked in Settings?)`;
    case "Disconnected":
      return "AllPeers is not running (no line to its daemon): it will reconnect by itself.";
    default:
      return `${error.codeName} (${error.code}): ${error.message}`;
  }
}

function nameOf(peerId) {
  if (state.me && peerId === state.me.peer_id) return "you";
  const contact = state.contacts.get(peerId);
  return contact?.name ?? `${peerId.slice(0, 10)}…`;
}

// ---- connecting -------------------------------------------------------------------------

async function start() {
  $("connect").disabled = true;
  setStatus("Waiting for AllPeers (a prompt may open)…");
  try {
    state.client = await connect({ scopes: SCOPES });
    await setUp();
  } catch (error) {
    setStatus(explain(error), true);
    $("connect").disabled = false;
  }
}

async function setUp() {
  const client = state.client;
  state.me = await client.identity();
  await client.registerSchema(boardSchema, "board");
  state.boardType = `${await client.namespace()}Board`;
  // Every change of a board (ours or a friend's, replicated) and boards arriving through a share.
  await client.resources.subscribe({ type: { name: state.boardType } }, onBoardChanged);
  await client.on("contact.changed", () => void loadContacts().then(render));
  // The line's state is also on <body> (data-line, data-line-losses) for tests.
  await client.on("connect", () => {
    document.body.dataset.line = "up";
    void reload().then(() => setStatus("")); // back after a lost line: re-read what we missed
  });
  await client.on("disconnect", () => {
    document.body.dataset.line = "down";
    document.body.dataset.lineLosses = String(Number(document.body.dataset.lineLosses ?? 0) + 1);
    setStatus("AllPeers went away; waiting for it to come back…", true);
  });
  await client.on("permissionsChanged", ({ scopes }) => {
    if (!SCOPES.every((s) => scopes.includes(s))) setStatus("Access was revoked in AllPeers.", true);
    else void reload();
  });
  const { scopes } = await client.permissions();
  if (scopes.includes("presence")) await showPresence();
  $("welcome").hidden = true;
  $("app").hidden = false;
  $("me").hidden = false;
  $("me").textContent = `Signed in through AllPeers as ${state.me.name ?? state.me.peer_id}`;
  await reload();
}

async function reload() {
  try {
    const boards = await state.client.resources.query({
      type: state.boardType,
      sort: [{ prop: "created", desc: false }],
    });
    state.boards = new Map(boards.map((b) => [b.id, b]));
    if (!state.boards.has(state.current)) state.current = boards[0]?.id ?? "";
    await Promise.all([loadContacts(), loadShares()]);
    render();
  } catch (error) {
    setStatus(explain(error), true);
  }
}

async function loadContacts() {
  const contacts = await state.client.contacts();
  state.contacts = new Map(contacts.map((c) => [c.peer_id, c]));
}

async function loadShares() {
  state.shares = await state.client.shares();
}

async function onBoardChanged(change) {
  if (change.kind === "deleted") {
    state.boards.delete(change.id);
  } else {
    const board = await state.client.resources.get(change.id);
    if (!board) return;
    const isNew = !state.boards.has(board.id);
    state.boards.set(board.id, board);
    if (!state.current) state.current = board.id;
    if (isNew) await loadShares(); // a board a friend just shared with us
  }
  render();
}

const noteKey = (note) => `${note.properties.author}|${Date.parse(String(note.properties.added))}|${note.properties.text}`;

async function showPresence() {
  if (!state.presence) {
    await state.client.on("presence.changed", (p) => {
      const contact = state.contacts.get(p.peer_id);
      if (!contact) return;
      contact.online = p.online;
      contact.state = p.state;
      render();
    });
  }
  state.presence = true;
  $("presence").hidden = true;
  await loadContacts();
  render();
}

// ---- actions ----------------------------------------------------------------------------

async function createBoard(event) {
  event.preventDefault();
  const input = $("new-board-title");
  const board = await state.client.resources.create({
    id: "",
    type: state.boardType,
    properties: { title: input.value.trim() },
  });
  input.value = "";
  state.boards.set(board.id, board);
  state.current = board.id;
  render();
}

async function addNote(event) {
  event.preventDefault();
  const id = state.current;
  const text = $("note-text").value.trim();
  const url = $("note-url").value.trim();
  if (!id || !text) return;
  const note = { properties: { text, author: state.me.peer_id, added: new Date().toISOString() } };
  if (url) note.properties.url = url;
  // The notes are one child slot. `append` adds at its end as it is when the write lands (never
  // a stale copy of the slot), and merges with a friend's append made at the same moment: both
  // notes stay.
  const updated = await state.client.resources.update(id, { properties: {}, append: { note: [note] } });
  state.boards.set(id, updated);
  $("note-text").value = "";
  $("note-url").value = "";
  render();
}

async function shareBoard(event) {
  event.preventDefault();
  const peer = $("share-contact").value;
  if (!state.current || !peer) return;
  await state.client.share(state.current, [peer], "write"); // they may add notes too
  await loadShares();
  render();
}

// ---- rendering (friends' text goes in as text: never as HTML) ------------------------------

function render() {
  renderBoards();
  renderBoard();
  renderContacts();
}

function renderBoards() {
  const list = $("boards");
  list.replaceChildren(
    ...[...state.boards.values()].map((board) => {
      const button = el("button", { type: "button", textContent: board.properties.title || "Untitled" });
      button.setAttribute("aria-current", String(board.id === state.current));
      button.addEventListener("click", () => {
        state.current = board.id;
        render();
      });
      return el("li", {}, button);
    }),
  );
}

function safeHref(url) {
  try {
    const parsed = new URL(url);
    return parsed.protocol === "https:" || parsed.protocol === "http:" ? parsed.href : "";
  } catch {
    return "";
  }
}

function renderBoard() {
  const board = state.boards.get(state.current);
  $("board").hidden = !board;
  if (!board) return;
  $("board-title").textContent = board.properties.title || "Untitled";
  const owner = String(board.properties.owner ?? "");
  $("board-owner").textContent = owner ? `Started by ${nameOf(owner)}` : "";
  const notes = board.children?.note ?? [];
  $("notes").replaceChildren(
    ...(notes.length === 0 ? [el("li", { className: "empty", textContent: "No notes yet." })] : []),
    ...notes.map((note) => {
      const p = note.properties;
      const key = noteKey(note);
      const item = el("li", { className: state.seenNotes.has(key) ? "" : "new" }, el("span", { textContent: String(p.text) }));
      state.seenNotes.add(key);
      const href = p.url ? safeHref(String(p.url)) : "";
      if (href) {
        item.append(el("br"), el("a", { href, textContent: new URL(href).host, rel: "noopener noreferrer", target: "_blank" }));
      }
      item.append(el("span", { className: "by", textContent: `${nameOf(String(p.author))} · ${new Date(String(p.added)).toLocaleString()}` }));
      return item;
    }),
  );
  const shares = state.shares.filter((s) => s.resource === board.id);
  const members = new Map();
  for (const share of shares) {
    for (const m of share.members) members.set(m.peer, m.peer === share.owner ? "owner" : m.level);
  }
  members.delete(state.me.peer_id);
  // Only the board's admins (its owner) may share it further.
  const mayShare = owner === state.me.peer_id || shares.some((s) => s.level === "admin");
  $("share").hidden = !mayShare;
  $("members").replaceChildren(
    ...(members.size === 0 ? [el("li", { className: "muted", textContent: "Only you so far." })] : []),
    ...[...members].map(([peer, level]) => el("li", {}, presenceDot(peer), el("span", { textContent: `${nameOf(peer)} (${level})` }))),
  );
  const select = $("share-contact");
  const chosen = select.value;
  const candidates = [...state.contacts.values()].filter((c) => !members.has(c.peer_id));
  select.replaceChildren(
    el("option", { value: "", textContent: candidates.length ? "Share with…" : "No contact to share with" }),
    ...candidates.map((c) => el("option", { value: c.peer_id, textContent: c.name ?? c.peer_id })),
  );
  if (candidates.some((c) => c.peer_id === chosen)) select.value = chosen;
}

function presenceDot(peerId) {
  const contact = state.contacts.get(peerId);
  const known = state.presence && contact && typeof contact.online === "boolean";
  const dot = el("span", { className: `dot ${known ? (contact.online ? "online" : "") : "unknown"}` });
  if (known) dot.title = contact.online ? contact.state ?? "online" : "offline";
  return dot;
}

function renderContacts() {
  $("contacts").replaceChildren(
    ...(state.contacts.size === 0 ? [el("li", { className: "muted", textContent: "No contacts yet: add friends in AllPeers." })] : []),
    ...[...state.contacts.values()].map((c) => el("li", {}, presenceDot(c.peer_id), el("span", { textContent: c.name ?? c.peer_id }))),
  );
}

// ---- wiring -----------------------------------------------------------------------------

function guarded(action) {
  return (event) =>
    action(event).then(
      () => setStatus(""),
      (error) => setStatus(explain(error), true),
    );
}

$("connect").addEventListener("click", () => void start());
$("new-board").addEventListener("submit", guarded(createBoard));
$("add-note").addEventListener("submit", guarded(addNote));
$("share").addEventListener("submit", guarded(shareBoard));
$("presence").addEventListener("click", guarded(async () => {
  await state.client.requestPermissions(["presence"]);
  await showPresence();
}));
