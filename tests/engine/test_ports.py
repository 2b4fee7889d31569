"""Port allocation tables, scan and solve, the batch path, singular keys and exhaustion."""

from __future__ import annotations

import ipaddress

import numpy as np
import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

import engine.appliance.ports.batch as port_batch
from engine.appliance.ports import (
    Allocation,
    PortAllocationTable,
    PortAllocator,
    PortRange,
    PortState,
    ResponsePortMap,
    allocate_batch,
)
from engine.errors import ConfigError, PortExhausted, PortStateError
from engine.nic.rss import IndirectionTable, Nic, Transform
from engine.packet.toeplitz import Key, hash_input, toeplitz_hash

V4 = ipaddress.IPv4Address


def real_core(port_map: ResponsePortMap, got, server, server_port) -> int:
    """The core the real response lands on: Toeplitz over the actual response tuple."""
    data = hash_input(server, got.local_ip, server_port, got.port)
    return port_map.table.core_of(toeplitz_hash(port_map.key, data))


def full_rank_keys():
    return st.integers(0, 10_000).map(Key.random).filter(
        lambda key: ResponsePortMap(key, IndirectionTable.round_robin(8, 7)).full_rank)


addresses = st.integers(1, 2**32 - 2).map(V4)


@settings(max_examples=60, deadline=None)
@given(key=st.one_of(st.just(Key.microsoft()), full_rank_keys()),
       cores=st.integers(1, 16), bits=st.integers(1, 7), strategy=st.sampled_from(["solve",
                                                                                   "scan"]),
       keep=st.booleans(), server=addresses, client=addresses,
       server_port=st.integers(0, 65535), core=st.integers(0, 15))
def test_every_response_returns_to_the_requesting_core(key, cores, bits, strategy, keep, server,
                                                        client, server_port, core):
    table = IndirectionTable.round_robin(cores, bits)
    port_map = ResponsePortMap(key, table)
    core %= cores
    if port_map.unreachable_cores(port_map.response_constant(server, client, server_port)) \
            and keep:
        return  # a rank below hash_bits at few bits: checked by the singular-key tests
    allocator = PortAllocator(core, [V4(0x0A000001 + core)], port_map, strategy=strategy)
    for _ in range(3):
        try:
            got = allocator.allocate(server_ip=server, server_port=server_port,
                                     client_ip=client, keep_client_ip=keep)
        except PortExhausted as error:
            assert error.reason == "unreachable"
            return
        assert real_core(port_map, got, server, server_port) == core
        assert table.buckets[got.bucket] == core
        assert got.local_ip == (client if keep else V4(0x0A000001 + core))


def test_microsoft_key_is_full_rank_and_classes_match_the_real_hash():
    port_map = ResponsePortMap(Key.microsoft(), IndirectionTable.round_robin(16, 7))
    assert port_map.full_rank and port_map.rank == 7
    assert port_map.matrix.shape == (7, 16)
    rng = np.random.default_rng(3)
    for port in rng.integers(0, 65536, 50).tolist():
        constant = port_map.response_constant("192.0.2.1", "10.0.0.1", 443)
        real = port_map.response_hash("192.0.2.1", "10.0.0.1", 443, port) & port_map.mask
        assert port_map.response_bucket(constant, port) == real
    assert "rank 7 of 7" in port_map.describe()


def singular_key() -> Key:
    """Microsoft's key with key bits 108-126 cleared: the low 7 bits of the response port's
    contribution (key bits 105+j..111+j for port bit j, MSB first) then depend on key bits
    105-107 only, so the port matrix has rank 3 at most."""
    value = int.from_bytes(Key.microsoft().data, "big")
    for bit in range(108, 127):
        value &= ~(1 << (320 - 1 - bit))
    return Key(value.to_bytes(40, "big"), "singular")


def test_symmetric_key_port_matrix_and_a_singular_key_described():
    # 0x6d5a repeated is symmetric, yet its port matrix is full rank at every width
    assert all(ResponsePortMap(Key.symmetric(), IndirectionTable.round_robin(2, bits)).full_rank
               for bits in range(1, 8))
    port_map = ResponsePortMap(singular_key(), IndirectionTable.round_robin(16, 7))
    assert not port_map.full_rank and port_map.rank <= 3
    assert not port_map.matrix[:, :13].any()  # only the port's top 3 bits (columns 13-15)
    assert len(port_map.reachable_buckets(0)) == 2 ** port_map.rank
    assert len(port_map.unreachable_cores(0)) >= 16 - 2 ** port_map.rank
    text = port_map.describe()
    assert f"rank {port_map.rank} of 7" in text and "unreachable" in text
    assert str(port_map.unreachable_cores(0)) in text


def singular_setup():
    """A singular map, a core, a server and two local IPs: unreachable via the first,
    reachable via the second."""
    port_map = ResponsePortMap(singular_key(), IndirectionTable.round_robin(16, 7))
    server, port = V4("192.0.2.80"), 80
    for core in range(port_map.table.cores):
        blocked = [V4(0x0A000000 + i) for i in range(1, 200)
                   if core in port_map.unreachable_cores(
                       port_map.response_constant(server, V4(0x0A000000 + i), port))]
        fine = [V4(0x0A000000 + i) for i in range(1, 200)
                if core not in port_map.unreachable_cores(
                    port_map.response_constant(server, V4(0x0A000000 + i), port))]
        if blocked and fine:
            return port_map, core, server, port, blocked[0], fine[0]
    raise AssertionError("no split found")


