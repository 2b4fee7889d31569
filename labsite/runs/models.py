"""A run: one execution of a scenario by the engine, with its live state and results.

A trace run's events are stored as they are produced, in :class:`RunEventChunk` rows of
up to ``RUN_BATCH_MAX_EVENTS`` events each (one row per batch the worker broadcasts, so a
page can catch up on anything sent before its websocket connected); a capture uploaded
with a run lives in :class:`RunCapture` until the run is deleted.

Fair use (``labsite.runs.quota``): ``Run.stored_bytes`` is what a run keeps in the
database (its scenario text, capture, events and report, as stored), so a user's storage is
one sum over their runs; the retention job (``services.runs_prune_events``) deletes old
runs' events and keeps the run's row, stamping ``events_pruned_at``.

A :class:`Batch` groups runs submitted together (the REST API's ``POST /api/v1/batches``):
each item is an ordinary run with ``batch`` set, and the whole batch counts as one run
against the active cap (``quota.active_run_count``).
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.urls import reverse


class Batch(models.Model):
    """Runs submitted in one request: many scenarios, or one scenario under a list of
    variations. Its status and verdict are its runs' (``labsite.api.services``)."""

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True,
                              on_delete=models.SET_NULL, related_name="run_batches")
    title = models.CharField(max_length=200, blank=True)
    parameters = models.JSONField(
        default=dict, blank=True,
        help_text="How it was submitted: kind, vary, flows.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-pk"]

    def __str__(self) -> str:
        return f"batch {self.pk} {self.title}".strip()


class Run(models.Model):
    class Status(models.TextChoices):
        QUEUED = "queued", "queued"
        RUNNING = "running", "running"
        SUCCEEDED = "succeeded", "succeeded"
        FAILED = "failed", "failed"
        # Stopped by its user (deleting a queued or running run cancels it first).
        CANCELLED = "cancelled", "cancelled"

    class Mode(models.TextChoices):
        TRACE = "trace", "trace (packet by packet, live)"
        BATCH = "batch", "batch (vectorised, large runs)"
        COMPARE = "compare", "compare (settings side by side)"

    FINISHED = (Status.SUCCEEDED, Status.FAILED, Status.CANCELLED)
    #: What counts against a user's cap of active runs (``RUN_ACTIVE_MAX_*``).
    ACTIVE = (Status.QUEUED, Status.RUNNING)

    scenario = models.ForeignKey(
        "lab.Scenario", on_delete=models.PROTECT, related_name="runs", null=True, blank=True,
        help_text="The stored scenario run (examples); empty for scenarios built or typed "
                  "in the lab. PROTECT: no result loses the scenario it came from.",
    )
    title = models.CharField(max_length=200, blank=True,
                             help_text="The scenario's name, for listings.")
    # The text actually run: later edits of the scenario do not change a past run.
    scenario_body = models.TextField()
    ran_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
        related_name="runs",
    )
    mode = models.CharField(max_length=10, choices=Mode.choices, default=Mode.TRACE)
    seed = models.PositiveBigIntegerField(default=0)
    parameters = models.JSONField(
        default=dict, blank=True,
        help_text="Run options: source, vary (compare), delay_ms (slow motion).")

    status = models.CharField(
        max_length=10, choices=Status.choices, default=Status.QUEUED, db_index=True
    )
    progress = models.FloatField(default=0.0, help_text="0 to 1")
    event_count = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True, help_text="Why the run failed, for the user.")
    summary = models.JSONField(default=dict, blank=True,
                               help_text="The report's headline figures (sent to watchers).")
    report = models.JSONField(null=True, blank=True,
                              help_text="The engine's report (rows capped), or the comparison.")

    # Kept up to date by the services (start, worker heartbeats, finish, pruning) so a
    # user's storage is one indexed sum, never a scan of the events' JSON.
    stored_bytes = models.PositiveBigIntegerField(
        default=0, help_text="Bytes this run keeps in the database: scenario text, capture, "
                             "events and report, as stored (JSON text).")
    events_pruned_at = models.DateTimeField(
        null=True, blank=True, help_text="When the retention job deleted this run's events "
                                         "(RUN_EVENTS_RETENTION_DAYS); the row stays.")

    batch = models.ForeignKey(
        Batch, null=True, blank=True, on_delete=models.CASCADE, related_name="runs",
        help_text="The batch this run is an item of (API batches), else empty.")
    celery_task_id = models.CharField(max_length=64, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # A large batch run split into RunShard rows (labsite.runs.sharding): how many of its
    # shards have stored their result. Raised by an atomic F() update, so exactly one
    # shard, the last, sees it reach the number of shards and queues the merge.
    shards_done = models.PositiveSmallIntegerField(default=0)

    class Meta:
        ordering = ["-created_at", "-pk"]

    def __str__(self) -> str:
        return f"run {self.pk} of {self.title or self.scenario_id} ({self.status})"

    def get_absolute_url(self) -> str:
        return reverse("runs:workbench") + f"?run={self.pk}"

    @property
    def is_finished(self) -> bool:
        return self.status in self.FINISHED

    @property
    def verdict(self) -> str:
        """What a finished run found, in one line for lists ("" before it has a summary):
        ``3/3 symmetric · 0 handed off · 0 refused · 0 asymmetric · passed`` (the
        engine's verdict vocabulary; runs stored before it say ``allocation_failures``)."""
        s = self.summary or {}
        if s.get("mode") == "compare":
            return f"{s.get('cells', 0)} configurations × {s.get('flows', 0):,} flows"
        if "symmetric" not in s:
            return ""
        line = (f"{s['symmetric']:,}/{s.get('flows', 0):,} symmetric · "
                f"{s.get('handed_off', 0):,} handed off · "
                f"{s.get('refused', s.get('allocation_failures', 0)):,} refused · "
                f"{s.get('asymmetric', 0):,} asymmetric")
        if "passed" in s:
            line += " · passed" if s["passed"] else " · FAILED"
        return line


class RunEventChunk(models.Model):
    """Events ``first_seq`` … ``last_seq`` of a trace run (no gaps, in order), as sent."""

    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="event_chunks")
    first_seq = models.PositiveIntegerField()
    last_seq = models.PositiveIntegerField()
    events = models.JSONField()

    class Meta:
        ordering = ["run", "first_seq"]
        constraints = [models.UniqueConstraint(fields=["run", "first_seq"],
                                               name="run_event_chunk_unique_start")]
        indexes = [models.Index(fields=["run", "last_seq"])]

    def __str__(self) -> str:
        return f"run {self.run_id} events {self.first_seq}–{self.last_seq}"


