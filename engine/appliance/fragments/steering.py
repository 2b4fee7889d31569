"""Fragments from the NIC to whole packets on the right core: the three ``FragmentMode``s.

Fragments after the first carry no ports, so a NIC cannot hash them on the 4-tuple and
they may land on a core other than their flow's. ``FragmentSteerer`` models the three
answers: it steers each fragment to a first core, reassembles there (``Reassembler``),
and under ``reassemble-header`` and ``default-core`` finds the header, decides the
action (``decide_action``), records it in the fragmentation tables and moves the
datagram to its flow's core. ``fragment_outcome`` computes the same end directly, so the
batch path agrees with the trace path without simulating fragments::

    >>> from engine import FlowTuple, IndirectionTable, Key, Nic
    >>> nic = Nic(key=Key.microsoft(), table=IndirectionTable.round_robin(4, 7))
    >>> flow = FlowTuple.of("10.0.0.2", "10.0.0.1", 53, 40000, "udp")
    >>> plan = fragment_outcome(nic, flow, "reassemble-header", fragments=3)
    >>> plan.received_on, plan.core, plan.fragment_copies
    (1, 2, 3)

**IPv6 under ms-2tuple.** Microsoft's RSS specification says every IPv4 fragment, the
first one too, is hashed on the 2-tuple; it leaves IPv6 fragments open. The lab hashes
every IPv6 fragment on its 2-tuple (source and destination address) as well: the first
fragment's ports cannot be reproduced on the others, so hashing it alone on the
4-tuple would split one datagram over two cores; Linux's flow dissector and common
NICs do the same for fragmented IPv6; and one rule for both families lets a student
compare them.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from enum import StrEnum

from engine.appliance.events import (
    ActionDecided,
    ActionSentToCore,
    Bridged,
    Event,
    FragmentDropped,
    FragmentHeld,
    FragmentSteered,
    HeaderFound,
    Reassembled,
    ReassembledForwarded,
)
from engine.appliance.fragments.actions import (
    ASSEMBLE,
    BRIDGE,
    ActionDecision,
    SessionFacts,
    decide_action,
)
from engine.appliance.fragments.datagram import (
    DatagramKey,
    datagram_key,
    fragment_length,
    header_ports,
)
from engine.appliance.fragments.reassembly import Reassembler, ReassemblyLimits
from engine.appliance.fragments.table import FragmentationTable, TableEntry
from engine.errors import ConfigError
from engine.nic.rss import Nic, Steering
from engine.packet.model import FlowTuple, Packet


class FragmentMode(StrEnum):
    """Where fragments go.

    * ``ms-2tuple`` — Microsoft's RSS specification: every fragment (the first too) is
      hashed on its addresses only and reassembled on that core, whatever its flow's
      4-tuple core is.
    * ``reassemble-header`` — the patent's flow distributor: the core the NIC picked
      holds fragments until the one with the L4 header arrives, hashes the 4-tuple and
      moves the datagram to that core (Assemble: reassembled first; Bridge: fragment
      by fragment).
    * ``default-core`` — every fragment goes to one configured fragment core, which
      finds the header the same way and hands the datagram on (reassembled or bridged).
    """

    MS_2TUPLE = "ms-2tuple"
    REASSEMBLE_HEADER = "reassemble-header"
    DEFAULT_CORE = "default-core"

    @classmethod
    def parse(cls, mode) -> FragmentMode:
        """``mode`` as a FragmentMode; ConfigError naming ``mode`` otherwise."""
        try:
            return cls(mode)
        except ValueError:
            raise ConfigError("mode", ", ".join(m.value for m in cls), mode) from None


@dataclass(frozen=True, slots=True)
class Delivery:
    """A whole packet handed to the packet engine of ``core``.

    ``fragments`` is 0 for a packet that was never fragmented; ``data`` the exact
    reassembled IP payload. ``hash``/``bucket`` are those of the hash that chose
    ``core``; ``flow_core`` is where the 4-tuple hashes (equal to ``core`` except under
    ``ms-2tuple``), ``reason`` says why the packet is on ``core``.
    """

    packet: Packet
    core: int
    received_on: int
    fragments: int
    hash: int | None
    bucket: int | None
    flow_core: int | None
    action: str | None
    rule: str | None
    reason: str
    data: bytes = b""
    #: ``core`` is the connection's owner, found by the session lookup (seed L64)
    by_owner: bool = False


@dataclass(frozen=True, slots=True)
class FragmentOutcome:
    """What receiving one packet did. ``status``: ``passed`` (not a fragment), ``held``,
    ``bridged`` (forwarded and held at the destination), ``reassembled``, ``duplicate``
    or ``dropped``. ``deliveries`` are the whole packets released by this call."""

    packet: int
    received_on: int
    status: str
    deliveries: tuple[Delivery, ...]
    events: tuple[Event, ...]


@dataclass
class SteererStats:
    """Core-to-core cost of fragments: ``action_messages`` (action + 4-tuple to the
    destination core), ``packet_transfers`` (a reassembled packet copied, Assemble),
    ``fragment_copies`` (fragments copied, Bridge)."""

    fragments: int = 0
    action_messages: int = 0
    packet_transfers: int = 0
    fragment_copies: int = 0
    delivered: int = 0

    @property
    def core_to_core_messages(self) -> int:
        return self.action_messages + self.packet_transfers + self.fragment_copies

    def as_dict(self) -> dict:
        return {**{name: getattr(self, name) for name in self.__dataclass_fields__},
                "core_to_core_messages": self.core_to_core_messages}


class FragmentSteerer:
    """Fragments from the NIC to whole packets on the right core, under one ``mode``.

    One ``Reassembler`` and one ``FragmentationTable`` per core. ``sessions`` maps a
    datagram's 4-tuple to the ``SessionFacts`` the packet engines would find (default:
    none, so TCP and UDP are Bridged); ``forced`` overrides the action. Events share
    the run's ``seq`` counter when one is passed. Raises ConfigError for a fragment core
    outside the NIC's cores.
    """

    def __init__(self, nic: Nic, mode: FragmentMode | str, *, default_fragment_core: int = 0,
                 limits: ReassemblyLimits | None = None,
                 sessions: Callable[[FlowTuple], SessionFacts] | None = None,
                 forced: str | None = None, seq: Iterator[int] | None = None,
                 strict: bool = False):
        self.mode = FragmentMode.parse(mode)
        if not 0 <= default_fragment_core < nic.cores:
            raise ConfigError("default_fragment_core", f"a core 0-{nic.cores - 1}",
                              default_fragment_core)
        if forced not in (None, ASSEMBLE, BRIDGE):
            raise ConfigError("forced", "assemble, bridge or None", forced)
        self.nic = nic
        self.default_fragment_core = default_fragment_core
        self.limits = limits or ReassemblyLimits()
        self.sessions = sessions
        self.forced = forced
        self.seq = seq if seq is not None else itertools.count()
        self.reassemblers = [Reassembler(self.limits, strict=strict) for _ in range(nic.cores)]
        self.tables = [FragmentationTable(max_entries=self.limits.max_datagrams,
                                          timeout_us=self.limits.timeout_us)
                       for _ in range(nic.cores)]
        self.stats = SteererStats()

    def facts(self, flow: FlowTuple) -> SessionFacts:
        """What the packet engines know of ``flow`` (none without a ``sessions`` lookup)."""
        return self.sessions(flow) if self.sessions is not None else SessionFacts()

    def decide(self, flow: FlowTuple, facts: SessionFacts | None = None) -> ActionDecision:
        facts = self.facts(flow) if facts is None else facts
        return decide_action(proto=flow.proto, pcb_hit=facts.pcb_hit,
                             natpcb_hit=facts.natpcb_hit, assemble_flag=facts.assemble_flag,
                             service_is_udp=facts.service_is_udp, rnat=facts.rnat,
                             forced=self.forced)

    def receive(self, packet: Packet, now_us: int, *, flow: int = -1) -> FragmentOutcome:
        """Take one packet from the wire at virtual time ``now_us`` (µs); ``flow`` is the
        run's flow id stamped on the events. Raises ConfigError if time goes backwards;
        FragmentError only for a ``strict`` steerer."""
        run = _Run(self, now_us, flow, packet.id)
        fragment = packet.fragment
        if fragment is None or not fragment.is_fragment or not packet.is_ip:
            steering = self.nic.steer(packet)
            run.deliveries.append(Delivery(packet, steering.core, steering.core, 0,
                                           steering.hash, steering.bucket, steering.core,
                                           None, None, f"not a fragment: {steering.reason}"))
            self.stats.delivered += 1
            return run.outcome(steering.core, "passed")
        self.stats.fragments += 1
        for core, reassembler in enumerate(self.reassemblers):
            run.dropped(core, reassembler.expire(now_us))
            self.tables[core].expire(now_us)
        two_tuple = self.nic.steer(replace(packet, sport=None, dport=None))
        if self.mode is FragmentMode.DEFAULT_CORE:
            received_on = self.default_fragment_core
            run.emit(FragmentSteered, packet=packet.id, core=received_on,
                     offset=fragment.offset, hash=None, bucket=None,
                     reason="default fragment core")
        else:
            received_on = two_tuple.core
            run.emit(FragmentSteered, packet=packet.id, core=received_on,
                     offset=fragment.offset, hash=two_tuple.hash, bucket=two_tuple.bucket,
                     reason="2-tuple hash" if two_tuple.hash is not None else two_tuple.reason)
        if self.mode is FragmentMode.MS_2TUPLE:
            status = run.add(received_on, packet, None, two_tuple)
            return run.outcome(received_on, status)
        key = datagram_key(packet)
        entry = self.tables[received_on].lookup(key, now_us)
        if entry is None and fragment.offset == 0:
            entry = self._header_found(run, packet, key, received_on)
            if entry.action == BRIDGE and entry.core != received_on:
                status = "bridged"
                for held in [*self.reassemblers[received_on].take(key), packet]:
                    status = self._bridge(run, held, received_on, entry)
                return run.outcome(received_on, status)
        if entry is not None and entry.action == BRIDGE and entry.core != received_on:
            return run.outcome(received_on, self._bridge(run, packet, received_on, entry))
        return run.outcome(received_on, run.add(received_on, packet, entry, None))

    def _header_found(self, run: _Run, packet: Packet, key: DatagramKey,
                      received_on: int) -> TableEntry:
        ports = header_ports(packet)
        sport, dport = ports if ports is not None else (None, None)
        flow = FlowTuple(packet.src, packet.dst, sport, dport, packet.proto)
        steering = self.nic.steer(Packet(packet.id, packet.src, packet.dst, packet.proto,
                                         sport, dport))
        entry = self.table_entry(key, flow, steering, run.now_us)
        run.emit(HeaderFound, packet=packet.id, core=received_on, tuple=flow,
                 hash=steering.hash, bucket=steering.bucket, dest_core=entry.core)
        run.emit(ActionDecided, core=received_on, action=entry.action,
                 rule=entry.rule, tuple=flow)
        self.tables[received_on].record(entry)
        run.steering[key] = steering
        if entry.core != received_on:
            self.tables[entry.core].record(entry)
            self.stats.action_messages += 1
            run.emit(ActionSentToCore, from_core=received_on, to_core=entry.core,
                     action=entry.action, tuple=flow)
        return entry

    def table_entry(self, key: DatagramKey, flow: FlowTuple, steering: Steering,
               now_us: int) -> TableEntry:
        """The action for ``flow``'s datagram and its destination: the core that
        established the connection when one did (the patent's rule on the core holding
        the fragments, seed L64, L702), else the core its 4-tuple hashes to."""
        facts = self.facts(flow)
        decision = self.decide(flow, facts)
        by_owner = facts.owner is not None
        return TableEntry(key, flow, decision.action,
                          facts.owner if by_owner else steering.core, decision.rule,
                          now_us, by_owner)

    def _bridge(self, run: _Run, packet: Packet, received_on: int, entry: TableEntry) -> str:
        self.stats.fragment_copies += 1
        run.emit(Bridged, packet=packet.id, from_core=received_on, to_core=entry.core,
                 offset=packet.fragment.offset, length=fragment_length(packet))
        status = run.add(entry.core, packet, entry, None, received_on=received_on)
        return "bridged" if status == "held" else status


class _Run:
    """The bookkeeping of one ``receive`` call: its events and deliveries."""

    __slots__ = ("steerer", "now_us", "flow", "packet", "events", "deliveries", "steering")

    def __init__(self, steerer: FragmentSteerer, now_us: int, flow: int, packet: int):
        self.steerer = steerer
        self.now_us = now_us
        self.flow = flow
        self.packet = packet
        self.events: list[Event] = []
        self.deliveries: list[Delivery] = []
        self.steering: dict[DatagramKey, Steering] = {}

    def emit(self, cls: type[Event], **fields) -> None:
        self.events.append(cls(t_us=self.now_us, seq=next(self.steerer.seq), flow=self.flow,
                               **fields))

    def dropped(self, core: int, drops) -> None:
        for drop in drops:
            self.emit(FragmentDropped, packet=drop.packet, core=core, reason=drop.reason,
                      fragments=drop.fragments, detail=drop.detail)

    def outcome(self, received_on: int, status: str) -> FragmentOutcome:
        return FragmentOutcome(self.packet, received_on, status, tuple(self.deliveries),
                               tuple(self.events))

    def add(self, core: int, packet: Packet, entry: TableEntry | None,
            two_tuple: Steering | None, *, received_on: int | None = None) -> str:
        """Give ``packet`` to ``core``'s reassembler; deliver the datagram if complete."""
        steerer = self.steerer
        received_on = core if received_on is None else received_on
        result = steerer.reassemblers[core].add(packet, self.now_us)
        self.dropped(core, result.drops)
        if result.status == "held":
            fragment = packet.fragment
            self.emit(FragmentHeld, packet=packet.id, core=core, ident=fragment.ident,
                      offset=fragment.offset, length=fragment_length(packet),
                      more=fragment.more, held=result.held)
            return "held"
        if result.status != "complete":
            return result.status
        datagram = result.datagram
        whole = datagram.packet
        self.emit(Reassembled, packet=whole.id, core=core, fragments=datagram.fragments,
                  bytes=len(datagram.data) or whole.payload_len)
        flow_steering = self.steering.get(datagram.key) or steerer.nic.steer(whole)
        if two_tuple is not None:  # ms-2tuple: stays where the 2-tuple hash put it
            dest, steering, action, rule = core, two_tuple, None, None
            reason = (f"ms-2tuple: every fragment hashed on the addresses only "
                      f"(hash {two_tuple.hash:#010x}, bucket {two_tuple.bucket}) -> core "
                      f"{core}; its 4-tuple hashes to core {flow_steering.core}"
                      if two_tuple.hash is not None else f"ms-2tuple: {two_tuple.reason}")
        else:
            if entry is None:  # table row evicted or expired: steer the whole packet now
                entry = steerer.table_entry(datagram.key, whole.tuple, flow_steering,
                                       self.now_us)
            dest, steering, action, rule = entry.core, flow_steering, entry.action, entry.rule
            where = ("default fragment core" if steerer.mode is FragmentMode.DEFAULT_CORE
                     else "2-tuple core")
            chose = "the connection's owner" if entry.by_owner else "4-tuple hash"
            reason = (f"{steerer.mode.value}: {chose} -> core {dest}; {action} "
                      f"(received on {where} {received_on})")
            if dest != core:
                steerer.stats.packet_transfers += 1
                self.emit(ReassembledForwarded, packet=whole.id, from_core=core, to_core=dest)
        steerer.stats.delivered += 1
        self.deliveries.append(Delivery(
            whole, dest, received_on, datagram.fragments, steering.hash, steering.bucket,
            flow_steering.core, action, rule, reason, datagram.data,
            entry is not None and entry.by_owner))
        return "reassembled"


