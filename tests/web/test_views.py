"""The lab page and its JSON API through Django's test client: shapes of success and error.

Runs are queued but not executed here (``django_capture_on_commit_callbacks`` without
executing); test_stack.py runs them on a real worker.
"""

from __future__ import annotations

import copy
import json

import pytest
from django.contrib.auth.models import Group, User
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from engine.examples import EXAMPLES_DIR
from labsite.lab.builder import PRESETS
from labsite.lab.models import Scenario
from labsite.runs.models import Run, RunCapture, RunEventChunk
from tests.web.helpers import post_json

pytestmark = pytest.mark.django_db

TYPO_YAML = """schema_version: 1
name: typo
system:
  cores: 4
services:
  - name: web
    vip: 192.0.2.10
    vport: 80
    policy: natt
    servers: ["10.0.0.1:80"]
traffic: {generated: {count: 10}}
"""




@pytest.mark.parametrize("url", ["/", "/lab/", "/runs/", "/runs/1/"])
def test_pages_need_login(client, url):
    response = client.get(url, follow=url == "/")
    assert response.redirect_chain[-1][0].startswith(reverse("login")) if url == "/" else (
        response.status_code == 302 and response["Location"].startswith(reverse("login")))


@pytest.mark.parametrize(("method", "url"), [
    ("post", "/lab/api/runs/"), ("get", "/lab/api/runs/1/"), ("get", "/lab/api/runs/1/events/"),
    ("get", "/lab/api/explain/?src=1.2.3.4&dst=5.6.7.8"), ("post", "/lab/api/compare/"),
    ("get", "/lab/api/runs/1/pcap"),
])
def test_api_refuses_strangers_with_json_403(client, method, url):
    response = getattr(client, method)(url)
    assert response.status_code == 403
    assert response.json() == {"errors": [{"code": "not_authenticated", "field": "login",
                                           "line": None, "message": "log in to use the lab"}]}


def test_login_lands_on_the_lab(client):
    User.objects.create_user("ann", password="pw-for-tests-123")
    ok = client.post(reverse("login"), {"username": "ann", "password": "pw-for-tests-123"})
    assert ok.status_code == 302 and ok["Location"] == "/lab/"
    assert client.get("/").headers["Location"] == "/lab/"
    wrong = client.post(reverse("login"), {"username": "ann", "password": "nope"})
    assert wrong.status_code == 200 and b"didn't match" in wrong.content


def test_workbench_context(client, student, examples):
    page = client.get("/lab/")
    assert page.status_code == 200
    context = page.context
    assert set(context["presets_json"]) == {"nat", "usip", "transparent"}
    nat = context["presets_json"]["nat"]
    assert nat["key"] == "microsoft" and nat["cores"] == 4 and nat["hash_bits"] == 7
    assert nat["traffic"]["flows"][0]["client"] == "66.9.149.187:2794"
    assert nat["service"]["vip"] == "161.142.100.80" and nat["service"]["vport"] == 1766
    names = [e["name"] for e in context["examples"]]
    assert "nat-microsoft" in names and "pcap-replay" in names
    assert context["limits_json"]["trace_max_flows"] == 5000
    assert context["limits_json"]["pcap_max_bytes"] == 2 * 1024 * 1024
    assert context["run_json"] is None
    assert context["defaults_json"]["policy"] == "nat"
    assert b"vendor/plotly.min.js" in page.content
    # The context reaches the page as JSON a script can read.
    assert b'id="lab-presets"' in page.content


