// The lab page ("workbench"): BUILD a scenario, run it on a worker, WATCH its events live,
// read the VERDICT, CHARTS and COMPARE. Plain ES modules, no build step; Plotly is the local
// copy served at static/vendor/plotly.min.js.
//
// window.rssLab exposes the page's state for tests and the console:
//   stats   {received, messages, lagsMs, firstAt, lastAt, fetched, duplicates, gaps}
//   events  every event of the current run, index = seq
//   state() {run, status, cursor, playing, speed, live, count}
import { ApiError, getJson, postForm, postJson } from "./api.js";
import { Builder, clearErrors, showErrors } from "./build.js";
import { CoreTracker } from "./corestate.js";
import { Detail } from "./detail.js";
import { announceOf, coreOf, parseTuple, whatOf, whereOf } from "./describe.js";
import { Diagram } from "./diagram.js";
import { EventList } from "./eventlist.js";
import { showChecks, showCharts, showComparison, showFlowTable, showMatrix, showPcapNote,
  showVerdictBar, markFlowRow } from "./results.js";
import { RunStream } from "./stream.js";

const $ = (sel) => document.querySelector(sel);
const root = $("#workbench");

function jsonData(id) {
  const el = document.getElementById(id);
  if (!el) { return null; }
  let value = JSON.parse(el.textContent);
  if (typeof value === "string") {            // the view passed JSON text: decode once more
    try { value = JSON.parse(value); } catch (err) { /* a plain string is fine */ }
  }
  return value;
}

const presets = jsonData("lab-presets") || {};
const defaults = jsonData("lab-defaults") || {};
const limits = jsonData("lab-limits") || {};
const initialRun = jsonData("lab-run");

const SPEEDS = [0.25, 0.5, 1, 2, 4, 8, 16];
const FINISHED = new Set(["succeeded", "failed"]);

const stats = { received: 0, messages: 0, lagsMs: [], pendingLags: [], firstAt: null, lastAt: null,
  fetched: 0, duplicates: 0, gaps: 0, renderedAt: null, receivedBeforeFinal: null, finalAt: null };
const store = { events: [] };
const state = {
  run: null, status: null, mode: null, report: null, scenarioYaml: "",
  cursor: -1, playing: false, speed: 1, live: true, timer: null,
  flows: new Map(), kinds: new Set(), coreCount: 0, verdicts: { symmetric: 0, handed_off: 0, asymmetric: 0, allocation_failures: 0, flows: 0 },
  stream: null, frame: false, lastShown: -1, source: "builder",
};

window.rssLab = {
  stats, events: store.events,
  statusUrl: () => state.run && state.run.status_url,
  state: () => ({ run: state.run && state.run.run, status: state.status, cursor: state.cursor,
    playing: state.playing, speed: state.speed, live: state.live, count: store.events.length }),
  select: (seq) => select(seq, "console"),   // jump to an event, as clicking it does
};

// ---------------------------------------------------------------------------- widgets
const builder = new Builder($("#pane-builder"), defaults);
const diagram = new Diagram($("#diagram"), { onPacketClick: (seq) => select(seq, "diagram"),
  onCoreClick: (core) => toggleCoreFilter(core) });
const tracker = new CoreTracker();
const list = new EventList($("#event-list"), store, { onSelect: (seq) => select(seq, "list") });
const detail = new Detail($("#detail"), $("#explain"), {
  explainUrl: root.dataset.apiExplain,
  context: () => scenarioSettings(),
});

builder.onChange = () => showIdleSystem();
builder.load(presets.nat || defaults);
const limitText = [];
const pcapMax = limits.pcap_max_bytes || limits.max_pcap_bytes;
const traceMax = limits.trace_max_flows || limits.max_trace_flows;
if (traceMax) { limitText.push(`Run ▶ (trace): up to ${traceMax} flows; Verify (batch) for more`); }
if (pcapMax) { limitText.push(`pcap: up to ${Math.round(pcapMax / 1024)} KiB`); }
$("#limits-note").textContent = limitText.join(" · ");
if (pcapMax) { $("#pcap-limit").textContent = `A classic pcap or pcapng file of at most ${Math.round(pcapMax / 1024)} KiB.`; }

// ---------------------------------------------------------------------------- scenario facts
function yamlValue(name) {
  const m = state.scenarioYaml.match(new RegExp(`(?:^|[\\s{,])${name}:\\s*["']?([^\\s,}"'#]+)`, "m"));
  return m ? m[1] : null;
}

