// The BUILD form ↔ the builder fields of the API (see labsite/lab/builder.py): reading the form
// into one JSON object, filling it from a preset, and showing field errors next to the fields.
// The indirection table is edited per bucket (tablegrid.js) or as text, kept in step.
import { TableEditor } from "./tablegrid.js";

const KEY_HEX_RE = /^[0-9a-fA-F]{16,}$/;

function num(value, fallback = null) {
  if (value === "" || value === null || value === undefined) { return fallback; }
  const n = Number(value);
  return Number.isFinite(n) ? n : value;   // a non-number goes through: the server names it
}

function lines(text) { return String(text || "").split(/[\n,]+/).map((s) => s.trim()).filter(Boolean); }

/** A table typed as text ("0,1, 2 3"): numbers where they are, other tokens as typed (the server names them). */
function tableOf(text) {
  return String(text || "").split(/[\s,]+/).filter(Boolean).map((v) => (/^\d+$/.test(v) ? Number(v) : v));
}

export class Builder {
  constructor(form, defaults) {
    this.form = form;
    this.defaults = defaults || {};
    this.flowRows = form.querySelector("#flow-rows");
    this.ruleRows = form.querySelector("#rule-rows");
    this.serviceName = (this.defaults.service && this.defaults.service.name) || "web";
    this.onChange = () => {};       // the page redraws the idle diagram from the fields
    this.table = new TableEditor({ grid: form.querySelector("#table-grid"),
      text: this.field("table_custom"), error: form.querySelector("#table-check"),
      cores: this.field("cores"), hashBits: this.field("hash_bits"),
      onChange: () => this.onChange() });
    form.querySelector("#add-flow").addEventListener("click", () => { this.addFlow({}); this.onChange(); });
    form.addEventListener("change", (e) => { this.sync(e.target); this.onChange(); });
    form.addEventListener("input", (e) => {
      const name = e.target.name;
      if (name === "cores" || name === "hash_bits") { this.sync(e.target); }
      if (!e.target.closest("#table-grid") && name !== "table_custom") { this.onChange(); }
    });
    this.flowRows.addEventListener("click", (e) => {
      const b = e.target.closest("button.remove-flow");
      if (b && this.flowRows.children.length > 1) { b.closest("tr").remove(); this.renumber(); }
    });
    // Distributor rules: any number of rows (none is the default); a new row takes the focus,
    // a removed row gives it to the next row's remove button (or "+ rule").
    form.querySelector("#add-rule").addEventListener("click", () => {
      const tr = this.addRule({});
      tr.querySelector("[data-key=kind]").focus();
      this.onChange();
    });
    this.ruleRows.addEventListener("click", (e) => {
      const b = e.target.closest("button.remove-rule");
      if (!b) { return; }
      const tr = b.closest("tr");
      const next = tr.nextElementSibling || tr.previousElementSibling;
      tr.remove();
      this.renumberRules();
      (next ? next.querySelector("button.remove-rule") : form.querySelector("#add-rule")).focus();
      this.onChange();
    });
  }

  field(name) { return this.form.elements.namedItem(name); }

  sync(target) {
    const f = this.form;
    const keyKind = this.field("key_kind").value;
    f.querySelector(".key-random").hidden = keyKind !== "random";
    f.querySelector(".key-hex").hidden = keyKind !== "hex";
    const custom = this.field("table_kind").value === "custom";
    f.querySelector(".table-custom").hidden = !custom;
    if (custom) {
      const name = target && target.name;
      if (!target || name === "table_kind" || name === "hash_bits") {
        this.table.fit();            // open with round robin; resize with the hash bits
      } else if (name === "cores") {
        this.table.render();
        this.table.check();
      }
    } else {
      this.form.querySelector("#table-check").textContent = "";
    }
    // The receive core matters only when the NIC does not hash; a value other than the
    // default stays in sight either way (it is in the file, and the engine checks it).
    const receive = this.field("receive_core").value;
    f.querySelector(".receive-core").hidden = this.field("rss_aware").checked && (receive === "" || receive === "0");
    const changeOn = this.field("table_change_on").checked;
    f.querySelector("#table-change-box").hidden = !changeOn;
    const changeText = this.field("table_change.table");
    if (changeOn && target && target.name === "table_change_on" && !changeText.value.trim()) {
      changeText.value = this.currentTable().join(",");   // start from the table in use
    }
    [...this.ruleRows.children].forEach((tr) => this.showRuleKind(tr));
    const kind = f.querySelector("input[name='traffic.kind']:checked").value;
    f.querySelector(".traffic-flows").hidden = kind !== "flows";
    f.querySelector(".traffic-generated").hidden = kind !== "generated";
    f.querySelector(".traffic-pcap").hidden = kind !== "pcap";
    const start = this.field("traffic.start").value;        // one number input, the chosen kind's
    f.querySelector(".start-spread").hidden = start !== "spread_us";
    f.querySelector(".start-rate").hidden = start !== "rate_per_s";
  }

