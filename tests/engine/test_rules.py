"""Each rule both execution paths call holds its scalar and array forms equal: the trace
path calls the scalar, the batch path the array, and one property test per pair says
they decide alike (engine/appliance/rules.py, and the NIC's hash-type choice)."""

from __future__ import annotations

import ipaddress

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.appliance.config import Server, Service, SystemConfig
from engine.appliance.rules import (
    DEFAULT_REQUEST_BYTES,
    DEFAULT_RESPONSE_BYTES,
    FORWARDING_ROUTES,
    MIN_MTU,
    POLICY_CODE,
    Router,
    forwarding_cost,
    fragment_cost,
    fragment_cost_batch,
    fragment_count,
    fragment_count_batch,
    not_served,
    not_served_batch,
    response_size_and_mtu,
    response_size_and_mtu_batch,
    response_verdict,
    response_verdict_batch,
)
from engine.appliance.verdicts import VERDICT_CODE
from engine.nic.rss import HashType, IndirectionTable, Nic, Transform
from engine.packet.model import Packet, Proto
from engine.packet.toeplitz import Key

PROTOS = st.sampled_from([int(Proto.TCP), int(Proto.UDP), 47])
MTUS = st.one_of(st.none(), st.integers(MIN_MTU[4], 9000))
EXAMPLES = settings(max_examples=60, deadline=None)


def test_the_settled_values():
    assert MIN_MTU == {4: 68, 6: 1280}  # RFC 791, RFC 8200
    assert (DEFAULT_REQUEST_BYTES, DEFAULT_RESPONSE_BYTES) == (100, 1000)


@EXAMPLES
@given(st.lists(st.tuples(PROTOS, st.integers(0, 65_000), MTUS), min_size=1, max_size=40))
def test_fragment_count_pair(rows):
    proto, payload, mtu = zip(*rows)
    batch = fragment_count_batch(np.asarray(proto), np.asarray(payload),
                                 np.asarray([m or 0 for m in mtu]))
    assert batch.tolist() == [fragment_count(4, p, n, m) for p, n, m in rows]


def test_fragment_count_for_ipv6_leaves_room_for_the_fragment_header():
    # A UDP datagram of 1,233 payload bytes (1,241 with its header) does not fit 1,280
    # bytes after the 40-byte IPv6 header; fragments carry 1,280 - 40 - 8 (Fragment
    # header) = 1,232 bytes each, so it takes two. One byte less fits whole.
    assert fragment_count(6, Proto.UDP, 1233, 1280) == 2
    assert fragment_count(6, Proto.UDP, 1232, 1280) == 0


@EXAMPLES
@given(st.sampled_from(["reassemble-header", "default-core", "ms-2tuple"]),
       st.lists(st.tuples(st.integers(1, 64), st.booleans(), st.integers(0, 7),
                          st.integers(0, 7)), min_size=1, max_size=40))
def test_fragment_cost_pair(mode, rows):
    fragments, assemble, received_on, core = (np.asarray(c) for c in zip(*rows))
    messages, copies = fragment_cost_batch(mode, fragments, assemble, received_on, core)
    assert list(zip(messages.tolist(), copies.tolist())) == [
        fragment_cost(mode, n, "assemble" if a else "bridge", r, c) for n, a, r, c in rows]


ADDRESSES = st.integers(0xC0000200, 0xC0000207)  # eight addresses: requests hit often
PORTS = st.sampled_from([53, 80, 443])


@st.composite
def routed(draw):
    services = []
    for _ in range(draw(st.integers(0, 4))):
        servers = tuple((str(ipaddress.IPv4Address(draw(ADDRESSES))), draw(PORTS))
                        for _ in range(draw(st.integers(0, 3))))
        services.append(Service(str(ipaddress.IPv4Address(draw(ADDRESSES))), draw(PORTS),
                                draw(st.sampled_from(["tcp", "udp"])),
                                draw(st.sampled_from(["nat", "usip", "transparent"])),
                                servers))
    if draw(st.booleans()):  # an IPv6 service beside them matches no IPv4 row
        services.append(Service("2001:db8::1", 80, "tcp", "transparent",
                                (("2001:db8::2", 80),)))
    config = SystemConfig(policy=draw(st.sampled_from(["nat", "usip", "transparent"])),
                          services=tuple(services))
    requests = draw(st.lists(st.tuples(ADDRESSES, PORTS, st.sampled_from([6, 17]),
                                       st.integers(0, 2**32 - 1), st.booleans()),
                             min_size=1, max_size=30))
    return config, requests


