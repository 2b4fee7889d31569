"""verify_scenario and ``python -m engine verify``: every example as its checks say, the
JSON shape, exit codes 0/1/2 with every problem located, and pcap round trips (the lab's
own export, and an independent capture built with Scapy) giving the same verdicts."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from engine.examples import EXAMPLES_DIR, list_examples, load_example
from engine.runs.run import REPORT_SCHEMA_VERSION, export_pcap, verify_scenario
from engine.scenarios.scenario import load_scenario_file
from engine.scenarios.traffic import build_flow_specs

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = [info.name for info in list_examples()]
#: examples the batch path refuses (none: time, table changes included, runs there too)
TRACE_ONLY: tuple[str, ...] = ()
BATCH_EXAMPLES = [name for name in EXAMPLES if name not in TRACE_ONLY]


def cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "engine", *args], capture_output=True,
                          text=True, cwd=ROOT, env=env, timeout=300)


@pytest.mark.parametrize("name", EXAMPLES)
def test_every_example_verifies_as_its_checks_say(name):
    mode = "trace" if name in TRACE_ONLY else "batch"
    report = verify_scenario(load_example(name), mode=mode)
    assert report.checks, f"{name} has no checks"
    assert report.passed, [c.as_dict() for c in report.checks if not c.passed]


@pytest.mark.parametrize("name", ["nat-microsoft", "transparent-microsoft",
                                  "singular-key-usip", "pcap-replay", "distributor-rules",
                                  "rss-unaware-nic", "timed-port-reuse",
                                  "correct-core-check"])
def test_trace_and_batch_reports_agree(name):
    scenario = load_example(name)
    batch = verify_scenario(scenario, rows=True)
    trace = verify_scenario(scenario, mode="trace", rows=True)
    assert [r.key() for r in batch.rows] == [r.key() for r in trace.rows]
    assert batch.matrix == trace.matrix and batch.buckets == trace.buckets
    assert batch.ports_allocated == trace.ports_allocated
    assert [c.passed for c in batch.checks] == [c.passed for c in trace.checks]
    # occupancy names its moment: the peak held at once, and the end (nothing held)
    assert batch.summary.occupancy_peak == trace.summary.occupancy_peak
    assert batch.summary.occupancy == trace.summary.occupancy == [0.0] * batch.cores


def test_timed_port_reuse_shows_ports_coming_back():
    """The example's figure: 200 flows through 16 ports a core all get one, on both
    paths; the same flows concurrent (no start times) would mostly be refused."""
    import dataclasses

    from engine.paths.batch import run_batch
    from engine.scenarios.traffic import build_flow_arrays

    scenario = load_example("timed-port-reuse")
    for mode in ("batch", "trace"):
        summary = verify_scenario(scenario, mode=mode).summary
        assert (summary.symmetric, summary.refused) == (200, 0), mode
    concurrent = dataclasses.replace(build_flow_arrays(scenario), start_us=None, close=None,
                                     hold_us=None)
    summary = run_batch(scenario.build_system_config(), concurrent).summary
    assert (summary.symmetric, summary.refused) == (16, 184)


def test_cli_passes_an_example_with_a_readable_summary():
    result = cli("verify", str(EXAMPLES_DIR / "nat-microsoft.yaml"))
    assert result.returncode == 0, result.stderr
    assert "PASS: all 3 checks passed" in result.stdout
    assert "✓ pass  symmetric_rate >= 1" in result.stdout


def test_cli_json_is_one_object_with_the_documented_shape():
    result = cli("verify", str(EXAMPLES_DIR / "transparent-microsoft.yaml"), "--json",
                 "--rows")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)  # exactly one JSON document
    assert report["schema_version"] == REPORT_SCHEMA_VERSION
    assert report["scenario"]["name"] == "transparent-microsoft"
    assert report["mode"] == "batch" and report["passed"] is True
    summary = report["summary"]
    for key in ("flows", "symmetric", "handed_off", "asymmetric", "refused",
                "symmetric_rate", "fairness", "handoff_copies", "core_load", "occupancy",
                "handoffs_per_core", "distinct_hashes", "key", "port_map", "per_core"):
        assert key in summary
    assert summary["flows"] == 5000 and len(summary["per_core"]) == 8
    assert set(summary["per_core"][0]) >= {"core", "load", "handoffs", "occupancy"}
    for check in report["checks"]:
        assert set(check) == {"name", "metric", "op", "expected", "actual", "passed"}
    assert len(report["rows"]) == 5000 and report["rows"][0]["verdict"] in (
        "symmetric", "handed-off")
    matrix = report["matrix"]["request_core_by_response_core"]
    assert sum(map(sum, matrix)) == 5000
    assert sum(report["buckets"]["requests"]) == 5000
    assert len(report["buckets"]["cores"]) == 128


BROKEN = """schema_version: 1
name: broken
system:
  cores: 0
  colour: blue