function scenarioSettings() {
  const sys = state.report && state.report.system;
  const buckets = state.report && state.report.buckets;
  return {
    table: buckets && Array.isArray(buckets.cores) ? buckets.cores : null,
    key: (sys && sys.key) || yamlValue("key") || "microsoft",
    hashBits: Number((sys && sys.hash_bits) || yamlValue("hash_bits") || 7),
    cores: Number((sys && sys.cores) || yamlValue("cores") || state.coreCount || 4),
    transform: (sys && sys.transform) || yamlValue("transform") || "none",
  };
}

function ensureDiagram(cores) {
  if (cores !== state.coreCount) {
    state.coreCount = cores;
    diagram.build(cores);
    tracker.reset(cores);
    tracker.append(store.events);
    state.lastShown = -1;
    const select = $("#f-core");
    const value = select.value;
    select.length = 1;
    for (let c = 0; c < cores; c++) { select.add(new Option(`core ${c}`, String(c))); }
    select.value = value;
  }
}

// ---------------------------------------------------------------------------- events in
function onEvents(events) {
  const first = store.events.length;
  let maxCore = state.coreCount - 1;
  for (const ev of events) {
    store.events.push(ev);
    if (ev.flow !== undefined && ev.flow !== null && ev.flow >= 0) {
      let seqs = state.flows.get(ev.flow);
      if (!seqs) { seqs = []; state.flows.set(ev.flow, seqs); }
      seqs.push(ev.seq);
    }
    if (!state.kinds.has(ev.kind)) { state.kinds.add(ev.kind); $("#f-kind").add(new Option(ev.kind, ev.kind)); }
    const core = Math.max(coreOf(ev) ?? -1, ev.from_core ?? -1);
    if (core > maxCore) { maxCore = core; }
    if (ev.kind === "verdict") {
      const v = state.verdicts;
      v.flows += 1;
      if (ev.verdict === "symmetric") { v.symmetric += 1; } else if (ev.verdict === "handed-off") { v.handed_off += 1; } else if (ev.verdict === "asymmetric") { v.asymmetric += 1; } else { v.allocation_failures += 1; }
    }
  }
  if (maxCore + 1 > state.coreCount) { ensureDiagram(maxCore + 1); } else { tracker.append(events); }
  list.appended(first);
  if (state.live) { state.cursor = store.events.length - 1; }
  scheduleFrame();
}

function scheduleFrame() {
  if (state.frame) { return; }
  state.frame = true;
  window.requestAnimationFrame(frame);
}

/** One render per animation frame however many events arrived: counts, list, diagram. */
function frame() {
  state.frame = false;
  const now = Date.now();
  for (const sentAt of stats.pendingLags) { stats.lagsMs.push(now - sentAt * 1000); }
  stats.pendingLags.length = 0;
  stats.renderedAt = now;
  $("#event-count").textContent = String(store.events.length);
  if (!state.report && state.verdicts.flows) { showVerdictBar($("#verdict-bar"), state.verdicts, { partial: !FINISHED.has(state.status) }); }
  showCursor({ animate: !state.live || !state.status || FINISHED.has(state.status) ? true : false });
}

// ---------------------------------------------------------------------------- player
/** Per-core sessions, ports taken (of the core's fitting-port capacity) and handoffs after
 * event ``cursor``: the tracker moves incrementally (see corestate.js). */
function coreStateAt(cursor) {
  const t = tracker.at(cursor);
  const report = state.report;
  const fitting = report && report.ports && report.ports.fitting_per_table;
  const sys = (report && report.system) || {};
  const tables = (sys.ips_per_core || 1) * (sys.tables_per_ip || 1);
  return t.sessions.map((sessions, c) => ({ sessions, ports: t.ports[c], handoffs: t.handoffs[c],
    capacity: fitting && fitting[c] ? fitting[c] * tables : 0 }));
}

/** Before any run: the system the BUILD form describes, redrawn as its fields change. */
function showIdleSystem() {
  if (state.run || store.events.length) { return; }
  const info = builder.systemInfo();
  if (info.cores) { ensureDiagram(info.cores); }
  diagram.showSystem(info);
}

