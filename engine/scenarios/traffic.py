"""Traffic: the flows a scenario sends, as records (trace path) or arrays (batch path).

Every source is deterministic given its seed (the source's ``seed``, else the
scenario's): explicit flows, generated flows (client prefixes, targets, a protocol
mix, sizes, Zipf popularity for heavy hitters), an adversarial flood whose requests
all hash to one indirection-table bucket, and flows replayed from a pcap::

    >>> from engine.examples import load_example
    >>> arrays = build_flow_arrays(load_example("heavy-hitters"))
    >>> len(arrays), arrays.client_ip.dtype, arrays.server_port.dtype
    (20000, dtype('uint32'), dtype('uint16'))

A flow's request goes client → server (a service's vip:vport, or a server address),
and its response comes back server → client. Addresses in arrays are uint32 host
values of IPv4 addresses (``int(IPv4Address)``); ports are host-order integers (the
hash functions put them in network order). Generated and adversarial traffic is IPv4
only; explicit and pcap flows may be IPv6 (their array rows carry ``FlowArrays.is_v6``
and 16-byte addresses).
"""

from __future__ import annotations

import dataclasses
import ipaddress
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from engine.appliance.rules import CLOSE_CODE
from engine.errors import TrafficError
from engine.nic.rss import Nic, Transform
from engine.packet.model import Proto
from engine.packet.toeplitz import hash_ipv4_batch, word_tables
from engine.paths.flows import FlowArrays, FlowSpec

if TYPE_CHECKING:
    from engine.scenarios.pcap import PcapTally


@dataclass(frozen=True, slots=True)
class Target:
    """Where generated requests go: ``ip`` (uint32 value), ``port``, ``proto`` number and
    the response size servers send back."""

    ip: int
    port: int
    proto: int
    response_bytes: int


# ---------------------------------------------------------------------------- generators

def zipf_weights(n: int, exponent: float) -> np.ndarray:
    """Popularity of ranks 1..n under Zipf's law (weight ∝ 1 / rank**exponent), summing
    to 1; exponent 0 is uniform."""
    ranks = np.arange(1, n + 1, dtype=np.float64)
    weights = ranks ** -float(exponent)
    return weights / weights.sum()


def _draw(rng: np.random.Generator, n: int, count: int, exponent: float) -> np.ndarray:
    """``count`` indexes into 0..n-1, uniform or Zipf-skewed (index 0 most popular)."""
    if exponent == 0 or n == 1:
        return rng.integers(0, n, count, dtype=np.int64)
    cdf = np.cumsum(zipf_weights(n, exponent))
    cdf[-1] = 1.0
    return np.searchsorted(cdf, rng.random(count), side="right").astype(np.int64)


def _sizes(rng: np.random.Generator, spec, count: int, default: np.ndarray | int) -> np.ndarray:
    if spec is None:
        return np.broadcast_to(np.asarray(default, np.uint32), (count,)).astype(np.uint32)
    if isinstance(spec, int):
        return np.full(count, spec, np.uint32)
    return rng.integers(spec.low, spec.high + 1, count, dtype=np.int64).astype(np.uint32)


def _client_pool(rng: np.random.Generator, prefixes: list[str], count: int,
                 distinct: int, exponent: float) -> np.ndarray:
    """Client addresses (uint32) from ``prefixes``, weighted by prefix size. With a Zipf
    exponent, ``distinct`` clients are drawn first and ranked, then chosen by popularity."""
    networks = [ipaddress.IPv4Network(p) for p in prefixes]
    sizes = np.array([n.num_addresses for n in networks], dtype=np.float64)
    bases = np.array([int(n.network_address) for n in networks], dtype=np.int64)

    def uniform(k: int) -> np.ndarray:
        which = rng.choice(len(networks), size=k, p=sizes / sizes.sum())
        offsets = np.floor(rng.random(k) * sizes[which]).astype(np.int64)
        return (bases[which] + offsets).astype(np.uint32)

    if exponent == 0:
        return uniform(count)
    pool = np.unique(uniform(min(distinct, int(sizes.sum()))))
    pool = rng.permutation(pool)
    return pool[_draw(rng, pool.size, count, exponent)]


