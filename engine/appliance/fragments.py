"""IP fragments: reassembly, steering modes, the Assemble/Bridge action, the fragmentation table.

Fragments after the first carry no ports, so a NIC cannot hash them on the 4-tuple
and they may land on a core other than their flow's. The lab models three answers
(``FragmentMode``) and the patent's fragmentation action (Assemble or Bridge)::

    >>> from engine import FlowTuple, IndirectionTable, Key, Nic, Packet
    >>> from engine.appliance.fragments import FragmentMode, FragmentSteerer, fragment_packet
    >>> nic = Nic(key=Key.microsoft(), table=IndirectionTable.round_robin(4, 7))
    >>> flow = FlowTuple.of("10.0.0.2", "10.0.0.1", 53, 40000, "udp")
    >>> pieces = fragment_packet(Packet.from_tuple(7, flow, payload=bytes(100)), 68)
    >>> len(pieces), [p.fragment.offset for p in pieces], pieces[1].sport
    (3, [0, 48, 96], None)
    >>> steerer = FragmentSteerer(nic, FragmentMode.REASSEMBLE_HEADER)
    >>> outcomes = [steerer.receive(p, now_us=10) for p in reversed(pieces)]
    >>> [o.status for o in outcomes]
    ['held', 'held', 'reassembled']
    >>> whole = outcomes[-1].deliveries[0]
    >>> whole.packet.sport, whole.packet.payload == bytes(100), whole.received_on, whole.core
    (53, True, 1, 2)

Byte offsets and lengths are in bytes (an IPv4 header's 13-bit offset field times 8);
``ident`` is 16 bits for IPv4, 32 bits for IPv6; virtual time is in microseconds.

**Reassembly policy.** Fragments may arrive in any order (the last one first too) and
twice: an exact duplicate (same offset, length, more-fragments flag and bytes) is
ignored and counted. Any other overlap drops the whole datagram, as RFC 5722 requires
for IPv6 and as Linux has done for IPv4 since the FragmentSmack fixes (a teardrop-style
overlap is reported, counted, and never raises unless ``strict``); later fragments of a
dropped datagram are dropped too until its timeout. Memory is bounded by
``ReassemblyLimits``: fragments per datagram (over it: the datagram is dropped),
datagrams, fragments and bytes held in total (over them: the oldest datagrams are
evicted first), and a timeout counted from a datagram's first fragment.

**IPv6 under ms-2tuple.** Microsoft's RSS specification says every IPv4 fragment, the
first one too, is hashed on the 2-tuple; it leaves IPv6 fragments open. The lab hashes
every IPv6 fragment on its 2-tuple (source and destination address) as well: the first
fragment's ports cannot be reproduced on the others, so hashing it alone on the
4-tuple would split one datagram over two cores; Linux's flow dissector and common
NICs do the same for fragmented IPv6; and one rule for both families lets a student
compare them.
"""

from __future__ import annotations

import ipaddress
import itertools
import random
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import ClassVar, NamedTuple

from engine.appliance.events import Event
from engine.errors import ConfigError, FragmentError
from engine.nic.rss import Nic, Steering
from engine.packet.model import Address, FlowTuple, Fragment, Packet, Proto, max_datagram_payload

#: The largest IP datagram: a fragment may not reach past byte 65,535 (RFC 791 / RFC 8200).
MAX_DATAGRAM_BYTES = 65_535
IPV4_HEADER_BYTES = 20
IPV6_HEADER_BYTES = 40
IPV6_FRAGMENT_HEADER_BYTES = 8

ASSEMBLE, BRIDGE = "assemble", "bridge"


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


# ---------------------------------------------------------------------------- limits, keys


