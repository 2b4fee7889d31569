// Running: Run ▶ (trace) and Verify (batch) submit the scenario (request.js), then the page
// follows the run (stream.js): events in, one render per animation frame, the status line,
// and once it has finished its verdict, checks, per-flow table, matrix and charts.
import { ApiError, getJson, postForm } from "./api.js";
import { clearErrors, showErrors } from "./build.js";
import { coreOf } from "./describe.js";
import { scenarioRequest } from "./request.js";
import { showChecks, showCharts, showFlowTable, showMatrix, showPcapNote,
  showVerdictBar } from "./results.js";
import { FINISHED, newProblems, newVerdicts } from "./state.js";
import { RunStream } from "./stream.js";
import { runUrls, urls } from "./urls.js";

const BATCH_HINT = "Verify (batch) runs every flow at once, as arrays: there are no packet "
  + "events to watch. The verdict, matrix and charts below show its result; use Run ▶ "
  + "(trace) to watch packets move.";

export class Runner {
  /** ``lab``: the page's context (workbench.js); ``player``: the Player; ``pcapExport``:
   * the Export pcap button (told when the run changes). */
  constructor(lab, player, pcapExport) {
    this.lab = lab;
    this.player = player;
    this.pcapExport = pcapExport;
  }

  get state() { return this.lab.state; }

  bind() {
    const $ = this.lab.$;
    $("#run-trace").addEventListener("click", () => this.start("trace"));
    $("#run-batch").addEventListener("click", () => this.start("batch"));
  }

