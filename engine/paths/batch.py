"""The batch path: the trace's model, vectorised over arrays of IPv4 flows.

Per flow, with NumPy over whole columns: the request's hash and core (the NIC's
hash types and transform included), the service route and real server, the
port allocation (``engine.appliance.ports.allocate_batch``, identical to the scalar loop
in flow order), the response as it arrives (source = server) and its core, the
handoff of transparent mode, and the verdict. Flows without start times are concurrent:
every port is allocated before any is freed, which is what a trace whose flows start
together does. Flows with start times (``FlowArrays.start_us``, ``close``, ``hold_us``)
allocate in the trace's order and free their ports when their sessions end, as
``rules.close_delay_us`` says (``_allocate_timed``: at once by ``allocate_stacked``
where every flow gets its first choice, else in epochs within which no port comes
back). Either way both paths agree flow for flow (``tests/engine/test_batch.py``); a
request whose tuple an earlier flow's session still holds finds its PCB on both.
An indirection-table change (``system.nic.table_change``) is followed in time too
(``_allocate_across_change``): each packet is steered by the table of the µs it reaches
the NIC, the port tables follow the new table from ``at_us``, and the correct-core check
(seed L650-L672) forwards a request that lands away from its open session's core.

    >>> import numpy as np
    >>> from engine.paths.trace import SystemConfig
    >>> flows = random_flow_arrays(1000, np.random.default_rng(1))
    >>> result = run_batch(SystemConfig(cores=4), flows)
    >>> result.summary.symmetric, result.summary.flows
    (1000, 1000)

Addresses are uint32 host values of IPv4 addresses (``int(IPv4Address)``); ports
are host-order integers (the hash puts them in network byte order).

Fragments: when a server or service has an ``mtu`` or ``run_batch`` is given
``request_mtu``, the rows whose request or response does not fit are planned as the
trace's fragment steerer would treat them (``fragment_outcome``, vectorised: the
2-tuple and 4-tuple hashes, the fragmentation action decided once per distinct
(protocol, policy, service) and direction, the reassembly limits); every other row
stays on the plain NumPy path, which runs unchanged when nothing can fragment.
"""

from __future__ import annotations

import dataclasses
import functools
import heapq
import ipaddress
import operator
import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from socket import inet_ntoa

import numpy as np

from engine.appliance.config import Flow, SystemConfig, build_allocators
from engine.appliance.control import retarget
from engine.appliance.fragments import ASSEMBLE, BRIDGE, FragmentMode, decide_action
from engine.appliance.ports import (
    allocate_batch,
    allocate_stacked,
    port_capacity,
    release_batch,
)
from engine.appliance.rules import (
    CLOSE_CODE,
    DEFAULT_REQUEST_BYTES,
    DEFAULT_RESPONSE_BYTES,
    NOT_SERVED_IPV6,
    POLICY_CODE,
    Router,
    close_delay_batch,
    forwarding_cost,
    forwarding_cost_batch,
    fragment_cost_batch,
    fragment_count,
    fragment_count_batch,
    min_mtu,
    not_served,
    not_served_batch,
    port_steering_text,
    response_size_and_mtu,
    response_size_and_mtu_batch,
    response_verdict_batch,
    server_latency_batch,
    session_facts,
    unanswered_end_us,
)
from engine.appliance.verdicts import (
    VERDICT_CODE,
    VERDICTS,
    FlowOutcome,
    FlowSteering,
    FragmentSide,
    PortChoice,
    Summary,
    distributor_note,
    fragment_drop_note,
    fragment_note,
    misdirected_note,
    outcome_row,
    steering_figures,
    summarize,
    verdict_reason,
)
from engine.errors import ConfigError, TrafficError
from engine.nic.distributor import ArrivalBatch, FlowDistributor
from engine.nic.rss import Nic
from engine.packet.model import FlowTuple, Proto, proto_name
from engine.packet.toeplitz import parse_address
from engine.paths.flows import FlowArrays, FlowSpec

POLICY_NAMES = tuple(POLICY_CODE)
#: Fragmentation action codes in the batch columns (-1: none).
ACTION_NAMES = (ASSEMBLE, BRIDGE)


def flow_arrays(flows: list[Flow]) -> tuple[FlowArrays, np.ndarray]:
    """``(arrays, ids)`` of trace flows, IPv4 and IPv6."""
    specs = []
    for flow in flows:
        request = flow.request_tuple()
        specs.append(FlowSpec(flow.id, request.src, request.sport, request.dst,
                              request.dport, request.proto, flow.request_bytes,
                              flow.response_bytes))
    return FlowArrays.from_specs(specs), np.asarray([flow.id for flow in flows],
                                                    dtype=np.int64)


def flow_request_mtus(flows: list[Flow]) -> np.ndarray | None:
    """The ``request_mtu`` column of trace flows for ``run_batch`` (0: none), or
    ``None`` when no flow has one."""
    if all(flow.request_mtu is None for flow in flows):
        return None
    return np.asarray([flow.request_mtu or 0 for flow in flows], dtype=np.int64)


def flows_from_arrays(arrays, *, close: str = "fin", ids=None, request_mtu=None
                      ) -> list[Flow]:
    """Trace flows of the rows of ``arrays`` (ids 0..n-1 unless given); ``request_mtu``
    as ``run_batch`` takes it (0: none)."""
    count = len(arrays.client_ip)
    ids = range(count) if ids is None else [int(i) for i in ids]
    request_bytes = getattr(arrays, "request_bytes", None)
    response_bytes = getattr(arrays, "response_bytes", None)
    is_v6 = getattr(arrays, "is_v6", None)

    def address(row: int, name: str) -> str:
        if is_v6 is not None and is_v6[row]:
            return str(ipaddress.IPv6Address(getattr(arrays, name + "6")[row].tobytes()))
        return str(ipaddress.IPv4Address(int(getattr(arrays, name)[row])))

    return [Flow(flow_id, address(row, "client_ip"),
                 int(arrays.client_port[row]),
                 address(row, "server_ip"),
                 int(arrays.server_port[row]), int(arrays.proto[row]),
                 DEFAULT_REQUEST_BYTES if request_bytes is None else int(request_bytes[row]),
                 DEFAULT_RESPONSE_BYTES if response_bytes is None else int(response_bytes[row]),
                 close,
                 request_mtu=None if request_mtu is None or not request_mtu[row]
                 else int(request_mtu[row]))
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
                      np.full(count, DEFAULT_REQUEST_BYTES, np.uint32),
                      np.full(count, DEFAULT_RESPONSE_BYTES, np.uint32))


def steer_flows(nic: Nic, flows) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``Nic.steer_batch`` of the request direction of ``flows`` (``FlowArrays`` or
    alike); IPv6 rows (``is_v6``) by ``Nic.steer_ipv6_batch``."""
    proto = np.asarray(flows.proto, np.uint8)
    steered = nic.steer_batch(np.asarray(flows.client_ip, np.uint32),
                              np.asarray(flows.server_ip, np.uint32),
                              np.asarray(flows.client_port, np.uint32),
                              np.asarray(flows.server_port, np.uint32), proto)
    v6 = _v6_rows(flows)
    if v6 is not None:
        for column, part in zip(steered, nic.steer_ipv6_batch(
                flows.client_ip6[v6], flows.server_ip6[v6],
                np.asarray(flows.client_port, np.uint32)[v6],
                np.asarray(flows.server_port, np.uint32)[v6], proto[v6]), strict=True):
            column[v6] = part
    return steered


_NO_ROWS = np.empty(0, np.int64)


def _v6_rows(flows) -> np.ndarray | None:
    """The indexes of the IPv6 rows of ``flows``, or None when there are none."""
    is_v6 = getattr(flows, "is_v6", None)
    if is_v6 is None or not is_v6.any():
        return None
    return np.flatnonzero(is_v6)


def _route_v6(config: SystemConfig, router: Router, flows, v6: np.ndarray,
              routes, request_hash, request_hashed, request_mtu
              ) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Route the IPv6 rows ``v6`` (``Router.route_ipv6_batch``), writing their policy,
    server port and service into ``routes``' columns (``server_ip`` 0); returns
    ``(server_ip6, unserved)``: every row's real IPv6 server ((n, 16) uint8) and which
    rows no service can take (``rules.not_served_batch``); ``(None, None)`` when ``v6``
    is None (no IPv6 rows)."""
    if v6 is None:
        return None, None
    routes6 = router.route_ipv6_batch(flows.server_ip6[v6], flows.server_port[v6],
                                      np.asarray(flows.proto, np.uint8)[v6],
                                      request_hash[v6], request_hashed[v6])
    routes.policy[v6] = routes6.policy
    routes.server_port[v6] = routes6.server_port
    routes.service[v6] = routes6.service
    routes.server_ip[v6] = 0
    server_ip6 = np.zeros((len(flows.client_ip), 16), np.uint8)
    server_ip6[v6] = routes6.server_ip
    if request_mtu is not None or config.fragmenting():
        _check_v6_unfragmented(config, flows, v6, request_mtu, server_ip6,
                               routes.server_port, routes.service)
    return server_ip6, not_served_batch(routes.policy, flows.is_v6)


def _not_served_counts(policy: np.ndarray, unserved: np.ndarray | None) -> dict[str, int]:
    """``Summary.not_served`` of the batch columns (``unserved``: None for none)."""
    if unserved is None:
        return {}
    counts = {reason: int((unserved & (policy == POLICY_CODE[name])).sum())
              for name, reason in NOT_SERVED_IPV6.items()}
    return {reason: count for reason, count in counts.items() if count}


def _check_v6_unfragmented(config: SystemConfig, flows, v6: np.ndarray, request_mtu,
                           server_ip6: np.ndarray, server_port, service) -> None:
    """TrafficError naming the first IPv6 row whose request or response would be
    fragmented: the batch path plans IPv4 fragments only (their 2-tuple is IPv4), the
    trace path reassembles IPv6 ones. Row by row: IPv6 rows are few."""
    servers = {(parse_address(server.ip, "server"), server.port): server
               for server in config.servers}
    for row in v6.tolist():
        proto = int(flows.proto[row])
        mtu = 0 if request_mtu is None else int(request_mtu[row])
        if mtu and mtu < min_mtu(6):
            raise ConfigError("request_mtu", f"0 or an IPv6 MTU of at least {min_mtu(6)} "
                              f"bytes", mtu)
        request_bytes = getattr(flows, "request_bytes", None)
        request_size = (DEFAULT_REQUEST_BYTES if request_bytes is None
                        else int(request_bytes[row]))
        server = servers.get((ipaddress.IPv6Address(server_ip6[row].tobytes()),
                              int(server_port[row])))
        response_bytes = getattr(flows, "response_bytes", None)
        size, response_mtu = response_size_and_mtu(
            config, server=server, service=int(service[row]),
            flow_bytes=DEFAULT_RESPONSE_BYTES if response_bytes is None
            else int(response_bytes[row]))
        if (fragment_count(6, proto, request_size, mtu or None)
                or fragment_count(6, proto, size, response_mtu)):
            raise TrafficError(f"flows[{row}]", "an IPv6 flow that is not fragmented on "
                               "the batch path", "fragments",
                               detail="the batch path plans IPv4 fragments only: run "
                                      "IPv6 fragments on the trace path (--trace)",
                               code="ipv6_fragments_on_batch_path")


