"""The rules of the model that both execution paths call: the trace path with one flow's
scalars, the batch path with whole arrays. Where a rule needs both forms they sit side by
side here, and one property test holds them equal (tests/engine/test_rules.py).

Each rule is written once; the paths keep no copy of their own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from engine.appliance.fragments import ASSEMBLE, SessionFacts
from engine.packet.model import Address, Proto
from engine.packet.toeplitz import parse_address

if TYPE_CHECKING:
    from engine.appliance.config import SystemConfig

IPV4_HEADER = 20
#: The smallest MTU that can carry a fragment: a 20-byte IPv4 header + 8 bytes (IPv6
#: needs 56: 40-byte header + 8-byte Fragment header + 8; ``fragment_packet`` checks it).
MIN_MTU = IPV4_HEADER + 8


def l4_header_bytes(proto: int) -> int:
    """Bytes of L4 header the lab's packets carry (as ``packet.to_scapy`` builds them):
    20 for TCP (no options), 8 for UDP, 0 for any other protocol."""
    return 20 if proto == Proto.TCP else 8 if proto == Proto.UDP else 0


def fragment_count(version: int, proto: int, payload: int, mtu: int | None) -> int:
    """How many fragments ``fragment_packet`` cuts a packet of ``payload`` L4 payload
    bytes into for an IP MTU of ``mtu`` bytes; 0 when it fits (or ``mtu`` is None)."""
    if mtu is None:
        return 0
    data = l4_header_bytes(proto) + payload
    header = IPV4_HEADER if version == 4 else 40
    if data + header <= mtu:
        return 0
    step = (mtu - (IPV4_HEADER if version == 4 else 48)) // 8 * 8
    return -(-data // step)


def fragment_cost(mode: str, fragments: int, action: str | None, received_on: int,
                  core: int) -> tuple[int, int]:
    """``(action messages, copies)`` of one delivered datagram: under
    ``reassemble-header``/``default-core``, when the core that found the header is not
    the destination, one action message, plus one reassembled-packet copy (Assemble)
    or one copy per fragment (Bridge); ``ms-2tuple`` moves nothing."""
    if mode == "ms-2tuple" or core == received_on:
        return 0, 0
    return 1, 1 if action == ASSEMBLE else fragments


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


def session_facts(config: SystemConfig, *, service: int, policy: str, pcb_hit: bool,
                  natpcb_hit: bool) -> SessionFacts:
    """The ``SessionFacts`` of traffic that matched service number ``service`` (-1:
    none) under ``policy``, with the given PCB / NAT PCB hits (see
    ``System.session_facts`` for how the lab maps its sessions to them): the assemble
    flag and the service's type come from the service; RNAT is traffic that matched
    no service yet is translated (the default ``nat``/``usip`` policy)."""
    if service >= 0:
        spec = config.services[service]
        return SessionFacts(pcb_hit=pcb_hit, natpcb_hit=natpcb_hit,
                            assemble_flag=spec.assemble_flag,
                            service_is_udp=Proto.parse(spec.proto) == Proto.UDP, rnat=False)
    return SessionFacts(pcb_hit=pcb_hit, natpcb_hit=natpcb_hit, assemble_flag=False,
                        service_is_udp=None, rnat=policy != "transparent")
