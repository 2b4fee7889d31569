"""A batch run split by request core and merged (engine.runs.shards) equals the unsplit
run in every figure, and a run whose state crosses cores (fragments) is not split."""

from __future__ import annotations

import dataclasses
import ipaddress

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.appliance.config import Server, Service, SystemConfig
from engine.appliance.rules import FORWARDING_ROUTES
from engine.examples import load_example
from engine.paths.batch import random_flow_arrays, run_batch
from engine.paths.flows import FlowArrays, FlowSpec
from engine.runs.run import verify_scenario
from engine.runs.shards import (
    ShardFigures,
    assign_cores,
    merge_figures,
    merge_scenario,
    plan_shards,
    response_hashes,
    run_shard,
    run_split,
    run_split_processes,
    scenario_shard,
    scenario_split_refusal,
    split_refusal,
)
from engine.scenarios.scenario import load_scenario
from tests.engine.test_batch import setups

SERVICES = (Service("198.18.0.1", 80, policy="nat",
                    servers=(("203.0.113.1", 8080), ("203.0.113.2", 8080))),
            Service("198.18.0.2", 443, policy="usip", servers=(("203.0.113.3", 443),)),
            Service("198.18.0.3", 53, policy="transparent", servers=(("203.0.113.4", 53),)))
TARGETS = [(0xC6120001, 80), (0xC6120002, 443), (0xC6120003, 53), (0xCB007104, 53)]


@st.composite
def split_setups(draw):
    """The batch path's own random setups (each policy and strategy, shared IP, scarce
    port ranges, keys, transforms), with every forwarding route, services of mixed
    policies, unhashed traffic to a default core, and 1-5 shards."""
    # a run the flow distributor steers is never split (split_refusal)
    config, seed, count, servers, _udp = draw(setups(distributor=False))
    extra = {"handoff": draw(st.sampled_from(FORWARDING_ROUTES))}
    if draw(st.booleans()):
        extra["services"] = SERVICES
    if draw(st.integers(0, 4)) == 0:  # TCP hashed on addresses only, or not at all
        extra["hash_types"] = draw(st.sampled_from([("ipv4",), ("udp-ipv4",)]))
        extra["default_core"] = draw(st.integers(0, config.cores - 1))
    config = dataclasses.replace(config, **extra)
    return config, seed, draw(st.integers(1, 400)), servers, draw(st.integers(1, 5))


def flows_for(config, seed, count, servers):
    rng = np.random.default_rng(seed)
    flows = random_flow_arrays(count, rng, servers=servers)
    if config.services:
        pick = rng.integers(0, len(TARGETS), count)
        flows.server_ip[:] = [TARGETS[i][0] for i in pick]
        flows.server_port[:] = [TARGETS[i][1] for i in pick]
    return flows


def report_figures(config, result):
    """The figures a report adds to the summary, from a whole run."""
    return ShardFigures.of(config, result, range(config.cores))


@settings(max_examples=80, deadline=None)
@given(split_setups())
def test_merged_equals_unsplit_in_every_figure(setup):
    config, seed, count, servers, shards = setup
    flows = flows_for(config, seed, count, servers)
    unsplit = run_batch(config, flows)
    merged = run_split(config, flows, shards=shards)
    # summary: verdict counts, copies, hops, load, fairness, occupancy, distinct hashes...
    assert merged.summary == unsplit.summary
    # every stored row, in flow order, with its reason text
    assert merged.row_dicts() == unsplit.row_dicts()
    assert (merged.ids == unsplit.ids).all()
    # the report's figures, merged from compact shard figures as a worker stores them
    plan = plan_shards(config, flows, shards)
    parts = [ShardFigures.from_bytes(ShardFigures.of(
        config, run_shard(config, flows, rows), plan.cores_of(index), keep_rows=50
    ).to_bytes()) for index, rows in enumerate(plan.rows)]
    figures = merge_figures(parts)
    whole = report_figures(config, unsplit)
    assert figures.summary == unsplit.summary
    assert (figures.matrix == whole.matrix).all()
    assert (figures.no_response == whole.no_response).all()
    assert (figures.buckets == whole.buckets).all()
    assert (figures.allocated == whole.allocated).all()
    assert figures.rows == unsplit.row_dicts(0, 50)


@settings(max_examples=30, deadline=None)
@given(split_setups(), st.booleans())
def test_shard_figures_survive_either_byte_form(setup, compress):
    """The stored (compressed) and the piped (plain) forms read back to the same figures,
    whose hashes are the shard's distinct RSS hashes, sorted (as ``np.unique`` gives)."""
    config, seed, count, servers, shards = setup
    flows = flows_for(config, seed, count, servers)
    plan = plan_shards(config, flows, shards)
    for index, rows in enumerate(plan.rows):
        result = run_shard(config, flows, rows)
        figures = ShardFigures.of(config, result, plan.cores_of(index), keep_rows=20)
        seen = np.concatenate([result.request_hash[result.request_hashed],
                               response_hashes(config, result)])
        assert np.array_equal(figures.hashes, np.unique(seen))
        back = ShardFigures.from_bytes(figures.to_bytes(compress=compress))
        for item in dataclasses.fields(ShardFigures):
            value, read = getattr(figures, item.name), getattr(back, item.name)
            if isinstance(value, np.ndarray):
                assert np.array_equal(value, read) and value.dtype == read.dtype, item.name
            else:
                assert value == read, item.name


@settings(max_examples=30, deadline=None)
@given(st.lists(st.integers(0, 1000), min_size=1, max_size=16), st.integers(1, 20))
def test_every_core_has_one_owner_and_no_shard_is_empty(counts, shards):
    owner = assign_cores(counts, shards)
    assert len(owner) == len(counts)
    assert set(owner.tolist()) == set(range(min(shards, len(counts))))