/** Clicking a core box (or Enter / Space on it) filters the event list to that core; again
 * clears the filter. The Core select shows the same filter. */
function toggleCoreFilter(core) {
  const next = list.filter.core === core ? null : core;
  setCoreFilter(next);
  $("#announce").textContent = next === null ? "event list: every core" : `event list: core ${next} only`;
}

function setCoreFilter(core) {
  $("#f-core").value = core === null ? "" : String(core);
  list.setFilter({ core });
  diagram.setCoreFilter(core);
}

function flowContext(ev) {
  const ctx = { hashBits: scenarioSettings().hashBits };
  const seqs = state.flows.get(ev.flow) || [];
  const packets = new Map();
  for (const seq of seqs) {
    if (seq > ev.seq) { break; }
    const e = store.events[seq];
    if (e.kind === "packet-arrived") {
      const t = parseTuple(e.tuple);
      packets.set(e.packet, { tuple: t, direction: e.direction });
      ctx.packetTuple = t; ctx.direction = e.direction;
      if (e.direction === "request" && !ctx.request) { ctx.request = t; }
    } else if (e.kind === "hashed") {
      const p = packets.get(e.packet);
      ctx.hashed = { ...e, direction: p ? p.direction : undefined };
      ctx.hashedTuple = p ? p.tuple : null;
    } else if (e.kind === "rewritten" && e.direction === "request") {
      ctx.rewritten = { before: e.before, after: e.after, ...parseTuple(e.after) };
    } else if (e.kind === "verdict") {
      ctx.verdict = e;
    }
  }
  if (ev.kind === "hashed") { ctx.packetTuple = ctx.hashedTuple || ctx.packetTuple; }
  return ctx;
}

function showCursor({ animate = true } = {}) {
  const n = store.events.length;
  $("#pl-pos").textContent = `event ${state.cursor + 1} / ${n}`;
  if (state.cursor < 0 || !n) { return; }
  if (state.cursor === state.lastShown && !animate) { return; }
  state.lastShown = state.cursor;
  const ev = store.events[state.cursor];
  diagram.setCoreState(coreStateAt(state.cursor));
  diagram.show(ev, flowContext(ev), { animate });
  $("#step-text").textContent = `#${ev.seq} · ${whereOf(ev)} · ${whatOf(ev)}`;
}

function announce(ev) { $("#announce").textContent = announceOf(ev); }

function goTo(index, { from = "player" } = {}) {
  const n = store.events.length;
  if (!n) { return; }
  state.cursor = Math.max(0, Math.min(n - 1, index));
  state.lastShown = -1;
  const ev = store.events[state.cursor];
  list.select(ev.seq);
  if (from !== "live") {
    detail.show(ev, flowContext(ev));
    if (ev.flow >= 0) { markFlowRow($("#flow-table tbody"), ev.flow); }
    announce(ev);
  }
  showCursor({ animate: true });
}

function setLive(live) {
  state.live = live;
  $("#pl-live").checked = live;
}

function step(delta) {
  if (store.events.length) { showHint(""); }
  setLive(false); pause(); goTo(state.cursor + delta);
}

function play() {
  if (!store.events.length) { return; }
  showHint("");
  setLive(false);
  if (state.cursor >= store.events.length - 1) { goTo(0); }
  state.playing = true;
  $("#pl-play").textContent = "❚❚";
  $("#pl-play").setAttribute("aria-label", "Pause");
  tick();
}

function pause() {
  state.playing = false;
  window.clearTimeout(state.timer);
  $("#pl-play").textContent = "▶";
  $("#pl-play").setAttribute("aria-label", "Play");
}

function interval() { return 700 / state.speed; }

function tick() {
  if (!state.playing) { return; }
  diagram.duration = Math.min(600, interval() * 0.85);
  if (state.cursor >= store.events.length - 1) {
    if (FINISHED.has(state.status) || !state.status) { pause(); return; }
  } else {
    goTo(state.cursor + 1);
  }
  state.timer = window.setTimeout(tick, interval());
}

function setSpeed(speed) {
  state.speed = speed;
  $("#pl-speed").value = String(speed);
  diagram.duration = Math.min(600, interval() * 0.85);
}

function speedBy(delta) {
  const i = SPEEDS.indexOf(state.speed);
  setSpeed(SPEEDS[Math.max(0, Math.min(SPEEDS.length - 1, (i < 0 ? 2 : i) + delta))]);
  $("#announce").textContent = `speed ${state.speed}×`;
}

