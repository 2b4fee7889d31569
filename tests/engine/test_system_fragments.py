"""Fragments through the multi-core system: both execution paths, flow for flow."""

from __future__ import annotations

import ipaddress
import random

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.appliance.config import Flow, Server, Service, SystemConfig
from engine.appliance.events import FRAGMENT_EVENT_KINDS
from engine.appliance.fragments import FragmentMode, fragment_outcome, fragment_packet
from engine.appliance.rules import fragment_count
from engine.errors import ConfigError
from engine.nic.rss import Nic
from engine.packet.model import FlowTuple, Packet, Proto
from engine.paths.batch import (
    flow_arrays,
    flow_request_mtus,
    flows_from_arrays,
    plan_fragments,
    random_flow_arrays,
    run_batch,
)
from engine.paths.trace import System

DNS = "203.0.113.10"


def nat_udp_config(mode: str, **extra) -> SystemConfig:
    """nat, 4 cores, a DNS-like server whose 100-byte answers leave in 3 fragments."""
    return SystemConfig(cores=4, policy="nat", fragment_mode=mode,
                        servers=(Server(DNS, 53, response_bytes=100, mtu=68),), **extra)


def udp_flows(count: int, **extra) -> list[Flow]:
    return [Flow(i, f"198.51.100.{7 + 13 * i}", 40000 + 17 * i, DNS, 53, proto="udp",
                 request_bytes=40, **extra) for i in range(count)]


def both_paths(config: SystemConfig, flows: list[Flow], rng_seed: int = 0):
    trace = System(config, rng=random.Random(rng_seed)).run_trace(flows)
    arrays, ids = flow_arrays(flows)
    batch = run_batch(config, arrays, ids=ids, request_mtu=flow_request_mtus(flows))
    return trace, batch


def assert_agree(trace, batch) -> None:
    assert [o.key() for o in trace.outcomes] == [o.key() for o in batch.outcomes()]
    assert batch.row_dicts() == [o.as_dict() for o in trace.outcomes]
    for name in ("core_load", "distinct_hashes", "handoff_copies", "symmetric", "asymmetric",
                 "handed_off", "fragments_dropped", "fragmented", "assembled", "bridged",
                 "fragment_messages", "fragment_copies"):
        assert getattr(trace.summary, name) == getattr(batch.summary, name), name


# ---------------------------------------------------------------- must show


def test_nat_udp_response_of_3_fragments_returns_to_the_request_core():
    flows = udp_flows(8)
    trace, batch = both_paths(nat_udp_config("reassemble-header"), flows)
    assert_agree(trace, batch)
    for outcome in trace.outcomes:
        assert outcome.fragments == 3 and outcome.request_fragments == 0
        assert outcome.verdict == "symmetric"
        assert outcome.response_core == outcome.request_core
        assert "response in 3 fragments held on core" in outcome.reason
        assert "(reassemble-header), the connection's owner -> core" in outcome.reason
    assert trace.summary.fragmented == 8 and trace.summary.symmetric_rate == 1.0
    kinds = {e.kind for e in trace.events}
    assert {"fragment-steered", "fragment-held", "header-found", "action-decided",
            "reassembled"} <= kinds
    assert kinds <= {*FRAGMENT_EVENT_KINDS, "packet-arrived", "hashed", "steered",
                     "port-allocated", "rewritten", "delivered-to-server", "response-sent",
                     "response-arrived", "verdict", "session-closed", "port-freed"}


