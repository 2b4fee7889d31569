"""The lab page ("workbench") in Chromium against the real stack: daphne, a Celery worker, Redis.

A student builds flows with the form, runs them and watches them arrive over the websocket;
the verdicts, the handoff of ``transparent``, a refused upload, the keyboard player and the
bit-by-bit hash are checked as a student sees them. Every test also checks that the page
logged no console error and asked no origin but the lab's.
"""

from __future__ import annotations

import json
import re

import pytest
import yaml
from django.contrib.auth.models import Group, User

from engine.examples import EXAMPLES_DIR
from labsite.lab.models import STUDENT_GROUP
from tests.web.helpers import axe

pytestmark = [pytest.mark.browser, pytest.mark.stack, pytest.mark.django_db(transaction=True)]
PASSWORD = "lab-browser-pw-1"
FINISHED = "#workbench[data-finished=true]"


@pytest.fixture
def student():
    """The demo student (a member of the student group)."""
    user = User.objects.create_user("student", password=PASSWORD)
    user.groups.add(Group.objects.get_or_create(name=STUDENT_GROUP)[0])
    return user


def _open_lab(page):
    page.goto("/accounts/login/?next=/lab/")
    page.fill("#id_username", "student")
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_selector("#workbench[data-ready=true]")


def _clean(page, daphne_url, *, refused: int = 0):
    """No console error (Chromium logs each HTTP 400 answer as one: ``refused`` of those are
    the test's own) and no request to another origin."""
    answered_400 = [m for m in page.console_errors if "status of 400 (Bad Request)" in m]
    assert len(answered_400) == refused
    assert [m for m in page.console_errors if m not in answered_400] == []
    foreign = [url for url in page.requests
               if not url.startswith(daphne_url) and not url.startswith(("data:", "ws://127.0.0.1"))]
    assert foreign == []


def _position(page) -> tuple[int, int]:
    k, n = re.fullmatch(r"event (\d+) / (\d+)", page.inner_text("#pl-pos")).groups()
    return int(k), int(n)


# Fixtures that touch the database come before `page` (see the `browser` fixture). The
# worker is started inside the test, after the run is queued and the page is listening, so
# every event of this short run is seen arriving live rather than replayed.
def test_nat_flow_runs_live_and_is_symmetric(student, start_worker, daphne_url, page):
    _open_lab(page)
    page.click("button.preset[data-preset=nat]")
    page.fill("#flow-0-client", "66.9.149.187:2795")          # edit the client port
    page.click("#run-trace")
    page.wait_for_selector("#run-connection:text('live')")
    assert "queued" in page.inner_text("#run-status")
    assert page.evaluate("window.rssLab.stats.received") == 0

    start_worker()
    page.wait_for_selector(FINISHED, timeout=60_000)
    stats = page.evaluate("window.rssLab.stats")
    events = page.evaluate("window.rssLab.events")
    assert stats["receivedBeforeFinal"] == len(events) > 0      # all came over the socket
    assert [e["seq"] for e in events] == list(range(len(events)))
    assert stats["fetched"] == 0 and stats["duplicates"] == 0
    assert "run" in page.inner_text("#run-status") and "succeeded" in page.inner_text("#run-status")
    verdict = page.inner_text("#verdict-bar")
    assert "✓ 3/3 symmetric" in verdict and "↪ 0 handed off" in verdict
    assert verdict.startswith("every response back on its request's core · PASS (no checks")
    assert "66.9.149.187:2795" in page.input_value("#yaml-text")  # the edited port ran

    first = next(e for e in events if e["kind"] == "packet-arrived")
    assert first["tuple"].startswith("tcp 66.9.149.187:2795 ->")
    assert page.locator("#event-list .ev-row").count() > 0
    page.click("#flows-box summary")
    rows = page.locator("#flow-table tbody tr")
    assert rows.count() == 3 and "symmetric" in rows.nth(0).inner_text()

    # Keyboard: the player moves with Space / ← / → / Home / End.
    page.focus("#diagram")
    page.keyboard.press("Home")
    assert _position(page) == (1, len(events))
    page.keyboard.press("ArrowRight")
    page.keyboard.press("ArrowRight")
    assert _position(page)[0] == 3
    page.keyboard.press("ArrowLeft")
    assert _position(page)[0] == 2
    assert page.inner_text("#announce").startswith("event 1:")
    page.keyboard.press("Space")
    assert page.evaluate("window.rssLab.state().playing") is True
    page.wait_for_function("window.rssLab.state().cursor >= 2", timeout=5_000)
    page.keyboard.press("Space")
    assert page.evaluate("window.rssLab.state().playing") is False
    page.keyboard.press("End")
    assert _position(page) == (len(events), len(events))

    # The bit-by-bit view of the first request's hash ends in the event's hash.
    hashed = next(e for e in events if e["kind"] == "hashed")
    page.select_option("#f-kind", "hashed")
    page.click(f"#ev-{hashed['seq']}")
    assert f"[hash 0x{hashed['hash']:08x}]" in page.inner_text("#detail")
    page.click("#explain-button")
    page.wait_for_selector("#explain-result")
    running = page.locator("#explain table.steps tbody tr td:nth-child(3)").all_inner_texts()
    assert int(running[-1], 16) == hashed["hash"]
    assert "equals the event's hash" in page.inner_text("#explain-result")
    _clean(page, daphne_url)