services:
  - {name: web, vip: 192.0.2.1, vport: 80, policy: natt, servers: ["10.0.0.1:80"]}
traffic: {generated: {count: 10}}
"""


def test_cli_broken_scenario_prints_every_problem_with_location(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text(BROKEN)
    result = cli("verify", str(path))
    assert result.returncode == 2
    assert "3 problems" in result.stderr
    assert "line 4: system.cores: expected a number >= 1, got 0" in result.stderr
    assert "line 5: system.colour: unknown key" in result.stderr
    assert "line 7: services[0].policy: expected one of nat, usip, transparent" in result.stderr
    assert "Traceback" not in result.stderr
    as_json = cli("verify", str(path), "--json")
    assert as_json.returncode == 2
    error = json.loads(as_json.stdout)["error"]
    assert [p["line"] for p in error["problems"]] == [4, 5, 7]


def test_cli_failing_check_exits_1(tmp_path):
    text = (EXAMPLES_DIR / "nat-microsoft.yaml").read_text().replace(
        'handed_off: "== 0"', 'handed_off: "> 0"')
    path = tmp_path / "fails.yaml"
    path.write_text(text)
    result = cli("verify", str(path), "--json")
    assert result.returncode == 1
    report = json.loads(result.stdout)
    assert report["passed"] is False
    assert [c["passed"] for c in report["checks"] if c["metric"] == "handed_off"] == [False]


def test_unknown_mode_is_refused():
    from engine.errors import ConfigError
    with pytest.raises(ConfigError, match="mode: expected batch or trace"):
        verify_scenario(load_example("nat-microsoft"), mode="fast")


def test_progress_reaches_one_in_order():
    seen = []
    verify_scenario(load_example("nat-microsoft"), on_progress=lambda f, s: seen.append(f))
    assert seen == sorted(seen) and seen[-1] == 1.0
    seen.clear()
    verify_scenario(load_example("adversarial-flood"), mode="trace",
                    on_progress=lambda f, s: seen.append(f))
    assert seen == sorted(seen) and len(seen) > 50 and seen[-1] == 1.0


# ---------------------------------------------------------------------------- pcaps

def _system_part(name: str) -> str:
    """An example's text up to its traffic section (system, ports, services)."""
    text = (EXAMPLES_DIR / f"{name}.yaml").read_text()
    return text[:text.index("traffic:")].replace(f"name: {name}", "name: replayed")


def _verdicts(report):
    return [(str(r.request), r.request_core, r.response_core, r.verdict, r.copies)
            for r in report.rows]


@pytest.mark.parametrize("name", ["nat-microsoft", "transparent-microsoft", "usip-microsoft"])
def test_exported_pcap_read_back_gives_the_same_verdicts(tmp_path, name):
    scenario = load_example(name)
    capture = tmp_path / "run.pcap"
    exported = export_pcap(scenario, capture, sides=("client",), limit=400)
    assert exported.flows == 400 and exported.packets >= 800
    # Ports are allocated in flow order, so the first 400 flows of the full run are
    # exactly a run of those 400 alone.
    original = verify_scenario(scenario, rows=True)
    original.rows = original.rows[:400]
    replay = tmp_path / "replay.yaml"
    replay.write_text(_system_part(name) + "traffic: {pcap: {path: run.pcap}}\n")
    replayed = verify_scenario(load_scenario_file(replay), rows=True)
    assert _verdicts(replayed) == _verdicts(original)
    cli_result = cli("verify", str(replay), "--pcap", str(capture), "--json")
    assert json.loads(cli_result.stdout)["summary"]["flows"] == 400


def test_export_writes_both_sides_and_ethernet(tmp_path):
    from engine.scenarios.pcap import read_pcap
    scenario = load_example("nat-microsoft")
    both = export_pcap(scenario, tmp_path / "both.pcap", limit=50)
    result = read_pcap(tmp_path / "both.pcap")
    assert both.packets == len(result.packets) == 200 and result.link_types == {"Raw IP": 200}
    addresses = {str(p.src) for p in result.packets}
    assert "192.0.2.10" in addresses and any(a.startswith("10.100.") for a in addresses)
    export_pcap(scenario, tmp_path / "eth.pcap", limit=5, link="ethernet")
    assert read_pcap(tmp_path / "eth.pcap").link_types == {"Ethernet": 20}


