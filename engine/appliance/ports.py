"""Port allocation tables and the two port-choice strategies (``scan`` and ``solve``).

A packet engine that rewrites a client's port must pick one whose *response*
comes back to its own core. The response arrives as (src = server IP, dst =
local IP, sport = server port, dport = PORT) and the NIC hashes it as it
arrives. Toeplitz is linear over GF(2), so::

    hash(response) = hash(same tuple with PORT = 0)  XOR  contribution(PORT)

and the low ``hash_bits`` bits of ``contribution(PORT)`` — the port's *class* —
are a linear map of PORT's 16 bits: a (hash_bits x 16) binary matrix fixed by
the key (PORT is input bytes 10-11 of IPv4's 12, 34-35 of IPv6's 36). The bucket
a response lands in is ``constant XOR class(PORT)``, where ``constant`` is the
low bits of the hash with PORT = 0. ``solve`` keeps, per table, a pool of free
ports for every class and takes one from a class that lands on the core (a
complement table, the idea of DPDK's predictable RSS, not its code); ``scan`` is
the patent's loop: next port, hash the real response tuple, check the core,
check the port is free, repeat. Where the matrix is singular, some buckets are
out of the port's reach: ``ResponsePortMap.describe`` says which, and the
allocator then tries another IP (``nat``) or says it cannot (``usip``)::

    >>> from engine import IndirectionTable, Key
    >>> from engine.appliance.ports import PortAllocator, ResponsePortMap
    >>> port_map = ResponsePortMap(Key.microsoft(), IndirectionTable.round_robin(4, 7))
    >>> allocator = PortAllocator(2, ["10.0.0.2"], port_map)
    >>> got = allocator.allocate(server_ip="192.0.2.10", server_port=80,
    ...                          client_ip="198.51.100.7", keep_client_ip=False)
    >>> port_map.table.buckets[got.bucket]
    2

Conventions and deviations from the first brief (read these before calling):

* Addresses may be given as text or ``ipaddress`` objects everywhere; in the
  batch path as uint32 host-order integers (``int(IPv4Address)``).
* ``direction="request"`` builds the *wrong* map (the classic bug): the port is
  placed where the request-direction tuple has it (src = local IP, dst =
  server, sport = PORT; bytes 8-9 / 32-33). ``transform`` may be ``none`` or
  ``symmetric-xor`` (still linear); ``sort`` is not linear and is refused.
* ``spread=True`` (the default): with ``x`` = client IP XOR server IP, nat tries
  the core's local IPs in cyclic order *starting at* ``(x mod 241) mod
  len(local_ips)`` and both strategies try the fitting classes starting at
  ``(x mod 251) mod (number of fitting classes)``. Two primes: every bit of ``x``
  counts, and the IP and the class are picked independently. That spreads flows
  over IPs and classes, so pools drain evenly; it is cheap because it stays within
  small integers (a multiplicative hash of ``x`` cost a tenth of an allocation).
  ``spread=False`` gives the plain order: IPs as listed, classes by ascending
  bucket. The home table of a local IP is ``h2' mod tables_per_ip`` with
  ``h2'`` the 2-tuple hash of (local IP, server IP) — in usip the local IP *is*
  the client IP, which is the patent's "hash of the client IP address and the
  destination IP address". When the home table has no fitting free port the
  next tables (cyclically) are tried.
* usip's tables are the core's, shared by all its clients ("a plurality of port
  allocation tables on each core"), keyed by ``PortAllocator.shared_ip``
  (0.0.0.0); ``Allocation.table_ip`` says so, ``local_ip`` is still the
  client's. So memory follows the configuration (cores x tables), not the
  number of clients.
* Several tables can hand out the same port number; two sessions with
  the same (local IP, server IP, server port) must not. With
  ``tables_per_ip > 1`` the allocator therefore keeps a session index and
  refuses a port that another session of the same (local IP, server IP, server
  port) holds in any table (otherwise overflowing to the next table could
  silently duplicate a response tuple).
* ``tries``: for ``solve``, the number of tables examined; for ``scan``, the
  number of candidate ports the patent's loop examines (summed over the tables
  examined). A table where the loop cannot succeed — no port class of the flow's
  constant lands on the core (the key's port matrix is singular: the rank leaves
  the core out of the port's reach), or every port of the classes that do is taken
  or closed — is refused without hashing, counting the whole range as the loop
  would (same decisions, same ``tries``); ``PortAllocator.scan_hashes`` counts the
  candidates scan really hashed (``scan_shortcut=False`` restores the full loop).
* ``scan`` and ``solve`` generally choose *different* ports from the same state:
  ``scan`` takes the next fitting free port after the table's cursor (which
  starts at the range's low end and wraps), ``solve`` takes the top of the
  first fitting class pool that has a free port. Each is identical between its
  scalar and batch versions; batch ``scan`` runs the scalar loop with the class
  trick instead of re-hashing bytes (same decisions, proven by the tests).
* ``Allocation`` also carries ``server_ip`` and ``server_port`` (needed to
  release a session of a multi-table allocator).
* Scalar ``solve`` with ``IPv4Address`` objects, one table per IP and no input
  transform takes a flattened path in ``allocate`` (same decisions as the general
  one, which text addresses and every other case take): the constant is the XOR of
  a cached (server IP, server port) part and a precomputed local-IP part, and the
  table's ``fitting`` entry for that constant holds the pools to try and their
  buckets. ``scan`` always hashes the real response bytes per candidate.
"""

from __future__ import annotations

import ipaddress
from array import array
from dataclasses import dataclass
from enum import IntEnum
from typing import NamedTuple

import numpy as np

from engine.errors import ConfigError, PortExhausted, PortStateError, TableError
from engine.nic.rss import IndirectionTable, Transform, transform_input
from engine.packet.toeplitz import Key, check_port, parse_address, toeplitz_hash, word_tables

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
DIRECTIONS = ("response", "request")
STRATEGIES = ("solve", "scan")
PORTS = 65536
#: at most this many (server IP, server port) partial constants are cached per map
_PART_CACHE = 1 << 16
#: the spread's moduli (primes): where nat starts among local IPs, where both strategies
#: start among the fitting classes
IP_SPREAD, CLASS_SPREAD = 241, 251
_NO_PARTS: dict[int, int] = {}  # what the part cache holds for a port never seen
_V4 = ipaddress.IPv4Address
#: usip port allocation tables a system may have in all (cores x tables per core). A
#: table costs about 200 KiB once used (64 KiB of port state, 2 bytes per port of its
#: range in the free pools), so 2,048 tables stay under about 420 MiB. The patent's 256
#: tables per core fit 8 cores; its 64, 32 cores.
MAX_USIP_TABLES = 2048

_new_tuple = tuple.__new__
_TAKEN = 1  # PortState.TAKEN as a plain int (an enum member lookup costs 70 ns)


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