def test_transparent_hands_off_and_replays(student, worker, daphne_url, page):
    _open_lab(page)
    page.click("button.preset[data-preset=transparent]")
    page.click("#run-trace")
    page.wait_for_selector(FINISHED, timeout=60_000)
    verdict = page.inner_text("#verdict-bar")
    assert "↪ 3 handed off" in verdict and "✗ 0 asymmetric" in verdict
    assert verdict.startswith("symmetric only by handoff")
    assert "replays its" in page.inner_text("#pl-hint")        # how to watch it again
    events = page.evaluate("window.rssLab.events")
    handoffs = [e for e in events if e["kind"] in ("forwarded", "forwarded-core-to-core")]
    assert len(handoffs) == 3
    page.select_option("#f-kind", handoffs[0]["kind"])
    row = page.locator(f"#ev-{handoffs[0]['seq']}")
    assert "handed from core" in row.inner_text()
    row.click()
    assert page.locator("#diagram .handoff").count() == 1    # the core-to-core arrow
    assert "↪" in page.inner_text("#diagram")

    # The finished run replays from /lab/?run=<id>.
    run = page.evaluate("window.rssLab.state().run")
    page.goto(f"/lab/?run={run}")
    page.wait_for_selector(FINISHED, timeout=30_000)
    replayed = page.evaluate("window.rssLab.events")
    assert [e["seq"] for e in replayed] == [e["seq"] for e in events]
    assert "↪ 3 handed off" in page.inner_text("#verdict-bar")
    _clean(page, daphne_url)


def test_a_broken_upload_shows_its_error_next_to_the_pcap_field(student, daphne_url, page):
    _open_lab(page)
    page.click("button.preset[data-preset=usip]")
    page.click("#tab-yaml")                    # before any run: the file the form describes
    page.wait_for_function("document.querySelector('#yaml-text').value.includes('usip')")
    assert page.input_value("#yaml-text").startswith("schema_version: 1")
    page.click("#tab-builder")
    page.check("input[name='traffic.kind'][value=pcap]")
    page.set_input_files("#pcap-file", files=[{"name": "notes.pcap", "mimeType": "text/plain",
                                               "buffer": b"these are notes, not a capture\n"}])
    page.click("#run-trace")
    error = page.locator(".field-error[data-error-for=pcap] .field-error-msg")
    error.wait_for()
    assert error.inner_text().strip()
    assert page.is_visible("#form-errors")
    assert "pcap" in page.inner_text("#form-errors")
    assert page.get_attribute("#pcap-file", "aria-invalid") == "true"
    assert page.evaluate("window.rssLab.state().run") is None   # nothing was queued
    _clean(page, daphne_url, refused=1)


def test_compare_charts_keys_and_policies_side_by_side(student, worker, daphne_url, page):
    _open_lab(page)
    page.click("button.preset[data-preset=transparent]")   # ticked: microsoft, symmetric x
    page.click("#compare-run")                              #         nat, transparent
    page.wait_for_selector("#compare-status:text('done')", timeout=60_000)
    status = page.inner_text("#compare-status")
    assert status.startswith("done: 4 RSS configurations and 4 other distribution schemes")
    labels = page.locator("#compare-grid .cmp-cell h3").all_inner_texts()
    assert "key=symmetric policy=transparent" in labels and "per-packet" in labels
    cell = page.locator(".cmp-cell", has_text="key=symmetric policy=transparent")
    assert "✓ 100.0 %" in cell.inner_text()         # the preset rewrites nothing
    assert page.is_visible("#compare-result")
    assert page.locator("#compare-chart .bars .point").count() == 2 * len(labels)
    _clean(page, daphne_url)


