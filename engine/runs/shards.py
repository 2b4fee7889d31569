"""A batch run split by request core, run as independent shards, and merged back.

On the batch path no state crosses cores unless fragments are involved: each core owns
its port allocation tables and sessions (``build_allocators``: one ``PortAllocator`` per
core), and everything else a flow meets — its hashes, its route and real server (chosen
by hash, not by turn), the response's core, the handoff's copies and hops — depends on
the flow alone. So flows grouped by the core their *request* is steered to can run in
separate processes, even on separate machines, and give exactly what one run gives:

1. :func:`plan_shards` steers every request once (``engine.paths.batch.steer_flows``),
   counts flows per core, and gives every core — also a core with no flows, so each
   core's occupancy has exactly one owner — to one of N shards, balanced by flow count
   (largest core first onto the least loaded shard; deterministic, so every worker that
   plans the same flows finds the same shards).
2. :func:`run_shard` runs one shard's rows, in their original order, through
   ``run_batch`` with their original flow ids (``ids=``): per core, the allocations are
   made in the same order as in the unsplit run, so the same ports, tables and tries.
3. :func:`ShardFigures.of` keeps what the merge needs, compactly: the additive figures
   (verdict counts, copies, hops, per-core load and handoffs, the request x response core
   matrix, buckets, ports allocated), the occupancy of the cores the shard owns, the set
   of distinct RSS hashes it saw (a set, not a count: two shards may see the same hash),
   and the first rows in flow order a report keeps.
4. :func:`merge_figures` adds them up into the unsplit run's ``Summary`` (fairness and
   the symmetric rate recomputed from the sums, distinct hashes counted over the union),
   and :func:`merge_results` rebuilds a whole ``BatchResult`` in flow order when the shards'
   columns are at hand (one machine: tests, the benchmark).

Where state does cross cores the run is **not split** (:func:`split_refusal`): a
fragmented datagram is held on the core its 2-tuple hashes to (or the default fragment
core) whose fragment table and reassembly limits serve every request core, and under
``ms-2tuple`` is steered by its addresses alone. So a scenario in which anything can
fragment (a server or service ``mtu``, or a ``request_mtu`` column) runs unsplit.
Forwarding between cores (handoffs) is stateless on the batch path (a copy and hop count
per flow), so it splits; control-core events exist only on the trace path, which is never
split. Scenarios replaying a capture run unsplit too (an upload is at most a few MB:
never near a split's size), so every shard can rebuild its flows from the scenario text.
Flows with IPv6 rows run unsplit as well: a shard's columns and figures are IPv4 ones
(uint32 addresses, the responses' hashes recomputed from them); IPv6 flows come only
from explicit lists and captures, never near a split's size either.

    >>> import numpy as np
    >>> from engine.appliance.config import SystemConfig
    >>> from engine.paths.batch import random_flow_arrays, run_batch
    >>> config = SystemConfig(cores=4, policy="nat")
    >>> flows = random_flow_arrays(2000, np.random.default_rng(1), servers=3)
    >>> merged = run_split(config, flows, shards=2)
    >>> merged.summary == run_batch(config, flows).summary
    True
"""

from __future__ import annotations

import io
import json
import multiprocessing
from dataclasses import dataclass, field

import numpy as np

from engine.appliance.config import SystemConfig
from engine.appliance.rules import DEFAULT_REQUEST_BYTES, DEFAULT_RESPONSE_BYTES
from engine.appliance.verdicts import (
    VERDICT_CODE,
    VERDICTS,
    Summary,
    count_distinct,
    jain_index,
)
from engine.paths.batch import BatchResult, run_batch, steer_flows
from engine.paths.flows import FlowArrays

#: ``FlowArrays`` columns in constructor order, with the default of the optional ones.
_COLUMNS = (("client_ip", np.uint32, None), ("client_port", np.uint16, None),
            ("server_ip", np.uint32, None), ("server_port", np.uint16, None),
            ("proto", np.uint8, None), ("request_bytes", np.uint32, DEFAULT_REQUEST_BYTES),
            ("response_bytes", np.uint32, DEFAULT_RESPONSE_BYTES))


