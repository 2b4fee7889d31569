"""The one place the web platform calls the engine (``engine/``).

The engine is imported inside the functions, never at Django import time: the web process
pays for NumPy and the engine (≈ 0.3 s) on the first request that needs them, and Scapy
only when a capture is read.

A worker runs a job like this::

    job = EngineJob(body=run.scenario_body, mode="trace", seed=7)
    outcome = run_job(job, on_event=send, on_progress=progress)
    outcome.report, outcome.summary      # the engine's Report.as_dict() (rows capped) …

- ``trace`` — ``engine.runs.run.verify_scenario(mode="trace")``; every event's ``as_dict()``
  (``{"kind", "t_us", "seq", "flow", …}``, ``seq`` 0, 1, 2 … without gaps) is handed to
  ``on_event`` *while the engine runs* (from inside the engine's callback, so memory stays
  bounded and a slow consumer slows the engine instead of queueing events).
- ``batch`` — the vectorised path; no events, progress per stage.
- ``compare`` — ``engine.runs.compare.compare_scenario`` over ``vary``; the report is the
  Comparison's ``as_dict()``. A ``transparent`` cell of a scenario whose clients address a
  VIP in front of other servers is run with the servers at the VIP (see
  :func:`transparent_variant`): a transparent service rewrites nothing, so otherwise no
  server would answer those clients and the cell would measure nothing.

Reports the lab adds to: a trace or batch report's ``ports`` gains the port-table figures
of :func:`port_figures` (taken of the fitting ports, taken of all, refused per core); any
stored report renders as the CLI's offline HTML page with :func:`report_html`.

Limits (settings, all documented in the README's Limits section): a trace run takes at
most ``RUN_TRACE_MAX_FLOWS`` flows and produces at most ``RUN_TRACE_MAX_EVENTS`` events, a
batch run ``RUN_BATCH_MAX_FLOWS`` flows, a compare run ``RUN_COMPARE_MAX_FLOW_CELLS`` flows
× cells; a report carries the first ``RUN_REPORT_ROWS`` per-flow rows (batch runs of more
than ``RUN_ROWS_MAX_FLOWS`` flows carry none: building millions of rows costs more than
the run). ``delay_ms`` (0–``RUN_DELAY_MAX_MS``) slows a trace run down by that much per
flow, for slow-motion watching and for tests that must catch a run mid-way.

Bad input raises ``RunInputError`` (a limit) or the engine's ``RssLabError``
(``ScenarioError`` with ``.problems``, ``TrafficError``, ``PcapError``, ``CompareError``…);
the message is shown to the user as is.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.conf import settings

from labsite.runs.errors import RunInputError

MODES = ("trace", "batch", "compare")


@dataclass(frozen=True)
class EngineJob:
    """What a worker runs: the scenario text, how, and with what.

    ``base_dir`` resolves relative pcap paths (only the engine's own examples have one);
    ``pcap`` is an uploaded capture's bytes, replacing every pcap source's file; ``vary``
    the compare settings (``{"key": ["microsoft", "symmetric"], …}``).
    """

    body: str
    mode: str
    seed: int | None = None
    base_dir: Path | None = None
    pcap: bytes | None = None
    vary: dict[str, list[str]] = field(default_factory=dict)
    delay_ms: int = 0
    source: str = "scenario"


@dataclass(frozen=True)
class EngineOutcome:
    """``report``: the JSON report; ``summary``: its headline figures for watchers."""

    report: dict[str, Any]
    summary: dict[str, Any]


def examples_dir() -> Path:
    from engine.examples import EXAMPLES_DIR

    return EXAMPLES_DIR


def load(body: str, *, seed: int | None = None, base_dir: Path | None = None,
         source: str = "scenario"):
    """The engine's Scenario for ``body`` (with ``seed`` replacing the file's seed).

    Raises ScenarioError listing every problem with its line and key path.
    """
    from engine.scenarios.scenario import load_scenario

    scenario = load_scenario(body, source=source, base_dir=base_dir)
    if seed is not None and seed != scenario.seed:
        scenario = scenario.model_copy(update={"seed": seed})
    return scenario


def flow_count(scenario, *, pcap: bytes | None = None, mode: str = "batch") -> int:
    """How many flows a run of ``scenario`` in ``mode`` carries, checked as the worker
    will check them (the engine's ``count_flows``: an IPv6 capture under a nat service is
    refused here, not on the worker), without generating any.

    Raises PcapError and TrafficError, also for a pcap source with no uploaded file, or
    a path in a scenario that is not one of the engine's examples: the lab reads no other
    files on the server.
    """
    from engine.errors import TrafficError
    from engine.scenarios.traffic import count_flows

    engine_mode = "trace" if mode == "trace" else "batch"  # compare runs the batch path
    if pcap is not None:
        return count_flows(scenario, pcap=pcap, mode=engine_mode)
    for source in scenario.sources:
        if source.pcap is None:
            continue
        path = scenario.pcap_path(source.pcap)
        if path is None:
            raise TrafficError("pcap", "a capture file uploaded with the run", None)
        if scenario.base_dir is None:  # only the engine's examples read their own file
            raise TrafficError("traffic.pcap.path", "no path: upload the capture with "
                               "the run (the lab reads no files on the server)",
                               source.pcap.path)
        if not Path(path).is_file():
            raise TrafficError("traffic.pcap.path", "a capture next to the scenario",
                               source.pcap.path)
    return count_flows(scenario, mode=engine_mode)


def check_limits(*, mode: str, flows: int, cells: int = 1, delay_ms: int = 0) -> None:
    """RunInputError naming the limit when a run of ``flows`` flows is too big for ``mode``."""
    if mode not in MODES:
        raise RunInputError(f"mode: expected one of {', '.join(MODES)}, got {mode!r}")
    if mode == "trace" and flows > settings.RUN_TRACE_MAX_FLOWS:
        raise RunInputError(
            f"traffic: trace mode runs at most {settings.RUN_TRACE_MAX_FLOWS:,} flows, "
            f"this scenario has {flows:,} (use batch mode for large runs)")
    if mode == "batch" and flows > settings.RUN_BATCH_MAX_FLOWS:
        raise RunInputError(f"traffic: batch mode runs at most "
                            f"{settings.RUN_BATCH_MAX_FLOWS:,} flows, this scenario has "
                            f"{flows:,}")
    if mode == "compare" and flows * cells > settings.RUN_COMPARE_MAX_FLOW_CELLS:
        raise RunInputError(
            f"vary: a comparison runs at most {settings.RUN_COMPARE_MAX_FLOW_CELLS:,} flows "
            f"× cells, this one asks for {flows:,} flows × {cells} cells")
    if isinstance(delay_ms, bool) or not isinstance(delay_ms, int) or not (
            0 <= delay_ms <= settings.RUN_DELAY_MAX_MS):
        raise RunInputError(f"delay_ms: expected an integer 0–{settings.RUN_DELAY_MAX_MS}, "
                            f"got {delay_ms!r}")
    if delay_ms and delay_ms * flows > settings.RUN_DELAY_MAX_TOTAL_S * 1000:
        raise RunInputError(f"delay_ms: a slowed-down run may last at most "
                            f"{settings.RUN_DELAY_MAX_TOTAL_S:g} s, {flows:,} flows × "
                            f"{delay_ms} ms is {flows * delay_ms / 1000:g} s")


def compare_cells(vary: dict[str, list[str]]) -> int:
    """The number of cells a comparison over ``vary`` has (the engine's ``count_cells``)."""
    from engine.runs.compare import count_cells

    return count_cells(vary)


def parse_vary(vary: Any) -> dict[str, tuple[str, ...]]:
    """``{"key": ["microsoft", "symmetric"], …}`` checked by the engine (CompareError),
    including its limit of ``MAX_CELLS`` cells, so a comparison too big to run is refused
    before it is queued."""
    from engine.runs.compare import parse_vary_mapping

    return parse_vary_mapping(vary)


def run_job(job: EngineJob, *, on_event: Callable[[dict], None],
            on_progress: Callable[[float], None]) -> EngineOutcome:
    """Run ``job`` on the engine; see the module docstring."""
    scenario = load(job.body, seed=job.seed, base_dir=job.base_dir, source=job.source)
    flows = flow_count(scenario, pcap=job.pcap, mode=job.mode)
    vary = parse_vary(job.vary) if job.mode == "compare" else {}
    check_limits(mode=job.mode, flows=flows, cells=compare_cells(vary) if vary else 1,
                 delay_ms=job.delay_ms if job.mode == "trace" else 0)
    with tempfile.TemporaryDirectory(prefix="rsslab-run-") as scratch:
        pcap_path = None
        if job.pcap is not None:
            pcap_path = Path(scratch) / "upload.pcap"
            pcap_path.write_bytes(job.pcap)
        if job.mode == "compare":
            return _compare(scenario, vary, pcap_path, on_progress)
        return _verify(scenario, job, flows, pcap_path, on_event, on_progress)


def _verify(scenario, job: EngineJob, flows: int, pcap_path: Path | None,
            on_event: Callable[[dict], None], on_progress: Callable[[float], None]
            ) -> EngineOutcome:
    from engine.appliance.events import Verdict
    from engine.runs.run import verify_scenario

    max_events = settings.RUN_TRACE_MAX_EVENTS
    delay = job.delay_ms / 1000

    def relay(event) -> None:
        if event.seq >= max_events:
            raise RunInputError(f"trace: a trace run produces at most {max_events:,} events, "
                                f"this one produced more (use batch mode)")
        on_event(event.as_dict())
        if delay and isinstance(event, Verdict):
            time.sleep(delay)

    rows = job.mode == "trace" or flows <= settings.RUN_ROWS_MAX_FLOWS
    report = verify_scenario(
        scenario, pcap=pcap_path, mode=job.mode, rows=rows,
        on_progress=lambda fraction, stage: on_progress(fraction),
        on_event=relay if job.mode == "trace" else None, source=job.source)
    kept = report.rows[:settings.RUN_REPORT_ROWS] if report.rows is not None else []
    return _outcome(scenario, report, [row.as_dict() for row in kept], job.mode)


def _outcome(scenario, report, rows: list[dict], mode: str) -> EngineOutcome:
    """The stored report of an engine ``Report`` with the ``rows`` the lab keeps."""
    data = report.as_dict(rows=False)
    data["rows"] = rows
    data["rows_total"] = report.summary.flows
    data["rows_truncated"] = len(rows) < report.summary.flows
    low, high = scenario.build_system_config().port_range
    data["ports"].update(port_figures(data, range_size=high - low + 1))
    summary = {**data["summary"], "passed": data["passed"], "mode": mode}
    return EngineOutcome(report=data, summary=summary)


# -- large batch runs split by request core (labsite.runs.sharding) --------------------------

def shard_count(job: EngineJob) -> int:
    """How many shards a run of ``job`` is split into (``engine.runs.shards``), 0 for
    none: a batch run of at least RUN_SHARD_MIN_FLOWS flows, without a capture, whose
    state never crosses cores (no fragments), within the batch limit. Anything this
    cannot judge (bad input, over a limit) is 0: the unsplit run then reports it."""
    if job.mode != "batch" or job.pcap is not None:
        return 0
    from engine.errors import RssLabError
    from engine.runs.shards import scenario_split_refusal
    from engine.runs.shards import shard_count as engine_count

    try:
        scenario = load(job.body, seed=job.seed, base_dir=job.base_dir, source=job.source)
        flows = flow_count(scenario, mode="batch")
        check_limits(mode="batch", flows=flows)
        if flows < settings.RUN_SHARD_MIN_FLOWS or scenario_split_refusal(scenario):
            return 0
        config = scenario.build_system_config()
        config.check()
    except (RssLabError, RunInputError):
        return 0
    count = engine_count(config, settings.RUN_SHARDS)
    return count if count > 1 else 0


def run_shard_job(job: EngineJob, index: int, count: int) -> tuple[bytes, int]:
    """Shard ``index`` of ``count`` of a batch run of ``job``: its compact figures (the
    engine's ``ShardFigures.to_bytes``) and its number of flows. It keeps the rows the
    report keeps (the first RUN_REPORT_ROWS flows, none past RUN_ROWS_MAX_FLOWS) that are
    its own."""
    from engine.runs.shards import scenario_shard

    scenario = load(job.body, seed=job.seed, base_dir=job.base_dir, source=job.source)
    flows = flow_count(scenario, mode="batch")
    keep = settings.RUN_REPORT_ROWS if flows <= settings.RUN_ROWS_MAX_FLOWS else 0
    figures = scenario_shard(scenario, index, count, keep_rows=keep)
    return figures.to_bytes(), int(sum(figures.verdicts))


def merge_shard_jobs(job: EngineJob, parts: list[bytes]) -> EngineOutcome:
    """The outcome of the unsplit batch run of ``job`` (the same report and summary, see
    ``engine.runs.shards``) from every shard's figures."""
    from engine.runs.shards import ShardFigures, merge_scenario

    scenario = load(job.body, seed=job.seed, base_dir=job.base_dir, source=job.source)
    report, rows = merge_scenario(scenario, [ShardFigures.from_bytes(p) for p in parts],
                                  source=job.source)
    return _outcome(scenario, report, rows[:settings.RUN_REPORT_ROWS], "batch")


@dataclass(frozen=True)
class ExportedPcap:
    """A run's packets as a classic pcap: the bytes, packets and flows written."""

    data: bytes
    packets: int
    flows: int
    flows_total: int


def export_job_pcap(job: EngineJob, *, limit: int) -> ExportedPcap:
    """The packets of ``job``'s first ``limit`` flows as a pcap (``engine.runs.run.export_pcap``:
    client and server sides, raw IP), from the same scenario, seed and uploaded capture
    the run used, so the flows are the run's flows.

    Raises the engine's RssLabError for a scenario or capture it cannot run.
    """
    import io

    from engine.runs.run import export_pcap

    scenario = load(job.body, seed=job.seed, base_dir=job.base_dir, source=job.source)
    total = flow_count(scenario, pcap=job.pcap, mode="trace")
    buffer = io.BytesIO()
    with tempfile.TemporaryDirectory(prefix="rsslab-export-") as scratch:
        pcap_path = None
        if job.pcap is not None:
            pcap_path = Path(scratch) / "upload.pcap"
            pcap_path.write_bytes(job.pcap)
        result = export_pcap(scenario, buffer, pcap=pcap_path, limit=limit)
    return ExportedPcap(data=buffer.getvalue(), packets=result.packets, flows=result.flows,
                        flows_total=total)


def port_figures(report: dict[str, Any], *, range_size: int) -> dict[str, list]:
    """Per core, what the port tables held, as a student should read it.

    The engine's ``occupancy_peak[c]`` is the most taken at once / every port of the
    range (summed over the core's tables; ``occupancy`` is the same at the run's end,
    0 once every session has ended). But only the ports whose response hashes back to
    core c *fit* it: about ``range / cores`` per table for a full-rank key. So a core can be out of
    fitting ports at 25 % "occupancy". Here:

    - ``of_fitting[c]``: taken / fitting ports (``occupancy × range / fitting per
      table``; every table of a core has the same range and, on average, the same
      fitting share). None when nothing fits (no allocating policy, the sort transform).
      An estimate from the average fitting share: capped at 1.
    - ``of_all[c]``: the engine's figure, taken / all ports in range.
    - ``refused[c]``: requests steered to core c that were refused for want of a
      fitting free port: requests that got no port and no response.
    - ``ran_out[c]``: core c refused a request for want of a fitting port.
    """
    ports = report.get("ports") or {}
    # the most ports held at once (a report from before the peak figure: its one figure)
    occupancy = list(ports.get("occupancy_peak") or ports.get("occupancy") or [])
    fitting = list(ports.get("fitting_per_table") or [])
    allocated = list(ports.get("allocated") or [])
    summary = report.get("summary") or {}
    per_core = summary.get("per_core") or []
    no_response = list((report.get("matrix") or {}).get("no_response") or [])
    cores = len(per_core)
    of_fitting: list[float | None] = []
    refused: list[int] = []
    for core in range(cores):
        fit = fitting[core] if core < len(fitting) else 0
        occ = occupancy[core] if core < len(occupancy) else 0.0
        of_fitting.append(min(1.0, round(occ * range_size / fit, 4)) if fit else None)
        lost = no_response[core] if core < len(no_response) else 0
        unported = per_core[core].get("requests", 0) - (
            allocated[core] if core < len(allocated) else 0)
        refused.append(max(0, min(lost, unported)) if fit and summary.get("refused") else 0)
    return {"of_fitting": of_fitting, "of_all": occupancy, "refused": refused,
            "ran_out": [n > 0 for n in refused], "range_size": range_size}


def transparent_variant(scenario):
    """``scenario`` with every service's servers at its own VIP, or None when that changes
    nothing. A transparent middlebox rewrites nothing: clients reach a server only by
    addressing it, so for the transparent cells of a comparison the VIP *is* the server
    (as in the lab's ``transparent`` preset). The flows stay the same (they address the
    VIP either way), so every cell still sees the same traffic."""
    services = []
    changed = False
    for service in scenario.services:
        vip = f"[{service.vip}]" if ":" in str(service.vip) else str(service.vip)
        at_vip = [f"{vip}:{service.vport}"]
        if list(service.servers) != at_vip:
            changed = True
            service = service.model_copy(update={"servers": at_vip})
        services.append(service)
    return scenario.model_copy(update={"services": services}) if changed else None


def _compare(scenario, vary, pcap_path: Path | None, on_progress: Callable[[float], None]
             ) -> EngineOutcome:
    from engine.runs.compare import compare_scenario

    policies = vary.get("policy", ())
    variant = transparent_variant(scenario) if "transparent" in policies else None
    others = tuple(p for p in policies if p != "transparent")
    if variant is None or not others:
        comparison = compare_scenario(variant or scenario, vary, pcap=pcap_path,
                                      on_progress=lambda fraction, stage: on_progress(fraction))
        data = comparison.as_dict()
    else:
        # Two passes over the same flows: the other policies as the scenario says, then
        # transparent with the servers at the VIP; the cells merged back into the
        # cross-product order one pass would give.
        first = compare_scenario(scenario, {**vary, "policy": others}, pcap=pcap_path,
                                 on_progress=lambda f, stage: on_progress(f / 2))
        second = compare_scenario(variant, {**vary, "policy": ("transparent",)},
                                  pcap=pcap_path, schemes=(),
                                  on_progress=lambda f, stage: on_progress(0.5 + f / 2))
        data = first.as_dict()
        data["vary"] = {k: list(v) for k, v in vary.items()}
        rss = [c for c in data["cells"] if c["scheme"] == "rss"]
        rss += [c for c in second.as_dict()["cells"] if c["scheme"] == "rss"]
        rank = {name: {value: i for i, value in enumerate(vary[name])} for name in vary}
        names = [n for n in ("key", "policy", "strategy", "transform", "handoff") if n in vary]
        rss.sort(key=lambda c: [rank[n][c["settings"][n]] for n in names])
        data["cells"] = rss + [c for c in data["cells"] if c["scheme"] != "rss"]
    if variant is not None:
        note = ("transparent rewrites nothing, so its cells ran with each service's "
                "servers at the VIP (clients reach a server only by addressing it)")
        data["notes"] = [note]
        for cell in data["cells"]:
            if cell.get("settings", {}).get("policy") == "transparent" and cell["scheme"] == "rss":
                cell["note"] = "servers at the VIP"
    summary = {"mode": "compare", "flows": data["flows"], "cores": data["cores"],
               "cells": len(data["cells"])}
    return EngineOutcome(report=data, summary=summary)


#: what a stored run report must hold for ``report_html`` (a comparison: ``cells``)
_REPORT_KEYS = ("summary", "matrix", "buckets")


def has_report(report: Any) -> bool:
    """Whether ``report`` (a run's stored JSON) is a whole report ``report_html`` can draw:
    a run's or a comparison's, not a failed or older run's partial one."""
    return isinstance(report, dict) and ("cells" in report
                                         or all(key in report for key in _REPORT_KEYS))


def report_html(report: dict[str, Any]) -> str:
    """The CLI's self-contained HTML page (``verify --html``, ``compare --html``) for a
    stored report (a run's or a comparison's JSON), rebuilt from the JSON: nothing is
    run again. The per-flow table has the rows the lab kept (``RUN_REPORT_ROWS``)."""
    from types import SimpleNamespace

    from engine.runs.report import render_compare_html, render_report_html

    if "cells" in report:
        from engine.runs.compare import Cell, Comparison

        fields = set(Cell.__dataclass_fields__)
        cells = []
        for cell in report["cells"]:
            values = {k: v for k, v in cell.items() if k in fields}
            values["varied"] = tuple(values.get("varied") or ())
            cells.append(Cell(**values))
        return render_compare_html(Comparison(
            name=str(report.get("scenario", "")), flows=report.get("flows", 0),
            cores=report.get("cores", 0),
            vary={k: tuple(v) for k, v in (report.get("vary") or {}).items()},
            cells=cells, fixed=report.get("fixed") or {}))
    from engine.appliance.verdicts import Summary
    from engine.runs.run import Report
    from engine.scenarios.scenario.checks import CheckResult

    summary_fields = set(Summary.__dataclass_fields__)
    # reports stored before the verdict vocabulary and forwarding hops lack two figures
    stored = {"refused": report["summary"].get("allocation_failures", 0), "handoff_hops": 0,
              **report["summary"]}
    summary = Summary(**{k: v for k, v in stored.items() if k in summary_fields})
    ports = report.get("ports") or {}
    scenario = report.get("scenario") or {}
    rows = [SimpleNamespace(**row) for row in report.get("rows") or []]
    return render_report_html(Report(
        name=scenario.get("name", ""), source=scenario.get("source", ""),
        mode=report.get("mode", ""), summary=summary,
        checks=[CheckResult(**c) for c in report.get("checks") or []],
        matrix=report["matrix"]["request_core_by_response_core"],
        no_response=report["matrix"]["no_response"],
        buckets=report["buckets"]["requests"], bucket_cores=report["buckets"]["cores"],
        ports_allocated=ports.get("allocated") or [],
        fitting_ports=ports.get("fitting_per_table") or [],
        system=report.get("system") or {}, traffic=report.get("traffic") or {},
        rows=rows or None, description=scenario.get("description", "")))
