"""The NIC's receive-side scaling: hash types, input transforms, the indirection table.

A packet's RSS input is chosen by the hash types the NIC enables (a TCP/IPv4
packet uses its 4-tuple when TCP/IPv4 is on, falls back to the IPv4 2-tuple
when only that is on, and goes to the default core when neither is). The input
may be transformed to make the hash symmetric, the Toeplitz hash is computed,
its low ``hash_bits`` bits pick an indirection-table bucket, and the bucket
names the core whose receive queue gets the packet::

    >>> from engine import FlowTuple, IndirectionTable, Key, Nic, Packet
    >>> nic = Nic(key=Key.microsoft(), table=IndirectionTable.round_robin(4, 7))
    >>> flow = FlowTuple.of("66.9.149.187", "161.142.100.80", 2794, 1766)
    >>> steering = nic.steer(Packet.from_tuple(1, flow))
    >>> hex(steering.hash), steering.bucket, steering.core
    ('0x51ccc178', 120, 0)
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import StrEnum

import numpy as np

from engine.errors import ConfigError, HashKeyError, TableError
from engine.packet.model import Packet, Proto
from engine.packet.toeplitz import KEY_BYTES, Key, hash_words, toeplitz_hash

MIN_HASH_BITS, MAX_HASH_BITS = 1, 7
#: The most cores a model has: 64 receive queues (more than most NICs' RSS queues), so
#: per-core state stays small and every core can own at least two of 128 buckets.
MAX_CORES = 64


def _is_whole(value) -> bool:
    """An int that is not a bool (``True`` is an int to Python, never a core count)."""
    return isinstance(value, int) and not isinstance(value, bool)


def _check_cores(cores) -> None:
    if not _is_whole(cores) or not 1 <= cores <= MAX_CORES:
        raise TableError("cores", f"a whole number of cores, 1-{MAX_CORES}", cores)


def _check_hash_bits(hash_bits) -> None:
    if not _is_whole(hash_bits) or not MIN_HASH_BITS <= hash_bits <= MAX_HASH_BITS:
        raise TableError("hash_bits", f"{MIN_HASH_BITS}-{MAX_HASH_BITS} "
                         f"(2-{2 ** MAX_HASH_BITS} buckets)", hash_bits)


class HashType(StrEnum):
    """The RSS hash types of Microsoft's specification (NDIS_HASH_*)."""

    TCP_IPV4 = "tcp-ipv4"
    UDP_IPV4 = "udp-ipv4"
    IPV4 = "ipv4"
    TCP_IPV6 = "tcp-ipv6"
    UDP_IPV6 = "udp-ipv6"
    IPV6 = "ipv6"

    @property
    def uses_ports(self) -> bool:
        return self not in (HashType.IPV4, HashType.IPV6)


ALL_HASH_TYPES = frozenset(HashType)


class Transform(StrEnum):
    """What the NIC does to the input before hashing, to make the hash symmetric.

    * ``symmetric-xor`` — Linux ethtool's RXH_XFRM_SYM_XOR: the input becomes
      (src^dst, src^dst, sport^dport, sport^dport).
    * ``sort`` — DPDK's symmetric-sort Toeplitz: the smaller address first and,
      independently, the smaller port first.
    """

    NONE = "none"
    SYMMETRIC_XOR = "symmetric-xor"
    SORT = "sort"


def transform_input(transform: Transform, data: bytes) -> bytes:
    """Apply ``transform`` to RSS input bytes laid out as src | dst [| sport | dport]."""
    if transform is Transform.NONE:
        return data
    width = 4 if len(data) in (8, 12) else 16
    src, dst, ports = data[:width], data[width:2 * width], data[2 * width:]
    sport, dport = ports[:2], ports[2:]
    if transform is Transform.SYMMETRIC_XOR:
        mixed = bytes(a ^ b for a, b in zip(src, dst, strict=True))
        mixed_ports = bytes(a ^ b for a, b in zip(sport, dport, strict=True))
        return mixed + mixed + mixed_ports + mixed_ports
    low, high = sorted((src, dst))
    return low + high + b"".join(sorted((sport, dport)))


