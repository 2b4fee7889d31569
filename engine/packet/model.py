"""The packet model: the few header fields steering depends on, as small frozen dataclasses.

A ``Packet`` is what the NIC, the distributor and the packet engines pass
around. It carries addresses, ports, the protocol, TCP flags, fragment fields
and a payload length, plus a stable ``id`` that events and reports refer to.
Conversion to and from Scapy is here too, importing only the layers used
(``scapy.layers.inet`` and ``scapy.layers.inet6``), never ``scapy.all``.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from enum import IntEnum

from engine.errors import TupleError
from engine.packet.toeplitz import check_port, hash_input, parse_address

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


class Proto(IntEnum):
    """IP protocol numbers the lab knows by name."""

    ICMP = 1
    TCP = 6
    UDP = 17
    ICMPV6 = 58

    @classmethod
    def parse(cls, value: str | int) -> int:
        """``tcp``/``udp``/... or a number 0–255; TupleError otherwise."""
        if isinstance(value, str) and value.strip().upper() in cls.__members__:
            return int(cls[value.strip().upper()])
        try:
            number = int(value)
        except (TypeError, ValueError):
            raise TupleError("proto", "tcp, udp, icmp or a protocol number 0-255",
                             value) from None
        if not 0 <= number <= 255:
            raise TupleError("proto", "a protocol number 0-255", value)
        return number


#: L4 header bytes of the packets the lab builds (TCP without options).
L4_HEADER_BYTES = {Proto.TCP: 20, Proto.UDP: 8}


def max_datagram_payload(version: int, proto: int) -> int:
    """The most L4 payload bytes one IP datagram can carry: 65,535 (IPv4's total length,
    which counts its 20-byte header; IPv6's payload length, which does not) less the IP
    header for IPv4 and the L4 header — 65,507 for UDP over IPv4, 65,495 for TCP."""
    ip_header = 20 if version == 4 else 0
    return 65_535 - ip_header - L4_HEADER_BYTES.get(proto, 0)


def proto_name(number: int) -> str:
    try:
        return Proto(number).name.lower()
    except ValueError:
        return str(number)


@dataclass(frozen=True, slots=True)
class FlowTuple:
    """The 5-tuple of one direction of a flow. Ports are ``None`` for port-less protocols."""

    src: Address
    dst: Address
    sport: int | None
    dport: int | None
    proto: int = Proto.TCP

    @classmethod
    def of(cls, src, dst, sport=None, dport=None, proto: str | int = "tcp") -> FlowTuple:
        """Build from text or numbers, validating every field (TupleError names the field)."""
        source, destination = parse_address(src, "src"), parse_address(dst, "dst")
        if source.version != destination.version:
            raise TupleError("dst", f"an IPv{source.version} address like src", str(dst))
        return cls(source, destination,
                   None if sport is None else check_port(sport, "sport"),
                   None if dport is None else check_port(dport, "dport"),
                   Proto.parse(proto))

    @property
    def version(self) -> int:
        return self.src.version

    @property
    def has_ports(self) -> bool:
        return self.sport is not None and self.dport is not None

    def reversed(self) -> FlowTuple:
        """The tuple of the other direction: what a response carries as it arrives."""
        return FlowTuple(self.dst, self.src, self.dport, self.sport, self.proto)

    def hash_input(self, *, with_ports: bool = True) -> bytes:
        """RSS input bytes: src, dst[, sport, dport], network byte order."""
        if with_ports and self.has_ports:
            return hash_input(self.src, self.dst, self.sport, self.dport)
        return hash_input(self.src, self.dst)

    def __str__(self) -> str:
        def end(address, port):
            text = f"[{address}]" if address.version == 6 and port is not None else str(address)
            return text if port is None else f"{text}:{port}"
        return (f"{proto_name(self.proto)} {end(self.src, self.sport)} -> "
                f"{end(self.dst, self.dport)}")


@dataclass(frozen=True, slots=True)
class Fragment:
    """IP fragment fields: ``offset`` in bytes (a multiple of 8), ``more`` = MF flag.

    For IPv6 these come from the Fragment extension header; ``ident`` is 16 bits
    for IPv4 and 32 bits for IPv6.
    """

    ident: int
    offset: int
    more: bool

    @property
    def is_fragment(self) -> bool:
        """A packet with offset 0 and MF clear is a whole datagram, not a fragment."""
        return self.more or self.offset > 0


@dataclass(frozen=True, slots=True)
class Packet:
    """One packet as the lab sees it.

    ``src``/``dst`` are ``None`` for a non-IP frame (``ethertype`` then says what it is).
    ``sport``/``dport`` are ``None`` when the packet carries no L4 ports (a port-less
    protocol, or a non-first fragment). ``payload_len`` is the L4 payload in bytes.
    """

    id: int
    src: Address | None
    dst: Address | None
    proto: int = Proto.TCP
    sport: int | None = None
    dport: int | None = None
    payload_len: int = 0
    flags: str = ""
    fragment: Fragment | None = None
    ethertype: int = 0x0800
    payload: bytes = field(default=b"", repr=False, compare=True)

    @classmethod
    def from_tuple(cls, id: int, flow: FlowTuple, **fields) -> Packet:
        return cls(id, flow.src, flow.dst, flow.proto, flow.sport, flow.dport, **fields)

    @property
    def is_ip(self) -> bool:
        return self.src is not None and self.dst is not None

    @property
    def version(self) -> int | None:
        return self.src.version if self.src is not None else None

    @property
    def tuple(self) -> FlowTuple | None:
        if not self.is_ip:
            return None
        return FlowTuple(self.src, self.dst, self.sport, self.dport, self.proto)


def to_scapy(packet: Packet):
    """A Scapy IP or IPv6 packet (TCP/UDP with ports when the packet has them).

    The payload is ``packet.payload`` when set, else ``payload_len`` zero bytes.
    Non-IP packets become an Ethernet frame with the packet's ethertype.
    """
    from scapy.layers.inet import IP, TCP, UDP
    from scapy.layers.inet6 import IPv6, IPv6ExtHdrFragment
    from scapy.layers.l2 import Ether
    from scapy.packet import Raw

    body = packet.payload or bytes(packet.payload_len)
    if not packet.is_ip:
        return Ether(type=packet.ethertype) / Raw(body)
    frag = packet.fragment
    if frag is not None and frag.is_fragment:
        # A fragment's payload is its slice of the IP payload (the L4 header, if any,
        # is inside the first slice): building a TCP/UDP header here would duplicate it.
        l4 = Raw(body)
    elif packet.proto == Proto.TCP and packet.sport is not None:
        l4 = TCP(sport=packet.sport, dport=packet.dport, flags=packet.flags or "S") / Raw(body)
    elif packet.proto == Proto.UDP and packet.sport is not None:
        l4 = UDP(sport=packet.sport, dport=packet.dport) / Raw(body)
    else:
        l4 = Raw(body)
    if packet.version == 4:
        ip = IP(src=str(packet.src), dst=str(packet.dst), proto=packet.proto)
        if frag is not None:
            ip.id, ip.frag, ip.flags = frag.ident & 0xFFFF, frag.offset // 8, (
                "MF" if frag.more else 0)
        return ip / l4
    ip6 = IPv6(src=str(packet.src), dst=str(packet.dst))
    if frag is not None:
        return ip6 / IPv6ExtHdrFragment(id=frag.ident, offset=frag.offset // 8,
                                        m=int(frag.more), nh=packet.proto) / l4
    ip6.nh = packet.proto
    return ip6 / l4


def from_scapy(pkt, id: int) -> Packet:
    """The lab's view of a Scapy packet (any link layer Scapy decoded: Ethernet, VLAN,
    PPP, raw IP). Non-IP packets come back with ``src``/``dst`` ``None``.
    """
    from scapy.layers.inet import IP, TCP, UDP
    from scapy.layers.inet6 import IPv6, IPv6ExtHdrFragment

    if IP in pkt:
        ip = pkt[IP]
        offset = ip.frag * 8
        more = bool(int(ip.flags) & 0x1)
        frag = Fragment(ip.id, offset, more) if (more or offset) else None
        proto, src, dst = ip.proto, ip.src, ip.dst
        payload_len = max(0, (ip.len or len(ip)) - ip.ihl * 4) if ip.ihl else len(ip.payload)
        layer = ip
    elif IPv6 in pkt:
        ip6 = pkt[IPv6]
        src, dst = ip6.src, ip6.dst
        frag = None
        proto = ip6.nh
        layer = ip6
        if IPv6ExtHdrFragment in pkt:
            header = pkt[IPv6ExtHdrFragment]
            frag = Fragment(header.id, header.offset * 8, bool(header.m))
            proto = header.nh
            layer = header
        payload_len = len(layer.payload)
    else:
        raw = bytes(pkt)
        ethertype = getattr(pkt, "type", 0) or 0
        return Packet(id, None, None, 0, payload_len=len(raw), ethertype=int(ethertype))
    sport = dport = None
    if frag is None or frag.offset == 0:
        l4 = next((pkt[layer] for layer in (TCP, UDP) if layer in pkt), None)
        if l4 is not None:
            sport, dport = int(l4.sport), int(l4.dport)
    flags = str(pkt[TCP].flags) if TCP in pkt else ""
    payload = b""
    if frag is not None and frag.is_fragment:
        payload = _fragment_data(pkt, layer)
        payload_len = len(payload)
        if (frag.offset == 0 and sport is None and len(payload) >= 4
                and proto in (Proto.TCP, Proto.UDP)):
            # A first fragment too short for Scapy to dissect the whole TCP header
            # (8 bytes in some captures) still carries both ports in its first 4 bytes.
            sport, dport = (int.from_bytes(payload[0:2], "big"),
                            int.from_bytes(payload[2:4], "big"))
    return Packet(id, ipaddress.ip_address(src), ipaddress.ip_address(dst), int(proto),
                  sport, dport, int(payload_len), flags, frag,
                  0x0800 if isinstance(layer, IP) else 0x86DD, payload)


def _fragment_data(pkt, layer) -> bytes:
    """The exact bytes a fragment carries after its IP header (IPv4) or its Fragment
    extension header (IPv6), without link-layer padding: IPv4 stops at ``len``,
    IPv6 at the fixed header's 40 bytes plus ``plen``."""
    from scapy.layers.inet import IP
    from scapy.layers.inet6 import IPv6

    if isinstance(layer, IP):
        raw = bytes(layer)
        return raw[layer.ihl * 4:layer.len] if layer.len else raw[layer.ihl * 4:]
    ip6 = pkt[IPv6]
    raw = bytes(ip6)
    start = len(raw) - len(bytes(layer.payload))
    return raw[start:40 + ip6.plen]
