"""The rules of the model that both execution paths call: the trace path with one flow's
scalars, the batch path with whole arrays. Where a rule needs both forms they sit side by
side here (``name`` and ``name_batch`` or a ``*_batch`` method), and one property test
holds each pair equal (tests/engine/test_rules.py). The paths keep no copy of their own.

* sizes: the default payloads, the minimum MTU per IP version, L4 header bytes;
* fragments: how many a packet is cut into, and what moving them between cores costs;
* routing: which service a request matches, its policy and its real server (``Router``);
* responses: the size and MTU a server answers with;
* forwarding: what moving a packet to its owner core costs, by route;
* verdicts: symmetric, handed off or asymmetric, and the forwarding's copies and hops;
* timing: a server's think time, and when a session ends (FIN/RST after the response,
  the idle timeout for ``close: none`` or a response that never came back), which frees
  its port for the flows that start after it.

The NIC's hash-type choice is a rule of the NIC layer: ``Nic.hash_type_for`` and
``Nic.steer_batch`` sit side by side in ``engine.nic.rss``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from engine.appliance.fragments import ASSEMBLE, SessionFacts
from engine.appliance.packet_engine import POLICIES
from engine.appliance.verdicts import VERDICT_CODE
from engine.packet.model import Address, Proto
from engine.packet.toeplitz import parse_address

if TYPE_CHECKING:
    from engine.appliance.config import Server, SystemConfig

# ---------------------------------------------------------------------------------- sizes

#: Payload bytes of a flow's request and response when nothing says otherwise (a flow of
#: the trace path, a row of the batch path, a capture's or a file's flow alike).
DEFAULT_REQUEST_BYTES = 100
DEFAULT_RESPONSE_BYTES = 1000

IPV4_HEADER = 20
IPV6_HEADER = 40
IPV6_FRAGMENT_HEADER = 8
#: The smallest IP MTU per version: 68 bytes for IPv4 (RFC 791: every module must
#: forward a 68-byte datagram without fragmenting it further) and 1,280 for IPv6
#: (RFC 8200, section 5). The scenario schema uses the same values.
MIN_MTU = {4: 68, 6: 1280}

#: Code of each policy in the batch path's columns.
POLICY_CODE = {name: code for code, name in enumerate(POLICIES)}

#: How a core forwards a packet that reached it but belongs to another core's session
#: (the patent's flow distributor instances "forward it to the desired or correct
#: core", seed L416, "via shared memory and or core to core messaging", L418, L44):
#:
#: * ``message`` — a core-to-core message carries a copy: 1 copy, 1 hop;
#: * ``shared-buffer`` — written into the shared buffer by the receiving core and read
#:   out by the owner after a message: 2 copies, 1 hop;
#: * ``control-core`` — relayed through the control core: 2 copies (to it, from it),
#:   2 hops;
#: * ``neighbour`` — passed core to core round the ring (core c to c+1) until the owner:
#:   one copy and one hop per step, (owner - receiver) mod cores steps;
#: * ``none`` — not forwarded: a misdirected packet is lost (``asymmetric``).
FORWARDING_ROUTES = ("message", "shared-buffer", "control-core", "neighbour", "none")
_FIXED_COST = {"message": (1, 1), "shared-buffer": (2, 1), "control-core": (2, 2),
               "none": (0, 0)}


def forwarding_cost(route: str, *, from_core: int, to_core: int, cores: int
                    ) -> tuple[int, int]:
    """``(copies, hops)`` of forwarding one packet from ``from_core`` to ``to_core``."""
    if route == "neighbour":
        steps = (to_core - from_core) % cores
        return steps, steps
    return _FIXED_COST[route]


def forwarding_cost_batch(route: str, *, from_core, to_core, cores: int
                          ) -> tuple[np.ndarray, np.ndarray]:
    """``forwarding_cost`` per row (int64 arrays ``copies``, ``hops``)."""
    shape = np.shape(from_core)
    if route == "neighbour":
        steps = (np.asarray(to_core, dtype=np.int64) - np.asarray(from_core, dtype=np.int64)
                 ) % cores
        return steps, steps.copy()
    copies, hops = _FIXED_COST[route]
    return np.full(shape, copies, dtype=np.int64), np.full(shape, hops, dtype=np.int64)


def min_mtu(version: int) -> int:
    """The smallest IP MTU (bytes) a link of IP ``version`` may have."""
    return MIN_MTU[version]


def l4_header_bytes(proto: int) -> int:
    """Bytes of L4 header the lab's packets carry (as ``engine.packet.model.to_scapy`` builds them):
    20 for TCP (no options), 8 for UDP, 0 for any other protocol."""
    return 20 if proto == Proto.TCP else 8 if proto == Proto.UDP else 0


def l4_header_bytes_batch(proto) -> np.ndarray:
    """``l4_header_bytes`` per row of protocol numbers."""
    proto = np.asarray(proto)
    return np.where(proto == Proto.TCP, 20, np.where(proto == Proto.UDP, 8, 0))


# ------------------------------------------------------------------------------ fragments

def fragment_count(version: int, proto: int, payload: int, mtu: int | None) -> int:
    """How many fragments ``fragment_packet`` cuts a packet of ``payload`` L4 payload
    bytes into for an IP MTU of ``mtu`` bytes; 0 when it fits (or ``mtu`` is None). Each
    fragment but the last carries the most 8-byte units that fit after the IP header
    (and, for IPv6, the Fragment header)."""
    if mtu is None:
        return 0
    data = l4_header_bytes(proto) + payload
    header = IPV4_HEADER if version == 4 else IPV6_HEADER
    if data + header <= mtu:
        return 0
    step = (mtu - header - (0 if version == 4 else IPV6_FRAGMENT_HEADER)) // 8 * 8
    return -(-data // step)


def fragment_count_batch(proto, payload, mtu) -> np.ndarray:
    """``fragment_count`` over IPv4 rows; an ``mtu`` of 0 means none (the row fits)."""
    mtu = np.asarray(mtu, dtype=np.int64)
    data = l4_header_bytes_batch(proto) + np.asarray(payload, dtype=np.int64)
    fragmented = (mtu > 0) & (data + IPV4_HEADER > mtu)
    step = np.where(fragmented, (mtu - IPV4_HEADER) // 8 * 8, 1)  # 1: no division by 0
    return np.where(fragmented, -(-data // step), 0).astype(np.int64)


def fragment_cost(mode: str, fragments: int, action: str | None, received_on: int,
                  core: int) -> tuple[int, int]:
    """``(action messages, copies)`` of one delivered datagram: under
    ``reassemble-header``/``default-core``, when the core that found the header is not
    the destination, one action message, plus one reassembled-packet copy (Assemble)
    or one copy per fragment (Bridge); ``ms-2tuple`` moves nothing."""
    if mode == "ms-2tuple" or core == received_on:
        return 0, 0
    return 1, 1 if action == ASSEMBLE else fragments


def fragment_cost_batch(mode: str, fragments, assemble, received_on, core
                        ) -> tuple[np.ndarray, np.ndarray]:
    """``fragment_cost`` per row: ``assemble`` is True where the action is Assemble."""
    fragments = np.asarray(fragments, dtype=np.int64)
    if mode == "ms-2tuple":
        zeros = np.zeros(fragments.shape, np.int64)
        return zeros, zeros.copy()
    moved = np.asarray(core) != np.asarray(received_on)
    copies = np.where(moved, np.where(assemble, 1, fragments), 0)
    return moved.astype(np.int64), copies.astype(np.int64)


# -------------------------------------------------------------------------------- routing

@dataclass(frozen=True, slots=True)
class Route:
    """Where a request goes: its policy and the real server (address, port);
    ``service`` is the index of the matched service in ``SystemConfig.services``
    (-1: none)."""

    policy: str
    server_ip: Address
    server_port: int
    service: int = -1


class Router:
    """Service lookup shared by both execution paths (addresses parsed once, here)."""

    def __init__(self, config: SystemConfig):
        self.default_policy = config.policy
        self.services: dict[tuple, tuple[str, list[tuple[Address, int]], int]] = {}
        self.direct: dict[tuple, int] = {}
        for index, service in enumerate(config.services):
            proto = Proto.parse(service.proto)
            vip = parse_address(service.vip, "vip")
            servers = [(parse_address(ip, "server"), port) for ip, port in service.servers]
            self.services[(vip, service.vport, proto)] = (service.policy, servers, index)
            if service.policy == "transparent":
                self.direct.update(((ip, port, proto), index) for ip, port in servers)

    def route(self, dst: Address, dport: int, proto: int, request_hash: int | None) -> Route:
        """The policy and real server for a request to ``dst``:``dport``."""
        found = self.services.get((dst, dport, proto))
        if found is None:
            direct = self.direct.get((dst, dport, proto))
            if direct is not None:
                return Route("transparent", dst, dport, direct)
            return Route(self.default_policy, dst, dport)
        policy, servers, index = found
        if not servers:
            return Route(policy, dst, dport, index)
        ip, port = servers[(request_hash or 0) % len(servers)]
        return Route(policy, ip, port, index)

    def route_batch(self, dst, dport, proto, request_hash, hashed) -> RoutesBatch:
        """``route`` over arrays of IPv4 requests (``dst`` uint32 host values, ports,
        protocol numbers; ``request_hash`` only where ``hashed``, else 0 as in
        ``route``). IPv6 services and servers match no row."""
        dst = np.asarray(dst, dtype=np.uint32)
        dport = np.asarray(dport)
        proto = np.asarray(proto)
        count = dst.shape[0]
        policy = np.full(count, POLICY_CODE[self.default_policy], dtype=np.int8)
        service = np.full(count, -1, dtype=np.int64)
        server_ip = dst.copy()
        server_port = dport.astype(np.uint16, copy=True)
        for (ip, port, number), index in self.direct.items():
            if ip.version == 4:
                match = (dst == int(ip)) & (dport == port) & (proto == number)
                policy[match] = POLICY_CODE["transparent"]
                service[match] = index
        index_hash = np.where(hashed, request_hash, 0).astype(np.uint64)
        for (vip, vport, number), (name, servers, index) in self.services.items():
            if vip.version != 4:
                continue
            match = (dst == int(vip)) & (dport == vport) & (proto == number)
            if not match.any():
                continue
            policy[match] = POLICY_CODE[name]
            service[match] = index
            if servers:
                ips = np.asarray([int(ip) for ip, _ in servers], dtype=np.uint32)
                ports = np.asarray([port for _, port in servers], dtype=np.uint16)
                choice = (index_hash[match] % np.uint64(len(servers))).astype(np.int64)
                server_ip[match] = ips[choice]
                server_port[match] = ports[choice]
        return RoutesBatch(policy, server_ip, server_port, service)

    def route_ipv6_batch(self, dst, dport, proto, request_hash, hashed) -> RoutesBatch:
        """``route_batch`` over arrays of IPv6 requests: ``dst`` an (n, 16) uint8 array
        of addresses in network byte order, and the answer's ``server_ip`` too. IPv4
        services and servers match no row."""
        dst = np.asarray(dst, dtype=np.uint8).reshape(-1, 16)
        dport = np.asarray(dport)
        proto = np.asarray(proto)
        count = dst.shape[0]
        policy = np.full(count, POLICY_CODE[self.default_policy], dtype=np.int8)
        service = np.full(count, -1, dtype=np.int64)
        server_ip = dst.copy()
        server_port = dport.astype(np.uint16, copy=True)

        def at(address, port, number):
            packed = np.frombuffer(address.packed, np.uint8)
            return (dst == packed).all(axis=1) & (dport == port) & (proto == number)

        for (ip, port, number), index in self.direct.items():
            if ip.version == 6:
                match = at(ip, port, number)
                policy[match] = POLICY_CODE["transparent"]
                service[match] = index
        index_hash = np.where(hashed, request_hash, 0).astype(np.uint64)
        for (vip, vport, number), (name, servers, index) in self.services.items():
            if vip.version != 6:
                continue
            match = at(vip, vport, number)
            if not match.any():
                continue
            policy[match] = POLICY_CODE[name]
            service[match] = index
            if servers:
                ips = np.stack([np.frombuffer(ip.packed, np.uint8) for ip, _ in servers])
                ports = np.asarray([port for _, port in servers], dtype=np.uint16)
                choice = (index_hash[match] % np.uint64(len(servers))).astype(np.int64)
                server_ip[match] = ips[choice]
                server_port[match] = ports[choice]
        return RoutesBatch(policy, server_ip, server_port, service)


#: Why a service under a translating policy cannot take an IPv6 flow (transparent takes
#: any: it rewrites nothing). nat replaces the client's IP with "an IP address of the
#: selected core" (seed L538), and the lab's cores have IPv4 addresses only (``ip_pool``,
#: ``shared_ip``); usip keeps the client's IP but picks its port from the core's port
#: allocation tables (L460), which the lab models over IPv4 tuples only. The flow is
#: then refused, as a request no port can be found for is, with this reason.
NOT_SERVED_IPV6 = {
    "nat": "not served: IPv6 flow, nat service has no IPv6 address (the cores' nat "
           "addresses are IPv4)",
    "usip": "not served: IPv6 flow, usip port tables are modelled for IPv4 tuples only",
}


def not_served(policy: str, version: int) -> str | None:
    """Why a request of IP ``version`` routed to ``policy`` is not served (its verdict
    is ``refused``), or None when the policy takes it."""
    return NOT_SERVED_IPV6.get(policy) if version == 6 else None


def not_served_batch(policy, is_v6) -> np.ndarray:
    """``not_served(...) is not None`` per row: ``policy`` holds ``POLICY_CODE`` codes,
    ``is_v6`` is True on IPv6 rows (None: every row is IPv4)."""
    policy = np.asarray(policy)
    if is_v6 is None:
        return np.zeros(policy.shape, dtype=bool)
    codes = [POLICY_CODE[name] for name in NOT_SERVED_IPV6]
    return np.asarray(is_v6, dtype=bool) & np.isin(policy, codes)


@dataclass(frozen=True)
class RoutesBatch:
    """``Router.route_batch``'s answer, one row per request: the policy code
    (``POLICY_CODE``), the real server's address (uint32) and port, and the matched
    service's index (-1: none)."""

    policy: np.ndarray
    server_ip: np.ndarray
    server_port: np.ndarray
    service: np.ndarray