def test_get_views_only_read(client, student, settings):
    """No GET writes (the beat process reaps and stores the examples: labsite/beat.py): not
    the lab page, the run API, the runs list, even with a lost run, a run queued for days
    and no example stored yet."""
    from datetime import timedelta

    from django.db import connection
    from django.test.utils import CaptureQueriesContext
    from django.utils import timezone

    from labsite.lab.builder import scenario_yaml_from_builder

    body = scenario_yaml_from_builder(PRESETS["nat"])
    lost = Run.objects.create(scenario_body=body, ran_by=student, status="running",
                              attempts=1, heartbeat_at=timezone.now() - timedelta(hours=1))
    RunEventChunk.objects.create(run=lost, first_seq=0, last_seq=0, events=[{"seq": 0}])
    waiting = Run.objects.create(scenario_body=body, ran_by=student)
    Run.objects.filter(pk=waiting.pk).update(created_at=timezone.now() - timedelta(days=2))
    urls = ["/lab/", f"/lab/?run={lost.pk}", f"/lab/?run={waiting.pk}", "/runs/",
            f"/runs/{lost.pk}/", f"/lab/api/runs/{lost.pk}/", f"/lab/api/runs/{waiting.pk}/",
            f"/lab/api/runs/{lost.pk}/events/", f"/lab/api/runs/{lost.pk}/pcap",
            "/lab/api/explain/?src=66.9.149.187&dst=161.142.100.80"]
    with CaptureQueriesContext(connection) as queries:
        for url in urls:
            assert client.get(url).status_code in (200, 302), url
    writes = [q["sql"] for q in queries.captured_queries
              if q["sql"].lstrip().split(None, 1)[0].upper() in {"INSERT", "UPDATE", "DELETE",
                                                                 "REPLACE"}]
    assert queries.captured_queries and writes == []
    assert [Run.objects.get(pk=r.pk).status for r in (lost, waiting)] == ["running", "queued"]
    assert not Scenario.objects.exists()  # examples are stored by beat, not by the page


def test_the_page_takes_its_urls_from_one_place(client, student):
    """The template renders every URL the scripts use (reversed by name, a run's with a
    placeholder id); the scripts themselves spell none."""
    import re
    from pathlib import Path

    from labsite.runs.selectors import run_urls
    from labsite.runs.views import RUN_ID_PLACEHOLDER

    page = client.get("/lab/").content.decode()
    block = re.search(r'<div id="lab-urls" hidden([^>]*)>', page).group(1)
    found = dict(re.findall(r'data-([a-z-]+)="([^"]*)"', block))
    run = run_urls(RUN_ID_PLACEHOLDER)
    assert found == {
        "run-id": str(RUN_ID_PLACEHOLDER), "page": reverse("runs:workbench"),
        "runs": reverse("runs:api-runs"), "compare": reverse("runs:api-compare"),
        "run": run["status_url"], "run-events": run["events_url"], "run-ws": run["ws"],
        "run-pcap": reverse("runs:api-run-pcap", args=[RUN_ID_PLACEHOLDER]),
        "run-report": reverse("runs:api-run-report", args=[RUN_ID_PLACEHOLDER]),
        "explain": reverse("lab:api-explain"), "builder-yaml": reverse("lab:api-builder-yaml")}
    scripts = Path(__file__).resolve().parents[2] / "static" / "lab"
    for script in sorted(scripts.glob("*.js")):
        text = script.read_text()
        assert not re.search(r"""["'`]/(lab|runs|ws|accounts|admin)\b""", text), script.name
        assert "data-api-" not in text and "dataset.api" not in text, script.name


def test_workbench_opens_own_runs_only(client, student):
    run = Run.objects.create(scenario_body="x", ran_by=student, title="mine")
    other = Run.objects.create(scenario_body="x", ran_by=User.objects.create_user("o"))
    page = client.get(f"/lab/?run={run.pk}")
    assert page.context["run_json"]["run"] == run.pk
    assert client.get(f"/lab/?run={other.pk}").status_code == 404
    assert client.get("/lab/?run=abc").status_code == 404


