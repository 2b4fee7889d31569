"""The flows both execution paths take: one record per flow (``FlowSpec``, the trace
path) or one array per field (``FlowArrays``, the batch path); IPv4 or IPv6 in both.

Addresses in arrays are uint32 host values of IPv4 addresses (``int(IPv4Address)``);
an IPv6 row (``FlowArrays.is_v6``) holds 0 there and its addresses in ``client_ip6`` /
``server_ip6``, 16 bytes each in network byte order (``IPv6Address.packed``). Ports are
host-order integers (the hash functions put them in network order); sizes are payload
bytes; times are integer microseconds of the run's virtual clock.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, replace

import numpy as np

from engine.appliance.rules import CLOSE_CODE, CLOSES, DEFAULT_REQUEST_BYTES, DEFAULT_RESPONSE_BYTES
from engine.errors import TrafficError
from engine.packet.model import Address, FlowTuple, Proto


@dataclass(frozen=True, slots=True)
class FlowSpec:
    """One flow of the trace path: the request is ``client_ip:client_port →
    server_ip:server_port`` (``proto`` an IP protocol number), carrying
    ``request_bytes`` of payload; the response carries ``response_bytes``. ``start_us``,
    ``close`` and ``hold_us``: when the request arrives and how its session ends, as
    ``engine.appliance.config.Flow`` has them."""

    id: int
    client_ip: Address
    client_port: int
    server_ip: Address
    server_port: int
    proto: int = Proto.TCP
    request_bytes: int = DEFAULT_REQUEST_BYTES
    response_bytes: int = DEFAULT_RESPONSE_BYTES
    #: when the request arrives (virtual µs), and how its session ends (``Flow``)
    start_us: int = 0
    close: str = "fin"
    hold_us: int | None = None

    @property
    def request(self) -> FlowTuple:
        """The request's tuple as it arrives at the NIC."""
        return FlowTuple(self.client_ip, self.server_ip, self.client_port, self.server_port,
                         self.proto)

    def to_flow(self):
        """The ``engine.paths.trace.Flow`` the trace path runs."""
        from engine.paths.trace import Flow
        return Flow(self.id, str(self.client_ip), self.client_port, str(self.server_ip),
                    self.server_port, self.proto, self.request_bytes, self.response_bytes,
                    self.close, self.start_us, hold_us=self.hold_us)

    def as_dict(self) -> dict:
        return {"id": self.id, "client_ip": str(self.client_ip), "client_port": self.client_port,
                "server_ip": str(self.server_ip), "server_port": self.server_port,
                "proto": self.proto, "request_bytes": self.request_bytes,
                "response_bytes": self.response_bytes, "start_us": self.start_us,
                "close": self.close, "hold_us": self.hold_us}


