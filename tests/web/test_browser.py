"""Chromium (Debian's, driven by Playwright) against the real stack: daphne, worker, Redis."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User

from labsite.lab.models import Scenario

pytestmark = [pytest.mark.browser, pytest.mark.stack, pytest.mark.django_db(transaction=True)]
PASSWORD = "browser-test-pw-1"


def _log_in(page, username):
    page.goto("/accounts/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")


def _only_local(page, daphne_url):
    return [url for url in page.requests
            if not url.startswith(daphne_url) and not url.startswith("data:")]


@pytest.fixture
def student():
    return User.objects.create_user("student1", password=PASSWORD)


@pytest.fixture
def scenarios():
    Scenario.objects.create(name="Demo scenario", slug="demo", body="flows: 2")
    Scenario.objects.create(name="Live", slug="live",
                            body="flows: 50\npackets_per_flow: 4\ndelay_ms: 4\n")


# Fixtures that touch the database come before `page` (see the `browser` fixture).
def test_student_logs_in_and_sees_the_lab(student, scenarios, daphne_url, page):
    _log_in(page, "student1")
    page.wait_for_selector("h1:text('Lab')")
    assert page.url == daphne_url + "/"
    assert page.is_visible("text=Demo scenario")
    assert page.is_visible("text=Signed in as")
    assert page.console_errors == []
    assert _only_local(page, daphne_url) == []


def test_a_run_streams_live_to_the_page(student, scenarios, worker, daphne_url, page):
    _log_in(page, "student1")
    page.click("#scenario-live button[type=submit]")
    page.wait_for_url("**/runs/*/")
    page.wait_for_selector("#run-status:text('succeeded')", timeout=60_000)
    page.wait_for_selector("#run-result:not([hidden])")
    state = page.evaluate("window.rsslabRun")
    # 800 events × 4 ms: most arrive live; any the page missed while loading are filled in.
    assert state["seqs"] == list(range(800)) and state["gaps"] == 0
    assert state["live"] > 400
    assert page.inner_text("#run-event-count") == "800"
    assert page.locator("#event-rows tr").count() == 800
    assert page.locator("#flow-table tbody tr").count() == 50
    assert page.locator("#per-core-chart .plot-container").count() == 1  # Plotly drew
    lags = sorted(state["lagsMs"])
    print(f"\npage: {state['live']} events live, send→show lag p95 "
          f"{lags[int(0.95 * len(lags))]:.0f} ms")
    assert page.console_errors == []
    assert _only_local(page, daphne_url) == []
