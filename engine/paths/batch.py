"""The batch path: the trace's model, vectorised over arrays of IPv4 flows.

Per flow, with NumPy over whole columns: the request's hash and core (the NIC's
hash types and transform included), the service route and real server, the
port allocation (``engine.appliance.ports.allocate_batch``, identical to the scalar loop
in flow order), the response as it arrives (source = server) and its core, the
handoff of transparent mode, and the verdict. All flows are concurrent: every
port is allocated before any is freed, which is what a trace whose flows start
together does, so both paths agree flow for flow (``tests/engine/test_batch.py``).

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

import functools
import ipaddress
import operator
import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from socket import inet_ntoa

import numpy as np

from engine.appliance.config import Flow, SystemConfig, build_allocators
from engine.appliance.fragments import ASSEMBLE, BRIDGE, FragmentMode, decide_action
from engine.appliance.ports import allocate_batch, port_occupancy
from engine.appliance.rules import (
    DEFAULT_REQUEST_BYTES,
    DEFAULT_RESPONSE_BYTES,
    NOT_SERVED_IPV6,
    POLICY_CODE,
    Router,
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
    session_facts,
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
    outcome_row,
    steering_figures,
    summarize,
    verdict_reason,
)
from engine.errors import ConfigError, TrafficError
from engine.nic.distributor import FlowDistributor
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
                 rules: dict[str, int]) -> tuple[np.ndarray, np.ndarray]:
    """``(action codes, rule indexes)`` per row: ``decide_action`` once per distinct
    (protocol, policy, service) with the facts ``System.session_facts`` finds — a
    response hits its session (NAT PCB when translated, PCB when transparent), a new
    request hits neither. ``rules`` maps rule text to index and grows."""
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
                              pcb_hit=response and name == "transparent",
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
                   rules: dict[str, int], owner=None) -> FragmentPlans:
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
                                rules=rules)
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
    are unused. The correct-core check never finds a misdirected request here: batch
    flows are concurrent, so every repeated request tuple lands where its first did."""

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

    def moved(self, direction: str) -> np.ndarray:
        moved = (getattr(self, direction + "_received_on")
                 != getattr(self, direction + "_core"))
        return moved & self.answered if direction == "response" else moved

    def any_moved(self) -> np.ndarray:
        return self.moved("request") | self.moved("response")

    def notes(self, row: int) -> list[str]:
        """The trace's distributor notes of row ``row``, request then response."""
        notes = []
        for direction in ("request", "response"):
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
        return FlowSteering(int(request) + int(response),
                            int(self.request_copies[row] + self.response_copies[row]))

    def figures(self) -> dict:
        """The ``Summary`` distributor fields (no misdirected requests: see above)."""
        forwards = self.moved("request").astype(np.int64) + self.moved("response")
        return steering_figures(distributor_forwards=forwards,
                                distributor_copies=self.request_copies
                                + self.response_copies, misdirected=[], check_copies=0)


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


