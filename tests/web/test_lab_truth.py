"""The lab page tells the truth and handles big runs (issue 15), in Chromium on the real
stack (daphne, a Celery worker, Redis), one browser assertion per item of the issue:

1. port-table occupancy: taken of the fitting ports and of all, a core that ran out marked;
2. compare on the nat preset: transparent cells get the traffic they need (servers at the VIP);
3. a past run or an example is loaded into the form and the YAML tab;
4. stale state: errors clear on a later success, the status line follows a comparison, the
   verdict bar never says "(so far)" twice nor "running…" after "succeeded";
5. long runs: a synthetic 200,000-event run fed to the page's own code (time to scroll the
   event list to its end and to jump to a flow are printed, not asserted);
6. the runs list: filters, both times, pagination;
7. the report (the CLI's HTML) and the pcap a click away from a finished run;
8. tooltips, the legend and the guided tour (dismissible, by keyboard, remembered);
9. axe-core on the login page, the lab before and after a run, and the runs list: no serious
   or critical violation.

Screenshots for a person to look at go to /tmp/rsslab-*.png.
"""

from __future__ import annotations

import datetime
import re
from pathlib import Path

import pytest
from django.contrib.auth.models import Group, User
from django.utils import timezone

from labsite.lab.models import STUDENT_GROUP
from labsite.runs.models import Run
from tests.web.helpers import axe

pytestmark = [pytest.mark.browser, pytest.mark.stack, pytest.mark.django_db(transaction=True)]
PASSWORD = "lab-truth-pw-1"
FINISHED = "#workbench[data-finished=true]"
SHOTS = Path("/tmp")

#: A nat service whose port range (40 ports, about 10 fitting each of 4 cores) is too small
#: for its 60 flows: every core runs out of fitting ports while "taken of all" stays low.
RUN_OUT = """\
schema_version: 1
name: ports-run-out
seed: 1
system:
  cores: 4
  nic: {key: microsoft, hash_bits: 7}
ports: {range: {low: 1024, high: 1063}}
services:
  - {name: web, vip: 192.0.2.10, vport: 80, policy: nat, servers: ["10.0.0.1:8080"]}
traffic:
  generated: {count: 60, services: [web], client_prefixes: [198.51.100.0/24]}
"""

# Records every text the verdict bar and the status line show (item 4): installed before
# any page script runs, so nothing is missed between two polls.
RECORD_TEXTS = """
window.__texts = [];
document.addEventListener("DOMContentLoaded", () => {
  for (const id of ["verdict-bar", "run-status"]) {
    const node = document.getElementById(id);
    if (!node) { continue; }
    new MutationObserver(() => window.__texts.push([id, node.textContent]))
      .observe(node, { childList: true, subtree: true, characterData: true });
  }
});
"""


@pytest.fixture
def student():
    user = User.objects.create_user("student", password=PASSWORD)
    user.groups.add(Group.objects.get_or_create(name=STUDENT_GROUP)[0])
    return user


def _login(page, next_url="/lab/"):
    page.goto(f"/accounts/login/?next={next_url}")
    page.fill("#id_username", "student")
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")
    if next_url.startswith("/lab/"):
        page.wait_for_selector("#workbench[data-ready=true]")


def _clean(page, daphne_url, *, refused: int = 0):
    """No console error but the test's own HTTP 400s, no request to another origin."""
    answered_400 = [m for m in page.console_errors if "status of 400 (Bad Request)" in m]
    assert len(answered_400) == refused, page.console_errors
    assert [m for m in page.console_errors if m not in answered_400] == []
    foreign = [url for url in page.requests
               if not url.startswith(daphne_url) and not url.startswith(("data:", "ws://127.0.0.1"))]
    assert foreign == []


def _run_yaml(page, text, button="#run-batch"):
    page.click("#tab-yaml")
    page.fill("#yaml-text", text)
    page.click(button)
    page.wait_for_selector(FINISHED, timeout=60_000)


