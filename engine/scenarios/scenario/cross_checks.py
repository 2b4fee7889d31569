"""The checks that need more than one field of a scenario: references (a service a
flow names, a core the table names), address families, sizes against what one datagram
can carry, and totals against the limits.

They run once every field has the right shape (``schema``), so a file with type errors
reports those first. ``cross_check`` runs one small named check per concern, in the
order of the file's sections (``system.nic``, ``system``, ``ports``, ``services``,
``traffic``), and returns every problem as ``(key path, message)``; the loader adds
the lines.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.appliance.ports import (
    USIP_MEMORY_LIMIT,
    PortRange,
    usip_table_bytes,
    usip_tables_bytes,
)
from engine.packet.model import Proto, max_datagram_payload
from engine.packet.toeplitz import KEY_BYTES, parse_key
from engine.scenarios.scenario.fields import address_version, endpoint_version
from engine.scenarios.scenario.limits import MAX_GENERATED_FLOWS, MAX_TIME_US
from engine.scenarios.scenario.schema import (
    AdversarialSource,
    FlowEntry,
    GeneratedSource,
    PcapSource,
    PortRangeSpec,
    Scenario,
    ServiceEntry,
    SizeRangeSpec,
    TrafficSource,
)

#: A problem before it has a line: the key path and the message.
Located = tuple[tuple, str]


@dataclass(frozen=True, slots=True)
class _Context:
    """What every check may look at: the scenario, its service names (each with the
    index of its first entry, in file order), the cores' address pool (parsed once), and
    where relative pcap paths resolve (``None``: pcap files are not looked for)."""

    scenario: Scenario
    names: dict[str, int]
    pool: ipaddress.IPv4Network | ipaddress.IPv6Network
    base_dir: Path | None


def cross_check(scenario: Scenario, base_dir: Path | None) -> list[Located]:
    """Problems that need more than one field: references, sizes against limits."""
    names: dict[str, int] = {}
    for index, service in enumerate(scenario.services):
        names.setdefault(service.name, index)
    context = _Context(scenario, names, ipaddress.ip_network(scenario.system.ip_pool), base_dir)
    return [problem for check in _SCENARIO_CHECKS for problem in check(context)]


# ---------------------------------------------------------------------------- system

def _one_forwarding(context: _Context) -> list[Located]:
    """``handoff`` is the older name of ``forwarding.route``: one of them, not both."""
    scenario = context.scenario
    if scenario.forwarding is not None and scenario.handoff is not None:
        return [(("handoff",), "expected forwarding.route or handoff (its older name), "
                               "not both")]
    return []


def _key_length(context: _Context) -> list[Located]:
    """A key shorter than 40 bytes hashes IPv4 only (seed L404: 16 bytes for IPv4)."""
    nic = context.scenario.system.nic
    length = len(parse_key(nic.key).data)
    ipv6 = sorted(t for t in nic.hash_types if t.endswith("ipv6"))
    if ipv6 and length < KEY_BYTES:
        return [(("system", "nic", "key"), f"expected at least {KEY_BYTES} bytes while IPv6 "
                                           f"hash types are on ({', '.join(ipv6)}), got "
                                           f"{length}; a {length}-byte key hashes IPv4 only: "
                                           f"list only IPv4 types in hash_types")]
    return []


def _table_size(context: _Context) -> list[Located]:
    """An explicit indirection table has one entry per bucket."""
    nic = context.scenario.system.nic
    buckets = 2 ** nic.hash_bits
    if isinstance(nic.table, list) and len(nic.table) != buckets:
        return [(("system", "nic", "table"), f"expected {buckets} buckets for hash_bits "
                                             f"{nic.hash_bits}, got {len(nic.table)}")]
    return []


def _table_cores(context: _Context) -> list[Located]:
    """Every core an explicit indirection table names exists."""
    system = context.scenario.system
    if not isinstance(system.nic.table, list):
        return []
    return [(("system", "nic", "table", index), f"expected a core 0-{system.cores - 1}, "
                                                f"got {core}")
            for index, core in enumerate(system.nic.table) if core >= system.cores]


def _default_cores(context: _Context) -> list[Located]:
    """The default core and the default fragment core exist."""
    system = context.scenario.system
    return [(("system", "nic", name), f"expected a core 0-{system.cores - 1}, "
                                      f"got {getattr(system.nic, name)}")
            for name in ("default_core", "default_fragment_core")
            if getattr(system.nic, name) >= system.cores]


def _shared_ip_alone(context: _Context) -> list[Located]:
    """A system that shares one IP gives each core that one IP only."""
    system = context.scenario.system
    if system.shared_ip is not None and system.ips_per_core != 1:
        return [(("system", "ips_per_core"), f"expected 1 (or no ips_per_core) with "
                                             f"shared_ip, got {system.ips_per_core}")]
    return []


def _ip_pool_family(context: _Context) -> list[Located]:
    """The cores' address pool is IPv4 (nat addresses are)."""
    system = context.scenario.system
    if context.pool.version != 4:
        return [(("system", "ip_pool"), f"expected an IPv4 prefix (the cores' nat "
                                        f"addresses are IPv4), got {system.ip_pool!r}")]
    return []


