// The ragqa web page: ask with a streamed answer, open cited chunks, manage documents. Vanilla JS, no build step.
// Every string from the server or from a document goes into the page with textContent, never innerHTML:
// documents are data, and a document holding "<script>" must show as text.
"use strict";

const KEY = "ragqa.apiKey";          // sessionStorage: the key lives as long as the tab, never on disk
const COLLECTION = "ragqa.collection";
const MAX_TURNS = 20;                // AskIn.history max_length
const MAX_TURN_CHARS = 4000;         // Turn.content max_length
const FINISHED = new Set(["done", "failed", "cancelled"]);

const $ = (id) => document.getElementById(id);
const state = { collection: null, history: [], conversationId: "", chunks: new Map(), sourceChunk: null, busy: false };
const turns = new WeakMap();         // turn element -> its question, collection and final answer (for feedback)

class ApiError extends Error {
  constructor(status, detail) { super(detail); this.status = status; }
}

// ---- HTTP ---------------------------------------------------------------------------------------------------------

function authHeaders(extra) {
  const h = new Headers(extra || {});
  const key = sessionStorage.getItem(KEY);
  if (key) h.set("Authorization", "Bearer " + key);
  return h;
}

function describe(detail) {
  if (typeof detail === "string") return detail;
  if (Array.isArray(detail)) return detail.map((d) => (d && d.msg) || JSON.stringify(d)).join("; ");
  return JSON.stringify(detail);
}

// Relative paths, so the page also works behind a proxy that mounts the service under a prefix.
async function api(path, options = {}) {
  const r = await fetch(path, { ...options, headers: authHeaders(options.headers) });
  if (r.ok) return r;
  let detail = r.statusText;
  try { detail = describe((await r.json()).detail); } catch (_) { /* not JSON: keep the status text */ }
  if (r.status === 401) askForKey(detail);
  throw new ApiError(r.status, detail);
}

const getJSON = async (path) => (await api(path)).json();
const enc = encodeURIComponent;

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (k === "class") node.className = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else if (k in node) node[k] = v;
    else node.setAttribute(k, v);
  }
  for (const c of children) if (c !== null && c !== undefined) node.append(c);
  return node;
}

// ---- API key ------------------------------------------------------------------------------------------------------

function askForKey(why) {
  $("main").hidden = true;
  $("collbar").hidden = true;
  $("keybox").hidden = false;
  $("signout").hidden = true;
  $("key-error").textContent = sessionStorage.getItem(KEY) ? why : "";
  sessionStorage.removeItem(KEY);
  $("apikey").focus();
}

async function useKey(event) {
  event.preventDefault();
  sessionStorage.setItem(KEY, $("apikey").value.trim());
  $("apikey").value = "";
  await start();
}

// ---- collections and documents ------------------------------------------------------------------------------------

async function start() {
  let cols;
  try {
    cols = await getJSON("collections");
  } catch (e) {
    if (e.status !== 401) showError($("page-error"), e);
    return;
  }
  $("keybox").hidden = true;
  $("page-error").textContent = "";
  $("main").hidden = false;
  $("collbar").hidden = false;
  $("signout").hidden = !sessionStorage.getItem(KEY);
  fillCollections(cols);
}

function fillCollections(cols, wanted) {
  const select = $("collection");
  const names = cols.map((c) => c.name);
  if (wanted && !names.includes(wanted)) { names.push(wanted); cols = cols.concat([{ name: wanted, documents: 0, chunks: 0 }]); }
  select.replaceChildren(...cols.map((c) => el("option", { value: c.name, textContent: c.name })));
  const remembered = wanted || sessionStorage.getItem(COLLECTION);
  const pick = names.includes(remembered) ? remembered : names.includes("default") ? "default" : names[0];
  select.disabled = names.length === 0;
  if (!pick) { $("collection-info").textContent = "no collections yet: create one and upload files"; return; }
  select.value = pick;
  const info = cols.find((c) => c.name === pick);
  $("collection-info").textContent = `${info.documents} documents, ${info.chunks} chunks`;
  if (state.collection !== pick) {
    state.collection = pick;
    sessionStorage.setItem(COLLECTION, pick);
    newConversation();
  }
  loadDocuments();
}

async function refreshCollections() {
  fillCollections(await getJSON("collections"), state.collection);
}

