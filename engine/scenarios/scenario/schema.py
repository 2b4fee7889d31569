"""The schema of scenario files: one pydantic model per part of the file.

The models are named for the part of the file they read, so none shares a name with
the engine class it configures (``SystemSection`` is the file's ``system``;
``engine.paths.trace.System`` is the system that runs):

* ``...Section`` — a section under a fixed key: ``system`` (``SystemSection``),
  ``system.nic`` (``NicSection``), ``ports`` (``PortsSection``);
* ``...Entry`` — one item of a list: ``services`` (``ServiceEntry``), a source's
  ``flows`` (``FlowEntry``);
* ``...Source`` — one traffic source (``TrafficSource``) and its four kinds
  (``FlowEntry`` lists, ``GeneratedSource``, ``AdversarialSource``, ``PcapSource``);
* ``...Spec`` — how the file spells a value that takes a mapping form:
  ``PortRangeSpec`` and ``SizeRangeSpec`` (``{low, high}``), ``StartSpec``
  (``{spread_us}`` or ``{rate_per_s}``), like the field types
  ``KeySpec``, ``CheckSpec`` and ``SizeSpec`` (``fields``).

``Scenario`` is the whole file; its methods are the seams to the rest of the engine
(``build_nic``, ``build_system_config``, ``build_system``). The models check one field
at a time; what needs several fields is ``cross_checks``' job. ``scenario_json_schema``
is the JSON Schema that ``python -m engine schema`` prints.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from engine.nic.rss import MAX_CORES, HashType, IndirectionTable, Transform
from engine.nic.rss import Nic as NicModel
from engine.packet.toeplitz import Key, parse_key
from engine.scenarios.scenario.checks import METRICS
from engine.scenarios.scenario.fields import (
    Bytes,
    CheckSpec,
    Endpoint,
    HashTypeName,
    IPAddress,
    KeySpec,
    Name,
    Port,
    Prefix,
    Seed,
    Text,
    parse_endpoint,
)
from engine.scenarios.scenario.limits import (
    MAX_ADVERSARIAL_FLOWS,
    MAX_CHECKS,
    MAX_CLIENT_PREFIXES,
    MAX_DISTRIBUTOR_RULES,
    MAX_EXPLICIT_FLOWS,
    MAX_GENERATED_FLOWS,
    MAX_IPS_PER_CORE,
    MAX_RATE_PER_S,
    MAX_SERVERS_PER_SERVICE,
    MAX_SERVICES,
    MAX_TABLES_PER_IP,
    MAX_TIME_US,
    MAX_TRAFFIC_SOURCES,
)


class _Model(BaseModel):
    """A part of a scenario file: strict (no coercion), closed (no unknown keys), frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)



class TableChangeSpec(_Model):
    """The indirection table reprogrammed at a virtual time (``system.nic.table_change``;
    both paths)."""

    at_us: int = Field(ge=0, le=MAX_TIME_US, description="when, in virtual microseconds "
                       "(before any packet that arrives at that time)")
    table: Annotated[list[Annotated[int, Field(ge=0)]], Field(
        min_length=2, max_length=128, description="the new table: one core per bucket "
                                                  "(2 ** hash_bits entries)")]


class NicSection(_Model):
    """The NIC's RSS settings (the ``system.nic`` section; ``build_nic`` makes the model)."""

    key: KeySpec = "microsoft"
    hash_types: list[HashTypeName] = Field(
        default_factory=lambda: [t.value for t in HashType], max_length=6,
        description="enabled RSS hash types; a packet whose type is off falls back to its "
                    "2-tuple type, or to the default core")
    hash_bits: int = Field(7, ge=1, le=7, description="low hash bits indexing the table")
    table: Literal["round-robin"] | Annotated[list[Annotated[int, Field(ge=0)]],
                                              Field(min_length=2, max_length=128)] = Field(
        "round-robin", description="'round-robin' or one core number per bucket "
                                   "(2 ** hash_bits entries)")
    transform: Literal["none", "symmetric-xor", "sort"] = "none"
    default_core: int = Field(0, ge=0, description="core for packets that are not hashed")
    fragments: Literal["ms-2tuple", "reassemble-header", "default-core"] = Field(
        "reassemble-header", description="how fragments are steered: hashed on the "
        "addresses only (Microsoft's spec), held until the L4 header is known (the "
        "patent's distributor), or all sent to default_fragment_core")
    default_fragment_core: int = Field(0, ge=0)
    fragment_action: Literal["assemble", "bridge"] | None = Field(
        None, description="force the fragmentation action; null decides it by the patent's "
                          "rules (TCP: PCB hit, NAT PCB + assemble flag, non-UDP service or "
                          "RNAT -> assemble; UDP: NAT PCB + flag or non-UDP service)")
    rss_aware: bool = Field(True, description="false: the NIC hashes nothing; every packet "
                            "arrives on receive_core and the flow distributor there moves "
                            "it to its core (one counted forward per packet that belongs "
                            "elsewhere)")
    receive_core: int = Field(0, ge=0, description="the core an RSS-unaware NIC delivers "
                                                   "every packet to")
    table_change: TableChangeSpec | None = None