  // ------------------------------------------------------------------------ events in
  onEvents(events) {
    const { $, store, widgets } = this.lab;
    const state = this.state;
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
      const trouble = ev.kind === "verdict" && ev.verdict === "asymmetric" ? "asymmetric"
        : (ev.kind === "forwarded" || ev.kind === "forwarded-core-to-core") && ev.by !== "distributor" ? "handed-off"
          : ev.kind === "allocation-failed" ? "refused" : null;
      if (trouble) { state.problems[trouble].push(ev.seq); state.problems.any.push(ev.seq); }
      if (ev.kind === "verdict") {
        const v = state.verdicts;
        v.flows += 1;
        if (ev.verdict === "symmetric") { v.symmetric += 1; } else if (ev.verdict === "handed-off") { v.handed_off += 1; } else if (ev.verdict === "asymmetric") { v.asymmetric += 1; } else { v.refused += 1; }
      }
    }
    if (maxCore + 1 > state.coreCount) { this.lab.ensureDiagram(maxCore + 1); } else { widgets.tracker.append(events); }
    widgets.list.appended(first);
    if (state.live) { state.cursor = store.events.length - 1; }
    this.scheduleFrame();
  }

  scheduleFrame() {
    if (this.state.frame) { return; }
    this.state.frame = true;
    window.requestAnimationFrame(() => this.frame());
  }

  /** One render per animation frame however many events arrived: counts, list, diagram. */
  frame() {
    const { $, stats, store } = this.lab;
    const state = this.state;
    state.frame = false;
    const now = Date.now();
    for (const sentAt of stats.pendingLags) { stats.lagsMs.push(now - sentAt * 1000); }
    stats.pendingLags.length = 0;
    stats.renderedAt = now;
    $("#event-count").textContent = String(store.events.length);
    // Only while running: once finished, the bar waits for the report (finished()), so it
    // never shows a partial count after "succeeded".
    if (!state.report && state.verdicts.flows && !FINISHED.has(state.status)) {
      showVerdictBar($("#verdict-bar"), state.verdicts, { partial: true });
    }
    this.player.showRange();
    this.player.showCursor({ animate: !state.live || !state.status || FINISHED.has(state.status) ? true : false });
  }

  // ------------------------------------------------------------------------ a run
  resetRun() {
    const { $, stats, store, widgets } = this.lab;
    const state = this.state;
    if (state.stream) { state.stream.close(); }
    this.player.pause();
    store.events.length = 0;
    state.flows.clear();
    state.report = null;
    state.cursor = -1;
    state.lastShown = -1;
    widgets.tracker.reset(state.coreCount);
    state.verdicts = newVerdicts();
    state.problems = newProblems();
    $("#download-report").hidden = true;
    Object.assign(stats, { received: 0, messages: 0, firstAt: null, lastAt: null, fetched: 0, duplicates: 0,
      gaps: 0, receivedBeforeFinal: null, finalAt: null });
    stats.lagsMs.length = 0;
    stats.pendingLags.length = 0;
    this.player.setLive(true);
    widgets.list.reset();
    widgets.detail.clear();
    $("#verdict-bar").textContent = "running…";
    $("#pl-pos").textContent = "event 0 / 0";
    $("#step-text").textContent = "";
    this.player.showHint("");
    showPcapNote($("#pcap-note"), null);
    $("#checks").textContent = "";
    $("#flow-table tbody").textContent = "";
    $("#event-count").textContent = "0";
  }

  setStatus(status, progress, error) {
    const $ = this.lab.$;
    this.state.status = status;
    const el = $("#run-status");
    el.textContent = `run ${this.state.run ? this.state.run.run : ""} · ${status}${error ? ": " + error : ""}`;
    el.className = `status-${status}`;
    if (typeof progress === "number") { $("#run-progress").value = progress; }
  }

  /** A run's scenario file in the YAML tab. One this page built from the form is refreshed
   * from the form when the tab opens again; typed or example text, and the file of a run
   * opened from its link, are kept. */
  showRunYaml(text) {
    const yaml = this.lab.$("#yaml-text");
    yaml.value = text;
    yaml.dataset.fromForm = this.state.startedHere && this.state.source === "builder" ? "true" : "false";
  }

  /** Follow ``run`` ({run, ws, status_url, events_url}): live, or replayed if finished. */
  watch(run, { replay = false } = {}) {
    const { $, widgets } = this.lab;
    const state = this.state;
    state.run = run;
    if (state.scenarioYaml) { this.showRunYaml(state.scenarioYaml); }
    const cores = this.lab.scenarioSettings().cores;
    widgets.diagram.system = null;             // from now on the diagram shows the run, not the form
    state.coreCount = 0;
    this.lab.ensureDiagram(cores);
    this.pcapExport.update();
    const history = new URLSearchParams(window.location.search);
    if (history.get("run") !== String(run.run)) {
      window.history.replaceState(null, "", `${urls.page}?run=${run.run}`);
    }
    const stream = new RunStream(run, {
      onEvents: (events) => this.onEvents(events),
      onStatus: (msg) => {
        if (msg.type === "progress") { $("#run-progress").value = msg.progress; return; }
        this.setStatus(msg.status, msg.progress, msg.error);
        if (FINISHED.has(msg.status)) {
          $("#verdict-bar").textContent = `${msg.status}: loading the verdict…`;
          this.finished();
        }
      },
      onConnection: (text) => { $("#run-connection").textContent = text; },
      stats: this.lab.stats,
    });
    state.stream = stream;
    if (replay) {
      stream.replay().then(() => { this.finished(); });
    } else {
      stream.connect();
    }
  }

  async finished() {
    const { $, root, store } = this.lab;
    const state = this.state;
    let data;
    try {
      data = await getJson(state.run.status_url);
    } catch (err) {
      $("#run-connection").textContent = `could not load the result: ${err.message}`;
      return;
    }
    this.setStatus(data.status, data.progress, data.error);
    if (data.scenario_yaml) { state.scenarioYaml = data.scenario_yaml; this.showRunYaml(data.scenario_yaml); }
    const report = data.report;
    if (!report) {
      $("#verdict-bar").textContent = data.error ? `✗ run failed: ${data.error}` : "no report";
      return;
    }
    state.report = report;
    if (report.system && report.system.cores) { this.lab.ensureDiagram(report.system.cores); }
    this.lab.widgets.diagram.setPortsRanOut(report.ports || {});
    const link = $("#download-report");
    link.href = state.run.report_url;
    link.hidden = false;
    state.lastShown = -1;
    $("#scenario-title").textContent = report.scenario ? `· ${report.scenario.name}` : "";
    showVerdictBar($("#verdict-bar"), report.summary || {}, { checks: report.checks || [], passed: report.passed });
    showPcapNote($("#pcap-note"), data.pcap_note);
    showChecks($("#checks"), report.checks);
    showFlowTable($("#flow-table tbody"), report.rows || [], (flow) => this.player.selectFlow(flow));
    showMatrix($("#matrix-table"), $("#matrix-chart"), report.matrix);
    showCharts($("#charts"), report);
    if (state.live && store.events.length) { this.player.goTo(store.events.length - 1, { from: "live" }); }
    if (data.mode === "batch") {
      this.player.showHint(BATCH_HINT);
    } else if (store.events.length && !state.playing) {
      this.player.showHint(`Finished: ▶ (or Space) replays its ${store.events.length} events from the `
        + "start, ◀ and ▶| step through them.");
    }
    this.player.showRange();
    root.dataset.finished = "true";
    this.pcapExport.update();
  }

  /** Submit the scenario as a run in ``mode`` (trace or batch) and watch it. */
  async start(mode) {
    const { $, root } = this.lab;
    const state = this.state;
    clearErrors(root, $("#form-errors"));
    $("#compare-errors").textContent = "";
    const form = scenarioRequest(this.lab.scenarioSource(), { mode, seed: $("#run-seed").value });
    const buttons = [$("#run-trace"), $("#run-batch")];
    buttons.forEach((b) => { b.disabled = true; });
    root.dataset.finished = "false";
    try {
      const data = await postForm(urls.runs, form);
      this.resetRun();
      state.startedHere = true;
      state.mode = mode;
      if (mode === "batch") { this.player.showHint(BATCH_HINT); }
      $("#export-status").textContent = "";
      state.scenarioYaml = data.scenario_yaml || "";
      this.setStatus("queued", 0, "");
      this.watch(runUrls(data.run));
    } catch (err) {
      if (err instanceof ApiError) { showErrors(root, $("#form-errors"), err.errors); } else { throw err; }
      root.dataset.finished = "error";
    } finally {
      buttons.forEach((b) => { b.disabled = false; });
    }
  }
}