# ---------------------------------------------------------------------------- 1 and 7
def test_ports_that_run_out_are_shown_of_the_fitting_ports_and_the_report_downloads(
        student, worker, daphne_url, page):
    _login(page)
    _run_yaml(page, RUN_OUT)
    assert "refused" in page.inner_text("#verdict-bar")
    box = page.locator("#chart-ports")
    box.locator(".table-toggle").click()
    rows = box.locator("tbody tr").all_inner_texts()
    assert len(rows) == 4
    for row in rows:                      # core, of fitting, of all, fitting/table, …, ran out
        cells = row.split("\t")
        assert float(cells[1]) >= 80 and float(cells[2]) <= 30, row
        assert cells[-1] == "⊘ ran out", row
    assert page.locator("#diagram g.core.ran-out").count() == 4
    assert "ran out" in page.text_content("#d-core-0 .ran-out-mark")
    box.locator(".table-toggle").click()
    page.locator("#charts").scroll_into_view_if_needed()
    page.screenshot(path=str(SHOTS / "rsslab-1-ports.png"), full_page=False)

    # 7: the CLI's HTML report and the pcap, a click away from the finished run.
    with page.expect_download() as report:
        page.click("#download-report")
    saved = report.value.path()
    assert report.value.suggested_filename.endswith(".html")
    text = Path(saved).read_text(encoding="utf-8")
    assert "RSS Lab report: ports-run-out" in text and "⊘ 24 refused" in text
    with page.expect_download() as pcap:
        page.click("#export-pcap")
    assert Path(pcap.value.path()).read_bytes()[:4] in (b"\xd4\xc3\xb2\xa1", b"\xa1\xb2\xc3\xd4")
    _clean(page, daphne_url)


# ---------------------------------------------------------------------------- 2 and 4
def test_compare_on_the_nat_preset_builds_the_traffic_transparent_needs(
        student, worker, daphne_url, page):
    page.context.add_init_script(RECORD_TEXTS)
    _login(page)
    # 4: a refused run first; its error box must go when the comparison succeeds.
    page.click("#tab-yaml")
    page.fill("#yaml-text", "schema_version: 1\nname: x\n")
    page.click("#run-trace")
    page.wait_for_selector("#form-errors:not([hidden])")
    page.click("#tab-builder")
    page.click("button.preset[data-preset=nat]")   # ticked: microsoft, symmetric × nat, transparent
    page.click("#compare-run")
    page.wait_for_selector("#compare-status:text('done')", timeout=60_000)
    assert page.is_hidden("#form-errors")
    assert re.fullmatch(r"comparison \d+ · succeeded", page.inner_text("#run-status"))
    cell = page.locator(".cmp-cell", has_text="key=symmetric policy=transparent")
    assert "✓ 100.0 %" in cell.inner_text() and "servers at the VIP" in cell.inner_text()
    assert "transparent rewrites nothing" in page.inner_text("#compare-notes")
    page.locator("#compare").scroll_into_view_if_needed()
    page.screenshot(path=str(SHOTS / "rsslab-2-compare.png"))
    statuses = [t for k, t in page.evaluate("window.__texts") if k == "run-status"]
    assert any(t.startswith("comparison") and "queued" in t for t in statuses)
    _clean(page, daphne_url, refused=1)


# ---------------------------------------------------------------------------- 3 and 4
def test_a_past_run_and_an_example_load_into_the_form_and_the_yaml(
        student, examples, worker, daphne_url, page):
    page.context.add_init_script(RECORD_TEXTS)
    _login(page)
    page.click("button.preset[data-preset=transparent]")
    page.click("#run-trace")
    page.wait_for_selector(FINISHED, timeout=60_000)
    texts = page.evaluate("window.__texts")
    bars = [t for k, t in texts if k == "verdict-bar"]
    assert not [t for t in bars if t.count("so far") > 1]
    done = next(i for i, (k, t) in enumerate(texts) if k == "run-status" and "succeeded" in t)
    assert not [t for k, t in texts[done:] if k == "verdict-bar"
                and ("running" in t or "so far" in t)]

    run = page.evaluate("window.rssLab.state().run")
    page.goto("/lab/")                           # the form back at its defaults (nat) …
    page.wait_for_selector("#workbench[data-ready=true]")
    assert page.is_checked("input[name=policy][value=nat]")
    page.goto(f"/lab/?run={run}")                # … and the past run puts its scenario on screen
    page.wait_for_selector(FINISHED, timeout=30_000)
    assert page.get_attribute("#tab-yaml", "aria-selected") == "true"
    assert "policy: transparent" in page.input_value("#yaml-text")
    assert page.is_checked("input[name=policy][value=transparent]")
    assert page.input_value("[name='service.servers']") == "161.142.100.80:1766"

    # An example: its file in the YAML tab, its system in the form and the diagram.
    page.click("#tab-example")
    page.select_option("#example-select", "adversarial-flood")
    assert "name: adversarial-flood" in page.input_value("#yaml-text")
    assert page.input_value("[name=cores]") == "8"
    assert "traffic.adversarial" in page.inner_text("#form-note")
    page.goto("/lab/")
    page.wait_for_selector("#workbench[data-ready=true]")
    page.click("#tab-example")
    page.select_option("#example-select", "adversarial-flood")
    assert page.get_attribute("#diagram svg", "data-cores") == "8"
    _clean(page, daphne_url)


