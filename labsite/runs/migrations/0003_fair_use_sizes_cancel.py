"""Fair use (issue 10 item 5): a run's stored size, when its events were pruned, and the
``cancelled`` status. Existing runs get their size computed from what they store, so the
storage budget counts them from the first request after the upgrade."""

import json

from django.db import migrations, models


def _json_size(value) -> int:
    # As labsite.runs.services.json_size: the JSON text the JSONField stores.
    return 0 if value is None else len(json.dumps(value))


def sizes_of_existing_runs(apps, schema_editor):
    from django.db.models.functions import Length

    Run = apps.get_model("runs", "Run")
    RunEventChunk = apps.get_model("runs", "RunEventChunk")
    RunCapture = apps.get_model("runs", "RunCapture")
    for run in Run.objects.only("pk", "scenario_body", "report").iterator(chunk_size=100):
        size = len(run.scenario_body.encode()) + _json_size(run.report)
        size += (RunCapture.objects.filter(run_id=run.pk).annotate(n=Length("data"))
                 .values_list("n", flat=True).first() or 0)
        # One chunk at a time: a run may hold 200,000 events.
        for events in (RunEventChunk.objects.filter(run_id=run.pk)
                       .values_list("events", flat=True).iterator(chunk_size=8)):
            size += _json_size(events)
        Run.objects.filter(pk=run.pk).update(stored_bytes=size)


class Migration(migrations.Migration):
    dependencies = [
        ("runs", "0002_events_reports_captures"),
    ]

    operations = [
        migrations.AddField(
            model_name="run",
            name="events_pruned_at",
            field=models.DateTimeField(
                blank=True,
                help_text="When the retention job deleted this run's events "
                "(RUN_EVENTS_RETENTION_DAYS); the row stays.",
                null=True,
            ),
        ),
        migrations.AddField(
            model_name="run",
            name="stored_bytes",
            field=models.PositiveBigIntegerField(
                default=0,
                help_text="Bytes this run keeps in the database: scenario text, capture, "
                "events and report, as stored (JSON text).",
            ),
        ),
        migrations.AlterField(
            model_name="run",
            name="status",
            field=models.CharField(
                choices=[
                    ("queued", "queued"),
                    ("running", "running"),
                    ("succeeded", "succeeded"),
                    ("failed", "failed"),
                    ("cancelled", "cancelled"),
                ],
                db_index=True,
                default="queued",
                max_length=10,
            ),
        ),
        migrations.RunPython(sizes_of_existing_runs, migrations.RunPython.noop),
    ]
