"""Issue 13's Must-show on the real stack (daphne, a Celery worker, Redis, Chromium).

An instructor uploads an exercise with a deliberate mistake and sees the lint at its line,
fixes it and publishes it; two students start it and get different variants (a fixed
exercise secret, ``tests/web/conftest.py``; 245 million variants); one answers right (the
engine's ``solve`` for that student's seed) and one wrong; each sees their score and the
feedback, graded on the worker without a reload; the gradebook and its CSV show both.
Screenshots go to /tmp/exercises-*.png. Every page must be free of console errors and CSP
violations (the fixtures check the latter).
"""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group, User

from engine.exercises import PACK_DIR, load_exercise, solve, variant_seed
from labsite.lab.models import INSTRUCTOR_GROUP, STUDENT_GROUP
from tests.web.conftest import EXERCISE_SECRET

pytestmark = [pytest.mark.browser, pytest.mark.stack, pytest.mark.django_db(transaction=True)]
PASSWORD = "exercise-browser-pw-1"
SLUG = "rss-week3"
FIXED = ((PACK_DIR / "01-rss-basics.yaml").read_text()
         .replace("id: rss-basics", f"id: {SLUG}")
         .replace('title: "RSS basics:', 'title: "Week 3, RSS basics:'))
BROKEN = FIXED.replace("    points: 3\n", "    points: three\n")
BROKEN_LINE = BROKEN.splitlines().index("    points: three") + 1
SHOTS = "/tmp/exercises-{}.png"


@pytest.fixture
def people():
    """An instructor and two students, by name, with their ids (made before the browser:
    Django refuses ORM calls while Playwright runs)."""
    made = {}
    for name, group in (("teacher", INSTRUCTOR_GROUP), ("alice", STUDENT_GROUP),
                        ("bob", STUDENT_GROUP)):
        user = User.objects.create_user(name, password=PASSWORD)
        user.groups.add(Group.objects.get_or_create(name=group)[0])
        made[name] = user.pk
    return made


def log_in(page, name: str, next_url: str) -> None:
    page.goto(f"/accounts/login/?next={next_url}")
    page.fill("#id_username", name)
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"**{next_url}")


def watched(context):
    page = context.new_page()
    page.console_errors = []
    page.on("console", lambda m: m.type == "error" and page.console_errors.append(m.text))
    page.on("pageerror", lambda e: page.console_errors.append(str(e)))
    return page


def answer(page, answers: dict) -> None:
    for qid, fields in answers.items():
        for name, value in fields.items():
            if name == "choice":
                page.check(f"input[name='q-{qid}-choice'][value='{value}']")
            else:
                page.fill(f"#q-{qid}-{name}", str(value))


def start_and_read_prompt(page) -> str:
    page.click(f"#exercise-list tr[data-exercise={SLUG}] a")
    page.click("#start")
    page.wait_for_selector("#exercise[data-ready=true]")
    return page.inner_text("#prompt")


def submit_and_wait(page) -> str:
    page.click("#submit")
    page.wait_for_selector("#exercise[data-graded]", timeout=60_000)
    return page.inner_text("#result-score")