def split_refusal(config: SystemConfig, request_mtu=None, flows=None) -> str | None:
    """Why a batch run of ``config`` (over ``flows``, when given) must not be split by
    request core (None: it may): anything that can fragment makes a receiving core's
    fragment table serve every request core; IPv6 rows do not fit a shard's IPv4
    columns (see the module docstring)."""
    if flows is not None and getattr(flows, "has_v6", False):
        return ("flows include IPv6 ones: a shard carries IPv4 columns only (IPv6 flows "
                "come from explicit lists and captures, never near a split's size)")
    if config.fragmenting():
        return ("a server or service has an MTU: fragments are held on the core their "
                "addresses hash to (or the default fragment core), whose fragment table "
                "serves every request core")
    if request_mtu is not None and np.any(np.asarray(request_mtu) != 0):
        return ("flows have a request MTU: fragmented requests are held on the core their "
                "addresses hash to, whose fragment table serves every request core")
    if config.table_change is not None:
        # a request tuple's core changes with the table, and the correct-core check
        # forwards requests between cores: the cores do not run apart
        return ("the indirection table changes during the run: a request's core depends "
                "on when it arrives, and the correct-core check moves requests between "
                "cores")
    if config.distributes():
        # the shard plan steers requests by the NIC alone and the merge adds up no
        # distributor figures, so such a run stays whole (correct, not split)
        return ("the flow distributor steers packets (rules or an RSS-unaware NIC): a "
                "request's core is not the NIC's alone")
    return None


def assign_cores(core_flows, shards: int) -> np.ndarray:
    """``owner[core]``: the shard (0..shards-1) owning each core, balanced by the flows
    per core (``core_flows``): largest core first onto the least loaded shard, ties to
    the lower core and shard, so the same counts always give the same owners."""
    counts = np.asarray(core_flows, dtype=np.int64)
    shards = max(1, min(int(shards), counts.size or 1))
    owner = np.zeros(counts.size, dtype=np.int64)
    load = [0] * shards
    owned = [0] * shards  # ties go to the shard owning fewer cores: none is left empty
    for core in np.argsort(-counts, kind="stable").tolist():
        target = min(range(shards), key=lambda s: (load[s], owned[s], s))
        owner[core] = target
        load[target] += int(counts[core])
        owned[target] += 1
    return owner


@dataclass(frozen=True)
class ShardPlan:
    """Which shard owns each core (``owner``) and each shard's rows (ascending)."""

    owner: np.ndarray
    rows: list[np.ndarray]

    def cores_of(self, shard: int) -> list[int]:
        return np.flatnonzero(self.owner == shard).tolist()


def plan_shards(config: SystemConfig, flows, shards: int) -> ShardPlan:
    """Split ``flows`` into ``shard_count(config, shards)`` shards by request core (the
    NIC's steering, computed once here), each owning at least one core (a shard may have
    no flows)."""
    _, _, request_core = steer_flows(config.build_nic(), flows)
    owner = assign_cores(np.bincount(request_core, minlength=config.cores), shards)
    count = shard_count(config, shards)
    # a stable sort keeps each shard's rows in flow order: allocation order per core. Shard
    # numbers fit 16 bits, which NumPy sorts by radix: a third of the time of int64 (this
    # is serial work before any shard starts)
    shard_of_row = owner.astype(np.int16 if count <= 32767 else np.int64)[request_core]
    order = np.argsort(shard_of_row, kind="stable")
    edges = np.concatenate([[0], np.cumsum(np.bincount(shard_of_row, minlength=count))])
    return ShardPlan(owner, [order[edges[i]:edges[i + 1]] for i in range(count)])


def shard_count(config: SystemConfig, shards: int) -> int:
    """How many shards a split into ``shards`` makes: at most one per core."""
    return max(1, min(int(shards), config.cores))