class SystemSection(_Model):
    """Cores and their addresses. Core c's i-th address is the
    ``1 + c * ips_per_core + i``-th address of ``ip_pool``, unless ``shared_ip`` gives
    every core one system address."""

    cores: int = Field(ge=1, le=MAX_CORES)
    ips_per_core: int = Field(1, ge=1, le=MAX_IPS_PER_CORE)
    shared_ip: IPAddress | None = None
    ip_pool: Prefix = "10.100.0.0/16"
    nic: NicSection = Field(default_factory=NicSection)


class PortRangeSpec(_Model):
    """A range of ports ``low..high`` (``ports.range``, a source's ``client_ports``)."""

    low: Port = 1024
    high: Port = 65535


class PortsSection(_Model):
    """Port allocation tables and how a port is chosen."""

    strategy: Literal["scan", "solve"] = Field(
        "solve", description="scan: the patent's try-the-next-port loop; solve: computed "
                             "from the key's GF(2) matrix")
    tables_per_ip: int = Field(64, ge=1, le=MAX_TABLES_PER_IP,
                               description="usip: port allocation tables per core (the "
                                           "patent: 64 or 256), one picked by a hash of "
                                           "client and server IP")
    range: PortRangeSpec = Field(default_factory=PortRangeSpec)
    nat_ip_choice: Literal["core", "pool"] = Field(
        "core", description="the IPs nat picks from: core (the core's own ips_per_core) "
                            "or pool (every core's IPs, shared; port tables stay per core "
                            "and IP). Where the NIC hashes responses on their addresses "
                            "alone, the IP is what steers them home")
    wrong_direction: bool = Field(False, description="teaching only: hash the request-"
                                  "direction tuple when choosing a port, as the patent's "
                                  "text does assuming a symmetric hash (a classic bug "
                                  "with any other key)")


class ServiceEntry(_Model):
    """A virtual server (vip:vport) in front of real servers, with its client-tuple policy."""

    name: Name
    vip: IPAddress
    vport: Annotated[int, Field(ge=1, le=65535)]
    proto: Literal["tcp", "udp"] = "tcp"
    policy: Literal["nat", "usip", "transparent"]
    servers: list[Endpoint] = Field(min_length=1, max_length=MAX_SERVERS_PER_SERVICE)
    assemble_flag: bool = False
    response_bytes: Bytes = 1000
    mtu: int | None = Field(None, ge=68, le=65535, description="the servers' IP MTU in "
                            "bytes: a response (one IP datagram) larger than it leaves the "
                            "server in fragments; null = no fragmentation")


class SizeRangeSpec(_Model):
    """A size drawn uniformly from low..high bytes."""

    low: Bytes
    high: Bytes


SizeSpec = Bytes | SizeRangeSpec


#: How a flow's session ends after its response (``engine.appliance.rules.CLOSES``).
Close = Literal["fin", "rst", "none"]
_CLOSE_TEXT = ("how the session ends after the response: fin or rst after hold_us, none "
               "at the idle timeout; its port is then free for flows that start later")
_HOLD_TEXT = ("microseconds from the response's delivery to the FIN/RST (null: the "
              "system's 1000); unused with close: none")


class FlowEntry(_Model):
    """One flow: the client and either a service (by name) or a server address; when its
    request arrives (``start_us``) and how its session ends (``close``, ``hold_us``)."""

    client: Endpoint
    service: Name | None = None
    server: Endpoint | None = None
    proto: Literal["tcp", "udp"] | None = None
    request_bytes: Bytes = 100
    response_bytes: Bytes | None = None
    start_us: int = Field(0, ge=0, le=MAX_TIME_US, description="when the request "
                          "arrives at the NIC, in microseconds of virtual time")
    close: Close = Field("fin", description=_CLOSE_TEXT)
    hold_us: int | None = Field(None, ge=0, le=MAX_TIME_US, description=_HOLD_TEXT)