def session_facts(config: SystemConfig, *, service: int, policy: str, pcb_hit: bool,
                  natpcb_hit: bool, owner: int | None = None) -> SessionFacts:
    """The ``SessionFacts`` of traffic that matched service number ``service`` (-1:
    none) under ``policy``, with the given PCB / NAT PCB hits (see
    ``System.session_facts`` for how the lab maps its sessions to them): the assemble
    flag and the service's type come from the service; RNAT is traffic that matched
    no service yet is translated (the default ``nat``/``usip`` policy); ``owner`` the
    core holding the connection."""
    if service >= 0:
        spec = config.services[service]
        return SessionFacts(pcb_hit=pcb_hit, natpcb_hit=natpcb_hit,
                            assemble_flag=spec.assemble_flag,
                            service_is_udp=Proto.parse(spec.proto) == Proto.UDP, rnat=False,
                            owner=owner)
    return SessionFacts(pcb_hit=pcb_hit, natpcb_hit=natpcb_hit, assemble_flag=False,
                        service_is_udp=None, rnat=policy != "transparent", owner=owner)


# --------------------------------------------------------------------------------- timing

#: How a flow's session ends after its response (``Flow.close``): a FIN, an RST, or
#: nothing (the idle timeout ends it). Batch columns hold the index (``CLOSE_CODE``).
CLOSES = ("fin", "rst", "none")
CLOSE_CODE = {name: code for code, name in enumerate(CLOSES)}


