"""``python -m engine demo``: a small readable trace — a few flows per mode, every event
one per line, then the verdicts and a summary.

    python -m engine demo                 # nat, usip, transparent (Microsoft's key),
                                          # transparent (symmetric key), wrong direction,
                                          # fragmented UDP: reassemble-header vs ms-2tuple
    python -m engine demo --mode usip --flows 3 --json
    python -m engine demo --mode fragments-ms-2tuple
"""

from __future__ import annotations

import json

from ..system import Flow, Server, System, SystemConfig

#: A DNS-like server on a small-MTU link: its 100-byte answers leave in 3 fragments.
DNS_SERVER = Server("203.0.113.53", 53, response_bytes=100, mtu=68)

#: name → (title, config) of each demonstration.
MODES = {
    "nat": ("nat: new local IP and port, chosen so the response hashes back",
            SystemConfig(cores=4, ips_per_core=2, policy="nat")),
    "usip": ("usip: client IP kept, port proxied from one of 64 tables per IP",
             SystemConfig(cores=4, policy="usip", tables_per_ip=64)),
    "transparent": ("transparent: nothing rewritten, misdirected responses handed over",
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
    if mode.startswith("fragments"):
        return [Flow(i + 1, f"198.51.100.{7 + 13 * i}", 40000 + 17 * i, DNS_SERVER.ip, 53,
                     proto="udp", request_bytes=40) for i in range(count)]
    return [Flow(i + 1, f"198.51.100.{7 + 13 * i}", 40000 + 17 * i, f"203.0.113.{10 + i}", 80)
            for i in range(count)]


def add_parser(subparsers):
    parser = subparsers.add_parser("demo", help="a small readable trace of each mode",
                                   description=__doc__.split("\n")[0])
    parser.add_argument("--mode", choices=[*MODES, "all"], default="all")
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


def run(args) -> int:
    modes = list(MODES) if args.mode == "all" else [args.mode]
    for mode in modes:
        title, config = MODES[mode]
        result = System(config).run_trace(demo_flows(max(1, args.flows), mode))
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
    return 0
