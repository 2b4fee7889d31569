// VERDICT, CHARTS and COMPARE: what a finished run (or comparison) found, each chart with the
// same numbers in a table behind a toggle.
import { VERDICT_MARK } from "./describe.js";
import { OKABE_ITO, coreColour } from "./diagram.js";

const PLOT_CONFIG = { displaylogo: false, responsive: true, displayModeBar: false };
const LAYOUT = { margin: { t: 10, r: 10, b: 40, l: 55 }, height: 240, font: { size: 12 } };

function cell(row, text, tag = "td", attrs = {}) {
  const td = document.createElement(tag);
  td.textContent = text === null || text === undefined ? "—" : String(text);
  for (const [k, v] of Object.entries(attrs)) { td.setAttribute(k, v); }
  row.appendChild(td);
  return td;
}

function fillTable(table, head, rows) {
  table.textContent = "";
  const thead = table.createTHead().insertRow();
  head.forEach((h) => cell(thead, h, "th", { scope: "col" }));
  const tbody = table.createTBody();
  rows.forEach((values) => { const r = tbody.insertRow(); values.forEach((v) => cell(r, v)); });
}

/** One line on the whole run, before the counts: did every response come back to its
 * request's core (and how), and did the run pass: its checks decide, and without checks
 * the engine's rule does (flows, none refused or asymmetric), given as `passed`. */
function headline(counts, checks, passed, partial) {
  const failed = (counts.asymmetric || 0) + (counts.refused || 0);
  let text;
  let cls;
  if (failed) {
    text = "not symmetric"; cls = "v-asymmetric";
  } else if (counts.handed_off) {
    text = "symmetric only by handoff"; cls = "v-handed-off";
  } else {
    text = "every response back on its request's core"; cls = "v-symmetric";
  }
  if (partial) { text += " so far"; }
  if (checks && !partial) {
    const bad = checks.filter((c) => !c.passed).length;
    text += !checks.length ? (passed ? " · PASS (no checks: none refused or asymmetric)"
      : " · FAIL (no checks: some refused or asymmetric)")
      : bad ? ` · checks FAIL (${bad} of ${checks.length})` : ` · checks PASS (${checks.length})`;
  }
  return { text, cls };
}

export function showVerdictBar(bar, counts, { partial = false, checks = null, passed = false } = {}) {
  bar.textContent = "";
  const make = (cls, text) => { const s = document.createElement("span"); s.className = cls; s.textContent = text; return s; };
  const total = counts.flows ?? (counts.symmetric + counts.handed_off + counts.asymmetric);
  const head = headline(counts, checks, passed, partial);
  const strong = make(`v-headline ${head.cls}`, head.text);
  if (checks && !checks.length && !partial) {
    strong.title = "no checks: this scenario sets no checks of its own, so the run passes when it "
      + "has flows and none was refused or asymmetric";
  }
  bar.append(strong, ": ");
  const mark = VERDICT_MARK;
  bar.append(make("v-symmetric", `${mark.symmetric} ${counts.symmetric}/${total} symmetric`), " · ",
    make("v-handed-off", `${mark["handed-off"]} ${counts.handed_off} handed off`), " · ",
    make("v-refused", `${mark.refused} ${counts.refused || 0} refused`), " · ",
    make("v-asymmetric", `${mark.asymmetric} ${counts.asymmetric} asymmetric`));
}

/** The report's line about a replayed capture (packets read, used, skipped and why). */
export function showPcapNote(node, note) {
  node.textContent = note || "";
  node.hidden = !note;
  node.classList.toggle("pcap-skipped", Boolean(note && / skipped /.test(note)));
}

export function showChecks(list, checks) {
  list.textContent = "";
  for (const c of checks || []) {
    const li = document.createElement("li");
    li.className = c.passed ? "pass" : "fail";
    li.textContent = `${c.passed ? "✓ pass" : "✗ FAIL"} ${c.name} (actual ${c.actual ?? "missing"})`;
    list.appendChild(li);
  }
}