def decide_batch(config: SystemConfig, proto, policy, service, *, response: bool,
                 rules: dict[str, int], repeat: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """``(action codes, rule indexes)`` per row: ``decide_action`` once per distinct
    (protocol, policy, service) with the facts ``System.session_facts`` finds — a
    response hits its session (NAT PCB when translated, PCB when transparent), a new
    request hits neither, a ``repeat`` request (its tuple held by an earlier flow's open
    session) the PCB. ``rules`` maps rule text to index and grows."""
    width = len(config.services) + 1
    combo = (np.asarray(proto, np.int64) * len(POLICY_NAMES) + policy) * width + service + 1
    unique, inverse = np.unique(combo, return_inverse=True)
    actions = np.empty(unique.size, np.int8)
    indexes = np.empty(unique.size, np.int16)
    for position, value in enumerate(unique.tolist()):
        number, rest = divmod(value, len(POLICY_NAMES) * width)
        code, service_plus = divmod(rest, width)
        name = POLICY_NAMES[code]
        facts = session_facts(config, service=service_plus - 1, policy=name,
                              pcb_hit=repeat or (response and name == "transparent"),
                              natpcb_hit=response and name != "transparent")
        decision = decide_action(proto=number, pcb_hit=facts.pcb_hit,
                                 natpcb_hit=facts.natpcb_hit,
                                 assemble_flag=facts.assemble_flag,
                                 service_is_udp=facts.service_is_udp, rnat=facts.rnat,
                                 forced=config.fragment_action)
        actions[position] = ACTION_NAMES.index(decision.action)
        indexes[position] = rules.setdefault(decision.rule, len(rules))
    return actions[inverse.ravel()], indexes[inverse.ravel()]


@dataclass
class FragmentPlans:
    """Where the fragmented datagrams of some rows end (``fragment_outcome`` over
    arrays): ``received_on`` (2-tuple core or default fragment core), ``core`` (the
    packet engine's), the ``hash``/``hashed`` that chose it, the action (code, -1 under
    ms-2tuple) and rule index, the core-to-core ``messages``/``copies`` and whether
    reassembly ``dropped`` the datagram (more fragments than the limits hold)."""

    received_on: np.ndarray
    core: np.ndarray
    hash: np.ndarray
    hashed: np.ndarray
    action: np.ndarray
    rule: np.ndarray
    messages: np.ndarray
    copies: np.ndarray
    dropped: np.ndarray


def plan_fragments(config: SystemConfig, nic: Nic, *, src, dst, four_hash, four_hashed,
                   four_core, counts, proto, policy, service, response: bool,
                   rules: dict[str, int], owner=None, repeat: bool = False) -> FragmentPlans:
    """``FragmentPlans`` of rows whose datagram (``src`` → ``dst``, whose 4-tuple
    steering is ``four_*``) arrives in ``counts`` fragments. ``owner`` (per row, or
    ``None``): the core that established the connection, where the datagram goes
    instead of its 4-tuple core (seed L64, as ``fragment_outcome``)."""
    mode = FragmentMode(config.fragment_mode)
    two_hash, two_hashed, two_core = nic.steer_two_tuple_batch(src, dst)
    limit, _ = config.fragment_limit()
    dropped = counts > limit
    zeros = np.zeros(counts.size, np.int64)
    if mode is FragmentMode.MS_2TUPLE:
        none = np.full(counts.size, -1, np.int64)
        return FragmentPlans(two_core, two_core, two_hash, two_hashed, none.astype(np.int8),
                             none.astype(np.int16), zeros, zeros, dropped)
    action, rule = decide_batch(config, proto, policy, service, response=response,
                                rules=rules, repeat=repeat)
    if mode is FragmentMode.DEFAULT_CORE:
        received_on = np.full(counts.size, config.default_fragment_core, np.int64)
    else:
        received_on = two_core
    dest = np.asarray(four_core, np.int64) if owner is None else np.asarray(owner, np.int64)
    messages, copies = fragment_cost_batch(mode.value, counts,
                                           action == ACTION_NAMES.index(ASSEMBLE),
                                           received_on, np.where(dropped, received_on, dest))
    action = np.where(dropped, -1, action).astype(np.int8)
    rule = np.where(dropped, -1, rule).astype(np.int16)
    return FragmentPlans(received_on, dest, four_hash, four_hashed,
                         action, rule, messages, copies, dropped)


@dataclass
class FragmentColumns:
    """Per-flow fragment columns of a batch run (``FlowOutcome``'s fragment fields):
    fragments (0: whole), action code (-1: none), rule index into ``rules`` (-1),
    ``*_received_on`` (-1 when whole), ``*_dropped``, and ``messages``/``copies``."""

    mode: str
    rules: list[str]
    drop_reason: str
    request_fragments: np.ndarray
    request_action: np.ndarray
    request_rule: np.ndarray
    request_received_on: np.ndarray
    request_dropped: np.ndarray
    response_fragments: np.ndarray
    response_action: np.ndarray
    response_rule: np.ndarray
    response_received_on: np.ndarray
    response_dropped: np.ndarray
    messages: np.ndarray
    copies: np.ndarray

    @classmethod
    def empty(cls, config: SystemConfig, count: int) -> FragmentColumns:
        def ints(value, dtype=np.int64):
            return np.full(count, value, dtype)
        return cls(config.fragment_mode, [], config.fragment_limit()[1],
                   ints(0), ints(-1, np.int8), ints(-1, np.int16), ints(-1),
                   np.zeros(count, bool), ints(0), ints(-1, np.int8), ints(-1, np.int16),
                   ints(-1), np.zeros(count, bool), ints(0), ints(0))

    def fill(self, rows: np.ndarray, counts: np.ndarray, plans: FragmentPlans, *,
             response: bool) -> None:
        prefix = "response_" if response else "request_"
        getattr(self, prefix + "fragments")[rows] = counts
        getattr(self, prefix + "action")[rows] = plans.action
        getattr(self, prefix + "rule")[rows] = plans.rule
        getattr(self, prefix + "received_on")[rows] = plans.received_on
        getattr(self, prefix + "dropped")[rows] = plans.dropped
        self.messages[rows] += plans.messages
        self.copies[rows] += plans.copies

    def action_name(self, code: int) -> str | None:
        return None if code < 0 else ACTION_NAMES[code]

    def rule_text(self, index: int) -> str | None:
        return None if index < 0 else self.rules[index]

    def figures(self) -> dict:
        """The ``Summary`` fragment fields of these columns."""
        actions = np.concatenate([self.request_action[self.request_fragments > 0],
                                  self.response_action[self.response_fragments > 0]])
        dropped = int(self.request_dropped.sum() + self.response_dropped.sum())
        return {"fragments_dropped": int((self.request_dropped | self.response_dropped).sum()),
                "fragmented": int(actions.size),
                "assembled": int((actions == ACTION_NAMES.index(ASSEMBLE)).sum()),
                "bridged": int((actions == ACTION_NAMES.index(BRIDGE)).sum()),
                "fragment_messages": int(self.messages.sum()),
                "fragment_copies": int(self.copies.sum()),
                "fragment_drops": {self.drop_reason: dropped} if dropped else {}}


@dataclass
class DistributorColumns:
    """Per-flow columns of the flow distributor (rules, an RSS-unaware NIC) in a batch
    run, each direction's: ``*_received_on`` (the core the packet arrived on),
    ``*_core`` (where the distributor sent it), ``*_rule`` (rule index, -1), ``*_hashed``
    and ``*_copies`` (of the move, 0 when it stayed). A refused flow's response columns
    are unused. The correct-core check finds a misdirected request only after a table
    change (``check``): without one, every repeated request tuple lands where its first
    did (rules and the hash depend on the tuple alone)."""

    distributor: FlowDistributor
    route: str
    request_received_on: np.ndarray
    request_core: np.ndarray
    request_rule: np.ndarray
    request_hashed: np.ndarray
    request_copies: np.ndarray
    response_received_on: np.ndarray
    response_core: np.ndarray
    response_rule: np.ndarray
    response_hashed: np.ndarray
    response_copies: np.ndarray
    answered: np.ndarray
    #: the correct-core check after a table change (None: no request was misdirected):
    #: ``CHECK_NAMES`` code, the core the request landed on, the owner, copies
    check: _CheckColumns | None = None

    def moved(self, direction: str) -> np.ndarray:
        moved = (getattr(self, direction + "_received_on")
                 != getattr(self, direction + "_core"))
        return moved & self.answered if direction == "response" else moved

    def any_moved(self) -> np.ndarray:
        moved = self.moved("request") | self.moved("response")
        return moved if self.check is None else moved | (self.check.code > 0)

    def notes(self, row: int) -> list[str]:
        """The trace's distributor notes of row ``row``, request then the correct-core
        check's then response."""
        notes = []
        for direction in ("request", "response"):
            if direction == "response" and self.check is not None and self.check.code[row]:
                check = self.check
                notes.append(misdirected_note(
                    landed=int(check.landed[row]), owner=int(check.owner[row]),
                    forwarded=check.code[row] == CHECK_NAMES.index("forwarded"),
                    via=self.route, copies=int(check.copies[row])))
            if not self.moved(direction)[row]:
                continue
            column = functools.partial(getattr, self)
            notes.append(distributor_note(
                direction, received_on=int(column(direction + "_received_on")[row]),
                core=int(column(direction + "_core")[row]),
                why=self.distributor.reason(int(column(direction + "_rule")[row]),
                                            bool(column(direction + "_hashed")[row])),
                via=self.route, copies=int(column(direction + "_copies")[row])))
        return notes

    def steering(self, row: int) -> FlowSteering:
        request, response = self.moved("request")[row], self.moved("response")[row]
        check = self.check
        return FlowSteering(int(request) + int(response),
                            int(self.request_copies[row] + self.response_copies[row]),
                            "" if check is None else CHECK_NAMES[int(check.code[row])],
                            0 if check is None else int(check.copies[row]))

    def figures(self) -> dict:
        """The ``Summary`` distributor and correct-core check fields."""
        forwards = self.moved("request").astype(np.int64) + self.moved("response")
        check = self.check
        return steering_figures(
            distributor_forwards=forwards,
            distributor_copies=self.request_copies + self.response_copies,
            misdirected=[] if check is None else [CHECK_NAMES[c] for c in
                                                  check.code[check.code > 0].tolist()],
            check_copies=0 if check is None else check.copies)


#: ``_CheckColumns.code``: the trace's ``FlowOutcome.misdirected`` texts
CHECK_NAMES = ("", "forwarded", "processed")


@dataclass
class _CheckColumns:
    """The correct-core check (seed L650-L672) per row, as the trace's ``_request_owner``
    finds it after a table change: ``code`` (``CHECK_NAMES``), the core the request
    ``landed`` on, the ``owner`` core whose PCB held an open session of its tuple, the
    forward's ``copies`` (0 when processed where it landed) and ``delay`` (µs: the
    route's hops times ``handoff_us``, after which the owner processes it)."""

    code: np.ndarray
    landed: np.ndarray
    owner: np.ndarray
    copies: np.ndarray
    delay: np.ndarray

    @classmethod
    def empty(cls, count: int) -> _CheckColumns:
        return cls(np.zeros(count, np.int8), np.full(count, -1, np.int64),
                   np.full(count, -1, np.int64), np.zeros(count, np.int64),
                   np.zeros(count, np.int64))


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
    fragments: FragmentColumns | None = None
    #: the request's hash as the NIC computed it, and whether it hashed at all
    request_hash: np.ndarray | None = None
    request_hashed: np.ndarray | None = None
    #: core-to-core hops each response was forwarded over (0: not forwarded)
    hops: np.ndarray | None = None
    #: IPv6 rows (None: none): ``server_ip6`` holds their real server ((n, 16) uint8,
    #: network order; ``server_ip`` holds 0), their client side is the client's own
    #: (transparent) and nat/usip refuse them (``rules.not_served``)
    is_v6: np.ndarray | None = None
    server_ip6: np.ndarray | None = None
    #: the flow distributor's columns (None: the NIC steered alone)
    distributor: DistributorColumns | None = None
    #: the correct-core check: off, a misdirected response is processed where it lands
    checked: bool = True
    #: per row: the NIC hashes the response on its addresses alone (``Nic.addresses_only``;
    #: None: no row)
    addresses_only: np.ndarray | None = None

    def _portless(self, row: int) -> bool:
        """Whether row ``row``'s response is hashed on its addresses alone."""
        return self.addresses_only is not None and bool(self.addresses_only[row])

    def _hops(self, part=slice(None)) -> list[int]:
        return ([0] * len(self.ids[part]) if self.hops is None
                else self.hops[part].tolist())

    def outcome(self, row: int) -> FlowOutcome:
        """Row ``row`` as the trace's ``FlowOutcome`` (for reports and comparison)."""
        flows = self.flows
        proto = int(flows.proto[row])
        v6 = self.is_v6 is not None and bool(self.is_v6[row])
        if v6:
            client = ipaddress.IPv6Address(flows.client_ip6[row].tobytes())
            vip = ipaddress.IPv6Address(flows.server_ip6[row].tobytes())
            local, server = client, ipaddress.IPv6Address(self.server_ip6[row].tobytes())
        else:
            client, vip = int(flows.client_ip[row]), int(flows.server_ip[row])
            local, server = int(self.local_ip[row]), int(self.server_ip[row])
        request = FlowTuple.of(client, vip, int(flows.client_port[row]),
                               int(flows.server_port[row]), proto)
        verdict = VERDICTS[int(self.verdict[row])]
        policy = POLICY_NAMES[int(self.policy[row])]
        request_core = int(self.request_core[row])
        response_core = int(self.response_core[row])
        response_core = None if response_core < 0 else response_core
        copies = int(self.copies[row])
        hops = self._hops(slice(row, row + 1))[0]
        failed = verdict == "refused"
        frag = self.fragments
        sides, notes, by_addresses, dropped = {}, [], False, ""
        if frag is not None:
            failed = failed or bool(frag.request_dropped[row])
            sides, notes, by_addresses, dropped = self._fragment_fields(row, request_core,
                                                                       response_core)
        if self.distributor is not None:
            notes = [*notes, *self.distributor.notes(row)]
            sides = {**sides, "steering": self.distributor.steering(row)}
        rewritten = None if failed else FlowTuple.of(
            local, server, int(self.local_port[row]), int(self.server_port[row]), proto)
        port = None if not self.allocated[row] else PortChoice(
            str(ipaddress.IPv4Address(int(self.local_ip[row]))), int(self.local_port[row]),
            int(self.table[row]), int(self.tries[row]))
        return FlowOutcome.build(
            flow=int(self.ids[row]), request=request, request_core=request_core,
            rewritten=rewritten, port=port, response_core=response_core, verdict=verdict,
            copies=copies, hops=hops,
            reason=verdict_reason(verdict, request_core=request_core,
                                  response_core=response_core, policy=policy,
                                  via=self.handoff, copies=copies, hops=hops,
                                  notes=tuple(notes), by_addresses=by_addresses,
                                  dropped=dropped, checked=self.checked,
                                  refusal=(not_served(policy, 6) or "") if v6 else "",
                                  addresses_only=self._portless(row)),
            **sides)

    def _fragment_fields(self, row: int, request_core: int, response_core: int | None):
        """``(FlowOutcome.build fragment arguments, notes, by_addresses, dropped note)``
        of a row."""
        frag = self.fragments
        notes, dropped = [], ""
        for direction, core in (("request", request_core), ("response", response_core)):
            count = int(getattr(frag, direction + "_fragments")[row])
            if not count:
                continue
            if getattr(frag, direction + "_dropped")[row]:
                dropped = fragment_drop_note(direction, fragments=count,
                                             reason=frag.drop_reason)
                continue
            notes.append(fragment_note(
                direction, fragments=count, mode=frag.mode,
                action=frag.action_name(int(getattr(frag, direction + "_action")[row])),
                received_on=int(getattr(frag, direction + "_received_on")[row]), core=core,
                # a response's connection is held by its request's core (seed L64)
                by_owner=direction == "response"))
        response_whole = (frag.response_fragments[row] > 0
                          and not frag.response_dropped[row])
        by_addresses = bool(response_whole and frag.mode == FragmentMode.MS_2TUPLE.value)
        sides = {
            direction + "_side": FragmentSide(
                int(getattr(frag, direction + "_fragments")[row]),
                frag.action_name(int(getattr(frag, direction + "_action")[row])),
                frag.rule_text(int(getattr(frag, direction + "_rule")[row])))
            for direction in ("request", "response")}
        sides.update(fragment_messages=int(frag.messages[row]),
                     fragment_copies=int(frag.copies[row]))
        return sides, notes, by_addresses, dropped

    def outcomes(self, limit: int | None = None) -> list[FlowOutcome]:
        count = len(self.ids) if limit is None else min(limit, len(self.ids))
        return [self.outcome(row) for row in range(count)]

    def row_dicts(self, start: int = 0, stop: int | None = None) -> list[dict]:
        """``[self.outcome(row).as_dict() for row in range(start, stop)]`` — the same
        dicts, keys in the same order — built from column slices: about ten times
        faster, for streaming millions of rows. Rows with fragments take ``outcome``."""
        count = len(self.ids)
        stop = count if stop is None else max(0, min(stop, count))
        start = max(0, min(start, stop))
        if start == stop:
            return []
        part = slice(start, stop)
        flows = self.flows
        protos = [_proto_text(p) for p in flows.proto[part].tolist()]
        clients, client_ports = _ipv4_texts(flows.client_ip[part]), flows.client_port[
            part].tolist()
        vips, vports = _ipv4_texts(flows.server_ip[part]), flows.server_port[part].tolist()
        locals_, local_ports = _ipv4_texts(self.local_ip[part]), self.local_port[part].tolist()
        servers, ports = _ipv4_texts(self.server_ip[part]), self.server_port[part].tolist()
        frag = self.fragments
        # rows with fragments, and IPv6 rows, take ``outcome``
        fragmented = ([False] * (stop - start) if frag is None else
                      ((frag.request_fragments[part] > 0)
                       | (frag.response_fragments[part] > 0)).tolist())
        if self.is_v6 is not None:
            fragmented = (np.asarray(fragmented, bool) | self.is_v6[part]).tolist()
        if self.distributor is not None:  # rows with notes take ``outcome`` too
            moved = self.distributor.any_moved()[part].tolist()
            fragmented = [a or b for a, b in zip(fragmented, moved, strict=True)]
        failed_code = VERDICT_CODE["refused"]
        handoff = self.handoff
        portless = ([False] * len(self.ids[part]) if self.addresses_only is None
                    else self.addresses_only[part].tolist())
        rows = []
        for i, (flow, allocated, table, tries, request_core, response_core, verdict,
                policy, copies, hops) in enumerate(zip(
                self.ids[part].tolist(), self.allocated[part].tolist(),
                self.table[part].tolist(), self.tries[part].tolist(),
                self.request_core[part].tolist(), self.response_core[part].tolist(),
                self.verdict[part].tolist(), self.policy[part].tolist(),
                self.copies[part].tolist(), self._hops(part), strict=True)):
            if fragmented[i]:
                rows.append(self.outcome(start + i).as_dict())
                continue
            proto = protos[i]
            rows.append(outcome_row(
                flow=flow,
                request=f"{proto} {clients[i]}:{client_ports[i]} -> {vips[i]}:{vports[i]}",
                request_core=request_core,
                rewritten=None if verdict == failed_code else
                f"{proto} {locals_[i]}:{local_ports[i]} -> {servers[i]}:{ports[i]}",
                port=PortChoice(locals_[i], local_ports[i], table, tries) if allocated
                else None,
                response_core=None if response_core < 0 else response_core,
                verdict=VERDICTS[verdict], copies=copies, hops=hops,
                reason=_plain_reason(verdict, policy, request_core, response_core, copies,
                                     hops, handoff, self.checked, portless[i])))
        return rows


#: rows ``BatchRows.dicts`` builds at a time: a few MB of dicts, whatever the run's size
ROW_CHUNK = 4096


class BatchRows(Sequence):
    """The per-flow ``FlowOutcome`` rows of a ``BatchResult``, made on demand from its
    columns rather than held: indexing gives one row, a slice a list, iteration one
    row at a time, and ``dicts()`` the rows' ``as_dict()`` in chunks (what a report
    streams). Memory stays the batch arrays', whatever the number of flows."""

    __slots__ = ("result",)

    def __init__(self, result: BatchResult):
        self.result = result

    def __len__(self) -> int:
        return len(self.result.ids)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self.result.outcome(row) for row in range(*index.indices(len(self)))]
        row = operator.index(index)
        count = len(self)
        if row < 0:
            row += count
        if not 0 <= row < count:
            raise IndexError("row index out of range")
        return self.result.outcome(row)

    def __iter__(self) -> Iterator[FlowOutcome]:
        outcome = self.result.outcome
        for row in range(len(self)):
            yield outcome(row)

    def dicts(self, chunk: int = ROW_CHUNK) -> Iterator[list[dict]]:
        """Every row's ``as_dict()``, ``chunk`` rows a list."""
        for start in range(0, len(self), chunk):
            yield self.result.row_dicts(start, start + chunk)

    def __repr__(self) -> str:
        return f"<BatchRows of {len(self)} flows>"


