"""One command starts the whole lab: ``python -m labsite.launcher`` (what ``make run`` runs).

Steps: migrate the database; create the demo instructor and student (their random
passwords are printed once, on creation); start an embedded Redis server unless
``REDIS_URL`` is set; start the Celery beat process (``labsite.beat``: it stores the example
scenarios as it starts and reaps lost runs every 15 s), a Celery worker (consuming both the
default queue and the large batch runs' shard queue, ``RUN_SHARD_QUEUE``) and daphne as child
processes; wait until the worker answers and the examples are stored; print the URL; on
Ctrl-C or SIGTERM stop daphne, then the worker, then beat, then Redis, and exit. Children
run in their own sessions with a parent-death signal, so nothing outlives the launcher,
even if it is killed.

Every child is supervised (``labsite.procutil.Supervisor``): one that dies — the worker
killed for memory, daphne crashing, beat, the embedded Redis killed — is restarted after a
back-off (0.5 s, doubling up to 10 s) while the others keep serving, with a ``[rsslab]``
line naming it and how it ended. The embedded Redis comes back on the same socket, so
daphne and the worker reconnect. The launcher stops only on Ctrl-C / SIGTERM, a start-up
error, or a child that died 5 times within 60 s (then it says so and exits with status 1).

Environment: ``PORT`` (default 8000), ``HOST`` (default 127.0.0.1), ``WORKER_CONCURRENCY``
(default 2), plus everything ``labsite.settings`` reads (``REDIS_URL``, ``DATABASE_URL`` …).
"""

from __future__ import annotations

import functools
import os
import signal
import socket
import sys
import threading
from pathlib import Path

from labsite.embedded_redis import EmbeddedRedis
from labsite.procutil import Child, GaveUp, Supervisor, spawn, wait_for_port


class Stopped(Exception):
    """Raised between start-up steps once Ctrl-C / SIGTERM has been received."""


def _say(message: str) -> None:
    print(f"[rsslab] {message}", flush=True)


def _prepare_database() -> None:
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", interactive=False, verbosity=0)
    from django.urls import reverse

    from labsite.lab.services import demo_users_ensure

    # Students are not staff (no admin): every user changes their password on this page. Its
    # path only: the lab's URL is printed once, when it answers (scripts wait for it).
    change_path = reverse("password_change")
    for cred in demo_users_ensure():
        _say(f"created demo {cred.role}: username {cred.username!r} password "
             f"{cred.password!r} (shown only now; after logging in, change it with "
             f"\"Change password\", {change_path})")


def _examples_stored(*, timeout: float, stopping: threading.Event, tick) -> bool:
    """Wait until the example scenarios are stored (the beat process stores them as it
    starts: ``labsite.beat``), so the first page offers them; False after ``timeout``
    seconds (beat then says why in its log). Only reads the database."""
    import time

    from django.db import close_old_connections

    from labsite.lab.models import Scenario

    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline and not stopping.is_set():
            tick()
            if Scenario.objects.exclude(example="").exists():
                return True
            time.sleep(0.2)
        return False
    finally:
        close_old_connections()


def _worker_ready(*, timeout: float, stopping: threading.Event, tick) -> bool:
    """Wait until a Celery worker answers a ping (so the URL is printed once runs can
    start, after the worker's own start-up lines); False after ``timeout`` seconds.
    ``tick()`` runs between pings (it keeps the children supervised meanwhile)."""
    import time

    from labsite.celery import app

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not stopping.is_set():
        tick()
        try:
            if app.control.ping(timeout=0.5):
                return True
        except Exception:  # noqa: BLE001  (the broker is ours and local: just retry)
            time.sleep(0.5)
    return False


