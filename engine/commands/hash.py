"""``python -m engine hash``: the Toeplitz hash, bucket and core of one tuple or a CSV of them.

One tuple::

    python -m engine hash --src 66.9.149.187 --dst 161.142.100.80 --sport 2794 --dport 1766
    hash 0x51ccc178  bucket 120  core 0   (microsoft key, 4 cores, 7 hash bits)

A CSV (header ``src,dst,sport,dport`` and optional ``key,cores,hash_bits``; empty
ports hash the addresses only; an empty key is Microsoft's) prints one result per
row, in order. A bad row prints an error naming the row and the field; the other
rows still answer, and the exit status is 1 when any row failed.
"""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Iterator

from engine.errors import ConfigError, RssLabError, TableError, TupleError
from engine.nic.rss import IndirectionTable
from engine.packet.toeplitz import explain_hash, hash_input, parse_key, toeplitz_hash

#: A batch CSV larger than this is refused rather than read into memory.
MAX_BATCH_ROWS = 1_000_000
CSV_COLUMNS = ("src", "dst", "sport", "dport", "key", "cores", "hash_bits")


def add_parser(subparsers):
    parser = subparsers.add_parser("hash", help="Toeplitz hash, bucket and core of a tuple",
                                   description=__doc__.split("\n")[0])
    parser.add_argument("--src", help="source address (IPv4 or IPv6)")
    parser.add_argument("--dst", help="destination address")
    parser.add_argument("--sport", help="source port (omit both ports for the 2-tuple hash)")
    parser.add_argument("--dport", help="destination port")
    parser.add_argument("--key", default="microsoft",
                        help="microsoft, symmetric, random:SEED or 40+ bytes of hex")
    parser.add_argument("--cores", default="4", help="cores in the round-robin table (default 4)")
    parser.add_argument("--hash-bits", default="7", help="indirection-table bits 1-7 (default 7)")
    parser.add_argument("--batch", metavar="FILE.csv", help="hash every row of a CSV file")
    parser.add_argument("--explain", action="store_true", help="show the hash bit by bit")
    parser.add_argument("--json", action="store_true", help="print JSON")
    return parser


def hash_one(*, src, dst, sport=None, dport=None, key=None, cores="4", hash_bits="7") -> dict:
    """Hash one tuple given as text; the result as a JSON-ready dict.

    Raises TupleError, HashKeyError or TableError naming the bad field.
    """
    if not src:
        raise TupleError("src", "a source address")
    if not dst:
        raise TupleError("dst", "a destination address")
    if (sport in (None, "")) != (dport in (None, "")):
        missing = "dport" if dport in (None, "") else "sport"
        raise TupleError(missing, "both ports or neither (neither = address-only hash)")
    with_ports = sport not in (None, "")
    parsed_key = parse_key(key)
    table = IndirectionTable.round_robin(_whole(cores, "cores"), _whole(hash_bits, "hash_bits"))
    data = hash_input(src, dst, sport, dport) if with_ports else hash_input(src, dst)
    value = toeplitz_hash(parsed_key, data)
    return {
        "hash": f"0x{value:08x}", "bucket": table.bucket_of(value), "core": table.core_of(value),
        "input": data.hex(), "key": str(parsed_key), "cores": table.cores,
        "hash_bits": table.hash_bits, "with_ports": with_ports,
    }


def _whole(text, field: str) -> int:
    try:
        return int(text)
    except (TypeError, ValueError):
        raise TableError(field, "a whole number", text) from None


#: The longest CSV line read (bytes); a longer one (``/dev/zero`` has no line end) is
#: refused instead of growing memory without bound.
MAX_LINE_BYTES = 4096


def bounded_lines(stream) -> Iterator[str]:
    """The lines of ``stream``, each read with a limit: TupleError past MAX_LINE_BYTES."""
    number = 0
    while line := stream.readline(MAX_LINE_BYTES + 1):
        number += 1
        if len(line) > MAX_LINE_BYTES:
            raise TupleError("--batch", f"lines of at most {MAX_LINE_BYTES:,} characters",
                             detail=f"line {number} is longer")
        yield line


