"""Write-side logic of the lab: users and groups, the example scenarios, and the lab
page's scenario tools (the form's YAML, the bit-by-bit hash).

``labsite.launcher`` calls :func:`demo_users_ensure` on every start; it is idempotent and
returns the credentials of the users it *created* (so they are printed exactly once). The
lab's beat process (``labsite.beat``) calls :func:`examples_load` as it starts: it stores
the engine's examples (``engine.examples``) as Scenario rows marked with their example
name, so relative paths in them (``pcap-replay``'s capture) resolve against the examples
directory when they run. Runs are started by ``labsite.runs.submit``.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.db import transaction
from django.utils.text import slugify

from labsite.lab.builder import scenario_yaml_from_builder
from labsite.lab.errors import LabInputError
from labsite.lab.inputs import check_texts, optional_int
from labsite.lab.models import INSTRUCTOR_GROUP, STUDENT_GROUP, Scenario


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
    """The engine's examples: mappings with ``name``, ``slug``, ``description``, ``body``
    and ``example`` (the engine's name for it)."""
    from engine.examples import list_examples

    return [{"name": info.name, "slug": slugify(info.name), "description": info.title,
             "body": Path(info.path).read_text(encoding="utf-8"), "example": info.name}
            for info in list_examples()]


def scenarios_load(examples: Iterable[dict]) -> list[Scenario]:
    """Create the scenarios whose slug is not stored yet; never overwrite edited ones
    (a row stored before rows knew their example gets its example name, nothing else)."""
    created = []
    for example in examples:
        name = example.get("name") or ""
        slug = example.get("slug") or slugify(name)
        if not name or not slug:
            raise ValueError(f"example scenario: expected a name, got {example!r}")
        scenario, was_created = Scenario.objects.get_or_create(
            slug=slug,
            defaults={"name": name, "body": example.get("body", ""),
                      "description": example.get("description", ""),
                      "example": example.get("example", "")},
        )
        if was_created:
            created.append(scenario)
        elif example.get("example") and not scenario.example:
            Scenario.objects.filter(pk=scenario.pk).update(example=example["example"])
    return created


@transaction.atomic  # all of them at once: a page never offers half the examples
def examples_load() -> list[Scenario]:
    """Store the engine's examples as scenarios (:func:`scenarios_load`); return the ones
    created. The lab's beat process calls it once as it starts (``labsite.beat``): the one
    place examples are written, so no page view ever writes them."""
    return scenarios_load(example_scenarios())


def demo_data_ensure() -> list[NewCredentials]:
    """Everything a fresh lab needs: groups, demo users, example scenarios."""
    credentials = demo_users_ensure()
    examples_load()
    return credentials


#: Hash input lengths (bytes) a NIC hashes: IPv4 and IPv6, addresses only or with ports.
EXPLAIN_INPUT_BYTES = (8, 12, 32, 36)


def lab_builder_yaml(data: dict) -> str:
    """The scenario file the form's ``builder`` fields describe, for the YAML tab (so a
    student sees, and can edit, the file a run would take). LabInputError for fields of
    the wrong shape; the values are checked when the text is run."""
    check_texts(data)
    return scenario_yaml_from_builder(data.get("builder"))


def lab_explain(params) -> dict[str, Any]:
    """The bit-by-bit Toeplitz hash of one input under ``key``, with its bucket and core.

    The input is either ``input_hex`` — the bytes the NIC hashed, as a ``hashed`` event
    carries them (already through the NIC's transform, so the result is the event's hash
    whatever the transform) — or a tuple: ``src``, ``dst``, optional ``sport`` and
    ``dport``. The bucket is the hash's low ``hash_bits`` bits; its core comes from
    ``table`` (the run's indirection table, comma-separated cores, one per bucket) or else
    a round-robin table over ``cores``. Raises LabInputError naming the parameter.
    """
    from engine.errors import RssLabError
    from engine.nic.rss import MAX_CORES, IndirectionTable
    from engine.packet.toeplitz import explain_hash, hash_input, parse_key

    def text(name: str, default: str | None = None) -> str | None:
        value = params.get(name, default)
        return value.strip() if isinstance(value, str) and value.strip() else default

    errors = []
    raw_hex = text("input_hex")
    data = None
    if raw_hex is not None:
        digits = raw_hex.lower().removeprefix("0x").replace(" ", "").replace(":", "")
        try:
            data = bytes.fromhex(digits)
        except ValueError:
            data = None
        if data is None or len(data) not in EXPLAIN_INPUT_BYTES:
            errors.append({"field": "input_hex", "line": None,
                           "message": f"expected the hex of an RSS input of "
                                      f"{', '.join(map(str, EXPLAIN_INPUT_BYTES))} bytes, got "
                                      f"{raw_hex[:80]!r}"})
    else:
        for name in ("src", "dst"):
            if text(name) is None:
                errors.append({"field": name, "line": None, "message": "expected an address"})
    sport, dport = text("sport"), text("dport")
    if raw_hex is None and (sport is None) != (dport is None):
        errors.append({"field": "dport" if dport is None else "sport", "line": None,
                       "message": "expected both ports or neither"})
    numbers = {}
    for name, default, low, high in (("hash_bits", 7, 1, 7), ("cores", 4, 1, MAX_CORES)):
        try:
            numbers[name] = optional_int({name: text(name)}, name, low, high) or default
        except LabInputError as error:
            errors += error.errors
    buckets = None
    if text("table") is not None:
        try:
            buckets = _explain_table(text("table"),
                                     numbers["cores"] if text("cores") is not None else None)
        except LabInputError as error:
            errors += error.errors
    if errors:
        raise LabInputError(errors)
    try:
        key = parse_key(text("key", "microsoft"))
        if data is None:
            data = hash_input(text("src"), text("dst"), sport, dport)
        if buckets is None:
            table = IndirectionTable.round_robin(numbers["cores"], numbers["hash_bits"])
        else:
            if text("cores") is None:
                numbers["cores"] = max(max(buckets) + 1, 1)
            table = IndirectionTable(numbers["cores"], numbers["hash_bits"], buckets)
        if len(data) > key.max_input_bytes:
            raise LabInputError.one("key", f"expected a key of at least {len(data) + 4} bytes "
                                           f"for a {len(data)}-byte input, got "
                                           f"{len(key.data)}")
    except RssLabError as error:
        raise LabInputError.from_engine(error) from None
    steps = explain_hash(key, data)
    value = steps[-1].running if steps else 0
    return {"hash": f"0x{value:08x}", "bucket": table.bucket_of(value),
            "core": table.core_of(value), "input_hex": data.hex(), "key_hex": key.hex,
            "hash_bits": numbers["hash_bits"], "cores": numbers["cores"],
            "table": list(table.buckets) if buckets is not None else "round-robin",
            "steps": [{"bit": s.bit, "window": f"0x{s.window:08x}",
                       "running": f"0x{s.running:08x}"} for s in steps]}


_TABLE_ENTRY = re.compile(r"-?[0-9]+")


def _explain_table(text: str, cores: int | None) -> tuple[int, ...]:
    """The cores of an explain ``table`` (``"0,1,0,1"``, one per bucket).

    LabInputError on ``table`` for an entry that is not a whole number, and on
    ``table[i]`` (as the engine names it) for one that is not a core 0..cores-1; with
    ``cores`` not given (it is then the largest entry + 1) for one that is not a core of
    the largest system the lab models (0..MAX_CORES-1).
    """
    from engine.nic.rss import MAX_CORES

    limit = cores if cores is not None else MAX_CORES
    buckets = []
    for index, part in enumerate(part.strip() for part in text.split(",")):
        if _TABLE_ENTRY.fullmatch(part) is None:
            raise LabInputError.one("table", f"expected cores separated by commas, one per "
                                             f"bucket, got {part[:40]!r} at position {index}")
        core = int(part) if len(part) <= 6 else limit  # a 5,000-digit "core" is just big
        if not 0 <= core < limit:
            raise LabInputError.one(f"table[{index}]", f"expected a core 0–{limit - 1} at "
                                                       f"position {index}, got {part[:40]}")
        buckets.append(core)
    return tuple(buckets)

