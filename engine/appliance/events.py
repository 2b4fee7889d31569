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

Other modules (the fragmentation module) add their own kinds by subclassing
``Event`` with a ``kind`` class attribute; ``as_dict`` works for them unchanged.
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
    """The flow's outcome: ``symmetric``, ``handed-off``, ``asymmetric`` or
    ``allocation-failed``; ``copies`` is the handoff cost in packet copies."""

    kind: ClassVar[str] = "verdict"

    verdict: str
    reason: str
    request_core: int
    response_core: int | None
    copies: int


#: Every kind this module defines, by its JSON name (for filters in the web lab).
EVENT_KINDS: dict[str, type[Event]] = {cls.kind: cls for cls in (
    PacketArrived, Hashed, Steered, Rewritten, PortAllocated, AllocationFailed,
    ForwardedCoreToCore, DeliveredToServer, ResponseSent, ResponseArrived, SessionClosed,
    PortFreed, Verdict)}
