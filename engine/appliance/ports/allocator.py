"""The allocator: all port allocation tables of one core, and its port-choice strategy.

``PortAllocator.allocate`` picks a port (and a local IP and a table) whose response lands
on the allocator's core, one flow at a time: ``solve`` takes a port from a class pool
that lands there, ``scan`` runs the patent's loop (package docstring). ``allocate`` first
tries a flattened fast path for the common case (IPv4 address objects, ``solve``, one
table per IP, no input transform) and otherwise takes ``allocate_general``, which every
case can take and which makes the same decisions. ``Allocation`` is the result;
``spread_mix`` (and its array twin ``spread_mix_batch``) is what the spread picks from.
"""

from __future__ import annotations

import ipaddress
from typing import NamedTuple

import numpy as np

from engine.appliance.ports.response_map import PORTS, Address, ResponsePortMap
from engine.appliance.ports.table import PortAllocationTable, PortRange, PortState
from engine.errors import ConfigError, PortExhausted, TableError
from engine.nic.rss import Transform, transform_input
from engine.packet.toeplitz import check_port, parse_address, toeplitz_hash

STRATEGIES = ("solve", "scan")
#: the spread's moduli (primes): where nat starts among local IPs, where both strategies
#: start among the fitting classes
IP_SPREAD, CLASS_SPREAD = 241, 251
#: The memory all usip port allocation tables of a system may take (bytes): 1 GiB. A
#: table holds one state byte per port number (65,536) and, in its free pools, 2 bytes
#: per port of its range (``usip_table_bytes``): 194,560 bytes for the full range
#: 1024-65535, so 5,518 such tables fit, e.g. the patent's 64 per core on 86 cores or
#: its 256 on 21; a narrower range leaves room for more. A limit on memory, not a count.
USIP_MEMORY_LIMIT = 1 << 30


def usip_table_bytes(port_range: PortRange) -> int:
    """Bytes one port allocation table takes once used: a state byte per port number
    (65,536) plus 2 bytes (uint16) per port of ``port_range`` in its free pools."""
    return PORTS + 2 * port_range.size


def usip_tables_bytes(cores: int, tables_per_core: int, port_range: PortRange) -> int:
    """Bytes every usip table of a system takes (``cores x tables_per_core`` tables)."""
    return cores * tables_per_core * usip_table_bytes(port_range)

_NO_PARTS: dict[int, int] = {}  # what the part cache holds for a port never seen
_V4 = ipaddress.IPv4Address
_new_tuple = tuple.__new__
_TAKEN = 1  # PortState.TAKEN as a plain int (an enum member lookup costs 70 ns)
#: ``PortAllocator``'s default range (a module-level instance, as the default always was)
_DEFAULT_RANGE = PortRange()


