"""Small helpers for the child processes the launcher and the web tests start.

Children are started in their own session (so a terminal's Ctrl-C reaches only the
launcher, which then stops them in order) and, on Linux, with a parent-death signal (so
even a launcher killed with SIGKILL leaves no orphans behind).
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
from collections.abc import Sequence

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
                  procs: Sequence[subprocess.Popen] = ()) -> None:
    """Block until something accepts connections on ``host:port``.

    Raises RuntimeError naming the process if one of ``procs`` exits first, TimeoutError
    after ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for proc in procs:
            if proc.poll() is not None:
                raise RuntimeError(f"{proc.args!r} exited with code {proc.returncode} "
                                   f"before {host}:{port} accepted connections")
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing accepted connections on {host}:{port} within {timeout:g} s")