def take_flows(flows, rows: np.ndarray) -> FlowArrays:
    """The ``FlowArrays`` of ``rows`` of ``flows`` (``FlowArrays`` or alike; missing size
    columns take the defaults ``run_batch`` would)."""
    columns = []
    for name, dtype, default in _COLUMNS:
        column = getattr(flows, name, None)
        columns.append(np.full(rows.size, default, dtype) if column is None
                       else np.asarray(column)[rows].astype(dtype, copy=False))
    times = {}
    if getattr(flows, "timed", False):  # start times and session ends stay with their rows
        times = dict(zip(("start_us", "close", "hold_us"),
                         (column[rows] for column in flows.time_columns()), strict=True))
    return FlowArrays(*columns, **times)


def run_shard(config: SystemConfig, flows, rows: np.ndarray, *, ids=None) -> BatchResult:
    """``run_batch`` over ``rows`` of ``flows`` (flow ids ``ids[rows]``, default the row
    numbers)."""
    rows = np.asarray(rows, dtype=np.int64)
    shard_ids = rows if ids is None else np.asarray(ids, np.int64)[rows]
    return run_batch(config, take_flows(flows, rows), ids=shard_ids)


def response_hashes(config: SystemConfig, result: BatchResult) -> np.ndarray:
    """The RSS hashes of the responses of ``result`` that were sent (not refused), as the
    unsplit run counts them (``BatchResult`` keeps the request's hash only)."""
    hashes, hashed, _ = config.build_nic().steer_batch(
        np.asarray(result.server_ip, np.uint32), np.asarray(result.local_ip, np.uint32),
        np.asarray(result.server_port, np.uint32), np.asarray(result.local_port, np.uint32),
        np.asarray(result.flows.proto, np.uint8))
    return hashes[hashed & (result.verdict != VERDICT_CODE["refused"])]


def _sorted_distinct(values: np.ndarray) -> np.ndarray:
    """``np.unique(values)`` of a uint32 array by sorting: NumPy's default sort is SIMD
    accelerated, while ``np.unique`` hashes, which for millions of RSS hashes (every
    slot a cache miss) takes several times as long (``count_distinct`` does the same)."""
    ordered = np.sort(np.asarray(values, dtype=np.uint32))
    if ordered.size == 0:
        return ordered
    keep = np.empty(ordered.size, dtype=bool)
    keep[0] = True
    np.not_equal(ordered[1:], ordered[:-1], out=keep[1:])
    return ordered[keep]


