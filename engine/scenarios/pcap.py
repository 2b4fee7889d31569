"""Captures in and out: read pcap/pcapng into the lab's packets, group them into flows,
and write a run's packets to a pcap that Wireshark opens.

Reading never fails on a bad *packet*: a frame the lab cannot use (not IP, an unknown
link type, a cut-off or malformed header) is counted under a named reason in
``PcapReadResult.skipped`` and the rest is read. Only a bad *file* (too large, not a
capture at all, too many packets) raises PcapError, and a file whose structure breaks
part-way keeps the packets read so far (``skipped["unreadable rest of file"]``)::

    >>> from engine.examples import EXAMPLES_DIR
    >>> result = read_pcap(EXAMPLES_DIR / "replay.pcap")
    >>> len(result.packets), result.skipped, result.link_types
    (32, {}, {'Ethernet': 32})
    >>> len(flows_from_packets(result.packets).flows)
    4

Link types are those Scapy's imported layers decode: Ethernet (with 802.1Q VLAN
tags), PPP, raw IP (LINKTYPE_RAW/IPV4/IPV6), BSD loopback, Linux cooked capture.
Only ``scapy.layers.{inet,inet6,l2,ppp}`` and ``scapy.utils`` are imported, never
``scapy.all``.

``payload_len`` of an unfragmented packet read here is the number of bytes after its
TCP or UDP header (what ``engine.packet.model.to_scapy`` writes after the header it builds); a
fragment keeps ``from_scapy``'s view: its bytes after the IP (or IPv6 Fragment) header,
the first fragment's including the L4 header, in ``payload``. So a packet written and
read back compares equal.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, BinaryIO

from engine.errors import PcapError
from engine.packet.model import Packet, Proto, from_scapy, to_scapy
from engine.paths.flows import FlowSpec
from engine.safeparse import FileTooBig, read_bounded

#: A capture larger than this is refused before it is read (bytes).
MAX_PCAP_BYTES = 20 << 20
#: At most this many packets are read; more raises PcapError.
MAX_PCAP_PACKETS = 200_000

LINKTYPE_ETHERNET = 1
LINKTYPE_RAW = 101

_PCAP_MAGICS = {b"\xd4\xc3\xb2\xa1", b"\xa1\xb2\xc3\xd4", b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d"}
_PCAPNG_MAGIC = b"\x0a\x0d\x0d\x0a"
_LAB_MAC, _PEER_MAC = "02:00:00:00:00:01", "02:00:00:00:00:02"  # locally administered
_LINK_NAMES = {0: "BSD loopback", 1: "Ethernet", 9: "PPP", 12: "Raw IP", 14: "Raw IP",
               101: "Raw IP", 108: "OpenBSD loopback", 113: "Linux cooked",
               228: "Raw IPv4", 229: "Raw IPv6", 276: "Linux cooked v2"}


@dataclass(frozen=True, slots=True)
class PcapReadResult:
    """``packets`` the lab can use (ids 0.. in file order of the usable packets),
    ``skipped`` counts per reason, ``link_types`` packets per link-type name."""

    packets: list[Packet]
    skipped: dict[str, int] = field(default_factory=dict)
    link_types: dict[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return len(self.packets) + sum(self.skipped.values())


@dataclass(frozen=True, slots=True)
class PcapFlows:
    """Flows found in packets (ids 0.. in order of each flow's first packet) and the
    packets that belong to none, per reason."""

    flows: list[FlowSpec]
    ignored: dict[str, int] = field(default_factory=dict)


@dataclass(slots=True)
class PcapTally:
    """What replaying captures read: frames in the files, packets the lab could use,
    flows found, and every frame or packet left out, per reason (unreadable rest of a
    truncated file, unknown link type, not IP, a fragment without its first...). A run
    report carries it so a partly read capture never passes unnoticed."""

    frames: int = 0
    packets: int = 0
    flows: int = 0
    skipped: dict[str, int] = field(default_factory=dict)

    def add(self, read: PcapReadResult, found: PcapFlows) -> None:
        self.frames += read.total
        self.packets += len(read.packets)
        self.flows += len(found.flows)
        for reason, count in (*read.skipped.items(), *found.ignored.items()):
            self.skipped[reason] = self.skipped.get(reason, 0) + count

    def as_dict(self) -> dict:
        return {"frames": self.frames, "packets": self.packets, "flows": self.flows,
                "skipped": dict(self.skipped)}

    def line(self) -> str:
        """One readable line, e.g. ``pcap: 9 frames, 8 packets used, 4 flows; skipped:
        unreadable rest of file 1``."""
        text = f"pcap: {self.frames} frames, {self.packets} packets used, {self.flows} flows"
        if self.skipped:
            text += "; skipped: " + ", ".join(f"{reason} {count}"
                                              for reason, count in self.skipped.items())
        return text


def _layers():
    """The Scapy pieces this module uses, imported on first use (never scapy.all)."""
    import scapy.layers.inet
    import scapy.layers.inet6
    import scapy.layers.l2
    import scapy.layers.ppp  # noqa: F401  (registers PPP link types)
    from scapy.config import conf
    from scapy.utils import RawPcapReader
    return conf, RawPcapReader


def read_pcap(source: str | Path | bytes | BinaryIO, *, max_bytes: int = MAX_PCAP_BYTES,
              max_packets: int = MAX_PCAP_PACKETS) -> PcapReadResult:
    """Read a pcap or pcapng capture (a path, the file's bytes, or a binary file object).

    Raises PcapError for a missing or oversized file, one that is neither pcap nor
    pcapng, or one with more than ``max_packets`` packets. Never raises for a bad packet.
    """
    data = _load(source, max_bytes)
    if data[:4] not in _PCAP_MAGICS and data[:4] != _PCAPNG_MAGIC:
        raise PcapError("pcap", "a pcap or pcapng file", data[:4].hex() or "an empty file",
                        detail="the first four bytes are not a capture's magic number")
    conf, RawPcapReader = _layers()
    result = PcapReadResult([])
    try:
        reader = RawPcapReader(io.BytesIO(data))
    except Exception:  # noqa: BLE001  (Scapy raises anything on a corrupt header)
        raise PcapError("pcap", "a readable capture header", data[:24].hex(),
                        detail="the file header is corrupt") from None
    # Scapy logs a warning for a cut record or block; ``skipped`` reports it instead.
    scapy_log = logging.getLogger("scapy.runtime")
    quiet = _DropReaderWarnings()
    scapy_log.addFilter(quiet)
    try:
        for frames, (raw, meta) in enumerate(_records(reader, len(data), result), 1):
            if frames > max_packets:
                raise PcapError("pcap", f"at most {max_packets} packets", f"{frames}+",
                                detail="split the capture")
            _read_frame(raw, meta, reader, conf, result)
    finally:
        scapy_log.removeFilter(quiet)
        with contextlib.suppress(Exception):  # closing a BytesIO cannot lose data
            reader.close()
    return result


def _records(reader, size: int, result: PcapReadResult) -> Iterator[tuple[bytes, Any]]:
    """The capture's records as Scapy reads them, up to the first one it cannot read; a
    file that goes on past that point counts one "unreadable rest of file"."""
    iterator = iter(reader)
    while True:
        start = reader.f.tell()
        try:
            yield next(iterator)
        except StopIteration:
            if start < size:  # Scapy stops quietly at a record header cut short
                _count(result.skipped, "unreadable rest of file")
            return
        except Exception:  # noqa: BLE001  (a corrupt record ends the readable part)
            _count(result.skipped, "unreadable rest of file")
            return


def _read_frame(raw: bytes, meta, reader, conf, result: PcapReadResult) -> None:
    """One record into ``result``: counted under its link type, then a packet or a
    reason it was skipped (cut short, a link type Scapy does not decode, a bad frame)."""
    linktype = getattr(meta, "linktype", None)
    if linktype is None:
        linktype = getattr(reader, "linktype", None)
    _count(result.link_types, _LINK_NAMES.get(linktype, f"link type {linktype}"))
    captured = getattr(meta, "caplen", None)  # pcap records only
    if captured is not None and len(raw) < min(captured, _SCAPY_MAX_READ):
        _count(result.skipped, "record cut short by the end of the file")
        return
    decoder = conf.l2types.num2layer.get(linktype)
    if decoder is None:
        _count(result.skipped, f"unknown link type {linktype}")
        return
    packet, reason = _decode(decoder, raw, len(result.packets))
    if packet is None:
        _count(result.skipped, reason)
    else:
        result.packets.append(packet)


def _count(counts: dict[str, int], key: str) -> None:
    counts[key] = counts.get(key, 0) + 1


#: Scapy's RawPcapReader returns at most this many bytes of a record (its MTU, 0xFFFF).
_SCAPY_MAX_READ = 0xFFFF


class _DropReaderWarnings(logging.Filter):
    """Drops RawPcapReader's warnings, also when Scapy's rate limit (``ScapyFreqFilter``,
    which runs first) has prefixed one with "more "."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(("Pcap", "more Pcap"))


def _load(source, max_bytes: int) -> bytes:
    if isinstance(source, bytes | bytearray | memoryview):
        data = bytes(source)
        if len(data) > max_bytes:
            raise PcapError("pcap", f"at most {max_bytes} bytes", f"{len(data)} bytes")
        return data
    if isinstance(source, str | os.PathLike):
        path = Path(source)
        try:
            return read_bounded(path, max_bytes)
        except FileTooBig as error:
            raise PcapError("pcap", f"at most {max_bytes} bytes", error.got,
                            detail=str(path)) from None
        except OSError as error:
            raise PcapError("pcap", "a readable capture file", str(path),
                            detail=error.strerror or str(error)) from None
    data = source.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise PcapError("pcap", f"at most {max_bytes} bytes", f"more than {max_bytes} bytes")
    return data


def _decode(decoder, raw: bytes, index: int) -> tuple[Packet | None, str]:
    """One frame as a Packet, or None and the reason the lab cannot use it."""
    from scapy.layers.inet import IP, TCP, UDP
    from scapy.layers.inet6 import IPv6
    try:
        frame = decoder(raw)
    except Exception:  # noqa: BLE001  (Scapy's dissectors raise many kinds on bad bytes)
        return None, "malformed frame"
    try:
        if IP in frame:
            ip = frame[IP]
            if ip.version != 4 or ip.ihl is None or ip.ihl < 5 or ip.src is None \
                    or ip.dst is None or ip.len is None:
                return None, "malformed IPv4 header"
        elif IPv6 in frame:
            ip6 = frame[IPv6]
            if ip6.version != 6 or ip6.src is None or ip6.dst is None:
                return None, "malformed IPv6 header"
        else:
            return None, "not IP"
        packet = from_scapy(frame, index)
    except Exception:  # noqa: BLE001
        return None, "malformed IP packet"
    if packet.fragment is not None and packet.fragment.is_fragment:
        # from_scapy keeps a fragment's bytes as they are (the first one's include the L4
        # header) and takes the ports from them.
        if packet.fragment.offset == 0 and packet.proto in (Proto.TCP, Proto.UDP) \
                and packet.sport is None:
            return None, "truncated L4 header"
        return packet, ""
    if packet.proto in (Proto.TCP, Proto.UDP):
        layer = TCP if packet.proto == Proto.TCP else UDP
        if layer in frame and packet.sport is not None and packet.dport is not None:
            header = 8 if layer is UDP else (frame[TCP].dataofs or 5) * 4
            return replace(packet, payload_len=max(0, packet.payload_len - header)), ""
        # Scapy leaves an L4 header cut short (a first fragment of 8 bytes, a small
        # snaplen) undecoded; its first 4 bytes still give the ports.
        l4 = _l4_bytes(frame)
        if len(l4) < 4:
            return None, "truncated L4 header"
        sport, dport = struct.unpack("!HH", l4[:4])
        header = min(len(l4), 8 if layer is UDP else 20)
        return replace(packet, sport=sport, dport=dport,
                       payload_len=max(0, packet.payload_len - header)), ""
    return packet, ""


def _l4_bytes(frame) -> bytes:
    """The bytes after the IP header (and IPv6 fragment header) as captured."""
    from scapy.layers.inet import IP
    from scapy.layers.inet6 import IPv6, IPv6ExtHdrFragment
    if IP in frame:
        return bytes(frame[IP].payload)
    if IPv6ExtHdrFragment in frame:
        return bytes(frame[IPv6ExtHdrFragment].payload)
    return bytes(frame[IPv6].payload)


# ---------------------------------------------------------------------------- flows

def flows_from_packets(packets: Iterable[Packet]) -> PcapFlows:
    """Group TCP and UDP packets into flows, both directions together.

    The client is the side that sent the flow's first packet, unless that packet is a
    TCP SYN-ACK (its receiver opened the connection). Request bytes are the payload the
    client sent, response bytes what the server sent. Fragments after the first join
    the flow of their datagram's first fragment (same addresses, protocol and
    identification); those whose first fragment was never seen are ignored, as are
    non-TCP/UDP packets, each counted by reason. A fragmented datagram counts all its
    fragments' bytes, the L4 header inside the first one included.
    """
    by_key: dict[tuple, list] = {}
    datagrams: dict[tuple, tuple[tuple, bool]] = {}
    ignored: dict[str, int] = {}
    order: list[tuple] = []
    for packet in packets:
        if not packet.is_ip:
            ignored["not IP"] = ignored.get("not IP", 0) + 1
            continue
        if packet.proto not in (Proto.TCP, Proto.UDP):
            ignored["not TCP or UDP"] = ignored.get("not TCP or UDP", 0) + 1
            continue
        frag = packet.fragment
        datagram = (packet.src, packet.dst, packet.proto, frag.ident) if frag else None
        if packet.sport is None:
            known = datagrams.get(datagram) if datagram else None
            if known is None:
                ignored["fragment without its first fragment"] = ignored.get(
                    "fragment without its first fragment", 0) + 1
                continue
            key, from_client = known
            entry = by_key[key]
        else:
            a, b = (packet.src, packet.sport), (packet.dst, packet.dport)
            key = (packet.proto, min(a, b, key=_endpoint_order), max(a, b, key=_endpoint_order))
            entry = by_key.get(key)
            if entry is None:
                synack = packet.proto == Proto.TCP and "S" in packet.flags and \
                    "A" in packet.flags
                client, server = (b, a) if synack else (a, b)
                entry = by_key[key] = [client, server, 0, 0]
                order.append(key)
            from_client = (packet.src, packet.sport) == entry[0]
            if datagram is not None:
                datagrams[datagram] = (key, from_client)
        entry[2 if from_client else 3] += packet.payload_len
    flows = []
    for index, key in enumerate(order):
        (c_ip, c_port), (s_ip, s_port), request, response = by_key[key]
        flows.append(FlowSpec(index, c_ip, c_port, s_ip, s_port, key[0], request, response))
    return PcapFlows(flows, ignored)


def _endpoint_order(endpoint: tuple) -> tuple:
    address, port = endpoint
    return (address.version, int(address), port)


# ---------------------------------------------------------------------------- writing

def write_pcap(target: str | Path | BinaryIO, packets: Iterable[Packet], *,
               times: Iterable[float] | None = None, ethernet: bool | None = None) -> int:
    """Write ``packets`` as a classic pcap (microsecond timestamps, little-endian) and
    return how many were written.

    All-IP packets (IPv4 and IPv6 mixed) are written as raw IP (LINKTYPE_RAW, 101): one
    link type fits both families. If any packet is not IP, every packet is written in
    an Ethernet frame (LINKTYPE_ETHERNET) instead. ``times`` gives each packet's time in
    seconds; by default packet i is at i milliseconds, so the file is reproducible.
    ``ethernet=True`` frames every packet in Ethernet even when all are IP (``None``:
    only when needed; ``False`` with a non-IP packet raises PcapError).
    """
    from scapy.layers.l2 import Ether
    items = list(packets)
    needed = any(not p.is_ip for p in items)
    if ethernet is False and needed:
        raise PcapError("ethernet", "True or None for non-IP packets", False)
    ethernet = needed or bool(ethernet)
    chunks = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535,
                          LINKTYPE_ETHERNET if ethernet else LINKTYPE_RAW)]
    stamps = list(times) if times is not None else [i / 1000 for i in range(len(items))]
    if len(stamps) < len(items):
        raise PcapError("times", f"one time per packet ({len(items)})", len(stamps))
    for packet, stamp in zip(items, stamps, strict=False):
        layer = to_scapy(packet)
        if ethernet:
            # Fixed addresses: an Ether() left without them makes Scapy look up routes.
            if packet.is_ip:
                layer = Ether(type=0x0800 if packet.version == 4 else 0x86DD) / layer
            layer.src, layer.dst = _LAB_MAC, _PEER_MAC
        data = bytes(layer)
        seconds = int(stamp)
        micros = int(round((stamp - seconds) * 1_000_000))
        chunks.append(struct.pack("<IIII", seconds, micros, len(data), len(data)) + data)
    blob = b"".join(chunks)
    if isinstance(target, str | os.PathLike):
        Path(target).write_bytes(blob)
    else:
        target.write(blob)
    return len(items)
