"""``python -m engine schema``: print the JSON Schema of scenario files.

Point an editor at it (``# yaml-language-server: $schema=scenario.schema.json``) to get
completion and validation while writing a scenario.
"""

from __future__ import annotations

import json

from engine.scenarios.scenario import scenario_json_schema


def add_parser(subparsers):
    parser = subparsers.add_parser("schema", help="print the scenario file JSON Schema",
                                   description=__doc__.split("\n")[0])
    parser.add_argument("--compact", action="store_true", help="one line instead of indented")
    return parser


def run(args) -> int:
    schema = scenario_json_schema()
    print(json.dumps(schema, separators=(",", ":")) if args.compact
          else json.dumps(schema, indent=2))
    return 0