@dataclass(frozen=True, slots=True)
class ReassemblyLimits:
    """Hard bounds on what one reassembler holds (so a flood cannot exhaust memory).

    ``timeout_us`` — microseconds from a datagram's first fragment until it is dropped
    (Linux ``ipfrag_time``: 30 s). ``max_fragments_per_datagram`` — over it the datagram
    is dropped (a 65,535-byte datagram at a 1,500-byte MTU has 45). ``max_datagrams``,
    ``max_fragments``, ``max_bytes`` — totals held (bytes of fragment data; Linux's
    ``ipfrag_high_thresh`` is 4 MiB); reaching one evicts the oldest datagrams first.
    Raises ConfigError for a limit below 1 (or ``max_bytes`` below one whole datagram).
    """

    timeout_us: int = 30_000_000
    max_fragments_per_datagram: int = 64
    max_datagrams: int = 1024
    max_fragments: int = 8192
    max_bytes: int = 4 * 1024 * 1024

    def __post_init__(self):
        for name in ("timeout_us", "max_fragments_per_datagram", "max_datagrams",
                     "max_fragments"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ConfigError(f"limits.{name}", "a whole number, 1 or more", value)
        if not isinstance(self.max_bytes, int) or self.max_bytes < MAX_DATAGRAM_BYTES:
            raise ConfigError("limits.max_bytes", f"at least {MAX_DATAGRAM_BYTES} bytes "
                              "(one whole datagram)", self.max_bytes)


class DatagramKey(NamedTuple):
    """What identifies one datagram's fragments: (src, dst, proto, ident) for IPv4,
    (src, dst, None, ident) for IPv6 (RFC 8200 keys on addresses and ident only).

    Addresses are kept as integers (host value of the network-order address) so the
    key hashes fast; ``source``/``destination`` give them back as addresses.
    """

    version: int
    src: int
    dst: int
    proto: int | None
    ident: int

    @property
    def source(self) -> Address:
        return _address(self.version, self.src)

    @property
    def destination(self) -> Address:
        return _address(self.version, self.dst)

    def __str__(self) -> str:
        proto = "" if self.proto is None else f" proto {self.proto}"
        return f"{self.source} -> {self.destination}{proto} id {self.ident:#x}"


def _address(version: int, value: int) -> Address:
    return ipaddress.IPv4Address(value) if version == 4 else ipaddress.IPv6Address(value)


def datagram_key(packet: Packet) -> DatagramKey:
    """The reassembly key of a fragment (see ``DatagramKey``). FragmentError if the
    packet is not IP or has no fragment fields."""
    if not packet.is_ip:
        raise FragmentError("packet", "an IP packet", packet.ethertype, reason="not-ip")
    if packet.fragment is None:
        raise FragmentError("fragment", "fragment fields (ident, offset, more)", None,
                            reason="not-a-fragment", detail=f"packet {packet.id}")
    version = packet.src.version
    return DatagramKey(version, int(packet.src), int(packet.dst),
                       packet.proto if version == 4 else None, packet.fragment.ident)


def fragment_length(packet: Packet) -> int:
    """Bytes of IP payload a fragment carries: ``len(payload)`` when it has bytes, else
    ``payload_len`` (a simulated fragment that carries only its length)."""
    return len(packet.payload) if packet.payload else packet.payload_len


def check_fragment(packet: Packet) -> tuple[int, int]:
    """Validate one fragment on its own; return its byte range ``(start, stop)``.

    Raises FragmentError: ``not-ip``, ``not-a-fragment`` (no fragment fields, or offset 0
    with more-fragments clear: an atomic fragment is a whole datagram), ``bad-offset``
    (negative or not a multiple of 8), ``zero-length``, ``not-multiple-of-8`` (a fragment
    with more-fragments set whose length is not a multiple of 8 bytes), ``past-65535``
    (offset + length > 65,535 bytes: the ping-of-death shape).
    """
    fragment = packet.fragment
    if not packet.is_ip:
        raise FragmentError("packet", "an IP packet", packet.ethertype, reason="not-ip")
    if fragment is None or not fragment.is_fragment:
        raise FragmentError("fragment", "a fragment (more-fragments set or offset > 0)",
                            fragment, reason="not-a-fragment")
    start = fragment.offset
    if not isinstance(start, int) or start < 0 or start % 8:
        raise FragmentError("fragment.offset", "a byte offset >= 0 that is a multiple of 8",
                            start, reason="bad-offset")
    length = fragment_length(packet)
    if length <= 0:
        raise FragmentError("fragment.length", "at least 1 byte of fragment data", length,
                            reason="zero-length", detail=f"offset {start}")
    if fragment.more and length % 8:
        raise FragmentError("fragment.length", "a multiple of 8 bytes when more-fragments "
                            "is set", length, reason="not-multiple-of-8")
    stop = start + length
    if stop > MAX_DATAGRAM_BYTES:
        raise FragmentError("fragment.offset", f"offset + length <= {MAX_DATAGRAM_BYTES} "
                            "bytes", stop, reason="past-65535",
                            detail=f"offset {start} + length {length}")
    return start, stop


def header_ports(packet: Packet) -> tuple[int, int] | None:
    """Header discovery: the L4 ports of a first fragment (offset 0), else ``None``.

    Non-first fragments carry no L4 header. A first fragment's ports are its own
    ``sport``/``dport`` when set, else the first 4 bytes of a TCP or UDP payload
    (network byte order), which every first fragment of at least 8 bytes holds.
    """
    fragment = packet.fragment
    if fragment is not None and fragment.offset != 0:
        return None
    if packet.sport is not None and packet.dport is not None:
        return packet.sport, packet.dport
    if packet.proto in (Proto.TCP, Proto.UDP) and len(packet.payload) >= 4:
        data = packet.payload
        return (data[0] << 8) | data[1], (data[2] << 8) | data[3]
    return None


_TCP_FLAG_LETTERS = "FSRPAUEC"


def whole_packet(first: Packet, data: bytes, length: int) -> Packet:
    """The reassembled datagram as a lab ``Packet`` (``fragment=None``).

    ``data`` is the exact reassembled IP payload (``b""`` for length-only fragments) and
    ``length`` its size in bytes. For TCP/UDP the ports and TCP flags are parsed from
    the L4 header and ``payload`` is what follows the header, so ``to_scapy`` rebuilds
    an equivalent packet; for other protocols ``payload`` is all of ``data``.
    """
    sport, dport = header_ports(first) or (None, None)
    flags, header = "", 0
    if first.proto == Proto.TCP:
        header = min(length, ((data[12] >> 4) * 4) if len(data) >= 20 else 20)
        if len(data) >= 14:
            flags = "".join(letter for bit, letter in enumerate(_TCP_FLAG_LETTERS)
                            if data[13] >> bit & 1)
    elif first.proto == Proto.UDP:
        header = min(length, 8)
    if sport is None:
        header = 0
    return Packet(first.id, first.src, first.dst, first.proto, sport, dport,
                  payload_len=length - header, flags=flags or first.flags, fragment=None,
                  ethertype=first.ethertype, payload=data[header:] if data else b"")


# ---------------------------------------------------------------------------- reassembler


class Drop(NamedTuple):
    """A datagram (or one fragment) the reassembler let go without completing it.

    (A named tuple rather than a frozen dataclass: a flood creates one per fragment,
    and a tuple is built several times faster.)

    ``reason`` is a FragmentError reason or ``duplicate``, ``timeout``,
    ``evicted-datagrams`` / ``evicted-fragments`` / ``evicted-bytes`` (total limits),
    ``already-dropped`` (a fragment of a datagram dropped earlier); ``fragments`` and
    ``bytes`` are what was let go; ``packet`` the id of the fragment that caused it.
    """

    key: DatagramKey
    reason: str
    fragments: int
    bytes: int
    t_us: int
    packet: int = -1
    detail: str = ""


@dataclass(frozen=True, slots=True)
class Datagram:
    """A reassembled datagram: ``packet`` (whole, ``fragment=None``) and ``data``, the
    exact original IP payload bytes (L4 header included; ``b""`` if the fragments carried
    lengths only). ``fragments`` is how many fragments it was made of."""

    key: DatagramKey
    packet: Packet
    data: bytes
    fragments: int
    first_us: int
    done_us: int


class ReassemblyResult(NamedTuple):
    """What adding one fragment did: ``status`` is ``held``, ``duplicate``, ``complete``
    or ``dropped``; ``drops`` lists every datagram let go during the call (timeouts and
    evictions included), ``error`` the fragment's own rejection if any. (A named tuple:
    built once per fragment on the hot path.)"""

    status: str
    key: DatagramKey | None
    datagram: Datagram | None = None
    drops: tuple[Drop, ...] = ()
    error: FragmentError | None = None
    held: int = 0


class _Pending:
    """One datagram being reassembled: fragments as ``(start, stop, more, packet)``."""

    __slots__ = ("key", "first_us", "pieces", "end", "bytes")

    def __init__(self, key: DatagramKey, first_us: int):
        self.key = key
        self.first_us = first_us
        self.pieces: list[tuple[int, int, bool, Packet]] = []
        self.end: int | None = None
        self.bytes = 0


@dataclass
class ReassemblyStats:
    """Counters of one reassembler (fragments unless named otherwise)."""

    received: int = 0
    held: int = 0
    duplicates: int = 0
    reassembled: int = 0
    datagrams_dropped: int = 0
    fragments_dropped: int = 0
    drops_by_reason: dict[str, int] = field(default_factory=dict)
    peak_datagrams: int = 0
    peak_fragments: int = 0
    peak_bytes: int = 0

    def as_dict(self) -> dict:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}


