"""Fair use: how much of the lab one user may take at once (issue 10 item 5).

Three limits, each with a student and an instructor value (settings ``RUN_ACTIVE_MAX_*``,
``RUN_SUBMIT_RATE_*``, ``RUN_STORAGE_BUDGET_*_MB``; instructors are the ``instructor``
group and staff, as everywhere in the lab):

- **active runs** (:func:`run_admit`): queued or running runs per user; a comparison is one
  run however many cells it has. A run past the cap is *refused* (429,
  :class:`~labsite.runs.errors.RunActiveLimitError`), never queued.
- **request rate** (:func:`submit_rate_take`): run and compare requests per user per
  ``RUN_SUBMIT_RATE_WINDOW_SECONDS``, counted in Redis (a sliding window, one sorted set per
  user under ``<REDIS_PREFIX>:fairuse:``) so every daphne process shares one count; 429
  with ``Retry-After`` = the seconds until the oldest request leaves the window.
- **storage** (:func:`run_admit`): the bytes a user's runs keep in the database
  (``Run.stored_bytes``: scenario text, capture, events, report, as stored); at or over the
  budget a new run is refused (413) with both figures. Nothing is deleted automatically:
  the user deletes runs, or the retention job (``services.runs_prune_events``) prunes old
  runs' events.

**The queue is FIFO, not fair per user**: one Celery queue, taken in order
(``worker_prefetch_multiplier=1``). What keeps one student's burst from delaying everyone
else is the active cap: since runs past it are refused, at most ``RUN_ACTIVE_MAX_STUDENT``
(3) of one student's runs are ever ahead of anyone else's in the queue, so a burst delays
another user by at most that many runs.
"""

from __future__ import annotations

import functools
import logging
import math
import uuid
from dataclasses import dataclass

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db.models import Sum

from labsite.lab.selectors import user_is_instructor
from labsite.redisurls import channels_redis_url
from labsite.runs.errors import RunActiveLimitError, RunRateLimitError, RunStorageLimitError
from labsite.runs.models import Run

logger = logging.getLogger(__name__)

MB = 1_000_000  # the budgets are in MB as people read them on a disk, not MiB


@dataclass(frozen=True)
class UserLimits:
    """One user's fair-use limits (0 for ``submit_rate`` or ``storage_bytes``: no limit)."""

    role: str
    active_runs: int
    submit_rate: int
    window_seconds: int
    storage_bytes: int


def user_limits(user) -> UserLimits:
    """The limits that apply to ``user`` (instructor or student values)."""
    if user_is_instructor(user):
        return UserLimits("an instructor", settings.RUN_ACTIVE_MAX_INSTRUCTOR,
                          settings.RUN_SUBMIT_RATE_INSTRUCTOR,
                          settings.RUN_SUBMIT_RATE_WINDOW_SECONDS,
                          int(settings.RUN_STORAGE_BUDGET_INSTRUCTOR_MB * MB))
    return UserLimits("a student", settings.RUN_ACTIVE_MAX_STUDENT,
                      settings.RUN_SUBMIT_RATE_STUDENT, settings.RUN_SUBMIT_RATE_WINDOW_SECONDS,
                      int(settings.RUN_STORAGE_BUDGET_STUDENT_MB * MB))


def active_run_count(user) -> int:
    """Runs of ``user`` that are queued or running (a comparison counts once, and so does
    a batch, however many of its items are active)."""
    active = Run.objects.filter(ran_by=user, status__in=Run.ACTIVE)
    return (active.filter(batch__isnull=True).count()
            + active.filter(batch__isnull=False).values("batch").distinct().count())


def storage_used(user) -> int:
    """Bytes the runs of ``user`` keep in the database (the sum of ``Run.stored_bytes``)."""
    return Run.objects.filter(ran_by=user).aggregate(n=Sum("stored_bytes"))["n"] or 0


def megabytes(size: int) -> str:
    """``size`` bytes as a person reads it: ``201.3 MB``."""
    return f"{size / MB:,.1f} MB"


