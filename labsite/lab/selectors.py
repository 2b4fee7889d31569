"""Read-side helpers for the lab: who may see what."""

from __future__ import annotations

from django.db.models import QuerySet

from labsite.lab.models import INSTRUCTOR_GROUP, Scenario


def user_is_instructor(user) -> bool:
    """Instructors and staff see every run, not just their own."""
    if not user.is_authenticated:
        return False
    return user.is_staff or user.groups.filter(name=INSTRUCTOR_GROUP).exists()


def scenario_list(*, user) -> QuerySet[Scenario]:
    """Scenarios a user may run: all of them, for now (hand-outs come with exercises)."""
    return Scenario.objects.select_related("owner").order_by("name")
