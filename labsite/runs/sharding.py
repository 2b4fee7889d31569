"""Large batch runs split over Celery workers: shards by request core, then one merge.

There is no Celery result backend (results live in the database, on purpose: see
``../shared/STACK-NOTES.md``), so no chord. Instead::

    run task (default queue)          shard tasks (RUN_SHARD_QUEUE)        merge task
    execute_run ── claims the run ──▶ RunShard 0 … N-1 ── each writes ──▶ (RUN_SHARD_QUEUE)
      split_run: N rows + N tasks       its figures once, then          the last shard
                                        shards_done += 1 (atomic F())    to finish queues it

- :func:`split_run` (called by ``services.execute_run`` once it has claimed a batch run of
  at least ``RUN_SHARD_MIN_FLOWS`` flows that the engine may split, see
  ``engine_bridge.shard_count``) stores one :class:`RunShard` per shard, unique per
  (run, index), and queues their tasks once that commits. The run stays ``running``; its
  own task ends there.
- :func:`execute_shard` claims a shard (queued, or running with a stale heartbeat), runs
  the engine on its cores' flows under a heartbeat thread (the shard's, and the run's so
  pages do not show it stale), then — in one transaction — stores the result if this
  attempt still owns the shard (written once: a later attempt finds it done) and raises
  the run's ``shards_done`` with an F() update. The shard that brings it to the number of
  shards queues the merge when the transaction commits; the counter's row lock (or
  SQLite's write lock) means exactly one does.
- :func:`execute_merge` builds the unsplit run's report from the shards' figures (the
  engine's ``merge_scenario``) and finishes the run with a write conditional on the run
  still ``running`` in the attempt that split it, clearing the shards' figures in the same
  transaction. Run twice, the second finds the run finished and does nothing.
- :func:`shards_reap_stale` (from ``services.runs_reap_stale``, in the beat process every
  RUN_REAP_SECONDS): a running shard without a heartbeat for RUN_STALE_SECONDS is queued
  again as a new task (its worker died: with late acknowledgement on Redis the message
  would come back only after the visibility timeout, an hour), up to RUN_MAX_ATTEMPTS,
  else the shard and its run fail; a shard queued past RUN_QUEUED_MAX_SECONDS fails the
  run; a run whose shards are all done but which is still running a stale while later
  (the merge task lost) gets its merge queued again. With the defaults a silent shard is
  queued again within 30 + 15 s.

A cancelled or deleted run stops nothing mid-shard (the engine's batch call has no
callback), but its shards' results are dropped: the merge's write is conditional.
"""

from __future__ import annotations

import functools
import logging
import uuid
from datetime import datetime, timedelta

from django.conf import settings
from django.db import close_old_connections, transaction
from django.db.models import F
from django.utils import timezone

from labsite.runs import engine_bridge
from labsite.runs.broadcast import broadcast_status
from labsite.runs.heartbeat import HeartbeatThread
from labsite.runs.models import Run, RunShard

logger = logging.getLogger(__name__)


def split_run(run: Run, count: int) -> None:
    """Store ``count`` queued shards of ``run`` (claimed, ``running``) and queue their
    tasks once the rows are committed."""
    now = timezone.now()
    with transaction.atomic():
        shards = [RunShard.objects.get_or_create(
            run=run, index=index,
            defaults={"count": count, "celery_task_id": str(uuid.uuid4()),
                      "heartbeat_at": now})[0] for index in range(count)]
        Run.objects.filter(pk=run.pk).update(shards_done=0, heartbeat_at=now)
        for shard in shards:
            if shard.status == RunShard.Status.QUEUED:
                transaction.on_commit(functools.partial(
                    shard_enqueue, shard.pk, task_id=shard.celery_task_id))
    logger.info("run %s: split into %d shards by request core", run.pk, count)


