// The lab page's shared state: one object each for the run being shown, its events and the
// streaming statistics, created once by workbench.js and handed to every part of the page.

// "cancelled": stopped by its user (deleting a queued or running run cancels it first).
export const FINISHED = new Set(["succeeded", "failed", "cancelled"]);

/** Streaming statistics (window.rssLab.stats): what arrived how, and how late. */
export function newStats() {
  return { received: 0, messages: 0, lagsMs: [], pendingLags: [], firstAt: null, lastAt: null,
    fetched: 0, duplicates: 0, gaps: 0, renderedAt: null, receivedBeforeFinal: null, finalAt: null };
}

/** Seqs of the events worth jumping to, in order, per kind of trouble: ``asymmetric`` (a
 * misdirected or lost flow's verdict), ``handed-off`` (each core-to-core handoff packet),
 * ``refused`` (each failed port allocation) and ``any`` (all of them). */
export function newProblems() {
  return { any: [], asymmetric: [], "handed-off": [], refused: [] };
}

export function newVerdicts() {
  return { symmetric: 0, handed_off: 0, asymmetric: 0, refused: 0, flows: 0 };
}

/** The page's state: the run shown (its URLs), its status and report, the player. */
export function newState() {
  return {
    run: null, status: null, mode: null, report: null, scenarioYaml: "",
    cursor: -1, playing: false, speed: 1, live: true, timer: null,
    flows: new Map(), kinds: new Set(), coreCount: 0, verdicts: newVerdicts(),
    problems: newProblems(),
    stream: null, frame: false, lastShown: -1, source: "builder", startedHere: false,
  };
}