def gf2_rank(columns: list[int]) -> int:
    """Rank over GF(2) of the vectors given as integers (bit i = row i)."""
    basis: list[int] = []
    for vector in columns:
        for b in basis:
            vector = min(vector, vector ^ b)
        if vector:
            basis.append(vector)
    return len(basis)


def _address(value, field: str) -> Address:
    return parse_address(value, field)


class ResponsePortMap:
    """Which bucket a response lands in, as a function of the rewritten port.

    ``matrix[i, j]`` (uint8, hash_bits x 16) is bit i (value ``1 << i``) of the
    class of port ``1 << j``; ``classes[p]`` is the class of every port p; the
    ``span`` is the set of classes any port can produce (``2 ** rank`` of them).
    ``family`` is 4 or 6; ``direction`` is ``"response"`` (right) or ``"request"``
    (the wrong-direction teaching variant); ``transform`` is the NIC's input
    transform (``none`` or ``symmetric-xor``).

    Raises ConfigError for a bad family, direction or a non-linear transform, and
    HashKeyError (from the hash) when the key is too short for the input.
    """

    def __init__(self, key: Key, table: IndirectionTable, *, family: int = 4,
                 direction: str = "response", transform: Transform | str = Transform.NONE):
        if family not in (4, 6):
            raise ConfigError("family", "4 or 6", family)
        if direction not in DIRECTIONS:
            raise ConfigError("direction", " or ".join(DIRECTIONS), direction)
        try:
            transform = Transform(transform)
        except ValueError:
            raise ConfigError("transform", "none or symmetric-xor", transform) from None
        if transform is Transform.SORT:
            raise ConfigError("transform", "none or symmetric-xor (a linear transform)",
                              transform.value,
                              detail="sorting ports is not linear over GF(2); use scan")
        self.key = key
        self.table = table
        self.family = family
        self.direction = direction
        self.transform = transform
        self.hash_bits = table.hash_bits
        self.mask = table.mask
        self.address_bytes = 4 if family == 4 else 16
        self.input_bytes = 2 * self.address_bytes + 4
        toeplitz_hash(key, bytes(self.input_bytes))  # HashKeyError if the key is too short
        first_port_word = self.address_bytes  # word index of sport: 2 * (address_bytes / 2)
        if transform is Transform.SYMMETRIC_XOR:
            self.port_words = (first_port_word, first_port_word + 1)
        else:
            self.port_words = (first_port_word + (1 if direction == "response" else 0),)
        tables = word_tables(key.data)
        contribution = np.zeros(PORTS, dtype=np.uint32)
        for word in self.port_words:
            contribution ^= tables[word]
        self.classes: np.ndarray = (contribution & self.mask).astype(np.uint8)
        columns = [int(self.classes[1 << j]) for j in range(16)]
        self.matrix: np.ndarray = np.array(
            [[(column >> i) & 1 for column in columns] for i in range(self.hash_bits)],
            dtype=np.uint8)
        self.rank: int = gf2_rank(columns)
        self.full_rank: bool = self.rank == self.hash_bits
        self.span: frozenset[int] = frozenset(np.unique(self.classes).tolist())
        self._class_list: list[int] = self.classes.tolist()
        self._buckets = table.buckets
        self._layouts: dict[PortRange, list[array]] = {}
        self._fits: dict[int, list[tuple[int, ...]]] = {}
        self._rows: list[list[int]] | None = None
        self._pair_rows: list[list[int]] | None = None
        #: IPv4 without a transform: the constant splits into a server part (server IP
        #: and port) and a local part (local IP), XORed; both are cached by integer
        self._split: bool = family == 4 and transform is Transform.NONE
        #: server port -> server IP -> part (two small-integer keys: a combined 48-bit
        #: key costs twice as much to build and hash)
        self._server_parts: dict[int, dict[int, int]] = {}
        self._server_part_count = 0

    # -- scalar ----------------------------------------------------------------------------

    def port_class(self, port: int) -> int:
        """The low ``hash_bits`` bits of the port's hash contribution."""
        return self._class_list[check_port(port, "port")]

    def hash_input(self, server_ip, local_ip, server_port: int, port: int) -> bytes:
        """The bytes this map's NIC hashes for the flow, transform applied (network order).

        ``direction="response"``: server IP | local IP | server port | port;
        ``"request"``: local IP | server IP | port | server port.
        """
        server, local = _address(server_ip, "server_ip"), _address(local_ip, "local_ip")
        self._check_family(server, "server_ip")
        self._check_family(local, "local_ip")
        sport, port = check_port(server_port, "server_port"), check_port(port, "port")
        if self.direction == "response":
            data = server.packed + local.packed + sport.to_bytes(2, "big") + port.to_bytes(2, "big")
        else:
            data = local.packed + server.packed + port.to_bytes(2, "big") + sport.to_bytes(2, "big")
        return transform_input(self.transform, data)

    def response_hash(self, server_ip, local_ip, server_port: int, port: int) -> int:
        """The full 32-bit hash of ``hash_input`` (the real Toeplitz hash, no class trick)."""
        return toeplitz_hash(self.key, self.hash_input(server_ip, local_ip, server_port, port))

    def response_constant(self, server_ip, local_ip, server_port: int) -> int:
        """Low ``hash_bits`` bits of the hash with PORT = 0: bucket = constant ^ class."""
        return self.response_hash(server_ip, local_ip, server_port, 0) & self.mask

    def _check_family(self, address: Address, field: str) -> None:
        if address.version != self.family:
            raise ConfigError(field, f"an IPv{self.family} address (the map's family)",
                              str(address))

    def _constant_fast(self, server: int, local: int, server_port: int) -> int:
        """``response_constant`` from integer addresses; word-table lookups for IPv4."""
        if self.family == 4 and self.transform is Transform.NONE:
            rows = self._lookup_rows()
            if self.direction == "response":
                return (rows[0][server >> 16] ^ rows[1][server & 0xFFFF] ^ rows[2][local >> 16]
                        ^ rows[3][local & 0xFFFF] ^ rows[4][server_port])
            return (rows[0][local >> 16] ^ rows[1][local & 0xFFFF] ^ rows[2][server >> 16]
                    ^ rows[3][server & 0xFFFF] ^ rows[5][server_port])
        width = self.address_bytes
        s, c = server.to_bytes(width, "big"), local.to_bytes(width, "big")
        p = server_port.to_bytes(2, "big")
        data = s + c + p + b"\0\0" if self.direction == "response" else c + s + b"\0\0" + p
        return toeplitz_hash(self.key, transform_input(self.transform, data)) & self.mask

    def warm_up(self) -> None:
        """Build the word tables the IPv4 fast path reads (built on first use otherwise),
        so that a benchmark or a first allocation does not pay for them."""
        self._lookup_rows()

    def _lookup_rows(self) -> list[list[int]]:
        rows = self._rows
        if rows is None:
            rows = self._rows = (word_tables(self.key.data)[:6] & self.mask).tolist()
        return rows

    def _server_part(self, server: int, server_port: int) -> int:
        """The server IP's and server port's share of ``_constant_fast`` (IPv4, no
        transform: Toeplitz is linear, so constant = server part ^ local part), cached
        under ``server_port << 32 | server``."""
        rows = self._lookup_rows()
        if self.direction == "response":
            part = rows[0][server >> 16] ^ rows[1][server & 0xFFFF] ^ rows[4][server_port]
        else:
            part = rows[2][server >> 16] ^ rows[3][server & 0xFFFF] ^ rows[5][server_port]
        parts = self._server_parts
        if self._server_part_count >= _PART_CACHE:
            parts.clear()  # bounded: a long run over many servers starts afresh
            self._server_part_count = 0
        parts.setdefault(server_port, {})[server] = part
        self._server_part_count += 1
        return part

    def _local_part(self, local: int) -> int:
        """The local IP's share of ``_constant_fast`` (IPv4, no transform)."""
        rows = self._lookup_rows()
        if self.direction == "response":
            return rows[2][local >> 16] ^ rows[3][local & 0xFFFF]
        return rows[0][local >> 16] ^ rows[1][local & 0xFFFF]

    def response_bucket(self, constant: int, port: int) -> int:
        return (constant ^ self._class_list[port]) & self.mask

    def fitting_classes(self, core: int) -> list[tuple[int, ...]]:
        """Per constant: the port classes whose response lands on ``core``, by ascending
        bucket (computed once per core and shared by its allocators)."""
        if not self._fits:  # every core's at once: one pass over (constant, bucket)
            buckets, size, span = self.table.buckets, self.table.size, self.span
            fits = [[[] for _ in range(size)] for _ in range(self.table.cores)]
            for c in range(size):
                for b in range(size):
                    if c ^ b in span:
                        fits[buckets[b]][c].append(c ^ b)
            self._fits = {i: [tuple(classes) for classes in per_core]
                          for i, per_core in enumerate(fits)}
        return self._fits[core]

    def reachable_buckets(self, constant: int) -> frozenset[int]:
        """Buckets some port can make the response land in, for this constant."""
        return frozenset((constant ^ k) & self.mask for k in self.span)

    def unreachable_cores(self, constant: int) -> list[int]:
        """Cores none of whose buckets the port alone can reach for this constant."""
        reachable = {self._buckets[b] for b in self.reachable_buckets(constant)}
        return [c for c in range(self.table.cores) if c not in reachable]

    def describe(self) -> str:
        """One sentence for reports: the rank, and what a singular matrix costs."""
        size = self.table.size
        reach = len(self.span)
        text = (f"port matrix rank {self.rank} of {self.hash_bits} ({self.direction} "
                f"direction, key {self.key}): {reach} of {size} buckets reachable by the "
                "port alone for any given server and local IP")
        if self.full_rank:
            return text + "; every core is reachable, a fitting port can be computed."
        stuck = sorted({c for constant in range(size)
                        for c in self.unreachable_cores(constant)})
        example = self.unreachable_cores(0)
        text += (f"; for a flow whose port-0 bucket is 0 the port can reach only buckets "
                 f"{sorted(self.reachable_buckets(0))[:16]}")
        if stuck:
            text += (f", leaving cores {example} unreachable there (cores {stuck} are "
                     "unreachable for some flows: nat must change the IP, usip cannot)")
        return text + "."

    # -- vectorised ------------------------------------------------------------------------

    def response_constants(self, server_ip: np.ndarray, local_ip: np.ndarray,
                           server_port: np.ndarray) -> np.ndarray:
        """``response_constant`` of every row (IPv4 only): addresses uint32 host order,
        ports any unsigned dtype. Returns uint8 (hash_bits bits). ConfigError for IPv6."""
        if self.family != 4:
            raise ConfigError("family", "4 for the batch path", self.family)
        server = np.asarray(server_ip, dtype=np.uint32)
        local = np.asarray(local_ip, dtype=np.uint32)
        sport = np.asarray(server_port, dtype=np.uint32)
        server, local, sport = np.broadcast_arrays(server, local, sport)
        tables = word_tables(self.key.data)
        if self.direction == "response":
            words = [server >> 16, server & 0xFFFF, local >> 16, local & 0xFFFF]
        else:
            words = [local >> 16, local & 0xFFFF, server >> 16, server & 0xFFFF]
        if self.transform is Transform.SYMMETRIC_XOR:
            mixed = words[0] ^ words[2], words[1] ^ words[3]
            words = [mixed[0], mixed[1], mixed[0], mixed[1]]
            port_columns = [(4, sport), (5, sport)]
        else:
            port_columns = [(4 if self.direction == "response" else 5, sport)]
        result = np.zeros(server.shape, dtype=np.uint32)
        for index, column in enumerate(words):
            result ^= np.take(tables[index], column)
        for index, column in port_columns:
            result ^= np.take(tables[index], column)
        return (result & self.mask).astype(np.uint8)

    def _layout(self, port_range: PortRange) -> list[array]:
        """Per range: each class's ports as a fresh table's pool (uint16, descending, so
        that popping gives the lowest port first); tables copy these."""
        layout = self._layouts.get(port_range)
        if layout is None:
            ports = np.arange(port_range.low, port_range.high + 1, dtype=np.int64)
            order = np.lexsort((-ports, self.classes[ports]))
            grouped = ports[order].astype(np.uint16)
            ends = np.cumsum(np.bincount(self.classes[ports], minlength=self.table.size))
            layout = []
            for start, end in zip([0, *ends[:-1].tolist()], ends.tolist(), strict=True):
                pool = array("H")
                pool.frombytes(grouped[start:end].tobytes())
                layout.append(pool)
            self._layouts[port_range] = layout
        return layout


