"""Throughput benchmarks: ``python -m engine bench [--quick] [--json] [--only NAME ...]``.

A top layer beside the command line: no model module imports it. ``BENCHMARKS`` maps a
figure's name to ``"module:function"`` in this package, a function ``f(quick: bool) ->
float`` returning a per-second rate, or for ``*_speedup`` a ratio (higher is better);
:func:`benchmark` imports the module only when its figure runs. Every figure is timed by
``timing`` (the best of several runs). ``quick`` shrinks the workload about tenfold (for
smoke tests), so quick figures are indicative only. The names are stable: figures quoted
in earlier notes stay comparable.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

BENCHMARKS: dict[str, str] = {
    "traffic_generate_flows_per_s": "scenarios:bench_traffic_generate",
    "scenario_load_per_s": "scenarios:bench_scenario_load",
    "pcap_read_packets_per_s": "scenarios:bench_pcap_read",
    "hash_batch_ipv4_per_s": "hashing:bench_hash_batch_ipv4",
    "hash_scalar_ipv4_per_s": "hashing:bench_hash_scalar_ipv4",
    "batch_verify_flows_per_s": "paths:bench_batch_verify",
    "batch_verify_full_tables_flows_per_s": "paths:bench_batch_verify_full_tables",
    "batch_verify_timed_flows_per_s": "paths:bench_batch_verify_timed",
    "scenario_verify_flows_per_s": "scenarios:bench_scenario_verify",
    "trace_packets_per_s": "paths:bench_trace_packets",
    "fragments_reassembled_per_s": "fragments:bench_fragments_reassembled",
    "fragment_flood_per_s": "fragments:bench_fragment_flood",
    "port_alloc_solve_per_s": "ports:bench_port_alloc_solve",
    "port_alloc_scan_per_s": "ports:bench_port_alloc_scan",
    "port_alloc_solve_10pct_per_s": "ports:bench_port_alloc_solve_10pct",
    "port_alloc_solve_95pct_per_s": "ports:bench_port_alloc_solve_95pct",
    "port_alloc_batch_per_s": "ports:bench_port_alloc_batch",
    "batch_two_workers_speedup": "shards:bench_batch_two_workers_speedup",
}


def benchmark(name: str) -> Callable[[bool], float]:
    """The function behind figure ``name`` (a key of BENCHMARKS)."""
    module, function = BENCHMARKS[name].split(":")
    return getattr(importlib.import_module(f"{__name__}.{module}"), function)
