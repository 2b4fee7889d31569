"""The software flow distributor: steering done by a core instead of the NIC.

The patent's flow distributor (seed L650-L656) runs on the cores: it takes the
packets a core received and sends each to the core that should process it. The
lab uses it two ways:

* an **RSS-unaware NIC** (``rss_aware=False``) hashes nothing: every packet arrives
  on one receive core (``receive_core``) and the distributor there computes the
  Toeplitz hash, bucket and core the NIC would have, then moves the packet to that
  core — one core-to-core forward per packet that belongs elsewhere;
* **rules**, checked before the hash: an exact 5-tuple, or an address prefix
  (``match_on`` the source or the destination address), pinned to a core. The
  first rule that matches wins; a rule-steered packet is not hashed. On an RSS NIC
  the rules are the distributor's on the core the NIC picked, so a rule that names
  another core costs a forward too.

The rule matching is written once here in two forms side by side — ``rule_index``
for one packet and ``rule_index_batch`` over IPv4 columns — and one property test
(``tests/engine/test_nic.py``) holds them equal::

    >>> from engine import IndirectionTable, Key, Nic
    >>> nic = Nic(key=Key.microsoft(), table=IndirectionTable.round_robin(4, 7))
    >>> distributor = FlowDistributor(nic, (Rule.for_prefix("198.51.100.0/24", 2),),
    ...                               rss_aware=False)
    >>> arrival = distributor.arrive(Packet.from_tuple(
    ...     1, FlowTuple.of("198.51.100.7", "203.0.113.9", 40000, 80)))
    >>> arrival.received_on, arrival.steering.core, arrival.steering.reason
    (0, 2, 'rule src in 198.51.100.0/24 -> core 2')
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from engine.errors import ConfigError
from engine.nic.rss import Nic, Steering
from engine.packet.model import FlowTuple, Packet

MATCH_ON = ("src", "dst")


@dataclass(frozen=True, slots=True)
class Rule:
    """Packets matching ``flow`` exactly (addresses, ports and protocol), or with a
    source or destination address inside ``prefix``, go to ``core``. Exactly one of
    ``flow`` and ``prefix`` is set."""

    core: int
    flow: FlowTuple | None = None
    prefix: ipaddress.IPv4Network | ipaddress.IPv6Network | None = None
    match_on: str = "src"  # for a prefix: which address it is compared with, "src" or "dst"

    @classmethod
    def for_prefix(cls, prefix: str, core: int, *, match_on: str = "src",
                   field: str = "rule") -> Rule:
        """A prefix rule; ConfigError naming ``field``.prefix / .match_on when bad."""
        try:
            network = ipaddress.ip_network(prefix, strict=False)
        except (TypeError, ValueError):
            raise ConfigError(f"{field}.prefix", "an address prefix like 10.0.0.0/8",
                              prefix) from None
        if match_on not in MATCH_ON:
            raise ConfigError(f"{field}.match_on", "src or dst", match_on)
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


def check_rules(rules, cores: int, *, field: str = "rules") -> None:
    """ConfigError naming ``field[i].core`` for a rule whose core the system lacks."""
    for index, rule in enumerate(rules):
        core = rule.core
        if not isinstance(core, int) or isinstance(core, bool) or not 0 <= core < cores:
            raise ConfigError(f"{field}[{index}].core", f"a core 0-{cores - 1}", core)


def rule_index(rules, packet: Packet) -> int:
    """The index of the first rule of ``rules`` that ``packet`` matches, -1 for none."""
    for index, rule in enumerate(rules):
        if rule.matches(packet):
            return index
    return -1


def rule_index_batch(rules, src, dst, sport, dport, proto) -> np.ndarray:
    """``rule_index`` per IPv4 packet given as columns (addresses uint32 host values,
    ports and protocol numbers): int64, -1 where no rule matches. IPv6 rules match no
    row."""
    src = np.asarray(src, dtype=np.uint32)
    dst = np.asarray(dst, dtype=np.uint32)
    found = np.full(src.shape[0], -1, dtype=np.int64)
    # Last rule first, so an earlier rule overwrites a later one: the first match wins.
    for index in range(len(rules) - 1, -1, -1):
        rule = rules[index]
        if rule.flow is not None:
            flow = rule.flow
            if flow.version != 4:
                continue
            match = ((src == int(flow.src)) & (dst == int(flow.dst))
                     & (np.asarray(sport) == flow.sport) & (np.asarray(dport) == flow.dport)
                     & (np.asarray(proto) == flow.proto))
        else:
            if rule.prefix.version != 4:
                continue
            mask = np.uint32(int(rule.prefix.netmask))
            address = src if rule.match_on == "src" else dst
            match = (address & mask) == np.uint32(int(rule.prefix.network_address))
        found[match] = index
    return found


class Arrival(NamedTuple):
    """A packet as the distributor handled it: ``received_on`` the core whose receive
    queue it arrived in (the NIC's RSS core, or the receive core of an RSS-unaware
    NIC), ``steering`` where the distributor sent it (a move when the cores differ)."""

    received_on: int
    steering: Steering

    @property
    def moved(self) -> bool:
        return self.received_on != self.steering.core


@dataclass
class FlowDistributor:
    """Steers packets to cores in software: rules first, then the NIC's RSS function.

    ``rss_aware=False``: the NIC hashes nothing and every packet arrives on
    ``receive_core``. Raises ConfigError naming ``rules[i].core`` or ``receive_core``.
    """

    nic: Nic
    rules: tuple[Rule, ...] = ()
    rss_aware: bool = True
    receive_core: int = 0

    def __post_init__(self):
        self.rules = tuple(self.rules)
        check_rules(self.rules, self.nic.cores)
        core = self.receive_core
        if not isinstance(core, int) or isinstance(core, bool) or not (
                0 <= core < self.nic.cores):
            raise ConfigError("receive_core", f"a core 0-{self.nic.cores - 1}", core)

    def steer(self, packet: Packet) -> Steering:
        """Where the distributor sends ``packet``: the first matching rule's core (not
        hashed), else the core of the NIC's own hash."""
        index = rule_index(self.rules, packet)
        if index >= 0:
            rule = self.rules[index]
            return Steering(rule.core, reason=rule.describe())
        return self.nic.steer(packet)

    def arrive(self, packet: Packet) -> Arrival:
        """``packet`` through the NIC and the distributor on the core that received it."""
        if self.rss_aware and not self.rules:
            steering = self.nic.steer(packet)
            return Arrival(steering.core, steering)
        steering = self.steer(packet)
        if not self.rss_aware:
            return Arrival(self.receive_core, steering)
        if steering.hash is not None:  # no rule matched: the NIC's own choice
            return Arrival(steering.core, steering)
        return Arrival(self.nic.steer(packet).core, steering)

    def arrive_batch(self, src, dst, sport, dport, proto) -> ArrivalBatch:
        """``arrive`` over IPv4 columns, with ``Nic.steer_batch``'s hash-type choice; a
        rule's row is not hashed (``hashed`` False), as ``steer`` treats it."""
        hashes, hashed, cores = self.nic.steer_batch(src, dst, sport, dport, proto)
        received_on = (cores.copy() if self.rss_aware
                       else np.full(cores.shape, self.receive_core, np.int64))
        index = np.full(cores.shape, -1, np.int64)
        if self.rules:
            index = rule_index_batch(self.rules, src, dst, sport, dport, proto)
            ruled = index >= 0
            if ruled.any():
                targets = np.asarray([rule.core for rule in self.rules], np.int64)
                cores = cores.copy()
                cores[ruled] = targets[index[ruled]]
                hashed = hashed & ~ruled
        return ArrivalBatch(hashes, hashed, cores, received_on, index)

    def reason(self, rule: int, hashed: bool) -> str:
        """``Steering.reason`` of an IPv4 row of ``arrive_batch`` (its ``rule`` index and
        ``hashed`` flag), as ``steer`` words it."""
        if rule >= 0:
            return self.rules[rule].describe()
        return "hash" if hashed else "default core (no enabled hash type)"


class ArrivalBatch(NamedTuple):
    """``FlowDistributor.arrive_batch``'s columns: ``hashes`` (uint32), ``hashed``
    (bool), ``cores`` where the distributor sent each row and ``received_on`` the core
    that received it (int64), ``rule`` the matching rule's index (-1: none)."""

    hashes: np.ndarray
    hashed: np.ndarray
    cores: np.ndarray
    received_on: np.ndarray
    rule: np.ndarray