@EXAMPLES
@given(routed())
def test_routing_pair(case):
    config, requests = case
    router = Router(config)
    dst, dport, proto, hashes, hashed = (np.asarray(c) for c in zip(*requests))
    batch = router.route_batch(dst.astype(np.uint32), dport, proto, hashes.astype(np.uint32),
                               hashed)
    for row, (ip, port, number, value, was_hashed) in enumerate(requests):
        route = router.route(ipaddress.IPv4Address(ip), port, number,
                             value if was_hashed else None)
        assert batch.policy[row] == POLICY_CODE[route.policy]
        assert batch.service[row] == route.service
        assert (int(batch.server_ip[row]), int(batch.server_port[row])) == (
            int(route.server_ip), route.server_port)


@EXAMPLES
@given(st.lists(st.tuples(ADDRESSES, PORTS, st.integers(-1, 1), st.integers(0, 5000)),
                min_size=1, max_size=30),
       st.lists(st.tuples(ADDRESSES, PORTS, st.one_of(st.none(), st.integers(0, 9000)),
                          MTUS), max_size=4),
       MTUS)
def test_response_size_and_mtu_pair(rows, servers, service_mtu):
    config = SystemConfig(
        services=(Service("192.0.2.100", 80, mtu=service_mtu),
                  Service("192.0.2.101", 80, policy="transparent")),
        servers=tuple(Server(str(ipaddress.IPv4Address(ip)), port, size, mtu=mtu)
                      for ip, port, size, mtu in servers))
    by_endpoint = {(int(ipaddress.IPv4Address(s.ip)), s.port): s for s in config.servers}
    ip, port, service, flow_bytes = (np.asarray(c) for c in zip(*rows))
    sizes, mtus = response_size_and_mtu_batch(config, server_ip=ip.astype(np.uint32),
                                              server_port=port, service=service,
                                              flow_bytes=flow_bytes)
    for row, (address, number, index, size) in enumerate(rows):
        expected = response_size_and_mtu(config, server=by_endpoint.get((address, number)),
                                         service=index, flow_bytes=size)
        assert (int(sizes[row]), int(mtus[row]) or None) == expected


@EXAMPLES
@given(st.sampled_from(FORWARDING_ROUTES), st.integers(1, 6),
       st.lists(st.tuples(st.integers(0, 5), st.integers(0, 5)), min_size=1, max_size=30))
def test_response_verdict_pair(route, cores, rows):
    rows = [(owner % cores, landed % cores) for owner, landed in rows]
    request_core, response_core = (np.asarray(column) for column in zip(*rows))
    verdict, copies, hops = response_verdict_batch(
        request_core=request_core, response_core=response_core, route=route, cores=cores)
    for row, (owner, landed) in enumerate(rows):
        expected = response_verdict(on_owner=landed == owner, landed=landed, owner=owner,
                                    route=route, cores=cores)
        assert (int(verdict[row]), int(copies[row]), int(hops[row])) == (
            VERDICT_CODE[expected[0]], expected[1], expected[2])


def test_forwarding_costs_by_route():
    """Every policy forwards (seed L416); what a route costs, in copies and hops."""
    cost = {route: forwarding_cost(route, from_core=1, to_core=0, cores=4)
            for route in FORWARDING_ROUTES}
    assert cost == {"message": (1, 1), "shared-buffer": (2, 1), "control-core": (2, 2),
                    "neighbour": (3, 3), "none": (0, 0)}
    assert response_verdict(on_owner=False, landed=1, owner=0, route="none",
                            cores=4) == ("asymmetric", 0, 0)
    assert response_verdict(on_owner=False, landed=1, owner=None, route="message",
                            cores=4) == ("asymmetric", 0, 0)


@EXAMPLES
@given(st.sets(st.sampled_from([HashType.IPV4, HashType.TCP_IPV4, HashType.UDP_IPV4])),
       st.sampled_from(list(Transform)), st.integers(0, 3),
       st.lists(st.tuples(st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1),
                          st.integers(0, 65535), st.integers(0, 65535), PROTOS),
                min_size=1, max_size=30))
def test_hash_type_choice_pair(types, transform, default_core, rows):
    nic = Nic(Key.microsoft(), IndirectionTable.round_robin(4, 7), frozenset(types),
              transform, default_core)
    src, dst, sport, dport, proto = (np.asarray(c) for c in zip(*rows))
    hashes, hashed, cores = nic.steer_batch(src.astype(np.uint32), dst.astype(np.uint32),
                                            sport.astype(np.uint32), dport.astype(np.uint32),
                                            proto.astype(np.uint8))
    for row, (s, d, sp, dp, number) in enumerate(rows):
        packet = Packet(row, ipaddress.IPv4Address(s), ipaddress.IPv4Address(d), number,
                        sp if number in (6, 17) else None, dp if number in (6, 17) else None)
        steering = nic.steer(packet)
        assert int(cores[row]) == steering.core
        assert bool(hashed[row]) == (steering.hash_type is not None)
        if steering.hash_type is not None:
            assert int(hashes[row]) == steering.hash


