// The player: a cursor over the run's events, moved by its buttons, the keyboard (Space,
// ←/→, Home/End, +/-), the event list, the diagram and the per-flow table; it shows the
// event under the cursor in the diagram, the detail pane and the step line.
//
// Long runs (up to 200,000 events): a time scrubber (by the events' t_us), jumping to a
// flow by number (or from the per-flow table), to the previous / next misdirected,
// handed-off or refused packet, and the "whole run in 30 s" speed, which steps several
// events per tick. Every move is a binary search or an O(1) step: none scans the run.
import { announceOf, parseTuple, whatOf, whereOf } from "./describe.js";
import { markFlowRow } from "./results.js";
import { FINISHED } from "./state.js";

export const SPEEDS = [0.25, 0.5, 1, 2, 4, 8, 16, "fit"];
/** "fit": a whole run, however long, plays in this many ms. */
export const FIT_MS = 30_000;
/** The shortest pause between ticks (ms): about one animation frame. */
const MIN_TICK_MS = 16;

/** The first index of the ascending ``list`` whose value is > ``x`` (or >= with ``eq``). */
function upperBound(list, x, eq = false) {
  let lo = 0, hi = list.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (eq ? list[mid] < x : list[mid] <= x) { lo = mid + 1; } else { hi = mid; }
  }
  return lo;
}

export class Player {
  /** ``lab``: the page's context (workbench.js): $, state, store, widgets, scenarioSettings. */
  constructor(lab) {
    this.lab = lab;
  }

  get state() { return this.lab.state; }
  get events() { return this.lab.store.events; }

  /** Per-core sessions, ports taken (of the core's fitting-port capacity) and handoffs after
   * event ``cursor``: the tracker moves incrementally (see corestate.js). */
  coreStateAt(cursor) {
    const t = this.lab.widgets.tracker.at(cursor);
    const report = this.state.report;
    const fitting = report && report.ports && report.ports.fitting_per_table;
    const sys = (report && report.system) || {};
    const tables = (sys.ips_per_core || 1) * (sys.tables_per_ip || 1);
    return t.sessions.map((sessions, c) => ({ sessions, ports: t.ports[c], handoffs: t.handoffs[c],
      capacity: fitting && fitting[c] ? fitting[c] * tables : 0 }));
  }

