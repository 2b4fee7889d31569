"""The multi-core system's trace: policies, handoffs, the wrong direction, exhaustion."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from engine.appliance.config import Flow, SystemConfig
from engine.appliance.events import ForwardedCoreToCore, PortFreed, ResponseArrived, SessionClosed
from engine.appliance.ports import ResponsePortMap
from engine.errors import ConfigError
from engine.nic.rss import IndirectionTable
from engine.packet.toeplitz import Key
from engine.paths.batch import flows_from_arrays, random_flow_arrays
from engine.paths.trace import System


def random_flows(count: int, seed: int, *, close: str = "fin", servers: int = 0) -> list[Flow]:
    return flows_from_arrays(random_flow_arrays(count, np.random.default_rng(seed),
                                                servers=servers), close=close)


@settings(max_examples=25, deadline=None)
@given(policy=st.sampled_from(["nat", "usip"]), strategy=st.sampled_from(["solve", "scan"]),
       cores=st.integers(1, 16), hash_bits=st.integers(1, 7), seed=st.integers(0, 10**6),
       shared=st.booleans())
def test_microsoft_key_nat_and_usip_are_always_symmetric(policy, strategy, cores, hash_bits,
                                                         seed, shared):
    config = SystemConfig(cores=cores, hash_bits=hash_bits, policy=policy, strategy=strategy,
                          ips_per_core=2, shared_ip="192.0.2.1" if shared else None)
    result = System(config).run_trace(random_flows(50, seed, servers=5), keep_events=False)
    assert result.summary.symmetric == 50
    assert result.summary.symmetric_rate == 1.0


@settings(max_examples=25, deadline=None)
@given(key_seed=st.integers(0, 10**6), policy=st.sampled_from(["nat", "usip"]),
       strategy=st.sampled_from(["solve", "scan"]), seed=st.integers(0, 10**6))
def test_random_full_rank_keys_are_always_symmetric(key_seed, policy, strategy, seed):
    table = IndirectionTable.round_robin(8, 7)
    assume(ResponsePortMap(Key.random(key_seed), table).full_rank)
    config = SystemConfig(cores=8, key=f"random:{key_seed}", policy=policy,
                          strategy=strategy)
    result = System(config).run_trace(random_flows(40, seed), keep_events=False)
    assert [o.verdict for o in result.outcomes] == ["symmetric"] * 40


@pytest.mark.parametrize("via, copies", [("message", 1), ("shared-buffer", 2)])
def test_transparent_hands_every_misdirected_response_to_its_owner(via, copies):
    config = SystemConfig(cores=8, policy="transparent", handoff=via)
    result = System(config).run_trace(random_flows(400, 11))
    outcomes = result.outcomes
    handed = [o for o in outcomes if o.verdict == "handed-off"]
    assert len(handed) > 200  # 7 in 8 responses land elsewhere on a plain key
    assert {o.verdict for o in outcomes} == {"symmetric", "handed-off"}
    forwards = [e for e in result.events if isinstance(e, ForwardedCoreToCore)]
    assert [(e.flow, e.to_core) for e in forwards] == [(o.flow, o.request_core)
                                                       for o in handed]
    assert all(e.from_core != e.to_core and e.copies == copies for e in forwards)
    # None lost: every flow's response reached its client, through the owning core.
    arrived = {e.flow: e.core for e in result.events if isinstance(e, ResponseArrived)}
    assert arrived == {o.flow: o.request_core for o in outcomes}
    assert result.summary.handoff_copies == copies * len(handed)
    stats = result.handoffs
    assert sum(s.sent for s in stats) == sum(s.received for s in stats) == len(handed)
    assert sum(s.copies for s in stats) == copies * len(handed)
    for core, stat in enumerate(stats):
        assert stat.received == sum(1 for o in handed if o.request_core == core)
        assert stat.sent == sum(1 for o in handed if o.response_core == core)


def test_transparent_without_handoff_loses_misdirected_responses():
    config = SystemConfig(cores=4, policy="transparent", handoff="none")
    result = System(config).run_trace(random_flows(100, 12))
    lost = [o for o in result.outcomes if o.verdict == "asymmetric"]
    assert lost and all(o.response_core != o.request_core for o in lost)
    arrived = {e.flow for e in result.events if isinstance(e, ResponseArrived)}
    assert arrived.isdisjoint(o.flow for o in lost)


def test_symmetric_key_needs_no_handoff_but_costs_distribution():
    flows = random_flows(3000, 13)
    symmetric = System(SystemConfig(cores=8, key="symmetric", policy="transparent")
                       ).run_trace(flows, keep_events=False).summary
    microsoft = System(SystemConfig(cores=8, key="microsoft", policy="transparent")
                       ).run_trace(flows, keep_events=False).summary
    assert symmetric.symmetric == 3000 and symmetric.handed_off == 0
    assert symmetric.handoff_copies == 0
    assert microsoft.handed_off > 2000
    # A request and its response share one hash, and there are at most 65,536 of them.
    assert symmetric.distinct_hashes <= 3000 < microsoft.distinct_hashes
    assert 0.9 < symmetric.fairness <= 1.0


def test_symmetric_key_collides_on_the_xor_of_words():
    # Flows whose 16-bit words XOR to the same value share one hash: one core takes all.
    flows = [Flow(i, f"10.0.{i}.{i}", 1000 + i, f"10.0.{i}.{i}", 1000 + i) for i in range(64)]
    summary = System(SystemConfig(cores=8, key="symmetric", policy="transparent")
                     ).run_trace(flows, keep_events=False).summary
    assert summary.distinct_hashes == 1
    assert summary.fairness == pytest.approx(1 / 8)


@pytest.mark.parametrize("policy", ["nat", "usip"])
def test_wrong_direction_is_forwarded_or_lost_without_forwarding(policy):
    forwarded = System(SystemConfig(cores=8, policy=policy, wrong_direction=True)
                       ).run_trace(random_flows(200, 14), keep_events=False)
    config = SystemConfig(cores=8, policy=policy, wrong_direction=True, handoff="none")
    result = System(config).run_trace(random_flows(200, 14))
    verdicts = [o.verdict for o in result.outcomes]
    assert verdicts.count("asymmetric") > 100
    # every policy forwards a misdirected response to its owner (seed L416) when it can
    assert [o.verdict for o in forwarded.outcomes] == [
        "handed-off" if v == "asymmetric" else v for v in verdicts]
    for outcome in result.outcomes:
        if outcome.verdict == "asymmetric":
            assert outcome.response_core != outcome.request_core
            assert "forwarding is off (route none): response lost" in outcome.reason
    # The lost responses never close their sessions: the idle timeout frees the ports.
    idle = [e for e in result.events if isinstance(e, SessionClosed)
            and e.reason == "idle timeout"]
    assert len(idle) == verdicts.count("asymmetric")


def test_port_exhaustion_is_counted_then_recovers():
    config = SystemConfig(cores=2, ips_per_core=1, port_range=(40000, 40031), policy="nat")
    system = System(config)
    flows = [Flow(i, "198.51.100.7", 10000 + i, "203.0.113.9", 80, close="none")
             for i in range(40)]
    first = system.run_trace(flows, until_us=10_000)
    summary = first.summary
    assert summary.refused > 0
    assert summary.symmetric + summary.refused == 40
    assert summary.symmetric == 32  # every port of the range, each on its own core
    failed = [o for o in first.outcomes if o.verdict == "refused"]
    assert all(o.local_port == -1 and "no fitting free port" in o.reason for o in failed)
    # Each core's table holds the 32 ports; the 16 whose response lands on it are taken.
    assert summary.occupancy == [0.5, 0.5]
    # The sessions idle out; their ports come back and the refused flows now succeed.
    again = [Flow(o.flow, "198.51.100.7", 10000 + o.flow, "203.0.113.9", 80,
                  start_us=120_000_000) for o in failed]
    second = system.run_trace(again)
    freed = [e for e in second.events if isinstance(e, PortFreed)]
    assert len(freed) >= 32
    assert [o.verdict for o in second.outcomes] == ["symmetric"] * len(failed)


def test_usip_keeps_the_client_ip_and_uses_several_tables():
    config = SystemConfig(cores=4, policy="usip", tables_per_ip=64)
    result = System(config).run_trace(random_flows(200, 15, servers=3), keep_events=False)
    assert all(str(o.rewritten.src) == str(o.request.src) for o in result.outcomes)
    assert len({o.table for o in result.outcomes}) > 20


def test_trace_is_deterministic_and_json_ready():
    config = SystemConfig(cores=4, policy="transparent", jitter_us=30)
    flows = random_flows(30, 16)
    one = System(config, rng=random.Random(3)).run_trace(flows)
    two = System(config, rng=random.Random(3)).run_trace(flows)
    first = [e.as_dict() for e in one.events]
    assert first == [e.as_dict() for e in two.events]
    json.dumps(first)
    assert [e["seq"] for e in first] == list(range(len(first)))
    assert all(a["t_us"] <= b["t_us"] for a, b in zip(first, first[1:], strict=False))


def test_on_event_streams_every_event():
    seen = []
    result = System(SystemConfig()).run_trace(random_flows(5, 17), on_event=seen.append)
    assert seen == result.events


@pytest.mark.parametrize("field, value", [("policy", "masquerade"), ("handoff", "pigeon"),
                                          ("cores", 0), ("strategy", "guess")])
def test_bad_configuration_names_the_field(field, value):
    with pytest.raises(ConfigError) as error:
        System(SystemConfig(**{field: value}))
    assert error.value.field == field


def test_bad_flow_close_names_the_flow():
    with pytest.raises(ConfigError, match=r"flows\[0\]\.close"):
        System(SystemConfig()).run_trace([Flow(1, "1.2.3.4", 1, "5.6.7.8", 2, close="slam")])
