"""Self-contained HTML reports with Plotly charts that work offline.

``render_report_html(report)`` turns a verification ``engine.runs.run.Report`` into one
HTML page: the verdict, the checks, and four charts — per-core load, the
request-core × response-core matrix, the request bucket histogram and port-table
occupancy — each followed by a table with the same numbers (a chart is never the
only way to read a figure). ``render_compare_html(comparison)`` does the same for
``engine.runs.compare.Comparison``: the trade-off between flow affinity (symmetric rate)
and balance (fairness), and the handoff copies each design pays.

plotly.js is inlined from the installed ``plotly`` package: the page makes no request
to any other host (no CDN, no web fonts). Every text from a scenario is HTML-escaped,
and the chart data is JSON with ``<``, ``>`` and ``&`` escaped, so nothing a scenario
says can close the script element. Cores have Okabe–Ito colours (colour-blind safe)
and always their number as text; from the ninth core on, colours repeat with a
hatch pattern.
"""

from __future__ import annotations

import html
import json
from functools import lru_cache
from pathlib import Path
from typing import Any

#: Okabe–Ito palette, one colour per core (repeated, with patterns, beyond eight cores).
CORE_COLOURS = ("#E69F00", "#56B4E9", "#009E73", "#F0E442", "#0072B2", "#D55E00", "#CC79A7",
                "#000000")
_PATTERNS = ("", "/", "\\", "x", "-", "|", "+", ".")
#: Rows of the per-flow table the page shows at most (the JSON report has them all).
MAX_HTML_ROWS = 2000

_STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:1.5rem;
color:#111;max-width:1100px}
h1{font-size:1.4rem}h2{font-size:1.15rem;margin-top:2rem}
table{border-collapse:collapse;margin:.5rem 0 1rem;font-size:.9rem}
th,td{border:1px solid #bbb;padding:.2rem .5rem;text-align:right}
th:first-child,td:first-child{text-align:left}
caption{text-align:left;font-weight:600;padding:.3rem 0}
.pass{color:#005a32}.fail{color:#a50f15}.chart{width:100%;height:380px}
.swatch{display:inline-block;width:.8em;height:.8em;margin-right:.3em;border:1px solid #333}
@media (prefers-reduced-motion: reduce){*{transition:none!important;animation:none!important}}
"""


@lru_cache(maxsize=1)
def _plotly_js() -> str:
    from plotly.offline import get_plotlyjs
    return get_plotlyjs()


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _json(data: Any) -> str:
    """JSON safe inside a <script> element."""
    return (json.dumps(data, separators=(",", ":")).replace("<", "\\u003c")
            .replace(">", "\\u003e").replace("&", "\\u0026"))


def core_colour(core: int) -> str:
    return CORE_COLOURS[core % len(CORE_COLOURS)]


def _core_marker(cores: list[int]) -> dict:
    return {"color": [core_colour(c) for c in cores],
            "pattern": {"shape": [_PATTERNS[(c // len(CORE_COLOURS)) % len(_PATTERNS)]
                                  for c in cores]},
            "line": {"color": "#333", "width": 1}}


def _table(caption: str, header: list[str], rows: list[list[Any]]) -> str:
    head = "".join(f"<th scope=\"col\">{_e(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{_e(v)}</td>" for v in row) + "</tr>"
                   for row in rows)
    return (f"<table><caption>{_e(caption)}</caption><thead><tr>{head}</tr></thead>"
            f"<tbody>{body}</tbody></table>")


class _Page:
    """Collects sections and charts; ``html()`` renders the whole page."""

    def __init__(self, title: str):
        self.title = title
        self.parts: list[str] = []
        self.charts: list[tuple[str, list, dict]] = []

    def add(self, markup: str) -> None:
        self.parts.append(markup)

    def chart(self, heading: str, data: list, layout: dict, table: str) -> None:
        div = f"chart{len(self.charts)}"
        self.charts.append((div, data, {"margin": {"t": 30, "r": 20, "b": 60, "l": 60},
                                        **layout}))
        self.add(f"<section><h2>{_e(heading)}</h2>"
                 f"<div id=\"{div}\" class=\"chart\" role=\"img\" "
                 f"aria-label=\"{_e(heading)} (the table below has the same numbers)\">"
                 f"</div>{table}</section>")

    def html(self) -> str:
        calls = "".join(
            f"Plotly.newPlot({_json(div)},{_json(data)},{_json(layout)},"
            f"{{displaylogo:false,responsive:true,showLink:false,showSendToCloud:false}});"
            for div, data, layout in self.charts)
        return ("<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">"
                "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
                f"<title>{_e(self.title)}</title><style>{_STYLE}</style>"
                f"<script>{_plotly_js()}</script></head><body>"
                + "".join(self.parts)
                + f"<script>{calls}</script></body></html>")


# ---------------------------------------------------------------------------- verification

def _steering_paragraph(summary) -> str:
    """The flow distributor's moves and the correct-core check's forwards (seed
    L650-L672), when the run had any."""
    if not (summary.distributor_forwards or summary.check_forwards
            or summary.misdirected_processed):
        return ""
    return (f"<p>Flow distributor: {summary.distributor_forwards} packets moved off the "
            f"core that received them ({summary.distributor_copies} copies) · correct-core "
            f"check: {summary.check_forwards} misdirected requests forwarded to their owner "
            f"({summary.check_copies} copies), {summary.misdirected_processed} processed "
            f"where they landed (a second session)</p>")


def render_report_html(report) -> str:
    """The page for an ``engine.runs.run.Report`` (see the module docstring)."""
    summary = report.summary
    cores = list(range(report.cores))
    labels = [f"core {c}" for c in cores]
    page = _Page(f"RSS Lab report: {report.name}")
    verdict = "PASS" if report.passed else "FAIL"
    page.add(f"<h1>RSS Lab report: {_e(report.name)}</h1>"
             f"<p>{_e(report.description)}</p>"
             f"<p>Source {_e(report.source)} · {_e(report.mode)} path · "
             f"{len(cores)} cores · key {_e(summary.key)}</p>"
             f"<p class=\"{verdict.lower()}\"><strong>{verdict}</strong>: "
             f"{summary.flows} flows · ✓ {summary.symmetric} symmetric · "
             f"↪ {summary.handed_off} handed off ({summary.handoff_copies} copies) · "
             f"⊘ {summary.refused} refused · ✗ {summary.asymmetric} asymmetric · "
             f"symmetric rate {summary.symmetric_rate:.4f} · "
             f"fairness {summary.fairness:.4f} · {summary.distinct_hashes} distinct "
             f"hashes</p><p>{_e(summary.port_map)}</p>"
             + "".join(f"<p>⊘ {_e(reason)}: {count} refused</p>"
                       for reason, count in summary.not_served.items())
             + _steering_paragraph(summary)
             + (f"<p>{_e(summary.ip_choice_line())}</p>" if summary.ip_choice else ""))
    page.add("<h2>Checks</h2>" + _table(
        "Checks", ["check", "metric", "op", "expected", "actual", "result"],
        [[c.name, c.metric, c.op, f"{c.expected:g}",
          "missing" if c.actual is None else f"{c.actual:g}",
          "✓ pass" if c.passed else "✗ FAIL"] for c in report.checks]
        or [["(no checks: the run passes when it has flows and none is refused or "
             "asymmetric)", "", "", "", "", ""]]))
    per_core = report.per_core()
    page.chart("Per-core load (packets handled)",
               [{"type": "bar", "x": labels, "y": summary.core_load, "text": labels,
                 "marker": _core_marker(cores), "name": "load"}],
               {"xaxis": {"title": {"text": "core"}},
                "yaxis": {"title": {"text": "packets"}}},
               _table("Per-core load", ["core", "load", "requests", "responses",
                                        "handoffs received"],
                      [[r["core"], r["load"], r["requests"], r["responses"], r["handoffs"]]
                       for r in per_core]))
    page.chart("Request core × response core (flows)",
               [{"type": "heatmap", "z": report.matrix, "x": labels, "y": labels,
                 "colorscale": "Cividis", "texttemplate": "%{z}",
                 "hovertemplate": "request %{y}, response %{x}: %{z} flows<extra></extra>"}],
               {"xaxis": {"title": {"text": "response core"}},
                "yaxis": {"title": {"text": "request core"}, "autorange": "reversed"}},
               _table("Flows by request core (rows) and response core (columns); "
                      "the diagonal returned to their core",
                      ["request core", *labels, "no response"],
                      [[f"core {i}", *report.matrix[i], report.no_response[i]]
                       for i in cores]))
    buckets = list(range(len(report.buckets)))
    page.chart("Requests per indirection-table bucket",
               [{"type": "bar", "x": buckets, "y": report.buckets,
                 "marker": _core_marker(report.bucket_cores),
                 "customdata": report.bucket_cores,
                 "hovertemplate": "bucket %{x} → core %{customdata}: %{y}<extra></extra>"}],
               {"xaxis": {"title": {"text": "bucket (colour: its core)"}},
                "yaxis": {"title": {"text": "requests"}}},
               _table("Requests per bucket", ["bucket", "core", "requests"],
                      [[b, report.bucket_cores[b], report.buckets[b]] for b in buckets]))
    page.chart("Port-table occupancy",
               [{"type": "bar", "x": labels, "y": [r["occupancy_peak"] for r in per_core],
                 "marker": _core_marker(cores), "text": labels}],
               {"yaxis": {"title": {"text": "fraction of port-table entries taken at the "
                                            "peak (the most held at once)"},
                          "tickformat": ".1%"}},
               _table("Port tables per core", ["core", "occupancy at peak",
                                               "occupancy at end", "ports allocated",
                                               "fitting ports per table"],
                      [[r["core"], f"{r['occupancy_peak']:.4%}", f"{r['occupancy']:.4%}",
                        r["ports_allocated"], r["fitting_ports"]] for r in per_core]))
    if report.rows is not None:
        rows = report.rows[:MAX_HTML_ROWS]
        note = (f" (first {MAX_HTML_ROWS} of {len(report.rows)}; the JSON report has all)"
                if len(report.rows) > MAX_HTML_ROWS else "")
        marks = {"symmetric": "✓", "handed-off": "↪", "asymmetric": "✗",
                 "refused": "⊘"}
        page.add("<h2>Flows</h2>" + _table(
            "Per-flow verdicts" + note,
            ["flow", "request", "rewritten", "request core", "response core", "verdict",
             "reason"],
            [[r.flow, r.request, r.rewritten or "-", r.request_core,
              "-" if r.response_core is None else r.response_core,
              f"{marks.get(r.verdict, '')} {r.verdict}", r.reason] for r in rows]))
    return page.html()


def write_report_html(report, path: str | Path) -> None:
    Path(path).write_text(render_report_html(report), encoding="utf-8")


# ---------------------------------------------------------------------------- comparison

def render_compare_html(comparison) -> str:
    """The page for an ``engine.runs.compare.Comparison``: the affinity/balance trade-off
    and the handoff copies per design, each chart with its table."""
    cells = [c for c in comparison.cells if not c.error]
    labels = [c.label for c in cells]
    page = _Page(f"RSS Lab comparison: {comparison.name}")
    fixed = ", ".join(f"{k}={v}" for k, v in comparison.fixed.items())
    page.add(f"<h1>RSS Lab comparison: {_e(comparison.name)}</h1>"
             f"<p>{comparison.flows} flows, {comparison.cores} cores, the same traffic in "
             f"every cell. Fixed settings: {_e(fixed or 'none')}.</p>")
    # Grouped bars, one row per configuration: designs that tie (several at 100 %
    # symmetric and even load) stay readable, where a scatter would stack their points.
    page.chart("Trade-off: flow affinity against balance",
               [{"type": "bar", "orientation": "h", "name": "symmetric rate (responses on "
                 "the request's core)", "y": labels, "x": [c.symmetric_rate for c in cells],
                 "marker": {"color": "#009E73"}},
                {"type": "bar", "orientation": "h", "name": "Jain fairness of per-core load "
                 "(1 = even)", "y": labels, "x": [c.fairness for c in cells],
                 "marker": {"color": "#0072B2", "pattern": {"shape": "/"}}}],
               {"barmode": "group", "height": 120 + 40 * len(cells),
                "xaxis": {"range": [0, 1], "tickformat": ".0%"},
                "yaxis": {"automargin": True, "autorange": "reversed"},
                "legend": {"orientation": "h", "y": -0.15}},
               _table("Every configuration", ["configuration", "symmetric rate",
                                              "handed off", "handoff copies", "asymmetric",
                                              "fairness", "refused",
                                              "ports per core (min-max)"],
                      [_compare_row(c) for c in comparison.cells]))
    page.chart("Handoff copies and refused flows",
               [{"type": "bar", "name": "handoff copies", "x": labels,
                 "y": [c.handoff_copies for c in cells], "marker": {"color": "#0072B2"}},
                {"type": "bar", "name": "refused", "x": labels,
                 "y": [c.refused for c in cells],
                 "marker": {"color": "#D55E00", "pattern": {"shape": "/"}}}],
               {"barmode": "group", "xaxis": {"automargin": True}},
               _table("Costs per configuration", ["configuration", "handoff copies",
                                                  "refused"],
                      [[c.label, c.handoff_copies, c.refused] for c in cells]))
    return page.html()


def _compare_row(cell) -> list:
    if cell.error:
        return [cell.label, f"not run: {cell.error}", "", "", "", "", "", ""]
    ports = ("-" if not cell.port_capacity
             else f"{min(cell.port_capacity):.0f}-{max(cell.port_capacity):.0f}")
    return [cell.label, f"{cell.symmetric_rate:.2%}", cell.handed_off, cell.handoff_copies,
            cell.asymmetric, f"{cell.fairness:.4f}", cell.refused, ports]


def write_compare_html(comparison, path: str | Path) -> None:
    Path(path).write_text(render_compare_html(comparison), encoding="utf-8")


__all__ = ["CORE_COLOURS", "MAX_HTML_ROWS", "core_colour", "render_compare_html",
           "render_report_html", "write_compare_html", "write_report_html"]