function select(seq, from) {
  setLive(false);
  pause();
  goTo(seq, { from });
}

function selectFlow(flow) {
  const seqs = state.flows.get(flow);
  if (!seqs || !seqs.length) { return; }
  const verdict = seqs.find((s) => store.events[s].kind === "verdict");
  select(verdict ?? seqs[0], "flows");
}

$("#pl-first").addEventListener("click", () => { setLive(false); pause(); goTo(0); });
$("#pl-back").addEventListener("click", () => step(-1));
$("#pl-step").addEventListener("click", () => step(1));
$("#pl-last").addEventListener("click", () => { setLive(false); pause(); goTo(store.events.length - 1); });
$("#pl-play").addEventListener("click", () => (state.playing ? pause() : play()));
$("#pl-speed").addEventListener("change", (e) => setSpeed(Number(e.target.value)));
$("#pl-live").addEventListener("change", (e) => {
  setLive(e.target.checked);
  if (state.live) { pause(); goTo(store.events.length - 1, { from: "live" }); }
});

document.addEventListener("keydown", (e) => {
  const t = e.target;
  if (e.altKey || e.metaKey || e.ctrlKey) { return; }
  if (t.closest && (t.closest("input, textarea, select, [contenteditable=true]") || t.closest("#pane-builder"))) { return; }
  switch (e.key) {
    case " ":
    case "Spacebar":
      if (t.closest("button, a, summary, [role=button], tr[tabindex]")) { return; }
      e.preventDefault();
      if (state.playing) { pause(); } else { play(); }
      break;
    case "ArrowLeft": e.preventDefault(); step(-1); break;
    case "ArrowRight": e.preventDefault(); step(1); break;
    case "Home":
      if (t.closest("#event-list")) { break; }
      e.preventDefault(); setLive(false); pause(); goTo(0); break;
    case "End":
      if (t.closest("#event-list")) { break; }
      e.preventDefault(); setLive(false); pause(); goTo(store.events.length - 1); break;
    case "+": case "=": e.preventDefault(); speedBy(1); break;
    case "-": case "_": e.preventDefault(); speedBy(-1); break;
    default: break;
  }
});

// Filters.
$("#f-kind").addEventListener("change", (e) => list.setFilter({ kind: e.target.value }));
$("#f-core").addEventListener("change", (e) => setCoreFilter(e.target.value === "" ? null : Number(e.target.value)));
$("#f-flow").addEventListener("input", (e) => list.setFilter({ flow: e.target.value === "" ? null : Number(e.target.value) }));

// ---------------------------------------------------------------------------- tabs, presets
const tabs = ["builder", "yaml", "example"];

/** The YAML tab starts from the form: the scenario file a run of the form would take.
 * Text the student typed (or a run's own file) is never replaced. */
async function fillYamlFromForm() {
  const text = $("#yaml-text");
  if (text.value.trim() && text.dataset.fromForm !== "true") { return; }
  try {
    const data = await postJson(root.dataset.apiBuilderYaml, { builder: builder.read() });
    if (text.value.trim() && text.dataset.fromForm !== "true") { return; }  // typed meanwhile
    text.value = data.yaml;
    text.dataset.fromForm = "true";
  } catch (err) {
    if (err instanceof ApiError) { showErrors(root, $("#form-errors"), err.errors); } else { throw err; }
  }
}
$("#yaml-text").addEventListener("input", (e) => { e.target.dataset.fromForm = "false"; });

/** A run's scenario file in the YAML tab. One this page built from the form is refreshed
 * from the form when the tab opens again; typed or example text, and the file of a run
 * opened from its link, are kept. */
