"""The lab page's form ("builder fields") → scenario YAML, and engine problems → form fields.

The page sends one JSON object; :func:`scenario_yaml_from_builder` turns it into the
scenario text the engine reads (and that the run stores), so a student can switch to the
YAML tab and see exactly what ran::

    >>> text = scenario_yaml_from_builder(PRESETS["nat"])
    >>> "policy: nat" in text and "66.9.149.187:2794" in text
    True

Fields (all optional; the defaults are :data:`DEFAULTS`): ``cores``, ``ips_per_core``,
``key`` (``microsoft`` | ``symmetric`` | ``random:SEED`` | hex), ``hash_bits``, ``table``
(``round-robin`` or a list of cores, one per bucket), ``transform``, ``fragments``,
``policy``, ``strategy``, ``tables_per_ip``, ``wrong_direction``, ``handoff``,
``service`` ({``name``, ``vip``, ``vport``, ``proto``, ``servers``, ``mtu``,
``response_bytes``, ``assemble_flag``}) and ``traffic``, one of ``{"kind": "flows",
"flows": [...]}``, ``{"kind": "generated", "count", "client_prefixes", "zipf", "seed"}``
or ``{"kind": "pcap"}`` (the capture is uploaded with the run).

Values are not checked here beyond their shape: the engine's scenario loader checks them
(with its limits) and :func:`builder_field_of` maps each problem's key path back to the
form field it came from (``system.cores`` → ``cores``, ``services[0].vip`` →
``service.vip``, ``traffic.flows[1].client`` → ``traffic.flows[1].client``).
"""

from __future__ import annotations

import copy
import re
from typing import Any

import yaml

from labsite.lab.errors import LabInputError

SERVICE_NAME = "web"

#: The builder's defaults: one nat service, the first of Microsoft's verification tuples.
DEFAULTS: dict[str, Any] = {
    "name": "lab",
    "cores": 4,
    "ips_per_core": 1,
    "key": "microsoft",
    "hash_bits": 7,
    "table": "round-robin",
    "transform": "none",
    "fragments": "reassemble-header",
    "policy": "nat",
    "strategy": "solve",
    "tables_per_ip": 1,
    "wrong_direction": False,
    "handoff": "message",
    "service": {"name": SERVICE_NAME, "vip": "161.142.100.80", "vport": 1766, "proto": "tcp",
                "servers": ["10.0.0.1:8080"], "mtu": None, "response_bytes": 1000,
                "assemble_flag": False},
    "traffic": {"kind": "flows", "flows": [
        # Microsoft's RSS verification tuples (the first is UI.md's example: its request
        # hashes to 0x51ccc178). With transparent all three responses land on other cores.
        {"client": "66.9.149.187:2794", "service": SERVICE_NAME, "proto": "tcp",
         "request_bytes": 100, "response_bytes": 1000},
        {"client": "199.92.111.2:14230", "service": SERVICE_NAME, "proto": "tcp",
         "request_bytes": 100, "response_bytes": 1000},
        {"client": "24.19.198.95:12898", "service": SERVICE_NAME, "proto": "tcp",
         "request_bytes": 100, "response_bytes": 1000},
    ]},
}


def _preset(policy: str, **changes) -> dict[str, Any]:
    fields = copy.deepcopy(DEFAULTS)
    fields.update(name=f"{policy}-microsoft-4-cores", policy=policy, **changes)
    return fields


#: The patent's three policies, each with Microsoft's key, 4 cores, 7 hash bits, one
#: service and the same three flows: nat and usip return every response to its core;
#: transparent hands all three off by core-to-core message.
PRESETS: dict[str, dict[str, Any]] = {
    "nat": _preset("nat"),
    "usip": _preset("usip", tables_per_ip=4),
    "transparent": _preset("transparent"),
}

_TOP_LEVEL = ("name", "cores", "ips_per_core", "key", "hash_bits", "table", "transform",
              "fragments", "policy", "strategy", "tables_per_ip", "wrong_direction", "handoff",
              "service", "traffic")
_SERVICE_KEYS = ("name", "vip", "vport", "proto", "servers", "mtu", "response_bytes",
                 "assemble_flag")
_FLOW_KEYS = ("client", "service", "server", "proto", "request_bytes", "response_bytes")
_GENERATED_KEYS = ("count", "client_prefixes", "zipf", "seed")


def _mapping(value: Any, field: str) -> dict:
    if not isinstance(value, dict):
        raise LabInputError.one(field, f"expected an object, got {type(value).__name__}")
    return value


