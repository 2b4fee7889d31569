"""Run services called directly (no worker): batching, claiming, finishing, reaping."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from channels.layers import get_channel_layer
from django.contrib.auth.models import User
from django.db import connection
from django.utils import timezone

from engine.examples import EXAMPLES_DIR
from labsite.lab.builder import PRESETS, scenario_yaml_from_builder
from labsite.lab.models import Scenario
from labsite.runs.broadcast import run_group
from labsite.runs.errors import RunInputError
from labsite.runs.models import Run, RunEventChunk
from labsite.runs.services import EventBatcher, execute_run, run_claim, run_start, runs_reap_stale


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_batcher_flushes_on_size_and_age_in_order():
    sent, clock = [], FakeClock()
    batcher = EventBatcher(sent.append, max_events=3, max_seconds=0.05, clock=clock)
    for seq in range(7):
        batcher.add({"seq": seq})
    assert [[e["seq"] for e in batch] for batch in sent] == [[0, 1, 2], [3, 4, 5]]
    clock.now = 0.06  # the pending event is now older than max_seconds
    batcher.add({"seq": 7})
    assert [e["seq"] for e in sent[-1]] == [6, 7]
    batcher.flush()
    batcher.flush()  # nothing pending: sends nothing
    assert batcher.sent == 8 and len(sent) == 3


pytestmark_db = pytest.mark.django_db(transaction=True)
NAT = scenario_yaml_from_builder(PRESETS["nat"])


@pytest.fixture
def user(db):
    return User.objects.create_user("sam")


@pytest.fixture
def scenario(db):
    return Scenario.objects.create(name="s", slug="s", body=NAT)


@pytest.mark.parametrize(("mode", "seed", "message"), [
    ("replay", 1, "mode: expected one of trace, batch, compare, got 'replay'"),
    ("trace", -1, "seed: expected an integer 0–9223372036854775807, got -1"),
    ("trace", "7", "seed: expected an integer 0–9223372036854775807, got '7'"),
])
def test_run_start_rejects_bad_options(scenario, user, mode, seed, message):
    with pytest.raises(RunInputError) as error:
        run_start(body=scenario.body, scenario=scenario, user=user, mode=mode, seed=seed)
    assert str(error.value) == message
    assert not Run.objects.exists()


def _execute_and_close(run_id):
    """execute_run in a helper thread, closing that thread's connection (PostgreSQL would
    otherwise refuse to drop the test database at the end)."""
    try:
        return execute_run(run_id)
    finally:
        connection.close()


def _listen_while_running(run_id):
    async def listen():
        # One event loop for the whole conversation: a channel layer's receive buffer
        # belongs to the loop that created it.
        layer = get_channel_layer()
        channel = await layer.new_channel()
        await layer.group_add(run_group(run_id), channel)
        status = await asyncio.to_thread(_execute_and_close, run_id)
        messages = []
        while not (messages and messages[-1]["payload"].get("status") == status):
            messages.append(await asyncio.wait_for(layer.receive(channel), 5))
        return messages

    return asyncio.run(listen())


def _stored_events(run):
    return [e for chunk in RunEventChunk.objects.filter(run=run).order_by("first_seq")
            for e in chunk.events]


@pytestmark_db
def test_execute_run_stores_and_streams_ordered_batches(stack_env, scenario, user):
    run = Run.objects.create(scenario=scenario, scenario_body=scenario.body, ran_by=user, seed=5)
    messages = _listen_while_running(run.pk)
    kinds = [m["type"] for m in messages]
    assert kinds[0] == "run.status" and messages[0]["payload"]["status"] == "running"
    assert set(kinds[1:-1]) == {"run.events"}
    sent = [e for m in messages[1:-1] for e in m["payload"]["events"]]
    assert [e["seq"] for e in sent] == list(range(len(sent))) and len(sent) > 30
    run.refresh_from_db()
    assert run.status == "succeeded" and run.progress == 1.0 and run.event_count == len(sent)
    assert _stored_events(run) == sent  # stored exactly as sent, chunk by chunk
    assert run.summary["symmetric"] == 3 and run.summary["passed"] is True
    assert [row["verdict"] for row in run.report["rows"]] == ["symmetric"] * 3
    assert messages[-1]["payload"]["summary"] == run.summary
    # Same body, mode and seed: the same events.
    again = Run.objects.create(scenario=scenario, scenario_body=scenario.body, seed=5)
    execute_run(again.pk)
    assert _stored_events(again) == sent


@pytestmark_db
def test_a_retried_run_resumes_after_its_stored_events(stack_env, scenario, user):
    first = Run.objects.create(scenario=scenario, scenario_body=scenario.body, seed=2)
    execute_run(first.pk)
    everything = _stored_events(first)
    # A second run whose dead first attempt had stored events 0–19.
    run = Run.objects.create(scenario=scenario, scenario_body=scenario.body, seed=2,
                             status="running", attempts=1,
                             heartbeat_at=timezone.now() - timedelta(seconds=60))
    RunEventChunk.objects.create(run=run, first_seq=0, last_seq=19, events=everything[:20])
    messages = _listen_while_running(run.pk)
    sent = [e for m in messages if m["type"] == "run.events" for e in m["payload"]["events"]]
    assert sent == everything[20:]  # nothing sent or stored twice
    assert _stored_events(run) == everything
    run.refresh_from_db()
    assert run.attempts == 2 and run.event_count == len(everything)


@pytestmark_db
def test_batch_and_compare_runs_store_reports_without_events(stack_env, scenario, user):
    batch = Run.objects.create(scenario=scenario, scenario_body=scenario.body, mode="batch")
    assert execute_run(batch.pk) == "succeeded"
    batch.refresh_from_db()
    assert not RunEventChunk.objects.filter(run=batch).exists() and batch.event_count == 0
    assert batch.report["summary"]["symmetric"] == 3 and len(batch.report["rows"]) == 3
    compare = Run.objects.create(scenario=scenario, scenario_body=scenario.body,
                                 mode="compare", parameters={"vary": {
                                     "policy": ["nat", "transparent"], "scheme": ["rss"]}})
    assert execute_run(compare.pk) == "succeeded"
    compare.refresh_from_db()
    cells = compare.report["cells"]
    assert [c["label"] for c in cells] == ["policy=nat", "policy=transparent"]
    assert cells[0]["symmetric"] == 3 and cells[1]["handed_off"] == 3
    assert compare.summary == {"mode": "compare", "flows": 3, "cores": 4, "cells": 2}


@pytestmark_db
def test_execute_run_refuses_finished_missing_and_live_runs(stack_env, scenario):
    assert execute_run(10**9) is None
    run = Run.objects.create(scenario=scenario, scenario_body=scenario.body,
                             status="succeeded", attempts=1)
    assert execute_run(run.pk) is None
    run.status, run.heartbeat_at = "running", timezone.now()
    run.save()
    assert run_claim(run.pk) is None  # another worker is visibly on it
    stale = timezone.now() - timedelta(seconds=60)
    Run.objects.filter(pk=run.pk).update(heartbeat_at=stale)
    claimed = run_claim(run.pk, task_id="t-2")  # a re-delivered message after a lost worker
    assert claimed.attempts == 2 and claimed.celery_task_id == "t-2"


@pytestmark_db
@pytest.mark.parametrize(("body", "mode", "error"), [
    ("schema_version: 1\nname: x\nsystem: {cores: 0}\nservices: []", "trace",
     "x: 1 problem\n  line 3: system.cores: expected a number >= 1, got 0"),
    (NAT[:NAT.index("traffic:")] + "traffic: {pcap: {}}\n", "batch",
     "pcap: expected a capture file uploaded with the run"),
])
def test_bad_scenario_fails_with_the_reason(stack_env, body, mode, error):
    run = Run.objects.create(scenario_body=body, mode=mode, title="x")
    assert execute_run(run.pk) == "failed"
    run.refresh_from_db()
    assert run.error == error
    assert run.finished_at is not None


@pytestmark_db
def test_a_trace_run_over_the_limit_fails_naming_it(stack_env):
    text = (EXAMPLES_DIR / "heavy-hitters.yaml").read_text()
    run = Run.objects.create(scenario_body=text, mode="trace")
    assert execute_run(run.pk) == "failed"
    run.refresh_from_db()
    assert run.error == ("traffic: trace mode runs at most 5,000 flows, this scenario has "
                         "20,000 (use batch mode for large runs)")


@pytestmark_db
def test_reaper_retries_a_lost_run_once_then_fails_it(stack_env, scenario):
    stale = timezone.now() - timedelta(seconds=60)
    fresh = Run.objects.create(scenario=scenario, scenario_body="", status="running",
                               attempts=1, heartbeat_at=timezone.now())
    lost = Run.objects.create(scenario=scenario, scenario_body="", status="running",
                              attempts=1, heartbeat_at=stale, celery_task_id="old")
    assert runs_reap_stale() == [lost.pk]
    lost.refresh_from_db()
    assert lost.status == "queued" and lost.celery_task_id != "old"
    assert lost.error.startswith("worker lost: no heartbeat from attempt 1 since ")
    assert lost.error.endswith("; retrying")

    Run.objects.filter(pk=lost.pk).update(status="running", attempts=2, heartbeat_at=stale)
    assert runs_reap_stale() == [lost.pk]
    lost.refresh_from_db()
    assert lost.status == "failed" and lost.finished_at is not None
    assert "gave up after 2 attempts" in lost.error
    assert Run.objects.get(pk=fresh.pk).status == "running"
    assert runs_reap_stale() == []


@pytestmark_db
def test_a_reaped_attempt_cannot_overwrite_the_outcome(stack_env, scenario):
    """A worker that was only slow (declared lost) must not clobber the retry's result."""
    from labsite.runs.services import _run_finish

    run = run_claim(Run.objects.create(scenario=scenario, scenario_body="").pk)
    Run.objects.filter(pk=run.pk).update(status="failed", error="worker lost")
    assert _run_finish(run, status="succeeded") is False
    assert Run.objects.get(pk=run.pk).status == "failed"


