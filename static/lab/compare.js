// Compare: the current scenario's traffic under every combination of the ticked keys,
// policies, strategies and transforms (a run in mode compare, on the batch path). The request
// is built like a run's (request.js), so a capture uploaded with the form goes with it.
import { ApiError, getJson, postForm } from "./api.js";
import { clearErrors } from "./build.js";
import { scenarioRequest } from "./request.js";
import { showComparison } from "./results.js";
import { FINISHED, newStats } from "./state.js";
import { RunStream } from "./stream.js";
import { runUrls, urls } from "./urls.js";

const VARY = [["c-key", "key"], ["c-policy", "policy"], ["c-strategy", "strategy"], ["c-transform", "transform"]];

export class Compare {
  /** ``lab``: the page's context (workbench.js). */
  constructor(lab) {
    this.lab = lab;
  }

  bind() {
    const $ = this.lab.$;
    $("#compare-run").addEventListener("click", () => this.start());
    document.querySelector("#compare .table-toggle").addEventListener("click", (e) => {
      const on = e.target.getAttribute("aria-pressed") !== "true";
      e.target.setAttribute("aria-pressed", on ? "true" : "false");
      $("#compare-table-box").hidden = !on;
      $("#compare-chart").hidden = on;
    });
  }

  /** The ticked settings: {"key": ["microsoft", "symmetric"], "policy": [...], …}. */
  vary() {
    const ticked = (name) => [...document.querySelectorAll(`input[name=${name}]:checked`)].map((i) => i.value);
    const vary = {};
    for (const [name, key] of VARY) {
      const values = ticked(name);
      if (values.length) { vary[key] = values; }
    }
    return vary;
  }

  /** The page's status line follows the comparison too, so it never shows the previous
   * run's number and state while a comparison runs. */
  status(text, cls = "") {
    const el = this.lab.$("#run-status");
    el.textContent = text;
    el.className = cls;
  }

  async start() {
    const $ = this.lab.$;
    const form = scenarioRequest(this.lab.scenarioSource(), { vary: this.vary() });
    const errBox = $("#compare-errors");
    errBox.textContent = "";
    // A new request: errors of earlier ones (a refused run, a refused comparison) go.
    clearErrors(this.lab.root, $("#form-errors"));
    this.status("comparison · submitting…");
    $("#run-progress").value = 0;
    const progress = $("#compare-progress");
    progress.hidden = false;
    progress.value = 0;
    $("#compare-status").textContent = "queued…";
    try {
      const data = await postForm(urls.compare, form);
      this.status(`comparison ${data.run} · queued`, "status-queued");
      this.watch(runUrls(data.run));
    } catch (err) {
      progress.hidden = true;
      $("#compare-status").textContent = "";
      this.status("comparison refused: see Compare, below", "status-failed");
      errBox.textContent = err instanceof ApiError ? err.errors.map((e) => `${e.field ? e.field + ": " : ""}${e.message}`).join("; ") : String(err);
    }
  }

  /** Follow comparison ``run`` ({run, ws, status_url, events_url}) and show its result. */
  watch(run) {
    const $ = this.lab.$;
    const stream = new RunStream(run, {
      onEvents: () => {},
      onStatus: async (msg) => {
        if (msg.type === "progress") { $("#compare-progress").value = msg.progress; return; }
        $("#compare-status").textContent = msg.status + (msg.error ? `: ${msg.error}` : "");
        this.status(`comparison ${run.run} · ${msg.status}${msg.error ? ": " + msg.error : ""}`, `status-${msg.status}`);
        if (typeof msg.progress === "number") { $("#compare-progress").value = msg.progress; $("#run-progress").value = msg.progress; }
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
      stats: newStats(),
    });
    stream.connect();
  }
}
