from django.contrib import admin

from labsite.runs.models import Run, RunCapture, RunEventChunk


@admin.register(Run)
class RunAdmin(admin.ModelAdmin):
    list_display = ["pk", "title", "scenario", "ran_by", "mode", "status", "progress",
                    "event_count", "stored_bytes", "events_pruned_at", "created_at",
                    "finished_at"]
    list_filter = ["status", "mode"]
    search_fields = ["title", "scenario__name", "ran_by__username", "error"]
    # Sizes and the pruning stamp are the services' (fair use): an edit would falsify them.
    readonly_fields = ["celery_task_id", "attempts", "heartbeat_at", "created_at",
                       "started_at", "finished_at", "stored_bytes", "events_pruned_at"]
    raw_id_fields = ["scenario", "ran_by"]


@admin.register(RunEventChunk)
class RunEventChunkAdmin(admin.ModelAdmin):
    list_display = ["pk", "run", "first_seq", "last_seq"]
    raw_id_fields = ["run"]


@admin.register(RunCapture)
class RunCaptureAdmin(admin.ModelAdmin):
    list_display = ["pk", "run", "name", "packets"]
    raw_id_fields = ["run"]
    exclude = ["data"]
