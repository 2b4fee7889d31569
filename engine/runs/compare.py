"""Comparison runs: which design should I use, and what does it cost?

``compare_scenario`` runs a scenario's traffic (built once, so every cell sees the
same flows) through the cross product of the settings named by ``vary`` on the
batch path, and adds the distribution schemes the patent contrasts with flow-based
RSS, each modelled on the same flows::

    >>> from engine.examples import load_example
    >>> result = compare_scenario(load_example("transparent-microsoft"),
    ...                           {"key": ("microsoft", "symmetric")}, schemes=("per-packet",))
    >>> [(cell.label, cell.handed_off > 0) for cell in result.cells]
    [('key=microsoft', True), ('key=symmetric', False), ('per-packet', True)]

What each scheme does (patent: functional parallelism, data parallelism,
flow-based data parallelism, and load "allocated on a per packet basis"). Every
flow is two packets, its request and its response, as in ``Summary.core_load``:

* ``rss`` — flow-based data parallelism, the system as configured: the NIC hashes
  each packet's tuple and the indirection table names the core; the policy
  (``nat``/``usip`` rewriting, or ``transparent`` handoffs) decides whether the
  response comes back to the request's core. Balance as good as the hash spreads
  flows; affinity as good as the policy and key make it.
* ``per-packet`` — each packet goes to the least-loaded core. With equal packet
  costs that is round robin over packets in arrival order; arrivals interleave
  flows (a seeded random order in which each request precedes its response). Best
  balance (loads differ by at most one packet); no flow affinity: a response
  reaches its request's core only by chance (about 1 in ``cores``), and every
  other response must be handed to the core holding the session (counted as a
  handoff, copies as the system's forwarding route says, lost with ``none``).
* ``per-vserver`` — data parallelism by virtual server: all traffic of a service
  (its vip:vport, or one of its servers addressed directly) is processed by core
  ``service index mod cores``; traffic for no service is grouped by destination
  (address, port, protocol) in order of first appearance, after the services.
  Perfect affinity; balance only as even as the services' popularity, and cores
  beyond the number of services stay idle.
* ``per-nic`` — data parallelism by NIC: each NIC's traffic to one core. The
  modelled appliance has one NIC, so every packet lands on core 0: affinity, and
  the worst balance possible (fairness 1/cores).
* ``per-function`` — functional parallelism: core 0 does the NIC and L2/L3 work for
  every packet, then hands the packet to the L4/L7 core that owns the flow (cores
  1..n-1, chosen by the request's RSS hash, so the session stays on one core).
  Every packet is handled on two cores and crosses between them once: 2 copies per
  flow, no flow handled on one core alone (with one core: no crossing). Core 0
  carries half of all the work, so balance is poor beyond two cores.

The non-RSS schemes allocate no ports (they rewrite nothing), so they show no
allocation failures and no port capacity; they do not depend on the key, policy,
strategy or transform, so each appears once.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import itertools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from engine.appliance.rules import FORWARDING_ROUTES, forwarding_cost_batch
from engine.appliance.verdicts import jain_index
from engine.errors import CompareError, ConfigError, HashKeyError, RssLabError
from engine.packet.toeplitz import parse_key
from engine.paths.flows import FlowArrays
from engine.scenarios.scenario import Scenario
from engine.scenarios.traffic import build_flow_arrays

SCHEMES = ("rss", "per-packet", "per-vserver", "per-nic", "per-function")
#: What ``--vary NAME=V1,V2`` accepts: allowed values (``None``: any valid key).
VARY: dict[str, tuple[str, ...] | None] = {
    "key": None,
    "policy": ("nat", "usip", "transparent"),
    "strategy": ("scan", "solve"),
    "transform": ("none", "symmetric-xor", "sort"),
    "handoff": FORWARDING_ROUTES,
    "scheme": SCHEMES,
}
#: Settings shown in a cell's label, in cross-product order.
SETTINGS = ("key", "policy", "strategy", "transform", "handoff")
MAX_CELLS = 256


def parse_vary(specs: list[str]) -> dict[str, tuple[str, ...]]:
    """``["key=microsoft,symmetric", "policy=nat"]`` → ``{"key": ("microsoft",
    "symmetric"), "policy": ("nat",)}``. Raises CompareError naming the bad part."""
    vary: dict[str, tuple[str, ...]] = {}
    for spec in specs:
        name, sep, values_text = spec.partition("=")
        name = name.strip()
        if not sep or not name:
            raise CompareError("--vary", "NAME=VALUE[,VALUE...] like policy=nat,usip", spec)
        if name not in VARY:
            raise CompareError("--vary", f"a setting among {', '.join(VARY)}", name)
        if name in vary:
            raise CompareError(f"--vary {name}", "each setting once (list its values "
                               "comma-separated)", spec)
        values = tuple(dict.fromkeys(v.strip() for v in values_text.split(",") if v.strip()))
        if not values:
            raise CompareError(f"--vary {name}", "at least one value", values_text)
        allowed = VARY[name]
        for value in values:
            if allowed is None:
                try:
                    parse_key(value)
                except HashKeyError:
                    raise CompareError(f"--vary {name}", "microsoft, symmetric, random:SEED "
                                       "or a hex key of at least 40 bytes", value) from None
            elif value not in allowed:
                raise CompareError(f"--vary {name}", f"one of {', '.join(allowed)}", value)
        vary[name] = values
    return vary


@dataclass
class Cell:
    """One configuration's figures. ``settings`` maps each of SETTINGS to its value
    (``"-"`` where a non-RSS scheme ignores it); ``port_capacity`` is fitting ports per
    core (``None``: no ports are allocated); ``error`` says why a combination could
    not run (its figures are then zero)."""

    scheme: str
    settings: dict[str, str]
    flows: int = 0
    symmetric: int = 0
    handed_off: int = 0
    asymmetric: int = 0
    refused: int = 0
    symmetric_rate: float = 0.0
    handoff_copies: int = 0
    fairness: float = 0.0
    core_load: list[int] = field(default_factory=list)
    port_capacity: list[float] | None = None
    error: str | None = None
    varied: tuple[str, ...] = ()

    @property
    def label(self) -> str:
        """The varied settings (``rss`` when none is), or the scheme's name."""
        if self.scheme != "rss":
            return self.scheme
        return " ".join(f"{name}={self.settings[name]}" for name in self.varied) or "rss"

    def as_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["label"] = self.label
        return data


