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
"""

from __future__ import annotations

import heapq
import ipaddress
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

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
from .nic import HashType, IndirectionTable, Nic, Transform
from .packet import Address, FlowTuple, Packet, Proto
from .packet_engine import POLICIES, PacketEngine, Session
from .ports import PortAllocator, PortExhausted, PortRange, ResponsePortMap
from .toeplitz import Key, check_port, parse_address, parse_key
from .verify import FlowOutcome, Summary, summarize_outcomes, verdict_reason

HANDOFFS = ("message", "shared-buffer", "none")
#: Packet copies per handoff (see the module docstring).
HANDOFF_COPIES = {"message": 1, "shared-buffer": 2, "none": 0}
CLOSES = ("fin", "rst", "none")
STRATEGIES = ("solve", "scan")


@dataclass(frozen=True, slots=True)
class Flow:
    """One client connection to drive through the system.

    ``server_ip``:``server_port`` is what the client connects to: a service's VIP, or a
    server directly (transparent services, or traffic matching no service). Byte
    counts are L4 payload bytes. ``close``: how the session ends after the response —
    ``fin``, ``rst``, or ``none`` (it stays open until the idle timeout).
    ``start_us`` is the request's arrival time at the NIC.
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

    def request_tuple(self) -> FlowTuple:
        """The request as the client sends it. Raises TupleError for a bad field."""
        return FlowTuple.of(self.client_ip, self.server_ip, self.client_port,
                            self.server_port, self.proto)

    def check(self, index: int = 0) -> None:
        """ConfigError for a bad ``close``, byte count or start time."""
        if self.close not in CLOSES:
            raise ConfigError(f"flows[{index}].close", " / ".join(CLOSES), self.close)
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
    """

    vip: str
    vport: int
    proto: str | int = "tcp"
    policy: str = "nat"
    servers: tuple[tuple[str, int], ...] = ()
    assemble_flag: bool = False

    def check(self, index: int = 0) -> None:
        """ConfigError/TupleError naming the bad field."""
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
    ``response_bytes`` of payload (``None``: the flow's own ``response_bytes``)."""

    ip: str
    port: int
    response_bytes: int | None = None
    latency_us: int = 100


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
    * ``strategy`` — ``solve`` or ``scan`` port choice; ``tables_per_ip`` — port
      allocation tables per local IP in ``usip`` mode (the patent: 64 or 256);
      ``port_range`` — (low, high) ports the tables hand out, inclusive;
    * ``handoff`` — ``message`` / ``shared-buffer`` / ``none`` (transparent mode);
    * ``wrong_direction`` — teaching option: choose ports by hashing the
      request-direction tuple (the classic bug) instead of the response as it arrives;
    * times in µs: ``idle_timeout_us``, ``link_us`` (client/server ↔ NIC),
      ``server_us`` (server think time when no ``Server`` says otherwise),
      ``handoff_us`` (core-to-core), ``close_after_us`` (response → FIN/RST),
      ``jitter_us`` (uniform extra link delay from the run's seeded RNG);
    * ``services`` and ``servers`` as above.
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

    def check(self) -> None:
        """Raises ConfigError (or TableError/HashKeyError/TupleError) naming the field."""
        if not isinstance(self.cores, int) or self.cores < 1:
            raise ConfigError("cores", "a whole number of cores, 1 or more", self.cores)
        if not isinstance(self.ips_per_core, int) or self.ips_per_core < 1:
            raise ConfigError("ips_per_core", "1 or more", self.ips_per_core)
        for name, allowed in (("policy", POLICIES), ("strategy", STRATEGIES),
                              ("handoff", HANDOFFS)):
            if getattr(self, name) not in allowed:
                raise ConfigError(name, " / ".join(allowed), getattr(self, name))
        if not isinstance(self.tables_per_ip, int) or self.tables_per_ip < 1:
            raise ConfigError("tables_per_ip", "1 or more (the patent: 64 or 256)",
                              self.tables_per_ip)
        for name in ("idle_timeout_us", "link_us", "server_us", "handoff_us",
                     "close_after_us", "jitter_us"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 0:
                raise ConfigError(name, "a whole number of microseconds, 0 or more", value)
        for index, service in enumerate(self.services):
            service.check(index)

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
    (``tables_per_ip`` tables per local IP), over the port map of ``table``."""
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
    """Where a request goes: its policy and the real server (address, port)."""

    policy: str
    server_ip: Address
    server_port: int


class Router:
    """Service lookup shared by both execution paths (addresses parsed once, here)."""

    def __init__(self, config: SystemConfig):
        self.default_policy = config.policy
        self.services: dict[tuple, tuple[str, list[tuple[Address, int]]]] = {}
        self.direct: set[tuple] = set()
        for service in config.services:
            proto = Proto.parse(service.proto)
            vip = parse_address(service.vip, "vip")
            servers = [(parse_address(ip, "server"), port) for ip, port in service.servers]
            self.services[(vip, service.vport, proto)] = (service.policy, servers)
            if service.policy == "transparent":
                self.direct.update((ip, port, proto) for ip, port in servers)

    def route(self, dst: Address, dport: int, proto: int, request_hash: int | None) -> Route:
        """The policy and real server for a request to ``dst``:``dport``."""
        found = self.services.get((dst, dport, proto))
        if found is None:
            if (dst, dport, proto) in self.direct:
                return Route("transparent", dst, dport)
            return Route(self.default_policy, dst, dport)
        policy, servers = found
        if not servers:
            return Route(policy, dst, dport)
        ip, port = servers[(request_hash or 0) % len(servers)]
        return Route(policy, ip, port)


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
    ``outcomes`` in flow order, the ``summary`` and per-core ``handoffs``."""

    events: list[Event]
    outcomes: list[FlowOutcome]
    summary: Summary
    handoffs: list[HandoffStats] = field(default_factory=list)


@dataclass(slots=True)
class _FlowState:
    flow: Flow
    request: FlowTuple
    route: Route | None = None
    request_core: int = 0
    session: Session | None = None
    outcome: FlowOutcome | None = None


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
                           [HandoffStats(h.sent, h.received, h.copies) for h in self.handoffs])

    def sessions(self) -> list[Session]:
        """Every open session, core by core."""
        return [s for engine in self.engines for s in engine.sessions() if s.open]

    def summarize(self, outcomes: list[FlowOutcome], hashes=None) -> Summary:
        port_map = self.engines[0].allocators["nat"].port_map
        return summarize_outcomes(outcomes, cores=self.config.cores, hashes=hashes,
                                  occupancy=self.occupancy(), key=str(self.nic.key),
                                  port_map=port_map.describe())

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

    def _request(self, state: _FlowState) -> None:
        flow = state.flow
        steering = self._steer(state, state.request, "request", flow.request_bytes)
        core = state.request_core = steering.core
        request = state.request
        route = state.route = self.router.route(request.dst, request.dport,
                                                request.proto, steering.hash)
        engine = self.engines[core]
        try:
            session = engine.open(flow=flow.id, request=request, server_ip=route.server_ip,
                                  server_port=route.server_port, policy=route.policy,
                                  now_us=self.now_us)
        except PortExhausted:
            reason = verdict_reason("allocation-failed", request_core=core,
                                    response_core=None, policy=route.policy)
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
        response = state.session.response_tuple
        self._emit(ResponseSent, state.flow.id, tuple=response, bytes=size)
        self._at(self.now_us + self._link(), self._response_arrives, state, size)

    def _response_arrives(self, state: _FlowState, size: int) -> None:
        session = state.session
        response = session.response_tuple
        steering = self._steer(state, response, "response", size)
        landed = steering.core
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
                                policy=session.policy)
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
                                policy=session.policy, via=via, copies=copies)
        self._finish(state, landed, verdict, copies, reason)
        close = state.flow.close
        if close == "none":
            self._at(self.now_us + self.config.idle_timeout_us, self._idle, state)
        else:
            self._at(self.now_us + self.config.close_after_us, self._close, state, close)

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
        state.outcome = FlowOutcome(
            flow=state.flow.id, request=state.request, request_core=state.request_core,
            rewritten=None if session is None else session.server_side,
            local_ip=None if allocation is None else str(allocation.local_ip),
            local_port=-1 if allocation is None else allocation.port,
            table=-1 if allocation is None else allocation.table_index,
            tries=0 if allocation is None else allocation.tries,
            response_core=response_core, verdict=verdict, copies=copies, reason=reason)


