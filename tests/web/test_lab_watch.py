"""The WATCH side of the lab page in Chromium against the real stack: the diagram before a
run, per-core state while stepping, core boxes as filters, the per-bucket table editor,
the bit-by-bit hash under a transform, pcap export and reduced motion."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from django.contrib.auth.models import Group, User

from engine.scenarios.pcap import read_pcap
from labsite.lab.models import STUDENT_GROUP
from tests.web.test_lab_browser import FINISHED, PASSWORD, _clean, _open_lab

pytestmark = [pytest.mark.browser, pytest.mark.stack, pytest.mark.django_db(transaction=True)]
CORE_STATE = "ns => ns.map(n => [Number(n.dataset.sessions), Number(n.dataset.ports)])"


@pytest.fixture
def student():
    user = User.objects.create_user("student", password=PASSWORD)
    user.groups.add(Group.objects.get_or_create(name=STUDENT_GROUP)[0])
    return user


def _texts(page, selector: str) -> list[str]:
    return page.locator(selector).all_text_contents()


def _run(page, preset: str = "nat") -> list[dict]:
    page.click(f"button.preset[data-preset={preset}]")
    page.click("#run-trace")
    page.wait_for_selector(FINISHED, timeout=60_000)
    return page.evaluate("window.rssLab.events")


def expected_core_states(events: list[dict], cores: int) -> list[list[tuple[int, int]]]:
    """Per event, per core: (open sessions, ports taken) once that event has happened. A
    session opens with the flow's first port-allocated, rewritten request or
    delivered-to-server, and closes with session-closed."""
    open_flows: dict[int, int] = {}
    closed: set[int] = set()
    sessions, ports = [0] * cores, [0] * cores
    states = []
    for event in events:
        kind, flow = event["kind"], event["flow"]
        opens = kind in ("port-allocated", "delivered-to-server") or (
            kind == "rewritten" and event["direction"] == "request")
        if opens and flow not in open_flows and flow not in closed:
            open_flows[flow] = event["core"]
            sessions[event["core"]] += 1
        elif kind == "session-closed":
            if flow in open_flows:
                sessions[open_flows.pop(flow)] -= 1
            closed.add(flow)
        if kind == "port-allocated":
            ports[event["core"]] += 1
        elif kind == "port-freed":
            ports[event["core"]] -= 1
        states.append(list(zip(sessions, ports, strict=True)))
    return states


def test_the_diagram_shows_the_built_system_before_any_run(student, daphne_url, page):
    _open_lab(page)
    assert page.locator("#diagram .node.core").count() == 4
    nic = " ".join(_texts(page, "#d-nic text"))
    assert "Toeplitz, key microsoft" in nic and "low 7 bits → 128 buckets" in nic
    assert "round robin over 4 cores" in nic and "transform none" in nic
    assert "66.9.149.187:2794" in " ".join(_texts(page, "#d-client text"))
    assert "3 flows" in " ".join(_texts(page, "#d-client text"))
    server = " ".join(_texts(page, "#d-server text"))
    assert "161.142.100.80:1766" in server and "10.0.0.1:8080" in server
    assert _texts(page, "#d-core-3 text")[:2] == ["core 3", "PE · 0 sessions"]

    page.fill("input[name=cores]", "6")
    page.wait_for_function("document.querySelectorAll('#diagram .node.core').length === 6")
    assert "round robin over 6 cores" in " ".join(_texts(page, "#d-nic text"))
    page.fill("input[name=hash_bits]", "3")
    page.select_option("select[name=transform]", "symmetric-xor")
    nic = " ".join(_texts(page, "#d-nic text"))
    assert "low 3 bits → 8 buckets" in nic and "transform symmetric-xor" in nic
    page.fill("input[name=cores]", "2")
    page.wait_for_function("document.querySelectorAll('#diagram .node.core').length === 2")
    assert page.locator("#f-core option").count() == 3       # all, core 0, core 1
    _clean(page, daphne_url)


def test_core_boxes_count_sessions_and_ports_at_every_step_and_filter_events(
        student, worker, daphne_url, page):
    _open_lab(page)
    events = _run(page)
    states = expected_core_states(events, 4)
    assert max(s for state in states for s, _ in state) >= 1

    page.focus("#diagram")
    page.keyboard.press("Home")
    assert page.locator("#diagram .packet").count() == 1      # the request travels
    shown = page.eval_on_selector_all("#diagram .node.core", CORE_STATE)
    assert shown == [list(x) for x in states[0]]
    # Forward through every event, then back again: each step shows its own state.
    for index in range(1, len(events)):
        page.keyboard.press("ArrowRight")
        assert page.eval_on_selector_all("#diagram .node.core", CORE_STATE) == \
            [list(x) for x in states[index]], f"after event {index} ({events[index]['kind']})"
    for index in range(len(events) - 2, -1, -1):
        page.keyboard.press("ArrowLeft")
        assert page.eval_on_selector_all("#diagram .node.core", CORE_STATE) == \
            [list(x) for x in states[index]], f"back at event {index}"

    # The session opens with the rewritten request (not when the server gets it).
    rewritten = next(e for e in events if e["kind"] == "rewritten")
    page.evaluate(f"window.rssLab.select({rewritten['seq']})")
    core = rewritten["core"]
    texts = _texts(page, f"#d-core-{core} text")
    assert texts[1] == "PE · 1 session"
    ports = states[rewritten["seq"]][core][1]
    assert ports == 1 and texts[2].startswith("ports 1 / ")
    assert float(texts[2].split(" / ")[1]) > 1000              # the report's fitting ports

    # A core box filters the event list to its core; again clears it (mouse and keyboard).
    page.click(f"#d-core-{core}")
    assert page.input_value("#f-core") == str(core)
    assert page.get_attribute(f"#d-core-{core}", "aria-pressed") == "true"
    seqs = page.eval_on_selector_all("#event-list .ev-row",
                                     "rs => rs.map(r => Number(r.dataset.seq))")
    assert seqs and all(core in (events[q].get("core"), events[q].get("to_core"),
                                 events[q].get("from_core"), events[q].get("request_core"))
                        for q in seqs)
    assert len(seqs) < len(events)
    page.click(f"#d-core-{core}")
    assert page.input_value("#f-core") == ""
    assert page.get_attribute(f"#d-core-{core}", "aria-pressed") == "false"
    other = (core + 1) % 4
    assert page.get_attribute(f"#d-core-{other}", "role") == "button"
    # Named by its <title>, which starts with what the box shows (axe-core's
    # label-content-name-mismatch: an aria-label that differs from the visible words).
    assert page.get_by_role("button", name=re.compile(f"^core {other} PE · ")).count() == 1
    page.focus(f"#d-core-{other}")
    page.keyboard.press("Enter")
    assert page.input_value("#f-core") == str(other)
    assert page.evaluate("window.rssLab.state().playing") is False
    page.keyboard.press("Space")                                # toggles, does not play
    assert page.input_value("#f-core") == ""
    assert page.evaluate("window.rssLab.state().playing") is False
    _clean(page, daphne_url)


def test_core_state_jumps_over_checkpoints(student, worker, daphne_url, page):
    _open_lab(page)
    page.check("input[name='traffic.kind'][value=generated]")
    page.fill("input[name='traffic.count']", "120")
    page.click("#run-trace")
    page.wait_for_selector(FINISHED, timeout=60_000)
    events = page.evaluate("window.rssLab.events")
    assert len(events) > 1000
    states = expected_core_states(events, 4)
    for seq in (len(events) - 1, 0, 700, 255, 256, 257, 1000, 3, len(events) // 2, 511, 512):
        page.evaluate(f"window.rssLab.select({seq})")
        assert page.eval_on_selector_all("#diagram .node.core", CORE_STATE) == \
            [list(x) for x in states[seq]], f"jumped to event {seq}"
    _clean(page, daphne_url)


def test_the_table_editor_keeps_grid_text_and_fields_in_step(student, worker, daphne_url,
                                                             page):
    _open_lab(page)
    page.select_option("select[name=table_kind]", "custom")
    assert page.locator("#table-grid .tb-cell").count() == 128
    page.fill("input[name=hash_bits]", "3")
    page.wait_for_function("document.querySelectorAll('#table-grid .tb-cell').length === 8")
    assert page.input_value("textarea[name=table_custom]") == "0,1,2,3,0,1,2,3"
    # One tab stop; arrows move between buckets, ↑ changes the bucket's core.
    assert page.eval_on_selector_all("#table-grid .tb-cell", "cs => cs.map(c => c.tabIndex)") \
        == [0, -1, -1, -1, -1, -1, -1, -1]
    page.focus("#tb-0")
    page.keyboard.press("ArrowRight")
    assert page.evaluate("document.activeElement.id") == "tb-1"
    page.keyboard.press("ArrowUp")
    assert page.input_value("textarea[name=table_custom]") == "0,2,2,3,0,1,2,3"
    page.keyboard.press("End")
    assert page.evaluate("document.activeElement.id") == "tb-7"
    page.keyboard.press("Backspace")
    page.keyboard.type("0")
    assert page.input_value("textarea[name=table_custom]") == "0,2,2,3,0,1,2,0"
    colour = page.eval_on_selector("#tb-7", "c => getComputedStyle(c).backgroundColor")
    assert colour == "rgb(230, 159, 0)"                        # core 0's Okabe–Ito orange
    assert page.inner_text("#table-check") == ""

    # The text form drives the grid; entries that are no core show a field error.
    page.fill("textarea[name=table_custom]", "0,1,2,3,0,1,2,9")
    assert page.input_value("#tb-7") == "9"
    assert page.get_attribute("#tb-7", "aria-invalid") == "true"
    assert "table[7] = 9" in page.inner_text("#table-check")
    assert page.get_attribute("textarea[name=table_custom]", "aria-invalid") == "true"
    page.fill("textarea[name=table_custom]", "1,0,1,0,1,0,1,0")
    assert page.inner_text("#table-check") == ""
    page.fill("input[name=cores]", "1")                        # fewer cores: 1s are no core
    assert "table[0] = 1" in page.inner_text("#table-check")
    assert page.get_attribute("#tb-0", "aria-invalid") == "true"
    page.fill("input[name=cores]", "2")
    assert page.inner_text("#table-check") == ""
    page.fill("input[name=hash_bits]", "2")                    # fewer buckets: cut to 4
    assert page.input_value("textarea[name=table_custom]") == "1,0,1,0"
    page.fill("input[name=hash_bits]", "3")
    assert page.input_value("textarea[name=table_custom]") == "1,0,1,0,0,1,0,1"

    page.click("#run-trace")
    page.wait_for_selector(FINISHED, timeout=60_000)
    assert "table: [1, 0, 1, 0, 0, 1, 0, 1]" in page.input_value("#yaml-text")
    table = [1, 0, 1, 0, 0, 1, 0, 1]
    hashed = [e for e in page.evaluate("window.rssLab.events") if e["kind"] == "hashed"]
    assert hashed and all(e["core"] == table[e["bucket"]] for e in hashed)
    _clean(page, daphne_url)


def test_bit_by_bit_reproduces_a_symmetric_xor_hash(student, worker, daphne_url, page):
    _open_lab(page)
    page.click("button.preset[data-preset=nat]")
    page.select_option("select[name=transform]", "symmetric-xor")
    page.click("#run-trace")
    page.wait_for_selector(FINISHED, timeout=60_000)
    hashed = [e for e in page.evaluate("window.rssLab.events") if e["kind"] == "hashed"]
    assert len(hashed) == 6                                  # requests and responses
    page.select_option("#f-kind", "hashed")
    for event in (hashed[0], hashed[-1]):
        page.click(f"#ev-{event['seq']}")
        page.click("#explain-button")
        page.wait_for_selector("#explain-result")
        running = page.locator("#explain table.steps tbody tr td:nth-child(3)").all_inner_texts()
        assert int(running[-1], 16) == event["hash"]
        result = page.inner_text("#explain-result")
        assert "equals the event's hash" in result
        assert f"bucket {event['bucket']} → core {event['core']}" in result
    _clean(page, daphne_url)


def test_export_pcap_downloads_the_runs_packets(student, worker, daphne_url, page):
    _open_lab(page)
    assert page.is_disabled("#export-pcap")
    events = _run(page)
    assert page.is_enabled("#export-pcap")
    with page.expect_download() as download:
        page.click("#export-pcap")
    path = download.value.path()
    assert download.value.suggested_filename.endswith(".pcap")
    packets = read_pcap(Path(path).read_bytes()).packets
    exported = {str(p.tuple) for p in packets}
    seen = {e["tuple"] for e in events
            if e["kind"] in ("packet-arrived", "delivered-to-server", "response-arrived")}
    assert exported == seen
    requests = [e["tuple"] for e in events
                if e["kind"] == "packet-arrived" and e["direction"] == "request"]
    assert [str(p.tuple) for p in packets if str(p.tuple) in requests] == requests
    page.wait_for_selector("#export-status:text('exported')")
    _clean(page, daphne_url)


@pytest.fixture
def reduced_page(browser, daphne_url):
    context = browser.new_context(base_url=daphne_url, reduced_motion="reduce")
    page = context.new_page()
    page.console_errors, page.requests = [], []
    page.on("console", lambda m: m.type == "error" and page.console_errors.append(m.text))
    page.on("pageerror", lambda e: page.console_errors.append(str(e)))
    page.on("request", lambda r: page.requests.append(r.url))
    yield page
    context.close()


def test_reduced_motion_lights_the_step_instead_of_moving_packets(student, worker, daphne_url,
                                                                 reduced_page):
    page = reduced_page
    _open_lab(page)
    assert page.evaluate("matchMedia('(prefers-reduced-motion: reduce)').matches") is True
    events = _run(page)
    page.focus("#diagram")
    page.keyboard.press("Home")
    assert events[0]["kind"] == "packet-arrived"
    for index in range(6):
        assert page.locator("#diagram .packet").count() == 0
        assert page.evaluate("document.getAnimations().length") == 0
        kind = events[index]["kind"]
        lit = page.eval_on_selector_all("#diagram .lit", "ns => ns.map(n => n.id)")
        if kind == "packet-arrived":
            assert lit == ["d-client", "d-nic"]
            assert page.locator("#diagram .edge-active").count() == 1
        elif kind == "hashed":
            assert lit == ["d-nic"]
        elif kind == "steered":
            assert lit == ["d-nic", f"d-core-{events[index]['core']}"]
        page.keyboard.press("ArrowRight")
    _clean(page, daphne_url)
