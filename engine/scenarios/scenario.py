"""Scenario files: the one unit the web lab, exercises, the REST API and the CLI all run.

A scenario is YAML (or JSON) with a versioned schema: the ``system`` (cores, their
IP addresses, the NIC), the port tables, the transparent-mode handoff, the
``services`` with their policy, the ``traffic`` and the ``checks`` that decide
pass or fail::

    >>> scenario = load_scenario('''
    ... schema_version: 1
    ... name: tiny
    ... system: {cores: 4}
    ... services: [{name: web, vip: 192.0.2.10, vport: 80, policy: nat,
    ...             servers: ["10.0.0.1:8080"]}]
    ... traffic: {generated: {count: 100}}
    ... checks: {symmetric_rate: ">= 100%", allocation_failures: "== 0"}
    ... ''')
    >>> scenario.system.nic.key, scenario.checks["symmetric_rate"]
    ('microsoft', '>= 100%')
    >>> load_scenario("schema_version: 1\\nname: x\\nsystem: {cores: 0}\\nservices: []")
    Traceback (most recent call last):
    ...
    engine.errors.ScenarioError: <string>: 1 problem
      line 3: system.cores: expected a number >= 1, got 0

Loading is safe (``yaml.SafeLoader`` only) and strict: an unknown key, a
duplicate key or a wrong type is an error, and every problem is reported at once
with its line and key path (``line 12: services[0].policy: expected one of nat,
usip, transparent, got 'natt'``). Cross-references (a service name a traffic
source names, a core number the table names) are checked after the shapes are
right, so a file with type errors reports those first.

Checks are a mapping ``metric: "OP VALUE"`` (or a list of such strings for one
metric), e.g. ``symmetric_rate: ">= 1.0"``, ``handed_off: "== 0"``,
``fairness: [">= 0.9", "<= 1"]``. OP is one of ``== != >= <= > <``; a value may end
in ``%`` (``">= 100%"`` is ``">= 1.0"``); a bare number means ``==``. Metrics are the
keys of the verification report's summary (``METRICS``).

Limits (``MAX_*`` below) bound what a file can ask for, so a scenario uploaded to
the web lab cannot exhaust a worker.
"""

from __future__ import annotations

import ipaddress
import math
import operator
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
)

from engine.appliance.ports import MAX_USIP_TABLES
from engine.errors import DocumentError, HashKeyError, Problem, ScenarioError, shown
from engine.nic.rss import MAX_CORES, HashType, IndirectionTable, Transform
from engine.nic.rss import Nic as NicModel
from engine.packet.model import Proto, max_datagram_payload
from engine.packet.toeplitz import Key, parse_key
from engine.safeparse import FileTooBig, check_yaml_nesting, load_json, read_bounded, yaml_loader

SCHEMA_VERSION = 1

#: A scenario file larger than this is refused before parsing (bytes).
MAX_FILE_BYTES = 1 << 20
#: Nesting depth and node count (aliases expanded) of the parsed document.
MAX_DEPTH = 32
MAX_NODES = 200_000
MAX_IPS_PER_CORE = 16
MAX_TABLES_PER_IP = 256
MAX_SERVICES = 256
MAX_SERVERS_PER_SERVICE = 1024
MAX_TRAFFIC_SOURCES = 16
#: Flows listed one by one in the file (use ``generated`` for more).
MAX_EXPLICIT_FLOWS = 10_000
#: Flows one ``generated`` source, and all traffic sources together, may ask for.
MAX_GENERATED_FLOWS = 5_000_000
MAX_ADVERSARIAL_FLOWS = 1_000_000
MAX_CLIENT_PREFIXES = 64
MAX_CHECKS = 64
MAX_TEXT = 4096

#: Summary metrics a check may name (the keys of the verification report's summary).
METRICS = ("flows", "symmetric", "handed_off", "asymmetric", "allocation_failures",
           "symmetric_rate", "handoff_copies", "fairness", "distinct_hashes",
           "fragmented", "assembled", "bridged", "fragment_messages", "fragment_copies",
           "fragments_dropped")

OPERATORS: dict[str, Callable[[float, float], bool]] = {
    "==": operator.eq, "!=": operator.ne, ">=": operator.ge, "<=": operator.le,
    ">": operator.gt, "<": operator.lt,
}
_CHECK_RE = re.compile(r"^\s*(==|!=|>=|<=|>|<)?\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)"
                       r"\s*(%?)\s*$")


# ---------------------------------------------------------------------------- field types

def _address(value: str) -> str:
    try:
        return str(ipaddress.ip_address(value.strip()))
    except ValueError:
        raise ValueError(f"expected an IPv4 or IPv6 address, got {shown(value)}") from None


def _network(value: str) -> str:
    try:
        return str(ipaddress.ip_network(value.strip(), strict=False))
    except ValueError:
        raise ValueError(f"expected an address prefix like 198.51.100.0/24, "
                         f"got {shown(value)}") from None


