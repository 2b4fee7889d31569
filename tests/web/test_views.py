"""Pages through Django's test client: login required, access rules, bad input → 4xx."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group, User
from django.urls import reverse

from labsite.lab.models import Scenario
from labsite.runs.models import Run

pytestmark = pytest.mark.django_db


@pytest.fixture
def scenario():
    return Scenario.objects.create(name="Demo", slug="demo", body="flows: 2\n")


@pytest.fixture
def student(client):
    user = User.objects.create_user("stu", password="pw-for-tests-123")
    client.force_login(user)
    return user


@pytest.mark.parametrize("url", ["/", "/runs/1/", "/runs/1/data.json"])
def test_pages_need_login(client, url):
    response = client.get(url)
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


def test_start_needs_login_and_post(client, scenario):
    url = reverse("runs:start", args=["demo"])
    assert client.post(url, {"mode": "trace", "seed": 1}).status_code == 302
    assert not Run.objects.exists()
    client.force_login(User.objects.create_user("x"))
    assert client.get(url).status_code == 405


def test_login_page_and_login_flow(client):
    User.objects.create_user("ann", password="pw-for-tests-123")
    page = client.get(reverse("login"))
    assert page.status_code == 200 and b'name="username"' in page.content
    wrong = client.post(reverse("login"), {"username": "ann", "password": "nope"})
    assert wrong.status_code == 200 and b"didn't match" in wrong.content
    ok = client.post(reverse("login"), {"username": "ann", "password": "pw-for-tests-123"})
    assert ok.status_code == 302 and ok["Location"] == reverse("lab:index")
    assert client.post(reverse("logout")).status_code == 302


def test_index_lists_scenarios_and_only_own_runs(client, student, scenario):
    other = User.objects.create_user("other")
    Run.objects.create(scenario=scenario, scenario_body="", ran_by=student)
    Run.objects.create(scenario=scenario, scenario_body="", ran_by=other)
    page = client.get("/")
    assert page.status_code == 200
    assert b"Demo" in page.content
    assert len(page.context["runs"]) == 1


def test_start_run_redirects_to_the_run_page(client, student, scenario,
                                             django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = client.post(reverse("runs:start", args=["demo"]),
                               {"mode": "batch", "seed": "42"})
    run = Run.objects.get()
    assert response.status_code == 302 and response["Location"] == f"/runs/{run.pk}/"
    assert (run.mode, run.seed, run.ran_by, run.status) == ("batch", 42, student, "queued")
    assert run.scenario_body == scenario.body
    assert len(callbacks) == 1  # the task is queued only once the row is committed
    page = client.get(response["Location"])
    assert page.status_code == 200 and b'data-ws-path="/ws/runs/' in page.content
    assert b"vendor/plotly.min.js" in page.content


@pytest.mark.parametrize(("data", "message"), [
    ({"mode": "replay", "seed": "1"}, b"Select a valid choice"),
    ({"mode": "trace", "seed": "abc"}, b"Enter a whole number"),
    ({"mode": "trace", "seed": "-3"}, b"greater than or equal to 0"),
    ({"mode": "trace", "seed": str(2**40)}, b"less than or equal to 4294967295"),
    ({}, b"This field is required"),
])
def test_bad_start_input_is_a_400_with_the_reason(client, student, scenario, data, message):
    response = client.post(reverse("runs:start", args=["demo"]), data)
    assert response.status_code == 400
    assert message in response.content
    assert not Run.objects.exists()


def test_unknown_scenario_and_run_are_404_not_500(client, student):
    assert client.post(reverse("runs:start", args=["nope"]), {"mode": "trace",
                                                              "seed": 1}).status_code == 404
    assert client.get("/runs/999999/").status_code == 404
    assert client.get("/runs/abc/").status_code == 404


def test_runs_of_others_are_hidden_from_students_not_instructors(client, student, scenario):
    owner = User.objects.create_user("owner")
    run = Run.objects.create(scenario=scenario, scenario_body="", ran_by=owner,
                             status="succeeded", summary={"totals": {"flows": 2}},
                             flows=[{"flow": 0}], trace=[{"seq": 0}])
    assert client.get(f"/runs/{run.pk}/").status_code == 404
    assert client.get(f"/runs/{run.pk}/data.json").status_code == 404
    teacher = User.objects.create_user("teacher")
    teacher.groups.add(Group.objects.get_or_create(name="instructor")[0])
    client.force_login(teacher)
    data = client.get(f"/runs/{run.pk}/data.json").json()
    assert data == {"type": "status", "run": run.pk, "status": "succeeded", "progress": 0.0,
                    "event_count": 0, "error": "", "summary": {"totals": {"flows": 2}},
                    "flows": [{"flow": 0}], "trace": [{"seq": 0}]}


def test_scenario_body_must_parse(scenario):
    from django.core.exceptions import ValidationError

    scenario.body = "flows: [1, 2"
    with pytest.raises(ValidationError, match="body: expected YAML or JSON"):
        scenario.full_clean()


def test_admin_lists_runs_and_scenarios_for_staff(admin_client, scenario):
    Run.objects.create(scenario=scenario, scenario_body="")
    assert admin_client.get("/admin/runs/run/").status_code == 200
    assert admin_client.get("/admin/lab/scenario/").status_code == 200
    assert admin_client.get("/admin/lab/scenario/add/").status_code == 200


def test_demo_data_is_idempotent_and_prints_passwords_once():
    from labsite.lab.services import demo_data_ensure, example_scenarios

    first = demo_data_ensure()
    assert sorted(c.username for c in first) == ["instructor", "student"]
    instructor = User.objects.get(username="instructor")
    assert instructor.is_staff and instructor.groups.filter(name="instructor").exists()
    assert instructor.check_password(next(c.password for c in first if c.role == "instructor"))
    assert instructor.has_perm("lab.change_scenario")
    examples = example_scenarios()
    assert examples and all(e["name"] and e["body"] for e in examples)
    assert Scenario.objects.count() == len(examples)
    assert demo_data_ensure() == []
    assert Scenario.objects.count() == len(examples)


def test_scenarios_load_keeps_edited_scenarios():
    from labsite.lab.services import BUILTIN_SCENARIOS, scenarios_load

    assert len(scenarios_load(BUILTIN_SCENARIOS)) == 1
    Scenario.objects.update(body="edited: true")
    assert scenarios_load(BUILTIN_SCENARIOS) == []
    assert Scenario.objects.get().body == "edited: true"
