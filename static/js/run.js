// Run page: follows one run over its websocket (ws/runs/<id>/), shows progress, the event
// count and the event list, and the result once the run has finished.
// Messages are described in labsite/runs/broadcast.py. Events carry a seq: the page ignores
// repeats (a retried run replays the same events) and notes gaps (a page opened mid-run
// missed the start); once the run has finished, a gap is filled from the stored trace.
// window.rsslabRun exposes what arrived (and the send→show lag) for tests and the console.
(function () {
  "use strict";
  const root = document.getElementById("run");
  if (!root) { return; }
  const el = (id) => document.getElementById(id);
  const state = { nextSeq: 0, seqs: [], lagsMs: [], status: null, finishedLoaded: false,
                  gaps: 0, live: 0 };
  window.rsslabRun = state;

  function setProgress(p) {
    if (typeof p !== "number") { return; }
    el("run-progress").value = p;
    el("run-progress-text").textContent = Math.round(p * 100) + " %";
  }

  function cell(row, text) {
    const td = document.createElement("td");
    td.textContent = text === null || text === undefined ? "—" : String(text);
    row.appendChild(td);
  }

  function addEvents(events) {
    const frag = document.createDocumentFragment();
    for (const ev of events) {
      if (ev.seq < state.nextSeq) { continue; }  // already shown (a retry replays events)
      if (ev.seq !== state.nextSeq) { state.gaps += 1; }
      state.nextSeq = ev.seq + 1;
      state.seqs.push(ev.seq);
      const row = document.createElement("tr");
      cell(row, ev.seq); cell(row, ev.t_us); cell(row, ev.kind); cell(row, ev.flow);
      cell(row, ev.core);
      frag.appendChild(row);
    }
    el("event-rows").appendChild(frag);
    el("run-event-count").textContent = String(state.seqs.length);
  }

  function showStatus(msg) {
    state.status = msg.status;
    const status = el("run-status");
    status.textContent = msg.status;
    status.className = "status status-" + msg.status;
    setProgress(msg.progress);
    if (msg.error) { el("run-error").textContent = msg.error; el("run-error").hidden = false; }
    if ((msg.status === "succeeded" || msg.status === "failed") && !state.finishedLoaded) {
      state.finishedLoaded = true;
      el("run-connection").textContent = "finished";
      loadResult();
    }
  }

  function fillTable(tbody, rows) {
    tbody.textContent = "";
    for (const values of rows) {
      const row = document.createElement("tr");
      values.forEach((v) => cell(row, v));
      tbody.appendChild(row);
    }
  }

  function showResult(data) {
    const trace = Array.isArray(data.trace) ? data.trace : [];
    if (state.gaps && trace.length) {
      // Some events went by before this page listened: show the stored trace instead.
      el("event-rows").textContent = "";
      state.nextSeq = 0; state.seqs = []; state.gaps = 0;
    }
    addEvents(trace.filter((e) => e.seq >= state.nextSeq));
    const summary = data.summary || {};
    const totals = summary.totals || {};
    if (!Object.keys(totals).length) { return; }
    el("run-result").hidden = false;
    el("run-totals").textContent =
      `${totals.flows} flows: ${totals.symmetric} ✓ symmetric · ${totals.handed_off} ↪ handed off · ` +
      `${totals.asymmetric} ✗ asymmetric`;
    const perCore = totals.per_core || {};
    const cores = Object.keys(perCore).sort((a, b) => Number(a) - Number(b));
    fillTable(document.querySelector("#per-core-table tbody"), cores.map((c) => [c, perCore[c]]));
    fillTable(document.querySelector("#flow-table tbody"), (data.flows || []).map(
      (f) => [f.flow, f.verdict, f.request_core, f.response_core, f.reason]));
    if (window.Plotly) {
      window.Plotly.newPlot("per-core-chart", [{
        type: "bar", x: cores.map((c) => "core " + c), y: cores.map((c) => perCore[c]),
        marker: { color: "#0072B2" },
      }], { margin: { t: 20, r: 10, b: 40, l: 50 }, height: 260,
            yaxis: { title: { text: "events" } } }, { displaylogo: false, responsive: true });
    }
  }

  function loadResult() {
    fetch(root.dataset.dataUrl, { credentials: "same-origin" })
      .then((r) => (r.ok ? r.json() : Promise.reject(new Error("HTTP " + r.status))))
      .then(showResult)
      .catch((err) => { el("run-connection").textContent = "could not load the result: " + err.message; });
  }

  function connect() {
    const scheme = window.location.protocol === "https:" ? "wss://" : "ws://";
    const socket = new WebSocket(scheme + window.location.host + root.dataset.wsPath);
    socket.addEventListener("open", () => { el("run-connection").textContent = "live"; });
    socket.addEventListener("message", (e) => {
      const msg = JSON.parse(e.data);
      if (msg.type === "events") {
        state.live += msg.events.length;
        addEvents(msg.events);
        setProgress(msg.progress);
        if (msg.sent_at) { state.lagsMs.push(Date.now() - msg.sent_at * 1000); }
      } else if (msg.type === "status") {
        showStatus(msg);
      }
    });
    socket.addEventListener("close", (e) => {
      const finished = state.status === "succeeded" || state.status === "failed";
      el("run-connection").textContent = finished ? "finished" :
        (e.code === 4403 ? "not allowed to watch this run" : "disconnected; retrying…");
      if (!finished && e.code !== 4403) { window.setTimeout(connect, 1000); }
    });
  }

  connect();
}());
