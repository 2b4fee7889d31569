"""Port allocation tables: one core's ports for one local IP and table index.

``PortAllocationTable`` holds each port's ``PortState`` and, per port class, a pool of
free ports, so that taking a port whose response lands on a bucket is a pop from the
pool of a class that lands there. It hands out ports as its allocator asks
(``pop_first`` for ``solve``, ``take`` for ``scan``, ``take_ranked`` for the batch path)
and keeps the pools' invariants itself. ``PortRange`` is the ports a table may hand out.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterator
from dataclasses import dataclass
from enum import IntEnum

import numpy as np

from engine.appliance.ports.response_map import PORTS, Address, ResponsePortMap
from engine.errors import ConfigError, PortStateError
from engine.packet.toeplitz import check_port

#: a state no port has, marking the ports ``release_many`` frees while it counts them
_MARK = 255


class PortState(IntEnum):
    """The state of one port in one table. Ports outside the table's range are CLOSED."""

    FREE = 0
    TAKEN = 1
    CLOSED = 2


@dataclass(frozen=True, slots=True)
class PortRange:
    """The ports a table may hand out, ``low``-``high`` inclusive (host integers).

    Raises ConfigError unless 0 <= low <= high <= 65535.
    """

    low: int = 1024
    high: int = 65535

    def __post_init__(self):
        for name, value in (("low", self.low), ("high", self.high)):
            if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < PORTS:
                raise ConfigError(f"port_range.{name}", "a port number 0-65535", value)
        if self.low > self.high:
            raise ConfigError("port_range", "low <= high", f"{self.low}-{self.high}")

    @property
    def size(self) -> int:
        return self.high - self.low + 1

    def __contains__(self, port: int) -> bool:
        return self.low <= port <= self.high


