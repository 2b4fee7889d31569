// The WATCH diagram: client → NIC (Toeplitz → bucket → table → core) → one box per core
// (packet engine, sessions, port-table gauge) → server, and back. One event is "current";
// its packet travels along the matching edge (or, with prefers-reduced-motion, no packet
// moves: the boxes it touches and the edge between them light up instead). Before a run it
// shows the system the BUILD form describes. Each core box is a toggle button: it filters
// the event list to that core. Every label has a tooltip (an SVG <title>) and the
// legend under the diagram (the template's #diagram-legend) says what each one means.
import { VERDICT_MARK, coreOf, hex32 } from "./describe.js";

export const OKABE_ITO = ["#E69F00", "#56B4E9", "#009E73", "#F0E442", "#0072B2", "#D55E00",
  "#CC79A7", "#000000"];
// Text colour readable on each of the colours above.
const INK = ["#000", "#000", "#fff", "#000", "#fff", "#fff", "#000", "#fff"];

export function coreColour(core) { return OKABE_ITO[core % OKABE_ITO.length]; }
export function coreInk(core) { return INK[core % INK.length]; }
/** Cores 8–15 reuse the colours with stripes, 16+ with dots (and always their number). */
export function corePattern(core) { return ["", "stripes", "dots", "cross"][Math.floor(core / 8) % 4]; }

const NS = "http://www.w3.org/2000/svg";
const W = 960;
const PER_ROW = 16;

function el(name, attrs = {}, text) {
  const node = document.createElementNS(NS, name);
  for (const [k, v] of Object.entries(attrs)) { node.setAttribute(k, v); }
  if (text !== undefined) { node.textContent = text; }
  return node;
}

/** ``node`` with a tooltip (browsers show a <title> on hover): a group around it holds
 * the title, so the node's own text stays only what it shows. The group takes the node's
 * place if it is in the document already; otherwise append ``w(node)``. */
function tip(node, text) {
  const g = el("g", { class: "tip" });
  if (node.parentNode) { node.parentNode.insertBefore(g, node); }
  g.append(el("title", {}, text), node);
  node.wrap = g;
  return node;
}

/** What to append for ``node``: its tooltip group, if it has one. */
function w(node) { return node.wrap || node; }

function say(node, text) { node.textContent = text; }

export class Diagram {
  constructor(root, { onPacketClick, onCoreClick }) {
    this.root = root;
    this.onPacketClick = onPacketClick;
    this.onCoreClick = onCoreClick || (() => {});
    this.cores = 0;
    this.coreFilter = null;
    const motion = window.matchMedia("(prefers-reduced-motion: reduce)");
    this.reduced = motion.matches;
    motion.addEventListener("change", (e) => { this.reduced = e.matches; });
    this.duration = 600;
  }