def test_ms_2tuple_shows_where_the_response_lands_and_why():
    flows = udp_flows(8)
    trace, batch = both_paths(nat_udp_config("ms-2tuple"), flows)
    assert_agree(trace, batch)
    nic = nat_udp_config("ms-2tuple").build_nic()
    lost = [o for o in trace.outcomes if o.verdict == "handed-off"]
    assert lost  # the 2-tuple hash ignores the port nat chose for symmetry: forwarded
    for outcome in trace.outcomes:
        rewritten = outcome.rewritten
        two_core = nic.steer(Packet(0, rewritten.dst, rewritten.src, Proto.UDP)).core
        assert outcome.response_core == two_core
        assert outcome.fragment_action is None and outcome.fragments == 3
        assert outcome.reason.startswith(
            f"response in 3 fragments hashed on the addresses only (ms-2tuple) -> core "
            f"{two_core}")
    for outcome in lost:
        assert outcome.response_core != outcome.request_core and outcome.copies == 1
        assert (f"response landed on core {outcome.response_core}, owner is core "
                f"{outcome.request_core}: moved by message (1 copy)") in outcome.reason
    for outcome in trace.outcomes:
        if outcome.verdict == "symmetric":
            assert "by the hash of its addresses alone" in outcome.reason


@pytest.mark.parametrize("mode", ["reassemble-header", "default-core"])
def test_a_transparent_flows_fragments_go_to_their_owner_without_a_forward(mode):
    """The core holding a response's fragments directs them to the core that established
    the connection (seed L64, L702), not to where their 4-tuple hashes: a transparent
    response whose 4-tuple hashes elsewhere is processed on its owner, never handed
    back, and no fragment moves when they were held on the owner already."""
    config = SystemConfig(cores=4, policy="transparent", fragment_mode=mode,
                          servers=(Server(DNS, 53, response_bytes=300, mtu=68),))
    flows = udp_flows(19)
    trace, batch = both_paths(config, flows)
    assert_agree(trace, batch)
    nic = config.build_nic()
    elsewhere = 0
    for flow, outcome in zip(flows, trace.outcomes, strict=True):
        response = flow.request_tuple().reversed()
        four = nic.steer(Packet(0, response.src, response.dst, Proto.UDP, response.sport,
                                response.dport)).core
        elsewhere += four != outcome.request_core
        assert outcome.verdict == "symmetric" and outcome.copies == 0
        assert outcome.response_core == outcome.request_core
        assert "the connection's owner -> core" in outcome.reason
    assert elsewhere > 0  # some would have gone to another core, then been handed back
    assert trace.summary.handed_off == 0 and trace.summary.handoff_copies == 0


def test_ms_2tuple_transparent_hands_the_fragmented_response_over():
    config = SystemConfig(cores=4, policy="transparent", fragment_mode="ms-2tuple",
                          servers=(Server(DNS, 53, response_bytes=100, mtu=68),))
    trace, batch = both_paths(config, udp_flows(12))
    assert_agree(trace, batch)
    handed = [o for o in trace.outcomes if o.verdict == "handed-off"]
    assert handed and all("moved by message" in o.reason and "(ms-2tuple)" in o.reason
                          for o in handed)


def test_tcp_with_the_assemble_flag_is_assembled_and_plain_udp_bridged():
    services = (Service("198.18.0.1", 443, "tcp", "nat", (("203.0.113.20", 8443),),
                        assemble_flag=True, mtu=576),)
    config = SystemConfig(cores=4, policy="nat", services=services,
                          servers=(Server(DNS, 53, response_bytes=100, mtu=68),))
    flows = [Flow(1, "198.51.100.7", 40000, "198.18.0.1", 443, response_bytes=2000),
             Flow(2, "198.51.100.8", 40001, DNS, 53, proto="udp")]
    trace, batch = both_paths(config, flows)
    assert_agree(trace, batch)
    tcp, udp = trace.outcomes
    assert tcp.fragments == 4 and tcp.fragment_action == "assemble"
    assert tcp.fragment_rule == "TCP: NAT PCB with the assemble flag -> Assemble"
    assert udp.fragments == 3 and udp.fragment_action == "bridge"
    assert udp.fragment_rule.startswith("UDP: no NAT PCB with the assemble flag")
    assert {tcp.verdict, udp.verdict} == {"symmetric"}
    rows = [o.as_dict() for o in batch.outcomes()]
    assert [r["fragment_action"] for r in rows] == ["assemble", "bridge"]
    assert "assemble" in tcp.reason and "bridge" in udp.reason
    assert trace.summary.assembled == 1 and trace.summary.bridged == 1