  flowContext(ev) {
    const ctx = { hashBits: this.lab.scenarioSettings().hashBits };
    const seqs = this.state.flows.get(ev.flow) || [];
    const packets = new Map();
    for (const seq of seqs) {
      if (seq > ev.seq) { break; }
      const e = this.events[seq];
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

  showCursor({ animate = true } = {}) {
    const { $, widgets } = this.lab;
    const state = this.state;
    const n = this.events.length;
    $("#pl-pos").textContent = `event ${state.cursor + 1} / ${n}`;
    if (state.cursor < 0 || !n) { return; }
    if (state.cursor === state.lastShown && !animate) { return; }
    state.lastShown = state.cursor;
    const ev = this.events[state.cursor];
    const scrub = this.lab.$("#pl-scrub");
    if (document.activeElement !== scrub) { scrub.value = String(ev.t_us); }
    this.lab.$("#pl-time").textContent = `t = ${ev.t_us} µs`;
    widgets.diagram.setCoreState(this.coreStateAt(state.cursor));
    widgets.diagram.show(ev, this.flowContext(ev), { animate });
    $("#step-text").textContent = `#${ev.seq} · ${whereOf(ev)} · ${whatOf(ev)}`;
  }

  announce(ev) { this.lab.$("#announce").textContent = announceOf(ev); }

  /** The scrubber's range (the run's first and last t_us) and the trouble counts. */
  showRange() {
    const { $ } = this.lab;
    const n = this.events.length;
    const scrub = $("#pl-scrub");
    scrub.min = n ? String(this.events[0].t_us) : "0";
    scrub.max = n ? String(this.events[n - 1].t_us) : "0";
    const p = this.state.problems;
    $("#pl-problem-count").textContent = n ? `✗ ${p.asymmetric.length} · ↪ ${p["handed-off"].length} · ⊘ ${p.refused.length}` : "";
  }

  /** The scrubber moved to time ``t`` (µs): the first event at or after it. */
  scrubTo(t) {
    const n = this.events.length;
    if (!n) { return; }
    let lo = 0, hi = n - 1;                 // events are in time order
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (this.events[mid].t_us < t) { lo = mid + 1; } else { hi = mid; }
    }
    this.setLive(false); this.pause(); this.goTo(lo, { from: "scrub" });
  }

  /** Jump to the previous (-1) or next (+1) event of the chosen kind of trouble. */
  jumpProblem(direction) {
    const kind = this.lab.$("#pl-problem").value;
    const list = this.state.problems[kind] || [];
    const cursor = this.state.cursor;
    const i = direction > 0 ? upperBound(list, cursor) : upperBound(list, cursor, true) - 1;
    const label = this.lab.$("#pl-problem").selectedOptions[0].textContent;
    if (i < 0 || i >= list.length) {
      this.lab.$("#announce").textContent = `no ${direction > 0 ? "later" : "earlier"} ${label}`;
      this.showHint(`No ${direction > 0 ? "later" : "earlier"} ${label} in this run.`);
      return;
    }
    this.showHint("");
    this.select(list[i], "problem");
  }

  /** Jump to flow ``flow`` (its verdict event); says so when the run has no such flow. */
  jumpFlow(flow) {
    if (!Number.isInteger(flow) || !this.state.flows.has(flow)) {
      this.showHint(`No flow ${Number.isFinite(flow) ? flow : ""} in this run.`);
      return;
    }
    this.showHint("");
    this.selectFlow(flow);
  }

  goTo(index, { from = "player" } = {}) {
    const n = this.events.length;
    if (!n) { return; }
    const { $, widgets } = this.lab;
    this.state.cursor = Math.max(0, Math.min(n - 1, index));
    this.state.lastShown = -1;
    const ev = this.events[this.state.cursor];
    widgets.list.select(ev.seq);
    if (from !== "live" && from !== "fast") {
      widgets.detail.show(ev, this.flowContext(ev));
      if (ev.flow >= 0) { markFlowRow($("#flow-table tbody"), ev.flow); }
      this.announce(ev);
    }
    this.showCursor({ animate: true });
  }

  setLive(live) {
    this.state.live = live;
    this.lab.$("#pl-live").checked = live;
  }

  /** A line under the player: what to do next (replay a finished run), or why there is
   * nothing to watch (a batch run). */
  showHint(text) {
    const hint = this.lab.$("#pl-hint");
    hint.textContent = text;
    hint.hidden = !text;
  }

  step(delta) {
    if (this.events.length) { this.showHint(""); }
    this.setLive(false); this.pause(); this.goTo(this.state.cursor + delta);
  }

  play() {
    if (!this.events.length) { return; }
    const $ = this.lab.$;
    this.showHint("");
    this.setLive(false);
    if (this.state.cursor >= this.events.length - 1) { this.goTo(0); }
    this.state.playing = true;
    this.fit = null;
    $("#pl-play").textContent = "❚❚";
    $("#pl-play").setAttribute("aria-label", "Pause");
    this.tick();
  }

  pause() {
    const $ = this.lab.$;
    const wasFast = this.state.playing && this.interval() < 100;
    this.state.playing = false;
    if (wasFast && this.state.cursor >= 0) { this.goTo(this.state.cursor, { from: "pause" }); }
    window.clearTimeout(this.state.timer);
    $("#pl-play").textContent = "▶";
    $("#pl-play").setAttribute("aria-label", "Play");
  }

  /** Ms between ticks; at "fit", as short as a frame, or longer for a short run. */
  interval() {
    if (this.state.speed === "fit") { return Math.max(MIN_TICK_MS, FIT_MS / Math.max(1, this.events.length)); }
    return 700 / this.state.speed;
  }

  /** Events per tick: 1, or at "fit" as many as keep pace with the clock (the whole run
   * in FIT_MS, however late the browser's timers fire). */
  stride() {
    if (this.state.speed !== "fit") { return 1; }
    const now = performance.now();
    if (!this.fit) { this.fit = { at: now, cursor: this.state.cursor }; }
    const due = this.fit.cursor + Math.floor((now - this.fit.at) * this.events.length / FIT_MS);
    return Math.max(1, due - this.state.cursor);
  }

  tick() {
    const state = this.state;
    if (!state.playing) { return; }
    this.lab.widgets.diagram.duration = Math.min(600, this.interval() * 0.85);
    if (state.cursor >= this.events.length - 1) {
      if (FINISHED.has(state.status) || !state.status) { this.pause(); return; }
    } else {
      const stride = this.stride();
      // Fast play moves the diagram and the list; the detail pane and the live region
      // catch up on pause (announcing 60 steps a second helps no one).
      this.goTo(state.cursor + stride, { from: stride > 1 || this.interval() < 100 ? "fast" : "player" });
    }
    state.timer = window.setTimeout(() => this.tick(), this.interval());
  }

  setSpeed(speed) {
    this.fit = null;
    this.state.speed = speed === "fit" ? "fit" : Number(speed);
    this.lab.$("#pl-speed").value = String(speed);
    this.lab.widgets.diagram.duration = Math.min(600, this.interval() * 0.85);
  }

  speedBy(delta) {
    const i = SPEEDS.indexOf(this.state.speed);
    this.setSpeed(SPEEDS[Math.max(0, Math.min(SPEEDS.length - 1, (i < 0 ? 2 : i) + delta))]);
    this.lab.$("#announce").textContent = this.state.speed === "fit" ? `speed: whole run in ${FIT_MS / 1000} s`
      : `speed ${this.state.speed}×`;
  }

  select(seq, from) {
    this.setLive(false);
    this.pause();
    this.goTo(seq, { from });
  }

  selectFlow(flow) {
    const seqs = this.state.flows.get(flow);
    if (!seqs || !seqs.length) { return; }
    const verdict = seqs.find((s) => this.events[s].kind === "verdict");
    this.select(verdict ?? seqs[0], "flows");
  }

  /** The player's buttons and the page's keyboard shortcuts. */
  bind() {
    const $ = this.lab.$;
    $("#pl-first").addEventListener("click", () => { this.setLive(false); this.pause(); this.goTo(0); });
    $("#pl-back").addEventListener("click", () => this.step(-1));
    $("#pl-step").addEventListener("click", () => this.step(1));
    $("#pl-last").addEventListener("click", () => { this.setLive(false); this.pause(); this.goTo(this.events.length - 1); });
    $("#pl-play").addEventListener("click", () => (this.state.playing ? this.pause() : this.play()));
    $("#pl-speed").addEventListener("change", (e) => this.setSpeed(e.target.value));
    $("#pl-scrub").addEventListener("input", (e) => this.scrubTo(Number(e.target.value)));
    $("#pl-flow-go").addEventListener("click", () => this.jumpFlow(Number($("#pl-flow").value)));
    $("#pl-flow").addEventListener("keydown", (e) => {
      if (e.key === "Enter") { e.preventDefault(); this.jumpFlow(Number(e.target.value)); }
    });
    $("#pl-prev-problem").addEventListener("click", () => this.jumpProblem(-1));
    $("#pl-next-problem").addEventListener("click", () => this.jumpProblem(1));
    $("#pl-live").addEventListener("change", (e) => {
      this.setLive(e.target.checked);
      if (this.state.live) { this.pause(); this.goTo(this.events.length - 1, { from: "live" }); }
    });
    document.addEventListener("keydown", (e) => this.onKey(e));
  }

  onKey(e) {
    const t = e.target;
    if (e.altKey || e.metaKey || e.ctrlKey) { return; }
    if (t.closest && (t.closest("input, textarea, select, [contenteditable=true]") || t.closest("#pane-builder") || t.closest("#tour"))) { return; }
    switch (e.key) {
      case " ":
      case "Spacebar":
        if (t.closest("button, a, summary, [role=button], tr[tabindex]")) { return; }
        e.preventDefault();
        if (this.state.playing) { this.pause(); } else { this.play(); }
        break;
      case "ArrowLeft": e.preventDefault(); this.step(-1); break;
      case "ArrowRight": e.preventDefault(); this.step(1); break;
      case "Home":
        if (t.closest("#event-list")) { break; }
        e.preventDefault(); this.setLive(false); this.pause(); this.goTo(0); break;
      case "End":
        if (t.closest("#event-list")) { break; }
        e.preventDefault(); this.setLive(false); this.pause(); this.goTo(this.events.length - 1); break;
      case "+": case "=": e.preventDefault(); this.speedBy(1); break;
      case "-": case "_": e.preventDefault(); this.speedBy(-1); break;
      default: break;
    }
  }
}
