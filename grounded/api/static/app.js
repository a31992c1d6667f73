// The grounded web page: ask, show the cited answer, highlight what each citation supports.
// The page keeps the conversation: each question goes with the turns before it (`messages`),
// so a follow-up ("and what does it return?") is answered from its standalone rewrite.
// Everything the server returns is inserted as text (never as HTML).
"use strict";

// The dialogue so far, as /v1/query's `messages`: {role: "user" | "assistant", content}.
let conversation = [];

const $ = (id) => document.getElementById(id);
const keyInput = $("apikey");
keyInput.value = localStorage.getItem("grounded-key") || "";

function headers() {
  const h = { "content-type": "application/json", accept: "application/json" };
  const key = keyInput.value.trim();
  if (key) h.authorization = `Bearer ${key}`;
  return h;
}

async function showVersion() {
  try {
    const r = await fetch("/readyz");
    const body = await r.json();
    $("version").textContent = `index version: ${body.index_version ?? "none published yet"}`;
  } catch (e) {
    $("version").textContent = "index version: unknown";
  }
}

const words = (text) => new Set((text.toLowerCase().match(/[\p{L}\p{N}_]+/gu) || []).filter((w) => w.length > 2));

// Sentence spans of a passage: [start, end) offsets, split after . ! ? and blank lines.
function sentenceSpans(text) {
  const spans = [];
  const re = /[^.!?\n]+(?:[.!?]+|\n\n|$)/g;
  let m;
  while ((m = re.exec(text)) !== null) {
    if (m[0].trim()) spans.push([m.index, m.index + m[0].length]);
    if (m[0].length === 0) re.lastIndex++;
  }
  return spans;
}

// For each answer sentence citing a passage, the passage sentence sharing the most words.
function highlights(answer) {
  const marks = new Map();
  for (const c of answer.citations) marks.set(c.id, []);
  for (const s of answer.sentences) {
    const sw = words(s.text);
    for (const id of s.citations) {
      const c = answer.citations.find((x) => x.id === id);
      if (!c) continue;
      const exact = c.text.indexOf(s.text);
      if (exact >= 0) { marks.get(id).push([exact, exact + s.text.length]); continue; }
      let best = null, bestScore = 0;
      for (const [a, b] of sentenceSpans(c.text)) {
        const pw = words(c.text.slice(a, b));
        let shared = 0;
        for (const w of sw) if (pw.has(w)) shared++;
        if (shared > bestScore) { bestScore = shared; best = [a, b]; }
      }
      if (best) marks.get(id).push(best);
    }
  }
  return marks;
}

function renderPassage(c, spans) {
  const box = document.createElement("article");
  box.className = "passage";
  box.id = `cite-${c.id}`;
  const title = document.createElement("h3");
  title.textContent = `[${c.id}] ${c.title || c.doc_id} · ${c.source}`;
  box.append(title);
  if (c.uri) {
    const uri = document.createElement("div");
    uri.className = "muted";
    uri.textContent = `${c.uri} [${c.start}:${c.end}]`;
    box.append(uri);
  }
  const pre = document.createElement("pre");
  const sorted = spans.slice().sort((x, y) => x[0] - y[0]);
  let pos = 0;
  for (const [a, b] of sorted) {
    if (a < pos) continue;
    pre.append(document.createTextNode(c.text.slice(pos, a)));
    const mark = document.createElement("mark");
    mark.textContent = c.text.slice(a, b);
    pre.append(mark);
    pos = b;
  }
  pre.append(document.createTextNode(c.text.slice(pos)));
  box.append(pre);
  return box;
}

function focusCitation(id) {
  document.querySelectorAll(".passage").forEach((p) => p.classList.toggle("active", p.id === `cite-${id}`));
  const el = $(`cite-${id}`);
  if (el) el.scrollIntoView({ behavior: "smooth", block: "nearest" });
}

