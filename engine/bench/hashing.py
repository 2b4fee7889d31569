"""Benchmarks of the Toeplitz hash: vectorised over arrays, and one tuple at a time."""

from __future__ import annotations

import numpy as np

from engine.bench.timing import best_rate
from engine.packet.toeplitz import Key, hash_input, hash_ipv4_batch, toeplitz_hash


def bench_hash_batch_ipv4(quick: bool) -> float:
    """Random IPv4 4-tuples (1,000,000; 100,000 quick) hashed with Microsoft's key."""
    count = 100_000 if quick else 1_000_000
    rng = np.random.default_rng(1)
    src, dst = (rng.integers(0, 2**32, count, dtype=np.uint32) for _ in range(2))
    sport, dport = (rng.integers(0, 2**16, count, dtype=np.uint16) for _ in range(2))
    key = Key.microsoft()
    return best_rate(count, lambda: hash_ipv4_batch(key, src, dst, sport, dport))


def bench_hash_scalar_ipv4(quick: bool) -> float:
    """One IPv4 4-tuple at a time, from its 12 input bytes, with Microsoft's key."""
    count = 20_000 if quick else 200_000
    rng = np.random.default_rng(2)
    inputs = [hash_input(int(s), int(d), int(p), int(q)) for s, d, p, q in zip(
        *(rng.integers(0, 2**32, count) for _ in range(2)),
        *(rng.integers(0, 2**16, count) for _ in range(2)), strict=True)]
    key = Key.microsoft()

    def run():
        for data in inputs:
            toeplitz_hash(key, data)
    return best_rate(count, run)