def parse_endpoint(value: str) -> tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, int]:
    """``"192.0.2.1:80"`` or ``"[2001:db8::1]:80"`` → (address, port). ValueError otherwise."""
    text = value.strip()
    match = re.fullmatch(r"\[([0-9A-Fa-f:.]+)\]:(\d{1,5})|([0-9.]+):(\d{1,5})", text)
    if match is None:
        raise ValueError(f"expected ADDRESS:PORT like 192.0.2.1:80 or [2001:db8::1]:80, "
                         f"got {shown(value)}")
    host, port = (match.group(1), match.group(2)) if match.group(1) else (
        match.group(3), match.group(4))
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"expected an IPv4 or IPv6 address before the port, "
                         f"got {shown(host)}") from None
    if not 1 <= int(port) <= 65535:  # port 0 is reserved: no TCP or UDP flow uses it
        raise ValueError(f"expected a port 1-65535, got {int(port)}")
    return address, int(port)


def _endpoint(value: str) -> str:
    address, port = parse_endpoint(value)
    return f"[{address}]:{port}" if address.version == 6 else f"{address}:{port}"


def _key(value: str) -> str:
    try:
        parse_key(value)
    except HashKeyError as error:
        expected = error.expected if error.code != "key_hex" else (
            f"microsoft, symmetric, random:SEED or a hex key of {error.expected}")
        raise ValueError(f"expected {expected}, got {shown(value)}") from None
    return value.strip()


def parse_check(text: str | int | float) -> tuple[str, float]:
    """``">= 99.5%"`` → (">=", 0.995); a bare number means ``==``. ValueError otherwise."""
    if isinstance(text, bool):
        raise ValueError(f"expected a condition like '>= 0.9', got {shown(text)}")
    if isinstance(text, int | float):
        try:
            number = float(text)
        except OverflowError:  # an integer past 1.8e308
            number = math.inf
        if not math.isfinite(number):
            raise ValueError(f"expected a finite number, got {shown(text)}")
        return "==", number
    match = _CHECK_RE.match(text)
    if match is None:
        raise ValueError(f"expected a condition OP VALUE with OP one of "
                         f"{', '.join(OPERATORS)} (e.g. '>= 0.9' or '== 0'), got {shown(text)}")
    op, number, percent = match.group(1) or "==", float(match.group(2)), match.group(3)
    if not math.isfinite(number):
        raise ValueError(f"expected a finite number, got {shown(text)}")
    return op, number / 100 if percent else number


def _check(value: str | int | float) -> str | int | float:
    parse_check(value)
    return value


Name = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")]
Text = Annotated[str, Field(max_length=MAX_TEXT)]
IPAddress = Annotated[str, Field(max_length=64, description="an IPv4 or IPv6 address"),
                      AfterValidator(_address)]
Prefix = Annotated[str, Field(max_length=64, description="an address prefix, e.g. 10.0.0.0/8"),
                   AfterValidator(_network)]
Endpoint = Annotated[str, Field(max_length=70,
                                description="ADDRESS:PORT, IPv6 as [ADDRESS]:PORT"),
                     AfterValidator(_endpoint)]
KeySpec = Annotated[str, Field(max_length=200,
                               description="microsoft, symmetric, random:SEED or 40+ hex bytes"),
                    AfterValidator(_key)]