def main() -> int:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "labsite.settings")
    host = os.environ.get("HOST", "127.0.0.1")
    port = int(os.environ.get("PORT", "8000"))
    stopping = threading.Event()

    def on_signal(signum, frame):
        stopping.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)

    def check() -> None:
        if stopping.is_set():
            raise Stopped

    redis_server = None
    # Started in order, stopped in reverse (daphne, the worker, beat, Redis); each one that dies
    # is restarted with a back-off, and one dying 5 times in 60 s stops the lab.
    supervisor = Supervisor(say=_say)

    def tick() -> None:
        check()
        supervisor.poll()

    status = 0
    try:
        from labsite.secretkey import export_secret_key

        export_secret_key()  # DJANGO_SECRET_KEY, from var/secret_key, for us and the children
        var_dir = Path(os.environ.get("RSSLAB_VAR")
                       or Path(__file__).resolve().parent.parent / "var")
        var_dir.mkdir(parents=True, exist_ok=True)  # the beat schedule, the embedded Redis
        if not os.environ.get("REDIS_URL"):
            redis_server = EmbeddedRedis(data_dir=var_dir / "redis")
            # Restarts reuse its socket path, so the clients' REDIS_URL stays right.
            supervisor.add(Child("redis", redis_server.spawn))
            redis_server.wait_ready(timeout=10)
            os.environ["REDIS_URL"] = redis_server.url
            _say(f"embedded Redis on {redis_server.url}")
        check()
        _prepare_database()  # after REDIS_URL is final: the settings read it once
        check()
        with socket.socket() as probe:  # fail early and clearly if the port is taken
            if probe.connect_ex((host, port)) == 0:
                raise OSError(f"port {port} on {host} is in use; set PORT to another one")
        env = dict(os.environ)
        # The supervised commands: (name, argv, seconds it may take to stop on SIGTERM),
        # started in this order and stopped in reverse.
        commands = [
            # The one scheduler (labsite.beat): examples at start-up, the reaper every 15 s.
            ("beat", [
                sys.executable, "-m", "celery", "--quiet", "-A", "labsite", "beat",
                "--loglevel", "warning", "--schedule", str(var_dir / "celerybeat-schedule")],
             10),
            ("worker", [
                # --quiet: no banner, so the URL below stays the last thing a user reads
                sys.executable, "-m", "celery", "--quiet", "-A", "labsite", "worker",
                "--loglevel", "info",
                "--concurrency", os.environ.get("WORKER_CONCURRENCY", "2"),
                # one worker for both queues: the lab's runs and grading (the default
                # queue) and the shards of large batch runs (RUN_SHARD_QUEUE)
                "--queues", f"rsslab,{os.environ.get('RUN_SHARD_QUEUE', 'batch')}",
                "--without-gossip", "--without-mingle",
                "--hostname", f"rsslab-{os.getpid()}@%h"], 15),
            ("daphne", [
                sys.executable, "-m", "daphne", "-b", host, "-p", str(port),
                "labsite.asgi:application"], 10),
        ]
        for name, argv, stop_timeout in commands:
            supervisor.add(Child(name, functools.partial(spawn, argv, env=env),
                                 stop_timeout=stop_timeout))
        wait_for_port(host, port, timeout=60, tick=tick)
        ready = _worker_ready(timeout=30, stopping=stopping, tick=tick)
        examples = _examples_stored(timeout=30, stopping=stopping, tick=tick)
        _say(f"RSS Lab is running at http://{host}:{port}/  (Ctrl-C stops it)"
             + ("" if ready else "; the Celery worker is still starting: runs wait for it")
             + ("" if examples else "; the example scenarios are not stored yet (see the "
                                    "beat process's log above)"))
        while not stopping.wait(0.2):
            supervisor.poll()
    except Stopped:
        pass
    except GaveUp as exc:
        _say(f"{exc}; stopping the lab")
        status = 1
    except (OSError, RuntimeError, TimeoutError) as exc:
        _say(f"could not start: {exc}")
        status = 1
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut cleanup
        supervisor.stop_all()
        if redis_server is not None:
            redis_server.stop()
        _say("stopped")
    return status


if __name__ == "__main__":
    sys.exit(main())