def test_cli_export_pcap(tmp_path):
    out = tmp_path / "out.pcap"
    result = cli("verify", str(EXAMPLES_DIR / "transparent-symmetric.yaml"), "--export-pcap",
                 str(out), "--export-limit", "30")
    assert result.returncode == 0, result.stderr
    assert out.stat().st_size > 0 and "wrote 60 packets of 30 flows" in result.stderr


def _scapy_capture(path: Path, specs) -> None:
    """An independent capture of ``specs``: a TCP handshake, the request, the response
    and FIN, built with Scapy's own layers and written with Scapy's wrpcap."""
    from scapy.layers.inet import IP, TCP, UDP
    from scapy.layers.l2 import Ether
    from scapy.packet import Raw
    from scapy.utils import wrpcap
    frames = []
    for spec in specs:
        c, s = str(spec.client_ip), str(spec.server_ip)
        out = Ether(src="02:00:00:00:00:0a", dst="02:00:00:00:00:0b") / IP(src=c, dst=s)
        back = Ether(src="02:00:00:00:00:0b", dst="02:00:00:00:00:0a") / IP(src=s, dst=c)
        if spec.proto == 6:
            frames += [out / TCP(sport=spec.client_port, dport=spec.server_port, flags="S"),
                       back / TCP(sport=spec.server_port, dport=spec.client_port, flags="SA"),
                       out / TCP(sport=spec.client_port, dport=spec.server_port, flags="PA")
                       / Raw(b"q" * spec.request_bytes),
                       back / TCP(sport=spec.server_port, dport=spec.client_port, flags="PA")
                       / Raw(b"r" * min(spec.response_bytes, 1400)),
                       out / TCP(sport=spec.client_port, dport=spec.server_port, flags="FA")]
        else:
            frames += [out / UDP(sport=spec.client_port, dport=spec.server_port)
                       / Raw(b"q" * spec.request_bytes),
                       back / UDP(sport=spec.server_port, dport=spec.client_port)
                       / Raw(b"r" * 100)]
    wrpcap(str(path), frames)


@pytest.mark.parametrize("name", ["nat-microsoft", "heavy-hitters", "transparent-microsoft"])
def test_scapy_capture_of_the_same_traffic_gives_the_same_verdicts(tmp_path, name):
    limited = tmp_path / "generated.yaml"
    text = (EXAMPLES_DIR / f"{name}.yaml").read_text()
    text = text.replace("count: 5000", "count: 300").replace("count: 20000", "count: 300")
    limited.write_text(text)
    scenario = load_scenario_file(limited)
    specs = build_flow_specs(scenario)
    _scapy_capture(tmp_path / "scapy.pcap", specs)
    replay = tmp_path / "replay.yaml"
    replay.write_text(_system_part(name) + "traffic: {pcap: {path: scapy.pcap}}\n")
    generated = verify_scenario(scenario, rows=True)
    replayed = verify_scenario(load_scenario_file(replay), rows=True)
    assert len(replayed.rows) == 300
    assert _verdicts(replayed) == _verdicts(generated)


def test_scapy_capture_matches_explicit_flows(tmp_path):
    flows = "\n".join(f"    - {{client: \"198.51.100.{i}:{40000 + i}\", service: web}}"
                      for i in range(1, 21))
    explicit = tmp_path / "explicit.yaml"
    explicit.write_text(_system_part("nat-microsoft") + f"traffic:\n  flows:\n{flows}\n")
    scenario = load_scenario_file(explicit)
    _scapy_capture(tmp_path / "scapy.pcap", build_flow_specs(scenario))
    replay = tmp_path / "replay.yaml"
    replay.write_text(_system_part("nat-microsoft") + "traffic: {pcap: {path: scapy.pcap}}\n")
    for mode in ("batch", "trace"):
        assert _verdicts(verify_scenario(load_scenario_file(replay), rows=True, mode=mode)) \
            == _verdicts(verify_scenario(scenario, rows=True, mode=mode))


@pytest.mark.parametrize(("args", "message"), [
    (["verify", "engine/examples/nat-microsoft.yaml", "--html", "no/such/folder/r.html"],
     "--html: expected a file in an existing folder"),
    (["verify", "engine/examples/nat-microsoft.yaml", "--export-pcap", "engine"],
     "--export-pcap: expected a file to write, not a folder"),
    (["compare", "engine/examples/nat-microsoft.yaml", "--vary", "key=symmetric", "--html",
      "no/such/folder/c.html"], "--html: expected a file in an existing folder"),
    (["verify", "engine/examples/pcap-replay.yaml", "--pcap", "engine"],
     "pcap: expected a readable capture file, got 'engine' (a folder, not a file)"),
])
def test_cli_paths_it_cannot_use_are_one_line_before_any_work(args, message):
    result = cli(*args)
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr
    assert not result.stdout  # refused before the run, not after


