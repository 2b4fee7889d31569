"""Who may call what: every API endpoint × anonymous, the owner (a student), another
student, an instructor, the owner's read-only, revoked and expired tokens. The table must
name every route under /api/v1/ and each of its methods: a route added without a row
fails ``test_every_route_and_method_has_a_row``.

For the exercise endpoints the owner is a student who started the exercise and has a
graded attempt; the other student and the instructor have not started it (so what needs a
variant of one's own is a 400 for them), and only the instructor reads the gradebook."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.contrib.auth.models import Group, User
from django.urls import get_resolver, reverse
from django.utils import timezone

from engine.exercises import PACK_DIR
from engine.runs.run import verify_scenario
from engine.scenarios.scenario import load_scenario
from labsite.api.services import token_create, token_revoke
from labsite.exercises import services as exercise_services
from labsite.exercises.models import Attempt, Exercise, ExerciseVersion, StudentVariant
from labsite.lab.builder import PRESETS, scenario_yaml_from_builder
from labsite.lab.models import Scenario
from labsite.runs.models import Batch, Run

pytestmark = pytest.mark.django_db
NAT = scenario_yaml_from_builder(PRESETS["nat"])
#: a whole stored report (what a worker stores), so the HTML report can be drawn from it
REPORT = verify_scenario(load_scenario(NAT), mode="trace", rows=True).as_dict()
BASICS = (PACK_DIR / "01-rss-basics.yaml").read_text()
PRINCIPALS = ("anonymous", "owner", "other", "instructor", "read_only", "revoked", "expired")


def _run(owner, *, batch=None) -> Run:
    return Run.objects.create(
        scenario_body=NAT, ran_by=owner, mode="trace", title="nat", status="succeeded",
        batch=batch, summary={"flows": 3, "symmetric": 3, "handed_off": 0, "refused": 0,
                              "asymmetric": 0, "passed": True},
        report={**REPORT, "rows_total": len(REPORT["rows"])})


def _exercise(owner) -> dict:
    """A published exercise, the owner's variant and one graded attempt (made once per
    test: no exercise route deletes anything)."""
    exercise, created = Exercise.objects.get_or_create(
        slug="rss-basics", defaults={"title": "RSS basics", "published": True})
    if created:
        version = ExerciseVersion.objects.create(exercise=exercise, number=1, text=BASICS)
        variant = StudentVariant.objects.create(exercise=exercise, student=owner, seed=1234)
        attempt = Attempt.objects.create(variant=variant, version=version, token="p" * 24,
                                         answers={"buckets": {"value": "8"}}, max_score=6)
        exercise_services.attempt_grade(attempt.pk)  # in-process, as the worker does
    attempt = Attempt.objects.get(variant__exercise=exercise, token="p" * 24)
    return {"slug": exercise.slug, "attempt_id": attempt.pk}


def _objects(owner) -> dict:
    scenario = Scenario.objects.create(name="mine", slug=f"mine-{Scenario.objects.count()}",
                                       body=NAT, owner=owner)
    batch = Batch.objects.create(owner=owner, title="b")
    _run(owner, batch=batch)
    return {"run_id": _run(owner).pk, "scenario_id": scenario.pk, "batch_id": batch.pk,
            **_exercise(owner)}


# (route name, method, URL kwargs used, body, success status, others' status, read-only
#  [, {principal: status} where one differs])
NOT_STARTED = {"instructor": 400}  # needs a variant of one's own: the instructor has none
INSTRUCTOR_ONLY = {"owner": 404, "read_only": 404}
ROWS = [
    ("schema", "get", (), None, 200, 200, 200),
    ("docs", "get", (), None, 200, 200, 200),
    ("redoc", "get", (), None, 200, 200, 200),
    ("hash", "post", (), {"src": "10.0.0.1", "dst": "10.0.0.2"}, 200, 200, 200),
    ("scenarios", "get", (), None, 200, 200, 200),
    ("scenarios", "post", (), {"body": NAT, "name": "new"}, 201, 201, 403),
    ("scenario-validate", "post", (), {"body": NAT}, 200, 200, 200),
    ("scenario", "get", ("scenario_id",), None, 200, 404, 200),
    ("scenario", "put", ("scenario_id",), {"body": NAT}, 200, 404, 403),
    ("scenario", "patch", ("scenario_id",), {"name": "renamed"}, 200, 404, 403),
    ("scenario", "delete", ("scenario_id",), None, 204, 404, 403),
    ("runs", "get", (), None, 200, 200, 200),
    ("runs", "post", (), {"scenario": NAT, "mode": "trace"}, 202, 202, 403),
    ("run", "get", ("run_id",), None, 200, 404, 200),
    ("run", "delete", ("run_id",), None, 200, 404, 403),
    ("run-cancel", "post", ("run_id",), None, 200, 404, 403),
    ("run-rows", "get", ("run_id",), None, 200, 404, 200),
    ("run-pcap", "get", ("run_id",), None, 200, 404, 200),
    ("run-report", "get", ("run_id",), None, 200, 404, 200),
    ("run-junit", "get", ("run_id",), None, 200, 404, 200),
    ("batches", "get", (), None, 200, 200, 200),
    ("batches", "post", (), {"items": [{"scenario": NAT}]}, 202, 202, 403),
    ("batch", "get", ("batch_id",), None, 200, 404, 200),
    ("batch-junit", "get", ("batch_id",), None, 200, 404, 200),
    ("exercises", "get", (), None, 200, 200, 200),
    ("exercise", "get", ("slug",), None, 200, 200, 200),  # others: their own (no) variant
    ("exercise-attempts", "get", ("slug",), None, 200, 200, 200),
    ("exercise-attempts", "post", ("slug",), {"answers": {"order": {"choice": "a"}}},
     202, 400, 403, NOT_STARTED),
    ("exercise-attempt", "get", ("slug", "attempt_id"), None, 200, 404, 200),
    ("exercise-hints", "post", ("slug",), {"question": "steer", "index": 0}, 200, 400, 403,
     NOT_STARTED),
    # after the rows above: until then the other student has not started it
    ("exercise-start", "post", ("slug",), None, 200, 200, 403),
    ("exercise-gradebook", "get", ("slug",), None, 200, 404, 200, INSTRUCTOR_ONLY),
    ("exercise-gradebook-csv", "get", ("slug",), None, 200, 404, 200, INSTRUCTOR_ONLY),
]
PUBLIC = {"schema", "docs", "redoc"}


def _expected(row, principal: str) -> int:
    name, _method, _kwargs, _body, success, others, read_only, *overrides = row
    if name in PUBLIC:
        return 200
    if principal in ("anonymous", "revoked", "expired"):
        return 401
    if overrides and principal in overrides[0]:
        return overrides[0][principal]
    return {"owner": success, "instructor": success, "other": others,
            "read_only": read_only}[principal]


@pytest.fixture
def people():
    owner = User.objects.create_user("alice")
    other = User.objects.create_user("bob")
    teacher = User.objects.create_user("teacher")
    teacher.groups.add(Group.objects.get_or_create(name="instructor")[0])
    tokens = {"read_only": token_create(user=owner, name="ro", read_only=True)[1],
              "expired": token_create(user=owner, name="old",
                                      expires_at=timezone.now() - timedelta(days=1))[1]}
    revoked, tokens["revoked"] = token_create(user=owner, name="gone")
    token_revoke(revoked)
    return {"owner": owner, "other": other, "instructor": teacher, "tokens": tokens}


def _call(client, people, principal: str, row):
    name, method, kwargs, body, *_ = row
    objects = _objects(people["owner"])  # fresh ones: some calls delete what they name
    url = reverse(f"api:{name}", kwargs={k: objects[k] for k in kwargs})
    headers = {}
    client.logout()
    if principal in ("owner", "other", "instructor"):
        client.force_login(people[principal])
    elif principal in people["tokens"]:
        headers["HTTP_AUTHORIZATION"] = f"Bearer {people['tokens'][principal]}"
    extra = {"data": json.dumps(body), "content_type": "application/json"} if body else {}
    return getattr(client, method)(url, **extra, **headers)


@pytest.mark.parametrize("principal", PRINCIPALS)
def test_the_permission_matrix(client, people, principal):
    wrong = []
    for row in ROWS:
        response = _call(client, people, principal, row)
        expected = _expected(row, principal)
        if response.status_code != expected:
            wrong.append(f"{row[1].upper()} {row[0]}: {response.status_code} "
                         f"(expected {expected}) {response.content[:200]!r}")
        elif response.status_code >= 400:
            assert set(response.json()["errors"][0]) == {"code", "field", "line", "message"}
            if response.status_code == 401:
                assert response["WWW-Authenticate"] == 'Bearer realm="rsslab"'
    assert not wrong, "\n".join(wrong)


def test_a_student_token_never_reads_another_students_runs(client, people):
    _, secret = token_create(user=people["other"], name="bob")
    objects = _objects(people["owner"])
    headers = {"HTTP_AUTHORIZATION": f"Bearer {secret}"}
    assert client.get(f"/api/v1/runs/{objects['run_id']}", **headers).status_code == 404
    listed = client.get("/api/v1/runs", **headers).json()
    assert listed["count"] == 0
    assert client.get("/api/v1/batches", **headers).json()["count"] == 0


def test_healthz_needs_no_login(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": "ok", "redis": "ok"}


def test_every_route_and_method_has_a_row():
    api = next(p for p in get_resolver().url_patterns
               if getattr(p, "namespace", None) == "api")
    routes = set()
    for pattern in api.url_patterns:
        if not str(pattern.pattern).lstrip("^").startswith("v1/"):
            continue
        if pattern.name == "not-found":  # the JSON 404 for every path that is no endpoint
            continue
        view = pattern.callback.view_class
        for method in ("get", "post", "put", "patch", "delete"):
            if hasattr(view, method):
                routes.add((pattern.name, method))
    rows = {(row[0], row[1]) for row in ROWS}
    assert routes - rows == set(), f"routes without a row in ROWS: {sorted(routes - rows)}"
    assert rows - routes == set(), f"rows for no route: {sorted(rows - routes)}"


def test_a_student_never_sees_another_students_variant_answers_or_a_solution(
        client, people, settings):
    from engine.exercises import load_exercise, solve

    settings.EXERCISE_SECRET = "permissions-test-secret"
    objects = _exercise(people["owner"])
    slug, attempt_id = objects["slug"], objects["attempt_id"]
    reference = solve(load_exercise(BASICS), 1234)  # the owner's variant's solution
    _, owner_secret = token_create(user=people["owner"], name="alice")
    _, other_secret = token_create(user=people["other"], name="bob")
    as_owner = {"HTTP_AUTHORIZATION": f"Bearer {owner_secret}"}
    as_other = {"HTTP_AUTHORIZATION": f"Bearer {other_secret}"}

    mine = client.get(f"/api/v1/exercises/{slug}", **as_owner).json()
    assert mine["variant"]["questions"] and "seed" not in mine["variant"]
    assert reference["steer"]["hash"] not in json.dumps(mine)       # no solution in the view

    before = client.get(f"/api/v1/exercises/{slug}", **as_other).json()
    assert before["variant"] is None and before["status"] == "not started"
    assert client.get(f"/api/v1/exercises/{slug}/attempts/{attempt_id}",
                      **as_other).status_code == 404
    assert client.get(f"/api/v1/exercises/{slug}/attempts", **as_other).json()["count"] == 0
    started = client.post(f"/api/v1/exercises/{slug}/start", **as_other).json()
    theirs = started["variant"]
    assert "seed" not in theirs and theirs["prompt"] != mine["variant"]["prompt"]
    assert reference["steer"]["hash"] not in json.dumps(started)
    for path in (f"/api/v1/exercises/{slug}/gradebook", f"/api/v1/exercises/{slug}/"
                                                         f"gradebook.csv"):
        assert client.get(path, **as_other).status_code == 404
