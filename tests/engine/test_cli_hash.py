"""``python -m engine hash`` and ``bench``, run as a user runs them (a subprocess)."""

import json
import subprocess
import sys

import pytest

from tests.conftest import DATA

VECTORS = json.loads((DATA / "ms_rss_vectors.json").read_text())["vectors"]


def engine_cli(*args, check=True):
    result = subprocess.run([sys.executable, "-m", "engine", *args], capture_output=True,
                            text=True, timeout=120)
    if check:
        assert result.returncode == 0, result.stderr
    return result


def test_hash_one_tuple_as_json():
    out = engine_cli("hash", "--src", "66.9.149.187", "--dst", "161.142.100.80",
                     "--sport", "2794", "--dport", "1766", "--json").stdout
    result = json.loads(out)
    assert (result["hash"], result["bucket"], result["core"]) == ("0x51ccc178", 120, 0)


def test_hash_text_and_options():
    out = engine_cli("hash", "--src", "66.9.149.187", "--dst", "161.142.100.80",
                     "--key", "symmetric", "--cores", "3", "--hash-bits", "2").stdout
    assert out.startswith("hash 0x") and "symmetric key, 3 cores, 2 hash bits" in out


def test_explain_shows_every_set_bit():
    result = json.loads(engine_cli("hash", "--src", "66.9.149.187", "--dst", "161.142.100.80",
                                   "--sport", "2794", "--dport", "1766", "--explain",
                                   "--json").stdout)
    assert result["steps"][-1]["running"] == "0x51ccc178"


@pytest.mark.parametrize(("args", "message"), [
    (["--src", "1.2.3", "--dst", "1.1.1.1"], "src: expected an IPv4 or IPv6 address"),
    (["--src", "1.2.3.4", "--dst", "1.1.1.1", "--sport", "1", "--dport", "99999"], "dport"),
    (["--src", "1.2.3.4", "--dst", "1.1.1.1", "--sport", "1"], "dport: expected both ports"),
    (["--src", "1.2.3.4", "--dst", "1.1.1.1", "--key", "abc"], "key: expected an even number"),
    (["--src", "1.2.3.4", "--dst", "1.1.1.1", "--hash-bits", "9"], "hash_bits: expected 1-7"),
    (["--src", "1.2.3.4", "--dst", "1.1.1.1", "--cores", "x"], "cores: expected a whole"),
])
def test_bad_input_is_one_clear_line(args, message):
    result = engine_cli("hash", *args, check=False)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_batch_csv_answers_every_row_in_order(tmp_path):
    rows = ["src,dst,sport,dport,key,cores,hash_bits"]
    for v in VECTORS:
        rows.append(f"{v['src']},{v['dst']},{v['sport']},{v['dport']},,,")
        rows.append(f"{v['src']},{v['dst']},,,microsoft,4,7")
    rows.append("10.0.0.1,10.0.0.2,1,70000,,,")
    rows.append("10.0.0.1,10.0.0.2,1,2,nothex,,")
    rows.append("10.0.0.1,10.0.0.2,1,2,,2,3")
    csv_file = tmp_path / "tuples.csv"
    csv_file.write_text("\n".join(rows) + "\n")
    result = engine_cli("hash", "--batch", str(csv_file), "--json", check=False)
    assert result.returncode == 1
    answers = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(answers) == 2 * len(VECTORS) + 3
    expected = [h for v in VECTORS for h in (v["hash_with_ports"], v["hash_addrs_only"])]
    assert [a["hash"] for a in answers[:-3]] == expected
    assert answers[-3]["error"]["field"] == "dport" and "row 17" in answers[-3]["error"]["message"]
    assert answers[-2]["error"]["field"] == "key"
    assert answers[-1]["core"] == answers[-1]["bucket"] % 2 and answers[-1]["bucket"] < 8