async function loadDocuments() {
  const name = state.collection;
  $("docs-error").textContent = "";
  let docs = [];
  try {
    docs = await getJSON(`collections/${enc(name)}/documents`);
  } catch (e) {
    if (e.status !== 404) showError($("docs-error"), e);  // 404: a new collection, nothing uploaded yet
  }
  if (name !== state.collection) return;
  $("docrows").replaceChildren(...docs.map((d) => el("tr", {},
    el("td", {}, el("a", { href: fileUrl(name, d.doc_id), textContent: d.title || d.source_path,
                           title: d.source_path, onclick: openFile })),
    el("td", {}, d.effective_date || "",
       d.date_source === "mtime" ? el("span", { class: "muted", textContent: " (file time)",
                                                title: "no date in the document: the file's modification time" }) : null),
    el("td", {}, el("button", { type: "button", class: "delete", textContent: "Delete",
                                "aria-label": `Delete ${d.title || d.source_path}`,
                                onclick: () => deleteDocument(name, d) })),
  )));
}

async function deleteDocument(name, doc) {
  if (!confirm(`Delete "${doc.title || doc.source_path}" from ${name}?`)) return;
  try {
    await api(`collections/${enc(name)}/documents/${enc(doc.doc_id)}`, { method: "DELETE" });
  } catch (e) { showError($("docs-error"), e); return; }
  await refreshCollections();
}

async function upload(event) {
  event.preventDefault();
  const input = $("files");
  if (!state.collection || input.files.length === 0) return;
  const form = new FormData();
  for (const f of input.files) form.append("files", f, f.name);
  const name = state.collection;
  $("docs-error").textContent = "";
  let job;
  try {
    job = await (await api(`collections/${enc(name)}/documents`, { method: "POST", body: form })).json();
  } catch (e) { showError($("docs-error"), e); return; }
  input.value = "";
  await followJob(job.job_id);
  await refreshCollections();
}

async function followJob(id) {
  const line = $("jobs");
  for (;;) {
    let job;
    try { job = await getJSON(`jobs/${id}`); } catch (e) { showError($("docs-error"), e); return; }
    const p = job.progress || {};
    const current = p.current ? `, reading ${p.current.split("/").pop()}` : "";
    line.textContent = `Ingest job ${id}: ${job.status}, ${p.files_done || 0} of ${p.files_total || 0} files${current}`;
    line.dataset.status = job.status;
    if (FINISHED.has(job.status)) {
      // Each failed file with its reason, as ingest reports it (ingest/pipeline.py FileResult).
      const files = (job.report && job.report.files) || [];
      const failed = files.filter((f) => f.status === "failed")
        .map((f) => `${String(f.path).split("/").pop()}: ${f.reason}`);
      const why = [job.error, ...failed].filter(Boolean).join("; ");
      line.textContent = `Ingest job ${id}: ${job.status}${why ? " (" + why + ")" : ""}`;
      return;
    }
    await new Promise((done) => setTimeout(done, 500));
  }
}

function newCollection(event) {
  event.preventDefault();
  const name = $("newcoll").value.trim();
  $("newcoll").value = "";
  const cols = [...$("collection").options].map((o) => ({ name: o.value, documents: 0, chunks: 0 }));
  fillCollections(cols, name);
}

// ---- asking -------------------------------------------------------------------------------------------------------

// The page sends the conversation's turns as `history` (the server keeps nothing); the id only groups feedback.
function newConversation() {
  state.history = [];
  state.conversationId = [...crypto.getRandomValues(new Uint8Array(12))].map((b) => b.toString(16).padStart(2, "0")).join("");
  $("turns").replaceChildren();
  closeSource();
  $("question").focus();
}

async function ask(event) {
  event.preventDefault();
  const question = $("question").value.trim();
  if (!question || state.busy) return;
  state.busy = true;
  $("ask").disabled = true;
  $("question").value = "";
  const turn = newTurn(question, state.collection);
  const body = { question, stream: true, history: state.history.slice(-MAX_TURNS) };
  if (state.collection) body.collection = state.collection;
  try {
    const r = await api("ask", { method: "POST", body: JSON.stringify(body),
                                 headers: { "content-type": "application/json", accept: "text/event-stream" } });
    await readEvents(r, (ev) => onEvent(turn, ev));
    if (!turn.final && !turn.node.classList.contains("failed")) failTurn(turn, "The answer stream ended early.");
  } catch (e) {
    failTurn(turn, e.message || String(e));
  } finally {
    state.busy = false;
    $("ask").disabled = false;
    turn.node.querySelector(".a").setAttribute("aria-busy", "false");
  }
}