def shard_enqueue(shard_id: int, *, task_id: str) -> str | None:
    """Send a shard's task to RUN_SHARD_QUEUE; on failure fail the shard's run and return
    why (as ``services.run_enqueue`` does for a run)."""
    from labsite.runs.services import _broker_errors, broker_unreachable_reason
    from labsite.runs.tasks import run_shard

    try:
        run_shard.apply_async(args=[shard_id], task_id=task_id,
                              queue=settings.RUN_SHARD_QUEUE)
    except _broker_errors() as error:
        reason = broker_unreachable_reason(error)
        logger.error("shard %s: %s", shard_id, reason)
        _fail_shard(shard_id, reason)
        return reason
    return None


def merge_enqueue(run_id: int) -> str | None:
    """Send the merge task of ``run_id`` to RUN_SHARD_QUEUE; None when sent."""
    from labsite.runs.services import _broker_errors, broker_unreachable_reason
    from labsite.runs.tasks import merge_shards

    try:
        merge_shards.apply_async(args=[run_id], queue=settings.RUN_SHARD_QUEUE)
    except _broker_errors() as error:  # the reaper queues it again (all shards done)
        reason = broker_unreachable_reason(error)
        logger.error("run %s: merge not queued: %s", run_id, reason)
        return reason
    return None


class ShardHeartbeat(HeartbeatThread):
    """Stamps ``heartbeat_at`` of the shard (while this attempt owns it) and of its run
    (while it is running) every RUN_HEARTBEAT_SECONDS, from a thread, so a shard busy in
    one long engine call still proves its worker alive."""

    def __init__(self, shard: RunShard | None, *, interval: float, run_id: int = 0):
        """``shard`` None: the run ``run_id``'s heartbeat only (the merge's)."""
        self.shard = shard
        self.run_id = shard.run_id if shard is not None else run_id
        super().__init__(interval=interval, name=f"heartbeat-run-{self.run_id}")

    def beat(self) -> bool:
        now = timezone.now()
        owned = self.shard is None or RunShard.objects.filter(
            pk=self.shard.pk, status=RunShard.Status.RUNNING,
            attempts=self.shard.attempts).update(heartbeat_at=now)
        Run.objects.filter(pk=self.run_id, status=Run.Status.RUNNING).update(heartbeat_at=now)
        return bool(owned)


def shard_claim(shard_id: int, *, task_id: str = "", worker: str = "",
                now: datetime | None = None) -> RunShard | None:
    """Mark a shard ``running`` for this attempt, or None when it must not run: missing,
    done or failed, running on a live worker, or its run no longer running."""
    now = now or timezone.now()
    with transaction.atomic():
        shard = RunShard.objects.select_for_update().filter(pk=shard_id).first()
        if shard is None or shard.status in (RunShard.Status.DONE, RunShard.Status.FAILED):
            return None
        if shard.status == RunShard.Status.RUNNING and not _is_stale(shard.heartbeat_at, now):
            logger.warning("shard %s: already running on a live worker, duplicate ignored",
                           shard_id)
            return None
        if not Run.objects.filter(pk=shard.run_id, status=Run.Status.RUNNING).exists():
            return None
        shard.status = RunShard.Status.RUNNING
        shard.attempts += 1
        shard.started_at = shard.heartbeat_at = now
        shard.worker = worker[:200]  # error stays: why an earlier attempt was retried
        if task_id:
            shard.celery_task_id = task_id
        shard.save()
    return shard


def _is_stale(heartbeat_at: datetime | None, now: datetime) -> bool:
    return heartbeat_at is None or heartbeat_at < now - timedelta(
        seconds=settings.RUN_STALE_SECONDS)


