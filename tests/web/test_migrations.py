"""Migrations keep what a database already holds: a database made at the previous
migration, with rows in it, is migrated forward and keeps every row."""

from __future__ import annotations

import json

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from labsite.runs.models import Run, RunCapture, RunEventChunk

pytestmark = pytest.mark.django_db(transaction=True)

BEFORE_FAIR_USE = ("runs", "0002_events_reports_captures")


def _migrate(target: list[tuple[str, str]]):
    """Migrate the test database to ``target``; return the models as they were there."""
    executor = MigrationExecutor(connection)
    executor.migrate(target)
    return executor.loader.project_state(target).apps


def test_runs_made_before_fair_use_keep_their_rows_and_get_their_sizes():
    old = _migrate([BEFORE_FAIR_USE])
    user = old.get_model("auth", "User").objects.create(username="old-student")
    OldRun = old.get_model("runs", "Run")
    body = "name: été\n"  # sizes are bytes, not characters
    events = [[{"seq": s, "kind": "hashed"} for s in range(first, first + 200)]
              for first in (0, 200)]
    report = {"summary": {"flows": 3}, "rows": [{"verdict": "symmetric"}] * 3}
    done = OldRun.objects.create(scenario_body=body, ran_by_id=user.pk, status="succeeded",
                                 report=report, event_count=400, title="done")
    for chunk in events:
        old.get_model("runs", "RunEventChunk").objects.create(
            run=done, first_seq=chunk[0]["seq"], last_seq=chunk[-1]["seq"], events=chunk)
    old.get_model("runs", "RunCapture").objects.create(run=done, name="c.pcap",
                                                       data=b"\x00" * 1234, packets=2)
    waiting = OldRun.objects.create(scenario_body=body, ran_by_id=user.pk, title="waiting")

    executor = MigrationExecutor(connection)
    _migrate(executor.loader.graph.leaf_nodes())

    done_now, waiting_now = Run.objects.get(pk=done.pk), Run.objects.get(pk=waiting.pk)
    assert (done_now.title, done_now.status, done_now.report, done_now.event_count) == (
        "done", "succeeded", report, 400)
    assert [c.events for c in RunEventChunk.objects.filter(run=done_now)] == events
    assert bytes(RunCapture.objects.get(run=done_now).data) == b"\x00" * 1234
    assert done_now.events_pruned_at is None and waiting_now.status == "queued"
    body_bytes = len(body.encode())
    assert body_bytes == len(body) + 2  # two accented letters
    assert done_now.stored_bytes == (body_bytes + len(json.dumps(report)) + 1234
                                     + sum(len(json.dumps(chunk)) for chunk in events))
    assert waiting_now.stored_bytes == body_bytes