  addFlow(flow) {
    const tr = document.createElement("tr");
    const to = flow.server ? flow.server : (flow.service || this.serviceName);
    tr.innerHTML = `
      <td><select data-key="proto" aria-label="protocol"><option>tcp</option><option>udp</option></select></td>
      <td><input data-key="client" aria-label="client ip:port" spellcheck="false" size="20"></td>
      <td><input data-key="to" aria-label="service name or server ip:port" spellcheck="false" size="12"></td>
      <td><input data-key="request_bytes" type="number" min="0" aria-label="request bytes" size="5"></td>
      <td><input data-key="response_bytes" type="number" min="0" aria-label="response bytes" size="5"></td>
      <td><input data-key="start_us" type="number" min="0" placeholder="0" aria-label="start time, virtual µs (blank: 0)" size="5"></td>
      <td><button type="button" class="remove-flow" aria-label="remove this flow">✕</button></td>`;
    tr.querySelector("[data-key=proto]").value = flow.proto || "tcp";
    tr.querySelector("[data-key=client]").value = flow.client || "198.51.100.7:40000";
    tr.querySelector("[data-key=to]").value = to;
    tr.querySelector("[data-key=request_bytes]").value = flow.request_bytes ?? 100;
    tr.querySelector("[data-key=response_bytes]").value = flow.response_bytes ?? 1000;
    tr.querySelector("[data-key=start_us]").value = flow.start_us ?? "";
    this.flowRows.appendChild(tr);
    this.renumber();
  }

  /** One distributor rule row: a prefix (matched on the source or destination address) or an
   * exact flow (client, server, proto), and the core it sends packets to. Each row holds
   * the inputs of both kinds; the kind select shows one set. */
  addRule(rule) {
    const tr = document.createElement("tr");
    tr.innerHTML = `
      <td><select data-key="kind"><option value="prefix">prefix</option><option value="flow">flow</option></select></td>
      <td><input data-key="prefix" data-kind="prefix" spellcheck="false" size="14" placeholder="10.0.0.0/8">
        <input data-key="client" data-kind="flow" spellcheck="false" size="14" placeholder="client ip:port"></td>
      <td><select data-key="match_on" data-kind="prefix"><option value="src">src</option><option value="dst">dst</option></select>
        <input data-key="server" data-kind="flow" spellcheck="false" size="14" placeholder="server ip:port"></td>
      <td><select data-key="proto" data-kind="flow"><option>tcp</option><option>udp</option></select></td>
      <td><input data-key="core" type="number" min="0" max="63" size="3"></td>
      <td><button type="button" class="remove-rule">✕</button></td>`;
    const set = (k, v) => { tr.querySelector(`[data-key=${k}]`).value = v; };
    set("kind", rule.kind === "flow" ? "flow" : "prefix");
    set("prefix", rule.prefix ?? ""); set("match_on", rule.match_on === "dst" ? "dst" : "src");
    set("client", rule.client ?? ""); set("server", rule.server ?? "");
    set("proto", rule.proto === "udp" ? "udp" : "tcp"); set("core", rule.core ?? 0);
    this.ruleRows.appendChild(tr);
    this.showRuleKind(tr);
    this.renumberRules();
    return tr;
  }

  showRuleKind(tr) {
    const kind = tr.querySelector("[data-key=kind]").value;
    tr.querySelectorAll("[data-kind]").forEach((el) => { el.hidden = el.dataset.kind !== kind; });
  }