class Reassembler:
    """Bounded, order-independent IP reassembly (one per core).

    ``add(packet, now_us)`` never raises on bad traffic (unless ``strict``): a bad or
    inconsistent fragment is dropped with its FragmentError as the reason. Virtual time
    ``now_us`` must not go backwards (ConfigError). See the module docstring for the
    overlap, duplicate and limit policy.
    """

    def __init__(self, limits: ReassemblyLimits | None = None, *, strict: bool = False):
        self.limits = limits or ReassemblyLimits()
        self.strict = strict
        self.stats = ReassemblyStats()
        self._held: OrderedDict[DatagramKey, _Pending] = OrderedDict()
        self._dead: OrderedDict[DatagramKey, int] = OrderedDict()
        self._fragments = 0
        self._bytes = 0
        self._now = 0

    # ---- what is held
    @property
    def datagrams_held(self) -> int:
        return len(self._held)

    @property
    def fragments_held(self) -> int:
        return self._fragments

    @property
    def bytes_held(self) -> int:
        return self._bytes

    def __contains__(self, key: DatagramKey) -> bool:
        return key in self._held

    # ---- operations
    def expire(self, now_us: int) -> list[Drop]:
        """Drop every datagram whose first fragment is ``timeout_us`` old (counted).
        Raises ConfigError if ``now_us`` is before the last time seen."""
        if now_us < self._now:
            raise ConfigError("now_us", f"a virtual time >= {self._now} us (time does not "
                              "go backwards)", now_us)
        self._now = now_us
        drops = []
        deadline = now_us - self.limits.timeout_us
        held = self._held
        while held:
            pending = next(iter(held.values()))
            if pending.first_us > deadline:
                break
            drops.append(self._kill(pending, "timeout", now_us, tombstone=False))
        dead = self._dead
        while dead and next(iter(dead.values())) <= now_us:
            dead.popitem(last=False)
        return drops

    def take(self, key: DatagramKey) -> list[Packet]:
        """Remove a held datagram without counting a drop and return its fragments in
        arrival order (the distributor forwards them on a Bridge action)."""
        pending = self._held.pop(key, None)
        if pending is None:
            return []
        self._fragments -= len(pending.pieces)
        self._bytes -= pending.bytes
        return [piece[3] for piece in pending.pieces]

    def add(self, packet: Packet, now_us: int) -> ReassemblyResult:
        """Hold one fragment; complete its datagram if this was the missing piece.

        Raises ConfigError if ``now_us`` goes backwards; FragmentError (see
        ``check_fragment`` and the class docstring) only when ``strict``.
        """
        held, limits, stats = self._held, self.limits, self.stats
        drops = self.expire(now_us) if now_us != self._now or held else []
        stats.received += 1
        try:
            key = datagram_key(packet)
            start, stop = check_fragment(packet)
        except FragmentError as error:
            key = datagram_key(packet) if packet.is_ip and packet.fragment else None
            drop = Drop(key, error.reason, 1, fragment_length(packet), now_us, packet.id,
                        str(error))
            self._count(drop, datagram=False)
            drops.append(drop)
            return self._reject(ReassemblyResult("dropped", key, None, tuple(drops), error))
        size = stop - start
        if key in self._dead:
            drop = Drop(key, "already-dropped", 1, size, now_us, packet.id)
            self._count(drop, datagram=False)
            drops.append(drop)
            return ReassemblyResult("dropped", key, None, tuple(drops))
        pending = held.get(key)
        if pending is None:
            if len(held) >= limits.max_datagrams:
                drops.extend(self._make_room(None, datagrams=1, fragments=1, size=size))
            pending = held[key] = _Pending(key, now_us)
        more = packet.fragment.more
        error = self._conflict(pending, packet, start, stop, more) if pending.pieces else None
        if error == "duplicate":
            stats.duplicates += 1
            drop = Drop(key, "duplicate", 1, size, now_us, packet.id)
            self._count(drop, datagram=False)
            drops.append(drop)
            return ReassemblyResult("duplicate", key, None, tuple(drops), None,
                                    len(pending.pieces))
        if error is not None:
            drops.append(self._kill(pending, error.reason, now_us, packet=packet.id,
                                    extra=size, detail=str(error)))
            return self._reject(ReassemblyResult("dropped", key, None, tuple(drops), error))
        if (self._fragments >= limits.max_fragments
                or self._bytes + size > limits.max_bytes):
            drops.extend(self._make_room(key, datagrams=0, fragments=1, size=size))
            if key not in held:  # evicted to make room for its own fragment
                drop = Drop(key, drops[-1].reason, 1, size, now_us, packet.id)
                self._count(drop, datagram=False)
                drops.append(drop)
                return ReassemblyResult("dropped", key, None, tuple(drops))
        if not more:
            pending.end = stop
        pending.pieces.append((start, stop, more, packet))
        pending.bytes += size
        self._fragments += 1
        self._bytes += size
        stats.held += 1
        if self._fragments > stats.peak_fragments:
            stats.peak_fragments = self._fragments
        if self._bytes > stats.peak_bytes:
            stats.peak_bytes = self._bytes
        if len(held) > stats.peak_datagrams:
            stats.peak_datagrams = len(held)
        if pending.end is not None and pending.bytes == pending.end:
            return ReassemblyResult("complete", key, self._complete(pending, now_us),
                                    tuple(drops))
        return ReassemblyResult("held", key, None, tuple(drops), None, len(pending.pieces))

    # ---- internals
    def _reject(self, result: ReassemblyResult) -> ReassemblyResult:
        if self.strict and result.error is not None:
            raise result.error
        return result

    def _conflict(self, pending: _Pending, packet: Packet, start: int, stop: int,
                  more: bool) -> FragmentError | str | None:
        """``"duplicate"``, a FragmentError for an inconsistent fragment, or None."""
        for other_start, other_stop, other_more, other in pending.pieces:
            if other_start < stop and start < other_stop:
                if (other_start == start and other_stop == stop and other_more == more
                        and other.payload == packet.payload):
                    return "duplicate"
                return FragmentError(
                    "fragment.offset", f"no overlap with bytes {other_start}-{other_stop} "
                    "already held", f"bytes {start}-{stop}", reason="overlap",
                    detail="the whole datagram is dropped (RFC 5722 policy)")
        end = pending.end
        if not more:
            if end is not None and end != stop:
                return FragmentError("fragment.more", f"one last fragment, ending at byte "
                                     f"{end}", f"a second one ending at byte {stop}",
                                     reason="two-last-fragments")
            beyond = max((piece[1] for piece in pending.pieces), default=0)
            if beyond > stop:
                return FragmentError("fragment.more", f"a last fragment ending at or after "
                                     f"byte {beyond} (data already held)",
                                     f"one ending at byte {stop}", reason="beyond-end")
        elif end is not None and stop >= end:
            return FragmentError("fragment.offset", f"a non-last fragment ending before "
                                 f"byte {end} (the last fragment's end)",
                                 f"one ending at byte {stop}", reason="beyond-end")
        limit = self.limits.max_fragments_per_datagram
        if len(pending.pieces) >= limit:
            return FragmentError("fragments", f"at most {limit} fragments per datagram",
                                 len(pending.pieces) + 1, reason="too-many-fragments")
        return None

    def _make_room(self, keep: DatagramKey | None, *, datagrams: int, fragments: int,
                   size: int) -> list[Drop]:
        """Evict the oldest datagrams until the totals leave room for what is coming."""
        limits, drops = self.limits, []
        while self._held:
            if len(self._held) + datagrams > limits.max_datagrams:
                reason = "evicted-datagrams"
            elif self._fragments + fragments > limits.max_fragments:
                reason = "evicted-fragments"
            elif self._bytes + size > limits.max_bytes:
                reason = "evicted-bytes"
            else:
                break
            victim = None
            for pending in self._held.values():  # the oldest, sparing the one being added to
                if pending.key != keep:
                    victim = pending
                    break
            drops.append(self._kill(victim or self._held[keep], reason, self._now))
        return drops

    def _kill(self, pending: _Pending, reason: str, now_us: int, *, packet: int = -1,
              extra: int = 0, detail: str = "", tombstone: bool = True) -> Drop:
        """Drop a held datagram (and, with ``extra`` bytes, the fragment that killed it)."""
        del self._held[pending.key]
        self._fragments -= len(pending.pieces)
        self._bytes -= pending.bytes
        drop = Drop(pending.key, reason, len(pending.pieces) + (1 if extra else 0),
                    pending.bytes + extra, now_us, packet, detail)
        self._count(drop, datagram=True)
        if tombstone:
            self._dead[pending.key] = pending.first_us + self.limits.timeout_us
            if len(self._dead) > self.limits.max_datagrams:
                self._dead.popitem(last=False)
        return drop

    def _count(self, drop: Drop, *, datagram: bool) -> None:
        stats = self.stats
        stats.datagrams_dropped += datagram
        stats.fragments_dropped += drop.fragments
        stats.drops_by_reason[drop.reason] = stats.drops_by_reason.get(drop.reason, 0) + 1

    def _complete(self, pending: _Pending, now_us: int) -> Datagram:
        del self._held[pending.key]
        self._fragments -= len(pending.pieces)
        self._bytes -= pending.bytes
        self.stats.reassembled += 1
        pieces = sorted(pending.pieces, key=lambda piece: piece[0])
        first = pieces[0][3]
        length = pending.end
        if all(piece[3].payload for piece in pieces):
            data = b"".join(piece[3].payload for piece in pieces)
        else:
            data = b""
        return Datagram(pending.key, whole_packet(first, data, length), data, len(pieces),
                        pending.first_us, now_us)


