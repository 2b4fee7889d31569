"""HTML reports: self-contained (plotly.js inline, no external references), a table
below every chart, and every scenario text escaped."""

from __future__ import annotations

import re

from engine.examples import load_example
from engine.runs.compare import compare_scenario, parse_vary
from engine.runs.report import CORE_COLOURS, render_compare_html, render_report_html
from engine.runs.run import verify_scenario
from engine.scenarios.scenario import load_scenario

EXTERNAL = re.compile(r"<(?:script|link|img|iframe)\b[^>]*\b(?:src|href)\s*=\s*[\"']?"
                      r"(?:https?:)?//", re.IGNORECASE)


def _charts_and_tables(page: str) -> tuple[int, int]:
    return page.count('class="chart"'), page.count("<table>")


def test_report_is_offline_with_a_table_per_chart():
    report = verify_scenario(load_example("transparent-microsoft"), rows=True)
    page = render_report_html(report)
    assert page.startswith("<!DOCTYPE html>")
    assert not EXTERNAL.search(page)
    # plotly.js itself mentions its CDN (for geo maps, unused here); our markup never does
    from plotly.offline import get_plotlyjs
    ours = page.replace(get_plotlyjs(), "")
    assert "cdn.plot.ly" not in ours and "@import" not in ours and "http" not in ours
    assert "Plotly.newPlot" in page and len(page) > 1_000_000  # plotly.js inlined
    charts, tables = _charts_and_tables(page)
    assert charts == 4
    assert tables >= charts + 1  # a table per chart, the checks, the flows
    for heading in ("Per-core load", "Request core × response core",
                    "Requests per indirection-table bucket", "Port-table occupancy"):
        assert heading in page
    for colour in CORE_COLOURS:
        assert colour in page
    assert "✓ pass" in page and "↪ handed-off" in page


def test_report_escapes_scenario_text():
    scenario = load_scenario("""
schema_version: 1
name: x
description: "<script>alert(1)</script> & </script><b>"
system: {cores: 2}
services: [{name: web, vip: 192.0.2.1, vport: 80, policy: nat, servers: ["10.0.0.1:80"]}]
traffic: {generated: {count: 20}}
checks: {symmetric_rate: ">= 100%"}
""")
    page = render_report_html(verify_scenario(scenario))
    assert "<script>alert(1)" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; &lt;/script&gt;&lt;b&gt;" in page
    assert page.count("</script>") == 2  # plotly.js and the chart calls, nothing else


def test_compare_page_is_offline_with_tables():
    result = compare_scenario(load_example("transparent-microsoft"),
                              parse_vary(["key=microsoft,symmetric"]))
    page = render_compare_html(result)
    assert not EXTERNAL.search(page)
    charts, tables = _charts_and_tables(page)
    assert charts == 2 and tables == charts
    assert "per-function" in page and "key=symmetric" in page


def test_report_shows_the_distributor_and_the_correct_core_check():
    for mode in ("trace", "batch"):
        page = render_report_html(verify_scenario(load_example("correct-core-check"),
                                                  mode=mode))
        assert ("correct-core check: 8 misdirected requests forwarded to their owner "
                "(8 copies)") in page, mode
    page = render_report_html(verify_scenario(load_example("rss-unaware-nic")))
    assert "Flow distributor: 3058 packets moved off the core that received them" in page
    assert "Flow distributor" not in render_report_html(
        verify_scenario(load_example("nat-microsoft")))


def test_report_counts_flows_not_served_by_reason():
    from pathlib import Path
    capture = (Path(__file__).resolve().parents[1] / "data" / "pcaps"
               / "sv__defrag__bug-6887-defrag-ipv6-tcp__frag-ip-tcp.pcap")
    html = render_report_html(verify_scenario(load_example("pcap-replay"), pcap=capture))
    assert ("⊘ not served: IPv6 flow, nat service has no IPv6 address (the cores&#x27; nat "
            "addresses are IPv4): 1 refused") in html
