"""The software flow distributor: steering done by a core instead of the NIC.

Used when the NIC is RSS-unaware (everything arrives on one queue) and, in the
patent, on every core to forward packets that arrived on the wrong one. Rules
are checked before the hash: an exact 5-tuple, or an address prefix, pinned to
a core. Without a matching rule the distributor computes the same Toeplitz
hash, bucket and core the NIC would.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from engine.errors import ConfigError
from engine.nic.rss import Nic, Steering
from engine.packet.model import FlowTuple, Packet


@dataclass(frozen=True, slots=True)
class Rule:
    """Packets matching ``flow`` exactly, or with a source or destination address inside
    ``prefix``, go to ``core``. Exactly one of ``flow`` and ``prefix`` is set."""

    core: int
    flow: FlowTuple | None = None
    prefix: ipaddress.IPv4Network | ipaddress.IPv6Network | None = None
    match_on: str = "src"  # for a prefix: which address it is compared with, "src" or "dst"

    @classmethod
    def for_prefix(cls, prefix: str, core: int, *, match_on: str = "src") -> Rule:
        try:
            network = ipaddress.ip_network(prefix, strict=False)
        except ValueError:
            raise ConfigError("rule.prefix", "an address prefix like 10.0.0.0/8",
                              prefix) from None
        if match_on not in ("src", "dst"):
            raise ConfigError("rule.match_on", "src or dst", match_on)
        return cls(core, prefix=network, match_on=match_on)

    def matches(self, packet: Packet) -> bool:
        if not packet.is_ip:
            return False
        if self.flow is not None:
            return packet.tuple == self.flow
        address = packet.src if self.match_on == "src" else packet.dst
        return address.version == self.prefix.version and address in self.prefix

    def describe(self) -> str:
        if self.flow is not None:
            return f"rule {self.flow} -> core {self.core}"
        return f"rule {self.match_on} in {self.prefix} -> core {self.core}"


@dataclass
class FlowDistributor:
    """Steers packets to cores in software: rules first, then the NIC's RSS function.

    ``forwarded`` counts packets this distributor moved away from the core that
    received them (a core-to-core copy each).
    """

    nic: Nic
    rules: list[Rule] = field(default_factory=list)
    forwarded: int = 0

    def __post_init__(self):
        for index, rule in enumerate(self.rules):
            if not 0 <= rule.core < self.nic.cores:
                raise ConfigError(f"rules[{index}].core", f"a core 0-{self.nic.cores - 1}",
                                  rule.core)

    def steer(self, packet: Packet) -> Steering:
        for rule in self.rules:
            if rule.matches(packet):
                return Steering(rule.core, reason=rule.describe())
        return self.nic.steer(packet)

    def dispatch(self, packet: Packet, received_on: int) -> Steering:
        """Steer a packet a core received; count a forward when it belongs elsewhere."""
        steering = self.steer(packet)
        if steering.core != received_on:
            self.forwarded += 1
        return steering

    def drain(self) -> list[tuple[Packet, Steering]]:
        """Empty every NIC queue, in queue order, steering each packet (RSS-unaware NICs
        put everything on queue 0; RSS NICs' packets are re-checked against the rules)."""
        steered = []
        for core, queue in enumerate(self.nic.queues):
            while queue:
                packet = queue.popleft()
                steered.append((packet, self.dispatch(packet, core)))
        return steered