def _shared_ip_family(context: _Context) -> list[Located]:
    """A shared system IP is IPv4 (nat addresses are)."""
    system = context.scenario.system
    if system.shared_ip is not None and address_version(system.shared_ip) != 4:
        return [(("system", "shared_ip"), f"expected an IPv4 address (the cores' nat "
                                          f"addresses are IPv4), got {system.shared_ip!r}")]
    return []


def _ip_pool_size(context: _Context) -> list[Located]:
    """Without a shared IP, the pool holds every core's addresses (and its network's)."""
    system, pool = context.scenario.system, context.pool
    needed = system.cores * system.ips_per_core + 1
    if system.shared_ip is None and pool.num_addresses <= needed:
        return [(("system", "ip_pool"),
                 f"expected a prefix with more than {needed} addresses for "
                 f"{system.cores} cores x {system.ips_per_core} IPs, got {pool}")]
    return []


def _receive_core(context: _Context) -> list[Located]:
    """An RSS-unaware NIC's receive core exists."""
    system = context.scenario.system
    if system.nic.receive_core >= system.cores:
        return [(("system", "nic", "receive_core"), f"expected a core 0-{system.cores - 1}, "
                                                    f"got {system.nic.receive_core}")]
    return []


def _table_change(context: _Context) -> list[Located]:
    """A reprogrammed table has one entry per bucket, each a core the system has."""
    system = context.scenario.system
    change = system.nic.table_change
    if change is None:
        return []
    loc = ("system", "nic", "table_change", "table")
    buckets = 2 ** system.nic.hash_bits
    if len(change.table) != buckets:
        return [(loc, f"expected {buckets} buckets for hash_bits {system.nic.hash_bits}, "
                      f"got {len(change.table)}")]
    return [(loc + (index,), f"expected a core 0-{system.cores - 1}, got {core}")
            for index, core in enumerate(change.table) if core >= system.cores]


def _distributor_rules(context: _Context) -> list[Located]:
    """Each rule has a prefix or a flow (not both) and names a core the system has; a
    flow rule's two ends are of one address family."""
    problems = []
    cores = context.scenario.system.cores
    for index, rule in enumerate(context.scenario.distributor.rules):
        loc = ("distributor", "rules", index)
        if (rule.prefix is None) == (rule.flow is None):
            problems.append((loc, "expected exactly one of prefix and flow"))
        if rule.core >= cores:
            problems.append((loc + ("core",), f"expected a core 0-{cores - 1}, got "
                                              f"{rule.core}"))
        if rule.flow is not None and (endpoint_version(rule.flow.client)
                                      != endpoint_version(rule.flow.server)):
            problems.append((loc + ("flow",), "expected client and server of one address "
                                              "family"))
    return problems


