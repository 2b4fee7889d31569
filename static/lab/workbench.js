// The lab page ("workbench"): BUILD a scenario, run it on a worker, WATCH its events live,
// read the VERDICT, CHARTS and COMPARE. Plain ES modules, no build step, no inline script;
// Plotly is the local copy served at static/vendor/plotly.min.js.
//
// This module wires the page: its data (JSON blocks the template renders; URLs come from
// urls.js), the shared state (state.js), the widgets, and the parts — player.js (the cursor
// over the events), runner.js (Run ▶ / Verify and following a run), compare.js, export.js;
// runs and comparisons build their requests with request.js.
//
// What is on screen is what runs: opening a past run or choosing an example puts its
// scenario file in the YAML tab and what the form can show of it in the form (the diagram
// follows the form); a run opened from its link is run again from the YAML tab, which
// holds the whole file. A first visit offers the guided tour (tour.js).
//
// window.rssLab exposes the page's state for tests and the console:
//   stats   {received, messages, lagsMs, firstAt, lastAt, fetched, duplicates, gaps}
//   events  every event of the current run, index = seq
//   state() {run, status, cursor, playing, speed, live, count}
//   ingest(events)  hand events to the page as a run's stream would (tests of long runs)
import { ApiError, postJson } from "./api.js";
import { Builder, showErrors } from "./build.js";
import { Compare } from "./compare.js";
import { CoreTracker } from "./corestate.js";
import { Detail } from "./detail.js";
import { Diagram } from "./diagram.js";
import { EventList } from "./eventlist.js";
import { PcapExport } from "./export.js";
import { Player } from "./player.js";
import { Runner } from "./runner.js";
import { Tour } from "./tour.js";
import { FINISHED, newState, newStats } from "./state.js";
import { runUrls, urls } from "./urls.js";

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
const exampleForms = jsonData("lab-examples") || {};

const stats = newStats();
const store = { events: [] };
const state = newState();

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

// ---------------------------------------------------------------------------- the parts
/** The page's context, handed to every part: its state and widgets. */
const lab = {
  $, root, state, store, stats, scenarioSettings,
  widgets: {},
  ensureDiagram,
  /** What the open tab submits: the form (with its capture), the YAML text or an example. */
  scenarioSource: () => ({ source: state.source, builder, yamlText: $("#yaml-text").value,
    example: $("#example-select").value }),
};
const player = new Player(lab);
const pcapExport = new PcapExport(lab);
const runner = new Runner(lab, player, pcapExport);
const compare = new Compare(lab);

const builder = new Builder($("#builder-form"), defaults);
const diagram = new Diagram($("#diagram"), { onPacketClick: (seq) => player.select(seq, "diagram"),
  onCoreClick: (core) => toggleCoreFilter(core) });
const tracker = new CoreTracker();
const list = new EventList($("#event-list"), store, { onSelect: (seq) => player.select(seq, "list") });
const detail = new Detail($("#detail"), $("#explain"), {
  explainUrl: urls.explain,
  context: () => scenarioSettings(),
});
Object.assign(lab.widgets, { builder, diagram, tracker, list, detail });

window.rssLab = {
  stats, events: store.events,
  statusUrl: () => state.run && state.run.status_url,
  state: () => ({ run: state.run && state.run.run, status: state.status, cursor: state.cursor,
    playing: state.playing, speed: state.speed, live: state.live, count: store.events.length }),
  select: (seq) => player.select(seq, "console"),   // jump to an event, as clicking it does
  ingest: (events) => runner.onEvents(events),
};

let loading = false;
builder.onChange = () => {
  showIdleSystem();
  // The student changed a form that showed a loaded file: from now on the YAML tab
  // shows the form's file again (and the note about what the form cannot show goes).
  if (!loading && $("#yaml-text").dataset.loaded === "true") {
    $("#yaml-text").dataset.loaded = "false";
    $("#yaml-text").dataset.fromForm = "true";
    showFormNote(null);
  }
};
builder.load(presets.nat || defaults);
const limitText = [];
const pcapMax = limits.pcap_max_bytes || limits.max_pcap_bytes;
const traceMax = limits.trace_max_flows || limits.max_trace_flows;
if (traceMax) { limitText.push(`Run ▶ (trace): up to ${traceMax} flows; Verify (batch) for more`); }
if (pcapMax) { limitText.push(`pcap: up to ${Math.round(pcapMax / 1024)} KiB`); }
$("#limits-note").textContent = limitText.join(" · ");
if (pcapMax) { $("#pcap-limit").textContent = `A classic pcap or pcapng file of at most ${Math.round(pcapMax / 1024)} KiB.`; }

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