class Allocation(NamedTuple):
    """One chosen port: the response to (server_ip:server_port -> local_ip:port) lands in
    ``bucket``, which belongs to ``core``. ``tries`` as in the package docstring.

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
    """What the spread picks from (package docstring): the client and server IP integers
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
    fit (package docstring); False runs the patent's loop over the whole range, as a
    reference.

    Raises TableError for a core outside the map's table, ConfigError for an unknown
    strategy, a bad ``tables_per_ip`` or an address of the wrong family.
    """

    def __init__(self, core: int, local_ips: list, port_map: ResponsePortMap, *,
                 strategy: str = "solve", tables_per_ip: int = 1,
                 port_range: PortRange = _DEFAULT_RANGE, spread: bool = True,
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
            address = parse_address(ip, f"local_ips[{i}]")
            port_map.check_family(address, f"local_ips[{i}]")
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
        #: every class a port can have: under addresses-only hashing any port will do
        self._any: tuple[int, ...] = tuple(sorted(port_map.span))
        self._any_fit: list[tuple[int, ...]] = [self._any] * port_map.table.size
        sizes = port_map.class_sizes(port_range)
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
        self._quick: bool = (strategy == "solve" and tables_per_ip == 1
                             and port_map.splits_constant)
        self._server_parts = port_map.server_parts
        #: per local IP: [address, local part of the constant, table 0 once created]
        self._quick_locals: list[list] = [
            [ip, port_map.local_part(int(ip)), None]
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
                                         ) else parse_address(local_ip, "local_ip")
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
        """Toeplitz hash of the 2-tuple (first, second) under the map's key (integers):
        ``ResponsePortMap.pair_hash``, whose lookup rows a first call builds."""
        return self.port_map.pair_hash(first, second)

    # -- sessions --------------------------------------------------------------------------

    @property
    def foreign_sessions(self) -> int:
        """Sessions holding a port in a table other than their home table (only with
        ``tables_per_ip > 1``). While there are any, a port number free in one table may
        be held by the same (local IP, server IP, server port) in another, so the batch
        path hands such an allocator's rows to the scalar loop, which checks."""
        return self._foreign

    @property
    def indexes_sessions(self) -> bool:
        """True when the allocator keeps a session index (``tables_per_ip > 1``: several
        tables hand out the same port numbers, package docstring)."""
        return self._sessions is not None

    def note_home_sessions(self, local_ips: np.ndarray, server_ips: np.ndarray,
                           server_ports: np.ndarray, ports: np.ndarray) -> None:
        """Record in the session index sessions given ports in their home tables by
        someone else (the batch path's vectorised ``solve``), as ``allocate`` would have:
        integer arrays, one row per session. Call only when ``indexes_sessions``."""
        self._sessions.update(dict.fromkeys(zip(
            local_ips.tolist(), server_ips.tolist(), server_ports.tolist(), ports.tolist(),
            strict=True), False))

    # -- allocation ------------------------------------------------------------------------

    def allocate(self, *, server_ip, server_port: int, client_ip,
                 keep_client_ip: bool, addresses_only: bool = False) -> Allocation:
        """A port (and local IP and table) whose response lands on this core; the port is
        marked taken. ``keep_client_ip`` True = usip (local IP = client IP).

        ``addresses_only`` (``Nic.addresses_only`` for the flow's protocol): the NIC
        hashes the response on its addresses alone, so no port steers it. Then nat
        chooses the IP (``ip_fits``), as the patent's nat selects an IP by whether it
        identifies the core (seed L558, L560): the first IP in spread order whose
        response lands here and whose table has a free port; where none fits, the first
        with a free port, and the response is forwarded to this core
        (``rules.response_verdict``). usip keeps the client IP: any free port, the
        response lands where it lands.

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
                or server_port.__class__ is not int or not self._quick or addresses_only):
            return self.allocate_general(server_ip, server_port, client_ip, keep_client_ip,
                                         addresses_only=addresses_only)
        # ``_ip`` (ipaddress's slot) is the integer int() returns, read without a call:
        # int(), ``__int__()`` or operator.attrgetter("_ip") for these reads would cost
        # 8 to 26 % more instructions per allocation (callgrind)
        server = server_ip._ip
        part = self._server_parts.get(server_port, _NO_PARTS).get(server)
        if part is None:
            if not 0 <= server_port < PORTS:
                return self.allocate_general(server_ip, server_port, client_ip,
                                             keep_client_ip)  # raises the TupleError
            part = self.port_map.server_part(server, server_port)
        mix = client_ip._ip ^ server if self.spread else 0  # spread_mix
        if keep_client_ip:
            table_ip = self.shared_ip
            table = self._by_int.get((0, 0))
            local_ip, local_part = client_ip, self.port_map.local_part(client_ip._ip)
        else:
            table_ip = None
            first = self._quick_locals
            if not first:
                return self.allocate_general(server_ip, server_port, client_ip, keep_client_ip)
            local_ip, local_part, table = first[mix % IP_SPREAD % len(first)]
        if table is not None:
            pools, buckets = table.fitting[part ^ local_part]
            if pools:
                i = mix % CLASS_SPREAD % len(pools)
                pool = pools[i]
                if pool:
                    port = pool.pop()
                    table.states[port] = _TAKEN
                    # tuple.__new__ skips the named tuple's Python-level __new__
                    return _new_tuple(Allocation, (self.core, local_ip, 0, port, 1, buckets[i],
                                                   self.strategy, server_ip, server_port,
                                                   table_ip))
        return self.allocate_general(server_ip, server_port, client_ip, keep_client_ip)

    def allocate_general(self, server_ip, server_port, client_ip, keep_client_ip: bool, *,
                         class_trick: bool = False, addresses_only: bool = False
                         ) -> Allocation:
        """``allocate`` by the general path, which every case takes (``allocate``'s fast
        path is a shortcut to the same decisions); arguments and errors as ``allocate``'s.
        ``class_trick``: ``scan`` computes each candidate's bucket as constant XOR class
        instead of hashing the response bytes (the batch path's scalar loop; the same
        decisions)."""
        server = server_ip if type(server_ip) is ipaddress.IPv4Address else parse_address(
            server_ip, "server_ip")
        client = client_ip if type(client_ip) is ipaddress.IPv4Address else parse_address(
            client_ip, "client_ip")
        if type(server_port) is not int or not 0 <= server_port < PORTS:
            server_port = check_port(server_port, "server_port")
        port_map = self.port_map
        if server.version != port_map.family:
            port_map.check_family(server, "server_ip")
        if client.version != port_map.family:
            port_map.check_family(client, "client_ip")
        # int(address) calls the Python-level ``__int__`` through a C slot: calling it
        # directly costs a third as much
        server_int, client_int = server.__int__(), client.__int__()
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
            if addresses_only and len(candidates) > 1:
                candidates = self._fitting_first(server_int, candidates)
        # addresses only: the response's 2-tuple hash, which is the hash of the 12 bytes
        # with both ports 0 (zeros add nothing), and any port class will do
        hashed_port, fits = (0, self._any_fit) if addresses_only else (server_port, self._fit)
        offset = mix % CLASS_SPREAD
        tries = 0
        tables_tried = 0
        many = self.tables_per_ip
        sessions = self._sessions
        by_int = self._by_int
        for ip, local_int in candidates:
            constant = port_map.constant_of(server_int, local_int, hashed_port)
            fit = fits[constant]
            home = 0 if many == 1 else port_map.pair_hash(local_int, server_int) % many
            for step in range(many):
                index = (home + step) % many
                table = (by_int.get((local_int, index)) or self.table(ip, index)
                         if table_ip is None else
                         by_int.get((table_int, index)) or self.table(table_ip, index))
                tables_tried += 1
                port, count = self._try_table(table, fit, offset, server, ip,
                                              (local_int, server_int, server_port), constant,
                                              class_trick, addresses_only)
                tries += count
                if port is not None:
                    if sessions is not None:
                        sessions[(local_int, server_int, server_port, port)] = step > 0
                        self._foreign += step > 0
                    return Allocation(self.core, ip, index, port, tries,
                                      constant if addresses_only
                                      else constant ^ port_map.class_list[port],
                                      self.strategy, server, server_port, table_ip)
        raise self._exhausted(candidates, server, server_port, tables_tried, keep_client_ip,
                              tries, addresses_only)

    def _fitting_first(self, server: int, candidates: list[tuple[Address, int]]
                       ) -> list[tuple[Address, int]]:
        """nat's local IPs (address, integer) under addresses-only hashing: the ones whose
        response lands on this core (``ip_fits``) first, each group in the given (spread)
        order."""
        fits = [self.ip_fits(server, local) for _, local in candidates]
        return ([c for c, ok in zip(candidates, fits, strict=True) if ok]
                + [c for c, ok in zip(candidates, fits, strict=True) if not ok])

    def ip_fits(self, server: int, local: int) -> bool:
        """Whether a response from ``server`` to ``local`` (integer addresses) hashed on
        its addresses alone lands on this core: the rule of nat's IP choice
        (``ip_fits_batch`` is its array form, which the batch path calls)."""
        port_map = self.port_map
        return port_map.table.buckets[port_map.constant_of(server, local, 0)] == self.core

    def ip_fits_batch(self, server: np.ndarray, local: np.ndarray) -> np.ndarray:
        """``ip_fits`` per row (uint32 host-order addresses, broadcast)."""
        buckets = np.asarray(self.port_map.table.buckets, dtype=np.int64)
        return buckets[self.port_map.response_constants(server, local, 0)] == self.core

    def _try_table(self, table: PortAllocationTable, fit: tuple[int, ...], offset: int,
                   server: Address, local: Address, flow: tuple[int, int, int],
                   constant: int, class_trick: bool, addresses_only: bool = False
                   ) -> tuple[int | None, int]:
        """One table's turn for the strategy: (the port taken or None, the tries it
        counts: 1 for ``solve``, the candidates examined for ``scan``). ``flow`` is
        (local IP, server IP, server port) as integers."""
        if self.strategy == "solve":
            if not fit:
                return None, 1
            if self._sessions is None:
                return table.pop_first(fit, offset), 1
            return self._solve_guarded(table, fit, offset, flow), 1
        if self.scan_shortcut and not table.has_free(fit):
            # no port class of this constant lands on the core (the rank leaves it out
            # of the port's reach), or none of those classes has a free port left: the
            # loop would try every port of the range and find none, so refuse the table
            # without hashing (the same tries)
            return None, self.port_range.size
        return self._scan(table, server, local, flow, constant, class_trick, addresses_only)

    def _solve_guarded(self, table: PortAllocationTable, fit: tuple[int, ...], offset: int,
                       flow: tuple[int, int, int]) -> int | None:
        """``solve`` when several tables share port numbers: skip a port that another
        session of the same (local IP, server IP, server port) holds in another table."""
        sessions = self._sessions
        for port in table.free_ports(fit, offset):
            if (*flow, port) not in sessions:
                table.take(port)
                return port
        return None

    def _scan(self, table: PortAllocationTable, server: Address, local: Address,
              flow: tuple[int, int, int], constant: int, fast: bool,
              addresses_only: bool = False) -> tuple[int | None, int]:
        """The patent's loop from the table's cursor; returns (port or None, candidates).
        Adds the candidates to ``scan_hashes``. ``addresses_only``: the port does not
        move the response (its bucket is ``constant`` for every port), so the loop takes
        the next free port."""
        server_port = flow[2]
        low, high = self.port_range.low, self.port_range.high
        state = table.states
        buckets = self.port_map.table.buckets
        core, mask = self.core, self.port_map.mask
        classes = self.port_map.class_list
        key = self.port_map.key
        transform = self.port_map.transform
        if self.port_map.direction == "response":
            prefix, suffix = server.packed + local.packed + server_port.to_bytes(2, "big"), b""
        else:
            prefix, suffix = local.packed + server.packed, server_port.to_bytes(2, "big")
        plain = transform is Transform.NONE
        sessions = self._sessions
        port = table.cursor
        for tries in range(1, high - low + 2):
            if addresses_only:
                home = True  # every port gives the same bucket: any free port will do
            elif fast:
                home = buckets[constant ^ classes[port]] == core
            else:
                data = prefix + port.to_bytes(2, "big") + suffix
                home = buckets[toeplitz_hash(
                    key, data if plain else transform_input(transform, data)) & mask] == core
            following = port + 1 if port < high else low
            if home and state[port] == PortState.FREE and (
                    sessions is None or (*flow, port) not in sessions):
                table.take(port)
                table.cursor = following
                self.scan_hashes += tries
                return port, tries
            port = following
        self.scan_hashes += high - low + 1
        return None, high - low + 1

    def _exhausted(self, candidates, server, server_port, tables_tried,
                   keep_client_ip, tries, addresses_only=False) -> PortExhausted:
        port_map = self.port_map
        candidates = [ip for ip, _ in candidates]
        unreachable = not addresses_only and all(
            not self._fit[port_map.constant_of(int(server), int(ip), server_port)]
            for ip in candidates)
        ips = ", ".join(str(ip) for ip in candidates)
        if unreachable:
            constant = port_map.constant_of(int(server), int(candidates[0]), server_port)
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

    def forget_session(self, local_ip: int, server_ip: int, server_port: int, port: int
                       ) -> None:
        """Drop an ended session from the session index (integers), as ``release`` does;
        a no-op without an index (``tables_per_ip`` 1)."""
        if self._sessions is not None:
            foreign = self._sessions.pop((local_ip, server_ip, server_port, port), None)
            self._foreign -= bool(foreign)

    def close(self, local_ip, table_index: int, port: int) -> None:
        """Close ``port`` in the table of (local IP, table index), created if need be."""
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
                "occupancy": table.occupancy}
        return report

    def snapshot(self) -> dict:
        """The state of every table that is not pristine (for equality checks)."""
        return {key: table.snapshot() for key, table in self._tables.items()
                if not table.pristine()}


