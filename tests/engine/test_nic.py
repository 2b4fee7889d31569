"""The NIC: hash types and their fallbacks, transforms, the indirection table, the distributor."""

import ipaddress

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine import (
    ConfigError,
    FlowDistributor,
    FlowTuple,
    Fragment,
    HashType,
    IndirectionTable,
    Key,
    Nic,
    Packet,
    Rule,
    TableError,
    Transform,
)
from engine.nic.distributor import rule_index, rule_index_batch
from engine.packet.toeplitz import hash_input, toeplitz_hash

FIRST_VECTOR = FlowTuple.of("66.9.149.187", "161.142.100.80", 2794, 1766)


def make_nic(**options) -> Nic:
    options.setdefault("key", Key.microsoft())
    options.setdefault("table", IndirectionTable.round_robin(4, 7))
    return Nic(**options)


def test_steering_matches_the_ui_sketch():
    steering = make_nic().steer(Packet.from_tuple(1, FIRST_VECTOR))
    assert (steering.hash, steering.bucket, steering.core) == (0x51CCC178, 120, 0)
    assert steering.hash_type is HashType.TCP_IPV4


def test_disabled_four_tuple_type_falls_back_to_the_addresses():
    nic = make_nic(hash_types=frozenset({HashType.IPV4, HashType.UDP_IPV4}))
    steering = nic.steer(Packet.from_tuple(1, FIRST_VECTOR))
    assert steering.hash_type is HashType.IPV4
    assert steering.hash == 0x323E8FC2


def test_udp_uses_its_own_type():
    udp = FlowTuple.of("66.9.149.187", "161.142.100.80", 2794, 1766, "udp")
    assert make_nic().steer(Packet.from_tuple(1, udp)).hash_type is HashType.UDP_IPV4
    only_tcp = make_nic(hash_types=frozenset({HashType.TCP_IPV4}))
    steering = only_tcp.steer(Packet.from_tuple(1, udp))
    assert steering.hash is None and steering.reason == "default core (no enabled hash type)"


def test_non_first_fragment_has_no_ports_and_uses_the_two_tuple():
    fragment = Packet(1, FIRST_VECTOR.src, FIRST_VECTOR.dst, 6, None, None,
                      fragment=Fragment(7, 1480, False))
    assert make_nic().steer(fragment).hash == 0x323E8FC2


def test_non_ip_goes_to_the_default_core():
    nic = make_nic(default_core=3)
    steering = nic.steer(Packet(1, None, None, 0, ethertype=0x0806))
    assert steering.core == 3 and steering.hash is None and "not IP" in steering.reason


def test_ipv6_vector():
    flow = FlowTuple.of("3ffe:2501:200:1fff::7", "3ffe:2501:200:3::1", 2794, 1766)
    steering = make_nic().steer(Packet.from_tuple(1, flow))
    assert steering.hash == 0x40207D3D and steering.hash_type is HashType.TCP_IPV6


tuples = st.tuples(st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1),
                   st.integers(0, 65535), st.integers(0, 65535))


@settings(max_examples=200, deadline=None)
@given(row=tuples, transform=st.sampled_from([Transform.SYMMETRIC_XOR, Transform.SORT]),
       seed=st.integers(0, 1000))
def test_symmetric_transforms_make_any_key_symmetric(row, transform, seed):
    src, dst, sport, dport = row
    nic = make_nic(key=Key.random(seed), transform=transform)
    forward = FlowTuple.of(src, dst, sport, dport)
    assert nic.steer(Packet.from_tuple(1, forward)).hash == nic.steer(
        Packet.from_tuple(2, forward.reversed())).hash


@settings(max_examples=100, deadline=None)
@given(rows=st.lists(tuples, min_size=1, max_size=30),
       transform=st.sampled_from(list(Transform)), seed=st.integers(0, 1000))
def test_batch_steering_equals_scalar_steering(rows, transform, seed):
    nic = make_nic(key=Key.random(seed), transform=transform,
                   table=IndirectionTable.round_robin(5, 6))
    src, dst, sport, dport = (np.array(c, dtype=np.uint64) for c in zip(*rows))
    hashes, buckets, cores = nic.steer_ipv4_batch(src.astype(np.uint32),
                                                  dst.astype(np.uint32), sport, dport)
    scalar = [nic.steer(Packet.from_tuple(i, FlowTuple.of(*row))) for i, row in enumerate(rows)]
    assert hashes.tolist() == [s.hash for s in scalar]
    assert buckets.tolist() == [s.bucket for s in scalar]
    assert cores.tolist() == [s.core for s in scalar]


