"""Fair use (issue 10 item 5): the active-run cap, the request rate, the storage budget,
retention, and users deleting their runs — the services called directly, then over HTTP.

Real Redis (the session's test Redis, this test's own key prefix: ``redis_prefix``);
runs are stored and their tasks left unsent (``django_db`` rolls back, so ``on_commit``
never fires) except where a test says otherwise. test_stack.py deletes a run a real worker
is running.
"""

from __future__ import annotations

import copy
import threading
import time
from datetime import timedelta

import pytest
from django.conf import settings as django_settings
from django.contrib.auth.models import Group, User
from django.db import connection
from django.utils import timezone

from labsite.lab.builder import PRESETS, scenario_yaml_from_builder
from labsite.procutil import free_port
from labsite.runs import quota
from labsite.runs.errors import RunActiveLimitError, RunRateLimitError, RunStorageLimitError
from labsite.runs.models import Run, RunCapture, RunEventChunk
from labsite.runs.services import (
    execute_run,
    json_size,
    run_cancel,
    run_delete,
    run_start,
    run_stored_bytes,
    runs_prune_events,
)
from labsite.runs.submit import lab_compare_submit
from tests.web.helpers import api_call, post_json, wait_for

pytestmark = pytest.mark.django_db
NAT = scenario_yaml_from_builder(PRESETS["nat"])
RUN = {"source": "builder", "builder": PRESETS["nat"], "mode": "trace"}


def _instructor(name: str = "teacher") -> User:
    user = User.objects.create_user(name)
    user.groups.add(Group.objects.get_or_create(name="instructor")[0])
    return user


def _errors(response, status):
    assert response.status_code == status, response.content
    return response.json()


# ------------------------------------------------------------------ active runs per user


def test_a_student_gets_three_active_runs_and_the_fourth_is_refused_not_queued(student):
    for _ in range(3):
        run_start(user=student, body=NAT)
    with pytest.raises(RunActiveLimitError) as refused:
        run_start(user=student, body=NAT)
    error = refused.value
    assert (error.status, error.field, error.retry_after) == (429, "active_runs", 15)
    assert error.details == {"limit": 3, "active": 3, "retry_after": 15}
    assert str(error).startswith("you have 3 runs queued or running, the most a student may "
                                 "have (3); wait for one to finish")
    assert Run.objects.count() == 3  # refused before anything was stored
    # A finished (or cancelled) run frees its place.
    first = Run.objects.order_by("pk").first()
    Run.objects.filter(pk=first.pk).update(status=Run.Status.SUCCEEDED)
    run_start(user=student, body=NAT)
    Run.objects.filter(status=Run.Status.QUEUED).update(status=Run.Status.CANCELLED)
    assert quota.active_run_count(student) == 0


def test_instructors_get_ten_and_a_comparison_counts_once(student):
    teacher = _instructor()
    for _ in range(10):
        run_start(user=teacher, body=NAT)
    with pytest.raises(RunActiveLimitError) as refused:
        run_start(user=teacher, body=NAT)
    assert refused.value.details["limit"] == 10
    assert "the most an instructor may have (10)" in str(refused.value)

    compare = lab_compare_submit(user=student, data={
        "source": "builder", "builder": PRESETS["nat"],
        "vary": {"key": ["microsoft", "symmetric"], "policy": ["nat", "usip", "transparent"]}})
    assert compare.run.mode == "compare" and quota.active_run_count(student) == 1


def test_the_active_cap_over_http_is_a_429_naming_cap_and_count(client, student):
    for _ in range(3):
        assert post_json(client, "/lab/api/runs/", RUN).status_code == 201
    response = post_json(client, "/lab/api/compare/", {**RUN, "vary": {"policy": ["nat"]}})
    body = _errors(response, 429)
    assert response["Retry-After"] == "15"
    assert body["errors"][0]["field"] == "active_runs" and body["errors"][0]["line"] is None
    assert "you have 3 runs queued or running" in body["errors"][0]["message"]
    assert (body["limit"], body["active"], body["retry_after"]) == (3, 3, 15)