def _unique_ports(rng: np.random.Generator, group: np.ndarray, low: int, high: int,
                  what: str) -> np.ndarray:
    """Client ports in low..high, distinct within each ``group`` value (same client and
    target), so no two flows share a 5-tuple: a random start per group, then
    consecutive ports. TrafficError when a group has more flows than the range has ports.
    """
    span = high - low + 1
    order = np.argsort(group, kind="stable")
    ordered = group[order]
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
    sizes = np.diff(np.r_[starts, ordered.size])
    if sizes.size and sizes.max() > span:
        raise TrafficError(what, f"at most {span} flows per client and target "
                           f"(ports {low}-{high})", int(sizes.max()),
                           detail="widen client_ports, add clients or lower zipf")
    group_index = np.repeat(np.arange(starts.size), sizes)
    rank = np.arange(ordered.size) - starts[group_index]
    offset = rng.integers(0, span, starts.size, dtype=np.int64)[group_index]
    ports = np.empty(group.size, dtype=np.uint16)
    ports[order] = (low + (offset + rank) % span).astype(np.uint16)
    return ports


def generate_flows(*, count: int, targets: list[Target], client_prefixes: list[str],
                   client_ports: tuple[int, int] = (1024, 65535), zipf: float = 0.0,
                   heavy_clients: int = 10_000, request_bytes=100, response_bytes=None,
                   proto_weights: dict[int, float] | None = None,
                   seed: int = 0) -> FlowArrays:
    """``count`` random IPv4 flows, vectorised and deterministic from ``seed``.

    Clients come from ``client_prefixes``; targets are picked by Zipf popularity (in
    list order, the first the most popular) as are clients when ``zipf`` > 0 (heavy
    hitters). ``proto_weights`` (protocol number → weight), when given, overrides each
    target's protocol. Sizes are an int or an object with ``low``/``high`` (bytes);
    ``response_bytes`` None means each target's own. Client ports are unique per
    (client, target), so 5-tuples never repeat. Raises TrafficError when they cannot be.
    """
    rng = np.random.default_rng(seed)
    if not targets:
        raise TrafficError("targets", "at least one service or server", 0)
    t_ip = np.array([t.ip for t in targets], dtype=np.uint32)
    t_port = np.array([t.port for t in targets], dtype=np.uint16)
    t_proto = np.array([t.proto for t in targets], dtype=np.uint8)
    t_resp = np.array([t.response_bytes for t in targets], dtype=np.uint32)
    which = _draw(rng, len(targets), count, zipf)
    clients = _client_pool(rng, client_prefixes, count, heavy_clients, zipf)
    if proto_weights:
        numbers = np.array(sorted(proto_weights), dtype=np.uint8)
        weights = np.array([proto_weights[int(n)] for n in numbers], dtype=np.float64)
        proto = numbers[rng.choice(numbers.size, size=count, p=weights / weights.sum())]
    else:
        proto = t_proto[which]
    group = (clients.astype(np.int64) << 24) | (which << 8) | proto.astype(np.int64)
    ports = _unique_ports(rng, group, client_ports[0], client_ports[1], "generated.count")
    return FlowArrays(clients, ports, t_ip[which], t_port[which], proto.astype(np.uint8),
                      _sizes(rng, request_bytes, count, 100),
                      _sizes(rng, response_bytes, count, t_resp[which]))


