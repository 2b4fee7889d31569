"""Write-side logic of runs: start, execute on a worker, finish, reap lost ones.

Lifecycle::

    queued ──claim──▶ running ──▶ succeeded
       ▲                 │  └────▶ failed (error says why: bad input, engine error,
       │                 │                  "worker lost …")
       └─ run_start      └─ heartbeat_at refreshed every RUN_HEARTBEAT_SECONDS by a thread

A worker that dies mid-run leaves the message unacknowledged (``task_acks_late``) and the
run ``running`` with a heartbeat that stops moving. :func:`runs_reap_stale` — run every
RUN_REAP_SECONDS by the lab's one beat process (``labsite.beat``; reading a run never
writes) — finds every run whose heartbeat is older than RUN_STALE_SECONDS: it is queued
again (a new task) while it has had fewer than RUN_MAX_ATTEMPTS attempts, else marked
``failed`` with the reason "worker lost …". If the broker later re-delivers the dead
worker's message too, :func:`run_claim` lets only one of the two deliveries run it (a live
heartbeat or a finished run refuses the other). A run is therefore never ``running`` for
ever, and never finished twice: every final write is conditional on the attempt that
claimed it.

Nor is a run ``queued`` for ever: when the broker cannot be reached, :func:`run_start`
marks the run failed with the reason and raises RunQueueError (the API answers 503), and
the reaper fails a run still queued after RUN_QUEUED_MAX_SECONDS.

A user may stop a run: :func:`run_delete` cancels a queued or running one first
(:func:`run_cancel`: status ``cancelled``, its task revoked). The worker learns it from its
own heartbeat — the heartbeat's write is conditional on the run still being this
attempt's, so it writes nothing once the run is cancelled, deleted or reaped — and the
engine's next event or progress report stops the run (:class:`RunCancelled`) without a
final write, so a cancelled run ends exactly once, as ``cancelled``.

Fair use (``labsite.runs.quota``): :func:`run_start` refuses a run past the user's active
cap or storage budget; ``Run.stored_bytes`` is kept here (start, heartbeats, finish,
pruning); :func:`runs_prune_events`, on the beat schedule, deletes the events of runs older
than RUN_EVENTS_RETENTION_DAYS and keeps their rows.
"""

from __future__ import annotations

import functools
import json
import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import close_old_connections, transaction
from django.db.models.functions import Coalesce
from django.utils import timezone
from django.utils.text import slugify

from labsite.lab.errors import LabInputError, lab_field
from labsite.lab.models import Scenario
from labsite.runs import engine_bridge, quota
from labsite.runs.broadcast import broadcast_events, broadcast_status
from labsite.runs.errors import RunInputError, RunQueueError
from labsite.runs.heartbeat import HeartbeatThread
from labsite.runs.models import Run, RunCapture, RunEventChunk

logger = logging.getLogger(__name__)

SEED_MAX = 2**63 - 1  # as the engine's scenario seed