# ---------------------------------------------------------------------------- action rules


@dataclass(frozen=True, slots=True)
class ActionDecision:
    """The fragmentation action (``assemble`` or ``bridge``) and the rule that chose it."""

    action: str
    rule: str


@dataclass(frozen=True, slots=True)
class SessionFacts:
    """What the packet engines' lookups found for a fragmented datagram's 4-tuple.

    ``service_is_udp`` is ``None`` when the traffic hits no configured service (or
    packet engine), else whether that service's type is UDP.
    """

    pcb_hit: bool = False
    natpcb_hit: bool = False
    assemble_flag: bool = False
    service_is_udp: bool | None = None
    rnat: bool = False


def decide_action(*, proto: int, pcb_hit: bool, natpcb_hit: bool, assemble_flag: bool,
                  service_is_udp: bool | None, rnat: bool,
                  forced: str | None = None) -> ActionDecision:
    """The patent's fragmentation-action rules, first match wins.

    TCP: a PCB hit, a NAT PCB hit with the Assemble Packet flag set, a configured
    service whose type is not UDP, or RNAT traffic → Assemble; otherwise Bridge.
    UDP: a NAT PCB hit with the flag set, or a configured non-UDP service → Assemble;
    otherwise Bridge (a PCB hit or RNAT does not count for UDP). Other protocols carry
    neither header, so the rules do not apply: Bridge. ``forced`` (``assemble`` or
    ``bridge``, by configuration) overrides all. Raises ConfigError for another
    ``forced`` value.
    """
    if forced is not None:
        if forced not in (ASSEMBLE, BRIDGE):
            raise ConfigError("forced", "assemble, bridge or None", forced)
        return ActionDecision(forced, f"forced by configuration: {forced.title()}")
    non_udp_service = service_is_udp is False
    if proto == Proto.TCP:
        if pcb_hit:
            return ActionDecision(ASSEMBLE, "TCP: the traffic hits a PCB -> Assemble")
        if natpcb_hit and assemble_flag:
            return ActionDecision(ASSEMBLE, "TCP: NAT PCB with the assemble flag -> Assemble")
        if non_udp_service:
            return ActionDecision(ASSEMBLE, "TCP: configured service is not UDP -> Assemble")
        if rnat:
            return ActionDecision(ASSEMBLE, "TCP: RNAT traffic -> Assemble")
        return ActionDecision(BRIDGE, "TCP: no PCB, no NAT PCB with the assemble flag, "
                              "no non-UDP service, not RNAT -> Bridge")
    if proto == Proto.UDP:
        if natpcb_hit and assemble_flag:
            return ActionDecision(ASSEMBLE, "UDP: NAT PCB with the assemble flag -> Assemble")
        if non_udp_service:
            return ActionDecision(ASSEMBLE, "UDP: configured service is not UDP -> Assemble")
        return ActionDecision(BRIDGE, "UDP: no NAT PCB with the assemble flag, "
                              "no non-UDP service -> Bridge")
    return ActionDecision(BRIDGE, f"protocol {proto}: neither TCP nor UDP, the rules do "
                          "not apply -> Bridge")