  build(cores) {
    this.cores = cores;
    const rows = Math.max(1, Math.ceil(cores / PER_ROW));
    const perRow = Math.min(cores, PER_ROW);
    const gap = 8;
    const boxW = Math.min(140, (W - 40 - gap * (perRow - 1)) / perRow);
    const boxH = 92;
    const coreTop = 190;
    const height = coreTop + rows * (boxH + 14) + 70;
    // A group, not an image: it holds focusable controls (the cores, the packets), which
    // an image's children may not be.
    const svg = el("svg", { viewBox: `0 0 ${W} ${height}`, role: "group",
      "aria-labelledby": "diagram-title diagram-desc", class: "diagram-svg" });
    svg.appendChild(el("title", { id: "diagram-title" }, "Packet path"));
    svg.appendChild(el("desc", { id: "diagram-desc" },
      `Client, NIC with RSS, ${cores} cores each with a packet engine, and the servers.`));
    const defs = el("defs");
    defs.innerHTML = `
      <pattern id="pat-stripes" width="6" height="6" patternUnits="userSpaceOnUse" patternTransform="rotate(45)">
        <rect width="3" height="6" fill="rgba(255,255,255,.55)"/></pattern>
      <pattern id="pat-dots" width="6" height="6" patternUnits="userSpaceOnUse">
        <circle cx="3" cy="3" r="1.4" fill="rgba(255,255,255,.7)"/></pattern>
      <pattern id="pat-cross" width="6" height="6" patternUnits="userSpaceOnUse">
        <path d="M0 0L6 6M6 0L0 6" stroke="rgba(255,255,255,.6)"/></pattern>
      <marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse">
        <path d="M0 0L10 5L0 10z" fill="#333"/></marker>
      <marker id="arrow-hand" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="8" markerHeight="8" orient="auto-start-reverse">
        <path d="M0 0L10 5L0 10z" fill="#D55E00"/></marker>`;
    svg.appendChild(defs);

    // Boxes: client, NIC, server.
    this.pos = {};
    const box = (id, x, y, w, h, title) => {
      const g = el("g", { class: "node", id: `d-${id}` });
      g.appendChild(el("rect", { x, y, width: w, height: h, rx: 6, class: "node-box" }));
      g.appendChild(el("text", { x: x + 8, y: y + 18, class: "node-title" }, title));
      svg.appendChild(g);
      this.pos[id] = { x: x + w / 2, y: y + h / 2, top: y, bottom: y + h, left: x, right: x + w };
      return g;
    };
    const client = box("client", 10, 40, 190, 80, "client");
    tip(client.querySelector(".node-title"), "client: where the request comes from");
    this.clientText = tip(el("text", { x: 18, y: 80, class: "node-line" }, ""), "the client's address and port");
    this.clientText2 = tip(el("text", { x: 18, y: 100, class: "node-line" }, ""), "the flows, or the flow's verdict once known");
    client.append(w(this.clientText), w(this.clientText2));
    const nic = box("nic", 320, 10, 320, 120, "NIC · RSS");
    tip(nic.querySelector(".node-title"), "NIC · RSS: the network card spreads packets over cores by Receive Side Scaling");
    const nicTips = ["the hash: the Toeplitz hash of the packet's addresses and ports, with the NIC's key",
      "the bucket: the hash's low bits pick one of the indirection table's buckets",
      "the core: the indirection table maps the bucket to a core", "which packet of which flow"];
    this.nicLines = [0, 1, 2, 3].map((i) => {
      const t = tip(el("text", { x: 330, y: 48 + i * 20, class: "node-line mono", id: `d-nic-line-${i}` }, ""), nicTips[i]);
      nic.appendChild(w(t));
      return t;
    });
    const server = box("server", W - 200, 40, 190, 80, "server(s)");
    tip(server.querySelector(".node-title"), "server(s): the service's address (VIP) and the real servers behind it");
    this.serverText = tip(el("text", { x: W - 192, y: 80, class: "node-line" }, ""), "where the request was sent");
    this.serverText2 = tip(el("text", { x: W - 192, y: 100, class: "node-line" }, ""), "the server, or the rewritten source the server sees");
    server.append(w(this.serverText), w(this.serverText2));

    // Static edges.
    const edges = el("g", { class: "edges" });
    edges.appendChild(el("line", { x1: 200, y1: 80, x2: 320, y2: 70, class: "edge", "marker-end": "url(#arrow)" }));
    edges.appendChild(el("line", { x1: 640, y1: 70, x2: W - 200, y2: 80, class: "edge edge-faint" }));
    svg.insertBefore(edges, client);

    // Cores.
    this.coreNodes = [];
    const fanout = el("g", { class: "edges" });
    svg.insertBefore(fanout, client);
    for (let c = 0; c < cores; c++) {
      const row = Math.floor(c / PER_ROW);
      const col = c % PER_ROW;
      const inRow = Math.min(PER_ROW, cores - row * PER_ROW);
      const rowW = inRow * boxW + (inRow - 1) * gap;
      const x = (W - rowW) / 2 + col * (boxW + gap);
      const y = coreTop + row * (boxH + 14);
      const colour = coreColour(c);
      // Named by its <title> (set in setCoreState), which starts with the words the box
      // shows, so the name a screen reader speaks matches what a sighted user reads.
      const g = el("g", { class: "node core", id: `d-core-${c}`, "data-core": c, tabindex: "0",
        role: "button", "aria-pressed": this.coreFilter === c ? "true" : "false" });
      g.addEventListener("click", () => this.onCoreClick(c));
      g.addEventListener("keydown", (e) => {
        if (e.key === "Enter" || e.key === " " || e.key === "Spacebar") {
          e.preventDefault();
          e.stopPropagation();
          this.onCoreClick(c);
        }
      });
      // The colour goes through the CSSOM (it must beat .node-box's stroke): the lab's
      // Content-Security-Policy refuses style="…" attributes.
      const coreBox = el("rect", { x, y, width: boxW, height: boxH, rx: 6, class: "node-box core-box" });
      coreBox.style.stroke = colour;
      g.appendChild(coreBox);
      g.appendChild(el("rect", { x, y, width: boxW, height: 20, rx: 6, fill: colour }));
      const pattern = corePattern(c);
      if (pattern) { g.appendChild(el("rect", { x, y, width: boxW, height: 20, rx: 6, fill: `url(#pat-${pattern})` })); }
      g.appendChild(el("text", { x: x + 6, y: y + 15, class: "core-label", fill: coreInk(c) }, `core ${c}`));
      const sessions = tip(el("text", { x: x + 6, y: y + 38, class: "node-line small" }, "PE · 0 sessions"),
        "PE: this core's packet engine; sessions: the flows it holds open now");
      const gaugeBack = tip(el("rect", { x: x + 6, y: y + 48, width: boxW - 12, height: 10, class: "gauge-back" }),
        "port-table gauge: ports taken of the ports that fit this core (their response hashes back here)");
      const gauge = el("rect", { x: x + 6, y: y + 48, width: 0, height: 10, class: "gauge",
        fill: colour });
      const ports = tip(el("text", { x: x + 6, y: y + 72, class: "node-line small" }, "ports 0"),
        "ports taken / fitting ports (those whose response comes back to this core)");
      const mark = tip(el("text", { x: x + boxW - 8, y: y + 86, class: "core-mark", "text-anchor": "end" }, ""),
        "the shown flow's verdict: ✓ symmetric, ↪ handed off, ⊘ refused, ✗ asymmetric");
      const ranOut = tip(el("text", { x: x + 6, y: y + 86, class: "ran-out-mark" }, ""),
        "this core ran out of fitting ports: it refused requests");
      g.append(w(sessions), w(gaugeBack), gauge, w(ports), w(mark), w(ranOut));
      g.appendChild(el("rect", { x: x - 3, y: y - 3, width: boxW + 6, height: boxH + 6, rx: 8,
        class: "core-focus" }));
      svg.appendChild(g);
      this.pos[`core-${c}`] = { x: x + boxW / 2, y: y + boxH / 2, top: y, bottom: y + boxH,
        left: x, right: x + boxW };
      this.coreNodes.push({ g, sessions, gauge, ports, mark, ranOut, x, w: boxW - 12 });
      if (cores <= 32) {
        fanout.appendChild(el("line", { x1: 480, y1: 130, x2: x + boxW / 2, y2: y, class: "edge edge-faint" }));
      }
    }
    this.overlay = el("g", { class: "overlay" });
    svg.appendChild(this.overlay);
    this.caption = tip(el("text", { x: 10, y: height - 20, class: "caption" }, ""),
      "the current event: its number, kind and flow");
    svg.appendChild(w(this.caption));
    this.root.textContent = "";
    this.root.appendChild(svg);
    this.svg = svg;
    svg.dataset.cores = String(cores);
    this.coreNodes.forEach((n, c) => n.g.appendChild(el("title", {}, `core ${c}: show only this core's events`)));
    if (this.system) { this.showSystem(this.system); }
    if (this.ports) { this.setPortsRanOut(this.ports); }
  }

