"""The Toeplitz hash that RSS NICs compute, scalar and vectorised.

The hash of an input of n bytes is the XOR, over every set bit i of the input
(most significant bit of byte 0 first), of the 32-bit window of the key that
starts at key bit i. So the key must be at least n + 4 bytes long: 40 bytes
cover the longest RSS input (IPv6 with ports, 36 bytes).

Because the hash is linear over GF(2), the contribution of each input byte
can be tabulated once per key: ``tables[i][v]`` is the XOR of the windows for
the set bits of value ``v`` at byte ``i``. The scalar path XORs one table
entry per byte; the batch path does the same with NumPy gathers over 16-bit
input words, a million tuples at a time.

    >>> from engine import Key
    >>> from engine.packet.toeplitz import hash_ipv4
    >>> key = Key.microsoft()
    >>> hex(hash_ipv4(key, "66.9.149.187", "161.142.100.80", 2794, 1766))
    '0x51ccc178'

Input order everywhere is source address, destination address, source port,
destination port, in network byte order (Microsoft's "Verifying the RSS Hash
Calculation").
"""

from __future__ import annotations

import functools
import ipaddress
import random
import struct
from dataclasses import dataclass

import numpy as np

from engine.errors import HashKeyError, TupleError

#: Microsoft's default RSS key (also Intel's): the reference for every verification vector.
MICROSOFT_KEY_HEX = (
    "6d5a56da255b0ec24167253d43a38fb0d0ca2bcbae7b30b477cb2da38030f20c6a42b73bbeac01fa"
)
#: 0x6d5a repeated: the hash depends only on the XOR of the input's 16-bit words,
#: so swapping source and destination leaves it unchanged (Woo and Park, "Scalable
#: TCP session monitoring with symmetric receive-side scaling", 2012).
SYMMETRIC_KEY_HEX = "6d5a" * 20
KEY_BYTES = 40
MAX_INPUT_BYTES = 36
#: The shortest key ``parse_key`` takes: 16 bytes hash every IPv4 input (its 4-tuple is
#: 12 bytes, and a 32-bit window must fit after the last input bit). The patent: "the
#: size may be 40 bytes for IPv6 and 16 bytes for IPv4" (seed L404); the NIC refuses a
#: key shorter than 40 bytes when IPv6 hash types are on (``engine.nic.rss.Nic``).
MIN_KEY_BYTES = 16


@dataclass(frozen=True, slots=True)
class Key:
    """A Toeplitz secret key: ``data`` is the raw bytes, most significant bit first."""

    data: bytes
    name: str = "custom"

    def __post_init__(self):
        if not isinstance(self.data, bytes):
            raise HashKeyError("key", "the key's bytes", type(self.data).__name__)
        if len(self.data) < 8:
            raise HashKeyError("key", "at least 8 bytes (40 for every RSS input)",
                               self.data.hex())

    @classmethod
    def microsoft(cls) -> Key:
        return cls(bytes.fromhex(MICROSOFT_KEY_HEX), "microsoft")

    @classmethod
    def symmetric(cls) -> Key:
        return cls(bytes.fromhex(SYMMETRIC_KEY_HEX), "symmetric")

    @classmethod
    def random(cls, seed: int, length: int = KEY_BYTES) -> Key:
        """A reproducible random key of ``length`` bytes from ``seed``."""
        rng = random.Random(seed)
        return cls(bytes(rng.getrandbits(8) for _ in range(length)), f"random:{seed}")

    @property
    def hex(self) -> str:
        return self.data.hex()

    @property
    def max_input_bytes(self) -> int:
        """The longest input this key can hash (a 32-bit window must fit after the last bit)."""
        return len(self.data) - 4

    def window(self, bit: int) -> int:
        """The 32-bit key window that starts at key bit ``bit`` (0 = MSB of byte 0)."""
        return _windows(self.data)[bit]

    def __str__(self) -> str:
        return self.name if self.name != "custom" else self.hex


