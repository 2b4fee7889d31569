"""The flow distributor in a running system: rules, the RSS-unaware NIC, the
correct-core check and the indirection-table change, from scenarios and on both paths."""

from __future__ import annotations

import dataclasses
import ipaddress
import textwrap
from dataclasses import replace

import numpy as np
import pytest

from engine.appliance.config import Flow, SystemConfig
from engine.appliance.events import ForwardedCoreToCore
from engine.errors import ConfigError, ScenarioError
from engine.examples import load_example
from engine.nic.distributor import Rule
from engine.paths.batch import flow_arrays, run_batch
from engine.paths.flows import FlowArrays, FlowSpec
from engine.paths.trace import System
from engine.runs.run import verify_scenario
from engine.scenarios.scenario import load_scenario
from engine.scenarios.traffic import build_flow_arrays, build_flow_specs


def trace_of(scenario, **changes):
    """The scenario's trace run (``changes`` replace ``SystemConfig`` fields)."""
    from dataclasses import replace
    system = System(replace(scenario.build_system_config(), **changes))
    return system.run_trace([spec.to_flow() for spec in build_flow_specs(scenario)])


def test_rules_pin_a_prefix_to_a_core_in_both_directions_on_both_paths():
    scenario = load_example("distributor-rules")
    trace = verify_scenario(scenario, mode="trace", rows=True)
    batch = verify_scenario(scenario, rows=True)
    assert [r.key() for r in trace.rows] == [r.key() for r in batch.rows]
    pinned = [r for r in trace.rows if str(r.request.src).startswith("203.0.113.")]
    assert pinned and all(r.request_core == 2 for r in pinned)
    # the dst rule brings the transparent responses (to the client's own address) home
    transparent = [r for r in pinned if r.local_ip is None]
    assert transparent and all(r.verdict == "symmetric" for r in transparent)
    exact = trace.rows[0]
    assert str(exact.request.src) == "198.51.100.7" and exact.request_core == 1
    moved = [r for r in trace.rows if r.distributor_forwards]
    assert all("moved by the distributor" in r.reason for r in moved)
    assert sum(r.distributor_forwards for r in trace.rows) == trace.summary.distributor_forwards


def test_an_rss_unaware_nic_delivers_everything_to_the_receive_core():
    config = SystemConfig(cores=4, policy="nat", rss_aware=False, receive_core=3)
    flows = [Flow(i, f"198.51.100.{i + 1}", 40000 + i, "203.0.113.9", 80) for i in range(40)]
    result = System(config).run_trace(flows)
    forwards = [e for e in result.events if isinstance(e, ForwardedCoreToCore)]
    assert forwards and all(e.from_core == 3 and e.by == "distributor" for e in forwards)
    # every packet not for core 3 is moved once: 40 requests and 40 responses
    not_three = sum((o.request_core != 3) + (o.response_core != 3) for o in result.outcomes)
    assert result.summary.distributor_forwards == len(forwards) == not_three
    assert result.summary.symmetric == 40
    batch = run_batch(config, flow_arrays(flows)[0])
    assert [o.key() for o in batch.outcomes()] == [o.key() for o in result.outcomes]


def test_the_correct_core_check_forwards_misdirected_requests_after_a_table_change():
    scenario = load_example("correct-core-check")
    checked = trace_of(scenario)
    assert checked.summary.check_forwards == 8 and checked.summary.handed_off == 8
    late = [o for o in checked.outcomes if o.misdirected]
    assert len(late) == 8 and all(o.misdirected == "forwarded" for o in late)
    forwards = [e for e in checked.events if isinstance(e, ForwardedCoreToCore)
                and e.by == "correct-core check" and e.t_us >= 600]
    # 8 requests at 600 us, then the 8 responses of the flows sent at 400 us
    assert {(e.from_core, e.to_core) for e in forwards} >= {
        (o.request_core + 1, o.request_core) for o in late}
    unchecked = trace_of(scenario, correct_core_check=False)
    assert unchecked.summary.misdirected_processed == 8
    assert unchecked.summary.asymmetric == 8 and unchecked.summary.check_forwards == 0
    second = [o for o in unchecked.outcomes if o.misdirected == "processed"]
    assert all("a second session" in o.reason for o in second)


