"""Celery tasks for runs: thin wrappers that take a primary key and call a service."""

from __future__ import annotations

import logging

from celery import shared_task
from celery.signals import worker_ready

from labsite.runs.services import execute_run, runs_reap_stale

logger = logging.getLogger(__name__)


@shared_task(name="runs.run_scenario", bind=True, acks_late=True, reject_on_worker_lost=True)
def run_scenario(self, run_id: int) -> str | None:
    return execute_run(int(run_id), task_id=self.request.id or "")


@worker_ready.connect
def reap_on_worker_start(**kwargs) -> None:
    """A (re)starting worker is the moment runs its predecessor left behind are found."""
    reaped = runs_reap_stale()
    if reaped:
        logger.warning("worker start: marked lost runs %s as failed", reaped)
