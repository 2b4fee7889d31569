// Every URL the lab page's scripts use, from the one place the page's template renders them
// (<div id="lab-urls" data-…>, reversed by name on the server). A run's URLs are templates
// carrying a placeholder id (data-run-id); runUrls(id) puts the run's own id in.

const el = document.getElementById("lab-urls");
if (!el) { throw new Error("the page has no #lab-urls element: it cannot know its URLs"); }
const data = el.dataset;

function required(name) {
  const value = data[name];
  if (!value) { throw new Error(`#lab-urls has no data-${name.replace(/[A-Z]/g, (c) => "-" + c.toLowerCase())}`); }
  return value;
}

/** The page's own address and the endpoints that take no run id. */
export const urls = Object.freeze({
  page: required("page"),
  runs: required("runs"),
  compare: required("compare"),
  explain: required("explain"),
  builderYaml: required("builderYaml"),
});

const placeholder = required("runId");
const templates = { status_url: required("run"), events_url: required("runEvents"),
  pcap_url: required("runPcap"), report_url: required("runReport"), ws: required("runWs") };

/** The URLs of run ``id``: {run, ws, status_url, events_url, pcap_url, report_url}. */
export function runUrls(id) {
  const run = { run: Number(id) };
  for (const [name, template] of Object.entries(templates)) {
    run[name] = template.split(placeholder).join(String(Number(id)));
  }
  return run;
}