  /** Mark core ``core`` (or none: null) as the one the event list is filtered to. */
  setCoreFilter(core) {
    this.coreFilter = core;
    this.coreNodes.forEach((n, c) => n.g.setAttribute("aria-pressed", core === c ? "true" : "false"));
  }

  /** A finished run's port figures (the report's ``ports``): a core that ran out of
   * fitting ports is marked (⊘ ran out) until the next run. */
  setPortsRanOut(ports) {
    this.ports = ports;
    const ranOut = ports.ran_out || [];
    const refused = ports.refused || [];
    this.coreNodes.forEach((n, c) => {
      const out = Boolean(ranOut[c]);
      n.g.classList.toggle("ran-out", out);
      say(n.ranOut, out ? `⊘ ran out (${refused[c]})` : "");
    });
  }

  /** Before a run: the system the BUILD form describes (``info`` from the form's fields). */
  showSystem(info) {
    this.system = info;
    this.setPortsRanOut({});
    if (!this.svg) { return; }
    const table = info.table === "round-robin" || !info.table ? `round robin over ${this.cores} cores`
      : `custom, ${info.table.length} buckets`;
    say(this.nicLines[0], `Toeplitz, key ${info.key || "microsoft"}`.slice(0, 40));
    say(this.nicLines[1], `transform ${info.transform || "none"}`);
    say(this.nicLines[2], `low ${info.hashBits} bits → ${2 ** info.hashBits} buckets`);
    say(this.nicLines[3], `table: ${table}`);
    say(this.clientText, info.client || "");
    say(this.clientText2, info.flows ? `${info.flows} flow${info.flows === 1 ? "" : "s"}` : "");
    say(this.serverText, info.vip || "");
    say(this.serverText2, info.server ? `→ ${info.server}` : "");
    say(this.caption, info.policy ? `${info.policy} · no run yet: press Run ▶` : "");
    this.setCoreState(Array.from({ length: this.cores }, () => ({ sessions: 0, ports: 0, capacity: 0, handoffs: 0 })));
  }