def test_a_burst_of_fifty_gets_three_runs_and_delays_no_one_else(client, student):
    """The issue's finding: 50 requests in about a second from one student. Three are
    queued (the cap), seven refused for the cap, the other forty for the rate; another
    student's run is still taken at once, behind at most three of the burst's."""
    statuses = [post_json(client, "/lab/api/runs/", RUN).status_code for _ in range(50)]
    assert statuses == [201] * 3 + [429] * 47
    assert quota.active_run_count(student) == 3
    other = User.objects.create_user("other")
    client.force_login(other)
    assert post_json(client, "/lab/api/runs/", RUN).status_code == 201
    queued = list(Run.objects.filter(status="queued").order_by("created_at", "pk")
                  .values_list("ran_by__username", flat=True))
    assert queued == ["stu"] * 3 + ["other"]


# ----------------------------------------------------------------- request rate per user


def test_the_rate_allows_ten_a_minute_then_says_when_to_retry(student, settings):
    for _ in range(10):
        quota.submit_rate_take(student)
    with pytest.raises(RunRateLimitError) as refused:
        quota.submit_rate_take(student)
    error = refused.value
    assert (error.status, error.field) == (429, "rate")
    assert 55 <= error.retry_after <= 60
    assert error.details == {"limit": 10, "window_seconds": 60,
                             "retry_after": error.retry_after}
    assert str(error) == (f"10 run requests in the last 60 s, the most a student may make "
                          f"(10); retry in {error.retry_after} s")
    # Counted in Redis under this lab's prefix, shared by every process of the lab.
    import redis

    from labsite.redisurls import channels_redis_url

    client = redis.Redis.from_url(channels_redis_url(settings.REDIS_URL))
    key = quota.submit_rate_key(student)
    assert key == f"{settings.REDIS_PREFIX}:fairuse:submit:{student.pk}"
    assert client.zcard(key) == 10 and 0 < client.pttl(key) <= 60_000  # refusals not counted
    client.close()
    # Another user has a window of their own.
    quota.submit_rate_take(User.objects.create_user("someone"))


def test_a_slot_frees_when_the_oldest_request_leaves_the_window(student, settings):
    settings.RUN_SUBMIT_RATE_WINDOW_SECONDS = 1
    settings.RUN_SUBMIT_RATE_STUDENT = 2
    quota.submit_rate_take(student)
    quota.submit_rate_take(student)
    with pytest.raises(RunRateLimitError) as refused:
        quota.submit_rate_take(student)
    assert refused.value.retry_after == 1
    time.sleep(1.05)
    quota.submit_rate_take(student)


def test_an_unreachable_redis_lets_requests_through(student, settings):
    settings.REDIS_URL = f"redis://127.0.0.1:{free_port()}/0"
    settings.RUN_SUBMIT_RATE_STUDENT = 1
    started = time.monotonic()
    for _ in range(3):
        quota.submit_rate_take(student)  # logged, not refused: the active cap still holds
    assert time.monotonic() - started < 5


def test_the_rate_over_http_is_a_429_with_retry_after(client, student, settings):
    settings.RUN_SUBMIT_RATE_STUDENT = 2
    settings.RUN_ACTIVE_MAX_STUDENT = 100
    assert post_json(client, "/lab/api/runs/", RUN).status_code == 201
    assert post_json(client, "/lab/api/compare/", {**RUN, "vary": {"policy": ["nat"]}}
                     ).status_code == 201  # one window for both endpoints
    # Refused before the scenario is even read (a bad one would be a 400 otherwise).
    response = post_json(client, "/lab/api/runs/", {"source": "nonsense"})
    body = _errors(response, 429)
    assert body["errors"][0]["field"] == "rate"
    assert int(response["Retry-After"]) == body["retry_after"] and body["retry_after"] >= 55
    assert (body["limit"], body["window_seconds"]) == (2, 60)