  renumberRules() {
    const labels = { kind: "match by", prefix: "prefix", match_on: "match the prefix on the packet's source or destination",
      client: "flow client ip:port", server: "flow server ip:port", proto: "flow protocol", core: "to core" };
    [...this.ruleRows.children].forEach((tr, i) => {
      tr.querySelectorAll("[data-key]").forEach((input) => {
        input.name = `distributor.rules[${i}].${input.dataset.key}`;
        input.id = `rule-${i}-${input.dataset.key}`;
        input.setAttribute("aria-label", `rule ${i + 1}: ${labels[input.dataset.key]}`);
      });
      tr.querySelector("button.remove-rule").setAttribute("aria-label", `remove rule ${i + 1}`);
    });
  }

  renumber() {
    [...this.flowRows.children].forEach((tr, i) => {
      tr.querySelectorAll("[data-key]").forEach((input) => {
        const key = input.dataset.key === "to" ? "service" : input.dataset.key;
        input.name = `traffic.flows[${i}].${key}`;
        input.id = `flow-${i}-${input.dataset.key}`;
      });
    });
  }

  /** Fill the form from builder fields (a preset or the defaults). */
  load(fields) {
    const v = { ...this.defaults, ...fields };
    const set = (name, value) => { const el = this.field(name); if (el && value !== undefined && value !== null) { el.value = value; } };
    ["cores", "ips_per_core", "hash_bits", "tables_per_ip", "transform", "fragments", "strategy", "handoff"]
      .forEach((k) => set(k, v[k]));
    const key = String(v.key || "microsoft");
    if (key === "microsoft" || key === "symmetric") { set("key_kind", key); } else if (key.startsWith("random:")) {
      set("key_kind", "random"); set("key_seed", key.slice(7));
    } else { set("key_kind", "hex"); set("key_hex", key); }
    if (Array.isArray(v.table)) { set("table_kind", "custom"); this.field("table_custom").value = v.table.join(","); } else {
      set("table_kind", "round-robin"); set("table_custom", "");
    }
    const policy = this.form.querySelector(`input[name=policy][value="${v.policy || "nat"}"]`);
    if (policy) { policy.checked = true; }
    this.field("wrong_direction").checked = Boolean(v.wrong_direction);
    this.field("rss_aware").checked = v.rss_aware !== false;
    this.field("receive_core").value = v.receive_core ?? 0;
    const change = v.table_change;
    this.field("table_change_on").checked = Boolean(change);
    this.field("table_change.at_us").value = change ? (change.at_us ?? "") : 0;
    this.field("table_change.table").value = change && Array.isArray(change.table) ? change.table.join(",") : "";
    const d = v.distributor || {};
    this.field("distributor.correct_core_check").checked = d.correct_core_check !== false;
    this.ruleRows.textContent = "";
    (Array.isArray(d.rules) ? d.rules : []).forEach((r) => this.addRule(r));
    const s = v.service || {};
    this.serviceName = s.name || this.serviceName;
    set("service.vip", s.vip); set("service.vport", s.vport); set("service.proto", s.proto);
    this.field("service.mtu").value = s.mtu ?? "";
    set("service.response_bytes", s.response_bytes);
    this.field("service.assemble_flag").checked = Boolean(s.assemble_flag);
    if (Array.isArray(s.servers)) { this.field("service.servers").value = s.servers.join("\n"); }
    const t = v.traffic || { kind: "flows", flows: [{}] };
    const radio = this.form.querySelector(`input[name='traffic.kind'][value="${t.kind}"]`);
    if (radio) { radio.checked = true; }
    this.flowRows.textContent = "";
    const flows = t.kind === "flows" && Array.isArray(t.flows) && t.flows.length ? t.flows : [{}];
    flows.forEach((f) => this.addFlow(f));
    if (t.kind === "generated") {
      set("traffic.count", t.count); set("traffic.seed", t.seed);
      this.field("traffic.zipf").value = t.zipf ?? "";
      if (Array.isArray(t.client_prefixes)) { this.field("traffic.client_prefixes").value = t.client_prefixes.join("\n"); }
    }
    // Start times and session end (generated traffic only): the defaults where not set.
    const gen = t.kind === "generated" ? t : {};
    const start = gen.start && typeof gen.start === "object" ? gen.start : {};
    const startKind = ["spread_us", "rate_per_s"].find((k) => start[k] !== undefined && start[k] !== null);
    set("traffic.start", startKind || "none");
    if (startKind) { set(`traffic.start.${startKind}`, start[startKind]); }
    set("traffic.close", ["fin", "rst", "none"].includes(gen.close) ? gen.close : "fin");
    this.field("traffic.hold_us").value = gen.hold_us ?? "";
    this.name = v.name;
    this.sync();
    this.onChange();
  }