def hash_rows(lines) -> Iterator[dict]:
    """Hash every CSV row, one at a time; a row that fails becomes ``{"row": n, "error":
    {...}}``.

    Rows are numbered from 1 after the header by the file's lines, so blank lines
    (skipped) do not shift the numbers of the rows after them.
    """
    reader = csv.DictReader(lines)
    header = [name.strip() for name in reader.fieldnames or []]
    repeated = sorted({name for name in header if header.count(name) > 1})
    if repeated:
        raise TupleError("header", "each column once", ",".join(header),
                         detail=f"repeated {', '.join(repeated)}")
    missing = [name for name in ("src", "dst") if name not in header]
    if missing:
        raise TupleError("header", "CSV columns src,dst[,sport,dport,key,cores,hash_bits]",
                         ",".join(header), detail=f"missing {', '.join(missing)}")
    unknown = [name for name in header if name not in CSV_COLUMNS]
    if unknown:
        raise TupleError("header", f"only the columns {','.join(CSV_COLUMNS)}",
                         ",".join(unknown))
    for count, row in enumerate(reader, start=1):
        if count > MAX_BATCH_ROWS:
            raise TupleError("rows", f"at most {MAX_BATCH_ROWS:,} rows", count)
        number = reader.line_num - 1
        extra = row.pop(None, None)  # DictReader's place for cells beyond the header
        row = {k.strip(): (v or "").strip() for k, v in row.items()}
        try:
            if extra:
                raise TupleError("columns", f"at most {len(header)} cells (the header's)",
                                 len(header) + len(extra))
            result = hash_one(src=row.get("src"), dst=row.get("dst"), sport=row.get("sport"),
                              dport=row.get("dport"), key=row.get("key") or None,
                              cores=row.get("cores") or "4",
                              hash_bits=row.get("hash_bits") or "7")
        except RssLabError as error:
            error_dict = error.as_dict()
            error_dict["message"] = f"row {number}: {error}"
            yield {"row": number, "error": error_dict}
        else:
            yield {"row": number, **result}


def _print_row(result: dict, *, as_json: bool) -> None:
    if as_json:
        print(json.dumps(result))
    elif "error" in result:
        print(f"error: {result['error']['message']}", file=sys.stderr)
    else:
        print(f"row {result['row']}: hash {result['hash']}  bucket {result['bucket']}  "
              f"core {result['core']}")


def run(args) -> int:
    if args.batch:
        failed = False
        try:
            # utf-8-sig: spreadsheets save "CSV UTF-8" with a byte-order mark
            with open(args.batch, newline="", encoding="utf-8-sig") as stream:
                for result in hash_rows(bounded_lines(stream)):
                    failed = failed or "error" in result
                    _print_row(result, as_json=args.json)
        except (OSError, UnicodeDecodeError, csv.Error) as error:
            if isinstance(error, OSError) and error.filename != args.batch:
                raise  # writing stdout failed: not the CSV's fault (exit 3)
            raise ConfigError("--batch", "a readable CSV file in UTF-8", args.batch,
                              detail=str(error)) from None
        return 1 if failed else 0
    result = hash_one(src=args.src, dst=args.dst, sport=args.sport, dport=args.dport,
                      key=args.key, cores=args.cores, hash_bits=args.hash_bits)
    if args.explain:
        key = parse_key(args.key)
        result["steps"] = [{"bit": s.bit, "window": f"0x{s.window:08x}",
                            "running": f"0x{s.running:08x}"}
                           for s in explain_hash(key, bytes.fromhex(result["input"]))]
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"hash {result['hash']}  bucket {result['bucket']}  core {result['core']}   "
          f"({result['key']} key, {result['cores']} cores, {result['hash_bits']} hash bits)")
    if args.explain:
        print(f"input {result['input']}")
        for step in result["steps"]:
            print(f"  bit {step['bit']:3d}  window {step['window']}  running {step['running']}")
    return 0
