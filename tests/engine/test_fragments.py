"""Fragments: reassembly against Scapy, steering modes, Assemble/Bridge, limits, real pcaps."""

from __future__ import annotations

import glob
import ipaddress
import random
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers import l2, ppp  # noqa: F401  (register VLAN and the PPP link type)
from scapy.layers.inet import IP, defragment
from scapy.layers.inet6 import IPv6, defragment6
from scapy.utils import rdpcap

from engine.appliance.fragments import (
    ASSEMBLE,
    BRIDGE,
    FragmentMode,
    FragmentSteerer,
    Reassembler,
    ReassemblyLimits,
    SessionFacts,
    check_fragment,
    decide_action,
    fragment_outcome,
    fragment_packet,
    l4_bytes,
)
from engine.errors import ConfigError, FragmentError
from engine.nic.rss import IndirectionTable, Nic
from engine.packet.model import FlowTuple, Fragment, Packet, Proto, from_scapy, to_scapy
from engine.packet.toeplitz import Key

PCAPS = "/work/shared/pcaps"


def microsoft_nic(cores: int = 4) -> Nic:
    return Nic(key=Key.microsoft(), table=IndirectionTable.round_robin(cores, 7))


def udp_response() -> Packet:
    """A DNS-like UDP response whose 2-tuple core (1) and 4-tuple core (2) differ."""
    flow = FlowTuple.of("10.0.0.2", "10.0.0.1", 53, 40000, "udp")
    return Packet.from_tuple(7, flow, payload=bytes(range(100)))


def frag(offset: int, data: bytes, more: bool, *, ident: int = 1, id: int = 1) -> Packet:
    return Packet(id, ipaddress.ip_address("192.0.2.1"), ipaddress.ip_address("192.0.2.2"),
                  Proto.UDP, payload_len=len(data), fragment=Fragment(ident, offset, more),
                  payload=data)


def reassemble(pieces, reassembler=None, now_us=0):
    reassembler = reassembler or Reassembler()
    results = [reassembler.add(piece, now_us) for piece in pieces]
    done = [r.datagram for r in results if r.status == "complete"]
    return done, results, reassembler


# ---------------------------------------------------------------- byte-exact reassembly


@st.composite
def packets(draw):
    v6 = draw(st.booleans())
    proto = draw(st.sampled_from([Proto.TCP, Proto.UDP, Proto.ICMP]))
    src = ipaddress.ip_address(draw(st.integers(1, 2**(128 if v6 else 32) - 1)))
    dst = ipaddress.ip_address(draw(st.integers(1, 2**(128 if v6 else 32) - 1)))
    if v6:
        src, dst = (ipaddress.IPv6Address(int(a)) for a in (src, dst))
    else:
        src, dst = (ipaddress.IPv4Address(int(a)) for a in (src, dst))
    ports = (draw(st.integers(0, 65535)), draw(st.integers(0, 65535)))
    if proto == Proto.ICMP:
        ports = (None, None)
    payload = draw(st.binary(min_size=1, max_size=700))
    return Packet(draw(st.integers(0, 2**16 - 1)), src, dst, proto, *ports,
                  payload_len=len(payload), payload=payload,
                  ethertype=0x86DD if v6 else 0x0800)


