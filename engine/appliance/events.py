"""The trace's typed events: what happened to which flow, when, and where.

Every event is a small frozen dataclass with a virtual time ``t_us`` (integer
microseconds since the start of the run), a ``seq`` (the run's event counter:
ties in time keep their order, so a replay is exact) and the ``flow`` id it is
about (``-1`` for none). ``kind`` names the class in the JSON form, and
``as_dict()`` gives a flat, JSON-ready dict (addresses and tuples as text) that
the web lab streams over a websocket::

    >>> from engine.appliance.events import Steered
    >>> Steered(t_us=0, seq=3, flow=1, core=2, reason="hash").as_dict()
    {'kind': 'steered', 't_us': 0, 'seq': 3, 'flow': 1, 'core': 2, 'reason': 'hash'}

Every kind lives in this module, the fragments' too (``engine.appliance.fragments``
emits them), and ``EVENT_KINDS`` lists them all: a new kind is a subclass of ``Event``
here with a ``kind`` class attribute, added to the registry at the bottom (a test checks
that no subclass is missing and no kind is used twice). The web lab switches on the
kind names, so they and the field names are the JSON contract: rename neither.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from dataclasses import dataclass
from typing import ClassVar

from engine.packet.model import FlowTuple


def _plain(value):
    """A JSON-ready form of one field value: text for addresses and tuples."""
    if isinstance(value, FlowTuple | ipaddress.IPv4Address | ipaddress.IPv6Address):
        return str(value)
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return str(value)


@dataclass(frozen=True, slots=True)
class Event:
    """Base of every trace event. Subclasses set ``kind`` and add their fields."""

    kind: ClassVar[str] = "event"

    t_us: int
    seq: int
    flow: int

    def as_dict(self) -> dict:
        """``{"kind": ..., "t_us": ..., "seq": ..., "flow": ..., <fields>}``, flat."""
        result = {"kind": self.kind}
        for spec in dataclasses.fields(self):
            result[spec.name] = _plain(getattr(self, spec.name))
        return result


@dataclass(frozen=True, slots=True)
class PacketArrived(Event):
    """A packet reached the NIC. ``direction`` is ``request`` (from the client) or
    ``response`` (from the server); ``packet`` is the packet id; ``bytes`` its payload."""

    kind: ClassVar[str] = "packet-arrived"

    packet: int
    direction: str
    tuple: FlowTuple
    bytes: int


@dataclass(frozen=True, slots=True)
class Hashed(Event):
    """The NIC's RSS decision: the 32-bit hash, its bucket and the bucket's core.

    ``input_hex`` is the hash input (src, dst, sport, dport, network byte order) after
    the NIC's transform; ``hash`` is ``None`` when the packet was not hashed."""

    kind: ClassVar[str] = "hashed"

    packet: int
    hash: int | None
    bucket: int | None
    core: int
    input_hex: str
    hash_type: str | None


@dataclass(frozen=True, slots=True)
class Steered(Event):
    """The packet was queued to ``core`` (``reason``: ``hash`` or the default-core cause)."""

    kind: ClassVar[str] = "steered"

    core: int
    reason: str


@dataclass(frozen=True, slots=True)
class Rewritten(Event):
    """A packet engine changed a tuple: ``before`` → ``after`` (``direction`` as above)."""

    kind: ClassVar[str] = "rewritten"

    core: int
    direction: str
    policy: str
    before: FlowTuple
    after: FlowTuple


@dataclass(frozen=True, slots=True)
class PortAllocated(Event):
    """A port allocation table handed out ``local_ip``:``port`` after ``tries`` candidates.

    ``table`` is the table index on that IP (always 0 except for ``usip``);
    ``bucket`` is the indirection-table bucket the response will hash to."""

    kind: ClassVar[str] = "port-allocated"

    core: int
    local_ip: str
    table: int
    port: int
    tries: int
    strategy: str
    bucket: int


@dataclass(frozen=True, slots=True)
class AllocationFailed(Event):
    """No fitting free port on ``core``: the request is refused, never sent with a
    wrong port."""

    kind: ClassVar[str] = "allocation-failed"

    core: int
    reason: str


@dataclass(frozen=True, slots=True)
class ForwardedCoreToCore(Event):
    """A misdirected packet moved from the core that received it to its owner.

    ``via`` is ``message`` (one copy into the owner's queue) or ``shared-buffer`` (one
    write into the global cache by the sender plus one read by the owner: 2 copies)."""

    kind: ClassVar[str] = "forwarded"

    from_core: int
    to_core: int
    via: str
    copies: int
    #: who moved it: ``correct-core check`` (a core that does not own the packet's
    #: session, seed L650-L672) or ``distributor`` (the flow distributor steering a
    #: packet off the core that received it: an RSS-unaware NIC or a rule)
    by: str = "correct-core check"


@dataclass(frozen=True, slots=True)
class DeliveredToServer(Event):
    """The (rewritten) request reached the real server."""

    kind: ClassVar[str] = "delivered-to-server"

    core: int
    tuple: FlowTuple


@dataclass(frozen=True, slots=True)
class ResponseSent(Event):
    """The server answered with ``bytes`` of payload on ``tuple`` (as it leaves the server)."""

    kind: ClassVar[str] = "response-sent"

    tuple: FlowTuple
    bytes: int