export function showFlowTable(tbody, rows, onPick) {
  tbody.textContent = "";
  const frag = document.createDocumentFragment();
  for (const r of rows || []) {
    const tr = document.createElement("tr");
    tr.dataset.flow = r.flow;
    tr.tabIndex = 0;
    tr.className = `v-${r.verdict}`;
    [r.flow, r.request, r.request_core, r.rewritten, r.response_core].forEach((v) => cell(tr, v));
    cell(tr, `${VERDICT_MARK[r.verdict] || ""} ${r.verdict}`, "td", { class: "verdict-cell" });
    cell(tr, r.reason);
    frag.appendChild(tr);
  }
  tbody.appendChild(frag);
  tbody.onclick = (e) => { const tr = e.target.closest("tr"); if (tr) { onPick(Number(tr.dataset.flow)); } };
  tbody.onkeydown = (e) => {
    const tr = e.target.closest("tr");
    if (tr && (e.key === "Enter" || e.key === " ")) { e.preventDefault(); onPick(Number(tr.dataset.flow)); }
  };
}

export function markFlowRow(tbody, flow) {
  tbody.querySelectorAll("tr.selected").forEach((tr) => tr.classList.remove("selected"));
  const tr = tbody.querySelector(`tr[data-flow="${flow}"]`);
  if (tr) { tr.classList.add("selected"); }
}

export function showMatrix(table, chart, matrix) {
  const m = matrix?.request_core_by_response_core || [];
  const n = m.length;
  const head = ["request ↓ / response →", ...Array.from({ length: n }, (_, j) => `core ${j}`), "no response"];
  fillTable(table, head, m.map((row, i) => [`core ${i}`, ...row, (matrix.no_response || [])[i] ?? 0]));
  if (window.Plotly && n) {
    const labels = Array.from({ length: n }, (_, i) => `core ${i}`);
    // No colour bar, and cells a pixel apart: Plotly draws both with style="…" attributes,
    // which the lab's Content-Security-Policy refuses. The counts are written in the cells
    // instead (up to 16 cores; the table beside the chart always has them).
    window.Plotly.react(chart, [{ type: "heatmap", z: m, x: labels, y: labels, colorscale: "Viridis",
      showscale: false, xgap: 1, ygap: 1, texttemplate: n <= 16 ? "%{z}" : "",
      hovertemplate: "request %{y} → response %{x}: %{z} flows<extra></extra>" }],
    { ...LAYOUT, height: Math.max(240, 24 * n + 80), xaxis: { title: { text: "response core" } },
      yaxis: { title: { text: "request core", standoff: 12 }, autorange: "reversed", automargin: true } },
    PLOT_CONFIG);
  }
}

/** One chart box with a "table" toggle; returns {plot, table}. */
function chartBox(container, id, title) {
  let box = container.querySelector(`#chart-${id}`);
  if (!box) {
    box = document.createElement("div");
    box.className = "chart-box";
    box.id = `chart-${id}`;
    box.innerHTML = `<div class="chart-head"><h3></h3>
      <button type="button" class="table-toggle" aria-pressed="false">table</button></div>
      <div class="chart" role="img"></div><div class="scroll" hidden><table class="grid"></table></div>`;
    box.querySelector("h3").textContent = title;
    box.querySelector(".chart").setAttribute("aria-label", `${title}; the table has the same numbers`);
    const button = box.querySelector(".table-toggle");
    button.setAttribute("aria-label", `${title} as a table`);
    button.addEventListener("click", () => {
      const on = button.getAttribute("aria-pressed") !== "true";
      button.setAttribute("aria-pressed", on ? "true" : "false");
      box.querySelector(".scroll").hidden = !on;
      box.querySelector(".chart").hidden = on;
    });
    container.appendChild(box);
  }
  return { plot: box.querySelector(".chart"), table: box.querySelector("table") };
}

/** A bar chart; with nothing above zero, a 0-based axis and ``empty`` said on it (Plotly
 * would otherwise draw a meaningless -1…1 axis). */