  /** Per-core numbers at the current step: [{sessions, ports, capacity, handoffs}]. */
  setCoreState(state) {
    state.forEach((s, c) => {
      const node = this.coreNodes[c];
      if (!node) { return; }
      say(node.sessions, `PE · ${s.sessions} session${s.sessions === 1 ? "" : "s"}`);
      const frac = s.capacity ? Math.min(1, s.ports / s.capacity) : (s.ports ? 1 : 0);
      node.gauge.setAttribute("width", String(node.w * frac));
      say(node.ports, s.capacity ? `ports ${s.ports} / ${Math.round(s.capacity)}` : `ports ${s.ports}`);
      node.g.dataset.sessions = String(s.sessions);
      node.g.dataset.ports = String(s.ports);
      const out = this.ports && this.ports.ran_out && this.ports.ran_out[c] ? ", ran out of fitting ports" : "";
      node.g.querySelector(":scope > title")?.remove();
      node.g.appendChild(el("title", {}, `core ${c} PE · ${s.sessions} session${s.sessions === 1 ? "" : "s"} ports ${s.ports}`
        + `${s.capacity ? " / " + Math.round(s.capacity) : ""}${out}: ${s.handoffs} handoffs received; `
        + "press to show only this core's events"));
    });
  }

  clearHighlights() {
    this.svg.querySelectorAll(".lit").forEach((n) => n.classList.remove("lit"));
    this.overlay.textContent = "";
  }

  light(id) { this.svg.querySelector(`#d-${id}`)?.classList.add("lit"); }

  /** Show event ``ev`` (``ctx``: the flow's last hash/tuples known at this step). */
  show(ev, ctx, { animate = true } = {}) {
    if (!this.svg) { return; }
    this.clearHighlights();
    const core = coreOf(ev);
    const flowLabel = ev.flow >= 0 ? `f${ev.flow}` : "";
    const response = ctx.direction === "response";
    let from = null, to = null;
    switch (ev.kind) {
      case "packet-arrived": from = response ? "server" : "client"; to = "nic"; break;
      case "hashed": this.light("nic"); break;
      case "steered": case "fragment-steered": from = "nic"; to = `core-${core}`; break;
      case "delivered-to-server": from = `core-${core}`; to = "server"; break;
      case "response-sent": this.light("server"); break;
      case "response-arrived": from = `core-${core}`; to = "client"; break;
      case "forwarded": case "forwarded-core-to-core": case "bridged":
      case "action-sent": case "action-sent-to-core": case "reassembled-forwarded":
        from = `core-${ev.from_core}`; to = `core-${ev.to_core}`;
        this.handoffArrow(ev.from_core, ev.to_core, ev.kind === "forwarded" ? `↪ ${ev.via}` : ev.kind);
        break;
      default:
        if (core !== null) { this.light(`core-${core}`); }
    }
    // NIC lines: the flow's latest RSS decision.
    const h = ctx.hashed;
    say(this.nicLines[0], h ? `Toeplitz → ${hex32(h.hash)}${h.hash_type ? "  (" + h.hash_type + ")" : ""}` : "Toeplitz → …");
    say(this.nicLines[1], h ? `low ${ctx.hashBits} bits → bucket ${h.bucket}` : "low bits → bucket …");
    say(this.nicLines[2], h ? `table[${h.bucket}] → core ${h.core}` : "table[…] → core …");
    say(this.nicLines[3], h ? `${h.direction || ""} of flow ${h.flow}` : "");
    say(this.clientText, ctx.request ? `${ctx.request.src}:${ctx.request.sport ?? ""}` : "");
    say(this.clientText2, ctx.verdict ? `${VERDICT_MARK[ctx.verdict.verdict] || ""} ${ctx.verdict.verdict}` : "");
    say(this.serverText, ctx.rewritten ? `${ctx.rewritten.dst}:${ctx.rewritten.dport ?? ""}` :
      (ctx.request ? `${ctx.request.dst}:${ctx.request.dport ?? ""}` : ""));
    say(this.serverText2, ctx.rewritten ? `from ${ctx.rewritten.src}:${ctx.rewritten.sport ?? ""}` : "");
    this.coreNodes.forEach((n, c) => {
      say(n.mark, ctx.verdict && ctx.verdict.request_core === c ? (VERDICT_MARK[ctx.verdict.verdict] || "") : "");
    });
    say(this.caption, `#${ev.seq} ${ev.kind}${flowLabel ? " · flow " + ev.flow : ""}`);
    if (from && to) {
      this.light(from); this.light(to);
      if (this.reduced) {
        this.edge(from, to);        // no packet moves: the step is the lit boxes and edge
      } else {
        this.packet(ev, from, to, response ? "R" : "Q", animate);
      }
    }
  }

