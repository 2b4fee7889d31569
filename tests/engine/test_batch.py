"""The batch path agrees with the trace flow for flow, and holds up at scale."""

from __future__ import annotations

import ipaddress

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.appliance.config import Service, SystemConfig
from engine.appliance.verdicts import VERDICT_CODE
from engine.paths.batch import flows_from_arrays, random_flow_arrays, run_batch
from engine.paths.trace import System

KEYS = ["microsoft", "symmetric", "random:7", "random:1234"]


@st.composite
def setups(draw):
    policy = draw(st.sampled_from(["nat", "usip", "transparent"]))
    shared = draw(st.booleans())
    config = SystemConfig(
        cores=draw(st.integers(1, 8)), hash_bits=draw(st.integers(1, 7)),
        ips_per_core=draw(st.integers(1, 3)),
        shared_ip="192.0.2.1" if shared else None,
        key=draw(st.sampled_from(KEYS)), policy=policy,
        strategy=draw(st.sampled_from(["solve", "scan"])),
        tables_per_ip=draw(st.sampled_from([1, 4, 64])),
        port_range=draw(st.sampled_from([(1024, 65535), (40000, 40063)])),
        handoff=draw(st.sampled_from(["message", "shared-buffer", "none"])),
        wrong_direction=draw(st.booleans()),
        transform=draw(st.sampled_from(["none", "none", "symmetric-xor"])),
        # addresses-only hashing for TCP, UDP or both: nat chooses its IP
        hash_types=draw(st.sampled_from([None, None, ("ipv4",), ("ipv4", "tcp-ipv4"),
                                         ("ipv4", "udp-ipv4")])),
        nat_ip_choice=draw(st.sampled_from(["core", "pool"])))
    seed = draw(st.integers(0, 2**32 - 1))
    count = draw(st.integers(1, 80))
    servers = draw(st.sampled_from([0, 3]))
    udp = draw(st.booleans())  # some flows UDP: hashed with ports or not, row by row
    return config, seed, count, servers, udp


@settings(max_examples=60, deadline=None)
@given(setups())
def test_trace_equals_batch_flow_for_flow(setup):
    config, seed, count, servers, udp = setup
    rng = np.random.default_rng(seed)
    arrays = random_flow_arrays(count, rng, servers=servers)
    if udp:
        arrays.proto[rng.random(count) < 0.5] = 17
    trace = System(config).run_trace(flows_from_arrays(arrays), keep_events=False)
    batch = run_batch(config, arrays)
    assert [o.key() for o in trace.outcomes] == [o.key() for o in batch.outcomes()]
    # the batch path's fast row stream lays rows out as the trace's rows do
    assert batch.row_dicts() == [o.as_dict() for o in trace.outcomes]
    assert trace.summary.core_load == batch.summary.core_load
    assert trace.summary.distinct_hashes == batch.summary.distinct_hashes
    assert trace.summary.handoff_copies == batch.summary.handoff_copies


def test_services_route_the_same_on_both_paths():
    services = (Service("198.18.0.1", 80, policy="nat",
                        servers=(("203.0.113.1", 8080), ("203.0.113.2", 8080))),
                Service("198.18.0.2", 443, policy="usip",
                        servers=(("203.0.113.3", 443),)),
                Service("198.18.0.3", 53, policy="transparent",
                        servers=(("203.0.113.4", 53),)))
    config = SystemConfig(cores=4, ips_per_core=2, services=services, policy="nat")
    rng = np.random.default_rng(5)
    arrays = random_flow_arrays(300, rng)
    targets = [(0xC6120001, 80), (0xC6120002, 443), (0xC6120003, 53), (0xCB007104, 53)]
    pick = rng.integers(0, len(targets), 300)
    arrays.server_ip[:] = [targets[i][0] for i in pick]
    arrays.server_port[:] = [targets[i][1] for i in pick]
    trace = System(config).run_trace(flows_from_arrays(arrays), keep_events=False)
    batch = run_batch(config, arrays)
    assert [o.key() for o in trace.outcomes] == [o.key() for o in batch.outcomes()]
    servers = {str(o.rewritten.dst) for o in trace.outcomes}
    assert servers == {"203.0.113.1", "203.0.113.2", "203.0.113.3", "203.0.113.4"}
    transparent = [o for o in trace.outcomes if o.request.dport == 53]
    assert all(o.rewritten.src == o.request.src and o.local_ip is None for o in transparent)


def test_a_large_nat_batch_is_all_symmetric_and_counts_every_port():
    config = SystemConfig(cores=16, ips_per_core=4, policy="nat")
    arrays = random_flow_arrays(200_000, np.random.default_rng(3), servers=100)
    result = run_batch(config, arrays)
    assert result.summary.symmetric == 200_000
    assert (result.verdict == VERDICT_CODE["symmetric"]).all()
    # One table per local IP: every (local IP, port) is handed out once.
    pairs = (result.local_ip.astype(np.uint64) << np.uint64(16)) | result.local_port
    assert np.unique(pairs).size == 200_000


@settings(max_examples=20, deadline=None)
@given(cores=st.integers(1, 8), ips=st.integers(1, 4), seed=st.integers(0, 2**16),
       pool=st.booleans())
def test_nat_ip_choice_under_addresses_only_hashing(cores, ips, seed, pool):
    """Where the NIC hashes responses on their addresses alone, nat's IP choice steers
    home every flow for which one of its IPs (or the pool's) fits, the rest are forwarded
    (none lost, none refused), both paths alike; with the pool, no two flows to a server
    share a response tuple (each core hands out its own slice of the ports)."""
    config = SystemConfig(cores=cores, ips_per_core=ips, policy="nat", hash_types=("ipv4",),
                          nat_ip_choice="pool" if pool else "core")
    arrays = random_flow_arrays(300, np.random.default_rng(seed), servers=2)
    batch = run_batch(config, arrays)
    trace = System(config).run_trace(flows_from_arrays(arrays), keep_events=False)
    assert [o.key() for o in trace.outcomes] == [o.key() for o in batch.outcomes()]
    summary = batch.summary
    assert (summary.ip_choice, summary.ip_steered) == (trace.summary.ip_choice,
                                                       trace.summary.ip_steered)
    assert summary.ip_choice == summary.flows == 300
    assert summary.asymmetric == summary.refused == 0
    assert summary.ip_steered == summary.symmetric
    assert summary.handed_off == 300 - summary.ip_steered
    nic, table = config.build_nic(), config.build_table()
    for row, request_core in enumerate(batch.request_core.tolist()):
        server = int(batch.server_ip[row])
        fits = [ip for ip in config.nat_ips(request_core) if table.core_of(
            nic.hash_ipv4_batch(np.array([server], np.uint32),
                                np.array([int(ipaddress.IPv4Address(ip))], np.uint32))[0]
        ) == request_core]
        assert (batch.verdict[row] == VERDICT_CODE["symmetric"]) == bool(fits)
    tuples = set(zip(batch.server_ip.tolist(), batch.server_port.tolist(),
                     batch.local_ip.tolist(), batch.local_port.tolist(), strict=True))
    assert len(tuples) == 300
