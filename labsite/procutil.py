"""Small helpers for the child processes the launcher and the web tests start.

Children are started in their own session (so a terminal's Ctrl-C reaches only the
launcher, which then stops them in order) and, on Linux, with a parent-death signal (so
even a launcher killed with SIGKILL leaves no orphans behind).

:class:`Supervisor` keeps a set of children running: one that dies is restarted after an
exponential back-off, and one that keeps dying makes it give up (:class:`GaveUp`).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:  # runs in the child between fork and exec
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def spawn(argv: Sequence[str], *, env: dict[str, str] | None = None,
          **popen_kwargs) -> subprocess.Popen:
    """Start ``argv`` in a new session, to be terminated when this process dies."""
    return subprocess.Popen(list(argv), env=env, start_new_session=True,
                            preexec_fn=_die_with_parent, **popen_kwargs)


def stop(proc: subprocess.Popen, *, timeout: float = 10.0,
         sig: int = signal.SIGTERM) -> int | None:
    """Ask ``proc`` to stop with ``sig``; SIGKILL it (and its group) after ``timeout``."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(sig)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)
    # Reap any grandchildren left in the child's session (e.g. prefork pool processes).
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    return proc.returncode


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def wait_for_port(host: str, port: int, *, timeout: float,
                  procs: Sequence[subprocess.Popen] = (),
                  tick: Callable[[], None] | None = None) -> None:
    """Block until something accepts connections on ``host:port``.

    Raises RuntimeError naming the process if one of ``procs`` exits first, TimeoutError
    after ``timeout`` seconds. ``tick`` is called between attempts (the launcher polls its
    supervisor there, so a child that dies while it waits is restarted).
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if tick is not None:
            tick()
        for proc in procs:
            if proc.poll() is not None:
                raise RuntimeError(f"{proc.args!r} exited with code {proc.returncode} "
                                   f"before {host}:{port} accepted connections")
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing accepted connections on {host}:{port} within {timeout:g} s")


def exit_description(returncode: int) -> str:
    """``returncode`` of a Popen as a person reads it.

    >>> exit_description(3), exit_description(-11)
    ('exit status 3', 'signal SIGSEGV')
    """
    if returncode < 0:
        try:
            return f"signal {signal.Signals(-returncode).name}"
        except ValueError:
            return f"signal {-returncode}"
    return f"exit status {returncode}"


@dataclass
class Child:
    """One supervised process: its ``name`` in log lines, how to ``start`` it (a call that
    returns a new Popen, e.g. ``lambda: spawn(argv)``; called again for each restart) and
    how long it may take to stop on SIGTERM before it is killed."""

    name: str
    start: Callable[[], subprocess.Popen]
    stop_timeout: float = 10.0
    proc: subprocess.Popen | None = field(default=None, init=False)
    started_at: float = field(default=0.0, init=False)
    restart_at: float | None = field(default=None, init=False)  # set while it is down
    backoff: float = field(default=0.0, init=False)  # the next restart's delay
    deaths: deque[float] = field(default_factory=deque, init=False)


class GaveUp(RuntimeError):
    """A child died too often; the message says which, how often and how it last ended."""


class Supervisor:
    """Starts children, restarts each one that dies, stops them all in reverse order.

    Policy: a child that dies is started again after ``backoff_initial`` seconds, the delay
    doubling with each further death up to ``backoff_max``; a child that stayed up
    ``stable_after`` seconds before dying starts again from ``backoff_initial``. A child that
    dies ``max_deaths`` times within ``window`` seconds makes :meth:`poll` raise
    :class:`GaveUp` (the caller then stops everything). ``say`` gets one line per event
    ("daphne died (signal SIGSEGV); restarting in 0.5 s"). Nothing runs in the background:
    the owner calls :meth:`poll` every few hundred milliseconds.
    """

    def __init__(self, *, say: Callable[[str], None], backoff_initial: float = 0.5,
                 backoff_max: float = 10.0, stable_after: float = 30.0, max_deaths: int = 5,
                 window: float = 60.0, clock: Callable[[], float] = time.monotonic):
        self.say = say
        self.backoff_initial, self.backoff_max = backoff_initial, backoff_max
        self.stable_after, self.max_deaths, self.window = stable_after, max_deaths, window
        self.clock = clock
        self.children: list[Child] = []

    def add(self, child: Child) -> Child:
        """Start ``child`` now and supervise it from then on (stopped before earlier ones)."""
        child.backoff = self.backoff_initial
        self.children.append(child)
        self._start(child)
        return child

    def _start(self, child: Child, *, again: bool = False) -> None:
        child.restart_at = None
        child.proc = child.start()
        child.started_at = self.clock()
        self.say(f"{child.name} {'restarted' if again else 'started'} (pid {child.proc.pid})")

    def poll(self) -> None:
        """Notice deaths, schedule and perform restarts; raise GaveUp when one died too often."""
        for child in self.children:
            now = self.clock()
            if child.restart_at is not None:
                if now >= child.restart_at:
                    try:
                        self._start(child, again=True)
                    except OSError as error:  # e.g. its program is gone: no use retrying
                        raise GaveUp(f"{child.name} could not be restarted: {error}") from error
                continue
            if child.proc is None or child.proc.poll() is None:
                continue
            # It died: reap what it left in its session (e.g. prefork pool processes that
            # would hold on to a task), then decide when to start it again.
            stop(child.proc, timeout=0)
            how = exit_description(child.proc.returncode)
            child.deaths.append(now)
            while child.deaths and child.deaths[0] < now - self.window:
                child.deaths.popleft()
            if len(child.deaths) >= self.max_deaths:
                raise GaveUp(f"{child.name} died {len(child.deaths)} times within "
                             f"{self.window:g} s (last: {how})")
            if now - child.started_at >= self.stable_after:
                child.backoff = self.backoff_initial
            delay, child.backoff = child.backoff, min(child.backoff * 2, self.backoff_max)
            child.restart_at = now + delay
            self.say(f"{child.name} died ({how}); restarting in {delay:g} s")

    def procs(self) -> list[subprocess.Popen]:
        """The current process of every child that is running now."""
        return [c.proc for c in self.children if c.proc is not None and c.restart_at is None]

    def stop_all(self) -> None:
        """Stop every child, last added first (a child waiting for its restart stays down)."""
        for child in reversed(self.children):
            child.restart_at = None
            if child.proc is not None and child.proc.returncode is None:
                stop(child.proc, timeout=child.stop_timeout)
