"""Small helpers the web tests share (fixtures live in conftest.py)."""

from __future__ import annotations

import json
import time
from pathlib import Path


def post_json(client, url: str, data):
    """POST ``data`` (a JSON-ready value, or text sent as is) as an application/json body."""
    return client.post(url, data if isinstance(data, str) else json.dumps(data),
                       content_type="application/json")


def descendant_pids(pid: int) -> set[int]:
    """Every live descendant of process ``pid``, read from /proc (no extra dependency)."""
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found, frontier = set(), {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def wait_for(predicate, *, timeout: float, what: str, every: float = 0.05):
    """``predicate()``'s first truthy value, polled every ``every`` seconds; an
    AssertionError naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")
