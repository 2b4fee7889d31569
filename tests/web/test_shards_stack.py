"""A large batch run split over two real Celery workers (real Redis, the test database, the
lab's beat as reaper): one worker is killed as soon as its first shard reports started,
its shard is queued again and finished by the other, and the run ends once, with the
report of the unsplit run (labsite.runs.sharding; engine.runs.shards).

The 4,000,000-flow run and the stack benchmark are opt-in: ``pytest -m scale
tests/web/test_shards_stack.py -s`` (they print their figures).
"""

from __future__ import annotations

import json
import time

import pytest

from tests.web.conftest import Beat
from tests.web.helpers import wait_for

pytestmark = [pytest.mark.stack, pytest.mark.django_db(transaction=True)]

SCENARIO = """\
schema_version: 1
name: big-nat
seed: 3
system:
  cores: 8
  ips_per_core: {ips}
  nic:
    key: microsoft
ports:
  strategy: {strategy}
services:
  - name: web
    vip: 192.0.2.10
    vport: 80
    policy: nat
    servers: {servers}
traffic:
  generated:
    count: {flows}
    client_prefixes: ["198.51.0.0/16", "203.0.0.0/16", "100.64.0.0/12"]
checks:
  symmetric_rate: ">= 100%"
"""

#: What the workers are told: split from 100,000 flows, into two shards (one per worker).
SPLIT_ENV = {"RUN_SHARD_MIN_FLOWS": "100000", "RUN_SHARDS": "2",
             "RUN_BATCH_MAX_FLOWS": "5000000"}


@pytest.fixture
def scale(request):
    """Skip unless the run selects the ``scale`` mark (``-m scale``): opt-in only."""
    if "scale" not in (request.config.getoption("markexpr") or ""):
        pytest.skip("opt-in: pytest -m scale")


@pytest.fixture
def reaper(stack_env, tmp_path):
    """The lab's beat, reaping every second (the real 15 s would only slow the test)."""
    started = Beat({**stack_env, "RUN_REAP_SECONDS": "1"}, tmp_path)
    try:
        yield started.wait_started()
    finally:
        started.stop()


@pytest.fixture
def owner(db):
    from django.contrib.auth.models import User

    return User.objects.create_user("batcher", password="pw-for-tests-123")


def submit(owner, flows: int, strategy: str):
    """A nat run of ``flows`` flows with scarce ports, so some are refused (refusals are
    merged too): up to 2,000,000, 2 IPs a core; above, 16 (one table per local IP, 8,064
    fitting ports a core each: about 1,032,000 flows served, the rest refused)."""
    from labsite.runs.services import run_start

    ips, servers = (2, 3) if flows <= 2_000_000 else (16, 6)
    body = SCENARIO.format(flows=flows, strategy=strategy, ips=ips, servers=json.dumps(
        [f"10.0.0.{i}:8080" for i in range(1, servers + 1)]))
    return run_start(user=owner, body=body, mode="batch", title=f"big-nat {flows}")


def finished(run, timeout: float):
    from labsite.runs.models import Run

    def done():
        run.refresh_from_db()
        return run.status in Run.FINISHED
    wait_for(done, timeout=timeout, what=f"run {run.pk} to finish", every=0.2)
    return run


def unsplit_outcome(run):
    """The run as one worker runs it unsplit, here in the test process."""
    from django.test import override_settings

    from labsite.runs import engine_bridge
    from labsite.runs.services import run_job_spec

    with override_settings(RUN_BATCH_MAX_FLOWS=int(SPLIT_ENV["RUN_BATCH_MAX_FLOWS"])):
        outcome = engine_bridge.run_job(run_job_spec(run), on_event=lambda event: None,
                                        on_progress=lambda fraction: None)
    # as stored: through JSON, like the run's own columns
    return json.loads(json.dumps(outcome.summary)), json.loads(json.dumps(outcome.report))


def split_with_a_kill(start_worker, owner, flows: int, strategy: str, timeout: float):
    from labsite.runs.models import Run, RunShard
    from labsite.runs.sharding import execute_merge

    workers = [start_worker(**SPLIT_ENV), start_worker(**SPLIT_ENV)]
    started = time.monotonic()
    run = submit(owner, flows, strategy)
    # The hook: the first shard whose row says a worker has claimed it.
    shard = wait_for(lambda: RunShard.objects.filter(run=run, status="running").first(),
                     timeout=60, what="a shard to start", every=0.01)
    victim = next(w for w in workers if w.name == shard.worker)
    victim.proc.kill()
    victim.proc.wait(timeout=10)
    killed_at = time.monotonic()
    finished(run, timeout)
    elapsed = time.monotonic() - started
    assert run.status == Run.Status.SUCCEEDED, run.error
    shards = list(RunShard.objects.filter(run=run).order_by("index"))
    assert [s.status for s in shards] == ["done", "done"]
    assert run.attempts == 1 and run.shards_done == 2  # counted once per shard
    retried = RunShard.objects.get(pk=shard.pk)
    assert retried.attempts == 2 and retried.worker != victim.name
    assert "worker lost" in retried.error
    assert all(s.figures is None for s in shards)  # freed by the merge
    # the merge is idempotent: a second one changes nothing
    before = (run.finished_at, run.summary)
    assert execute_merge(run.pk) is None
    run.refresh_from_db()
    assert (run.finished_at, run.summary) == before
    summary, report = unsplit_outcome(run)
    assert run.summary == summary
    assert run.report == report
    return run, elapsed, killed_at - started, sum(s.flows for s in shards)


def test_a_200000_flow_nat_run_split_over_two_workers_survives_a_killed_worker(
        start_worker, reaper, owner):
    run, elapsed, _, flows = split_with_a_kill(start_worker, owner, 200_000, "scan",
                                               timeout=90)
    assert flows == 200_000 == run.summary["flows"]
    assert run.summary["refused"] > 0  # scarce ports: refusals are merged too


@pytest.mark.scale
def test_a_4000000_flow_nat_run_split_over_two_workers_survives_a_killed_worker(
        scale, start_worker, reaper, owner):
    run, elapsed, killed, flows = split_with_a_kill(start_worker, owner, 4_000_000, "solve",
                                                    timeout=600)
    assert flows == 4_000_000
    figures = {k: run.summary[k] for k in ("flows", "symmetric", "refused", "fairness",
                                           "distinct_hashes")}
    print(f"\n4,000,000-flow nat run over two workers, one killed {killed:.1f} s after "
          f"submission: finished in {elapsed:.1f} s; {figures}")


@pytest.mark.scale
def test_stack_two_workers_speedup(scale, start_worker, owner):
    """The same run on one worker unsplit, then split over two: a figure, no threshold."""
    flows, strategy = 1_500_000, "scan"

    def seconds(run):
        run = finished(run, 900)
        assert run.status == "succeeded", run.error
        return (run.finished_at - run.started_at).total_seconds(), run

    single = start_worker(RUN_SHARD_MIN_FLOWS="999999999", RUN_BATCH_MAX_FLOWS="5000000")
    one, whole = seconds(submit(owner, flows, strategy))
    single.stop()
    start_worker(**SPLIT_ENV)
    start_worker(**SPLIT_ENV)
    two, split = seconds(submit(owner, flows, strategy))
    assert split.shards.count() == 2 and not whole.shards.exists()
    assert split.summary == whole.summary
    print(f"\nstack_two_workers_speedup: {one / two:.2f} ({flows:,} flows nat/{strategy}: "
          f"one worker {one:.1f} s, two workers {two:.1f} s)")