/** Before any run: the system the BUILD form describes, redrawn as its fields change. */
function showIdleSystem() {
  if (state.run || store.events.length) { return; }
  const info = builder.systemInfo();
  if (info.cores) { ensureDiagram(info.cores); }
  diagram.showSystem(info);
}

// ---------------------------------------------------------------------------- filters
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
    const data = await postJson(urls.builderYaml, { builder: builder.read() });
    if (text.value.trim() && text.dataset.fromForm !== "true") { return; }  // typed meanwhile
    text.value = data.yaml;
    text.dataset.fromForm = "true";
  } catch (err) {
    if (err instanceof ApiError) { showErrors(root, $("#form-errors"), err.errors); } else { throw err; }
  }
}
$("#yaml-text").addEventListener("input", (e) => { e.target.dataset.fromForm = "false"; e.target.dataset.loaded = "false"; });

/** What the form cannot show of a loaded file (its ``unshown`` key paths), or nothing. */
function showFormNote(unshown, where = "") {
  const note = $("#form-note");
  note.textContent = unshown && unshown.length
    ? `The form shows ${where || "this scenario"} without: ${unshown.join(", ")}. The YAML tab has the whole file.`
    : "";
  note.hidden = !note.textContent;
}

/** Put a scenario file on screen: its text in the YAML tab, what the form can show of it
 * (``form``: {fields, unshown}, from the server) in the form. */
function loadScenario(text, form, where) {
  const yaml = $("#yaml-text");
  yaml.value = text;
  yaml.dataset.fromForm = "false";
  if (form && form.fields) {
    loading = true;
    try { builder.load({ ...defaults, ...form.fields }); } finally { loading = false; }
  }
  yaml.dataset.loaded = "true";
  showFormNote(form ? form.unshown : null, where);
}

$("#example-select").addEventListener("change", (e) => {
  const ex = exampleForms[e.target.value];
  if (ex) { loadScenario(ex.yaml, ex.form, `example ${e.target.value}`); }
});

function showTab(name) {
  state.source = name;
  if (name === "example" && $("#yaml-text").dataset.example !== $("#example-select").value) {
    const ex = exampleForms[$("#example-select").value];
    if (ex) { loadScenario(ex.yaml, ex.form, `example ${$("#example-select").value}`); }
    $("#yaml-text").dataset.example = $("#example-select").value;
  }
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
  if (p) { builder.load(p); $("#yaml-text").dataset.loaded = "false"; $("#yaml-text").dataset.fromForm = "true"; showFormNote(null); } else {
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

// ---------------------------------------------------------------------------- start
player.bind();
runner.bind();
pcapExport.bind();
compare.bind();
ensureDiagram(builder.systemInfo().cores || 4);
showIdleSystem();
if (initialRun && initialRun.run) {
  state.scenarioYaml = initialRun.scenario_yaml || "";
  state.mode = initialRun.mode;
  // The run's own file, in the YAML tab (what Run ▶ runs from now on) and the form.
  loadScenario(state.scenarioYaml, initialRun.form, `run ${initialRun.run}`);
  if (initialRun.seed !== undefined && initialRun.seed !== null) { $("#run-seed").value = String(initialRun.seed); }
  showTab("yaml");
  $("#verdict-bar").textContent = "loading the verdict…";
  if (initialRun.mode === "compare") { state.run = runUrls(initialRun.run); }
  runner.setStatus(initialRun.status || "queued", initialRun.progress, initialRun.error);
  if (initialRun.mode === "compare") {
    $("#verdict-bar").textContent = "a comparison: its table and chart are under Compare, below";
    compare.watch(state.run);
  } else {
    player.setLive(!FINISHED.has(initialRun.status));
    runner.watch(runUrls(initialRun.run), { replay: FINISHED.has(initialRun.status) });
  }
}
new Tour(lab, { runPreset: (name) => {
  document.querySelector(`button.preset[data-preset=${name}]`).click();
  showTab("builder");
  return runner.start("trace");
} }).offer({ firstVisit: !(initialRun && initialRun.run) });
root.dataset.ready = "true";
