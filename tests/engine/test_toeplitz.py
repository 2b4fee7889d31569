"""The Toeplitz hash: published vectors, scalar = batch, linearity, symmetry, bad keys."""

import ipaddress
import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine import HashKeyError, Key, TupleError, explain_hash, hash_input, parse_key
from engine.packet.toeplitz import hash_ipv4_batch, toeplitz_hash, toeplitz_hash_batch
from tests.conftest import DATA

VECTORS = json.loads((DATA / "ms_rss_vectors.json").read_text())["vectors"]
ipv4s = st.integers(0, 2**32 - 1)
ports = st.integers(0, 65535)
keys = st.binary(min_size=40, max_size=40).map(Key)


def test_reference_key_is_the_published_one():
    assert Key.microsoft().hex == json.loads((DATA / "ms_rss_vectors.json").read_text())["key_hex"]


@pytest.mark.parametrize("vector", VECTORS, ids=lambda v: f"{v['src']}>{v['dst']}")
def test_microsoft_vectors_scalar(vector):
    key = Key.microsoft()
    with_ports = hash_input(vector["src"], vector["dst"], vector["sport"], vector["dport"])
    addrs_only = hash_input(vector["src"], vector["dst"])
    assert f"0x{toeplitz_hash(key, with_ports):08x}" == vector["hash_with_ports"]
    assert f"0x{toeplitz_hash(key, addrs_only):08x}" == vector["hash_addrs_only"]


@pytest.mark.parametrize("with_ports", [True, False])
@pytest.mark.parametrize("family", ["ipv4", "ipv6"])
def test_microsoft_vectors_batch(family, with_ports):
    rows = [v for v in VECTORS if v["family"] == family]
    data = np.array([list(hash_input(v["src"], v["dst"], *(
        (v["sport"], v["dport"]) if with_ports else ()))) for v in rows], dtype=np.uint8)
    hashes = toeplitz_hash_batch(Key.microsoft(), data)
    field = "hash_with_ports" if with_ports else "hash_addrs_only"
    assert [f"0x{h:08x}" for h in hashes] == [v[field] for v in rows]


def test_microsoft_ipv4_vectors_through_the_uint32_batch_path():
    rows = [v for v in VECTORS if v["family"] == "ipv4"]
    src = np.array([int(ipaddress.IPv4Address(v["src"])) for v in rows], dtype=np.uint32)
    dst = np.array([int(ipaddress.IPv4Address(v["dst"])) for v in rows], dtype=np.uint32)
    sport = np.array([v["sport"] for v in rows])
    dport = np.array([v["dport"] for v in rows])
    key = Key.microsoft()
    assert [f"0x{h:08x}" for h in hash_ipv4_batch(key, src, dst, sport, dport)] == [
        v["hash_with_ports"] for v in rows]
    assert [f"0x{h:08x}" for h in hash_ipv4_batch(key, src, dst)] == [
        v["hash_addrs_only"] for v in rows]


@settings(max_examples=200, deadline=None)
@given(key=keys, rows=st.lists(st.tuples(ipv4s, ipv4s, ports, ports), min_size=1, max_size=50))
def test_scalar_equals_batch_ipv4(key, rows):
    src, dst, sport, dport = (np.array(column, dtype=np.uint64) for column in zip(*rows))
    batch = hash_ipv4_batch(key, src.astype(np.uint32), dst.astype(np.uint32), sport, dport)
    scalar = [toeplitz_hash(key, hash_input(s, d, p, q)) for s, d, p, q in rows]
    assert batch.tolist() == scalar


@settings(max_examples=100, deadline=None)
@given(key=keys, rows=st.lists(st.binary(min_size=36, max_size=36), min_size=1, max_size=20))
def test_scalar_equals_batch_on_ipv6_sized_inputs(key, rows):
    data = np.frombuffer(b"".join(rows), dtype=np.uint8).reshape(len(rows), 36)
    assert toeplitz_hash_batch(key, data).tolist() == [toeplitz_hash(key, r) for r in rows]


@settings(max_examples=200, deadline=None)
@given(key=keys, a=st.binary(min_size=12, max_size=12), b=st.binary(min_size=12, max_size=12))
def test_hash_is_linear_over_gf2(key, a, b):
    xored = bytes(x ^ y for x, y in zip(a, b, strict=True))
    assert toeplitz_hash(key, xored) == toeplitz_hash(key, a) ^ toeplitz_hash(key, b)


@settings(max_examples=200, deadline=None)
@given(src=ipv4s, dst=ipv4s, sport=ports, dport=ports)
def test_symmetric_key_hashes_a_swapped_tuple_the_same(src, dst, sport, dport):
    key = Key.symmetric()
    assert toeplitz_hash(key, hash_input(src, dst, sport, dport)) == toeplitz_hash(
        key, hash_input(dst, src, dport, sport))