Port = Annotated[int, Field(ge=0, le=65535)]
Seed = Annotated[int, Field(ge=0, le=2**63 - 1)]
Bytes = Annotated[int, Field(ge=0, le=100_000_000, description="bytes")]
CheckSpec = Annotated[str | int | float, AfterValidator(_check)]
HashTypeName = Literal["tcp-ipv4", "udp-ipv4", "ipv4", "tcp-ipv6", "udp-ipv6", "ipv6"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


# ---------------------------------------------------------------------------- the schema

class NicConfig(_Model):
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



class System(_Model):
    """Cores and their addresses. Core c's i-th address is the
    ``1 + c * ips_per_core + i``-th address of ``ip_pool``, unless ``shared_ip`` gives
    every core one system address."""

    cores: int = Field(ge=1, le=MAX_CORES)
    ips_per_core: int = Field(1, ge=1, le=MAX_IPS_PER_CORE)
    shared_ip: IPAddress | None = None
    ip_pool: Prefix = "10.100.0.0/16"
    nic: NicConfig = Field(default_factory=NicConfig)


class PortRange(_Model):
    low: Port = 1024
    high: Port = 65535


class Ports(_Model):
    """Port allocation tables and how a port is chosen."""

    strategy: Literal["scan", "solve"] = Field(
        "solve", description="scan: the patent's try-the-next-port loop; solve: computed "
                             "from the key's GF(2) matrix")
    tables_per_ip: int = Field(1, ge=1, le=MAX_TABLES_PER_IP,
                               description="usip: port allocation tables per core (the "
                                           "patent: 64 or 256), one picked by a hash of "
                                           "client and server IP")
    range: PortRange = Field(default_factory=PortRange)
    wrong_direction: bool = Field(False, description="teaching only: hash the request-"
                                  "direction tuple when choosing a port (a classic bug)")


class Service(_Model):
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


class Size(_Model):
    """A size drawn uniformly from low..high bytes."""

    low: Bytes
    high: Bytes


SizeSpec = Bytes | Size


class FlowEntry(_Model):
    """One flow: the client and either a service (by name) or a server address."""

    client: Endpoint
    service: Name | None = None
    server: Endpoint | None = None
    proto: Literal["tcp", "udp"] | None = None
    request_bytes: Bytes = 100
    response_bytes: Bytes | None = None


class Generated(_Model):
    """Random flows, seeded. Targets are the services (default) or ``servers``; Zipf's
    exponent ``zipf`` skews popularity over clients and targets (0 = uniform)."""

    count: int = Field(ge=1, le=MAX_GENERATED_FLOWS)
    client_prefixes: list[Prefix] = Field(default_factory=lambda: ["198.51.100.0/24"],
                                          min_length=1, max_length=MAX_CLIENT_PREFIXES)
    client_ports: PortRange = Field(default_factory=PortRange)
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
    seed: Seed | None = None


class Adversarial(_Model):
    """A flood whose requests all hash to one indirection-table ``bucket`` (IPv4)."""

    count: int = Field(ge=1, le=MAX_ADVERSARIAL_FLOWS)
    bucket: int = Field(0, ge=0, le=127)
    service: Name | None = None
    client_prefix: Prefix = "203.0.113.0/24"
    client_ports: PortRange = Field(default_factory=PortRange)
    request_bytes: Bytes = 64
    seed: Seed | None = None


class PcapSource(_Model):
    """Flows replayed from a capture; ``path`` is relative to the scenario file, or left
    out to be given at run time (``--pcap``)."""

    path: Annotated[str, Field(min_length=1, max_length=1024)] | None = None


class TrafficSource(_Model):
    """Exactly one of the four kinds."""

    flows: list[FlowEntry] | None = Field(None, max_length=MAX_EXPLICIT_FLOWS)
    generated: Generated | None = None
    adversarial: Adversarial | None = None
    pcap: PcapSource | None = None

    @property
    def kind(self) -> str:
        return next(name for name in ("flows", "generated", "adversarial", "pcap")
                    if getattr(self, name) is not None)


class Scenario(_Model):
    """A whole scenario file (schema version 1)."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True,
                              json_schema_extra={"$id": "https://rsslab.example/scenario-1.json",
                                                 "title": "RSS Lab scenario"})

    schema_version: Literal[1]
    name: Name
    description: Text = ""
    seed: Seed = 0
    system: System
    ports: Ports = Field(default_factory=Ports)
    handoff: Literal["message", "shared-buffer"] = "message"
    services: list[Service] = Field(max_length=MAX_SERVICES)
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

    def service(self, name: str) -> Service:
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
        """The keyword arguments of ``engine.paths.trace.SystemConfig`` this scenario means,
        as plain values. Flows that match no service use the first service's policy;
        each service's ``response_bytes`` reaches the system through the flows the
        traffic section generates (a flow carries its own response size).
        """
        system, nic = self.system, self.system.nic
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
            "handoff": self.handoff,
            "wrong_direction": self.ports.wrong_direction,
            "services": services,
            "fragment_mode": nic.fragments,
            "default_fragment_core": nic.default_fragment_core,
            "fragment_action": nic.fragment_action,
        }

    def build_system_config(self):
        """``engine.paths.trace.SystemConfig`` of this scenario (ConfigError if it refuses)."""
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


# ---------------------------------------------------------------------------- checks

@dataclass(frozen=True, slots=True)
class CheckResult:
    """One check against a run's summary. ``actual`` is ``None`` when the summary lacks
    the metric (the check then fails)."""

    name: str
    metric: str
    op: str
    expected: float
    actual: float | None
    passed: bool

    def as_dict(self) -> dict:
        return {"name": self.name, "metric": self.metric, "op": self.op,
                "expected": self.expected, "actual": self.actual, "passed": self.passed}


def evaluate_checks(checks: dict[str, Any], summary: dict[str, Any]) -> list[CheckResult]:
    """Each condition of ``checks`` (a scenario's ``checks`` mapping) against ``summary``
    (the report summary: flows, symmetric, handed_off, asymmetric, allocation_failures,
    symmetric_rate, handoff_copies, fairness). Rates are fractions 0–1. Equality of
    rates allows a relative error of 1e-9 (``symmetric_rate == 1`` on a float ratio).

    Raises ScenarioError for a malformed condition (a loaded scenario never has one).
    """
    results = []
    problems = []
    for metric, spec in checks.items():
        for index, condition in enumerate(spec if isinstance(spec, list) else [spec]):
            try:
                op, expected = parse_check(condition)
            except ValueError as error:
                problems.append(Problem(f"checks.{metric}", None, str(error)))
                continue
            raw = summary.get(metric)
            actual = None if raw is None or isinstance(raw, bool) else float(raw)
            if actual is None:
                passed = False
            elif op in ("==", "!=") or math.isclose(actual, expected, rel_tol=1e-9):
                equal = math.isclose(actual, expected, rel_tol=1e-9, abs_tol=1e-12)
                passed = {"==": equal, "!=": not equal, ">=": True, "<=": True,
                          ">": False, "<": False}[op]
            else:
                passed = OPERATORS[op](actual, expected)
            suffix = f"[{index}]" if isinstance(spec, list) else ""
            results.append(CheckResult(f"{metric}{suffix} {op} {expected:g}", metric, op,
                                       expected, actual, passed))
    if problems:
        raise ScenarioError("checks", problems)
    return results


# ---------------------------------------------------------------------------- loading

def load_scenario_file(path: str | Path) -> Scenario:
    """Load a scenario from a ``.yaml``/``.yml``/``.json`` file; relative pcap paths
    resolve against its directory. Raises ScenarioError (also for an unreadable or
    oversized file)."""
    path = Path(path)
    try:
        data = read_bounded(path, MAX_FILE_BYTES)
    except FileTooBig as error:
        raise ScenarioError(str(path), [Problem("", None, f"expected at most "
                                                          f"{MAX_FILE_BYTES} bytes, got "
                                                          f"{error.got}")]) from None
    except OSError as error:
        raise ScenarioError(str(path), [Problem("", None, f"expected a readable file, got "
                                                          f"{error.strerror or error}")]) from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ScenarioError(str(path), [Problem("", None, f"expected UTF-8 text, got a "
                                                          f"byte 0x{data[error.start]:02x} at "
                                                          f"offset {error.start}")]) from None
    return load_scenario(text, source=str(path), base_dir=path.parent)


def _too_big(size: int) -> str:
    return f"expected at most {MAX_FILE_BYTES} bytes, got {size} bytes"


def load_scenario(text: str | bytes, *, source: str = "<string>",
                  base_dir: str | Path | None = None) -> Scenario:
    """Parse and validate a scenario from YAML or JSON text.

    ``source`` names the text in messages; ``base_dir`` is where relative pcap paths
    resolve (and, when given, pcap files must exist). Raises ScenarioError listing every
    problem with its line and key path.
    """
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError:
            raise ScenarioError(source, [Problem("", None, "expected UTF-8 text")]) from None
    if len(text) > MAX_FILE_BYTES or len(text.encode("utf-8", "surrogatepass")) > MAX_FILE_BYTES:
        raise ScenarioError(source, [Problem("", None, _too_big(len(text.encode(
            "utf-8", "surrogatepass"))))])
    problems: list[Problem] = []
    data, lines = _parse(text, source, problems)
    if not isinstance(data, dict):
        raise ScenarioError(source, problems + [Problem(
            "", 1, f"expected a mapping of sections (schema_version, name, system, ...), "
                   f"got {type(data).__name__}")])
    try:
        scenario = Scenario.model_validate(data)
    except ValidationError as error:
        raise ScenarioError(source, problems + _problems_from(error.errors(),
                                                              lines)) from None
    except (RecursionError, ValueError, TypeError) as error:  # defensive: pydantic internals
        raise ScenarioError(source, [Problem("", None, f"expected a valid document, got "
                                                       f"{type(error).__name__}")]) from None
    base = Path(base_dir) if base_dir is not None else None
    problems += [Problem(_format_path(loc), _line_of(loc, lines), message)
                 for loc, message in _cross_check(scenario, base)]
    if problems:
        raise ScenarioError(source, problems)
    object.__setattr__(scenario, "__pydantic_private__", {"_base_dir": base})
    return scenario




class _Refused(Exception):
    """A document too large, too deep or self-referential to walk any further."""

    def __init__(self, problem: Problem):
        super().__init__(str(problem))
        self.problem = problem


def _parse(text: str, source: str, problems: list[Problem]) -> tuple[Any, dict[tuple, int]]:
    """The document as Python data, and the 1-based line of every key path; problems
    that do not stop parsing (duplicate keys) are appended to ``problems``.

    The nesting is bounded before any recursive parser runs (``engine.safeparse``): libyaml
    composes recursively in C and would crash on a document nested 100,000 deep."""
    try:
        # Collections below the top mapping: MAX_DEPTH, as _walk counts them.
        check_yaml_nesting(text, limit=MAX_DEPTH + 1, field="")
    except DocumentError as error:
        raise ScenarioError(source, [Problem("", error.line, f"expected nesting at most "
                                                             f"{MAX_DEPTH} deep")]) from None
    json_data: Any = None
    json_ok = False
    if text.lstrip().startswith(("{", "[")):
        try:
            json_data = load_json(text, limit=MAX_DEPTH + 1)
            json_ok = True
        except DocumentError:
            json_ok = False
    try:
        loader = yaml_loader()(text)
        try:
            node = loader.get_single_node()
            if node is None:
                raise ScenarioError(source, [Problem("", 1, "expected a scenario, got an "
                                                            "empty document")])
            lines: dict[tuple, int] = {}
            try:
                _walk(node, (), lines, problems, set(), [0])
            except _Refused as refused:
                raise ScenarioError(source, [refused.problem]) from None
            try:
                data = json_data if json_ok else loader.construct_document(node)
            except DocumentError as refused:  # a number too long to convert
                raise ScenarioError(source, [Problem(
                    _format_path(_path_at_line(lines, refused.line)), refused.line,
                    refused.problem)]) from None
        finally:
            loader.dispose()
    except yaml.YAMLError as error:
        if json_ok:  # valid JSON that YAML 1.1 reads differently: no line numbers
            problems.clear()
            return json_data, {}
        mark = getattr(error, "problem_mark", None) or getattr(error, "context_mark", None)
        problem = getattr(error, "problem", None) or str(error).split("\n")[0]
        raise ScenarioError(source, [Problem("", mark.line + 1 if mark else None,
                                             f"expected valid YAML or JSON, got a syntax "
                                             f"error: {problem}")]) from None
    except RecursionError:
        raise ScenarioError(source, [Problem("", None, f"expected nesting at most "
                                                       f"{MAX_DEPTH} deep")]) from None
    return data, lines


def _path_at_line(lines: dict[tuple, int], line: int | None) -> tuple:
    """The last key path that starts on ``line`` (``()`` when none does)."""
    found = [path for path, at in lines.items() if at == line]
    return max(found, key=len) if found else ()


def _walk(node: yaml.Node, path: tuple, lines: dict, problems: list, active: set,
          count: list[int]) -> None:
    """Record key lines, and refuse duplicate keys, deep nesting, alias cycles and
    documents that expand to more than MAX_NODES nodes."""
    count[0] += 1
    if count[0] > MAX_NODES:
        raise _Refused(Problem(_format_path(path), node.start_mark.line + 1,
                                                 f"expected at most {MAX_NODES} values "
                                                 f"(aliases expanded)"))
    if len(path) > MAX_DEPTH:
        raise _Refused(Problem(_format_path(path), node.start_mark.line + 1,
                                                 f"expected nesting at most {MAX_DEPTH} deep"))
    if id(node) in active:
        raise _Refused(Problem(_format_path(path), node.start_mark.line + 1,
                                                 "expected no recursive alias"))
    if isinstance(node, yaml.MappingNode):
        active.add(id(node))
        seen: dict[Any, int] = {}
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
            line = key_node.start_mark.line + 1
            if key is None:
                problems.append(Problem(_format_path(path), line,
                                        "expected a plain key, got a collection as key"))
                continue
            if key == "<<":
                problems.append(Problem(_format_path(path), line,
                                        "expected plain keys, got a '<<' merge key"))
                continue
            if key in seen:
                problems.append(Problem(_format_path(path + (key,)), line,
                                        f"expected each key once, got {key!r} again "
                                        f"(first on line {seen[key]})"))
                continue
            seen[key] = line
            lines.setdefault(path + (key,), line)
            _walk(value_node, path + (key,), lines, problems, active, count)
        active.discard(id(node))
    elif isinstance(node, yaml.SequenceNode):
        active.add(id(node))
        for index, item in enumerate(node.value):
            lines.setdefault(path + (index,), item.start_mark.line + 1)
            _walk(item, path + (index,), lines, problems, active, count)
        active.discard(id(node))


def _format_path(loc: tuple) -> str:
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += ("." if text else "") + str(part)
    return text


def _line_of(loc: tuple, lines: dict[tuple, int]) -> int | None:
    for end in range(len(loc), -1, -1):
        line = lines.get(tuple(loc[:end]))
        if line is not None:
            return line
    return 1 if lines else None


_TYPE_NAMES = {
    "int_type": "an integer", "int_parsing": "an integer", "int_from_float": "an integer",
    "string_type": "a string", "bool_type": "true or false", "float_type": "a number",
    "dict_type": "a mapping", "model_type": "a mapping", "model_attributes_type": "a mapping",
    "list_type": "a list", "none_required": "null", "finite_number": "a finite number",
}


def _clean_loc(loc: tuple) -> tuple:
    """A pydantic ``loc`` without its union-branch tags (``list[...]``, ``int``, model
    names): only mapping keys and list indexes remain."""
    parts = []
    for part in loc:
        if isinstance(part, int):
            parts.append(part)
        elif part == "[key]" or re.search(r"[\[\]]|^(int|str|float|bool|" + "|".join(
                _MODEL_NAMES) + r")$", str(part)):
            continue
        else:
            parts.append(part)
    return tuple(parts)


def _problems_from(errors: list[dict], lines: dict[tuple, int]) -> list[Problem]:
    """Pydantic errors as Problems. Where a value may take several forms (a union), a
    branch whose *type* did not match is dropped when another branch got further, and
    type mismatches of every branch merge into one ``expected X or Y``."""
    cleaned = [(_clean_loc(e["loc"]), e) for e in errors]
    deeper = {loc[:end] for loc, e in cleaned if e["type"] not in _TYPE_NAMES
              for end in range(len(loc) + 1)}
    merged: dict[tuple, list[dict]] = {}
    problems = []
    for loc, error in cleaned:
        if error["type"] in _TYPE_NAMES:
            if loc in deeper:
                continue
            merged.setdefault(loc, []).append(error)
        else:
            problems.append(_problem(loc, error, lines))
    for loc, group in merged.items():
        names = list(dict.fromkeys(_TYPE_NAMES[e["type"]] for e in group))
        message = "expected " + " or ".join(names) + _given(group[0].get("input"))
        problems.append(Problem(_format_path(loc), _line_of(loc, lines), message))
    return list(dict.fromkeys(problems))


def _given(value: object) -> str:
    if isinstance(value, dict):
        return ", got a mapping"
    if isinstance(value, list):
        return ", got a list"
    return f", got {shown(value)}"


def _problem(loc: tuple, error: dict, lines: dict[tuple, int]) -> Problem:
    """One pydantic error as a Problem saying what was expected and what was given."""
    kind, ctx, given = error["type"], error.get("ctx", {}), error.get("input")
    path, line = _format_path(loc), _line_of(loc, lines)
    if kind == "extra_forbidden":
        allowed = _allowed_keys(loc[:-1])
        return Problem(path, line, "unknown key" + (
            f"; expected one of {', '.join(allowed)}" if allowed else ""))
    if kind == "missing":
        return Problem(path, line, "missing required key")
    if kind == "value_error":
        return Problem(path, line, error["msg"].removeprefix("Value error, "))
    if kind == "literal_error":
        options = str(ctx.get("expected", "")).replace("'", "").replace(" or ", ", ")
        what = "a metric" if error["loc"][-1:] == ("[key]",) else "one of"
        message = f"expected {what} {options}".replace("a metric ", "a metric: ")
    elif kind in ("too_short", "too_long"):
        bound = ctx.get("min_length") if kind == "too_short" else ctx.get("max_length")
        word = "at least" if kind == "too_short" else "at most"
        return Problem(path, line, f"expected {word} {bound} items, "
                                   f"got {ctx.get('actual_length')}")
    elif kind in ("string_too_short", "string_too_long"):
        bound = ctx.get("min_length") if kind == "string_too_short" else ctx.get("max_length")
        word = "at least" if kind == "string_too_short" else "at most"
        message = f"expected {word} {bound} characters"
    elif kind == "string_pattern_mismatch":
        message = "expected letters, digits, '_', '.' or '-' only"
    elif kind in ("greater_than_equal", "less_than_equal", "greater_than", "less_than"):
        sign = {"greater_than_equal": ">=", "less_than_equal": "<=",
                "greater_than": ">", "less_than": "<"}[kind]
        bound = next(iter(ctx.values()), "?")
        message = f"expected a number {sign} {bound}"
    else:
        text = error["msg"].removeprefix("Input should be ")
        message = "expected " + text[:1].lower() + text[1:]
    return Problem(path, line, message + _given(given))


def _allowed_keys(loc: tuple) -> list[str]:
    """The keys the model at ``loc`` accepts (empty when it cannot be worked out)."""
    model: Any = Scenario
    for part in loc:
        if isinstance(part, int):
            continue
        fields = getattr(model, "model_fields", None)
        if not fields or part not in fields:
            return []
        model = _model_in(fields[part].annotation)
        if model is None:
            return []
    fields = getattr(model, "model_fields", None)
    return sorted(fields) if fields else []


def _model_in(annotation: Any) -> type[BaseModel] | None:
    """The first pydantic model inside a (possibly nested, optional, list) annotation."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()) or ():
        found = _model_in(arg)
        if found is not None:
            return found
    origin = getattr(annotation, "__origin__", None)
    if origin is not None and origin is not annotation:
        return _model_in(origin)
    return None


def _cross_check(scenario: Scenario, base_dir: Path | None) -> list[tuple[tuple, str]]:
    """Problems that need more than one field: references, sizes against limits."""
    problems: list[tuple[tuple, str]] = []
    system, nic = scenario.system, scenario.system.nic
    buckets = 2 ** nic.hash_bits
    if isinstance(nic.table, list):
        if len(nic.table) != buckets:
            problems.append((("system", "nic", "table"),
                             f"expected {buckets} buckets for hash_bits {nic.hash_bits}, "
                             f"got {len(nic.table)}"))
        for index, core in enumerate(nic.table):
            if core >= system.cores:
                problems.append((("system", "nic", "table", index),
                                 f"expected a core 0-{system.cores - 1}, got {core}"))
    for name in ("default_core", "default_fragment_core"):
        if getattr(nic, name) >= system.cores:
            problems.append((("system", "nic", name),
                             f"expected a core 0-{system.cores - 1}, got {getattr(nic, name)}"))
    if system.shared_ip is not None and system.ips_per_core != 1:
        problems.append((("system", "ips_per_core"),
                         f"expected 1 (or no ips_per_core) with shared_ip, "
                         f"got {system.ips_per_core}"))
    pool = ipaddress.ip_network(system.ip_pool)
    if pool.version != 4:
        problems.append((("system", "ip_pool"), f"expected an IPv4 prefix (the cores' nat "
                                                f"addresses are IPv4), got {system.ip_pool!r}"))
    if system.shared_ip is not None and ipaddress.ip_address(system.shared_ip).version != 4:
        problems.append((("system", "shared_ip"), f"expected an IPv4 address (the cores' nat "
                                                  f"addresses are IPv4), got "
                                                  f"{system.shared_ip!r}"))
    needed = system.cores * system.ips_per_core + 1
    if system.shared_ip is None and pool.num_addresses <= needed:
        problems.append((("system", "ip_pool"),
                         f"expected a prefix with more than {needed} addresses for "
                         f"{system.cores} cores x {system.ips_per_core} IPs, got {pool}"))
    if system.cores * scenario.ports.tables_per_ip > MAX_USIP_TABLES:
        problems.append((("ports", "tables_per_ip"),
                         f"expected at most {MAX_USIP_TABLES // system.cores} tables per core "
                         f"on {system.cores} cores ({MAX_USIP_TABLES} usip tables in all), "
                         f"got {scenario.ports.tables_per_ip}"))
    if scenario.ports.range.low > scenario.ports.range.high:
        problems.append((("ports", "range"), f"expected low <= high, got "
                                             f"{scenario.ports.range.low}-"
                                             f"{scenario.ports.range.high}"))
    names: dict[str, int] = {}
    for index, service in enumerate(scenario.services):
        if service.name in names:
            problems.append((("services", index, "name"),
                             f"expected a unique name, got {service.name!r} again "
                             f"(services[{names[service.name]}])"))
        names.setdefault(service.name, index)
        vip = ipaddress.ip_address(service.vip)
        if vip.version != 4 and service.policy != "transparent":
            problems.append((("services", index, "policy"),
                             f"expected transparent for an IPv6 service (port allocation, "
                             f"for nat and usip, is modelled for IPv4), got {service.policy}"))
        problems += _size_problems(("services", index), service.proto, vip.version,
                                   service.mtu, response_bytes=service.response_bytes)
        for s_index, server in enumerate(service.servers):
            if parse_endpoint(server)[0].version != vip.version:
                problems.append((("services", index, "servers", s_index),
                                 f"expected an IPv{vip.version} server like the vip, "
                                 f"got {server!r}"))
    if not scenario.services and scenario.sources:
        problems.append((("services",), "expected at least one service for the traffic"))
    total = 0
    listed = isinstance(scenario.traffic, list)
    for index, source in enumerate(scenario.sources):
        loc = ("traffic", index) if listed else ("traffic",)
        set_kinds = [k for k in ("flows", "generated", "adversarial", "pcap")
                     if getattr(source, k) is not None]
        if len(set_kinds) != 1:
            problems.append((loc, f"expected exactly one of flows, generated, adversarial, "
                                  f"pcap, got {', '.join(set_kinds) or 'none'}"))
            continue
        if source.flows is not None:
            total += len(source.flows)
            for f_index, flow in enumerate(source.flows):
                problems += _check_flow(flow, loc + ("flows", f_index), names, scenario)
        elif source.generated is not None:
            total += source.generated.count
            problems += _check_generated(source.generated, loc + ("generated",), names,
                                         scenario)
        elif source.adversarial is not None:
            total += source.adversarial.count
            problems += _check_adversarial(source.adversarial, loc + ("adversarial",), names,
                                           scenario)
        elif source.pcap is not None and source.pcap.path is not None and base_dir is not None:
            path = Path(source.pcap.path)
            path = path if path.is_absolute() else base_dir / path
            if not path.is_file():
                problems.append((loc + ("pcap", "path"),
                                 f"expected an existing pcap file, got {source.pcap.path!r}"))
    if total > MAX_GENERATED_FLOWS:
        problems.append((("traffic",), f"expected at most {MAX_GENERATED_FLOWS} flows in all, "
                                       f"got {total}"))
    return problems


def _check_range(rng: PortRange, loc: tuple) -> list[tuple[tuple, str]]:
    if rng.low > rng.high:
        return [(loc, f"expected low <= high, got {rng.low}-{rng.high}")]
    return []


def _check_flow(flow: FlowEntry, loc: tuple, names: dict, scenario: Scenario):
    problems = []
    if (flow.service is None) == (flow.server is None):
        problems.append((loc, "expected exactly one of service, server"))
    elif flow.service is not None and flow.service not in names:
        problems.append((loc + ("service",), f"expected one of the services "
                                             f"({', '.join(names) or 'none defined'}), "
                                             f"got {flow.service!r}"))
    else:
        client = parse_endpoint(flow.client)[0]
        target = (ipaddress.ip_address(scenario.service(flow.service).vip)
                  if flow.service is not None else parse_endpoint(flow.server)[0])
        if client.version != target.version:
            problems.append((loc + ("client",), f"expected an IPv{target.version} client "
                                                f"like its server, got {flow.client!r}"))
        service = scenario.service(flow.service) if flow.service is not None else None
        proto = flow.proto or (service.proto if service else "tcp")
        problems += _size_problems(loc, proto, target.version, service and service.mtu,
                                   request_bytes=flow.request_bytes,
                                   response_bytes=flow.response_bytes)
    return problems


def _size_problems(loc: tuple, proto: str, version: int, mtu: int | None,
                   **sizes: int | Size | None) -> list[tuple[tuple, str]]:
    """Sizes that cannot travel as one IP datagram where the lab sends one: any UDP
    message, and a TCP response its server fragments (a service with an ``mtu``)."""
    problems = []
    largest = max_datagram_payload(version, Proto.parse(proto))
    for name, size in sizes.items():
        high = size.high if isinstance(size, Size) else size
        one_datagram = proto == "udp" or (name == "response_bytes" and mtu is not None)
        if one_datagram and high is not None and high > largest:
            why = ("a UDP datagram" if proto == "udp"
                   else "the response its server fragments, one TCP datagram")
            problems.append((loc + (name,), f"expected at most {largest} bytes ({why} over "
                                            f"IPv{version}), got {high}"))
    return problems


def _check_generated(gen: Generated, loc: tuple, names: dict, scenario: Scenario):
    problems = _check_range(gen.client_ports, loc + ("client_ports",))
    sizes = {"request_bytes": gen.request_bytes, "response_bytes": gen.response_bytes}
    if gen.servers is None:
        for name in gen.services or list(names):
            service = scenario.service(name) if name in names else None
            if service is None:
                continue
            if ipaddress.ip_address(service.vip).version != 4:
                problems.append((loc + ("services",), f"expected IPv4 services (generated "
                                                      f"traffic is IPv4), got {name!r}"))
            else:
                problems += _size_problems(loc, service.proto, 4, service.mtu, **sizes)
    elif gen.proto_mix.get("udp", 0) > 0:
        problems += _size_problems(loc, "udp", 4, None, **sizes)
    for index, prefix in enumerate(gen.client_prefixes):
        if ipaddress.ip_network(prefix).version != 4:
            problems.append((loc + ("client_prefixes", index),
                             f"expected an IPv4 prefix (generated traffic is IPv4), "
                             f"got {prefix!r}"))
    if gen.services is not None and gen.servers is not None:
        problems.append((loc, "expected at most one of services, servers"))
    for index, name in enumerate(gen.services or []):
        if name not in names:
            problems.append((loc + ("services", index),
                             f"expected one of the services ({', '.join(names) or 'none'}), "
                             f"got {name!r}"))
    for index, server in enumerate(gen.servers or []):
        if parse_endpoint(server)[0].version != 4:
            problems.append((loc + ("servers", index),
                             f"expected an IPv4 server, got {server!r}"))
    if gen.servers is not None and not gen.servers:
        problems.append((loc + ("servers",), "expected at least one server"))
    if not sum(gen.proto_mix.values()) > 0:
        problems.append((loc + ("proto_mix",), "expected a positive total weight"))
    for name in ("request_bytes", "response_bytes"):
        size = getattr(gen, name)
        if isinstance(size, Size) and size.low > size.high:
            problems.append((loc + (name,), f"expected low <= high, got "
                                            f"{size.low}-{size.high}"))
    return problems


def _check_adversarial(adv: Adversarial, loc: tuple, names: dict, scenario: Scenario):
    problems = _check_range(adv.client_ports, loc + ("client_ports",))
    buckets = 2 ** scenario.system.nic.hash_bits
    if adv.bucket >= buckets:
        problems.append((loc + ("bucket",), f"expected a bucket 0-{buckets - 1}, "
                                            f"got {adv.bucket}"))
    if adv.service is not None and adv.service not in names:
        problems.append((loc + ("service",), f"expected one of the services "
                                             f"({', '.join(names) or 'none'}), "
                                             f"got {adv.service!r}"))
    target = (scenario.service(adv.service) if adv.service in names
              else scenario.services[0] if scenario.services else None)
    if target is not None and ipaddress.ip_address(target.vip).version != 4:
        problems.append((loc + ("service",), "expected an IPv4 service (the flood is IPv4)"))
    elif target is not None:
        problems += _size_problems(loc, target.proto, 4, target.mtu,
                                   request_bytes=adv.request_bytes)
    if ipaddress.ip_network(adv.client_prefix).version != 4:
        problems.append((loc + ("client_prefix",), f"expected an IPv4 prefix, "
                                                   f"got {adv.client_prefix!r}"))
    return problems


_MODEL_NAMES = ("NicConfig", "System", "PortRange", "Ports", "Service", "Size", "FlowEntry",
                "Generated", "Adversarial", "PcapSource", "TrafficSource", "Scenario")

__all__ = [
    "MAX_FILE_BYTES", "METRICS", "SCHEMA_VERSION", "CheckResult", "Scenario",
    "evaluate_checks", "load_scenario", "load_scenario_file", "parse_check",
    "parse_endpoint", "scenario_json_schema",
]
