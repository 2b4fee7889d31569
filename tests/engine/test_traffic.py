"""Traffic generation: deterministic, within its bounds, unique tuples, Zipf heavy hitters,
adversarial floods that really hash to one bucket, and the record/array seams."""

from __future__ import annotations

import ipaddress

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.errors import TrafficError
from engine.examples import load_example
from engine.nic.rss import IndirectionTable, Nic, Transform
from engine.packet.model import Proto
from engine.packet.toeplitz import MICROSOFT_KEY_HEX, Key
from engine.paths.flows import FlowArrays, FlowSpec
from engine.scenarios.traffic import (
    Target,
    adversarial_flows,
    build_flow_arrays,
    build_flow_specs,
    generate_flows,
    zipf_weights,
)

TARGETS = [Target(int(ipaddress.IPv4Address("192.0.2.1")) + i, 80 + i, Proto.TCP, 500 + i)
           for i in range(5)]


def tuples(arrays: FlowArrays) -> np.ndarray:
    return np.stack([arrays.client_ip.astype(np.uint64), arrays.client_port,
                     arrays.server_ip, arrays.server_port, arrays.proto], axis=1)


def test_generation_is_deterministic_per_seed():
    one = generate_flows(count=5000, targets=TARGETS, client_prefixes=["198.51.100.0/24"],
                         zipf=1.0, seed=3)
    two = generate_flows(count=5000, targets=TARGETS, client_prefixes=["198.51.100.0/24"],
                         zipf=1.0, seed=3)
    other = generate_flows(count=5000, targets=TARGETS, client_prefixes=["198.51.100.0/24"],
                           zipf=1.0, seed=4)
    assert np.array_equal(tuples(one), tuples(two))
    assert not np.array_equal(tuples(one), tuples(other))


@settings(max_examples=40, deadline=None)
@given(count=st.integers(1, 3000), zipf=st.sampled_from([0.0, 0.8, 1.5]),
       low=st.integers(1024, 60000), seed=st.integers(0, 2**32))
def test_generated_flows_stay_in_bounds_and_never_repeat_a_tuple(count, zipf, low, seed):
    high = min(65535, low + 5000)
    arrays = generate_flows(count=count, targets=TARGETS,
                            client_prefixes=["198.51.100.0/24", "10.0.0.0/30"],
                            client_ports=(low, high), zipf=zipf, heavy_clients=50,
                            request_bytes=77, seed=seed)
    assert len(arrays) == count
    in_prefix = [ipaddress.IPv4Address(int(ip)) in ipaddress.IPv4Network("198.51.100.0/24")
                 or ipaddress.IPv4Address(int(ip)) in ipaddress.IPv4Network("10.0.0.0/30")
                 for ip in arrays.client_ip[:200]]
    assert all(in_prefix)
    assert arrays.client_port.min() >= low and arrays.client_port.max() <= high
    assert np.unique(tuples(arrays), axis=0).shape[0] == count
    target_of = {t.ip: t for t in TARGETS}
    for row in range(min(count, 100)):
        target = target_of[int(arrays.server_ip[row])]
        assert arrays.server_port[row] == target.port
        assert arrays.response_bytes[row] == target.response_bytes
    assert (arrays.request_bytes == 77).all()


def test_zipf_makes_heavy_hitters():
    arrays = generate_flows(count=100_000, targets=TARGETS, client_prefixes=["10.0.0.0/16"],
                            zipf=1.2, heavy_clients=1000, seed=1)
    _, client_counts = np.unique(arrays.client_ip, return_counts=True)
    assert client_counts.max() / len(arrays) > 0.1        # uniform would be ~0.001
    share = np.bincount(arrays.server_ip - TARGETS[0].ip) / len(arrays)
    assert share[0] == pytest.approx(zipf_weights(5, 1.2)[0], abs=0.01)
    uniform = generate_flows(count=100_000, targets=TARGETS, client_prefixes=["10.0.0.0/16"],
                             seed=1)
    assert np.unique(uniform.client_ip, return_counts=True)[1].max() < 20


def test_proto_mix_and_size_ranges():
    class Size:
        low, high = 10, 20
    arrays = generate_flows(count=20_000, targets=TARGETS, client_prefixes=["10.0.0.0/16"],
                            proto_weights={6: 3, 17: 1}, request_bytes=Size,
                            response_bytes=Size, seed=2)
    assert (arrays.proto == 17).mean() == pytest.approx(0.25, abs=0.02)
    assert arrays.request_bytes.min() == 10 and arrays.request_bytes.max() == 20


def test_more_flows_than_unique_ports_is_a_clear_error():
    with pytest.raises(TrafficError, match="at most 11 flows per client"):
        generate_flows(count=100, targets=TARGETS[:1], client_prefixes=["10.0.0.1/32"],
                       client_ports=(1000, 1010), seed=0)


