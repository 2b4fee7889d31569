"""The control core: a failed core's sessions are dropped, its buckets move, load and
symmetry are reported; restore and rebalance show what moving buckets does."""

from __future__ import annotations

import numpy as np
import pytest

from engine.appliance.config import Flow, SystemConfig
from engine.appliance.control import ControlCore
from engine.errors import TableError
from engine.packet.model import Packet
from engine.paths.batch import flows_from_arrays, random_flow_arrays
from engine.paths.trace import System


def flows(count, seed, *, start_us=0, first_id=0):
    arrays = random_flow_arrays(count, np.random.default_rng(seed), servers=10)
    return [Flow(f.id + first_id, f.client_ip, f.client_port, f.server_ip, f.server_port,
                 close="none", start_us=start_us) for f in flows_from_arrays(arrays)]


def test_failing_a_core_drops_its_sessions_and_keeps_the_others_symmetric():
    system = System(SystemConfig(cores=4, ips_per_core=2, policy="nat"))
    system.run_trace(flows(400, 1), until_us=1_000)
    on_core_1 = [s for s in system.sessions() if s.core == 1]
    report = ControlCore(system).fail_core(1)
    assert report.dropped_sessions == report.freed_ports == len(on_core_1) > 0
    assert report.misdirected == 0 and report.open_sessions == 400 - len(on_core_1)
    assert report.buckets_per_core_after[1] == 0
    assert sorted(report.moved_buckets) == sorted(
        b for b in range(128) if b % 4 == 1)
    after = system.run_trace(flows(400, 2, start_us=2_000, first_id=1000), until_us=3_000)
    assert after.summary.symmetric == 400
    assert after.summary.core_load[1] == 0
    # Bringing the core back returns its buckets: sessions opened there meanwhile are
    # now misdirected (the report says which), new ones are symmetric again.
    restored = ControlCore(system).restore_core(1)
    assert restored.buckets_per_core_after == [32, 32, 32, 32]
    assert restored.misdirected > 0
    again = system.run_trace(flows(200, 3, start_us=4_000, first_id=2000), until_us=5_000)
    assert again.summary.symmetric == 200 and again.summary.core_load[1] > 0


def test_rebalance_evens_measured_load_and_reports_misdirected_sessions():
    system = System(SystemConfig(cores=4, policy="transparent"))
    system.run_trace(flows(300, 4), until_us=1_000)
    # Skew the measured load: every eighth bucket (all core 0's) is a heavy hitter.
    for bucket in range(0, 128, 8):
        system.bucket_load[bucket] += 50
    report = ControlCore(system).rebalance()
    assert report.load_fairness_after >= report.load_fairness_before
    assert report.moved_buckets
    assert report.load_fairness_after > 0.99
    expected = [s.flow for s in system.sessions()
                if system.nic.steer(Packet.from_tuple(0, s.response_tuple)).core != s.core]
    assert report.misdirected_flows == expected


def test_the_last_core_cannot_fail():
    control = ControlCore(System(SystemConfig(cores=2)))
    control.fail_core(0)
    with pytest.raises(TableError, match="core"):
        control.fail_core(1)
    with pytest.raises(TableError):
        control.fail_core(7)


def test_demo_shows_the_control_core_keeping_new_flows_symmetric():
    from engine.commands.demo import control_demo

    lines = control_demo(40)
    text = "\n".join(lines)
    assert text.count("symmetric rate 1.0000") == 3  # before, during and after the failure
    failed = next(line for line in lines if line.startswith("  fail core 1"))
    assert failed.endswith("-> [43, 0, 43, 42]")
    assert "misdirected 0" in lines[lines.index(failed) + 1]
    during = lines[lines.index(failed) + 4]
    assert "per-core load [" in during and ", 0, " in during  # core 1 carries nothing
