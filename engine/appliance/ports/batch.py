"""The batch path's port allocation: ``allocate_batch`` over whole arrays of flows, and
``release_batch``, the session ends that free their ports.

It gives exactly what calling each row's ``PortAllocator.allocate`` in row order would
(same ports, tables, tries, failures and final table state), faster: ``solve`` is
vectorised per core in rounds (``_SolvePlan``), ``scan`` and whatever the rounds cannot
settle run the allocators' scalar loop (``PortAllocator.allocate_general``, with scan's
class trick). IPv4 only.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

import numpy as np

from engine.appliance.ports.allocator import (
    CLASS_SPREAD,
    IP_SPREAD,
    PortAllocator,
    spread_mix_batch,
)
from engine.errors import ConfigError, PortExhausted, TableError
from engine.packet.toeplitz import hash_ipv4_batch


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


#: below this many rows settled by one vectorised round, the next rows go scalar
_SMALL_ROUND = 64
_SCALAR_STEP = 256
#: a round looks at a window of the remaining rows, not all of them: it settles rows only
#: up to the first one whose class pool runs dry, and a row's choice depends only on the
#: rows before it, so a prefix gives the same answer. The first round takes every row (no
#: pool runs dry: one round, as before); after a round that stopped early the window is
#: twice what it settled (at least this many rows) and doubles while rounds settle all of
#: it, so near exhaustion (pools draining one after another) a round costs what it
#: settles, not every remaining row.
_FIRST_WINDOW = 4096


def allocate_batch(allocators: list[PortAllocator], *, core: np.ndarray,
                   server_ip: np.ndarray, server_port: np.ndarray, client_ip: np.ndarray,
                   keep_client_ip: bool, addresses_only=False) -> BatchAllocation:
    """Allocate for every row, exactly as ``allocators[core[i]].allocate(...)`` called for
    i = 0..N-1 in order would (same ports, tables, tries, failures and final state).
    ``addresses_only`` (bool, scalar or per row: ``Nic.addresses_only_batch``; None:
    no row) as ``allocate``'s: nat chooses the IP, the fitting ones first
    (``ip_fits_batch``).

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
    portless = (None if addresses_only is None
                else np.broadcast_to(np.asarray(addresses_only, dtype=bool), (n,)))
    if portless is not None and not portless.any():
        portless = None  # every row hashed with its ports: nothing to look up per row
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
        if allocator.strategy == "scan" or allocator.foreign_sessions:
            _batch_scalar(allocator, rows, server, sport, client, keep_client_ip, out,
                          portless)
        else:
            _batch_solve(allocator, rows, server, sport, client, keep_client_ip, out,
                         portless)
    return out


