"""``python -m engine verify SCENARIO``: run a scenario, check it, print the verdict.

    python -m engine verify engine/examples/nat-microsoft.yaml
    python -m engine verify scenario.yaml --json --rows        # one JSON object
    python -m engine verify scenario.yaml --html report.html   # offline Plotly report
    python -m engine verify replay.yaml --pcap capture.pcapng --trace
    python -m engine verify scenario.yaml --export-pcap run.pcap

Exit status: 0 when every check passes, 1 when any fails, 2 when the scenario (or its
traffic or capture) is invalid — every problem printed with its line and key path — and
3 when a result cannot be written (see ``engine/__main__.py``).
"""

from __future__ import annotations

import json
import sys
import time

from engine.commands import check_output_file, writing
from engine.errors import RssLabError


def add_parser(subparsers):
    parser = subparsers.add_parser("verify", help="run a scenario and check it (exit 0/1/2)",
                                   description=__doc__.split("\n")[0])
    parser.add_argument("scenario", metavar="SCENARIO", help="scenario file (.yaml or .json)")
    parser.add_argument("--pcap", metavar="FILE", help="replay this capture as the "
                        "scenario's pcap traffic")
    parser.add_argument("--json", action="store_true", help="print one JSON report")
    parser.add_argument("--rows", action="store_true", help="include per-flow rows")
    parser.add_argument("--html", metavar="REPORT.html", help="write an offline HTML report")
    parser.add_argument("--trace", action="store_true",
                        help="run packet by packet (the trace path) instead of batch")
    parser.add_argument("--export-pcap", metavar="OUT.pcap",
                        help="also write the run's packets (trace path) to a pcap")
    parser.add_argument("--export-side", choices=["both", "client", "server"], default="both",
                        help="which packets --export-pcap writes (default both)")
    parser.add_argument("--export-limit", type=int, default=None, metavar="N",
                        help="flows --export-pcap writes (default 10000)")
    return parser


class ProgressBar:
    """A one-line progress bar on stderr, drawn only on a terminal and only once the
    run has taken longer than ``delay_s`` (short runs print nothing)."""

    def __init__(self, stream=None, *, delay_s: float = 0.5, width: int = 30):
        self.stream = stream or sys.stderr
        self.enabled = self.stream.isatty()
        self.delay_s = delay_s
        self.width = width
        self.started = time.perf_counter()
        self.drawn = False

    def __call__(self, fraction: float, stage: str) -> None:
        if not self.enabled or time.perf_counter() - self.started < self.delay_s:
            return
        filled = int(round(self.width * min(max(fraction, 0.0), 1.0)))
        bar = "#" * filled + "-" * (self.width - filled)
        print(f"\r[{bar}] {fraction:6.1%} {stage:<8}", end="", file=self.stream, flush=True)
        self.drawn = True

    def close(self) -> None:
        if self.drawn:
            print("\r" + " " * (self.width + 20) + "\r", end="", file=self.stream, flush=True)


def run(args) -> int:
    from engine.runs.run import DEFAULT_EXPORT_FLOWS, export_pcap, verify_scenario
    from engine.scenarios.scenario import load_scenario_file

    bar = ProgressBar()
    try:
        check_output_file(args.html, "--html")
        check_output_file(args.export_pcap, "--export-pcap")
        scenario = load_scenario_file(args.scenario)
        report = verify_scenario(scenario, pcap=args.pcap,
                                 mode="trace" if args.trace else "batch", rows=args.rows,
                                 on_progress=bar, source=args.scenario)
        exported = None
        if args.export_pcap:
            sides = ("client", "server") if args.export_side == "both" else (args.export_side,)
            limit = DEFAULT_EXPORT_FLOWS if args.export_limit is None else args.export_limit
            with writing(args.export_pcap, "--export-pcap"):
                exported = export_pcap(scenario, args.export_pcap, pcap=args.pcap,
                                       sides=sides, limit=limit)
    except RssLabError as error:
        bar.close()
        if args.json:
            print(json.dumps({"error": error.as_dict(), "passed": False}))
        print(f"error: {error}", file=sys.stderr)
        return error.exit_status
    finally:
        bar.close()
    if args.html:
        from engine.runs.report import write_report_html
        with writing(args.html, "--html"):
            write_report_html(report, args.html)
        print(f"wrote {args.html}", file=sys.stderr)
    if exported is not None:
        print(f"wrote {exported.packets} packets of {exported.flows} flows to "
              f"{args.export_pcap}", file=sys.stderr)
    out = sys.stdout
    if args.json:
        # one JSON object, its rows encoded and written a chunk at a time (millions of
        # rows never sit in memory at once)
        report.write_json(out, rows=args.rows)
        out.write("\n")
    else:
        for line in report.lines():
            print(line)
        if args.rows:
            for chunk in report.row_dicts():
                out.write("".join(_row_line(row) for row in chunk))
    return 0 if report.passed else 1


def _row_line(row: dict) -> str:
    """One ``--rows`` line of the text output, from a row's ``as_dict()``."""
    response = "-" if row["response_core"] is None else row["response_core"]
    return (f"  flow {row['flow']}: {row['verdict']:<17} core {row['request_core']} -> "
            f"{response}  {row['request']} => {row['rewritten'] or '-'}  {row['reason']}\n")
