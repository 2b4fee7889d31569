"""Read-side helpers for the lab: who may see what, and the lab page's JSON."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db.models import QuerySet

from labsite.lab.errors import LabInputError
from labsite.lab.models import INSTRUCTOR_GROUP, Scenario


def user_is_instructor(user) -> bool:
    """Instructors and staff see every run, not just their own."""
    if not user.is_authenticated:
        return False
    return user.is_staff or user.groups.filter(name=INSTRUCTOR_GROUP).exists()


def scenario_list(*, user) -> QuerySet[Scenario]:
    """Scenarios a user may run: all of them, for now (hand-outs come with exercises)."""
    return Scenario.objects.select_related("owner").order_by("name")


def example_list() -> list[dict[str, str]]:
    """The engine's examples stored as scenarios: ``[{"name", "title"}]`` by name."""
    return [{"name": name, "title": title} for name, title in
            Scenario.objects.exclude(example="").order_by("example")
            .values_list("example", "description")]


def example_forms() -> dict[str, dict[str, Any]]:
    """Each stored example's file and what the form can show of it, for the lab page:
    ``{name: {"yaml", "form": builder_fields_from_scenario(yaml)}}`` (choosing an example
    puts it in the form and the YAML tab, and the diagram follows)."""
    from labsite.lab.builder import builder_fields_from_scenario

    return {name: {"yaml": body, "form": builder_fields_from_scenario(body)}
            for name, body in Scenario.objects.exclude(example="").order_by("example")
            .values_list("example", "body")}


def example_scenario_get(name: Any) -> Scenario:
    """The stored scenario of engine example ``name``; LabInputError on ``example`` when no
    such example is stored (the beat process stores them as it starts: ``labsite.beat``)."""
    if not isinstance(name, str) or not name:
        raise LabInputError.one("example", "expected an example's name")
    stored = Scenario.objects.filter(example=name).order_by("pk").first()
    if stored is None:
        known = sorted(set(Scenario.objects.exclude(example="")
                           .values_list("example", flat=True)))
        if not known:
            raise LabInputError.one("example", f"expected one of the stored examples, got "
                                               f"{name!r} (none is stored yet: the lab's beat "
                                               f"process stores them as it starts)")
        raise LabInputError.one("example", f"expected one of {', '.join(known)}, got {name!r}")
    return stored


def lab_limits() -> dict[str, Any]:
    """The sizes the lab accepts, for the page to say before the server refuses."""
    from engine.nic.rss import MAX_CORES
    from engine.runs.compare import VARY

    return {
        "trace_max_flows": settings.RUN_TRACE_MAX_FLOWS,
        "trace_max_events": settings.RUN_TRACE_MAX_EVENTS,
        "batch_max_flows": settings.RUN_BATCH_MAX_FLOWS,
        "compare_max_flow_cells": settings.RUN_COMPARE_MAX_FLOW_CELLS,
        "report_rows": settings.RUN_REPORT_ROWS,
        "events_page_max": settings.RUN_EVENTS_PAGE_MAX,
        "pcap_max_bytes": settings.LAB_PCAP_MAX_BYTES,
        "scenario_max_bytes": settings.LAB_SCENARIO_MAX_BYTES,
        "delay_max_ms": settings.RUN_DELAY_MAX_MS,
        "cores": [1, MAX_CORES],
        "hash_bits": [1, 7],
        "vary_options": {name: list(values) if values else None
                         for name, values in VARY.items()},
    }