// Server-sent events over a POST body (EventSource can only GET): blocks end with a blank line.
async function readEvents(response, handle) {
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer = (buffer + value).replace(/\r\n/g, "\n");
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const data = block.split("\n").filter((l) => l.startsWith("data:")).map((l) => l.slice(5).trimStart());
      if (data.length) handle(JSON.parse(data.join("\n")));
    }
  }
}

function newTurn(question, collection) {
  const node = $("turn-template").content.firstElementChild.cloneNode(true);
  node.querySelector(".q").textContent = question;
  $("turns").append(node);
  node.scrollIntoView({ block: "end" });
  const turn = { node, question, collection, conversationId: state.conversationId, streamed: "", final: null };
  turns.set(node, turn);
  return turn;
}

function onEvent(turn, ev) {
  const q = (sel) => turn.node.querySelector(sel);
  if (ev.type === "status") q(".stage").textContent = ev.text;
  else if (ev.type === "delta") {
    turn.streamed += ev.text;
    q(".answer-text").textContent = turn.streamed;  // markers become links once the final event checks them
  } else if (ev.type === "final") showFinal(turn, ev);
  else if (ev.type === "error") failTurn(turn, ev.detail);
}

function failTurn(turn, message) {
  turn.node.classList.add("failed");
  turn.node.querySelector(".stage").textContent = "";
  turn.node.querySelector(".answer-text").replaceChildren(el("p", { class: "error", role: "alert", textContent: message }));
}

const BADGES = {
  no_answer: "Not in the knowledge base",
  partial: "Partly supported: some sentences have no source",
  retrieval_only: "The model is unavailable: sources only",
};

function showFinal(turn, final) {
  turn.final = final;
  const q = (sel) => turn.node.querySelector(sel);
  turn.node.classList.add("status-" + final.status);
  turn.node.dataset.status = final.status;
  q(".stage").textContent = "";
  const badge = BADGES[final.status];
  q(".badge").hidden = !badge;
  q(".badge").textContent = badge || "";
  const byMarker = new Map(final.citations.map((c) => [c.marker, c]));
  const { body, notes } = splitNotes(final.answer);
  q(".answer-text").replaceChildren(...withMarkers(body, byMarker, turn));
  if (final.revision && final.revision.replaced) {
    q(".revision").hidden = false;
    q(".revision").textContent = "The streamed text was withdrawn: " + final.revision.reason;
  }
  const items = notes.map(({ kind, text }) => el("li", { class: "note " + kind },
    el("strong", { textContent: kind === "conflict" ? "Sources disagree. " : "Knowledge cut-off. " }),
    ...withMarkers(text.replace(/^(Note: |注意：)/, ""), byMarker, turn)));
  const conflictNote = items.find((li) => li.classList.contains("conflict"));
  for (const c of final.conflicts) {
    const why = `This answer follows ${source(c.preferred)} over ${source(c.other)}: ${c.reason}.`;
    if (conflictNote) conflictNote.append(el("span", { class: "why", textContent: why }));
    else items.push(el("li", { class: "note conflict" }, el("strong", { textContent: "Sources disagree. " }), why));
  }
  if (final.knowledge_cutoff && final.status !== "no_answer" && !notes.some((n) => n.kind === "cutoff")) {
    items.push(el("li", { class: "note dated muted", textContent: `Newest source searched: ${final.knowledge_cutoff}` }));
  }
  q(".notes").replaceChildren(...items);
  q(".cites").replaceChildren(...final.citations.map((c) => el("li", {},
    citeButton(c, turn, `[${c.marker}] ${source(c)}`), el("q", { class: "quote", textContent: c.quote }))));
  q(".feedback").hidden = false;
  if (turn.conversationId !== state.conversationId) return;  // a new conversation began while this one was answered
  state.history.push({ role: "user", content: turn.question.slice(0, MAX_TURN_CHARS) },
                     { role: "assistant", content: final.answer.slice(0, MAX_TURN_CHARS) });
}

// The notes the pipeline appends to an answer (app/notes.py), shown apart from the answer's own sentences.
const NOTE_STARTS = [
  ["cutoff", "Note: the newest relevant document in the knowledge base is dated"], ["cutoff", "注意：知识库中最新的相关文档日期为"],
  ["conflict", "Note: the sources disagree"], ["conflict", "注意：来源之间存在不一致"],
];