def adversarial_flows(*, count: int, bucket: int, nic: Nic, target: Target,
                      client_prefix: str, client_ports: tuple[int, int] = (1024, 65535),
                      request_bytes: int = 64, seed: int = 0) -> FlowArrays:
    """``count`` distinct IPv4 flows to ``target`` whose requests all hash to indirection
    bucket ``bucket`` under ``nic`` (its key, transform and table size): a flood that
    piles onto one core.

    Without an input transform the client port is *solved* for: Toeplitz is linear, so
    hash = h(addresses, server port) XOR h(client port) and, per client address, the
    ports whose contribution completes the wanted bucket are looked up in a table of the
    port word's 65,536 contributions. With a transform, candidates are drawn and
    filtered (rejection sampling). Raises TrafficError when the bucket is not reachable
    from the prefix and port range.
    """
    rng = np.random.default_rng(seed)
    network = ipaddress.IPv4Network(client_prefix)
    low, high = client_ports
    mask = nic.table.mask
    base, size = int(network.network_address), network.num_addresses
    if count > size * (high - low + 1):
        raise TrafficError("adversarial.count", f"at most {size * (high - low + 1)} flows "
                           f"from {network} and ports {low}-{high}", count)
    wanted = np.uint32(bucket)
    chunks, found, drawn = [], 0, 0
    keys_seen = np.empty(0, dtype=np.uint64)
    budget = max(4 * count * (1 if nic.transform is Transform.NONE else mask + 1), 1 << 20)
    if nic.transform is Transform.NONE:
        ports = np.arange(low, high + 1, dtype=np.uint32)
        pattern = word_tables(nic.key.data)[4][ports] & mask  # the client port is word 4
        order = np.argsort(pattern, kind="stable")
        per_pattern = np.bincount(pattern, minlength=mask + 1)
        first = np.r_[0, np.cumsum(per_pattern)[:-1]]
    while found < count:
        batch = max(2 * (count - found), 4096)
        if drawn > budget:
            raise TrafficError("adversarial.bucket", f"a bucket reachable from {network} "
                               f"and ports {low}-{high}", bucket,
                               detail=f"{found} of {count} flows found in {drawn} tries")
        drawn += batch
        client = (base + rng.integers(0, size, batch, dtype=np.int64)).astype(np.uint32)
        if nic.transform is Transform.NONE:
            rest = hash_ipv4_batch(nic.key, client, np.full(batch, target.ip, np.uint32),
                                   np.zeros(batch, np.uint32),
                                   np.full(batch, target.port, np.uint32))
            need = (rest & mask) ^ wanted
            available = per_pattern[need]
            ok = available > 0
            pick = first[need[ok]] + np.floor(rng.random(int(ok.sum()))
                                              * available[ok]).astype(np.int64)
            client, port = client[ok], ports[order[pick]]
        else:
            port = rng.integers(low, high + 1, batch, dtype=np.int64).astype(np.uint32)
            _, buckets, _ = nic.steer_ipv4_batch(client, np.full(batch, target.ip, np.uint32),
                                                 port, np.full(batch, target.port, np.uint32))
            ok = buckets == bucket
            client, port = client[ok], port[ok]
        keys = (client.astype(np.uint64) << np.uint64(16)) | port.astype(np.uint64)
        keys, index = np.unique(keys, return_index=True)
        fresh = ~np.isin(keys, keys_seen)
        index = np.sort(index[fresh])
        keys_seen = np.concatenate([keys_seen, keys[fresh]])
        take = index[:count - found]
        chunks.append((client[take], port[take]))
        found += take.size
    client = np.concatenate([c for c, _ in chunks])
    port = np.concatenate([p for _, p in chunks]).astype(np.uint16)
    return FlowArrays(client, port, np.full(count, target.ip, np.uint32),
                      np.full(count, target.port, np.uint16),
                      np.full(count, target.proto, np.uint8),
                      np.full(count, request_bytes, np.uint32),
                      np.full(count, target.response_bytes, np.uint32))


# ---------------------------------------------------------------------------- scenarios

def _service_target(service) -> Target:
    return Target(int(ipaddress.IPv4Address(service.vip)), service.vport,
                  Proto.parse(service.proto), service.response_bytes)


def _source_seed(scenario, source_seed: int | None, index: int) -> int:
    """A source's own seed, else the scenario's mixed with the source's position."""
    return source_seed if source_seed is not None else (scenario.seed * 1_000_003 + index)


def _explicit_specs(scenario, flows, first_id: int) -> list[FlowSpec]:
    from engine.scenarios.scenario import parse_endpoint
    specs = []
    for offset, flow in enumerate(flows):
        client, client_port = parse_endpoint(flow.client)
        if flow.service is not None:
            service = scenario.service(flow.service)
            server, server_port = ipaddress.ip_address(service.vip), service.vport
            proto, response = flow.proto or service.proto, service.response_bytes
        else:
            server, server_port = parse_endpoint(flow.server)
            proto, response = flow.proto or "tcp", 1000
        if flow.response_bytes is not None:
            response = flow.response_bytes
        specs.append(FlowSpec(first_id + offset, client, client_port, server, server_port,
                              Proto.parse(proto), flow.request_bytes, response,
                              start_us=flow.start_us, close=flow.close,
                              hold_us=flow.hold_us))
    return specs