def execute_shard(shard_id: int, *, task_id: str = "", worker: str = "") -> str | None:
    """Run one shard and store its result once; the last shard queues the merge. Returns
    the shard's final status, or None when it was not claimable or this attempt lost it.
    Never raises for a failing shard: its run fails with the reason."""
    from labsite.runs.services import _failure_reason, run_job_spec

    close_old_connections()
    shard = shard_claim(shard_id, task_id=task_id, worker=worker)
    if shard is None:
        return None
    run = shard.run
    try:
        with ShardHeartbeat(shard, interval=settings.RUN_HEARTBEAT_SECONDS):
            figures, flows = engine_bridge.run_shard_job(run_job_spec(run), shard.index,
                                                         shard.count)
    except Exception as exc:  # the run's reason, never a crash
        logger.exception("run %s shard %s failed", run.pk, shard.index)
        _fail_shard(shard.pk, f"shard {shard.index + 1} of {shard.count}: "
                              f"{_failure_reason(exc)}", attempt=shard.attempts)
        return RunShard.Status.FAILED
    with transaction.atomic():
        stored = RunShard.objects.filter(
            pk=shard.pk, status=RunShard.Status.RUNNING, attempts=shard.attempts
        ).update(status=RunShard.Status.DONE, figures=figures, flows=flows,
                 finished_at=timezone.now())
        if not stored:  # reaped and handed to another attempt, or the run was deleted
            logger.info("run %s shard %s: attempt %s lost it, result dropped", run.pk,
                        shard.index, shard.attempts)
            return None
        Run.objects.filter(pk=run.pk).update(
            shards_done=F("shards_done") + 1,
            progress=(F("shards_done") + 1) * 1.0 / shard.count)
        done = Run.objects.filter(pk=run.pk).values_list("shards_done", flat=True).first()
        if done == shard.count:  # the last one: exactly one shard sees it
            transaction.on_commit(functools.partial(merge_enqueue, run.pk))
    _broadcast(run.pk)
    return RunShard.Status.DONE


def execute_merge(run_id: int) -> str | None:
    """Finish a split run from its shards' figures; safe to run twice (None: nothing to
    do — the run is finished or gone, or a shard is not done yet)."""
    from labsite.runs.services import _failure_reason, json_size, run_job_spec

    close_old_connections()
    run = Run.objects.filter(pk=run_id, status=Run.Status.RUNNING).first()
    if run is None:
        return None
    shards = list(RunShard.objects.filter(run=run).order_by("index"))
    if not shards or any(s.status != RunShard.Status.DONE or s.figures is None
                         for s in shards):
        logger.info("run %s: merge called before every shard is done", run_id)
        return None
    try:
        # the run's heartbeat: a long merge must not look like a lost one to the reaper
        with ShardHeartbeat(None, run_id=run.pk, interval=settings.RUN_HEARTBEAT_SECONDS):
            outcome = engine_bridge.merge_shard_jobs(run_job_spec(run),
                                                     [bytes(s.figures) for s in shards])
        fields = {"status": Run.Status.SUCCEEDED, "progress": 1.0, "summary": outcome.summary,
                  "report": outcome.report,
                  "stored_bytes": len(run.scenario_body.encode()) + json_size(outcome.report)}
    except Exception as exc:
        logger.exception("run %s: merge failed", run_id)
        fields = {"status": Run.Status.FAILED, "error": f"merge: {_failure_reason(exc)}"}
    with transaction.atomic():
        updated = Run.objects.filter(pk=run.pk, status=Run.Status.RUNNING,
                                     attempts=run.attempts).update(
            finished_at=timezone.now(), **fields)
        if updated:  # the figures served their purpose: free the space
            RunShard.objects.filter(run=run).update(figures=None)
    if not updated:
        return None
    logger.info("run %s: merged from %d shards (%s)", run_id, len(shards), fields["status"])
    _broadcast(run.pk)
    return fields["status"]


def _fail_shard(shard_id: int, reason: str, *, attempt: int | None = None) -> None:
    """Fail a shard and its run (if still running) with ``reason``."""
    now = timezone.now()
    shard = RunShard.objects.filter(pk=shard_id).first()
    if shard is None:
        return
    owned = RunShard.objects.filter(pk=shard_id).exclude(status=RunShard.Status.DONE)
    if attempt is not None:
        owned = owned.filter(attempts=attempt)
    if owned.update(status=RunShard.Status.FAILED, error=reason, finished_at=now) and (
            Run.objects.filter(pk=shard.run_id, status=Run.Status.RUNNING).update(
                status=Run.Status.FAILED, error=reason, finished_at=now)):
        _broadcast(shard.run_id)


