"""Hostile input at the command line: every case ends in one line and exit 0/1/2, never a
crash, a traceback or unbounded memory.

Cases that could kill the interpreter (deep nesting reaching libyaml's recursive C
composer) run ``python -m engine`` in a subprocess, so a regression fails a test instead
of killing pytest. The rest run in-process through the CLI's entry function, ``main``.

The fuzz tests draw mutated scenario documents and captures with hypothesis. Their size
is ``RSSLAB_FUZZ_EXAMPLES`` (default 60 each); ``RSSLAB_FUZZ_EXAMPLES=100000 pytest -m fuzz
-s tests/engine/test_hostile_input.py`` is the long run, printing each outcome's count
and the cases per second.
"""

from __future__ import annotations

import collections
import contextlib
import copy
import io
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.__main__ import main

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "engine" / "examples"
PCAPS = REPO / "tests" / "data" / "pcaps"
FUZZ_EXAMPLES = int(os.environ.get("RSSLAB_FUZZ_EXAMPLES", "60"))

BASE = {
    "schema_version": 1, "name": "fuzz", "seed": 3,
    "system": {"cores": 4, "ips_per_core": 1, "nic": {"key": "microsoft", "hash_bits": 7}},
    "services": [{"name": "web", "vip": "192.0.2.10", "vport": 80, "policy": "nat",
                  "servers": ["10.0.0.1:8080"]}],
    "traffic": {"generated": {"count": 20, "client_prefixes": ["198.51.100.0/24"]}},
    "checks": {"symmetric_rate": ">= 100%"},
}


def cli(*args: str, stdin=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "engine", *args], capture_output=True,
                          text=True, cwd=REPO, timeout=120, stdin=stdin)