def user_usage(user) -> dict:
    """What ``user`` has used of their limits, for the runs list to show before a refusal:
    ``active`` of ``active_max`` runs, ``used`` of ``budget`` (text, "" for no budget)."""
    limits = user_limits(user)
    return {"active": active_run_count(user), "active_max": limits.active_runs,
            "used": megabytes(storage_used(user)),
            "budget": megabytes(limits.storage_bytes) if limits.storage_bytes else ""}


def run_admit(user) -> None:
    """Refuse a new run of ``user`` past the active cap or the storage budget.

    Call inside the transaction that stores the run: the user's row is locked first, so
    concurrent submits of one user (several daphne processes) are counted one after the
    other and a burst cannot slip past the cap (on SQLite the lab's IMMEDIATE transactions
    serialise writers already). Raises RunActiveLimitError (429) or RunStorageLimitError
    (413); a run without a user (the shell, tests) has no limits.
    """
    if user is None:
        return
    get_user_model().objects.select_for_update().filter(pk=user.pk).first()
    limits = user_limits(user)
    active = active_run_count(user)
    if active >= limits.active_runs:
        raise RunActiveLimitError(
            f"you have {active} runs queued or running, the most {limits.role} may have "
            f"({limits.active_runs}); wait for one to finish (or delete one on the Runs "
            f"page) and start this one again",
            retry_after=settings.RUN_ACTIVE_RETRY_SECONDS, limit=limits.active_runs,
            active=active)
    used = storage_used(user)
    if limits.storage_bytes and used >= limits.storage_bytes:
        raise RunStorageLimitError(
            f"your runs keep {megabytes(used)} in the lab, {limits.role}'s budget is "
            f"{megabytes(limits.storage_bytes)}: delete runs you no longer need on the Runs "
            f"page, then start this one again",
            used_bytes=used, budget_bytes=limits.storage_bytes)


# A sliding window in one round trip, atomic on the server (several daphne processes take
# from one user's window at once). Redis's own clock, so the processes' clocks never
# disagree about the window. Returns {taken (0/1), requests in the window, ms to wait}.
_TAKE = """
local now_t = redis.call('TIME')
local now = tonumber(now_t[1]) * 1000 + math.floor(tonumber(now_t[2]) / 1000)
local window = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
local count = redis.call('ZCARD', KEYS[1])
if count < limit then
  redis.call('ZADD', KEYS[1], now, now .. ':' .. ARGV[3])
  redis.call('PEXPIRE', KEYS[1], window)
  return {1, count + 1, 0}
end
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return {0, count, tonumber(oldest[2]) + window - now}
"""


@functools.lru_cache(maxsize=4)
def _redis(url: str):
    import redis

    # Short timeouts: a submit must not hang on a Redis that went away (the rate limit then
    # lets the request through; see submit_rate_take).
    return redis.Redis.from_url(channels_redis_url(url), socket_connect_timeout=1.0,
                                socket_timeout=1.0)


def submit_rate_key(user) -> str:
    """The Redis key of ``user``'s request window (under the lab's ``REDIS_PREFIX``)."""
    return f"{settings.REDIS_PREFIX}:fairuse:submit:{user.pk}"


def submit_rate_take(user) -> None:
    """Count one run or compare request of ``user``; RunRateLimitError (429) past the rate.

    A refused request is not counted, so a client that honours ``Retry-After`` gets in
    then. When Redis cannot be reached the request is let through (logged): the active-run
    cap, kept in the database, still bounds the user, and the run itself then fails to
    queue with the API's 503.
    """
    import redis

    limits = user_limits(user)
    if not limits.submit_rate:
        return
    window_ms = limits.window_seconds * 1000
    try:
        taken, count, wait_ms = _redis(settings.REDIS_URL).eval(
            _TAKE, 1, submit_rate_key(user), window_ms, limits.submit_rate, uuid.uuid4().hex)
    except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as error:
        logger.warning("submit rate of user %s not checked, Redis unreachable: %s",
                       user.pk, error)
        return
    if not taken:
        retry_after = max(1, math.ceil(int(wait_ms) / 1000))
        raise RunRateLimitError(
            f"{count} run requests in the last {limits.window_seconds} s, the most "
            f"{limits.role} may make ({limits.submit_rate}); retry in {retry_after} s",
            retry_after=retry_after, limit=limits.submit_rate,
            window_seconds=limits.window_seconds)