def test_rules_read_the_session_facts():
    # TCP through no service, translated by the default nat policy: RNAT -> Assemble;
    # transparent TCP: the response hits the session's PCB -> Assemble; forced wins.
    server = (Server(DNS, 80, response_bytes=1000, mtu=576),)
    flow = [Flow(1, "198.51.100.7", 40000, DNS, 80)]
    nat = both_paths(SystemConfig(cores=4, servers=server), flow)[0].outcomes[0]
    assert nat.fragment_rule == "TCP: RNAT traffic -> Assemble"
    transparent = both_paths(SystemConfig(cores=4, policy="transparent", servers=server),
                             flow)[0].outcomes[0]
    assert transparent.fragment_rule == "TCP: the traffic hits a PCB -> Assemble"
    forced, batch = both_paths(SystemConfig(cores=4, servers=server, fragment_action="bridge"),
                               flow)
    assert_agree(forced, batch)
    assert forced.outcomes[0].fragment_action == "bridge"
    assert "forced" in forced.outcomes[0].fragment_rule


@pytest.mark.parametrize("order, duplicates", [("reverse", 0), ("random", 2), ("in", 3)])
def test_out_of_order_and_duplicated_fragments_give_the_same_verdict(order, duplicates):
    config = nat_udp_config("reassemble-header")
    plain = System(config).run_trace(udp_flows(6))
    shaken = System(config, rng=random.Random(5)).run_trace(
        udp_flows(6, fragment_order=order, fragment_duplicates=duplicates, request_mtu=68))
    assert [(o.verdict, o.response_core, o.fragments) for o in shaken.outcomes] == [
        (o.verdict, o.response_core, o.fragments) for o in plain.outcomes]
    arrivals = [e for e in shaken.events if e.kind == "packet-arrived"
                and e.direction == "response"]
    assert len(arrivals) == 6 * (3 + duplicates)
    if duplicates:
        assert shaken.summary.fragment_drops.get("duplicate", 0) > 0 or any(
            e.kind == "fragment-held" for e in shaken.events)
    assert [e.seq for e in shaken.events] == list(range(len(shaken.events)))
    assert all(a.t_us <= b.t_us for a, b in zip(shaken.events, shaken.events[1:],
                                                strict=False))


def test_a_fragmented_request_is_steered_like_its_mode_says():
    config = SystemConfig(cores=4, policy="transparent", fragment_mode="ms-2tuple")
    flows = [Flow(i, f"198.51.100.{i + 1}", 40000 + i, DNS, 80, request_bytes=300,
                  request_mtu=120) for i in range(10)]
    trace, batch = both_paths(config, flows)
    assert_agree(trace, batch)
    nic = config.build_nic()
    for flow, outcome in zip(flows, trace.outcomes, strict=True):
        request = flow.request_tuple()
        assert outcome.request_fragments == 4  # 20 + 300 bytes, 96 per fragment
        assert outcome.request_core == nic.steer(Packet(0, request.src, request.dst)).core
        assert outcome.reason.startswith("request in 4 fragments hashed on the addresses")