def _generated_arrays(scenario, gen, index: int) -> FlowArrays:
    from engine.scenarios.scenario import parse_endpoint
    if gen.servers is not None:
        targets = []
        for text in gen.servers:
            address, port = parse_endpoint(text)
            targets.append(Target(int(address), port, Proto.TCP, 1000))
        weights = {Proto.parse(name): w for name, w in gen.proto_mix.items()}
    else:
        names = gen.services or [s.name for s in scenario.services]
        targets = [_service_target(scenario.service(n)) for n in names]
        weights = None
    seed = _source_seed(scenario, gen.seed, index)
    arrays = generate_flows(count=gen.count, targets=targets,
                            client_prefixes=gen.client_prefixes,
                            client_ports=(gen.client_ports.low, gen.client_ports.high),
                            zipf=gen.zipf, heavy_clients=gen.heavy_clients,
                            request_bytes=gen.request_bytes,
                            response_bytes=gen.response_bytes, proto_weights=weights,
                            seed=seed)
    if gen.start is None and gen.close == "fin" and gen.hold_us is None:
        return arrays
    return timed_flows(arrays, spread_us=gen.start and gen.start.spread_us,
                       rate_per_s=gen.start and gen.start.rate_per_s, close=gen.close,
                       hold_us=gen.hold_us, seed=seed)


def timed_flows(arrays: FlowArrays, *, spread_us: int | None = None,
                rate_per_s: int | None = None, close: str = "fin",
                hold_us: int | None = None, seed: int = 0) -> FlowArrays:
    """``arrays`` with start times and session ends: ``spread_us`` — each flow at a
    random microsecond 0..spread_us-1 (from ``seed``, drawn apart from the flows' own
    draws); ``rate_per_s`` — flow i at i x 1,000,000 // rate_per_s µs; neither — all at 0.
    Every flow ends by ``close`` after ``hold_us`` (None: the system's)."""
    count = len(arrays)
    if spread_us is not None:
        start = np.random.default_rng([seed, 1]).integers(0, spread_us, count, np.int64)
    elif rate_per_s is not None:
        start = np.arange(count, dtype=np.int64) * 1_000_000 // rate_per_s
    else:
        start = np.zeros(count, np.int64)
    return dataclasses.replace(
        arrays, start_us=start, close=np.full(count, CLOSE_CODE[close], np.int8),
        hold_us=np.full(count, -1 if hold_us is None else hold_us, np.int64))


def _adversarial_arrays(scenario, adv, index: int) -> FlowArrays:
    service = scenario.service(adv.service) if adv.service else scenario.services[0]
    return adversarial_flows(count=adv.count, bucket=adv.bucket, nic=scenario.build_nic(),
                             target=_service_target(service), client_prefix=adv.client_prefix,
                             client_ports=(adv.client_ports.low, adv.client_ports.high),
                             request_bytes=adv.request_bytes,
                             seed=_source_seed(scenario, adv.seed, index))


def _pcap_specs(scenario, source, pcap: str | Path | bytes | None, first_id: int,
                tally: PcapTally | None) -> list[FlowSpec]:
    from engine.scenarios.pcap import flows_from_packets, read_pcap
    if isinstance(pcap, bytes | bytearray):  # a capture uploaded with the run
        read = read_pcap(pcap, max_bytes=max(len(pcap), 1))
    else:
        path = scenario.pcap_path(source, pcap)
        if path is None:
            raise TrafficError("traffic.pcap.path", "a pcap file (in the scenario or --pcap)",
                               None)
        read = read_pcap(path)
    found = flows_from_packets(read.packets)
    if tally is not None:
        tally.add(read, found)
    flows = found.flows
    return [FlowSpec(first_id + i, f.client_ip, f.client_port, f.server_ip, f.server_port,
                     f.proto, f.request_bytes, f.response_bytes) for i, f in enumerate(flows)]


