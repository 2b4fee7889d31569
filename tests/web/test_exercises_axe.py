"""Accessibility of the exercise pages, measured (issue 15 item 9): axe-core, injected into
each page as the lab's own axe test does (``tests.web.helpers.axe``), finds no serious or
critical violation on the student's list, their exercise before starting, after starting
(the answer form, and its error), on a hint's confirmation and after a graded submission
(feedback drawn by the page's script), nor on the instructor's manage, upload with lint
problems, publish (after an upload, its message shown), preview, gradebook (with its
histogram), one student's attempts, a new password, and the roster before and after an
import. On the real stack (daphne, a Celery worker grading, Redis, Chromium). The last
step proves the check can fail: the same helper on a page given two known violations
reports both."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group, User

from engine.exercises import PACK_DIR, load_exercise, solve, variant_seed
from labsite.exercises.models import Exercise, ExerciseVersion
from labsite.lab.models import INSTRUCTOR_GROUP, STUDENT_GROUP
from tests.web.conftest import EXERCISE_SECRET
from tests.web.helpers import axe
from tests.web.test_exercises_browser import answer, log_in, watched

pytestmark = [pytest.mark.browser, pytest.mark.stack, pytest.mark.django_db(transaction=True)]
PASSWORD = "exercise-browser-pw-1"  # log_in's
SLUG = "rss-basics"
BASICS = (PACK_DIR / "01-rss-basics.yaml").read_text()
BROKEN = BASICS.replace("    points: 3\n", "    points: three\n")
#: A clean upload under a new id: it lands on the publish page with a success message.
UPLOAD = BASICS.replace("id: rss-basics", "id: rss-axe")
#: What the check must catch (added by DevTools, so the page's CSP is not involved): an
#: input with no label (critical) and grey on white text (serious colour contrast).
BREAK_PAGE = """() => {
  const box = document.createElement("div"); box.id = "axe-self-test";
  const input = document.createElement("input"); box.append(input);
  const faint = document.createElement("p"); faint.textContent = "faint text";
  faint.style.color = "#c8c8c8"; faint.style.background = "#ffffff"; box.append(faint);
  document.querySelector("main, body").append(box);
}"""


@pytest.fixture
def people():
    """An instructor, a student and the published exercise (made before the browser:
    Django refuses ORM calls while Playwright runs)."""
    made = {}
    for name, group in (("teacher", INSTRUCTOR_GROUP), ("alice", STUDENT_GROUP)):
        user = User.objects.create_user(name, password=PASSWORD)
        user.groups.add(Group.objects.get_or_create(name=group)[0])
        made[name] = user.pk
    exercise = Exercise.objects.create(slug=SLUG, title="RSS basics", published=True)
    ExerciseVersion.objects.create(exercise=exercise, number=1, text=BASICS)
    return made


def test_axe_finds_no_serious_violation_on_the_exercise_pages(people, worker, daphne_url,
                                                               browser, page):
    found = []
    # --- the student
    alice = watched(browser.new_context(base_url=daphne_url))
    log_in(alice, "alice", "/exercises/")
    found += axe(alice, "student list")
    alice.click(f"#exercise-list tr[data-exercise={SLUG}] a")
    found += axe(alice, "exercise before start")
    alice.click("#start")
    alice.wait_for_selector("#exercise[data-ready=true]")
    found += axe(alice, "exercise before a submission")
    alice.click("#submit")                               # nothing answered: the form's error
    alice.wait_for_selector("#form-errors:not([hidden])")
    found += axe(alice, "answer form with an error")
    alice.click("#q-steer .hint-link")
    found += axe(alice, "hint confirmation")
    alice.go_back()
    alice.wait_for_selector("#exercise[data-ready=true]")
    seed = variant_seed(EXERCISE_SECRET.encode(), SLUG, str(people["alice"]), 0)
    right = solve(load_exercise(BASICS), seed)
    answer(alice, {**right, "order": {"choice": "b"}})  # one wrong: both kinds of feedback
    alice.click("#submit")
    alice.wait_for_selector("#exercise[data-graded]", timeout=60_000)
    assert alice.inner_text("#result-score") == "5/6"
    found += axe(alice, "exercise after a graded submission")
    alice.click("#feedback .explain-link")              # the packet's bit-by-bit page
    alice.wait_for_selector("#explain-result")
    assert alice.inner_text("#explain-result").startswith("hash 0x")
    found += axe(alice, "bit-by-bit page")

    # --- the instructor
    log_in(page, "teacher", "/exercises/manage/")
    found += axe(page, "manage")
    page.goto("/exercises/manage/upload/")
    page.fill("#text", BROKEN)
    page.click("#save")
    page.locator("#lint-problems li").first.wait_for()
    found += axe(page, "upload with lint problems")
    page.fill("#text", UPLOAD)
    page.click("#save")
    page.wait_for_url("**/exercises/manage/rss-axe/publish/")
    found += axe(page, "publish after an upload (its message)")
    page.goto(f"/exercises/manage/{SLUG}/preview/?seed=7")
    found += axe(page, "preview")
    page.goto(f"/exercises/manage/{SLUG}/gradebook/")
    page.wait_for_selector("#histogram[data-ready=true]")
    found += axe(page, "gradebook")
    page.goto(f"/exercises/manage/{SLUG}/students/{people['alice']}/")
    found += axe(page, "one student's attempts")
    page.click("#reset-password")
    page.wait_for_url("**/password/")
    found += axe(page, "a student's new password")
    page.goto("/exercises/manage/roster/")
    found += axe(page, "roster")
    page.fill("#text", "carol,,week3\nalice")
    page.click("form.card button[type=submit]")
    page.wait_for_selector("#roster-result")
    found += axe(page, "roster with new passwords")
    assert found == []

    # The check can fail: the same helper on a page given two known violations.
    page.evaluate(BREAK_PAGE)
    caught = axe(page, "self-test")
    assert any("label (critical)" in text for text in caught), caught
    assert any("color-contrast (serious)" in text for text in caught), caught
    # Only the empty submit's 400, which Chromium logs as a failed load.
    assert [e for e in alice.console_errors if "status of 400" not in e] == []
