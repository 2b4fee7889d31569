"""Celery tasks for runs: thin wrappers that take a primary key (or nothing) and call a
service.

``runs.run_scenario`` runs on a worker; a large batch run is split into ``runs.run_shard``
tasks and their ``runs.merge_shards`` (``labsite.runs.sharding``) on RUN_SHARD_QUEUE.
``runs.reap_stale`` is on the beat schedule
(``CELERY_BEAT_SCHEDULE`` in the settings, every RUN_REAP_SECONDS) and runs inside the
lab's one beat process (``labsite.beat``), so lost runs are found even while every worker
is busy, or none is running. ``runs.prune_events`` runs there too, every
RUN_PRUNE_SECONDS: it deletes the events of runs older than RUN_EVENTS_RETENTION_DAYS.
"""

from __future__ import annotations

import logging

from celery import shared_task
from django.db import close_old_connections

from labsite.runs.services import execute_run, runs_prune_events, runs_reap_stale
from labsite.runs.sharding import execute_merge, execute_shard

logger = logging.getLogger(__name__)


@shared_task(name="runs.run_scenario", bind=True, acks_late=True, reject_on_worker_lost=True)
def run_scenario(self, run_id: int) -> str | None:
    return execute_run(int(run_id), task_id=self.request.id or "")


@shared_task(name="runs.run_shard", bind=True, acks_late=True, reject_on_worker_lost=True)
def run_shard(self, shard_id: int) -> str | None:
    """One shard of a large batch run (``labsite.runs.sharding``), on RUN_SHARD_QUEUE."""
    return execute_shard(int(shard_id), task_id=self.request.id or "",
                         worker=self.request.hostname or "")


@shared_task(name="runs.merge_shards", acks_late=True, reject_on_worker_lost=True)
def merge_shards(run_id: int) -> str | None:
    """The merge of a split run's shards, queued by the last shard to finish (safe to run
    twice: ``sharding.execute_merge``)."""
    return execute_merge(int(run_id))


@shared_task(name="runs.reap_stale", ignore_result=True)
def reap_stale() -> list[int]:
    """Retry or fail runs whose worker was lost, fail runs never started (see
    ``services.runs_reap_stale``); return their ids."""
    close_old_connections()  # a long-lived process: drop a connection the database closed
    try:
        return runs_reap_stale()
    finally:
        close_old_connections()


@shared_task(name="runs.prune_events", ignore_result=True)
def prune_events() -> list[int]:
    """Delete old runs' events, keeping the runs (see ``services.runs_prune_events``);
    return their ids."""
    close_old_connections()
    try:
        return runs_prune_events()
    finally:
        close_old_connections()