function splitNotes(text) {
  const starts = [];
  for (const [kind, prefix] of NOTE_STARTS) {
    for (let i = text.indexOf(prefix); i >= 0; i = text.indexOf(prefix, i + 1)) starts.push({ kind, at: i });
  }
  starts.sort((a, b) => a.at - b.at);
  if (!starts.length) return { body: text, notes: [] };
  const notes = starts.map((s, i) => ({ kind: s.kind, text: text.slice(s.at, i + 1 < starts.length ? starts[i + 1].at : undefined).trim() }));
  return { body: text.slice(0, starts[0].at).trimEnd(), notes };
}

function source(c) {
  const page = c.page ? `, page ${c.page}` : "";
  const date = c.effective_date ? ` (${c.effective_date})` : "";
  return `"${c.title || c.source_path}"${page}${date}`;
}

function withMarkers(text, byMarker, turn) {
  const parts = [];
  let last = 0;
  for (const m of text.matchAll(/\[(\d+)\]/g)) {
    const c = byMarker.get(Number(m[1]));
    if (!c) continue;
    parts.push(text.slice(last, m.index), citeButton(c, turn, m[0], "marker"));
    last = m.index + m[0].length;
  }
  parts.push(text.slice(last));
  return parts;
}

function citeButton(c, turn, label, cls = "cite") {
  return el("button", { type: "button", class: cls, textContent: label, "data-marker": String(c.marker),
                        "aria-label": `Source ${c.marker}: ${c.title || c.source_path}`,
                        onclick: () => openCitation(turn.collection, c) });
}

// ---- the cited chunk ----------------------------------------------------------------------------------------------

const fileUrl = (name, docId) => `collections/${enc(name)}/documents/${enc(docId)}/file`;

// With `quote`, the server says where the quote is in the chunk (`highlights`): it knows how table rows are quoted.
async function fetchChunk(name, id, quote) {
  const path = `collections/${enc(name)}/chunks/${id}` + (quote ? `?quote=${enc(quote)}` : "");
  if (!state.chunks.has(path)) state.chunks.set(path, await getJSON(path));
  return state.chunks.get(path);
}

async function openCitation(name, c) {
  // What the answer already says about the source shows at once; the chunk's text follows.
  showSource(name, { doc_id: c.doc_id, doc_title: c.title || c.source_path, page_start: c.page,
                     effective_date: c.effective_date, text: c.quote, highlights: [[0, c.quote.length]] }, true);
  try {
    showSource(name, await fetchChunk(name, c.chunk_id, c.quote.slice(0, 4000)), true);
  } catch (e) { showError($("source-error"), e); }
}

async function openNeighbour(which) {
  const chunk = state.sourceChunk;
  if (!chunk || chunk[which] === null || chunk[which] === undefined) return;  // the button is disabled
  try { showSource(chunk.collection, await fetchChunk(chunk.collection, chunk[which]), false); }
  catch (e) { showError($("source-error"), e); }
}

function showSource(name, chunk, quoted) {
  state.sourceChunk = { ...chunk, collection: name };
  const pane = $("source");
  const wasHidden = pane.hidden;
  pane.hidden = false;
  $("source-error").textContent = "";
  $("source-doc").textContent = chunk.doc_title || chunk.source_path || chunk.doc_id;
  $("source-section").textContent = (chunk.section_path || []).join(" › ");
  $("source-page").textContent = pages(chunk.page_start, chunk.page_end);
  // A file's modification time is when a copy was made, not when its text took effect (README: date filters).
  const weak = chunk.date_source === "mtime" ? " (the file's modification time)" : "";
  $("source-date").textContent = chunk.effective_date ? chunk.effective_date + weak : "none given";
  $("source-file").href = fileUrl(name, chunk.doc_id);
  $("source-prev").disabled = chunk.previous_chunk_id === null || chunk.previous_chunk_id === undefined;
  $("source-next").disabled = chunk.next_chunk_id === null || chunk.next_chunk_id === undefined;
  const marks = highlight($("source-text"), chunk.text || "", chunk.highlights || []);
  if (quoted && !marks) $("source-error").textContent = "The quoted span was not found in this chunk's text.";
  if (wasHidden) pane.focus();
  const mark = $("source-text").querySelector("mark");
  if (mark) mark.scrollIntoView({ block: "nearest" });
}

