"""The REST API's exercise endpoints over HTTP on a real daphne, with a real Celery worker
grading and Redis: a student's token lists the exercise, starts it, reads their variant
(no seed, no solution), submits the engine's ``solve`` answers for their stored seed with
an ``Idempotency-Key`` (a retry is the same attempt), polls the ``Location`` until the
worker has graded it with full marks; the instructor's token reads it in the gradebook's
JSON and CSV (the page's CSV: seed column). Every answer, a variant and a graded attempt
included, is checked against the API's own OpenAPI schema (schemathesis's generated
requests in test_api_v1_schemathesis.py never find an exercise to open)."""

from __future__ import annotations

import csv
import io
import time

import pytest
from django.contrib.auth.models import Group, User

from engine.exercises import PACK_DIR, load_exercise, solve
from labsite.api.services import token_create
from labsite.exercises.models import Exercise, ExerciseVersion, StudentVariant
from labsite.lab.models import INSTRUCTOR_GROUP, STUDENT_GROUP
from tests.web.helpers import api_request

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.stack]
BASICS = (PACK_DIR / "01-rss-basics.yaml").read_text()
SLUG = "rss-basics"


@pytest.fixture
def tokens():
    """A published exercise (stored as the pack loader stores it), a student's and an
    instructor's tokens."""
    exercise = Exercise.objects.create(slug=SLUG, title="RSS basics", published=True)
    ExerciseVersion.objects.create(exercise=exercise, number=1, text=BASICS)
    made = {}
    for name, group in (("teacher", INSTRUCTOR_GROUP), ("alice", STUDENT_GROUP)):
        user = User.objects.create_user(name)
        user.groups.add(Group.objects.get_or_create(name=group)[0])
        made[name] = token_create(user=user, name=name)[1]
    return made