def test_instructor_uploads_publishes_and_two_students_are_graded(people, worker, daphne_url,
                                                                 browser, page):
    # --- the instructor: a mistake, its lint at its line, the fix, publishing
    log_in(page, "teacher", "/exercises/manage/upload/")
    page.fill("#text", BROKEN)
    page.click("#save")
    problem = page.locator(f"#lint-problems li[data-line='{BROKEN_LINE}']")
    problem.wait_for()
    assert f"line {BROKEN_LINE}" in problem.inner_text() and "points" in problem.inner_text()
    assert page.locator(f"#line-{BROKEN_LINE}.bad").inner_text().strip() == "points: three"
    page.screenshot(path=SHOTS.format("1-lint"), full_page=True)
    page.fill("#text", FIXED)
    page.click("#save")
    page.wait_for_url(f"**/exercises/manage/{SLUG}/publish/")
    assert "version 1; lint clean, 245,790,720 variants" in page.inner_text(".messages")
    page.check("#published")
    page.click("#save-publish")
    page.wait_for_url("**/exercises/manage/")
    assert page.inner_text(f"#manage-list tr[data-exercise={SLUG}] td:nth-child(3)") == "yes"

    # --- two students: different variants
    engine_exercise = load_exercise(FIXED)
    seeds = {name: variant_seed(EXERCISE_SECRET.encode(), SLUG, str(people[name]), 0)
             for name in ("alice", "bob")}
    alice = watched(browser.new_context(base_url=daphne_url))
    bob = watched(browser.new_context(base_url=daphne_url))
    log_in(alice, "alice", "/exercises/")
    log_in(bob, "bob", "/exercises/")
    prompts = {"alice": start_and_read_prompt(alice), "bob": start_and_read_prompt(bob)}
    assert prompts["alice"] != prompts["bob"]

    # alice answers right: the engine's reference answers for her seed
    right = solve(engine_exercise, seeds["alice"])
    answer(alice, right)
    alice.screenshot(path=SHOTS.format("2-student-answering"), full_page=True)
    assert submit_and_wait(alice) == "6/6"
    feedback = alice.inner_text("#feedback")
    assert "steer ✓ 3/3 correct" in feedback and "order ✓ 1/1 correct" in feedback
    assert right["steer"]["hash"] in feedback            # the packet: hash, bucket, core
    assert "hash input (12 bytes)" in feedback
    assert alice.inner_text("#score").startswith("★ 6/6")
    alice.screenshot(path=SHOTS.format("3-student-right"), full_page=True)

    # bob answers wrong (every field off by one), after paying for a hint
    bob.click("#q-steer .hint-link")
    assert "0.5 points" in bob.inner_text("#hint-cost")
    bob.click("#reveal")
    bob.wait_for_selector("#q-steer .hint")
    reference = solve(engine_exercise, seeds["bob"])
    wrong = {"steer": {"hash": hex(int(reference["steer"]["hash"], 16) ^ 1),
                       "bucket": reference["steer"]["bucket"] + 1,
                       "core": reference["steer"]["core"] + 1},
             "buckets": {"value": reference["buckets"]["value"] + 1},
             "core0": {"value": reference["core0"]["value"] + 1},
             "order": {"choice": "b"}}
    answer(bob, wrong)
    assert submit_and_wait(bob) == "0/6"
    feedback = bob.inner_text("#feedback")
    assert "steer ✗ 0/3 incorrect" in feedback and "No: the source comes first." in feedback
    assert reference["steer"]["hash"] not in feedback     # a wrong prediction stays hidden
    assert "4 attempts left at steer" in feedback
    bob.screenshot(path=SHOTS.format("4-student-wrong"), full_page=True)

    # "open in the lab": alice's variant in the workbench's YAML tab
    alice.click("#open-lab")
    alice.wait_for_function("document.querySelector('#yaml-text').value.includes('rss-basics')")
    assert alice.get_attribute("#tab-yaml", "aria-selected") == "true"
    assert right["steer"]["hash"] not in alice.input_value("#yaml-text")
    alice.screenshot(path=SHOTS.format("5-open-in-lab"))

    # --- the gradebook and its CSV show both
    page.goto(f"/exercises/manage/{SLUG}/gradebook/")
    page.wait_for_selector("#histogram[data-ready=true]")
    assert page.inner_text("#gradebook tr[data-student=alice] td.best") == "6"
    assert page.inner_text("#gradebook tr[data-student=bob] td.best") == "0"
    page.screenshot(path=SHOTS.format("6-gradebook"), full_page=True)
    csv_text = page.request.get(f"/exercises/manage/{SLUG}/gradebook.csv").text()
    assert f"alice,{seeds['alice']},0,6,6,1," in csv_text
    assert f"bob,{seeds['bob']},0,0,6,1," in csv_text

    for who in (page, alice, bob):
        assert who.console_errors == []
