"""The multi-core system: a NIC, N cores with packet engines, services, servers, a clock.

This is the patent's appliance as a small discrete-event simulation. A flow's
request arrives at the NIC, is hashed and steered to a core; that core's packet
engine applies the service's policy (``nat``, ``usip`` or ``transparent``),
allocating a port when needed, and sends it to a server; the server answers
with a response of the configured size; the response is hashed *as it arrives*
(source = server) and must reach the core that owns the session — directly
(symmetric), through a core-to-core handoff (transparent mode), or not at all
(asymmetric: the design failed). Every step is a typed event (``engine.events``)::

    >>> system = System(SystemConfig(cores=4, policy="nat"))
    >>> result = system.run_trace([Flow(1, "198.51.100.7", 40000, "203.0.113.9", 80)])
    >>> result.outcomes[0].verdict, result.summary.symmetric_rate
    ('symmetric', 1.0)

Time is virtual, in integer microseconds; the event heap is ordered by
(time, sequence) so ties run first-in first-out and a run is reproducible. All
flows that start at the same time are allocated, in flow order, before any
response or close happens — the trace then agrees flow for flow with the
vectorised path (``engine.batch``), which models all flows as concurrent.

Handoff cost (transparent mode), counted exactly:

* ``message`` — the receiving core copies the packet into the owner's queue:
  1 copy (by the sender), 1 message;
* ``shared-buffer`` — the receiving core writes the packet into the shared buffer
  (global cache) and messages the owner, which reads it out: 2 copies (1 write by
  the sender, 1 read by the owner), 1 message;
* ``none`` — no handoff: a misdirected response is lost (verdict ``asymmetric``).

Fragments (``engine.fragments``): a server with an ``mtu`` (or a service's ``mtu``)
fragments responses that do not fit, a flow's ``request_mtu`` its request. The
fragments arrive at the NIC one after another at the same virtual time and go through
the system's ``FragmentSteerer`` (``fragment_mode``); its events join the trace with
the run's clock and sequence; the whole packet it delivers is then handled exactly
like an unfragmented one on the core it lands on. The fragmentation action's
session facts (``decide_action``) come from the packet engines' tables, see
``System.session_facts``.
"""

from __future__ import annotations

import heapq
import ipaddress
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import NamedTuple

from .errors import ConfigError
from .events import (
    AllocationFailed,
    DeliveredToServer,
    Event,
    ForwardedCoreToCore,
    Hashed,
    PacketArrived,
    PortAllocated,
    PortFreed,
    ResponseArrived,
    ResponseSent,
    Rewritten,
    SessionClosed,
    Steered,
    Verdict,
)
from .fragments import (
    ASSEMBLE,
    BRIDGE,
    FragmentDropped,
    FragmentMode,
    FragmentSteerer,
    ReassemblyLimits,
    SessionFacts,
    fragment_length,
    fragment_packet,
)
from .nic import HashType, IndirectionTable, Nic, Transform
from .packet import Address, FlowTuple, Packet, Proto
from .packet_engine import POLICIES, PacketEngine, Session
from .ports import MAX_USIP_TABLES, PortAllocator, PortExhausted, PortRange, ResponsePortMap
from .toeplitz import Key, check_port, parse_address, parse_key
from .verify import (
    FlowOutcome,
    Summary,
    fragment_drop_note,
    fragment_note,
    summarize_outcomes,
    verdict_reason,
)

HANDOFFS = ("message", "shared-buffer", "none")
#: Packet copies per handoff (see the module docstring).
HANDOFF_COPIES = {"message": 1, "shared-buffer": 2, "none": 0}
CLOSES = ("fin", "rst", "none")
STRATEGIES = ("solve", "scan")
FRAGMENT_ORDERS = ("in", "reverse", "random")
FRAGMENT_MODES = tuple(mode.value for mode in FragmentMode)
IPV4_HEADER = 20
#: The smallest MTU that can carry a fragment: a 20-byte IPv4 header + 8 bytes (IPv6
#: needs 56: 40-byte header + 8-byte Fragment header + 8; ``fragment_packet`` checks it).
MIN_MTU = IPV4_HEADER + 8


def l4_header_bytes(proto: int) -> int:
    """Bytes of L4 header the lab's packets carry (as ``packet.to_scapy`` builds them):
    20 for TCP (no options), 8 for UDP, 0 for any other protocol."""
    return 20 if proto == Proto.TCP else 8 if proto == Proto.UDP else 0


