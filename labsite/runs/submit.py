"""Runs started from the lab page: check what a user sent, then queue the run.

The run API (``labsite.runs.views``) calls :func:`lab_run_submit` (a trace or batch run)
and :func:`lab_compare_submit` (a comparison); both check everything a user can get wrong
— the scenario (every problem with its line and key path), the uploaded capture, the run's
size against its mode's limit — *before* a run is queued, and raise
:class:`~labsite.lab.errors.LabInputError` with the JSON errors the view returns. A
scenario comes from the form (``builder``), typed text (``yaml``) or one of the stored
examples (``example``, read only: ``labsite.lab.selectors.example_scenario_get``).

Fair use (``labsite.runs.quota``): each submit first counts against the user's request
rate (429 past it, before any scenario is parsed); storing the run then checks the active
cap (429) and the storage budget (413) in ``services.run_start``.

The REST API (``labsite.api``) submits through the same functions: a stored scenario of
the user's own is ``stored`` (its text, and for an example its directory), and
:func:`batch_submit` queues many runs as one :class:`~labsite.runs.models.Batch`, which
counts as one request and one active run.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import transaction

from labsite.lab.builder import builder_field_of, scenario_yaml_from_builder, shown
from labsite.lab.errors import LabInputError, lab_field
from labsite.lab.inputs import check_texts, json_field, optional_int
from labsite.lab.models import Scenario
from labsite.lab.selectors import example_scenario_get
from labsite.runs import engine_bridge
from labsite.runs.errors import RunInputError
from labsite.runs.models import Batch, Run
from labsite.runs.quota import run_admit, submit_rate_take
from labsite.runs.services import SEED_MAX, RunCaptureInput, run_enqueue, run_start

SOURCES = ("builder", "yaml", "example")
#: The REST API's own source: a stored scenario it has checked the user may run.
STORED_SOURCE = "stored"
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


@dataclass(frozen=True)
class Submitted:
    """A queued run, the scenario text it runs and its number of flows."""

    run: Run
    scenario_yaml: str
    flows: int


def lab_run_submit(*, user, data: dict, upload=None, stored: Scenario | None = None
                   ) -> Submitted:
    """Queue a trace or batch run from the lab page's fields (see the module docstring).

    ``data``: ``source``, ``builder`` | ``scenario`` | ``example``, ``mode``, ``seed``
    (optional) and ``delay_ms`` (optional, trace only); ``upload`` an uploaded pcap file
    (a Django ``UploadedFile``) or None; ``stored`` the scenario run when ``source`` is
    ``stored`` (the caller has checked the user may run it). Raises LabInputError, and the
    fair-use errors (RunRateLimitError, RunActiveLimitError, RunStorageLimitError).
    """
    submit_rate_take(user)
    check_texts(data)
    mode = data.get("mode", "trace")
    if mode not in RUN_MODES:
        raise LabInputError.one("mode", f"expected one of {', '.join(RUN_MODES)}, "
                                        f"got {shown(mode)}")
    seed = optional_int(data, "seed", 0, SEED_MAX)
    delay_ms = optional_int(data, "delay_ms", 0, settings.RUN_DELAY_MAX_MS) or 0
    if delay_ms and mode != "trace":
        raise LabInputError.one("delay_ms", "slow motion is for trace runs only")
    prepared = scenario_prepare(data=data, upload=upload, mode=mode, stored=stored)
    _check_limits(prepared, mode=mode, delay_ms=delay_ms)
    parameters = {"source": prepared.source}
    if delay_ms:
        parameters["delay_ms"] = delay_ms
    return _start(prepared, user=user, mode=mode, seed=seed, parameters=parameters)


def lab_compare_submit(*, user, data: dict, upload=None) -> Submitted:
    """Queue a comparison (a run in mode ``compare``) of the scenario under ``vary``.

    ``data`` as for :func:`lab_run_submit` plus ``vary``: ``{"key": ["microsoft",
    "symmetric"], "policy": ["nat", "usip", "transparent"], …}`` (the settings and values
    ``engine.runs.compare`` accepts); ``upload`` a capture for a scenario that replays one, as
    for a run. Raises LabInputError and the fair-use errors, as :func:`lab_run_submit`.
    """
    from engine.errors import RssLabError

    submit_rate_take(user)
    check_texts(data)
    seed = optional_int(data, "seed", 0, SEED_MAX)
    vary_data = json_field(data, "vary")
    try:
        vary = engine_bridge.parse_vary(vary_data)
    except RssLabError as error:
        raise LabInputError.from_engine(error, lab_field(error.field)) from None
    prepared = scenario_prepare(data=data, upload=upload, mode="compare")
    cells = engine_bridge.compare_cells(vary)
    _check_limits(prepared, mode="compare", cells=cells)
    parameters = {"source": prepared.source, "vary": {k: list(v) for k, v in vary.items()}}
    return _start(prepared, user=user, mode="compare", seed=seed, parameters=parameters,
                  vary=vary)


def run_title(scenario, *, flows: int, vary: dict | None = None) -> str:
    """A runs-list title that says what differs between runs of one form: the scenario's
    name, its policies, key and flows (``nat-microsoft-4-cores · nat · key microsoft ·
    3 flows``); a comparison names what it varies instead. At most 200 characters (the
    column's size)."""
    policies = "/".join(dict.fromkeys(s.policy for s in scenario.services)) or "no service"
    key = str(scenario.system.nic.key)
    if len(key) > 20:          # a hex key: its first bytes tell keys apart
        key = key[:12] + "…"
    parts = [scenario.name, policies, f"key {key}", f"{flows:,} flow{'' if flows == 1 else 's'}"]
    if vary:
        parts[1:3] = ["compare " + " × ".join(f"{k} {','.join(v)}" for k, v in vary.items())]
    title = " · ".join(parts)
    return title if len(title) <= 200 else title[:199] + "…"


def _start(prepared: PreparedScenario, *, user, mode: str, seed: int | None,
           parameters: dict, vary: dict | None = None) -> Submitted:
    run = run_start(user=user, body=prepared.body, mode=mode,
                    seed=prepared.scenario.seed if seed is None else seed,
                    scenario=prepared.stored,
                    title=run_title(prepared.scenario, flows=prepared.flows, vary=vary),
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


def scenario_prepare(*, data: dict, upload=None, mode: str,
                     stored: Scenario | None = None) -> PreparedScenario:
    """Check the scenario a submit names and its capture for a run in ``mode``, with the
    engine's own checks (what the worker would refuse is refused here); raise
    LabInputError if bad.

    Only the engine's examples may read files on the server (their own capture); a
    scenario built or typed in the lab replays only a capture uploaded with it.
    """
    source = data.get("source")
    if source not in SOURCES and not (source == STORED_SOURCE and stored is not None):
        raise LabInputError.one("source", f"expected one of {', '.join(SOURCES)}, "
                                          f"got {shown(source)}")
    capture = pcap_validate(upload) if upload is not None else None
    # (``stored`` is the caller's for source ``stored``, else found below.)
    if source == "builder":
        body = scenario_yaml_from_builder(json_field(data, "builder"))
    elif source == "yaml":
        body = data.get("scenario")
        if not isinstance(body, str) or not body.strip():
            raise LabInputError.one("scenario", "expected the scenario's YAML text")
        if len(body.encode()) > settings.LAB_SCENARIO_MAX_BYTES:
            raise LabInputError.one("scenario", f"expected at most "
                                                f"{settings.LAB_SCENARIO_MAX_BYTES:,} bytes, "
                                                f"got {len(body.encode()):,}")
    elif source == STORED_SOURCE:
        body = stored.body
    else:
        stored = example_scenario_get(data.get("example"))
        body = stored.body
    # Only the engine's examples read files next to them (pcap-replay's capture).
    base_dir = engine_bridge.examples_dir() if stored is not None and stored.example else None
    scenario = _load(body, source=source, base_dir=base_dir)
    pcap_sources = [s for s in scenario.sources if s.pcap is not None]
    if base_dir is None:
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


@dataclass(frozen=True)
class BatchItem:
    """One run of a batch: ``data`` as for :func:`lab_run_submit` (``source``, the
    scenario, ``mode``, ``seed``), ``stored`` for source ``stored``, ``title`` its name in
    the batch's results (default: the scenario's)."""

    data: dict
    stored: Scenario | None = None
    title: str = ""


def batch_submit(*, user, items: list[BatchItem], title: str = "", parameters: dict,
                 max_flows: int) -> Batch:
    """Check every item as :func:`lab_run_submit` would, then store them as one Batch of
    queued runs and queue them once it commits.

    Counts as one request against the user's rate and one run against the active cap (the
    storage budget is checked once too). ``max_flows`` bounds the flows of all items
    together. Raises LabInputError naming the item (``items[3].scenario``), before anything
    is stored, and the fair-use errors.
    """
    submit_rate_take(user)
    prepared_items, total = [], 0
    for index, item in enumerate(items):
        try:
            check_texts(item.data)
            mode = item.data.get("mode", "batch")
            if mode not in RUN_MODES:
                raise LabInputError.one("mode", f"expected one of {', '.join(RUN_MODES)}, "
                                                f"got {shown(mode)}")
            seed = optional_int(item.data, "seed", 0, SEED_MAX)
            prepared = scenario_prepare(data=item.data, mode=mode, stored=item.stored)
            _check_limits(prepared, mode=mode)
        except LabInputError as error:
            raise LabInputError([{**e, "field": f"items[{index}].{e['field']}"}
                                 for e in error.errors]) from None
        total += prepared.flows
        prepared_items.append((item, prepared, mode, seed))
    if total > max_flows:
        raise LabInputError.one("items", f"expected at most {max_flows:,} flows in all the "
                                         f"items of one request, got {total:,}",
                                code="too_many_flows")
    with transaction.atomic():
        run_admit(user)
        batch = Batch.objects.create(owner=user, title=title,
                                     parameters={**parameters, "flows": total})
        runs = [run_start(user=user, body=prepared.body, mode=mode,
                          seed=prepared.scenario.seed if seed is None else seed,
                          scenario=prepared.stored, title=item.title or prepared.scenario.name,
                          parameters={"source": prepared.source, "batch_index": index},
                          batch=batch, admitted=True, queue=False)
                for index, (item, prepared, mode, seed) in enumerate(prepared_items)]
        # run_enqueue never raises: an unreachable broker fails the runs with the reason.
        transaction.on_commit(lambda: [run_enqueue(run.pk, task_id=run.celery_task_id)
                                       for run in runs])
    return batch


def _load(body: str, *, source: str, base_dir):
    from engine.errors import ScenarioError

    try:
        return engine_bridge.load(body, base_dir=base_dir)
    except ScenarioError as error:
        if source == "builder":
            raise LabInputError([{"code": "scenario", "field": builder_field_of(p.path),
                                  "line": None, "message": p.message}
                                 for p in error.problems]) from None
        raise LabInputError([{"code": "scenario", "field": p.path or "scenario",
                              "line": p.line, "message": p.message}
                             for p in error.problems]) from None


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