@dataclass(frozen=True, slots=True)
class IndirectionTable:
    """Bucket → core: ``2 ** hash_bits`` buckets, each naming one of ``cores`` cores."""

    cores: int
    hash_bits: int
    buckets: tuple[int, ...]

    def __post_init__(self):
        _check_cores(self.cores)
        _check_hash_bits(self.hash_bits)
        if not isinstance(self.buckets, tuple | list):
            raise TableError("table", f"a list of {2 ** self.hash_bits} cores", self.buckets)
        if len(self.buckets) != 2 ** self.hash_bits:
            raise TableError("table", f"{2 ** self.hash_bits} buckets for "
                             f"{self.hash_bits} hash bits", len(self.buckets))
        for index, core in enumerate(self.buckets):
            if not _is_whole(core) or not 0 <= core < self.cores:
                raise TableError(f"table[{index}]", f"a core 0-{self.cores - 1}", core,
                                 detail=f"the system has {self.cores} cores")

    @classmethod
    def round_robin(cls, cores: int, hash_bits: int = MAX_HASH_BITS) -> IndirectionTable:
        """Bucket i → core i mod cores: the fill drivers use by default."""
        _check_hash_bits(hash_bits)
        _check_cores(cores)
        return cls(cores, hash_bits, tuple(i % cores for i in range(2 ** hash_bits)))

    @property
    def size(self) -> int:
        return len(self.buckets)

    @property
    def mask(self) -> int:
        return self.size - 1

    def bucket_of(self, hash_value: int) -> int:
        return hash_value & self.mask

    def core_of(self, hash_value: int) -> int:
        return self.buckets[hash_value & self.mask]

    def with_bucket(self, bucket: int, core: int) -> IndirectionTable:
        """A copy with one bucket pointed at ``core`` (TableError for a bad bucket or core)."""
        if not isinstance(bucket, int) or not 0 <= bucket < self.size:
            raise TableError("bucket", f"a bucket 0-{self.size - 1}", bucket)
        buckets = list(self.buckets)
        buckets[bucket] = core
        return replace(self, buckets=tuple(buckets))

    def buckets_of(self, core: int) -> list[int]:
        return [b for b, c in enumerate(self.buckets) if c == core]

    def without_cores(self, failed: set[int]) -> IndirectionTable:
        """The buckets of failed cores spread round-robin over the cores still up."""
        alive = [c for c in range(self.cores) if c not in failed]
        if not alive:
            raise TableError("failed_cores", "at least one core left in service", sorted(failed))
        buckets, turn = [], 0
        for core in self.buckets:
            if core in failed:
                core = alive[turn % len(alive)]
                turn += 1
            buckets.append(core)
        return replace(self, buckets=tuple(buckets))

    def rebalanced(self, bucket_load: list[float] | np.ndarray,
                   *, exclude: set[int] = frozenset()) -> IndirectionTable:
        """A table whose buckets are reassigned to even out the measured per-bucket load.

        Greedy longest-processing-time: the heaviest bucket goes to the least loaded
        core so far; ties go to the core with fewer buckets, then the lower core number,
        so buckets without measured load still spread evenly and the result is
        deterministic. Cores in ``exclude`` (failed) receive nothing.
        """
        try:
            load = np.asarray(bucket_load, dtype=float)
        except (TypeError, ValueError):
            raise TableError("bucket_load", f"{self.size} per-bucket numbers",
                             bucket_load) from None
        if load.shape != (self.size,):
            raise TableError("bucket_load", f"{self.size} per-bucket figures",
                             f"{load.size} in shape {load.shape}")
        if not np.isfinite(load).all() or (load < 0).any():
            raise TableError("bucket_load", "finite figures, none negative",
                             "a NaN, infinite or negative figure")
        cores = [c for c in range(self.cores) if c not in exclude]
        if not cores:
            raise TableError("exclude", "at least one core left in service", sorted(exclude))
        core_load = dict.fromkeys(cores, 0.0)
        owned = dict.fromkeys(cores, 0)
        buckets = [0] * self.size
        for bucket in sorted(range(self.size), key=lambda b: (-load[b], b)):
            target = min(cores, key=lambda c: (core_load[c], owned[c], c))
            buckets[bucket] = target
            core_load[target] += load[bucket]
            owned[target] += 1
        return replace(self, buckets=tuple(buckets))

    def as_array(self) -> np.ndarray:
        return np.asarray(self.buckets, dtype=np.int16)