def fragment_count(version: int, proto: int, payload: int, mtu: int | None) -> int:
    """How many fragments ``fragment_packet`` cuts a packet of ``payload`` L4 payload
    bytes into for an IP MTU of ``mtu`` bytes; 0 when it fits (or ``mtu`` is None)."""
    if mtu is None:
        return 0
    data = l4_header_bytes(proto) + payload
    header = IPV4_HEADER if version == 4 else 40
    if data + header <= mtu:
        return 0
    step = (mtu - (IPV4_HEADER if version == 4 else 48)) // 8 * 8
    return -(-data // step)


def _check_mtu(value, field: str) -> None:
    if value is not None and (not isinstance(value, int) or isinstance(value, bool)
                              or value < MIN_MTU):
        raise ConfigError(field, f"None or an IP MTU of at least {MIN_MTU} bytes", value)


@dataclass(frozen=True, slots=True)
class Flow:
    """One client connection to drive through the system.

    ``server_ip``:``server_port`` is what the client connects to: a service's VIP, or a
    server directly (transparent services, or traffic matching no service). Byte
    counts are L4 payload bytes. ``close``: how the session ends after the response —
    ``fin``, ``rst``, or ``none`` (it stays open until the idle timeout).
    ``start_us`` is the request's arrival time at the NIC.

    ``request_mtu`` — the client link's IP MTU in bytes (``None``: no fragmentation):
    a request that does not fit arrives in fragments. ``fragment_order`` (``in``,
    ``reverse``, ``random``) and ``fragment_duplicates`` (extra copies of random
    fragments) say how this flow's fragments (request and response) arrive; random
    choices come from the system's seeded RNG. Order and duplicates never change the
    flow's outcome, only the events (the batch path ignores them).
    """

    id: int
    client_ip: str
    client_port: int
    server_ip: str
    server_port: int
    proto: str | int = "tcp"
    request_bytes: int = 100
    response_bytes: int = 1000
    close: str = "fin"
    start_us: int = 0
    request_mtu: int | None = None
    fragment_order: str = "in"
    fragment_duplicates: int = 0

    def request_tuple(self) -> FlowTuple:
        """The request as the client sends it. Raises TupleError for a bad field."""
        return FlowTuple.of(self.client_ip, self.server_ip, self.client_port,
                            self.server_port, self.proto)

    def check(self, index: int = 0) -> None:
        """ConfigError for a bad ``close``, byte count, start time, MTU, fragment order
        or duplicate count."""
        if self.close not in CLOSES:
            raise ConfigError(f"flows[{index}].close", " / ".join(CLOSES), self.close)
        _check_mtu(self.request_mtu, f"flows[{index}].request_mtu")
        if self.fragment_order not in FRAGMENT_ORDERS:
            raise ConfigError(f"flows[{index}].fragment_order", " / ".join(FRAGMENT_ORDERS),
                              self.fragment_order)
        if not isinstance(self.fragment_duplicates, int) or self.fragment_duplicates < 0:
            raise ConfigError(f"flows[{index}].fragment_duplicates",
                              "a whole number, 0 or more", self.fragment_duplicates)
        for name in ("request_bytes", "response_bytes", "start_us"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 0:
                raise ConfigError(f"flows[{index}].{name}", "a whole number, 0 or more", value)


@dataclass(frozen=True, slots=True)
class Service:
    """A virtual server: clients connect to ``vip``:``vport``; the packet engine forwards
    to one of ``servers`` (``(ip, port)`` pairs; none = the VIP itself), picked as
    ``servers[request hash mod len(servers)]`` (deterministic, and the same on both
    execution paths). ``policy`` says how the client side is treated. For
    ``transparent`` the client may also address a server directly.
    ``assemble_flag`` is read by the fragmentation module (the patent's NAT PCB flag).
    ``mtu`` — the IP MTU of this service's servers (``None``: no fragmentation) unless
    a ``Server`` entry for the server gives its own.
    """

    vip: str
    vport: int
    proto: str | int = "tcp"
    policy: str = "nat"
    servers: tuple[tuple[str, int], ...] = ()
    assemble_flag: bool = False
    mtu: int | None = None

    def check(self, index: int = 0) -> None:
        """ConfigError/TupleError naming the bad field."""
        _check_mtu(self.mtu, f"services[{index}].mtu")
        if self.policy not in POLICIES:
            raise ConfigError(f"services[{index}].policy", " / ".join(POLICIES), self.policy)
        parse_address(self.vip, f"services[{index}].vip")
        check_port(self.vport, f"services[{index}].vport")
        for number, (ip, port) in enumerate(self.servers):
            parse_address(ip, f"services[{index}].servers[{number}]")
            check_port(port, f"services[{index}].servers[{number}].port")


@dataclass(frozen=True, slots=True)
class Server:
    """A simulated server at ``ip``:``port``: answers after ``latency_us`` with
    ``response_bytes`` of payload (``None``: the flow's own ``response_bytes``).
    ``mtu`` — its link's IP MTU in bytes (``None``: its service's ``mtu``, else no
    fragmentation): a response that does not fit leaves it in fragments."""

    ip: str
    port: int
    response_bytes: int | None = None
    latency_us: int = 100
    mtu: int | None = None

    def check(self, index: int = 0) -> None:
        """ConfigError/TupleError naming the bad field."""
        parse_address(self.ip, f"servers[{index}].ip")
        check_port(self.port, f"servers[{index}].port")
        _check_mtu(self.mtu, f"servers[{index}].mtu")


@dataclass(frozen=True)
class SystemConfig:
    """Everything that defines a system, as plain values (a scenario file fills it).

    * ``cores`` — number of cores, each with a packet engine;
    * ``ips_per_core`` — local (proxy) IPv4 addresses per core, numbered from
      ``local_ip_base`` (core 0 gets the first ``ips_per_core``), unless ``shared_ip``
      is set: then every core uses that one address and ``nat`` relies on ports alone;
    * ``key`` — ``microsoft``, ``symmetric``, ``random:SEED`` or hex (``parse_key``);
    * ``hash_bits`` (1–7) and ``table`` (explicit bucket → core list, else round robin);
    * ``transform`` — ``none`` / ``symmetric-xor`` / ``sort`` (``sort`` is not linear:
      only with ``transparent`` everywhere, else ConfigError); ``hash_types`` — names of
      enabled ``HashType`` values (``None``: all); ``default_core`` for unhashed packets;
    * ``policy`` — for flows that match no service (their destination is the server);
    * ``strategy`` — ``solve`` or ``scan`` port choice; ``tables_per_ip`` — ``usip``'s
      port allocation tables per core (the patent: 64 or 256; each core has them once,
      shared by its clients; at most MAX_USIP_TABLES over all cores);
      ``port_range`` — (low, high) ports the tables hand out, inclusive;
    * ``handoff`` — ``message`` / ``shared-buffer`` / ``none`` (transparent mode);
    * ``wrong_direction`` — teaching option: choose ports by hashing the
      request-direction tuple (the classic bug) instead of the response as it arrives;
    * times in µs: ``idle_timeout_us``, ``link_us`` (client/server ↔ NIC),
      ``server_us`` (server think time when no ``Server`` says otherwise),
      ``handoff_us`` (core-to-core), ``close_after_us`` (response → FIN/RST),
      ``jitter_us`` (uniform extra link delay from the run's seeded RNG);
    * ``services`` and ``servers`` as above;
    * fragments: ``fragment_mode`` — ``reassemble-header`` (the patent's distributor:
      held until the L4 header, steered by the 4-tuple), ``ms-2tuple`` (Microsoft's
      RSS: hashed on the addresses only) or ``default-core`` (all fragments to
      ``default_fragment_core``); ``fragment_action`` — ``assemble`` / ``bridge``
      forces the fragmentation action, ``None`` decides it by the patent's rules;
      reassembly limits per core (``ReassemblyLimits``): ``fragment_timeout_us``,
      ``fragment_max_per_datagram``, ``fragment_max_datagrams``,
      ``fragment_max_fragments``, ``fragment_max_bytes`` (at least 65,535).
    """

    cores: int = 4
    ips_per_core: int = 1
    shared_ip: str | None = None
    local_ip_base: str = "10.255.0.1"
    key: str = "microsoft"
    hash_bits: int = 7
    table: tuple[int, ...] | None = None
    transform: str = "none"
    hash_types: tuple[str, ...] | None = None
    default_core: int = 0
    policy: str = "nat"
    strategy: str = "solve"
    tables_per_ip: int = 64
    port_range: tuple[int, int] = (1024, 65535)
    handoff: str = "message"
    wrong_direction: bool = False
    idle_timeout_us: int = 60_000_000
    link_us: int = 10
    server_us: int = 100
    handoff_us: int = 2
    close_after_us: int = 1_000
    jitter_us: int = 0
    services: tuple[Service, ...] = ()
    servers: tuple[Server, ...] = ()
    fragment_mode: str = "reassemble-header"
    default_fragment_core: int = 0
    fragment_action: str | None = None
    fragment_timeout_us: int = 30_000_000
    fragment_max_per_datagram: int = 64
    fragment_max_datagrams: int = 1024
    fragment_max_fragments: int = 8192
    fragment_max_bytes: int = 4 * 1024 * 1024

    def check(self) -> None:
        """Raises ConfigError (or TableError/HashKeyError/TupleError) naming the field."""
        if not isinstance(self.cores, int) or self.cores < 1:
            raise ConfigError("cores", "a whole number of cores, 1 or more", self.cores)
        if not isinstance(self.ips_per_core, int) or self.ips_per_core < 1:
            raise ConfigError("ips_per_core", "1 or more", self.ips_per_core)
        if self.shared_ip is None:
            base = int(parse_address(self.local_ip_base, "local_ip_base"))
            if base + self.cores * self.ips_per_core > 2 ** 32:
                raise ConfigError("local_ip_base", f"room for {self.cores} x "
                                  f"{self.ips_per_core} IPv4 addresses from it",
                                  self.local_ip_base)
        for name, allowed in (("policy", POLICIES), ("strategy", STRATEGIES),
                              ("handoff", HANDOFFS)):
            if getattr(self, name) not in allowed:
                raise ConfigError(name, " / ".join(allowed), getattr(self, name))
        if not isinstance(self.tables_per_ip, int) or self.tables_per_ip < 1:
            raise ConfigError("tables_per_ip", "1 or more (the patent: 64 or 256)",
                              self.tables_per_ip)
        if self.cores * self.tables_per_ip > MAX_USIP_TABLES:
            raise ConfigError("tables_per_ip", f"at most {MAX_USIP_TABLES} usip tables in "
                              f"all ({MAX_USIP_TABLES // self.cores} per core on "
                              f"{self.cores} cores)", self.tables_per_ip)
        for name in ("idle_timeout_us", "link_us", "server_us", "handoff_us",
                     "close_after_us", "jitter_us"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 0:
                raise ConfigError(name, "a whole number of microseconds, 0 or more", value)
        for index, service in enumerate(self.services):
            service.check(index)
        for index, server in enumerate(self.servers):
            server.check(index)
        if self.fragment_mode not in FRAGMENT_MODES:
            raise ConfigError("fragment_mode", " / ".join(FRAGMENT_MODES), self.fragment_mode)
        if (not isinstance(self.default_fragment_core, int)
                or not 0 <= self.default_fragment_core < self.cores):
            raise ConfigError("default_fragment_core", f"a core 0-{self.cores - 1}",
                              self.default_fragment_core)
        if self.fragment_action not in (None, ASSEMBLE, BRIDGE):
            raise ConfigError("fragment_action", "assemble, bridge or None (by the rules)",
                              self.fragment_action)
        for name in ("fragment_timeout_us", "fragment_max_per_datagram",
                     "fragment_max_datagrams", "fragment_max_fragments"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ConfigError(name, "a whole number, 1 or more", value)
        if not isinstance(self.fragment_max_bytes, int) or self.fragment_max_bytes < 65_535:
            raise ConfigError("fragment_max_bytes", "at least 65535 bytes (one whole "
                              "datagram)", self.fragment_max_bytes)

    def build_limits(self) -> ReassemblyLimits:
        """The per-core reassembly limits of the ``fragment_*`` fields."""
        return ReassemblyLimits(self.fragment_timeout_us, self.fragment_max_per_datagram,
                                self.fragment_max_datagrams, self.fragment_max_fragments,
                                self.fragment_max_bytes)

    def fragment_limit(self) -> tuple[int, str]:
        """``(most fragments, reason)``: a datagram of more fragments than this never
        reassembles (all its fragments are held in one reassembler, which drops it
        with ``reason`` when one more arrives), whatever the order."""
        if self.fragment_max_per_datagram <= self.fragment_max_fragments:
            return self.fragment_max_per_datagram, "too-many-fragments"
        return self.fragment_max_fragments, "evicted-fragments"

    def fragmenting(self) -> bool:
        """Whether any server or service has an MTU (responses may be fragmented)."""
        return any(s.mtu is not None for s in self.servers) or any(
            s.mtu is not None for s in self.services)

    def allocates(self) -> bool:
        """Whether any flow can need a port (a ``nat`` or ``usip`` policy is in use)."""
        return self.policy != "transparent" or any(
            service.policy != "transparent" for service in self.services)

    def build_key(self) -> Key:
        return parse_key(self.key)

    def build_table(self) -> IndirectionTable:
        if self.table is None:
            return IndirectionTable.round_robin(self.cores, self.hash_bits)
        return IndirectionTable(self.cores, self.hash_bits, tuple(self.table))

    def build_nic(self) -> Nic:
        try:
            transform = Transform(self.transform)
        except ValueError:
            raise ConfigError("transform", "none / symmetric-xor / sort",
                              self.transform) from None
        if self.hash_types is None:
            types = frozenset(HashType)
        else:
            try:
                types = frozenset(HashType(name) for name in self.hash_types)
            except ValueError:
                raise ConfigError("hash_types", ", ".join(t.value for t in HashType),
                                  self.hash_types) from None
        return Nic(self.build_key(), self.build_table(), types, transform, self.default_core)

    def local_ips(self, core: int) -> list[str]:
        """The local (proxy) addresses of ``core``."""
        if self.shared_ip is not None:
            return [str(parse_address(self.shared_ip, "shared_ip"))]
        base = int(ipaddress.IPv4Address(self.local_ip_base))
        first = base + core * self.ips_per_core
        return [str(ipaddress.IPv4Address(first + i)) for i in range(self.ips_per_core)]


def build_allocators(config: SystemConfig, table: IndirectionTable
                     ) -> list[dict[str, PortAllocator]]:
    """Per core, the ``nat`` allocator (one table per local IP) and the ``usip`` one
    (``tables_per_ip`` tables of the core's, shared by its clients), over the port map
    of ``table``."""
    key = config.build_key()
    direction = "request" if config.wrong_direction else "response"
    transform = Transform(config.transform)
    if transform is Transform.SORT and not config.allocates():
        transform = Transform.NONE  # transparent only: no port is ever chosen
    port_map = ResponsePortMap(key, table, direction=direction, transform=transform)
    low, high = config.port_range
    ports = PortRange(low, high)
    return [{"nat": PortAllocator(core, config.local_ips(core), port_map,
                                  strategy=config.strategy, port_range=ports),
             "usip": PortAllocator(core, config.local_ips(core), port_map,
                                   strategy=config.strategy, port_range=ports,
                                   tables_per_ip=config.tables_per_ip)}
            for core in range(config.cores)]


@dataclass(frozen=True, slots=True)
class Route:
    """Where a request goes: its policy and the real server (address, port);
    ``service`` is the index of the matched service in ``SystemConfig.services``
    (-1: none)."""

    policy: str
    server_ip: Address
    server_port: int
    service: int = -1


class Router:
    """Service lookup shared by both execution paths (addresses parsed once, here)."""

    def __init__(self, config: SystemConfig):
        self.default_policy = config.policy
        self.services: dict[tuple, tuple[str, list[tuple[Address, int]], int]] = {}
        self.direct: dict[tuple, int] = {}
        for index, service in enumerate(config.services):
            proto = Proto.parse(service.proto)
            vip = parse_address(service.vip, "vip")
            servers = [(parse_address(ip, "server"), port) for ip, port in service.servers]
            self.services[(vip, service.vport, proto)] = (service.policy, servers, index)
            if service.policy == "transparent":
                self.direct.update(((ip, port, proto), index) for ip, port in servers)

    def route(self, dst: Address, dport: int, proto: int, request_hash: int | None) -> Route:
        """The policy and real server for a request to ``dst``:``dport``."""
        found = self.services.get((dst, dport, proto))
        if found is None:
            direct = self.direct.get((dst, dport, proto))
            if direct is not None:
                return Route("transparent", dst, dport, direct)
            return Route(self.default_policy, dst, dport)
        policy, servers, index = found
        if not servers:
            return Route(policy, dst, dport, index)
        ip, port = servers[(request_hash or 0) % len(servers)]
        return Route(policy, ip, port, index)


def session_facts(config: SystemConfig, *, service: int, policy: str, pcb_hit: bool,
                  natpcb_hit: bool) -> SessionFacts:
    """The ``SessionFacts`` of traffic that matched service number ``service`` (-1:
    none) under ``policy``, with the given PCB / NAT PCB hits (see
    ``System.session_facts`` for how the lab maps its sessions to them): the assemble
    flag and the service's type come from the service; RNAT is traffic that matched
    no service yet is translated (the default ``nat``/``usip`` policy)."""
    if service >= 0:
        spec = config.services[service]
        return SessionFacts(pcb_hit=pcb_hit, natpcb_hit=natpcb_hit,
                            assemble_flag=spec.assemble_flag,
                            service_is_udp=Proto.parse(spec.proto) == Proto.UDP, rnat=False)
    return SessionFacts(pcb_hit=pcb_hit, natpcb_hit=natpcb_hit, assemble_flag=False,
                        service_is_udp=None, rnat=policy != "transparent")


@dataclass(slots=True)
class HandoffStats:
    """Per-core handoff counters (transparent mode): messages sent and received, and
    packet copies this core performed (a shared-buffer read is the owner's copy)."""

    sent: int = 0
    received: int = 0
    copies: int = 0


@dataclass
class TraceResult:
    """What a trace run produced: ``events`` (empty when not kept), per-flow
    ``outcomes`` in flow order, the ``summary`` and per-core ``handoffs``.
    ``fragment_stats``: the fragment steerer's counters since the system was built
    (``steerer``: every action message and copy, duplicates included; ``reassembly``:
    per core; ``duplicate_datagrams``: whole datagrams reassembled a second time from
    duplicates, which the packet engine discards)."""

    events: list[Event]
    outcomes: list[FlowOutcome]
    summary: Summary
    handoffs: list[HandoffStats] = field(default_factory=list)
    fragment_stats: dict = field(default_factory=dict)


class _Landing(NamedTuple):
    """Where a fragmented datagram's whole packet reached a packet engine (``core``),
    or, when ``dropped`` (a ``fragment_drop_note``) is set, the core the NIC gave its
    fragments to. ``messages``/``copies``: its core-to-core cost (see FlowOutcome)."""

    core: int
    fragments: int
    action: str | None = None
    rule: str | None = None
    note: str = ""
    messages: int = 0
    copies: int = 0
    dropped: str = ""


def fragment_cost(mode: str, fragments: int, action: str | None, received_on: int,
                  core: int) -> tuple[int, int]:
    """``(action messages, copies)`` of one delivered datagram: under
    ``reassemble-header``/``default-core``, when the core that found the header is not
    the destination, one action message, plus one reassembled-packet copy (Assemble)
    or one copy per fragment (Bridge); ``ms-2tuple`` moves nothing."""
    if mode == "ms-2tuple" or core == received_on:
        return 0, 0
    return 1, 1 if action == ASSEMBLE else fragments


class _SeqCounter:
    """The system's event sequence as an iterator, for the fragment steerer's events."""

    __slots__ = ("system",)

    def __init__(self, system: System):
        self.system = system

    def __iter__(self):
        return self

    def __next__(self) -> int:
        seq = self.system._seq
        self.system._seq += 1
        return seq


@dataclass(slots=True)
class _FlowState:
    flow: Flow
    request: FlowTuple
    route: Route | None = None
    request_core: int = 0
    session: Session | None = None
    outcome: FlowOutcome | None = None
    request_landing: _Landing | None = None
    response_landing: _Landing | None = None

    def notes(self) -> tuple[str, ...]:
        """The fragment notes of the flow's delivered fragmented datagrams."""
        return tuple(landing.note for landing in (self.request_landing,
                                                  self.response_landing)
                     if landing is not None and landing.note)


class System:
    """The simulated multi-core appliance. ``rng`` (a ``random.Random``) drives link
    jitter; pass a seeded one for a reproducible run. State (sessions, port tables, the
    clock) persists across ``run_trace`` calls.

    Raises ConfigError (and the key/table/tuple errors) on a bad configuration.
    """

    def __init__(self, config: SystemConfig, *, rng: random.Random | None = None):
        config.check()
        self.config = config
        self.rng = rng if rng is not None else random.Random(0)
        self.nic = config.build_nic()
        self.router = Router(config)
        self._servers = {(parse_address(server.ip, "servers.ip"), server.port): server
                         for server in config.servers}
        self.engines = [PacketEngine(core, allocators) for core, allocators in
                        enumerate(build_allocators(config, self.nic.table))]
        self.failed: set[int] = set()
        #: The shared session directory (global cache): response tuple → owner core.
        self.directory: dict[FlowTuple, int] = {}
        self.handoffs = [HandoffStats() for _ in range(config.cores)]
        self.now_us = 0
        self._heap: list = []
        self._order = 0
        self._seq = 0
        self._packet_ids = 0
        self._events: list[Event] | None = None
        self._on_event: Callable[[Event], None] | None = None
        self._hashes: list[int] = []
        #: Requests seen per indirection-table bucket (the control core rebalances on it).
        self.bucket_load = [0] * self.nic.table.size
        #: Fragments from the NIC to whole packets (one steerer, the system's NIC).
        self.fragments = FragmentSteerer(
            self.nic, config.fragment_mode, default_fragment_core=config.default_fragment_core,
            limits=config.build_limits(), sessions=self.session_facts,
            forced=config.fragment_action, seq=_SeqCounter(self))
        self._idents: dict[tuple, int] = {}
        self._fragment_drops: dict[str, int] = {}
        self.duplicate_datagrams = 0

    # -- the kernel -------------------------------------------------------------------

    def _at(self, t_us: int, action, *args) -> None:
        self._order += 1
        heapq.heappush(self._heap, (t_us, self._order, action, args))

    def _emit(self, cls: type[Event], flow: int, **fields) -> None:
        if self._events is None and self._on_event is None:
            self._seq += 1
            return
        event = cls(t_us=self.now_us, seq=self._seq, flow=flow, **fields)
        self._seq += 1
        if self._events is not None:
            self._events.append(event)
        if self._on_event is not None:
            self._on_event(event)

    def _publish(self, event: Event) -> None:
        """Pass on an event made elsewhere (the fragment steerer) with the run's seq."""
        if self._events is not None:
            self._events.append(event)
        if self._on_event is not None:
            self._on_event(event)

    def _link(self) -> int:
        jitter = self.config.jitter_us
        return self.config.link_us + (self.rng.randint(0, jitter) if jitter else 0)

    def _next_packet(self) -> int:
        self._packet_ids += 1
        return self._packet_ids

    def run_trace(self, flows: Iterable[Flow], *, on_event: Callable[[Event], None] | None
                  = None, keep_events: bool = True, until_us: int | None = None
                  ) -> TraceResult:
        """Run ``flows`` packet by packet. ``on_event`` is called with each event as it
        happens (for streaming); ``keep_events=False`` keeps none in the result.
        ``until_us`` stops the clock there (open sessions stay open).

        Raises ConfigError/TupleError for a malformed flow, before anything runs.
        """
        states = []
        for index, flow in enumerate(flows):
            flow.check(index)
            states.append(_FlowState(flow, flow.request_tuple()))
        self._events = [] if keep_events else None
        self._on_event = on_event
        self._hashes = []
        self._fragment_drops = {}
        for state in states:
            self._at(state.flow.start_us, self._request, state)
        while self._heap and (until_us is None or self._heap[0][0] <= until_us):
            t_us, _, action, args = heapq.heappop(self._heap)
            self.now_us = t_us
            action(*args)
        if until_us is not None:
            self.now_us = max(self.now_us, until_us)
        outcomes = [s.outcome for s in states if s.outcome is not None]
        events = self._events or []
        self._events, self._on_event = None, None
        return TraceResult(events, outcomes, self.summarize(outcomes, self._hashes),
                           [HandoffStats(h.sent, h.received, h.copies) for h in self.handoffs],
                           self.fragment_stats())

    def fragment_stats(self) -> dict:
        """The fragment steerer's counters (see ``TraceResult.fragment_stats``)."""
        return {"steerer": self.fragments.stats.as_dict(),
                "reassembly": [r.stats.as_dict() for r in self.fragments.reassemblers],
                "duplicate_datagrams": self.duplicate_datagrams}

    def session_facts(self, flow: FlowTuple) -> SessionFacts:
        """What the packet engines' tables say about a fragmented datagram's 4-tuple,
        for the fragmentation action's rules. The distributor asks them through the
        shared session directory, whichever core found the header. The mapping:

        * a response finds its session by its tuple as it arrives: a ``nat``/``usip``
          session, which translated the client, is a NAT PCB (``natpcb_hit``); a
          ``transparent`` one, which translated nothing, is a plain PCB (``pcb_hit``);
        * a request hits a PCB only when a session for its tuple is already open (a new
          flow's first request: none) and never a NAT PCB (those are keyed by the
          response tuple);
        * ``assemble_flag`` and the service type come from the service the flow
          matched (the service's own ``assemble_flag`` and ``proto``);
        * RNAT: traffic that matched no service but is translated by the default
          ``nat``/``usip`` policy (the appliance NATs traffic not addressed to a
          virtual server); the lab has no other server-initiated traffic.
        """
        owner = self.directory.get(flow)
        session = None if owner is None else self.engines[owner].lookup_response(flow)
        if session is not None:
            translated = session.allocation is not None
            return session_facts(self.config, service=session.service,
                                 policy=session.policy, pcb_hit=not translated,
                                 natpcb_hit=translated)
        pcb_hit = False
        for engine in self.engines:
            found = engine.pcb.get(flow)
            if found is not None and found.open:
                pcb_hit = True
                break
        route = self.router.route(flow.dst, flow.dport, flow.proto, None)
        return session_facts(self.config, service=route.service, policy=route.policy,
                             pcb_hit=pcb_hit, natpcb_hit=False)

    def sessions(self) -> list[Session]:
        """Every open session, core by core."""
        return [s for engine in self.engines for s in engine.sessions() if s.open]

    def summarize(self, outcomes: list[FlowOutcome], hashes=None) -> Summary:
        port_map = self.engines[0].allocators["nat"].port_map
        return summarize_outcomes(outcomes, cores=self.config.cores, hashes=hashes,
                                  occupancy=self.occupancy(), key=str(self.nic.key),
                                  port_map=port_map.describe(),
                                  fragment_drops=self._fragment_drops)

    def occupancy(self) -> list[float]:
        """Per core, the fraction of its nat and usip port-table entries taken."""
        return [port_occupancy(engine.allocators) for engine in self.engines]

    # -- the flow's steps -------------------------------------------------------------

    def _steer(self, state: _FlowState, tuple_: FlowTuple, direction: str, size: int):
        packet = Packet.from_tuple(self._next_packet(), tuple_, payload_len=size)
        flow = state.flow.id
        self._emit(PacketArrived, flow, packet=packet.id, direction=direction,
                   tuple=tuple_, bytes=size)
        steering = self.nic.steer(packet)
        if steering.hash is not None:
            self._hashes.append(steering.hash)
            if direction == "request":
                self.bucket_load[steering.bucket] += 1
        self._emit(Hashed, flow, packet=packet.id, hash=steering.hash, bucket=steering.bucket,
                   core=steering.core, input_hex=steering.input.hex(),
                   hash_type=None if steering.hash_type is None else steering.hash_type.value)
        self._emit(Steered, flow, core=steering.core, reason=steering.reason)
        return steering

    def _fragmented(self, state: _FlowState, tuple_: FlowTuple, direction: str, size: int,
                    mtu: int, count: int) -> _Landing:
        """Send a packet that does not fit ``mtu`` as fragments through the NIC and the
        fragment steerer (its events join the trace); where its whole packet lands."""
        flow = state.flow
        whole = Packet.from_tuple(self._next_packet(), tuple_, payload_len=size)
        key = (tuple_.src, tuple_.dst)
        ident = self._idents.get(key, 0)
        self._idents[key] = ident + 1
        pieces = fragment_packet(whole, mtu, order=flow.fragment_order,
                                 duplicates=flow.fragment_duplicates, rng=self.rng,
                                 ident=ident)
        delivered = received_on = drop = None
        drops = self._fragment_drops
        for piece in pieces:
            self._emit(PacketArrived, flow.id, packet=piece.id, direction=direction,
                       tuple=piece.tuple, bytes=fragment_length(piece))
            outcome = self.fragments.receive(piece, self.now_us, flow=flow.id)
            if received_on is None:
                received_on = outcome.received_on
            for event in outcome.events:
                if isinstance(event, FragmentDropped):
                    drops[event.reason] = drops.get(event.reason, 0) + 1
                    if (drop is None and event.packet == whole.id
                            and event.reason not in ("duplicate", "already-dropped")):
                        drop = event.reason
                self._publish(event)
            for delivery in outcome.deliveries:
                if delivery.packet.id != whole.id:
                    continue
                if delivered is None:
                    delivered = delivery
                else:
                    self.duplicate_datagrams += 1
        if delivered is None:
            return _Landing(received_on, count, dropped=fragment_drop_note(
                direction, fragments=count, reason=drop or "incomplete"))
        self._emit(Steered, flow.id, core=delivered.core, reason=delivered.reason)
        if delivered.hash is not None:
            self._hashes.append(delivered.hash)
            if direction == "request":
                self.bucket_load[delivered.bucket] += 1
        mode = self.config.fragment_mode
        messages, copies = fragment_cost(mode, delivered.fragments, delivered.action,
                                         delivered.received_on, delivered.core)
        note = fragment_note(direction, fragments=delivered.fragments, mode=mode,
                             action=delivered.action, received_on=delivered.received_on,
                             core=delivered.core)
        return _Landing(delivered.core, delivered.fragments, delivered.action, delivered.rule,
                        note, messages, copies)

    def _request(self, state: _FlowState) -> None:
        flow = state.flow
        request = state.request
        count = fragment_count(request.version, request.proto, flow.request_bytes,
                               flow.request_mtu)
        if count:
            landing = state.request_landing = self._fragmented(
                state, request, "request", flow.request_bytes, flow.request_mtu, count)
            core = state.request_core = landing.core
            if landing.dropped:
                reason = verdict_reason("fragments-dropped", request_core=core,
                                        response_core=None, policy="",
                                        dropped=landing.dropped)
                self._finish(state, None, "fragments-dropped", 0, reason)
                return
            request_hash = self.nic.steer(Packet.from_tuple(0, request)).hash
        else:
            steering = self._steer(state, request, "request", flow.request_bytes)
            core = state.request_core = steering.core
            request_hash = steering.hash
        route = state.route = self.router.route(request.dst, request.dport,
                                                request.proto, request_hash)
        engine = self.engines[core]
        try:
            session = engine.open(flow=flow.id, request=request, server_ip=route.server_ip,
                                  server_port=route.server_port, policy=route.policy,
                                  now_us=self.now_us, service=route.service)
        except PortExhausted:
            reason = verdict_reason("allocation-failed", request_core=core,
                                    response_core=None, policy=route.policy,
                                    notes=state.notes())
            self._emit(AllocationFailed, flow.id, core=core, reason=reason)
            self._finish(state, None, "allocation-failed", 0, reason)
            return
        state.session = session
        allocation = session.allocation
        if allocation is not None:
            self._emit(PortAllocated, flow.id, core=core, local_ip=str(allocation.local_ip),
                       table=allocation.table_index, port=allocation.port,
                       tries=allocation.tries, strategy=allocation.strategy,
                       bucket=allocation.bucket)
        if session.server_side != request:
            self._emit(Rewritten, flow.id, core=core, direction="request",
                       policy=route.policy, before=request, after=session.server_side)
        self.directory[session.response_tuple] = core
        self._at(self.now_us + self._link(), self._deliver, state)

    def _deliver(self, state: _FlowState) -> None:
        session = state.session
        self._emit(DeliveredToServer, state.flow.id, core=session.core,
                   tuple=session.server_side)
        server = self._server(session.server_side)
        latency = self.config.server_us if server is None else server.latency_us
        self._at(self.now_us + latency, self._respond, state, server)

    def _server(self, server_side: FlowTuple) -> Server | None:
        return self._servers.get((server_side.dst, server_side.dport))

    def _respond(self, state: _FlowState, server: Server | None) -> None:
        size = state.flow.response_bytes
        if server is not None and server.response_bytes is not None:
            size = server.response_bytes
        mtu = None if server is None else server.mtu
        if mtu is None and state.session.service >= 0:
            mtu = self.config.services[state.session.service].mtu
        response = state.session.response_tuple
        self._emit(ResponseSent, state.flow.id, tuple=response, bytes=size)
        self._at(self.now_us + self._link(), self._response_arrives, state, size, mtu)

    def _response_arrives(self, state: _FlowState, size: int, mtu: int | None = None) -> None:
        session = state.session
        response = session.response_tuple
        count = fragment_count(response.version, response.proto, size, mtu)
        if count:
            landing = state.response_landing = self._fragmented(
                state, response, "response", size, mtu, count)
            if landing.dropped:
                reason = verdict_reason("fragments-dropped", request_core=session.core,
                                        response_core=None, policy=session.policy,
                                        notes=state.notes(), dropped=landing.dropped)
                self._finish(state, None, "fragments-dropped", 0, reason)
                self._at(session.last_us + self.config.idle_timeout_us, self._idle, state)
                return
            landed = landing.core
        else:
            landed = self._steer(state, response, "response", size).core
        owner_engine = self.engines[landed]
        if owner_engine.lookup_response(response) is session:
            self._deliver_response(state, landed, "symmetric", 0, "")
            return
        owner = self.directory.get(response)
        via = self.config.handoff
        if session.policy == "transparent" and via != "none" and owner is not None:
            copies = HANDOFF_COPIES[via]
            self._emit(ForwardedCoreToCore, state.flow.id, from_core=landed, to_core=owner,
                       via=via, copies=copies)
            self.handoffs[landed].sent += 1
            self.handoffs[owner].received += 1
            self.handoffs[landed].copies += 1
            if via == "shared-buffer":
                self.handoffs[owner].copies += 1
            self._at(self.now_us + self.config.handoff_us, self._deliver_response, state,
                     landed, "handed-off", copies, via)
            return
        reason = verdict_reason("asymmetric", request_core=session.core, response_core=landed,
                                policy=session.policy, notes=state.notes())
        self._finish(state, landed, "asymmetric", 0, reason)
        # The lost response never closes the session: only the idle timeout frees it.
        self._at(session.last_us + self.config.idle_timeout_us, self._idle, state)

    def _deliver_response(self, state: _FlowState, landed: int, verdict: str, copies: int,
                          via: str) -> None:
        session = state.session
        response = session.response_tuple
        to_client = session.reverse(response)
        session.last_us = self.now_us
        if to_client != response:
            self._emit(Rewritten, state.flow.id, core=session.core, direction="response",
                       policy=session.policy, before=response, after=to_client)
        self._emit(ResponseArrived, state.flow.id, core=session.core, tuple=to_client)
        reason = verdict_reason(verdict, request_core=session.core, response_core=landed,
                                policy=session.policy, via=via, copies=copies,
                                notes=state.notes(), by_addresses=self._by_addresses(state))
        self._finish(state, landed, verdict, copies, reason)
        close = state.flow.close
        if close == "none":
            self._at(self.now_us + self.config.idle_timeout_us, self._idle, state)
        else:
            self._at(self.now_us + self.config.close_after_us, self._close, state, close)

    def _by_addresses(self, state: _FlowState) -> bool:
        """Whether the response's core was chosen by its addresses alone (ms-2tuple)."""
        return (state.response_landing is not None
                and self.config.fragment_mode == FragmentMode.MS_2TUPLE.value)

    def _idle(self, state: _FlowState) -> None:
        session = state.session
        if not session.open:
            return
        due = session.last_us + self.config.idle_timeout_us
        if self.now_us < due:
            self._at(due, self._idle, state)
            return
        self._close(state, "idle timeout")

    def _close(self, state: _FlowState, reason: str) -> None:
        self.close_session(state.session, reason)

    def close_session(self, session: Session, reason: str) -> None:
        """End ``session`` now: SessionClosed, and PortFreed when it held a port."""
        if not session.open:
            return
        freed = self.engines[session.core].close(session)
        self.directory.pop(session.response_tuple, None)
        self._emit(SessionClosed, session.flow, core=session.core, reason=reason)
        if freed is not None:
            self._emit(PortFreed, session.flow, core=session.core, local_ip=str(freed.local_ip),
                       table=freed.table_index, port=freed.port)

    def _finish(self, state: _FlowState, response_core: int | None, verdict: str,
                copies: int, reason: str) -> None:
        session = state.session
        allocation = None if session is None else session.allocation
        self._emit(Verdict, state.flow.id, verdict=verdict, reason=reason,
                   request_core=state.request_core, response_core=response_core,
                   copies=copies)
        request = state.request_landing or _NO_LANDING
        response = state.response_landing or _NO_LANDING
        state.outcome = FlowOutcome(
            flow=state.flow.id, request=state.request, request_core=state.request_core,
            rewritten=None if session is None else session.server_side,
            local_ip=None if allocation is None else str(allocation.local_ip),
            local_port=-1 if allocation is None else allocation.port,
            table=-1 if allocation is None else allocation.table_index,
            tries=0 if allocation is None else allocation.tries,
            response_core=response_core, verdict=verdict, copies=copies, reason=reason,
            fragments=response.fragments, fragment_action=response.action,
            fragment_rule=response.rule, request_fragments=request.fragments,
            request_fragment_action=request.action, request_fragment_rule=request.rule,
            fragment_messages=request.messages + response.messages,
            fragment_copies=request.copies + response.copies)


_NO_LANDING = _Landing(-1, 0)


def port_occupancy(allocators: dict[str, PortAllocator]) -> float:
    """Taken ports / capacity, summed over the port allocation tables a core's allocators
    have created so far (nat: one per local IP; usip: per client IP and table index)."""
    taken = capacity = 0
    for allocator in allocators.values():
        for table in allocator.tables.values():
            taken += table.taken
            capacity += table.capacity
    return taken / capacity if capacity else 0.0
