// A synthetic trace run for tests/web/test_lab_truth.py, evaluated in the lab page: the
// function's argument is the number of events; it hands them to window.rssLab.ingest.
(total) => {
  // A synthetic trace of `total` events: 14 per flow, as a nat run's; every 50th flow is
  // misdirected, every 30th handed off, every 70th refused.
  const events = [];
  let seq = 0, t = 0;
  const push = (e) => { events.push({ seq: seq++, t_us: (t += 0.3).toFixed(1) * 1, ...e }); };
  for (let f = 0; seq < total; f++) {
    const core = f % 8, other = (f + 3) % 8;
    const cl = `198.51.${(f >> 8) & 255}.${f & 255}:${1024 + (f % 60000)}`;
    const q = `tcp ${cl} -> 192.0.2.10:80`;
    push({ kind: "packet-arrived", flow: f, packet: 2 * f, direction: "request", tuple: q, bytes: 100 });
    push({ kind: "hashed", flow: f, packet: 2 * f, hash: (f * 2654435761) >>> 0, bucket: f % 128, core });
    push({ kind: "steered", flow: f, core, reason: "rss" });
    if (f % 70 === 5) {
      push({ kind: "allocation-failed", flow: f, core, reason: "occupancy" });
      push({ kind: "verdict", flow: f, verdict: "refused", request_core: core, response_core: null, reason: "no port" });
      continue;
    }
    push({ kind: "port-allocated", flow: f, core, port: 40000 + f % 20000, local_ip: "10.100.0.1", table: 0, tries: 1, strategy: "solve", bucket: f % 128 });
    push({ kind: "rewritten", flow: f, core, direction: "request", before: q, after: `tcp 10.100.0.1:${40000 + f % 20000} -> 10.0.0.1:8080`, policy: "nat" });
    push({ kind: "delivered-to-server", flow: f, core, tuple: "tcp 10.100.0.1 -> 10.0.0.1:8080" });
    push({ kind: "response-sent", flow: f, tuple: "tcp 10.0.0.1:8080 -> 10.100.0.1", bytes: 1000 });
    push({ kind: "packet-arrived", flow: f, packet: 2 * f + 1, direction: "response", tuple: "tcp 10.0.0.1:8080 -> 10.100.0.1", bytes: 1000 });
    const landed = f % 50 === 7 ? other : core;
    push({ kind: "hashed", flow: f, packet: 2 * f + 1, hash: (f * 40503) >>> 0, bucket: (f + 1) % 128, core: landed });
    if (f % 30 === 11) { push({ kind: "forwarded", flow: f, from_core: other, to_core: core, via: "message", copies: 1 }); }
    push({ kind: "response-arrived", flow: f, core: landed, tuple: q });
    push({ kind: "session-closed", flow: f, core, reason: "fin" });
    push({ kind: "port-freed", flow: f, core, port: 40000 + f % 20000, local_ip: "10.100.0.1", table: 0 });
    const verdict = landed !== core ? "asymmetric" : f % 30 === 11 ? "handed-off" : "symmetric";
    push({ kind: "verdict", flow: f, verdict, request_core: core, response_core: landed, reason: verdict });
  }
  events.length = total;
  const started = performance.now();
  window.rssLab.ingest(events);
  return { ingestMs: performance.now() - started, flows: events[total - 1].flow };
}