# ---------------------------------------------------------------------------- batch agreement


@dataclass(frozen=True, slots=True)
class FragmentPlan:
    """Where a fragmented datagram of ``flow`` ends under one mode, without simulating it.

    ``received_on`` is the core the fragments first land on, ``core`` the one whose
    packet engine gets the whole packet, ``flow_core`` where the 4-tuple hashes,
    ``two_tuple_core`` where the addresses alone hash. Message counts are those of
    ``SteererStats`` for this one datagram.
    """

    mode: FragmentMode
    received_on: int
    core: int
    flow_core: int
    two_tuple_core: int
    hash: int | None
    bucket: int | None
    action: str | None
    action_messages: int
    packet_transfers: int
    fragment_copies: int
    reason: str


def fragment_outcome(nic: Nic, flow: FlowTuple, mode: FragmentMode | str, *, fragments: int,
                     action: str = BRIDGE, default_fragment_core: int = 0,
                     owner: int | None = None) -> FragmentPlan:
    """Which core a datagram of ``fragments`` fragments on ``flow`` ends on under
    ``mode``, and its core-to-core cost: what ``FragmentSteerer`` does to it (whatever
    the arrival order), computed directly so the batch path agrees with the trace path.
    ``action`` is the decided fragmentation action; ``owner`` the core that established
    the connection, where the datagram goes instead of its 4-tuple core (seed L64).
    Raises ConfigError for an unknown mode or action, or fewer than 2 fragments.
    """
    mode = FragmentMode.parse(mode)
    if action not in (ASSEMBLE, BRIDGE):
        raise ConfigError("action", "assemble or bridge", action)
    if fragments < 2:
        raise ConfigError("fragments", "2 or more fragments", fragments)
    two = nic.steer(Packet(0, flow.src, flow.dst, flow.proto))
    four = nic.steer(Packet(0, flow.src, flow.dst, flow.proto, flow.sport, flow.dport))
    if mode is FragmentMode.MS_2TUPLE:
        return FragmentPlan(mode, two.core, two.core, four.core, two.core, two.hash,
                            two.bucket, None, 0, 0, 0,
                            f"ms-2tuple: hashed on the addresses only -> core {two.core}")
    received_on = (default_fragment_core if mode is FragmentMode.DEFAULT_CORE else two.core)
    dest = four.core if owner is None else owner
    moved = dest != received_on
    chose = "4-tuple hash" if owner is None else "the connection's owner"
    return FragmentPlan(mode, received_on, dest, four.core, two.core, four.hash,
                        four.bucket, action, int(moved),
                        int(moved and action == ASSEMBLE),
                        fragments if moved and action == BRIDGE else 0,
                        f"{mode.value}: {chose} -> core {dest}; {action}")