def _broadcast(run_id: int) -> None:
    run = Run.objects.filter(pk=run_id).first()
    if run is None:
        return
    try:
        broadcast_status(run)
    except Exception:  # the database holds the truth; a Redis hiccup only logs
        logger.exception("run %s: could not broadcast its status", run_id)


def shards_reap_stale(*, now: datetime | None = None) -> list[int]:
    """Queue again (or fail) silent shards, fail shards never started, and queue a lost
    merge again (see the module docstring); return the ids of the runs acted on. Every
    write is conditional on the state read, so two reapers never act twice."""
    now = now or timezone.now()
    acted = []
    stale_before = now - timedelta(seconds=settings.RUN_STALE_SECONDS)
    for shard in RunShard.objects.filter(status=RunShard.Status.RUNNING,
                                         heartbeat_at__lt=stale_before,
                                         run__status=Run.Status.RUNNING):
        lost = (f"worker lost: no heartbeat from shard {shard.index + 1} of {shard.count} "
                f"(attempt {shard.attempts}, {shard.worker or 'unknown worker'}) since "
                f"{shard.heartbeat_at:%Y-%m-%d %H:%M:%S} UTC")
        if shard.attempts >= settings.RUN_MAX_ATTEMPTS:
            _fail_shard(shard.pk, f"{lost}; gave up after {shard.attempts} attempts, "
                                  f"start the run again", attempt=shard.attempts)
            acted.append(shard.run_id)
            continue
        task_id = str(uuid.uuid4())
        with transaction.atomic():
            updated = RunShard.objects.filter(
                pk=shard.pk, status=RunShard.Status.RUNNING, attempts=shard.attempts,
                heartbeat_at=shard.heartbeat_at,
            ).update(status=RunShard.Status.QUEUED, error=f"{lost}; retrying",
                     celery_task_id=task_id, heartbeat_at=now)
            if updated:
                transaction.on_commit(functools.partial(shard_enqueue, shard.pk,
                                                        task_id=task_id))
        if updated:
            logger.warning("run %s: %s; queued again", shard.run_id, lost)
            acted.append(shard.run_id)
    never = now - timedelta(seconds=settings.RUN_QUEUED_MAX_SECONDS)
    for shard in RunShard.objects.filter(status=RunShard.Status.QUEUED,
                                         heartbeat_at__lt=never,
                                         run__status=Run.Status.RUNNING):
        _fail_shard(shard.pk, f"never started: shard {shard.index + 1} of {shard.count} "
                              f"waited {settings.RUN_QUEUED_MAX_SECONDS / 3600:g} h for a "
                              f"worker on queue {settings.RUN_SHARD_QUEUE!r}; start the run "
                              f"again")
        acted.append(shard.run_id)
    return acted + _requeue_lost_merges(stale_before)


def _requeue_lost_merges(stale_before: datetime) -> list[int]:
    """Runs whose shards are all done but which are still running, with no heartbeat for
    RUN_STALE_SECONDS: their merge task was lost (or its worker died). Queue it again."""
    from django.db.models import Count, Q

    waiting = (Run.objects.filter(status=Run.Status.RUNNING, heartbeat_at__lt=stale_before)
               .annotate(total=Count("shards"),
                         done=Count("shards", filter=Q(shards__status=RunShard.Status.DONE)))
               .filter(total__gt=0, total=F("done")))
    acted = []
    for run in waiting:
        # stamp it, so the next tick waits a stale period again before another merge
        if Run.objects.filter(pk=run.pk, heartbeat_at=run.heartbeat_at).update(
                heartbeat_at=timezone.now()):
            merge_enqueue(run.pk)
            logger.warning("run %s: every shard done, merge queued again", run.pk)
            acted.append(run.pk)
    return acted
