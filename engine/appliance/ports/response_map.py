"""The response port map: which bucket a response lands in, as a function of the port.

Toeplitz is linear over GF(2), so the bucket of a response to a rewritten port PORT is
``constant XOR class(PORT)``: ``constant`` is the low ``hash_bits`` bits of the hash with
PORT = 0, and ``class(PORT)`` a linear map of PORT's 16 bits, a (hash_bits x 16) binary
matrix fixed by the key (the package docstring says more). ``ResponsePortMap`` computes
the classes, the matrix and its rank, the constants (scalar and vectorised), which classes
land on each core for each constant (the ``fitting`` classes ``solve`` picks from) and each
class's ports in a range (a fresh table's free pools). It knows nothing of tables or
allocators: those read it.
"""

from __future__ import annotations

import ipaddress
from array import array
from typing import TYPE_CHECKING

import numpy as np

from engine.errors import ConfigError
from engine.nic.rss import IndirectionTable, Transform, transform_input
from engine.packet.toeplitz import Key, check_port, parse_address, toeplitz_hash, word_tables

if TYPE_CHECKING:
    from engine.appliance.ports.table import PortRange

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
DIRECTIONS = ("response", "request")
PORTS = 65536
#: at most this many (server IP, server port) partial constants are cached per map
_PART_CACHE = 1 << 16


def gf2_rank(columns: list[int]) -> int:
    """Rank over GF(2) of the vectors given as integers (bit i = row i)."""
    basis: list[int] = []
    for vector in columns:
        for b in basis:
            vector = min(vector, vector ^ b)
        if vector:
            basis.append(vector)
    return len(basis)


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
        #: ``classes`` as a Python list: the scalar paths index it per port, and a list
        #: index costs a fraction of a NumPy scalar's
        self.class_list: list[int] = self.classes.tolist()
        self._buckets = table.buckets
        self._layouts: dict[PortRange, list[array]] = {}
        self._fits: dict[int, list[tuple[int, ...]]] = {}
        self._rows: list[list[int]] | None = None
        self._pair_rows: list[list[int]] | None = None
        #: IPv4 without a transform: the constant splits into a server part (server IP
        #: and port) and a local part (local IP), XORed (``server_part``, ``local_part``)
        self.splits_constant: bool = family == 4 and transform is Transform.NONE
        #: the cache ``server_part`` fills: server port -> server IP -> part (two
        #: small-integer keys: a combined 48-bit key costs twice as much to build and hash).
        #: The allocation fast path reads it directly (a method call would cost a tenth of
        #: an allocation); only ``server_part`` writes it.
        self.server_parts: dict[int, dict[int, int]] = {}
        self._server_part_count = 0

    # -- scalar ----------------------------------------------------------------------------

    def port_class(self, port: int) -> int:
        """The low ``hash_bits`` bits of the port's hash contribution."""
        return self.class_list[check_port(port, "port")]

    def hash_input(self, server_ip, local_ip, server_port: int, port: int) -> bytes:
        """The bytes this map's NIC hashes for the flow, transform applied (network order).

        ``direction="response"``: server IP | local IP | server port | port;
        ``"request"``: local IP | server IP | port | server port.
        """
        server = parse_address(server_ip, "server_ip")
        local = parse_address(local_ip, "local_ip")
        self.check_family(server, "server_ip")
        self.check_family(local, "local_ip")
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

    def check_family(self, address: Address, field: str) -> None:
        """ConfigError naming ``field`` unless ``address`` is of the map's family."""
        if address.version != self.family:
            raise ConfigError(field, f"an IPv{self.family} address (the map's family)",
                              str(address))

    def constant_of(self, server: int, local: int, server_port: int) -> int:
        """``response_constant`` from integer addresses and a port the caller checked
        (no parsing); word-table lookups for IPv4."""
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

    def server_part(self, server: int, server_port: int) -> int:
        """The server IP's and server port's share of ``constant_of`` (IPv4, no
        transform: Toeplitz is linear, so constant = server part ^ local part), cached
        in ``server_parts[server_port][server]``."""
        rows = self._lookup_rows()
        if self.direction == "response":
            part = rows[0][server >> 16] ^ rows[1][server & 0xFFFF] ^ rows[4][server_port]
        else:
            part = rows[2][server >> 16] ^ rows[3][server & 0xFFFF] ^ rows[5][server_port]
        parts = self.server_parts
        if self._server_part_count >= _PART_CACHE:
            parts.clear()  # bounded: a long run over many servers starts afresh
            self._server_part_count = 0
        parts.setdefault(server_port, {})[server] = part
        self._server_part_count += 1
        return part

    def local_part(self, local: int) -> int:
        """The local IP's share of ``constant_of`` (IPv4, no transform)."""
        rows = self._lookup_rows()
        if self.direction == "response":
            return rows[2][local >> 16] ^ rows[3][local & 0xFFFF]
        return rows[0][local >> 16] ^ rows[1][local & 0xFFFF]

    def pair_hash(self, first: int, second: int) -> int:
        """Toeplitz hash of the 2-tuple (first, second) under the map's key (integers):
        the hash that picks a flow's home table when a core has several."""
        if self.family == 4:
            rows = self._pair_rows
            if rows is None:
                rows = self._pair_rows = word_tables(self.key.data)[:4].tolist()
            return (rows[0][first >> 16] ^ rows[1][first & 0xFFFF] ^ rows[2][second >> 16]
                    ^ rows[3][second & 0xFFFF])
        return toeplitz_hash(self.key, first.to_bytes(16, "big") + second.to_bytes(16, "big"))

    def response_bucket(self, constant: int, port: int) -> int:
        return (constant ^ self.class_list[port]) & self.mask

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

    def fresh_pools(self, port_range: PortRange) -> list[array]:
        """Each class's ports in ``port_range`` as a fresh table's free pool (uint16,
        descending, so that popping gives the lowest port first): new arrays, the
        caller's to pop from."""
        return [pool[:] for pool in self._layout(port_range)]

    def class_sizes(self, port_range: PortRange) -> list[int]:
        """How many ports of ``port_range`` each class has."""
        return list(map(len, self._layout(port_range)))

    def _layout(self, port_range: PortRange) -> list[array]:
        """Per range, computed once: the pools ``fresh_pools`` copies."""
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


