"""A run: one execution of a scenario by the engine, with its live state and results."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.urls import reverse


class Run(models.Model):
    class Status(models.TextChoices):
        QUEUED = "queued", "queued"
        RUNNING = "running", "running"
        SUCCEEDED = "succeeded", "succeeded"
        FAILED = "failed", "failed"

    class Mode(models.TextChoices):
        TRACE = "trace", "trace (packet by packet, live)"
        BATCH = "batch", "batch (vectorised, large runs)"

    FINISHED = (Status.SUCCEEDED, Status.FAILED)

    scenario = models.ForeignKey(
        "lab.Scenario", on_delete=models.PROTECT, related_name="runs",
        help_text="PROTECT: no result loses the scenario it came from.",
    )
    # The text actually run: later edits of the scenario do not change a past run.
    scenario_body = models.TextField()
    ran_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
        related_name="runs",
    )
    mode = models.CharField(max_length=10, choices=Mode.choices, default=Mode.TRACE)
    seed = models.PositiveBigIntegerField(default=0)
    parameters = models.JSONField(default=dict, blank=True)

    status = models.CharField(
        max_length=10, choices=Status.choices, default=Status.QUEUED, db_index=True
    )
    progress = models.FloatField(default=0.0, help_text="0 to 1")
    event_count = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True, help_text="Why the run failed, for the user.")
    summary = models.JSONField(default=dict, blank=True)
    flows = models.JSONField(default=list, blank=True, help_text="Per-flow results.")
    # At most settings.RUN_TRACE_STORE_LIMIT events; the live stream is not capped.
    trace = models.JSONField(
        default=list, blank=True,
        help_text="Stored events for replay (trace mode, capped).",
    )

    celery_task_id = models.CharField(max_length=64, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-pk"]

    def __str__(self) -> str:
        return f"run {self.pk} of {self.scenario_id} ({self.status})"

    def get_absolute_url(self) -> str:
        return reverse("runs:detail", args=[self.pk])

    @property
    def is_finished(self) -> bool:
        return self.status in self.FINISHED