_IPV4_WORD = struct.Struct("4s")


def _ipv4_texts(values: np.ndarray) -> list[str]:
    """Dotted-quad text of uint32 host-order IPv4 addresses (``str(IPv4Address(v))``)."""
    data = np.asarray(values, dtype=">u4").tobytes()
    return [inet_ntoa(word) for (word,) in _IPV4_WORD.iter_unpack(data)]


@functools.cache
def _proto_text(number: int) -> str:
    return proto_name(number)


def _addresses_only(nic: Nic, proto: np.ndarray) -> np.ndarray | None:
    """``Nic.addresses_only_batch`` per row, or None when no row's response is hashed on
    its addresses alone (the common case then costs no per-row work further on)."""
    column = nic.addresses_only_batch(proto)
    return column if column.any() else None


def _rows_of(column: np.ndarray | None, rows: np.ndarray) -> np.ndarray | None:
    return None if column is None else column[rows]


def _ip_choice(addresses_only: np.ndarray | None, allocated: np.ndarray,
               policy: np.ndarray) -> np.ndarray | None:
    """``summarize``'s ``ip_choice``: nat rows given a port whose response is hashed on
    its addresses alone (None: no such row)."""
    if addresses_only is None:
        return None
    return allocated & (policy == POLICY_CODE["nat"]) & addresses_only