def _distributor_needs(context: _Context) -> list[Located]:
    """The distributor moves packets core to core: it needs a forwarding route, and
    fragments do not go through it yet (the fragment steerer uses the NIC alone)."""
    scenario = context.scenario
    nic = scenario.system.nic
    if not scenario.distributor.rules and nic.rss_aware:
        return []
    what = "distributor rules" if scenario.distributor.rules else "rss_aware: false"
    problems = []
    if scenario.forwarding_route == "none":
        loc = ("forwarding", "route") if scenario.forwarding is not None else ("handoff",)
        problems.append((loc, f"expected a route other than none with {what}: the flow "
                              f"distributor moves packets core to core"))
    problems += [(("services", index, "mtu"), f"expected no mtu with {what}: fragments do "
                                               f"not go through the flow distributor yet")
                 for index, service in enumerate(scenario.services) if service.mtu is not None]
    return problems


# ---------------------------------------------------------------------------- ports

def _usip_tables(context: _Context) -> list[Located]:
    """All cores' usip tables together stay within the engine's memory limit."""
    cores, tables_per_ip = context.scenario.system.cores, context.scenario.ports.tables_per_ip
    rng = context.scenario.ports.range
    if rng.low > rng.high:
        return []  # the range's own check says so
    ports = PortRange(rng.low, rng.high)
    if usip_tables_bytes(cores, tables_per_ip, ports) > USIP_MEMORY_LIMIT:
        each = usip_table_bytes(ports)
        return [(("ports", "tables_per_ip"),
                 f"expected at most {USIP_MEMORY_LIMIT // (each * cores)} tables per core "
                 f"on {cores} cores ({USIP_MEMORY_LIMIT:,} bytes of usip tables in all, "
                 f"{each:,} bytes each for ports {rng.low}-{rng.high}), got {tables_per_ip}")]
    return []


def _port_range(context: _Context) -> list[Located]:
    return _check_range(context.scenario.ports.range, ("ports", "range"))


def _check_range(rng: PortRangeSpec, loc: tuple) -> list[Located]:
    if rng.low > rng.high:
        return [(loc, f"expected low <= high, got {rng.low}-{rng.high}")]
    return []


# ---------------------------------------------------------------------------- services

def _services(context: _Context) -> list[Located]:
    """Each service in turn, each through ``_SERVICE_CHECKS``."""
    return [problem for index, service in enumerate(context.scenario.services)
            for check in _SERVICE_CHECKS
            for problem in check(service, ("services", index), context)]


def _service_name_unique(service: ServiceEntry, loc: tuple, context: _Context) -> list[Located]:
    first = context.names[service.name]  # the index of the name's first entry
    if first != loc[-1]:
        return [(loc + ("name",), f"expected a unique name, got {service.name!r} again "
                                  f"(services[{first}])")]
    return []


def _service_policy(service: ServiceEntry, loc: tuple, context: _Context) -> list[Located]:
    """An IPv6 service is transparent (port allocation is modelled for IPv4)."""
    if address_version(service.vip) != 4 and service.policy != "transparent":
        return [(loc + ("policy",),
                 f"expected transparent for an IPv6 service (port allocation, "
                 f"for nat and usip, is modelled for IPv4), got {service.policy}")]
    return []


def _service_response_size(service: ServiceEntry, loc: tuple,
                           context: _Context) -> list[Located]:
    return _size_problems(loc, service.proto, address_version(service.vip), service.mtu,
                          response_bytes=service.response_bytes)


def _service_servers(service: ServiceEntry, loc: tuple, context: _Context) -> list[Located]:
    """A service's servers share its vip's family."""
    version = address_version(service.vip)
    return [(loc + ("servers", index), f"expected an IPv{version} server like the vip, "
                                       f"got {server!r}")
            for index, server in enumerate(service.servers)
            if endpoint_version(server) != version]


_SERVICE_CHECKS: tuple[Callable[[ServiceEntry, tuple, _Context], list[Located]], ...] = (
    _service_name_unique, _service_policy, _service_response_size, _service_servers)


def _services_for_traffic(context: _Context) -> list[Located]:
    """Traffic needs a service (flows that match none use the first one's policy)."""
    if not context.scenario.services and context.scenario.sources:
        return [(("services",), "expected at least one service for the traffic")]
    return []