@dataclass
class ShardFigures:
    """What one shard contributes to the merged report (see the module docstring).

    Per core: ``load``, ``handoffs``, ``allocated`` (ports handed out), ``no_response``;
    ``matrix`` (cores x cores, request core by response core), ``buckets`` (requests per
    indirection bucket); ``occupancy`` (at the end) and ``occupancy_peak`` of the owned
    cores; ``hashes`` sorted distinct;
    ``rows`` the ``row_dicts`` of its flows whose id is below the ``keep_rows`` asked for.
    """

    cores: int
    verdicts: list[int]
    copies: int
    hops: int
    load: np.ndarray
    handoffs: np.ndarray
    allocated: np.ndarray
    no_response: np.ndarray
    matrix: np.ndarray
    buckets: np.ndarray
    occupancy: dict[int, float]
    hashes: np.ndarray
    key: str = ""
    port_map: str = ""
    rows: list[dict] = field(default_factory=list)
    #: ``Summary.ip_choice`` and ``ip_steered`` of the shard's flows
    ip_choice: int = 0
    ip_steered: int = 0
    occupancy_peak: dict[int, float] = field(default_factory=dict)

    @classmethod
    def of(cls, config: SystemConfig, result: BatchResult, owned, *,
           keep_rows: int = 0) -> ShardFigures:
        """The figures of one shard's ``result`` that owns the cores ``owned``."""
        cores, summary = config.cores, result.summary
        request_hash = result.request_hash[result.request_hashed]
        hashes = _sorted_distinct(np.concatenate([request_hash,
                                                  response_hashes(config, result)]))
        answered = result.response_core >= 0
        table = config.build_table()
        matrix = np.bincount(result.request_core[answered] * cores
                             + result.response_core[answered], minlength=cores * cores)
        keep = int(np.searchsorted(result.ids, keep_rows)) if keep_rows else 0
        return cls(
            cores=cores,
            verdicts=[summary.symmetric, summary.handed_off, summary.asymmetric,
                      summary.refused],
            copies=summary.handoff_copies, hops=summary.handoff_hops,
            load=np.asarray(summary.core_load, np.int64),
            handoffs=np.asarray(summary.handoffs_per_core or [0] * cores, np.int64),
            allocated=np.bincount(result.request_core[result.allocated], minlength=cores),
            no_response=np.bincount(result.request_core[~answered], minlength=cores),
            matrix=matrix.reshape(cores, cores),
            buckets=np.bincount((request_hash & np.uint32(table.mask)).astype(np.int64),
                                minlength=table.size),
            occupancy={int(c): float(summary.occupancy[c]) for c in owned},
            hashes=hashes.astype(np.uint32), key=summary.key, port_map=summary.port_map,
            rows=result.row_dicts(0, keep) if keep else [],
            ip_choice=summary.ip_choice, ip_steered=summary.ip_steered,
            occupancy_peak={int(c): float(summary.occupancy_peak[c]) for c in owned})

    _ARRAYS = ("load", "handoffs", "allocated", "no_response", "matrix", "buckets")

    def to_bytes(self, *, compress: bool = True) -> bytes:
        """A compact form (``np.savez_compressed``; hashes stored as gaps, which compress
        far better than the values) for a database row. ``compress=False``: the same
        archive stored (``np.savez``), for a pipe between processes on one machine, where
        zlib costs far more time (about half a second for 1.5 million hashes) than the
        bytes it saves; ``from_bytes`` reads either."""
        meta = {"cores": self.cores, "verdicts": self.verdicts, "copies": self.copies,
                "hops": self.hops, "occupancy": {str(k): v for k, v in self.occupancy.items()},
                "key": self.key, "port_map": self.port_map, "rows": self.rows,
                "ip_choice": self.ip_choice, "ip_steered": self.ip_steered,
                "occupancy_peak": {str(k): v for k, v in self.occupancy_peak.items()}}
        gaps = np.diff(self.hashes, prepend=np.uint32(0)).astype(np.uint32)
        buffer = io.BytesIO()
        save = np.savez_compressed if compress else np.savez
        save(buffer, meta=np.frombuffer(json.dumps(meta).encode(), np.uint8), hash_gaps=gaps,
             **{name: getattr(self, name) for name in self._ARRAYS})
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> ShardFigures:
        with np.load(io.BytesIO(bytes(data)), allow_pickle=False) as stored:
            meta = json.loads(stored["meta"].tobytes())
            arrays = {name: stored[name] for name in cls._ARRAYS}
            hashes = np.cumsum(stored["hash_gaps"], dtype=np.uint32)
        meta["occupancy"] = {int(k): v for k, v in meta["occupancy"].items()}
        meta["occupancy_peak"] = {int(k): v for k, v in meta.get("occupancy_peak", {}).items()}
        return cls(hashes=hashes, **arrays, **meta)


@dataclass(frozen=True)
class MergedFigures:
    """The merged run: its ``summary`` and the report's other figures, rows in flow
    order (at most the ``keep_rows`` the shards kept)."""

    summary: Summary
    matrix: np.ndarray
    no_response: np.ndarray
    buckets: np.ndarray
    allocated: np.ndarray
    rows: list[dict]


