"""A thread that proves a worker alive while one long engine call runs.

A run's or a shard's task stamps its row every RUN_HEARTBEAT_SECONDS from this thread, not
from the engine's callbacks, so a computation that reports nothing for minutes does not
look like a dead worker; the reaper (the beat process) takes a row whose stamp went stale.
"""

from __future__ import annotations

import threading

from django.db import connection


class HeartbeatThread:
    """Calls ``beat()`` every ``interval`` seconds while its ``with`` block runs, until
    ``beat`` returns False (the row is no longer this attempt's). Subclasses define
    ``beat``; the thread closes its own database connection when it ends."""

    def __init__(self, *, interval: float, name: str):
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        self._thread.join()

    def _loop(self) -> None:
        try:
            while not self._stop.wait(self.interval):
                if not self.beat():
                    return
        finally:
            connection.close()  # this thread's own connection