def test_symmetric_xor_input_layout():
    nic = make_nic(transform=Transform.SYMMETRIC_XOR)
    steering = nic.steer(Packet.from_tuple(1, FlowTuple.of("1.0.0.1", "1.0.0.2", 10, 11)))
    assert steering.input.hex() == "00000003" * 2 + "0001" * 2
    assert steering.hash == toeplitz_hash(Key.microsoft(), steering.input)


def test_round_robin_table_and_editing():
    table = IndirectionTable.round_robin(3, 2)
    assert table.buckets == (0, 1, 2, 0)
    edited = table.with_bucket(3, 2)
    assert edited.buckets == (0, 1, 2, 2) and table.buckets == (0, 1, 2, 0)
    assert edited.buckets_of(2) == [2, 3]


@pytest.mark.parametrize(("build", "field"), [
    (lambda: IndirectionTable.round_robin(4, 0), "hash_bits"),
    (lambda: IndirectionTable.round_robin(4, 8), "hash_bits"),
    (lambda: IndirectionTable(2, 1, (0, 2)), "table[1]"),
    (lambda: IndirectionTable(2, 2, (0, 1)), "table"),
    (lambda: IndirectionTable.round_robin(4, 2).with_bucket(9, 0), "bucket"),
    (lambda: IndirectionTable.round_robin(0, 2), "cores"),
])
def test_table_errors_name_the_field(build, field):
    with pytest.raises(TableError) as raised:
        build()
    assert raised.value.field == field


def test_editing_a_bucket_to_a_missing_core_is_refused():
    with pytest.raises(TableError, match="core 0-3"):
        IndirectionTable.round_robin(4, 3).with_bucket(1, 4)


def test_rebalance_evens_out_a_skewed_load():
    table = IndirectionTable.round_robin(4, 4)
    load = np.ones(16)
    load[[0, 4, 8, 12]] = 10  # every heavy bucket sits on core 0
    before = np.bincount(table.as_array(), weights=load, minlength=4)
    after_table = table.rebalanced(load)
    after = np.bincount(after_table.as_array(), weights=load, minlength=4)
    assert before.max() - before.min() == 36
    assert after.max() - after.min() <= 1


def test_failed_core_buckets_move_to_the_others():
    table = IndirectionTable.round_robin(4, 3).without_cores({1})
    assert 1 not in table.buckets and len(table.buckets) == 8
    with pytest.raises(TableError):
        IndirectionTable.round_robin(2, 3).without_cores({0, 1})


def test_rss_unaware_nic_arrives_on_the_receive_core_and_the_distributor_moves_it():
    distributor = FlowDistributor(make_nic(), [Rule.for_prefix("10.0.0.0/8", 3)],
                                  rss_aware=False, receive_core=1)
    ruled = distributor.arrive(Packet.from_tuple(1, FlowTuple.of("10.0.0.1", "10.0.0.2", 1, 2)))
    assert (ruled.received_on, ruled.steering.core, ruled.moved) == (1, 3, True)
    assert ruled.steering.hash is None and "rule src in 10.0.0.0/8" in ruled.steering.reason
    hashed = distributor.arrive(Packet.from_tuple(2, FIRST_VECTOR))
    assert (hashed.received_on, hashed.steering.core) == (1, 0)
    assert hashed.steering.hash == 0x51CCC178  # the hash the NIC would have computed


def test_a_rule_on_an_rss_nic_moves_the_packet_off_the_nic_s_core():
    distributor = FlowDistributor(make_nic(), [Rule(core=2, flow=FIRST_VECTOR)])
    arrival = distributor.arrive(Packet.from_tuple(1, FIRST_VECTOR))
    assert (arrival.received_on, arrival.steering.core) == (0, 2)
    plain = distributor.arrive(Packet.from_tuple(1, FIRST_VECTOR.reversed()))
    assert not plain.moved and plain.steering.hash is not None


addresses = st.integers(0, 2**32 - 1)
prefixes = st.builds(lambda address, length, on, core: Rule.for_prefix(
    f"{ipaddress.IPv4Address(address)}/{length}", core, match_on=on),
    addresses, st.integers(0, 32), st.sampled_from(["src", "dst"]), st.integers(0, 3))