def test_a_cut_capture_is_named_in_the_report(tmp_path):
    cut = tmp_path / "cut.pcap"
    cut.write_bytes((EXAMPLES_DIR / "replay.pcap").read_bytes()[:300])
    scenario = load_example("pcap-replay")
    for mode in ("batch", "trace"):
        report = verify_scenario(scenario, pcap=cut, mode=mode)
        assert report.as_dict()["pcap"] == {
            "frames": 4, "packets": 3, "flows": 1,
            "skipped": {"record cut short by the end of the file": 1}}
    assert "  pcap: 4 frames, 3 packets used, 1 flows; skipped: record cut short by the end " \
           "of the file 1" in report.lines()
    assert "pcap" not in verify_scenario(load_example("nat-microsoft")).as_dict()


def test_demo_runs_its_largest_size_in_every_mode():
    from engine.commands.demo import MAX_DEMO_FLOWS, MODES
    for mode in MODES:
        result = cli("demo", "--mode", mode, "--flows", str(MAX_DEMO_FLOWS), "--json")
        assert result.returncode == 0, (mode, result.stderr[-300:])


# ---------------------------------------------------------------------------- streamed rows

@pytest.mark.parametrize("name", BATCH_EXAMPLES)
def test_batch_rows_are_made_on_demand_and_equal_the_outcomes(name):
    """The batch report's rows are a lazy sequence over the run's arrays: every way of
    reading them (index, slice, iteration, the dict chunks a stream writes) gives the
    rows ``BatchResult.outcomes()`` gives, and ``write_json`` writes exactly
    ``json.dumps(as_dict())``."""
    import io

    from engine.paths.batch import BatchRows
    report = verify_scenario(load_example(name), rows=True)
    rows = report.rows
    assert isinstance(rows, BatchRows) and len(rows) == report.summary.flows
    outcomes = rows.result.outcomes()
    assert list(rows) == outcomes
    assert rows[:7] == outcomes[:7] and rows[-1] == outcomes[-1] and rows[3] == outcomes[3]
    with pytest.raises(IndexError):
        rows[len(rows)]
    dicts = [row for chunk in rows.dicts(chunk=333) for row in chunk]
    assert json.dumps(dicts) == json.dumps([o.as_dict() for o in outcomes])  # key order too
    stream = io.StringIO()
    report.write_json(stream)
    assert stream.getvalue() == json.dumps(report.as_dict())
    stream = io.StringIO()
    report.write_json(stream, rows=False)
    assert stream.getvalue() == json.dumps(report.as_dict(rows=False))


@pytest.mark.parametrize("name", ["pcap-replay", "fragmented-udp", "singular-key-usip"])
def test_trace_report_streams_the_same_json(name):
    import io
    report = verify_scenario(load_example(name), mode="trace", rows=True)
    stream = io.StringIO()
    report.write_json(stream)
    assert stream.getvalue() == json.dumps(report.as_dict())
    assert json.loads(stream.getvalue())["rows"] == [r.as_dict() for r in report.rows]


def test_cli_rows_text_and_json_list_every_flow(tmp_path):
    scenario = EXAMPLES_DIR / "singular-key-usip.yaml"  # failures: rows without a rewrite
    expected = verify_scenario(load_scenario_file(scenario), rows=True).rows
    lines = [f"  flow {r.flow}: {r.verdict:<17} core {r.request_core} -> "
             f"{'-' if r.response_core is None else r.response_core}  "
             f"{r.request} => {r.rewritten or '-'}  {r.reason}" for r in expected]
    text = cli("verify", str(scenario), "--rows")
    assert text.returncode == 0, text.stderr
    assert text.stdout.splitlines()[-len(lines):] == lines
    assert "PASS: all 1 checks passed" in text.stdout
    as_json = cli("verify", str(scenario), "--rows", "--json")
    assert as_json.returncode == 0 and as_json.stdout.endswith("]}\n")
    assert json.loads(as_json.stdout)["rows"] == [r.as_dict() for r in expected]


# ------------------------------------------------------------------- IPv6 in captures

DATA_PCAPS = ROOT / "tests" / "data" / "pcaps"
IPV6_PCAPS = sorted(p.name for p in DATA_PCAPS.glob("*ipv6*"))
NOT_SERVED_NAT = ("not served: IPv6 flow, nat service has no IPv6 address (the cores' nat "
                  "addresses are IPv4)")