class StartSpec(_Model):
    """When generated flows start: exactly one of ``spread_us`` (each at a random
    microsecond in 0..spread_us-1, seeded) or ``rate_per_s`` (one after another, flow i
    at i x 1,000,000 / rate_per_s microseconds, rounded down)."""

    spread_us: int | None = Field(None, ge=1, le=MAX_TIME_US)
    rate_per_s: int | None = Field(None, ge=1, le=MAX_RATE_PER_S)


class GeneratedSource(_Model):
    """Random flows, seeded. Targets are the services (default) or ``servers``; Zipf's
    exponent ``zipf`` skews popularity over clients and targets (0 = uniform)."""

    count: int = Field(ge=1, le=MAX_GENERATED_FLOWS)
    client_prefixes: list[Prefix] = Field(default_factory=lambda: ["198.51.100.0/24"],
                                          min_length=1, max_length=MAX_CLIENT_PREFIXES)
    client_ports: PortRangeSpec = Field(default_factory=PortRangeSpec)
    services: list[Name] | None = Field(None, max_length=MAX_SERVICES,
                                        description="target these services (default all)")
    servers: list[Endpoint] | None = Field(None, max_length=MAX_SERVERS_PER_SERVICE,
                                           description="target these addresses instead")
    proto_mix: dict[Literal["tcp", "udp"], Annotated[float, Field(ge=0, le=1e6)]] = Field(
        default_factory=lambda: {"tcp": 1.0},
        description="weights of protocols for 'servers' targets")
    request_bytes: SizeSpec = 100
    response_bytes: SizeSpec | None = None
    zipf: float = Field(0.0, ge=0.0, le=5.0)
    heavy_clients: int = Field(10_000, ge=1, le=1_000_000,
                               description="distinct clients drawn when zipf > 0")
    start: StartSpec | None = Field(None, description="when the flows start (null: all "
                                    "at 0, concurrent)")
    close: Close = Field("fin", description=_CLOSE_TEXT)
    hold_us: int | None = Field(None, ge=0, le=MAX_TIME_US, description=_HOLD_TEXT)
    seed: Seed | None = None


class AdversarialSource(_Model):
    """A flood whose requests all hash to one indirection-table ``bucket`` (IPv4)."""

    count: int = Field(ge=1, le=MAX_ADVERSARIAL_FLOWS)
    bucket: int = Field(0, ge=0, le=127)
    service: Name | None = None
    client_prefix: Prefix = "203.0.113.0/24"
    client_ports: PortRangeSpec = Field(default_factory=PortRangeSpec)
    request_bytes: Bytes = 64
    seed: Seed | None = None


class PcapSource(_Model):
    """Flows replayed from a capture; ``path`` is relative to the scenario file, or left
    out to be given at run time (``--pcap``)."""

    path: Annotated[str, Field(min_length=1, max_length=1024)] | None = None


class TrafficSource(_Model):
    """Exactly one of the four kinds."""

    flows: list[FlowEntry] | None = Field(None, max_length=MAX_EXPLICIT_FLOWS)
    generated: GeneratedSource | None = None
    adversarial: AdversarialSource | None = None
    pcap: PcapSource | None = None

    @property
    def kind(self) -> str:
        return next(name for name in ("flows", "generated", "adversarial", "pcap")
                    if getattr(self, name) is not None)


class RuleFlowSpec(_Model):
    """An exact 5-tuple as a distributor rule matches it: source ``client``, destination
    ``server`` (a request's direction; a response matches a rule of its own direction)."""

    client: Endpoint
    server: Endpoint
    proto: Literal["tcp", "udp"] = "tcp"


class RuleEntry(_Model):
    """A distributor rule: packets matching it go to ``core``, before any hash. Exactly
    one of ``prefix`` (with ``match_on``) and ``flow``."""

    core: int = Field(ge=0)
    prefix: Prefix | None = None
    match_on: Literal["src", "dst"] = Field("src", description="for a prefix: the "
                                            "packet's source or destination address")
    flow: RuleFlowSpec | None = None


