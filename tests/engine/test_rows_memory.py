"""``python -m engine verify SCENARIO --rows [--json]`` streams its rows: the child's
peak memory at 400,000 generated flows is not meaningfully above its peak at 100,000
(the batch arrays grow with the flows, the rows must not). Before streaming, 400,000
rows with --json peaked about 800 MB above 100,000.

Each figure is the peak RSS of one fresh ``python -m engine`` process, read by a small
wrapper process of its own (``RUSAGE_CHILDREN`` of the wrapper), so no two
measurements mix."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="ru_maxrss is in KiB on Linux only")

#: runs the CLI as its child and prints "exit-status peak-RSS-KiB" of that child
_WRAPPER = ("import resource, subprocess, sys\n"
            "status = subprocess.run([sys.executable, '-m', 'engine', 'verify', "
            "*sys.argv[1:]], stdout=subprocess.DEVNULL).returncode\n"
            "print(status, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n")

#: what 300,000 more flows may add to the peak: their batch arrays (about 48 MB for
#: 300,000 flows of this scenario, rows or not) and some slack
MAX_GROWTH_MB = 80
#: what rows may add to the peak of the same run without rows (a few chunks of rows)
MAX_ROWS_COST_MB = 30


def _scenario(path: Path, count: int) -> Path:
    """nat, 16 cores x 4 IPs, 100 servers: every one of ``count`` flows gets a port."""
    servers = ", ".join(f'"203.0.113.{i}:80"' for i in range(1, 101))
    path.write_text(
        f"schema_version: 1\nname: rows-{count}\nseed: 3\n"
        f"system: {{cores: 16, ips_per_core: 4}}\n"
        f"services: [{{name: web, vip: 192.0.2.10, vport: 80, policy: nat, "
        f"servers: [{servers}]}}]\n"
        f"traffic: {{generated: {{count: {count}, client_prefixes: [16.0.0.0/4]}}}}\n"
        f"checks: {{symmetric_rate: '>= 100%', refused: '== 0'}}\n")
    return path


def _peak_mb(*args: str) -> float:
    """Peak RSS (MB) of one ``python -m engine verify ARGS`` run, stdout discarded."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", _WRAPPER, *args], capture_output=True,
                          text=True, cwd=ROOT, env=env, timeout=120, check=True)
    status, kib = done.stdout.split()
    assert status == "0", (args, done.stderr[-500:])
    return int(kib) / 1024


def test_verify_rows_json_peak_memory_does_not_grow_with_rows(tmp_path):
    small = str(_scenario(tmp_path / "small.yaml", 100_000))
    large = str(_scenario(tmp_path / "large.yaml", 400_000))
    peaks = {(name, extra): _peak_mb(path, *extra)
             for name, path in (("100k", small), ("400k", large))
             for extra in ((), ("--rows", "--json"), ("--rows",))}
    report = ", ".join(f"{name} {' '.join(extra) or 'no rows'}: {mb:.0f} MB"
                       for (name, extra), mb in peaks.items())
    for extra in (("--rows", "--json"), ("--rows",)):
        growth = peaks["400k", extra] - peaks["100k", extra]
        assert growth < MAX_GROWTH_MB, f"{' '.join(extra)} grew {growth:.0f} MB ({report})"
        cost = peaks["400k", extra] - peaks["400k", ()]
        assert cost < MAX_ROWS_COST_MB, f"{' '.join(extra)} cost {cost:.0f} MB ({report})"