def run_main(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = main(list(args))
    return status, out.getvalue(), err.getvalue()


# ---------------------------------------------------------------- item 1: deep nesting

DEPTH = 100_000
DEEP_DOCUMENTS = {
    "flow sequences": "a: " + "[" * DEPTH + "]" * DEPTH + "\n",
    "flow mappings": "a: " + "{b: " * DEPTH + "1" + "}" * DEPTH + "\n",
    "block sequences": "- " * DEPTH + "x\n",
    "JSON arrays": '{"a": ' + "[" * DEPTH + "]" * DEPTH + "}",
    "JSON objects": '{"a":' * DEPTH + "1" + "}" * DEPTH,
}


@pytest.mark.parametrize("kind", DEEP_DOCUMENTS)
def test_deep_nesting_is_refused_before_the_parser_recurses(tmp_path, kind):
    path = tmp_path / "deep.yaml"
    path.write_text(DEEP_DOCUMENTS[kind])
    result = cli("verify", str(path))
    assert result.returncode == 2, (result.returncode, result.stderr[-500:])
    assert "expected nesting at most 32 deep" in result.stderr
    assert "Traceback" not in result.stderr


def test_deep_block_mappings_are_refused(tmp_path):
    text = "".join(" " * depth + f"k{depth}:\n" for depth in range(200)) + " " * 200 + "x\n"
    path = tmp_path / "deep.yaml"
    path.write_text(text)
    status, _, err = run_main("verify", str(path))
    assert status == 2 and "expected nesting at most 32 deep" in err


def test_brackets_in_quoted_strings_and_comments_are_not_nesting(tmp_path):
    brackets = "[" * 2000 + "{" * 2000
    document = dict(BASE, description=brackets + "}" * 10 + "]" * 10)
    text = f"# {brackets}\n" + yaml.safe_dump(document, width=10**6)
    (tmp_path / "quoted.yaml").write_text(text)
    (tmp_path / "quoted.json").write_text(json.dumps(document))
    for name in ("quoted.yaml", "quoted.json"):
        status, out, err = run_main("verify", str(tmp_path / name))
        assert status == 0, err
        assert "PASS" in out


# ------------------------------------------------------------ item 2: the found cases

def _write(tmp_path, text: str, name: str = "s.yaml") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def _base_yaml(**changes) -> str:
    document = json.loads(json.dumps(BASE))
    for dotted, value in changes.items():
        where = document
        *parents, last = dotted.split(".")
        for part in parents:
            where = where[int(part)] if isinstance(where, list) else where[part]
        where[last] = value
    return yaml.safe_dump(document, sort_keys=False)


@pytest.mark.parametrize(("field", "line_text"), [("seed", "seed: "), ("cores", "  cores: ")])
def test_integers_past_pythons_digit_limit_are_a_located_error(tmp_path, field, line_text):
    text = _base_yaml().replace(f"{line_text}{3 if field == 'seed' else 4}\n",
                                f"{line_text}{'9' * 5000}\n")
    status, _, err = run_main("verify", _write(tmp_path, text))
    assert status == 2, err
    assert "expected an integer of at most 1000 digits (got 5000 digits)" in err
    assert len(err) < 400 and "Traceback" not in err


def test_a_check_value_past_the_largest_float_is_refused(tmp_path):
    text = _base_yaml() + f"  handed_off: {'9' * 400}\n"
    status, _, err = run_main("verify", _write(tmp_path, text))
    assert status == 2 and "checks.handed_off: expected a finite number" in err
    assert len(err) < 400


def test_yaml_11_sexagesimal_is_text_not_sixty(tmp_path):
    text = _base_yaml().replace("  cores: 4\n", "  cores: 1:00\n")
    status, _, err = run_main("verify", _write(tmp_path, text))
    assert status == 2 and "system.cores: expected an integer, got '1:00'" in err


def test_leading_zero_is_decimal_not_octal(tmp_path):
    text = _base_yaml().replace("  cores: 4\n", "  cores: 010\n")
    status, out, err = run_main("verify", _write(tmp_path, text), "--json")
    assert status == 0, err
    assert json.loads(out)["system"]["cores"] == 10


@pytest.mark.parametrize("changes", [
    {"services": [BASE["services"][0],
                  {"name": "v6", "vip": "2001:db8::10", "vport": 80, "policy": "transparent",
                   "servers": ["[2001:db8::1]:8080"]}]},
    {"services": [{"name": "v6", "vip": "2001:db8::10", "vport": 80, "policy": "transparent",
                   "servers": ["[2001:db8::1]:8080", "10.0.0.1:80"]}]},
    {"services": [{"name": "v6", "vip": "2001:db8::10", "vport": 80, "policy": "transparent",
                   "servers": ["[2001:db8::1]:8080"]}],
     "traffic": {"generated": {"count": 5, "client_prefixes": ["198.51.100.0/24"],
                               "servers": ["[2001:db8::1]:8080"]}}},
])
def test_mixed_families_are_bad_input_not_a_traceback(tmp_path, changes):
    status, _, err = run_main("verify", _write(tmp_path, _base_yaml(**changes)))
    assert status == 2, err
    assert "Traceback" not in err and "expected" in err


@pytest.mark.parametrize("device", ["/dev/zero", "/dev/urandom"])
def test_a_device_as_scenario_reads_at_most_the_limit(device):
    result = cli("verify", device)
    assert result.returncode == 2
    assert "expected at most 1048576 bytes, got more than 1,048,576 bytes" in result.stderr


def test_a_device_as_hash_batch_csv_reads_one_bounded_line():
    result = cli("hash", "--batch", "/dev/zero")
    assert result.returncode == 2
    assert result.stderr == ("error: --batch: expected lines of at most 4,096 characters "
                             "(line 1 is longer)\n")


def test_a_device_as_capture_reads_at_most_the_limit():
    result = cli("verify", str(EXAMPLES / "pcap-replay.yaml"), "--pcap", "/dev/zero")
    assert result.returncode == 2
    assert "pcap: expected at most 20971520 bytes" in result.stderr


def test_a_full_disk_on_stdout_is_exit_3_in_one_line():
    with open("/dev/full", "w") as full:
        result = subprocess.run([sys.executable, "-m", "engine", "verify",
                                 str(EXAMPLES / "nat-microsoft.yaml")], stdout=full,
                                stderr=subprocess.PIPE, text=True, cwd=REPO, timeout=120)
    assert result.returncode == 3
    assert result.stderr == "error: could not write the output: No space left on device\n"


def test_a_report_that_cannot_be_written_is_exit_3(tmp_path):
    (tmp_path / "report.html").mkdir()  # a folder where the file should go: checked first
    status, _, err = run_main("verify", str(EXAMPLES / "nat-microsoft.yaml"),
                              "--html", "/dev/full")
    assert status == 3 and err.strip().endswith("(No space left on device)")


def test_a_huge_input_is_not_echoed_in_full():
    big = "9" * 5000
    for args in (["hash", "--src", big, "--dst", "1.2.3.4"],
                 ["hash", "--src", "1.1.1.1", "--dst", "1.2.3.4", "--cores", big],
                 ["verify", str(EXAMPLES / "nat-microsoft.yaml"), "--export-limit", big]):
        result = cli(*args)
        assert result.returncode == 2
        assert len(result.stderr) < 1200, result.stderr[:300]
        assert "characters)" in result.stderr


def test_pcap_for_a_scenario_without_pcap_traffic_is_refused():
    status, _, err = run_main("verify", str(EXAMPLES / "nat-microsoft.yaml"), "--pcap",
                              str(PCAPS / "fs__simple_http.pcap"))
    assert status == 2
    assert err.startswith("error: --pcap: expected a scenario with a pcap traffic source")


@pytest.mark.parametrize("mode", [[], ["--trace"]])
def test_an_ipv6_capture_under_nat_runs_with_its_flow_not_served(mode):
    """Not bad input: the capture runs on either path, its IPv6 flow refused with the
    reason (nat has no IPv6 address), so the example's checks fail (exit 1)."""
    capture = PCAPS / "sv__defrag__bug-6887-defrag-ipv6-tcp__frag-ip-tcp.pcap"
    status, out, err = run_main("verify", str(EXAMPLES / "pcap-replay.yaml"), *mode, "--pcap",
                                str(capture))
    assert status == 1, err
    assert "not served: IPv6 flow, nat service has no IPv6 address" in out


def test_an_internal_error_is_one_line_and_exit_3(monkeypatch):
    import engine.commands.hash as hash_command

    def broken(args):
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(hash_command, "run", broken)
    status, _, err = run_main("hash", "--src", "1.1.1.1", "--dst", "2.2.2.2")
    assert status == 3
    assert err.startswith("internal error: ZeroDivisionError: a bug") and err.count("\n") == 1


# ------------------------------------------------------------------------ fuzzing

HOSTILE_VALUES = st.one_of(
    st.integers(min_value=-(10**30), max_value=10**30),
    st.sampled_from([0, -1, 65536, 2**32, 2**64, 10**400, "9" * 4400, 1e308, "1:00", "010",
                     "0x1f", "inf", ".nan", "", " ", None, True, [], {}, "2001:db8::1",
                     "[2001:db8::1]:80", "::", "10.0.0.1:99999", "0.0.0.0/0", "::/0",
                     "\ud7ff" * 3, "x" * 5000, "[[[[", "&a", "*a", "{a: 1}",
                     [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]),
    st.text(max_size=30),
    st.floats(allow_nan=True, allow_infinity=True),
)


def _paths(value, prefix=()):
    yield prefix
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _paths(item, prefix + (key,))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _paths(item, prefix + (index,))


@st.composite
def mutated_documents(draw):
    document = json.loads(json.dumps(BASE))
    document["services"].append(draw(st.sampled_from([
        {"name": "v6", "vip": "2001:db8::10", "vport": 80, "policy": "transparent",
         "servers": ["[2001:db8::1]:8080"]},
        {"name": "udp", "vip": "192.0.2.11", "vport": 53, "proto": "udp", "policy": "usip",
         "servers": ["10.0.0.2:53"]},
        {"name": "t", "vip": "192.0.2.12", "vport": 443, "policy": "transparent",
         "servers": ["10.0.0.3:443"]}])))
    for _ in range(draw(st.integers(0, 4))):
        paths = list(_paths(document))[1:]
        path = draw(st.sampled_from(paths))
        parent = document
        for part in path[:-1]:
            parent = parent[part]
        action = draw(st.sampled_from(["replace", "replace", "delete", "add"]))
        if action == "delete":
            del parent[path[-1]]
        elif action == "add" and isinstance(parent, dict):
            parent[draw(st.sampled_from(["flows", "pcap", "mtu", "extra", "count"]))] = \
                copy.deepcopy(draw(HOSTILE_VALUES))
        else:
            parent[path[-1]] = copy.deepcopy(draw(HOSTILE_VALUES))
    as_json = draw(st.booleans())
    try:
        text = json.dumps(document) if as_json else yaml.safe_dump(document, width=10**6)
    except (ValueError, yaml.YAMLError):
        text = repr(document)
    cut = draw(st.integers(0, 3))
    if cut == 1:  # a truncated file
        text = text[:draw(st.integers(0, len(text)))]
    elif cut == 2:  # text-level noise
        at = draw(st.integers(0, len(text)))
        text = text[:at] + draw(st.sampled_from(["[", "]", "{", ":", "\t", "- ", "&x *x",
                                                 "'", '"', "\x00", "\n  ", "!!python/x"]))
        text += text[at:]
    return text


OUTCOMES: collections.Counter = collections.Counter()


def _check_outcome(status: int, err: str) -> None:
    OUTCOMES[status] += 1
    assert status in (0, 1, 2), f"exit {status}: {err[-600:]}"
    assert "Traceback" not in err
    if status == 2:
        assert err.startswith("error: "), err[:300]


@pytest.fixture(scope="module")
def fuzz_dir(tmp_path_factory):
    started = time.perf_counter()
    OUTCOMES.clear()
    yield tmp_path_factory.mktemp("fuzz")
    total = sum(OUTCOMES.values())
    elapsed = time.perf_counter() - started
    if total:
        print(f"\nfuzz: {total} cases in {elapsed:.1f} s ({total / elapsed:.0f}/s); "
              f"exit statuses {dict(sorted(OUTCOMES.items()))}")


@pytest.mark.fuzz
@settings(max_examples=FUZZ_EXAMPLES, deadline=None, derandomize=FUZZ_EXAMPLES <= 60,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                 HealthCheck.data_too_large])
@given(text=mutated_documents(), trace=st.booleans())
def test_fuzzed_scenarios_end_in_one_clean_status(fuzz_dir, text, trace):
    path = fuzz_dir / "scenario.yaml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    status, _, err = run_main("verify", str(path), *(["--trace"] if trace else []))
    _check_outcome(status, err)


CAPTURES = sorted(PCAPS.glob("*.pcap*"))


@pytest.mark.fuzz
@settings(max_examples=FUZZ_EXAMPLES, deadline=None, derandomize=FUZZ_EXAMPLES <= 60,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(capture=st.sampled_from(CAPTURES), seed=st.integers(0, 2**32),
       edits=st.integers(1, 40), trace=st.booleans())
def test_fuzzed_captures_end_in_one_clean_status(fuzz_dir, capture, seed, edits, trace):
    data = bytearray(capture.read_bytes())
    rng = random.Random(seed)
    for _ in range(edits):
        kind = rng.randrange(4)
        at = rng.randrange(len(data) + 1)
        if kind == 0 and data:
            data[min(at, len(data) - 1)] = rng.randrange(256)
        elif kind == 1:
            del data[at:at + rng.randrange(1, 64)]
        elif kind == 2:
            data[at:at] = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 16)))
        else:
            data = data[:at]
    path = fuzz_dir / "capture.pcap"
    path.write_bytes(bytes(data))
    scenario = "pcap-replay.yaml" if rng.random() < 0.5 else "transparent-pcap.yaml"
    if scenario == "transparent-pcap.yaml":
        text = (EXAMPLES / "pcap-replay.yaml").read_text().replace("policy: nat",
                                                                  "policy: transparent")
        (fuzz_dir / scenario).write_text(text.replace("path: replay.pcap", "path: x.pcap"))
        scenario_path = fuzz_dir / scenario
    else:
        scenario_path = EXAMPLES / scenario
    status, _, err = run_main("verify", str(scenario_path), "--pcap", str(path),
                              *(["--trace"] if trace else []))
    _check_outcome(status, err)