def _size_problems(loc: tuple, proto: str, version: int, mtu: int | None,
                   **sizes: int | SizeRangeSpec | None) -> list[Located]:
    """Sizes that cannot travel as one IP datagram where the lab sends one: any UDP
    message, and a TCP response its server fragments (a service with an ``mtu``)."""
    problems = []
    largest = max_datagram_payload(version, Proto.parse(proto))
    for name, size in sizes.items():
        high = size.high if isinstance(size, SizeRangeSpec) else size
        one_datagram = proto == "udp" or (name == "response_bytes" and mtu is not None)
        if one_datagram and high is not None and high > largest:
            why = ("a UDP datagram" if proto == "udp"
                   else "the response its server fragments, one TCP datagram")
            problems.append((loc + (name,), f"expected at most {largest} bytes ({why} over "
                                            f"IPv{version}), got {high}"))
    return problems


# ---------------------------------------------------------------------------- traffic

_KINDS = ("flows", "generated", "adversarial", "pcap")


def _traffic(context: _Context) -> list[Located]:
    """Each source has exactly one kind and passes that kind's checks; all sources
    together ask for at most MAX_GENERATED_FLOWS flows."""
    problems: list[Located] = []
    total = 0
    listed = isinstance(context.scenario.traffic, list)
    for index, source in enumerate(context.scenario.sources):
        loc = ("traffic", index) if listed else ("traffic",)
        kinds = [kind for kind in _KINDS if getattr(source, kind) is not None]
        if len(kinds) != 1:
            problems.append((loc, f"expected exactly one of flows, generated, adversarial, "
                                  f"pcap, got {', '.join(kinds) or 'none'}"))
            continue
        total += _flow_count(source)
        kind = kinds[0]
        problems += _SOURCE_CHECKS[kind](getattr(source, kind), loc + (kind,), context)
    if total > MAX_GENERATED_FLOWS:
        problems.append((("traffic",), f"expected at most {MAX_GENERATED_FLOWS} flows in all, "
                                       f"got {total}"))
    return problems


def _flow_count(source: TrafficSource) -> int:
    """Flows a source asks for (a capture's are not known until it is read: 0)."""
    if source.flows is not None:
        return len(source.flows)
    if source.generated is not None:
        return source.generated.count
    if source.adversarial is not None:
        return source.adversarial.count
    return 0


def _check_flows(flows: list[FlowEntry], loc: tuple, context: _Context) -> list[Located]:
    return [problem for index, flow in enumerate(flows)
            for problem in _check_flow(flow, loc + (index,), context)]


def _check_flow(flow: FlowEntry, loc: tuple, context: _Context) -> list[Located]:
    """A flow names one target, a known service or a server; its client shares the
    target's family; its sizes fit one datagram where they must."""
    names, scenario = context.names, context.scenario
    problems = []
    if (flow.service is None) == (flow.server is None):
        problems.append((loc, "expected exactly one of service, server"))
    elif flow.service is not None and flow.service not in names:
        problems.append((loc + ("service",), f"expected one of the services "
                                             f"({', '.join(names) or 'none defined'}), "
                                             f"got {flow.service!r}"))
    else:
        service = scenario.service(flow.service) if flow.service is not None else None
        version = (address_version(service.vip) if service is not None
                   else endpoint_version(flow.server))
        if endpoint_version(flow.client) != version:
            problems.append((loc + ("client",), f"expected an IPv{version} client "
                                                f"like its server, got {flow.client!r}"))
        proto = flow.proto or (service.proto if service else "tcp")
        problems += _size_problems(loc, proto, version, service and service.mtu,
                                   request_bytes=flow.request_bytes,
                                   response_bytes=flow.response_bytes)
    return problems


# -- generated traffic: one check per concern, in _GENERATED_CHECKS' order

def _check_generated(gen: GeneratedSource, loc: tuple, context: _Context) -> list[Located]:
    return [problem for check in _GENERATED_CHECKS for problem in check(gen, loc, context)]


