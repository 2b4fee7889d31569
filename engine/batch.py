"""The batch path: the trace's model, vectorised over arrays of IPv4 flows.

Per flow, with NumPy over whole columns: the request's hash and core (the NIC's
hash types and transform included), the service route and real server, the
port allocation (``engine.ports.allocate_batch``, identical to the scalar loop
in flow order), the response as it arrives (source = server) and its core, the
handoff of transparent mode, and the verdict. All flows are concurrent: every
port is allocated before any is freed, which is what a trace whose flows start
together does, so both paths agree flow for flow (``tests/engine/test_batch.py``).

    >>> import numpy as np
    >>> from engine.system import SystemConfig
    >>> flows = random_flow_arrays(1000, np.random.default_rng(1))
    >>> result = run_batch(SystemConfig(cores=4), flows)
    >>> result.summary.symmetric, result.summary.flows
    (1000, 1000)

Addresses are uint32 host values of IPv4 addresses (``int(IPv4Address)``); ports
are host-order integers (the hash puts them in network byte order).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

import numpy as np

from .errors import ConfigError
from .nic import HashType, Nic
from .packet import FlowTuple, Proto
from .ports import allocate_batch
from .system import HANDOFF_COPIES, Flow, SystemConfig, build_allocators, port_occupancy
from .traffic import FlowArrays
from .verify import VERDICT_CODE, VERDICTS, FlowOutcome, Summary, summarize, verdict_reason

POLICY_CODE = {"nat": 0, "usip": 1, "transparent": 2}
POLICY_NAMES = tuple(POLICY_CODE)


def flow_arrays(flows: list[Flow]) -> tuple[FlowArrays, np.ndarray]:
    """``(arrays, ids)`` of trace flows (IPv4 only; ConfigError names a non-IPv4 flow)."""
    rows = []
    for index, flow in enumerate(flows):
        request = flow.request_tuple()
        if request.version != 4:
            raise ConfigError(f"flows[{index}]", "an IPv4 flow for the batch path",
                              str(request))
        rows.append((int(request.src), request.sport, int(request.dst), request.dport,
                     request.proto, flow.request_bytes, flow.response_bytes))
    columns = list(zip(*rows, strict=True)) if rows else [()] * 7
    dtypes = (np.uint32, np.uint16, np.uint32, np.uint16, np.uint8, np.uint32, np.uint32)
    arrays = FlowArrays(*(np.asarray(c, dtype) for c, dtype in zip(columns, dtypes,
                                                                    strict=True)))
    return arrays, np.asarray([flow.id for flow in flows], dtype=np.int64)


def flows_from_arrays(arrays, *, close: str = "fin", ids=None) -> list[Flow]:
    """Trace flows of the rows of ``arrays`` (ids 0..n-1 unless given)."""
    count = len(arrays.client_ip)
    ids = range(count) if ids is None else [int(i) for i in ids]
    request_bytes = getattr(arrays, "request_bytes", None)
    response_bytes = getattr(arrays, "response_bytes", None)
    return [Flow(flow_id, str(ipaddress.IPv4Address(int(arrays.client_ip[row]))),
                 int(arrays.client_port[row]),
                 str(ipaddress.IPv4Address(int(arrays.server_ip[row]))),
                 int(arrays.server_port[row]), int(arrays.proto[row]),
                 100 if request_bytes is None else int(request_bytes[row]),
                 1000 if response_bytes is None else int(response_bytes[row]), close)
            for row, flow_id in zip(range(count), ids, strict=True)]


def random_flow_arrays(count: int, rng: np.random.Generator, *, servers: int = 0,
                       server_base: str = "203.0.113.1", server_port: int = 80
                       ) -> FlowArrays:
    """``count`` random TCP flows with distinct (client IP, client port) pairs.

    ``servers`` > 0: destinations drawn from that many consecutive addresses from
    ``server_base`` on ``server_port``; 0: random destinations and ports.
    """
    client_ip = rng.integers(1 << 24, 0xDF000000, count, dtype=np.uint32)
    client_port = rng.integers(1024, 65536, count, dtype=np.uint32)
    # Distinct client tuples: collisions are rare; fix any by moving the address.
    key = (client_ip.astype(np.uint64) << np.uint64(16)) | client_port
    _, first = np.unique(key, return_index=True)
    duplicate = np.ones(count, dtype=bool)
    duplicate[first] = False
    client_ip[duplicate] = (0xDF000000 + np.arange(int(duplicate.sum()))).astype(np.uint32)
    if servers:
        base = int(ipaddress.IPv4Address(server_base))
        server_ip = (base + rng.integers(0, servers, count)).astype(np.uint32)
        port = np.full(count, server_port, dtype=np.uint16)
    else:
        server_ip = rng.integers(1 << 24, 0xDF000000, count, dtype=np.uint32)
        port = rng.integers(1, 65536, count, dtype=np.uint32).astype(np.uint16)
    return FlowArrays(client_ip, client_port.astype(np.uint16), server_ip, port,
                      np.full(count, int(Proto.TCP), np.uint8),
                      np.full(count, 100, np.uint32), np.full(count, 1000, np.uint32))


def steer_batch(nic: Nic, src, dst, sport, dport, proto
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(hashes uint32, hashed bool, cores int64)`` for IPv4 packets as arrays, with the
    NIC's hash-type choice (4-tuple, else the 2-tuple, else the default core) exactly as
    ``Nic.hash_type_for`` makes it for each packet."""
    count = len(src)
    types = nic.hash_types
    four = np.zeros(count, dtype=bool)
    if HashType.TCP_IPV4 in types:
        four |= proto == Proto.TCP
    if HashType.UDP_IPV4 in types:
        four |= proto == Proto.UDP
    hashes = np.zeros(count, dtype=np.uint32)
    if four.all():
        hashes = nic.hash_ipv4_batch(src, dst, sport, dport)
    elif four.any():
        hashes[four] = nic.hash_ipv4_batch(src[four], dst[four], sport[four], dport[four])
    hashed = four.copy()
    if HashType.IPV4 in types and not four.all():
        two = ~four
        hashes[two] = nic.hash_ipv4_batch(src[two], dst[two])
        hashed[two] = True
    table = nic.table.as_array().astype(np.int64)
    cores = table[hashes & np.uint32(nic.table.mask)]
    cores[~hashed] = nic.default_core
    return hashes, hashed, cores