def test_compare_sends_the_uploaded_capture_with_the_scenario(student, worker, daphne_url, page):
    """A comparison is built like a run (one request builder): a scenario that replays a
    capture compares the capture uploaded with the form."""
    capture = (EXAMPLES_DIR / "replay.pcap").read_bytes()
    _open_lab(page)
    page.click("button.preset[data-preset=nat]")
    page.check("input[name='traffic.kind'][value=pcap]")
    page.set_input_files("#pcap-file", files=[{"name": "replay.pcap",
                                               "mimeType": "application/vnd.tcpdump.pcap",
                                               "buffer": capture}])
    # Record what the page sends (Chromium does not report a multipart body with a file).
    page.evaluate("""() => {
      const fetch = window.fetch;
      window.__sent = [];
      window.fetch = (url, options = {}) => {
        if (options.body instanceof FormData) {
          window.__sent.push({ url: String(url), fields: [...options.body.entries()].map(
            ([name, value]) => [name, value instanceof File ? { file: value.name, size: value.size }
                                                              : value]) });
        }
        return fetch(url, options);
      };
    }""")
    page.click("#compare-run")
    page.wait_for_function("document.querySelector('#compare-status').textContent"
                           ".startsWith('done') || document.querySelector('#compare-errors')"
                           ".textContent", timeout=60_000)
    assert page.inner_text("#compare-errors") == ""
    [sent] = page.evaluate("window.__sent")
    fields = dict(sent["fields"])
    assert sent["url"].endswith("/lab/api/compare/")
    assert fields["pcap"] == {"file": "replay.pcap", "size": len(capture)}
    assert fields["source"] == "builder" and '"kind":"pcap"' in fields["builder"]
    assert json.loads(fields["vary"]) == {"key": ["microsoft", "symmetric"],
                                          "policy": ["nat", "transparent"]}
    status = page.inner_text("#compare-status")
    assert status.startswith("done: 4 RSS configurations") and status.endswith(", 4 flows each")
    labels = page.locator("#compare-grid .cmp-cell h3").all_inner_texts()
    assert "key=symmetric policy=nat" in labels
    _clean(page, daphne_url)


