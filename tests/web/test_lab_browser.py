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
from django.contrib.auth.models import Group, User

from engine.examples import EXAMPLES_DIR
from labsite.lab.models import STUDENT_GROUP

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