@functools.lru_cache(maxsize=8192)
def _plain_reason(verdict: int, policy: int, request_core: int, response_core: int,
                  copies: int, hops: int, handoff: str, checked: bool = True,
                  addresses_only: bool = False) -> str:
    """``verdict_reason`` of a row without fragments or distributor moves (codes as the
    columns hold them)."""
    return verdict_reason(VERDICTS[verdict], request_core=request_core,
                          response_core=None if response_core < 0 else response_core,
                          policy=POLICY_NAMES[policy], via=handoff, copies=copies,
                          hops=hops, checked=checked, addresses_only=addresses_only)


def _fragment_requests(config: SystemConfig, nic: Nic, flows, request_mtu: np.ndarray,
                       frag: FragmentColumns, rules: dict[str, int], *, request_hash,
                       request_hashed, request_core, policy, service) -> np.ndarray | None:
    """Fragment the requests that do not fit their client link's ``request_mtu`` (0:
    none), steering them as the fragment mode says: updates the request columns in place
    and fills ``frag``; returns which rows' requests reassembly dropped (None: none)."""
    count = len(flows.client_ip)
    if request_mtu.shape != (count,):
        raise ConfigError("request_mtu", f"one MTU per flow ({count})",
                          f"shape {request_mtu.shape}")
    small = (request_mtu != 0) & (request_mtu < min_mtu(4))
    if small.any():
        raise ConfigError("request_mtu", f"0 or an IP MTU of at least {min_mtu(4)} bytes",
                          int(request_mtu[small][0]))
    proto = np.asarray(flows.proto, dtype=np.uint8)
    size = getattr(flows, "request_bytes", None)
    size = np.full(count, DEFAULT_REQUEST_BYTES, np.int64) if size is None else size
    counts = fragment_count_batch(proto, size, request_mtu)
    rows = np.flatnonzero(counts)
    if not rows.size:
        return None
    plans = plan_fragments(
        config, nic, src=np.asarray(flows.client_ip, np.uint32)[rows],
        dst=np.asarray(flows.server_ip, np.uint32)[rows],
        four_hash=request_hash[rows], four_hashed=request_hashed[rows],
        four_core=request_core[rows], counts=counts[rows], proto=proto[rows],
        policy=policy[rows], service=service[rows], response=False, rules=rules)
    frag.fill(rows, counts[rows], plans, response=False)
    request_core[rows] = plans.core
    request_hash[rows] = plans.hash
    request_hashed[rows] = plans.hashed
    if not plans.dropped.any():
        return None
    gone = rows[plans.dropped]
    lost = np.zeros(count, dtype=bool)
    lost[gone] = True
    request_core[gone] = plans.received_on[plans.dropped]
    request_hashed[gone] = False
    return lost


@dataclass
class _Ports:
    """The allocation columns of a batch run, filled as allocations are made: the client
    side as sent to the server (``local_ip``/``local_port``: the client's own until a port
    is allocated), ``allocated``/``failed`` (refused), ``table`` (-1) and ``tries``."""

    local_ip: np.ndarray
    local_port: np.ndarray
    allocated: np.ndarray
    failed: np.ndarray
    table: np.ndarray
    tries: np.ndarray

    @classmethod
    def of(cls, client_ip: np.ndarray, client_port: np.ndarray) -> _Ports:
        count = client_ip.size
        return cls(client_ip.copy(), client_port.copy(), np.zeros(count, bool),
                   np.zeros(count, bool), np.full(count, -1, np.int64),
                   np.zeros(count, np.int64))


def _allocate_rows(allocators, rows: np.ndarray, ports: _Ports, *, request_core, server_ip,
                   server_port, client_ip, policy, addresses_only=None) -> None:
    """``allocate_batch`` for ``rows`` (nat and usip rows, in the order the trace allocates
    them) into ``ports``; the allocators keep their tables' state between calls."""
    for name in ("nat", "usip"):
        part = rows[policy[rows] == POLICY_CODE[name]]
        if part.size == 0:
            continue
        result = allocate_batch(
            [a[name] for a in allocators], core=request_core[part],
            server_ip=server_ip[part], server_port=server_port[part],
            client_ip=client_ip[part], keep_client_ip=name == "usip",
            addresses_only=_rows_of(addresses_only, part))
        ok = np.asarray(result.ok, dtype=bool)
        every = bool(ok.all())  # the usual case: no mask to apply
        good = part if every else part[ok]
        for column, values in ((ports.local_ip, result.local_ip),
                               (ports.local_port, result.port),
                               (ports.table, result.table_index),
                               (ports.tries, result.tries)):
            column[good] = values if every else np.asarray(values)[ok]
        ports.allocated[good] = True
        if not every:
            ports.failed[part[~ok]] = True


def _release_rows(allocators, rows: np.ndarray, ports: _Ports, *, request_core, server_ip,
                  server_port, policy, **_) -> None:
    """Free the ports of ``rows``' ended sessions, in the order given (``release_batch``)."""
    for name in ("nat", "usip"):
        part = rows[policy[rows] == POLICY_CODE[name]]
        if part.size:
            release_batch([a[name] for a in allocators], core=request_core[part],
                          local_ip=ports.local_ip[part], table_index=ports.table[part],
                          port=ports.local_port[part], server_ip=server_ip[part],
                          server_port=server_port[part], keep_client_ip=name == "usip")