def _generated_client_ports(gen: GeneratedSource, loc: tuple,
                            context: _Context) -> list[Located]:
    return _check_range(gen.client_ports, loc + ("client_ports",))


def _generated_targets(gen: GeneratedSource, loc: tuple, context: _Context) -> list[Located]:
    """The services it targets (all by default) are IPv4 and their protocol carries its
    sizes; with ``servers`` instead, a UDP share must fit UDP datagrams."""
    sizes = {"request_bytes": gen.request_bytes, "response_bytes": gen.response_bytes}
    if gen.servers is not None:
        return _size_problems(loc, "udp", 4, None, **sizes) if gen.proto_mix.get(
            "udp", 0) > 0 else []
    problems: list[Located] = []
    for name in gen.services or list(context.names):
        if name not in context.names:
            continue
        service = context.scenario.service(name)
        if address_version(service.vip) != 4:
            problems.append((loc + ("services",), f"expected IPv4 services (generated "
                                                  f"traffic is IPv4), got {name!r}"))
        else:
            problems += _size_problems(loc, service.proto, 4, service.mtu, **sizes)
    return problems


def _generated_client_prefixes(gen: GeneratedSource, loc: tuple,
                               context: _Context) -> list[Located]:
    return [(loc + ("client_prefixes", index), f"expected an IPv4 prefix (generated "
                                               f"traffic is IPv4), got {prefix!r}")
            for index, prefix in enumerate(gen.client_prefixes)
            if address_version(prefix) != 4]


def _generated_one_target_kind(gen: GeneratedSource, loc: tuple,
                               context: _Context) -> list[Located]:
    if gen.services is not None and gen.servers is not None:
        return [(loc, "expected at most one of services, servers")]
    return []


def _generated_services_known(gen: GeneratedSource, loc: tuple,
                              context: _Context) -> list[Located]:
    names = context.names
    return [(loc + ("services", index), f"expected one of the services "
                                        f"({', '.join(names) or 'none'}), got {name!r}")
            for index, name in enumerate(gen.services or []) if name not in names]


def _generated_servers_ipv4(gen: GeneratedSource, loc: tuple,
                            context: _Context) -> list[Located]:
    return [(loc + ("servers", index), f"expected an IPv4 server, got {server!r}")
            for index, server in enumerate(gen.servers or [])
            if endpoint_version(server) != 4]


def _generated_servers_given(gen: GeneratedSource, loc: tuple,
                             context: _Context) -> list[Located]:
    if gen.servers is not None and not gen.servers:
        return [(loc + ("servers",), "expected at least one server")]
    return []


def _generated_proto_mix(gen: GeneratedSource, loc: tuple,
                         context: _Context) -> list[Located]:
    if not sum(gen.proto_mix.values()) > 0:
        return [(loc + ("proto_mix",), "expected a positive total weight")]
    return []


def _generated_size_ranges(gen: GeneratedSource, loc: tuple,
                           context: _Context) -> list[Located]:
    return [(loc + (name,), f"expected low <= high, got {size.low}-{size.high}")
            for name, size in (("request_bytes", gen.request_bytes),
                               ("response_bytes", gen.response_bytes))
            if isinstance(size, SizeRangeSpec) and size.low > size.high]


def _generated_start(gen: GeneratedSource, loc: tuple, context: _Context) -> list[Located]:
    """``start`` says one way to spread the flows, and a rate starts the last of them
    within the time limit."""
    start = gen.start
    if start is None:
        return []
    if (start.spread_us is None) == (start.rate_per_s is None):
        return [(loc + ("start",), "expected exactly one of spread_us, rate_per_s")]
    if start.rate_per_s is not None:
        last = (gen.count - 1) * 1_000_000 // start.rate_per_s
        if last > MAX_TIME_US:
            return [(loc + ("start", "rate_per_s"),
                     f"expected a rate that starts all {gen.count} flows within "
                     f"{MAX_TIME_US} us (at least "
                     f"{-(-(gen.count - 1) * 1_000_000 // MAX_TIME_US)} per second), got "
                     f"{start.rate_per_s} (the last would start at {last} us)")]
    return []


