"""``python -m engine bench [--quick] [--json] [--only NAME ...]``: throughput figures.

Prints one JSON object of named per-second rates (see engine/bench/), plus the
machine it ran on, so numbers quoted in notes can be compared, and, when both port
allocation figures ran, ``port_alloc_solve_over_scan`` (how many times faster solve is).
"""

from __future__ import annotations

import json
import os
import platform
import sys


def add_parser(subparsers):
    parser = subparsers.add_parser("bench", help="measure throughput (JSON)",
                                   description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="about 10x smaller workloads")
    parser.add_argument("--json", action="store_true", help="print only the JSON object")
    parser.add_argument("--only", nargs="+", metavar="NAME", help="run only these figures")
    return parser


def run(args) -> int:
    from engine.bench import BENCHMARKS, benchmark
    from engine.errors import ConfigError

    names = args.only or list(BENCHMARKS)
    unknown = [name for name in names if name not in BENCHMARKS]
    if unknown:
        raise ConfigError("--only", f"one of {', '.join(BENCHMARKS)}", ", ".join(unknown))
    figures = {}
    for index, name in enumerate(names, start=1):
        if sys.stderr.isatty():
            print(f"\r[{index}/{len(names)}] {name:<40}", end="", file=sys.stderr, flush=True)
        figures[name] = round(benchmark(name)(args.quick), 1)
    if sys.stderr.isatty():
        print("\r" + " " * 60 + "\r", end="", file=sys.stderr)
    solve, scan = figures.get("port_alloc_solve_per_s"), figures.get("port_alloc_scan_per_s")
    if solve and scan:  # the target is a ratio: same machine, same run
        figures["port_alloc_solve_over_scan"] = round(solve / scan, 1)
    figures["machine"] = {"python": platform.python_version(), "cpu": _cpu_name(),
                          "cpus": os.cpu_count(), "quick": args.quick}
    print(json.dumps(figures, indent=None if args.json else 2))
    return 0


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
