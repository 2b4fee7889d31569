// Per-core state at any step of a run: open sessions, ports taken and handoffs received,
// derived from the events up to the cursor.
//
// Each event's effect is worked out once, when it arrives (a "delta": which core, ±1
// session, ±1 port, +1 handoff). Moving the cursor applies deltas forward or undoes them
// backward, one per step; a jump goes to the nearest checkpoint (the totals after every
// CHECKPOINT events) and applies at most CHECKPOINT − 1 deltas. So play, step and back cost
// O(1) per step and any jump O(CHECKPOINT), for runs of any length.
//
// A session opens with the first of port-allocated, the rewritten request or (a transparent
// session that rewrote nothing) delivered-to-server, and closes with session-closed; ports
// are taken by port-allocated and given back by port-freed.

export const CHECKPOINT = 256;
const OPENS = new Set(["port-allocated", "delivered-to-server"]);

export class CoreTracker {
  constructor() { this.reset(0); }

  reset(cores) {
    this.cores = cores;
    this.core = [];            // per event: the core its delta applies to (-1: none)
    this.dSessions = [];
    this.dPorts = [];
    this.dHandoffs = [];
    this.open = new Map();     // flow -> core of its open session (while events arrive)
    this.closed = new Set();   // flows whose session closed (never reopened)
    this.tail = this.zero();   // totals after the last appended event
    this.checkpoints = [];     // checkpoints[k]: totals after event k * CHECKPOINT - 1
    this.pos = -1;             // the cursor `totals` describes
    this.totals = this.zero();
  }

  zero() {
    return { sessions: new Array(this.cores).fill(0), ports: new Array(this.cores).fill(0),
      handoffs: new Array(this.cores).fill(0) };
  }

  copy(t) { return { sessions: t.sessions.slice(), ports: t.ports.slice(), handoffs: t.handoffs.slice() }; }

  /** Work out the deltas of newly arrived events (in seq order). */
  append(events) {
    for (const ev of events) {
      let core = -1, ds = 0, dp = 0, dh = 0;
      const flow = ev.flow;
      const opens = OPENS.has(ev.kind) || (ev.kind === "rewritten" && ev.direction === "request");
      if (opens && typeof ev.core === "number" && !this.open.has(flow) && !this.closed.has(flow)) {
        this.open.set(flow, ev.core);
        core = ev.core; ds = 1;
      } else if (ev.kind === "session-closed") {
        const owner = this.open.has(flow) ? this.open.get(flow) : ev.core;
        if (this.open.has(flow)) { this.open.delete(flow); ds = -1; }
        this.closed.add(flow);
        core = owner;
      }
      if (ev.kind === "port-allocated") { core = ev.core; dp = 1; }
      if (ev.kind === "port-freed") { core = ev.core; dp = -1; }
      if (ev.kind === "forwarded" || ev.kind === "forwarded-core-to-core") { core = ev.to_core; dh = 1; }
      if (!(core >= 0 && core < this.cores)) { core = -1; }
      this.core.push(core);
      this.dSessions.push(ds);
      this.dPorts.push(dp);
      this.dHandoffs.push(dh);
      if (core >= 0) { this.apply(this.tail, this.core.length - 1, 1); }
      if (this.core.length % CHECKPOINT === 0) { this.checkpoints.push(this.copy(this.tail)); }
    }
  }

  apply(t, i, sign) {
    const c = this.core[i];
    if (c < 0) { return; }
    t.sessions[c] += sign * this.dSessions[i];
    t.ports[c] += sign * this.dPorts[i];
    t.handoffs[c] += sign * this.dHandoffs[i];
  }

  /** Totals after event ``cursor`` (-1: before the first). */
  at(cursor) {
    cursor = Math.min(cursor, this.core.length - 1);
    if (Math.abs(cursor - this.pos) >= CHECKPOINT) {
      const k = Math.floor((cursor + 1) / CHECKPOINT);     // events 0 … k*CHECKPOINT-1 done
      this.totals = k > 0 ? this.copy(this.checkpoints[k - 1]) : this.zero();
      this.pos = k * CHECKPOINT - 1;
    }
    while (this.pos < cursor) { this.pos += 1; this.apply(this.totals, this.pos, 1); }
    while (this.pos > cursor) { this.apply(this.totals, this.pos, -1); this.pos -= 1; }
    return this.totals;
  }
}