def merge_figures(parts: list[ShardFigures]) -> MergedFigures:
    """The unsplit run's figures from every shard's (any order); ValueError when the
    shards do not own every core exactly once."""
    cores = parts[0].cores
    owners = sorted(core for part in parts for core in part.occupancy)
    if owners != list(range(cores)):
        raise ValueError(f"the shards own cores {owners}, not each of 0-{cores - 1} once")
    verdicts = np.sum([part.verdicts for part in parts], axis=0, dtype=np.int64)
    flows = int(verdicts.sum())
    load = np.sum([part.load for part in parts], axis=0, dtype=np.int64)
    occupancy = {core: value for part in parts for core, value in part.occupancy.items()}
    chose = sum(part.ip_choice for part in parts)
    steered = sum(part.ip_steered for part in parts)
    peak = {core: value for part in parts for core, value in part.occupancy_peak.items()}
    summary = Summary(
        flows=flows, symmetric=int(verdicts[0]), handed_off=int(verdicts[1]),
        asymmetric=int(verdicts[VERDICTS.index("asymmetric")]),
        refused=int(verdicts[VERDICTS.index("refused")]),
        symmetric_rate=float(verdicts[0] / flows) if flows else 0.0,
        handoff_copies=sum(part.copies for part in parts),
        handoff_hops=sum(part.hops for part in parts),
        core_load=[int(x) for x in load], fairness=jain_index(load),
        occupancy=[occupancy[core] for core in range(cores)],
        occupancy_peak=[peak.get(core, 0.0) for core in range(cores)],
        distinct_hashes=count_distinct(np.concatenate([p.hashes for p in parts])),
        key=parts[0].key, port_map=parts[0].port_map,
        handoffs_per_core=[int(x) for x in np.sum([p.handoffs for p in parts], axis=0)],
        ip_choice=chose, ip_steered=steered,
        ip_steered_share=steered / chose if chose else 0.0)

    def total(name):
        return np.sum([getattr(part, name) for part in parts], axis=0, dtype=np.int64)

    rows = sorted((row for part in parts for row in part.rows), key=lambda row: row["flow"])
    return MergedFigures(summary, total("matrix"), total("no_response"), total("buckets"),
                         total("allocated"), rows)


def merge_results(config: SystemConfig, plan: ShardPlan, results: list[BatchResult]
                  ) -> BatchResult:
    """One ``BatchResult`` in flow order from the shards' (in plan order): every column
    as the unsplit run's, and its summary (:func:`merge_figures`)."""
    figures = [ShardFigures.of(config, result, plan.cores_of(index))
               for index, result in enumerate(results)]
    merged = merge_figures(figures)
    # row r of the concatenation is flow position positions[r]: invert that permutation
    positions = np.concatenate(plan.rows) if plan.rows else np.empty(0, np.int64)
    order = np.argsort(positions, kind="stable")

    def column(name):
        values = [getattr(result, name) for result in results]
        if any(value is None for value in values):
            return None
        return np.concatenate(values)[order]

    flows = FlowArrays(*(np.concatenate([getattr(r.flows, name) for r in results])[order]
                         for name, _, _ in _COLUMNS))
    return BatchResult(
        ids=column("ids"), flows=flows, policy=column("policy"),
        request_core=column("request_core"), server_ip=column("server_ip"),
        server_port=column("server_port"), local_ip=column("local_ip"),
        local_port=column("local_port"), allocated=column("allocated"),
        table=column("table"), tries=column("tries"), response_core=column("response_core"),
        verdict=column("verdict"), copies=column("copies"), summary=merged.summary,
        handoff=config.handoff, fragments=None, request_hash=column("request_hash"),
        request_hashed=column("request_hashed"), hops=column("hops"),
        addresses_only=None if all(r.addresses_only is None for r in results) else
        np.concatenate([np.zeros(len(r.ids), bool) if r.addresses_only is None
                        else r.addresses_only for r in results])[order])


def run_split(config: SystemConfig, flows, *, shards: int = 2, ids=None,
              request_mtu=None) -> BatchResult:
    """``run_batch(config, flows, ids=ids, request_mtu=request_mtu)``, split into
    ``shards`` by request core and merged in this process — or run unsplit when
    :func:`split_refusal` says the flows share state across cores."""
    if split_refusal(config, request_mtu, flows) is not None:
        return run_batch(config, flows, ids=ids, request_mtu=request_mtu)
    config.check()
    plan = plan_shards(config, flows, shards)
    return merge_results(config, plan, [run_shard(config, flows, rows, ids=ids)
                                        for rows in plan.rows])


# -- over processes: each shard's figures computed in a forked child -------------------------

_FORKED: dict = {}  # what a forked child reads: set by the parent just before it forks


