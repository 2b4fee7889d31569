"""pcap/pcapng in and out: the real captures in /work/shared/pcaps, round trips through the
lab's writer and through Scapy's, file-level errors, and fuzzed captures."""

from __future__ import annotations

import io
import ipaddress
import struct
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.errors import PcapError
from engine.examples import EXAMPLES_DIR
from engine.examples.replay import replay_frames, write_replay_pcap
from engine.packet.model import Fragment, Packet, Proto
from engine.scenarios.pcap import (
    LINKTYPE_ETHERNET,
    LINKTYPE_RAW,
    PcapReadResult,
    flows_from_packets,
    read_pcap,
    write_pcap,
)
from engine.scenarios.traffic import Target, generate_flows

PCAPS = Path("/work/shared/pcaps")
MAC1, MAC2 = "02:00:00:00:00:01", "02:00:00:00:00:02"
ip = ipaddress.ip_address

# file → (usable packets, skipped, link types, flows as (client, cport, server, sport,
#         request bytes, response bytes), ignored) — checked by reading each with Scapy.
EXPECTED = {
    "fs__200722_tcp_anon.pcapng": (35, {}, {"Ethernet": 35}, [
        ("192.168.200.135", 7875, "192.168.200.21", 2000, 6, 0),
        ("192.168.200.135", 7876, "192.168.200.21", 2000, 9519, 6)], {}),
    "fs__simple_http.pcap": (24, {}, {"Ethernet": 24}, [
        ("127.0.0.1", 32784, "127.0.0.1", 56789, 493, 200),
        ("127.0.0.1", 32796, "127.0.0.1", 56789, 448, 655)], {}),
    "sv__defrag__bug-6887-defrag-eth-vlan-ipv4-tcp-syn__frag-eth-vlan-ip-tcp-syn.pcap": (
        3, {}, {"Ethernet": 3}, [("1.1.1.1", 12345, "2.2.2.2", 8080, 24, 0)], {}),
    "sv__defrag__bug-6887-defrag-eth-vlan-ipv6-tcp__frag-eth-vlan-ipv6-tcp.pcap": (
        3, {}, {"Ethernet": 3}, [("::1", 12345, "::1", 8080, 1020, 0)], {}),
    "sv__defrag__bug-6887-defrag-ipv4-tcp-syn__frag-ip-tcp-syn.pcap": (
        3, {}, {"Raw IPv4": 3}, [("1.1.1.1", 12345, "2.2.2.2", 8080, 24, 0)], {}),
    "sv__defrag__bug-6887-defrag-ipv6-tcp__frag-ip-tcp.pcap": (
        3, {}, {"Raw IPv6": 3}, [("::1", 12345, "::1", 8080, 1020, 0)], {}),
    "sv__defrag__bug-6887-defrag-ppp-ipv4-tcp-syn__frag-ppp-ip-tcp-syn.pcap": (
        3, {}, {"PPP": 3}, [("1.1.1.1", 12345, "2.2.2.2", 8080, 24, 0)], {}),
    "sv__defrag__bug-6887-defrag-ppp-ipv6-tcp__frag-ppp-ipv6-tcp.pcap": (
        3, {}, {"PPP": 3}, [("::1", 12345, "::1", 8080, 1020, 0)], {}),
    "sv__exception-policy-defrag-01__ipv4frags.pcap": (
        3, {}, {"Ethernet": 3}, [], {"not TCP or UDP": 3}),
    "sv__http-connect__http-connect-fragmented__input.pcap": (
        18, {}, {"BSD loopback": 18}, [("127.0.0.1", 60484, "127.0.0.1", 8001, 94, 90)], {}),
}


