"""Benchmarks of IP reassembly: whole datagrams, and a flood that never completes."""

from __future__ import annotations

import ipaddress
from dataclasses import replace

from engine.appliance.fragments import Reassembler, fragment_packet
from engine.bench.timing import best_rate
from engine.packet.model import FlowTuple, Packet


def _pool(count: int, *, complete: bool) -> list[Packet]:
    """Fragments of ``count`` distinct UDP datagrams (3 fragments each, last one first) or,
    with ``complete=False``, one never-completing fragment per datagram."""
    flow = FlowTuple.of("198.51.100.1", "192.0.2.9", 53, 40000, "udp")
    pieces = fragment_packet(Packet.from_tuple(0, flow, payload=bytes(100)), 68,
                             order="reverse")
    if not complete:
        pieces = pieces[1:2]
    sources = [ipaddress.IPv4Address(0xC6336400 + n) for n in range(count // 65536 + 1)]
    return [replace(piece, id=n, src=sources[n >> 16],
                    fragment=replace(piece.fragment, ident=n & 0xFFFF))
            for n in range(count) for piece in pieces]


def bench_fragments_reassembled(quick: bool) -> float:
    """Fragments per second through one Reassembler: 3-fragment UDP datagrams (100 bytes
    of payload, last fragment first), 100,000 datagrams (10,000 quick)."""
    pool = _pool(10_000 if quick else 100_000, complete=True)

    def run():
        reassembler = Reassembler()
        add = reassembler.add
        for piece in pool:
            add(piece, 0)
        assert reassembler.stats.reassembled * 3 == len(pool)
    return best_rate(len(pool), run)


def bench_fragment_flood(quick: bool) -> float:
    """Fragments per second of a flood of never-completing fragments (one per datagram,
    300,000; 30,000 quick) into a Reassembler with the default limits (each evicts one)."""
    pool = _pool(30_000 if quick else 300_000, complete=False)

    def run():
        reassembler = Reassembler()
        add = reassembler.add
        for now, piece in enumerate(pool):
            add(piece, now)
    return best_rate(len(pool), run)