def _batch_scalar(allocator: PortAllocator, rows: np.ndarray, server, sport, client,
                  keep: bool, out: BatchAllocation, portless) -> None:
    for row in rows.tolist():
        try:
            got = allocator.allocate_general(
                ipaddress.IPv4Address(int(server[row])), int(sport[row]),
                ipaddress.IPv4Address(int(client[row])), keep, class_trick=True,
                addresses_only=portless is not None and bool(portless[row]))
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
                 keep: bool, out: BatchAllocation, portless) -> None:
    plan = _SolvePlan.build(allocator, rows, server, sport, client, keep, portless)
    size = allocator.port_map.table.size
    fitting = allocator.port_map.fitting_classes(allocator.core)
    if plan.portless is not None:  # fit row ``size``: every class (any port will do)
        fitting = [*fitting, tuple(sorted(allocator.port_map.span))]
    fit_length = np.array([len(f) for f in fitting], dtype=np.int64)
    widest = max(1, int(fit_length.max()))
    fit = np.zeros((len(fitting), widest), dtype=np.int64)
    for constant, classes in enumerate(fitting):
        fit[constant, :len(classes)] = classes
    fit_slot = np.arange(widest) < fit_length[:, None]  # which fit entries are classes
    used = np.array([table is not None for table in plan.tables])
    # one key per (table, class) plus 0 for "no class": small enough for a radix sort
    group_type = np.uint16 if len(plan.tables) * size < 65535 else np.int64
    remaining = np.arange(rows.size)
    window = rows.size
    while remaining.size:
        if allocator.foreign_sessions:
            _batch_scalar(allocator, rows[remaining], server, sport, client, keep, out,
                          portless)
            return
        counts = plan.counts()
        # per (table, constant): does any fitting class still have a free port? A row
        # whose table has none skips the class loop: near exhaustion that is most rows
        any_free = ((counts[:, fit] > 0) & fit_slot).any(axis=2)
        drained = not any_free[used].all()  # else every row may find a class: no filter
        part = remaining[:window]
        chosen_k = np.full(part.size, -1, np.int64)
        chosen_j = np.full(part.size, -1, np.int64)
        for j in range(plan.positions):
            open_rows = np.flatnonzero(chosen_k < 0)
            if open_rows.size == 0:
                break
            at = part[open_rows]
            tid, constant = plan.table_ids[j][at], plan.fit_rows[j][at]
            hopeful = any_free[tid, constant] if drained else None
            if hopeful is not None and not hopeful.all():
                open_rows, at = open_rows[hopeful], at[hopeful]
                tid, constant = tid[hopeful], constant[hopeful]
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
        tid = np.where(has, plan.table_ids[np.maximum(chosen_j, 0), part], 0)
        # each row's rank among the rows before it that chose the same (table, class)
        group = np.where(has, tid * size + chosen_k + 1, 0).astype(group_type)
        order = np.argsort(group, kind="stable")
        members = np.bincount(group, minlength=len(plan.tables) * size + 1)
        rank = np.empty(part.size, np.int64)
        rank[order] = np.arange(part.size) - (np.cumsum(members) - members)[group[order]]
        available = counts[tid, np.maximum(chosen_k, 0)]
        blocked = has & (rank >= available)
        if plan.many > 1:
            blocked |= ~has  # the next tables are the scalar loop's business
        stop = int(np.argmax(blocked)) if blocked.any() else part.size
        plan.apply(part[:stop], has[:stop], tid[:stop], chosen_k[:stop], rank[:stop],
                   chosen_j[:stop], out)
        remaining = remaining[stop:]
        window = window * 2 if stop == part.size else max(_FIRST_WINDOW, 2 * stop)
        if stop < _SMALL_ROUND and remaining.size:
            step, remaining = remaining[:_SCALAR_STEP], remaining[_SCALAR_STEP:]
            _batch_scalar(allocator, rows[step], server, sport, client, keep, out,
                          portless)


