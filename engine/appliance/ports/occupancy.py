"""``port_occupancy`` and ``port_capacity``: how full a core's port allocation tables
are, for the verdict's per-core occupancy figures (both execution paths report them)."""

from __future__ import annotations

from engine.appliance.ports.allocator import PortAllocator


def port_occupancy(allocators: dict[str, PortAllocator]) -> float:
    """Taken ports / capacity, summed over the port allocation tables a core's allocators
    have created so far (nat: one per local IP; usip: per client IP and table index)."""
    taken = capacity = 0
    for allocator in allocators.values():
        for table in allocator.tables.values():
            taken += table.taken
            capacity += table.capacity
    return taken / capacity if capacity else 0.0


def port_capacity(allocators: dict[str, PortAllocator]) -> int:
    """Ports in range and not closed, summed over the tables of a core's allocators that
    have been used (handed out a port, or had one closed): the denominator of the peak
    occupancy. Tables created but never used are left out, so both paths give the same
    figure although the batch path creates the tables a flow *may* try up front."""
    return sum(table.capacity for allocator in allocators.values()
               for table in allocator.tables.values() if not table.pristine())