@dataclass(frozen=True, slots=True)
class Steering:
    """Where the NIC (or the distributor) sent a packet, and why.

    ``hash``/``bucket`` are ``None`` when the packet was not hashed (non-IP, no
    enabled hash type, or a distributor rule matched).
    """

    core: int
    hash: int | None = None
    bucket: int | None = None
    hash_type: HashType | None = None
    input: bytes = b""
    reason: str = "hash"


@dataclass
class Nic:
    """A multi-queue NIC with RSS: it hashes a packet and names the core whose receive
    queue gets it. A NIC without RSS is modelled by the software flow distributor
    (``engine.nic.distributor.FlowDistributor(rss_aware=False)``). Receive queues are
    not modelled: a packet is handled on its core when it arrives (no depth, no drops).
    """

    key: Key
    table: IndirectionTable
    hash_types: frozenset[HashType] = ALL_HASH_TYPES
    transform: Transform = Transform.NONE
    default_core: int = 0

    def __post_init__(self):
        if not 0 <= self.default_core < self.table.cores:
            raise ConfigError("default_core", f"a core 0-{self.table.cores - 1}",
                              self.default_core)
        ipv6_types = {HashType.TCP_IPV6, HashType.UDP_IPV6, HashType.IPV6} & self.hash_types
        if ipv6_types and len(self.key.data) < KEY_BYTES:
            raise HashKeyError("key", f"at least {KEY_BYTES} bytes while IPv6 hash types are "
                                      f"on ({', '.join(sorted(ipv6_types))})",
                               self.key.hex, detail=f"it has {len(self.key.data)} bytes; "
                               "a 16-byte key hashes IPv4 only: set hash_types to IPv4 "
                               "types", code="key_too_short")

    @property
    def cores(self) -> int:
        return self.table.cores

    def hash_type_for(self, packet: Packet) -> HashType | None:
        """The hash type the NIC applies to ``packet`` (None → default core).

        A TCP/UDP packet whose 4-tuple type is off falls back to its 2-tuple type; so
        does one without ports (a non-first fragment).
        """
        if not packet.is_ip:
            return None
        v6 = packet.version == 6
        wanted = {Proto.TCP: HashType.TCP_IPV6 if v6 else HashType.TCP_IPV4,
                  Proto.UDP: HashType.UDP_IPV6 if v6 else HashType.UDP_IPV4}.get(packet.proto)
        if wanted in self.hash_types and packet.sport is not None and packet.dport is not None:
            return wanted
        two_tuple = HashType.IPV6 if v6 else HashType.IPV4
        return two_tuple if two_tuple in self.hash_types else None

    def addresses_only(self, proto: int, version: int = 4) -> bool:
        """True when this NIC hashes a ``proto`` packet of IP ``version`` *with* ports on
        its addresses alone (its 4-tuple type is off, the 2-tuple type on; as
        ``hash_type_for`` decides): then no rewritten port can steer a response, only its
        addresses can (nat's IP choice). False when the ports count, or when the packet
        is not hashed at all (default core: nothing steers it)."""
        v6 = version == 6
        wanted = {Proto.TCP: HashType.TCP_IPV6 if v6 else HashType.TCP_IPV4,
                  Proto.UDP: HashType.UDP_IPV6 if v6 else HashType.UDP_IPV4}.get(proto)
        if wanted in self.hash_types:
            return False
        return (HashType.IPV6 if v6 else HashType.IPV4) in self.hash_types

    def addresses_only_batch(self, proto) -> np.ndarray:
        """``addresses_only`` per IPv4 row of protocol numbers (bool array)."""
        proto = np.asarray(proto)
        portless = np.full(proto.shape, HashType.IPV4 in self.hash_types, dtype=bool)
        if HashType.TCP_IPV4 in self.hash_types:
            portless &= proto != Proto.TCP
        if HashType.UDP_IPV4 in self.hash_types:
            portless &= proto != Proto.UDP
        return portless

    def hash_input_for(self, packet: Packet, hash_type: HashType) -> bytes:
        flow = packet.tuple
        data = flow.hash_input(with_ports=hash_type.uses_ports)
        return transform_input(self.transform, data)

    def steer(self, packet: Packet) -> Steering:
        """Hash ``packet`` as this NIC would and return its core; the NIC's own decision,
        which an RSS-unaware NIC does not make (its distributor calls this instead)."""
        hash_type = self.hash_type_for(packet)
        if hash_type is None:
            reason = "not IP" if not packet.is_ip else "no enabled hash type"
            return Steering(self.default_core, reason=f"default core ({reason})")
        data = self.hash_input_for(packet, hash_type)
        value = toeplitz_hash(self.key, data)
        bucket = self.table.bucket_of(value)
        return Steering(self.table.buckets[bucket], value, bucket, hash_type, data)

    def steer_batch(self, src, dst, sport, dport, proto
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(hashes uint32, hashed bool, cores int64)`` for IPv4 packets as arrays, with the
        NIC's hash-type choice (4-tuple, else the 2-tuple, else the default core) exactly as
        ``hash_type_for`` makes it for each packet (its array form: one property test holds
        the two equal)."""
        return self._steer_arrays(src, dst, sport, dport, proto, self.hash_ipv4_batch,
                                  HashType.TCP_IPV4, HashType.UDP_IPV4, HashType.IPV4)

    def steer_ipv6_batch(self, src, dst, sport, dport, proto
                         ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``steer_batch`` for IPv6 packets: ``src``/``dst`` are (N, 16) uint8 arrays of
        addresses in network byte order (``IPv6Address.packed``), ports host-order
        integers; the hash types are the IPv6 ones (``tcp-ipv6``/``udp-ipv6``, else
        ``ipv6``, else the default core), as ``hash_type_for`` chooses them."""
        return self._steer_arrays(src, dst, sport, dport, proto, self.hash_ipv6_batch,
                                  HashType.TCP_IPV6, HashType.UDP_IPV6, HashType.IPV6)

    def _steer_arrays(self, src, dst, sport, dport, proto, hash_batch, tcp: HashType,
                      udp: HashType, two_tuple: HashType
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The hash-type choice of one address family over arrays: its TCP/UDP 4-tuple
        type where on, else its 2-tuple type, else the default core."""
        count = len(src)
        types = self.hash_types
        four = np.zeros(count, dtype=bool)
        if tcp in types:
            four |= proto == Proto.TCP
        if udp in types:
            four |= proto == Proto.UDP
        hashes = np.zeros(count, dtype=np.uint32)
        if four.all():
            hashes = hash_batch(src, dst, sport, dport)
        elif four.any():
            hashes[four] = hash_batch(src[four], dst[four], sport[four], dport[four])
        hashed = four.copy()
        if two_tuple in types and not four.all():
            two = ~four
            hashes[two] = hash_batch(src[two], dst[two])
            hashed[two] = True
        table = self.table.as_array().astype(np.int64)
        cores = table[hashes & np.uint32(self.table.mask)]
        cores[~hashed] = self.default_core
        return hashes, hashed, cores

    def hash_ipv6_batch(self, src: np.ndarray, dst: np.ndarray,
                        sport: np.ndarray | None = None,
                        dport: np.ndarray | None = None) -> np.ndarray:
        """Hashes (uint32) of IPv6 tuples as arrays, with this NIC's input transform
        (``transform_input``'s array form): addresses (N, 16) uint8 in network byte
        order, ports any unsigned dtype; without ports, the 32-byte 2-tuple hash."""
        src = np.asarray(src, dtype=np.uint8).reshape(-1, 16)
        dst = np.asarray(dst, dtype=np.uint8).reshape(-1, 16)
        with_ports = sport is not None and dport is not None
        if with_ports:
            sport = np.asarray(sport, dtype=np.uint32)
            dport = np.asarray(dport, dtype=np.uint32)
        if self.transform is Transform.SYMMETRIC_XOR:
            src = dst = src ^ dst
            if with_ports:
                sport = dport = sport ^ dport
        elif self.transform is Transform.SORT:
            # bytes compare as big-endian integers: the first differing byte decides
            differ = src != dst
            first = np.argmax(differ, axis=1)
            rows = np.arange(src.shape[0])
            swap = differ.any(axis=1) & (src[rows, first] > dst[rows, first])
            src, dst = np.where(swap[:, None], dst, src), np.where(swap[:, None], src, dst)
            if with_ports:
                sport, dport = np.minimum(sport, dport), np.maximum(sport, dport)
        data = np.concatenate([src, dst], axis=1).astype(np.uint32)
        words = (data[:, 0::2] << 8) | data[:, 1::2]
        columns = [words[:, i] for i in range(16)]
        if with_ports:
            columns += [sport, dport]
        return hash_words(self.key, columns)

    def steer_two_tuple_batch(self, src, dst) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(hashes, hashed, cores)`` of IPv4 packets without ports (fragments), as
        ``steer`` treats them: the 2-tuple hash when ``ipv4`` is enabled, else the
        default core."""
        count = len(src)
        if HashType.IPV4 not in self.hash_types:
            return (np.zeros(count, np.uint32), np.zeros(count, bool),
                    np.full(count, self.default_core, np.int64))
        hashes = self.hash_ipv4_batch(src, dst)
        table = self.table.as_array().astype(np.int64)
        return hashes, np.ones(count, bool), table[hashes & np.uint32(self.table.mask)]

    def hash_ipv4_batch(self, src: np.ndarray, dst: np.ndarray,
                        sport: np.ndarray | None = None,
                        dport: np.ndarray | None = None) -> np.ndarray:
        """Hashes (uint32) of IPv4 tuples as arrays, with this NIC's input transform.

        Addresses are uint32 in host value order (``int(IPv4Address)``); ports any
        unsigned integer dtype. Hash-type fallback is the caller's choice of ports.
        """
        src = np.asarray(src, dtype=np.uint32)
        dst = np.asarray(dst, dtype=np.uint32)
        with_ports = sport is not None and dport is not None
        if with_ports:
            sport = np.asarray(sport, dtype=np.uint32)
            dport = np.asarray(dport, dtype=np.uint32)
        if self.transform is Transform.SYMMETRIC_XOR:
            src = dst = src ^ dst
            if with_ports:
                sport = dport = sport ^ dport
        elif self.transform is Transform.SORT:
            src, dst = np.minimum(src, dst), np.maximum(src, dst)
            if with_ports:
                sport, dport = np.minimum(sport, dport), np.maximum(sport, dport)
        columns = [src >> 16, src & 0xFFFF, dst >> 16, dst & 0xFFFF]
        if with_ports:
            columns += [sport, dport]
        return hash_words(self.key, columns)

    def steer_ipv4_batch(self, src, dst, sport=None, dport=None
                         ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(hashes, buckets, cores)`` for arrays of IPv4 tuples."""
        hashes = self.hash_ipv4_batch(src, dst, sport, dport)
        buckets = (hashes & self.table.mask).astype(np.int16)
        cores = self.table.as_array()[buckets]
        return hashes, buckets, cores