ADDRESSES6 = st.binary(min_size=16, max_size=16)


@EXAMPLES
@given(st.sets(st.sampled_from([HashType.IPV6, HashType.TCP_IPV6, HashType.UDP_IPV6])),
       st.sampled_from(list(Transform)), st.integers(0, 3),
       st.lists(st.tuples(ADDRESSES6, ADDRESSES6, st.integers(0, 65535),
                          st.integers(0, 65535), PROTOS, st.booleans()),
                min_size=1, max_size=30))
def test_hash_type_choice_pair_for_ipv6(types, transform, default_core, rows):
    nic = Nic(Key.microsoft(), IndirectionTable.round_robin(4, 7), frozenset(types),
              transform, default_core)
    # ``same``: a packet to its own address (the sort transform's tie)
    rows = [(s, s if same else d, sp, dp, number, same)
            for s, d, sp, dp, number, same in rows]
    src = np.frombuffer(b"".join(r[0] for r in rows), np.uint8).reshape(-1, 16)
    dst = np.frombuffer(b"".join(r[1] for r in rows), np.uint8).reshape(-1, 16)
    sport, dport, proto = (np.asarray(c) for c in list(zip(*rows))[2:5])
    hashes, hashed, cores = nic.steer_ipv6_batch(src, dst, sport.astype(np.uint32),
                                                 dport.astype(np.uint32),
                                                 proto.astype(np.uint8))
    for row, (s, d, sp, dp, number, _) in enumerate(rows):
        packet = Packet(row, ipaddress.IPv6Address(s), ipaddress.IPv6Address(d), number,
                        sp if number in (6, 17) else None, dp if number in (6, 17) else None)
        steering = nic.steer(packet)
        assert int(cores[row]) == steering.core
        assert bool(hashed[row]) == (steering.hash_type is not None)
        if steering.hash_type is not None:
            assert int(hashes[row]) == steering.hash


@EXAMPLES
@given(st.sampled_from(["nat", "usip", "transparent"]),
       st.lists(st.tuples(st.sampled_from(["2001:db8::1", "2001:db8::2", "2001:db8::9"]),
                          st.sampled_from([80, 443]), st.sampled_from([6, 17]),
                          st.integers(0, 2**32 - 1), st.booleans()),
                min_size=1, max_size=30))
def test_ipv6_routing_pair(default, requests):
    services = (Service("2001:db8::1", 80, "tcp", "transparent",
                        (("2001:db8:1::1", 8080), ("2001:db8:1::2", 8080))),
                Service("198.18.0.1", 80, "tcp", "nat"))
    router = Router(SystemConfig(policy=default, services=services))
    dst = np.stack([np.frombuffer(ipaddress.IPv6Address(r[0]).packed, np.uint8)
                    for r in requests])
    _, dport, proto, hashes, hashed = (np.asarray(c) for c in zip(*requests))
    batch = router.route_ipv6_batch(dst, dport, proto, hashes.astype(np.uint32), hashed)
    served = not_served_batch(batch.policy, np.ones(len(requests), bool))
    for row, (ip, port, number, value, was_hashed) in enumerate(requests):
        route = router.route(ipaddress.IPv6Address(ip), port, number,
                             value if was_hashed else None)
        assert batch.policy[row] == POLICY_CODE[route.policy]
        assert batch.service[row] == route.service
        assert (ipaddress.IPv6Address(batch.server_ip[row].tobytes()),
                int(batch.server_port[row])) == (route.server_ip, route.server_port)
        assert bool(served[row]) == (not_served(route.policy, 6) is not None)


def test_not_served_names_the_policy_and_the_family():
    assert not_served("transparent", 6) is None
    assert not_served("nat", 4) is None and not_served("usip", 4) is None
    assert "nat service has no IPv6 address" in not_served("nat", 6)
    assert "usip" in not_served("usip", 6)
    codes = np.asarray([POLICY_CODE[p] for p in ("nat", "usip", "transparent")])
    assert not_served_batch(codes, None).tolist() == [False] * 3
    assert not_served_batch(codes, np.asarray([True, True, True])).tolist() == [
        True, True, False]