function showRunYaml(text) {
  $("#yaml-text").value = text;
  $("#yaml-text").dataset.fromForm = state.startedHere && state.source === "builder" ? "true" : "false";
}
function showTab(name) {
  state.source = name;
  if (name === "yaml") { fillYamlFromForm(); }
  for (const t of tabs) {
    const tab = $(`#tab-${t}`);
    tab.setAttribute("aria-selected", t === name ? "true" : "false");
    tab.tabIndex = t === name ? 0 : -1;
    $(`#pane-${t}`).hidden = t !== name;
  }
}
tabs.forEach((t, i) => {
  const tab = $(`#tab-${t}`);
  tab.addEventListener("click", () => showTab(t));
  tab.addEventListener("keydown", (e) => {
    const d = e.key === "ArrowRight" ? 1 : e.key === "ArrowLeft" ? -1 : 0;
    if (!d) { return; }
    e.preventDefault();
    const next = tabs[(i + d + tabs.length) % tabs.length];
    showTab(next);
    $(`#tab-${next}`).focus();
  });
});
document.querySelectorAll("button.preset").forEach((b) => b.addEventListener("click", () => {
  const p = presets[b.dataset.preset];
  if (p) { builder.load(p); } else {
    const el = builder.form.querySelector(`input[name=policy][value="${b.dataset.preset}"]`);
    if (el) { el.checked = true; }
  }
  document.querySelectorAll("button.preset").forEach((x) => x.setAttribute("aria-pressed", x === b ? "true" : "false"));
}));
$("#toggle-build").addEventListener("click", (e) => {
  const open = e.target.getAttribute("aria-expanded") !== "true";
  e.target.setAttribute("aria-expanded", open ? "true" : "false");
  e.target.textContent = open ? "Hide build panel" : "Show build panel";
  $("#build").hidden = !open;
  root.classList.toggle("build-collapsed", !open);
});

// ---------------------------------------------------------------------------- running
function resetRun() {
  if (state.stream) { state.stream.close(); }
  pause();
  store.events.length = 0;
  state.flows.clear();
  state.report = null;
  state.cursor = -1;
  state.lastShown = -1;
  tracker.reset(state.coreCount);
  state.verdicts = { symmetric: 0, handed_off: 0, asymmetric: 0, allocation_failures: 0, flows: 0 };
  Object.assign(stats, { received: 0, messages: 0, firstAt: null, lastAt: null, fetched: 0, duplicates: 0,
    gaps: 0, receivedBeforeFinal: null, finalAt: null });
  stats.lagsMs.length = 0;
  stats.pendingLags.length = 0;
  setLive(true);
  list.reset();
  detail.clear();
  $("#verdict-bar").textContent = "running…";
  $("#pl-pos").textContent = "event 0 / 0";
  $("#step-text").textContent = "";
  showHint("");
  showPcapNote($("#pcap-note"), null);
  $("#checks").textContent = "";
  $("#flow-table tbody").textContent = "";
  $("#event-count").textContent = "0";
}

/** A line under the player: what to do next (replay a finished run), or why there is
 * nothing to watch (a batch run). */
function showHint(text) {
  $("#pl-hint").textContent = text;
  $("#pl-hint").hidden = !text;
}

const BATCH_HINT = "Verify (batch) runs every flow at once, as arrays: there are no packet "
  + "events to watch. The verdict, matrix and charts below show its result; use Run ▶ "
  + "(trace) to watch packets move.";

function setStatus(status, progress, error) {
  state.status = status;
  const el = $("#run-status");
  el.textContent = `run ${state.run ? state.run.run : ""} · ${status}${error ? ": " + error : ""}`;
  el.className = `status-${status}`;
  if (typeof progress === "number") { $("#run-progress").value = progress; }
}

function runUrls(id, data = {}) {
  return { run: id, ws: data.ws || `/ws/runs/${id}/`, status_url: data.status_url || `/lab/api/runs/${id}/`,
    events_url: data.events_url || `/lab/api/runs/${id}/events/` };
}

function startWatching(run, { replay = false } = {}) {
  state.run = run;
  if (state.scenarioYaml) { showRunYaml(state.scenarioYaml); }
  const cores = scenarioSettings().cores;
  diagram.system = null;             // from now on the diagram shows the run, not the form
  state.coreCount = 0;
  ensureDiagram(cores);
  updateExport();
  const history = new URLSearchParams(window.location.search);
  if (history.get("run") !== String(run.run)) {
    window.history.replaceState(null, "", `${window.location.pathname}?run=${run.run}`);
  }
  const stream = new RunStream(run, {
    onEvents,
    onStatus: (msg) => {
      if (msg.type === "progress") { $("#run-progress").value = msg.progress; return; }
      setStatus(msg.status, msg.progress, msg.error);
      if (FINISHED.has(msg.status)) { finished(); }
    },
    onConnection: (text) => { $("#run-connection").textContent = text; },
    stats,
  });
  state.stream = stream;
  if (replay) {
    stream.replay().then(() => { finished(); });
  } else {
    stream.connect();
  }
}

