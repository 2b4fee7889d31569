// RunStream: follows one run. Its websocket delivers status and event batches; the events
// endpoint fills what the socket could not (events sent before it connected, gaps, a finished
// run replayed). Events are handed on strictly in seq order, each exactly once.
//
// Callbacks: onEvents(events) — a run of consecutive new events; onStatus(msg); onConnection(text).
import { getJson } from "./api.js";
import { FINISHED } from "./state.js";

const PAGE = 5000;
const WATCH_MS = 5000;  // how often a live run's status is asked besides the socket

export class RunStream {
  constructor(run, { onEvents, onStatus, onConnection, stats }) {
    this.run = run;                 // {run, ws, status_url, events_url}
    this.onEvents = onEvents;
    this.onStatus = onStatus;
    this.onConnection = onConnection || (() => {});
    this.stats = stats;             // shared window.rssLab.stats
    this.nextSeq = 0;               // the seq the page waits for next
    this.pending = new Map();       // seq -> event, arrived early (over the socket)
    this.fetching = false;
    this.refetch = false;
    this.finished = false;
    this.closed = false;
    this.socket = null;
    this.watching = null;
  }

  /** Open the socket; once open, catch up on whatever was sent before. */
  connect() {
    if (this.closed) { return; }
    this.watch();
    const scheme = window.location.protocol === "https:" ? "wss://" : "ws://";
    const socket = new WebSocket(scheme + window.location.host + this.run.ws);
    this.socket = socket;
    socket.addEventListener("open", () => {
      this.onConnection("live");
      this.catchUp();
    });
    socket.addEventListener("message", (message) => this.handle(JSON.parse(message.data)));
    socket.addEventListener("close", (event) => {
      if (this.closed || this.finished) { return; }
      if (event.code === 4403) { this.onConnection("not allowed to watch this run"); return; }
      this.onConnection("disconnected; reconnecting…");
      window.setTimeout(() => this.connect(), 1000);
    });
  }

  /** A safety net under the socket: every few seconds while the run is live, ask its
   *  status, and finish as the final message would have if that message never came
   *  (a group message lost while Redis was slow leaves the socket open and silent). */
  watch() {
    if (this.watching) { return; }
    this.watching = window.setInterval(async () => {
      if (this.closed || this.finished) {
        window.clearInterval(this.watching);
        return;
      }
      try {
        const data = await getJson(this.run.status_url);
        if (!this.finished && !this.closed && FINISHED.has(data.status)) {
          this.handle({ type: "status", status: data.status, progress: data.progress,
                        error: data.error });
        }
      } catch (err) {
        // the socket's own reconnect reports trouble; the next tick tries again
      }
    }, WATCH_MS);
  }

  /** A finished run: no socket, every event from the events endpoint. */
  replay() {
    this.finished = true;
    this.onConnection("replay");
    return this.catchUp();
  }

  close() {
    this.closed = true;
    if (this.watching) { window.clearInterval(this.watching); }
    if (this.socket) { this.socket.close(); }
  }

  handle(msg) {
    if (msg.type === "events") {
      const now = Date.now();
      const stats = this.stats;
      stats.received += msg.events.length;
      stats.messages += 1;
      if (stats.firstAt === null) { stats.firstAt = now; }
      stats.lastAt = now;
      if (typeof msg.sent_at === "number") { stats.pendingLags.push(msg.sent_at); }
      this.accept(msg.events);
      if (typeof msg.progress === "number") { this.onStatus({ type: "progress", progress: msg.progress }); }
    } else if (msg.type === "status") {
      if (FINISHED.has(msg.status)) {
        this.finished = true;
        this.stats.receivedBeforeFinal = this.stats.received;
        this.stats.finalAt = Date.now();
        // The final status follows the last events message, but a gap may remain: close it
        // (not for a cancelled run: it is cancelled because it is being deleted).
        const settled = msg.status === "cancelled" ? Promise.resolve() : this.catchUp();
        settled.then(() => this.onStatus(msg));
        if (this.socket) { this.socket.close(); }
        return;
      }
      this.onStatus(msg);
    }
  }

  /** Take events (any order, duplicates allowed); pass on the consecutive ones. */
  accept(events) {
    let gap = false;
    const ready = [];
    for (const ev of events) {
      const seq = ev.seq;
      if (seq < this.nextSeq || this.pending.has(seq)) { this.stats.duplicates += 1; continue; }
      if (seq === this.nextSeq) {
        ready.push(ev);
        this.nextSeq += 1;
        while (this.pending.has(this.nextSeq)) {
          ready.push(this.pending.get(this.nextSeq));
          this.pending.delete(this.nextSeq);
          this.nextSeq += 1;
        }
      } else {
        this.pending.set(seq, ev);
        gap = true;
      }
    }
    if (ready.length) { this.onEvents(ready); }
    if (gap && this.pending.size) { this.stats.gaps += 1; this.catchUp(); }
  }

  /** Fetch every stored event after the last one we hold, page by page. */
  async catchUp() {
    if (this.fetching) { this.refetch = true; return this.fetchPromise; }
    this.fetching = true;
    this.fetchPromise = (async () => {
      try {
        do {
          this.refetch = false;
          for (;;) {
            const params = { limit: PAGE };
            if (this.nextSeq > 0) { params.after = this.nextSeq - 1; }
            const data = await getJson(this.run.events_url, params);
            const events = data.events || [];
            this.stats.fetched += events.length;
            this.accept(events);
            if (!events.length || data.next_after === null || data.next_after === undefined) { break; }
            if (events.length < PAGE) { break; }
          }
        } while (this.refetch);
      } catch (err) {
        this.onConnection(`could not load events: ${err.message}`);
      } finally {
        this.fetching = false;
      }
    })();
    return this.fetchPromise;
  }
}
