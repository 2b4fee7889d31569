// The indirection table editor: one small number input per bucket (2^hash_bits of them),
// coloured with the bucket's core colour and showing the core's number, kept in step with
// the comma-separated text form and with the cores and hash-bits fields.
//
// Keyboard: the grid is one tab stop; ←/→ move between buckets, Home/End jump to the first
// and last, ↑/↓ change the bucket's core, digits type it. Entries that are not a core of the
// system (or a table of the wrong length) show a field error and mark the cells invalid.
import { coreColour, coreInk } from "./diagram.js";

const PER_ROW = 16;

function tokens(text) { return String(text || "").split(/[\s,]+/).map((s) => s.trim()).filter(Boolean); }

export class TableEditor {
  constructor({ grid, text, error, cores, hashBits, onChange }) {
    this.grid = grid;          // container of the cells
    this.text = text;          // the textarea (comma-separated form)
    this.error = error;        // the field-error element
    this.coresInput = cores;
    this.bitsInput = hashBits;
    this.onChange = onChange || (() => {});
    this.cells = [];
    this.focusIndex = 0;
    grid.addEventListener("input", (e) => {
      const cell = e.target.closest(".tb-cell");
      if (cell) { this.cellChanged(cell); }
    });
    grid.addEventListener("keydown", (e) => this.key(e));
    grid.addEventListener("focusin", (e) => {
      const cell = e.target.closest(".tb-cell");
      if (cell) { this.rove(Number(cell.dataset.bucket)); }
    });
    text.addEventListener("input", () => { this.render(); this.check(); this.onChange(); });
  }

  cores() {
    const c = Number(this.coresInput.value);
    return Number.isInteger(c) && c >= 1 && c <= 64 ? c : null;
  }

  size() {
    const b = Number(this.bitsInput.value);
    return Number.isInteger(b) && b >= 1 && b <= 7 ? 2 ** b : null;
  }

  values() { return tokens(this.text.value); }

  /** The table as numbers (what the API gets); entries that are not numbers stay text. */
  read() { return this.values().map((v) => (/^\d+$/.test(v) ? Number(v) : v)); }

  /** A round-robin table when the text is empty; otherwise keep it, cut or extended (round
   * robin) to the bucket count. Called when the editor opens and when hash bits change. */
  fit() {
    const size = this.size();
    const cores = this.cores() || 1;
    if (!size) { this.render(); this.check(); return; }
    const values = this.values();
    const fitted = Array.from({ length: size }, (_, b) => (b < values.length ? values[b] : String(b % cores)));
    this.text.value = fitted.join(",");
    this.render();
    this.check();
  }

  render() {
    const size = this.size();
    const values = this.values();
    const count = size || values.length;
    const cores = this.cores();
    if (this.cells.length !== count) {
      this.grid.textContent = "";
      this.cells = [];
      for (let b = 0; b < count; b++) {
        if (b % PER_ROW === 0) {
          const label = document.createElement("span");
          label.className = "tb-row";
          label.setAttribute("aria-hidden", "true");
          label.textContent = String(b);
          this.grid.appendChild(label);
        }
        const cell = document.createElement("input");
        cell.type = "number";
        cell.className = "tb-cell";
        cell.min = "0";
        cell.dataset.bucket = String(b);
        cell.id = `tb-${b}`;
        cell.setAttribute("aria-label", `bucket ${b}: core`);
        cell.tabIndex = -1;
        this.grid.appendChild(cell);
        this.cells.push(cell);
      }
      this.focusIndex = Math.min(this.focusIndex, Math.max(0, count - 1));
    }
    this.cells.forEach((cell, b) => {
      const v = values[b] ?? "";
      if (cell.value !== v && document.activeElement !== cell) { cell.value = v; }
      if (cores) { cell.max = String(cores - 1); }
      cell.tabIndex = b === this.focusIndex ? 0 : -1;
      this.paint(cell);
    });
  }

  paint(cell) {
    const cores = this.cores();
    const v = cell.value;
    const core = /^\d+$/.test(v) ? Number(v) : null;
    const ok = core !== null && (!cores || core < cores);
    if (ok) {
      cell.style.background = coreColour(core);
      cell.style.color = coreInk(core);
      cell.removeAttribute("aria-invalid");
    } else {
      cell.style.background = "";
      cell.style.color = "";
      cell.setAttribute("aria-invalid", "true");
    }
    cell.title = ok ? `bucket ${cell.dataset.bucket} → core ${core}` : `bucket ${cell.dataset.bucket}: not a core`;
  }

  cellChanged(cell) {
    const values = this.values();
    const b = Number(cell.dataset.bucket);
    while (values.length <= b) { values.push(""); }
    values[b] = cell.value.trim() || "?";
    this.text.value = values.join(",");
    this.paint(cell);
    this.check();
    this.onChange();
  }

  /** Show what is wrong with the table (nothing when it is right); returns the problems. */
  check() {
    const problems = [];
    const cores = this.cores();
    const size = this.size();
    const values = this.values();
    if (size && values.length !== size) {
      problems.push(`expected ${size} entries (one per bucket for ${Math.log2(size)} hash bits), got ${values.length}`);
    }
    const bad = [];
    values.forEach((v, b) => {
      const ok = /^\d+$/.test(v) && (!cores || Number(v) < cores);
      if (!ok) { bad.push(`table[${b}] = ${v}`); }
    });
    if (bad.length) {
      const shown = bad.slice(0, 4).join(", ") + (bad.length > 4 ? ` and ${bad.length - 4} more` : "");
      problems.push(`expected a core 0–${(cores || 1) - 1} in every bucket: ${shown}`);
    }
    this.error.textContent = "";
    if (problems.length) {
      const span = document.createElement("span");
      span.className = "table-check";
      span.textContent = `✗ ${problems.join("; ")}`;
      this.error.appendChild(span);
      this.text.setAttribute("aria-invalid", "true");
    } else {
      this.text.removeAttribute("aria-invalid");
    }
    return problems;
  }

  rove(index) {
    if (!this.cells.length) { return; }
    this.focusIndex = Math.max(0, Math.min(this.cells.length - 1, index));
    this.cells.forEach((cell, b) => { cell.tabIndex = b === this.focusIndex ? 0 : -1; });
  }

  key(e) {
    const cell = e.target.closest(".tb-cell");
    if (!cell) { return; }
    const b = Number(cell.dataset.bucket);
    const moves = { ArrowLeft: -1, ArrowRight: 1 };
    let next = null;
    if (e.key in moves) { next = b + moves[e.key]; } else if (e.key === "Home") { next = 0; } else if (e.key === "End") {
      next = this.cells.length - 1;
    }
    if (next === null) { return; }
    e.preventDefault();
    this.rove(next);
    this.cells[this.focusIndex].focus();
  }
}
