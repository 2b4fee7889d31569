"""Write-side helpers for the lab: demo users, role permissions, example scenarios.

``labsite.launcher`` calls :func:`demo_data_ensure` on every start; it is idempotent and
returns the credentials of the users it *created* (so they are printed exactly once).

Example scenarios come from an optional hook in the engine: ``engine.examples.list_examples()``
returning items with ``name``, ``title`` (one line) and ``path`` (the scenario file). If
the engine does not offer it, one built-in scenario for the stand-in engine bridge is
loaded instead, so the lab always has something to run.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.db import transaction
from django.utils.text import slugify

from labsite.lab.models import INSTRUCTOR_GROUP, STUDENT_GROUP, Scenario

BUILTIN_SCENARIOS = [
    {
        "name": "Platform smoke test (stand-in engine)",
        "slug": "platform-smoke",
        "description": "Exercises the run pipeline: worker, live events, summary. "
                       "Runs on the stand-in engine bridge until the real engine is wired in.",
        "body": (
            "# Read by labsite/runs/engine_bridge.py (the stand-in engine).\n"
            "cores: 4\n"
            "flows: 8\n"
            "packets_per_flow: 4\n"
            "delay_ms: 20\n"
        ),
    },
]


@dataclass(frozen=True)
class NewCredentials:
    username: str
    password: str
    role: str


def role_groups_ensure() -> dict[str, Group]:
    """Both groups exist; instructors may manage scenarios and view runs in the admin."""
    groups = {name: Group.objects.get_or_create(name=name)[0]
              for name in (STUDENT_GROUP, INSTRUCTOR_GROUP)}
    perms = Permission.objects.filter(
        content_type__app_label__in=["lab", "runs"],
        codename__in=["add_scenario", "change_scenario", "delete_scenario", "view_scenario",
                      "view_run"],
    )
    groups[INSTRUCTOR_GROUP].permissions.add(*perms)
    return groups


@transaction.atomic
def demo_users_ensure() -> list[NewCredentials]:
    """Create the demo instructor and student if missing; return only the new ones."""
    groups = role_groups_ensure()
    user_model = get_user_model()
    created = []
    for username, role in (("instructor", INSTRUCTOR_GROUP), ("student", STUDENT_GROUP)):
        if user_model.objects.filter(username=username).exists():
            continue
        password = secrets.token_urlsafe(12)
        user = user_model.objects.create_user(
            username=username, password=password, is_staff=(role == INSTRUCTOR_GROUP),
        )
        user.groups.add(groups[role])
        created.append(NewCredentials(username=username, password=password, role=role))
    return created


def example_scenarios() -> list[dict]:
    """The engine's examples if it offers the hook, else the built-in stand-in scenario.

    Each item is a mapping with ``name``, ``slug``, ``description`` and ``body``.
    """
    try:
        from engine.examples import list_examples  # optional hook: see the module docstring
    except ImportError:
        return list(BUILTIN_SCENARIOS)
    return [{"name": info.name, "slug": slugify(info.name), "description": info.title,
             "body": Path(info.path).read_text(encoding="utf-8")}
            for info in list_examples()]


def scenarios_load(examples: Iterable[dict]) -> list[Scenario]:
    """Create the scenarios whose slug is not stored yet; never overwrite edited ones."""
    created = []
    for example in examples:
        name = example.get("name") or ""
        slug = example.get("slug") or slugify(name)
        if not name or not slug:
            raise ValueError(f"example scenario: expected a name, got {example!r}")
        scenario, was_created = Scenario.objects.get_or_create(
            slug=slug,
            defaults={"name": name, "body": example.get("body", ""),
                      "description": example.get("description", "")},
        )
        if was_created:
            created.append(scenario)
    return created


def demo_data_ensure() -> list[NewCredentials]:
    """Everything a fresh lab needs: groups, demo users, example scenarios."""
    credentials = demo_users_ensure()
    scenarios_load(example_scenarios())
    return credentials
