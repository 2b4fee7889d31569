"""``python -m engine compare SCENARIO --vary NAME=V1,V2 ...``: one scenario's traffic
through several designs, side by side.

    python -m engine compare engine/examples/nat-microsoft.yaml \\
        --vary key=microsoft,symmetric --vary policy=nat,usip,transparent
    python -m engine compare scenario.yaml --vary strategy=scan,solve --json
    python -m engine compare scenario.yaml --vary transform=none,symmetric-xor --html cmp.html

Settings: key (microsoft, symmetric, random:SEED, hex), policy, strategy, transform,
handoff, and scheme (rss, per-packet, per-vserver, per-nic, per-function: the
distribution schemes the patent contrasts; all non-RSS ones are added unless scheme
is varied or --no-schemes is given). Every cell sees the same flows (batch path).
"""

from __future__ import annotations

import json
import sys

from engine.commands import check_output_file, writing


def add_parser(subparsers):
    parser = subparsers.add_parser("compare", help="run the cross product of settings",
                                   description=__doc__.split("\n")[0])
    parser.add_argument("scenario", metavar="SCENARIO", help="scenario file (.yaml or .json)")
    parser.add_argument("--vary", action="append", default=[], metavar="NAME=V1,V2",
                        help="a setting and its values (repeat for a cross product)")
    parser.add_argument("--pcap", metavar="FILE", help="replay this capture as the traffic")
    parser.add_argument("--no-schemes", action="store_true",
                        help="only RSS cells, no per-packet/per-vserver/... rows")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--html", metavar="OUT.html", help="write an offline HTML chart")
    return parser


def run(args) -> int:
    from engine.commands.verify import ProgressBar
    from engine.runs.compare import compare_scenario, parse_vary
    from engine.scenarios.scenario import load_scenario_file

    check_output_file(args.html, "--html")
    vary = parse_vary(args.vary)
    scenario = load_scenario_file(args.scenario)
    bar = ProgressBar()
    try:
        result = compare_scenario(scenario, vary, pcap=args.pcap,
                                  schemes=() if args.no_schemes else None, on_progress=bar)
    finally:
        bar.close()
    if args.html:
        from engine.runs.report import write_compare_html
        with writing(args.html, "--html"):
            write_compare_html(result, args.html)
        print(f"wrote {args.html}", file=sys.stderr)
    if args.json:
        print(json.dumps(result.as_dict()))
    else:
        for line in result.lines():
            print(line)
    return 0