def server_latency_us(config: SystemConfig, server: Server | None) -> int:
    """µs a server thinks before it answers: its own ``latency_us``, else the system's
    ``server_us`` (a destination no ``Server`` entry names)."""
    return config.server_us if server is None else server.latency_us


def server_latency_batch(config: SystemConfig, server_ip, server_port) -> np.ndarray:
    """``server_latency_us`` per IPv4 row (uint32 ``server_ip``), int64 µs."""
    server_ip = np.asarray(server_ip)
    server_port = np.asarray(server_port)
    latency = np.full(server_ip.shape[0], config.server_us, dtype=np.int64)
    # One entry per endpoint, the last one given, as the trace path looks servers up.
    last = {(parse_address(server.ip, "server"), server.port): server
            for server in config.servers}
    for (address, port), server in last.items():
        if address.version == 4:
            latency[(server_ip == int(address)) & (server_port == port)] = server.latency_us
    return latency


def close_delay_us(config: SystemConfig, close: str, hold_us: int | None) -> int:
    """µs from a response's delivery to the client until its session ends and frees its
    port: ``fin``/``rst`` after the flow's ``hold_us`` (None: the system's
    ``close_after_us``); ``none`` after the idle timeout (``idle_timeout_us``, counted
    from that last packet)."""
    if close == "none":
        return config.idle_timeout_us
    return config.close_after_us if hold_us is None else hold_us