def test_reassembly_limits_drop_the_datagram_on_both_paths():
    config = nat_udp_config("reassemble-header", fragment_max_per_datagram=2)
    trace, batch = both_paths(config, udp_flows(4, fragment_order="random"), rng_seed=3)
    assert_agree(trace, batch)
    # lost in reassembly: asymmetric, with the reason
    assert {o.verdict for o in trace.outcomes} == {"asymmetric"}
    assert all(o.response_core is None and "(too-many-fragments)" in o.reason
               and o.reason.endswith("lost") for o in trace.outcomes)
    assert trace.summary.fragments_dropped == batch.summary.fragments_dropped == 4
    assert trace.summary.asymmetric == 4
    assert trace.summary.fragment_drops["too-many-fragments"] == 4
    assert batch.summary.fragment_drops == {"too-many-fragments": 4}
    request = SystemConfig(cores=4, fragment_max_per_datagram=2, fragment_max_fragments=2)
    trace, batch = both_paths(request, [Flow(1, "198.51.100.7", 4000, DNS, 80,
                                             request_bytes=500, request_mtu=100)])
    assert_agree(trace, batch)
    assert trace.outcomes[0].verdict == "asymmetric"
    assert trace.outcomes[0].rewritten is None
    assert trace.summary.fragments_dropped == batch.summary.fragments_dropped == 1


@pytest.mark.parametrize("field, value", [
    ("fragment_mode", "scatter"), ("default_fragment_core", 9), ("fragment_action", "melt"),
    ("fragment_max_per_datagram", 0), ("fragment_max_bytes", 1000)])
def test_bad_fragment_settings_name_the_field(field, value):
    with pytest.raises(ConfigError) as error:
        System(SystemConfig(**{field: value}))
    assert error.value.field == field


def test_bad_mtus_name_the_field():
    with pytest.raises(ConfigError) as error:
        System(SystemConfig(servers=(Server(DNS, 53, mtu=20),)))
    assert error.value.field == "servers[0].mtu"
    with pytest.raises(ConfigError) as error:
        System(SystemConfig()).run_trace([Flow(1, "1.2.3.4", 1, DNS, 2, request_mtu=10)])
    assert error.value.field == "flows[0].request_mtu"
    with pytest.raises(ConfigError, match="fragment_order"):
        System(SystemConfig()).run_trace([Flow(1, "1.2.3.4", 1, DNS, 2,
                                               fragment_order="sideways")])


# ---------------------------------------------------------------- the pieces agree


@settings(max_examples=40, deadline=None)
@given(st.sampled_from([Proto.TCP, Proto.UDP, Proto.ICMP]), st.integers(0, 3000),
       st.integers(68, 1600), st.booleans())
def test_fragment_count_matches_fragment_packet(proto, size, mtu, v6):
    src, dst = ("2001:db8::1", "2001:db8::2") if v6 else ("192.0.2.1", "192.0.2.2")
    if v6 and mtu < 56:
        return
    flow = FlowTuple.of(src, dst, 1000, 2000, proto)
    pieces = fragment_packet(Packet.from_tuple(1, flow, payload_len=size,
                                               ethertype=0x86DD if v6 else 0x0800), mtu)
    count = fragment_count(flow.version, proto, size, mtu)
    assert count == (0 if len(pieces) == 1 else len(pieces))


@settings(max_examples=30, deadline=None)
@given(st.sampled_from(list(FragmentMode)), st.integers(0, 2**32 - 1),
       st.sampled_from(["microsoft", "symmetric", "random:3"]))
def test_vectorised_plan_equals_fragment_outcome(mode, seed, key):
    config = SystemConfig(cores=4, key=key, fragment_mode=mode.value,
                          default_fragment_core=1)
    nic: Nic = config.build_nic()
    arrays = random_flow_arrays(20, np.random.default_rng(seed))
    arrays.proto[::2] = Proto.UDP
    src, dst = arrays.client_ip, arrays.server_ip
    sport, dport = arrays.client_port.astype(np.uint32), arrays.server_port.astype(np.uint32)
    four_hash, four_hashed, four_core = nic.steer_batch(src, dst, sport, dport, arrays.proto)
    counts = np.full(20, 3, np.int64)
    plans = plan_fragments(config, nic, src=src, dst=dst, four_hash=four_hash,
                           four_hashed=four_hashed, four_core=four_core, counts=counts,
                           proto=arrays.proto, policy=np.zeros(20, np.int8),
                           service=np.full(20, -1, np.int64), response=False, rules={})
    for row in range(20):
        flow = FlowTuple(ipaddress.IPv4Address(int(src[row])),
                         ipaddress.IPv4Address(int(dst[row])), int(sport[row]),
                         int(dport[row]), int(arrays.proto[row]))
        action = "assemble" if plans.action[row] == 0 else "bridge"
        plan = fragment_outcome(nic, flow, mode, fragments=3, action=action,
                                default_fragment_core=1)
        assert (int(plans.received_on[row]), int(plans.core[row])) == (plan.received_on,
                                                                       plan.core)
        assert int(plans.hash[row]) == (plan.hash or 0)
        assert int(plans.messages[row]) == plan.action_messages
        assert int(plans.copies[row]) == plan.packet_transfers + plan.fragment_copies