def test_a_repeated_tuple_without_a_table_change_reaches_its_owner():
    config = SystemConfig(cores=4, policy="nat")
    flows = [Flow(0, "198.51.100.1", 40000, "203.0.113.9", 80),
             Flow(1, "198.51.100.1", 40000, "203.0.113.9", 80, start_us=50)]
    result = System(config).run_trace(flows)
    assert [o.misdirected for o in result.outcomes] == ["", ""]


@pytest.mark.parametrize("checked", [True, False])
def test_the_batch_path_runs_a_table_change_flow_for_flow_as_the_trace(checked):
    """The correct-core-check example on both paths: the late requests forwarded to
    their owner (or, unchecked, processed where they land), the responses that arrive
    after the change steered by the new table; the same rows and summary."""
    scenario = load_example("correct-core-check")
    trace = trace_of(scenario, correct_core_check=checked)
    config = replace(scenario.build_system_config(), correct_core_check=checked)
    batch = run_batch(config, build_flow_arrays(scenario))
    assert batch.row_dicts() == [o.as_dict() for o in trace.outcomes]
    assert batch.summary.as_dict() == trace.summary.as_dict()
    summary = batch.summary
    if checked:
        assert (summary.check_forwards, summary.check_copies, summary.handed_off) == (8, 8, 8)
    else:
        assert (summary.misdirected_processed, summary.asymmetric) == (8, 8)


def test_the_batch_path_refuses_what_it_cannot_follow_across_a_table_change():
    config = SystemConfig(cores=4, table_change_at_us=10, table_change=(1, 2, 3, 0) * 32)
    flows = [Flow(0, "198.51.100.1", 40000, "203.0.113.9", 80)]
    with pytest.raises(ConfigError, match="jitter_us.*use --trace"):
        run_batch(replace(config, jitter_us=5), flow_arrays(flows)[0])
    with pytest.raises(ConfigError, match="request_mtu.*use --trace"):
        run_batch(config, flow_arrays(flows)[0], request_mtu=np.array([576]))
    # a transparent tuple sent again after the change lands elsewhere: refused
    transparent = replace(config, policy="transparent")
    again = [flows[0], replace(flows[0], id=1, start_us=20)]
    arrays = flow_arrays(again)[0]
    arrays = dataclasses.replace(arrays, start_us=np.array([0, 20], np.int64))
    with pytest.raises(ConfigError, match="table_change.*transparent.*use --trace"):
        run_batch(transparent, arrays)
    with pytest.raises(ConfigError, match="table_change"):
        SystemConfig(cores=4, table_change_at_us=10, table_change=(0, 5)).check()


def test_the_config_refuses_what_the_distributor_cannot_do():
    with pytest.raises(ConfigError, match="handoff"):
        SystemConfig(rss_aware=False, handoff="none").check()
    with pytest.raises(ConfigError, match=r"rules\[0\].core"):
        SystemConfig(cores=2, rules=(Rule.for_prefix("10.0.0.0/8", 2),)).check()
    with pytest.raises(ConfigError, match="receive_core"):
        SystemConfig(cores=2, receive_core=2).check()
    with pytest.raises(ConfigError, match=r"flows\[0\].request_mtu"):
        System(SystemConfig(rss_aware=False)).run_trace(
            [Flow(0, "198.51.100.1", 40000, "203.0.113.9", 80, request_mtu=576)])