def test_two_processes_give_the_unsplit_figures():
    config = SystemConfig(cores=6, ips_per_core=2, policy="nat", strategy="scan",
                          port_range=(40000, 40255))
    flows = random_flow_arrays(3000, np.random.default_rng(9), servers=2)
    unsplit = run_batch(config, flows)
    assert unsplit.summary.refused  # the scarce range makes some cores run out
    assert run_split_processes(config, flows, processes=2).summary == unsplit.summary


@pytest.mark.parametrize("processes", [1, 3])
@pytest.mark.parametrize("hash_types", [("ipv4",), ("udp-ipv4",)])
def test_processes_taking_per_core_shards_give_the_unsplit_figures(processes, hash_types):
    # TCP hashed on its addresses alone (uneven cores), or not at all (every flow on the
    # default core, seven shards with none)
    config = SystemConfig(cores=8, ips_per_core=2, policy="nat", strategy="scan",
                          hash_types=hash_types, default_core=5)
    flows = random_flow_arrays(2000, np.random.default_rng(4), servers=3)
    unsplit = run_batch(config, flows)
    assert len(set(unsplit.summary.core_load)) > 1
    assert run_split_processes(config, flows, processes=processes).summary == unsplit.summary


FRAGMENTING = [
    SystemConfig(cores=4, policy="nat",
                 servers=(Server("203.0.113.1", 80, response_bytes=1000, mtu=576),)),
    SystemConfig(cores=4, policy="nat", fragment_mode="ms-2tuple",
                 services=(Service("198.18.0.1", 80, policy="nat", mtu=576,
                                   servers=(("203.0.113.1", 80),)),)),
]


@pytest.mark.parametrize("config", FRAGMENTING)
def test_a_fragmenting_run_is_not_split(config):
    flows = random_flow_arrays(300, np.random.default_rng(2), servers=1)
    flows.response_bytes[:] = 2000
    if config.services:  # to the service's VIP
        flows.server_ip[:], flows.server_port[:] = 0xC6120001, 80
    assert split_refusal(config) is not None
    unsplit = run_batch(config, flows)
    assert unsplit.summary.fragmented  # the scenario does fragment
    merged = run_split(config, flows, shards=3)
    assert merged.fragments is not None  # ran whole: the fragment columns are there
    assert merged.summary == unsplit.summary
    assert merged.row_dicts() == unsplit.row_dicts()
    with pytest.raises(ValueError, match="not split"):
        run_split_processes(config, flows)


def test_request_mtus_are_not_split():
    config = SystemConfig(cores=4, policy="nat")
    flows = random_flow_arrays(200, np.random.default_rng(3), servers=1)
    mtu = np.where(np.arange(200) % 2, 0, 576)
    flows.request_bytes[:] = 2000
    assert split_refusal(config, mtu) is not None
    assert split_refusal(config, np.zeros(200)) is None
    merged = run_split(config, flows, shards=2, request_mtu=mtu)
    unsplit = run_batch(config, flows, request_mtu=mtu)
    assert unsplit.summary.fragmented
    assert merged.row_dicts() == unsplit.row_dicts()


def test_a_scenario_merged_from_shards_reports_as_the_unsplit_run():
    scenario = load_example("nat-microsoft")
    unsplit = verify_scenario(scenario, rows=True)
    parts = [ShardFigures.from_bytes(scenario_shard(scenario, i, 3, keep_rows=200).to_bytes())
             for i in range(3)]
    report, rows = merge_scenario(scenario, parts, source=unsplit.source)
    assert report.as_dict() == unsplit.as_dict(rows=False)
    assert rows == [row.as_dict() for row in unsplit.rows[:200]]


@pytest.mark.parametrize("name", ["fragmented-udp", "fragmented-udp-ms-2tuple", "pcap-replay"])
def test_fragmenting_and_capture_scenarios_are_not_split(name):
    scenario = load_example(name)
    assert scenario_split_refusal(scenario) is not None
    with pytest.raises(ValueError, match="not split"):
        scenario_shard(scenario, 0, 2)


def test_ipv6_rows_are_not_split():
    """A shard's columns are IPv4 ones: flows with IPv6 rows run whole, and say why."""
    config = SystemConfig(cores=4, policy="transparent")
    flows = random_flow_arrays(100, np.random.default_rng(5), servers=1)
    assert split_refusal(config, flows=flows) is None
    six = FlowSpec(100, ipaddress.ip_address("2001:db8::1"), 5000,
                   ipaddress.ip_address("2001:db8::80"), 80)
    mixed = FlowArrays.concat([flows, FlowArrays.from_specs([six])])
    reason = split_refusal(config, flows=mixed)
    assert reason is not None and "IPv6" in reason
    merged = run_split(config, mixed, shards=2)
    unsplit = run_batch(config, mixed)
    assert merged.row_dicts() == unsplit.row_dicts() and merged.summary == unsplit.summary
    assert merged.outcome(100).request == six.request
    with pytest.raises(ValueError, match="not split: flows include IPv6"):
        run_split_processes(config, mixed)


def test_a_scenario_with_explicit_ipv6_flows_is_not_split():
    scenario = load_scenario("""
schema_version: 1
name: six
system: {cores: 2}
services:
  - {name: v6, vip: "2001:db8::10", vport: 443, policy: transparent,
     servers: ["[2001:db8::20]:443"]}
traffic:
  - flows:
      - {client: "[2001:db8::1]:5000", service: v6}
""")
    assert "IPv6" in scenario_split_refusal(scenario)
    with pytest.raises(ValueError, match="not split"):
        scenario_shard(scenario, 0, 2)