def check_batch_config(config: SystemConfig) -> None:
    """ConfigError for a setting the batch path cannot run: an indirection-table change
    (``table_change``) needs time, which the batch path does not have yet."""
    if config.table_change is not None:
        raise ConfigError("table_change", "no indirection-table change on the batch path, "
                          "which has no time: use --trace", config.table_change)


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
    count = len(flows.client_ip)
    ids = np.arange(count, dtype=np.int64) if ids is None else np.asarray(ids, np.int64)
    client_ip = np.asarray(flows.client_ip, dtype=np.uint32)
    client_port = np.asarray(flows.client_port, dtype=np.uint32)
    proto = np.asarray(flows.proto, dtype=np.uint8)
    distributor, request_arrival = _distribute_requests(config, nic, flows, request_mtu)
    request_hash, request_hashed, request_core = request_arrival[:3]
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
    local_ip = client_ip.copy()
    local_port = client_port.copy()
    allocated = np.zeros(count, dtype=bool)
    failed = np.zeros(count, dtype=bool)
    table = np.full(count, -1, dtype=np.int64)
    tries = np.zeros(count, dtype=np.int64)
    skip = lost if unserved is None else unserved if lost is None else lost | unserved
    # responses the NIC hashes on their addresses alone: nat chooses its IP for them
    addresses_only = _addresses_only(nic, proto)
    for name in ("nat", "usip"):
        wanted = policy == POLICY_CODE[name]
        rows = np.flatnonzero(wanted if skip is None else wanted & ~skip)
        if rows.size == 0:
            continue
        result = allocate_batch(
            [a[name] for a in allocators], core=request_core[rows],
                                server_ip=server_ip[rows], server_port=server_port[rows],
                                client_ip=client_ip[rows], keep_client_ip=name == "usip",
                                addresses_only=_rows_of(addresses_only, rows))
        ok = np.asarray(result.ok, dtype=bool)
        good = rows[ok]
        local_ip[good] = np.asarray(result.local_ip, dtype=np.uint32)[ok]
        local_port[good] = np.asarray(result.port, dtype=np.uint32)[ok]
        table[good] = np.asarray(result.table_index)[ok]
        tries[good] = np.asarray(result.tries)[ok]
        allocated[good] = True
        failed[rows[~ok]] = True

    failed = failed if unserved is None else failed | unserved
    response_arrival = (nic.steer_batch if distributor is None else distributor.arrive_batch)(
        server_ip, local_ip, server_port.astype(np.uint32), local_port, proto)
    response_hash, response_hashed, response_core = response_arrival[:3]
    if v6 is not None:  # the client side is the client's own (transparent)
        for column, part in zip((response_hash, response_hashed, response_core),
                                nic.steer_ipv6_batch(server_ip6[v6], flows.client_ip6[v6],
                                                     server_port[v6].astype(np.uint32),
                                                     local_port[v6], proto[v6]), strict=True):
            column[v6] = part
    steered = None if distributor is None else _distributor_columns(
        config, distributor, request_arrival, response_arrival, answered=~failed)
    failed_or_lost = failed if lost is None else failed | lost
    if config.fragmenting():
        column = getattr(flows, "response_bytes", None)
        size, mtu = response_size_and_mtu_batch(
            config, server_ip=server_ip, server_port=server_port, service=service,
            flow_bytes=np.full(count, DEFAULT_RESPONSE_BYTES) if column is None else column)
        counts = fragment_count_batch(proto, size, mtu)
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

    hashes = np.concatenate([request_hash[request_hashed],
                             response_hash[response_hashed & ~failed_or_lost]])
    if frag is not None:
        frag.rules = list(rules)  # rule texts in index order
    port_map = allocators[0]["nat"].port_map
    summary = summarize(cores=config.cores, request_core=request_core,
                        response_core=response_core, verdict=verdict, copies=copies,
                        hops=hops, hashes=hashes, occupancy=[port_occupancy(a) for a in allocators],
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

def _distribute_requests(config: SystemConfig, nic: Nic, flows, request_mtu):
    """``(distributor or None, arrival)``: the requests through the NIC, and the flow
    distributor when the scenario has one (rules, an RSS-unaware NIC); ``arrival`` is
    ``Nic.steer_batch``'s triple or ``FlowDistributor.arrive_batch``'s columns."""
    if not config.distributes():
        return None, steer_flows(nic, flows)
    v6 = _v6_rows(flows)
    if v6 is not None:
        raise TrafficError(f"flows[{int(v6[0])}]", "IPv4 flows on the batch path with "
                           "distributor rules or an RSS-unaware NIC (its rules match IPv4 "
                           "columns): use --trace", f"{v6.size} IPv6 flows")
    if request_mtu is not None and np.any(np.asarray(request_mtu)):
        raise ConfigError("request_mtu", "no request MTU with distributor rules or an "
                          "RSS-unaware NIC (fragments do not go through the distributor "
                          "yet)", "an MTU")
    distributor = config.build_distributor(nic)
    return distributor, distributor.arrive_batch(
        np.asarray(flows.client_ip, np.uint32), np.asarray(flows.server_ip, np.uint32),
        np.asarray(flows.client_port, np.uint32), np.asarray(flows.server_port, np.uint32),
        np.asarray(flows.proto, np.uint8))


def _distributor_columns(config: SystemConfig, distributor: FlowDistributor, request,
                         response, *, answered) -> DistributorColumns:
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
        np.asarray(answered, bool))