  handoffArrow(a, b, label) {
    const p = this.pos[`core-${a}`], q = this.pos[`core-${b}`];
    if (!p || !q) { return; }
    const y = Math.max(p.bottom, q.bottom) + 10;
    const path = el("path", { d: `M${p.x} ${p.bottom} C ${p.x} ${y + 20}, ${q.x} ${y + 20}, ${q.x} ${q.bottom}`,
      class: "handoff", "marker-end": "url(#arrow-hand)" });
    this.overlay.appendChild(path);
    this.overlay.appendChild(w(tip(el("text", { x: (p.x + q.x) / 2, y: y + 24, class: "handoff-label",
      "text-anchor": "middle" }, label), `a handoff: core ${a} passes the packet to core ${b}, its owner (${label})`)));
  }

  /** Where a line between two boxes meets their borders (not their centres, so it never
   * crosses the text inside them): [start, end] points. */
  anchors(a, b) {
    if (b.top >= a.bottom) { return [{ x: a.x, y: a.bottom }, { x: b.x, y: b.top }]; }
    if (b.bottom <= a.top) { return [{ x: a.x, y: a.top }, { x: b.x, y: b.bottom }]; }
    if (b.left >= a.right) { return [{ x: a.right, y: a.y }, { x: b.left, y: b.y }]; }
    if (b.right <= a.left) { return [{ x: a.left, y: a.y }, { x: b.right, y: b.y }]; }
    return [{ x: a.x, y: a.y }, { x: b.x, y: b.y }];
  }

  edge(from, to) {
    const a = this.pos[from], b = this.pos[to];
    if (!a || !b) { return null; }
    const [p, q] = this.anchors(a, b);
    const line = el("line", { x1: p.x, y1: p.y, x2: q.x, y2: q.y, class: "edge-active" });
    this.overlay.appendChild(line);
    return line;
  }

  packet(ev, from, to, letter, animate) {
    const a = this.pos[from], b = this.pos[to];
    if (!a || !b) { return; }
    const g = el("g", { class: "packet", tabindex: "0", role: "button" });
    g.appendChild(el("title", {}, `${letter}${ev.flow >= 0 ? ev.flow : ""}: ${letter === "Q" ? "a request (query)" : "a response"} packet of flow ${ev.flow}, event ${ev.seq}; press to select it`));
    const colour = typeof ev.core === "number" ? coreColour(ev.core) : "#444";
    g.appendChild(el("rect", { x: -16, y: -10, width: 32, height: 20, rx: 4, fill: "#fff", stroke: colour, "stroke-width": 2.5 }));
    g.appendChild(el("text", { x: 0, y: 4, "text-anchor": "middle", class: "packet-label" },
      `${letter}${ev.flow >= 0 ? ev.flow : ""}`.slice(0, 6)));
    g.addEventListener("click", () => this.onPacketClick(ev.seq));
    g.addEventListener("keydown", (e) => { if (e.key === "Enter") { this.onPacketClick(ev.seq); } });
    this.edge(from, to);
    this.overlay.appendChild(g);
    // The packet travels between the boxes' borders and stops just outside the target,
    // so it never covers the text it has just changed (the NIC's hash, a core's count).
    const [p, q] = this.anchors(a, b);
    const length = Math.hypot(q.x - p.x, q.y - p.y) || 1;
    const stop = { x: q.x - ((q.x - p.x) / length) * 18, y: q.y - ((q.y - p.y) / length) * 14 };
    if (!animate) {
      g.setAttribute("transform", `translate(${(p.x + q.x) / 2} ${(p.y + q.y) / 2})`);
      return;
    }
    g.setAttribute("transform", `translate(${stop.x} ${stop.y})`);
    g.animate([{ transform: `translate(${p.x}px, ${p.y}px)` }, { transform: `translate(${stop.x}px, ${stop.y}px)` }],
      { duration: this.duration, easing: "ease-in-out", fill: "forwards" });
  }
}