def close_delay_batch(config: SystemConfig, close, hold_us) -> np.ndarray:
    """``close_delay_us`` per row: ``close`` as ``CLOSE_CODE`` values, ``hold_us`` -1 for
    None (int64 µs)."""
    close = np.asarray(close)
    hold = np.asarray(hold_us, dtype=np.int64)
    delay = np.where(hold < 0, config.close_after_us, hold)
    return np.where(close == CLOSE_CODE["none"], config.idle_timeout_us, delay)


def unanswered_end_us(config: SystemConfig, *, opened_us, now_us):
    """When a session whose response never reached its client ends (lost on the way,
    or in reassembly): the idle timeout counted from its request (``opened_us``, its last
    packet), but never before ``now_us``, the moment the loss is known. Scalars or
    arrays."""
    return np.maximum(now_us, np.asarray(opened_us) + config.idle_timeout_us) if (
        isinstance(opened_us, np.ndarray)) else max(now_us, opened_us + config.idle_timeout_us)


# ------------------------------------------------------------------------------ responses

def response_size_and_mtu(config: SystemConfig, *, server: Server | None, service: int,
                          flow_bytes: int) -> tuple[int, int | None]:
    """``(payload bytes, IP MTU or None)`` of the response a server sends: the server's
    ``response_bytes`` when set, else the flow's; the server's ``mtu``, else its matched
    service's (``service`` -1: none)."""
    size = flow_bytes
    if server is not None and server.response_bytes is not None:
        size = server.response_bytes
    mtu = None if server is None else server.mtu
    if mtu is None and service >= 0:
        mtu = config.services[service].mtu
    return size, mtu


