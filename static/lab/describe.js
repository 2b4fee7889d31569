// What an event says, in words: where it happened and a one-line summary per kind.
// Shared by the event list, the live region and the diagram.

export const VERDICT_MARK = {
  symmetric: "✓", "handed-off": "↪", asymmetric: "✗", refused: "⊘",
};

export function hex32(n) {
  return n === null || n === undefined ? "—" : "0x" + (n >>> 0).toString(16).padStart(8, "0");
}

/** The core an event happened on (the receiving core for a handoff), or null. */
export function coreOf(ev) {
  if (typeof ev.core === "number") { return ev.core; }
  if (typeof ev.to_core === "number") { return ev.to_core; }
  if (ev.kind === "verdict") { return ev.response_core ?? ev.request_core; }
  return null;
}

export function whereOf(ev) {
  switch (ev.kind) {
    case "packet-arrived":
    case "hashed":
    case "fragment-steered":
      return "NIC";
    case "response-sent":
      return "server";
    case "forwarded":
    case "forwarded-core-to-core":
    case "action-sent":
    case "action-sent-to-core":
    case "bridged":
    case "reassembled-forwarded":
      return `core ${ev.from_core}→${ev.to_core}`;
    default: {
      const core = coreOf(ev);
      return core === null ? "—" : `core ${core}`;
    }
  }
}

function shortTuple(t) { return t ? String(t) : "?"; }

export function whatOf(ev) {
  switch (ev.kind) {
    case "packet-arrived":
      return `${ev.direction} arrived ${shortTuple(ev.tuple)} (${ev.bytes} B)`;
    case "hashed":
      return ev.hash === null ? `not hashed → core ${ev.core}`
        : `hashed ${hex32(ev.hash)} → bucket ${ev.bucket} → core ${ev.core}`;
    case "steered":
      return `steered to core ${ev.core} (${ev.reason})`;
    case "port-allocated":
      return `allocated port ${ev.port} on ${ev.local_ip} from table ${ev.table} (${ev.tries} ${ev.tries === 1 ? "try" : "tries"}, ${ev.strategy}) → bucket ${ev.bucket}`;
    case "allocation-failed":
      return `⊘ no fitting port: ${ev.reason}`;
    case "rewritten":
      return `rewrote ${ev.direction} ${shortTuple(ev.before)} → ${shortTuple(ev.after)} (${ev.policy})`;
    case "forwarded":
    case "forwarded-core-to-core": {
      const copies = `${ev.copies} ${ev.copies === 1 ? "copy" : "copies"}`;
      // the flow distributor steering a packet off its receiving core is not a handoff
      if (ev.by === "distributor") {
        return `⇢ distributor moved it from core ${ev.from_core} to core ${ev.to_core} by ${ev.via} (${copies})`;
      }
      return `↪ handed from core ${ev.from_core} to core ${ev.to_core} by ${ev.via} (${copies})`;
    }
    case "delivered-to-server":
      return `delivered to server ${shortTuple(ev.tuple)}`;
    case "response-sent":
      return `server answered ${shortTuple(ev.tuple)} (${ev.bytes} B)`;
    case "response-arrived":
      return `response reached client ${shortTuple(ev.tuple)}`;
    case "session-closed":
      return `session closed (${ev.reason})`;
    case "port-freed":
      return `freed port ${ev.port} on ${ev.local_ip} (table ${ev.table})`;
    case "verdict":
      return `${VERDICT_MARK[ev.verdict] || "?"} ${ev.verdict}: ${ev.reason}`;
    case "fragment-steered":
      return `fragment (offset ${ev.offset}) hashed ${hex32(ev.hash)} → bucket ${ev.bucket} → core ${ev.core} (${ev.reason})`;
    case "fragment-held":
      return `fragment held (offset ${ev.offset}, ${ev.length} B, ${ev.held} held)`;
    case "header-found":
      return `L4 header found ${shortTuple(ev.tuple)} → bucket ${ev.bucket} → core ${ev.dest_core}`;
    case "action-decided":
      return `${ev.action}: ${ev.rule}`;
    case "action-sent":
    case "action-sent-to-core":
      return `sent action ${ev.action} to core ${ev.to_core}`;
    case "bridged":
      return `bridged fragment (offset ${ev.offset}) core ${ev.from_core} → ${ev.to_core}`;
    case "reassembled":
      return `reassembled ${ev.fragments} fragments (${ev.bytes} B)`;
    case "reassembled-forwarded":
      return `reassembled packet sent core ${ev.from_core} → ${ev.to_core}`;
    case "fragment-dropped":
      return `⊘ fragment dropped: ${ev.reason || ""}`;
    default: {
      const extra = Object.entries(ev).filter(([k]) => !["kind", "seq", "t_us", "flow"].includes(k))
        .map(([k, v]) => `${k}=${v}`).join(" ");
      return `${ev.kind} ${extra}`;
    }
  }
}

/** The sentence the live region reads for one step. */
export function announceOf(ev) {
  const where = whereOf(ev);
  const flow = ev.flow >= 0 ? ` (flow ${ev.flow})` : "";
  return `event ${ev.seq}: ${where} ${whatOf(ev)}${flow}`;
}

/** "tcp 1.2.3.4:5 -> 6.7.8.9:10" → {proto, src, sport, dst, dport} (ports null if absent). */
export function parseTuple(text) {
  if (!text) { return null; }
  const m = String(text).match(/^(\S+)\s+(.+?)\s+->\s+(.+)$/);
  if (!m) { return null; }
  const end = (s) => {
    let mm = s.match(/^\[(.+)\]:(\d+)$/);
    if (mm) { return [mm[1], Number(mm[2])]; }
    mm = s.match(/^([^:]+):(\d+)$/);
    if (mm) { return [mm[1], Number(mm[2])]; }
    return [s, null];
  };
  const [src, sport] = end(m[2]);
  const [dst, dport] = end(m[3]);
  return { proto: m[1], src, sport, dst, dport };
}
