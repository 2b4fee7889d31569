from django.contrib import admin

from labsite.runs.models import Run


@admin.register(Run)
class RunAdmin(admin.ModelAdmin):
    list_display = ["pk", "scenario", "ran_by", "mode", "status", "progress", "event_count",
                    "created_at", "finished_at"]
    list_filter = ["status", "mode"]
    search_fields = ["scenario__name", "ran_by__username", "error"]
    readonly_fields = ["celery_task_id", "attempts", "heartbeat_at", "created_at",
                       "started_at", "finished_at"]
    raw_id_fields = ["scenario", "ran_by"]