# ---------------------------------------------------------------------------- 5
#: A function run in the page: makes a synthetic trace of N events and ingests it.
SYNTHETIC = (Path(__file__).with_name("synthetic_run.js")).read_text(encoding="utf-8")

FRAMES = "() => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)))"


def test_a_200000_event_run_stays_responsive(student, daphne_url, page):
    _login(page)
    total = 200_000
    made = page.evaluate(SYNTHETIC, total)
    page.evaluate(FRAMES)
    assert page.evaluate("window.rssLab.state().count") == total
    # Scroll the event list from its top to its end: the last row must be there.
    scroll = page.evaluate("""async () => {
      const list = document.querySelector("#event-list");
      list.scrollTop = 0; list.dispatchEvent(new Event("scroll"));
      await new Promise((r) => requestAnimationFrame(r));
      const t0 = performance.now();
      list.scrollTop = list.scrollHeight; list.dispatchEvent(new Event("scroll"));
      await new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)));
      return { ms: performance.now() - t0, rows: list.querySelectorAll(".ev-row").length,
               last: Boolean(document.getElementById("ev-199999")) };
    }""")
    assert scroll["last"] and scroll["rows"] < 100           # virtualised: a screenful of rows
    # Jump to a flow by number (to its verdict event).
    flow = made["flows"] // 2
    jump = page.evaluate("""async (flow) => {
      const t0 = performance.now();
      document.querySelector("#pl-flow").value = String(flow);
      document.querySelector("#pl-flow-go").click();
      await new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)));
      const ev = window.rssLab.events[window.rssLab.state().cursor];
      return { ms: performance.now() - t0, flow: ev.flow, kind: ev.kind,
               selected: Boolean(document.querySelector(`#ev-${ev.seq}.selected`)) };
    }""", flow)
    assert jump["flow"] == flow and jump["kind"] == "verdict" and jump["selected"]
    print(f"\n200,000 events: ingest {made['ingestMs']:.0f} ms, scroll to the end "
          f"{scroll['ms']:.0f} ms, jump to flow {flow} {jump['ms']:.0f} ms")
    # The next misdirected packet after the cursor, then the previous refused one.
    page.select_option("#pl-problem", "asymmetric")
    page.click("#pl-next-problem")
    ev = page.evaluate("window.rssLab.events[window.rssLab.state().cursor]")
    assert ev["kind"] == "verdict" and ev["verdict"] == "asymmetric" and ev["flow"] > flow
    page.select_option("#pl-problem", "refused")
    page.click("#pl-prev-problem")
    ev = page.evaluate("window.rssLab.events[window.rssLab.state().cursor]")
    assert ev["kind"] == "allocation-failed" and ev["flow"] < flow
    # The scrubber: the middle of the run's time is about its middle event.
    page.evaluate("""() => { const s = document.querySelector("#pl-scrub");
      s.value = String((Number(s.min) + Number(s.max)) / 2);
      s.dispatchEvent(new Event("input")); }""")
    assert abs(page.evaluate("window.rssLab.state().cursor") - total // 2) < total // 100
    # "whole run in 30 s": a second of play moves at least a 60th of the run.
    page.select_option("#pl-speed", "fit")
    page.click("#pl-first")
    page.click("#pl-play")
    page.wait_for_timeout(1000)
    page.click("#pl-play")
    played = page.evaluate("window.rssLab.state().cursor")
    print(f"'whole run in 30 s': {played:,} events in about 1 s of play")
    assert played >= total // 60
    page.screenshot(path=str(SHOTS / "rsslab-5-long-run.png"))
    _clean(page, daphne_url)


# ---------------------------------------------------------------------------- 6
@pytest.fixture
def many_runs(student):
    other = User.objects.create_user("other", password=PASSWORD)
    now = timezone.now()
    for i in range(30):
        mode = "batch" if i % 3 == 0 else "trace"
        passed = i % 2 == 0
        Run.objects.create(scenario_body="name: x", ran_by=student, mode=mode, status="succeeded",
                           title=f"lab-{i} · nat · key microsoft · {i + 1} flows",
                           summary={"flows": i + 1, "symmetric": i + 1, "passed": passed},
                           started_at=now)
    Run.objects.create(scenario_body="name: y", ran_by=other, title="not mine", mode="batch")
    Run.objects.filter(title__startswith="lab-29").update(
        created_at=now - datetime.timedelta(days=3))
    return now


def test_the_runs_list_filters_shows_both_times_and_pages(many_runs, daphne_url, page):
    _login(page, "/runs/")
    page.wait_for_selector("#runs-table")
    heads = page.locator("#runs-table thead th").all_inner_texts()
    assert "Queued" in heads and "Started" in heads
    assert "page 1 of 2 (30 runs)" in page.inner_text(".pager")
    page.select_option("select[name=mode]", "batch")
    page.select_option("select[name=verdict]", "failed")
    page.click("#run-filters button[type=submit]")
    page.wait_for_url(re.compile(r"mode=batch"))
    titles = page.locator("#runs-table tbody td:nth-child(2)").all_inner_texts()
    assert titles and all(" · nat · key microsoft · " in t for t in titles)
    wanted = [i for i in range(30) if i % 3 == 0 and i % 2 == 1]    # batch and failed
    assert len(titles) == len(wanted)
    assert "not mine" not in page.inner_text("#runs-table")
    page.fill("input[name=date]", (many_runs - datetime.timedelta(days=3)).date().isoformat())
    page.select_option("select[name=mode]", "")
    page.select_option("select[name=verdict]", "")
    page.click("#run-filters button[type=submit]")
    page.wait_for_url(re.compile(r"date="))
    assert page.locator("#runs-table tbody tr").count() == 1
    _clean(page, daphne_url)


# ---------------------------------------------------------------------------- 8
def test_a_first_visit_gets_a_tour_and_every_label_explains_itself(
        student, worker, browser, daphne_url):
    context = browser.new_context(base_url=daphne_url)     # a first visit: no tour seen yet
    page = context.new_page()
    errors = []
    page.on("console", lambda m: m.type == "error" and errors.append(m.text))
    page.goto("/accounts/login/?next=/lab/")
    page.fill("#id_username", "student")
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_selector("#workbench[data-ready=true]")
    assert page.is_visible("#tour")
    assert page.evaluate("document.activeElement.id") == "tour-h"
    # Every text on the diagram has a tooltip (its own <title>, or its group's).
    untitled = page.evaluate("""() => [...document.querySelectorAll("#diagram svg text")]
      .filter((t) => !t.querySelector("title") && !t.closest("g")?.querySelector(":scope > title"))
      .map((t) => t.textContent)""")
    assert untitled == []
    legend = page.inner_text("#diagram-legend")      # closed: its summary; open: every label
    page.click("#diagram-legend summary")
    legend = page.inner_text("#diagram-legend")
    for label in ("PE · N sessions", "Q0, R0", "no checks", "NIC · RSS"):
        assert label in legend
    # By keyboard: from the tour's heading, Tab reaches Next (Back is disabled at the
    # first step); Enter runs the nat preset, then the steps follow.
    page.focus("#tour-h")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "tour-next"
    page.keyboard.press("Enter")
    page.wait_for_selector("#tour[data-step='1']", timeout=60_000)
    assert "Toeplitz → 0x" in page.text_content("#d-nic-line-0")
    assert page.locator("#d-nic.tour-spot").count() == 1
    page.screenshot(path=str(SHOTS / "rsslab-8-tour-hash.png"))
    page.click("#tour-next")
    page.click("#tour-next")
    assert page.locator("g.core.tour-spot").count() == 1
    page.click("#tour-next")
    assert page.locator("#verdict-bar.tour-spot").count() == 1
    assert "no checks" in page.get_attribute("#verdict-bar .v-headline", "title")
    page.screenshot(path=str(SHOTS / "rsslab-8-tour-verdict.png"))
    page.focus("#tour-h")
    page.keyboard.press("Escape")
    assert page.is_hidden("#tour")
    page.reload()
    page.wait_for_selector("#workbench[data-ready=true]")
    assert page.is_hidden("#tour")                   # dismissed once, not offered again
    violations = [v for v in context.csp_violations]
    context.csp_checked = True
    context.close()
    assert errors == [] and violations == []


# ---------------------------------------------------------------------------- 9
def test_axe_finds_no_serious_violation(student, worker, daphne_url, page):
    found = []
    page.goto("/accounts/login/?next=/lab/")
    found += axe(page, "login")
    page.fill("#id_username", "student")
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_selector("#workbench[data-ready=true]")
    found += axe(page, "lab before a run")
    page.click("button.preset[data-preset=nat]")
    page.click("#run-trace")
    page.wait_for_selector(FINISHED, timeout=60_000)
    page.click("#pl-first")
    found += axe(page, "lab after a run")
    page.goto("/runs/")
    found += axe(page, "runs list")
    assert found == []
    _clean(page, daphne_url)