def test_batch_csv_that_does_not_exist(tmp_path):
    result = engine_cli("hash", "--batch", str(tmp_path / "none.csv"), check=False)
    assert result.returncode == 2 and "--batch: expected a readable CSV file" in result.stderr


def test_batch_csv_with_a_bad_header(tmp_path):
    csv_file = tmp_path / "bad.csv"
    csv_file.write_text("source,destination\n1.1.1.1,2.2.2.2\n")
    result = engine_cli("hash", "--batch", str(csv_file), "--json", check=False)
    assert result.returncode == 2 and "missing src, dst" in result.stderr


def test_bench_quick_prints_named_figures():
    figures = json.loads(engine_cli("bench", "--quick", "--json", "--only",
                                    "hash_batch_ipv4_per_s", "hash_scalar_ipv4_per_s").stdout)
    assert figures["hash_batch_ipv4_per_s"] > figures["hash_scalar_ipv4_per_s"] > 0
    assert figures["machine"]["quick"] is True
    assert "port_alloc_solve_over_scan" not in figures


def test_bench_reports_solve_over_scan_when_both_ran():
    figures = json.loads(engine_cli("bench", "--quick", "--json", "--only",
                                    "port_alloc_solve_per_s", "port_alloc_scan_per_s").stdout)
    ratio = figures["port_alloc_solve_per_s"] / figures["port_alloc_scan_per_s"]
    assert figures["port_alloc_solve_over_scan"] == pytest.approx(ratio, abs=0.1)


def test_bench_rejects_an_unknown_figure():
    result = engine_cli("bench", "--quick", "--only", "nope", check=False)
    assert result.returncode == 2 and "--only: expected one of" in result.stderr


def test_batch_csv_from_a_spreadsheet_with_bom_blank_lines_and_stray_cells(tmp_path):
    csv_file = tmp_path / "excel.csv"
    # "CSV UTF-8" from a spreadsheet: a byte-order mark; a blank line; a row with one
    # cell too many; then a bad address on file line 5 (row 4 after the header)
    csv_file.write_bytes(b"\xef\xbb\xbfsrc,dst\r\n1.2.3.4,5.6.7.8\r\n\r\n"
                         b"1.2.3.4,5.6.7.8,9\r\n1.2.3.999,5.6.7.8\r\n")
    result = engine_cli("hash", "--batch", str(csv_file), "--json", check=False)
    answers = [json.loads(line) for line in result.stdout.splitlines()]
    assert result.returncode == 1
    assert answers[0]["row"] == 1 and answers[0]["hash"].startswith("0x")
    assert answers[1]["row"] == 3 and answers[1]["error"]["field"] == "columns"
    assert answers[2]["row"] == 4 and answers[2]["error"]["field"] == "src"


def test_batch_csv_with_a_repeated_column_is_refused(tmp_path):
    csv_file = tmp_path / "twice.csv"
    csv_file.write_text("src,dst,src\n1.1.1.1,2.2.2.2,3.3.3.3\n")
    result = engine_cli("hash", "--batch", str(csv_file), check=False)
    assert result.returncode == 2 and "repeated src" in result.stderr


def test_cores_beyond_the_model_limit_are_refused():
    result = engine_cli("hash", "--src", "1.2.3.4", "--dst", "5.6.7.8", "--cores",
                        "1000000000", check=False)
    assert result.returncode == 2 and "cores: expected a whole number of cores, 1-64" in \
        result.stderr


def test_the_readmes_example_csv_answers_as_the_readme_shows():
    from engine.examples import EXAMPLES_DIR
    result = engine_cli("hash", "--batch", str(EXAMPLES_DIR / "tuples.csv"))
    lines = result.stdout.splitlines()
    assert lines[0] == "row 1: hash 0x51ccc178  bucket 120  core 0"
    assert len(lines) == 5 and all(line.startswith(f"row {i}: hash 0x")
                                   for i, line in enumerate(lines, start=1))