_GENERATED_CHECKS: tuple[Callable[[GeneratedSource, tuple, _Context], list[Located]], ...] = (
    _generated_client_ports, _generated_targets, _generated_client_prefixes,
    _generated_one_target_kind, _generated_services_known, _generated_servers_ipv4,
    _generated_servers_given, _generated_proto_mix, _generated_size_ranges,
    _generated_start)


# -- adversarial traffic: one check per concern, in _ADVERSARIAL_CHECKS' order

def _check_adversarial(adv: AdversarialSource, loc: tuple,
                       context: _Context) -> list[Located]:
    return [problem for check in _ADVERSARIAL_CHECKS for problem in check(adv, loc, context)]


def _adversarial_client_ports(adv: AdversarialSource, loc: tuple,
                              context: _Context) -> list[Located]:
    return _check_range(adv.client_ports, loc + ("client_ports",))


def _adversarial_bucket(adv: AdversarialSource, loc: tuple,
                        context: _Context) -> list[Located]:
    buckets = 2 ** context.scenario.system.nic.hash_bits
    if adv.bucket >= buckets:
        return [(loc + ("bucket",), f"expected a bucket 0-{buckets - 1}, got {adv.bucket}")]
    return []


def _adversarial_service_known(adv: AdversarialSource, loc: tuple,
                               context: _Context) -> list[Located]:
    names = context.names
    if adv.service is not None and adv.service not in names:
        return [(loc + ("service",), f"expected one of the services "
                                     f"({', '.join(names) or 'none'}), got {adv.service!r}")]
    return []


def _adversarial_target(adv: AdversarialSource, loc: tuple,
                        context: _Context) -> list[Located]:
    """The service the flood goes to (the one it names, else the first) is IPv4, and its
    protocol carries the requests."""
    scenario = context.scenario
    target = (scenario.service(adv.service) if adv.service in context.names
              else scenario.services[0] if scenario.services else None)
    if target is None:
        return []
    if address_version(target.vip) != 4:
        return [(loc + ("service",), "expected an IPv4 service (the flood is IPv4)")]
    return _size_problems(loc, target.proto, 4, target.mtu, request_bytes=adv.request_bytes)


def _adversarial_client_prefix(adv: AdversarialSource, loc: tuple,
                               context: _Context) -> list[Located]:
    if address_version(adv.client_prefix) != 4:
        return [(loc + ("client_prefix",), f"expected an IPv4 prefix, "
                                           f"got {adv.client_prefix!r}")]
    return []


_ADVERSARIAL_CHECKS: tuple[Callable[[AdversarialSource, tuple, _Context], list[Located]],
                           ...] = (
    _adversarial_client_ports, _adversarial_bucket, _adversarial_service_known,
    _adversarial_target, _adversarial_client_prefix)


# -- pcap traffic

def _check_pcap(pcap: PcapSource, loc: tuple, context: _Context) -> list[Located]:
    """A capture the file names exists (looked for only when the file has a directory)."""
    if pcap.path is None or context.base_dir is None:
        return []
    path = Path(pcap.path)
    path = path if path.is_absolute() else context.base_dir / path
    if not path.is_file():
        return [(loc + ("path",), f"expected an existing pcap file, got {pcap.path!r}")]
    return []


#: Each source kind's check: (the source, its key path, the context) -> problems.
_SOURCE_CHECKS: dict[str, Callable[[Any, tuple, _Context], list[Located]]] = {
    "flows": _check_flows, "generated": _check_generated,
    "adversarial": _check_adversarial, "pcap": _check_pcap,
}

#: The whole-scenario checks, in the order of the file's sections.
_SCENARIO_CHECKS: tuple[Callable[[_Context], list[Located]], ...] = (
    _one_forwarding, _key_length, _table_size, _table_cores, _default_cores,
    _receive_core, _table_change, _distributor_rules, _distributor_needs,
    _shared_ip_alone, _ip_pool_family, _shared_ip_family, _ip_pool_size, _usip_tables,
    _port_range, _services, _services_for_traffic, _traffic)