class PortAllocationTable:
    """One port allocation table: one core, one local IP, one table index.

    ``states`` holds a PortState per port (a bytearray of 65536; a writable NumPy
    view is ``state_array``). The free ports of class k are the array ``pools[k]``
    (uint16, popped from the end: the lowest port first on a fresh table); taking
    pops or swaps the last entry into the taken port's place, releasing appends, so
    every operation but taking one given port (a C-level search of its class) is O(1).
    ``fitting[constant]`` (for a table of an allocator that takes ``allocate``'s fast
    path; None otherwise) is the pair (the pools of the classes that land on the
    allocator's core, by ascending bucket; those buckets) for a flow with that port-0
    constant: ``solve`` reads one entry and pops.

    ``states`` and the pools in ``fitting`` are the table's own state, public for one
    reader: ``PortAllocator.allocate``'s fast path pops a port from a ``fitting`` pool
    and writes ``TAKEN`` into ``states`` itself, because a method call would cost a
    tenth of an allocation. Everything else reads ``states`` only and changes a port
    through ``take``, ``release``, ``close``, ``reopen`` or the ``pop_first`` and
    ``take_ranked`` of the strategies.
    """

    # slots: the allocation fast path reads three of these per call
    __slots__ = ("port_map", "port_range", "local_ip", "index", "_classes", "_pools",
                 "fitting", "states", "closed", "cursor", "_moved")

    def __init__(self, port_map: ResponsePortMap, port_range: PortRange = PortRange(), *,
                 local_ip: Address | None = None, index: int = 0,
                 fit: list[tuple[int, ...]] | None = None):
        self.port_map = port_map
        self.port_range = port_range
        self.local_ip = local_ip
        self.index = index
        self._pools: list[array] = port_map.fresh_pools(port_range)
        self.refit(port_map, fit)
        self.states = bytearray(PORTS)
        self.states[:port_range.low] = bytes([PortState.CLOSED]) * port_range.low
        self.states[port_range.high + 1:] = bytes([PortState.CLOSED]) * (PORTS - 1
                                                                          - port_range.high)
        #: ports in range that are closed (outside the range every port is)
        self.closed = 0
        self.cursor = port_range.low
        #: a port went back to a pool or left one out of turn, so the pools' order may
        #: differ from a fresh table's
        self._moved = False

    def refit(self, port_map: ResponsePortMap, fit: list[tuple[int, ...]] | None) -> None:
        """Answer to ``port_map`` (same key and hash width: the same port classes) and to
        ``fit``, the fitting classes of the owning allocator's core per constant."""
        self.port_map = port_map
        self._classes = port_map.class_list
        self.fitting: list[tuple[tuple[array, ...], tuple[int, ...]]] | None = None if (
            fit is None) else [(tuple(self._pools[k] for k in classes),
                                tuple(constant ^ k for k in classes))
                               for constant, classes in enumerate(fit)]

    @property
    def capacity(self) -> int:
        """Ports in range that are not closed."""
        return self.port_range.size - self.closed

    @property
    def free(self) -> int:
        """Free ports (in range, neither taken nor closed)."""
        return sum(map(len, self._pools))

    @property
    def taken(self) -> int:
        """Ports taken: in range, neither free nor closed (counted, not tracked, so that
        taking a port writes nothing but its state and its pool)."""
        return self.port_range.size - self.closed - self.free

    @property
    def occupancy(self) -> float:
        """Taken / capacity (1.0 for a table whose every port in range is closed)."""
        capacity = self.capacity
        return self.taken / capacity if capacity else 1.0

    @property
    def state_array(self) -> np.ndarray:
        return np.frombuffer(self.states, dtype=np.uint8)

    def state(self, port: int) -> PortState:
        return PortState(self.states[check_port(port, "port")])

    def free_in_class(self, cls: int) -> int:
        return len(self._pools[cls])

    def free_counts(self) -> list[int]:
        """Free ports per class."""
        return list(map(len, self._pools))

    def pristine(self) -> bool:
        """True when the table is as if never created: nothing taken or closed, no port
        moved out of turn, no scan begun."""
        return (not self._moved and not self.closed and self.cursor == self.port_range.low
                and self.free == self.port_range.size)

    def _where(self) -> str:
        return f"table {self.index} of {self.local_ip}" if self.local_ip else "table"

    def _remove(self, port: int) -> None:
        """Take free ``port`` out of its pool: the pool's last entry takes its place."""
        pool = self._pools[self._classes[port]]
        last = pool.pop()
        if last != port:  # search only when it is not the last (array.index boxes each entry)
            pool[pool.index(port)] = last
        self._moved = True

    def _add(self, port: int) -> None:
        self._pools[self._classes[port]].append(port)
        self._moved = True

    def has_free(self, classes: tuple[int, ...]) -> bool:
        """True when some class of ``classes`` has a free port."""
        pools = self._pools
        return any(pools[k] for k in classes)

    def pop_first(self, classes: tuple[int, ...], offset: int) -> int | None:
        """``solve``'s choice: the first of ``classes`` (from ``offset``, cyclically) with
        a free port gives its pool's last port (the lowest on a fresh table), now taken;
        None when none of them has one."""
        pools = self._pools
        length = len(classes)
        for i in range(length):
            pool = pools[classes[(offset + i) % length]]
            if pool:
                port = pool.pop()
                self.states[port] = PortState.TAKEN
                return port
        return None

    def free_ports(self, classes: tuple[int, ...], offset: int) -> Iterator[int]:
        """The free ports of ``classes`` in the order ``pop_first`` would take them: class
        by class from ``offset`` (cyclically), each pool from its end. Stop iterating
        once a port is taken."""
        for i in range(len(classes)):
            yield from reversed(self._pools[classes[(offset + i) % len(classes)]])

    def take(self, port: int) -> None:
        """Mark a free port taken. PortStateError unless it is free."""
        port = check_port(port, "port")
        if self.states[port] != PortState.FREE:
            raise PortStateError("port", "a free port", port,
                                 detail=f"it is {self.state(port).name.lower()} in "
                                        f"{self._where()}")
        self._remove(port)
        self.states[port] = PortState.TAKEN

    def release(self, port: int) -> None:
        """Free a taken port (session end). A port closed meanwhile stays closed.
        PortStateError when the port is free (a double release)."""
        port = check_port(port, "port")
        state = self.states[port]
        if state == PortState.FREE:
            raise PortStateError("port", "a taken port", port,
                                 detail=f"it is already free in {self._where()}")
        if state == PortState.TAKEN:
            self.states[port] = PortState.FREE
            self._add(port)

    def close(self, port: int) -> None:
        """Close a port (an administrator's or the system's decision); idempotent."""
        port = check_port(port, "port")
        state = self.states[port]
        if state == PortState.FREE:
            self._remove(port)
        if state != PortState.CLOSED:  # free or taken: a port in range
            self.closed += 1
        self.states[port] = PortState.CLOSED

    def reopen(self, port: int) -> None:
        """Return a closed port to the free pool. PortStateError outside the range."""
        port = check_port(port, "port")
        if port not in self.port_range:
            raise PortStateError("port", f"a port in {self.port_range.low}-"
                                 f"{self.port_range.high}", port)
        if self.states[port] == PortState.CLOSED:
            self.states[port] = PortState.FREE
            self.closed -= 1
            self._add(port)

    def take_many(self, ports) -> None:
        """Take many free ports at once (a vectorised pre-fill). The free pools keep their
        relative order. PortStateError if any port is not free or repeats."""
        ports = np.asarray(ports, dtype=np.int64)
        state = self.state_array
        if ports.size == 0:
            return
        if np.unique(ports).size != ports.size or (state[ports] != PortState.FREE).any():
            bad = ports[state[ports] != PortState.FREE]
            raise PortStateError("ports", "distinct free ports",
                                 int(bad[0]) if bad.size else "a repeated port")
        state[ports] = PortState.TAKEN
        for cls in np.unique(self.port_map.classes[ports]).tolist():
            pool = self._pools[cls]
            left = array("H")
            members = np.frombuffer(pool, dtype=np.uint16)
            left.frombytes(members[state[members] == PortState.FREE].tobytes())
            del members  # a NumPy view pins the array's size
            pool[:] = left  # in place: ``fitting`` holds the pool itself
        self._moved = True

    def release_many(self, ports, *, by_class: bool = False) -> None:
        """Free taken ports in the order given: the same states and pools as ``release``
        called port by port (each class's pool gets its ports appended in that order;
        a port closed meanwhile stays closed). ``by_class``: the caller grouped ``ports``
        by class already (a stable sort), so they are not sorted again. PortStateError
        when a port is free or repeats (a double release)."""
        ports = np.asarray(ports, dtype=np.int64)
        if ports.size == 0:
            return
        state = self.state_array
        now = state[ports]
        if (now == PortState.FREE).any():
            raise PortStateError("ports", "taken ports", int(ports[now == PortState.FREE][0]),
                                 detail=f"it is already free in {self._where()}")
        ports = ports[now == PortState.TAKEN]
        state[ports] = _MARK  # a repeated port marks one entry for two: counted, not sorted
        if np.count_nonzero(state[ports.min():ports.max() + 1] == _MARK) != ports.size:
            state[ports] = PortState.TAKEN
            raise PortStateError("ports", "distinct taken ports", "a repeated port",
                                 detail=f"in {self._where()}")
        state[ports] = PortState.FREE
        classes = self.port_map.classes[ports]
        order = slice(None) if by_class else np.argsort(classes, kind="stable")
        grouped = classes[order]
        bounds = [0, *(np.flatnonzero(np.diff(grouped)) + 1).tolist(), grouped.size]
        values = ports[order].astype(np.uint16)
        for begin, end in zip(bounds[:-1], bounds[1:], strict=True):
            if end > begin:
                self._pools[int(grouped[begin])].frombytes(values[begin:end].tobytes())
        self._moved = True

    def take_ranked(self, classes: np.ndarray, ranks: np.ndarray) -> np.ndarray:
        """Take, for each row, the port ``ranks[i]`` places before the end of the pool of
        class ``classes[i]``: what popping in row order gives when the ranks of a class
        are 0, 1, 2 ... (the batch path's pop; the caller checked the pools hold them)."""
        sizes = np.fromiter(map(len, self._pools), dtype=np.int64, count=len(self._pools))
        flat = np.frombuffer(b"".join(self._pools), dtype=np.uint16)
        ports = flat[np.cumsum(sizes)[classes] - 1 - ranks]
        self.state_array[ports] = PortState.TAKEN
        taken = np.bincount(classes, minlength=sizes.size)
        for cls in np.flatnonzero(taken).tolist():
            del self._pools[cls][sizes[cls] - taken[cls]:]
        return ports

    def snapshot(self) -> tuple:
        """Everything that decides future allocations, for equality checks."""
        return (bytes(self.states), tuple(pool.tobytes() for pool in self._pools),
                self.closed, self.cursor)


