"""Write-side logic of the lab: runs started from the lab page, demo users, examples.

The lab page's API calls :func:`lab_run_submit` (a trace or batch run) and
:func:`lab_compare_submit` (a comparison); both check everything a user can get wrong —
the scenario (every problem with its line and key path), the uploaded capture, the run's
size against its mode's limit — *before* a run is queued, and raise
:class:`~labsite.lab.errors.LabInputError` with the JSON errors the view returns.

``labsite.launcher`` calls :func:`demo_data_ensure` on every start; it is idempotent and
returns the credentials of the users it *created* (so they are printed exactly once), and
loads the engine's examples (``engine.examples``) as Scenario rows marked with their
example name, so relative paths in them (``pcap-replay``'s capture) resolve against the
examples directory when they run.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.db import transaction
from django.utils.text import slugify

from labsite.lab.builder import (
    builder_field_of,
    scenario_yaml_from_builder,
    shown,
    text_problem,
)
from labsite.lab.errors import LabInputError, lab_field
from labsite.lab.models import INSTRUCTOR_GROUP, STUDENT_GROUP, Scenario
from labsite.runs import engine_bridge
from labsite.runs.errors import RunInputError
from labsite.runs.models import Run
from labsite.runs.services import SEED_MAX, RunCaptureInput, run_pcap_export, run_start


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


def demo_data_ensure() -> list[NewCredentials]:
    """Everything a fresh lab needs: groups, demo users, example scenarios."""
    credentials = demo_users_ensure()
    scenarios_load(example_scenarios())
    return credentials


# ---------------------------------------------------------------------------- lab runs

SOURCES = ("builder", "yaml", "example")
RUN_MODES = ("trace", "batch")


@dataclass(frozen=True)
class PreparedScenario:
    """A scenario checked and ready to queue: its text, engine object, flows, capture."""

    body: str
    scenario: Any  # engine.scenarios.scenario.Scenario
    stored: Scenario | None
    flows: int
    capture: RunCaptureInput | None
    source: str


def lab_run_submit(*, user, data: dict, upload=None) -> Submitted:
    """Queue a trace or batch run from the lab page's fields (see the module docstring).

    ``data``: ``source``, ``builder`` | ``scenario`` | ``example``, ``mode``, ``seed``
    (optional) and ``delay_ms`` (optional, trace only); ``upload`` an uploaded pcap file
    (a Django ``UploadedFile``) or None. Raises LabInputError.
    """
    _check_texts(data)
    mode = data.get("mode", "trace")
    if mode not in RUN_MODES:
        raise LabInputError.one("mode", f"expected one of {', '.join(RUN_MODES)}, "
                                        f"got {shown(mode)}")
    seed = _optional_int(data, "seed", 0, SEED_MAX)
    delay_ms = _optional_int(data, "delay_ms", 0, settings.RUN_DELAY_MAX_MS) or 0
    if delay_ms and mode != "trace":
        raise LabInputError.one("delay_ms", "slow motion is for trace runs only")
    prepared = scenario_prepare(data=data, upload=upload, mode=mode)
    _check_limits(prepared, mode=mode, delay_ms=delay_ms)
    parameters = {"source": prepared.source}
    if delay_ms:
        parameters["delay_ms"] = delay_ms
    return _start(prepared, user=user, mode=mode, seed=seed, parameters=parameters)


def lab_compare_submit(*, user, data: dict, upload=None) -> Submitted:
    """Queue a comparison (a run in mode ``compare``) of the scenario under ``vary``.

    ``data`` as for :func:`lab_run_submit` plus ``vary``: ``{"key": ["microsoft",
    "symmetric"], "policy": ["nat", "usip", "transparent"], …}`` (the settings and values
    ``engine.runs.compare`` accepts). Raises LabInputError.
    """
    from engine.errors import RssLabError

    _check_texts(data)
    seed = _optional_int(data, "seed", 0, SEED_MAX)
    vary_data = _json_field(data, "vary")
    try:
        vary = engine_bridge.parse_vary(vary_data)
    except RssLabError as error:
        raise LabInputError.from_engine(error, lab_field(error.field)) from None
    prepared = scenario_prepare(data=data, upload=upload, mode="compare")
    cells = engine_bridge.compare_cells(vary)
    _check_limits(prepared, mode="compare", cells=cells)
    parameters = {"source": prepared.source, "vary": {k: list(v) for k, v in vary.items()}}
    return _start(prepared, user=user, mode="compare", seed=seed, parameters=parameters)


@dataclass(frozen=True)
class Submitted:
    """A queued run, the scenario text it runs and its number of flows."""

    run: Run
    scenario_yaml: str
    flows: int


def _start(prepared: PreparedScenario, *, user, mode: str, seed: int | None,
           parameters: dict) -> Submitted:
    run = run_start(user=user, body=prepared.body, mode=mode,
                    seed=prepared.scenario.seed if seed is None else seed,
                    scenario=prepared.stored, title=prepared.scenario.name,
                    parameters=parameters, capture=prepared.capture)
    return Submitted(run=run, scenario_yaml=prepared.body, flows=prepared.flows)


def _check_limits(prepared: PreparedScenario, *, mode: str, cells: int = 1,
                  delay_ms: int = 0) -> None:
    try:
        engine_bridge.check_limits(mode=mode, flows=prepared.flows, cells=cells,
                                   delay_ms=delay_ms)
    except RunInputError as error:
        field, _, message = str(error).partition(": ")
        raise LabInputError.one(field, message) from None


def _optional_int(data: dict, name: str, low: int, high: int) -> int | None:
    value = data.get(name)
    if value is None or value == "":
        return None
    if isinstance(value, str):
        try:
            value = int(value.strip())
        except ValueError:
            raise LabInputError.one(name, f"expected an integer {low}–{high}, got "
                                          f"{shown(data.get(name))}") from None
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise LabInputError.one(name, f"expected an integer {low}–{high}, got {shown(value)}")
    return value


def json_parse(text: str | bytes, field: str) -> Any:
    """The value of JSON ``text``; LabInputError on ``field`` when it is not JSON, or is
    nested deeper than the engine's ``MAX_NESTING`` (checked before the parser recurses:
    ``[[[[…`` a hundred thousand deep is refused in one linear pass)."""
    from engine.errors import DocumentError
    from engine.safeparse import load_json

    try:
        return load_json(text, field=field)
    except DocumentError as error:
        raise LabInputError.one(field, error.problem, line=error.line) from None


def _json_field(data: dict, name: str) -> Any:
    """A field that is JSON in a multipart form and an object in a JSON body."""
    value = data.get(name)
    if isinstance(value, str):
        return json_parse(value, name)
    return value


def _check_texts(data: dict) -> None:
    """LabInputError naming the first text field (outside ``builder``, which checks its
    own) that is not valid Unicode: a JSON ``\\ud800`` escape gives Python a lone
    surrogate that UTF-8, the database and the engine all refuse."""
    for name, value in data.items():
        if name == "builder" or not isinstance(value, str):
            continue
        problem = text_problem(value, lines=name == "scenario")
        if problem is not None:
            line, message = problem
            raise LabInputError.one(name, message, line=line)


def scenario_prepare(*, data: dict, upload=None, mode: str) -> PreparedScenario:
    """Check the scenario a submit names and its capture for a run in ``mode``, with the
    engine's own checks (what the worker would refuse is refused here); raise
    LabInputError if bad.

    Only the engine's examples may read files on the server (their own capture); a
    scenario built or typed in the lab replays only a capture uploaded with it.
    """
    source = data.get("source")
    if source not in SOURCES:
        raise LabInputError.one("source", f"expected one of {', '.join(SOURCES)}, "
                                          f"got {shown(source)}")
    capture = pcap_validate(upload) if upload is not None else None
    stored = None
    if source == "builder":
        body = scenario_yaml_from_builder(_json_field(data, "builder"))
    elif source == "yaml":
        body = data.get("scenario")
        if not isinstance(body, str) or not body.strip():
            raise LabInputError.one("scenario", "expected the scenario's YAML text")
        if len(body.encode()) > settings.LAB_SCENARIO_MAX_BYTES:
            raise LabInputError.one("scenario", f"expected at most "
                                                f"{settings.LAB_SCENARIO_MAX_BYTES:,} bytes, "
                                                f"got {len(body.encode()):,}")
    else:
        stored = example_scenario_get(data.get("example"))
        body = stored.body
    base_dir = engine_bridge.examples_dir() if stored is not None else None
    scenario = _load(body, source=source, base_dir=base_dir)
    pcap_sources = [s for s in scenario.sources if s.pcap is not None]
    if stored is None:
        for index, s in enumerate(pcap_sources):
            if s.pcap.path is not None:
                raise LabInputError.one(
                    "pcap" if source == "builder" else "traffic.pcap.path",
                    f"the lab reads no files on the server ({s.pcap.path!r}): leave the path "
                    f"out and upload the capture with the run (source {index + 1})")
    if capture is not None and not pcap_sources:
        raise LabInputError.one("pcap", "this scenario has no pcap traffic source to replay "
                                        "the capture (choose traffic: pcap)")
    if capture is None and any(s.pcap.path is None for s in pcap_sources):
        raise LabInputError.one("pcap", "this scenario replays a capture: upload a pcap or "
                                        "pcapng file with the run")
    from engine.errors import RssLabError

    try:
        flows = engine_bridge.flow_count(scenario, pcap=capture.data if capture else None,
                                         mode=mode)
    except RssLabError as error:
        raise LabInputError.from_engine(error, "pcap") from None
    return PreparedScenario(body=body, scenario=scenario, stored=stored, flows=flows,
                            capture=capture, source=source)


def _load(body: str, *, source: str, base_dir):
    from engine.errors import ScenarioError

    try:
        return engine_bridge.load(body, base_dir=base_dir)
    except ScenarioError as error:
        if source == "builder":
            raise LabInputError([{"field": builder_field_of(p.path), "line": None,
                                  "message": p.message} for p in error.problems]) from None
        raise LabInputError([{"field": p.path or "scenario", "line": p.line,
                              "message": p.message} for p in error.problems]) from None


def example_scenario_get(name: Any) -> Scenario:
    """The stored scenario of engine example ``name`` (loaded on first use)."""
    if not isinstance(name, str) or not name:
        raise LabInputError.one("example", "expected an example's name")
    stored = Scenario.objects.filter(example=name).order_by("pk").first()
    if stored is None:
        known = {e["example"]: e for e in example_scenarios()}
        if name not in known:
            raise LabInputError.one("example", f"expected one of {', '.join(sorted(known))}, "
                                               f"got {name!r}")
        scenarios_load([known[name]])
        stored = Scenario.objects.filter(example=name).order_by("pk").first()
    return stored


def pcap_validate(upload) -> RunCaptureInput:
    """Read an uploaded capture with the engine before anything is queued.

    Refuses (LabInputError on field ``pcap``) a file over LAB_PCAP_MAX_BYTES, one that is
    not pcap/pcapng, and one without a single IP packet the lab can use.
    """
    from engine.errors import PcapError
    from engine.scenarios.pcap import flows_from_packets, read_pcap

    limit = settings.LAB_PCAP_MAX_BYTES
    if upload.size > limit:
        raise LabInputError.one("pcap", f"expected a capture of at most {limit:,} bytes, "
                                        f"got {upload.size:,}")
    data = upload.read(limit + 1)
    try:
        result = read_pcap(data, max_bytes=limit)
    except PcapError as error:
        raise LabInputError.from_engine(error, "pcap") from None
    if not result.packets:
        skipped = ", ".join(f"{count} {reason}" for reason, count in result.skipped.items())
        raise LabInputError.one("pcap", f"expected IPv4/IPv6 TCP or UDP packets, found none "
                                        f"the lab can use ({skipped or 'empty capture'})")
    if not flows_from_packets(result.packets).flows:
        raise LabInputError.one("pcap", "expected at least one flow, found none in the "
                                        "capture's packets")
    return RunCaptureInput(name=getattr(upload, "name", "") or "", data=data,
                           packets=len(result.packets))


#: Hash input lengths (bytes) a NIC hashes: IPv4 and IPv6, addresses only or with ports.
EXPLAIN_INPUT_BYTES = (8, 12, 32, 36)


def lab_builder_yaml(data: dict) -> str:
    """The scenario file the form's ``builder`` fields describe, for the YAML tab (so a
    student sees, and can edit, the file a run would take). LabInputError for fields of
    the wrong shape; the values are checked when the text is run."""
    _check_texts(data)
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
            numbers[name] = _optional_int({name: text(name)}, name, low, high) or default
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


def lab_run_pcap(run: Run) -> tuple[bytes, str]:
    """The pcap of ``run``'s packets and a file name for it; LabInputError when it cannot
    be made (a comparison, a scenario or capture the engine refuses)."""
    from engine.errors import RssLabError

    try:
        exported = run_pcap_export(run)
    except RunInputError as error:
        field, _, message = str(error).partition(": ")
        raise LabInputError.one(field, message or str(error)) from None
    except RssLabError as error:
        raise LabInputError.from_engine(error, lab_field(error.field or "scenario")) from None
    name = slugify(run.title) or "run"
    return exported.data, f"rsslab-run-{run.pk}-{name}.pcap"


def examples_ensure() -> None:
    """The engine's examples are stored as scenarios (the launcher loads them; a database
    set up another way gets them on the lab page's first view)."""
    if not Scenario.objects.exclude(example="").exists():
        scenarios_load(example_scenarios())