def response_size_and_mtu_batch(config: SystemConfig, *, server_ip, server_port, service,
                                flow_bytes) -> tuple[np.ndarray, np.ndarray]:
    """``response_size_and_mtu`` per IPv4 row (uint32 ``server_ip``); an MTU of 0 means
    none."""
    server_ip = np.asarray(server_ip)
    server_port = np.asarray(server_port)
    service = np.asarray(service)
    size = np.asarray(flow_bytes, dtype=np.int64).copy()
    mtu = np.zeros(server_ip.shape[0], dtype=np.int64)
    for number, spec in enumerate(config.services):
        if spec.mtu is not None:
            mtu[service == number] = spec.mtu
    # One entry per endpoint, the last one given, as the trace path looks servers up.
    last = {(parse_address(server.ip, "server"), server.port): server
            for server in config.servers}
    for (address, port), server in last.items():
        if address.version != 4:
            continue
        match = (server_ip == int(address)) & (server_port == port)
        if server.response_bytes is not None:
            size[match] = server.response_bytes
        if server.mtu is not None:
            mtu[match] = server.mtu
    return size, mtu


# ------------------------------------------------------------------------------- verdicts

def port_steering_text(config: SystemConfig, port_map) -> str:
    """The report's sentence on what a rewritten port can do for symmetry: the port map's
    own (its rank, reachable buckets), unless the NIC hashes TCP or UDP IPv4 responses
    without their ports. Then no port steers a response: nat still chooses its IP
    (the patent's nat picks the IP as well as the port; ``SystemConfig.nat_ip_choice``
    says from which IPs), usip and transparent nothing, and forwarding is what brings a
    misdirected response home (``Summary.ip_choice_line`` gives the measured share)."""
    types = None if config.hash_types is None else set(config.hash_types)
    portless = [] if types is None else [
        proto.upper() for proto in ("tcp", "udp") if f"{proto}-ipv4" not in types]
    if not portless:
        return port_map.describe()
    fate = (f"forwarded to their owner ({config.handoff})" if config.handoff != "none"
            else "lost (forwarding is off)")
    listed = ", ".join(sorted(types)) or "none"
    hashed = [proto for proto in ("TCP", "UDP") if proto not in portless]
    also = f" {' and '.join(hashed)} responses: {port_map.describe()}" if hashed else ""
    if "ipv4" not in types:
        # neither the 4-tuple nor the 2-tuple type: the NIC does not hash them at all
        return (f"The NIC does not hash {' and '.join(portless)} IPv4 responses (hash_types: "
                f"{listed}): they all go to the default core {config.default_core}, and "
                f"nothing nat, usip or transparent may change can steer them; forwarding is "
                f"the answer: misdirected responses are {fate}.{also}")
    if config.shared_ip is not None:
        ips = "its one shared IP (nothing to choose)"
    elif config.nat_ip_choice == "pool":
        ips = f"an IP from the pool of all {config.cores * config.ips_per_core} cores' IPs"
    else:
        ips = f"one of its core's {config.ips_per_core} IPs"
    return (f"The NIC hashes {' and '.join(portless)} IPv4 responses without their ports "
            f"(hash_types: {listed}): no port can steer them. nat chooses {ips} whose "
            f"response hash lands on its core, where one fits; usip and transparent can "
            f"change nothing that steers them, so forwarding is the answer there: "
            f"misdirected responses are {fate}.{also}")


