"""The cross-process paths users depend on, on real Redis, daphne and Celery workers."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import time

import pytest
from django.conf import settings
from django.contrib.auth.models import Group, User

from labsite.lab.builder import PRESETS
from labsite.runs.broadcast import broadcast_events, broadcast_status
from labsite.runs.models import Run, RunEventChunk
from labsite.runs.submit import lab_compare_submit, lab_run_submit
from tests.web.helpers import wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.stack]


def _builder(preset: str = "nat", **changes) -> dict:
    fields = copy.deepcopy(PRESETS[preset])
    fields.update(changes)
    return fields


def _generated(count: int, preset: str = "nat") -> dict:
    return _builder(preset, traffic={"kind": "generated", "count": count,
                                     "client_prefixes": ["198.51.100.0/24"]})


def _submit(user, fields: dict, **data) -> Run:
    return lab_run_submit(user=user, data={"source": "builder", "builder": fields,
                                           **data}).run


def _stored_seqs(run: Run) -> list[int]:
    return [e["seq"] for chunk in RunEventChunk.objects.filter(run=run).order_by("first_seq")
            for e in chunk.events]




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
    run = Run.objects.create(scenario_body="", ran_by=user)
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
    run = Run.objects.create(scenario_body="", ran_by=owner)
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


def _watch_run(daphne_url, ws_client, cookie, run_id, *, timeout=60):
    """Messages of run ``run_id`` from a websocket opened before the run is queued."""
    from labsite.runs.tasks import run_scenario

    async def watch():
        ws = await ws_client.connect(daphne_url, f"/ws/runs/{run_id}/", cookie=cookie)
        assert (await ws.recv())["status"] == "queued"
        await asyncio.to_thread(run_scenario.apply_async, args=[run_id])
        messages = await _collect_until_finished(ws, timeout=timeout)
        await ws.close()
        return messages

    return asyncio.run(watch())


def _created_unqueued(user, fields, **data) -> Run:
    """A run stored by the lab's service but not queued (the test queues it itself)."""
    from django.db import transaction

    with transaction.atomic():
        run = _submit(user, fields, **data)
        # Queued by on_commit; take it out again so only the test's apply_async runs it.
        transaction.get_connection().run_on_commit.clear()
    return run


@pytest.mark.parametrize(("preset", "verdict"), [("nat", "symmetric"),
                                                  ("transparent", "handed-off")])
def test_worker_runs_a_preset_and_streams_every_event(daphne_url, ws_client, login_cookie,
                                                      worker, preset, verdict):
    user = User.objects.create_user(f"bob-{preset}")
    run = _created_unqueued(user, _builder(preset), mode="trace")
    messages = _watch_run(daphne_url, ws_client, login_cookie(user), run.pk)
    statuses = [m["status"] for m in messages if m["type"] == "status"]
    assert statuses == ["running", "succeeded"]
    events = [e for m in messages if m["type"] == "events" for e in m["events"]]
    assert [e["seq"] for e in events] == list(range(len(events))) and len(events) > 30
    assert [e["verdict"] for e in events if e["kind"] == "verdict"] == [verdict] * 3
    final = messages[-1]
    assert final["progress"] == 1.0 and final["event_count"] == len(events)
    run.refresh_from_db()
    assert run.status == Run.Status.SUCCEEDED and run.attempts == 1
    assert _stored_seqs(run) == list(range(len(events)))  # every event stored, no gaps
    assert [row["verdict"] for row in run.report["rows"]] == [verdict] * 3
    if preset == "nat":
        assert final["summary"]["symmetric"] == 3 and final["summary"]["passed"]
    else:
        assert final["summary"]["handed_off"] == 3 and final["summary"]["handoff_copies"] == 3
        assert any(e["kind"] == "forwarded" for e in events)
    assert run.started_at <= run.finished_at


def test_worker_runs_a_comparison(worker):
    user = User.objects.create_user("cmp")
    submitted = lab_compare_submit(user=user, data={
        "source": "builder", "builder": _generated(500, "transparent"),
        "vary": {"key": ["microsoft", "symmetric"], "policy": ["nat", "transparent"]}})
    run = wait_for(lambda: Run.objects.filter(pk=submitted.run.pk, status__in=Run.FINISHED)
                    .first(), timeout=60, what="the comparison to finish")
    assert run.status == Run.Status.SUCCEEDED, run.error
    cells = {cell["label"]: cell for cell in run.report["cells"]}
    assert cells["key=microsoft policy=nat"]["symmetric_rate"] == 1.0
    assert cells["key=microsoft policy=transparent"]["handed_off"] > 0
    assert cells["key=symmetric policy=nat"]["symmetric_rate"] == 1.0
    assert {"per-packet", "per-vserver", "per-nic", "per-function"} <= set(cells)


def test_a_failing_run_ends_failed_with_its_reason(worker):
    user = User.objects.create_user("carol")
    # A stored text the engine refuses (the lab's API would have refused it up front).
    run = _created_unqueued(user, _builder("nat"), mode="trace")
    Run.objects.filter(pk=run.pk).update(scenario_body=run.scenario_body.replace(
        "cores: 4", "cores: 0"))
    from labsite.runs.tasks import run_scenario

    run_scenario.apply_async(args=[run.pk])
    wait_for(lambda: Run.objects.get(pk=run.pk).is_finished, timeout=30,
              what=f"run {run.pk} to finish")
    run.refresh_from_db()
    assert run.status == Run.Status.FAILED
    assert run.error == ("nat-microsoft-4-cores: 1 problem\n"
                         "  line 5: system.cores: expected a number >= 1, got 0")