def test_distributor_rules_an_rss_unaware_nic_and_start_times_round_trip_the_yaml_tab(
        student, worker, daphne_url, page):
    """Issue 12's form controls: set in the form (by keyboard where a student would), a bad
    core shown next to its rule, the run's YAML holding every setting, and the run's file
    loaded back into the form showing the same values; then generated traffic with start
    times at a rate, RST after a hold, the same way on the batch path (Verify)."""
    _open_lab(page)
    page.click("button.preset[data-preset=nat]")
    page.uncheck("[name=rss_aware]")                      # the NIC hashes nothing …
    assert page.is_visible("[name=receive_core]")         # … so its receive core shows
    page.fill("[name=receive_core]", "1")
    page.uncheck("[name='distributor.correct_core_check']")
    page.click("#add-rule")                               # rule 1: a prefix, to core 9 (bad)
    assert page.evaluate("document.activeElement.id") == "rule-0-kind"
    page.fill("#rule-0-prefix", "24.19.198.0/24")
    page.fill("#rule-0-core", "9")
    page.focus("#add-rule")                               # rule 2, by keyboard: an exact flow
    page.keyboard.press("Enter")
    assert page.evaluate("document.activeElement.id") == "rule-1-kind"
    page.select_option("#rule-1-kind", "flow")
    assert page.is_hidden("#rule-1-prefix") and page.is_visible("#rule-1-client")
    page.fill("#rule-1-client", "199.92.111.2:14230")
    page.fill("#rule-1-server", "161.142.100.80:1766")
    page.fill("#rule-1-core", "3")
    page.click("#add-rule")                               # a third row, removed by keyboard:
    page.locator("#rule-rows button.remove-rule").nth(2).focus()
    page.keyboard.press("Enter")                          # the focus stays in the table
    assert page.locator("#rule-rows tr").count() == 2
    assert page.evaluate("document.activeElement.getAttribute('aria-label')") == "remove rule 2"
    page.fill("#flow-1-start_us", "40")
    page.check("[name=table_change_on]")                  # a table change starts from the
    assert page.input_value("[name='table_change.table']") == ",".join(   # table in use
        str(b % 4) for b in range(128))
    assert axe(page, "lab with rules, the table change open") == []
    page.uncheck("[name=table_change_on]")                # (not part of this run)

    page.click("#run-trace")                              # the engine's error, at its input
    error = page.locator(".field-error[data-error-for='distributor.rules[0].core']")
    error.wait_for()
    assert "expected a core 0-3, got 9" in error.inner_text()
    assert page.get_attribute("#rule-0-core", "aria-invalid") == "true"
    assert page.evaluate("window.rssLab.state().run") is None
    page.fill("#rule-0-core", "2")
    page.click("#run-trace")
    page.wait_for_selector(FINISHED, timeout=60_000)
    assert "✓ 3/3 symmetric" in page.inner_text("#verdict-bar")

    page.click("#tab-yaml")
    text = page.input_value("#yaml-text")
    data = yaml.safe_load(text)
    assert data["system"]["nic"]["rss_aware"] is False
    assert data["system"]["nic"]["receive_core"] == 1
    assert data["distributor"] == {"correct_core_check": False, "rules": [
        {"prefix": "24.19.198.0/24", "match_on": "src", "core": 2},
        {"flow": {"client": "199.92.111.2:14230", "server": "161.142.100.80:1766",
                  "proto": "tcp"}, "core": 3}]}
    assert [f.get("start_us") for f in data["traffic"]["flows"]] == [None, 40, None]
    assert data["forwarding"] == {"route": "message"}

    # The run's file, opened from its link, fills the form with the same values.
    run = page.evaluate("window.rssLab.state().run")
    page.goto(f"/lab/?run={run}")
    page.wait_for_selector(FINISHED, timeout=30_000)
    assert page.input_value("#yaml-text") == text
    page.click("#tab-builder")
    assert page.inner_text("#form-note") == ""            # the form shows the whole file
    assert not page.is_checked("[name=rss_aware]")
    assert page.input_value("[name=receive_core]") == "1"
    assert not page.is_checked("[name='distributor.correct_core_check']")
    assert page.locator("#rule-rows tr").count() == 2
    assert [page.input_value(f"#rule-0-{k}") for k in ("kind", "prefix", "match_on", "core")] \
        == ["prefix", "24.19.198.0/24", "src", "2"]
    assert [page.input_value(f"#rule-1-{k}") for k in ("kind", "client", "server", "proto",
                                                      "core")] \
        == ["flow", "199.92.111.2:14230", "161.142.100.80:1766", "tcp", "3"]
    assert page.is_visible("#rule-1-client") and page.is_hidden("#rule-1-prefix")
    assert [page.input_value(f"#flow-{i}-start_us") for i in range(3)] == ["", "40", ""]
    assert page.input_value("[name=handoff]") == "message"

    # Generated traffic with start times at a rate and sessions ended by RST after a hold:
    # the engine's error at the rate's input, a run on the batch path (Verify), the YAML
    # tab holding the time settings, and the run's file loading them back into the form.
    page.click("button.preset[data-preset=nat]")          # no distributor, an RSS-aware NIC
    page.check("[name='traffic.kind'][value=generated]")
    page.fill("[name='traffic.count']", "200")
    assert page.is_hidden("[name='traffic.start.rate_per_s']")
    page.focus("[name='traffic.start']")
    page.select_option("[name='traffic.start']", "rate_per_s")
    assert page.is_visible("[name='traffic.start.rate_per_s']")
    assert page.is_hidden("[name='traffic.start.spread_us']")
    page.focus("[name='traffic.start.rate_per_s']")       # typed, as a student would
    page.keyboard.press("Control+A")
    page.keyboard.type("0")
    page.select_option("[name='traffic.close']", "rst")
    page.focus("[name='traffic.hold_us']")
    page.keyboard.type("500")
    assert axe(page, "lab with generated traffic's start times") == []
    first = run
    page.click("#run-batch")
    error = page.locator(".field-error[data-error-for='traffic.start.rate_per_s']")
    error.wait_for()
    assert "expected a number >= 1, got 0" in error.inner_text()
    assert page.get_attribute("[name='traffic.start.rate_per_s']", "aria-invalid") == "true"
    page.fill("[name='traffic.start.rate_per_s']", "20000")
    page.click("#run-batch")
    page.wait_for_function(f"window.rssLab.state().run && window.rssLab.state().run !== {first}")
    page.wait_for_selector(FINISHED, timeout=60_000)
    assert "✓ 200/200 symmetric" in page.inner_text("#verdict-bar")
    page.click("#tab-yaml")
    text = page.input_value("#yaml-text")
    generated = yaml.safe_load(text)["traffic"]["generated"]
    assert generated["count"] == 200
    assert {k: generated.get(k) for k in ("start", "close", "hold_us")} == {
        "start": {"rate_per_s": 20000}, "close": "rst", "hold_us": 500}
    run = page.evaluate("window.rssLab.state().run")
    page.goto(f"/lab/?run={run}")
    page.wait_for_selector(FINISHED, timeout=30_000)
    assert page.input_value("#yaml-text") == text
    page.click("#tab-builder")
    assert page.inner_text("#form-note") == ""
    assert page.is_checked("[name='traffic.kind'][value=generated]")
    assert page.input_value("[name='traffic.start']") == "rate_per_s"
    assert page.is_visible("[name='traffic.start.rate_per_s']")
    assert page.input_value("[name='traffic.start.rate_per_s']") == "20000"
    assert page.input_value("[name='traffic.close']") == "rst"
    assert page.input_value("[name='traffic.hold_us']") == "500"
    _clean(page, daphne_url, refused=2)