@settings(max_examples=60, deadline=None)
@given(packets(), st.integers(0, 2**30), st.integers(0, 3), st.data())
def test_random_fragmentations_reassemble_to_the_original_bytes(packet, seed, dups, data):
    header = 20 if packet.version == 4 else 48
    mtu = data.draw(st.integers(header + 8, header + 400), label="mtu")
    rng = random.Random(seed)
    original = l4_bytes(packet)
    in_order = fragment_packet(packet, mtu)
    if len(in_order) == 1:
        return
    shuffled = fragment_packet(packet, mtu, order="random", duplicates=dups, rng=rng)
    done, results, reassembler = reassemble(shuffled)
    assert done and all(datagram.data == original for datagram in done)
    # A duplicate arriving after its datagram completed starts a new one (held until its
    # timeout, as in Linux); enough late duplicates complete it again, byte for byte the
    # same. Duplicates ignored, leftovers held and re-completions account for all of them.
    recompleted = sum(datagram.fragments for datagram in done[1:])
    assert reassembler.stats.duplicates + reassembler.fragments_held + recompleted == dups
    assert reassembler.datagrams_held <= 1
    assert (done[0].packet.sport, done[0].packet.dport) == (packet.sport, packet.dport)
    assert done[0].packet.fragment is None
    if packet.proto != Proto.ICMP:
        assert done[0].packet.payload == packet.payload
    # Scapy's own reassembly of the same fragments, correctly ordered, built as bytes.
    if packet.version == 4:
        wire = [IP(bytes(to_scapy(piece))) for piece in in_order]
        scapy_data = bytes(IP(bytes(defragment(wire)[0])).payload)
    else:
        wire = [IPv6(bytes(to_scapy(piece))) for piece in in_order]
        scapy_data = bytes(IPv6(bytes(defragment6(wire))).payload)
    assert scapy_data == original
    # And ours reads Scapy's fragments back (to_scapy -> bytes -> from_scapy) in reverse.
    back = [from_scapy(IP(bytes(to_scapy(p))) if packet.version == 4
                       else IPv6(bytes(to_scapy(p))), p.id) for p in reversed(in_order)]
    assert reassemble(back)[0][0].data == original


def test_last_fragment_first_and_duplicates():
    pieces = fragment_packet(udp_response(), 68, order="reverse")
    assert not pieces[0].fragment.more
    done, results, reassembler = reassemble([pieces[0], pieces[0], *pieces[1:]])
    assert [r.status for r in results] == ["held", "duplicate", "held", "complete"]
    assert len(done) == 1 and done[0].packet.payload == bytes(range(100))
    assert reassembler.stats.duplicates == 1
    assert reassembler.stats.drops_by_reason["duplicate"] == 1


# ---------------------------------------------------------------- bad input, overlaps


@pytest.mark.parametrize("piece, reason, field", [
    (frag(65528, bytes(16), False), "past-65535", "fragment.offset"),
    (frag(8, b"", True), "zero-length", "fragment.length"),
    (frag(8, bytes(12), True), "not-multiple-of-8", "fragment.length"),
    (frag(0, bytes(8), False), "not-a-fragment", "fragment"),
    (frag(4, bytes(8), True), "bad-offset", "fragment.offset"),
])
def test_bad_fragments_raise_naming_the_problem(piece, reason, field):
    with pytest.raises(FragmentError) as caught:
        check_fragment(piece)
    assert caught.value.reason == reason and caught.value.field == field
    assert caught.value.as_dict()["reason"] == reason
    # Not strict: the same fragment is dropped with that reason, never raised.
    result = Reassembler().add(piece, 0)
    assert result.status == "dropped" and result.drops[-1].reason == reason
    with pytest.raises(FragmentError):
        Reassembler(strict=True).add(piece, 0)


@pytest.mark.parametrize("pieces, reason", [
    ([frag(8, bytes(8), False), frag(16, bytes(8), False), frag(0, bytes(8), True)],
     "two-last-fragments"),
    ([frag(0, bytes(8), True), frag(16, bytes(8), False), frag(24, bytes(8), True)],
     "beyond-end"),
    ([frag(0, bytes(8), True), frag(32, bytes(8), True), frag(16, bytes(8), False)],
     "beyond-end"),
])
def test_inconsistent_more_fragments_are_rejected(pieces, reason):
    done, results, reassembler = reassemble(pieces)
    dropped = next(r for r in results if r.status == "dropped")
    assert not done and results[-1].status == "dropped"
    assert dropped.error.reason == reason and dropped.error.field.startswith("fragment")
    assert reassembler.datagrams_held == 0
    with pytest.raises(FragmentError, match="expected"):
        reassemble(pieces, Reassembler(strict=True))


