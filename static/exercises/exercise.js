// The exercise page: submit the answer form without reloading, follow the attempt's grading
// (polling its JSON status), then show the score and each question's feedback — with the
// packet the answer implies (tuple, hash, bucket, core and the bytes the hash was fed).
// Every node is built with textContent: nothing from the server is parsed as HTML here.

const root = document.getElementById("exercise");
const form = document.getElementById("answer-form");
const progress = document.getElementById("progress");
const feedback = document.getElementById("feedback");
const errors = document.getElementById("form-errors");
const POLL_MS = 400;

function el(tag, text, cls) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) { node.textContent = String(text); }
  if (cls) { node.className = cls; }
  return node;
}

function newToken() {
  const bytes = new Uint8Array(16);
  crypto.getRandomValues(bytes);
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

const MARK = { correct: "✓", partial: "◐", incorrect: "✗", unanswered: "–", invalid: "✗",
  "no-attempts-left": "✗", error: "!" };

function packetLine(p) {
  const ends = p.sport !== null && p.sport !== undefined
    ? `${p.src}:${p.sport} → ${p.dst}:${p.dport}` : `${p.src} → ${p.dst}`;
  const parts = [`${p.direction ? p.direction + " " : ""}${ends} ${p.proto}`];
  if (p.hash_hex) { parts.push(`hash ${p.hash_hex}`); }
  if (p.bucket !== null && p.bucket !== undefined) { parts.push(`bucket ${p.bucket}`); }
  if (p.core !== null && p.core !== undefined) { parts.push(`core ${p.core}`); }
  return parts.join(" · ");
}

function showResult(data) {
  feedback.textContent = "";
  if (data.status === "failed") {
    feedback.appendChild(el("p", `Not graded: ${data.error}`, "error"));
    return;
  }
  const head = el("p", `Attempt ${data.attempt}: `, "ex-score");
  const score = el("span", `${data.score}/${data.max_score}`);
  score.id = "result-score";
  head.appendChild(score);
  if (data.late) { head.appendChild(el("span", ` (late, −${data.penalty_pct} %)`)); }
  feedback.appendChild(head);
  const list = el("ul", null, "ex-feedback");
  for (const q of data.questions) {
    if (q.outcome === "unanswered") { continue; }
    const item = el("li", null, `outcome-${q.outcome}`);
    item.dataset.question = q.id;
    item.appendChild(el("strong", `${q.id} ${MARK[q.outcome] || ""} ${q.points}/${q.max_points} ${q.outcome}`));
    if (q.hint_cost) { item.appendChild(el("span", ` (hints −${q.hint_cost})`, "muted")); }
    if (q.feedback) { item.appendChild(el("p", q.feedback)); }
    if (q.details && q.details.length) {
      const why = el("ul");
      q.details.forEach((d) => why.appendChild(el("li", d)));
      item.appendChild(why);
    }
    for (const p of q.packets || []) {
      const box = el("div", null, "packet");
      box.appendChild(el("code", packetLine(p)));
      if (p.input_hex) {
        box.appendChild(el("div", `hash input (${p.input_hex.length / 2} bytes): ${p.input_hex.match(/../g).join(" ")}`, "muted"));
      }
      if (p.explain_url) {
        const link = el("a", "how: bit-by-bit ▸", "explain-link");
        link.href = p.explain_url;
        box.appendChild(link);
      }
      item.appendChild(box);
    }
    if (q.expected) { item.appendChild(el("p", `the engine: ${JSON.stringify(q.expected)}`, "muted")); }
    item.appendChild(el("small", `${q.attempts_left} attempts left at ${q.id}`, "muted"));
    list.appendChild(item);
  }
  feedback.appendChild(list);
  if (typeof data.total === "number") {
    const score = document.getElementById("score");
    if (score) { score.textContent = `★ ${data.total}/${data.max_score}`; }
  }
}

function historyRow(data) {
  const body = document.querySelector("#attempts tbody");
  let row = body.querySelector(`tr[data-attempt="${data.attempt}"]`);
  if (!row) {
    row = document.createElement("tr");
    row.dataset.attempt = data.attempt;
    body.prepend(row);
  }
  row.textContent = "";
  const score = data.score === null ? "—" : `${data.score}/${data.max_score}`;
  for (const text of [data.attempt, data.created_at.replace("T", " ").slice(0, 19),
    data.status + (data.error ? `: ${data.error}` : ""), score, `v${data.version}`]) {
    row.appendChild(el("td", text));
  }
}

async function follow(url) {
  for (;;) {
    const response = await fetch(url, { headers: { Accept: "application/json" } });
    const data = await response.json();
    historyRow(data);
    if (data.finished) {
      progress.textContent = data.status === "graded" ? "graded" : "not graded";
      root.dataset.graded = String(data.attempt);
      showResult(data);
      return data;
    }
    progress.textContent = data.status === "grading" ? "grading on a worker…" : "queued for a worker…";
    await new Promise((resolve) => { setTimeout(resolve, POLL_MS); });
  }
}

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  const button = document.getElementById("submit");
  button.disabled = true;
  errors.hidden = true;
  progress.textContent = "sending…";
  try {
    const response = await fetch(root.dataset.submit, { method: "POST", body: new FormData(form),
      headers: { Accept: "application/json" } });
    const data = await response.json();
    if (!response.ok) {
      errors.textContent = (data.errors || []).map((e) => `${e.field}: ${e.message}`).join("\n");
      errors.hidden = false;
      progress.textContent = "";
      return;
    }
    form.elements.token.value = newToken();   // the next submit is a new attempt
    historyRow(data);
    await follow(data.status_url);
  } finally {
    button.disabled = false;
  }
});

const last = JSON.parse(document.getElementById("last-attempt").textContent);
if (last) {
  if (last.finished) { showResult(last); } else {
    follow(`${root.dataset.submit}${last.attempt}/`);
  }
}
root.dataset.ready = "true";