@pytest.mark.django_db(transaction=True)  # daphne (another process) must see the user
def test_the_rate_is_shared_with_the_daphne_processes(stack_env, daphne_url, login_cookie,
                                                      settings):
    """Requests counted here and at daphne fill one window: the count lives in Redis."""
    settings.REDIS_PREFIX = stack_env["REDIS_PREFIX"]  # daphne's prefix
    user = User.objects.create_user("across")
    for _ in range(10):
        quota.submit_rate_take(user)
    status, body, headers = api_call(daphne_url, "POST", "/lab/api/runs/",
                                     cookie=login_cookie(user), data=RUN)
    assert status == 429, body
    assert body["errors"][0]["field"] == "rate" and int(headers["Retry-After"]) >= 1
    import redis

    from labsite.redisurls import channels_redis_url

    client = redis.Redis.from_url(channels_redis_url(stack_env["REDIS_URL"]))
    client.delete(quota.submit_rate_key(user))  # the one key this test made there
    client.close()


# ------------------------------------------------------------------------------- storage


@pytest.mark.django_db(transaction=True)  # execute_run manages its own connection
def test_stored_bytes_count_text_capture_events_and_report(stack_env, student):
    run = run_start(user=student, body=NAT)
    assert run.stored_bytes == len(NAT.encode())
    assert execute_run(run.pk) == "succeeded"
    run.refresh_from_db()
    events = [c.events for c in RunEventChunk.objects.filter(run=run)]
    assert events and run.stored_bytes == (len(NAT.encode()) + json_size(run.report)
                                           + sum(json_size(chunk) for chunk in events))
    assert run.stored_bytes == run_stored_bytes(run)
    assert quota.storage_used(student) == run.stored_bytes


def test_over_the_budget_new_runs_are_a_413_and_nothing_is_deleted(client, student, settings):
    settings.RUN_STORAGE_BUDGET_STUDENT_MB = 1
    old = Run.objects.create(scenario_body="x", ran_by=student, status="succeeded",
                             stored_bytes=1_000_000 - len(NAT.encode()))
    assert post_json(client, "/lab/api/runs/", RUN).status_code == 201  # under: taken
    response = post_json(client, "/lab/api/runs/", RUN)  # at the budget: refused
    body = _errors(response, 413)
    used = 1_000_000
    assert body["errors"][0]["field"] == "storage"
    assert (body["used_bytes"], body["budget_bytes"]) == (used, 1_000_000)
    assert body["errors"][0]["message"] == (
        "your runs keep 1.0 MB in the lab, a student's budget is 1.0 MB: delete runs you no "
        "longer need on the Runs page, then start this one again")
    assert "Retry-After" not in response  # waiting does not help; deleting does
    assert Run.objects.filter(pk=old.pk).exists() and Run.objects.count() == 2
    with pytest.raises(RunStorageLimitError):
        run_start(user=student, body=NAT)
    # Deleting a run frees its bytes at once.
    run_delete(old, by=student)
    assert post_json(client, "/lab/api/runs/", RUN).status_code == 201


# ----------------------------------------------------------------------------- retention


def _run_with_events(user, *, finished_days_ago: float, status="succeeded", capture=b""):
    run = Run.objects.create(scenario_body=NAT, ran_by=user, status=status, event_count=400,
                             report={"passed": True}, summary={"symmetric": 3, "flows": 3})
    for first in (0, 200):
        RunEventChunk.objects.create(run=run, first_seq=first, last_seq=first + 199,
                                     events=[{"seq": s} for s in range(first, first + 200)])
    if capture:
        RunCapture.objects.create(run=run, data=capture, packets=1)
    finished = timezone.now() - timedelta(days=finished_days_ago)
    Run.objects.filter(pk=run.pk).update(finished_at=finished, created_at=finished,
                                         stored_bytes=run_stored_bytes(run))
    run.refresh_from_db()
    return run


