"""The lab's one Celery beat process: the writes no page view may make.

    celery -A labsite beat --schedule var/celerybeat-schedule

``labsite.launcher`` (``make run``) supervises one; docker-compose runs one as the ``beat``
service (never ``worker -B``: ``--scale worker=4`` would start four schedulers). It does
three things:

- as it starts (Celery's ``beat_init`` signal): store the engine's example scenarios
  (``labsite.lab.services.examples_load``: new ones created, edited ones left alone). This
  is the one place examples are written; the launcher waits for them before it prints the
  lab's address. Then the shipped exercise pack (``engine/exercises/pack``), published to
  every student, owned by the lab (``labsite.exercises.services.exercises_pack_load``:
  stored once, later uploads and publication changes left alone).
- every ``RUN_REAP_SECONDS`` the ``exercises.reap_stale`` task too: attempts whose worker
  died mid-grade are queued again, or failed (never counted).
- every ``RUN_REAP_SECONDS`` (15 s): the ``runs.reap_stale`` task
  (``labsite.runs.services.runs_reap_stale``): runs whose worker was lost are queued
  again or failed, runs no worker took for hours fail as never started.
- every ``RUN_PRUNE_SECONDS`` (an hour): the ``runs.prune_events`` task
  (``labsite.runs.services.runs_prune_events``): the events of runs finished more than
  ``RUN_EVENTS_RETENTION_DAYS`` (30) ago are deleted, their rows kept (fair use).

Schedule entries whose options say ``run_in_beat`` (``CELERY_BEAT_SCHEDULE`` in the
settings) run *here*, in the beat process (:class:`LabScheduler`), not on a worker: a
reap sent to the queue would wait behind every queued run (workers take tasks in order,
one or two at a time) and would never run while no worker does — the very moments a run
is lost or never started. Reaping is idempotent (every write is conditional on the state
it read), so a second beat started by mistake does no harm beyond the extra queries.
"""

from __future__ import annotations

import logging

from celery.beat import PersistentScheduler
from celery.signals import beat_init

logger = logging.getLogger(__name__)


class LabScheduler(PersistentScheduler):
    """Celery's persistent scheduler (the schedule file given by ``--schedule``) that runs
    the entries marked ``run_in_beat`` in this process (see the module docstring) and
    sends the others to the workers as usual."""

    def apply_entry(self, entry, producer=None):
        if not entry.options.get("run_in_beat"):
            return super().apply_entry(entry, producer=producer)
        task = self.app.tasks[entry.task]
        logger.debug("beat: running %s (%s) here", entry.name, entry.task)
        result = task.apply(args=entry.args, kwargs=entry.kwargs)
        if result.failed():  # logged; the next tick tries again
            logger.error("beat: %s (%s) failed: %r\n%s", entry.name, entry.task,
                         result.result, result.traceback)
        return result


@beat_init.connect
def beat_started(sender=None, **kwargs) -> None:
    """Run the start-up loaders (``BEAT_STARTUP_LOADERS``: the example scenarios, then the
    exercise pack), once per start of the beat process. They are named in the settings, not
    imported here, because every app imports ``labsite.celery`` (and so this module): an
    import of an upper app here would make the lower apps depend on it."""
    from django.conf import settings
    from django.db import close_old_connections
    from django.utils.module_loading import import_string

    try:
        for dotted in settings.BEAT_STARTUP_LOADERS:
            try:
                stored = import_string(dotted)()
            except Exception:  # one broken loader must not stop the others or the reaper
                logger.exception("start-up loader %s failed", dotted)
            else:
                if stored:
                    logger.info("%s stored %d rows", dotted, len(stored))
    finally:
        close_old_connections()