def test_singular_key_nat_falls_back_to_another_ip_usip_says_it_cannot():
    port_map, core, server, port, blocked, fine = singular_setup()
    nat = PortAllocator(core, [blocked, fine], port_map, spread=False)
    got = nat.allocate(server_ip=server, server_port=port, client_ip="198.51.100.1",
                       keep_client_ip=False)
    assert got.local_ip == fine
    assert real_core(port_map, got, server, port) == core
    only_blocked = PortAllocator(core, [blocked], port_map)
    with pytest.raises(PortExhausted) as caught:
        only_blocked.allocate(server_ip=server, server_port=port, client_ip="198.51.100.1",
                              keep_client_ip=False)
    assert caught.value.reason == "unreachable"
    usip = PortAllocator(core, [], port_map, tables_per_ip=4)
    with pytest.raises(PortExhausted) as caught:
        usip.allocate(server_ip=server, server_port=port, client_ip=blocked,
                      keep_client_ip=True)
    error = caught.value
    assert error.reason == "unreachable" and error.field == "port"
    assert "usip keeps the client IP" in str(error) and f"core {core}" in str(error)
    assert f"rank {port_map.rank} of {port_map.hash_bits}" in str(error)


@pytest.mark.parametrize("strategy", ["solve", "scan"])
def test_exhaustion_then_recovery(strategy):
    port_map = ResponsePortMap(Key.microsoft(), IndirectionTable.round_robin(4, 7))
    allocator = PortAllocator(1, ["10.0.0.1"], port_map, strategy=strategy,
                              port_range=PortRange(5000, 5199))
    got = []
    with pytest.raises(PortExhausted) as caught:
        for _ in range(300):
            got.append(allocator.allocate(server_ip="192.0.2.1", server_port=80,
                                          client_ip="198.51.100.9", keep_client_ip=False))
    assert 10 < len(got) < 200
    assert len({g.port for g in got}) == len(got)
    assert all(5000 <= g.port <= 5199 and real_core(port_map, g, "192.0.2.1", 80) == 1
               for g in got)
    message = str(caught.value)
    assert caught.value.reason == "occupancy"
    assert "core 1" in message and "10.0.0.1" in message and "fitting ports free 0" in message
    allocator.release(got[3])
    again = allocator.allocate(server_ip="192.0.2.1", server_port=80,
                               client_ip="198.51.100.9", keep_client_ip=False)
    assert again.port == got[3].port
    occupancy = allocator.occupancy()["10.0.0.1/0"]
    assert occupancy["taken"] == len(got) and occupancy["capacity"] == 200