@dataclass
class BatchResult:
    """Per-flow columns (``ids`` in row order) and the summary.

    ``local_ip``/``local_port``: the client side as sent to the server (for
    transparent, the client's own); ``table``/``tries`` -1/0 without an allocation;
    ``response_core`` -1 when refused; ``verdict`` ``VERDICT_CODE`` values.
    """

    ids: np.ndarray
    flows: FlowArrays
    policy: np.ndarray
    request_core: np.ndarray
    server_ip: np.ndarray
    server_port: np.ndarray
    local_ip: np.ndarray
    local_port: np.ndarray
    allocated: np.ndarray
    table: np.ndarray
    tries: np.ndarray
    response_core: np.ndarray
    verdict: np.ndarray
    copies: np.ndarray
    summary: Summary
    handoff: str = "message"

    def outcome(self, row: int) -> FlowOutcome:
        """Row ``row`` as the trace's ``FlowOutcome`` (for reports and comparison)."""
        flows = self.flows
        proto = int(flows.proto[row])
        request = FlowTuple.of(int(flows.client_ip[row]), int(flows.server_ip[row]),
                               int(flows.client_port[row]), int(flows.server_port[row]), proto)
        verdict = VERDICTS[int(self.verdict[row])]
        policy = POLICY_NAMES[int(self.policy[row])]
        request_core = int(self.request_core[row])
        response_core = int(self.response_core[row])
        response_core = None if response_core < 0 else response_core
        copies = int(self.copies[row])
        failed = verdict == "allocation-failed"
        rewritten = None if failed else FlowTuple.of(
            int(self.local_ip[row]), int(self.server_ip[row]), int(self.local_port[row]),
            int(self.server_port[row]), proto)
        allocated = bool(self.allocated[row])
        return FlowOutcome(
            flow=int(self.ids[row]), request=request, request_core=request_core,
            rewritten=rewritten,
            local_ip=str(ipaddress.IPv4Address(int(self.local_ip[row]))) if allocated else None,
            local_port=int(self.local_port[row]) if allocated else -1,
            table=int(self.table[row]) if allocated else -1,
            tries=int(self.tries[row]) if allocated else 0,
            response_core=response_core, verdict=verdict, copies=copies,
            reason=verdict_reason(verdict, request_core=request_core,
                                  response_core=response_core, policy=policy,
                                  via=self.handoff, copies=copies))

    def outcomes(self, limit: int | None = None) -> list[FlowOutcome]:
        count = len(self.ids) if limit is None else min(limit, len(self.ids))
        return [self.outcome(row) for row in range(count)]