def test_retention_deletes_old_events_and_keeps_the_run(student, settings):
    settings.RUN_EVENTS_RETENTION_DAYS = 30
    old = _run_with_events(student, finished_days_ago=31, capture=b"\x01" * 500)
    recent = _run_with_events(student, finished_days_ago=29)
    running = _run_with_events(student, finished_days_ago=40, status="running")
    before = old.stored_bytes
    now = timezone.now()
    assert runs_prune_events(now=now) == [old.pk]
    old.refresh_from_db()
    assert not RunEventChunk.objects.filter(run=old).exists()
    assert old.events_pruned_at == now and old.status == "succeeded"
    assert old.summary == {"symmetric": 3, "flows": 3} and old.report == {"passed": True}
    assert RunCapture.objects.filter(run=old).exists()  # "Export pcap" still works
    assert old.stored_bytes == len(NAT.encode()) + json_size({"passed": True}) + 500 < before
    for kept in (recent, running):
        assert RunEventChunk.objects.filter(run=kept).count() == 2
        assert Run.objects.get(pk=kept.pk).events_pruned_at is None
    assert runs_prune_events(now=now) == []  # done once
    settings.RUN_EVENTS_RETENTION_DAYS = 0  # keep for ever
    assert runs_prune_events(now=now + timedelta(days=400)) == []


def test_retention_works_in_bounded_batches_oldest_first(student):
    runs = [_run_with_events(student, finished_days_ago=days) for days in (50, 60, 40)]
    assert runs_prune_events(limit=2) == [runs[1].pk, runs[0].pk]
    assert runs_prune_events(limit=2) == [runs[2].pk]


def test_a_pruned_run_says_so(client, student):
    run = _run_with_events(student, finished_days_ago=31)
    runs_prune_events()
    payload = client.get(f"/lab/api/runs/{run.pk}/").json()
    assert payload["events_pruned_at"] is not None and payload["event_count"] == 400
    assert client.get(f"/lab/api/runs/{run.pk}/events/").json() == {
        "events": [], "next_after": None, "complete": True}
    assert b"events pruned" in client.get("/runs/").content


def test_the_beat_schedule_prunes_in_the_beat_process():
    from labsite.celery import app

    entry = django_settings.CELERY_BEAT_SCHEDULE["prune-old-run-events"]
    assert entry == {"task": "runs.prune_events", "schedule": 3600.0,
                     "options": {"run_in_beat": True}}
    assert app.conf.beat_schedule["prune-old-run-events"]["task"] == "runs.prune_events"
    import labsite.runs.tasks  # noqa: F401  (registers the tasks)

    assert "runs.prune_events" in app.tasks


# -------------------------------------------------------------------- deleting runs


def test_run_delete_takes_events_and_capture_with_it(student):
    run = _run_with_events(student, finished_days_ago=1, capture=b"\x02" * 100)
    done = run_delete(run, by=student)
    assert (done.run, done.cancelled, done.freed_bytes) == (run.pk, False, run.stored_bytes)
    assert not Run.objects.filter(pk=run.pk).exists()
    assert not RunEventChunk.objects.exists() and not RunCapture.objects.exists()


@pytest.mark.django_db(transaction=True)  # the revoke goes to the (test) broker
def test_deleting_a_queued_run_cancels_it_first(stack_env, student):
    run = Run.objects.create(scenario_body=NAT, ran_by=student, celery_task_id="t-1")
    done = run_delete(run, by=student)
    assert done.cancelled and not Run.objects.exists()
    # A worker that gets the task afterwards drops it.
    assert execute_run(run.pk) is None


def _execute_and_close(run_id, result):
    try:
        result.append(execute_run(run_id))
    finally:
        connection.close()