def test_teardrop_overlap_drops_the_datagram_with_a_reason():
    # Teardrop: the second fragment starts inside the first one and ends before it.
    pieces = [frag(0, bytes(range(24)), True), frag(16, bytes(4), False),
              frag(24, bytes(8), False)]
    done, results, reassembler = reassemble(pieces)
    assert not done
    assert results[1].status == "dropped" and results[1].error.reason == "overlap"
    assert "bytes 0-24" in str(results[1].error)
    assert results[2].drops[-1].reason == "already-dropped"
    assert reassembler.stats.datagrams_dropped == 1
    assert reassembler.stats.fragments_dropped == 3
    assert reassembler.fragments_held == 0
    # Same range, different bytes: inconsistent too.
    _, results, _ = reassemble([frag(0, bytes(8), True), frag(0, b"\x01" * 8, True)])
    assert results[1].error.reason == "overlap"


def test_timeout_and_per_datagram_limit():
    reassembler = Reassembler(ReassemblyLimits(timeout_us=1000, max_fragments_per_datagram=4))
    reassembler.add(frag(0, bytes(8), True, ident=1), 0)
    result = reassembler.add(frag(0, bytes(8), True, ident=2), 1000)
    assert [d.reason for d in result.drops] == ["timeout"] and reassembler.datagrams_held == 1
    with pytest.raises(ConfigError):
        reassembler.add(frag(8, bytes(8), True, ident=2), 999)
    for offset in range(8, 40, 8):
        result = reassembler.add(frag(offset, bytes(8), True, ident=2), 1001)
    assert result.status == "dropped" and result.error.reason == "too-many-fragments"


def test_flood_of_never_completing_fragments_stays_bounded():
    limits = ReassemblyLimits()
    reassembler = Reassembler(limits)
    count = 1_000_000
    # A pool of 2 x 65,536 distinct datagrams (every IPv4 ident of two address pairs), one
    # fragment each, never completing, cycled: a key comes back 131,072 arrivals later,
    # long after it was evicted, so every arrival is a new datagram to hold.
    pairs = [(ipaddress.ip_address(f"198.51.100.{i + 1}"), ipaddress.ip_address("192.0.2.9"))
             for i in range(2)]
    pool = [Packet(index, *pairs[index >> 16], Proto.UDP, payload_len=8,
                   fragment=Fragment(index & 0xFFFF, 8 * (index % 3), True), payload=bytes(8))
            for index in range(2 << 16)]
    for index in range(count):
        reassembler.add(pool[index % len(pool)], index)  # 1 µs apart: no timeouts
        if index % 65536 == 0:
            assert reassembler.datagrams_held <= limits.max_datagrams
    stats = reassembler.stats
    assert stats.peak_datagrams <= limits.max_datagrams
    assert stats.peak_fragments <= limits.max_fragments
    assert stats.peak_bytes <= limits.max_bytes
    assert stats.received == count
    assert stats.fragments_dropped + reassembler.fragments_held == count
    assert sum(stats.drops_by_reason.values()) == stats.datagrams_dropped > 0
    # The lab keeps answering: a real datagram still reassembles after the flood.
    done, _, _ = reassemble(fragment_packet(udp_response(), 68, order="reverse"), reassembler,
                            now_us=count)
    assert len(done) == 1


# ---------------------------------------------------------------- the action rules


