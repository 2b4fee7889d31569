"""The packet engine: one per core, owning that core's sessions.

A session is created when a client's request reaches the core the NIC steered
it to. The service's policy says what happens to the client side of the tuple
(the patent's three ways):

* ``nat`` — client IP and port are replaced by a local IP and port of this core,
  taken from the core's port allocation tables so that the server's response
  (hashed as it arrives: source = server) lands on one of this core's buckets;
* ``usip`` — the client IP is kept (an audit / security policy), only the port is
  proxied, from one of several tables per local IP picked by a hash of (client
  IP, server IP): ports are scarcer, so there are more tables;
* ``transparent`` — IP and port are kept; nothing is allocated, and a response
  may land on another core, which must hand it over.

Sessions are found two ways, as in the patent: the PCB by the client's request
tuple, and the NAT PCB by the response tuple as it arrives at the NIC. A
session ends on FIN, RST or idle timeout, and its port goes back to its table.

The engine only keeps state; ``engine.paths.trace.System`` drives it and emits the
trace events.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from engine.appliance.ports import Allocation, PortAllocator
from engine.errors import ConfigError
from engine.packet.model import FlowTuple
from engine.packet.toeplitz import parse_address

POLICIES = ("nat", "usip", "transparent")


@dataclass(slots=True)
class Session:
    """One connection on one core (PCB and, when rewritten, NAT PCB in one record).

    ``client`` is the request tuple as the client sent it (client → VIP or server),
    ``server_side`` the tuple as sent to the server; the response arrives on
    ``server_side.reversed()``. ``last_us`` is the virtual time of the last packet.
    ``service`` is the index of the service the request matched (-1: none), which the
    fragmentation action's rules read (its assemble flag and type).
    """

    flow: int
    core: int
    policy: str
    client: FlowTuple
    server_side: FlowTuple
    allocation: Allocation | None
    last_us: int
    open: bool = True
    service: int = -1
    #: The response as it arrives at the NIC: source = server, destination = the
    #: rewritten client side (``server_side.reversed()``).
    response_tuple: FlowTuple = field(init=False)

    def __post_init__(self):
        self.response_tuple = self.server_side.reversed()

    def reverse(self, response: FlowTuple) -> FlowTuple:
        """The response as delivered to the client: from the address the client
        connected to, back to the client's own IP and port."""
        return FlowTuple(self.client.dst, self.client.src, self.client.dport,
                         self.client.sport, response.proto)


class PacketEngine:
    """The packet engine of one core.

    ``allocators`` maps a policy (``nat``, ``usip``) to this core's
    ``PortAllocator`` for it; ``transparent`` needs none.
    """

    def __init__(self, core: int, allocators: dict[str, PortAllocator]):
        self.core = core
        self.allocators = allocators
        self.pcb: dict[FlowTuple, Session] = {}
        self.nat_pcb: dict[FlowTuple, Session] = {}

    def open(self, *, flow: int, request: FlowTuple, server_ip, server_port: int,
             policy: str, now_us: int, service: int = -1,
             addresses_only: bool = False) -> Session:
        """Create the session for ``request`` (client → VIP or server, as sent),
        forwarded to the real server ``server_ip``:``server_port``.

        Raises PortExhausted when no fitting free port is left (the request must then
        be refused, never sent with a port whose response lands elsewhere), and
        ConfigError for an unknown policy. ``service`` is recorded on the session.
        ``addresses_only``: the NIC hashes the response without its ports
        (``PortAllocator.allocate``: nat then steers it by its IP).
        """
        if not isinstance(server_ip, ipaddress.IPv4Address | ipaddress.IPv6Address):
            server_ip = parse_address(server_ip, "server_ip")
        if policy == "transparent":
            allocation = None
            server_side = FlowTuple(request.src, server_ip, request.sport, server_port,
                                    request.proto)
        elif policy in ("nat", "usip"):
            allocation = self.allocators[policy].allocate(
                server_ip=server_ip, server_port=server_port, client_ip=request.src,
                keep_client_ip=policy == "usip", addresses_only=addresses_only)
            server_side = FlowTuple(allocation.local_ip, server_ip, allocation.port,
                                    server_port, request.proto)
        else:
            raise ConfigError("policy", " / ".join(POLICIES), policy)
        session = Session(flow, self.core, policy, request, server_side, allocation, now_us,
                          service=service)
        self.pcb[request] = session
        self.nat_pcb[session.response_tuple] = session
        return session

    def lookup_response(self, response: FlowTuple) -> Session | None:
        """The open session a response (as it arrives) belongs to, on this core only."""
        session = self.nat_pcb.get(response)
        return session if session is not None and session.open else None

    def close(self, session: Session) -> Allocation | None:
        """End ``session``; its port (if any) goes back to the table. Returns the freed
        allocation. Closing twice is a no-op returning ``None``."""
        if not session.open:
            return None
        session.open = False
        # A later flow with the same request tuple (or, transparent, response tuple) took
        # the entry over: it stays, found by that flow.
        if self.pcb.get(session.client) is session:
            del self.pcb[session.client]
        if self.nat_pcb.get(session.response_tuple) is session:
            del self.nat_pcb[session.response_tuple]
        if session.allocation is not None:
            self.allocators[session.policy].release(session.allocation)
        return session.allocation

    def sessions(self) -> list[Session]:
        return list(self.pcb.values())