def run_start(*, user, body: str, mode: str = Run.Mode.TRACE, seed: int = 0,
              scenario: Scenario | None = None, title: str = "",
              parameters: dict | None = None, capture: RunCaptureInput | None = None,
              batch=None, admitted: bool = False, queue: bool = True) -> Run:
    """Store a queued run of ``body`` and queue its task once the transaction commits.

    ``scenario`` is the stored scenario the text came from (None for text built or typed
    in the lab); ``capture`` an uploaded pcap the caller has already validated. A batch's
    items (``batch``) are admitted once for the whole batch (``admitted``: the caller called
    ``quota.run_admit``) and queued by the caller (``queue`` False: :func:`run_enqueue`
    after the batch commits, so one unreachable broker fails every item, not the first).
    Raises RunInputError for a bad mode or seed, RunActiveLimitError /
    RunStorageLimitError when ``user`` is at a fair-use limit (``quota.run_admit``: the run
    is then not stored, let alone queued), and RunQueueError when the broker cannot be
    reached (the run, already stored, is then marked failed with that reason).
    """
    if mode not in Run.Mode.values:
        raise RunInputError(f"mode: expected one of {', '.join(Run.Mode.values)}, got {mode!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= SEED_MAX:
        raise RunInputError(f"seed: expected an integer 0–{SEED_MAX}, got {seed!r}")
    with transaction.atomic():
        if not admitted:
            quota.run_admit(user)
        run = Run.objects.create(
            batch=batch,
            scenario=scenario, title=title or (scenario.name if scenario else ""),
            scenario_body=body, ran_by=user, mode=mode, seed=seed,
            parameters=parameters or {}, celery_task_id=str(uuid.uuid4()),
            stored_bytes=len(body.encode()) + (len(capture.data) if capture else 0),
        )
        if capture is not None:
            RunCapture.objects.create(run=run, name=capture.name[:255], data=capture.data,
                                      packets=capture.packets)
        # Sent once the row is committed (a worker must find it). When this block is the
        # outermost transaction the hook runs as it exits, so RunQueueError reaches the
        # caller; the run is already marked failed by then.
        if queue:
            transaction.on_commit(functools.partial(_enqueue_or_raise, run))
    return run


def _enqueue_or_raise(run: Run) -> None:
    reason = run_enqueue(run.pk, task_id=run.celery_task_id)
    if reason is not None:
        run.refresh_from_db()
        raise RunQueueError(reason, run=run)


def _broker_errors() -> tuple[type[BaseException], ...]:
    """What publishing raises when the broker cannot be reached (after Celery's retries)."""
    import kombu.exceptions
    import redis.exceptions

    return (kombu.exceptions.OperationalError, redis.exceptions.ConnectionError,
            redis.exceptions.TimeoutError, OSError)


def broker_unreachable_reason(error: BaseException) -> str:
    """Why a task could not be queued, naming the broker without its password."""
    from kombu.utils.url import maybe_sanitize_url, url_to_parts

    from labsite.celery import app

    url = str(app.conf.broker_url or "")
    detail = str(error) or type(error).__name__
    try:
        password = url_to_parts(url).password
    except Exception:  # an unparsable URL: name none of it
        password, url = None, "(the configured broker URL)"
    if password:
        detail = detail.replace(password, "**")
    return (f"the task queue (Redis at {maybe_sanitize_url(url)}) is not reachable "
            f"({detail}); the run was not queued — start it again once Redis is back")


def run_enqueue(run_id: int, *, task_id: str) -> str | None:
    """Send ``run_id``'s task to the broker; on failure mark the run failed and return why.

    Celery retries the publish briefly (``CELERY_TASK_PUBLISH_RETRY_POLICY``; a Redis
    connect times out after ``socket_connect_timeout``), so an unreachable broker costs a
    request a few seconds at most, and the run is failed with the reason instead of
    staying ``queued`` with no task behind it. Returns None when the task was sent.
    """
    from labsite.runs.tasks import run_scenario  # tasks imports this module

    try:
        run_scenario.apply_async(args=[run_id], task_id=task_id)
    except _broker_errors() as error:
        reason = broker_unreachable_reason(error)
        logger.error("run %s: %s", run_id, reason)
        # No broadcast: the channel layer lives on the same unreachable Redis.
        Run.objects.filter(pk=run_id, status=Run.Status.QUEUED, celery_task_id=task_id).update(
            status=Run.Status.FAILED, error=reason, finished_at=timezone.now())
        return reason
    return None


def json_size(value) -> int:
    """The bytes ``value`` takes in a JSONField: the JSON text Django stores (``json.dumps``
    with its defaults, ASCII), the measure of a run's ``stored_bytes``."""
    return 0 if value is None else len(json.dumps(value))


@dataclass(frozen=True)
class RunCaptureInput:
    """An uploaded capture: its file ``name``, bytes and the packets read from it."""

    name: str
    data: bytes
    packets: int = 0


class EventBatcher:
    """Collects events and sends them in order, at most ``max_events`` or ``max_seconds`` old.

    The browser gets a few dozen messages per second instead of one per event, and a slow
    run still shows its events within ``max_seconds`` of their creation.
    """

    def __init__(self, send: Callable[[list[dict]], None], *, max_events: int,
                 max_seconds: float, clock: Callable[[], float] = time.monotonic):
        self._send = send
        self._max_events = max_events
        self._max_seconds = max_seconds
        self._clock = clock
        self._pending: list[dict] = []
        self._first_at = 0.0
        self.sent = 0

    def add(self, event: dict) -> None:
        if not self._pending:
            self._first_at = self._clock()
        self._pending.append(event)
        if (len(self._pending) >= self._max_events
                or self._clock() - self._first_at >= self._max_seconds):
            self.flush()

    def flush(self) -> None:
        if self._pending:
            batch, self._pending = self._pending, []
            self._send(batch)
            self.sent += len(batch)


class Heartbeat(HeartbeatThread):
    """A thread that stamps ``heartbeat_at`` (and the latest progress) while a run executes.

    It runs independently of the engine, so a long computation without events does not look
    like a dead worker; it stops proving life only when the process does. Its write is
    conditional on the run still being this attempt's; when it writes nothing (the run was
    cancelled, deleted, or reaped and handed to another attempt) it sets ``lost``, and the
    engine's callbacks stop the run (``execute_run``): the cancel flag costs no query of
    its own.
    """

    def __init__(self, run_id: int, attempt: int, *, interval: float):
        super().__init__(interval=interval, name=f"heartbeat-run-{run_id}")
        self.run_id, self.attempt = run_id, attempt
        self.progress = 0.0
        self.event_count = 0
        self.stored_bytes = 0
        self.lost = threading.Event()

    def beat(self) -> bool:
        owned = Run.objects.filter(
            pk=self.run_id, status=Run.Status.RUNNING, attempts=self.attempt
        ).update(heartbeat_at=timezone.now(), progress=self.progress,
                 event_count=self.event_count, stored_bytes=self.stored_bytes)
        if not owned:
            self.lost.set()
        return bool(owned)


def run_claim(run_id: int, *, task_id: str = "", now: datetime | None = None) -> Run | None:
    """Mark a run ``running`` for this attempt, or return None if it must not run.

    Claimable: a queued run, or a running one whose heartbeat is stale (its worker died and
    the broker re-delivered the message). Not claimable: a missing or finished run, or one
    another worker is visibly running.
    """
    now = now or timezone.now()
    with transaction.atomic():
        run = Run.objects.select_for_update().filter(pk=run_id).first()
        if run is None:
            logger.warning("run %s: no such run, task dropped", run_id)
            return None
        if run.status == Run.Status.RUNNING and not _is_stale(run, now):
            logger.warning("run %s: already running on a live worker, duplicate ignored", run_id)
            return None
        if run.status not in (Run.Status.QUEUED, Run.Status.RUNNING):
            logger.info("run %s: already %s, nothing to do", run_id, run.status)
            return None
        if run.status == Run.Status.RUNNING and run.shards.exists():
            # split into shards already: they and their merge finish it, not this task
            logger.info("run %s: split into shards, duplicate ignored", run_id)
            return None
        run.status = Run.Status.RUNNING
        run.attempts += 1
        run.started_at = run.heartbeat_at = now
        run.progress, run.event_count, run.error = 0.0, 0, ""
        if task_id:
            run.celery_task_id = task_id
        run.save()
    return run


def _is_stale(run: Run, now: datetime) -> bool:
    last = run.heartbeat_at or run.started_at or run.created_at
    return last < now - timedelta(seconds=settings.RUN_STALE_SECONDS)


def _run_finish(run: Run, **fields) -> bool:
    """Write the final state if this attempt still owns the run; broadcast it."""
    fields.setdefault("finished_at", timezone.now())
    updated = Run.objects.filter(
        pk=run.pk, status=Run.Status.RUNNING, attempts=run.attempts
    ).update(**fields)
    run.refresh_from_db()
    if not updated:
        logger.warning("run %s: attempt %s lost ownership (now %s); result dropped",
                       run.pk, run.attempts, run.status)
        return False
    _broadcast_final(run)
    return True


def _broadcast_final(run: Run) -> None:
    """Tell watchers; the database already holds the truth, so a Redis hiccup only logs."""
    try:
        broadcast_status(run)
    except Exception:
        logger.exception("run %s: could not broadcast final status %s", run.pk, run.status)


def execute_run(run_id: int, *, task_id: str = "") -> str | None:
    """Run the engine for ``run_id``, store and stream its events, store the outcome.

    Every batch of events is stored (:class:`RunEventChunk`) *before* it is broadcast, so
    anything a watcher received is already in the database for the events endpoint. A
    retried run (its first worker died) produces the same events again — the engine is
    deterministic — and those already stored are neither stored nor sent twice: the
    stream resumes after the last stored event.

    Returns the final status, or None when the run was not claimable or this attempt lost
    it while running (cancelled, deleted, reaped: see :class:`Heartbeat`). Never raises for
    a failing run: the failure is the run's state, with its reason in ``error``.
    """
    close_old_connections()
    run = run_claim(run_id, task_id=task_id)
    if run is None:
        return None
    stored = run_events_stored_through(run.pk)
    broadcast_status(run)
    shards = engine_bridge.shard_count(run_job_spec(run))
    if shards:  # a large batch run: its shards and their merge finish it
        from labsite.runs.sharding import split_run

        split_run(run, shards)
        return run.status

    with Heartbeat(run.pk, run.attempts, interval=settings.RUN_HEARTBEAT_SECONDS) as beat:
        beat.event_count = stored + 1
        # Counted again from what is stored: a retry also keeps its dead attempt's events.
        beat.stored_bytes = run_stored_bytes(run)

        def still_ours() -> None:
            if beat.lost.is_set():
                raise RunCancelled(run.pk)

        def progress(fraction: float) -> None:
            still_ours()
            beat.progress = min(1.0, max(0.0, float(fraction)))

        def send(batch: list[dict]) -> None:
            RunEventChunk.objects.create(run_id=run.pk, first_seq=batch[0]["seq"],
                                         last_seq=batch[-1]["seq"], events=batch)
            beat.stored_bytes += json_size(batch)
            beat.event_count = batch[-1]["seq"] + 1
            broadcast_events(run.pk, batch, progress=beat.progress)

        batcher = EventBatcher(send, max_events=settings.RUN_BATCH_MAX_EVENTS,
                               max_seconds=settings.RUN_BATCH_MAX_SECONDS)

        def on_event(event: dict) -> None:
            still_ours()
            if event["seq"] > stored:
                batcher.add(event)

        try:
            outcome = engine_bridge.run_job(run_job_spec(run), on_event=on_event,
                                            on_progress=progress)
            batcher.flush()
        except RunCancelled:
            _log_lost(run)
            return None
        except Exception as exc:  # every failure becomes the run's reason, never a crash
            if not _still_owned(run):  # e.g. an insert refused because the run was deleted
                _log_lost(run)
                return None
            try:
                batcher.flush()  # what the engine produced before failing is still shown
            except Exception:
                logger.exception("run %s: could not store or send the last events", run.pk)
            reason = _failure_reason(exc)
            if not isinstance(exc, _input_error_types()):
                logger.exception("run %s failed", run.pk)
            _run_finish(run, status=Run.Status.FAILED, error=reason, progress=beat.progress,
                        event_count=beat.event_count, stored_bytes=beat.stored_bytes)
            return Run.Status.FAILED

    _run_finish(run, status=Run.Status.SUCCEEDED, progress=1.0, event_count=beat.event_count,
                summary=outcome.summary, report=outcome.report,
                stored_bytes=beat.stored_bytes + json_size(outcome.report))
    return run.status


class RunCancelled(Exception):
    """Raised in the engine's callbacks once this attempt no longer owns its run (see
    :class:`Heartbeat`): the engine stops at its next event or progress report."""


def _still_owned(run: Run) -> bool:
    return Run.objects.filter(pk=run.pk, status=Run.Status.RUNNING,
                              attempts=run.attempts).exists()


def _log_lost(run: Run) -> None:
    now = Run.objects.filter(pk=run.pk).values_list("status", flat=True).first()
    logger.info("run %s: attempt %s stopped, the run is %s", run.pk, run.attempts,
                now or "deleted")


def run_stored_bytes(run: Run) -> int:
    """What ``run`` keeps in the database now, measured from the rows: its scenario text,
    capture, stored events and report (see :func:`json_size`)."""
    from django.db.models.functions import Length

    size = len(run.scenario_body.encode()) + json_size(run.report)
    size += (RunCapture.objects.filter(run_id=run.pk).annotate(n=Length("data"))
             .values_list("n", flat=True).first() or 0)
    # One chunk at a time: a run may hold 200,000 events.
    for events in (RunEventChunk.objects.filter(run_id=run.pk)
                   .values_list("events", flat=True).iterator(chunk_size=8)):
        size += json_size(events)
    return size


def run_job_spec(run: Run) -> engine_bridge.EngineJob:
    """What the engine needs for ``run``: its text, mode, seed, capture and options."""
    capture = RunCapture.objects.filter(run=run).values_list("data", flat=True).first()
    example = run.scenario.example if run.scenario_id else ""
    return engine_bridge.EngineJob(
        body=run.scenario_body, mode=run.mode, seed=run.seed,
        base_dir=engine_bridge.examples_dir() if example else None,
        pcap=bytes(capture) if capture is not None else None,
        vary=run.parameters.get("vary") or {}, delay_ms=run.parameters.get("delay_ms", 0),
        source=run.title.split(" · ")[0] or "scenario")


def run_pcap_export(run: Run) -> engine_bridge.ExportedPcap:
    """The packets of ``run`` (its first RUN_PCAP_EXPORT_MAX_FLOWS flows) as a pcap.

    The engine is deterministic: the stored scenario text, seed and uploaded capture give
    the run's flows again. Raises RunInputError for a comparison (it has no one set of
    packets) and the engine's RssLabError for input it cannot run.
    """
    if run.mode == Run.Mode.COMPARE:
        raise RunInputError("run: a comparison runs many configurations and has no one set "
                            "of packets; export a trace or batch run")
    return engine_bridge.export_job_pcap(run_job_spec(run),
                                         limit=settings.RUN_PCAP_EXPORT_MAX_FLOWS)


def lab_run_pcap(run: Run) -> tuple[bytes, str]:
    """The pcap of ``run``'s packets (:func:`run_pcap_export`) and a file name for it, for
    the run API; LabInputError when it cannot be made (a comparison, a scenario or capture
    the engine refuses)."""
    from engine.errors import RssLabError

    try:
        exported = run_pcap_export(run)
    except RunInputError as error:
        field, _, message = str(error).partition(": ")
        raise LabInputError.one(field, message or str(error)) from None
    except RssLabError as error:
        raise LabInputError.from_engine(error, lab_field(error.field or "scenario")) from None
    name = slugify(run.title)[:60].strip("-") or "run"
    return exported.data, f"rsslab-run-{run.pk}-{name}.pcap"


def lab_run_report_html(run: Run) -> tuple[str, str]:
    """``run``'s stored report as the CLI's offline HTML page and a file name for it
    (``engine_bridge.report_html``); LabInputError (field ``run``) while it has none."""
    if not engine_bridge.has_report(run.report):
        raise LabInputError.one("run", f"run {run.pk} has no report ({run.status})")
    name = slugify(run.title)[:60].strip("-") or "run"
    return engine_bridge.report_html(run.report), f"rsslab-run-{run.pk}-{name}.html"


def run_events_stored_through(run_id: int) -> int:
    """The last stored event's seq for ``run_id`` (-1 when none is stored)."""
    last = (RunEventChunk.objects.filter(run_id=run_id).order_by("-last_seq")
            .values_list("last_seq", flat=True).first())
    return -1 if last is None else last


def _input_error_types() -> tuple[type[Exception], ...]:
    """Errors that mean "this scenario cannot run" (shown as is), not a bug."""
    from engine.errors import RssLabError

    return (RunInputError, RssLabError)


def _failure_reason(exc: Exception) -> str:
    """Bad input speaks for itself; anything else is named as an internal error."""
    if isinstance(exc, _input_error_types()):
        return str(exc)
    return f"internal error: {type(exc).__name__}: {exc}"


def runs_reap_stale(*, now: datetime | None = None) -> list[int]:
    """Deal with every running run whose worker stopped sending heartbeats; return their ids.

    A run that has had fewer than RUN_MAX_ATTEMPTS attempts is queued again (the engine is
    deterministic, so the retry produces the same events); otherwise it fails with the
    reason "worker lost". Every write is conditional on the state read, so two reapers
    (a second beat started by mistake, a call from the shell) never act twice on one run.
    A run queued for more than RUN_QUEUED_MAX_SECONDS fails too (see
    :func:`_reap_never_started`).
    """
    now = now or timezone.now()
    limit = settings.RUN_STALE_SECONDS
    reaped = []
    # A run split into shards is reaped shard by shard (sharding.shards_reap_stale).
    stale = Run.objects.filter(status=Run.Status.RUNNING,
                               heartbeat_at__lt=now - timedelta(seconds=limit),
                               shards__isnull=True)
    for run in stale:
        lost = (f"worker lost: no heartbeat from attempt {run.attempts} since "
                f"{run.heartbeat_at:%Y-%m-%d %H:%M:%S} UTC (limit {limit:g} s)")
        retry = run.attempts < settings.RUN_MAX_ATTEMPTS
        if retry:
            fields = {"status": Run.Status.QUEUED, "error": f"{lost}; retrying",
                      "celery_task_id": str(uuid.uuid4())}
        else:
            fields = {"status": Run.Status.FAILED, "finished_at": now,
                      "error": f"{lost}; gave up after {run.attempts} attempts, "
                               f"start the run again"}
        with transaction.atomic():
            updated = Run.objects.filter(
                pk=run.pk, status=Run.Status.RUNNING, attempts=run.attempts,
                heartbeat_at=run.heartbeat_at,
            ).update(**fields)
            if updated and retry:  # an unreachable broker fails the run, never raises
                transaction.on_commit(functools.partial(
                    run_enqueue, run.pk, task_id=fields["celery_task_id"]))
        if updated:
            run.refresh_from_db()
            _broadcast_final(run)
            reaped.append(run.pk)
            logger.warning("run %s: %s", run.pk, run.error)
    from labsite.runs.sharding import shards_reap_stale

    return reaped + _reap_never_started(now) + shards_reap_stale(now=now)


def _reap_never_started(now: datetime) -> list[int]:
    """Fail every run queued for more than RUN_QUEUED_MAX_SECONDS; return their ids.

    A queued run waits for a worker, possibly behind others, so the limit is hours, not
    RUN_STALE_SECONDS. Past it the task is taken as lost (the broker lost it, or no
    worker has run for that long); a worker that takes it later finds it failed and
    drops it.
    """
    limit = settings.RUN_QUEUED_MAX_SECONDS
    cutoff = now - timedelta(seconds=limit)
    waiting = (Run.objects.filter(status=Run.Status.QUEUED)
               .annotate(queued_since=Coalesce("heartbeat_at", "created_at"))
               .filter(queued_since__lt=cutoff))
    reaped = []
    for run in waiting:
        since = run.heartbeat_at or run.created_at
        error = (f"never started: queued since {since:%Y-%m-%d %H:%M:%S} UTC and no worker "
                 f"took it within {limit / 3600:g} h (the task queue lost it, or no worker "
                 f"is running); start the run again")
        updated = Run.objects.filter(
            pk=run.pk, status=Run.Status.QUEUED, attempts=run.attempts,
            heartbeat_at=run.heartbeat_at,
        ).update(status=Run.Status.FAILED, finished_at=now, error=error)
        if updated:
            run.refresh_from_db()
            _broadcast_final(run)
            reaped.append(run.pk)
            logger.warning("run %s: %s", run.pk, error)
    return reaped


def run_cancel(run: Run, *, reason: str) -> bool:
    """Stop a queued or running run: mark it ``cancelled`` with ``reason``, revoke its task
    and tell watchers. Return False (nothing done) for a run already finished.

    The write is conditional on the run being active, so it wins or loses cleanly against
    the worker's own final write (``_run_finish`` is conditional on ``running``): the run
    ends once. A queued task is discarded by the worker that receives it (revoked, or
    ``run_claim`` finds the run finished or gone); a running one stops at its next event
    or progress report once its heartbeat finds the run no longer its own (:class:`Heartbeat`).
    """
    updated = Run.objects.filter(pk=run.pk, status__in=Run.ACTIVE).update(
        status=Run.Status.CANCELLED, error=reason, finished_at=timezone.now())
    if not updated:
        return False
    _revoke(run.celery_task_id)
    run.refresh_from_db()
    _broadcast_final(run)
    logger.info("run %s: %s", run.pk, reason)
    return True


def _revoke(task_id: str) -> None:
    """Tell the workers to discard ``task_id`` if they receive it; a broker that cannot be
    reached only logs (``run_claim`` refuses the cancelled run anyway)."""
    from labsite.celery import app

    if not task_id:
        return
    try:
        app.control.revoke(task_id)
    except _broker_errors() as error:
        logger.warning("task %s not revoked (%s); its worker will find the run cancelled",
                       task_id, error)


@dataclass(frozen=True)
class RunDeleted:
    """What :func:`run_delete` did: the run's id, whether it had to be cancelled first, and
    the bytes of storage it freed."""

    run: int
    cancelled: bool
    freed_bytes: int


def run_delete(run: Run, *, by) -> RunDeleted:
    """Delete ``run`` with its events and capture, cancelling it first if it is queued or
    running; ``by`` is the user deleting it (the caller has checked they may:
    ``selectors.run_deletable_by``). The freed bytes leave the owner's storage at once."""
    who = getattr(by, "username", "") or "a user"
    cancelled = run_cancel(run, reason=f"cancelled: deleted by {who}")
    pk = run.pk
    # A finished run's size is exact; an active one's is as of its last heartbeat, so it
    # is measured from its rows instead.
    freed = (run_stored_bytes(run) if cancelled else
             Run.objects.filter(pk=pk).values_list("stored_bytes", flat=True).first() or 0)
    with transaction.atomic():
        # The row locked first: a worker still storing this run's events (it stops at its
        # next heartbeat) waits, then finds the run gone (its insert is refused, which it
        # takes as "no longer mine"), instead of adding a chunk between the cascade's
        # collection and the run's own delete, which PostgreSQL refuses at commit.
        list(Run.objects.select_for_update().filter(pk=pk).values_list("pk", flat=True))
        # Events and capture go with it (CASCADE); chunks are deleted without being loaded.
        Run.objects.filter(pk=pk).delete()
    logger.info("run %s deleted by %s (%s bytes)", pk, who, freed)
    return RunDeleted(run=pk, cancelled=cancelled, freed_bytes=freed)


def runs_prune_events(*, now: datetime | None = None, limit: int | None = None) -> list[int]:
    """Delete the stored events of runs finished more than RUN_EVENTS_RETENTION_DAYS ago;
    return their ids. Run by the lab's beat process every RUN_PRUNE_SECONDS.

    The run's row stays — title, verdict, summary, report, capture (so "Export pcap" still
    works) — and ``events_pruned_at`` says when its events went; ``stored_bytes`` drops
    accordingly. At most ``limit`` (RUN_PRUNE_BATCH) runs per call, oldest first, each in
    its own transaction, so a large backlog is worked off over several ticks without one
    long lock. A retention of 0 days keeps events for ever.
    """
    from django.db.models import Exists, OuterRef

    days = settings.RUN_EVENTS_RETENTION_DAYS
    if days <= 0:
        return []
    now = now or timezone.now()
    cutoff = now - timedelta(days=days)
    old = (Run.objects.filter(status__in=Run.FINISHED, events_pruned_at__isnull=True)
           .annotate(ended=Coalesce("finished_at", "created_at"),
                     has_events=Exists(RunEventChunk.objects.filter(run=OuterRef("pk"))))
           .filter(ended__lt=cutoff, has_events=True)
           .order_by("ended", "pk")[:limit or settings.RUN_PRUNE_BATCH])
    pruned = []
    for run in old:
        with transaction.atomic():
            RunEventChunk.objects.filter(run_id=run.pk).delete()
            Run.objects.filter(pk=run.pk).update(events_pruned_at=now,
                                                 stored_bytes=run_stored_bytes(run))
        pruned.append(run.pk)
    if pruned:
        logger.info("pruned the events of %d runs finished before %s", len(pruned),
                    f"{cutoff:%Y-%m-%d %H:%M} UTC")
    return pruned