@dataclass
class _SolvePlan:
    """One core's rows prepared for vectorised ``solve``: per candidate position ``j`` (the
    j-th local IP tried, in the row's spread order) each row's IP (index into ``ips``,
    ``where``), table id, constant and fit row (the constant; for a row hashed on its
    addresses alone, ``portless``, the fit row of every class, and its IPs whose
    response lands on the core first, as ``allocate_general`` orders them).
    ``portless`` is None when no row is hashed on its addresses alone.

    Table ids are dense: ``IP position x tables_per_ip + table index`` (usip: the core's
    shared tables, so the table index alone); ``tables[id]`` is the table, created as the
    scalar loop would on first use, or None when no row can reach it."""

    allocator: PortAllocator
    rows: np.ndarray
    keep: bool
    many: int
    positions: int
    offset: np.ndarray
    where: np.ndarray
    ips: np.ndarray
    constants: np.ndarray
    fit_rows: np.ndarray
    portless: np.ndarray | None
    table_ids: np.ndarray
    homes: np.ndarray
    tables: list
    server: np.ndarray
    server_port: np.ndarray
    client: np.ndarray

    @classmethod
    def build(cls, allocator: PortAllocator, rows, server, sport, client, keep, portless
              ) -> _SolvePlan:
        port_map = allocator.port_map
        many = allocator.tables_per_ip
        srv, prt, cli = server[rows], sport[rows], client[rows]
        if portless is not None:
            portless = portless[rows]
            if not portless.any():
                portless = None
        size = port_map.table.size
        count = rows.size
        mix = spread_mix_batch(cli, srv) if allocator.spread else np.zeros(count, np.int64)
        # Toeplitz is linear and hashes zeros to zero: constant = server part ^ local part
        server_part = port_map.response_constants(srv, 0, prt)
        if portless is not None:  # the 2-tuple hash: the 12 bytes with both ports 0
            server_part = np.where(portless, port_map.response_constants(srv, 0, 0),
                                   server_part)
        if keep:
            ips = np.zeros(0, np.uint32)
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
            if ips.size > 1 and portless is not None:
                # the IPs whose response lands here first, each group in spread order
                spread = np.array(where, dtype=np.int64)
                fits = np.array([allocator.ip_fits_batch(srv, ips[w]) for w in where])
                fits |= ~portless  # rows hashed with ports keep the spread order
                first = np.take_along_axis(spread, np.argsort(~fits, axis=0, kind="stable"),
                                           axis=0)
                where = list(first)
            locals_ = [ips[w] for w in where]
            local_part = port_map.response_constants(0, ips, 0)
            constants = [server_part ^ local_part[w] for w in where]
            addresses = allocator.local_ips
        positions = len(locals_) if many == 1 else 1  # else the next tables go scalar
        homes = np.array([hash_ipv4_batch(port_map.key, local, srv) % many if many > 1
                          else np.zeros(count, np.uint32) for local in locals_[:positions]],
                         dtype=np.int64)
        spot = (np.zeros((1, count), np.int64) if keep
                else np.array(where[:positions], dtype=np.int64))
        table_ids = spot * many + homes
        used = np.bincount(table_ids.ravel(), minlength=len(addresses) * many)
        tables = [allocator.table(addresses[i // many], i % many) if used[i] else None
                  for i in range(len(addresses) * many)]
        constants = np.array(constants[:positions], dtype=np.int64)
        return cls(allocator, rows, keep, many, positions, mix % CLASS_SPREAD, spot, ips,
                   constants,
                   constants if portless is None else np.where(portless, size, constants),
                   portless, table_ids, homes, tables,
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
        local_ips = self.client[at] if self.keep else self.ips[self.where[j, at]]
        target = rows[at]
        out.port[target] = ports
        out.local_ip[target] = local_ips
        out.table_index[target] = self.homes[j, at]
        out.tries[target] = j + 1
        out.ok[target] = True
        constant = self.constants[j, at]
        out.bucket[target] = (constant ^ k if self.portless is None
                              else np.where(self.portless[at], constant, constant ^ k))
        if self.allocator.indexes_sessions:
            self.allocator.note_home_sessions(local_ips, self.server[at], self.server_port[at],
                                              ports)



def release_batch(allocators: list[PortAllocator], *, core: np.ndarray, local_ip: np.ndarray,
                  table_index: np.ndarray, port: np.ndarray, server_ip: np.ndarray,
                  server_port: np.ndarray, keep_client_ip: bool) -> None:
    """Free the ports of ended sessions in row order, exactly as
    ``allocators[core[i]].release(...)`` of each row's allocation called for i = 0..N-1
    would (same table states and pools: ports that share a table and class go back in row
    order, and only they can affect each other). ``keep_client_ip`` (usip): the tables are
    the core's shared ones, ``local_ip`` the client's. Arrays as ``allocate_batch``
    returns them.

    Raises PortStateError for a port that is free already (a double release).
    """
    core = np.asarray(core, dtype=np.int64)
    if core.size == 0:
        return
    local_ip = np.asarray(local_ip, dtype=np.uint32)
    table_index = np.asarray(table_index, dtype=np.int64)
    port = np.asarray(port, dtype=np.int64)
    many = max(allocator.tables_per_ip for allocator in allocators)
    table_key = (table_index if keep_client_ip
                 else local_ip.astype(np.int64) * many + table_index)
    # one stable sort by (core, table, port class): row order within each class's pool
    classes = allocators[0].port_map.classes[port]
    order = np.lexsort((classes, table_key, core))
    key_sorted, core_sorted = table_key[order], core[order]
    cut = np.flatnonzero((np.diff(key_sorted) != 0) | (np.diff(core_sorted) != 0)) + 1
    bounds = [0, *cut.tolist(), order.size]
    for begin, end in zip(bounds[:-1], bounds[1:], strict=True):
        first = order[begin]
        allocator = allocators[int(core[first])]
        address = (allocator.shared_ip if keep_client_ip
                   else ipaddress.IPv4Address(int(local_ip[first])))
        allocator.table(address, int(table_index[first])).release_many(
            port[order[begin:end]], by_class=True)
    if any(allocator.indexes_sessions for allocator in allocators):
        server_ip = np.asarray(server_ip, dtype=np.uint32)
        server_port = np.asarray(server_port, dtype=np.int64)
        for row in range(core.size):
            allocators[int(core[row])].forget_session(
                int(local_ip[row]), int(server_ip[row]), int(server_port[row]), int(port[row]))


def allocate_stacked(allocators: list[PortAllocator], *, core: np.ndarray,
                     server_ip: np.ndarray, server_port: np.ndarray, client_ip: np.ndarray,
                     keep_client_ip: bool, take_key: np.ndarray, free_key: np.ndarray,
                     take_order: np.ndarray | None = None,
                     free_order: np.ndarray | None = None
                     ) -> tuple[BatchAllocation, np.ndarray] | None:
    """Allocate a port for every row and free it again, the allocations and frees of all
    rows interleaved in the order of their keys (``take_key[i]``: when row i allocates;
    ``free_key[i]`` > ``take_key[i]``: when its session gives the port back; all keys
    distinct), exactly as ``allocate`` and ``release`` called in that order would — when
    ``solve`` finds every row a free port in its first choice (its first IP's table, its
    first fitting class): else None, and nothing changed. The tables must be fresh and
    one per IP (``tables_per_ip`` 1), as a new system's are. With the allocations, per
    allocator (core) the most ports held at once. ``take_order``, ``free_order``: the
    rows by ``take_key`` and by ``free_key``, when the caller has them (else sorted here).

    How, without a loop per row: a class's free pool is a stack (``solve`` pops its top,
    ``release`` pushes), so with each row's pool known up front the stack depth before
    every event is a running sum per pool, and the port a pop takes is the one pushed to
    that depth last — by the session that freed it, whose port is the one *it* took — or,
    when nothing was pushed there yet, the fresh pool's entry at that depth. The chains
    of "took the port that row r freed" are followed by pointer doubling.
    """
    core = np.asarray(core, dtype=np.int64)
    n = core.size
    if n == 0 or any(a.strategy != "solve" or a.tables_per_ip != 1 or a.foreign_sessions
                     or a.port_map.family != 4 or not all(t.pristine()
                                                          for t in a.tables.values())
                     for a in allocators):
        return None
    server = np.broadcast_to(np.asarray(server_ip, dtype=np.uint32), (n,))
    sport = np.broadcast_to(np.asarray(server_port, dtype=np.uint32), (n,))
    client = np.broadcast_to(np.asarray(client_ip, dtype=np.uint32), (n,))
    port_map = allocators[0].port_map
    size = port_map.table.size
    out = BatchAllocation(np.zeros(n, np.uint16), np.zeros(n, np.uint32),
                          np.full(n, -1, np.int32), np.zeros(n, np.int32),
                          np.ones(n, bool), np.full(n, -1, np.int16))
    pool = np.empty(n, np.int64)  # (global table id) x size + class
    base = 0
    small = core.astype(np.int16) if len(allocators) <= 32767 else core  # a radix sort
    by_core = np.argsort(small, kind="stable")
    edges = np.searchsorted(small[by_core], np.arange(len(allocators) + 1))
    for index, allocator in enumerate(allocators):
        rows = by_core[edges[index]:edges[index + 1]]
        if rows.size == 0:
            continue
        plan = _SolvePlan.build(allocator, rows, server, sport, client, keep_client_ip,
                                None)  # stacked: no row hashed on its addresses alone
        fitting = port_map.fitting_classes(allocator.core)
        length = np.array([len(f) for f in fitting], dtype=np.int64)
        fit = np.zeros((size, max(1, int(length.max()))), dtype=np.int64)
        for constant, classes in enumerate(fitting):
            fit[constant, :len(classes)] = classes
        # the first IP (in the row's spread order) with any fitting class: as a rule
        # every row's first (a slice, no gathers); else per row
        if (length[plan.constants[0]] > 0).all():
            j, at = 0, slice(None)
        else:
            fits = length[plan.constants] > 0  # positions x rows
            if not fits.any(axis=0).all():
                return None  # a row no table can serve: refusals are the epochs' business
            j = np.argmax(fits, axis=0)
            at = np.arange(rows.size)
        constant = plan.constants[j, at]
        k = fit[constant, plan.offset % length[constant]]
        pool[rows] = (base + plan.table_ids[j, at]) * size + k
        base += len(plan.tables)
        out.local_ip[rows] = (plan.client if keep_client_ip
                              else plan.ips[plan.where[j, at]])
        out.table_index[rows] = plan.homes[j, at]
        out.tries[rows] = j + 1
        out.bucket[rows] = constant ^ k
    fresh = port_map.fresh_pools(allocators[0].port_range)
    fresh_size = np.array([len(p) for p in fresh], dtype=np.int64)
    fresh_start = np.concatenate([[0], np.cumsum(fresh_size)[:-1]])
    fresh_flat = np.frombuffer(b"".join(p.tobytes() for p in fresh), dtype=np.uint16)
    # Every sort below is of one int64 key that carries what it orders: (what groups,
    # then the event's stamp: its time index and a bit set for a free) packed in bits,
    # all keys distinct, so a plain ``np.sort`` of the values (no argsort, no stable
    # kind, no gathers through an order) gives the order, the time and the kind with it.
    stamp_bits = (2 * n - 1).bit_length() + 1
    slot_bits = max(1, int(fresh_size.max()).bit_length())
    if (max(base * size, len(allocators)) - 1).bit_length() + slot_bits + stamp_bits > 63:
        return None  # more pools, ports and rows than one key holds: the epochs' work
    # events: row i takes (-1) at take_key[i], frees (+1) at free_key[i]
    take_key = np.asarray(take_key, np.int64)
    free_key = np.asarray(free_key, np.int64)
    # the two sorted sequences merged (cheaper than sorting both together): each free
    # goes after the takes with smaller keys
    takes_in_order = np.argsort(take_key) if take_order is None else take_order
    frees_in_order = np.argsort(free_key) if free_order is None else free_order
    # (the keys are distinct: sorting them is gathering them in order, and cheaper)
    after = np.searchsorted(np.sort(take_key), np.sort(free_key))
    # per time index: the row, + n for a free (int32 where it fits: cheaper gathers)
    timeline = np.empty(2 * n, np.int32 if n < 1 << 30 else np.int64)
    free_at = after + np.arange(n)
    timeline[free_at] = frees_in_order + n
    is_take = np.ones(2 * n, bool)
    is_take[free_at] = False
    timeline[is_take] = takes_in_order
    stamp = np.empty(2 * n, np.int64)  # per row its take's stamp, per row + n its free's
    stamp[timeline] = np.arange(0, 4 * n, 2)
    stamp[n:] |= 1
    so_far = np.arange(1, 2 * n + 1)  # events so far, at each event in a sorted key
    # the most held at once per core: +1 at each take, -1 at each free, in time order
    core_events = np.sort((stamp.reshape(2, n) | core << stamp_bits).ravel())
    held = so_far - 2 * np.cumsum(core_events & 1)
    ends = np.cumsum(np.bincount(core, minlength=len(allocators)) * 2)
    starts = np.r_[0, ends[:-1]]
    peak = np.zeros(len(allocators), np.int64)
    some = ends > starts
    peak[some] = np.maximum.reduceat(held, starts[some]) - np.r_[0, held][starts[some]]
    # each pool's events in time order
    by_pool = np.sort((stamp.reshape(2, n) | pool << stamp_bits).ravel())
    freeing = by_pool & 1
    # a row takes and frees in one pool, so every pool's events sum to 0 and a running
    # sum over all pools is each pool's own: the pool's size after the event, less fresh
    after_event = 2 * np.cumsum(freeing) - so_far
    # the stack slot taken (the top, at the size after the pop) or filled (size before)
    position = fresh_size[(by_pool >> stamp_bits) % size] + after_event - freeing
    if (position < 0).any():  # (a free's slot is never below 0)
        return None  # a first choice ran dry: the rows after it choose otherwise
    # by (pool, slot), time order kept; a pool never holds more than its fresh size (a
    # free returns a port taken from it), so a slot fits slot_bits
    stamp_mask = (1 << stamp_bits) - 1
    slot_key = np.sort((by_pool & ~stamp_mask) << slot_bits | position << stamp_bits
                       | by_pool & stamp_mask)
    takes = np.flatnonzero((slot_key & 1) == 0)
    # a take whose slot's previous event (a free: a filled slot is emptied before it is
    # filled again) is in the same slot reuses that free's port, else takes a fresh one
    same = (slot_key[takes] ^ slot_key[takes - 1]) <= stamp_mask
    same[takes == 0] = False
    reused, new = takes[same], takes[~same]
    source = np.full(n, -1, timeline.dtype)  # the row whose freed port a row takes
    live = timeline[(slot_key[reused] & stamp_mask) >> 1]
    source[live] = timeline[(slot_key[reused - 1] & stamp_mask) >> 1] - n
    port = np.zeros(n, np.int64)
    slot_key = slot_key[new]
    port[timeline[(slot_key & stamp_mask) >> 1]] = fresh_flat[
        fresh_start[(slot_key >> (slot_bits + stamp_bits)) % size]
        + ((slot_key >> stamp_bits) & ((1 << slot_bits) - 1))]
    # pointer doubling along "took the port that row r freed": each free has at most one
    # taker, so the chains are paths, each from a fresh take; a round halves them
    up = source[live]
    while live.size:
        beyond = source[up]  # read before any write of this round
        done = beyond < 0
        port[live[done]] = port[up[done]]
        live, up = live[~done], beyond[~done]
        source[live] = up  # two steps up
    out.port[:] = port
    return out, peak
