"""The patent's fragmentation table: per core, the decided action for each datagram.

The core that finds a datagram's header records the action (and the destination core)
here, and sends the same row to the destination core; later fragments, which carry no
ports, find it by the datagram's key.
"""

from __future__ import annotations

import ipaddress
from collections import OrderedDict
from dataclasses import dataclass

from engine.appliance.fragments.datagram import DatagramKey
from engine.errors import ConfigError
from engine.packet.model import Address, FlowTuple


@dataclass(frozen=True, slots=True)
class TableEntry:
    """One fragmentation-table row: the action for a datagram, its 4-tuple and the
    destination core. The patent records (src, dst, sport, dport) with the action; the
    row is found by the datagram's key (src, dst, proto, ident) because later fragments
    carry no ports."""

    key: DatagramKey
    flow: FlowTuple
    action: str
    core: int
    rule: str
    t_us: int
    #: ``core`` is the connection's owner (seed L64), not where the 4-tuple hashes
    by_owner: bool = False


class FragmentationTable:
    """Per core: datagram → action, bounded like the reassembler (oldest evicted first,
    rows expire ``timeout_us`` after they were recorded). Raises ConfigError for a
    size or timeout below 1."""

    def __init__(self, *, max_entries: int = 1024, timeout_us: int = 30_000_000):
        if max_entries < 1:
            raise ConfigError("max_entries", "1 or more", max_entries)
        if timeout_us < 1:
            raise ConfigError("timeout_us", "1 or more microseconds", timeout_us)
        self.max_entries = max_entries
        self.timeout_us = timeout_us
        self._rows: OrderedDict[DatagramKey, TableEntry] = OrderedDict()

    def record(self, entry: TableEntry) -> None:
        self._rows.pop(entry.key, None)
        self._rows[entry.key] = entry
        while len(self._rows) > self.max_entries:
            self._rows.popitem(last=False)

    def lookup(self, key: DatagramKey, now_us: int) -> TableEntry | None:
        self.expire(now_us)
        return self._rows.get(key)

    def find(self, src: str | Address, dst: str | Address, sport: int, dport: int,
             ident: int) -> TableEntry | None:
        """The row for (src, dst, sport, dport, ident), as the patent states the key
        (a scan: for reports and tests, not the per-packet path)."""
        src, dst = ipaddress.ip_address(src), ipaddress.ip_address(dst)
        for entry in self._rows.values():
            flow = entry.flow
            if (entry.key.ident == ident and flow.src == src and flow.dst == dst
                    and flow.sport == sport and flow.dport == dport):
                return entry
        return None

    def expire(self, now_us: int) -> None:
        """Drop the rows recorded ``timeout_us`` or more before ``now_us``."""
        rows = self._rows
        while rows and next(iter(rows.values())).t_us + self.timeout_us <= now_us:
            rows.popitem(last=False)