async function finished() {
  let data;
  try {
    data = await getJson(state.run.status_url);
  } catch (err) {
    $("#run-connection").textContent = `could not load the result: ${err.message}`;
    return;
  }
  setStatus(data.status, data.progress, data.error);
  if (data.scenario_yaml) { state.scenarioYaml = data.scenario_yaml; showRunYaml(data.scenario_yaml); }
  const report = data.report;
  if (!report) {
    $("#verdict-bar").textContent = data.error ? `✗ run failed: ${data.error}` : "no report";
    return;
  }
  state.report = report;
  if (report.system && report.system.cores) { ensureDiagram(report.system.cores); }
  state.lastShown = -1;
  $("#scenario-title").textContent = report.scenario ? `· ${report.scenario.name}` : "";
  showVerdictBar($("#verdict-bar"), report.summary || {}, { checks: report.checks || [] });
  showPcapNote($("#pcap-note"), data.pcap_note);
  showChecks($("#checks"), report.checks);
  showFlowTable($("#flow-table tbody"), report.rows || [], selectFlow);
  showMatrix($("#matrix-table"), $("#matrix-chart"), report.matrix);
  showCharts($("#charts"), report);
  if (state.live && store.events.length) { goTo(store.events.length - 1, { from: "live" }); }
  if (data.mode === "batch") {
    showHint(BATCH_HINT);
  } else if (store.events.length && !state.playing) {
    showHint(`Finished: ▶ (or Space) replays its ${store.events.length} events from the `
      + "start, ◀ and ▶| step through them.");
  }
  root.dataset.finished = "true";
  updateExport();
}

// ---------------------------------------------------------------------------- pcap export
function updateExport() {
  $("#export-pcap").disabled = !(state.run && state.mode !== "compare");
}

$("#export-pcap").addEventListener("click", async () => {
  const status = $("#export-status");
  if (!state.run) { return; }
  const url = `/lab/api/runs/${state.run.run}/pcap`;
  status.textContent = "exporting…";
  let response;
  try {
    response = await fetch(url, { credentials: "same-origin" });
  } catch (err) {
    status.textContent = `could not export: network error: ${err.message}`;
    return;
  }
  if (!response.ok) {
    let message = `HTTP ${response.status}`;
    try {
      const data = await response.json();
      if (Array.isArray(data.errors)) { message = data.errors.map((e) => `${e.field ? e.field + ": " : ""}${e.message}`).join("; "); }
    } catch (err) { /* not JSON: keep the status */ }
    status.textContent = `✗ could not export: ${message}`;
    return;
  }
  const blob = await response.blob();
  const name = (response.headers.get("Content-Disposition") || "").match(/filename="([^"]+)"/);
  const link = document.createElement("a");
  link.href = URL.createObjectURL(blob);
  link.download = name ? name[1] : `rsslab-run-${state.run.run}.pcap`;
  document.body.appendChild(link);
  link.click();
  link.remove();
  window.setTimeout(() => URL.revokeObjectURL(link.href), 10_000);
  status.textContent = `exported ${link.download} (${blob.size.toLocaleString()} bytes)`;
});

async function startRun(mode) {
  clearErrors(root, $("#form-errors"));
  const form = new FormData();
  form.append("source", state.source);
  form.append("mode", mode);
  const seed = $("#run-seed").value;
  if (seed !== "") { form.append("seed", seed); }
  if (state.source === "builder") {
    form.append("builder", JSON.stringify(builder.read()));
    const file = builder.pcapFile();
    if (file) { form.append("pcap", file, file.name); }
  } else if (state.source === "yaml") {
    form.append("scenario", $("#yaml-text").value);
  } else {
    form.append("example", $("#example-select").value);
  }
  const buttons = [$("#run-trace"), $("#run-batch")];
  buttons.forEach((b) => { b.disabled = true; });
  root.dataset.finished = "false";
  try {
    const data = await postForm(root.dataset.apiRuns, form);
    resetRun();
    state.startedHere = true;
    state.mode = mode;
    if (mode === "batch") { showHint(BATCH_HINT); }
    $("#export-status").textContent = "";
    state.scenarioYaml = data.scenario_yaml || "";
    setStatus("queued", 0, "");
    startWatching(runUrls(data.run, data));
  } catch (err) {
    if (err instanceof ApiError) { showErrors(root, $("#form-errors"), err.errors); } else { throw err; }
    root.dataset.finished = "error";
  } finally {
    buttons.forEach((b) => { b.disabled = false; });
  }
}