function pages(start, end) {
  if (start === null || start === undefined) return "—";
  return end && end !== start ? `${start}–${end}` : String(start);
}

// Marks the [start, end) ranges in the text; the rest stays plain text. The server counts code points (Python),
// JavaScript strings count UTF-16 units: slice an array of code points so a character beyond U+FFFF cannot shift it.
function highlight(container, text, ranges) {
  const chars = Array.from(text);
  const parts = [];
  let last = 0, marked = 0;
  for (const [start, end] of [...ranges].sort((a, b) => a[0] - b[0])) {
    if (start < last || end > chars.length) continue;
    parts.push(chars.slice(last, start).join(""), el("mark", { textContent: chars.slice(start, end).join("") }));
    last = end;
    marked += 1;
  }
  parts.push(chars.slice(last).join(""));
  container.replaceChildren(...parts);
  return marked > 0;
}

function closeSource() {
  $("source").hidden = true;
  state.sourceChunk = null;
}

// With a key, a plain link would go without the Authorization header: fetch the file and open it from a blob.
async function openFile(event) {
  if (!sessionStorage.getItem(KEY)) return;
  event.preventDefault();
  try {
    const blob = await (await api(event.currentTarget.getAttribute("href"))).blob();
    window.open(URL.createObjectURL(blob), "_blank", "noopener");
  } catch (e) { showError($("source-error"), e); }
}

// ---- feedback -----------------------------------------------------------------------------------------------------

function onFeedbackClick(event) {
  const button = event.target.closest(".feedback button.up, .feedback button.down");
  if (!button) return;
  const box = button.closest(".feedback");
  for (const b of box.querySelectorAll("button.up, button.down")) b.setAttribute("aria-pressed", String(b === button));
  box.dataset.rating = button.classList.contains("up") ? "up" : "down";
  box.querySelector(".fbform").hidden = false;
  box.querySelector(".fbcomment").focus();
}

async function sendFeedback(event) {
  const form = event.target.closest(".fbform");
  if (!form) return;
  event.preventDefault();
  const box = form.closest(".feedback");
  const turn = turns.get(box.closest(".turn"));
  const status = box.querySelector(".fbstatus");
  const body = { collection: turn.collection, question: turn.question, answer: turn.final.answer,
                 rating: box.dataset.rating, citations: turn.final.citations };
  if (turn.conversationId) body.conversation_id = turn.conversationId;
  const comment = box.querySelector(".fbcomment").value.trim();
  if (comment) body.comment = comment;
  try {
    await api("feedback", { method: "POST", body: JSON.stringify(body), headers: { "content-type": "application/json" } });
  } catch (e) { status.textContent = "Feedback not saved: " + e.message; return; }
  form.hidden = true;
  status.textContent = "Thank you: feedback saved.";
}

// ---- wiring -------------------------------------------------------------------------------------------------------

function showError(node, e) {
  node.textContent = e.status ? `${e.message} (HTTP ${e.status})` : String(e.message || e);
}

function wire() {
  $("keyform").addEventListener("submit", useKey);
  $("signout").addEventListener("click", () => { sessionStorage.removeItem(KEY); location.reload(); });
  $("collection").addEventListener("change", (e) => {
    getJSON("collections").then((cols) => fillCollections(cols, e.target.value))
      .catch((err) => showError($("docs-error"), err));
  });
  $("askform").addEventListener("submit", ask);
  $("question").addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing) { e.preventDefault(); $("askform").requestSubmit(); }
  });
  $("newconv").addEventListener("click", newConversation);
  $("uploadform").addEventListener("submit", upload);
  $("newcollform").addEventListener("submit", newCollection);
  $("source-close").addEventListener("click", closeSource);
  $("source-prev").addEventListener("click", () => openNeighbour("previous_chunk_id"));
  $("source-next").addEventListener("click", () => openNeighbour("next_chunk_id"));
  $("source-file").addEventListener("click", openFile);
  document.addEventListener("keydown", (e) => { if (e.key === "Escape" && !$("source").hidden) closeSource(); });
  $("turns").addEventListener("click", onFeedbackClick);
  $("turns").addEventListener("submit", sendFeedback);
}

document.addEventListener("DOMContentLoaded", () => { wire(); start(); });
