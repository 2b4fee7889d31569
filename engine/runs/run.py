"""Running a scenario: the one service the CLI, the web lab, Celery and the REST API call.

``verify_scenario`` builds the system and the traffic a scenario describes, runs
them down the batch path (vectorised, the default) or the trace path (packet by
packet, with events), evaluates the scenario's checks and returns a ``Report``
whose ``as_dict()`` is the JSON the command line prints with ``--json``::

    >>> from engine.examples import load_example
    >>> report = verify_scenario(load_example("nat-microsoft"))
    >>> report.passed, report.summary.flows, report.summary.symmetric_rate
    (True, 5000, 1.0)
    >>> [check.name for check in report.checks]
    ['symmetric_rate >= 1', 'handed_off == 0', 'refused == 0']
    >>> sorted(report.as_dict())[:4]
    ['buckets', 'checks', 'matrix', 'mode']

``export_pcap`` runs the scenario's flows down the trace path and writes every packet
it saw (requests as sent and as rewritten, responses as the server sent them and as
the client got them) to a pcap that Wireshark opens.

Both functions raise ScenarioError, TrafficError, PcapError and ConfigError (all
``RssLabError``) for input they cannot run; nothing else on bad input.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, TextIO

import numpy as np

from engine.appliance.events import Event, Verdict
from engine.appliance.verdicts import FlowOutcome, Summary, clean_pass, clean_pass_line
from engine.errors import ConfigError
from engine.packet.model import FlowTuple, Packet, Proto
from engine.scenarios.pcap import PcapTally
from engine.scenarios.scenario import CheckResult, Scenario, evaluate_checks
from engine.scenarios.traffic import build_flow_arrays, build_flow_specs

#: Rows of a held list (the trace path's) turned into dicts at a time when streaming.
ROW_CHUNK = 4096

#: Version of the report's JSON shape (``Report.as_dict``); bumped on incompatible change.
REPORT_SCHEMA_VERSION = 1
MODES = ("batch", "trace")

#: ``on_progress(fraction, stage)``: fraction done 0.0–1.0 and a short stage label.
ProgressCallback = Callable[[float, str], None]

# The batch path is one vectorised call: its progress is reported per stage, at the
# share of a typical run's time each stage has taken when it ends (measured on 1M flows).
_STAGE_DONE = {"system": 0.02, "traffic": 0.30, "batch": 0.95, "report": 1.0}


@dataclass
class Report:
    """What one verification run found.

    ``summary`` is the run's ``engine.appliance.verdicts.Summary``; ``checks`` the scenario's checks
    against it; ``matrix[i][j]`` counts flows whose request was steered to core i and
    whose response to core j (``no_response[i]``: flows of core i that got none, their
    request refused); ``buckets[b]`` counts requests hashed to indirection bucket b and
    ``bucket_cores[b]`` is that bucket's core; ``ports_allocated[c]`` counts ports core c
    handed out; ``fitting_ports[c]`` is the average number of ports of one port
    allocation table whose response lands on core c (the port map's capacity for the
    core: 1024-65535 / cores for a full-rank key). ``rows`` (per-flow outcomes) only
    when asked for: a sequence of ``FlowOutcome`` — on the batch path a lazy one
    (``engine.paths.batch.BatchRows``) that makes each row from the run's arrays when read,
    so millions of rows cost no memory until used; ``write_json`` streams them.
    ``elapsed_s`` is wall time and not part of ``as_dict`` (a report is deterministic
    given the scenario and its seed).
    """

    name: str
    source: str
    mode: str
    summary: Summary
    checks: list[CheckResult]
    matrix: list[list[int]]
    no_response: list[int]
    buckets: list[int]
    bucket_cores: list[int]
    ports_allocated: list[int]
    fitting_ports: list[float]
    system: dict[str, Any]
    traffic: dict[str, Any]
    rows: Sequence[FlowOutcome] | None = None
    elapsed_s: float = 0.0
    description: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    pcap: PcapTally | None = None

    @property
    def passed(self) -> bool:
        """The scenario's checks decide; without checks, ``clean_pass`` does (at least
        one flow, none refused or asymmetric)."""
        if self.checks:
            return all(check.passed for check in self.checks)
        return clean_pass(self.summary)

    @property
    def cores(self) -> int:
        return len(self.matrix)

    def per_core(self) -> list[dict[str, Any]]:
        """One dict per core: packets handled (load), requests and responses steered to
        it, handoffs it received, its port-table occupancy (``occupancy_peak``: the most
        held at once; ``occupancy``: at the end of the run), ports allocated, and
        fitting ports per table."""
        summary = self.summary
        occupancy = summary.occupancy or [0.0] * self.cores
        peak = summary.occupancy_peak or [0.0] * self.cores
        handoffs = summary.handoffs_per_core or [0] * self.cores
        columns = np.asarray(self.matrix, dtype=np.int64).reshape(self.cores, self.cores)
        requests = columns.sum(axis=1) + np.asarray(self.no_response, dtype=np.int64)
        responses = columns.sum(axis=0)
        return [{"core": core, "load": summary.core_load[core],
                 "requests": int(requests[core]), "responses": int(responses[core]),
                 "handoffs": handoffs[core], "occupancy": occupancy[core],
                 "occupancy_peak": peak[core],
                 "ports_allocated": self.ports_allocated[core],
                 "fitting_ports": self.fitting_ports[core]}
                for core in range(self.cores)]

    def summary_dict(self) -> dict[str, Any]:
        """The summary as the checks and the JSON see it (``Summary.as_dict`` plus
        ``per_core``)."""
        data = self.summary.as_dict()
        data["per_core"] = self.per_core()
        return data

    def as_dict(self, *, rows: bool | None = None) -> dict[str, Any]:
        """The JSON report. ``rows`` (default: whether the run kept them) adds the
        per-flow outcomes under ``rows`` (all of them, in memory: for a large run,
        ``write_json`` writes the same JSON without holding the rows)."""
        data = {
            "schema_version": REPORT_SCHEMA_VERSION,
            "scenario": {"name": self.name, "source": self.source,
                         "description": self.description},
            "mode": self.mode,
            "system": self.system,
            "traffic": self.traffic,
            "summary": self.summary_dict(),
            "checks": [check.as_dict() for check in self.checks],
            "passed": self.passed,
            "matrix": {"request_core_by_response_core": self.matrix,
                       "no_response": self.no_response},
            "buckets": {"requests": self.buckets, "cores": self.bucket_cores},
            "ports": {"allocated": self.ports_allocated,
                      "occupancy": list(self.summary.occupancy),
                      "occupancy_peak": list(self.summary.occupancy_peak),
                      "fitting_per_table": self.fitting_ports},
            **self.extra,
        }
        if self.pcap is not None:
            data["pcap"] = self.pcap.as_dict()
        if rows if rows is not None else self.rows is not None:
            data["rows"] = [row for chunk in self.row_dicts() for row in chunk]
        return data

    def row_dicts(self, chunk: int = ROW_CHUNK) -> Iterator[list[dict[str, Any]]]:
        """The rows' ``as_dict()`` (none when the run kept no rows), a list of at most
        ``chunk`` rows at a time, made as they are read."""
        rows = self.rows
        if rows is None:
            return
        dicts = getattr(rows, "dicts", None)
        if dicts is not None:
            yield from dicts(chunk)
            return
        for start in range(0, len(rows), chunk):
            yield [row.as_dict() for row in rows[start:start + chunk]]

    def write_json(self, stream: TextIO, *, rows: bool | None = None) -> None:
        """Write ``json.dumps(self.as_dict(rows=rows))`` to ``stream``, the same text,
        with the rows (the last key) encoded and written a chunk at a time: memory does
        not grow with the number of flows. No newline at the end."""
        head = json.dumps(self.as_dict(rows=False))
        if not (rows if rows is not None else self.rows is not None):
            stream.write(head)
            return
        stream.write(head[:-1] + ', "rows": [')
        separator = ""
        for chunk in self.row_dicts():
            if chunk:
                stream.write(separator + json.dumps(chunk)[1:-1])
                separator = ", "
        stream.write("]}")

    def lines(self) -> list[str]:
        """A readable summary for a terminal (no colour; marks carry the meaning)."""
        summary = self.summary
        out = [f"scenario {self.name} ({self.source}), {self.mode} path, "
               f"{self.system['cores']} cores, key {summary.key}",
               *(f"  {line}" for line in summary.lines())]
        if summary.port_map:
            out.append(f"  {summary.port_map}")
        if self.pcap is not None:
            out.append(f"  {self.pcap.line()}")
        # occupancy: the most ports held at once (peak) and what is held when the run
        # ends (every session has ended by then, unless a trace stopped its clock early)
        out.append("  core    load  requests  responses  handoffs  ports  occupancy peak"
                   "  at end")
        for row in self.per_core():
            out.append(f"  {row['core']:>4}  {row['load']:>6}  {row['requests']:>8}  "
                       f"{row['responses']:>9}  {row['handoffs']:>8}  "
                       f"{row['ports_allocated']:>5}  {row['occupancy_peak']:>14.2%}  "
                       f"{row['occupancy']:>6.2%}")
        for check in self.checks:
            actual = "missing" if check.actual is None else f"{check.actual:g}"
            out.append(f"  {'✓ pass' if check.passed else '✗ FAIL'}  {check.name}  "
                       f"(actual {actual})")
        failed = sum(not check.passed for check in self.checks)
        if not self.checks:
            out.append(clean_pass_line(self.summary))
        elif failed:
            out.append(f"FAIL: {failed} of {len(self.checks)} checks failed")
        else:
            out.append(f"PASS: all {len(self.checks)} checks passed")
        return out


# ---------------------------------------------------------------------------- running

def verify_scenario(scenario: Scenario, *, pcap: str | Path | None = None,
                    mode: str = "batch", rows: bool = False,
                    on_progress: ProgressCallback | None = None,
                    on_event: Callable[[Event], None] | None = None,
                    source: str | None = None) -> Report:
    """Run ``scenario`` and check it.

    ``pcap`` replaces the file of the scenario's pcap sources; ``mode`` is ``batch``
    (vectorised; IPv6 flows too, unfragmented) or ``trace`` (packet by packet;
    ``on_event`` then receives every event as it happens, e.g. to stream it); ``rows``
    keeps the per-flow outcomes; ``on_progress(fraction, stage)`` is called as the run
    advances (per stage on the batch path, which is one vectorised call; per finished
    flow, at most every 1 %, on the trace path). ``source`` names the scenario in the
    report (default: its file, else ``<string>``).

    Raises ConfigError for an unknown mode or a system the engine refuses,
    TrafficError (IPv6 fragments on the batch path, traffic that cannot be generated) and
    PcapError (an unreadable capture).
    """
    if mode not in MODES:
        raise ConfigError("mode", " or ".join(MODES), mode)
    started = time.perf_counter()
    progress = on_progress or (lambda fraction, stage: None)
    config = scenario.build_system_config()
    config.check()
    progress(_STAGE_DONE["system"], "system")
    if mode == "batch":
        report = _run_batch(scenario, config, pcap, rows, progress)
    else:
        report = _run_trace(scenario, config, pcap, rows, progress, on_event)
    report.source = source or _source_of(scenario)
    report.elapsed_s = time.perf_counter() - started
    progress(1.0, "report")
    return report


def _source_of(scenario: Scenario) -> str:
    """The scenario's file when it sits in its base directory under its own name (as
    the examples do), else ``<string>``."""
    base = scenario.base_dir
    if base is not None:
        for suffix in (".yaml", ".yml", ".json"):
            path = base / f"{scenario.name}{suffix}"
            if path.is_file():
                return str(path)
    return "<string>"


def _run_batch(scenario, config, pcap, rows: bool, progress: ProgressCallback) -> Report:
    from engine.paths.batch import BatchRows, check_batch_config, run_batch
    check_batch_config(config)  # before the traffic is built, so the setting is named
    tally = PcapTally()
    arrays = build_flow_arrays(scenario, pcap=pcap, tally=tally)
    progress(_STAGE_DONE["traffic"], "traffic")
    result = run_batch(config, arrays)
    progress(_STAGE_DONE["batch"], "batch")
    table = config.build_table()
    hashes = result.request_hash[result.request_hashed]
    buckets = np.bincount((hashes & np.uint32(table.mask)).astype(np.int64),
                          minlength=table.size)
    allocated = np.bincount(result.request_core[result.allocated], minlength=config.cores)
    return _report(scenario, config, "batch", result.summary, result.request_core,
                   result.response_core, buckets, allocated, arrays,
                   BatchRows(result) if rows else None, tally)


def _run_trace(scenario, config, pcap, rows: bool, progress: ProgressCallback,
               on_event) -> Report:
    tally = PcapTally()
    specs = build_flow_specs(scenario, pcap=pcap, tally=tally)
    progress(_STAGE_DONE["traffic"], "traffic")
    system = scenario.build_system()
    total = max(len(specs), 1)
    step = max(total // 100, 1)
    done = [0]

    def relay(event: Event) -> None:
        if isinstance(event, Verdict):
            done[0] += 1
            if done[0] % step == 0:
                progress(_STAGE_DONE["traffic"] + (_STAGE_DONE["batch"] - _STAGE_DONE[
                    "traffic"]) * done[0] / total, "trace")
        if on_event is not None:
            on_event(event)

    result = system.run_trace([spec.to_flow() for spec in specs], on_event=relay,
                              keep_events=False)
    progress(_STAGE_DONE["batch"], "trace")
    outcomes = result.outcomes
    request_core = np.asarray([o.request_core for o in outcomes], dtype=np.int64)
    response_core = np.asarray([-1 if o.response_core is None else o.response_core
                                for o in outcomes], dtype=np.int64)
    allocated = np.bincount(np.asarray([o.request_core for o in outcomes if o.local_port >= 0],
                                       dtype=np.int64), minlength=config.cores)
    return _report(scenario, config, "trace", result.summary, request_core, response_core,
                   np.asarray(system.bucket_load, dtype=np.int64), allocated, specs,
                   outcomes if rows else None, tally)


def _report(scenario, config, mode, summary: Summary, request_core, response_core,
            buckets, allocated, traffic, rows, tally: PcapTally) -> Report:
    cores = config.cores
    answered = response_core >= 0
    matrix = np.bincount(request_core[answered] * cores + response_core[answered],
                         minlength=cores * cores)[:cores * cores].reshape(cores, cores)
    no_response = np.bincount(request_core[~answered], minlength=cores)[:cores]
    return build_report(scenario, config, mode, summary, matrix=matrix,
                        no_response=no_response, buckets=buckets, allocated=allocated,
                        flows=len(traffic), rows=rows, tally=tally)


def build_report(scenario, config, mode, summary: Summary, *, matrix, no_response, buckets,
                 allocated, flows: int, rows, tally: PcapTally) -> Report:
    """The ``Report`` of a run from its figures (``matrix`` cores x cores, request core by
    response core; ``no_response``/``allocated`` per core; ``buckets`` per indirection
    bucket): both paths, and a batch run merged from shards (``engine.runs.shards``)."""
    cores = config.cores
    summary_dict = summary.as_dict()
    checks = evaluate_checks(dict(scenario.checks), summary_dict)
    nic = scenario.system.nic
    return Report(
        name=scenario.name, source="", mode=mode, summary=summary, checks=checks,
        matrix=np.asarray(matrix).tolist(), no_response=np.asarray(no_response).tolist(),
        buckets=[int(x) for x in buckets], bucket_cores=list(config.build_table().buckets),
        ports_allocated=[int(x) for x in allocated[:cores]],
        fitting_ports=fitting_ports(config), description=scenario.description,
        system={"cores": cores, "ips_per_core": config.ips_per_core, "key": nic.key,
                "hash_bits": nic.hash_bits, "transform": nic.transform,
                "policies": sorted({s.policy for s in scenario.services}),
                "strategy": config.strategy, "tables_per_ip": config.tables_per_ip,
                "handoff": config.handoff, "fragments": nic.fragments},
        traffic={"flows": flows, "sources": [s.kind for s in scenario.sources]},
        rows=rows, pcap=tally if any(s.pcap is not None for s in scenario.sources) else None)


def fitting_ports(config) -> list[float]:
    """Per core, how many ports of one port allocation table (one local IP and server,
    the configured port range) make a response land on that core, averaged over the
    possible hash constants: a table's port capacity for the core. 0 for every core
    when the system never allocates (transparent only) or cannot (the ``sort``
    transform)."""
    from engine.appliance.ports import PortAllocator, PortRange, ResponsePortMap
    from engine.packet.toeplitz import parse_key
    if not config.allocates() or config.transform == "sort":
        return [0.0] * config.cores
    table = config.build_table()
    port_map = ResponsePortMap(parse_key(config.key), table,
                               direction="request" if config.wrong_direction else "response",
                               transform=config.transform)
    low, high = config.port_range
    ports = PortRange(low, high)
    return [round(PortAllocator(core, [config.local_ips(core)[0]] if config.shared_ip is None
                                else [config.shared_ip], port_map,
                                port_range=ports).fitting_capacity, 2)
            for core in range(config.cores)]


# ---------------------------------------------------------------------------- pcap export

#: Sides ``export_pcap`` can write: the client's view (request as sent, response as the
#: client got it) and the server's view (request as rewritten, response as sent).
SIDES = ("client", "server")
#: TCP payload per written segment (bytes): an Ethernet MTU less IPv4 and TCP headers.
SEGMENT_BYTES = 1460
#: Largest UDP payload in one datagram (bytes).
MAX_UDP_PAYLOAD = 65507
#: Flows ``export_pcap`` writes unless told otherwise.
DEFAULT_EXPORT_FLOWS = 10_000


@dataclass(frozen=True, slots=True)
class ExportResult:
    """What ``export_pcap`` wrote: ``packets`` in all, ``flows`` exported, and the
    link type (``raw`` IP or ``ethernet``)."""

    packets: int
    flows: int
    link: str


def export_pcap(scenario: Scenario, target: str | Path | BinaryIO, *,
                pcap: str | Path | None = None, sides: tuple[str, ...] = SIDES,
                limit: int | None = DEFAULT_EXPORT_FLOWS,
                link: str = "raw") -> ExportResult:
    """Run the scenario's first ``limit`` flows (all with ``None``) down the trace path
    and write their packets to ``target`` as a classic pcap, in the order they met the
    NIC, timestamped with the run's virtual time (µs) from 2024-01-01.

    ``sides`` picks what is written: ``client`` — each request as the client sent it
    and each response as the client received it (after reverse translation);
    ``server`` — each request as rewritten for the server and each response as the
    server sent it. For ``transparent`` flows both views are the same packets, written
    once. A capture of the client side replays (``--pcap``) as the same flows; the
    server side of ``nat``/``usip`` flows are other connections (local IP and port).
    Payloads are zero bytes: TCP split into ``SEGMENT_BYTES`` segments, UDP in one
    datagram up to ``MAX_UDP_PAYLOAD`` bytes (split beyond), so byte counts read back
    exactly. ``link`` is ``raw`` (LINKTYPE_RAW, IPv4 and IPv6) or ``ethernet``.

    Raises ConfigError for an unknown side or link, and what ``verify_scenario`` raises.
    """
    from engine.paths.trace import System
    from engine.scenarios.pcap import write_pcap

    for side in sides:
        if side not in SIDES:
            raise ConfigError("sides", " / ".join(SIDES), side)
    if link not in ("raw", "ethernet"):
        raise ConfigError("link", "raw or ethernet", link)
    if limit is not None and limit < 0:
        raise ConfigError("limit", "a number of flows, 0 or more", limit)
    specs = build_flow_specs(scenario, pcap=pcap, limit=limit)
    system: System = scenario.build_system()
    record = _SideRecorder(sides)
    system.run_trace([spec.to_flow() for spec in specs], on_event=record, keep_events=False)
    packets: list[Packet] = []
    times: list[float] = []
    for t_us, tuple_, size in record.written:
        for chunk in _segments(size, tuple_.proto):
            times.append(_EPOCH + t_us / 1e6 + len(packets) * 1e-6)
            packets.append(Packet.from_tuple(len(packets), tuple_, payload_len=chunk,
                                             flags="PA" if tuple_.proto == Proto.TCP else ""))
    count = write_pcap(target, packets, times=times, ethernet=link == "ethernet")
    return ExportResult(count, len(specs), link)


_EPOCH = 1_704_067_200.0  # 2024-01-01T00:00:00Z, the exported capture's time zero


class _SideRecorder:
    """Collects, from a trace's events, the packets ``export_pcap`` writes for ``sides``:
    ``written`` holds ``(t_us, tuple, payload bytes)`` in the order they met the NIC."""

    def __init__(self, sides: tuple[str, ...]):
        self.client = "client" in sides
        self.server = "server" in sides
        self.written: list[tuple[int, FlowTuple, int]] = []
        self.request_bytes: dict[int, int] = {}
        self.response_bytes: dict[int, int] = {}
        self.server_view: dict[int, FlowTuple] = {}
        self.request_tuple: dict[int, FlowTuple] = {}

    def __call__(self, event: Event) -> None:
        kind = event.kind
        if kind == "packet-arrived" and event.direction == "request":
            self._request_arrived(event)
        elif kind == "delivered-to-server" and self.server:
            self._delivered(event)
        elif kind == "packet-arrived":  # a response, as the server sent it
            self._response_sent(event)
        elif kind == "response-arrived" and self.client:
            self._response_arrived(event)

    def _request_arrived(self, event: Event) -> None:
        self.request_bytes[event.flow] = event.bytes
        self.request_tuple[event.flow] = event.tuple
        if self.client:
            self.written.append((event.t_us, event.tuple, event.bytes))

    def _delivered(self, event: Event) -> None:
        self.server_view[event.flow] = event.tuple
        if not self.client or event.tuple != self.request_tuple.get(event.flow):
            self.written.append((event.t_us, event.tuple, self.request_bytes[event.flow]))

    def _response_sent(self, event: Event) -> None:
        self.response_bytes[event.flow] = event.bytes
        self.server_view[event.flow] = event.tuple
        if self.server:
            self.written.append((event.t_us, event.tuple, event.bytes))

    def _response_arrived(self, event: Event) -> None:
        if not (self.server and event.tuple == self.server_view.get(event.flow)):
            self.written.append((event.t_us, event.tuple, self.response_bytes[event.flow]))


def _segments(size: int, proto: int) -> list[int]:
    """Payload sizes of the packets that carry ``size`` bytes (see ``export_pcap``)."""
    limit = SEGMENT_BYTES if proto == Proto.TCP else MAX_UDP_PAYLOAD
    if size <= limit:
        return [size]
    full, rest = divmod(size, limit)
    return [limit] * full + ([rest] if rest else [])


__all__ = ["DEFAULT_EXPORT_FLOWS", "MODES", "REPORT_SCHEMA_VERSION", "SIDES", "ExportResult",
           "ProgressCallback", "Report", "export_pcap", "fitting_ports", "verify_scenario"]