  /** What the idle diagram shows: the system and traffic the fields describe. */
  systemInfo() {
    const g = (name) => this.field(name).value;
    const cores = Number(g("cores"));
    const bits = Number(g("hash_bits"));
    const kind = this.form.querySelector("input[name='traffic.kind']:checked").value;
    const rows = [...this.flowRows.children];
    const first = rows[0] ? rows[0].querySelector("[data-key=client]").value.trim() : "";
    const info = {
      cores: Number.isInteger(cores) && cores >= 1 && cores <= 64 ? cores : null,
      hashBits: Number.isInteger(bits) && bits >= 1 && bits <= 7 ? bits : 7,
      key: this.field("key_kind").value === "hex" ? "hex" : this.key(), transform: g("transform"),
      table: g("table_kind") === "custom" ? this.table.read() : "round-robin",
      policy: this.form.querySelector("input[name=policy]:checked").value,
      vip: `${g("service.vip").trim()}:${g("service.vport")}`,
      server: lines(g("service.servers"))[0] || "",
    };
    if (kind === "flows") {
      info.client = first;
      info.flows = rows.length;
    } else if (kind === "generated") {
      info.client = lines(g("traffic.client_prefixes"))[0] || "generated";
      info.flows = Number(g("traffic.count")) || 0;
    } else {
      info.client = "from the capture";
    }
    return info;
  }

  key() {
    const kind = this.field("key_kind").value;
    if (kind === "random") { return `random:${this.field("key_seed").value || 0}`; }
    if (kind === "hex") { return this.field("key_hex").value.trim().replace(/^0x/i, "").replace(/[\s:]/g, ""); }
    return kind;
  }

  /** The indirection table the form sets now (a custom one as typed, else round robin). */
  currentTable() {
    if (this.field("table_kind").value === "custom") { return this.table.read(); }
    const cores = Number(this.field("cores").value) || 1;
    const bits = Number(this.field("hash_bits").value) || 7;
    return Array.from({ length: 2 ** Math.min(Math.max(bits, 1), 7) }, (_, b) => b % cores);
  }

  /** The builder fields the API takes. */
  read() {
    const g = (name) => this.field(name).value;
    const tableKind = g("table_kind");
    const fields = {
      cores: num(g("cores")), ips_per_core: num(g("ips_per_core")), key: this.key(),
      hash_bits: num(g("hash_bits")),
      table: tableKind === "custom" ? this.table.read() : "round-robin",
      transform: g("transform"), fragments: g("fragments"),
      policy: this.form.querySelector("input[name=policy]:checked").value,
      strategy: g("strategy"), tables_per_ip: num(g("tables_per_ip")),
      wrong_direction: this.field("wrong_direction").checked, handoff: g("handoff"),
      rss_aware: this.field("rss_aware").checked, receive_core: num(g("receive_core")),
      table_change: this.field("table_change_on").checked
        ? { at_us: num(g("table_change.at_us")), table: tableOf(g("table_change.table")) } : null,
      distributor: { correct_core_check: this.field("distributor.correct_core_check").checked,
        rules: [...this.ruleRows.children].map((tr) => {
          const val = (k) => tr.querySelector(`[data-key=${k}]`).value.trim();
          const kind = val("kind");
          return kind === "flow"
            ? { kind, client: val("client"), server: val("server"), proto: val("proto"), core: num(val("core")) }
            : { kind, prefix: val("prefix"), match_on: val("match_on"), core: num(val("core")) };
        }) },
      service: { name: this.serviceName, vip: g("service.vip").trim(), vport: num(g("service.vport")),
        proto: g("service.proto"), servers: lines(g("service.servers")), mtu: num(g("service.mtu")),
        response_bytes: num(g("service.response_bytes")),
        assemble_flag: this.field("service.assemble_flag").checked },
    };
    if (this.name) { fields.name = this.name; }
    const kind = this.form.querySelector("input[name='traffic.kind']:checked").value;
    if (kind === "flows") {
      fields.traffic = { kind, flows: [...this.flowRows.children].map((tr) => {
        const val = (k) => tr.querySelector(`[data-key=${k}]`).value.trim();
        const to = val("to");
        const flow = { client: val("client"), proto: val("proto"),
          request_bytes: num(val("request_bytes")), response_bytes: num(val("response_bytes")),
          start_us: num(val("start_us")) };
        if (/^[\d.]+:\d+$|^\[.*\]:\d+$/.test(to)) { flow.server = to; } else { flow.service = to || this.serviceName; }
        return flow;
      }) };
    } else if (kind === "generated") {
      const start = g("traffic.start");
      fields.traffic = { kind, count: num(g("traffic.count")), client_prefixes: lines(g("traffic.client_prefixes")),
        zipf: num(g("traffic.zipf")), seed: num(g("traffic.seed")),
        start: start === "none" ? null : { [start]: num(g(`traffic.start.${start}`)) },
        close: g("traffic.close"), hold_us: num(g("traffic.hold_us")) };
    } else {
      fields.traffic = { kind: "pcap" };
    }
    return fields;
  }