def _known(mapping: dict, allowed: tuple[str, ...], prefix: str, *, extra=("kind",)) -> None:
    unknown = sorted(set(mapping) - set(allowed) - set(extra))
    if unknown:
        raise LabInputError([{"field": f"{prefix}{name}", "line": None,
                              "message": f"unknown field (expected one of "
                                         f"{', '.join(allowed)})"} for name in unknown])


def scenario_dict_from_builder(fields: Any) -> dict[str, Any]:
    """The scenario (as a dict in the file's shape) the builder fields describe.

    Raises LabInputError for fields of the wrong shape (unknown names, a traffic kind
    that does not exist); values are left to the engine's loader.
    """
    fields = _mapping(fields, "builder")
    _known(fields, _TOP_LEVEL, "", extra=())
    merged = {**copy.deepcopy(DEFAULTS), **fields}
    service = {**DEFAULTS["service"], **_mapping(merged["service"], "service")}
    _known(service, _SERVICE_KEYS, "service.", extra=())
    nic: dict[str, Any] = {"key": merged["key"], "hash_bits": merged["hash_bits"],
                           "table": merged["table"], "transform": merged["transform"],
                           "fragments": merged["fragments"]}
    scenario: dict[str, Any] = {
        "schema_version": 1,
        "name": merged["name"],
        "description": "Built in the lab's form.",
        "system": {"cores": merged["cores"], "ips_per_core": merged["ips_per_core"],
                   "nic": nic},
        "ports": {"strategy": merged["strategy"], "tables_per_ip": merged["tables_per_ip"],
                  "wrong_direction": merged["wrong_direction"]},
        "handoff": merged["handoff"],
        "services": [{
            "name": service["name"], "vip": service["vip"], "vport": service["vport"],
            "proto": service["proto"], "policy": merged["policy"],
            "servers": service["servers"], "assemble_flag": service["assemble_flag"],
            "response_bytes": service["response_bytes"], "mtu": service["mtu"],
        }],
        "traffic": _traffic(_mapping(merged["traffic"], "traffic")),
    }
    return scenario


def _traffic(traffic: dict) -> dict[str, Any]:
    kind = traffic.get("kind")
    if kind == "flows":
        _known(traffic, ("flows",), "traffic.")
        flows = traffic.get("flows")
        if not isinstance(flows, list) or not flows:
            raise LabInputError.one("traffic.flows", "expected at least one flow")
        out = []
        for index, flow in enumerate(flows):
            flow = _mapping(flow, f"traffic.flows[{index}]")
            _known(flow, _FLOW_KEYS, f"traffic.flows[{index}].", extra=())
            # Empty form inputs arrive as "" or null: they mean "the default".
            out.append({key: value for key, value in flow.items()
                        if value not in ("", None)})
        return {"flows": out}
    if kind == "generated":
        _known(traffic, _GENERATED_KEYS, "traffic.")
        generated = {key: traffic[key] for key in _GENERATED_KEYS
                     if traffic.get(key) not in ("", None)}
        generated.setdefault("count", 100)
        return {"generated": generated}
    if kind == "pcap":
        _known(traffic, (), "traffic.")
        return {"pcap": {}}
    raise LabInputError.one("traffic.kind", f"expected one of flows, generated, pcap, got "
                                            f"{kind!r}")


def scenario_yaml_from_builder(fields: Any) -> str:
    """Scenario YAML for the builder ``fields`` (see the module docstring)."""
    return yaml.safe_dump(scenario_dict_from_builder(fields), sort_keys=False,
                          default_flow_style=None, allow_unicode=True, width=100)


_PATH_TO_FIELD = [
    (re.compile(r"^system\.nic\.(key|hash_bits|table|transform|fragments)\b"), r"\1"),
    (re.compile(r"^system\.(cores|ips_per_core)\b"), r"\1"),
    (re.compile(r"^ports\.(strategy|tables_per_ip|wrong_direction)\b"), r"\1"),
    (re.compile(r"^handoff\b"), "handoff"),
    (re.compile(r"^services\[0\]\.policy\b"), "policy"),
    (re.compile(r"^services\[0\]\.(\w+)"), r"service.\1"),
    (re.compile(r"^traffic\.generated\.(\w+)"), r"traffic.\1"),
    (re.compile(r"^traffic\.pcap\b"), "pcap"),
    (re.compile(r"^traffic\.flows(\[\d+\]\.\w+|\[\d+\])?"), r"traffic.flows\1"),
    (re.compile(r"^name\b"), "name"),
]


def builder_field_of(path: str) -> str:
    """The builder field a scenario key path came from (the path itself if none)."""
    for pattern, replacement in _PATH_TO_FIELD:
        match = pattern.match(path)
        if match:
            return match.expand(replacement)
    return path or "builder"
