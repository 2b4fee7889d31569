// Export pcap: download the shown run's packets (client and server sides) for Wireshark.

export class PcapExport {
  /** ``lab``: the page's context (workbench.js). */
  constructor(lab) {
    this.lab = lab;
  }

  bind() {
    this.lab.$("#export-pcap").addEventListener("click", () => this.download());
  }

  /** Enabled for a trace or batch run; a comparison has no one set of packets. */
  update() {
    const state = this.lab.state;
    this.lab.$("#export-pcap").disabled = !(state.run && state.mode !== "compare");
  }

  async download() {
    const { $, state } = this.lab;
    const status = $("#export-status");
    if (!state.run) { return; }
    status.textContent = "exporting…";
    let response;
    try {
      response = await fetch(state.run.pcap_url, { credentials: "same-origin" });
    } catch (err) {
      status.textContent = `could not export: network error: ${err.message}`;
      return;
    }
    if (!response.ok) {
      let message = `HTTP ${response.status}`;
      try {
        const data = await response.json();
        if (Array.isArray(data.errors)) { message = data.errors.map((e) => `${e.field ? e.field + ": " : ""}${e.message}`).join("; "); }
      } catch (err) { /* not JSON: keep the status */ }
      status.textContent = `✗ could not export: ${message}`;
      return;
    }
    const blob = await response.blob();
    const name = (response.headers.get("Content-Disposition") || "").match(/filename="([^"]+)"/);
    const link = document.createElement("a");
    link.href = URL.createObjectURL(blob);
    link.download = name ? name[1] : `rsslab-run-${state.run.run}.pcap`;
    document.body.appendChild(link);
    link.click();
    link.remove();
    window.setTimeout(() => URL.revokeObjectURL(link.href), 10_000);
    status.textContent = `exported ${link.download} (${blob.size.toLocaleString()} bytes)`;
  }
}
