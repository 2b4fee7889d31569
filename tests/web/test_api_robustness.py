"""The lab API under hostile or unlucky conditions: an unreachable task queue, input built
to crash a parser, requests past the engine's limits, a capture read only in part.

Every case answers with the API's one error shape and a status that says whose fault it
is (400 bad input, 503 the queue is down) — never a 500, never a run left ``queued``
with no task behind it.
"""

from __future__ import annotations

import copy
import json
import time
from datetime import timedelta

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone

from engine.examples import EXAMPLES_DIR
from engine.runs.compare import MAX_CELLS
from labsite.lab.builder import PRESETS
from labsite.procutil import free_port
from labsite.runs.models import Run
from labsite.runs.services import run_start, runs_reap_stale
from tests.web.helpers import post_json

BROKER_PASSWORD = "hunter2-not-for-users"
DEEP = "[" * 100_000 + "]" * 100_000




def _errors(response, status=400):
    assert response.status_code == status, response.content
    return response.json()["errors"]


@pytest.fixture
def broker_down(stack_env):
    """The Celery broker pointed at a port nothing listens on (with a password in the
    URL, which no message may show); the app's connection pools are set aside so the
    next publish really connects there, and restored afterwards."""
    from labsite.celery import app

    saved = (app.conf.broker_url, app._pool, app.amqp._producer_pool)
    url = f"redis://:{BROKER_PASSWORD}@127.0.0.1:{free_port()}/0"
    app.conf.broker_url = url
    app._pool = app.amqp._producer_pool = None
    yield url
    if app._pool is not None:
        app._pool.force_close_all()
    app.conf.broker_url, app._pool, app.amqp._producer_pool = saved


# ------------------------------------------------------------------ the queue is down


@pytest.mark.django_db(transaction=True)  # the run commits, so its task is really sent
@pytest.mark.parametrize("url", ["/lab/api/runs/", "/lab/api/compare/"])
def test_an_unreachable_queue_is_a_503_and_the_run_fails_with_the_reason(
        client, student, broker_down, url):
    data = {"source": "builder", "builder": PRESETS["nat"], "mode": "batch"}
    if "compare" in url:
        data = {"source": "builder", "builder": PRESETS["nat"], "vary": {"policy": ["nat"]}}
    started = time.monotonic()
    response = post_json(client, url, data)
    assert time.monotonic() - started < 5  # a short publish retry, not a hanging request
    errors = _errors(response, 503)
    message = errors[0]["message"]
    assert errors == [{"code": "unavailable", "field": "queue", "line": None, "message": message}]
    assert message.startswith("the task queue (Redis at redis://:**@127.0.0.1:")
    assert "is not reachable" in message and "the run was not queued" in message
    assert BROKER_PASSWORD not in response.content.decode()
    run = Run.objects.get()
    assert response.json()["run"] == run.pk and response.json()["status"] == "failed"
    assert (run.status, run.error) == ("failed", message) and run.finished_at is not None


@pytest.mark.django_db(transaction=True)
def test_run_start_fails_the_run_when_the_queue_is_down(broker_down):
    from labsite.runs.errors import RunQueueError

    with pytest.raises(RunQueueError) as error:
        run_start(user=None, body="name: x", mode="batch")
    run = Run.objects.get()
    assert error.value.run.pk == run.pk and run.status == "failed"
    assert BROKER_PASSWORD not in run.error and "not reachable" in run.error


@pytest.mark.django_db(transaction=True)
def test_a_lost_run_whose_retry_cannot_be_queued_fails_instead_of_raising(broker_down):
    lost = Run.objects.create(scenario_body="", status="running", attempts=1,
                              heartbeat_at=timezone.now() - timedelta(seconds=60))
    assert runs_reap_stale() == [lost.pk]  # the beat process reaps: it must not blow up
    lost.refresh_from_db()
    assert lost.status == "failed" and "is not reachable" in lost.error


@pytest.mark.django_db(transaction=True)
def test_a_run_queued_for_hours_fails_as_never_started(stack_env, settings):
    settings.RUN_QUEUED_MAX_SECONDS = 3600
    old = Run.objects.create(scenario_body="")
    Run.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(hours=2))
    requeued = Run.objects.create(scenario_body="", attempts=1,  # by the reaper, just now
                                  heartbeat_at=timezone.now() - timedelta(seconds=60))
    Run.objects.filter(pk=requeued.pk).update(created_at=timezone.now() - timedelta(hours=2))
    fresh = Run.objects.create(scenario_body="")
    assert runs_reap_stale() == [old.pk]
    old.refresh_from_db()
    assert old.status == "failed" and old.finished_at is not None
    assert old.error.startswith("never started: queued since ")
    assert "no worker took it within 1 h" in old.error
    assert Run.objects.get(pk=requeued.pk).status == "queued"
    assert Run.objects.get(pk=fresh.pk).status == "queued"
    assert runs_reap_stale() == []


