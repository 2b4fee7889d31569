// "Open this variant in the lab": /lab/?exercise=<slug> (an instructor may add &seed=N)
// puts the variant's scenario file in the lab's YAML tab, ready to run. The scenario is
// the one the student view carries (no answer in it). Loaded by templates/lab/workbench.html
// beside the page's own scripts; it only fills the YAML text and opens that tab.
const params = new URLSearchParams(window.location.search);
const slug = params.get("exercise");
const script = document.getElementById("exercise-hook");

async function load() {
  const url = script.dataset.template.replace("__slug__", encodeURIComponent(slug))
    + (params.get("seed") ? `?seed=${encodeURIComponent(params.get("seed"))}` : "");
  const response = await fetch(url, { headers: { Accept: "application/json" } });
  const data = await response.json();
  const yaml = document.getElementById("yaml-text");
  const note = document.getElementById("scenario-title");
  if (!response.ok) {
    if (note) { note.textContent = `· exercise: ${(data.errors || [{}])[0].message || response.status}`; }
    return;
  }
  yaml.value = data.yaml;
  yaml.dataset.fromForm = "false";   // the lab keeps typed (or loaded) text
  yaml.dataset.exercise = slug;
  document.getElementById("tab-yaml").click();
  if (note) { note.textContent = `· exercise: ${data.title}`; }
}

function whenReady() {
  const bench = document.getElementById("workbench");
  if (bench && bench.dataset.ready === "true") { load(); return; }
  setTimeout(whenReady, 50);
}
if (slug && script) { whenReady(); }
