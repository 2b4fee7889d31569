"""Benchmarks of the two execution paths on the same kind of workload: the vectorised
batch path (flows verified per second) and the trace path (packets per second)."""

from __future__ import annotations

import dataclasses
import ipaddress
import random

import numpy as np

from engine.appliance.config import Flow, SystemConfig
from engine.bench.timing import best_rate
from engine.paths.batch import random_flow_arrays, run_batch
from engine.paths.trace import System


def bench_batch_verify(quick: bool) -> float:
    """Flows verified per second: 1,000,000 concurrent TCP flows (100,000 quick), ``nat``,
    16 cores with 4 IPs each, to 100 servers on port 80, Microsoft's key, ``solve``.

    Port capacity: one table per local IP, 64,512 ports (1024-65535) each, so
    16 x 4 x 64,512 = 4,128,768 ports; a million flows take about 24 % of them, and
    each core's share of fitting ports for one (server, IP) pair is 64,512 / 16 = 4,032,
    so 100 servers x 4 IPs give every core about 1.6 million fitting ports for its
    ~62,500 flows. Includes building the system, hashing both directions, port
    allocation, verdicts and the summary.
    """
    count = 100_000 if quick else 1_000_000
    flows = random_flow_arrays(count, np.random.default_rng(42), servers=100)
    config = SystemConfig(cores=16, ips_per_core=4, policy="nat", strategy="solve")

    def run():
        if run_batch(config, flows).summary.symmetric != count:
            raise RuntimeError("benchmark run was not fully symmetric")
    return best_rate(count, run, repeats=2 if quick else 3, warm_up=False)


def bench_batch_verify_timed(quick: bool) -> float:
    """Flows verified per second in time: the ``batch_verify_flows_per_s`` workload
    (1,000,000 flows, 100,000 quick; ``nat``, 16 cores x 4 IPs, 100 servers, ``solve``),
    each flow starting at a random microsecond of the first 10 ms (1 ms quick) and
    ending with a FIN 1 ms after its response (1.12 ms after it started): about a tenth
    of the flows are open at once, and most ports are taken again after their session
    ends. Every flow finds a port in its first choice, so the batch path matches the
    pools' stacks at once (``allocate_stacked``) rather than in epochs (one per start
    moment here: 10,000)."""
    count = 100_000 if quick else 1_000_000
    span = 1_000 if quick else 10_000
    flows = random_flow_arrays(count, np.random.default_rng(42), servers=100)
    flows = dataclasses.replace(
        flows, start_us=np.random.default_rng(43).integers(0, span, count, np.int64),
        close=np.zeros(count, np.int8), hold_us=np.full(count, 1_000, np.int64))
    config = SystemConfig(cores=16, ips_per_core=4, policy="nat", strategy="solve")

    def run():
        summary = run_batch(config, flows).summary
        if summary.symmetric != count:
            raise RuntimeError("benchmark run was not fully symmetric")
    return best_rate(count, run, repeats=2 if quick else 3, warm_up=False)


def bench_batch_verify_full_tables(quick: bool) -> float:
    """Flows verified per second past port capacity: 2,000,000 TCP flows (200,000 quick,
    on a tenth of the port range), ``nat``, 16 cores with 4 IPs each, to 3 servers on
    port 80, Microsoft's key, ``solve``. Three servers leave room for 516,096 flows
    (about 32,000 per core), so 1,483,904 flows (three in four; 148,391 quick) are
    refused as the tables fill. A refused flow should cost about what an allocated one
    does (``batch_verify_flows_per_s``)."""
    count = 200_000 if quick else 2_000_000
    flows = random_flow_arrays(count, np.random.default_rng(42), servers=3)
    config = SystemConfig(cores=16, ips_per_core=4, policy="nat", strategy="solve",
                          port_range=(1024, 7475) if quick else (1024, 65535))

    def run():
        if run_batch(config, flows).summary.refused < count // 2:
            raise RuntimeError("benchmark run did not fill the port tables")
    return best_rate(count, run, repeats=2 if quick else 3, warm_up=False)


def bench_trace_packets(quick: bool) -> float:
    """Packets per second through the trace path (a request and a response per flow),
    events built but not kept: 20,000 TCP flows (2,000 quick), ``nat``, 8 cores, 2 IPs
    each, Microsoft's key, ``solve``, FIN close."""
    count = 2_000 if quick else 20_000
    rng = random.Random(7)
    flows = [Flow(i, str(ipaddress.IPv4Address(rng.randrange(1 << 24, 0xDF000000))),
                  1024 + i % 64000, f"203.0.113.{1 + i % 100}", 80) for i in range(count)]
    config = SystemConfig(cores=8, ips_per_core=2, policy="nat")
    return best_rate(2 * count, lambda system: system.run_trace(
        flows, on_event=lambda event: None, keep_events=False),
        repeats=2, setup=lambda: System(config), warm_up=False)