$("#run-trace").addEventListener("click", () => startRun("trace"));
$("#run-batch").addEventListener("click", () => startRun("batch"));

// ---------------------------------------------------------------------------- compare
$("#compare-run").addEventListener("click", async () => {
  const ticked = (name) => [...document.querySelectorAll(`input[name=${name}]:checked`)].map((i) => i.value);
  const vary = {};
  for (const [name, key] of [["c-key", "key"], ["c-policy", "policy"], ["c-strategy", "strategy"], ["c-transform", "transform"]]) {
    const values = ticked(name);
    if (values.length) { vary[key] = values; }
  }
  const body = { source: state.source, vary };
  if (state.source === "builder") { body.builder = builder.read(); } else if (state.source === "yaml") {
    body.scenario = $("#yaml-text").value;
  } else { body.example = $("#example-select").value; }
  const errBox = $("#compare-errors");
  errBox.textContent = "";
  const progress = $("#compare-progress");
  progress.hidden = false;
  progress.value = 0;
  $("#compare-status").textContent = "queued…";
  try {
    const data = await postJson(root.dataset.apiCompare, body);
    watchCompare(runUrls(data.run, data));
  } catch (err) {
    progress.hidden = true;
    $("#compare-status").textContent = "";
    errBox.textContent = err instanceof ApiError ? err.errors.map((e) => `${e.field ? e.field + ": " : ""}${e.message}`).join("; ") : String(err);
  }
});

function watchCompare(run) {
  const compareStats = { received: 0, messages: 0, lagsMs: [], pendingLags: [], firstAt: null, lastAt: null, fetched: 0, duplicates: 0, gaps: 0 };
  const stream = new RunStream(run, {
    onEvents: () => {},
    onStatus: async (msg) => {
      if (msg.type === "progress") { $("#compare-progress").value = msg.progress; return; }
      $("#compare-status").textContent = msg.status + (msg.error ? `: ${msg.error}` : "");
      if (typeof msg.progress === "number") { $("#compare-progress").value = msg.progress; }
      if (!FINISHED.has(msg.status)) { return; }
      $("#compare-progress").hidden = true;
      const data = await getJson(run.status_url);
      if (data.report && data.report.cells) {
        showComparison($("#compare-grid"), $("#compare-chart"), $("#compare-table"), data.report);
        const rss = data.report.cells.filter((c) => c.scheme === "rss").length;
        const others = data.report.cells.length - rss;
        $("#compare-status").textContent = `done: ${rss} RSS configuration${rss === 1 ? "" : "s"}`
          + (others ? ` and ${others} other distribution schemes for reference (per-packet, per-vserver, per-nic, per-function: the patent's alternatives to flow-based RSS)` : "")
          + `, ${data.report.flows} flows each`;
      } else if (data.error) {
        $("#compare-errors").textContent = data.error;
      }
    },
    onConnection: () => {},
    stats: compareStats,
  });
  stream.connect();
}
document.querySelector("#compare .table-toggle").addEventListener("click", (e) => {
  const on = e.target.getAttribute("aria-pressed") !== "true";
  e.target.setAttribute("aria-pressed", on ? "true" : "false");
  $("#compare-table-box").hidden = !on;
  $("#compare-chart").hidden = on;
});

// ---------------------------------------------------------------------------- start
ensureDiagram(builder.systemInfo().cores || 4);
showIdleSystem();
if (initialRun && initialRun.run) {
  state.scenarioYaml = initialRun.scenario_yaml || "";
  state.mode = initialRun.mode;
  if (initialRun.mode === "compare") { state.run = runUrls(initialRun.run, initialRun); }
  setStatus(initialRun.status || "queued", initialRun.progress, initialRun.error);
  if (initialRun.mode === "compare") {
    $("#verdict-bar").textContent = "a comparison: its table and chart are under Compare, below";
    watchCompare(state.run);
  } else {
    setLive(!FINISHED.has(initialRun.status));
    startWatching(runUrls(initialRun.run, initialRun), { replay: FINISHED.has(initialRun.status) });
  }
}
root.dataset.ready = "true";