# ------------------------------------------------------------ input built to crash parsers

pytestmark_db = pytest.mark.django_db


@pytestmark_db
@pytest.mark.parametrize("body", [DEEP, '{"a":' * 50_000 + "1" + "}" * 50_000])
def test_json_nested_too_deep_is_a_400(client, student, body):
    assert _errors(post_json(client, "/lab/api/runs/", body)) == [{
        "code": "document", "field": "body", "line": 1,
        "message": "expected JSON nested at most 64 deep (got deeper on line 1)"}]


@pytestmark_db
@pytest.mark.parametrize(("url", "field"), [("/lab/api/compare/", "vary"),
                                            ("/lab/api/runs/", "builder")])
def test_deep_json_in_a_multipart_field_is_a_400_naming_it(client, student, url, field):
    fields = {"source": "builder", "builder": json.dumps(PRESETS["nat"]), field: DEEP}
    errors = _errors(client.post(url, fields))
    assert [e["field"] for e in errors] == [field]
    assert errors[0]["message"] == "expected JSON nested at most 64 deep (got deeper on line 1)"
    assert not Run.objects.exists()


@pytestmark_db
@pytest.mark.parametrize(("change", "field", "message"), [
    ({"name": json.loads("[" * 60 + "]" * 60)}, "name",
     "expected a string of at most 256 characters, got a list"),
    ({"name": "x" * 300}, "name", "expected a string of at most 256 characters, got 'xxx"),
    ({"name": {"a": 1}}, "name", "expected a string of at most 256 characters, got an object"),
    ({"cores": "four"}, "cores", "expected an integer, got 'four'"),
    ({"cores": True}, "cores", "expected an integer, got true"),
    ({"wrong_direction": "yes"}, "wrong_direction", "expected true or false, got 'yes'"),
    ({"table": [0, [1]]}, "table", "expected a string of at most 256 characters or a list "
                                   "of integers, got a list at position 1"),
    ({"service": {"servers": ["10.0.0.1:80", 5]}}, "service.servers",
     "expected a list of strings of at most 256 characters, got 5 at position 1"),
    ({"service": {"mtu": "big"}}, "service.mtu", "expected an integer or null, got 'big'"),
    ({"traffic": {"kind": "flows", "flows": [{"client": [["1.2.3.4:5"]]}]}},
     "traffic.flows[0].client", "expected a string of at most 256 characters, got a list"),
    ({"traffic": {"kind": "generated", "count": 5, "zipf": [1]}}, "traffic.zipf",
     "expected a number, got a list"),
    ({"traffic": {"kind": [[[]]]}}, "traffic.kind",
     "expected one of flows, generated, pcap, got a list"),
    ({"name": "lab\ud800"}, "name",
     "expected valid text, got a lone surrogate U+D800 (an invalid character) at character 4"),
    ({"service": {"servers": ["10.0.0.1:80", "\udfff"]}}, "service.servers[1]",
     "expected valid text, got a lone surrogate U+DFFF"),
])
def test_builder_fields_are_type_checked_naming_the_field(client, student, change, field,
                                                          message):
    fields = copy.deepcopy(PRESETS["nat"])
    for name, value in change.items():  # service fields change one by one
        fields[name] = {**fields[name], **value} if name == "service" else value
    errors = _errors(post_json(client, "/lab/api/runs/", {"source": "builder",
                                                           "builder": fields}))
    assert [e["field"] for e in errors] == [field]
    assert errors[0]["message"].startswith(message), errors[0]["message"]
    assert not Run.objects.exists()


@pytestmark_db
@pytest.mark.parametrize(("data", "field", "line", "message"), [
    ({"source": "yaml", "scenario": "name: \ud800\n"}, "scenario", 1,
     "expected valid text, got a lone surrogate U+D800 (an invalid character) at column 7"),
    ({"source": "yaml", "scenario": "a: 1\nname: ok\ud800\n"}, "scenario", 2,
     "expected valid text, got a lone surrogate U+D800 (an invalid character) at column 9"),
    ({"source": "example", "example": "nat\ud800"}, "example", None,
     "expected valid text, got a lone surrogate U+D800 (an invalid character) at character 4"),
])
def test_lone_surrogates_are_a_400_naming_the_field(client, student, data, field, line,
                                                    message):
    for url in ("/lab/api/runs/", "/lab/api/compare/"):
        body = {**data, "vary": {"policy": ["nat"]}} if "compare" in url else data
        assert _errors(post_json(client, url, body)) == [
            {"code": "invalid", "field": field, "line": line, "message": message}]
    assert not Run.objects.exists()


