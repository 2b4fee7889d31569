"""The appliance's configuration as plain values, shared by both execution paths: the
system (``SystemConfig``), its services and servers, the flows to drive through it, and
the port allocators a configuration builds for each core.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from engine.appliance.fragments import ASSEMBLE, BRIDGE, FragmentMode, ReassemblyLimits
from engine.appliance.packet_engine import POLICIES
from engine.appliance.ports import (
    USIP_MEMORY_LIMIT,
    PortAllocator,
    PortRange,
    ResponsePortMap,
    usip_table_bytes,
    usip_tables_bytes,
)
from engine.appliance.rules import (
    CLOSES,
    DEFAULT_REQUEST_BYTES,
    DEFAULT_RESPONSE_BYTES,
    FORWARDING_ROUTES,
    min_mtu,
)
from engine.errors import ConfigError, RssLabError
from engine.nic.distributor import FlowDistributor, Rule, check_rules
from engine.nic.rss import HashType, IndirectionTable, Nic, Transform
from engine.packet.model import FlowTuple
from engine.packet.toeplitz import Key, check_port, parse_address, parse_key

STRATEGIES = ("solve", "scan")
#: where nat's IP comes from: the core's own IPs, or the pool of every core's IPs
NAT_IP_CHOICES = ("core", "pool")
FRAGMENT_ORDERS = ("in", "reverse", "random")
FRAGMENT_MODES = tuple(mode.value for mode in FragmentMode)


def _check_whole(config, name: str, least: int, expected: str) -> None:
    """ConfigError naming ``name`` unless ``config.<name>`` is an int >= ``least``."""
    value = getattr(config, name)
    if not isinstance(value, int) or value < least:
        raise ConfigError(name, expected, value)


def _check_mtu(value, field: str, address: str) -> None:
    """ConfigError unless ``value`` is None or an IP MTU the family of ``address`` (the
    link's end) allows (``rules.min_mtu``)."""
    if value is None:
        return
    try:
        least = min_mtu(parse_address(address, field).version)
    except RssLabError:
        least = min_mtu(4)  # the address's own check names it
    if not isinstance(value, int) or isinstance(value, bool) or value < least:
        raise ConfigError(field, f"None or an IP MTU of at least {least} bytes", value)


@dataclass(frozen=True, slots=True)
class Flow:
    """One client connection to drive through the system.

    ``server_ip``:``server_port`` is what the client connects to: a service's VIP, or a
    server directly (transparent services, or traffic matching no service). Byte
    counts are L4 payload bytes. ``close``: how the session ends after the response —
    ``fin``, ``rst``, or ``none`` (it stays open until the idle timeout).
    ``start_us`` is the request's arrival time at the NIC; ``hold_us`` the time from the
    response's delivery to the FIN/RST (``None``: the system's ``close_after_us``; unused
    with ``close="none"``). The session's end frees its port (``rules.close_delay_us``).

    ``request_mtu`` — the client link's IP MTU in bytes (``None``: no fragmentation):
    a request that does not fit arrives in fragments. ``fragment_order`` (``in``,
    ``reverse``, ``random``) and ``fragment_duplicates`` (extra copies of random
    fragments) say how this flow's fragments (request and response) arrive; random
    choices come from the system's seeded RNG. Order and duplicates never change the
    flow's outcome, only the events (the batch path ignores them).
    """

    id: int
    client_ip: str
    client_port: int
    server_ip: str
    server_port: int
    proto: str | int = "tcp"
    request_bytes: int = DEFAULT_REQUEST_BYTES
    response_bytes: int = DEFAULT_RESPONSE_BYTES
    close: str = "fin"
    start_us: int = 0
    request_mtu: int | None = None
    fragment_order: str = "in"
    fragment_duplicates: int = 0
    hold_us: int | None = None

    def request_tuple(self) -> FlowTuple:
        """The request as the client sends it. Raises TupleError for a bad field."""
        return FlowTuple.of(self.client_ip, self.server_ip, self.client_port,
                            self.server_port, self.proto)

    def check(self, index: int = 0) -> None:
        """ConfigError for a bad ``close``, byte count, start time, hold time, MTU,
        fragment order or duplicate count."""
        if self.close not in CLOSES:
            raise ConfigError(f"flows[{index}].close", " / ".join(CLOSES), self.close)
        _check_mtu(self.request_mtu, f"flows[{index}].request_mtu", self.client_ip)
        if self.fragment_order not in FRAGMENT_ORDERS:
            raise ConfigError(f"flows[{index}].fragment_order", " / ".join(FRAGMENT_ORDERS),
                              self.fragment_order)
        if not isinstance(self.fragment_duplicates, int) or self.fragment_duplicates < 0:
            raise ConfigError(f"flows[{index}].fragment_duplicates",
                              "a whole number, 0 or more", self.fragment_duplicates)
        for name in ("request_bytes", "response_bytes", "start_us"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 0:
                raise ConfigError(f"flows[{index}].{name}", "a whole number, 0 or more", value)
        if self.hold_us is not None and (not isinstance(self.hold_us, int)
                                         or isinstance(self.hold_us, bool) or self.hold_us < 0):
            raise ConfigError(f"flows[{index}].hold_us",
                              "None or a whole number of microseconds, 0 or more", self.hold_us)


@dataclass(frozen=True, slots=True)
class Service:
    """A virtual server: clients connect to ``vip``:``vport``; the packet engine forwards
    to one of ``servers`` (``(ip, port)`` pairs; none = the VIP itself), picked as
    ``servers[request hash mod len(servers)]`` (deterministic, and the same on both
    execution paths). ``policy`` says how the client side is treated. For
    ``transparent`` the client may also address a server directly.
    ``assemble_flag`` is read by the fragmentation module (the patent's NAT PCB flag).
    ``mtu`` — the IP MTU of this service's servers (``None``: no fragmentation) unless
    a ``Server`` entry for the server gives its own.
    """

    vip: str
    vport: int
    proto: str | int = "tcp"
    policy: str = "nat"
    servers: tuple[tuple[str, int], ...] = ()
    assemble_flag: bool = False
    mtu: int | None = None

    def check(self, index: int = 0) -> None:
        """ConfigError/TupleError naming the bad field."""
        _check_mtu(self.mtu, f"services[{index}].mtu", self.vip)
        if self.policy not in POLICIES:
            raise ConfigError(f"services[{index}].policy", " / ".join(POLICIES), self.policy)
        parse_address(self.vip, f"services[{index}].vip")
        check_port(self.vport, f"services[{index}].vport")
        for number, (ip, port) in enumerate(self.servers):
            parse_address(ip, f"services[{index}].servers[{number}]")
            check_port(port, f"services[{index}].servers[{number}].port")


@dataclass(frozen=True, slots=True)
class Server:
    """A simulated server at ``ip``:``port``: answers after ``latency_us`` with
    ``response_bytes`` of payload (``None``: the flow's own ``response_bytes``).
    ``mtu`` — its link's IP MTU in bytes (``None``: its service's ``mtu``, else no
    fragmentation): a response that does not fit leaves it in fragments."""

    ip: str
    port: int
    response_bytes: int | None = None
    latency_us: int = 100
    mtu: int | None = None

    def check(self, index: int = 0) -> None:
        """ConfigError/TupleError naming the bad field."""
        parse_address(self.ip, f"servers[{index}].ip")
        check_port(self.port, f"servers[{index}].port")
        _check_mtu(self.mtu, f"servers[{index}].mtu", self.ip)


@dataclass(frozen=True)
class SystemConfig:
    """Everything that defines a system, as plain values (a scenario file fills it).

    * ``cores`` — number of cores, each with a packet engine;
    * ``ips_per_core`` — local (proxy) IPv4 addresses per core, numbered from
      ``local_ip_base`` (core 0 gets the first ``ips_per_core``), unless ``shared_ip``
      is set: then every core uses that one address and ``nat`` relies on ports alone;
    * ``key`` — ``microsoft``, ``symmetric``, ``random:SEED`` or hex (``parse_key``);
    * ``hash_bits`` (1–7) and ``table`` (explicit bucket → core list, else round robin);
    * ``transform`` — ``none`` / ``symmetric-xor`` / ``sort`` (``sort`` is not linear:
      only with ``transparent`` everywhere, else ConfigError); ``hash_types`` — names of
      enabled ``HashType`` values (``None``: all); ``default_core`` for unhashed packets;
    * ``policy`` — for flows that match no service (their destination is the server);
    * ``strategy`` — ``solve`` or ``scan`` port choice; ``tables_per_ip`` — ``usip``'s
      port allocation tables per core (the patent: 64 or 256; each core has them once,
      shared by its clients; all cores' tables within ``USIP_MEMORY_LIMIT`` bytes);
      ``port_range`` — (low, high) ports the tables hand out, inclusive;
      ``nat_ip_choice`` — the IPs nat picks from: ``core`` (the core's own
      ``ips_per_core``) or ``pool`` (every core's, shared); port tables stay per
      (core, IP), and with the pool each core's cover its own slice of ``port_range``
      (``nat_port_range``), so no two cores hand out the same IP and port. Where the
      NIC hashes responses on their addresses alone, the IP is what steers them
      (``PortAllocator.allocate``);
    * ``handoff`` — the forwarding route (``rules.FORWARDING_ROUTES``: ``message``,
      ``shared-buffer``, ``control-core``, ``neighbour`` or ``none``) by which a core
      moves a packet of another core's session to its owner, whatever the policy;
    * ``wrong_direction`` — teaching option: choose ports by hashing the
      request-direction tuple, as the patent's text does (seed L574, assuming a
      symmetric hash, L514), instead of the response as it arrives;
    * times in µs: ``idle_timeout_us``, ``link_us`` (client/server ↔ NIC),
      ``server_us`` (server think time when no ``Server`` says otherwise),
      ``handoff_us`` (per forwarding hop), ``close_after_us`` (response → FIN/RST),
      ``jitter_us`` (uniform extra link delay from the run's seeded RNG);
    * ``services`` and ``servers`` as above;
    * fragments: ``fragment_mode`` — ``reassemble-header`` (the patent's distributor:
      held until the L4 header, steered by the 4-tuple), ``ms-2tuple`` (Microsoft's
      RSS: hashed on the addresses only) or ``default-core`` (all fragments to
      ``default_fragment_core``); ``fragment_action`` — ``assemble`` / ``bridge``
      forces the fragmentation action, ``None`` decides it by the patent's rules;
      reassembly limits per core (``ReassemblyLimits``): ``fragment_timeout_us``,
      ``fragment_max_per_datagram``, ``fragment_max_datagrams``,
      ``fragment_max_fragments``, ``fragment_max_bytes`` (at least 65,535);
    * the flow distributor (``engine.nic.distributor``): ``rss_aware`` — ``False``: the
      NIC hashes nothing, every packet arrives on ``receive_core`` and the distributor
      there moves it to its core (a counted forward by ``handoff``'s route);
      ``rules`` — ``Rule`` values checked before the hash, first match wins;
      ``correct_core_check`` — a core that receives a packet of a session another core
      owns forwards it to the owner (seed L650-L672); off, it processes it where it
      landed; ``table_change_at_us`` / ``table_change`` — the indirection table is
      reprogrammed to ``table_change`` (one core per bucket) at that virtual time
      (both paths; the batch path refuses it with link jitter, fragments or a
      transparent request tuple repeated across it: ``batch.check_batch_config``).
    """

    cores: int = 4
    ips_per_core: int = 1
    shared_ip: str | None = None
    local_ip_base: str = "10.255.0.1"
    key: str = "microsoft"
    hash_bits: int = 7
    table: tuple[int, ...] | None = None
    transform: str = "none"
    hash_types: tuple[str, ...] | None = None
    default_core: int = 0
    policy: str = "nat"
    strategy: str = "solve"
    tables_per_ip: int = 64
    port_range: tuple[int, int] = (1024, 65535)
    nat_ip_choice: str = "core"
    handoff: str = "message"
    wrong_direction: bool = False
    idle_timeout_us: int = 60_000_000
    link_us: int = 10
    server_us: int = 100
    handoff_us: int = 2
    close_after_us: int = 1_000
    jitter_us: int = 0
    services: tuple[Service, ...] = ()
    servers: tuple[Server, ...] = ()
    fragment_mode: str = "reassemble-header"
    default_fragment_core: int = 0
    fragment_action: str | None = None
    fragment_timeout_us: int = 30_000_000
    fragment_max_per_datagram: int = 64
    fragment_max_datagrams: int = 1024
    fragment_max_fragments: int = 8192
    fragment_max_bytes: int = 4 * 1024 * 1024
    rss_aware: bool = True
    receive_core: int = 0
    rules: tuple[Rule, ...] = ()
    correct_core_check: bool = True
    table_change_at_us: int | None = None
    table_change: tuple[int, ...] | None = None

    def check(self) -> None:
        """Raises ConfigError (or TableError/HashKeyError/TupleError) naming the field."""
        self._check_cores_and_ips()
        for name, allowed in (("policy", POLICIES), ("strategy", STRATEGIES),
                              ("handoff", FORWARDING_ROUTES),
                              ("nat_ip_choice", NAT_IP_CHOICES)):
            if getattr(self, name) not in allowed:
                raise ConfigError(name, " / ".join(allowed), getattr(self, name))
        self._check_tables()
        low, high = self.port_range
        if self._nat_ports_sliced() and high - low + 1 < self.cores:
            field = "shared_ip" if self.shared_ip is not None else "nat_ip_choice"
            raise ConfigError(field, f"a port_range of at least {self.cores} ports (every "
                              f"core may hand out the same IP, so {low}-{high} is split "
                              "into one slice per core)", getattr(self, field))
        for name in ("idle_timeout_us", "link_us", "server_us", "handoff_us",
                     "close_after_us", "jitter_us"):
            _check_whole(self, name, 0, "a whole number of microseconds, 0 or more")
        for index, service in enumerate(self.services):
            service.check(index)
        for index, server in enumerate(self.servers):
            server.check(index)
        self._check_fragments()
        self._check_distributor()

    def _check_distributor(self) -> None:
        for name in ("rss_aware", "correct_core_check"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(name, "true or false", getattr(self, name))
        if (not isinstance(self.receive_core, int) or isinstance(self.receive_core, bool)
                or not 0 <= self.receive_core < self.cores):
            raise ConfigError("receive_core", f"a core 0-{self.cores - 1}", self.receive_core)
        check_rules(self.rules, self.cores)
        if self.distributes() and self.handoff == "none":
            raise ConfigError("handoff", "a forwarding route other than none: the flow "
                              "distributor moves packets core to core (rules or an "
                              "RSS-unaware NIC)", self.handoff)
        if self.distributes() and self.fragmenting():
            raise ConfigError("rules" if self.rules else "rss_aware",
                              "no fragmenting servers or services (an mtu) with distributor "
                              "rules or an RSS-unaware NIC: the fragment steerer does not "
                              "go through the distributor yet", "an mtu is set")
        if (self.table_change is None) != (self.table_change_at_us is None):
            raise ConfigError("table_change", "a table and a time (at_us), or neither",
                              self.table_change)
        if self.table_change is not None:
            _check_whole(self, "table_change_at_us", 0,
                         "a whole number of microseconds, 0 or more")
            self.build_table_change()

    def distributes(self) -> bool:
        """Whether the software distributor steers anything: rules, or an RSS-unaware
        NIC."""
        return bool(self.rules) or not self.rss_aware

    def build_table_change(self) -> IndirectionTable | None:
        """The reprogrammed indirection table (TableError naming ``table_change``)."""
        if self.table_change is None:
            return None
        if not isinstance(self.table_change, tuple | list):
            raise ConfigError("table_change", f"a list of {2 ** self.hash_bits} cores",
                              self.table_change)
        try:
            return IndirectionTable(self.cores, self.hash_bits, tuple(self.table_change))
        except RssLabError as error:
            raise ConfigError("table_change", f"{2 ** self.hash_bits} buckets, each a core "
                              f"0-{self.cores - 1}", self.table_change,
                              detail=str(error)) from None

    def build_distributor(self, nic: Nic) -> FlowDistributor:
        return FlowDistributor(nic, self.rules, rss_aware=self.rss_aware,
                               receive_core=self.receive_core)

    def _check_cores_and_ips(self) -> None:
        _check_whole(self, "cores", 1, "a whole number of cores, 1 or more")
        _check_whole(self, "ips_per_core", 1, "1 or more")
        if self.shared_ip is None:
            base = int(parse_address(self.local_ip_base, "local_ip_base"))
            if base + self.cores * self.ips_per_core > 2 ** 32:
                raise ConfigError("local_ip_base", f"room for {self.cores} x "
                                  f"{self.ips_per_core} IPv4 addresses from it",
                                  self.local_ip_base)

    def _check_tables(self) -> None:
        _check_whole(self, "tables_per_ip", 1, "1 or more (the patent: 64 or 256)")
        low, high = self.port_range
        ports = PortRange(low, high)
        if usip_tables_bytes(self.cores, self.tables_per_ip, ports) > USIP_MEMORY_LIMIT:
            each = usip_table_bytes(ports)
            raise ConfigError(
                "tables_per_ip", f"at most {USIP_MEMORY_LIMIT // (each * self.cores)} usip "
                f"tables per core on {self.cores} cores: {USIP_MEMORY_LIMIT:,} bytes of "
                f"usip tables in all, {each:,} bytes each for ports {low}-{high}",
                self.tables_per_ip)

    def _check_fragments(self) -> None:
        if self.fragment_mode not in FRAGMENT_MODES:
            raise ConfigError("fragment_mode", " / ".join(FRAGMENT_MODES), self.fragment_mode)
        if (not isinstance(self.default_fragment_core, int)
                or not 0 <= self.default_fragment_core < self.cores):
            raise ConfigError("default_fragment_core", f"a core 0-{self.cores - 1}",
                              self.default_fragment_core)
        if self.fragment_action not in (None, ASSEMBLE, BRIDGE):
            raise ConfigError("fragment_action", "assemble, bridge or None (by the rules)",
                              self.fragment_action)
        for name in ("fragment_timeout_us", "fragment_max_per_datagram",
                     "fragment_max_datagrams", "fragment_max_fragments"):
            _check_whole(self, name, 1, "a whole number, 1 or more")
        if not isinstance(self.fragment_max_bytes, int) or self.fragment_max_bytes < 65_535:
            raise ConfigError("fragment_max_bytes", "at least 65535 bytes (one whole "
                              "datagram)", self.fragment_max_bytes)

    def build_limits(self) -> ReassemblyLimits:
        """The per-core reassembly limits of the ``fragment_*`` fields."""
        return ReassemblyLimits(self.fragment_timeout_us, self.fragment_max_per_datagram,
                                self.fragment_max_datagrams, self.fragment_max_fragments,
                                self.fragment_max_bytes)

    def fragment_limit(self) -> tuple[int, str]:
        """``(most fragments, reason)``: a datagram of more fragments than this never
        reassembles (all its fragments are held in one reassembler, which drops it
        with ``reason`` when one more arrives), whatever the order."""
        if self.fragment_max_per_datagram <= self.fragment_max_fragments:
            return self.fragment_max_per_datagram, "too-many-fragments"
        return self.fragment_max_fragments, "evicted-fragments"

    def fragmenting(self) -> bool:
        """Whether any server or service has an MTU (responses may be fragmented)."""
        return any(s.mtu is not None for s in self.servers) or any(
            s.mtu is not None for s in self.services)

    def allocates(self) -> bool:
        """Whether any flow can need a port (a ``nat`` or ``usip`` policy is in use)."""
        return self.policy != "transparent" or any(
            service.policy != "transparent" for service in self.services)

    def build_key(self) -> Key:
        return parse_key(self.key)

    def build_table(self) -> IndirectionTable:
        if self.table is None:
            return IndirectionTable.round_robin(self.cores, self.hash_bits)
        return IndirectionTable(self.cores, self.hash_bits, tuple(self.table))

    def build_nic(self) -> Nic:
        try:
            transform = Transform(self.transform)
        except ValueError:
            raise ConfigError("transform", "none / symmetric-xor / sort",
                              self.transform) from None
        if self.hash_types is None:
            types = frozenset(HashType)
        else:
            try:
                types = frozenset(HashType(name) for name in self.hash_types)
            except ValueError:
                raise ConfigError("hash_types", ", ".join(t.value for t in HashType),
                                  self.hash_types) from None
        return Nic(self.build_key(), self.build_table(), types, transform, self.default_core)

    def nat_ips(self, core: int) -> list[str]:
        """The addresses ``core``'s nat picks from (``nat_ip_choice``): its own, or
        every core's (the pool; each listed once)."""
        if self.nat_ip_choice != "pool" or self.shared_ip is not None:
            return self.local_ips(core)
        return [ip for other in range(self.cores) for ip in self.local_ips(other)]

    def _nat_ports_sliced(self) -> bool:
        """Whether nat's port tables hand out a slice of ``port_range`` per core: when two
        cores may hand out the same IP (the pool; or one ``shared_ip`` while some TCP or
        UDP response is hashed on its addresses alone, so a fallback port is any free
        one rather than one whose response class belongs to the core)."""
        if self.shared_ip is None:
            return self.nat_ip_choice == "pool"
        if self.hash_types is None:
            return False
        return not {"tcp-ipv4", "udp-ipv4"} <= set(self.hash_types)

    def nat_port_range(self, core: int) -> PortRange:
        """The ports ``core``'s nat tables hand out: ``port_range``, or with the IP pool
        the core's own slice of it (an equal share, the last core taking the rest).
        Every core may hand out every pool IP (or the one shared IP under addresses-only
        hashing), so without slices two cores could give the same IP and port to two
        flows to the same server (a fallback allocation on one, a fitting one on the
        other): one response tuple for two sessions."""
        low, high = self.port_range
        if not self._nat_ports_sliced():
            return PortRange(low, high)
        share = (high - low + 1) // self.cores
        first = low + core * share
        return PortRange(first, high if core == self.cores - 1 else first + share - 1)

    def local_ips(self, core: int) -> list[str]:
        """The local (proxy) addresses of ``core``."""
        if self.shared_ip is not None:
            return [str(parse_address(self.shared_ip, "shared_ip"))]
        base = int(ipaddress.IPv4Address(self.local_ip_base))
        first = base + core * self.ips_per_core
        return [str(ipaddress.IPv4Address(first + i)) for i in range(self.ips_per_core)]


def build_allocators(config: SystemConfig, table: IndirectionTable
                     ) -> list[dict[str, PortAllocator]]:
    """Per core, the ``nat`` allocator (one table per local IP) and the ``usip`` one
    (``tables_per_ip`` tables of the core's, shared by its clients), over the port map
    of ``table``."""
    key = config.build_key()
    direction = "request" if config.wrong_direction else "response"
    transform = Transform(config.transform)
    if transform is Transform.SORT and not config.allocates():
        transform = Transform.NONE  # transparent only: no port is ever chosen
    port_map = ResponsePortMap(key, table, direction=direction, transform=transform)
    low, high = config.port_range
    ports = PortRange(low, high)
    return [{"nat": PortAllocator(core, config.nat_ips(core), port_map,
                                  strategy=config.strategy,
                                  port_range=config.nat_port_range(core)),
             "usip": PortAllocator(core, config.local_ips(core), port_map,
                                   strategy=config.strategy, port_range=ports,
                                   tables_per_ip=config.tables_per_ip)}
            for core in range(config.cores)]