@dataclass(frozen=True, slots=True)
class ResponseArrived(Event):
    """The response, reverse-translated by ``core``, reached the client on ``tuple``."""

    kind: ClassVar[str] = "response-arrived"

    core: int
    tuple: FlowTuple


@dataclass(frozen=True, slots=True)
class SessionClosed(Event):
    """The session on ``core`` ended: ``reason`` is ``fin``, ``rst`` or ``idle timeout``
    (or ``core failed`` when the control core dropped it)."""

    kind: ClassVar[str] = "session-closed"

    core: int
    reason: str


@dataclass(frozen=True, slots=True)
class PortFreed(Event):
    """The session's port went back to its port allocation table."""

    kind: ClassVar[str] = "port-freed"

    core: int
    local_ip: str
    table: int
    port: int


@dataclass(frozen=True, slots=True)
class Verdict(Event):
    """The flow's outcome, one of ``engine.appliance.verdicts.VERDICTS`` (``symmetric``,
    ``handed-off``, ``asymmetric``, ``refused``); ``copies`` is the handoff cost in
    packet copies."""

    kind: ClassVar[str] = "verdict"

    verdict: str
    reason: str
    request_core: int
    response_core: int | None
    copies: int


# ---------------------------------------------------------------------------- fragments


@dataclass(frozen=True, slots=True)
class FragmentSteered(Event):
    """Where a fragment first landed (``core``) and why: the NIC's 2-tuple hash or the
    default fragment core. ``hash``/``bucket`` are ``None`` when not hashed."""

    kind: ClassVar[str] = "fragment-steered"

    packet: int
    core: int
    offset: int
    hash: int | None
    bucket: int | None
    reason: str


@dataclass(frozen=True, slots=True)
class FragmentHeld(Event):
    """``core`` holds a fragment (bytes ``offset``..``offset+length``); ``held`` counts
    this datagram's fragments held there now."""

    kind: ClassVar[str] = "fragment-held"

    packet: int
    core: int
    ident: int
    offset: int
    length: int
    more: bool
    held: int


@dataclass(frozen=True, slots=True)
class HeaderFound(Event):
    """The first fragment gave the L4 header (its 4-tuple's ``hash`` and ``bucket``);
    the datagram goes to ``dest_core``: the connection's owner when a packet engine
    holds the connection (seed L64, L702), else the core its 4-tuple hashes to."""

    kind: ClassVar[str] = "header-found"

    packet: int
    core: int
    tuple: FlowTuple
    hash: int | None
    bucket: int | None
    dest_core: int


@dataclass(frozen=True, slots=True)
class ActionDecided(Event):
    """The fragmentation action for the datagram and the patent rule that fired."""

    kind: ClassVar[str] = "action-decided"

    core: int
    action: str
    rule: str
    tuple: FlowTuple


@dataclass(frozen=True, slots=True)
class ActionSentToCore(Event):
    """A core-to-core message: the action and the 4-tuple, for the destination core's
    fragmentation table."""

    kind: ClassVar[str] = "action-sent"

    from_core: int
    to_core: int
    action: str
    tuple: FlowTuple


@dataclass(frozen=True, slots=True)
class Bridged(Event):
    """One fragment copied from ``from_core`` to ``to_core`` (Bridge action)."""

    kind: ClassVar[str] = "bridged"

    packet: int
    from_core: int
    to_core: int
    offset: int
    length: int


@dataclass(frozen=True, slots=True)
class Reassembled(Event):
    """``core`` completed the datagram: ``fragments`` pieces, ``bytes`` of IP payload."""

    kind: ClassVar[str] = "reassembled"

    packet: int
    core: int
    fragments: int
    bytes: int


@dataclass(frozen=True, slots=True)
class ReassembledForwarded(Event):
    """The reassembled packet copied to its destination core (Assemble action)."""

    kind: ClassVar[str] = "reassembled-forwarded"

    packet: int
    from_core: int
    to_core: int


@dataclass(frozen=True, slots=True)
class FragmentDropped(Event):
    """``core`` let ``fragments`` go: ``reason`` as in the reassembler's ``Drop``
    (``engine.appliance.fragments``); ``detail`` is the FragmentError message when there
    was one."""

    kind: ClassVar[str] = "fragment-dropped"

    packet: int
    core: int
    reason: str
    fragments: int
    detail: str


#: The fragments' kinds (``engine.appliance.fragments``), in the order a datagram meets them.
_FRAGMENT_EVENTS = (FragmentSteered, FragmentHeld, HeaderFound, ActionDecided, ActionSentToCore,
                    Bridged, Reassembled, ReassembledForwarded, FragmentDropped)

#: Every kind, by its JSON name (for filters in the web lab).
EVENT_KINDS: dict[str, type[Event]] = {cls.kind: cls for cls in (
    PacketArrived, Hashed, Steered, Rewritten, PortAllocated, AllocationFailed,
    ForwardedCoreToCore, DeliveredToServer, ResponseSent, ResponseArrived, SessionClosed,
    PortFreed, Verdict, *_FRAGMENT_EVENTS)}

#: The fragments' part of ``EVENT_KINDS`` (tests check a fragmented run emits only these
#: besides the packet kinds).
FRAGMENT_EVENT_KINDS: dict[str, type[Event]] = {cls.kind: cls for cls in _FRAGMENT_EVENTS}