@settings(max_examples=100, deadline=None)
@given(data=st.data(), count=st.integers(1, 40))
def test_rule_matching_is_the_same_per_packet_and_over_arrays(data, count):
    """``rule_index`` and ``rule_index_batch``, and so ``arrive`` and ``arrive_batch``,
    agree row for row (rules drawn from the rows themselves, so they match)."""
    rows = data.draw(st.lists(st.tuples(addresses, addresses, st.integers(0, 65535),
                                        st.integers(0, 65535), st.sampled_from([6, 17])),
                              min_size=count, max_size=count))
    flows = [FlowTuple.of(int(s), int(d), sp, dp, p) for s, d, sp, dp, p in rows]
    exact = st.builds(lambda flow, core: Rule(core, flow=flow), st.sampled_from(flows),
                      st.integers(0, 3))
    near = st.builds(lambda flow, length, on, core: Rule.for_prefix(
        f"{flow.src if on == 'src' else flow.dst}/{length}", core, match_on=on),
        st.sampled_from(flows), st.integers(0, 32), st.sampled_from(["src", "dst"]),
        st.integers(0, 3))
    rules = tuple(data.draw(st.lists(st.one_of(exact, near, prefixes), max_size=6)))
    columns = [np.asarray(column) for column in zip(*rows, strict=True)]
    packets = [Packet.from_tuple(i, flow) for i, flow in enumerate(flows)]
    assert rule_index_batch(rules, *columns).tolist() == [rule_index(rules, p)
                                                          for p in packets]
    distributor = FlowDistributor(make_nic(), rules,
                                  rss_aware=data.draw(st.booleans()), receive_core=2)
    batch = distributor.arrive_batch(*columns)
    for row, packet in enumerate(packets):
        received_on, steering = distributor.arrive(packet)
        assert batch.received_on[row] == received_on and batch.cores[row] == steering.core
        assert bool(batch.hashed[row]) == (steering.hash is not None)
        assert distributor.reason(int(batch.rule[row]), bool(batch.hashed[row])) == (
            steering.reason)


def test_exact_rule_beats_the_hash():
    rule = Rule(core=2, flow=FIRST_VECTOR)
    distributor = FlowDistributor(make_nic(), [rule])
    assert distributor.steer(Packet.from_tuple(1, FIRST_VECTOR)).core == 2
    assert distributor.steer(Packet.from_tuple(1, FIRST_VECTOR.reversed())).hash is not None


def test_bad_rules_and_defaults_are_refused():
    with pytest.raises(ConfigError, match="rules\\[0\\].core"):
        FlowDistributor(make_nic(), [Rule(core=9, flow=FIRST_VECTOR)])
    with pytest.raises(ConfigError, match="receive_core"):
        FlowDistributor(make_nic(), rss_aware=False, receive_core=4)
    with pytest.raises(ConfigError, match="rule.match_on"):
        Rule.for_prefix("10.0.0.0/8", 1, match_on="both")
    with pytest.raises(ConfigError, match="prefix"):
        Rule.for_prefix("10.0.0.0/33", 1)
    with pytest.raises(ConfigError, match="default_core"):
        make_nic(default_core=4)


def test_hash_input_layout_is_source_destination_ports():
    data = hash_input("1.2.3.4", "5.6.7.8", 0x0102, 0x0304)
    assert data == bytes([1, 2, 3, 4, 5, 6, 7, 8, 1, 2, 3, 4])
    assert FIRST_VECTOR.reversed().src == ipaddress.ip_address("161.142.100.80")


@pytest.mark.parametrize(("make", "field"), [
    (lambda: IndirectionTable.round_robin(True, 1), "cores"),     # a bool is not a count
    (lambda: IndirectionTable.round_robin(65, 7), "cores"),       # past MAX_CORES
    (lambda: IndirectionTable(4, "7", (0,) * 128), "hash_bits"),
    (lambda: IndirectionTable(4, 1, None), "table"),
    (lambda: IndirectionTable(4, 1, (0, True)), "table[1]"),
    (lambda: IndirectionTable.round_robin(4, 1).rebalanced(5), "bucket_load"),
    (lambda: IndirectionTable.round_robin(4, 1).rebalanced([1, float("nan")]), "bucket_load"),
    (lambda: IndirectionTable.round_robin(4, 1).rebalanced(["a", "b"]), "bucket_load"),
])
def test_table_inputs_of_the_wrong_kind_are_table_errors(make, field):
    with pytest.raises(TableError) as caught:
        make()
    assert caught.value.field == field
