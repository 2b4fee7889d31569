"""Log-in throttling: failed passwords counted per username and per username + address.

A class sits behind one NAT, so the client address alone is never a key: one student's
typos, or one prankster, must not lock out the room. Two counters instead:

- **username + address** — ``LOGIN_FAILURES_PER_USER_AND_ADDRESS`` failures (default 5)
  within ``LOGIN_FAILURE_WINDOW_SECONDS`` (default 15 min) lock that pair; a successful
  log-in from the pair resets it;
- **username** — ``LOGIN_FAILURES_PER_USER`` failures (default 20) from anywhere within
  the window lock the username everywhere, so guessing from many addresses is bounded too.
  A success does not reset it (or every real log-in would hand a guesser a fresh budget).

A locked key refuses every attempt, the right password included, for
``LOGIN_COOLOFF_SECONDS`` (default 15 min); refused attempts are not counted (no password
was tried). A counter outlives a shorter cool-off: until its window ends, each further
failure locks the key again. The forms in ``labsite.lab.forms`` call this module; the
site's and the admin's log-in both use them::

    attempt = LoginAttempt.of("ann", "10.0.0.7")
    refusal = login_refusal(attempt)     # None, or a LoginRefusal saying when to retry
    login_failure_record(attempt)        # after a wrong password
    login_success_record(attempt)        # after a right one

Counters live in Django's cache, which the settings point at the lab's Redis
(``labsite.redisurls.cache_config``): several daphne processes (and compose's web
replicas) must see one count, which a per-process cache (LocMem) would not give; Redis
``INCR`` is atomic across them, and keys expire on their own, so nothing needs sweeping.
When the cache cannot be reached the throttle lets the attempt through and logs an error:
a class locked out because Redis restarts (the launcher restarts it within seconds) is
worse than a few unthrottled guesses meanwhile.
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from dataclasses import dataclass

from django.conf import settings
from django.core.cache import cache
from redis import RedisError

logger = logging.getLogger(__name__)

KEY_PREFIX = "login-throttle"
# What an unreachable cache raises (the Redis backend; OSError for sockets underneath).
CACHE_ERRORS = (RedisError, OSError)


@dataclass(frozen=True)
class LoginAttempt:
    """Who is trying to log in: the username as typed and the client's address."""

    username: str
    address: str

    @classmethod
    def of(cls, username: str, address: str | None) -> LoginAttempt:
        return cls(username=username, address=address or "unknown")

    def counters(self) -> list[tuple[str, int]]:
        """(cache key stem, failure limit) of each counter, the pair's first."""
        # Case-folded: the throttle then covers every spelling of a name at once, whatever
        # the database's collation makes of them. Hashed: a username is user input, and a
        # digest keeps keys short and free of characters a cache backend might refuse.
        user = self.username.casefold()
        return [
            (_stem("pair", f"{user}\0{self.address}"),
             settings.LOGIN_FAILURES_PER_USER_AND_ADDRESS),
            (_stem("user", user), settings.LOGIN_FAILURES_PER_USER),
        ]


@dataclass(frozen=True)
class LoginRefusal:
    """A locked key: ``retry_after`` whole seconds until attempts are taken again."""

    retry_after: int
    per_address: bool

    @property
    def message(self) -> str:
        where = " from this address" if self.per_address else ""
        return (f"Too many failed log-ins for this account{where}. Try again in "
                f"{wait_text(self.retry_after)}.")


def _stem(kind: str, value: str) -> str:
    return f"{KEY_PREFIX}:{kind}:{hashlib.sha256(value.encode()).hexdigest()[:32]}"


def wait_text(seconds: int) -> str:
    """``seconds`` in words: '14 minutes 5 seconds', '1 minute', '40 seconds'.

    >>> wait_text(845), wait_text(60), wait_text(1)
    ('14 minutes 5 seconds', '1 minute', '1 second')
    """
    minutes, seconds = divmod(max(1, int(seconds)), 60)
    parts = [f"{n} {unit}{'' if n == 1 else 's'}"
             for n, unit in ((minutes, "minute"), (seconds, "second")) if n]
    return " ".join(parts)


def login_refusal(attempt: LoginAttempt) -> LoginRefusal | None:
    """The refusal for ``attempt`` if one of its keys is locked, else None (also when the
    cache cannot be reached: see the module docstring)."""
    try:
        locks = cache.get_many([f"{stem}:lock" for stem, _ in attempt.counters()])
    except CACHE_ERRORS as error:
        logger.error("login throttle: cache unreachable (%s); attempt for %r not checked",
                     error, attempt.username)
        return None
    now = time.time()
    for index, (stem, _) in enumerate(attempt.counters()):
        until = locks.get(f"{stem}:lock")
        if until is not None and until > now:
            return LoginRefusal(retry_after=math.ceil(until - now), per_address=index == 0)
    return None


def login_failure_record(attempt: LoginAttempt) -> None:
    """Count a wrong password against both keys; lock a key that reached its limit."""
    window = settings.LOGIN_FAILURE_WINDOW_SECONDS
    cooloff = settings.LOGIN_COOLOFF_SECONDS
    try:
        for stem, limit in attempt.counters():
            count = _count_failure(f"{stem}:failures", window)
            if count >= limit:
                # add, not set: a lock already running is not extended by late arrivals.
                cache.add(f"{stem}:lock", time.time() + cooloff, cooloff)
                if count == limit:
                    logger.warning("login throttle: %r locked for %d s after %d failures%s",
                                   attempt.username, cooloff, count,
                                   "" if stem.startswith(f"{KEY_PREFIX}:user:")
                                   else f" from {attempt.address}")
    except CACHE_ERRORS as error:
        logger.error("login throttle: cache unreachable (%s); failure for %r not counted",
                     error, attempt.username)


def login_success_record(attempt: LoginAttempt) -> None:
    """Forget the pair's failures (the username-wide count stays: module docstring)."""
    pair_stem, _ = attempt.counters()[0]
    try:
        cache.delete_many([f"{pair_stem}:failures", f"{pair_stem}:lock"])
    except CACHE_ERRORS as error:
        logger.error("login throttle: cache unreachable (%s); %r not reset", error,
                     attempt.username)


def _count_failure(key: str, window: float) -> int:
    """Increment ``key``, a counter that expires ``window`` seconds after its first
    failure (a fixed window, so steady slow guessing cannot keep one alive forever)."""
    cache.add(key, 0, window)
    try:
        count = cache.incr(key)
    except ValueError:  # expired between add and incr
        cache.set(key, 1, window)
        return 1
    if count == 1:
        # Redis INCR recreates an expired key without a timeout: give it the window again,
        # or the username-wide counter (never reset by a success) could outlive it forever.
        cache.touch(key, window)
    return count