@pytest.mark.django_db(transaction=True)
def test_a_running_run_stops_once_cancelled_and_ends_once(stack_env, student):
    """The worker's heartbeat finds the run no longer its own; the engine stops at its
    next event; the worker writes nothing after the cancel."""
    fields = copy.deepcopy(PRESETS["nat"])
    fields["traffic"] = {"kind": "generated", "count": 500,
                         "client_prefixes": ["198.51.100.0/24"]}
    run = Run.objects.create(scenario_body=scenario_yaml_from_builder(fields), ran_by=student,
                             parameters={"delay_ms": 20})  # 500 × 20 ms: 10 s if not stopped
    result = []
    worker = threading.Thread(target=_execute_and_close, args=(run.pk, result))
    worker.start()
    wait_for(lambda: Run.objects.filter(pk=run.pk, status="running", event_count__gt=30)
             .exists(), timeout=20, what="the run to report events")
    started = time.monotonic()
    assert run_cancel(run, reason="cancelled: deleted by stu")
    worker.join(timeout=10)
    assert not worker.is_alive() and result == [None]
    assert time.monotonic() - started < 3  # a heartbeat (0.3 s here) and an event
    run.refresh_from_db()
    assert (run.status, run.error) == ("cancelled", "cancelled: deleted by stu")
    assert run.report is None and run.finished_at is not None
    assert not run_cancel(run, reason="again")  # ends once


def test_delete_over_http_own_runs_only_instructors_any(client, student):
    mine = Run.objects.create(scenario_body="", ran_by=student, status="succeeded")
    theirs = Run.objects.create(scenario_body="", ran_by=User.objects.create_user("owner"),
                                status="failed")
    missing = _errors(client.delete(f"/lab/api/runs/{theirs.pk}/"), 404)
    assert missing["errors"][0]["field"] == "run"
    assert client.post(f"/lab/api/runs/{theirs.pk}/delete/").status_code == 404
    assert client.post(f"/runs/{theirs.pk}/delete/").status_code == 404
    assert Run.objects.filter(pk=theirs.pk).exists()

    assert client.delete(f"/lab/api/runs/{mine.pk}/").json() == {
        "run": mine.pk, "deleted": True, "cancelled": False, "freed_bytes": 0}
    assert client.get(f"/lab/api/runs/{mine.pk}/").status_code == 404
    assert client.delete(f"/lab/api/runs/{mine.pk}/").status_code == 404
    assert client.get(f"/lab/api/runs/{theirs.pk}/delete/").status_code == 405  # no GET writes

    client.force_login(_instructor())
    assert client.post(f"/lab/api/runs/{theirs.pk}/delete/").json()["deleted"] is True
    assert not Run.objects.exists()


def test_the_runs_list_deletes_with_a_button(client, student):
    run = Run.objects.create(scenario_body="", ran_by=student, status="succeeded",
                             stored_bytes=2_500_000)
    page = client.get("/runs/").content.decode()
    assert f'action="/runs/{run.pk}/delete/"' in page and "csrfmiddlewaretoken" in page
    assert "0 of 3 queued or running; they keep 2.5 MB of your 200.0 MB" in page
    assert client.get(f"/runs/{run.pk}/delete/").status_code == 405
    answer = client.post(f"/runs/{run.pk}/delete/", follow=True)
    assert answer.redirect_chain == [("/runs/", 302)]
    assert f"Run {run.pk} deleted; 2.5 MB freed." in answer.content.decode()
    assert not Run.objects.exists()


def test_strangers_cannot_delete(client):
    run = Run.objects.create(scenario_body="")
    assert client.delete(f"/lab/api/runs/{run.pk}/").status_code == 403
    assert client.post(f"/lab/api/runs/{run.pk}/delete/").status_code == 403
    assert client.post(f"/runs/{run.pk}/delete/").status_code == 302  # to the login page
    assert Run.objects.exists()