@dataclass
class Comparison:
    """Every cell, RSS cells in cross-product order then the other schemes."""

    name: str
    flows: int
    cores: int
    vary: dict[str, tuple[str, ...]]
    cells: list[Cell]
    fixed: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"schema_version": 1, "scenario": self.name, "flows": self.flows,
                "cores": self.cores, "vary": {k: list(v) for k, v in self.vary.items()},
                "fixed": self.fixed,
                "cells": [cell.as_dict() for cell in self.cells]}

    def lines(self) -> list[str]:
        """The comparison as a fixed-width table."""
        width = max([len(cell.label) for cell in self.cells] + [13])
        fixed = ", ".join(f"{k}={v}" for k, v in self.fixed.items())
        out = [f"scenario {self.name}: {self.flows} flows, {self.cores} cores"
               + (f"; fixed: {fixed}" if fixed else ""),
               f"{'configuration':<{width}}  symmetric  handed-off  copies  asymmetric  "
               f"fairness     refused  ports/core"]
        for cell in self.cells:
            if cell.error:
                out.append(f"{cell.label:<{width}}  not run: {cell.error}")
                continue
            ports = ("-" if not cell.port_capacity
                     else f"{min(cell.port_capacity):.0f}-{max(cell.port_capacity):.0f}")
            out.append(f"{cell.label:<{width}}  {cell.symmetric_rate:>9.2%}  "
                       f"{cell.handed_off:>10}  {cell.handoff_copies:>6}  "
                       f"{cell.asymmetric:>10}  {cell.fairness:>8.4f}  "
                       f"{cell.refused:>10}  {ports:>10}")
        return out


def count_cells(vary: Mapping[str, Sequence[str]], *,
                schemes: Sequence[str] | None = None) -> int:
    """The cells a comparison over ``vary`` has: the cross product of the varied RSS
    settings (when ``scheme`` is not varied or includes ``rss``) plus one per non-RSS
    scheme (``schemes``, default: those ``vary["scheme"]`` names, else all)."""
    wanted = vary.get("scheme", SCHEMES)
    if schemes is None:
        schemes = [s for s in wanted if s != "rss"]
    rss = 0
    if "rss" in wanted:
        rss = 1
        for name in SETTINGS:
            rss *= len(vary.get(name, [None]))
    return rss + len(schemes)


def parse_vary_mapping(vary: object, *, field: str = "vary") -> dict[str, tuple[str, ...]]:
    """``parse_vary`` of a mapping (``{"key": ["microsoft", "symmetric"], ...}``, as a
    form or the REST API sends it), refusing more than MAX_CELLS cells, so a comparison
    too big to run is refused before it is queued. Raises CompareError on ``field``."""
    if not isinstance(vary, Mapping) or not vary:
        raise CompareError(field, 'a mapping like {"policy": ["nat", "transparent"]}', vary)
    specs = []
    for name, values in vary.items():
        if isinstance(values, str):
            values = [values]
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            raise CompareError(f"{field}.{name}", "a list of values", values)
        specs.append(f"{name}={','.join(values)}")
    parsed = parse_vary(specs)
    cells = count_cells(parsed)
    if cells > MAX_CELLS:
        raise CompareError(field, f"at most {MAX_CELLS} cells", cells)
    return parsed