def test_action_rules():
    none = dict(pcb_hit=False, natpcb_hit=False, assemble_flag=False, service_is_udp=None,
                rnat=False)
    tcp_flag = decide_action(proto=Proto.TCP, **{**none, "natpcb_hit": True,
                                                  "assemble_flag": True})
    assert tcp_flag.action == ASSEMBLE and "assemble flag" in tcp_flag.rule
    assert decide_action(proto=Proto.TCP, **{**none, "pcb_hit": True}).rule.startswith(
        "TCP: the traffic hits a PCB")
    assert decide_action(proto=Proto.TCP, **{**none, "service_is_udp": False}).action == ASSEMBLE
    assert decide_action(proto=Proto.TCP, **{**none, "rnat": True}).rule == (
        "TCP: RNAT traffic -> Assemble")
    assert decide_action(proto=Proto.TCP, **{**none, "natpcb_hit": True}).action == BRIDGE
    udp = decide_action(proto=Proto.UDP, **none)
    assert udp.action == BRIDGE and udp.rule.startswith("UDP:")
    # PCB hits and RNAT do not make UDP assemble; the flag or a non-UDP service do.
    assert decide_action(proto=Proto.UDP, **{**none, "pcb_hit": True, "rnat": True}
                         ).action == BRIDGE
    assert decide_action(proto=Proto.UDP, **{**none, "service_is_udp": True}).action == BRIDGE
    assert decide_action(proto=Proto.UDP, **{**none, "service_is_udp": False}).action == ASSEMBLE
    assert decide_action(proto=Proto.UDP, **{**none, "natpcb_hit": True, "assemble_flag": True}
                         ).rule == "UDP: NAT PCB with the assemble flag -> Assemble"
    forced = decide_action(proto=Proto.UDP, **none, forced="assemble")
    assert forced.action == ASSEMBLE and "forced" in forced.rule
    with pytest.raises(ConfigError):
        decide_action(proto=Proto.UDP, **none, forced="both")


def test_tcp_with_assemble_flag_service_is_assembled_and_plain_udp_bridged():
    nic = microsoft_nic()
    tcp = Packet.from_tuple(3, FlowTuple.of("10.0.0.9", "10.0.0.1", 443, 51000, "tcp"),
                            payload=bytes(300), flags="PA")
    facts = SessionFacts(natpcb_hit=True, assemble_flag=True)
    steerer = FragmentSteerer(nic, "reassemble-header", sessions=lambda flow: facts)
    outcomes = [steerer.receive(p, 5) for p in fragment_packet(tcp, 120)]
    delivery = outcomes[-1].deliveries[0]
    assert delivery.action == ASSEMBLE and "assemble flag" in delivery.rule
    assert delivery.packet.flags == "PA" and delivery.packet.payload == bytes(300)
    kinds = [e.kind for o in outcomes for e in o.events]
    assert "action-decided" in kinds and "bridged" not in kinds
    if delivery.received_on != delivery.core:
        assert steerer.stats.packet_transfers == 1 and "reassembled-forwarded" in kinds
    steerer = FragmentSteerer(nic, "reassemble-header")
    outcomes = [steerer.receive(p, 5) for p in fragment_packet(udp_response(), 68)]
    delivery = outcomes[-1].deliveries[0]
    assert delivery.action == BRIDGE and delivery.rule.startswith("UDP: no NAT PCB")
    assert steerer.stats.fragment_copies == 3 and steerer.stats.action_messages == 1
    assert steerer.tables[delivery.core].find("10.0.0.2", "10.0.0.1", 53, 40000, 7
                                              ).action == BRIDGE


# ---------------------------------------------------------------- modes


def test_udp_response_of_3_fragments_returns_to_the_request_core():
    nic = microsoft_nic()
    request = FlowTuple.of("192.0.2.10", "203.0.113.5", 33000, 53, "udp")
    request_core = nic.steer(Packet.from_tuple(1, request)).core
    nat_ip = ipaddress.ip_address("198.51.100.7")
    # The nat policy picks a port whose *response* tuple (server -> nat ip:port) hashes
    # back to the request's core; the 2-tuple core of the response must differ to teach.
    two_core = nic.steer(Packet(0, request.dst, nat_ip, Proto.UDP)).core
    assert two_core != request_core
    port = next(p for p in range(1024, 65536) if nic.steer(Packet(
        0, request.dst, nat_ip, Proto.UDP, 53, p)).core == request_core)
    response = Packet(9, request.dst, nat_ip, Proto.UDP, 53, port, payload=bytes(range(100)))
    pieces = fragment_packet(response, 68)
    assert len(pieces) == 3
    for order in ([0, 1, 2], [2, 1, 0], [1, 2, 0]):
        steerer = FragmentSteerer(nic, FragmentMode.REASSEMBLE_HEADER)
        outcomes = [steerer.receive(pieces[i], 10) for i in order]
        (delivery,) = [d for o in outcomes for d in o.deliveries]
        assert delivery.core == request_core and delivery.received_on == two_core
        steerer = FragmentSteerer(nic, FragmentMode.MS_2TUPLE)
        (delivery,) = [d for p in (pieces[i] for i in order)
                       for d in steerer.receive(p, 10).deliveries]
        assert delivery.core == two_core != delivery.flow_core == request_core
        assert "addresses only" in delivery.reason
        assert f"4-tuple hashes to core {request_core}" in delivery.reason


