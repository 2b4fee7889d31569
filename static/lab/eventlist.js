// The event list (Packet Tracer style), virtualised: only the rows in view exist in the DOM,
// so a run of tens of thousands of events appends and scrolls without freezing the page.
// It is a listbox with aria-activedescendant: one tab stop, arrows move the selection.
import { coreOf, whatOf, whereOf } from "./describe.js";
import { coreColour } from "./diagram.js";

const ROW = 22;       // px per row (kept in step with .ev-row in workbench.css)
const OVERSCAN = 8;

export class EventList {
  constructor(root, store, { onSelect }) {
    this.root = root;
    this.store = store;          // {events: [...]} indexed by seq
    this.onSelect = onSelect;
    this.spacer = root.querySelector(".ev-spacer");
    this.rows = new Map();       // visible position -> row element
    this.view = null;            // null: every event; else array of seqs matching the filters
    this.filter = { kind: "", flow: null, core: null };
    this.selected = -1;
    this.follow = true;          // keep the newest row in view while live
    this.pendingRender = false;
    root.addEventListener("scroll", () => {
      const bottom = root.scrollTop + root.clientHeight >= root.scrollHeight - ROW * 2;
      this.follow = bottom;
      this.render();
    });
    root.addEventListener("click", (e) => {
      const row = e.target.closest(".ev-row");
      if (row) { this.onSelect(Number(row.dataset.seq), "list"); }
    });
    root.addEventListener("keydown", (e) => this.key(e));
  }

  get length() { return this.view ? this.view.length : this.store.events.length; }

  seqAt(position) { return this.view ? this.view[position] : position; }

  positionOf(seq) {
    if (!this.view) { return seq; }
    let lo = 0, hi = this.view.length - 1;            // seqs in the view are ascending
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      if (this.view[mid] === seq) { return mid; }
      if (this.view[mid] < seq) { lo = mid + 1; } else { hi = mid - 1; }
    }
    return -1;
  }

  matches(ev) {
    const f = this.filter;
    if (f.kind && ev.kind !== f.kind) { return false; }
    if (f.flow !== null && ev.flow !== f.flow) { return false; }
    if (f.core !== null) {
      const core = coreOf(ev);
      if (core !== f.core && ev.from_core !== f.core && ev.request_core !== f.core) { return false; }
    }
    return true;
  }

  setFilter(filter) {
    this.filter = { ...this.filter, ...filter };
    const f = this.filter;
    if (!f.kind && f.flow === null && f.core === null) {
      this.view = null;
    } else {
      this.view = [];
      for (const ev of this.store.events) { if (this.matches(ev)) { this.view.push(ev.seq); } }
    }
    this.clearRows();
    this.render();
  }

  /** New events were appended to the store (from seq ``first``). */
  appended(first) {
    if (this.view) {
      const events = this.store.events;
      for (let i = first; i < events.length; i++) { if (this.matches(events[i])) { this.view.push(i); } }
    }
    this.schedule();
  }

  reset() { this.view = this.view ? [] : null; this.selected = -1; this.follow = true; this.clearRows(); this.render(); }

  clearRows() { for (const row of this.rows.values()) { row.remove(); } this.rows.clear(); }

  schedule() {
    if (this.pendingRender) { return; }
    this.pendingRender = true;
    window.requestAnimationFrame(() => { this.pendingRender = false; this.render(); });
  }

  render() {
    const n = this.length;
    this.spacer.style.height = `${n * ROW}px`;
    if (this.follow && n) {
      this.root.scrollTop = n * ROW;      // the browser clamps it to the bottom
    }
    const top = this.root.scrollTop;
    const height = this.root.clientHeight || 300;
    const from = Math.max(0, Math.floor(top / ROW) - OVERSCAN);
    const to = Math.min(n, Math.ceil((top + height) / ROW) + OVERSCAN);
    for (const [pos, row] of this.rows) {
      if (pos < from || pos >= to) { row.remove(); this.rows.delete(pos); }
    }
    const events = this.store.events;
    for (let pos = from; pos < to; pos++) {
      const seq = this.seqAt(pos);
      let row = this.rows.get(pos);
      if (row && Number(row.dataset.seq) === seq) {
        row.classList.toggle("selected", seq === this.selected);
        row.setAttribute("aria-selected", seq === this.selected ? "true" : "false");
        continue;
      }
      if (row) { row.remove(); }
      row = this.makeRow(events[seq], pos);
      this.rows.set(pos, row);
      this.root.appendChild(row);
    }
  }

  makeRow(ev, pos) {
    const row = document.createElement("div");
    row.className = "ev-row" + (ev.seq === this.selected ? " selected" : "");
    row.id = `ev-${ev.seq}`;
    row.setAttribute("role", "option");
    row.setAttribute("aria-selected", ev.seq === this.selected ? "true" : "false");
    row.dataset.seq = ev.seq;
    row.dataset.kind = ev.kind;
    row.style.top = `${pos * ROW}px`;
    const core = coreOf(ev);
    const cells = [String(ev.seq), String(ev.t_us), whereOf(ev), whatOf(ev)];
    cells.forEach((text, i) => {
      const span = document.createElement("span");
      span.textContent = text;
      if (i === 2 && core !== null && whereOf(ev).startsWith("core")) {
        span.className = "where-core";
        span.style.borderLeftColor = coreColour(core);
      }
      if (i === 3) { span.title = text; }
      row.appendChild(span);
    });
    if (ev.kind === "verdict") { row.classList.add(`v-${ev.verdict}`); }
    return row;
  }

  /** Mark ``seq`` selected and scroll it into view (it may be filtered out). */
  select(seq, { scroll = true } = {}) {
    this.selected = seq;
    const pos = this.positionOf(seq);
    if (pos >= 0) {
      this.root.setAttribute("aria-activedescendant", `ev-${seq}`);
      if (scroll) {
        const top = pos * ROW;
        if (top < this.root.scrollTop || top > this.root.scrollTop + this.root.clientHeight - ROW) {
          this.follow = false;
          this.root.scrollTop = Math.max(0, top - this.root.clientHeight / 2);
        }
      }
    }
    this.render();
    const pos2 = this.positionOf(seq);
    if (pos2 >= 0 && this.rows.has(pos2)) {
      this.root.setAttribute("aria-activedescendant", `ev-${seq}`);
    }
  }

  key(e) {
    const n = this.length;
    if (!n) { return; }
    let pos = this.positionOf(this.selected);
    const page = Math.max(1, Math.floor(this.root.clientHeight / ROW) - 1);
    const moves = { ArrowDown: 1, ArrowUp: -1, PageDown: page, PageUp: -page };
    if (e.key in moves) {
      pos = pos < 0 ? 0 : Math.min(n - 1, Math.max(0, pos + moves[e.key]));
    } else if (e.key === "Home" && e.ctrlKey) { pos = 0; } else if (e.key === "End" && e.ctrlKey) {
      pos = n - 1;
    } else if (e.key === "Enter") {
      if (pos >= 0) { this.onSelect(this.seqAt(pos), "list"); }
      e.preventDefault();
      return;
    } else { return; }
    e.preventDefault();
    e.stopPropagation();
    this.onSelect(this.seqAt(pos), "list");
  }
}
