"""``python -m engine examples``: list the example scenarios (``--show NAME`` prints one).

Run one with ``python -m engine verify engine/examples/NAME.yaml``.
"""

from __future__ import annotations

import json

from engine.examples import list_examples, load_example


def add_parser(subparsers):
    parser = subparsers.add_parser("examples", help="list the example scenarios",
                                   description=__doc__.split("\n")[0])
    parser.add_argument("--show", metavar="NAME", help="print that example's file")
    parser.add_argument("--json", action="store_true", help="a JSON list instead of a table")
    return parser


def run(args) -> int:
    if args.show:
        load_example(args.show)  # ScenarioError names the known examples
        path = next(info.path for info in list_examples() if info.name == args.show)
        print(path.read_text(encoding="utf-8"), end="")
        return 0
    infos = list_examples()
    if args.json:
        print(json.dumps([{"name": i.name, "title": i.title, "path": str(i.path)}
                          for i in infos], indent=2))
        return 0
    width = max(len(info.name) for info in infos)
    for info in infos:
        print(f"{info.name:<{width}}  {info.title}")
    return 0