def response_verdict(*, on_owner: bool, landed: int, owner: int | None, route: str,
                     cores: int) -> tuple[str, int, int]:
    """``(verdict, copies, hops)`` of a response that reached core ``landed``:
    ``symmetric`` on the core that owns its session; else ``handed-off`` — forwarded to
    its owner by ``route``, whatever the policy (seed L416: any packet that reaches a core
    other than its owner's) — when a route is configured and the owner is known; else
    ``asymmetric``."""
    if on_owner:
        return "symmetric", 0, 0
    if route != "none" and owner is not None:
        copies, hops = forwarding_cost(route, from_core=landed, to_core=owner, cores=cores)
        return "handed-off", copies, hops
    return "asymmetric", 0, 0


def response_verdict_batch(*, request_core, response_core, route: str, cores: int
                           ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``response_verdict`` per row as ``(VERDICT_CODE codes, copies, hops)``; the owner
    is the request's core (``request_core``)."""
    request_core = np.asarray(request_core)
    response_core = np.asarray(response_core)
    verdict = np.full(np.shape(request_core), VERDICT_CODE["symmetric"], dtype=np.int8)
    copies = np.zeros(np.shape(request_core), dtype=np.int64)
    hops = np.zeros(np.shape(request_core), dtype=np.int64)
    misdirected = response_core != request_core
    if route == "none":
        verdict[misdirected] = VERDICT_CODE["asymmetric"]
        return verdict, copies, hops
    verdict[misdirected] = VERDICT_CODE["handed-off"]
    copies[misdirected], hops[misdirected] = forwarding_cost_batch(
        route, from_core=response_core[misdirected], to_core=request_core[misdirected],
        cores=cores)
    return verdict, copies, hops
