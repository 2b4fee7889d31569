// The DETAIL pane (Wireshark style): the selected event's packet, layer by layer, with the
// rewritten fields marked, the computed values as [generated fields], the hash input as hex
// (port bytes lit) and, on request, the Toeplitz hash worked out bit by bit.
import { getJson } from "./api.js";
import { VERDICT_MARK, hex32, parseTuple, whatOf, whereOf } from "./describe.js";

function node(tag, attrs = {}, ...children) {
  const n = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") { n.className = v; } else if (k === "text") { n.textContent = v; } else { n.setAttribute(k, v); }
  }
  for (const c of children) { if (c !== null && c !== undefined) { n.append(c); } }
  return n;
}

function changed(a, b) { return a !== b ? " (rewritten)" : ""; }

function layerTree(title, lines) {
  const d = node("details", { open: "" }, node("summary", { text: title }));
  const ul = node("ul", { class: "tree" });
  for (const line of lines) { ul.append(node("li", { class: line.cls || "" }, line.text)); }
  d.append(ul);
  return d;
}

function tupleLayers(label, before, after) {
  const t = after || before;
  const v6 = t.src.includes(":");
  const out = [];
  const ipLines = [{ text: `src ${before.src}${after ? " → " + after.src + changed(before.src, after.src) : ""}`,
                     cls: after && before.src !== after.src ? "rewritten" : "" },
                   { text: `dst ${before.dst}${after ? " → " + after.dst + changed(before.dst, after.dst) : ""}`,
                     cls: after && before.dst !== after.dst ? "rewritten" : "" }];
  out.push(layerTree(`${v6 ? "IPv6" : "IPv4"}  ${label}`, ipLines));
  if (t.sport !== null) {
    out.push(layerTree(`${t.proto.toUpperCase()}`, [
      { text: `sport ${before.sport}${after ? " → " + after.sport + changed(before.sport, after.sport) : ""}`,
        cls: after && before.sport !== after.sport ? "rewritten" : "" },
      { text: `dport ${before.dport}${after ? " → " + after.dport + changed(before.dport, after.dport) : ""}`,
        cls: after && before.dport !== after.dport ? "rewritten" : "" }]));
  }
  return out;
}

/** Hash input hex, bytes grouped; the last 4 bytes (the ports) lit when present. */
function hexView(inputHex, hasPorts) {
  const bytes = inputHex.match(/../g) || [];
  const pre = node("div", { class: "hex", "aria-label": "hash input bytes" });
  bytes.forEach((b, i) => {
    const port = hasPorts && i >= bytes.length - 4;
    pre.append(node("span", { class: port ? "hb port" : "hb", title: port ? "port byte" : "address byte", text: b }));
  });
  return pre;
}

export class Detail {
  constructor(root, explainRoot, { explainUrl, context }) {
    this.root = root;
    this.explainRoot = explainRoot;
    this.explainUrl = explainUrl;
    this.context = context;          // () => {key, hashBits, cores, transform, table}
  }

  clear() { this.root.innerHTML = '<p class="muted">Select an event or a flow.</p>'; this.explainRoot.hidden = true; }

  /** ``ev`` selected; ``flowCtx``: the flow's events up to it (hashed, request, rewritten…). */
  show(ev, flowCtx) {
    const root = this.root;
    root.textContent = "";
    this.explainRoot.hidden = true;
    root.append(node("p", { class: "detail-head" },
      node("strong", { text: `#${ev.seq} ${ev.kind}` }), ` · t ${ev.t_us} µs · ${whereOf(ev)}`
      + (ev.flow >= 0 ? ` · flow ${ev.flow}` : "")));
    root.append(node("p", { class: "detail-what", text: whatOf(ev) }));

    const packetTuple = parseTuple(ev.tuple) || (ev.kind === "rewritten" ? parseTuple(ev.before) : null)
      || flowCtx.packetTuple;
    if (ev.kind === "rewritten") {
      root.append(...tupleLayers(`(${ev.direction}, ${ev.policy})`, parseTuple(ev.before), parseTuple(ev.after)));
    } else if (packetTuple) {
      root.append(...tupleLayers(flowCtx.direction ? `(${flowCtx.direction})` : "", packetTuple, null));
    }
    if (flowCtx.rewritten && ev.kind !== "rewritten") {
      const r = flowCtx.rewritten;
      root.append(layerTree("Session (packet engine)", [
        { text: `client side ${r.before} → ${r.after} (rewritten)`, cls: "rewritten" }]));
    }
    const gen = [];
    const h = ev.kind === "hashed" || ev.kind === "fragment-steered" || ev.kind === "header-found" ? ev : flowCtx.hashed;
    if (h) {
      gen.push(`[hash ${hex32(h.hash)}]`, `[bucket ${h.bucket}]`, `[core ${h.core ?? h.dest_core}]`);
      if (h.hash_type) { gen.push(`[hash type ${h.hash_type}]`); }
    }
    if (ev.kind === "port-allocated") { gen.push(`[port ${ev.port}]`, `[table ${ev.table}]`, `[tries ${ev.tries}]`, `[response bucket ${ev.bucket}]`); }
    if (ev.kind === "verdict") {
      gen.push(`[${VERDICT_MARK[ev.verdict] || ""} ${ev.verdict}]`, `[request core ${ev.request_core}]`,
               `[response core ${ev.response_core ?? "none"}]`, `[copies ${ev.copies}]`);
    }
    if (gen.length) {
      root.append(node("p", { class: "generated", "aria-label": "computed values" }, gen.join(" ")));
    }
    if (h && h.input_hex) {
      const hasPorts = h.input_hex.length === 24 || h.input_hex.length === 72;
      root.append(node("p", { class: "small muted", text: `hash input (${h.input_hex.length / 2} bytes: src, dst${hasPorts ? ", sport, dport" : ""}; port bytes lit)` }));
      root.append(hexView(h.input_hex, hasPorts));
      const tuple = h === ev ? flowCtx.packetTuple : flowCtx.hashedTuple;
      const button = node("button", { type: "button", id: "explain-button", "aria-expanded": "false",
        "aria-controls": "explain", text: "how: bit-by-bit ▸" });
      button.addEventListener("click", () => this.explain(h, tuple || packetTuple, button));
      root.append(button);
    }
  }