class DistributorSection(_Model):
    """The software flow distributor (``engine.nic.distributor``): its rules, checked in
    order before the hash (the first match wins), and the correct-core check."""

    rules: list[RuleEntry] = Field(default_factory=list, max_length=MAX_DISTRIBUTOR_RULES)
    correct_core_check: bool = Field(True, description="a core that receives a packet of "
                                     "a session another core owns forwards it to the owner "
                                     "(seed L650-L672); false: it processes it where it "
                                     "landed (a misdirected request opens a second session, "
                                     "a misdirected response is lost)")


class ForwardingSection(_Model):
    """How a core forwards a packet of another core's session to its owner, whatever the
    policy (``engine.appliance.rules.FORWARDING_ROUTES``; the patent's L416)."""

    route: Literal["message", "shared-buffer", "control-core", "neighbour", "none"] = Field(
        "message", description="message (1 copy, 1 hop), shared-buffer (2 copies, 1 hop), "
                               "control-core (2 copies, 2 hops), neighbour (round the ring: "
                               "1 copy per hop) or none (a misdirected packet is lost)")


class Scenario(_Model):
    """A whole scenario file (schema version 1)."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True,
                              json_schema_extra={"$id": "https://rsslab.example/scenario-1.json",
                                                 "title": "RSS Lab scenario"})

    schema_version: Literal[1]
    name: Name
    description: Text = ""
    seed: Seed = 0
    system: SystemSection
    ports: PortsSection = Field(default_factory=PortsSection)
    forwarding: ForwardingSection | None = None
    distributor: DistributorSection = Field(default_factory=DistributorSection)
    #: the older name of ``forwarding.route`` (files written before every policy forwarded)
    handoff: Literal["message", "shared-buffer"] | None = None
    services: list[ServiceEntry] = Field(max_length=MAX_SERVICES)
    traffic: TrafficSource | Annotated[list[TrafficSource],
                                       Field(max_length=MAX_TRAFFIC_SOURCES)] = Field(
        default_factory=list)
    checks: dict[Literal[METRICS], CheckSpec | Annotated[list[CheckSpec],  # type: ignore
                                                          Field(min_length=1, max_length=8)]
                 ] = Field(default_factory=dict, max_length=MAX_CHECKS)

    # Where the file came from, for relative pcap paths (not part of the schema).
    _base_dir: Path | None = None

    @property
    def sources(self) -> list[TrafficSource]:
        """The traffic as a list, whatever form the file used."""
        if isinstance(self.traffic, TrafficSource):
            return [self.traffic]
        return list(self.traffic)

    @property
    def base_dir(self) -> Path | None:
        return self._base_dir

    @property
    def forwarding_route(self) -> str:
        """``forwarding.route``, or the older ``handoff``, else ``message``."""
        if self.forwarding is not None:
            return self.forwarding.route
        return self.handoff or "message"

    def service(self, name: str) -> ServiceEntry:
        return next(s for s in self.services if s.name == name)

    # -- the seams to the rest of the engine

    def build_key(self) -> Key:
        return parse_key(self.system.nic.key)

    def build_table(self) -> IndirectionTable:
        nic = self.system.nic
        if nic.table == "round-robin":
            return IndirectionTable.round_robin(self.system.cores, nic.hash_bits)
        return IndirectionTable(self.system.cores, nic.hash_bits, tuple(nic.table))

    def build_nic(self) -> NicModel:
        """The NIC model (``engine.nic.rss.Nic``) the scenario describes."""
        nic = self.system.nic
        return NicModel(key=self.build_key(), table=self.build_table(),
                    hash_types=frozenset(HashType(t) for t in nic.hash_types),
                    transform=Transform(nic.transform), default_core=nic.default_core)

    def core_ips(self) -> list[list[str]]:
        """Each core's local IP addresses (``shared_ip`` repeated when the system shares one)."""
        system = self.system
        if system.shared_ip is not None:
            return [[system.shared_ip] for _ in range(system.cores)]
        pool = ipaddress.ip_network(system.ip_pool)
        return [[str(pool[1 + core * system.ips_per_core + i])
                 for i in range(system.ips_per_core)] for core in range(system.cores)]

    def pcap_path(self, source: PcapSource, override: str | Path | None = None) -> Path | None:
        """Where a pcap source's file is: ``override`` (run time) first, else ``path``
        relative to the scenario file's directory; ``None`` when neither is given."""
        if override is not None:
            return Path(override)
        if source.path is None:
            return None
        path = Path(source.path)
        return path if path.is_absolute() or self._base_dir is None else self._base_dir / path

    def to_system_kwargs(self) -> dict[str, Any]:
        """The keyword arguments of ``engine.appliance.config.SystemConfig`` this scenario means,
        as plain values. Flows that match no service use the first service's policy;
        each service's ``response_bytes`` reaches the system through the flows the
        traffic section generates (a flow carries its own response size).
        """
        system, nic = self.system, self.system.nic
        distributor = self.distributor
        pool = ipaddress.ip_network(system.ip_pool)
        services = tuple(
            {"vip": s.vip, "vport": s.vport, "proto": s.proto, "policy": s.policy,
             "servers": tuple((str(ip), port) for ip, port in map(parse_endpoint, s.servers)),
             "assemble_flag": s.assemble_flag, "mtu": s.mtu} for s in self.services)
        return {
            "cores": system.cores,
            "ips_per_core": system.ips_per_core,
            "shared_ip": system.shared_ip,
            "local_ip_base": str(pool[1]),
            "key": nic.key,
            "hash_bits": nic.hash_bits,
            "table": None if nic.table == "round-robin" else tuple(nic.table),
            "transform": nic.transform,
            "hash_types": tuple(nic.hash_types),
            "default_core": nic.default_core,
            "policy": self.services[0].policy if self.services else "nat",
            "strategy": self.ports.strategy,
            "tables_per_ip": self.ports.tables_per_ip,
            "port_range": (self.ports.range.low, self.ports.range.high),
            "nat_ip_choice": self.ports.nat_ip_choice,
            "handoff": self.forwarding_route,
            "wrong_direction": self.ports.wrong_direction,
            "services": services,
            "fragment_mode": nic.fragments,
            "default_fragment_core": nic.default_fragment_core,
            "fragment_action": nic.fragment_action,
            "rss_aware": nic.rss_aware,
            "receive_core": nic.receive_core,
            "rules": tuple(self.build_rules()),
            "correct_core_check": distributor.correct_core_check,
            "table_change_at_us": None if nic.table_change is None else nic.table_change.at_us,
            "table_change": None if nic.table_change is None else tuple(nic.table_change.table),
        }

    def build_rules(self) -> list:
        """The ``engine.nic.distributor.Rule`` values of ``distributor.rules``."""
        from engine.nic.distributor import Rule
        from engine.packet.model import FlowTuple
        rules = []
        for index, entry in enumerate(self.distributor.rules):
            field = f"distributor.rules[{index}]"
            if entry.flow is None:
                rules.append(Rule.for_prefix(entry.prefix, entry.core, match_on=entry.match_on,
                                             field=field))
                continue
            client, client_port = parse_endpoint(entry.flow.client)
            server, server_port = parse_endpoint(entry.flow.server)
            rules.append(Rule(entry.core, flow=FlowTuple.of(
                client, server, client_port, server_port, entry.flow.proto)))
        return rules

    def build_system_config(self):
        """``engine.appliance.config.SystemConfig`` of this scenario (ConfigError if it
        refuses)."""
        from engine.appliance.config import Service as SystemService
        from engine.appliance.config import SystemConfig
        kwargs = self.to_system_kwargs()
        kwargs["services"] = tuple(SystemService(**s) for s in kwargs["services"])
        return SystemConfig(**kwargs)

    def build_system(self):
        """A fresh ``engine.paths.trace.System`` with a ``random.Random`` seeded from ``seed``."""
        import random

        from engine.paths.trace import System
        return System(self.build_system_config(), rng=random.Random(self.seed))


def scenario_json_schema() -> dict:
    """The JSON Schema (draft 2020-12) of scenario files, for editors and the REST API."""
    schema = Scenario.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return schema


#: Every model of the schema, in file order (``problems`` strips their names, which
#: pydantic puts in an error's location to tag a union's branch).
MODELS: tuple[type[BaseModel], ...] = (
    NicSection, SystemSection, PortRangeSpec, PortsSection, ServiceEntry, SizeRangeSpec,
    FlowEntry, GeneratedSource, AdversarialSource, PcapSource, TrafficSource, Scenario,
    TableChangeSpec, RuleFlowSpec, RuleEntry, DistributorSection)