def _json_run(*args: str) -> tuple[int, dict]:
    result = cli("verify", *args, "--json", "--rows")
    return result.returncode, json.loads(result.stdout)


def _comparable(report: dict) -> tuple:
    """What both paths must agree on: every row, and the summary without its occupancy
    (the trace reports it after sessions close; issue 12, gap 6)."""
    summary = {k: v for k, v in report["summary"].items() if k not in ("occupancy", "per_core")}
    per_core = [{k: v for k, v in core.items() if k != "occupancy"}
                for core in report["summary"].get("per_core", [])]
    return report["rows"], summary, per_core


def test_the_ipv6_captures_are_there():
    assert len(IPV6_PCAPS) >= 3, IPV6_PCAPS


@pytest.mark.parametrize("name", IPV6_PCAPS)
def test_an_ipv6_capture_under_nat_replays_on_the_batch_path(name):
    """The capture is no longer refused: its IPv6 flow is counted, refused with the
    reason, and the trace path says the same, row for row."""
    scenario = str(EXAMPLES_DIR / "pcap-replay.yaml")
    status, batch = _json_run(scenario, "--pcap", str(DATA_PCAPS / name))
    assert status == 1  # the example's checks expect its own four IPv4 flows
    assert batch["summary"]["refused"] == batch["summary"]["flows"] == 1
    assert batch["summary"]["not_served"] == {NOT_SERVED_NAT: 1}
    assert batch["rows"][0]["reason"].startswith(NOT_SERVED_NAT)
    assert batch["rows"][0]["rewritten"] is None
    trace_status, trace = _json_run(scenario, "--pcap", str(DATA_PCAPS / name), "--trace")
    assert trace_status == status
    assert _comparable(trace) == _comparable(batch)
    text = cli("verify", scenario, "--pcap", str(DATA_PCAPS / name)).stdout
    assert f"{NOT_SERVED_NAT}: 1 refused" in text


@pytest.mark.parametrize("name", IPV6_PCAPS)
def test_an_ipv6_capture_through_a_transparent_service_is_served(tmp_path, name):
    replay = tmp_path / "replay.yaml"
    replay.write_text(_system_part("pcap-replay").replace("policy: nat",
                                                          "policy: transparent")
                      + f"traffic: {{pcap: {{path: {DATA_PCAPS / name}}}}}\n")
    status, batch = _json_run(str(replay), "--pcap", str(DATA_PCAPS / name))
    assert status == 0, batch
    assert batch["summary"]["refused"] == 0 and batch["summary"]["not_served"] == {}
    assert batch["rows"][0]["request"].startswith("tcp [::1]:12345")
    _, trace = _json_run(str(replay), "--pcap", str(DATA_PCAPS / name), "--trace")
    assert _comparable(trace) == _comparable(batch)


def test_a_stray_ipv6_packet_no_longer_refuses_a_capture(tmp_path):
    """An IPv4 capture with one link-local multicast IPv6 datagram (mDNS to ff02::fb),
    as captures made by others hold: the IPv4 flows are served, the IPv6 one counted."""
    from scapy.layers.inet import IP, TCP, UDP
    from scapy.layers.inet6 import IPv6
    from scapy.layers.l2 import Ether
    from scapy.utils import wrpcap
    frames = []
    for port in (40001, 40002, 40003):
        out = Ether() / IP(src="198.51.100.7", dst="192.0.2.90")
        back = Ether() / IP(src="192.0.2.90", dst="198.51.100.7")
        frames += [out / TCP(sport=port, dport=80, flags="S"),
                   back / TCP(sport=80, dport=port, flags="SA")]
    frames.insert(2, Ether() / IPv6(src="fe80::1", dst="ff02::fb") / UDP(sport=5353,
                                                                          dport=5353))
    capture = tmp_path / "stray.pcap"
    wrpcap(str(capture), frames)
    scenario = str(EXAMPLES_DIR / "pcap-replay.yaml")
    status, batch = _json_run(scenario, "--pcap", str(capture))
    summary = batch["summary"]
    assert (summary["flows"], summary["symmetric"], summary["refused"]) == (4, 3, 1)
    assert summary["not_served"] == {NOT_SERVED_NAT: 1}
    assert [r["verdict"] for r in batch["rows"]].count("refused") == 1
    _, trace = _json_run(scenario, "--pcap", str(capture), "--trace")
    assert _comparable(trace) == _comparable(batch)
    assert status == 1  # symmetric_rate >= 100 % fails: one flow was not served