def compare_scenario(scenario: Scenario, vary: dict[str, tuple[str, ...]], *,
                     pcap: str | Path | None = None, schemes: tuple[str, ...] | None = None,
                     on_progress: Callable[[float, str], None] | None = None) -> Comparison:
    """Run the cross product of ``vary`` (see ``parse_vary``; unvaried settings keep
    the scenario's values) over the scenario's traffic on the batch path.

    ``schemes`` lists the non-RSS schemes to add (default: ``vary["scheme"]`` if
    given, else all); ``rss`` cells are run when ``scheme`` is not varied or includes
    ``rss``. ``policy`` replaces every service's policy and the default one.

    Raises CompareError (too many cells), TrafficError/PcapError for the traffic.
    """
    from engine.paths.batch import run_batch, steer_flows
    from engine.runs.run import fitting_ports

    wanted = vary.get("scheme", SCHEMES)
    if schemes is None:
        schemes = tuple(s for s in wanted if s != "rss")
    cells = count_cells(vary, schemes=schemes)
    if cells > MAX_CELLS:
        raise CompareError("--vary", f"at most {MAX_CELLS} cells", cells)
    run_rss = "rss" in wanted
    base = scenario.build_system_config()
    names = [name for name in SETTINGS if name in vary]
    combos = list(itertools.product(*(vary[name] for name in names))) if run_rss else []
    flows = build_flow_arrays(scenario, pcap=pcap)
    progress = on_progress or (lambda fraction, stage: None)
    total = max(len(combos) + len(schemes), 1)
    cells: list[Cell] = []
    base_settings = {"key": scenario.system.nic.key, "policy": base.policy if not
                     base.services else "/".join(dict.fromkeys(s.policy for s in
                                                               base.services)),
                     "strategy": base.strategy, "transform": base.transform,
                     "handoff": base.handoff}
    for index, combo in enumerate(combos):
        chosen = dict(zip(names, combo, strict=True))
        settings = {name: chosen.get(name, base_settings[name]) for name in SETTINGS}
        config = _variant(base, chosen)
        cell = Cell("rss", settings, varied=tuple(names))
        try:
            result = run_batch(config, flows)
            capacity = fitting_ports(config)
        except RssLabError as error:
            cell.error = str(error)
        else:
            summary = result.summary
            cell.flows, cell.symmetric = summary.flows, summary.symmetric
            cell.handed_off, cell.asymmetric = summary.handed_off, summary.asymmetric
            cell.refused = summary.refused
            cell.symmetric_rate, cell.handoff_copies = summary.symmetric_rate, \
                summary.handoff_copies
            cell.fairness, cell.core_load = summary.fairness, summary.core_load
            cell.port_capacity = _capacity(config, capacity)
        cells.append(cell)
        progress((index + 1) / total, cell.label)
    if schemes:
        nic = base.build_nic()
        hashes, _, _ = steer_flows(nic, flows)
        for offset, scheme in enumerate(schemes):
            request, response, extra = scheme_cores(
                scheme, flows, cores=base.cores, services=scenario.services,
                request_hash=hashes, seed=scenario.seed)
            cells.append(_scheme_cell(scheme, request, response, extra, base.cores,
                                      base.handoff))
            progress((len(combos) + offset + 1) / total, scheme)
    fixed = {name: base_settings[name] for name in SETTINGS if name not in vary}
    return Comparison(scenario.name, len(flows), base.cores, dict(vary), cells, fixed)


def _variant(base, chosen: dict[str, str]):
    """``base`` (a SystemConfig) with the chosen settings; ``policy`` applies to every
    service and to traffic that matches none."""
    changes: dict[str, Any] = {k: v for k, v in chosen.items() if k != "policy"}
    if "policy" in chosen:
        changes["policy"] = chosen["policy"]
        changes["services"] = tuple(dataclasses.replace(s, policy=chosen["policy"])
                                    for s in base.services)
    return dataclasses.replace(base, **changes)


def _capacity(config, fitting: list[float]) -> list[float] | None:
    """Fitting ports per core for one server: per table times the tables a core can use
    (nat: one per local IP; usip: ``tables_per_ip`` for each client IP)."""
    policies = {s.policy for s in config.services} or {config.policy}
    if policies == {"transparent"}:
        return None
    tables = config.tables_per_ip if "usip" in policies and "nat" not in policies else (
        1 if config.shared_ip is not None else config.ips_per_core)
    return [round(value * tables, 1) for value in fitting]