# ---------------------------------------------------------------- property: both paths


@st.composite
def fragmented_setups(draw):
    policy = draw(st.sampled_from(["nat", "usip", "transparent"]))
    cores = draw(st.integers(1, 8))
    mode = draw(st.sampled_from([m.value for m in FragmentMode]))
    mtus = [None, 68, 120, 576, 1500]
    servers = tuple(Server(f"203.0.113.{1 + i}", 80, mtu=draw(st.sampled_from(mtus)),
                           response_bytes=draw(st.sampled_from([None, 100, 700])))
                    for i in range(3))
    services = ()
    if draw(st.booleans()):
        services = (Service("198.18.0.1", 80, draw(st.sampled_from(["tcp", "udp"])),
                            draw(st.sampled_from(["nat", "usip", "transparent"])),
                            (("203.0.113.2", 80),), assemble_flag=draw(st.booleans()),
                            mtu=draw(st.sampled_from(mtus))),)
    config = SystemConfig(
        cores=cores, hash_bits=draw(st.integers(1, 7)), policy=policy,
        key=draw(st.sampled_from(["microsoft", "symmetric", "random:7"])),
        handoff=draw(st.sampled_from(["message", "shared-buffer", "none"])),
        fragment_mode=mode, default_fragment_core=draw(st.integers(0, cores - 1)),
        fragment_action=draw(st.sampled_from([None, None, "assemble", "bridge"])),
        fragment_max_per_datagram=draw(st.sampled_from([64, 64, 8])),
        tables_per_ip=draw(st.sampled_from([1, 4])), servers=servers, services=services)
    count = draw(st.integers(1, 30))
    seed = draw(st.integers(0, 2**32 - 1))
    return config, count, seed, draw(st.sampled_from(["in", "reverse", "random"])), draw(
        st.integers(0, 2))


@settings(max_examples=40, deadline=None)
@given(fragmented_setups())
def test_trace_equals_batch_on_fragmented_traffic(setup):
    config, count, seed, order, duplicates = setup
    rng = np.random.default_rng(seed)
    arrays = random_flow_arrays(count, rng, servers=3, server_base="203.0.113.1")
    arrays.proto[:] = rng.choice([Proto.TCP, Proto.UDP], count)
    arrays.response_bytes[:] = rng.choice([50, 300, 1200, 3000], count)
    arrays.request_bytes[:] = rng.choice([20, 200, 900], count)
    if config.services:
        pick = rng.random(count) < 0.4
        arrays.server_ip[pick] = int(ipaddress.IPv4Address("198.18.0.1"))
    request_mtu = rng.choice([0, 0, 68, 300, 576], count)
    flows = [Flow(f.id, f.client_ip, f.client_port, f.server_ip, f.server_port, f.proto,
                  f.request_bytes, f.response_bytes, f.close, request_mtu=f.request_mtu,
                  fragment_order=order, fragment_duplicates=duplicates)
             for f in flows_from_arrays(arrays, request_mtu=request_mtu)]
    trace = System(config, rng=random.Random(seed)).run_trace(flows, keep_events=False)
    batch = run_batch(config, arrays, request_mtu=request_mtu)
    assert_agree(trace, batch)
