"""``python -m engine demo``: a small readable trace — a few flows per mode, every event
one per line, then the verdicts and a summary.

    python -m engine demo                 # nat, usip, transparent (Microsoft's key),
                                          # transparent (symmetric key), wrong direction,
                                          # fragmented UDP: reassemble-header vs ms-2tuple,
                                          # the control core failing and restoring a core
    python -m engine demo --mode usip --flows 3 --json
    python -m engine demo --mode fragments-ms-2tuple
"""

from __future__ import annotations

import json

from engine.appliance.config import Flow, Server, SystemConfig
from engine.appliance.control import ControlCore, ControlReport
from engine.errors import ConfigError
from engine.paths.trace import System

#: More flows than this per mode would no longer be a readable demo.
MAX_DEMO_FLOWS = 200

#: A DNS-like server on a small-MTU link: its 100-byte answers leave in 3 fragments.
DNS_SERVER = Server("203.0.113.53", 53, response_bytes=100, mtu=68)

#: name → (title, config) of each demonstration.
MODES = {
    "nat": ("new local IP and port, chosen so the response hashes back",
            SystemConfig(cores=4, ips_per_core=2, policy="nat")),
    "usip": ("client IP kept, port proxied from one of the core's 64 port tables",
             SystemConfig(cores=4, policy="usip", tables_per_ip=64)),
    "transparent": ("nothing rewritten, misdirected responses handed over",
                    SystemConfig(cores=4, policy="transparent", handoff="message")),
    "symmetric": ("transparent with the symmetric 0x6d5a key: no handoff needed",
                  SystemConfig(cores=4, policy="transparent", key="symmetric")),
    "wrong-direction": ("nat choosing ports by the request-direction hash (the classic bug)",
                        SystemConfig(cores=4, policy="nat", wrong_direction=True)),
    "fragments-reassemble-header": (
        "nat, UDP answers in 3 fragments, held until the L4 header and steered by the "
        "4-tuple (the patent): back on the request's core",
        SystemConfig(cores=4, policy="nat", fragment_mode="reassemble-header",
                     servers=(DNS_SERVER,))),
    "fragments-ms-2tuple": (
        "nat, UDP answers in 3 fragments, hashed on the addresses only (Microsoft's RSS "
        "spec): the port nat chose plays no part",
        SystemConfig(cores=4, policy="nat", fragment_mode="ms-2tuple",
                     servers=(DNS_SERVER,))),
}


def demo_flows(count: int, mode: str = "nat") -> list[Flow]:
    """``count`` (at most MAX_DEMO_FLOWS) flows from clients spread over 198.51.100.1-254
    (13 steps apart, coprime with 254, so no two of the first 254 share an address)."""
    def client(i: int) -> str:
        return f"198.51.100.{(6 + 13 * i) % 254 + 1}"
    if mode.startswith("fragments"):
        return [Flow(i + 1, client(i), 40000 + 17 * i, DNS_SERVER.ip, 53,
                     proto="udp", request_bytes=40) for i in range(count)]
    return [Flow(i + 1, client(i), 40000 + 17 * i, f"203.0.113.{10 + i}", 80)
            for i in range(count)]


def add_parser(subparsers):
    parser = subparsers.add_parser("demo", help="a small readable trace of each mode",
                                   description=__doc__.split("\n")[0])
    parser.add_argument("--mode", choices=[*MODES, "control", "all"], default="all")
    parser.add_argument("--flows", type=int, default=3, help="flows per mode (default 3)")
    parser.add_argument("--json", action="store_true", help="events as JSON lines")
    return parser


def format_event(event) -> str:
    data = event.as_dict()
    head = f"{data.pop('t_us'):>8} us  {data.pop('kind'):<20} flow {data.pop('flow')}"
    data.pop("seq")
    if isinstance(data.get("hash"), int):
        data["hash"] = f"0x{data['hash']:08x}"
    return head + "  " + "  ".join(f"{name}={value}" for name, value in data.items())


def control_demo(count: int) -> list[str]:
    """The control core at work on a nat system with sessions open: core 1 fails (its
    sessions are dropped, its buckets spread over the others), new flows stay symmetric
    on the three survivors, core 1 comes back, and the table is rebalanced by load."""
    system = System(SystemConfig(cores=4, policy="nat"))
    control = ControlCore(system)

    def open_flows(first: int, clock: int) -> list[str]:
        flows = [Flow(first + i, f"198.51.{100 + first // 250}.{1 + i % 250}", 40000 + i,
                      f"203.0.113.{10 + i % 5}", 80, close="none", start_us=clock)
                 for i in range(count)]
        summary = system.run_trace(flows, keep_events=False, until_us=clock + 5_000).summary
        return ["  " + line for line in summary.lines()]

    def describe(report: ControlReport) -> list[str]:
        where = f" core {report.core}" if report.core is not None else ""
        return [f"  {report.action}{where}: {len(report.moved_buckets)} buckets moved; "
                f"buckets per core {report.buckets_per_core_before} -> "
                f"{report.buckets_per_core_after}",
                f"  sessions dropped {report.dropped_sessions} (ports freed "
                f"{report.freed_ports}); open {report.open_sessions}, of which misdirected "
                f"{report.misdirected}; load fairness {report.load_fairness_before:.3f} -> "
                f"{report.load_fairness_after:.3f}"]

    lines = ["== control: a core fails, comes back, and the table is rebalanced",
             f"  {count} nat flows, sessions left open:", *open_flows(1, 0)]
    lines += describe(control.fail_core(1))
    lines += [f"  {count} new flows with core 1 out of service:", *open_flows(1001, 10_000)]
    lines += describe(control.restore_core(1))
    lines += describe(control.rebalance())
    lines += [f"  {count} new flows after the rebalance:", *open_flows(2001, 20_000)]
    return lines


def run(args) -> int:
    if not 1 <= args.flows <= MAX_DEMO_FLOWS:
        raise ConfigError("--flows", f"1-{MAX_DEMO_FLOWS} flows per mode", args.flows)
    if args.mode == "control":
        print("\n".join(control_demo(args.flows)))
        return 0
    modes = list(MODES) if args.mode == "all" else [args.mode]
    for mode in modes:
        title, config = MODES[mode]
        result = System(config).run_trace(demo_flows(args.flows, mode))
        if args.json:
            for event in result.events:
                print(json.dumps({"mode": mode, **event.as_dict()}))
            continue
        print(f"== {mode}: {title}")
        print(f"   key {result.summary.key}, {config.cores} cores; "
              f"{result.summary.port_map}")
        for event in result.events:
            print("  " + format_event(event))
        for outcome in result.outcomes:
            print(f"  flow {outcome.flow}: {outcome.verdict} — {outcome.reason}")
        for line in result.summary.lines():
            print("  " + line)
        print()
    if args.mode == "all" and not args.json:
        print("\n".join(control_demo(max(args.flows, 40))))
    return 0
