"""Pushing run updates to the channel-layer group that browsers watching a run have joined.

Everything that sends to a run's group lives here, outside the consumer, so the worker,
the reaper and tests use the same messages. Two message shapes reach the browser (the
consumer relays ``payload`` unchanged)::

    {"type": "status", "run": 7, "status": "running", "progress": 0.25, "event_count": 40,
     "error": "", "summary": {...} or null}
    {"type": "events", "run": 7, "progress": 0.3, "sent_at": 1732612345.123,
     "events": [{"seq": 40, ...}, {"seq": 41, ...}]}

``sent_at`` is the sender's wall clock (seconds), so a page can measure its lag.
"""

from __future__ import annotations

import time

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

from labsite.runs.models import Run


def run_group(run_id: int) -> str:
    """The channel-layer group of one run (names allow only ASCII letters, digits, -_.)."""
    return f"run-{int(run_id)}"


def status_payload(run: Run) -> dict:
    """The ``status`` message for ``run`` as it is stored now."""
    return {
        "type": "status",
        "run": run.pk,
        "status": run.status,
        "progress": run.progress,
        "event_count": run.event_count,
        "error": run.error,
        "summary": run.summary if run.is_finished else None,
    }


def _group_send(run_id: int, handler: str, payload: dict) -> None:
    layer = get_channel_layer()
    async_to_sync(layer.group_send)(run_group(run_id), {"type": handler, "payload": payload})


def broadcast_status(run: Run) -> None:
    _group_send(run.pk, "run.status", status_payload(run))


def broadcast_events(run_id: int, events: list[dict], *, progress: float) -> None:
    payload = {"type": "events", "run": int(run_id), "progress": progress,
               "sent_at": time.time(), "events": events}
    _group_send(run_id, "run.events", payload)