class PortAllocationTable:
    """One port allocation table: one core, one local IP, one table index.

    ``state`` holds a PortState per port (a bytearray of 65536; a writable NumPy
    view is ``state_array``). The free ports of class k are the array ``pools[k]``
    (uint16, popped from the end: the lowest port first on a fresh table); taking
    pops or swaps the last entry into the taken port's place, releasing appends, so
    every operation but taking one given port (a C-level search of its class) is O(1).
    ``fitting[constant]`` (for a table of an allocator that takes ``allocate``'s fast
    path; None otherwise) is the pair (the pools of the classes that land on the
    allocator's core, by ascending bucket; those buckets) for a flow with that port-0
    constant: ``solve`` reads one entry and pops.
    """

    # slots: the allocation fast path reads three of these per call
    __slots__ = ("port_map", "port_range", "local_ip", "index", "_classes", "_pools",
                 "fitting", "_state", "closed", "cursor", "_moved")

    def __init__(self, port_map: ResponsePortMap, port_range: PortRange = PortRange(), *,
                 local_ip: Address | None = None, index: int = 0,
                 fit: list[tuple[int, ...]] | None = None):
        self.port_map = port_map
        self.port_range = port_range
        self.local_ip = local_ip
        self.index = index
        self._pools: list[array] = [pool[:] for pool in port_map._layout(port_range)]
        self.refit(port_map, fit)
        self._state = bytearray(PORTS)
        self._state[:port_range.low] = bytes([PortState.CLOSED]) * port_range.low
        self._state[port_range.high + 1:] = bytes([PortState.CLOSED]) * (PORTS - 1
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
        self._classes = port_map._class_list
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
        capacity = self.capacity
        return self.taken / capacity if capacity else 1.0

    @property
    def state_array(self) -> np.ndarray:
        return np.frombuffer(self._state, dtype=np.uint8)

    def state(self, port: int) -> PortState:
        return PortState(self._state[check_port(port, "port")])

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

    def _pop(self, cls: int) -> int:
        """Take the last free port of class ``cls`` (the caller checked it has one)."""
        port = self._pools[cls].pop()
        self._state[port] = PortState.TAKEN
        return port

    def take(self, port: int) -> None:
        """Mark a free port taken. PortStateError unless it is free."""
        port = check_port(port, "port")
        if self._state[port] != PortState.FREE:
            raise PortStateError("port", "a free port", port,
                                 detail=f"it is {self.state(port).name.lower()} in "
                                        f"{self._where()}")
        self._remove(port)
        self._state[port] = PortState.TAKEN

    def release(self, port: int) -> None:
        """Free a taken port (session end). A port closed meanwhile stays closed.
        PortStateError when the port is free (a double release)."""
        port = check_port(port, "port")
        state = self._state[port]
        if state == PortState.FREE:
            raise PortStateError("port", "a taken port", port,
                                 detail=f"it is already free in {self._where()}")
        if state == PortState.TAKEN:
            self._state[port] = PortState.FREE
            self._add(port)

    def close(self, port: int) -> None:
        """Close a port (an administrator's or the system's decision); idempotent."""
        port = check_port(port, "port")
        state = self._state[port]
        if state == PortState.FREE:
            self._remove(port)
        if state != PortState.CLOSED:  # free or taken: a port in range
            self.closed += 1
        self._state[port] = PortState.CLOSED

    def reopen(self, port: int) -> None:
        """Return a closed port to the free pool. PortStateError outside the range."""
        port = check_port(port, "port")
        if port not in self.port_range:
            raise PortStateError("port", f"a port in {self.port_range.low}-"
                                 f"{self.port_range.high}", port)
        if self._state[port] == PortState.CLOSED:
            self._state[port] = PortState.FREE
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
        return (bytes(self._state), tuple(pool.tobytes() for pool in self._pools),
                self.closed, self.cursor)


class Allocation(NamedTuple):
    """One chosen port: the response to (server_ip:server_port -> local_ip:port) lands in
    ``bucket``, which belongs to ``core``. ``tries`` as in the module docstring.

    A named tuple rather than a frozen dataclass: it is built on every allocation, and a
    tuple costs a fraction of a frozen dataclass's per-field ``object.__setattr__``."""

    core: int
    local_ip: Address
    table_index: int
    port: int
    tries: int
    bucket: int
    strategy: str
    server_ip: Address | None = None
    server_port: int | None = None
    #: the address that keys the port's table when it is not ``local_ip``: usip's tables
    #: belong to the core, shared by every client (``PortAllocator.shared_ip``)
    table_ip: Address | None = None


def spread_mix(client_ip: int, server_ip: int) -> int:
    """What the spread picks from (module docstring): the client and server IP integers
    XORed. nat starts at local IP ``mix % IP_SPREAD % len(local_ips)``, both strategies
    at fitting class ``mix % CLASS_SPREAD % (number of fitting classes)``."""
    return client_ip ^ server_ip


def spread_mix_batch(client_ip: np.ndarray, server_ip: np.ndarray) -> np.ndarray:
    """``spread_mix`` of uint32 arrays (int64 result)."""
    return np.asarray(client_ip, np.int64) ^ np.asarray(server_ip, np.int64)


class PortAllocator:
    """All port allocation tables of one core, and its port-choice strategy.

    ``local_ips`` are the core's own addresses (used by nat; usip uses the client's).
    Tables are created on first use, keyed (local IP, table index).

    ``scan_hashes`` counts the candidate ports ``scan`` hashed (the real Toeplitz hash
    on the scalar path, the class trick in ``allocate_batch``). ``scan_shortcut``
    (default True): ``scan`` refuses a table without hashing when no port of it can
    fit (module docstring); False runs the patent's loop over the whole range, as a
    reference.

    Raises TableError for a core outside the map's table, ConfigError for an unknown
    strategy, a bad ``tables_per_ip`` or an address of the wrong family.
    """

    def __init__(self, core: int, local_ips: list, port_map: ResponsePortMap, *,
                 strategy: str = "solve", tables_per_ip: int = 1,
                 port_range: PortRange = PortRange(), spread: bool = True,
                 scan_shortcut: bool = True):
        if not isinstance(core, int) or not 0 <= core < port_map.table.cores:
            raise TableError("core", f"a core 0-{port_map.table.cores - 1}", core)
        if strategy not in STRATEGIES:
            raise ConfigError("strategy", " or ".join(STRATEGIES), strategy)
        if not isinstance(tables_per_ip, int) or tables_per_ip < 1:
            raise ConfigError("tables_per_ip", "a whole number of tables, 1 or more",
                              tables_per_ip)
        self.core = core
        self.local_ips: list[Address] = []
        for i, ip in enumerate(local_ips):
            address = _address(ip, f"local_ips[{i}]")
            port_map._check_family(address, f"local_ips[{i}]")
            self.local_ips.append(address)
        self.port_map = port_map
        self.strategy = strategy
        self.tables_per_ip = tables_per_ip
        self.port_range = port_range
        self.spread = spread
        self.scan_shortcut = scan_shortcut
        #: candidate ports ``scan`` hashed (or classed, in the batch path) so far
        self.scan_hashes = 0
        self._tables: dict[tuple[Address, int], PortAllocationTable] = {}
        self._by_int: dict[tuple[int, int], PortAllocationTable] = {}
        self._local_pairs = [(ip, int(ip)) for ip in self.local_ips]
        size = port_map.table.size
        #: per constant: the classes whose response lands on this core, by ascending bucket
        self._fit: list[tuple[int, ...]] = port_map.fitting_classes(core)
        sizes = list(map(len, port_map._layout(port_range)))
        self.fitting_capacity: float = sum(
            sizes[k] for fit in self._fit for k in fit) / size
        #: usip's tables are the core's, not a client's (the patent: "a plurality of port
        #: allocation tables on each core", one picked by a hash of client and server
        #: IP), so they are keyed by this "any client" address rather than the client's
        self.shared_ip: Address = ipaddress.ip_address(0 if port_map.family == 4 else "::")
        self._sessions: dict[tuple[int, int, int, int], bool] | None = (
            {} if tables_per_ip > 1 else None)
        self._foreign = 0
        #: the scalar solve fast path of ``allocate`` (IPv4, no transform, one table per
        #: IP), where the constant is a cached server part XOR a local part
        self._quick: bool = strategy == "solve" and tables_per_ip == 1 and port_map._split
        self._server_parts = port_map._server_parts
        #: per local IP: [address, local part of the constant, table 0 once created]
        self._quick_locals: list[list] = [
            [ip, port_map._local_part(int(ip)), None]
            for ip in self.local_ips] if self._quick else []
        self._quick_by_ip = {entry[0]: entry for entry in self._quick_locals}

    # -- tables ----------------------------------------------------------------------------

    @property
    def tables(self) -> dict[tuple[Address, int], PortAllocationTable]:
        """The tables created so far, keyed (local IP, table index)."""
        return self._tables

    def table(self, local_ip, index: int = 0) -> PortAllocationTable:
        """The table of (local IP, index), created empty on first use."""
        address = local_ip if isinstance(local_ip, ipaddress.IPv4Address | ipaddress.IPv6Address
                                         ) else _address(local_ip, "local_ip")
        found = self._tables.get((address, index))
        if found is None:
            if not 0 <= index < self.tables_per_ip:
                raise ConfigError("table_index", f"0-{self.tables_per_ip - 1}", index)
            found = PortAllocationTable(self.port_map, self.port_range, local_ip=address,
                                        index=index, fit=self._fit if self._quick else None)
            self._tables[(address, index)] = found
            self._by_int[(int(address), index)] = found
            if index == 0 and address in self._quick_by_ip:
                self._quick_by_ip[address][2] = found
        return found

    def adopt(self, other: PortAllocator) -> None:
        """Take over ``other``'s tables and sessions, after an indirection-table change
        (the control core): every taken port stays taken, and the tables now choose by
        this allocator's fitting classes. ConfigError unless both maps give every port
        the same class (same key, hash width, direction and transform)."""
        if not np.array_equal(other.port_map.classes, self.port_map.classes):
            raise ConfigError("port_map", "the port classes of the adopted tables' map",
                              str(self.port_map.key))
        for (address, index), table in other.tables.items():
            table.refit(self.port_map, self._fit if self._quick else None)
            self._tables[(address, index)] = table
            self._by_int[(int(address), index)] = table
        for candidate in self._quick_locals:
            candidate[2] = self._tables.get((candidate[0], 0))
        if other._sessions is not None:
            self._sessions = dict(other._sessions)
            self._foreign = other._foreign

    def pair_hash(self, first: int, second: int) -> int:
        """Toeplitz hash of the 2-tuple (first, second) under the map's key (integers)."""
        if self.port_map.family == 4:
            rows = self.port_map._pair_rows
            if rows is None:
                rows = self.port_map._pair_rows = word_tables(self.port_map.key.data)[:4].tolist()
            return (rows[0][first >> 16] ^ rows[1][first & 0xFFFF] ^ rows[2][second >> 16]
                    ^ rows[3][second & 0xFFFF])
        return toeplitz_hash(self.port_map.key, first.to_bytes(16, "big")
                             + second.to_bytes(16, "big"))

    def home_table(self, local_ip, server_ip) -> int:
        """The table index a (local IP, server IP) pair starts at."""
        if self.tables_per_ip == 1:
            return 0
        return self.pair_hash(int(_address(local_ip, "local_ip")),
                              int(_address(server_ip, "server_ip"))) % self.tables_per_ip

    # -- allocation ------------------------------------------------------------------------

    def allocate(self, *, server_ip, server_port: int, client_ip,
                 keep_client_ip: bool) -> Allocation:
        """A port (and local IP and table) whose response lands on this core; the port is
        marked taken. ``keep_client_ip`` True = usip (local IP = client IP).

        Raises PortExhausted when nothing fits (never returns a wrong port), TupleError for
        a malformed address or port, ConfigError for a family mismatch or a nat allocator
        without local IPs.
        """
        # The common case, flattened: IPv4 address objects, solve, one table per IP, no
        # input transform, and the first class the spread picks for the first IP has a
        # free port. The constant is the XOR of a cached server part and the local IP's
        # part; the table's ``fitting`` entry for it holds the pools to try and their
        # buckets. Anything else (another class or IP to try, a table not yet created,
        # an error to raise) is the general path's, which makes the same decisions.
        if (server_ip.__class__ is not _V4 or client_ip.__class__ is not _V4
                or server_port.__class__ is not int or not self._quick):
            return self._allocate(server_ip, server_port, client_ip, keep_client_ip, False)
        server = server_ip._ip
        part = self._server_parts.get(server_port, _NO_PARTS).get(server)
        if part is None:
            if not 0 <= server_port < PORTS:
                return self._allocate(server_ip, server_port, client_ip, keep_client_ip,
                                      False)  # raises the TupleError
            part = self.port_map._server_part(server, server_port)
        mix = client_ip._ip ^ server if self.spread else 0  # spread_mix
        if keep_client_ip:
            table_ip = self.shared_ip
            table = self._by_int.get((0, 0))
            local_ip, local_part = client_ip, self.port_map._local_part(client_ip._ip)
        else:
            table_ip = None
            first = self._quick_locals
            if not first:
                return self._allocate(server_ip, server_port, client_ip, keep_client_ip, False)
            local_ip, local_part, table = first[mix % IP_SPREAD % len(first)]
        if table is not None:
            pools, buckets = table.fitting[part ^ local_part]
            if pools:
                i = mix % CLASS_SPREAD % len(pools)
                pool = pools[i]
                if pool:
                    port = pool.pop()
                    table._state[port] = _TAKEN
                    # tuple.__new__ skips the named tuple's Python-level __new__
                    return _new_tuple(Allocation, (self.core, local_ip, 0, port, 1, buckets[i],
                                                   self.strategy, server_ip, server_port,
                                                   table_ip))
        return self._allocate(server_ip, server_port, client_ip, keep_client_ip, False)

    def _allocate(self, server_ip, server_port, client_ip, keep_client_ip: bool,
                  fast_scan: bool) -> Allocation:
        server = server_ip if type(server_ip) is ipaddress.IPv4Address else _address(
            server_ip, "server_ip")
        client = client_ip if type(client_ip) is ipaddress.IPv4Address else _address(
            client_ip, "client_ip")
        if type(server_port) is not int or not 0 <= server_port < PORTS:
            server_port = check_port(server_port, "server_port")
        port_map = self.port_map
        if server.version != port_map.family:
            port_map._check_family(server, "server_ip")
        if client.version != port_map.family:
            port_map._check_family(client, "client_ip")
        # ``_ip`` is the integer value int() returns, without int()'s method call (hot path)
        server_int, client_int = server._ip, client._ip
        mix = spread_mix(client_int, server_int) if self.spread else 0
        if keep_client_ip:
            candidates = [(client, client_int)]
            table_ip, table_int = self.shared_ip, 0
        else:
            table_ip = table_int = None
            candidates = self._local_pairs
            if not candidates:
                raise ConfigError("local_ips", f"at least one IP on core {self.core} for nat",
                                  [])
            if mix and len(candidates) > 1:
                first = mix % IP_SPREAD % len(candidates)
                candidates = candidates[first:] + candidates[:first]
        offset = mix % CLASS_SPREAD
        tries = 0
        tables_tried = 0
        many = self.tables_per_ip
        solve = self.strategy == "solve"
        sessions = self._sessions
        by_int = self._by_int
        for ip, local_int in candidates:
            constant = port_map._constant_fast(server_int, local_int, server_port)
            fit = self._fit[constant]
            length = len(fit)
            home = 0 if many == 1 else self.pair_hash(local_int, server_int) % many
            for step in range(many):
                index = (home + step) % many
                table = (by_int.get((local_int, index)) or self.table(ip, index)
                         if table_ip is None else
                         by_int.get((table_int, index)) or self.table(table_ip, index))
                tables_tried += 1
                port = None
                if solve:
                    tries += 1
                    if sessions is None and length:
                        pools = table._pools
                        for i in range(length):
                            k = fit[(offset + i) % length]
                            if pools[k]:
                                port = table._pop(k)
                                break
                    elif length:
                        port = self._solve_guarded(table, fit, offset, (local_int, server_int,
                                                                        server_port))
                elif self.scan_shortcut and not (length and any(
                        table._pools[k] for k in fit)):
                    # no port class of this constant lands on the core (the rank leaves
                    # it out of the port's reach), or none of those classes has a free
                    # port left: the loop would try every port of the range and find
                    # none, so refuse the table without hashing (the same tries)
                    tries += self.port_range.size
                else:
                    port, count = self._scan(table, server, ip, server_port, constant,
                                             fast_scan)
                    tries += count
                if port is not None:
                    if sessions is not None:
                        sessions[(local_int, server_int, server_port, port)] = step > 0
                        self._foreign += step > 0
                    return Allocation(self.core, ip, index, port, tries,
                                      constant ^ port_map._class_list[port], self.strategy,
                                      server, server_port, table_ip)
        raise self._exhausted(candidates, server, server_port, tables_tried, keep_client_ip,
                              tries)

    def _solve_guarded(self, table: PortAllocationTable, fit: tuple[int, ...], offset: int,
                       flow: tuple[int, int, int]) -> int | None:
        """``solve`` when several tables share port numbers: skip a port that another
        session of the same (local IP, server IP, server port) holds in another table."""
        sessions = self._sessions
        for i in range(len(fit)):
            pool = table._pools[fit[(offset + i) % len(fit)]]
            for port in reversed(pool):
                if (*flow, port) not in sessions:
                    table.take(port)
                    return port
        return None

    def _scan(self, table: PortAllocationTable, server: Address, local: Address,
              server_port: int, constant: int, fast: bool) -> tuple[int | None, int]:
        """The patent's loop from the table's cursor; returns (port or None, candidates).
        Adds the candidates to ``scan_hashes``."""
        low, high = self.port_range.low, self.port_range.high
        state = table._state
        buckets = self.port_map.table.buckets
        core, mask = self.core, self.port_map.mask
        classes = self.port_map._class_list
        key = self.port_map.key
        transform = self.port_map.transform
        if self.port_map.direction == "response":
            prefix, suffix = server.packed + local.packed + server_port.to_bytes(2, "big"), b""
        else:
            prefix, suffix = local.packed + server.packed, server_port.to_bytes(2, "big")
        plain = transform is Transform.NONE
        sessions = self._sessions
        flow = (int(local), int(server), server_port)
        port = table.cursor
        for tries in range(1, high - low + 2):
            if fast:
                bucket = constant ^ classes[port]
            else:
                data = prefix + port.to_bytes(2, "big") + suffix
                bucket = toeplitz_hash(key, data if plain else transform_input(transform, data)
                                       ) & mask
            following = port + 1 if port < high else low
            if buckets[bucket] == core and state[port] == PortState.FREE and (
                    sessions is None or (*flow, port) not in sessions):
                table.take(port)
                table.cursor = following
                self.scan_hashes += tries
                return port, tries
            port = following
        self.scan_hashes += high - low + 1
        return None, high - low + 1

    def _exhausted(self, candidates, server, server_port, tables_tried,
                   keep_client_ip, tries) -> PortExhausted:
        port_map = self.port_map
        candidates = [ip for ip, _ in candidates]
        unreachable = all(
            not self._fit[port_map._constant_fast(int(server), int(ip), server_port)]
            for ip in candidates)
        ips = ", ".join(str(ip) for ip in candidates)
        if unreachable:
            constant = port_map._constant_fast(int(server), int(candidates[0]), server_port)
            detail = (f"core {self.core}, {'client' if keep_client_ip else 'local'} IP(s) "
                      f"{ips}, server {server}:{server_port}: the key's port matrix has rank "
                      f"{port_map.rank} of {port_map.hash_bits}, so the port alone reaches "
                      f"only buckets {sorted(port_map.reachable_buckets(constant))[:16]}, "
                      f"none on core {self.core}; ")
            detail += ("usip keeps the client IP, so no other IP can be tried"
                       if keep_client_ip else "no local IP of the core helps")
            detail += f"; tables tried {tables_tried}, fitting ports free 0"
            reason = "unreachable"
        else:
            detail = (f"core {self.core}, {'client' if keep_client_ip else 'local'} IP(s) "
                      f"{ips}, server {server}:{server_port}: tables tried {tables_tried}, "
                      f"fitting ports free 0 (all taken or closed: occupancy)")
            reason = "occupancy"
        return PortExhausted(core=self.core, local_ips=list(candidates),
                             tables_tried=tables_tried, reason=reason, detail=detail,
                             tries=tries)

    # -- session end and reports -----------------------------------------------------------

    def release(self, allocation: Allocation) -> None:
        """Free the allocation's port (FIN, RST or idle timeout). PortStateError when it is
        already free."""
        table = self.table(allocation.local_ip if allocation.table_ip is None
                           else allocation.table_ip, allocation.table_index)
        table.release(allocation.port)
        if self._sessions is not None and allocation.server_ip is not None:
            foreign = self._sessions.pop((int(allocation.local_ip), int(allocation.server_ip),
                                          allocation.server_port, allocation.port), None)
            self._foreign -= bool(foreign)

    def close(self, local_ip, table_index: int, port: int) -> None:
        self.table(local_ip, table_index).close(port)

    def occupancy(self) -> dict[str, dict]:
        """Per table (key ``"IP/index"``): ``taken``, ``closed`` (in range), ``free``,
        ``capacity`` (ports in range not closed), ``fitting`` (how many of the range's
        ports land on this core for one server and local IP, averaged over the
        ``2 ** hash_bits`` possible port-0 buckets: ``size / cores`` for a round-robin
        table and a full-rank key) and ``occupancy`` (taken / capacity)."""
        report = {}
        for (ip, index), table in sorted(self._tables.items(), key=lambda i: (str(i[0][0]),
                                                                             i[0][1])):
            free = table.free
            capacity = free + table.taken
            report[f"{ip}/{index}"] = {
                "local_ip": str(ip), "table_index": index, "taken": table.taken,
                "closed": self.port_range.size - capacity, "free": free,
                "capacity": capacity, "fitting": round(self.fitting_capacity, 1),
                "occupancy": table.taken / capacity if capacity else 1.0}
        return report

    def snapshot(self) -> dict:
        """The state of every table that is not pristine (for equality checks)."""
        return {key: table.snapshot() for key, table in self._tables.items()
                if not table.pristine()}


# -- the batch path -------------------------------------------------------------------------


@dataclass(frozen=True)
class BatchAllocation:
    """Per-row results of ``allocate_batch``: ``port`` (uint16), ``local_ip`` (uint32 host
    order), ``table_index`` (int32, -1 on failure), ``tries`` (int32), ``ok`` (bool; False
    = PortExhausted), ``bucket`` (int16, -1 on failure)."""

    port: np.ndarray
    local_ip: np.ndarray
    table_index: np.ndarray
    tries: np.ndarray
    ok: np.ndarray
    bucket: np.ndarray

    @property
    def failures(self) -> int:
        return int((~self.ok).sum())


#: below this many rows settled by one vectorised round, the next rows go scalar
_SMALL_ROUND = 64
_SCALAR_STEP = 256


def allocate_batch(allocators: list[PortAllocator], *, core: np.ndarray,
                   server_ip: np.ndarray, server_port: np.ndarray, client_ip: np.ndarray,
                   keep_client_ip: bool) -> BatchAllocation:
    """Allocate for every row, exactly as ``allocators[core[i]].allocate(...)`` called for
    i = 0..N-1 in order would (same ports, tables, tries, failures and final state).

    IPv4 only: addresses uint32 host order, ports any unsigned dtype; scalars broadcast.
    ``solve`` is vectorised per core in rounds (each round settles every row up to the
    first one whose class pool would run dry; tiny rounds fall back to the scalar loop);
    ``scan`` runs the scalar loop with the class trick.

    Raises TableError for a core outside ``allocators``, ConfigError for an IPv6 map.
    """
    core = np.asarray(core, dtype=np.int64)
    n = core.size
    server = np.broadcast_to(np.asarray(server_ip, dtype=np.uint32), (n,))
    sport = np.broadcast_to(np.asarray(server_port, dtype=np.uint32), (n,))
    client = np.broadcast_to(np.asarray(client_ip, dtype=np.uint32), (n,))
    if n and (core.min() < 0 or core.max() >= len(allocators)):
        bad = core[(core < 0) | (core >= len(allocators))][0]
        raise TableError("core", f"a core 0-{len(allocators) - 1}", int(bad))
    if (sport > 65535).any():
        raise ConfigError("server_port", "ports 0-65535", int(sport[sport > 65535][0]))
    out = BatchAllocation(np.zeros(n, np.uint16), np.zeros(n, np.uint32),
                          np.full(n, -1, np.int32), np.zeros(n, np.int32),
                          np.zeros(n, bool), np.full(n, -1, np.int16))
    # cores fit 16 bits, which NumPy sorts by radix: a tenth of the time of int64
    small = core.astype(np.int16) if len(allocators) <= 32767 else core
    order = np.argsort(small, kind="stable")
    edges = np.searchsorted(small[order], np.arange(len(allocators) + 1))
    for index, allocator in enumerate(allocators):
        rows = order[edges[index]:edges[index + 1]]
        if rows.size == 0:
            continue
        if allocator.port_map.family != 4:
            raise ConfigError("family", "4 for the batch path", allocator.port_map.family)
        if allocator.strategy == "scan" or allocator._foreign:
            _batch_scalar(allocator, rows, server, sport, client, keep_client_ip, out)
        else:
            _batch_solve(allocator, rows, server, sport, client, keep_client_ip, out)
    return out


def _batch_scalar(allocator: PortAllocator, rows: np.ndarray, server, sport, client,
                  keep: bool, out: BatchAllocation) -> None:
    for row in rows.tolist():
        try:
            got = allocator._allocate(ipaddress.IPv4Address(int(server[row])), int(sport[row]),
                                      ipaddress.IPv4Address(int(client[row])), keep, True)
        except PortExhausted as error:
            out.tries[row] = error.tries
            continue
        out.port[row] = got.port
        out.local_ip[row] = int(got.local_ip)
        out.table_index[row] = got.table_index
        out.tries[row] = got.tries
        out.ok[row] = True
        out.bucket[row] = got.bucket


def _batch_solve(allocator: PortAllocator, rows: np.ndarray, server, sport, client,
                 keep: bool, out: BatchAllocation) -> None:
    plan = _SolvePlan.build(allocator, rows, server, sport, client, keep)
    size = allocator.port_map.table.size
    fit_length = np.array([len(f) for f in allocator._fit], dtype=np.int64)
    widest = max(1, int(fit_length.max()))
    fit = np.zeros((size, widest), dtype=np.int64)
    for constant, classes in enumerate(allocator._fit):
        fit[constant, :len(classes)] = classes
    # one key per (table, class) plus 0 for "no class": small enough for a radix sort
    group_type = np.uint16 if len(plan.tables) * size < 65535 else np.int64
    remaining = np.arange(rows.size)
    while remaining.size:
        if allocator._foreign:
            _batch_scalar(allocator, rows[remaining], server, sport, client, keep, out)
            return
        counts = plan.counts()
        chosen_k = np.full(remaining.size, -1, np.int64)
        chosen_j = np.full(remaining.size, -1, np.int64)
        for j in range(plan.positions):
            open_rows = np.flatnonzero(chosen_k < 0)
            if open_rows.size == 0:
                break
            at = remaining[open_rows]
            tid, constant = plan.table_ids[j][at], plan.constants[j][at]
            length = fit_length[constant]
            shift = plan.offset[at] % np.maximum(length, 1)
            found = np.full(at.size, -1, np.int64)
            for i in range(widest):
                look = np.flatnonzero((i < length) & (found < 0))
                if look.size == 0:
                    break
                k = fit[constant[look], (shift[look] + i) % length[look]]
                free = counts[tid[look], k] > 0
                found[look[free]] = k[free]
            hit = found >= 0
            chosen_k[open_rows[hit]] = found[hit]
            chosen_j[open_rows[hit]] = j
        has = chosen_k >= 0
        tid = np.where(has, plan.table_ids[np.maximum(chosen_j, 0), remaining], 0)
        # each row's rank among the rows before it that chose the same (table, class)
        group = np.where(has, tid * size + chosen_k + 1, 0).astype(group_type)
        order = np.argsort(group, kind="stable")
        members = np.bincount(group, minlength=len(plan.tables) * size + 1)
        rank = np.empty(remaining.size, np.int64)
        rank[order] = np.arange(remaining.size) - (np.cumsum(members) - members)[group[order]]
        available = counts[tid, np.maximum(chosen_k, 0)]
        blocked = has & (rank >= available)
        if plan.many > 1:
            blocked |= ~has  # the next tables are the scalar loop's business
        stop = int(np.argmax(blocked)) if blocked.any() else remaining.size
        plan.apply(remaining[:stop], has[:stop], tid[:stop], chosen_k[:stop], rank[:stop],
                   chosen_j[:stop], out)
        remaining = remaining[stop:]
        if stop < _SMALL_ROUND and remaining.size:
            step, remaining = remaining[:_SCALAR_STEP], remaining[_SCALAR_STEP:]
            _batch_scalar(allocator, rows[step], server, sport, client, keep, out)


@dataclass
class _SolvePlan:
    """One core's rows prepared for vectorised ``solve``: per candidate position ``j`` (the
    j-th local IP tried, in the row's spread order) each row's table id and constant.

    Table ids are dense: ``IP position x tables_per_ip + table index`` (usip: the core's
    shared tables, so the table index alone); ``tables[id]`` is the table, created as the
    scalar loop would on first use, or None when no row can reach it."""

    allocator: PortAllocator
    rows: np.ndarray
    keep: bool
    many: int
    positions: int
    offset: np.ndarray
    start: np.ndarray
    ips: np.ndarray
    constants: np.ndarray
    table_ids: np.ndarray
    homes: np.ndarray
    tables: list
    server: np.ndarray
    server_port: np.ndarray
    client: np.ndarray

    @classmethod
    def build(cls, allocator: PortAllocator, rows, server, sport, client, keep) -> _SolvePlan:
        port_map = allocator.port_map
        many = allocator.tables_per_ip
        srv, prt, cli = server[rows], sport[rows], client[rows]
        count = rows.size
        mix = spread_mix_batch(cli, srv) if allocator.spread else np.zeros(count, np.int64)
        # Toeplitz is linear and hashes zeros to zero: constant = server part ^ local part
        server_part = port_map.response_constants(srv, 0, prt)
        if keep:
            ips = np.zeros(0, np.uint32)
            start = np.zeros(count, np.int64)
            locals_ = [cli]
            constants = [server_part ^ port_map.response_constants(0, cli, 0)]
            addresses = [allocator.shared_ip]
        else:
            ips = np.array([int(ip) for ip in allocator.local_ips], dtype=np.uint32)
            if ips.size == 0:
                raise ConfigError("local_ips",
                                  f"at least one IP on core {allocator.core} for nat", [])
            start = mix % IP_SPREAD % ips.size
            where = [(start + j) % ips.size for j in range(ips.size)]
            locals_ = [ips[w] for w in where]
            local_part = port_map.response_constants(0, ips, 0)
            constants = [server_part ^ local_part[w] for w in where]
            addresses = allocator.local_ips
        positions = len(locals_) if many == 1 else 1  # else the next tables go scalar
        homes = np.array([hash_ipv4_pairs(port_map.key, local, srv) % many if many > 1
                          else np.zeros(count, np.uint32) for local in locals_[:positions]],
                         dtype=np.int64)
        spot = (np.zeros((1, count), np.int64) if keep
                else np.array(where[:positions], dtype=np.int64))
        table_ids = spot * many + homes
        used = np.bincount(table_ids.ravel(), minlength=len(addresses) * many)
        tables = [allocator.table(addresses[i // many], i % many) if used[i] else None
                  for i in range(len(addresses) * many)]
        return cls(allocator, rows, keep, many, positions, mix % CLASS_SPREAD, start, ips,
                   np.array(constants[:positions], dtype=np.int64), table_ids, homes, tables,
                   srv, prt, cli)

    def counts(self) -> np.ndarray:
        """Free ports per (table id, class), now."""
        size = self.allocator.port_map.table.size
        counts = np.zeros((len(self.tables), size), np.int64)
        for i, table in enumerate(self.tables):
            if table is not None:
                counts[i] = table.free_counts()
        return counts

    def apply(self, settled, has, tid, k, rank, j, out: BatchAllocation) -> None:
        """Write one round's settled rows into the tables and ``out``."""
        rows = self.rows
        out.tries[rows[settled[~has]]] = self.positions
        if not has.any():
            return
        at, tid, k, rank, j = settled[has], tid[has], k[has], rank[has], j[has]
        ports = np.empty(at.size, np.uint16)
        order = np.argsort(tid, kind="stable")
        grouped = tid[order]
        bounds = [0, *(np.flatnonzero(np.diff(grouped)) + 1).tolist(), grouped.size]
        for begin, end in zip(bounds[:-1], bounds[1:], strict=True):
            mine = order[begin:end]
            ports[mine] = self.tables[int(grouped[begin])].take_ranked(k[mine], rank[mine])
        local_ips = self.client[at] if self.keep else self.ips[(self.start[at] + j) % self.ips.size]
        target = rows[at]
        out.port[target] = ports
        out.local_ip[target] = local_ips
        out.table_index[target] = self.homes[j, at]
        out.tries[target] = j + 1
        out.ok[target] = True
        out.bucket[target] = self.constants[j, at] ^ k
        sessions = self.allocator._sessions
        if sessions is not None:
            sessions.update(dict.fromkeys(zip(
                local_ips.tolist(), self.server[at].tolist(), self.server_port[at].tolist(),
                ports.tolist(), strict=True), False))


def hash_ipv4_pairs(key: Key, first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Toeplitz 2-tuple hashes (uint32) of (first, second) IPv4 addresses (uint32 arrays)."""
    tables = word_tables(key.data)
    first = np.asarray(first, dtype=np.uint32)
    second = np.asarray(second, dtype=np.uint32)
    result = np.take(tables[0], first >> 16)
    result ^= np.take(tables[1], first & 0xFFFF)
    result ^= np.take(tables[2], second >> 16)
    result ^= np.take(tables[3], second & 0xFFFF)
    return result


def port_occupancy(allocators: dict[str, PortAllocator]) -> float:
    """Taken ports / capacity, summed over the port allocation tables a core's allocators
    have created so far (nat: one per local IP; usip: per client IP and table index)."""
    taken = capacity = 0
    for allocator in allocators.values():
        for table in allocator.tables.values():
            taken += table.taken
            capacity += table.capacity
    return taken / capacity if capacity else 0.0
