"""Bounded, order-independent IP reassembly: one ``Reassembler`` per core.

**Reassembly policy.** Fragments may arrive in any order (the last one first too) and
twice: an exact duplicate (same offset, length, more-fragments flag and bytes) is
ignored and counted. Any other overlap drops the whole datagram, as RFC 5722 requires
for IPv6 and as Linux has done for IPv4 since the FragmentSmack fixes (a teardrop-style
overlap is reported, counted, and never raises unless ``strict``); later fragments of a
dropped datagram are dropped too until its timeout. Memory is bounded by
``ReassemblyLimits``: fragments per datagram (over it: the datagram is dropped),
datagrams, fragments and bytes held in total (over them: the oldest datagrams are
evicted first), and a timeout counted from a datagram's first fragment. Virtual time is
in microseconds::

    >>> from engine.appliance.fragments import fragment_packet
    >>> from engine.packet.model import FlowTuple, Packet
    >>> flow = FlowTuple.of("10.0.0.2", "10.0.0.1", 53, 40000, "udp")
    >>> pieces = fragment_packet(Packet.from_tuple(7, flow, payload=bytes(100)), 68)
    >>> reassembler = Reassembler()
    >>> [reassembler.add(p, 0).status for p in (pieces[2], pieces[2], pieces[0], pieces[1])]
    ['held', 'duplicate', 'held', 'complete']
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from operator import itemgetter
from typing import NamedTuple

from engine.appliance.fragments.datagram import (
    MAX_DATAGRAM_BYTES,
    DatagramKey,
    check_fragment,
    datagram_key,
    fragment_length,
    whole_packet,
)
from engine.errors import ConfigError, FragmentError
from engine.packet.model import Packet


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


#: A held piece's start byte: the order its datagram is put together in.
_START = itemgetter(0)


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
            return self._bad_fragment(packet, error, now_us, drops)
        size = stop - start
        if key in self._dead:
            return self._drop_fragment(drops, key, "already-dropped", size, now_us, packet.id)
        pending = held.get(key)
        if pending is None:
            if len(held) >= limits.max_datagrams:
                drops.extend(self._make_room(None, datagrams=1, fragments=1, size=size))
            pending = held[key] = _Pending(key, now_us)
        more = packet.fragment.more
        error = self._conflict(pending, packet, start, stop, more) if pending.pieces else None
        if error is not None:
            return self._refuse(pending, packet, error, size, now_us, drops)
        if (self._fragments >= limits.max_fragments
                or self._bytes + size > limits.max_bytes):
            drops.extend(self._make_room(key, datagrams=0, fragments=1, size=size))
            if key not in held:  # evicted to make room for its own fragment
                return self._drop_fragment(drops, key, drops[-1].reason, size, now_us,
                                           packet.id)
        # Hold it. (Written out here, not in a helper: this runs once per fragment, and
        # the peaks are only recomputed when one is passed.)
        if not more:
            pending.end = stop
        pending.pieces.append((start, stop, more, packet))
        pending.bytes += size
        fragments = self._fragments = self._fragments + 1
        total = self._bytes = self._bytes + size
        stats.held += 1
        if (fragments > stats.peak_fragments or total > stats.peak_bytes
                or len(held) > stats.peak_datagrams):
            self._new_peak()
        if pending.end is not None and pending.bytes == pending.end:
            return ReassemblyResult("complete", key, self._complete(pending, now_us),
                                    tuple(drops))
        return ReassemblyResult("held", key, None, tuple(drops), None, len(pending.pieces))

    # ---- internals
    def _new_peak(self) -> None:
        """Raise the peaks to what is held now (most fragments only reach them again)."""
        stats = self.stats
        stats.peak_fragments = max(stats.peak_fragments, self._fragments)
        stats.peak_bytes = max(stats.peak_bytes, self._bytes)
        stats.peak_datagrams = max(stats.peak_datagrams, len(self._held))

    def _drop_fragment(self, drops: list[Drop], key: DatagramKey | None, reason: str,
                       size: int, now_us: int, packet: int, detail: str = "",
                       status: str = "dropped", error: FragmentError | None = None,
                       held: int = 0) -> ReassemblyResult:
        """Let one fragment go (its datagram, if any, stays held) and say so."""
        drop = Drop(key, reason, 1, size, now_us, packet, detail)
        self._count(drop, datagram=False)
        drops.append(drop)
        return ReassemblyResult(status, key, None, tuple(drops), error, held)

    def _bad_fragment(self, packet: Packet, error: FragmentError, now_us: int,
                      drops: list[Drop]) -> ReassemblyResult:
        """A fragment ``check_fragment`` (or ``datagram_key``) rejected on its own."""
        key = datagram_key(packet) if packet.is_ip and packet.fragment else None
        return self._reject(self._drop_fragment(
            drops, key, error.reason, fragment_length(packet), now_us, packet.id, str(error),
            error=error))

    def _refuse(self, pending: _Pending, packet: Packet, error: FragmentError | str,
                size: int, now_us: int, drops: list[Drop]) -> ReassemblyResult:
        """A fragment that ``_conflict`` found wrong: an exact duplicate is ignored (and
        counted); anything else drops the whole datagram with it."""
        if error == "duplicate":
            self.stats.duplicates += 1
            return self._drop_fragment(drops, pending.key, "duplicate", size, now_us,
                                       packet.id, status="duplicate",
                                       held=len(pending.pieces))
        drops.append(self._kill(pending, error.reason, now_us, packet=packet.id, extra=size,
                                detail=str(error)))
        return self._reject(ReassemblyResult("dropped", pending.key, None, tuple(drops),
                                             error))

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
        pieces = sorted(pending.pieces, key=_START)
        first = pieces[0][3]
        length = pending.end
        payloads = [piece[3].payload for piece in pieces]
        data = b"".join(payloads) if all(payloads) else b""
        return Datagram(pending.key, whole_packet(first, data, length), data, len(pieces),
                        pending.first_us, now_us)