def test_every_shared_capture_is_covered():
    assert sorted(p.name for p in PCAPS.glob("*.pcap*")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_real_captures_read_with_concrete_counts(name):
    packets, skipped, links, flows, ignored = EXPECTED[name]
    result = read_pcap(PCAPS / name)
    assert len(result.packets) == packets
    assert result.skipped == skipped
    assert result.link_types == links
    grouped = flows_from_packets(result.packets)
    assert [(str(f.client_ip), f.client_port, str(f.server_ip), f.server_port,
             f.request_bytes, f.response_bytes) for f in grouped.flows] == flows
    assert grouped.ignored == ignored
    assert [p.id for p in result.packets] == list(range(packets))


def test_fragment_fields_come_through():
    v4 = read_pcap(PCAPS / "sv__defrag__bug-6887-defrag-ppp-ipv4-tcp-syn__frag-ppp-ip-tcp-syn"
                           ".pcap").packets
    assert [p.fragment for p in v4] == [Fragment(1, 0, True), Fragment(1, 8, True),
                                        Fragment(1, 16, False)]
    assert (v4[0].sport, v4[0].dport) == (12345, 8080)   # ports from an 8-byte first fragment
    assert v4[1].sport is None and v4[2].sport is None
    v6 = read_pcap(PCAPS / "sv__defrag__bug-6887-defrag-ipv6-tcp__frag-ip-tcp.pcap").packets
    assert [p.fragment.offset for p in v6] == [0, 464, 928]
    assert all(p.ethertype == 0x86DD and p.proto == Proto.TCP for p in v6)


def udp(sport: int, dport: int, length: int) -> bytes:
    return struct.pack("!HHHH", sport, dport, length, 0)


def lab_packets() -> list[Packet]:
    a, b = ip("198.51.100.7"), ip("192.0.2.10")
    c, d = ip("2001:db8::1"), ip("2001:db8::2")
    return [
        Packet(0, a, b, Proto.TCP, 40000, 80, 120, "S"),
        Packet(1, b, a, Proto.TCP, 80, 40000, 0, "SA"),
        Packet(2, a, b, Proto.UDP, 5353, 53, 40),
        Packet(3, c, d, Proto.TCP, 1234, 443, 10, "PA", None, 0x86DD),
        # Fragments carry their bytes (the first one's start with the UDP header).
        Packet(4, d, c, Proto.UDP, 53, 999, 1008, "", Fragment(77, 0, True), 0x86DD,
               udp(53, 999, 1508) + bytes(1000)),
        Packet(5, d, c, Proto.UDP, None, None, 500, "", Fragment(77, 1008, False), 0x86DD,
               b"\x01" * 500),
        Packet(6, b, a, Proto.UDP, 53, 5353, 1480, "", Fragment(9, 0, True), 0x0800,
               udp(53, 5353, 1580) + bytes(1472)),
        Packet(7, b, a, Proto.UDP, None, None, 100, "", Fragment(9, 1480, False), 0x0800,
               b"\x02" * 100),
        Packet(8, a, b, Proto.ICMP, None, None, 56),
    ]


def test_lab_written_pcap_reads_back_the_same_packets_and_flows(tmp_path):
    packets = lab_packets()
    path = tmp_path / "run.pcap"
    assert write_pcap(path, packets) == len(packets)
    assert int.from_bytes(path.read_bytes()[20:24], "little") == LINKTYPE_RAW
    back = read_pcap(path)
    assert back.skipped == {}
    assert back.packets == packets
    assert flows_from_packets(back.packets) == flows_from_packets(packets)


def test_non_ip_packets_make_an_ethernet_capture():
    packets = [*lab_packets()[:3], Packet(3, None, None, 0, payload_len=28, ethertype=0x0806)]
    buffer = io.BytesIO()
    write_pcap(buffer, packets)
    data = buffer.getvalue()
    assert int.from_bytes(data[20:24], "little") == LINKTYPE_ETHERNET
    result = read_pcap(data)
    assert result.packets == packets[:3]
    assert result.skipped == {"not IP": 1}


def test_independent_scapy_capture_of_generated_traffic_gives_the_same_flows(tmp_path):
    from scapy.layers.inet import IP, TCP, UDP
    from scapy.layers.l2 import Dot1Q, Ether
    from scapy.packet import Raw
    from scapy.utils import wrpcap

    targets = [Target(int(ip("192.0.2.1")), 80, Proto.TCP, 700),
               Target(int(ip("192.0.2.2")), 53, Proto.UDP, 300)]
    specs = generate_flows(count=40, targets=targets, client_prefixes=["198.51.100.0/24"],
                           zipf=1.0, seed=5).to_specs()
    frames = []
    for spec in specs:
        l4 = TCP if spec.proto == Proto.TCP else UDP
        client, server = str(spec.client_ip), str(spec.server_ip)
        out = Ether(src=MAC1, dst=MAC2) / Dot1Q(vlan=7) / IP(src=client, dst=server)
        back = Ether(src=MAC2, dst=MAC1) / Dot1Q(vlan=7) / IP(src=server, dst=client)
        frames.append(out / l4(sport=spec.client_port, dport=spec.server_port)
                      / Raw(b"q" * spec.request_bytes))
        frames.append(back / l4(sport=spec.server_port, dport=spec.client_port)
                      / Raw(b"r" * spec.response_bytes))
    wrpcap(str(tmp_path / "scapy.pcap"), frames)
    flows = flows_from_packets(read_pcap(tmp_path / "scapy.pcap").packets).flows
    assert flows == specs


def test_replay_pcap_is_regenerated_byte_for_byte(tmp_path):
    write_replay_pcap(tmp_path / "replay.pcap")
    assert (tmp_path / "replay.pcap").read_bytes() == (EXAMPLES_DIR / "replay.pcap").read_bytes()
    assert len(replay_frames()) == 32


def test_file_level_problems_raise_pcap_error(tmp_path):
    with pytest.raises(PcapError, match="pcap or pcapng"):
        read_pcap(b"GET / HTTP/1.1\r\n")
    with pytest.raises(PcapError, match="pcap or pcapng"):
        read_pcap(b"")
    with pytest.raises(PcapError, match="readable"):
        read_pcap(tmp_path / "absent.pcap")
    data = (PCAPS / "fs__simple_http.pcap").read_bytes()
    with pytest.raises(PcapError, match="at most 100 bytes"):
        read_pcap(data, max_bytes=100)
    with pytest.raises(PcapError, match="at most 10 packets"):
        read_pcap(data, max_packets=10)
    with pytest.raises(PcapError, match="at most 100 bytes"):
        read_pcap(io.BytesIO(data), max_bytes=100)


def test_a_capture_cut_short_keeps_what_was_read():
    data = (PCAPS / "fs__simple_http.pcap").read_bytes()
    result = read_pcap(data[:len(data) // 2])
    assert 0 < len(result.packets) < 24
    assert set(result.skipped) <= {"unreadable rest of file", "truncated L4 header",
                                   "malformed IPv4 header"}


_CAPTURES = [p.read_bytes() for p in sorted(PCAPS.glob("*.pcap*"))] + [
    (EXAMPLES_DIR / "replay.pcap").read_bytes()]


@settings(max_examples=1200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(range(len(_CAPTURES))),
       st.lists(st.tuples(st.integers(0, 20_000), st.integers(0, 255)), min_size=1,
                max_size=8),
       st.integers(0, 20_000))
def test_fuzzed_captures_only_give_pcap_error_or_counted_skips(which, edits, cut):
    data = bytearray(_CAPTURES[which])
    for position, value in edits:
        data[position % len(data)] = value
    data = bytes(data[:max(cut, 24)])
    try:
        result = read_pcap(data, max_packets=100)
    except PcapError as error:
        assert error.field == "pcap"
        return
    assert isinstance(result, PcapReadResult)
    assert all(count > 0 for count in result.skipped.values())
    flows_from_packets(result.packets)


@pytest.mark.parametrize(("cut", "reason"), [
    (30, "unreadable rest of file"),                    # inside the first record's header
    (300, "record cut short by the end of the file"),   # inside a record's packet bytes
])
def test_a_cut_capture_names_what_it_lost(cut, reason):
    data = (EXAMPLES_DIR / "replay.pcap").read_bytes()[:cut]
    result = read_pcap(data)
    assert result.skipped == {reason: 1}
    assert result.total == len(result.packets) + 1