def test_ms_2tuple_and_reassemble_header_differ_for_a_concrete_microsoft_key_example():
    nic = microsoft_nic()
    pieces = fragment_packet(udp_response(), 68)
    plan = {mode: fragment_outcome(nic, udp_response().tuple, mode, fragments=3)
            for mode in FragmentMode}
    assert plan[FragmentMode.MS_2TUPLE].core == 1 and plan[FragmentMode.MS_2TUPLE].hash == (
        0x29A6D6B1)
    assert plan[FragmentMode.REASSEMBLE_HEADER].core == 2
    for mode in FragmentMode:
        steerer = FragmentSteerer(nic, mode, default_fragment_core=3)
        (delivery,) = [d for p in pieces for d in steerer.receive(p, 0).deliveries]
        expected = 1 if mode is FragmentMode.MS_2TUPLE else 2
        assert delivery.core == expected and delivery.data == l4_bytes(udp_response())
        if mode is FragmentMode.DEFAULT_CORE:
            assert delivery.received_on == 3 and steerer.stats.fragment_copies == 3


def test_ipv6_fragments_hash_on_the_2_tuple_under_ms_2tuple():
    nic = microsoft_nic()
    flow = FlowTuple.of("2001:db8::1", "2001:db8::2", 5353, 40001, "udp")
    pieces = fragment_packet(Packet.from_tuple(4, flow, payload=bytes(200)), 120)
    steerer = FragmentSteerer(nic, "ms-2tuple")
    events = [e for p in pieces for e in steerer.receive(p, 0).events
              if e.kind == "fragment-steered"]
    two = nic.steer(Packet(0, flow.src, flow.dst, Proto.UDP))
    assert {e.hash for e in events} == {two.hash} and len(events) == len(pieces)


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1), st.integers(0, 65535),
       st.integers(0, 65535), st.sampled_from([Proto.TCP, Proto.UDP]),
       st.sampled_from(list(FragmentMode)), st.sampled_from([ASSEMBLE, BRIDGE]),
       st.integers(60, 900), st.integers(0, 2**30))
def test_fragment_outcome_agrees_with_the_steerer(src, dst, sport, dport, proto, mode, action,
                                                  size, seed):
    nic = microsoft_nic(4)
    flow = FlowTuple(ipaddress.IPv4Address(src), ipaddress.IPv4Address(dst), sport, dport, proto)
    rng = random.Random(seed)
    packet = Packet.from_tuple(1, flow, payload=rng.randbytes(size))
    pieces = fragment_packet(packet, rng.choice([68, 100, 276, 576]), order="random", rng=rng)
    if len(pieces) == 1:
        return
    steerer = FragmentSteerer(nic, mode, default_fragment_core=2, forced=action)
    deliveries = [d for p in pieces for d in steerer.receive(p, 0).deliveries]
    plan = fragment_outcome(nic, flow, mode, fragments=len(pieces), action=action,
                            default_fragment_core=2)
    assert len(deliveries) == 1
    delivery = deliveries[0]
    assert (delivery.core, delivery.received_on, delivery.hash, delivery.bucket) == (
        plan.core, plan.received_on, plan.hash, plan.bucket)
    assert (steerer.stats.action_messages, steerer.stats.packet_transfers,
            steerer.stats.fragment_copies) == (plan.action_messages, plan.packet_transfers,
                                               plan.fragment_copies)