  pcapFile() {
    const kind = this.form.querySelector("input[name='traffic.kind']:checked").value;
    const input = this.form.querySelector("#pcap-file");
    return kind === "pcap" && input.files.length ? input.files[0] : null;
  }

  hasKeyHex() { return KEY_HEX_RE.test(this.key()); }
}

/** Put each error next to the field it names (or its nearest named ancestor); list them all. */
export function showErrors(root, summary, errors) {
  clearErrors(root, summary);
  const list = summary.querySelector("ul");
  for (const e of errors) {
    const field = e.field || "";
    const where = field ? `${field}${e.line ? ` (line ${e.line})` : ""}` : (e.line ? `line ${e.line}` : "");
    const li = document.createElement("li");
    li.textContent = where ? `${where}: ${e.message}` : e.message;
    const target = fieldTarget(root, field);
    if (target) {
      const span = document.createElement("span");
      span.className = "field-error-msg";
      span.textContent = (e.line ? `line ${e.line}: ` : "") + e.message;
      target.holder.appendChild(span);
      target.holder.hidden = false;
      if (target.input) { target.input.setAttribute("aria-invalid", "true"); }
      const link = document.createElement("a");
      link.href = "#";
      link.textContent = li.textContent;
      link.addEventListener("click", (ev) => { ev.preventDefault(); (target.input || target.holder).focus(); });
      li.textContent = "";
      li.appendChild(link);
    }
    list.appendChild(li);
  }
  summary.hidden = errors.length === 0;
}

export function clearErrors(root, summary) {
  root.querySelectorAll(".field-error-msg, .field-error-inline").forEach((n) => n.remove());
  root.querySelectorAll("[aria-invalid]").forEach((n) => n.removeAttribute("aria-invalid"));
  summary.querySelector("ul").textContent = "";
  summary.hidden = true;
}

function fieldTarget(root, field) {
  if (!field) { return null; }
  const input = root.querySelector(`[name="${CSS.escape(field)}"]`);
  if (input) {
    let holder = root.querySelector(`.field-error[data-error-for="${CSS.escape(field)}"]`);
    if (!holder) {
      holder = document.createElement("span");
      holder.className = "field-error field-error-inline";
      holder.dataset.errorFor = field;
      const anchor = input.closest("label") || input;
      anchor.after(holder);
    }
    holder.id = holder.id || `err-${field.replace(/[^\w-]/g, "_")}`;
    input.setAttribute("aria-describedby", holder.id);
    return { holder, input };
  }
  // Longest named prefix: "service.servers[0]" → "service", "system.nic.key" → "key" is mapped
  // by the server already; "traffic.count" → "traffic".
  const parts = field.split(/[.[\]]+/).filter(Boolean);
  for (let n = parts.length; n > 0; n--) {
    const prefix = parts.slice(0, n).join(".");
    const holder = root.querySelector(`.field-error[data-error-for="${CSS.escape(prefix)}"]`);
    if (holder) { return { holder, input: null }; }
  }
  return null;
}