def _shard_in_child(index: int) -> bytes:
    config, flows, plan = _FORKED["config"], _FORKED["flows"], _FORKED["plan"]
    result = run_shard(config, flows, plan.rows[index])
    return ShardFigures.of(config, result, plan.cores_of(index)).to_bytes(compress=False)


def run_split_processes(config: SystemConfig, flows, *, processes: int = 2) -> MergedFigures:
    """The merged figures of ``flows`` split by request core over ``processes`` forked
    processes (the flows are inherited, not copied through a pipe; only each shard's
    compact figures come back). Unsplittable configurations and flows raise ValueError.

    Every core is a shard of its own, and the processes take the next shard, largest
    first, whenever they finish one (``imap_unordered``, one at a time): a process that
    the machine slows, or whose cores cost more per flow (fuller tables make ``scan`` try
    more ports), simply takes fewer shards, where a fixed split of the cores in
    ``processes`` parts would leave the other waiting. A shard's own cost (steering,
    tables, figures) is some 10 ms, against about a second of work per core of the
    benchmark's run."""
    reason = split_refusal(config, flows=flows)
    if reason is not None:
        raise ValueError(f"not split: {reason}")
    config.check()
    plan = plan_shards(config, flows, config.cores)
    largest_first = sorted(range(len(plan.rows)), key=lambda index: -plan.rows[index].size)
    _FORKED.update(config=config, flows=flows, plan=plan)
    try:
        context = multiprocessing.get_context("fork")
        with context.Pool(max(1, min(int(processes), len(plan.rows)))) as pool:
            parts = list(pool.imap_unordered(_shard_in_child, largest_first, chunksize=1))
    finally:
        _FORKED.clear()
    return merge_figures([ShardFigures.from_bytes(part) for part in parts])


# -- a scenario's batch run, shard by shard (the web lab's workers) -------------------------

def scenario_split_refusal(scenario) -> str | None:
    """Why a batch run of ``scenario`` is not split (None: it may be): state crossing
    cores (:func:`split_refusal`), or flows read from a capture (only the worker holding
    the upload could rebuild them; an upload is never near a split's size)."""
    from engine.scenarios.traffic import _explicit_specs

    if any(source.pcap is not None for source in scenario.sources):
        return "its flows come from a capture"
    config = scenario.build_system_config()
    for source in scenario.sources:  # only explicit lists (small) can hold IPv6 flows
        if source.flows is not None:
            reason = split_refusal(config, flows=FlowArrays.from_specs(
                _explicit_specs(scenario, source.flows, 0)))
            if reason is not None:
                return reason
    return split_refusal(config)


def scenario_shard(scenario, index: int, shards: int, *, keep_rows: int = 0
                   ) -> ShardFigures:
    """Shard ``index`` of ``shards`` of a batch run of ``scenario``: every shard builds the
    scenario's flows (deterministic, seeded) and the same plan, then runs its own rows.
    ``keep_rows``: keep the rows of flows ``0 .. keep_rows-1`` that are this shard's."""
    from engine.scenarios.traffic import build_flow_arrays

    reason = scenario_split_refusal(scenario)
    if reason is not None:
        raise ValueError(f"not split: {reason}")
    config = scenario.build_system_config()
    config.check()
    flows = build_flow_arrays(scenario)
    plan = plan_shards(config, flows, shards)
    result = run_shard(config, flows, plan.rows[index])
    return ShardFigures.of(config, result, plan.cores_of(index), keep_rows=keep_rows)


def merge_scenario(scenario, parts: list[ShardFigures], *, source: str = ""):
    """``(report, rows)``: the ``Report`` a batch ``verify_scenario`` of ``scenario`` gives
    (without rows or timing), from every shard's figures, and the rows the shards kept in
    flow order (dicts)."""
    from engine.runs.run import build_report
    from engine.scenarios.pcap import PcapTally

    config = scenario.build_system_config()
    merged = merge_figures(parts)
    report = build_report(scenario, config, "batch", merged.summary, matrix=merged.matrix,
                          no_response=merged.no_response, buckets=merged.buckets,
                          allocated=merged.allocated, flows=merged.summary.flows, rows=None,
                          tally=PcapTally())
    report.source = source
    return report, merged.rows