# ---------------------------------------------------------------------------- fragmentation table


@dataclass(frozen=True, slots=True)
class TableEntry:
    """One fragmentation-table row: the action for a datagram, its 4-tuple and the
    destination core. The patent records (src, dst, sport, dport) with the action; the
    row is found by the datagram's key (src, dst, proto, ident) because later fragments
    carry no ports."""

    key: DatagramKey
    flow: FlowTuple
    action: str
    core: int
    rule: str
    t_us: int


class FragmentationTable:
    """Per core: datagram → action, bounded like the reassembler (oldest evicted first,
    rows expire ``timeout_us`` after they were recorded). Raises ConfigError for a
    size or timeout below 1."""

    def __init__(self, *, max_entries: int = 1024, timeout_us: int = 30_000_000):
        if max_entries < 1:
            raise ConfigError("max_entries", "1 or more", max_entries)
        if timeout_us < 1:
            raise ConfigError("timeout_us", "1 or more microseconds", timeout_us)
        self.max_entries = max_entries
        self.timeout_us = timeout_us
        self.evicted = 0
        self.expired = 0
        self._rows: OrderedDict[DatagramKey, TableEntry] = OrderedDict()

    def __len__(self) -> int:
        return len(self._rows)

    def record(self, entry: TableEntry) -> None:
        self._rows.pop(entry.key, None)
        self._rows[entry.key] = entry
        while len(self._rows) > self.max_entries:
            self._rows.popitem(last=False)
            self.evicted += 1

    def lookup(self, key: DatagramKey, now_us: int) -> TableEntry | None:
        self.expire(now_us)
        return self._rows.get(key)

    def find(self, src: str | Address, dst: str | Address, sport: int, dport: int,
             ident: int) -> TableEntry | None:
        """The row for (src, dst, sport, dport, ident), as the patent states the key
        (a scan: for reports and tests, not the per-packet path)."""
        src, dst = ipaddress.ip_address(src), ipaddress.ip_address(dst)
        for entry in self._rows.values():
            flow = entry.flow
            if (entry.key.ident == ident and flow.src == src and flow.dst == dst
                    and flow.sport == sport and flow.dport == dport):
                return entry
        return None

    def expire(self, now_us: int) -> int:
        rows, gone = self._rows, 0
        while rows and next(iter(rows.values())).t_us + self.timeout_us <= now_us:
            rows.popitem(last=False)
            gone += 1
        self.expired += gone
        return gone

    def entries(self) -> list[TableEntry]:
        return list(self._rows.values())