@dataclass
class _Timing:
    """Per row, what decides when a session ends: ``start`` (µs), ``close`` (code),
    ``hold`` (µs, -1: the system's) and the server's ``latency`` (µs)."""

    config: SystemConfig
    start: np.ndarray
    close: np.ndarray
    hold: np.ndarray
    latency: np.ndarray

    @classmethod
    def of(cls, config: SystemConfig, flows, server_ip, server_port, *, force: bool = False
           ) -> _Timing | None:
        """The rows' timing, or None when ``flows`` has no time columns (unless ``force``).
        ConfigError when the flows start at different times and ``jitter_us`` is set: the
        trace draws link delays from its RNG, which this path cannot follow."""
        if not force and not getattr(flows, "timed", False):
            return None
        if getattr(flows, "timed", False):
            start, close, hold = flows.time_columns()
        else:
            count = len(flows.client_ip)
            start = np.zeros(count, np.int64)
            close = np.full(count, CLOSE_CODE["fin"], np.int8)
            hold = np.full(count, -1, np.int64)
        timing = cls(config, start, close, hold,
                     server_latency_batch(config, server_ip, server_port))
        if timing.staggered and config.jitter_us:
            raise ConfigError("jitter_us", "0 for flows that start at different times on "
                              "the batch path (link delays must be fixed to know when "
                              "sessions end)", config.jitter_us)
        if (start < 0).any():
            raise ConfigError("start_us", "times of 0 or more", int(start[start < 0][0]))
        return timing

    @functools.cached_property
    def staggered(self) -> bool:
        """Whether the flows start at different times (else every port is held at once,
        the concurrent case: no session ends before the last request)."""
        return bool(self.start.size) and int(self.start.min()) != int(self.start.max())

    def ends(self, rows: np.ndarray, verdict: np.ndarray, hops: np.ndarray, *,
             keys: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
        """``(end µs, order keys)`` of the sessions of ``rows`` (their response's
        ``verdict`` codes and forwarding ``hops``), as the trace's clock gives them: the
        request at ``start``, the server ``link_us`` later, its answer after its latency,
        back ``link_us`` later (``a``); delivered then (symmetric) or ``handoff_us`` per hop
        later (handed off), the session ends ``rules.close_delay_batch`` after that; an
        unanswered one at ``rules.unanswered_end_us``.

        The keys (7 rows, for ``np.lexsort`` of ``keys[::-1]``) order sessions that end at
        the same µs as the trace's heap does, (time, push order): an event pushed by an
        earlier-run event runs first, so the order is the lexicographic order of the
        chain of times back to the request (2t+1 per event, 2t for the request, which was
        queued before anything), then the flow's row. ``keys=False``: None instead.
        """
        config = self.config
        link = config.link_us
        start = self.start[rows]
        arrives = start + 2 * link + self.latency[rows]
        handed = verdict == VERDICT_CODE["handed-off"]
        answered = handed | (verdict == VERDICT_CODE["symmetric"])
        delivered = arrives + config.handoff_us * np.asarray(hops, np.int64) * handed
        end = np.where(answered,
                       delivered + close_delay_batch(config, self.close[rows], self.hold[rows]),
                       unanswered_end_us(config, opened_us=start, now_us=arrives))
        if not keys:
            return end, None
        row = np.asarray(rows, np.int64)
        keys = np.stack([
            2 * end + 1,
            2 * np.where(handed, delivered, arrives) + 1,
            2 * np.where(handed, arrives, arrives - link) + 1,
            2 * np.where(handed, arrives - link, start + link) + 1,
            np.where(handed, 2 * (start + link) + 1, 2 * start),
            np.where(handed, 2 * start, row),
            np.where(handed, row, 0)])
        return end, keys


def _response_fate(config: SystemConfig, nic: Nic, rows: np.ndarray, *, ports: _Ports,
                   proto, service, response_counts, request_core, server_ip, server_port,
                   policy, distributor: FlowDistributor | None = None,
                   change: _TableChange | None = None, arrives=None, **_
                   ) -> tuple[np.ndarray, np.ndarray]:
    """``(verdict codes, hops)`` of allocated ``rows``' responses, as the full pass below
    computes them (their port, and the flow distributor's rules when it has some, decide
    where they land; after a table ``change``, the table of the µs each ``arrives``):
    what their session's end needs."""
    if change is not None:
        four_hash, four_hashed, landed = _arrive(
            distributor, change, server_ip[rows], ports.local_ip[rows],
            server_port[rows].astype(np.uint32), ports.local_port[rows], proto[rows],
            arrives)[:3]
    else:
        steer = nic.steer_batch if distributor is None else distributor.arrive_batch
        four_hash, four_hashed, landed = steer(
            server_ip[rows], ports.local_ip[rows], server_port[rows].astype(np.uint32),
            ports.local_port[rows], proto[rows])[:3]
    lost = np.zeros(rows.size, bool)
    if response_counts is not None:
        counts = response_counts[rows]
        some = np.flatnonzero(counts)
        if some.size:
            at = rows[some]
            plans = plan_fragments(
                config, nic, src=server_ip[at], dst=ports.local_ip[at],
                four_hash=four_hash[some], four_hashed=four_hashed[some],
                four_core=landed[some], counts=counts[some],
                proto=proto[at], policy=policy[at], service=service[at], response=True,
                rules={}, owner=request_core[at])
            landed[some] = plans.core
            lost[some] = plans.dropped
    owner = request_core[rows]
    verdict, _, hops = response_verdict_batch(
        request_core=owner, response_core=np.where(lost, owner, landed),
        route=config.handoff if config.correct_core_check else "none", cores=config.cores)
    verdict[lost] = VERDICT_CODE["asymmetric"]
    return verdict, hops


def _allocate_timed(config: SystemConfig, nic: Nic, allocators, rows: np.ndarray,
                    ports: _Ports, timing: _Timing, *, fragments: bool,
                    distributor: FlowDistributor | None, proto, service, response_counts,
                    **columns
                    ) -> tuple[np.ndarray, list[int] | None]:
    """Allocate ``rows`` in time (``_allocate_stacked`` where it applies and the epochs
    would be many, else ``_allocate_in_time``): per core the most ports held at once, and
    the capacity of the tables used when the tables do not record it (None: they do).

    An epoch costs about a millisecond per core whatever its size, a flow about a
    microsecond in an epoch and three stacked; the flows start in at most as many epochs
    as distinct moments, so few moments (bursts) with a thousand flows or more per core
    each go by epochs. A flow distributor (rules, an RSS-unaware NIC) steers each tuple
    the same way whenever it arrives and takes no virtual time (the trace's ``_steer``), so
    it changes only where responses land (``_response_fate``)."""
    moments = np.count_nonzero(np.diff(np.sort(timing.start[rows]))) + 1
    few = moments * config.cores * 1000 <= rows.size
    if not fragments and not config.wrong_direction and not few:
        stacked = _allocate_stacked(config, nic, allocators, rows, ports, timing,
                                    proto=proto, distributor=distributor, **columns)
        if stacked is not None:
            return stacked

    def fate(part):
        return _response_fate(config, nic, part, proto=proto, service=service,
                              response_counts=response_counts, ports=ports,
                              distributor=distributor, **columns)
    return _allocate_in_time(config, allocators, rows, ports, timing, fate, **columns), None


def _allocate_stacked(config: SystemConfig, nic: Nic, allocators, rows: np.ndarray,
                      ports: _Ports, timing: _Timing, *, proto, request_core, server_ip,
                      server_port, client_ip, policy, addresses_only=None,
                      distributor: FlowDistributor | None = None
                      ) -> tuple[np.ndarray, list[int]] | None:
    """``_allocate_in_time``'s answer without epochs, where it can be had at once
    (``allocate_stacked``): one allocating policy, one table per IP, ``solve``, every row
    served by its first choice and every response home (each session then ends when
    ``_Timing.ends`` says for a symmetric one; checked after). Returns per core the most
    ports held at once and the capacity of the tables used, or None (nothing changed)
    when the epochs must do it."""
    names = [name for name in ("nat", "usip") if (policy[rows] == POLICY_CODE[name]).any()]
    # nat's IP choice (addresses-only hashing) tries IPs in its own order: epochs
    if addresses_only is not None or len(names) != 1 or (
            names[0] == "usip" and config.tables_per_ip != 1) or rows.size >= 1 << 24:
        return None
    count = rows.size
    start = timing.start[rows]
    index = np.arange(count)
    if int(start.max()) < 1 << 39:  # the trace's request order: (start, row) packed in
        # one int64 sorted by value, much cheaper than a stable argsort (count < 2**24)
        by_start = np.sort(start << 24 | index) & ((1 << 24) - 1)
    else:
        by_start = np.argsort(start, kind="stable")
    rank = np.empty(count, np.int64)
    rank[by_start] = index
    end, _ = timing.ends(rows, np.full(count, VERDICT_CODE["symmetric"], np.int8),
                         np.zeros(count, np.int64), keys=False)
    if int(end.max()) >= 1 << 32:
        return None
    latency = timing.latency[rows]
    if (latency == latency[0]).all():
        tie = rank  # ends at one µs: in request order (``_Timing.ends``)
        by_tie = by_start
    else:  # by the response's arrival, then request order
        by_tie = np.lexsort((rank, start + latency))
        tie = np.empty(count, np.int64)
        tie[by_tie] = index
    take_key = (start * 2 << 24) | rank  # a request before a session ending that µs
    free_key = ((end * 2 + 1) << 24) | tie
    # keys are distinct by their low 24 bits (the tie), so the frees' order is the
    # sorted keys' ties mapped back to rows: a sort of values, no argsort
    free_order = by_tie[np.sort(free_key) & ((1 << 24) - 1)]
    name = names[0]
    got = allocate_stacked([a[name] for a in allocators], core=request_core[rows],
                           server_ip=server_ip[rows], server_port=server_port[rows],
                           client_ip=client_ip[rows], keep_client_ip=name == "usip",
                           take_key=take_key, free_key=free_key, take_order=by_start,
                           free_order=free_order)
    if got is None:
        return None
    got, peak = got
    steer = nic.steer_batch if distributor is None else distributor.arrive_batch
    landed = steer(server_ip[rows], got.local_ip, server_port[rows].astype(np.uint32),
                   got.port.astype(np.uint32), proto[rows])[2]
    if (landed != request_core[rows]).any():
        return None  # a response would not come home: its session ends otherwise
    ports.local_ip[rows] = got.local_ip
    ports.local_port[rows] = got.port
    ports.table[rows] = got.table_index
    ports.tries[rows] = got.tries
    ports.allocated[rows] = True
    core = request_core[rows]
    # the tables used: usip's are the core's shared ones, keyed by index alone
    table_ip = 0 if name == "usip" else got.local_ip.astype(np.int64) << 8
    tables = np.unique((core << 40) | table_ip | got.table_index)
    used = np.bincount((tables >> 40).astype(np.int64), minlength=config.cores)
    low, high = config.port_range
    return peak, [int(u) * (high - low + 1) for u in used]


def _allocate_in_time(config: SystemConfig, allocators, rows: np.ndarray, ports: _Ports,
                      timing: _Timing, fate, **columns) -> np.ndarray:
    """Allocate ``rows`` in the trace's order (start time, then row), freeing each
    session's port when it ends, exactly as the trace does; returns per core the most
    ports held at once (at the end of an epoch: no port comes back within one).

    Epochs, each one ``_allocate_rows`` call: an epoch runs from the first request not yet
    allocated (at ``s0``) up to the first moment a port may come back — the earliest end of
    the sessions still open, or ``s0`` plus the shortest possible session (two links and
    the fastest server), since the epoch's own sessions cannot end sooner. Requests at
    the very moment a session ends are allocated before it frees its port (the trace
    queued them first). Between epochs the sessions that ended go back, in the trace's
    order (``_Timing.ends``' keys). Sessions are kept in chunks (one per epoch, in that
    order) under a heap of their next end, so a boundary touches only the chunks due and
    sorts only when several are.
    """
    order = rows[np.argsort(timing.start[rows], kind="stable")]  # rows ascend: ties by row
    starts = timing.start[order]
    core = columns["request_core"]
    held_now = np.zeros(config.cores, np.int64)
    peak = held_now.copy()
    count = timing.start.size
    # each held row's response verdict and hops, to rebuild its keys when chunks merge
    fates = np.zeros(count, np.int8), np.zeros(count, np.int64)
    floor = 2 * config.link_us + (int(timing.latency[rows].min()) if rows.size else 0)
    chunks: list[list] = []  # [rows by end, their ends, cursor]
    due_heap: list[tuple[int, int]] = []  # (next end, chunk)
    position = 0
    while position < order.size:
        s0 = int(starts[position])
        ended = _ended_before(s0, chunks, due_heap, timing, fates)
        if ended is not None:
            _release_rows(allocators, ended, ports, **columns)
            held_now -= np.bincount(core[ended], minlength=config.cores)
        limit = s0 + floor
        if due_heap:
            limit = min(limit, due_heap[0][0])
        stop = int(np.searchsorted(starts, limit, side="right"))
        epoch = order[position:stop]
        _allocate_rows(allocators, epoch, ports, **columns)
        held = epoch[ports.allocated[epoch]]
        # no port comes back within an epoch: its end is when most are held
        held_now += np.bincount(core[held], minlength=config.cores)
        np.maximum(peak, held_now, out=peak)
        if held.size:
            verdict, hops = fate(held)
            fates[0][held], fates[1][held] = verdict, hops
            latency = timing.latency[held]
            simple = ((verdict != VERDICT_CODE["handed-off"]).all()
                      and (latency == latency[0]).all())
            end, chain = timing.ends(held, verdict, hops, keys=not simple)
            # by end, ties in the trace's order: with no forwarding and one server latency
            # the chain of times is the end and then the start, and ``held`` is in start
            # order already
            by_end = np.argsort(end, kind="stable") if simple else np.lexsort(chain[::-1])
            chunks.append([held[by_end], end[by_end], 0])
            heapq.heappush(due_heap, (int(end[by_end[0]]), len(chunks) - 1))
        position = stop
    return peak


def _timing_and_check(config: SystemConfig, flows, server_ip, server_port,
                      change: _TableChange | None
                      ) -> tuple[_Timing | None, _CheckColumns | None]:
    """``(_Timing.of, None)``; with a table ``change``, every run's timing (its own copy
    of the start column: a forwarded request is processed later, so its session's times
    move) and empty correct-core check columns."""
    if change is None:
        return _Timing.of(config, flows, server_ip, server_port), None
    timing = _Timing.of(config, flows, server_ip, server_port, force=True)
    return (dataclasses.replace(timing, start=timing.start.copy()),
            _CheckColumns.empty(timing.start.size))


def _allocate_without_change(config: SystemConfig, nic: Nic, allocators, rows: np.ndarray,
                             ports: _Ports, timing: _Timing | None, **options
                             ) -> tuple[np.ndarray, list[int] | None]:
    """Allocate ``rows`` in time (``_allocate_timed``) when the flows start at different
    times, else all at once: ``(per core the most ports held at once, the capacity of the
    tables used or None)``."""
    if timing is not None and timing.staggered:
        return _allocate_timed(config, nic, allocators, rows, ports, timing, **options)
    columns = {name: options[name] for name in ("request_core", "server_ip", "server_port",
                                                "client_ip", "policy", "addresses_only")}
    _allocate_rows(allocators, rows, ports, **columns)
    # concurrent: every port is held at once, before the first session ends
    return np.bincount(columns["request_core"][ports.allocated],
                       minlength=config.cores), None


def _allocate_with_change(config: SystemConfig, nic: Nic, allocators, rows: np.ndarray,
                          ports: _Ports, timing: _Timing, change: _TableChange,
                          check: _CheckColumns, **columns) -> np.ndarray:
    """Allocate ``rows`` with a table change: across it in time when the flows start at
    different times (``_allocate_across_change``), else all at once (concurrent: every
    port held before any session ends) by the table of their moment; the allocators
    follow the new table by the end either way, as the trace's control core's do.
    Returns per core the most ports held at once."""
    if timing.staggered:
        peak = _allocate_across_change(config, nic, allocators, rows, ports, timing, change,
                                       check, **columns)
    else:
        if timing.start.size and timing.start[0] >= change.at_us:
            change.retarget(config, allocators)  # every request comes after the change
        _allocate_rows(allocators, rows, ports, **{name: columns[name] for name in (
            "request_core", "server_ip", "server_port", "client_ip", "policy",
            "addresses_only")})
        peak = np.bincount(columns["request_core"][ports.allocated],
                           minlength=config.cores)
    if not change.retargeted:
        change.retarget(config, allocators)  # the trace's clock reaches the change
    return peak


def _allocate_across_change(config: SystemConfig, nic: Nic, allocators, rows: np.ndarray,
                            ports: _Ports, timing: _Timing, change: _TableChange,
                            check: _CheckColumns, *, distributor, proto, service,
                            response_counts, flows, **columns) -> np.ndarray:
    """``_allocate_in_time`` across ``system.nic.table_change``: no epoch spans the
    change's ``at_us``; the allocators follow the new table from then on (the control
    core's ``reprogram``); and a request whose tuple lands on a core other than the one
    whose PCB holds an open session of it meets the correct-core check, as the trace's
    ``_request_owner`` (seed L650-L672) — forwarded to that owner, which processes it the
    route's hops times ``handoff_us`` later (``check.delay``, added to the row's start in
    ``timing``), or processed where it landed (the check off, or no route). Returns per
    core the most ports held at once. ``request_core`` is updated in place.

    The trace's order is kept: at one µs the requests queued at the start come first (in
    flow order, each checked as it comes), then forwarded requests (in the order they
    were forwarded), then closes scheduled no earlier than those forwards
    (``_forwarded_at``). ConfigError when a forwarded request is processed the very µs a
    session whose close was scheduled before the forward ends."""
    core = columns["request_core"]
    order = rows[np.argsort(timing.start[rows], kind="stable")]
    starts = timing.start[order].copy()
    split = _split_tuples(flows, core)
    group = _tuple_groups(flows) if split.any() else None
    checked_at = np.flatnonzero(split[order])  # positions of requests to check
    pcb: dict[int, dict[int, int]] = {}  # tuple → core → its latest session's row
    ended = np.full(timing.start.size, -1, np.int64)  # each held session's end (µs)
    scheduled = ended.copy()  # and when that end was scheduled (``_forwarded_at``)
    held_now = np.zeros(config.cores, np.int64)
    peak = held_now.copy()
    count = timing.start.size
    fates = np.zeros(count, np.int8), np.zeros(count, np.int64)
    link = config.link_us
    floor = 2 * link + (int(timing.latency[rows].min()) if rows.size else 0)
    forward = config.correct_core_check and config.handoff != "none"
    chunks: list[list] = []
    due_heap: list[tuple[int, int]] = []
    later: list[tuple[int, int, int]] = []  # forwarded: (processed µs, forwarded µs, row)
    position = cursor = 0
    while position < order.size or later:
        plain = int(starts[position]) if position < order.size else None
        forwarded = bool(later) and (plain is None or later[0][0] < plain)
        s0 = later[0][0] if forwarded else plain
        gone = _ended_before(s0, chunks, due_heap, timing, fates)
        if gone is not None:
            _release_rows(allocators, gone, ports, **columns)
            held_now -= np.bincount(core[gone], minlength=config.cores)
        if not change.retargeted and s0 >= change.at_us:
            change.retarget(config, allocators)
        if forwarded:
            epoch = _forwarded_at(config, s0, later, due_heap, chunks, scheduled)
        else:
            if cursor < checked_at.size and checked_at[cursor] == position:
                cursor += 1
                row = int(order[position])
                delay = _check_request(config, check, pcb, ended, int(group[row]), row,
                                       s0, core, forward)
                if delay is not None:  # forwarded: its owner processes it later
                    timing.start[row] += delay
                    heapq.heappush(later, (s0 + delay, s0, row))
                    position += 1
                    continue
            # up to the first moment a port may come back or a forwarded request is
            # processed (the requests of that µs come before it: queued first)
            limit = min([s0 + floor] + [heap[0][0] for heap in (due_heap, later) if heap])
            stop = int(np.searchsorted(starts, limit, side="right"))
            if s0 < change.at_us:  # the change comes before the requests of its µs
                stop = min(stop, int(np.searchsorted(starts, change.at_us, side="left")))
            stop = min(stop, int(checked_at[cursor]) if cursor < checked_at.size else stop)
            epoch = order[position:stop]
            position = stop
        _allocate_rows(allocators, epoch, ports, **columns)
        held = epoch[ports.allocated[epoch]]
        held_now += np.bincount(core[held], minlength=config.cores)
        np.maximum(peak, held_now, out=peak)
        if held.size:
            verdict, hops = _response_fate(
                config, nic, held, proto=proto, service=service,
                response_counts=response_counts, ports=ports, distributor=distributor,
                change=change, arrives=timing.start[held] + 2 * link
                + timing.latency[held], **columns)
            fates[0][held], fates[1][held] = verdict, hops
            end, chain = timing.ends(held, verdict, hops)
            ended[held], scheduled[held] = end, chain[1] // 2  # keys: 2 t + 1
            if group is not None:
                for row in held[split[held]].tolist():
                    pcb.setdefault(int(group[row]), {})[int(core[row])] = row
            by_end = np.lexsort(chain[::-1])
            chunks.append([held[by_end], end[by_end], 0])
            heapq.heappush(due_heap, (int(end[by_end[0]]), len(chunks) - 1))
    return peak


def _forwarded_at(config: SystemConfig, s0: int, later: list, due_heap: list, chunks: list,
                  scheduled: np.ndarray) -> np.ndarray:
    """The forwarded requests processed at ``s0``, in the order they were forwarded, taken
    off ``later``. A session that ends that µs too closes after them when its end was
    scheduled (``scheduled``: the µs its response was delivered, or arrived unanswered)
    no earlier than they were forwarded (at one µs the requests, queued first, forward
    before a delivery schedules a close): the epochs' order. ConfigError otherwise (the
    close would free its port first)."""
    epoch, forwarded = [], 0
    while later and later[0][0] == s0:
        _, forwarded, row = heapq.heappop(later)
        epoch.append(row)
    for end, chunk in due_heap:
        if end != s0:
            continue
        chunk_rows, chunk_ends, at = chunks[chunk]
        stop = int(np.searchsorted(chunk_ends, s0, side="right"))
        if (scheduled[chunk_rows[at:stop]] < forwarded).any():
            raise ConfigError("handoff_us", "a forwarded request not processed the µs a "
                              "session scheduled before it was forwarded ends, on the "
                              "batch path: use --trace", config.handoff_us)
    return np.asarray(epoch, np.int64)


def _ended_before(s0: int, chunks: list, due_heap: list, timing: _Timing, fates
                  ) -> np.ndarray | None:
    """The rows of the held sessions that end before ``s0``, in the trace's order (the
    chunks due under ``due_heap``, merged by ``_Timing.ends``' keys), taken out of the
    chunks; None when none does."""
    due = []
    while due_heap and due_heap[0][0] < s0:
        _, chunk = heapq.heappop(due_heap)
        chunk_rows, chunk_ends, at = chunks[chunk]
        stop = int(np.searchsorted(chunk_ends, s0, side="left"))
        due.append(chunk_rows[at:stop])
        if stop < chunk_rows.size:
            chunks[chunk][2] = stop
            heapq.heappush(due_heap, (int(chunk_ends[stop]), chunk))
        else:
            chunks[chunk] = None  # all ended: let it go
    if not due:
        return None
    # each chunk is in the trace's order already; several are merged by their keys
    gone = due[0] if len(due) == 1 else np.concatenate(due)
    if len(due) > 1:
        _, keys = timing.ends(gone, fates[0][gone], fates[1][gone])
        gone = gone[np.lexsort(keys[::-1])]
    return gone


def _check_request(config: SystemConfig, check: _CheckColumns, pcb: dict, ended, group: int,
                   row: int, now_us: int, core: np.ndarray, forward: bool) -> int | None:
    """The trace's ``_request_owner`` for row ``row``'s request at ``now_us``: the lowest
    core other than the one it landed on whose PCB's latest session of the tuple is open
    (a session is still open to a request of the µs it ends: requests were queued first),
    none when its own core holds one. Fills ``check``; returns the forward's delay (µs),
    or None when processed where it landed."""
    landed = int(core[row])
    cores = sorted(c for c, held in pcb.get(group, {}).items() if ended[held] >= now_us)
    if not cores or landed in cores:
        return None
    owner = cores[0]
    check.landed[row], check.owner[row] = landed, owner
    if not forward:
        check.code[row] = CHECK_NAMES.index("processed")
        return None
    copies, hops = forwarding_cost(config.handoff, from_core=landed, to_core=owner,
                                   cores=config.cores)
    check.code[row] = CHECK_NAMES.index("forwarded")
    check.copies[row] = copies
    check.delay[row] = config.handoff_us * hops
    core[row] = owner
    return int(check.delay[row])


def _repeat_requests(config: SystemConfig, nic: Nic, flows, frag: FragmentColumns,
                     rules: dict[str, int], timing: _Timing | None, verdict, hops,
                     opened: np.ndarray, *, request_core, policy, service, server_ip,
                     server_port) -> None:
    """Give a fragmented request whose tuple the last earlier flow of that tuple (in the
    trace's order) still holds open the PCB hit the trace finds (``System.session_facts``;
    ``decide_batch``'s ``repeat``: for TCP, Assemble rather than Bridge): its action, rule
    and copies in ``frag`` change where that changes the decision. A session is open at a
    request that comes the µs it ends (the request was queued first). IPv6 rows (their
    addresses are not in the IPv4 columns) are left out."""
    if config.fragment_mode == FragmentMode.MS_2TUPLE.value or not (
            frag.request_fragments.any()):
        return  # no action is decided, or no request is fragmented
    timing = timing or _Timing.of(config, flows, server_ip, server_port, force=True)
    start = timing.start
    count = start.size
    end, _ = timing.ends(np.arange(count), verdict, hops, keys=False)
    if getattr(flows, "is_v6", None) is not None:
        opened = opened & ~flows.is_v6
    client = (np.asarray(flows.client_ip, np.uint64) << np.uint64(16)) | np.asarray(
        flows.client_port, np.uint64)
    server = ((np.asarray(flows.server_ip, np.uint64) << np.uint64(24))
              | (np.asarray(flows.server_port, np.uint64) << np.uint64(8))
              | np.asarray(flows.proto, np.uint64))
    order = np.lexsort((np.arange(count), start, server, client))
    new = np.r_[True, (client[order][1:] != client[order][:-1])
                | (server[order][1:] != server[order][:-1])]
    if new.all():
        return  # no tuple repeats
    position = np.arange(count)
    group = np.maximum.accumulate(np.where(new, position, 0))
    last = np.maximum.accumulate(np.where(opened[order], position, -1))
    before = np.r_[-1, last[:-1]]
    hit = before >= group
    hit[hit] = end[order[before[hit]]] >= start[order[hit]]
    repeat = np.zeros(count, bool)
    repeat[order[hit]] = True
    rows = np.flatnonzero(repeat & (frag.request_fragments > 0) & ~frag.request_dropped)
    if getattr(flows, "is_v6", None) is not None:
        rows = rows[~flows.is_v6[rows]]
    if rows.size == 0:
        return
    proto = np.asarray(flows.proto, np.uint8)[rows]
    action, rule = decide_batch(config, proto, policy[rows], service[rows], response=False,
                                rules=rules, repeat=True)
    mode = config.fragment_mode
    assemble = ACTION_NAMES.index(ASSEMBLE)
    fragments = frag.request_fragments[rows]
    received_on = frag.request_received_on[rows]
    core = request_core[rows]
    old_messages, old_copies = fragment_cost_batch(
        mode, fragments, frag.request_action[rows] == assemble, received_on, core)
    messages, copies = fragment_cost_batch(mode, fragments, action == assemble, received_on,
                                           core)
    frag.messages[rows] += messages - old_messages
    frag.copies[rows] += copies - old_copies
    frag.request_action[rows] = action
    frag.request_rule[rows] = rule


def check_batch_config(config: SystemConfig) -> None:
    """ConfigError for a setting the batch path cannot run with an indirection-table
    change (``table_change``): link jitter (when a response arrives, before or after the
    change, must be known) and fragments (the fragment steerer's 2-tuple cores are not
    followed across the change here)."""
    if config.table_change is None:
        return
    if config.jitter_us:
        raise ConfigError("jitter_us", "0 with an indirection-table change on the batch "
                          "path (whether a response arrives before or after the change "
                          "must be known): use --trace", config.jitter_us)
    if config.fragmenting():
        raise ConfigError("table_change", "no indirection-table change with fragmenting "
                          "servers or services on the batch path: use --trace",
                          config.table_change)


@dataclass
class _TableChange:
    """``system.nic.table_change`` on the batch path: from ``at_us`` on, packets are
    steered by ``nic`` (the new table) and its ``distributor``; ``table`` is the new
    indirection table, which the port allocators follow (``ControlCore.reprogram``)."""

    at_us: int
    nic: Nic
    distributor: FlowDistributor
    #: whether ``retarget`` ran (the allocators follow the new table)
    retargeted: bool = False

    @classmethod
    def of(cls, config: SystemConfig) -> _TableChange | None:
        table = config.build_table_change()
        if table is None:
            return None
        nic = config.build_nic()
        nic.table = table
        return cls(int(config.table_change_at_us), nic, config.build_distributor(nic))

    def retarget(self, config: SystemConfig, allocators) -> None:
        """Install the new table's port maps in ``allocators`` (in place), keeping their
        taken ports, as the trace's control core does at ``at_us``."""
        fresh = build_allocators(config, self.nic.table)
        for mine, theirs in zip(allocators, fresh, strict=True):
            for name in theirs:
                mine[name] = retarget(mine[name], theirs[name])
        self.retargeted = True


def _tuple_groups(flows) -> np.ndarray:
    """Per row, the index of its request tuple among the distinct ones (IPv4 columns)."""
    client = (np.asarray(flows.client_ip, np.uint64) << np.uint64(16)) | np.asarray(
        flows.client_port, np.uint64)
    server = ((np.asarray(flows.server_ip, np.uint64) << np.uint64(24))
              | (np.asarray(flows.server_port, np.uint64) << np.uint64(8))
              | np.asarray(flows.proto, np.uint64))
    _, inverse = np.unique(np.stack([client, server], axis=1), axis=0, return_inverse=True)
    return inverse.ravel()


def _split_tuples(flows, landed: np.ndarray) -> np.ndarray:
    """Per row, whether its request tuple's flows land on more than one core (before and
    after a table change): only those can meet the correct-core check."""
    group = _tuple_groups(flows)
    size = int(group.max()) + 1 if group.size else 0
    low = np.full(size, np.iinfo(np.int64).max, np.int64)
    high = np.full(size, -1, np.int64)
    np.minimum.at(low, group, landed)
    np.maximum.at(high, group, landed)
    return low[group] != high[group]


def _check_repeats_across(config: SystemConfig, flows, policy, landed, skip) -> None:
    """ConfigError for a ``transparent`` request tuple that lands on two cores across the
    table change: its repeated sessions share one response tuple, whose owner the trace's
    directory and per-core look-ups decide session by session, not modelled here."""
    split = _split_tuples(flows, landed) & (policy == POLICY_CODE["transparent"])
    if skip is not None:
        split &= ~skip
    if split.any():
        raise ConfigError("table_change", "no transparent request tuple repeated across "
                          "an indirection-table change on the batch path: use --trace",
                          f"flow row {int(np.flatnonzero(split)[0])}")


def _arrive(distributor: FlowDistributor, change: _TableChange | None, src, dst, sport,
            dport, proto, when=None) -> ArrivalBatch:
    """``FlowDistributor.arrive_batch`` of packets that reach the NIC at ``when`` (µs per
    row): those at or after a table change's ``at_us`` by the new table. The trace
    schedules the change before any packet, so a packet of that very µs sees it."""
    arrival = distributor.arrive_batch(src, dst, sport, dport, proto)
    if change is None or when is None:
        return arrival
    later = np.asarray(when) >= change.at_us
    if not later.any():
        return arrival
    after = change.distributor.arrive_batch(src, dst, sport, dport, proto)
    return ArrivalBatch(*(np.where(later, new, old) for old, new in
                          zip(arrival, after, strict=True)))


def _response_counts(config: SystemConfig, flows, proto, *, server_ip, server_port,
                     service) -> np.ndarray | None:
    """How many fragments each row's response comes in (None: no server or service has
    an MTU, so none is fragmented)."""
    if not config.fragmenting():
        return None
    column = getattr(flows, "response_bytes", None)
    size, mtu = response_size_and_mtu_batch(
        config, server_ip=server_ip, server_port=server_port, service=service,
        flow_bytes=np.full(len(flows.client_ip), DEFAULT_RESPONSE_BYTES) if column is None
        else column)
    return fragment_count_batch(proto, size, mtu)


def run_batch(config: SystemConfig, flows, *, ids: np.ndarray | None = None,
              request_mtu=None) -> BatchResult:
    """Run every flow of ``flows`` (``FlowArrays`` or any object with the uint32/uint16/
    uint8 columns ``client_ip``, ``client_port``, ``server_ip``, ``server_port``,
    ``proto``) through a fresh system built from ``config``.

    ``request_mtu`` — per flow, the client link's IP MTU in bytes (0: none), as
    ``Flow.request_mtu``; ``flow_request_mtus`` builds it from trace flows.

    Raises ConfigError (and the key/table errors) for a bad configuration or an MTU
    below the minimum (``rules.MIN_MTU``).
    """
    config.check()
    check_batch_config(config)
    nic = config.build_nic()
    change = _TableChange.of(config)
    count = len(flows.client_ip)
    ids = np.arange(count, dtype=np.int64) if ids is None else np.asarray(ids, np.int64)
    client_ip = np.asarray(flows.client_ip, dtype=np.uint32)
    client_port = np.asarray(flows.client_port, dtype=np.uint32)
    proto = np.asarray(flows.proto, dtype=np.uint8)
    distributor, request_arrival = _distribute_requests(config, nic, flows, request_mtu,
                                                        change)
    request_hash, request_hashed, request_core = request_arrival[:3]
    # the correct-core check may move a request to its owner (the arrival keeps where the
    # NIC and the distributor sent it)
    request_core = request_core.copy()
    router = Router(config)
    routes = router.route_batch(flows.server_ip, flows.server_port, proto,
                                request_hash, request_hashed)
    policy, server_ip, server_port, service = (routes.policy, routes.server_ip,
                                               routes.server_port, routes.service)
    # IPv6 rows (None: none) route by their 16-byte addresses; nat and usip cannot take
    # them (``unserved``: refused with the reason, ``rules.not_served``)
    v6 = _v6_rows(flows)
    server_ip6, unserved = _route_v6(config, router, flows, v6, routes, request_hash,
                                     request_hashed, request_mtu)

    frag = None
    lost = None  # rows whose request never reached a packet engine
    if request_mtu is not None or config.fragmenting():
        frag = FragmentColumns.empty(config, count)
        rules: dict[str, int] = {}
    if request_mtu is not None:
        request_hash, request_hashed = request_hash.copy(), request_hashed.copy()
        lost = _fragment_requests(config, nic, flows, np.asarray(request_mtu, np.int64),
                                  frag, rules, request_hash=request_hash,
                                  request_hashed=request_hashed, request_core=request_core,
                                  policy=policy, service=service)

    allocators = build_allocators(config, nic.table)
    skip = lost if unserved is None else unserved if lost is None else lost | unserved
    ports = _Ports.of(client_ip, client_port)
    local_ip, local_port = ports.local_ip, ports.local_port
    allocated, failed, table, tries = ports.allocated, ports.failed, ports.table, ports.tries
    response_counts = _response_counts(config, flows, proto, server_ip=server_ip,
                                       server_port=server_port, service=service)
    timing, check = _timing_and_check(config, flows, server_ip, server_port, change)
    # responses the NIC hashes on their addresses alone: nat chooses its IP for them
    addresses_only = _addresses_only(nic, proto)
    columns = dict(request_core=request_core, server_ip=server_ip, server_port=server_port,
                   client_ip=client_ip, policy=policy, addresses_only=addresses_only)
    wanted = (policy == POLICY_CODE["nat"]) | (policy == POLICY_CODE["usip"])
    rows = np.flatnonzero(wanted if skip is None else wanted & ~skip)
    capacity = None  # the used tables' capacity, when no table records it
    if change is not None:
        _check_repeats_across(config, flows, policy, request_core, skip)
        peak = _allocate_with_change(
            config, nic, allocators, rows, ports, timing, change, check,
            distributor=distributor, proto=proto, service=service,
            response_counts=response_counts, flows=flows, **columns)
    else:
        peak, capacity = _allocate_without_change(
            config, nic, allocators, rows, ports, timing, fragments=request_mtu is not None
            or config.fragmenting(), distributor=distributor, proto=proto,
            service=service, response_counts=response_counts, **columns)

    failed = failed if unserved is None else failed | unserved
    opened = ~failed if lost is None else ~(failed | lost)  # rows that hold a session
    response_arrival = (nic.steer_batch if distributor is None else functools.partial(
        _arrive, distributor, change))(
        server_ip, local_ip, server_port.astype(np.uint32), local_port, proto,
        # after a table change: steered by the table of the moment it arrives
        *(() if change is None else (timing.start + 2 * config.link_us + timing.latency,)))
    response_hash, response_hashed, response_core = response_arrival[:3]
    if v6 is not None:  # the client side is the client's own (transparent)
        for column, part in zip((response_hash, response_hashed, response_core),
                                nic.steer_ipv6_batch(server_ip6[v6], flows.client_ip6[v6],
                                                     server_port[v6].astype(np.uint32),
                                                     local_port[v6], proto[v6]), strict=True):
            column[v6] = part
    steered = None if distributor is None else _distributor_columns(
        config, distributor, request_arrival, response_arrival, answered=~failed,
        check=check)
    failed_or_lost = failed if lost is None else failed | lost
    if config.fragmenting():
        counts = response_counts.copy()
        counts[failed_or_lost] = 0
        counts[_NO_ROWS if v6 is None else v6] = 0  # none fragments (_route_v6 checks)
        rows = np.flatnonzero(counts)
        if rows.size:
            plans = plan_fragments(
                config, nic, src=server_ip[rows], dst=local_ip[rows],
                four_hash=response_hash[rows], four_hashed=response_hashed[rows],
                four_core=response_core[rows], counts=counts[rows], proto=proto[rows],
                policy=policy[rows], service=service[rows], response=True, rules=rules,
                owner=request_core[rows])
            frag.fill(rows, counts[rows], plans, response=True)
            response_core[rows] = np.where(plans.dropped, -1, plans.core)
            response_hash[rows] = plans.hash
            response_hashed[rows] = plans.hashed & ~plans.dropped
            if plans.dropped.any():
                lost = np.zeros(count, dtype=bool) if lost is None else lost
                lost[rows[plans.dropped]] = True
                failed_or_lost = failed | lost
    response_core[failed_or_lost] = -1
    verdict, copies, hops = response_verdict_batch(
        request_core=request_core, response_core=np.where(failed_or_lost, request_core,
                                                          response_core),
        route=config.handoff if config.correct_core_check else "none", cores=config.cores)
    verdict[failed] = VERDICT_CODE["refused"]
    if lost is not None:
        verdict[lost] = VERDICT_CODE["asymmetric"]  # lost in reassembly

    if frag is not None:
        _repeat_requests(config, nic, flows, frag, rules, timing, verdict, hops, opened,
                         request_core=request_core, policy=policy, service=service,
                         server_ip=server_ip, server_port=server_port)
    hashes = np.concatenate([request_hash[request_hashed],
                             response_hash[response_hashed & ~failed_or_lost]])
    if frag is not None:
        frag.rules = list(rules)  # rule texts in index order
    port_map = allocators[0]["nat"].port_map
    capacity = capacity or [port_capacity(a) for a in allocators]
    summary = summarize(cores=config.cores, request_core=request_core,
                        response_core=response_core, verdict=verdict, copies=copies,
                        hops=hops, hashes=hashes,
                        # every session has ended by the end of the run (as in the trace)
                        occupancy=[0.0] * config.cores,
                        occupancy_peak=[int(p) / c if c else 0.0
                                        for p, c in zip(peak, capacity, strict=True)],
                        key=str(nic.key), port_map=port_steering_text(config, port_map),
                        fragment_figures=None if frag is None else frag.figures(),
                        not_served=_not_served_counts(policy, unserved),
                        steering_figures=None if steered is None else steered.figures(),
                        ip_choice=_ip_choice(addresses_only, allocated, policy))
    return BatchResult(ids, flows, policy, request_core, server_ip, server_port, local_ip,
                       local_port, allocated, table, tries, response_core, verdict, copies,
                       summary, config.handoff, frag, request_hash, request_hashed, hops,
                       None if v6 is None else flows.is_v6, server_ip6, steered,
                       config.correct_core_check, addresses_only)

def _distribute_requests(config: SystemConfig, nic: Nic, flows, request_mtu,
                         change: _TableChange | None = None):
    """``(distributor or None, arrival)``: the requests through the NIC, and the flow
    distributor when the scenario has one (rules, an RSS-unaware NIC) or a table change
    (its columns carry the correct-core check); ``arrival`` is ``Nic.steer_batch``'s
    triple or ``FlowDistributor.arrive_batch``'s columns, a request that arrives at or
    after the change steered by the new table."""
    if not config.distributes() and change is None:
        return None, steer_flows(nic, flows)
    what = ("distributor rules or an RSS-unaware NIC" if config.distributes()
            else "an indirection-table change")
    v6 = _v6_rows(flows)
    if v6 is not None:
        raise TrafficError(f"flows[{int(v6[0])}]", f"IPv4 flows on the batch path with "
                           f"{what} (its columns are IPv4): use --trace",
                           f"{v6.size} IPv6 flows")
    if request_mtu is not None and np.any(np.asarray(request_mtu)):
        raise ConfigError("request_mtu", f"no request MTU with {what} on the batch path "
                          "(fragments do not go through the distributor, nor across the "
                          "change, yet): use --trace", "an MTU")
    distributor = config.build_distributor(nic)
    start = flows.time_columns()[0] if getattr(flows, "timed", False) else None
    arrival = _arrive(
        distributor, change, np.asarray(flows.client_ip, np.uint32),
        np.asarray(flows.server_ip, np.uint32), np.asarray(flows.client_port, np.uint32),
        np.asarray(flows.server_port, np.uint32), np.asarray(flows.proto, np.uint8),
        np.zeros(len(flows.client_ip), np.int64) if start is None else start)
    return distributor, arrival


def _distributor_columns(config: SystemConfig, distributor: FlowDistributor, request,
                         response, *, answered, check: _CheckColumns | None = None
                         ) -> DistributorColumns:
    """``DistributorColumns`` of the request and response ``ArrivalBatch``es; a move
    costs what ``rules.forwarding_cost`` says for the scenario's route."""
    def copies(arrival, rows=None):
        moved = arrival.received_on != arrival.cores
        if rows is not None:
            moved &= rows
        cost, _ = forwarding_cost_batch(config.handoff, from_core=arrival.received_on,
                                        to_core=arrival.cores, cores=config.cores)
        return np.where(moved, cost, 0).astype(np.int64)

    return DistributorColumns(
        distributor, config.handoff, request.received_on, request.cores.copy(),
        request.rule, request.hashed, copies(request), response.received_on,
        response.cores.copy(), response.rule, response.hashed, copies(response, answered),
        np.asarray(answered, bool), check if check is not None and check.code.any() else None)