# ---------------------------------------------------------------- real captures


def capture_packets(path):
    return [from_scapy(pkt, index) for index, pkt in enumerate(rdpcap(path))]


@pytest.mark.parametrize("path", sorted(glob.glob(f"{PCAPS}/sv__defrag__*")))
def test_real_defrag_captures_reassemble(path):
    packets_ = capture_packets(path)
    done, results, _ = reassemble(packets_)
    assert [r.status for r in results] == ["held", "held", "complete"]
    (datagram,) = done
    whole = datagram.packet
    assert (whole.sport, whole.dport, whole.proto) == (12345, 8080, Proto.TCP)
    if whole.version == 4:
        assert (str(whole.src), str(whole.dst), whole.flags) == ("1.1.1.1", "2.2.2.2", "S")
        expected = bytes(IP(bytes(defragment([IP(bytes(p[IP])) for p in rdpcap(path)])[0]))
                         .payload)
    else:
        assert (str(whole.src), str(whole.dst), whole.flags) == ("::1", "::1", "A")
        expected = bytes(IPv6(bytes(defragment6([IPv6(bytes(p[IPv6]))
                                                 for p in rdpcap(path)]))).payload)
    assert datagram.data == expected
    for mode in FragmentMode:  # every mode takes them, in reverse too, without error
        steerer = FragmentSteerer(microsoft_nic(), mode)
        delivered = [d for p in reversed(packets_) for d in steerer.receive(p, 0).deliveries]
        assert len(delivered) == 1 and delivered[0].packet.sport == 12345


def test_real_icmp_fragments_and_a_whole_packet():
    packets_ = capture_packets(f"{PCAPS}/sv__exception-policy-defrag-01__ipv4frags.pcap")
    steerer = FragmentSteerer(microsoft_nic(), "reassemble-header")
    outcomes = [steerer.receive(p, 0) for p in packets_]
    assert [o.status for o in outcomes] == ["held", "reassembled", "passed"]
    whole = outcomes[1].deliveries[0]
    assert whole.packet.proto == Proto.ICMP and len(whole.data) == 976 + 432
    assert whole.data[0] == 8  # ICMP echo request, from the first fragment's header
    assert whole.action == BRIDGE and "neither TCP nor UDP" in whole.rule


def test_fragment_fields_round_trip_through_scapy():
    for piece in fragment_packet(udp_response(), 68) + fragment_packet(
            replace(udp_response(), src=ipaddress.ip_address("2001:db8::2"),
                    dst=ipaddress.ip_address("2001:db8::1"), ethertype=0x86DD), 64):
        layer = IP if piece.version == 4 else IPv6
        back = from_scapy(layer(bytes(to_scapy(piece))), piece.id)
        assert (back.fragment, back.payload, back.sport, back.dport) == (
            piece.fragment, piece.payload, piece.sport, piece.dport)


def test_fragment_packet_rejects_bad_settings():
    with pytest.raises(ConfigError, match="mtu"):
        fragment_packet(udp_response(), 27)
    with pytest.raises(ConfigError, match="rng"):
        fragment_packet(udp_response(), 68, order="random")
    with pytest.raises(ConfigError, match="order"):
        fragment_packet(udp_response(), 68, order="sideways")
    assert fragment_packet(udp_response(), 1500) == [udp_response()]
    # past what one datagram carries: 65,507 bytes of UDP payload over IPv4
    with pytest.raises(ConfigError, match="payload_len: expected 0-65507 bytes"):
        fragment_packet(replace(udp_response(), payload=b"", payload_len=65_508), 1500)
    with pytest.raises(ConfigError, match="mode"):
        FragmentMode.parse("bogus")