  async explain(h, tuple, button) {
    const box = this.explainRoot;
    if (!box.hidden) { box.hidden = true; button.setAttribute("aria-expanded", "false"); button.textContent = "how: bit-by-bit ▸"; return; }
    box.hidden = false;
    button.setAttribute("aria-expanded", "true");
    button.textContent = "how: bit-by-bit ▾";
    // The event's own input: the bytes the NIC hashed, after its transform (symmetric-xor,
    // sort), so the running XOR ends in the event's hash whatever the transform.
    if (!h.input_hex && !tuple) { box.textContent = "The hashed input is not known for this event."; return; }
    const ctx = this.context();
    box.textContent = "working it out…";
    const params = { key: ctx.key, hash_bits: ctx.hashBits, cores: ctx.cores };
    if (Array.isArray(ctx.table) && ctx.table.length === 2 ** ctx.hashBits) { params.table = ctx.table.join(","); }
    if (h.input_hex) {
      params.input_hex = h.input_hex;
    } else {
      Object.assign(params, { src: tuple.src, dst: tuple.dst, sport: tuple.sport ?? "", dport: tuple.dport ?? "" });
    }
    try {
      const data = await getJson(this.explainUrl, params);
      this.renderSteps(box, data, h, ctx);
    } catch (err) {
      box.textContent = "";
      box.append(node("p", { class: "error", text: `could not explain: ${err.message}` }));
    }
  }

  renderSteps(box, data, h, ctx) {
    box.textContent = "";
    box.append(node("h3", { text: "Toeplitz, bit by bit" }));
    box.append(node("p", { class: "small" },
      `For every set bit i of the input, XOR in the 32 key bits starting at key bit i. Key ${data.key_hex ? data.key_hex.slice(0, 16) + "…" : ctx.key}.`
      + (ctx.transform && ctx.transform !== "none" ? ` The input is the event's, after the NIC's "${ctx.transform}" transform.` : "")));
    const bits = (data.input_hex || "").match(/../g) || [];
    const bitsLine = node("div", { class: "bits mono", "aria-label": "input bits" });
    bits.forEach((b, i) => {
      const s = parseInt(b, 16).toString(2).padStart(8, "0");
      bitsLine.append(node("span", { class: "bb", title: `byte ${i}` , text: s }), " ");
    });
    box.append(bitsLine);
    const table = node("table", { class: "grid steps mono" });
    table.append(node("thead", {}, node("tr", {}, node("th", { scope: "col", text: "bit" }),
      node("th", { scope: "col", text: "key window" }), node("th", { scope: "col", text: "running XOR" }))));
    const tbody = node("tbody");
    for (const step of data.steps || []) {
      tbody.append(node("tr", {}, node("td", { text: String(step.bit) }), node("td", { text: step.window }),
        node("td", { text: step.running })));
    }
    table.append(tbody);
    box.append(node("div", { class: "steps-scroll" }, table));
    const eventHash = h ? hex32(h.hash) : null;
    const same = eventHash && data.hash && parseInt(data.hash, 16) === parseInt(eventHash, 16);
    box.append(node("p", { class: "explain-result", id: "explain-result" },
      `hash ${data.hash} → bucket ${data.bucket} → core ${data.core}`,
      eventHash ? (same ? ` ✓ equals the event's hash ${eventHash}` :
        ` ✗ differs from the event's hash ${eventHash} (the input is not the one the NIC hashed)`) : ""));
  }
}
