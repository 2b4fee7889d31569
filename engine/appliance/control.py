"""The control core: takes a failed core out of service, brings it back, rebalances.

The patent's control core initialises the data-plane cores and manages the
indirection table. Three operations change which core a bucket names, and each
report says what that did to live sessions (symmetry) and to the buckets (load):

* ``fail_core`` — the failed core's buckets are spread over the cores still up
  (``IndirectionTable.without_cores``) and **its sessions are dropped**, their
  ports freed. Re-homing them is not possible in general: the core's memory (PCB,
  NAT PCB, TCP state) is gone with it; and a ``nat``/``usip`` session's port was
  chosen so that its *response* hashes to one of the failed core's buckets, while
  its client's *request* tuple hashes to a bucket of its own — after the
  redistribution those two buckets usually name two different surviving cores, so
  no single core would see both directions without handing packets over, which is
  exactly what the port choice was for. Clients see their connections reset and
  reconnect; new connections get ports that fit the new table. Sessions of the
  other cores are untouched and stay symmetric: ``without_cores`` moves only the
  failed core's buckets.
* ``restore_core`` — the core's original buckets come back to it (the configured
  table minus cores still failed). Sessions opened meanwhile in those buckets now
  have responses steered to the restored core: ``misdirected`` counts them.
* ``rebalance`` — buckets are reassigned by measured per-bucket request load
  (greedy, ``IndirectionTable.rebalanced``); live sessions in moved buckets become
  misdirected too, so a real system rebalances when few sessions are open.

Port maps follow the new table: each allocator keeps its port allocation tables
(taken ports stay taken) but chooses fitting ports for the new bucket → core map.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from engine.appliance.config import build_allocators
from engine.appliance.ports import PortAllocator
from engine.appliance.verdicts import jain_index
from engine.errors import TableError
from engine.nic.rss import IndirectionTable
from engine.packet.model import Packet

if TYPE_CHECKING:  # the control core acts on a running System; it never builds one
    from engine.paths.trace import System


@dataclass(frozen=True, slots=True)
class ControlReport:
    """What one control-core action changed.

    ``moved_buckets``: buckets whose core changed; ``dropped_sessions`` and
    ``freed_ports``: sessions of a failed core; ``misdirected``: live sessions whose
    response now hashes to a core that does not own them (flow ids in
    ``misdirected_flows``); ``buckets_per_core_*``: the table before and after;
    ``load_fairness_*``: Jain's index of per-core measured request load under each
    table.
    """

    action: str
    core: int | None
    moved_buckets: list[int]
    dropped_sessions: int
    freed_ports: int
    open_sessions: int
    misdirected: int
    misdirected_flows: list[int] = field(default_factory=list)
    buckets_per_core_before: list[int] = field(default_factory=list)
    buckets_per_core_after: list[int] = field(default_factory=list)
    load_fairness_before: float = 1.0
    load_fairness_after: float = 1.0

    def as_dict(self) -> dict:
        return {name: getattr(self, name) for name in self.__slots__}


class ControlCore:
    """The control plane of one ``System``."""

    def __init__(self, system: System):
        self.system = system

    def fail_core(self, core: int) -> ControlReport:
        """Take ``core`` out of service: drop its sessions, move its buckets.

        Raises TableError for a core that does not exist or the last core in service.
        """
        system = self._check(core)
        dropped = freed = 0
        for session in list(system.engines[core].sessions()):
            if session.open:
                dropped += 1
                freed += session.allocation is not None
                system.close_session(session, "core failed")
        system.failed.add(core)
        table = system.nic.table.without_cores(system.failed)
        return self._install("fail", core, table, dropped, freed)

    def restore_core(self, core: int) -> ControlReport:
        """Bring ``core`` back: it gets its configured buckets again."""
        system = self._check(core, failing=False)
        system.failed.discard(core)
        table = system.config.build_table()
        if system.failed:
            table = table.without_cores(system.failed)
        return self._install("restore", core, table, 0, 0)

    def rebalance(self, bucket_load=None) -> ControlReport:
        """Reassign buckets by ``bucket_load`` (per bucket; default: the requests the
        system has seen per bucket). TableError for a load of the wrong length."""
        system = self.system
        load = system.bucket_load if bucket_load is None else bucket_load
        table = system.nic.table.rebalanced(load, exclude=system.failed)
        return self._install("rebalance", None, table, 0, 0)

    def reprogram(self, table: IndirectionTable) -> ControlReport:
        """Install ``table`` as the NIC's indirection table (a scenario's
        ``system.nic.table_change``): sessions whose buckets moved are misdirected
        from now on; the correct-core check forwards their packets to the owner."""
        return self._install("reprogram", None, table, 0, 0)

    def _check(self, core: int, *, failing: bool = True) -> System:
        system = self.system
        if not isinstance(core, int) or not 0 <= core < system.config.cores:
            raise TableError("core", f"a core 0-{system.config.cores - 1}", core)
        if failing and len(system.failed | {core}) >= system.config.cores:
            raise TableError("core", "a core whose failure leaves one in service", core)
        return system

    def _install(self, action: str, core: int | None, table: IndirectionTable,
                 dropped: int, freed: int) -> ControlReport:
        system = self.system
        before = system.nic.table
        load = system.bucket_load
        system.nic.table = table
        fresh = build_allocators(system.config, table)
        for engine, allocators in zip(system.engines, fresh, strict=True):
            engine.allocators = {name: retarget(engine.allocators[name], allocators[name])
                                 for name in allocators}
        sessions = system.sessions()
        misdirected = [s.flow for s in sessions
                       if system.nic.steer(Packet.from_tuple(0, s.response_tuple)).core != s.core]
        return ControlReport(
            action=action, core=core,
            moved_buckets=[b for b in range(table.size) if before.buckets[b] != table.buckets[b]],
            dropped_sessions=dropped, freed_ports=freed, open_sessions=len(sessions),
            misdirected=len(misdirected), misdirected_flows=misdirected,
            buckets_per_core_before=_per_core(before), buckets_per_core_after=_per_core(table),
            load_fairness_before=jain_index(_core_load(before, load, system.failed)),
            load_fairness_after=jain_index(_core_load(table, load, system.failed)))


def retarget(old: PortAllocator, new: PortAllocator) -> PortAllocator:
    """``new`` (built for the new table) carrying ``old``'s port allocation tables, so
    every taken port stays taken. The class layout of a table depends only on the key
    and the hash width, which a table change keeps."""
    new.adopt(old)
    return new


def _per_core(table: IndirectionTable) -> list[int]:
    return [len(table.buckets_of(core)) for core in range(table.cores)]


def _core_load(table: IndirectionTable, bucket_load, failed: set[int]) -> list[int]:
    load = [0] * table.cores
    for bucket, count in enumerate(bucket_load):
        load[table.buckets[bucket]] += count
    return [value for core, value in enumerate(load) if core not in failed]