def parse_key(text: str | Key | None) -> Key:
    """``microsoft``, ``symmetric``, ``random:SEED`` or hex (16 bytes or more, 40 for IPv6
    hash types; ``:`` and spaces allowed); ``None`` or ``""`` means Microsoft's key.

    Raises HashKeyError naming what was wrong.
    """
    if isinstance(text, Key):
        return text
    if text is not None and not isinstance(text, str):
        raise HashKeyError("key", "microsoft, symmetric, random:SEED or hex", text)
    if text is None or text.strip() == "" or text.strip().lower() == "microsoft":
        return Key.microsoft()
    word = text.strip().lower()
    if word == "symmetric":
        return Key.symmetric()
    if word.startswith("random:"):
        try:
            return Key.random(int(word[len("random:"):]))
        except ValueError:
            raise HashKeyError("key", "random:<integer seed>", text) from None
    digits = word.removeprefix("0x").replace(":", "").replace(" ", "")
    if len(digits) % 2:
        raise HashKeyError("key", "an even number of hex digits", text,
                           detail=f"it has {len(digits)}", code="key_hex")
    try:
        data = bytes.fromhex(digits)
    except ValueError:
        raise HashKeyError("key", "hex digits 0-9a-f, or microsoft / symmetric / random:SEED",
                           text) from None
    if len(data) < MIN_KEY_BYTES:
        raise HashKeyError("key", f"at least {MIN_KEY_BYTES} bytes ({2 * MIN_KEY_BYTES} hex "
                           f"digits) for IPv4, {KEY_BYTES} for IPv6", text,
                           detail=f"it has {len(data)} bytes", code="key_hex")
    return Key(data)


@functools.lru_cache(maxsize=64)
def _windows(key: bytes) -> tuple[int, ...]:
    """Every 32-bit window of the key, indexed by its first bit."""
    as_int = int.from_bytes(key, "big")
    total = len(key) * 8
    return tuple((as_int >> (total - 32 - bit)) & 0xFFFFFFFF for bit in range(total - 31))


@functools.lru_cache(maxsize=64)
def byte_tables(key: bytes) -> tuple[tuple[int, ...], ...]:
    """``tables[i][v]``: the hash of an input whose only non-zero byte is ``v`` at position i."""
    windows = _windows(key)
    tables = []
    for position in range(len(key) - 4):
        row = [0] * 256
        for bit in range(8):
            window = windows[position * 8 + bit]
            mask = 0x80 >> bit
            for value in range(256):
                if value & mask:
                    row[value] ^= window
        tables.append(tuple(row))
    return tuple(tables)


@functools.lru_cache(maxsize=16)
def word_tables(key: bytes) -> np.ndarray:
    """``tables[w][v]`` (uint32): the hash contribution of 16-bit word ``v`` at word index w.

    18 words cover 36 input bytes; 256 KiB a word, so the batch gathers stay in cache.
    """
    by_byte = np.array(byte_tables(key), dtype=np.uint32)
    words = by_byte.shape[0] // 2
    high = by_byte[0:2 * words:2, :, None]
    low = by_byte[1:2 * words:2, None, :]
    return (high ^ low).reshape(words, 65536)


def toeplitz_hash(key: Key, data: bytes) -> int:
    """The 32-bit Toeplitz hash of ``data`` (bytes in network order) under ``key``.

    Raises HashKeyError when the key is too short for the input.
    """
    if len(data) > key.max_input_bytes:
        raise HashKeyError("key", f"at least {len(data) + 4} bytes to hash {len(data)} bytes",
                           key.hex, detail=f"it has {len(key.data)}")
    tables = byte_tables(key.data)
    result = 0
    for table, value in zip(tables, data, strict=False):
        result ^= table[value]
    return result


def toeplitz_hash_batch(key: Key, data: np.ndarray) -> np.ndarray:
    """Hashes of every row of ``data``: an (N, L) uint8 array, L even, network order.

    Returns an (N,) uint32 array. Raises HashKeyError when the key is too short.
    """
    rows, length = data.shape
    if length > key.max_input_bytes:
        raise HashKeyError("key", f"at least {length + 4} bytes to hash {length} bytes",
                           key.hex, detail=f"it has {len(key.data)}")
    words = data.astype(np.uint16)
    words = (words[:, 0::2] << 8) | words[:, 1::2]
    return hash_words(key, [words[:, i] for i in range(words.shape[1])])


