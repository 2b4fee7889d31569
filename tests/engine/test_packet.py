"""The packet model and its Scapy conversion."""

import ipaddress

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine import FlowTuple, Fragment, Packet, TupleError, from_scapy, to_scapy
from engine.packet.model import Proto


@settings(max_examples=100, deadline=None)
@given(src=st.ip_addresses(v=4), dst=st.ip_addresses(v=4), sport=st.integers(0, 65535),
       dport=st.integers(0, 65535), proto=st.sampled_from(["tcp", "udp"]),
       payload=st.binary(max_size=64))
def test_scapy_round_trip_ipv4(src, dst, sport, dport, proto, payload):
    packet = Packet.from_tuple(5, FlowTuple.of(src, dst, sport, dport, proto),
                               payload=payload, payload_len=len(payload))
    wire = to_scapy(packet)
    back = from_scapy(type(wire)(bytes(wire)), 5)
    assert back.tuple == packet.tuple
    assert back.payload_len == len(payload) + (20 if proto == "tcp" else 8)


@settings(max_examples=50, deadline=None)
@given(src=st.ip_addresses(v=6), dst=st.ip_addresses(v=6), sport=st.integers(0, 65535),
       dport=st.integers(0, 65535))
def test_scapy_round_trip_ipv6(src, dst, sport, dport):
    packet = Packet.from_tuple(1, FlowTuple.of(src, dst, sport, dport, "udp"), payload_len=10)
    wire = to_scapy(packet)
    assert from_scapy(type(wire)(bytes(wire)), 1).tuple == packet.tuple


def test_fragment_fields_survive_scapy():
    packet = Packet(3, ipaddress.ip_address("10.0.0.1"), ipaddress.ip_address("10.0.0.2"),
                    Proto.UDP, None, None, payload_len=16, fragment=Fragment(99, 1480, True))
    wire = to_scapy(packet)
    back = from_scapy(type(wire)(bytes(wire)), 3)
    assert back.fragment == Fragment(99, 1480, True) and back.sport is None


def test_flow_tuple_text_and_reverse():
    flow = FlowTuple.of("2001:db8::1", "2001:db8::2", 1, 2, "udp")
    assert str(flow) == "udp [2001:db8::1]:1 -> [2001:db8::2]:2"
    assert flow.reversed().reversed() == flow


@pytest.mark.parametrize(("args", "field"), [
    (("10.0.0.1", "10.0.0.2", 1, 2, "sctpx"), "proto"),
    (("10.0.0.1", "10.0.0.2", 1, 2, 300), "proto"),
    (("10.0.0.1", "2001:db8::1", 1, 2), "dst"),
    (("10.0.0.1", "10.0.0.2", True, 2), "sport"),
])
def test_bad_flow_fields(args, field):
    with pytest.raises(TupleError) as raised:
        FlowTuple.of(*args)
    assert raised.value.field == field