@pytestmark_db
def test_reading_a_run_writes_nothing_and_the_beat_reaps_it(stack_env, client, scenario,
                                                            tmp_path):
    """GET views only read: a run whose worker was lost reads as ``running`` until the beat
    process's reaper (``runs.reap_stale``, run in the beat process itself) deals with it."""
    from celery.beat import ScheduleEntry
    from django.conf import settings

    import labsite.runs.tasks  # noqa: F401  (registers runs.reap_stale, as beat's start does)
    from labsite.beat import LabScheduler
    from labsite.celery import app

    user = User.objects.create_user("viewer")
    client.force_login(user)
    run = Run.objects.create(scenario=scenario, scenario_body="", ran_by=user, status="running",
                             attempts=2, heartbeat_at=timezone.now() - timedelta(seconds=60))
    for url in (f"/lab/api/runs/{run.pk}/", f"/lab/?run={run.pk}", "/runs/"):
        assert client.get(url).status_code == 200
    assert client.get(f"/lab/api/runs/{run.pk}/").json()["status"] == "running"

    entry = settings.CELERY_BEAT_SCHEDULE["reap-stale-runs"]
    assert entry["task"] == "runs.reap_stale" and entry["schedule"] == 15.0
    scheduler = LabScheduler(app, schedule_filename=str(tmp_path / "schedule"), lazy=True)
    result = scheduler.apply_entry(ScheduleEntry(name="reap-stale-runs", app=app, **entry))
    assert result.get() == [run.pk]  # run here, in this process: no worker involved
    data = client.get(f"/lab/api/runs/{run.pk}/").json()
    assert data["status"] == "failed"
    assert data["error"].startswith("worker lost: no heartbeat from attempt 2")