def test_microsoft_key_is_not_symmetric():
    key = Key.microsoft()
    rng = np.random.default_rng(7)
    differ = 0
    for src, dst, sport, dport in zip(rng.integers(0, 2**32, 200), rng.integers(0, 2**32, 200),
                                      rng.integers(0, 2**16, 200), rng.integers(0, 2**16, 200),
                                      strict=True):
        forward = toeplitz_hash(key, hash_input(int(src), int(dst), int(sport), int(dport)))
        reverse = toeplitz_hash(key, hash_input(int(dst), int(src), int(dport), int(sport)))
        differ += forward != reverse
    assert differ >= 195


def test_explain_hash_ends_in_the_hash():
    key = Key.microsoft()
    data = hash_input("66.9.149.187", "161.142.100.80", 2794, 1766)
    steps = explain_hash(key, data)
    assert steps[-1].running == 0x51CCC178
    assert len(steps) == sum(bin(byte).count("1") for byte in data)
    assert steps[0].window == key.window(steps[0].bit)


def test_random_keys_are_reproducible():
    assert Key.random(5) == Key.random(5)
    assert Key.random(5) != Key.random(6)
    assert len(Key.random(5).data) == 40


@pytest.mark.parametrize(("text", "expected"), [
    ("6d5a", "at least 16 bytes"),
    ("6d" * 15, "at least 16 bytes .* for IPv4, 40 for IPv6"),
    ("6d5", "even number of hex digits"),
    ("zz" * 40, "hex digits"),
    ("random:x", "random:<integer seed>"),
    (5, "microsoft, symmetric, random:SEED or hex"),  # not text at all
])
def test_bad_keys_name_the_problem(text, expected):
    with pytest.raises(HashKeyError, match=expected) as raised:
        parse_key(text)
    assert raised.value.field == "key"


def test_key_names_and_hex_forms_parse():
    assert parse_key(None) == Key.microsoft()
    assert parse_key("SYMMETRIC") == Key.symmetric()
    assert parse_key("0x" + Key.microsoft().hex).data == Key.microsoft().data
    spaced = ":".join(Key.microsoft().hex[i:i + 2] for i in range(0, 80, 2))
    assert parse_key(spaced).data == Key.microsoft().data


@pytest.mark.parametrize("vector", [v for v in VECTORS if v["family"] == "ipv4"],
                         ids=lambda v: f"{v['src']}>{v['dst']}")
def test_a_16_byte_key_hashes_ipv4_as_the_40_byte_key_does(vector):
    """The patent's 16-byte IPv4 key (seed L404): Microsoft's published IPv4 vectors with
    the first 16 bytes of its key, both hash types."""
    key = parse_key(Key.microsoft().hex[:32])
    with_ports = hash_input(vector["src"], vector["dst"], vector["sport"], vector["dport"])
    assert f"0x{toeplitz_hash(key, with_ports):08x}" == vector["hash_with_ports"]
    assert (f"0x{toeplitz_hash(key, hash_input(vector['src'], vector['dst'])):08x}"
            == vector["hash_addrs_only"])


def test_a_16_byte_key_is_refused_while_ipv6_hash_types_are_on():
    from engine.nic.rss import HashType, IndirectionTable, Nic
    key = parse_key(Key.microsoft().hex[:32])
    table = IndirectionTable.round_robin(4, 7)
    ipv4_only = frozenset({HashType.IPV4, HashType.TCP_IPV4, HashType.UDP_IPV4})
    assert Nic(key=key, table=table, hash_types=ipv4_only).cores == 4
    with pytest.raises(HashKeyError) as raised:
        Nic(key=key, table=table)
    assert raised.value.field == "key" and raised.value.code == "key_too_short"
    assert "IPv6 hash types are on" in str(raised.value)


def test_a_key_too_short_for_the_input_is_refused():
    short = Key(bytes(16))
    with pytest.raises(HashKeyError, match="at least 40 bytes to hash 36"):
        toeplitz_hash(short, bytes(36))


@pytest.mark.parametrize(("args", "field"), [
    (("1.2.3", "1.1.1.1"), "src"),
    (("1.2.3.4", "::1"), "dst"),
    (("1.2.3.4", "1.1.1.1", 70000, 1), "sport"),
    (("1.2.3.4", "1.1.1.1", 1, -1), "dport"),
    (("1.2.3.4", "1.1.1.1", "http", 1), "sport"),
    (("1.2.3.4", "1.1.1.1", float("inf"), 1), "sport"),
])
def test_bad_tuples_name_the_field(args, field):
    with pytest.raises(TupleError) as raised:
        hash_input(*args)
    assert raised.value.field == field