def route_batch(config: SystemConfig, flows, request_hash: np.ndarray, hashed: np.ndarray
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(policy codes, server_ip, server_port)`` per flow, as ``Router.route`` decides."""
    count = len(flows.client_ip)
    policy = np.full(count, POLICY_CODE[config.policy], dtype=np.int8)
    server_ip = flows.server_ip.astype(np.uint32, copy=True)
    server_port = flows.server_port.astype(np.uint16, copy=True)
    proto = flows.proto
    for service in config.services:
        if service.policy != "transparent":
            continue
        number = Proto.parse(service.proto)
        for ip, port in service.servers:
            match = ((flows.server_ip == int(ipaddress.IPv4Address(ip)))
                     & (flows.server_port == port) & (proto == number))
            policy[match] = POLICY_CODE["transparent"]
    index_hash = np.where(hashed, request_hash, 0).astype(np.uint64)
    for service in config.services:
        number = Proto.parse(service.proto)
        match = ((flows.server_ip == int(ipaddress.IPv4Address(service.vip)))
                 & (flows.server_port == service.vport) & (proto == number))
        if not match.any():
            continue
        policy[match] = POLICY_CODE[service.policy]
        if service.servers:
            ips = np.asarray([int(ipaddress.IPv4Address(ip)) for ip, _ in service.servers],
                             dtype=np.uint32)
            ports = np.asarray([port for _, port in service.servers], dtype=np.uint16)
            choice = (index_hash[match] % np.uint64(len(service.servers))).astype(np.int64)
            server_ip[match] = ips[choice]
            server_port[match] = ports[choice]
    return policy, server_ip, server_port


def run_batch(config: SystemConfig, flows, *, ids: np.ndarray | None = None) -> BatchResult:
    """Run every flow of ``flows`` (``FlowArrays`` or any object with the uint32/uint16/
    uint8 columns ``client_ip``, ``client_port``, ``server_ip``, ``server_port``,
    ``proto``) through a fresh system built from ``config``.

    Raises ConfigError (and the key/table errors) for a bad configuration.
    """
    config.check()
    nic = config.build_nic()
    count = len(flows.client_ip)
    ids = np.arange(count, dtype=np.int64) if ids is None else np.asarray(ids, np.int64)
    client_ip = np.asarray(flows.client_ip, dtype=np.uint32)
    client_port = np.asarray(flows.client_port, dtype=np.uint32)
    proto = np.asarray(flows.proto, dtype=np.uint8)
    request_hash, request_hashed, request_core = steer_batch(
        nic, client_ip, np.asarray(flows.server_ip, np.uint32), client_port,
        np.asarray(flows.server_port, np.uint32), proto)
    policy, server_ip, server_port = route_batch(config, flows, request_hash, request_hashed)

    allocators = build_allocators(config, nic.table)
    local_ip = client_ip.copy()
    local_port = client_port.copy()
    allocated = np.zeros(count, dtype=bool)
    failed = np.zeros(count, dtype=bool)
    table = np.full(count, -1, dtype=np.int64)
    tries = np.zeros(count, dtype=np.int64)
    for name in ("nat", "usip"):
        rows = np.flatnonzero(policy == POLICY_CODE[name])
        if rows.size == 0:
            continue
        result = allocate_batch(
            [a[name] for a in allocators], core=request_core[rows],
                                server_ip=server_ip[rows], server_port=server_port[rows],
                                client_ip=client_ip[rows], keep_client_ip=name == "usip")
        ok = np.asarray(result.ok, dtype=bool)
        good = rows[ok]
        local_ip[good] = np.asarray(result.local_ip, dtype=np.uint32)[ok]
        local_port[good] = np.asarray(result.port, dtype=np.uint32)[ok]
        table[good] = np.asarray(result.table_index)[ok]
        tries[good] = np.asarray(result.tries)[ok]
        allocated[good] = True
        failed[rows[~ok]] = True

    response_hash, response_hashed, response_core = steer_batch(
        nic, server_ip, local_ip, server_port.astype(np.uint32), local_port, proto)
    response_core[failed] = -1
    verdict = np.full(count, VERDICT_CODE["symmetric"], dtype=np.int8)
    misdirected = (response_core != request_core) & ~failed
    copies = np.zeros(count, dtype=np.int64)
    if config.handoff != "none":
        handed = misdirected & (policy == POLICY_CODE["transparent"])
        verdict[handed] = VERDICT_CODE["handed-off"]
        copies[handed] = HANDOFF_COPIES[config.handoff]
        misdirected &= ~handed
    verdict[misdirected] = VERDICT_CODE["asymmetric"]
    verdict[failed] = VERDICT_CODE["allocation-failed"]

    hashes = np.concatenate([request_hash[request_hashed],
                             response_hash[response_hashed & ~failed]])
    port_map = allocators[0]["nat"].port_map
    summary = summarize(cores=config.cores, request_core=request_core,
                        response_core=response_core, verdict=verdict, copies=copies,
                        hashes=hashes, occupancy=[port_occupancy(a) for a in allocators],
                        key=str(nic.key), port_map=port_map.describe())
    return BatchResult(ids, flows, policy, request_core, server_ip, server_port, local_ip,
                       local_port, allocated, table, tries, response_core, verdict, copies,
                       summary, config.handoff)



def bench_batch_verify(quick: bool) -> float:
    """Flows verified per second: 1,000,000 concurrent TCP flows (100,000 quick), ``nat``,
    16 cores with 4 IPs each, to 100 servers on port 80, Microsoft's key, ``solve``.

    Port capacity: one table per local IP, 64,512 ports (1024-65535) each, so
    16 x 4 x 64,512 = 4,128,768 ports; a million flows take about 24 % of them, and
    each core's share of fitting ports for one (server, IP) pair is 64,512 / 16 = 4,032,
    so 100 servers x 4 IPs give every core about 1.6 million fitting ports for its
    ~62,500 flows. Includes building the system, hashing both directions, port
    allocation, verdicts and the summary.
    """
    import time

    count = 100_000 if quick else 1_000_000
    flows = random_flow_arrays(count, np.random.default_rng(42), servers=100)
    config = SystemConfig(cores=16, ips_per_core=4, policy="nat", strategy="solve")
    best = float("inf")
    for _ in range(2 if quick else 3):
        start = time.perf_counter()
        result = run_batch(config, flows)
        best = min(best, time.perf_counter() - start)
        if result.summary.symmetric != count:
            raise RuntimeError("benchmark run was not fully symmetric")
    return count / best