function bar(target, x, y, colours, ytitle, empty = "nothing to show") {
  if (!window.Plotly) { return; }
  const blank = !y.some((v) => v > 0);
  const layout = { ...LAYOUT, bargap: 0.1, yaxis: { title: { text: ytitle }, rangemode: "tozero",
    ...(blank ? { range: [0, 1] } : {}) } };
  if (blank) {
    layout.annotations = [{ text: empty, xref: "paper", yref: "paper", x: 0.5, y: 0.5,
      showarrow: false, font: { size: 13, color: "#555" } }];
  }
  window.Plotly.react(target, [{ type: "bar", x, y, marker: { color: colours },
    text: x, textposition: "none", hovertemplate: "%{x}: %{y}<extra></extra>" }],
  layout, PLOT_CONFIG);
}

export function showCharts(container, report) {
  const summary = report.summary || {};
  const cores = report.system?.cores || (summary.core_load || []).length;
  const labels = Array.from({ length: cores }, (_, c) => `core ${c}`);
  const colours = labels.map((_, c) => coreColour(c));

  const load = chartBox(container, "load", "Per-core load (packets)");
  const loads = summary.core_load || [];
  bar(load.plot, labels, loads, colours, "packets");
  fillTable(load.table, ["core", "packets", "requests", "responses"],
    (summary.per_core || []).map((p) => [p.core, p.load, p.requests, p.responses]));

  const buckets = report.buckets || {};
  const bk = chartBox(container, "buckets", "Bucket histogram (requests per indirection bucket)");
  const counts = buckets.requests || [];
  const bcores = buckets.cores || [];
  bar(bk.plot, counts.map((_, b) => b), counts, bcores.map((c) => coreColour(c)), "requests");
  fillTable(bk.table, ["bucket", "core", "requests"], counts.map((n, b) => [b, bcores[b], n]));

  showPorts(container, report.ports || {}, labels, colours);

  const ho = chartBox(container, "handoffs", "Handoff copies (responses received from another core)");
  const hand = summary.handoffs_per_core || [];
  bar(ho.plot, labels, hand, colours, "handoffs", "no handoff: every response on its core");
  fillTable(ho.table, ["core", "handoffs received"], hand.map((n, c) => [c, n]));
}

/** Port-table occupancy, honestly: a core can only use the ports that *fit* it (whose
 * response hashes back to it: about 1 in cores of the range), so "taken of all" alone
 * reads 25 % on a 4-core system that has run out. Two bars per core — taken of the
 * fitting ports, taken of all — and a core that refused requests for want of a fitting
 * port named "ran out" in its label, the table and the diagram. */
function showPorts(container, ports, labels, colours) {
  const po = chartBox(container, "ports", "Port-table occupancy: taken of the fitting ports, and of all");
  const pct2 = (x) => (x === null || x === undefined ? null : Math.round(x * 10000) / 100);
  const ofFitting = (ports.of_fitting || ports.occupancy || []).map(pct2);
  const ofAll = (ports.of_all || ports.occupancy || []).map(pct2);
  const ranOut = ports.ran_out || [];
  const refused = ports.refused || [];
  const names = labels.map((l, c) => (ranOut[c] ? `${l} ⊘ ran out` : l));
  po.plot.closest(".chart-box").classList.toggle("ports-ran-out", ranOut.some(Boolean));
  if (window.Plotly) {
    const blank = ![...ofFitting, ...ofAll].some((v) => v > 0);
    window.Plotly.react(po.plot, [
      { type: "bar", name: "taken of fitting ports", x: names, y: ofFitting.map((v) => v ?? 0),
        marker: { color: colours }, hovertemplate: "%{x}: %{y}% of its fitting ports<extra></extra>" },
      { type: "bar", name: "taken of all ports", x: names, y: ofAll.map((v) => v ?? 0),
        marker: { color: "#999", pattern: { shape: "/" } }, hovertemplate: "%{x}: %{y}% of all ports<extra></extra>" },
    ], { ...LAYOUT, barmode: "group", bargap: 0.2, legend: { orientation: "h", y: -0.25 },
      yaxis: { title: { text: "% taken at the end" }, rangemode: "tozero", range: [0, 105] },
      annotations: blank ? [{ text: ranOut.some(Boolean) ? "no port taken at the end, but some cores ran out during the run"
        : "no port taken at the end (every session had closed)", xref: "paper", yref: "paper", x: 0.5, y: 0.6,
        showarrow: false, font: { size: 13, color: "#555" } }] : [] }, PLOT_CONFIG);
  }
  fillTable(po.table, ["core", "taken of fitting %", "taken of all %", "fitting ports per table",
    "ports handed out", "refused", "fitting ports ran out"],
  labels.map((_, c) => [c, ofFitting[c] ?? "—", ofAll[c] ?? 0, (ports.fitting_per_table || [])[c] ?? 0,
    (ports.allocated || [])[c] ?? 0, refused[c] ?? 0, ranOut[c] ? "⊘ ran out" : "no"]));
}