def test_submit_builder_run(client, student, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = post_json(client, "/lab/api/runs/", {
            "source": "builder", "builder": PRESETS["nat"], "mode": "trace", "seed": 5})
    assert response.status_code == 201, response.content
    body = response.json()
    run = Run.objects.get()
    assert body == {"run": run.pk, "ws": f"/ws/runs/{run.pk}/", "mode": "trace",
                    "status_url": f"/lab/api/runs/{run.pk}/",
                    "events_url": f"/lab/api/runs/{run.pk}/events/",
                    "scenario_yaml": run.scenario_body, "flows": 3}
    assert "policy: nat" in run.scenario_body
    assert (run.mode, run.seed, run.ran_by, run.status, run.scenario) == (
        "trace", 5, student, "queued", None)
    assert run.parameters == {"source": "builder"}
    assert len(callbacks) == 1  # queued once the row is committed


def test_submit_builder_as_multipart_form_with_a_pcap(client, student, data_dir,
                                                      django_capture_on_commit_callbacks):
    fields = copy.deepcopy(PRESETS["nat"])
    fields["traffic"] = {"kind": "pcap"}
    capture = (EXAMPLES_DIR / "replay.pcap").read_bytes()
    with django_capture_on_commit_callbacks(execute=False):
        response = client.post("/lab/api/runs/", {
            "source": "builder", "builder": json.dumps(fields), "mode": "batch",
            "pcap": SimpleUploadedFile("replay.pcap", capture)})
    assert response.status_code == 201, response.content
    assert response.json()["flows"] == 4
    stored = RunCapture.objects.get()
    assert bytes(stored.data) == capture and stored.name == "replay.pcap"
    assert stored.packets == 32


def test_submit_yaml_and_example(client, student, examples,
                                 django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False):
        text = (EXAMPLES_DIR / "usip-microsoft.yaml").read_text()
        typed = post_json(client, "/lab/api/runs/", {"source": "yaml", "scenario": text,
                                                      "mode": "batch"})
        example = post_json(client, "/lab/api/runs/", {"source": "example",
                                                        "example": "pcap-replay",
                                                        "mode": "trace"})
    assert typed.status_code == 201 and typed.json()["flows"] == 5000
    assert example.status_code == 201, example.content
    assert example.json()["flows"] == 4  # its replay.pcap resolved in engine/examples
    run = Run.objects.get(pk=example.json()["run"])
    assert run.scenario.example == "pcap-replay" and run.seed == 9  # the file's seed


def _errors(response, status=400):
    assert response.status_code == status, response.content
    return response.json()["errors"]


def test_yaml_problems_keep_lines_and_key_paths(client, student):
    errors = _errors(post_json(client, "/lab/api/runs/", {"source": "yaml",
                                                           "scenario": TYPO_YAML}))
    assert errors == [{"code": "scenario", "field": "services[0].policy", "line": 9,
                       "message": "expected one of nat, usip, transparent, got 'natt'"}]
    assert not Run.objects.exists()


def test_builder_problems_name_builder_fields(client, student):
    fields = copy.deepcopy(PRESETS["nat"])
    fields.update(cores=0, key="zz")
    fields["service"]["vip"] = "not-an-ip"
    fields["traffic"]["flows"][1]["client"] = "1.2.3.4"
    errors = _errors(post_json(client, "/lab/api/runs/", {"source": "builder",
                                                           "builder": fields}))
    assert {e["field"] for e in errors} == {"cores", "key", "service.vip",
                                            "traffic.flows[1].client"}
    assert all(e["line"] is None and e["message"] for e in errors)
    unknown = _errors(post_json(client, "/lab/api/runs/", {
        "source": "builder", "builder": {"cors": 4, "traffic": {"kind": "magic"}}}))
    assert unknown == [{"code": "invalid", "field": "cors", "line": None,
                        "message": unknown[0]["message"]}]
    assert "expected one of" in unknown[0]["message"]


@pytest.mark.parametrize(("content", "message"), [
    # the field is shown beside the message: the message does not repeat it
    (b"this is not a capture", "expected a pcap or pcapng file"),
    (b"", "expected a pcap or pcapng file"),
])
def test_a_bad_pcap_is_refused_before_queueing(client, student, content, message):
    fields = copy.deepcopy(PRESETS["nat"])
    fields["traffic"] = {"kind": "pcap"}
    errors = _errors(client.post("/lab/api/runs/", {
        "source": "builder", "builder": json.dumps(fields),
        "pcap": SimpleUploadedFile("x.pcap", content)}))
    assert [e["field"] for e in errors] == ["pcap"]
    assert errors[0]["message"].startswith(message)
    assert not Run.objects.exists()


def test_pcap_size_limit_and_missing_capture(client, student, settings):
    settings.LAB_PCAP_MAX_BYTES = 100
    fields = copy.deepcopy(PRESETS["nat"])
    fields["traffic"] = {"kind": "pcap"}
    capture = (EXAMPLES_DIR / "replay.pcap").read_bytes()
    errors = _errors(client.post("/lab/api/runs/", {
        "source": "builder", "builder": json.dumps(fields),
        "pcap": SimpleUploadedFile("big.pcap", capture)}))
    assert errors[0]["field"] == "pcap"
    assert errors[0]["message"] == (f"expected a capture of at most 100 bytes, got "
                                    f"{len(capture):,}")
    missing = _errors(post_json(client, "/lab/api/runs/", {"source": "builder",
                                                            "builder": fields}))
    assert missing[0]["field"] == "pcap" and "upload a pcap" in missing[0]["message"]


def test_typed_scenarios_cannot_read_server_files(client, student):
    text = TYPO_YAML.replace("natt", "nat").replace(
        "traffic: {generated: {count: 10}}", "traffic: {pcap: {path: /etc/passwd}}")
    errors = _errors(post_json(client, "/lab/api/runs/", {"source": "yaml", "scenario": text}))
    assert errors[0]["field"] == "traffic.pcap.path"
    assert "reads no files on the server" in errors[0]["message"]


def test_run_size_limits_name_the_limit(client, student):
    text = (EXAMPLES_DIR / "heavy-hitters.yaml").read_text()  # 20,000 flows
    errors = _errors(post_json(client, "/lab/api/runs/", {"source": "yaml", "scenario": text,
                                                           "mode": "trace"}))
    assert errors == [{"code": "invalid", "field": "traffic", "line": None,
                       "message": "trace mode runs at most 5,000 flows, this scenario has "
                                  "20,000 (use batch mode for large runs)"}]


@pytest.mark.parametrize(("data", "field", "message"), [
    ({"source": "magic"}, "source", "expected one of builder, yaml, example, got 'magic'"),
    ({"source": "example", "mode": "replay"}, "mode",
     "expected one of trace, batch, got 'replay'"),
    ({"source": "example", "example": "nope"}, "example", "expected one of "),
    ({"source": "yaml", "scenario": ""}, "scenario", "expected the scenario's YAML text"),
    ({"source": "builder", "builder": PRESETS["nat"], "seed": "abc"}, "seed",
     "expected an integer 0–"),
    ({"source": "builder", "builder": PRESETS["nat"], "mode": "batch", "delay_ms": 5},
     "delay_ms", "slow motion is for trace runs only"),
    ({"source": "builder", "builder": "{not json"}, "builder", "expected JSON"),
])
def test_bad_fields_are_400s_naming_the_field(client, student, data, field, message):
    errors = _errors(post_json(client, "/lab/api/runs/", data))
    assert errors[0]["field"] == field and errors[0]["message"].startswith(message)


def test_a_broken_json_body_is_a_400(client, student):
    response = client.post("/lab/api/runs/", "{", content_type="application/json")
    assert _errors(response)[0]["field"] == "body"
    assert client.get("/lab/api/runs/").status_code == 405


def test_run_status_and_events(client, student):
    run = Run.objects.create(scenario_body="name: x", ran_by=student, mode="trace",
                             status="running", event_count=450)
    for first in range(0, 450, 200):
        last = min(first + 199, 449)
        RunEventChunk.objects.create(run=run, first_seq=first, last_seq=last,
                                     events=[{"seq": s, "kind": "hashed"}
                                             for s in range(first, last + 1)])
    status = client.get(f"/lab/api/runs/{run.pk}/").json()
    assert status["status"] == "running" and status["report"] is None
    assert status["event_count"] == 450 and status["scenario_yaml"] == "name: x"
    assert {"run", "status", "progress", "error", "mode", "scenario_yaml", "report",
            "event_count"} <= set(status)

    page = client.get(f"/lab/api/runs/{run.pk}/events/?after=150&limit=100").json()
    assert [e["seq"] for e in page["events"]] == list(range(151, 251))
    assert page["next_after"] == 250 and page["complete"] is False
    rest = client.get(f"/lab/api/runs/{run.pk}/events/?after=250").json()
    assert [e["seq"] for e in rest["events"]] == list(range(251, 450))
    assert rest["complete"] is False  # still running: more may come
    Run.objects.filter(pk=run.pk).update(status="succeeded", report={"passed": True})
    done = client.get(f"/lab/api/runs/{run.pk}/events/?after=449").json()
    assert done == {"events": [], "next_after": None, "complete": True}
    everything = client.get(f"/lab/api/runs/{run.pk}/events/").json()
    assert [e["seq"] for e in everything["events"]] == list(range(450))
    assert everything["complete"] is True
    assert client.get(f"/lab/api/runs/{run.pk}/").json()["report"] == {"passed": True}
    for query, field in (("limit=0", "limit"), ("limit=5001", "limit"), ("after=x", "after")):
        assert _errors(client.get(f"/lab/api/runs/{run.pk}/events/?{query}"))[0]["field"] \
            == field


def test_runs_of_others_are_404_for_students_not_instructors(client, student):
    run = Run.objects.create(scenario_body="", ran_by=User.objects.create_user("owner"))
    assert _errors(client.get(f"/lab/api/runs/{run.pk}/"), 404)[0]["field"] == "run"
    assert client.get(f"/lab/api/runs/{run.pk}/events/").status_code == 404
    assert client.get(f"/runs/{run.pk}/").status_code == 404
    teacher = User.objects.create_user("teacher")
    teacher.groups.add(Group.objects.get_or_create(name="instructor")[0])
    client.force_login(teacher)
    assert client.get(f"/lab/api/runs/{run.pk}/").json()["run"] == run.pk
    assert client.get(f"/runs/{run.pk}/")["Location"] == f"/lab/?run={run.pk}"
    assert client.get("/runs/").context["runs"][0] == run


def test_explain_is_the_published_hash_bit_by_bit(client, student):
    data = client.get("/lab/api/explain/", {"src": "66.9.149.187", "dst": "161.142.100.80",
                                            "sport": "2794", "dport": "1766"}).json()
    assert data["hash"] == "0x51ccc178"
    assert (data["bucket"], data["core"]) == (0x78, 0x78 % 4)
    assert data["input_hex"] == "420995bba18e64500aea06e6"
    assert data["key_hex"].startswith("6d5a56da255b0ec2")
    assert data["steps"][-1]["running"] == "0x51ccc178"
    assert all(step["window"].startswith("0x") for step in data["steps"])
    two = client.get("/lab/api/explain/", {"src": "66.9.149.187", "dst": "161.142.100.80",
                                           "hash_bits": "3", "cores": "2"}).json()
    assert two["hash"] == "0x323e8fc2" and two["bucket"] == 2 and two["core"] == 0


def test_explain_takes_the_events_hashed_input_so_any_transform_reproduces(client, student):
    """A symmetric-xor NIC hashes a transformed input: the tuple alone cannot give the
    event's hash, the event's ``input_hex`` (with the run's table) always does."""
    from engine.scenarios.scenario import load_scenario
    from labsite.lab.builder import scenario_yaml_from_builder

    fields = copy.deepcopy(PRESETS["nat"])
    fields["transform"] = "symmetric-xor"
    fields["table"] = [3 - (b % 4) for b in range(128)]
    from engine.runs.run import verify_scenario

    events = []
    verify_scenario(load_scenario(scenario_yaml_from_builder(fields)), mode="trace",
                    on_event=lambda e: events.append(e.as_dict()))
    hashed = [e for e in events if e["kind"] == "hashed"]
    assert len(hashed) == 6
    table = ",".join(str(c) for c in fields["table"])
    for event in hashed:
        data = client.get("/lab/api/explain/", {"input_hex": event["input_hex"],
                                                "key": "microsoft", "hash_bits": "7",
                                                "table": table}).json()
        assert int(data["steps"][-1]["running"], 16) == event["hash"]
        assert int(data["hash"], 16) == event["hash"]
        assert (data["bucket"], data["core"]) == (event["bucket"], event["core"])
        assert data["input_hex"] == event["input_hex"] and data["cores"] == 4
    tuple_only = client.get("/lab/api/explain/", {"src": "66.9.149.187",
                                                  "dst": "161.142.100.80", "sport": "2794",
                                                  "dport": "1766"}).json()
    assert int(tuple_only["hash"], 16) != hashed[0]["hash"]   # why input_hex is needed


@pytest.mark.parametrize(("query", "fields"), [
    ({"input_hex": "zz"}, ["input_hex"]),
    ({"input_hex": "0102"}, ["input_hex"]),
    ({"input_hex": "420995bba18e64500aea06e6", "table": "0,1,x"}, ["table"]),
    ({"input_hex": "420995bba18e64500aea06e6", "hash_bits": "2", "table": "0,1,2"}, ["table"]),
    ({"input_hex": "420995bba18e64500aea06e6", "hash_bits": "1", "cores": "2",
      "table": "0,5"}, ["table[1]"]),
    ({}, ["src", "dst"]),
    ({"src": "1.2.3.4", "dst": "5.6.7.8", "sport": "1"}, ["dport"]),
    ({"src": "1.2.3.4", "dst": "::1"}, ["dst"]),
    ({"src": "1.2.3.4", "dst": "5.6.7.8", "key": "zz"}, ["key"]),
    ({"src": "1.2.3.4", "dst": "5.6.7.8", "hash_bits": "9"}, ["hash_bits"]),
    ({"src": "x", "dst": "5.6.7.8"}, ["src"]),
    ({"src": "1.2.3.4", "dst": "5.6.7.8", "sport": "70000", "dport": "1"}, ["sport"]),
])
def test_explain_errors_name_the_parameter(client, student, query, fields):
    assert [e["field"] for e in _errors(client.get("/lab/api/explain/", query))] == fields


def test_compare_submit(client, student, examples, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False):
        response = post_json(client, "/lab/api/compare/", {
            "source": "example", "example": "nat-microsoft",
            "vary": {"key": ["microsoft", "symmetric"], "policy": ["nat", "transparent"]}})
    assert response.status_code == 201, response.content
    run = Run.objects.get(pk=response.json()["run"])
    assert run.mode == "compare"
    assert run.parameters["vary"] == {"key": ["microsoft", "symmetric"],
                                      "policy": ["nat", "transparent"]}
    bad = _errors(post_json(client, "/lab/api/compare/", {
        "source": "example", "example": "nat-microsoft", "vary": {"policy": ["natt"]}}))
    assert bad[0]["field"] == "vary.policy" and "got 'natt'" in bad[0]["message"]
    empty = _errors(post_json(client, "/lab/api/compare/", {
        "source": "example", "example": "nat-microsoft"}))
    assert empty[0]["field"] == "vary"


def test_admin_lists_runs_and_scenarios_for_staff(admin_client):
    scenario = Scenario.objects.create(name="Demo", slug="demo", body="a: 1")
    run = Run.objects.create(scenario=scenario, scenario_body="")
    RunEventChunk.objects.create(run=run, first_seq=0, last_seq=0, events=[{"seq": 0}])
    for url in ("/admin/runs/run/", "/admin/lab/scenario/", "/admin/lab/scenario/add/",
                "/admin/runs/runeventchunk/", "/admin/runs/runcapture/"):
        assert admin_client.get(url).status_code == 200, url


def test_scenario_body_must_parse():
    from django.core.exceptions import ValidationError

    scenario = Scenario(name="b", slug="b", body="flows: [1, 2")
    with pytest.raises(ValidationError, match="body: expected YAML or JSON"):
        scenario.full_clean()


def test_demo_data_is_idempotent_and_prints_passwords_once():
    from labsite.lab.services import demo_data_ensure, example_scenarios

    first = demo_data_ensure()
    assert sorted(c.username for c in first) == ["instructor", "student"]
    instructor = User.objects.get(username="instructor")
    assert instructor.is_staff and instructor.groups.filter(name="instructor").exists()
    assert instructor.check_password(next(c.password for c in first if c.role == "instructor"))
    assert instructor.has_perm("lab.change_scenario")
    examples = example_scenarios()
    assert examples and all(e["name"] and e["body"] and e["example"] for e in examples)
    assert Scenario.objects.exclude(example="").count() == len(examples)
    assert demo_data_ensure() == []
    assert Scenario.objects.count() == len(examples)


def test_scenarios_load_keeps_edited_scenarios_and_marks_examples():
    from labsite.lab.services import example_scenarios, scenarios_load

    nat = next(e for e in example_scenarios() if e["example"] == "nat-microsoft")
    Scenario.objects.create(name=nat["name"], slug=nat["slug"], body="edited: true")
    assert scenarios_load([nat]) == []
    stored = Scenario.objects.get()
    assert stored.body == "edited: true" and stored.example == "nat-microsoft"


def test_an_oversized_body_is_a_400_not_a_500(client, student, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    response = post_json(client, "/lab/api/runs/", {"source": "yaml", "scenario": "x" * 2000})
    assert _errors(response)[0]["field"] == "body"


def _ran(student, fields, *, mode="trace", **extra) -> Run:
    from labsite.lab.builder import scenario_yaml_from_builder

    return Run.objects.create(scenario_body=scenario_yaml_from_builder(fields), ran_by=student,
                              mode=mode, seed=3, status="succeeded", **extra)


def test_pcap_export_is_the_runs_packets(client, student):
    from engine.scenarios.pcap import flows_from_packets, read_pcap

    run = _ran(student, PRESETS["nat"])
    response = client.get(f"/lab/api/runs/{run.pk}/pcap")
    assert response.status_code == 200, response.content
    assert response["Content-Type"] == "application/vnd.tcpdump.pcap"
    assert response["Content-Disposition"] == (
        f'attachment; filename="rsslab-run-{run.pk}-run.pcap"')
    packets = read_pcap(response.content).packets
    clients = {str(p.tuple) for p in packets}
    for flow in PRESETS["nat"]["traffic"]["flows"]:
        assert f"tcp {flow['client']} -> 161.142.100.80:1766" in clients
    # Client side and server side of three nat flows: six connections.
    assert len(flows_from_packets(packets).flows) == 6


def test_pcap_export_limits_flows_and_keeps_uploads(client, student, settings):
    from engine.scenarios.pcap import flows_from_packets, read_pcap

    settings.RUN_PCAP_EXPORT_MAX_FLOWS = 1
    limited = _ran(student, PRESETS["transparent"])
    packets = read_pcap(client.get(f"/lab/api/runs/{limited.pk}/pcap").content).packets
    assert {p.tuple.sport for p in packets} >= {2794}
    assert 14230 not in {p.tuple.sport for p in packets}   # the second flow is cut
    settings.RUN_PCAP_EXPORT_MAX_FLOWS = 100
    fields = copy.deepcopy(PRESETS["transparent"])
    fields["traffic"] = {"kind": "pcap"}
    capture = (EXAMPLES_DIR / "replay.pcap").read_bytes()
    uploaded = _ran(student, fields)
    RunCapture.objects.create(run=uploaded, name="replay.pcap", data=capture, packets=32)
    exported = read_pcap(client.get(f"/lab/api/runs/{uploaded.pk}/pcap").content).packets
    original = flows_from_packets(read_pcap(capture).packets).flows
    assert len(flows_from_packets(exported).flows) == len(original) == 4


def test_pcap_export_errors(client, student):
    other = Run.objects.create(scenario_body="", ran_by=User.objects.create_user("owner"))
    assert _errors(client.get(f"/lab/api/runs/{other.pk}/pcap"), 404)[0]["field"] == "run"
    compare = _ran(student, PRESETS["nat"], mode="compare")
    assert _errors(client.get(f"/lab/api/runs/{compare.pk}/pcap"))[0]["field"] == "run"
    broken = Run.objects.create(scenario_body="name: x\n", ran_by=student, mode="trace")
    errors = _errors(client.get(f"/lab/api/runs/{broken.pk}/pcap"))
    assert errors and set(errors[0]) == {"code", "field", "line", "message"}
    assert client.post(f"/lab/api/runs/{compare.pk}/pcap").status_code == 405


def test_the_transparent_preset_rewrites_nothing():
    # A transparent middlebox keeps the tuple: its preset's service is the server itself,
    # so the response is the request reversed (what the symmetric key is made for).
    from labsite.lab.builder import scenario_dict_from_builder

    service = scenario_dict_from_builder(copy.deepcopy(PRESETS["transparent"]))["services"][0]
    assert service["policy"] == "transparent"
    assert service["servers"] == [f"{service['vip']}:{service['vport']}"]


def test_the_runs_list_says_what_each_run_found(client, student):
    Run.objects.create(scenario_body="x", ran_by=student, status=Run.Status.SUCCEEDED,
                       title="good", summary={"flows": 3, "symmetric": 3, "handed_off": 0,
                                              "asymmetric": 0, "passed": True})
    Run.objects.create(scenario_body="x", ran_by=student, status=Run.Status.SUCCEEDED,
                       title="bad", summary={"flows": 4, "symmetric": 1, "handed_off": 0,
                                             "asymmetric": 3, "passed": False})
    page = client.get("/runs/").content.decode()
    assert "3/3 symmetric · 0 handed off · 0 refused · 0 asymmetric · passed" in page
    assert "1/4 symmetric · 0 handed off · 0 refused · 3 asymmetric · FAILED" in page


def test_the_runs_list_counts_refused_flows_of_new_and_older_runs(client, student):
    for title, refused in (("new", {"refused": 135_488}),
                           ("older", {"allocation_failures": 135_488})):
        Run.objects.create(scenario_body="x", ran_by=student, status=Run.Status.SUCCEEDED,
                           title=title, summary={"flows": 200_000, "symmetric": 64_512,
                                                 "handed_off": 0, "asymmetric": 0,
                                                 "passed": False, **refused})
    page = client.get("/runs/").content.decode()
    assert page.count("64,512/200,000 symmetric · 0 handed off · 135,488 refused · "
                      "0 asymmetric · FAILED") == 2


def test_the_yaml_tab_gets_the_forms_scenario_file(client, student):
    response = post_json(client, "/lab/api/builder-yaml/", {"builder": PRESETS["usip"]})
    assert response.status_code == 200
    text = response.json()["yaml"]
    from engine.scenarios.scenario import load_scenario
    scenario = load_scenario(text)                   # a file the engine takes as it is
    assert scenario.services[0].policy == "usip" and scenario.ports.tables_per_ip == 4
    bad = _errors(post_json(client, "/lab/api/builder-yaml/", {"builder": {"cores": "four"}}))
    assert bad[0]["field"] == "cores"


def test_a_run_without_a_whole_report_has_no_html_report_rather_than_an_error(client, student):
    """A failed run (or one stored before reports were whole) keeps a partial report: the
    HTML report link answers 400 with the reason, never a 500."""
    run = Run.objects.create(scenario_body="x", ran_by=student, status=Run.Status.FAILED,
                             report={"schema_version": 1, "checks": []})
    response = client.get(f"/lab/api/runs/{run.pk}/report.html")
    assert response.status_code == 400
    assert "has no report" in response.json()["errors"][0]["message"]