# ---------------------------------------------------------------------------- events


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
    """The first fragment gave the L4 header: its 4-tuple hashes to ``dest_core``."""

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
    """``core`` let ``fragments`` go: ``reason`` as in ``Drop``; ``detail`` is the
    FragmentError message when there was one."""

    kind: ClassVar[str] = "fragment-dropped"

    packet: int
    core: int
    reason: str
    fragments: int
    detail: str


FRAGMENT_EVENT_KINDS: dict[str, type[Event]] = {cls.kind: cls for cls in (
    FragmentSteered, FragmentHeld, HeaderFound, ActionDecided, ActionSentToCore, Bridged,
    Reassembled, ReassembledForwarded, FragmentDropped)}


# ---------------------------------------------------------------------------- steerer


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

    def decide(self, flow: FlowTuple) -> ActionDecision:
        facts = self.sessions(flow) if self.sessions is not None else SessionFacts()
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
        run.emit(HeaderFound, packet=packet.id, core=received_on, tuple=flow,
                 hash=steering.hash, bucket=steering.bucket, dest_core=steering.core)
        decision = self.decide(flow)
        run.emit(ActionDecided, core=received_on, action=decision.action,
                 rule=decision.rule, tuple=flow)
        entry = TableEntry(key, flow, decision.action, steering.core, decision.rule,
                           run.now_us)
        self.tables[received_on].record(entry)
        run.steering[key] = steering
        if steering.core != received_on:
            self.tables[steering.core].record(entry)
            self.stats.action_messages += 1
            run.emit(ActionSentToCore, from_core=received_on, to_core=steering.core,
                     action=decision.action, tuple=flow)
        return entry

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
                decision = steerer.decide(whole.tuple)
                entry = TableEntry(datagram.key, whole.tuple, decision.action,
                                   flow_steering.core, decision.rule, self.now_us)
            dest, steering, action, rule = entry.core, flow_steering, entry.action, entry.rule
            where = ("default fragment core" if steerer.mode is FragmentMode.DEFAULT_CORE
                     else "2-tuple core")
            reason = (f"{steerer.mode.value}: 4-tuple hash -> core {dest}; {action} "
                      f"(received on {where} {received_on})")
            if dest != core:
                steerer.stats.packet_transfers += 1
                self.emit(ReassembledForwarded, packet=whole.id, from_core=core, to_core=dest)
        steerer.stats.delivered += 1
        self.deliveries.append(Delivery(
            whole, dest, received_on, datagram.fragments, steering.hash, steering.bucket,
            flow_steering.core, action, rule, reason, datagram.data))
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
                     action: str = BRIDGE, default_fragment_core: int = 0) -> FragmentPlan:
    """Which core a datagram of ``fragments`` fragments on ``flow`` ends on under
    ``mode``, and its core-to-core cost: what ``FragmentSteerer`` does to it (whatever
    the arrival order), computed directly so the batch path agrees with the trace path.
    ``action`` is the decided fragmentation action. Raises ConfigError for an unknown
    mode or action, or fewer than 2 fragments.
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
    moved = four.core != received_on
    return FragmentPlan(mode, received_on, four.core, four.core, two.core, four.hash,
                        four.bucket, action, int(moved),
                        int(moved and action == ASSEMBLE),
                        fragments if moved and action == BRIDGE else 0,
                        f"{mode.value}: 4-tuple hash -> core {four.core}; {action}")


# ---------------------------------------------------------------------------- crafting


def l4_bytes(packet: Packet) -> bytes:
    """The IP payload a whole packet would carry on the wire (L4 header + payload), as
    Scapy builds it (checksums computed)."""
    from scapy.layers.inet import IP
    from scapy.layers.inet6 import IPv6

    from engine.packet.model import to_scapy

    built = to_scapy(replace(packet, fragment=None))
    layer = IP if packet.version == 4 else IPv6
    return bytes(layer(bytes(built)).payload)


def fragment_packet(packet: Packet, mtu: int, *, order: str = "in", duplicates: int = 0,
                    rng: random.Random | None = None, ident: int | None = None) -> list[Packet]:
    """Fragment a whole packet for a link of ``mtu`` bytes (IP MTU: IP header included).

    Each fragment carries at most ``mtu - 20`` (IPv4) or ``mtu - 48`` (IPv6: 40-byte
    header + 8-byte Fragment extension header) bytes, rounded down to a multiple of 8.
    The lab accepts MTUs below IPv4's 68 and IPv6's 1,280 so small examples fragment.
    The first fragment keeps the ports (its slice holds the L4 header); the others have
    ``sport``/``dport`` ``None``. Every fragment keeps ``packet.id``. ``ident`` defaults
    to the packet's own fragment ident, else ``packet.id`` (masked to 16 bits for IPv4).
    ``order``: ``in``, ``reverse`` or ``random``; ``duplicates`` extra copies of
    randomly chosen fragments are inserted at random places. A packet that fits is
    returned alone. Raises ConfigError for a non-IP packet, a payload larger than one
    datagram holds, an MTU below header + 8, an unknown order, negative duplicates, or
    ``random``/duplicates without ``rng``.
    """
    if not packet.is_ip:
        raise ConfigError("packet", "an IP packet", packet.ethertype)
    header = IPV4_HEADER_BYTES if packet.version == 4 else (
        IPV6_HEADER_BYTES + IPV6_FRAGMENT_HEADER_BYTES)
    if not isinstance(mtu, int) or mtu < header + 8:
        raise ConfigError("mtu", f"at least {header + 8} bytes for IPv{packet.version}", mtu)
    if order not in ("in", "reverse", "random"):
        raise ConfigError("order", "in, reverse or random", order)
    if not isinstance(duplicates, int) or duplicates < 0:
        raise ConfigError("duplicates", "a whole number, 0 or more", duplicates)
    if rng is None and (order == "random" or duplicates):
        raise ConfigError("rng", "a random.Random(seed) for a random order or duplicates",
                          None)
    largest = max_datagram_payload(packet.version, packet.proto)
    size = len(packet.payload) if packet.payload else packet.payload_len
    if not isinstance(size, int) or not 0 <= size <= largest:
        raise ConfigError("payload_len", f"0-{largest} bytes (one IPv{packet.version} "
                          f"datagram's payload)", size)
    data = l4_bytes(packet)
    step = (mtu - header) // 8 * 8
    if len(data) + (IPV4_HEADER_BYTES if packet.version == 4 else IPV6_HEADER_BYTES) <= mtu:
        return [packet]
    if ident is None:
        ident = packet.fragment.ident if packet.fragment is not None else packet.id
    ident &= 0xFFFF if packet.version == 4 else 0xFFFFFFFF
    pieces = []
    for offset in range(0, len(data), step):
        chunk = data[offset:offset + step]
        first = offset == 0
        pieces.append(Packet(packet.id, packet.src, packet.dst, packet.proto,
                             packet.sport if first else None, packet.dport if first else None,
                             payload_len=len(chunk), flags=packet.flags if first else "",
                             fragment=Fragment(ident, offset, offset + step < len(data)),
                             ethertype=packet.ethertype, payload=chunk))
    if order == "reverse":
        pieces.reverse()
    elif order == "random":
        rng.shuffle(pieces)
    for _ in range(duplicates):
        pieces.insert(rng.randrange(len(pieces) + 1), pieces[rng.randrange(len(pieces))])
    return pieces


__all__ = [
    "ASSEMBLE", "BRIDGE", "MAX_DATAGRAM_BYTES", "ActionDecided", "ActionDecision",
    "ActionSentToCore", "Bridged", "Datagram", "DatagramKey", "Delivery", "Drop",
    "FRAGMENT_EVENT_KINDS", "FragmentDropped", "FragmentHeld", "FragmentMode",
    "FragmentOutcome", "FragmentPlan", "FragmentSteered", "FragmentSteerer",
    "FragmentationTable", "HeaderFound", "Reassembled", "ReassembledForwarded",
    "Reassembler", "ReassemblyLimits", "ReassemblyResult", "ReassemblyStats", "SessionFacts",
    "SteererStats", "TableEntry", "check_fragment", "datagram_key", "decide_action",
    "fragment_length", "fragment_outcome", "fragment_packet", "header_ports", "l4_bytes",
    "whole_packet",
]