def scheme_cores(scheme: str, flows: FlowArrays, *, cores: int, services=(),
                 request_hash: np.ndarray | None = None, seed: int = 0
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(request core, response core, extra core)`` per flow under a non-RSS ``scheme``
    (see the module docstring). ``extra`` is the second core each of a flow's packets
    visits (``per-function``: the L4/L7 core) or -1. Vectorised; deterministic from
    ``seed``. Raises ConfigError for an unknown scheme."""
    count = len(flows)
    none = np.full(count, -1, dtype=np.int64)
    if scheme == "per-packet":
        rng = np.random.default_rng(seed)
        arrive = rng.random(count)
        answer = arrive + rng.random(count)  # a response arrives after its request
        order = np.argsort(np.concatenate([arrive, answer]), kind="stable")
        position = np.empty(2 * count, dtype=np.int64)
        position[order] = np.arange(2 * count, dtype=np.int64)
        return position[:count] % cores, position[count:] % cores, none
    if scheme == "per-nic":
        zero = np.zeros(count, dtype=np.int64)
        return zero, zero, none
    if scheme == "per-vserver":
        group = _vserver_index(flows, services)
        core = group % cores
        return core, core, none
    if scheme == "per-function":
        zero = np.zeros(count, dtype=np.int64)
        if cores == 1:
            return zero, zero, none
        hashes = np.zeros(count, np.uint32) if request_hash is None else request_hash
        owner = 1 + (hashes.astype(np.int64) % (cores - 1))
        return zero, zero, owner
    raise ConfigError("scheme", " / ".join(s for s in SCHEMES if s != "rss"), scheme)


def _vserver_index(flows: FlowArrays, services) -> np.ndarray:
    """Each flow's virtual server: the index of the service it addresses (vip:vport or
    one of its servers, same protocol), else len(services) + the rank of its
    destination (address, port, protocol) by first appearance."""
    from engine.packet.model import Proto
    count = len(flows)
    index = np.full(count, -1, dtype=np.int64)
    server_ip = np.asarray(flows.server_ip, np.uint32)
    server_port = np.asarray(flows.server_port, np.uint16)
    proto = np.asarray(flows.proto, np.uint8)
    for number, service in enumerate(services):
        p = Proto.parse(service.proto)
        endpoints = [(service.vip, service.vport)]
        for text in service.servers:
            host, _, port = text.rpartition(":")
            endpoints.append((host.strip("[]"), int(port)))
        for ip, port in endpoints:
            address = ipaddress.ip_address(ip)
            if address.version != 4:
                continue
            match = (index < 0) & (server_ip == int(address)) & (server_port == port) & (
                proto == p)
            index[match] = number
    rest = index < 0
    if rest.any():
        key = ((server_ip[rest].astype(np.uint64) << np.uint64(24))
               | (server_port[rest].astype(np.uint64) << np.uint64(8)) | proto[rest])
        _, first, inverse = np.unique(key, return_index=True, return_inverse=True)
        rank = np.empty(first.size, dtype=np.int64)
        rank[np.argsort(first, kind="stable")] = np.arange(first.size)
        index[rest] = len(services) + rank[inverse]
    return index


def _scheme_cell(scheme: str, request: np.ndarray, response: np.ndarray,
                 extra: np.ndarray, cores: int, handoff: str) -> Cell:
    count = int(request.size)
    load = (np.bincount(request, minlength=cores) + np.bincount(response, minlength=cores))
    crossed = extra >= 0
    if crossed.any():
        load = load + 2 * np.bincount(extra[crossed], minlength=cores)
    settings = dict.fromkeys(SETTINGS, "-")
    cell = Cell(scheme, settings, flows=count, core_load=[int(x) for x in load[:cores]],
                fairness=jain_index(load[:cores]))
    if scheme == "per-function":
        moved = int(crossed.sum())
        cell.symmetric, cell.handed_off, cell.handoff_copies = count - moved, moved, 2 * moved
    else:
        moved = request != response
        split = int(np.count_nonzero(moved))
        if handoff == "none":
            cell.symmetric, cell.asymmetric = count - split, split
        else:
            cell.symmetric, cell.handed_off = count - split, split
            copies, _ = forwarding_cost_batch(handoff, from_core=response[moved],
                                              to_core=request[moved], cores=cores)
            cell.handoff_copies = int(copies.sum())
    cell.symmetric_rate = cell.symmetric / count if count else 1.0
    return cell


__all__ = ["MAX_CELLS", "SCHEMES", "SETTINGS", "VARY", "Cell", "Comparison", "count_cells",
           "parse_vary_mapping",
           "compare_scenario", "parse_vary", "scheme_cores"]