def test_a_student_submits_the_engines_answers_and_the_gradebook_shows_them(
        tokens, worker, daphne_url):
    student, teacher = tokens["alice"], tokens["teacher"]

    status, listed, _ = api_request(daphne_url, "GET", "/api/v1/exercises", token=student)
    assert status == 200 and listed["count"] == 1
    row = listed["results"][0]
    assert (row["slug"], row["status"], row["score"], row["max_score"]) == (
        SLUG, "not started", None, 6.0)
    status, before, _ = api_request(daphne_url, "GET", row["url"], token=student)
    assert status == 200 and before["variant"] is None    # a GET never starts it
    assert not StudentVariant.objects.exists()

    status, started, _ = api_request(daphne_url, "POST", f"/api/v1/exercises/{SLUG}/start",
                                     token=student)
    assert status == 200, started
    variant = started["variant"]
    assert "seed" not in variant and variant["prompt"] and variant["scenario"]
    assert [q["id"] for q in variant["questions"]] == ["steer", "buckets", "core0", "order"]
    assert variant["questions"][0]["answer_fields"] == ["hash", "bucket", "core"]
    assert variant["questions"][0]["hints"][0] == {"index": 0, "number": 1, "cost": 0.5,
                                                   "text": None}

    seed = StudentVariant.objects.get().seed             # the stored seed, never re-derived
    answers = solve(load_exercise(BASICS), seed)
    assert answers["steer"]["hash"] not in str(started)  # the view holds no solution
    request = {"answers": answers}
    key = {"Idempotency-Key": "alice-try-1"}
    status, attempt, headers = api_request(daphne_url, "POST", started["attempts_url"],
                                           token=student, data=request, headers=key)
    assert status == 202, attempt
    location = headers["Location"]
    assert location == f"{daphne_url}{attempt['url']}" and attempt["status"] in (
        "queued", "grading", "graded")
    # A retried POST (a CI job's, a double click) is the same attempt: counted once.
    status, again, again_headers = api_request(daphne_url, "POST", started["attempts_url"],
                                               token=student, data=request, headers=key)
    assert (status, again["attempt"], again_headers["Idempotent-Replayed"]) == (
        202, attempt["attempt"], "true")

    deadline = time.monotonic() + 60
    while not attempt["finished"]:
        assert time.monotonic() < deadline, f"attempt not graded: {attempt['status']}"
        time.sleep(0.2)
        status, attempt, _ = api_request(daphne_url, "GET", location.removeprefix(daphne_url),
                                         token=student)
        assert status == 200
    assert (attempt["status"], attempt["score"], attempt["max_score"], attempt["total"]) == (
        "graded", 6.0, 6.0, 6.0), attempt
    assert [q["id"] for q in attempt["questions"]] == ["steer", "buckets", "core0", "order"]
    status, history, _ = api_request(daphne_url, "GET", started["attempts_url"], token=student)
    assert history["count"] == 1                         # the retry made no second one
    status, listed, _ = api_request(daphne_url, "GET", "/api/v1/exercises", token=student)
    assert (listed["results"][0]["status"], listed["results"][0]["score"]) == ("graded", 6.0)

    status, book, _ = api_request(daphne_url, "GET", f"/api/v1/exercises/{SLUG}/gradebook",
                                  token=teacher)
    assert status == 200, book
    assert [(r["username"], r["seed"], r["best_score"], r["attempts"]) for r in book["rows"]] \
        == [("alice", seed, 6.0, 1)]
    assert book["max_score"] == 6.0 and book["scores"] == [6.0]
    assert {s["id"]: s["rate"] for s in book["success"]} == {
        "steer": 1.0, "buckets": 1.0, "core0": 1.0, "order": 1.0}
    status, text, headers = api_request(daphne_url, "GET", book["csv_url"], token=teacher)
    assert status == 200 and headers["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(text.decode())))
    assert [(r["username"], r["seed"], r["best_score"], r["max_score"], r["attempts"])
            for r in rows] == [("alice", str(seed), "6", "6", "1")]
    status, refused, _ = api_request(daphne_url, "GET", book["csv_url"], token=student)
    assert status == 404 and refused["errors"][0]["code"] == "not_found"

    attempt_path = location.removeprefix(daphne_url)
    conforms(daphne_url, [
        (student, "GET", "/api/v1/exercises", "/api/v1/exercises", None),
        (student, "GET", "/api/v1/exercises/{slug}", f"/api/v1/exercises/{SLUG}", None),
        (student, "POST", "/api/v1/exercises/{slug}/start", f"/api/v1/exercises/{SLUG}/start",
         None),
        (student, "GET", "/api/v1/exercises/{slug}/attempts", started["attempts_url"], None),
        (student, "GET", "/api/v1/exercises/{slug}/attempts/{attempt_id}", attempt_path, None),
        (teacher, "GET", "/api/v1/exercises/{slug}/attempts/{attempt_id}", attempt_path, None),
        (teacher, "GET", "/api/v1/exercises/{slug}/gradebook", book["csv_url"][:-4], None),
        (teacher, "GET", "/api/v1/exercises/{slug}/gradebook.csv", book["csv_url"], None),
        (student, "POST", "/api/v1/exercises/{slug}/hints", f"/api/v1/exercises/{SLUG}/hints",
         {"question": "steer", "index": 0}),
        (student, "POST", "/api/v1/exercises/{slug}/attempts", started["attempts_url"],
         {"answers": {"nope": {"x": 1}}}),
    ])


def conforms(daphne_url: str, calls) -> None:
    """Each call's response (status, content type, body) as the schema documents it."""
    import requests
    import schemathesis

    schema = schemathesis.openapi.from_url(f"{daphne_url}/api/v1/schema/")
    for token, method, template, path, body in calls:
        response = requests.request(method, daphne_url + path, json=body, timeout=30,
                                    headers={"Authorization": f"Bearer {token}"})
        assert response.status_code < 500, (path, response.text)
        schema[template][method].validate_response(response)