@pytest.mark.parametrize("transform", [Transform.NONE, Transform.SYMMETRIC_XOR, Transform.SORT])
@pytest.mark.parametrize("key", [Key.microsoft(), Key.symmetric(), Key.random(5)])
def test_adversarial_flows_all_hash_to_the_bucket(transform, key):
    nic = Nic(key, IndirectionTable.round_robin(8, 7), transform=transform)
    if key.name == "symmetric" and transform is Transform.SYMMETRIC_XOR:
        # Both make the input symmetric: together every word cancels, the hash is 0.
        with pytest.raises(TrafficError, match="reachable"):
            adversarial_flows(count=10, bucket=77, nic=nic, target=TARGETS[0],
                              client_prefix="203.0.113.0/24", seed=1)
        return
    arrays = adversarial_flows(count=3000, bucket=77, nic=nic, target=TARGETS[0],
                               client_prefix="203.0.113.0/24", seed=1)
    _, buckets, cores = nic.steer_ipv4_batch(arrays.client_ip, arrays.server_ip,
                                             arrays.client_port, arrays.server_port)
    assert (buckets == 77).all() and (cores == 77 % 8).all()
    assert np.unique(tuples(arrays), axis=0).shape[0] == 3000
    assert (arrays.server_ip == TARGETS[0].ip).all()


def test_an_unreachable_bucket_is_reported():
    # A key whose bits under the client port are zero: the port cannot move the hash, so
    # one client address and one server reach exactly one bucket.
    data = bytearray(bytes.fromhex(MICROSOFT_KEY_HEX))
    data[8:14] = bytes(6)
    nic = Nic(Key(bytes(data)), IndirectionTable.round_robin(4, 7))
    client = int(ipaddress.IPv4Address("203.0.113.5"))
    reachable = int(nic.steer_ipv4_batch([client], [TARGETS[0].ip], [1], [TARGETS[0].port])[1][0])
    with pytest.raises(TrafficError, match="reachable"):
        adversarial_flows(count=10, bucket=(reachable + 1) % 128, nic=nic, target=TARGETS[0],
                          client_prefix="203.0.113.5/32", seed=0)
    ok = adversarial_flows(count=10, bucket=reachable, nic=nic, target=TARGETS[0],
                           client_prefix="203.0.113.5/32", seed=0)
    assert len(ok) == 10


def test_specs_and_arrays_round_trip():
    arrays = generate_flows(count=50, targets=TARGETS, client_prefixes=["10.0.0.0/24"], seed=9)
    specs = arrays.to_specs(first_id=100)
    assert [s.id for s in specs] == list(range(100, 150))
    back = FlowArrays.from_specs(specs)
    assert np.array_equal(tuples(back), tuples(arrays))
    assert np.array_equal(back.response_bytes, arrays.response_bytes)
    six = FlowSpec(0, ipaddress.ip_address("2001:db8::1"), 1, ipaddress.ip_address("::1"), 2)
    assert FlowArrays.from_specs([six]).to_specs() == [six]  # IPv6 rows too
    mixed = FlowSpec(3, ipaddress.ip_address("2001:db8::1"), 1,
                     ipaddress.ip_address("192.0.2.1"), 2)
    with pytest.raises(TrafficError, match=r"flows\[3\].*one IP version"):
        FlowArrays.from_specs([mixed])
    flow = specs[0].to_flow()
    assert (flow.client_ip, flow.client_port, flow.server_port) == (
        str(specs[0].client_ip), specs[0].client_port, specs[0].server_port)


def test_scenario_traffic_as_arrays_and_records_agree():
    scenario = load_example("heavy-hitters")
    arrays = build_flow_arrays(scenario)
    assert len(arrays) == 20_000
    specs = build_flow_specs(scenario, limit=300)
    assert len(specs) == 300
    assert specs == arrays.to_specs(limit=300)
    assert np.array_equal(tuples(build_flow_arrays(scenario)), tuples(arrays))  # seeded
    replay = build_flow_specs(load_example("pcap-replay"))
    assert [(str(s.client_ip), s.client_port) for s in replay] == [
        ("198.51.100.7", 40001), ("198.51.100.7", 40002), ("203.0.113.9", 51000),
        ("203.0.113.9", 51001)]
    assert {(s.request_bytes, s.response_bytes) for s in replay} == {(120, 900)}


def test_explicit_flows_may_be_ipv6_records():
    from engine.scenarios.scenario import load_scenario
    scenario = load_scenario("""
schema_version: 1
name: six
system: {cores: 2}
services:
  - {name: v6, vip: "2001:db8::10", vport: 443, policy: transparent,
     servers: ["[2001:db8::20]:443"]}
  - {name: v4, vip: 192.0.2.1, vport: 53, proto: udp, policy: nat, servers: ["10.0.0.1:53"],
     response_bytes: 333}
traffic:
  - flows:
      - {client: "[2001:db8::1]:5000", service: v6, request_bytes: 10}
      - {client: "198.51.100.1:5001", service: v4}
""")
    specs = build_flow_specs(scenario)
    assert specs[0].client_ip == ipaddress.ip_address("2001:db8::1")
    assert (specs[1].proto, specs[1].response_bytes) == (Proto.UDP, 333)
    arrays = build_flow_arrays(scenario)  # the batch path carries IPv6 rows too
    assert arrays.is_v6.tolist() == [True, False]
    assert arrays.to_specs() == specs
