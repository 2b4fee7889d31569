"""Run services called directly (no worker): batching, claiming, finishing, reaping."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from channels.layers import get_channel_layer
from django.contrib.auth.models import User
from django.db import connection
from django.utils import timezone

from labsite.lab.models import Scenario
from labsite.runs.broadcast import run_group
from labsite.runs.errors import RunInputError
from labsite.runs.models import Run
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


@pytest.fixture
def user(db):
    return User.objects.create_user("sam")


@pytest.fixture
def scenario(db):
    return Scenario.objects.create(name="s", slug="s", body="flows: 3\npackets_per_flow: 2\n")


@pytest.mark.parametrize(("mode", "seed", "message"), [
    ("replay", 1, "mode: expected one of trace, batch, got 'replay'"),
    ("trace", -1, "seed: expected an integer 0–4294967295, got -1"),
    ("trace", "7", "seed: expected an integer 0–4294967295, got '7'"),
])
def test_run_start_rejects_bad_options(scenario, user, mode, seed, message):
    with pytest.raises(RunInputError) as error:
        run_start(scenario=scenario, user=user, mode=mode, seed=seed)
    assert str(error.value) == message
    assert not Run.objects.exists()


def _execute_and_close(run_id):
    """execute_run in a helper thread, closing that thread's connection (PostgreSQL would
    otherwise refuse to drop the test database at the end)."""
    try:
        return execute_run(run_id)
    finally:
        connection.close()


@pytestmark_db
def test_execute_run_streams_ordered_batches_and_stores_results(stack_env, scenario, user):
    run = Run.objects.create(scenario=scenario, scenario_body=scenario.body, ran_by=user, seed=5)

    async def listen_while_running():
        # One event loop for the whole conversation: a channel layer's receive buffer
        # belongs to the loop that created it.
        layer = get_channel_layer()
        channel = await layer.new_channel()
        await layer.group_add(run_group(run.pk), channel)
        assert await asyncio.to_thread(_execute_and_close, run.pk) == "succeeded"
        messages = []
        while not (messages and messages[-1]["payload"].get("status") == "succeeded"):
            messages.append(await asyncio.wait_for(layer.receive(channel), 5))
        return messages

    messages = asyncio.run(listen_while_running())
    kinds = [m["type"] for m in messages]
    assert kinds[0] == "run.status" and messages[0]["payload"]["status"] == "running"
    assert set(kinds[1:-1]) == {"run.events"}
    seqs = [e["seq"] for m in messages[1:-1] for e in m["payload"]["events"]]
    assert seqs == list(range(3 * 2 * 4))
    run.refresh_from_db()
    assert run.status == "succeeded" and run.progress == 1.0 and run.event_count == 24
    assert run.summary["totals"]["flows"] == 3 and len(run.flows) == 3
    assert run.trace == [e for m in messages[1:-1] for e in m["payload"]["events"]]
    # Same body, mode and seed: the same events (the stand-in is deterministic too).
    again = Run.objects.create(scenario=scenario, scenario_body=scenario.body, seed=5)
    execute_run(again.pk)
    again.refresh_from_db()
    assert again.trace == run.trace and again.flows == run.flows


@pytestmark_db
def test_batch_mode_stores_summary_without_trace(stack_env, scenario, user):
    run = Run.objects.create(scenario=scenario, scenario_body=scenario.body, mode="batch")
    assert execute_run(run.pk) == "succeeded"
    run.refresh_from_db()
    assert run.trace == [] and run.summary["totals"]["flows"] == 3


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
def test_bad_scenario_fails_with_the_field_and_value(stack_env, user):
    scenario = Scenario.objects.create(name="b", slug="b", body="packets_per_flow: 99")
    run = Run.objects.create(scenario=scenario, scenario_body=scenario.body)
    assert execute_run(run.pk) == "failed"
    run.refresh_from_db()
    assert run.error == "packets_per_flow: expected an integer 1–64, got 99"
    assert run.finished_at is not None


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
def test_viewing_a_run_page_reaps_its_lost_worker(stack_env, client, scenario):
    user = User.objects.create_user("viewer")
    client.force_login(user)
    run = Run.objects.create(scenario=scenario, scenario_body="", ran_by=user, status="running",
                             attempts=2, heartbeat_at=timezone.now() - timedelta(seconds=60))
    page = client.get(f"/runs/{run.pk}/")
    assert page.status_code == 200
    assert b"worker lost: no heartbeat from attempt 2" in page.content
    run.refresh_from_db()
    assert run.status == "failed"