def port_occupancy(allocators: dict[str, PortAllocator]) -> float:
    """Taken ports / capacity, summed over the port allocation tables a core's allocators
    have created so far (nat: one per local IP; usip: per client IP and table index)."""
    taken = capacity = 0
    for allocator in allocators.values():
        for table in allocator.tables.values():
            taken += table.taken
            capacity += table.capacity
    return taken / capacity if capacity else 0.0


def bench_trace_packets(quick: bool) -> float:
    """Packets per second through the trace path (a request and a response per flow),
    events built but not kept: 20,000 TCP flows (2,000 quick), ``nat``, 8 cores, 2 IPs
    each, Microsoft's key, ``solve``, FIN close."""
    import time

    count = 2_000 if quick else 20_000
    rng = random.Random(7)
    flows = [Flow(i, str(ipaddress.IPv4Address(rng.randrange(1 << 24, 0xDF000000))),
                  1024 + i % 64000, f"203.0.113.{1 + i % 100}", 80) for i in range(count)]
    config = SystemConfig(cores=8, ips_per_core=2, policy="nat")
    best = float("inf")
    for _ in range(2):
        system = System(config)
        start = time.perf_counter()
        system.run_trace(flows, on_event=lambda event: None, keep_events=False)
        best = min(best, time.perf_counter() - start)
    return 2 * count / best