def test_usip_tables_reuse_port_numbers_but_never_a_response_tuple():
    port_map = ResponsePortMap(Key.microsoft(), IndirectionTable.round_robin(4, 7))
    allocator = PortAllocator(2, [], port_map, tables_per_ip=8,
                              port_range=PortRange(20000, 20400))
    seen = set()
    rng = np.random.default_rng(5)
    clients = [V4(int(x)) for x in rng.integers(1, 2**32 - 1, 3)]
    servers = [V4(int(x)) for x in rng.integers(1, 2**32 - 1, 3)]
    allocations = []
    for i in range(600):
        client, server = clients[i % 3], servers[(i // 3) % 3]
        try:
            got = allocator.allocate(server_ip=server, server_port=443, client_ip=client,
                                     keep_client_ip=True)
        except PortExhausted:
            continue
        response = (server, 443, got.local_ip, got.port)
        assert response not in seen
        seen.add(response)
        allocations.append(got)
        assert got.local_ip == client and real_core(port_map, got, server, 443) == 2
    indexes = {g.table_index for g in allocations}
    assert len(indexes) > 1
    by_port = {}
    for g in allocations:
        by_port.setdefault(g.port, set()).add((g.local_ip, g.table_index))
    assert any(len(v) > 1 for v in by_port.values())


def test_usip_tables_belong_to_the_core_not_to_each_client():
    # The patent: "a plurality of port allocation tables on each core", one picked by a
    # hash of client and server IP. 500 clients make at most tables_per_ip tables, so
    # memory is bounded by the configuration, not by the traffic.
    port_map = ResponsePortMap(Key.microsoft(), IndirectionTable.round_robin(4, 7))
    allocator = PortAllocator(1, [], port_map, tables_per_ip=4)
    server = V4(0xC0000201)
    got = [allocator.allocate(server_ip=server, server_port=80, client_ip=V4(0x0A000000 + i),
                              keep_client_ip=True) for i in range(500)]
    assert {key for key in allocator.tables} <= {(allocator.shared_ip, i) for i in range(4)}
    assert all(g.local_ip == V4(0x0A000000 + i) and g.table_ip == allocator.shared_ip
               for i, g in enumerate(got))
    # one table never hands a port out twice, whichever clients asked
    by_table = {}
    for g in got:
        assert g.port not in by_table.setdefault(g.table_index, set())
        by_table[g.table_index].add(g.port)
    allocator.release(got[0])
    assert allocator.table(allocator.shared_ip, got[0].table_index).state(got[0].port) == \
        PortState.FREE


def test_wrong_direction_map_sends_most_responses_elsewhere():
    table = IndirectionTable.round_robin(8, 7)
    wrong = ResponsePortMap(Key.microsoft(), table, direction="request")
    right = ResponsePortMap(Key.microsoft(), table)
    rng = np.random.default_rng(9)
    misses = 0
    for i in range(200):
        core = i % 8
        server = V4(int(rng.integers(1, 2**32 - 1)))
        allocator = PortAllocator(core, [V4(0x0A000001 + core)], wrong)
        got = allocator.allocate(server_ip=server, server_port=80, client_ip="198.51.100.3",
                                 keep_client_ip=False)
        request = hash_input(got.local_ip, server, got.port, 80)
        assert table.core_of(toeplitz_hash(wrong.key, request)) == core  # what it checked
        misses += real_core(right, got, server, 80) != core
    assert misses > 150


def test_table_states_and_errors():
    port_map = ResponsePortMap(Key.microsoft(), IndirectionTable.round_robin(2, 3))
    table = PortAllocationTable(port_map, PortRange(100, 110))
    assert table.capacity == 11 and table.state(99) is PortState.CLOSED
    table.take(105)
    assert table.state(105) is PortState.TAKEN and table.taken == 1
    with pytest.raises(PortStateError, match="port: expected a free port, got 105"):
        table.take(105)
    table.release(105)
    with pytest.raises(PortStateError):
        table.release(105)
    table.close(106)
    assert table.capacity == 10 and table.state(106) is PortState.CLOSED
    table.reopen(106)
    assert table.capacity == 11
    with pytest.raises(PortStateError):
        table.reopen(50)
    with pytest.raises(ConfigError):
        PortRange(10, 5)
    with pytest.raises(ConfigError):
        ResponsePortMap(Key.microsoft(), IndirectionTable.round_robin(2, 3), direction="up")
    assert sum(table.free_in_class(k) for k in range(8)) == 11


def test_response_constants_match_scalar():
    port_map = ResponsePortMap(Key.random(4), IndirectionTable.round_robin(5, 6))
    rng = np.random.default_rng(1)
    server = rng.integers(0, 2**32, 100, dtype=np.uint32)
    local = rng.integers(0, 2**32, 100, dtype=np.uint32)
    sport = rng.integers(0, 65536, 100, dtype=np.uint32)
    batch = port_map.response_constants(server, local, sport)
    for i in range(100):
        assert batch[i] == port_map.response_constant(V4(int(server[i])), V4(int(local[i])),
                                                      int(sport[i]))


def make_allocators(port_map, strategy, tables_per_ip, port_range, ips):
    return [PortAllocator(c, [V4(0x0A000000 + 256 * c + i + 1) for i in range(ips)], port_map,
                          strategy=strategy, tables_per_ip=tables_per_ip, port_range=port_range)
            for c in range(port_map.table.cores)]


def churn(allocators, seed: int, keep: bool) -> None:
    """Allocate, release every other port and close one, so that the tables' pools no
    longer share the initial layout (the same steps for the same seed)."""
    rng = np.random.default_rng(seed)
    for allocator in allocators:
        held = []
        for _ in range(12):
            try:
                held.append(allocator.allocate(
                    server_ip=V4(0xC0000200 + int(rng.integers(4))), server_port=80,
                    client_ip=V4(0x0B000000 + int(rng.integers(5))), keep_client_ip=keep))
            except PortExhausted:
                break
        for got in held[::2]:
            allocator.release(got)
        if held:
            got = held[-1]
            allocator.close(got.local_ip if got.table_ip is None else got.table_ip,
                            got.table_index, got.port)


@settings(max_examples=40, deadline=None)
@given(strategy=st.sampled_from(["solve", "scan"]), keep=st.booleans(),
       tables_per_ip=st.sampled_from([1, 3]), ips=st.integers(1, 3), cores=st.integers(1, 4),
       small=st.booleans(), seed=st.integers(0, 2**16), rows=st.integers(1, 400),
       used=st.booleans(), direction=st.sampled_from(["response", "request"]),
       transform=st.sampled_from(["none", "symmetric-xor"]),
       portless=st.sampled_from(["none", "all", "some"]))
def test_batch_equals_scalar_loop(strategy, keep, tables_per_ip, ips, cores, small, seed, rows,
                                  used, direction, transform, portless):
    """``allocate_batch`` makes the scalar loop's decisions, from fresh tables or from
    tables that have allocated, released and closed ports (``used``), for either
    direction and linear input transform, with responses hashed on their addresses
    alone for no row, every row or some rows (``portless``: nat chooses the IP)."""
    _batch_equals_scalar_loop(strategy, keep, tables_per_ip, ips, cores, small, seed, rows,
                              used, direction, transform, portless)


@settings(max_examples=40, deadline=None)
@given(strategy=st.just("solve"), keep=st.booleans(), tables_per_ip=st.just(1),
       ips=st.integers(1, 3), cores=st.integers(1, 4), small=st.just(True),
       seed=st.integers(0, 2**16), rows=st.integers(50, 400), used=st.booleans(),
       direction=st.just("response"), transform=st.just("none"),
       window=st.integers(1, 40), portless=st.sampled_from(["none", "all", "some"]))
def test_batch_rounds_over_a_window_equal_the_scalar_loop(strategy, keep, tables_per_ip, ips,
                                                          cores, small, seed, rows, used,
                                                          direction, transform, window,
                                                          portless):
    """After a round that stopped early, a round looks at a window of the remaining rows
    (at least ``_FIRST_WINDOW``, 4,096, more than these rows): with a tiny one, scarce
    ports drain pools inside and across windows, and every decision is still the scalar
    loop's."""
    saved = port_batch._FIRST_WINDOW
    port_batch._FIRST_WINDOW = window
    try:
        _batch_equals_scalar_loop(strategy, keep, tables_per_ip, ips, cores, small, seed,
                                  rows, used, direction, transform, portless)
    finally:
        port_batch._FIRST_WINDOW = saved


def _batch_equals_scalar_loop(strategy, keep, tables_per_ip, ips, cores, small, seed, rows,
                              used, direction, transform, portless="none"):
    port_map = ResponsePortMap(Key.microsoft(), IndirectionTable.round_robin(cores, 4),
                               direction=direction, transform=transform)
    port_range = PortRange(3000, 3040) if small else PortRange()
    rng = np.random.default_rng(seed)
    core = rng.integers(0, cores, rows)
    server = rng.integers(0xC0000200, 0xC0000204, rows, dtype=np.uint32)
    client = rng.integers(0x0B000000, 0x0B000005, rows, dtype=np.uint32)
    sport = rng.choice(np.array([80, 443], np.uint32), rows)
    only = {"none": np.zeros(rows, bool), "all": np.ones(rows, bool),
            "some": rng.random(rows) < 0.5}[portless]
    scalar = make_allocators(port_map, strategy, tables_per_ip, port_range, ips)
    batch = make_allocators(port_map, strategy, tables_per_ip, port_range, ips)
    if used:
        churn(scalar, seed, keep)
        churn(batch, seed, keep)
    result = allocate_batch(batch, core=core, server_ip=server, server_port=sport,
                            client_ip=client, keep_client_ip=keep, addresses_only=only)
    for i in range(rows):
        try:
            got = scalar[core[i]].allocate(server_ip=V4(int(server[i])),
                                           server_port=int(sport[i]),
                                           client_ip=V4(int(client[i])), keep_client_ip=keep,
                                           addresses_only=bool(only[i]))
        except PortExhausted as error:
            assert not result.ok[i], i
            assert result.tries[i] == error.tries
            continue
        assert result.ok[i], i
        assert (result.port[i], result.local_ip[i], result.table_index[i], result.tries[i],
                result.bucket[i]) == (got.port, int(got.local_ip), got.table_index, got.tries,
                                      got.bucket), i
    for a, b in zip(scalar, batch, strict=True):
        assert a.snapshot() == b.snapshot()


@settings(max_examples=40, deadline=None)
@given(key=st.sampled_from([Key.microsoft(), singular_key()]), keep=st.booleans(),
       ips=st.integers(1, 3), cores=st.integers(1, 4), small=st.booleans(),
       seed=st.integers(0, 2**16), rows=st.integers(1, 300), span=st.integers(1, 400),
       orders=st.booleans())
def test_stacked_equals_allocate_and_release_in_key_order(key, keep, ips, cores, small, seed,
                                                          rows, span, orders):
    """``allocate_stacked`` (its events sorted by packed keys, its stacks matched by slot)
    gives the ports, tables, tries, buckets and per-core peak that ``allocate`` and
    ``release`` called one event at a time in key order give, with the rows' orders
    passed in or sorted inside (``orders``), and with a singular key (some rows' first
    IP has no fitting class: they try the next); or None when a first choice runs dry."""
    port_map = ResponsePortMap(key, IndirectionTable.round_robin(cores, 4))
    port_range = PortRange(3000, 3040) if small else PortRange()
    rng = np.random.default_rng(seed)
    core = rng.integers(0, cores, rows)
    server = rng.integers(0xC0000200, 0xC0000204, rows, dtype=np.uint32)
    client = rng.integers(0x0B000000, 0x0B000005, rows, dtype=np.uint32)
    sport = rng.choice(np.array([80, 443], np.uint32), rows)
    # distinct keys: a time in the high bits, a random tie-break below
    take_key = rng.integers(0, span, rows) << 20 | rng.permutation(rows)
    free_key = take_key + ((rng.integers(1, span + 1, rows) << 20) | (1 << 19))
    batch = make_allocators(port_map, "solve", 1, port_range, ips)
    got = port_batch.allocate_stacked(
        batch, core=core, server_ip=server, server_port=sport, client_ip=client,
        keep_client_ip=keep, take_key=take_key, free_key=free_key,
        take_order=np.argsort(take_key) if orders else None,
        free_order=np.argsort(free_key) if orders else None)
    event("stacked" if got is not None else "None")
    if got is not None:
        event(f"tries {int(got[0].tries.max())}")
    if got is None:
        return
    result, peak = got
    scalar = make_allocators(port_map, "solve", 1, port_range, ips)
    events = sorted([(int(k), i, True) for i, k in enumerate(take_key)]
                    + [(int(k), i, False) for i, k in enumerate(free_key)])
    held, most, allocation = [0] * cores, [0] * cores, {}
    for _, i, take in events:
        allocator = scalar[core[i]]
        if take:
            allocation[i] = allocator.allocate(
                server_ip=V4(int(server[i])), server_port=int(sport[i]),
                client_ip=V4(int(client[i])), keep_client_ip=keep)
            held[core[i]] += 1
            most[core[i]] = max(most[core[i]], held[core[i]])
        else:
            allocator.release(allocation[i])
            held[core[i]] -= 1
    for i, a in allocation.items():
        assert (result.port[i], result.local_ip[i], result.table_index[i], result.tries[i],
                result.bucket[i]) == (a.port, int(a.local_ip), a.table_index, a.tries,
                                      a.bucket), i
    assert peak.tolist() == most


def test_batch_at_scale_lands_on_the_requesting_core():
    port_map = ResponsePortMap(Key.microsoft(), IndirectionTable.round_robin(16, 7))
    allocators = make_allocators(port_map, "solve", 1, PortRange(), 4)
    rng = np.random.default_rng(2)
    n = 50_000
    core = rng.integers(0, 16, n)
    server = rng.integers(0xC6336400, 0xC6336464, n, dtype=np.uint32)
    client = rng.integers(0, 2**32, n, dtype=np.uint32)
    result = allocate_batch(allocators, core=core, server_ip=server, server_port=80,
                            client_ip=client, keep_client_ip=False)
    assert result.ok.all()
    hashes = np.array([toeplitz_hash(port_map.key, hash_input(
        V4(int(server[i])), V4(int(result.local_ip[i])), 80, int(result.port[i])))
        for i in range(0, n, 97)], dtype=np.int64)
    assert (np.array(port_map.table.buckets)[hashes & 127] == core[::97]).all()
    pairs = result.local_ip.astype(np.int64) * 65536 + result.port
    assert np.unique(pairs).size == n


@settings(max_examples=40, deadline=None)
@given(key=st.sampled_from([Key.microsoft(), singular_key()]), cores=st.integers(1, 16),
       bits=st.integers(1, 7), ips=st.integers(1, 3), keep=st.booleans(),
       spread=st.booleans(), small=st.booleans(), seed=st.integers(0, 2**16))
def test_scalar_fast_path_matches_the_general_path(key, cores, bits, ips, keep, spread, small,
                                                    seed):
    """``allocate`` with IPv4Address objects takes the flattened solve path; text addresses
    take the general one. Same ports, IPs, tries, buckets, failures and final state."""
    table = IndirectionTable.round_robin(cores, bits)
    port_map = ResponsePortMap(key, table)
    port_range = PortRange(40000, 40000 + 40) if small else PortRange()
    rng = np.random.default_rng(seed)
    core = int(rng.integers(cores))
    local_ips = [V4(0x0A000001 + 256 * core + i) for i in range(ips)]
    fast, general = (PortAllocator(core, local_ips, port_map, spread=spread,
                                   port_range=port_range) for _ in range(2))
    servers = [V4(int(s)) for s in rng.integers(1, 2**32 - 1, 3)]
    for _ in range(60):
        server, client = servers[int(rng.integers(3))], V4(int(rng.integers(1, 2**32 - 1)))
        server_port = int(rng.choice([80, 443, 0, 65535]))
        outcomes = []
        for allocator, as_text in ((fast, False), (general, True)):
            try:
                outcomes.append(allocator.allocate(
                    server_ip=str(server) if as_text else server, server_port=server_port,
                    client_ip=str(client) if as_text else client, keep_client_ip=keep))
            except PortExhausted as error:
                outcomes.append((error.reason, error.tries, error.tables_tried, str(error)))
        assert outcomes[0] == outcomes[1]
    assert fast.snapshot() == general.snapshot()
    assert fast.occupancy() == general.occupancy()


@pytest.mark.parametrize("clients", ["random", "same low byte"])
def test_spread_shares_flows_over_local_ips_and_fitting_classes(clients):
    """nat's spread starts flows evenly over the core's IPs and over the classes that fit,
    also for clients whose addresses differ only in their upper bits."""
    port_map = ResponsePortMap(Key.microsoft(), IndirectionTable.round_robin(16, 7))
    ips = [V4(0x0A000101 + i) for i in range(4)]
    allocator = PortAllocator(3, ips, port_map)
    rng = np.random.default_rng(5)
    server = V4(0xC6336407)
    if clients == "random":
        addresses = rng.integers(1, 2**32 - 1, 4000)
    else:  # x.y.z.1: the low byte never changes
        addresses = (rng.integers(1, 2**24 - 1, 4000) << 8) | 1
    got = [allocator.allocate(server_ip=server, server_port=80, client_ip=V4(int(a)),
                              keep_client_ip=False) for a in addresses]
    per_ip = np.bincount([ips.index(g.local_ip) for g in got], minlength=4)
    assert per_ip.min() > 0.2 * len(got), per_ip
    assert all(g.tries == 1 for g in got)  # each flow's first IP had room
    constant = port_map.response_constant(server, ips[0], 80)
    fitting = len(port_map.fitting_classes(3)[constant])
    classes = np.bincount([port_map.port_class(g.port) for g in got if g.local_ip == ips[0]],
                          minlength=128)
    used = classes[classes > 0]
    assert used.size == fitting and used.min() > 0.5 * used.mean(), used


# -- scan refuses what the rank (or the free pools) rule out, without hashing ----------------


def port_keys():
    """Keys whose port matrix ranges from full rank to rank 0: Microsoft's, the singular
    one, and random keys with a run of the key bits the port meets cleared or set."""
    def damaged(seed, start, length, ones):
        value = int.from_bytes(Key.random(seed).data, "big")
        for bit in range(start, start + length):
            mask = 1 << (320 - 1 - bit)
            value = value | mask if ones else value & ~mask
        return Key(value.to_bytes(40, "big"), f"damaged-{seed}")
    return st.one_of(st.just(Key.microsoft()), st.just(singular_key()),
                     st.builds(damaged, st.integers(0, 10_000), st.integers(96, 126),
                               st.integers(1, 30), st.booleans()))


def rank_refuses(port_map, core, server, server_port, locals_) -> bool:
    """Whether the rank alone says no port fits: for every candidate local IP, the real
    hash with port 0 leaves ``core`` out of the buckets the port can reach."""
    return all(core in port_map.unreachable_cores(
        port_map.response_constant(server, local, server_port)) for local in locals_)


def outcome(allocator, server, server_port, client, keep):
    try:
        return allocator.allocate(server_ip=server, server_port=server_port, client_ip=client,
                                  keep_client_ip=keep)
    except PortExhausted as error:
        return (error.reason, error.tries, error.tables_tried, str(error))


@settings(max_examples=50, deadline=None)
@given(key=port_keys(), cores=st.integers(1, 8), bits=st.integers(1, 7),
       tables_per_ip=st.integers(1, 3), ips=st.integers(1, 3), keep=st.booleans(),
       size=st.integers(4, 160), seed=st.integers(0, 2**16),
       direction=st.sampled_from(["response", "request"]),
       transform=st.sampled_from(["none", "symmetric-xor"]))
def test_scan_refuses_unreachable_flows_without_hashing(key, cores, bits, tables_per_ip, ips,
                                                        keep, size, seed, direction,
                                                        transform):
    """``scan`` with its shortcut makes the full loop's decisions (ports, IPs, tables,
    tries, refusals and their reasons, final table state), on the scalar path (real
    hashes) and the batch path (the class trick); it hashes nothing for a flow whose
    cores the rank puts out of the port's reach, and never more than the full loop."""
    port_map = ResponsePortMap(key, IndirectionTable.round_robin(cores, bits),
                               direction=direction, transform=transform)
    port_range = PortRange(3000, 3000 + size - 1)  # small: tables fill, refusals by occupancy

    def allocators(shortcut):
        return [PortAllocator(c, [V4(0x0A000000 + 256 * c + i + 1) for i in range(ips)],
                              port_map, strategy="scan", tables_per_ip=tables_per_ip,
                              port_range=port_range, scan_shortcut=shortcut)
                for c in range(cores)]

    rng = np.random.default_rng(seed)
    rows = 40
    core = rng.integers(0, cores, rows)
    server = rng.integers(0xC0000200, 0xC0000206, rows, dtype=np.uint32)
    client = rng.integers(0x0B000000, 0x0B000010, rows, dtype=np.uint32)
    sport = rng.choice(np.array([80, 443, 53], np.uint32), rows)
    fast, full = allocators(True), allocators(False)
    held = []
    refused_by_rank = 0
    for i in range(rows):
        c, srv, cli, prt = int(core[i]), V4(int(server[i])), V4(int(client[i])), int(sport[i])
        before = fast[c].scan_hashes, full[c].scan_hashes
        got = outcome(fast[c], srv, prt, cli, keep)
        assert got == outcome(full[c], srv, prt, cli, keep), i
        hashed = fast[c].scan_hashes - before[0], full[c].scan_hashes - before[1]
        assert hashed[0] <= hashed[1]
        if rank_refuses(port_map, c, srv, prt, [cli] if keep else fast[c].local_ips):
            refused_by_rank += 1
            assert got[0] == "unreachable" and hashed == (0, got[1]), i
        elif isinstance(got, Allocation):
            held.append((c, got))
            if direction == "response" and transform == "none":
                assert real_core(port_map, got, srv, prt) == c
        else:
            assert got[0] == "occupancy"
        if held and rng.random() < 0.3:  # release some, so pools and cursors move
            c, gone = held.pop(int(rng.integers(len(held))))
            fast[c].release(gone)
            full[c].release(gone)
    for a, b in zip(fast, full, strict=True):
        assert a.snapshot() == b.snapshot()
    event(f"flows the rank refuses: {'some' if refused_by_rank else 'none'}")

    # the batch path (the class trick): the same decisions, with and without the shortcut
    fast, full = allocators(True), allocators(False)
    batch = [allocate_batch(group, core=core, server_ip=server, server_port=sport,
                            client_ip=client, keep_client_ip=keep) for group in (fast, full)]
    for name in ("port", "local_ip", "table_index", "tries", "ok", "bucket"):
        assert np.array_equal(getattr(batch[0], name), getattr(batch[1], name)), name
    for a, b in zip(fast, full, strict=True):
        assert a.snapshot() == b.snapshot() and a.scan_hashes <= b.scan_hashes
    # rows the rank refuses, alone: refused, the loop's tries, not one candidate hashed
    blocked = np.array([rank_refuses(port_map, int(core[i]), V4(int(server[i])),
                                     int(sport[i]), [V4(int(client[i]))] if keep
                                     else fast[int(core[i])].local_ips)
                        for i in range(rows)])
    if blocked.any():
        fast, full = allocators(True), allocators(False)
        only = [allocate_batch(group, core=core[blocked], server_ip=server[blocked],
                               server_port=sport[blocked], client_ip=client[blocked],
                               keep_client_ip=keep) for group in (fast, full)]
        assert not only[0].ok.any() and np.array_equal(only[0].tries, only[1].tries)
        assert sum(a.scan_hashes for a in fast) == 0
        assert sum(a.scan_hashes for a in full) == int(only[1].tries.sum())


def test_scan_singular_key_usip_refusals_cost_no_hashing():
    """The singular-key usip example with ``scan``: about half its flows have no port
    that fits (the rank); each used to hash the whole range in each of 4 tables."""
    from engine.examples import EXAMPLES_DIR
    from engine.runs.run import verify_scenario
    from engine.scenarios.scenario import load_scenario
    text = (EXAMPLES_DIR / "singular-key-usip.yaml").read_text()
    scenario = load_scenario(text.replace("strategy: solve", "strategy: scan"))
    batch = verify_scenario(scenario, rows=True)
    trace = verify_scenario(scenario, mode="trace", rows=True)
    assert batch.summary.refused > 500 and batch.passed
    assert [r.key() for r in batch.rows] == [r.key() for r in trace.rows]
    refused = [r for r in trace.rows if r.verdict == "refused"]
    assert len(refused) == batch.summary.refused
    port_map, core, server, port, blocked, fine = singular_setup()
    allocator = PortAllocator(core, [], port_map, strategy="scan", tables_per_ip=4)
    with pytest.raises(PortExhausted) as caught:
        allocator.allocate(server_ip=server, server_port=port, client_ip=blocked,
                           keep_client_ip=True)
    assert caught.value.reason == "unreachable" and allocator.scan_hashes == 0
    assert caught.value.tries == 4 * PortRange().size  # what the full loop reports
    got = allocator.allocate(server_ip=server, server_port=port, client_ip=fine,
                             keep_client_ip=True)
    assert allocator.scan_hashes == got.tries > 0


@settings(max_examples=40, deadline=None)
@given(cores=st.integers(1, 8), ips=st.integers(1, 6), strategy=st.sampled_from(["solve", "scan"]),
       seed=st.integers(0, 2**16), small=st.booleans())
def test_addresses_only_nat_chooses_an_ip_whose_response_lands_home(cores, ips, strategy,
                                                                     seed, small):
    """Where the NIC hashes responses on their addresses alone, nat takes an IP whose
    response (the real Toeplitz 2-tuple hash) lands on its core whenever one with a free
    port exists; else another IP with a free port (the response is forwarded); refused
    only when no IP has a free port. The allocation's bucket is the 2-tuple hash's."""
    port_map = ResponsePortMap(Key.microsoft(), IndirectionTable.round_robin(cores, 7))
    port_range = PortRange(5000, 5003) if small else PortRange()
    rng = np.random.default_rng(seed)
    allocators = make_allocators(port_map, strategy, 1, port_range, ips)
    for _ in range(60):
        core = int(rng.integers(0, cores))
        allocator = allocators[core]
        server = V4(int(rng.integers(0xC0000200, 0xC0000210)))
        free = {ip: allocator.table(ip).free for ip in allocator.local_ips}
        fitting = [ip for ip in allocator.local_ips if free[ip] and port_map.table.core_of(
            toeplitz_hash(port_map.key, server.packed + ip.packed)) == core]
        try:
            got = allocator.allocate(server_ip=server, server_port=80,
                                     client_ip=V4(int(rng.integers(1, 2**31))),
                                     keep_client_ip=False, addresses_only=True)
        except PortExhausted as error:
            assert not any(free.values()) and error.reason == "occupancy"
            continue
        landed = port_map.table.core_of(toeplitz_hash(port_map.key,
                                                      server.packed + got.local_ip.packed))
        assert got.bucket == toeplitz_hash(port_map.key, server.packed + got.local_ip.packed
                                           ) & port_map.mask
        assert (landed == core) == bool(fitting)
        assert allocator.ip_fits(int(server), int(got.local_ip)) == bool(fitting)
        if fitting:
            event("steered by IP choice")
            assert got.local_ip in fitting
        else:
            event("forwarded")


def test_addresses_only_usip_takes_any_free_port_and_cannot_steer():
    """usip keeps the client IP: under addresses-only hashing every port gives the same
    response bucket, so it takes the first free port, fitting or not, and is refused
    only when the table is full."""
    port_map = ResponsePortMap(Key.microsoft(), IndirectionTable.round_robin(4, 7))
    allocator = PortAllocator(1, ["10.0.0.1"], port_map, port_range=PortRange(6000, 6001))
    client, server = V4("198.51.100.7"), V4("192.0.2.10")
    got = [allocator.allocate(server_ip=server, server_port=80, client_ip=client,
                              keep_client_ip=True, addresses_only=True).port for _ in range(2)]
    assert sorted(got) == [6000, 6001]
    with pytest.raises(PortExhausted) as caught:
        allocator.allocate(server_ip=server, server_port=80, client_ip=client,
                           keep_client_ip=True, addresses_only=True)
    assert caught.value.reason == "occupancy"


@settings(max_examples=40, deadline=None)
@given(key=st.sampled_from([Key.microsoft(), Key.symmetric(), Key.random(7)]),
       cores=st.integers(1, 16), bits=st.integers(1, 7),
       transform=st.sampled_from(["none", "symmetric-xor"]),
       pairs=st.lists(st.tuples(addresses, addresses), min_size=1, max_size=20))
def test_ip_fits_in_both_forms_is_the_real_two_tuple_hash(key, cores, bits, transform, pairs):
    """The rule of nat's IP choice, scalar and per row, is whether the real Toeplitz hash
    of the response's addresses (server, local; the NIC's transform applied) lands on
    the allocator's core."""
    port_map = ResponsePortMap(key, IndirectionTable.round_robin(cores, bits),
                               transform=transform)
    nic = Nic(key, port_map.table, transform=Transform(transform))
    servers = np.array([int(s) for s, _ in pairs], np.uint32)
    locals_ = np.array([int(loc) for _, loc in pairs], np.uint32)
    landed = port_map.table.as_array()[nic.hash_ipv4_batch(servers, locals_)
                                       & np.uint32(port_map.mask)]
    for core in {0, cores - 1}:
        allocator = PortAllocator(core, [], port_map)
        expected = (landed == core).tolist()
        assert [allocator.ip_fits(int(s), int(loc)) for s, loc in pairs] == expected
        assert allocator.ip_fits_batch(servers, locals_).tolist() == expected


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 2**32 - 1), st.sampled_from([1, 4]), st.booleans())
def test_release_batch_frees_as_release_one_by_one(seed, tables, keep):
    """Ended sessions freed together (the batch path in time) leave every table as
    ``release`` called for each in order does: same states, same pools in the same
    order, so the next allocations choose the same ports."""
    rng = np.random.default_rng(seed)
    port_map = ResponsePortMap(Key.microsoft(), IndirectionTable.round_robin(2, 3))
    pair = [[PortAllocator(core, ["10.0.0.1", "10.0.0.2"], port_map, tables_per_ip=tables,
                           port_range=PortRange(40000, 40063)) for core in range(2)]
            for _ in range(2)]
    count = 60
    core = rng.integers(0, 2, count)
    server = (0xCB007100 + rng.integers(0, 3, count)).astype(np.uint32)
    client = (0xC6336400 + rng.integers(0, 5, count)).astype(np.uint32)
    got = [port_batch.allocate_batch(allocators, core=core, server_ip=server, server_port=80,
                                     client_ip=client, keep_client_ip=keep)
           for allocators in pair]
    ok = np.flatnonzero(got[0].ok)
    ended = rng.permutation(ok)[:ok.size // 2 + 1] if ok.size else ok
    one = pair[0]
    for row in ended.tolist():
        allocator = one[int(core[row])]
        table_ip = allocator.shared_ip if keep else None
        allocator.release(Allocation(
            int(core[row]), ipaddress.IPv4Address(int(got[0].local_ip[row])),
            int(got[0].table_index[row]), int(got[0].port[row]), 1,
            int(got[0].bucket[row]), "solve",
            server_ip=ipaddress.IPv4Address(int(server[row])), server_port=80,
            table_ip=table_ip))
    port_batch.release_batch(pair[1], core=core[ended], local_ip=got[1].local_ip[ended],
                             table_index=got[1].table_index[ended], port=got[1].port[ended],
                             server_ip=server[ended], server_port=np.full(ended.size, 80),
                             keep_client_ip=keep)
    assert [a.snapshot() for a in pair[0]] == [a.snapshot() for a in pair[1]]
    again = [port_batch.allocate_batch(allocators, core=core, server_ip=server,
                                       server_port=80, client_ip=client, keep_client_ip=keep)
             for allocators in pair]
    assert again[0].port.tolist() == again[1].port.tolist()


def test_release_many_refuses_a_free_or_repeated_port():
    port_map = ResponsePortMap(Key.microsoft(), IndirectionTable.round_robin(2, 3))
    table = PortAllocationTable(port_map, PortRange(40000, 40063))
    table.take_many([40001, 40002, 40003])
    with pytest.raises(PortStateError, match="already free"):
        table.release_many([40001, 40005])
    with pytest.raises(PortStateError, match="repeated"):
        table.release_many([40002, 40002])
    before = table.snapshot()
    table.release_many([40003, 40001])
    assert table.state(40003) == table.state(40001) == PortState.FREE
    assert before != table.snapshot()