def hash_words(key: Key, words: list[np.ndarray], first_word: int = 0) -> np.ndarray:
    """XOR of the word-table entries of each column: the core of every batch path.

    ``words[j]`` holds the 16-bit input word at index ``first_word + j`` of every row.
    """
    tables = word_tables(key.data)
    # np.take with a reused output buffer is several times faster than fancy indexing.
    result = np.take(tables[first_word], words[0])
    scratch = np.empty_like(result)
    for offset, column in enumerate(words[1:], start=first_word + 1):
        np.take(tables[offset], column, out=scratch)
        result ^= scratch
    return result


def hash_ipv4_batch(key: Key, src: np.ndarray, dst: np.ndarray,
                    sport: np.ndarray | None = None, dport: np.ndarray | None = None
                    ) -> np.ndarray:
    """Hashes of IPv4 tuples given as arrays: addresses as uint32 (host integer value),
    ports as uint16 or wider; without ports, the 2-tuple (8-byte) hash."""
    src = np.asarray(src, dtype=np.uint32)
    dst = np.asarray(dst, dtype=np.uint32)
    columns = [src >> 16, src & 0xFFFF, dst >> 16, dst & 0xFFFF]
    if sport is not None and dport is not None:
        columns += [np.asarray(sport, dtype=np.uint32), np.asarray(dport, dtype=np.uint32)]
    return hash_words(key, columns)


def hash_input(src: str | ipaddress._BaseAddress, dst: str | ipaddress._BaseAddress,
               sport: int | None = None, dport: int | None = None) -> bytes:
    """The RSS hash input: source address, destination address[, source port, destination
    port], network byte order. Ports are used only when both are given.

    Raises TupleError for a malformed address, mixed families or a port outside 0–65535.
    """
    source = parse_address(src, "src")
    destination = parse_address(dst, "dst")
    if source.version != destination.version:
        raise TupleError("dst", f"an IPv{source.version} address like src", str(destination))
    data = source.packed + destination.packed
    if sport is not None and dport is not None:
        data += struct.pack("!HH", check_port(sport, "sport"), check_port(dport, "dport"))
    return data


def hash_ipv4(key: Key, src, dst, sport: int | None = None, dport: int | None = None) -> int:
    """Convenience: the hash of one tuple given as text or address objects (either family)."""
    return toeplitz_hash(key, hash_input(src, dst, sport, dport))


def parse_address(value, field: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """An IPv4 or IPv6 address from text, an int or an address; TupleError otherwise."""
    if isinstance(value, ipaddress.IPv4Address | ipaddress.IPv6Address):
        return value
    try:
        return ipaddress.ip_address(value.strip() if isinstance(value, str) else value)
    except ValueError:
        raise TupleError(field, "an IPv4 or IPv6 address", value) from None


def check_port(value, field: str) -> int:
    """``value`` as a port number; TupleError unless it is an integer in 0–65535."""
    try:
        port = int(value)
    except (TypeError, ValueError, OverflowError):  # OverflowError: int(float("inf"))
        raise TupleError(field, "a port number 0-65535", value) from None
    if isinstance(value, bool) or not 0 <= port <= 65535 or (
            isinstance(value, float) and value != port):
        raise TupleError(field, "a port number 0-65535", value)
    return port


@dataclass(frozen=True, slots=True)
class HashStep:
    """One set input bit in the bit-by-bit view: which key window it adds to the result."""

    bit: int
    window: int
    running: int


def explain_hash(key: Key, data: bytes) -> list[HashStep]:
    """The hash worked out bit by bit: for each set input bit, its key window and the
    running XOR. The last step's ``running`` is the hash (0 when no bit is set)."""
    steps = []
    running = 0
    for bit in range(len(data) * 8):
        if data[bit // 8] & (0x80 >> (bit % 8)):
            window = key.window(bit)
            running ^= window
            steps.append(HashStep(bit, window, running))
    return steps