function render(answer) {
  const out = $("answer");
  out.replaceChildren();
  out.classList.toggle("abstained", answer.abstained);
  if (answer.abstained || answer.sentences.length === 0) {
    out.textContent = answer.answer;
  } else {
    answer.sentences.forEach((s, i) => {
      if (i) out.append(" ");
      out.append(document.createTextNode(s.text + " "));
      for (const id of s.citations) {
        const a = document.createElement("a");
        a.href = `#cite-${id}`;
        a.className = "cite";
        a.textContent = `[${id}]`;
        a.addEventListener("click", (ev) => { ev.preventDefault(); focusCitation(id); });
        out.append(a);
      }
    });
  }
  const ck = (answer.trace || {}).checks || {};
  $("meta").textContent =
    (answer.grounded === false ? "not from the sources: a conversational reply · " : "") +
    `index version ${answer.index_version} · model ${answer.model} · ${answer.answerability}` +
    (answer.cached ? " · from the answer cache" : "") +
    (ck.warning ? ` · warning: ${ck.warning}` : "");
  $("version").textContent = `index version: ${answer.index_version}`;

  const t = answer.timings || {};
  const tr = answer.trace || {};
  const calls = (tr.calls || []).map((c) => `${c.tool}(${JSON.stringify(c.arguments)})${c.ok === false ? " failed" : ""}`);
  const steps = [
    ...(answer.rewrite ? [["rewrite", `follow-up rewritten as: ${answer.rewrite}`, t.rewrite_ms]] : []),
    ["route", `${answer.route || "unstructured"}` + (tr.reason ? `: ${tr.reason}` : ""), t.ground_ms],
    ...calls.map((c) => ["tool", c]),
    ["retrieve", `hybrid search (BM25 + dense): ${answer.citations.length} passages`, t.retrieve_ms],
    ["evidence", "evidence sentences scored against the question", t.evidence_ms],
    ...(ck.gate ? [["gate", `${ck.gate.answerable ? "answerable" : "not answerable"} (p=${Number(ck.gate.probability).toFixed(3)}, threshold ${ck.gate.threshold})`, t.gate_ms]] : []),
    ["generate", answer.abstained && t.generate_ms === undefined ? "skipped: the sources do not answer" : "answer expert wrote cited sentences", t.generate_ms],
    ["verify", `${answer.sentences.length} sentence(s) kept after checking against their citations`, t.verify_ms],
    ...(ck.sentences || []).map((s) => ["check", `“${s.text}”: ${s.support !== undefined ? `entailment ${Number(s.support).toFixed(3)}, ` : ""}${s.decision}`]),
  ];
  if (answer.cached) steps.splice(1, steps.length - 1, ["cache", "same question, same index version: cached answer", t.total_ms]);
  const trace = $("trace");
  trace.replaceChildren();
  for (const [name, what, ms] of steps) {
    const li = document.createElement("li");
    li.dataset.step = name;
    li.textContent = `${name}: ${what}` + (ms !== undefined ? ` (${Number(ms).toFixed(1)} ms)` : "");
    trace.append(li);
  }

  const marks = highlights(answer);
  const box = $("citations");
  box.replaceChildren(...answer.citations.map((c) => renderPassage(c, marks.get(c.id) || [])));
  $("result").hidden = false;
}

function renderConversation() {
  const list = $("turns");
  list.replaceChildren(
    ...conversation.map((turn) => {
      const li = document.createElement("li");
      li.className = `turn ${turn.role}`;
      li.dataset.role = turn.role;
      li.textContent = turn.content;
      return li;
    }),
  );
  $("conversation").hidden = conversation.length === 0;
}

$("new-conversation").addEventListener("click", () => {
  conversation = [];
  renderConversation();
  $("result").hidden = true;
  $("question").focus();
});

$("ask").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const question = $("question").value.trim();
  if (!question) return;
  localStorage.setItem("grounded-key", keyInput.value.trim());
  $("status").className = "muted";
  $("status").textContent = "Answering…";
  $("submit").disabled = true;
  try {
    const messages = [...conversation, { role: "user", content: question }];
    const r = await fetch("/v1/query", { method: "POST", headers: headers(), body: JSON.stringify({ messages }) });
    const body = await r.json();
    if (!r.ok) {
      $("status").className = "error";
      $("status").textContent = `${body.title || r.status}: ${body.detail || ""}`;
      return;
    }
    $("status").textContent = "";
    render(body);
    conversation = [...messages, { role: "assistant", content: body.answer }];
    renderConversation();
    $("question").value = "";
  } catch (e) {
    $("status").className = "error";
    $("status").textContent = `request failed: ${e}`;
  } finally {
    $("submit").disabled = false;
  }
});

showVersion();
