"""Every exercise URL for anonymous, a student, another student and an instructor.

The table has one row per route of the ``exercises`` namespace; the test walks the URL
resolver, so a route added without a row fails here. A student's own attempt is wrong
on purpose (the engine then reveals nothing), and no response to anybody but the
instructor carries the solution, nor any of the student's variant to another student.
The app has no websocket (pages poll a JSON status), so there is none to test.
"""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group, User
from django.test import Client
from django.urls import get_resolver, reverse

from engine.exercises import PACK_DIR, build_variant, solve
from labsite.exercises import services
from labsite.exercises.engine_io import load_version

pytestmark = pytest.mark.django_db
BASICS = (PACK_DIR / "01-rss-basics.yaml").read_text()
ROLES = ("anonymous", "student", "other", "instructor")

# name: (method, statuses for ROLES), checked in this order; kwargs come from the
# fixture's objects. 302 for a page means "to the log-in page" (anonymous) or the
# redirect a POST answers with.
TABLE = {
    "index": ("GET", (302, 200, 200, 200)),
    "detail": ("GET", (302, 200, 200, 200)),
    "start": ("POST", (302, 302, 302, 302)),
    # Each role's own variant (an instructor's once "start" above has made it).
    "hint": ("GET", (302, 200, 200, 200)),
    "api-submit": ("POST", (403, 201, 201, 201)),
    "api-attempt": ("GET", (403, 200, 404, 404)),  # the student's own attempt only
    "api-scenario": ("GET", (403, 200, 200, 200)),
    "manage": ("GET", (302, 404, 404, 200)),
    "upload": ("GET", (302, 404, 404, 200)),
    "roster": ("GET", (302, 404, 404, 200)),
    "password-reset": ("POST", (302, 404, 404, 200)),
    "publish": ("GET", (302, 404, 404, 200)),
    "preview": ("GET", (302, 404, 404, 200)),
    "gradebook": ("GET", (302, 404, 404, 200)),
    "gradebook-csv": ("GET", (302, 404, 404, 200)),
    "regrade": ("POST", (302, 404, 404, 302)),
    "student": ("GET", (302, 404, 404, 200)),
    "reset": ("POST", (302, 404, 404, 302)),
}


def exercise_routes() -> set[str]:
    resolver = next(p for p in get_resolver().url_patterns
                    if getattr(p, "namespace", None) == "exercises")
    return {pattern.name for pattern in resolver.url_patterns}


def test_every_route_has_a_row():
    assert exercise_routes() == set(TABLE)


@pytest.fixture
def world(settings):
    settings.EXERCISE_SECRET = "permissions-secret"
    teacher = User.objects.create_user("teacher")
    teacher.groups.add(Group.objects.get_or_create(name="instructor")[0])
    exercise = services.exercise_upload(user=teacher, text=BASICS).exercise
    exercise.published = True
    exercise.save()
    alice, bob = User.objects.create_user("alice"), User.objects.create_user("bob")
    variant = services.variant_start(exercise, alice)
    services.variant_start(exercise, bob)
    attempt = services.attempt_submit(user=alice, exercise=exercise, token="a" * 24,
                                      data={"q-steer-hash": "0x1", "q-order-choice": "b"})
    services.attempt_grade(attempt.pk)
    engine_exercise = load_version(exercise.versions.get())
    built = build_variant(engine_exercise, variant.seed)
    return {"exercise": exercise, "alice": alice, "bob": bob, "teacher": teacher,
            "attempt": attempt, "variant": variant,
            "secret_of_alice": solve(engine_exercise, variant.seed)["steer"]["hash"],
            "alices_client": f"{built.values['client']}:{built.values['cport']}"}


def kwargs_for(name: str, world) -> dict:
    slug = world["exercise"].slug
    return {
        "index": {}, "manage": {}, "upload": {}, "roster": {},
        "password-reset": {"user_id": world["alice"].pk},
        "hint": {"slug": slug, "question": "steer", "index": 0},
        "api-attempt": {"slug": slug, "attempt_id": world["attempt"].pk},
        "student": {"slug": slug, "user_id": world["alice"].pk},
        "reset": {"slug": slug, "user_id": world["alice"].pk},
    }.get(name, {"slug": slug})


def client_for(role: str, world) -> Client:
    client = Client()
    user = {"student": "alice", "other": "bob", "instructor": "teacher"}.get(role)
    if user:
        client.force_login(world[user])
    return client


POST_DATA = {"api-submit": {"q-buckets-value": "3"}}


@pytest.mark.parametrize("role", ROLES)
def test_each_route_answers_each_role_as_the_table_says(world, role):
    client = client_for(role, world)
    seen = {}
    for index, name in enumerate(sorted(TABLE, key=lambda n: n in ("reset", "password-reset"))):
        method, statuses = TABLE[name]
        url = reverse(f"exercises:{name}", kwargs=kwargs_for(name, world))
        if method == "POST":
            data = {**POST_DATA.get(name, {}), "token": f"{role}-{index}".ljust(24, "x")}
            response = client.post(url, data)
        else:
            response = client.get(url)
        expected = statuses[ROLES.index(role)]
        assert response.status_code == expected, (name, role, response.content[:300])
        if role == "anonymous" and expected == 302:
            assert response["Location"].startswith("/accounts/login/")
        seen[name] = response.content.decode(errors="replace")
        # A method a route does not take is refused, never served (these four are forms
        # that take both).
        if name not in ("hint", "upload", "roster", "publish"):
            other = client.get(url) if method == "POST" else client.post(url)
            assert other.status_code in (302, 403, 404, 405), (name, role, "other method")
    if role in ("student", "other"):
        for name, body in seen.items():
            assert world["secret_of_alice"] not in body, (name, "solution leaked")
    if role == "other":
        for name, body in seen.items():
            assert str(world["variant"].seed) not in body, (name, "another's seed")
            assert world["alices_client"] not in body, (name, "another's variant")
