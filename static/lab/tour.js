// The guided tour: a first visit offers five short steps that run the nat preset and point
// at what RSS decides — the hash, the bucket, the core — and at the verdict. It is a
// non-modal dialog (the page stays usable around it): Next / Back / Close buttons, Escape
// closes it, focus moves to its heading at every step, and the step's target is outlined
// and scrolled into view. Closing it (or finishing) is remembered in localStorage, so it
// is offered once; the Tour button in the header opens it again.

const KEY = "rsslab.tour";

const STEPS = [
  { text: "Welcome to the RSS lab. This tour runs the nat preset (three of Microsoft's test "
      + "flows on a 4-core NAT) and shows where the NIC decides which core gets each packet. "
      + "Next runs it.", target: "#run-trace", next: "Run the nat preset ▶" },
  { text: "The hash: the NIC computes the Toeplitz hash of the packet's addresses and ports "
      + "with its key (Toeplitz → 0x…). The same tuple always gives the same hash.",
  target: "#d-nic-line-0", spot: "#d-nic" },
  { text: "The bucket: only the hash's low bits count (7 bits: 128 buckets). They pick one "
      + "bucket of the indirection table.", target: "#d-nic-line-1", spot: "#d-nic" },
  { text: "The core: the table maps the bucket to a core. NAT then picks a port whose "
      + "response hashes back to this same core — a port that fits it.", target: "core" },
  { text: "The verdict: did every response come back to its request's core? ✓ symmetric, "
      + "↪ handed off, ⊘ refused, ✗ asymmetric. The legend under the diagram explains every "
      + "label.", target: "#verdict-bar", next: "Done" },
];

export class Tour {
  /** ``lab``: the page's context; ``runPreset(name)``: starts a run of a preset. */
  constructor(lab, { runPreset }) {
    this.lab = lab;
    this.runPreset = runPreset;
    this.box = lab.$("#tour");
    this.step = 0;
    this.spotted = [];
    lab.$("#tour-next").addEventListener("click", () => this.next());
    lab.$("#tour-back").addEventListener("click", () => this.show(this.step - 1));
    lab.$("#tour-close").addEventListener("click", () => this.close());
    lab.$("#tour-open").addEventListener("click", () => this.open());
    this.box.addEventListener("keydown", (e) => {
      if (e.key === "Escape") { e.preventDefault(); e.stopPropagation(); this.close(); }
    });
  }

  static dismissed() {
    try { return window.localStorage.getItem(KEY) === "done"; } catch (err) { return false; }
  }

  /** Open on a first visit (not when the page opens a past run: that visitor came for it). */
  offer({ firstVisit }) {
    if (firstVisit && !Tour.dismissed()) { this.open(); }
  }

  open() {
    this.box.hidden = false;
    this.show(0);
  }

  close() {
    this.unspot();
    this.box.hidden = true;
    try { window.localStorage.setItem(KEY, "done"); } catch (err) { /* private mode: ask again */ }
    this.lab.$("#tour-open").focus();
  }

  async next() {
    if (this.step === 0) {
      const button = this.lab.$("#tour-next");
      button.disabled = true;
      this.lab.$("#tour-text").textContent = "Running the nat preset…";
      try {
        await this.runPreset("nat");
        await this.finishedRun();
      } finally {
        button.disabled = false;
      }
      // Show the first request's hash: the tour's words describe its NIC lines.
      const events = this.lab.store.events;
      const hashed = events.findIndex((e) => e.kind === "hashed");
      if (hashed >= 0 && window.rssLab) { window.rssLab.select(hashed); }
    }
    if (this.step >= STEPS.length - 1) { this.close(); return; }
    this.show(this.step + 1);
  }

  finishedRun() {
    const root = this.lab.root;
    return new Promise((resolve) => {
      const done = () => root.dataset.finished === "true" || root.dataset.finished === "error";
      if (done()) { resolve(); return; }
      const watch = new MutationObserver(() => { if (done()) { watch.disconnect(); resolve(); } });
      watch.observe(root, { attributes: true, attributeFilter: ["data-finished"] });
    });
  }

  unspot() {
    this.spotted.forEach((n) => n.classList.remove("tour-spot"));
    this.spotted = [];
  }

  target(step) {
    if (step.target === "core") {
      const cursor = this.lab.state.cursor;
      const ev = this.lab.store.events[cursor];
      const core = ev && typeof ev.core === "number" ? ev.core : 0;
      return document.querySelector(`#d-core-${core}`);
    }
    return document.querySelector(step.target);
  }

  show(index) {
    const $ = this.lab.$;
    this.step = Math.max(0, Math.min(STEPS.length - 1, index));
    const step = STEPS[this.step];
    this.unspot();
    const target = this.target(step);
    const spot = step.spot ? document.querySelector(step.spot) : null;
    for (const node of [target, spot]) {
      if (node) { node.classList.add("tour-spot"); this.spotted.push(node); }
    }
    if (target && target.scrollIntoView) { target.scrollIntoView({ block: "center", behavior: "auto" }); }
    $("#tour-text").textContent = step.text;
    $("#tour-step").textContent = `Step ${this.step + 1} of ${STEPS.length}`;
    $("#tour-back").disabled = this.step === 0;
    $("#tour-next").textContent = step.next || "Next";
    this.box.dataset.step = String(this.step);
    $("#tour-h").focus();
  }
}