// ---------------------------------------------------------------------------- compare

function pct(x) { return `${(x * 100).toFixed(1)} %`; }

export function showComparison(grid, chart, table, comparison) {
  const cells = comparison.cells || [];
  const box = document.getElementById("compare-result");
  if (box) { box.hidden = false; }
  grid.textContent = "";
  const notes = document.getElementById("compare-notes");
  if (notes) {
    notes.textContent = (comparison.notes || []).map((n) => `Note: ${n}.`).join(" ");
    notes.hidden = !(comparison.notes || []).length;
  }
  for (const c of cells) {
    const div = document.createElement("div");
    div.className = "cmp-cell" + (c.error ? " cmp-error" : "");
    const h = document.createElement("h3");
    h.textContent = c.label;
    div.appendChild(h);
    const dl = document.createElement("dl");
    const cap = c.port_capacity ? `${Math.round(Math.min(...c.port_capacity))}–${Math.round(Math.max(...c.port_capacity))}` : "—";
    const items = c.error ? [["not run", c.error]] : c.note ? [["traffic", c.note]] : [];
    if (!c.error) { items.push(
      ["symmetric", `${c.symmetric_rate >= 1 ? "✓" : "✗"} ${pct(c.symmetric_rate)}`],
      ["handoff copies", `${c.handoff_copies ? "↪ " : ""}${c.handoff_copies}`],
      ["fairness", c.fairness.toFixed(3)], ["ports / core", cap]); }
    for (const [k, v] of items) {
      const dt = document.createElement("dt"); dt.textContent = k;
      const dd = document.createElement("dd"); dd.textContent = v;
      dl.append(dt, dd);
    }
    div.appendChild(dl);
    grid.appendChild(div);
  }
  const ok = cells.filter((c) => !c.error);
  fillTable(table, ["configuration", "symmetric rate", "handed off", "handoff copies", "asymmetric", "fairness", "refused", "ports / core (min)"],
    ok.map((c) => [c.label, pct(c.symmetric_rate), c.handed_off, c.handoff_copies, c.asymmetric,
      c.fairness.toFixed(4), c.refused, c.port_capacity ? Math.round(Math.min(...c.port_capacity)) : "—"]));
  if (window.Plotly) {
    // Grouped bars, a row per configuration: ties (several designs at 100 % and even
    // load) stay readable, where a scatter stacked their points.
    const labels = ok.map((c) => c.label);
    const hover = ok.map((c) => `copies ${c.handoff_copies}`);
    window.Plotly.react(chart, [
      { type: "bar", orientation: "h", name: "symmetric rate", y: labels, x: ok.map((c) => c.symmetric_rate),
        marker: { color: OKABE_ITO[2] }, customdata: hover,
        hovertemplate: "%{y}: %{x:.1%} symmetric (%{customdata})<extra></extra>" },
      { type: "bar", orientation: "h", name: "Jain fairness of per-core load", y: labels, x: ok.map((c) => c.fairness),
        marker: { color: OKABE_ITO[4], pattern: { shape: "/" } },
        hovertemplate: "%{y}: fairness %{x:.3f}<extra></extra>" },
    ], { ...LAYOUT, barmode: "group", height: 110 + 34 * ok.length, margin: { ...LAYOUT.margin, l: 10 },
      xaxis: { range: [0, 1], tickformat: ".0%" }, yaxis: { automargin: true, autorange: "reversed" },
      legend: { orientation: "h", y: -0.12 } }, PLOT_CONFIG);
  }
}
