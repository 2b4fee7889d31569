"""Cutting a whole packet into IP fragments, as a router on a smaller-MTU link would.

The scenarios and the trace path use it to make the fragments the steering modes then
receive; a packet is cut into real bytes (Scapy builds its L4 header and checksum), so
reassembly can be checked byte for byte::

    >>> from engine.packet.model import FlowTuple, Packet
    >>> flow = FlowTuple.of("10.0.0.2", "10.0.0.1", 53, 40000, "udp")
    >>> pieces = fragment_packet(Packet.from_tuple(7, flow, payload=bytes(100)), 68)
    >>> [(p.fragment.offset, len(p.payload), p.fragment.more) for p in pieces]
    [(0, 48, True), (48, 48, True), (96, 12, False)]
"""

from __future__ import annotations

import random
from dataclasses import replace

from engine.appliance.fragments.datagram import (
    IPV4_HEADER_BYTES,
    IPV6_FRAGMENT_HEADER_BYTES,
    IPV6_HEADER_BYTES,
)
from engine.errors import ConfigError
from engine.packet.model import Fragment, Packet, max_datagram_payload


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
    header = _fragment_header(packet, mtu, order, duplicates, rng)
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


def _fragment_header(packet: Packet, mtu: int, order: str, duplicates: int,
                     rng: random.Random | None) -> int:
    """Check ``fragment_packet``'s arguments (ConfigError as it says); return the header
    bytes each fragment carries besides its data (IPv6 counts its Fragment header)."""
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
    return header
