"""Chromium (Debian's, driven by Playwright) against the real stack: logging in, the runs
list. The lab page itself is driven by test_lab_browser.py."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User

from labsite.runs.models import Run

pytestmark = [pytest.mark.browser, pytest.mark.stack, pytest.mark.django_db(transaction=True)]
PASSWORD = "browser-test-pw-1"


def _only_local(page, daphne_url):
    return [url for url in page.requests
            if not url.startswith(daphne_url) and not url.startswith("data:")]


@pytest.fixture
def student_with_a_run():
    user = User.objects.create_user("student1", password=PASSWORD)
    return Run.objects.create(scenario_body="name: x", title="nat-microsoft-4-cores",
                              ran_by=user, status="succeeded")


# Fixtures that touch the database come before `page` (see the `browser` fixture).
def test_student_logs_in_lands_on_the_lab_and_finds_their_runs(student_with_a_run,
                                                               daphne_url, page):
    page.goto("/")
    page.wait_for_url("**/accounts/login/**")
    page.fill("#id_username", "student1")
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url("**/lab/")
    assert page.is_visible("text=Signed in as")
    page.goto("/runs/")
    row = page.locator("tr", has_text="nat-microsoft-4-cores")
    assert row.count() == 1 and "succeeded" in row.inner_text()
    row.locator("a").click()
    page.wait_for_url(f"**/lab/?run={student_with_a_run.pk}")
    page.goto("/runs/")
    assert page.console_errors == []
    assert _only_local(page, daphne_url) == []


@pytest.fixture
def student_with_two_runs(student_with_a_run):
    other = Run.objects.create(scenario_body="name: y", title="usip-symmetric",
                               ran_by=student_with_a_run.ran_by, status="failed")
    return student_with_a_run, other


def test_a_student_deletes_a_run_from_the_runs_list(student_with_two_runs, daphne_url, page):
    kept, deleted = student_with_two_runs
    page.goto("/accounts/login/")
    page.fill("#id_username", "student1")
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url("**/lab/")
    page.goto("/runs/")
    questions = []

    def answer(dialog):
        questions.append(dialog.message)
        # The first time: "no" (nothing happens); then "yes".
        dialog.dismiss() if len(questions) == 1 else dialog.accept()

    page.on("dialog", answer)
    button = page.locator("tr", has_text="usip-symmetric").get_by_role("button", name="Delete")
    button.click()
    assert page.locator("tr", has_text="usip-symmetric").count() == 1
    button.click()
    page.wait_for_selector("text=deleted")
    assert questions == [f"Delete run {deleted.pk} with its events?"] * 2
    assert page.locator("tr", has_text="usip-symmetric").count() == 0
    assert page.locator("tr", has_text="nat-microsoft-4-cores").count() == 1
    assert page.is_visible(f"text=Run {deleted.pk} deleted")
    assert page.console_errors == []
