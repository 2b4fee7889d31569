"""The cross-process paths users depend on, on real Redis, daphne and Celery workers."""

from __future__ import annotations

import asyncio
import time

import pytest
from django.conf import settings
from django.contrib.auth.models import Group, User

from labsite.lab.models import Scenario
from labsite.runs.broadcast import broadcast_events, broadcast_status
from labsite.runs.models import Run
from labsite.runs.services import run_start

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.stack]


def _scenario(**fields) -> Scenario:
    body = "\n".join(f"{key}: {value}" for key, value in fields.items())
    return Scenario.objects.create(name="t", slug=f"t-{time.monotonic_ns()}", body=body)


def _wait_for(predicate, *, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


async def _collect_until_finished(ws, *, timeout: float) -> list[dict]:
    messages = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        message = await ws.recv(timeout=deadline - time.monotonic())
        assert message is not None, f"socket closed early ({ws.close_code})"
        messages.append(message)
        if message["type"] == "status" and message["status"] in ("succeeded", "failed"):
            return messages
    raise AssertionError("run did not finish in time")


def test_consumer_relays_group_messages_in_order(daphne_url, ws_client, login_cookie):
    user = User.objects.create_user("alice")
    run = Run.objects.create(scenario=_scenario(), scenario_body="", ran_by=user)
    cookie = login_cookie(user)

    async def scenario():
        ws = await ws_client.connect(daphne_url, f"/ws/runs/{run.pk}/", cookie=cookie)
        first = await ws.recv()
        # The status on connect, exactly as stored.
        assert first == {"type": "status", "run": run.pk, "status": "queued", "progress": 0.0,
                         "event_count": 0, "error": "", "summary": None}
        # Sent from this (another) process through Redis; daphne relays them in order.
        for start in range(0, 1000, 100):
            events = [{"seq": s, "t_us": s / 10, "kind": "arrived", "flow": 0, "core": 0}
                      for s in range(start, start + 100)]
            await asyncio.to_thread(broadcast_events, run.pk, events, progress=start / 1000)
        seqs = []
        while len(seqs) < 1000:
            message = await ws.recv()
            assert message["type"] == "events" and message["run"] == run.pk
            seqs.extend(event["seq"] for event in message["events"])
        assert seqs == list(range(1000))
        await ws.close()

    asyncio.run(scenario())


def test_websocket_refuses_strangers_and_foreign_origins(daphne_url, ws_client, login_cookie):
    owner, other = User.objects.create_user("owner"), User.objects.create_user("other")
    teacher = User.objects.create_user("teacher")
    teacher.groups.add(Group.objects.get_or_create(name="instructor")[0])
    run = Run.objects.create(scenario=_scenario(), scenario_body="", ran_by=owner)
    path = f"/ws/runs/{run.pk}/"
    other_cookie, owner_cookie = login_cookie(other), login_cookie(owner)
    teacher_cookie = login_cookie(teacher)

    async def scenario():
        for cookie in ("", other_cookie):  # anonymous, another student
            with pytest.raises(Exception) as refused:
                await ws_client.connect(daphne_url, path, cookie=cookie)
            assert getattr(refused.value, "status", None) == 403
        for kwargs in ({"origin": "http://evil.example"}, {"send_origin": False}):
            with pytest.raises(Exception) as refused:
                await ws_client.connect(daphne_url, path, cookie=owner_cookie, **kwargs)
            assert getattr(refused.value, "status", None) == 403
        ws = await ws_client.connect(daphne_url, path, cookie=teacher_cookie)
        assert (await ws.recv())["status"] == "queued"
        await ws.close()

    asyncio.run(scenario())


def test_worker_runs_a_scenario_and_streams_it(daphne_url, ws_client, login_cookie, worker):
    user = User.objects.create_user("bob")
    scenario = _scenario(cores=4, flows=30, packets_per_flow=4, delay_ms=1)
    cookie = login_cookie(user)
    run = Run.objects.create(scenario=scenario, scenario_body=scenario.body, ran_by=user)

    async def scenario_run():
        # Watch first, then start the run: the page sees everything from event 0.
        ws = await ws_client.connect(daphne_url, f"/ws/runs/{run.pk}/", cookie=cookie)
        assert (await ws.recv())["status"] == "queued"
        from labsite.runs.tasks import run_scenario

        await asyncio.to_thread(run_scenario.apply_async, args=[run.pk])
        messages = await _collect_until_finished(ws, timeout=60)
        await ws.close()
        return messages

    messages = asyncio.run(scenario_run())
    statuses = [m["status"] for m in messages if m["type"] == "status"]
    assert statuses == ["running", "succeeded"]
    seqs = [e["seq"] for m in messages if m["type"] == "events" for e in m["events"]]
    assert seqs == list(range(30 * 4 * 4))
    progress = [m["progress"] for m in messages if m["type"] == "events"]
    assert progress == sorted(progress) and progress[-1] > 0.9
    final = messages[-1]
    assert final["progress"] == 1.0 and final["event_count"] == 480
    assert final["summary"]["totals"]["flows"] == 30
    run.refresh_from_db()
    assert run.status == Run.Status.SUCCEEDED and run.attempts == 1
    assert len(run.flows) == 30 and len(run.trace) == 480
    assert run.started_at <= run.finished_at


def test_a_failing_scenario_ends_failed_with_its_reason(worker):
    user = User.objects.create_user("carol")
    bad = run_start(scenario=_scenario(cores=0), user=user)
    crash = run_start(scenario=_scenario(flows=2, fail_at=5), user=user)
    for run in (bad, crash):
        _wait_for(lambda run=run: Run.objects.get(pk=run.pk).is_finished, timeout=30,
                  what=f"run {run.pk} to finish")
    bad.refresh_from_db()
    crash.refresh_from_db()
    assert bad.status == Run.Status.FAILED
    assert bad.error == "cores: expected an integer 1–64, got 0"
    assert crash.status == Run.Status.FAILED
    assert crash.error == "internal error: RuntimeError: stand-in failure injected at event 5"
    assert crash.event_count == 5


def test_killed_worker_run_is_retried_to_completion(start_worker, daphne_url, ws_client,
                                                    login_cookie):
    user = User.objects.create_user("dave")
    # A solo worker answers no ping while it runs a task: start it before queueing.
    first = start_worker()
    # 8 flows × 4 packets × 4 events × 25 ms ≈ 3.2 s: long enough to kill it mid-way.
    run = run_start(scenario=_scenario(flows=8, packets_per_flow=4, delay_ms=25), user=user)
    _wait_for(lambda: Run.objects.filter(pk=run.pk, status="running", event_count__gt=0)
              .exists(), timeout=30, what="the first worker to report events")
    first.proc.kill()  # SIGKILL: no chance to acknowledge, reject or clean up
    first.proc.wait(timeout=10)
    run.refresh_from_db()
    assert run.status == Run.Status.RUNNING and run.progress < 1.0

    # A second worker starting after the heartbeat went stale finds the run and retries it.
    time.sleep(float(settings.RUN_STALE_SECONDS) + 0.5)
    start_worker()
    _wait_for(lambda: Run.objects.get(pk=run.pk).is_finished, timeout=60,
              what="the retried run to finish")
    run.refresh_from_db()
    assert run.status == Run.Status.SUCCEEDED, run.error
    assert run.attempts == 2 and run.error == ""
    assert run.event_count == 8 * 4 * 4 and len(run.flows) == 8

    # Anyone watching afterwards sees the finished state, not "running".
    cookie = login_cookie(user)

    async def watch():
        ws = await ws_client.connect(daphne_url, f"/ws/runs/{run.pk}/", cookie=cookie)
        message = await ws.recv()
        await ws.close()
        return message

    assert asyncio.run(watch())["status"] == "succeeded"


def test_status_broadcast_reaches_the_group_from_this_process(daphne_url, ws_client,
                                                              login_cookie):
    user = User.objects.create_user("erin")
    run = Run.objects.create(scenario=_scenario(), scenario_body="", ran_by=user)
    cookie = login_cookie(user)

    async def scenario():
        ws = await ws_client.connect(daphne_url, f"/ws/runs/{run.pk}/", cookie=cookie)
        await ws.recv()
        run.status, run.error = Run.Status.FAILED, "because"
        await asyncio.to_thread(broadcast_status, run)
        message = await ws.recv()
        await ws.close()
        return message

    message = asyncio.run(scenario())
    assert message["status"] == "failed" and message["error"] == "because"


def test_live_stream_keeps_up(daphne_url, ws_client, login_cookie, worker):
    """5,000 trace events reach a websocket client complete, in order, fast, with low lag."""
    user = User.objects.create_user("fast")
    scenario = _scenario(flows=250, packets_per_flow=5)  # 250 × 5 × 4 = 5,000 events
    run = Run.objects.create(scenario=scenario, scenario_body=scenario.body, ran_by=user)
    cookie = login_cookie(user)

    async def watch():
        ws = await ws_client.connect(daphne_url, f"/ws/runs/{run.pk}/", cookie=cookie)
        await ws.recv()
        from labsite.runs.tasks import run_scenario

        await asyncio.to_thread(run_scenario.apply_async, args=[run.pk])
        seqs, lags, first_at = [], [], None
        while True:
            message = await ws.recv(timeout=60)
            now = time.time()
            if message["type"] == "events":
                first_at = first_at or now
                seqs.extend(e["seq"] for e in message["events"])
                lags.extend([now - message["sent_at"]] * len(message["events"]))
            elif message["status"] in ("succeeded", "failed"):
                await ws.close()
                return seqs, lags, now - first_at

    seqs, lags, elapsed = asyncio.run(watch())
    assert seqs == list(range(5000))
    rate = len(seqs) / elapsed
    p95 = sorted(lags)[int(0.95 * len(lags))]
    print(f"\nlive stream: {rate:,.0f} events/s, lag p95 {p95 * 1000:.1f} ms")
    assert rate >= 2000
    assert p95 < 0.250