@dataclass(frozen=True, eq=False)
class FlowArrays:
    """Flows for the batch path, one row per flow (ids are 0..n-1 in row order unless
    ``ids`` is given); see the module docstring for units.

    IPv6 rows: ``is_v6`` (bool, one per row) marks them and ``client_ip6`` /
    ``server_ip6`` ((n, 16) uint8) hold their addresses; all three are ``None`` when
    every row is IPv4, so IPv4 traffic carries nothing extra.

    The time columns are optional too (``None``: every flow starts at 0 and ends with a
    FIN after the system's ``close_after_us``): ``start_us`` (int64), ``close``
    (``rules.CLOSE_CODE`` values, int8) and ``hold_us`` (int64, -1: the system's); pass
    them by name.
    """

    client_ip: np.ndarray    # uint32
    client_port: np.ndarray  # uint16
    server_ip: np.ndarray    # uint32
    server_port: np.ndarray  # uint16
    proto: np.ndarray        # uint8
    request_bytes: np.ndarray   # uint32
    response_bytes: np.ndarray  # uint32
    is_v6: np.ndarray | None = None       # bool
    client_ip6: np.ndarray | None = None  # (n, 16) uint8, network order
    server_ip6: np.ndarray | None = None  # (n, 16) uint8, network order
    start_us: np.ndarray | None = None  # int64
    close: np.ndarray | None = None     # int8
    hold_us: np.ndarray | None = None   # int64

    def __len__(self) -> int:
        return int(self.client_ip.shape[0])

    @classmethod
    def empty(cls) -> FlowArrays:
        return cls(*(np.empty(0, dtype) for dtype in _DTYPES))

    @property
    def timed(self) -> bool:
        """Whether any time column is set (else every flow is concurrent)."""
        return not (self.start_us is None and self.close is None and self.hold_us is None)

    def time_columns(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(start_us, close, hold_us)``, the defaults filled in where a column is None."""
        count = len(self)
        return (np.zeros(count, np.int64) if self.start_us is None
                else np.asarray(self.start_us, np.int64),
                np.full(count, CLOSE_CODE["fin"], np.int8) if self.close is None
                else np.asarray(self.close, np.int8),
                np.full(count, -1, np.int64) if self.hold_us is None
                else np.asarray(self.hold_us, np.int64))

    @property
    def has_v6(self) -> bool:
        """Whether any row is IPv6."""
        return self.is_v6 is not None and bool(self.is_v6.any())

    def v6_columns(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(is_v6, client_ip6, server_ip6)``, zero-filled when every row is IPv4."""
        if self.is_v6 is not None:
            return self.is_v6, self.client_ip6, self.server_ip6
        count = len(self)
        return (np.zeros(count, bool), np.zeros((count, 16), np.uint8),
                np.zeros((count, 16), np.uint8))

    def take(self, rows: np.ndarray) -> FlowArrays:
        """The arrays of ``rows`` (indexes or a mask), IPv6 columns included."""
        extra = ((None,) * 3 if self.is_v6 is None else
                 (self.is_v6[rows], self.client_ip6[rows], self.server_ip6[rows]))
        times = ({} if not self.timed else dict(zip(
            ("start_us", "close", "hold_us"), (c[rows] for c in self.time_columns()),
            strict=True)))
        return FlowArrays(*(getattr(self, name)[rows] for name in _FIELDS), *extra, **times)

    @classmethod
    def concat(cls, parts: list[FlowArrays]) -> FlowArrays:
        if not parts:
            return cls.empty()
        columns = [np.concatenate([getattr(p, name) for p in parts]) for name in _FIELDS]
        times = {}
        if any(p.timed for p in parts):
            columns_of = [p.time_columns() for p in parts]
            times = {name: np.concatenate([c[i] for c in columns_of])
                     for i, name in enumerate(("start_us", "close", "hold_us"))}
        if all(p.is_v6 is None for p in parts):
            return cls(*columns, **times)
        extra = zip(*(p.v6_columns() for p in parts), strict=True)
        return cls(*columns, *(np.concatenate(list(c)) for c in extra), **times)

    @classmethod
    def from_specs(cls, specs: list[FlowSpec]) -> FlowArrays:
        """Arrays of flow records, IPv4 and IPv6 (a record's two addresses share a
        family: TrafficError names a flow that mixes them)."""
        v6 = [spec.client_ip.version == 6 for spec in specs]
        for spec, six in zip(specs, v6, strict=True):
            if (spec.server_ip.version == 6) != six:
                raise TrafficError(f"flows[{spec.id}]", "a client and a server of one IP "
                                   "version", f"{spec.client_ip} -> {spec.server_ip}")
        columns = [[0 if six else int(s.client_ip) for s, six in zip(specs, v6, strict=True)],
                   [s.client_port for s in specs],
                   [0 if six else int(s.server_ip) for s, six in zip(specs, v6, strict=True)],
                   [s.server_port for s in specs],
                   [s.proto for s in specs], [s.request_bytes for s in specs],
                   [s.response_bytes for s in specs]]
        arrays = [np.asarray(c, dtype) for c, dtype in zip(columns, _DTYPES, strict=True)]
        times = {}
        if any(s.start_us or s.close != "fin" or s.hold_us is not None for s in specs):
            times = {"start_us": np.asarray([s.start_us for s in specs], np.int64),
                     "close": np.asarray([CLOSE_CODE[s.close] for s in specs], np.int8),
                     "hold_us": np.asarray([-1 if s.hold_us is None else s.hold_us
                                            for s in specs], np.int64)}
        if not any(v6):
            return cls(*arrays, **times)
        zero = bytes(16)

        def packed(addresses):
            data = b"".join(a.packed if a.version == 6 else zero for a in addresses)
            return np.frombuffer(data, np.uint8).reshape(len(specs), 16).copy()

        return cls(*arrays, np.asarray(v6, bool), packed(s.client_ip for s in specs),
                   packed(s.server_ip for s in specs), **times)

    def to_specs(self, *, first_id: int = 0, limit: int | None = None) -> list[FlowSpec]:
        """Records of the first ``limit`` rows (all by default), ids from ``first_id``."""
        end = len(self) if limit is None else min(limit, len(self))
        start, close, hold = (column[:end].tolist() for column in self.time_columns())
        rows = zip(*(getattr(self, name)[:end].tolist() for name in _FIELDS), start, close,
                   hold, strict=True)
        v4 = ipaddress.IPv4Address
        specs = [FlowSpec(first_id + i, v4(c), cp, v4(s), sp, pr, rq, rs, st, CLOSES[cl],
                          None if ho < 0 else ho)
                 for i, (c, cp, s, sp, pr, rq, rs, st, cl, ho) in enumerate(rows)]
        if self.is_v6 is not None:
            v6 = ipaddress.IPv6Address
            for i in np.flatnonzero(self.is_v6[:end]).tolist():
                specs[i] = replace(specs[i], client_ip=v6(self.client_ip6[i].tobytes()),
                                   server_ip=v6(self.server_ip6[i].tobytes()))
        return specs


_FIELDS = ("client_ip", "client_port", "server_ip", "server_port", "proto",
           "request_bytes", "response_bytes")
_DTYPES = (np.uint32, np.uint16, np.uint32, np.uint16, np.uint8, np.uint32, np.uint32)
