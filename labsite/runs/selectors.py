"""Read-side helpers for runs: access rules and listings."""

from __future__ import annotations

from django.db.models import QuerySet

from labsite.lab.selectors import user_is_instructor
from labsite.runs.models import Run


def run_visible_to(*, user, run: Run) -> bool:
    """The person who ran it, instructors and staff may watch a run."""
    if not user.is_authenticated:
        return False
    return run.ran_by_id == user.pk or user_is_instructor(user)


def run_list(*, user, limit: int = 20) -> QuerySet[Run]:
    """Recent runs a user may see, newest first."""
    runs = Run.objects.select_related("scenario", "ran_by")
    if not user_is_instructor(user):
        runs = runs.filter(ran_by=user)
    return runs.order_by("-created_at", "-pk")[:limit]


def run_get_for_user(*, user, run_id: int) -> Run | None:
    """The run if it exists and ``user`` may see it, else None (the caller answers 404)."""
    run = Run.objects.select_related("scenario").filter(pk=run_id).first()
    if run is None or not run_visible_to(user=user, run=run):
        return None
    return run
