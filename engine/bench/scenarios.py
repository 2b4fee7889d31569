"""Benchmarks of what a run reads: scenario files, generated traffic, captures, and a whole
verification from a scenario's text."""

from __future__ import annotations

import io
import ipaddress

from engine.bench.timing import best_rate
from engine.examples import EXAMPLES_DIR
from engine.packet.model import Packet, Proto
from engine.runs.run import verify_scenario
from engine.scenarios.pcap import read_pcap, write_pcap
from engine.scenarios.scenario import load_scenario
from engine.scenarios.traffic import Target, generate_flows


def bench_scenario_load(quick: bool) -> float:
    """Scenario files loaded and validated per second: every shipped example, read from
    its text (parse, validate, cross-check), 20 rounds (2 quick)."""
    texts = [(p.read_text(encoding="utf-8"), p.parent) for p in sorted(
        EXAMPLES_DIR.glob("*.yaml"))]
    rounds = 2 if quick else 20

    def run():
        for _ in range(rounds):
            for text, base in texts:
                load_scenario(text, base_dir=base)
    return best_rate(rounds * len(texts), run)


def bench_traffic_generate(quick: bool) -> float:
    """Generated flows per second: 1,000,000 (100,000 quick) flows to 100 servers from a
    /16 of clients, Zipf 1.1 heavy hitters over 10,000 clients, TCP/UDP mix."""
    count = 100_000 if quick else 1_000_000
    targets = [Target(int(ipaddress.IPv4Address("192.0.2.0")) + i, 80, Proto.TCP, 1000)
               for i in range(100)]

    def run():
        generate_flows(count=count, targets=targets, client_prefixes=["198.18.0.0/16"],
                       zipf=1.1, heavy_clients=10_000, proto_weights={6: 0.8, 17: 0.2},
                       seed=7)
    return best_rate(count, run)


def bench_pcap_read(quick: bool) -> float:
    """Packets read per second from a capture of 20,000 (2,000 quick) TCP packets written
    by ``write_pcap``, Scapy dissection included."""
    count = 2_000 if quick else 20_000
    client, server = ipaddress.ip_address("198.51.100.7"), ipaddress.ip_address("192.0.2.10")
    packets = [Packet(i, client, server, Proto.TCP, 1024 + i % 60000, 80, 100, "PA")
               for i in range(count)]
    buffer = io.BytesIO()
    write_pcap(buffer, packets)
    data = buffer.getvalue()
    return best_rate(count, lambda: read_pcap(data), repeats=2)


def bench_scenario_verify(quick: bool) -> float:
    """Flows verified per second from a scenario file's text: 1,000,000 (100,000 quick)
    generated TCP flows, ``nat``, 16 cores with 4 IPs each, one service in front of 100
    servers, Microsoft's key, ``solve`` — the workload of ``batch_verify_flows_per_s``,
    but including loading the scenario, generating its traffic, the checks and the
    report dict (without rows)."""
    count = 100_000 if quick else 1_000_000
    servers = ", ".join(f'"203.0.113.{i}:80"' for i in range(1, 101))
    text = (f"schema_version: 1\nname: bench\nseed: 42\n"
            f"system: {{cores: 16, ips_per_core: 4}}\n"
            f"services: [{{name: web, vip: 192.0.2.10, vport: 80, policy: nat, "
            f"servers: [{servers}]}}]\n"
            f"traffic: {{generated: {{count: {count}, client_prefixes: [16.0.0.0/4]}}}}\n"
            f"checks: {{symmetric_rate: '>= 100%', refused: '== 0'}}\n")

    def run():
        report = verify_scenario(load_scenario(text)).as_dict()
        if not report["passed"]:
            raise RuntimeError("benchmark scenario did not pass its checks")
    return best_rate(count, run, repeats=2 if quick else 3)
