"""The multi-core system: a NIC, N cores with packet engines, services, servers, a clock.

This is the patent's appliance as a small discrete-event simulation. A flow's
request arrives at the NIC, is hashed and steered to a core; that core's packet
engine applies the service's policy (``nat``, ``usip`` or ``transparent``),
allocating a port when needed, and sends it to a server; the server answers
with a response of the configured size; the response is hashed *as it arrives*
(source = server) and must reach the core that owns the session — directly
(symmetric), forwarded core to core to its owner (any policy), or not at all
(asymmetric: the design failed). Every step is a typed event (``engine.appliance.events``)::

    >>> system = System(SystemConfig(cores=4, policy="nat"))
    >>> result = system.run_trace([Flow(1, "198.51.100.7", 40000, "203.0.113.9", 80)])
    >>> result.outcomes[0].verdict, result.summary.symmetric_rate
    ('symmetric', 1.0)

Time is virtual, in integer microseconds; the event heap is ordered by
(time, sequence) so ties run first-in first-out and a run is reproducible. Requests are
queued first, in flow order, so all flows that start at the same time are allocated,
in flow order, before any response or close of that moment. A session ends
(``rules.close_delay_us``: FIN/RST ``hold_us`` or ``close_after_us`` after its response,
the idle timeout for ``close="none"`` or an unanswered response) and frees its port for
flows that start later; the vectorised path (``engine.paths.batch``) derives the same
ends and frees ports in the same order, so both agree flow for flow.

Forwarding (``rules.FORWARDING_ROUTES``, the patent's L416: a response that reaches
a core other than its owner's is forwarded to the owner, whatever the policy) is
counted exactly, in copies, hops and ``handoff_us`` of virtual time per hop:

* ``message`` — the receiving core copies the packet into the owner's queue:
  1 copy (by the sender), 1 hop;
* ``shared-buffer`` — the receiving core writes the packet into the shared buffer
  (global cache) and messages the owner, which reads it out: 2 copies (1 write by
  the sender, 1 read by the owner), 1 hop;
* ``control-core`` — relayed through the control core: 2 copies, 2 hops;
* ``neighbour`` — passed round the ring of cores: 1 copy per hop;
* ``none`` — not forwarded: a misdirected response is lost (verdict ``asymmetric``).

Fragments (``engine.appliance.fragments``): a server with an ``mtu`` (or a service's ``mtu``)
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
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import NamedTuple

from engine.appliance.config import Flow, Server, SystemConfig, build_allocators
from engine.appliance.control import ControlCore
from engine.appliance.events import (
    AllocationFailed,
    DeliveredToServer,
    Event,
    ForwardedCoreToCore,
    FragmentDropped,
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
from engine.appliance.fragments import (
    FragmentMode,
    FragmentSteerer,
    SessionFacts,
    fragment_length,
    fragment_packet,
)
from engine.appliance.packet_engine import PacketEngine, Session
from engine.appliance.ports import port_capacity, port_occupancy
from engine.appliance.rules import (
    Route,
    Router,
    close_delay_us,
    forwarding_cost,
    fragment_cost,
    fragment_count,
    not_served,
    port_steering_text,
    response_size_and_mtu,
    response_verdict,
    server_latency_us,
    session_facts,
    unanswered_end_us,
)
from engine.appliance.verdicts import (
    FlowOutcome,
    FlowSteering,
    FragmentSide,
    PortChoice,
    Summary,
    distributor_note,
    fragment_drop_note,
    fragment_note,
    misdirected_note,
    summarize_outcomes,
    verdict_reason,
)
from engine.errors import ConfigError, PortExhausted
from engine.packet.model import FlowTuple, Packet
from engine.packet.toeplitz import parse_address


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
    #: core-to-core hops its response was forwarded over (0: not forwarded)
    hops: int = 0
    #: the distributor's moves and the correct-core check (``FlowSteering``'s fields)
    distributor_forwards: int = 0
    distributor_copies: int = 0
    misdirected: str = ""
    check_copies: int = 0
    #: notes of the distributor's moves and the correct-core check, in order
    steering_notes: list = field(default_factory=list)

    def notes(self) -> tuple[str, ...]:
        """The fragment notes of the flow's delivered fragmented datagrams, then the
        distributor's and the correct-core check's."""
        return tuple(landing.note for landing in (self.request_landing,
                                                  self.response_landing)
                     if landing is not None and landing.note) + tuple(self.steering_notes)

    def steered(self) -> FlowSteering:
        return FlowSteering(self.distributor_forwards, self.distributor_copies,
                       self.misdirected, self.check_copies)


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
        #: Rules and the RSS-unaware NIC; with neither, the NIC's own steering.
        self.distributor = config.build_distributor(self.nic)
        self._table_change = config.build_table_change()
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
            forced=config.fragment_action, seq=iter(self._next_seq, None))
        self._idents: dict[tuple, int] = {}
        self._fragment_drops: dict[str, int] = {}
        self._flows_lost = 0
        self._not_served: dict[str, int] = {}
        self.duplicate_datagrams = 0
        #: per core: ports its sessions hold now, and the most held at once this run
        self._taken = [0] * config.cores
        self._peak = [0] * config.cores

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

    def _next_seq(self) -> int:
        """The next event sequence number (the fragment steerer numbers its events from
        the same counter, so one run's events are in one order)."""
        seq = self._seq
        self._seq += 1
        return seq

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
            if flow.request_mtu is not None and self.config.distributes():
                raise ConfigError(f"flows[{index}].request_mtu", "no request MTU with "
                                  "distributor rules or an RSS-unaware NIC (fragments do "
                                  "not go through the distributor yet)", flow.request_mtu)
            states.append(_FlowState(flow, flow.request_tuple()))
        self._events = [] if keep_events else None
        self._on_event = on_event
        self._hashes = []
        self._fragment_drops = {}
        self._flows_lost = 0
        self._peak = list(self._taken)
        self._not_served = {}
        if self._table_change is not None:
            # scheduled before the flows: at its time it comes before their packets
            self._at(self.config.table_change_at_us, self._reprogram, self._table_change)
            self._table_change = None
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
            # the connection's owner: the core holding the fragments directs them there
            # (seed L64, L702). A request's open PCB (a repeated tuple) names no owner
            # yet: the batch path, whose flows are concurrent, has no such session.
            return session_facts(self.config, service=session.service,
                                 policy=session.policy, pcb_hit=not translated,
                                 natpcb_hit=translated, owner=owner)
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
                                  occupancy=self.occupancy(),
                                  occupancy_peak=self.occupancy_peak(),
                                  key=str(self.nic.key),
                                  port_map=port_steering_text(self.config, port_map),
                                  fragment_drops=self._fragment_drops,
                                  flows_lost=self._flows_lost,
                                  not_served=self._not_served,
                                  ip_choice=[self._chose_ip(o) for o in outcomes])

    def _chose_ip(self, outcome: FlowOutcome) -> bool:
        """A nat flow (its IP rewritten) whose response the NIC hashes on its addresses
        alone: its IP was chosen to steer it (``Summary.ip_choice``)."""
        request = outcome.request
        return (outcome.local_ip is not None and outcome.local_ip != str(request.src)
                and self.nic.addresses_only(request.proto, request.version))

    def occupancy(self) -> list[float]:
        """Per core, the fraction of its nat and usip port-table entries taken now (at the
        end of a run: 0 unless ``until_us`` stopped the clock with sessions open)."""
        return [port_occupancy(engine.allocators) for engine in self.engines]

    def occupancy_peak(self) -> list[float]:
        """Per core, the most ports its sessions held at once during the last run, over
        the capacity of its used port tables (``port_capacity``)."""
        return [peak / capacity if capacity else 0.0 for peak, capacity in zip(
            self._peak, (port_capacity(e.allocators) for e in self.engines), strict=True)]

    # -- the flow's steps -------------------------------------------------------------

    def _reprogram(self, table) -> None:
        """``system.nic.table_change``: the control core installs the new table."""
        ControlCore(self).reprogram(table)

    def _steer(self, state: _FlowState, tuple_: FlowTuple, direction: str, size: int):
        packet = Packet.from_tuple(self._next_packet(), tuple_, payload_len=size)
        flow = state.flow.id
        self._emit(PacketArrived, flow, packet=packet.id, direction=direction,
                   tuple=tuple_, bytes=size)
        received_on, steering = self.distributor.arrive(packet)
        if steering.hash is not None:
            self._hashes.append(steering.hash)
            if direction == "request":
                self.bucket_load[steering.bucket] += 1
        self._emit(Hashed, flow, packet=packet.id, hash=steering.hash, bucket=steering.bucket,
                   core=steering.core, input_hex=steering.input.hex(),
                   hash_type=None if steering.hash_type is None else steering.hash_type.value)
        if received_on != steering.core:
            # The distributor on the receiving core moves it (a rule, or an RSS-unaware
            # NIC): a core-to-core forward by the scenario's route. It takes no virtual
            # time, so requests that arrive together still allocate in flow order, as
            # on the batch path.
            via = self.config.handoff
            copies, _ = forwarding_cost(via, from_core=received_on, to_core=steering.core,
                                        cores=self.config.cores)
            self._emit(ForwardedCoreToCore, flow, from_core=received_on,
                       to_core=steering.core, via=via, copies=copies, by="distributor")
            state.distributor_forwards += 1
            state.distributor_copies += copies
            state.steering_notes.append(distributor_note(
                direction, received_on=received_on, core=steering.core,
                why=steering.reason, via=via, copies=copies))
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
                             core=delivered.core, by_owner=delivered.by_owner)
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
                reason = verdict_reason("asymmetric", request_core=core,
                                        response_core=None, policy="",
                                        dropped=landing.dropped)
                self._lose_in_reassembly(state, reason)
                return
            request_hash = self.nic.steer(Packet.from_tuple(0, request)).hash
        else:
            steering = self._steer(state, request, "request", flow.request_bytes)
            core = state.request_core = steering.core
            request_hash = steering.hash
        owner = self._request_owner(request, core)
        if owner is not None:
            # The correct-core check (seed L650-L672): core ``core`` finds the request's
            # session in another core's PCB table and forwards it there, where it is
            # processed after the route's hops; unchecked, it opens a second session.
            via = self.config.handoff
            forward = self.config.correct_core_check and via != "none"
            copies, hops = (forwarding_cost(via, from_core=core, to_core=owner,
                                            cores=self.config.cores) if forward else (0, 0))
            state.misdirected = "forwarded" if forward else "processed"
            state.check_copies = copies
            state.steering_notes.append(misdirected_note(
                landed=core, owner=owner, forwarded=forward, via=via, copies=copies))
            if forward:
                self._emit(ForwardedCoreToCore, flow.id, from_core=core, to_core=owner,
                           via=via, copies=copies)
                state.request_core = owner
                self._at(self.now_us + self.config.handoff_us * hops, self._process,
                         state, owner, request_hash)
                return
        self._process(state, core, request_hash)

    def _request_owner(self, request: FlowTuple, core: int) -> int | None:
        """The core other than ``core`` whose PCB table holds an open session of the
        request tuple ``request`` (the patent's per-core table of the packets a core
        handled, L664), or None: ``core`` holds one itself, or no core does."""
        owner = None
        for engine in self.engines:
            session = engine.pcb.get(request)
            if session is not None and session.open:
                if engine.core == core:
                    return None
                owner = engine.core if owner is None else owner
        return owner

    def _process(self, state: _FlowState, core: int, request_hash: int | None) -> None:
        """The request's packet engine on ``core`` opens its session and sends it on."""
        flow = state.flow
        request = state.request
        route = state.route = self.router.route(request.dst, request.dport,
                                                request.proto, request_hash)
        refusal = not_served(route.policy, request.version)
        if refusal is not None:
            # a service that cannot take the flow's family refuses it (not a bad capture)
            self._not_served[refusal] = self._not_served.get(refusal, 0) + 1
            reason = verdict_reason("refused", request_core=core, response_core=None,
                                    policy=route.policy, notes=state.notes(),
                                    refusal=refusal)
            self._emit(AllocationFailed, flow.id, core=core, reason=reason)
            self._finish(state, None, "refused", 0, reason)
            return
        engine = self.engines[core]
        try:
            session = engine.open(flow=flow.id, request=request, server_ip=route.server_ip,
                                  server_port=route.server_port, policy=route.policy,
                                  now_us=self.now_us, service=route.service,
                                  addresses_only=self.nic.addresses_only(request.proto,
                                                                         request.version))
        except PortExhausted:
            reason = verdict_reason("refused", request_core=core,
                                    response_core=None, policy=route.policy,
                                    notes=state.notes())
            self._emit(AllocationFailed, flow.id, core=core, reason=reason)
            self._finish(state, None, "refused", 0, reason)
            return
        state.session = session
        allocation = session.allocation
        if allocation is not None:
            self._taken[core] += 1
            self._peak[core] = max(self._peak[core], self._taken[core])
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
        latency = server_latency_us(self.config, server)
        self._at(self.now_us + latency, self._respond, state, server)

    def _server(self, server_side: FlowTuple) -> Server | None:
        return self._servers.get((server_side.dst, server_side.dport))

    def _respond(self, state: _FlowState, server: Server | None) -> None:
        size, mtu = response_size_and_mtu(self.config, server=server,
                                          service=state.session.service,
                                          flow_bytes=state.flow.response_bytes)
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
                reason = verdict_reason("asymmetric", request_core=session.core,
                                        response_core=None, policy=session.policy,
                                        notes=state.notes(), dropped=landing.dropped)
                self._lose_in_reassembly(state, reason)
                self._at(unanswered_end_us(self.config, opened_us=session.last_us,
                                           now_us=self.now_us), self._idle, state)
                return
            landed = landing.core
        else:
            landed = self._steer(state, response, "response", size).core
        owner = self.directory.get(response)
        checked = self.config.correct_core_check
        via = self.config.handoff if checked else "none"
        # A repeated request tuple (transparent) shares its response tuple with an earlier
        # flow's open session on the same core: that core holds the connection either way.
        found = self.engines[landed].lookup_response(response)
        verdict, copies, hops = response_verdict(
            on_owner=found is not None and found.core == session.core,
            landed=landed, owner=owner, route=via, cores=self.config.cores)
        if verdict == "symmetric":
            self._deliver_response(state, landed, "symmetric", 0, "")
            return
        if verdict == "handed-off":
            self._emit(ForwardedCoreToCore, state.flow.id, from_core=landed, to_core=owner,
                       via=via, copies=copies)
            self._count_forward(landed, owner, via, copies)
            state.hops = hops
            self._at(self.now_us + self.config.handoff_us * hops, self._deliver_response,
                     state, landed, "handed-off", copies, via)
            return
        reason = verdict_reason("asymmetric", request_core=session.core, response_core=landed,
                                policy=session.policy, notes=state.notes(), checked=checked)
        self._finish(state, landed, "asymmetric", 0, reason)
        # The lost response never closes the session: only the idle timeout frees it.
        self._at(unanswered_end_us(self.config, opened_us=session.last_us,
                                   now_us=self.now_us), self._idle, state)

    def _count_forward(self, landed: int, owner: int, via: str, copies: int) -> None:
        """Per-core forwarding counters: the receiving core sends, the owner receives;
        each copy is made by the core that holds the packet when it is copied (round the
        ring, each core on the way; a shared-buffer or control-core route's second copy
        is the owner's read)."""
        self.handoffs[landed].sent += 1
        self.handoffs[owner].received += 1
        if via == "neighbour":
            for step in range(copies):
                self.handoffs[(landed + step) % self.config.cores].copies += 1
            return
        self.handoffs[landed].copies += 1
        if copies > 1:
            self.handoffs[owner].copies += copies - 1

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
                                hops=state.hops, notes=state.notes(),
                                by_addresses=self._by_addresses(state),
                                addresses_only=self.nic.addresses_only(
                                    response.proto, response.version))
        self._finish(state, landed, verdict, copies, reason)
        close = state.flow.close
        delay = close_delay_us(self.config, close, state.flow.hold_us)
        if close == "none":
            self._at(self.now_us + delay, self._idle, state)
        else:
            self._at(self.now_us + delay, self._close, state, close)

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
        engine = self.engines[session.core]
        freed = engine.close(session)
        self._taken[session.core] -= freed is not None
        if engine.lookup_response(session.response_tuple) is None:  # no repeat holds it
            self.directory.pop(session.response_tuple, None)
        self._emit(SessionClosed, session.flow, core=session.core, reason=reason)
        if freed is not None:
            self._emit(PortFreed, session.flow, core=session.core, local_ip=str(freed.local_ip),
                       table=freed.table_index, port=freed.port)

    def _lose_in_reassembly(self, state: _FlowState, reason: str) -> None:
        """The flow's datagram was dropped by reassembly: lost, so asymmetric."""
        self._flows_lost += 1
        self._finish(state, None, "asymmetric", 0, reason)

    def _finish(self, state: _FlowState, response_core: int | None, verdict: str,
                copies: int, reason: str) -> None:
        session = state.session
        allocation = None if session is None else session.allocation
        self._emit(Verdict, state.flow.id, verdict=verdict, reason=reason,
                   request_core=state.request_core, response_core=response_core,
                   copies=copies)
        request = state.request_landing or _NO_LANDING
        response = state.response_landing or _NO_LANDING
        state.outcome = FlowOutcome.build(
            flow=state.flow.id, request=state.request, request_core=state.request_core,
            rewritten=None if session is None else session.server_side,
            port=None if allocation is None else PortChoice(
                str(allocation.local_ip), allocation.port, allocation.table_index,
                allocation.tries),
            response_core=response_core, verdict=verdict, copies=copies, reason=reason,
            response_side=FragmentSide(response.fragments, response.action, response.rule),
            request_side=FragmentSide(request.fragments, request.action, request.rule),
            fragment_messages=request.messages + response.messages,
            fragment_copies=request.copies + response.copies, hops=state.hops,
            steering=state.steered())


_NO_LANDING = _Landing(-1, 0)
