"""Throughput benchmarks: ``python -m engine bench [--quick] [--json]``.

``BENCHMARKS`` maps a figure's name to a function ``f(quick: bool) -> float`` that
returns a per-second rate (higher is better). Each concept module keeps its own
benchmark functions next to the code they measure; this module only lists them.
``quick`` shrinks the workload about tenfold (for smoke tests), so quick figures
are indicative only.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from . import batch, fragments, pcap, ports, run, scenario, system, traffic
from .toeplitz import Key, hash_input, hash_ipv4_batch, toeplitz_hash


def best_rate(operations: int, run: Callable[[], object], repeats: int = 3) -> float:
    """Operations per second of the fastest of ``repeats`` runs (after one warm-up)."""
    run()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return operations / best


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


BENCHMARKS: dict[str, Callable[[bool], float]] = {
    "traffic_generate_flows_per_s": traffic.bench_traffic_generate,
    "scenario_load_per_s": scenario.bench_scenario_load,
    "pcap_read_packets_per_s": pcap.bench_pcap_read,
    "hash_batch_ipv4_per_s": bench_hash_batch_ipv4,
    "hash_scalar_ipv4_per_s": bench_hash_scalar_ipv4,
    "batch_verify_flows_per_s": batch.bench_batch_verify,
    "scenario_verify_flows_per_s": run.bench_scenario_verify,
    "trace_packets_per_s": system.bench_trace_packets,
    "fragments_reassembled_per_s": fragments.bench_fragments_reassembled,
    "fragment_flood_per_s": fragments.bench_fragment_flood,
    "port_alloc_solve_per_s": ports.bench_port_alloc_solve,
    "port_alloc_scan_per_s": ports.bench_port_alloc_scan,
    "port_alloc_solve_10pct_per_s": ports.bench_port_alloc_solve_10pct,
    "port_alloc_solve_95pct_per_s": ports.bench_port_alloc_solve_95pct,
    "port_alloc_batch_per_s": ports.bench_port_alloc_batch,
}