class RunCapture(models.Model):
    """A pcap uploaded with a run (validated before the run was queued)."""

    run = models.OneToOneField(Run, on_delete=models.CASCADE, related_name="capture")
    name = models.CharField(max_length=255, blank=True)
    data = models.BinaryField()
    packets = models.PositiveIntegerField(default=0)

    def __str__(self) -> str:
        return f"capture {self.name or '(unnamed)'} of run {self.run_id}"


class RunShard(models.Model):
    """One shard of a large batch run split by request core (``labsite.runs.sharding``;
    the engine's ``engine.runs.shards``): its own Celery task on the ``RUN_SHARD_QUEUE``
    queue, with the heartbeat and attempts a run has, and its result (the engine's
    compact ``ShardFigures``) written once, keyed by (run, index)."""

    class Status(models.TextChoices):
        QUEUED = "queued", "queued"
        RUNNING = "running", "running"
        DONE = "done", "done"
        FAILED = "failed", "failed"

    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="shards")
    index = models.PositiveSmallIntegerField()
    count = models.PositiveSmallIntegerField(help_text="Shards the run was split into.")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED,
                              db_index=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    celery_task_id = models.CharField(max_length=64, blank=True)
    worker = models.CharField(max_length=200, blank=True,
                              help_text="The Celery node running (or that ran) the shard.")
    flows = models.PositiveBigIntegerField(default=0, help_text="Flows of this shard.")
    figures = models.BinaryField(
        null=True, blank=True,
        help_text="The shard's result (ShardFigures); cleared once merged.")
    error = models.TextField(blank=True, help_text="Why it failed, or was last retried.")
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["run", "index"]
        constraints = [models.UniqueConstraint(fields=["run", "index"],
                                               name="run_shard_unique_index")]

    def __str__(self) -> str:
        return f"run {self.run_id} shard {self.index + 1}/{self.count} ({self.status})"