# ------------------------------------------------------------------- the engine's limits


@pytestmark_db
def test_a_comparison_over_the_engines_cell_limit_is_refused_before_queueing(client, student):
    keys = [f"random:{seed}" for seed in range(MAX_CELLS + 44)]
    errors = _errors(post_json(client, "/lab/api/compare/", {
        "source": "builder", "builder": PRESETS["nat"], "vary": {"key": keys}}))
    cells = len(keys) + 4  # plus the four non-RSS schemes
    assert errors == [{"code": "compare", "field": "vary", "line": None,
                       "message": f"expected at most {MAX_CELLS} cells, got {cells}"}]
    assert not Run.objects.exists()


@pytestmark_db
@pytest.mark.parametrize(("query", "field", "message"), [
    ({"table": "99999999999999999999,0", "hash_bits": "1"}, "table[0]",
     "expected a core 0–63 at position 0, got 99999999999999999999"),
    ({"table": "0,64", "hash_bits": "1"}, "table[1]", "expected a core 0–63 at position 1"),
    ({"table": "-1,-1", "hash_bits": "1"}, "table[0]", "expected a core 0–63 at position 0"),
    ({"table": "9" * 5000 + ",0", "hash_bits": "1"}, "table[0]", "expected a core 0–63"),
    ({"table": "0,3", "hash_bits": "1", "cores": "2"}, "table[1]",
     "expected a core 0–1 at position 1, got 3"),
    ({"table": "\u0663,0", "hash_bits": "1", "cores": "4"}, "table",
     "expected cores separated by commas, one per bucket, got '\u0663' at position 0"),
])
def test_explain_table_entries_must_be_cores(client, student, query, field, message):
    query = {"input_hex": "420995bba18e64500aea06e6", **query}
    errors = _errors(client.get("/lab/api/explain/", query))
    assert [e["field"] for e in errors] == [field]
    assert errors[0]["message"].startswith(message), errors[0]["message"]


@pytestmark_db
def test_explain_takes_a_table_of_up_to_64_cores(client, student):
    data = client.get("/lab/api/explain/", {"input_hex": "420995bba18e64500aea06e6",
                                             "table": "63,0", "hash_bits": "1"}).json()
    assert data["cores"] == 64 and data["core"] in (0, 63)


# -------------------------------------------------------------- a capture read in part


def test_the_pcap_note_is_the_engines_line():
    from labsite.runs.selectors import report_pcap_note

    assert report_pcap_note(None) is None
    assert report_pcap_note({"summary": {}}) is None
    assert report_pcap_note({"pcap": {"frames": 5, "packets": 3, "flows": 2, "skipped": {
        "not IP": 1, "record cut short by the end of the file": 1}}}) == (
        "pcap: 5 frames, 3 packets used, 2 flows; skipped: not IP 1, record cut short by "
        "the end of the file 1")


@pytest.mark.django_db(transaction=True)  # the worker reads the run from another process
def test_a_truncated_capture_shows_its_skipped_packets_in_the_result(client, student, worker):
    fields = copy.deepcopy(PRESETS["nat"])
    fields["traffic"] = {"kind": "pcap"}
    capture = (EXAMPLES_DIR / "replay.pcap").read_bytes()[:-5]  # the last record cut short
    response = client.post("/lab/api/runs/", {
        "source": "builder", "builder": json.dumps(fields), "mode": "batch",
        "pcap": SimpleUploadedFile("cut.pcap", capture)})
    assert response.status_code == 201, response.content
    run_id = response.json()["run"]
    deadline = time.monotonic() + 60
    while (data := client.get(f"/lab/api/runs/{run_id}/").json())["status"] not in (
            "succeeded", "failed") and time.monotonic() < deadline:
        time.sleep(0.1)
    assert data["status"] == "succeeded", data["error"]
    assert data["report"]["pcap"]["skipped"] == {"record cut short by the end of the file": 1}
    assert data["pcap_note"] == ("pcap: 32 frames, 31 packets used, 4 flows; skipped: record "
                                 "cut short by the end of the file 1")
    page = client.get(f"/lab/?run={run_id}")
    assert b'id="pcap-note"' in page.content
    assert page.context["run_json"]["pcap_note"] == data["pcap_note"]