BASE = textwrap.dedent("""\
    schema_version: 1
    name: d
    system:
      cores: 4
      nic: {rss_aware: false, receive_core: 4, table_change: {at_us: 5, table: [0, 9]}}
    forwarding: {route: none}
    distributor:
      rules:
        - {core: 7, prefix: "10.0.0.0/8", flow: {client: "1.2.3.4:1", server: "5.6.7.8:2"}}
        - {core: 1}
        - {core: 1, flow: {client: "1.2.3.4:1", server: "[2001:db8::1]:2"}}
    services:
      - {name: web, vip: 192.0.2.10, vport: 80, policy: nat, servers: ["10.0.0.1:8080"],
         mtu: 1500}
    traffic: {generated: {count: 10}}
    """)


def test_a_scenario_names_every_bad_distributor_field():
    with pytest.raises(ScenarioError) as caught:
        load_scenario(BASE)
    paths = {p.path for p in caught.value.problems}
    assert {"system.nic.receive_core", "system.nic.table_change.table",
            "distributor.rules[0]", "distributor.rules[0].core", "distributor.rules[1]",
            "distributor.rules[2].flow", "forwarding.route", "services[0].mtu"} <= paths


def test_the_scenario_fields_reach_the_system():
    scenario = load_scenario(textwrap.dedent("""\
        schema_version: 1
        name: d
        system:
          cores: 4
          nic: {hash_bits: 1, rss_aware: false, receive_core: 2,
                table_change: {at_us: 5, table: [3, 2]}}
        distributor:
          correct_core_check: false
          rules:
            - {core: 1, prefix: "10.0.0.0/8", match_on: dst}
            - {core: 3, flow: {client: "1.2.3.4:1", server: "5.6.7.8:2", proto: udp}}
        services:
          - {name: web, vip: 192.0.2.10, vport: 80, policy: nat, servers: ["10.0.0.1:8080"]}
        traffic: {flows: [{client: "1.2.3.4:1", service: web, start_us: 7}]}
        """))
    config = scenario.build_system_config()
    assert (config.rss_aware, config.receive_core, config.correct_core_check) == (False, 2,
                                                                                  False)
    assert (config.table_change_at_us, config.table_change) == (5, (3, 2))
    assert [r.describe() for r in config.rules] == [
        "rule dst in 10.0.0.0/8 -> core 1", "rule udp 1.2.3.4:1 -> 5.6.7.8:2 -> core 3"]
    assert build_flow_specs(scenario)[0].to_flow().start_us == 7


def test_a_distributing_run_is_not_split_by_the_nic_s_request_core():
    from engine.runs.shards import split_refusal
    assert split_refusal(SystemConfig(rss_aware=False)) is not None
    assert split_refusal(SystemConfig(rules=(Rule.for_prefix("10.0.0.0/8", 1),))) is not None
    assert split_refusal(SystemConfig()) is None
    assert "table changes" in split_refusal(SystemConfig(
        cores=4, table_change_at_us=10, table_change=(1, 2, 3, 0) * 32))


def test_ipv6_rows_with_the_distributor_run_on_the_trace_path_only():
    from engine.errors import TrafficError
    config = SystemConfig(policy="transparent", rss_aware=False,
                          rules=(Rule.for_prefix("2001:db8::/32", 3),))
    flows = [Flow(0, "2001:db8::7", 40000, "2001:db8:1::1", 80),
             Flow(1, "198.51.100.1", 40000, "203.0.113.9", 80)]
    trace = System(config).run_trace(flows)
    assert trace.outcomes[0].request_core == 3  # the IPv6 prefix rule
    arrays = FlowArrays.from_specs([_spec(flow) for flow in flows])
    with pytest.raises(TrafficError, match=r"flows\[0\].*use --trace"):
        run_batch(config, arrays)


def _spec(flow: Flow) -> FlowSpec:
    return FlowSpec(flow.id, ipaddress.ip_address(flow.client_ip), flow.client_port,
                    ipaddress.ip_address(flow.server_ip), flow.server_port, 6)
