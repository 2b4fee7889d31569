"""What one fragment says about its datagram: its key, its byte range, its L4 header.

Every other fragments module starts here: ``datagram_key`` groups fragments into
datagrams, ``check_fragment`` validates one fragment on its own (the reassembler drops
what it rejects), ``header_ports`` finds the L4 ports only a first fragment carries, and
``whole_packet`` turns reassembled bytes back into a lab ``Packet``::

    >>> from engine.appliance.fragments import fragment_packet
    >>> from engine.packet.model import FlowTuple, Packet
    >>> flow = FlowTuple.of("10.0.0.2", "10.0.0.1", 53, 40000, "udp")
    >>> first, _, last = fragment_packet(Packet.from_tuple(7, flow, payload=bytes(100)), 68)
    >>> check_fragment(first), header_ports(first), check_fragment(last), header_ports(last)
    ((0, 48), (53, 40000), (96, 108), None)
    >>> datagram_key(first) == datagram_key(last)
    True

Byte offsets and lengths are in bytes (an IPv4 header's 13-bit offset field times 8);
``ident`` is 16 bits for IPv4, 32 bits for IPv6.
"""

from __future__ import annotations

from typing import NamedTuple

from engine.errors import FragmentError
from engine.packet.model import Packet, Proto

#: The largest IP datagram: a fragment may not reach past byte 65,535 (RFC 791 / RFC 8200).
MAX_DATAGRAM_BYTES = 65_535
IPV4_HEADER_BYTES = 20
IPV6_HEADER_BYTES = 40
IPV6_FRAGMENT_HEADER_BYTES = 8


class DatagramKey(NamedTuple):
    """What identifies one datagram's fragments: (src, dst, proto, ident) for IPv4,
    (src, dst, None, ident) for IPv6 (RFC 8200 keys on addresses and ident only).

    Addresses are kept as integers (host value of the network-order address) so the
    key hashes fast.
    """

    version: int
    src: int
    dst: int
    proto: int | None
    ident: int


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
