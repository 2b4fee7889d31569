// The gradebook's histogram of best scores (Plotly.js, served by the lab). No options that
// make Plotly write style="…" attributes, which the Content-Security-Policy refuses
// (see static/lab/results.js).
const data = JSON.parse(document.getElementById("gradebook-data").textContent);
const target = document.getElementById("histogram");
// Ten bins over 0..max, the last one closed so a full score has a bar of its own.
const size = Math.max(data.max_score / 10, 0.5);
const layout = { margin: { t: 10, r: 10, b: 40, l: 45 }, height: 240, font: { size: 12 },
  xaxis: { title: { text: "best score" }, range: [0, data.max_score + size] },
  yaxis: { title: { text: "students" }, rangemode: "tozero" }, bargap: 0.05 };
window.Plotly.newPlot(target, [{ type: "histogram", x: data.scores, marker: { color: "#0072B2" },
  xbins: { start: 0, end: data.max_score + size, size },
  hovertemplate: "%{x}: %{y} students<extra></extra>" }], layout,
{ displaylogo: false, responsive: true, displayModeBar: false }).then(() => {
  target.dataset.ready = "true";
});