def test_killed_worker_run_is_retried_to_completion(beat, start_worker, daphne_url, ws_client,
                                                    login_cookie):
    """The beat process (started by the ``beat`` fixture, reaping every 15 s) finds the run
    whose worker was killed and queues it again; another worker finishes it."""
    user = User.objects.create_user("dave")
    # A solo worker answers no ping while it runs a task: start it before queueing.
    first = start_worker()
    # 300 flows × 10 ms ≈ 3 s: long enough to kill the worker mid-way.
    run = _submit(user, _generated(300), mode="trace", delay_ms=10)
    wait_for(lambda: Run.objects.filter(pk=run.pk, status="running", event_count__gt=500)
              .exists(), timeout=30, what="the first worker to report events")
    first.proc.kill()  # SIGKILL: no chance to acknowledge, reject or clean up
    first.proc.wait(timeout=10)
    run.refresh_from_db()
    assert run.status == Run.Status.RUNNING and run.progress < 1.0
    stored_before = len(_stored_seqs(run))
    assert stored_before > 0

    # Nothing but the beat process reaps: a second worker runs the run once beat, within
    # RUN_REAP_SECONDS of the heartbeat going stale, has queued it again.
    start_worker()
    wait_for(lambda: Run.objects.get(pk=run.pk).is_finished,
              timeout=60 + float(settings.RUN_STALE_SECONDS) + settings.RUN_REAP_SECONDS,
              what="the retried run to finish")
    run.refresh_from_db()
    assert run.status == Run.Status.SUCCEEDED, run.error
    assert run.attempts == 2 and run.error == ""
    seqs = _stored_seqs(run)
    assert seqs == list(range(len(seqs))) and len(seqs) > stored_before  # resumed, no gap
    assert run.event_count == len(seqs) and run.report["summary"]["flows"] == 300
    assert run.summary["symmetric"] == 300

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
    run = Run.objects.create(scenario_body="", ran_by=user)
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
    """5,000+ trace events reach a websocket client complete, in order, fast, with low lag."""
    user = User.objects.create_user("fast")
    run = _created_unqueued(user, _generated(340), mode="trace")  # ≈ 15 events per flow
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
    assert len(seqs) >= 5000 and seqs == list(range(len(seqs)))
    rate = len(seqs) / elapsed
    p95 = sorted(lags)[int(0.95 * len(lags))]
    print(f"\nlive stream: {len(seqs)} events, {rate:,.0f} events/s, "
          f"lag p95 {p95 * 1000:.1f} ms")
    assert rate >= 2000
    assert p95 < 0.250


def test_deleting_a_running_run_cancels_it_and_it_ends_once(worker, daphne_url, ws_client,
                                                            login_cookie):
    """DELETE over HTTP (at daphne) while a real worker runs the run: watchers get one
    final status, ``cancelled``; the worker stops at once (its heartbeat finds the run
    gone) and takes the next run, instead of finishing the ten seconds this one had left."""
    from labsite.runs.tasks import run_scenario
    from tests.web.helpers import api_call

    user = User.objects.create_user("gina")
    # 500 flows × 20 ms ≈ 10 s if it were not stopped.
    run = _created_unqueued(user, _generated(500), mode="trace", delay_ms=20)
    cookie = login_cookie(user)

    async def scenario():
        ws = await ws_client.connect(daphne_url, f"/ws/runs/{run.pk}/", cookie=cookie)
        messages = [await ws.recv()]
        await asyncio.to_thread(run_scenario.apply_async, args=[run.pk],
                                task_id=run.celery_task_id)
        while sum(len(m.get("events", ())) for m in messages) < 100:
            messages.append(await ws.recv(timeout=30))
        answer = await asyncio.to_thread(api_call, daphne_url, "DELETE",
                                         f"/lab/api/runs/{run.pk}/", cookie=cookie)
        deleted_at = time.monotonic()
        # Everything the group says in the next 2 s (≫ the 0.3 s heartbeat).
        with contextlib.suppress(TimeoutError):
            while time.monotonic() - deleted_at < 2:
                messages.append(await ws.recv(timeout=2 - (time.monotonic() - deleted_at)))
        await ws.close()
        return answer, messages, deleted_at

    (status, body, _), messages, deleted_at = asyncio.run(scenario())
    assert status == 200 and body == {"run": run.pk, "deleted": True, "cancelled": True,
                                      "freed_bytes": body["freed_bytes"]}
    assert body["freed_bytes"] > len(run.scenario_body)  # events were stored, and freed
    statuses = [m["status"] for m in messages if m["type"] == "status"]
    assert statuses == ["queued", "running", "cancelled"]  # ends once, as cancelled
    final = next(m for m in messages if m.get("status") == "cancelled")
    assert final["error"] == "cancelled: deleted by gina"
    assert not Run.objects.filter(pk=run.pk).exists()
    assert not RunEventChunk.objects.filter(run_id=run.pk).exists()

    # The worker is free again: the next run finishes long before the deleted one would.
    following = _submit(user, _builder("nat"), mode="trace")
    wait_for(lambda: Run.objects.filter(pk=following.pk, status="succeeded").exists(),
             timeout=8, what="the next run to finish on the same worker")
    assert time.monotonic() - deleted_at < 8
    log = worker.log()
    assert f"run {run.pk}: attempt 1 stopped, the run is" in log
    assert f"run {run.pk} failed" not in log