def _check_pcap_override(scenario, pcap) -> None:
    """A capture given at run time (``--pcap``) replaces the file of the scenario's pcap
    sources; a scenario without one would silently ignore it, so that is refused."""
    if pcap is not None and not any(source.pcap is not None for source in scenario.sources):
        raise TrafficError("--pcap", "a scenario with a pcap traffic source "
                           "(traffic: {pcap: {}}) to replay the capture as", str(pcap))


def require_traffic(count: int) -> int:
    """``count`` when the run has flows to carry; a scenario without any is bad input,
    not a pass (a run of nothing proves nothing)."""
    if count == 0:
        raise TrafficError("traffic", "at least one flow", "no traffic", code="no_traffic",
                           detail="the scenario's traffic sources produce no flows "
                                  "(empty lists, zero counts, or captures without usable "
                                  "packets)")
    return count


def count_flows(scenario, *, pcap: str | Path | bytes | None = None,
                mode: str = "batch") -> int:
    """How many flows a run of ``scenario`` in ``mode`` will carry (both paths carry
    the same flows, IPv6 ones included), checked as the run checks them, without
    generating any: explicit, generated and adversarial counts come
    from the file, captures are read (``pcap`` replaces their file, as in
    ``build_flow_arrays``). A service calls this before queueing a run, so a refusal
    shows at once with the reason the run would give.

    Raises TrafficError (``pcap`` with no pcap source, a pcap source with no file, no
    flows at all) and PcapError (an unreadable capture).
    """
    _check_pcap_override(scenario, pcap)
    total = 0
    for source in scenario.sources:
        if source.flows is not None:
            total += len(source.flows)
        elif source.generated is not None:
            total += source.generated.count
        elif source.adversarial is not None:
            total += source.adversarial.count
        else:
            total += len(_pcap_specs(scenario, source.pcap, pcap, total, None))
    return require_traffic(total)


def build_flow_arrays(scenario, *, pcap: str | Path | None = None,
                      tally: PcapTally | None = None) -> FlowArrays:
    """All of a scenario's traffic as arrays for the batch path, sources in file order,
    row i being flow id i. ``pcap`` overrides the file of pcap sources; ``tally``
    collects what reading them found and skipped.

    Raises TrafficError (unreachable bucket, too many flows per client and target, no
    flows at all) and PcapError (an unreadable capture).
    """
    _check_pcap_override(scenario, pcap)
    parts, next_id = [], 0
    for index, source in enumerate(scenario.sources):
        if source.flows is not None:
            part = FlowArrays.from_specs(_explicit_specs(scenario, source.flows, next_id))
        elif source.generated is not None:
            part = _generated_arrays(scenario, source.generated, index)
        elif source.adversarial is not None:
            part = _adversarial_arrays(scenario, source.adversarial, index)
        else:
            part = FlowArrays.from_specs(_pcap_specs(scenario, source.pcap, pcap, next_id,
                                                     tally))
        parts.append(part)
        next_id += len(part)
    require_traffic(next_id)
    return FlowArrays.concat(parts)


def build_flow_specs(scenario, *, pcap: str | Path | None = None,
                     limit: int | None = None, tally: PcapTally | None = None
                     ) -> list[FlowSpec]:
    """All of a scenario's traffic as records for the trace path (ids as in
    ``build_flow_arrays``; IPv6 explicit and pcap flows included), at most ``limit``;
    ``tally`` as in ``build_flow_arrays``.

    Raises TrafficError and PcapError as ``build_flow_arrays`` does.
    """
    _check_pcap_override(scenario, pcap)
    specs: list[FlowSpec] = []
    next_id = 0
    for index, source in enumerate(scenario.sources):
        if limit is not None and len(specs) >= limit:
            break
        room = None if limit is None else limit - len(specs)
        if source.flows is not None:
            part = _explicit_specs(scenario, source.flows, next_id)
        elif source.pcap is not None:
            part = _pcap_specs(scenario, source.pcap, pcap, next_id, tally)
        else:
            arrays = (_generated_arrays(scenario, source.generated, index)
                      if source.generated is not None
                      else _adversarial_arrays(scenario, source.adversarial, index))
            part = arrays.to_specs(first_id=next_id, limit=room)
            next_id += len(arrays) - len(part)
        next_id += len(part)
        specs += part if room is None else part[:room]
    if limit != 0:
        require_traffic(len(specs))
    return specs
