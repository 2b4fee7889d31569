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
``policy``, ``strategy``, ``tables_per_ip``, ``wrong_direction``, ``handoff`` (the
forwarding route: written as ``forwarding: {route: ...}``; a file's older top-level
``handoff:`` loads into it), ``rss_aware`` and ``receive_core`` (the NIC: false means it
hashes nothing and delivers every packet to ``receive_core``), ``table_change`` (null, or
``{"at_us", "table"}``: the indirection table reprogrammed at a virtual time),
``distributor`` (``{"correct_core_check": bool, "rules": [...]}``; a rule is
``{"kind": "prefix", "prefix", "match_on", "core"}`` or ``{"kind": "flow", "client",
"server", "proto", "core"}``, written as the file's ``distributor.rules``),
``service`` ({``name``, ``vip``, ``vport``, ``proto``, ``servers``, ``mtu``,
``response_bytes``, ``assemble_flag``}) and ``traffic``, one of ``{"kind": "flows",
"flows": [...]}`` (a flow may have ``start_us``), ``{"kind": "generated", "count",
"client_prefixes", "zipf", "seed", "start", "close", "hold_us"}`` (``start`` null or
``{"spread_us": N}`` or ``{"rate_per_s": R}``; ``close`` and ``hold_us`` as the file's, each
written only when it is not the default) or ``{"kind": "pcap"}`` (the capture is uploaded
with the run).

Here each field's shape and JSON type is checked (``name`` is a string of at most
:data:`TEXT_MAX` characters, ``cores`` an integer, ``servers`` a list of strings, …;
strings must be valid Unicode, without lone surrogates), every problem at once as a
:class:`~labsite.lab.errors.LabInputError` naming the field. The values themselves are
left to the engine's scenario loader (with its limits), and :func:`builder_field_of` maps
each problem's key path back to the form field it came from (``system.cores`` →
``cores``, ``services[0].vip`` → ``service.vip``, ``traffic.flows[1].client`` →
``traffic.flows[1].client``, ``distributor.rules[1].flow.client`` →
``distributor.rules[1].client``, ``traffic.generated.start.rate_per_s`` →
``traffic.start.rate_per_s``).
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
    "tables_per_ip": 64,  # the engine's default (the patent's 64 usip tables per core)
    "wrong_direction": False,
    "handoff": "message",
    "rss_aware": True,
    "receive_core": 0,
    "table_change": None,
    "distributor": {"correct_core_check": True, "rules": []},
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
#: transparent hands all three off by core-to-core message. A transparent middlebox
#: rewrites nothing, so there its "service" is the server itself (no VIP translation):
#: the response is then the request's tuple reversed, and the symmetric key alone keeps
#: it on the request's core.
PRESETS: dict[str, dict[str, Any]] = {
    "nat": _preset("nat"),
    "usip": _preset("usip", tables_per_ip=4),
    "transparent": _preset("transparent", service={
        **DEFAULTS["service"],
        "servers": [f"{DEFAULTS['service']['vip']}:{DEFAULTS['service']['vport']}"]}),
}

_TOP_LEVEL = ("name", "cores", "ips_per_core", "key", "hash_bits", "table", "transform",
              "fragments", "policy", "strategy", "tables_per_ip", "wrong_direction", "handoff",
              "rss_aware", "receive_core", "table_change", "distributor", "service", "traffic")
_SERVICE_KEYS = ("name", "vip", "vport", "proto", "servers", "mtu", "response_bytes",
                 "assemble_flag")
_FLOW_KEYS = ("client", "service", "server", "proto", "request_bytes", "response_bytes",
              "start_us")
# Generated flows' start times and session ends (README "Time"): ``start`` is null or
# ``{"spread_us": N}`` / ``{"rate_per_s": R}`` as in the file; ``close`` and ``hold_us``
# apply to every generated flow alike. An explicit flow's close and hold_us have no column
# in the form's flows table (it has no room for two more): a file that sets them opens in
# the YAML tab (they are "unshown").
_GENERATED_KEYS = ("count", "client_prefixes", "zipf", "seed", "start", "close", "hold_us")
_START_KEYS = ("spread_us", "rate_per_s")
#: the engine's defaults for a session's end, which the form leaves out of the file
_CLOSE_DEFAULT = "fin"
_DISTRIBUTOR_KEYS = ("correct_core_check", "rules")
_TABLE_CHANGE_KEYS = ("at_us", "table")
_RULE_KINDS = ("prefix", "flow")
#: a rule row's fields by kind (the form's row has all of them; each kind writes its own)
_RULE_KEYS = {"prefix": ("prefix", "match_on", "core"),
              "flow": ("client", "server", "proto", "core")}

#: The longest text any builder field takes (names, addresses, keys: the engine's own
#: limits are lower; this one only keeps absurd input out of the YAML).
TEXT_MAX = 256

# The JSON type of every scalar field: "text", "int", "number", "bool", a tuple of those
# (any of them), "text-list"/"int-list" (a list of those), "null" (null allowed).
_TYPES: dict[str, tuple[str, ...]] = {
    "name": ("text",), "cores": ("int",), "ips_per_core": ("int",), "key": ("text",),
    "hash_bits": ("int",), "table": ("text", "int-list"), "transform": ("text",),
    "fragments": ("text",), "policy": ("text",), "strategy": ("text",),
    "tables_per_ip": ("int",), "wrong_direction": ("bool",), "handoff": ("text",),
    "rss_aware": ("bool",), "receive_core": ("int",),
    "table_change.at_us": ("int",), "table_change.table": ("int-list",),
    "distributor.correct_core_check": ("bool",),
    "rule.kind": ("text",), "rule.prefix": ("text",), "rule.match_on": ("text",),
    "rule.client": ("text",), "rule.server": ("text",), "rule.proto": ("text",),
    "rule.core": ("int",),
    "service.name": ("text",), "service.vip": ("text",), "service.vport": ("int",),
    "service.proto": ("text",), "service.servers": ("text-list",),
    "service.mtu": ("int", "null"), "service.response_bytes": ("int",),
    "service.assemble_flag": ("bool",),
    "flow.client": ("text",), "flow.service": ("text",), "flow.server": ("text",),
    "flow.proto": ("text",), "flow.request_bytes": ("int",),
    "flow.response_bytes": ("int",), "flow.start_us": ("int",),
    "generated.count": ("int",), "generated.client_prefixes": ("text-list",),
    "generated.zipf": ("number",), "generated.seed": ("int",),
    "generated.close": ("text",), "generated.hold_us": ("int", "null"),
    "start.spread_us": ("int",), "start.rate_per_s": ("int",),
}
_EXPECTED = {"text": f"a string of at most {TEXT_MAX} characters", "int": "an integer",
             "number": "a number", "bool": "true or false", "null": "null",
             "text-list": f"a list of strings of at most {TEXT_MAX} characters",
             "int-list": "a list of integers"}


def text_problem(text: str, *, lines: bool = False) -> tuple[int | None, str] | None:
    """``(line, message)`` for text that is not valid Unicode — a lone surrogate, which
    only a JSON ``\\ud800`` escape can produce and UTF-8 cannot store — else None.

    With ``lines`` (scenario text) the message gives the column and ``line`` the 1-based
    line; otherwise the message gives the character and ``line`` is None.
    """
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:
        index = error.start
        where, line = f"character {index + 1}", None
        if lines:
            line = text.count("\n", 0, index) + 1
            line_start = text.rfind("\n", 0, index) + 1
            where = f"column {index - line_start + 1}"
        return line, (f"expected valid text, got a lone surrogate U+{ord(text[index]):04X} "
                      f"(an invalid character) at {where}")
    return None


def shown(value: Any) -> str:
    """A short spelling of a JSON value for a message (never the whole of a big one)."""
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, str):
        return repr(value) if len(value) <= 60 else (
            f"{value[:40]!r}… ({len(value):,} characters)")
    return "null" if value is None else str(value).lower() if isinstance(value, bool) \
        else str(value)


def _is_type(value: Any, kind: str) -> bool:
    is_int = isinstance(value, int) and not isinstance(value, bool)
    if kind == "text":
        return isinstance(value, str) and len(value) <= TEXT_MAX
    if kind == "int":
        return is_int
    if kind == "number":
        return is_int or isinstance(value, float)
    if kind == "bool":
        return isinstance(value, bool)
    if kind == "null":
        return value is None
    item = kind.removesuffix("-list")
    return isinstance(value, list) and all(_is_type(v, item) for v in value)


def _text_problems(value: Any, field: str) -> list[dict]:
    texts = value if isinstance(value, list) else [value]
    for index, text in enumerate(texts):
        problem = text_problem(text) if isinstance(text, str) else None
        if problem is not None:
            where = f"{field}[{index}]" if isinstance(value, list) else field
            return [{"field": where, "line": None, "message": problem[1]}]
    return []


def _check_types(values: dict, prefix: str, field_prefix: str, *,
                 blank_is_default: bool = False) -> None:
    """LabInputError listing every field of ``values`` whose JSON type is wrong."""
    errors = []
    for name, value in values.items():
        kinds = _TYPES.get(f"{prefix}{name}")
        if kinds is None or (blank_is_default and value in ("", None)):
            continue
        field = f"{field_prefix}{name}"
        if not any(_is_type(value, kind) for kind in kinds):
            expected = " or ".join(_EXPECTED[kind] for kind in kinds)
            got = shown(value)
            lists = [kind.removesuffix("-list") for kind in kinds if kind.endswith("-list")]
            if isinstance(value, list) and lists:  # name the first item of a wrong type
                index = next((i for i, item in enumerate(value)
                              if not _is_type(item, lists[0])), None)
                if index is not None:
                    got = f"{shown(value[index])} at position {index}"
            errors.append({"field": field, "line": None,
                           "message": f"expected {expected}, got {got}"})
        else:
            errors += _text_problems(value, field)
    if errors:
        raise LabInputError(errors)


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
    that does not exist, a JSON type the field does not take, invalid text); values are
    left to the engine's loader.
    """
    fields = _mapping(fields, "builder")
    _known(fields, _TOP_LEVEL, "", extra=())
    _check_types(fields, "", "")
    merged = {**copy.deepcopy(DEFAULTS), **fields}
    service = {**DEFAULTS["service"], **_mapping(merged["service"], "service")}
    _known(service, _SERVICE_KEYS, "service.", extra=())
    _check_types(service, "service.", "service.")
    nic: dict[str, Any] = {"key": merged["key"], "hash_bits": merged["hash_bits"],
                           "table": merged["table"], "transform": merged["transform"],
                           "fragments": merged["fragments"]}
    # The NIC's and the distributor's settings are written only where they differ from
    # the engine's defaults, so a scenario that does not use them reads as before.
    if merged["rss_aware"] is not True:
        nic["rss_aware"] = merged["rss_aware"]
    if merged["receive_core"] != DEFAULTS["receive_core"]:
        nic["receive_core"] = merged["receive_core"]
    if merged["table_change"] is not None:
        nic["table_change"] = _table_change(merged["table_change"])
    distributor = _distributor(merged["distributor"])
    scenario: dict[str, Any] = {
        "schema_version": 1,
        "name": merged["name"],
        "description": "Built in the lab's form.",
        "system": {"cores": merged["cores"], "ips_per_core": merged["ips_per_core"],
                   "nic": nic},
        "ports": {"strategy": merged["strategy"], "tables_per_ip": merged["tables_per_ip"],
                  "wrong_direction": merged["wrong_direction"]},
        "forwarding": {"route": merged["handoff"]},
        **({"distributor": distributor} if distributor else {}),
        "services": [{
            "name": service["name"], "vip": service["vip"], "vport": service["vport"],
            "proto": service["proto"], "policy": merged["policy"],
            "servers": service["servers"], "assemble_flag": service["assemble_flag"],
            "response_bytes": service["response_bytes"], "mtu": service["mtu"],
        }],
        "traffic": _traffic(_mapping(merged["traffic"], "traffic")),
    }
    return scenario


def _table_change(value: Any) -> dict[str, Any]:
    change = _mapping(value, "table_change")
    _known(change, _TABLE_CHANGE_KEYS, "table_change.", extra=())
    _check_types(change, "table_change.", "table_change.")
    missing = [key for key in _TABLE_CHANGE_KEYS if key not in change]
    if missing:
        raise LabInputError([{"field": f"table_change.{key}", "line": None,
                              "message": "expected a value (or no table change)"}
                             for key in missing])
    return {key: change[key] for key in _TABLE_CHANGE_KEYS}


def _distributor(value: Any) -> dict[str, Any]:
    """The file's ``distributor`` section (empty when every setting is the default)."""
    distributor = {**DEFAULTS["distributor"], **_mapping(value, "distributor")}
    _known(distributor, _DISTRIBUTOR_KEYS, "distributor.", extra=())
    _check_types(distributor, "distributor.", "distributor.")
    rules = distributor["rules"]
    if not isinstance(rules, list):
        raise LabInputError.one("distributor.rules", f"expected a list of rules, got "
                                                     f"{shown(rules)}")
    section: dict[str, Any] = {}
    if rules:
        section["rules"] = [_rule(rule, index) for index, rule in enumerate(rules)]
    if distributor["correct_core_check"] is not True:
        section["correct_core_check"] = distributor["correct_core_check"]
    return section


def _rule(value: Any, index: int) -> dict[str, Any]:
    """One form row → one ``distributor.rules`` entry: a prefix rule or an exact flow."""
    where = f"distributor.rules[{index}]."
    rule = _mapping(value, f"distributor.rules[{index}]")
    _known(rule, ("kind", *_RULE_KEYS["prefix"], *_RULE_KEYS["flow"]), where, extra=())
    kind = rule.get("kind")
    if kind not in _RULE_KINDS:
        raise LabInputError.one(f"{where}kind", f"expected one of prefix, flow, got "
                                                f"{shown(kind)}")
    # Only this kind's fields: the other kind's inputs stay in the row, hidden.
    row = {key: rule.get(key) for key in _RULE_KEYS[kind]}
    _check_types({k: v for k, v in row.items() if v is not None}, "rule.", where)
    # A blank address stays text, so the engine's own message names the input.
    row.update({key: "" for key in ("prefix", "client", "server")
                if key in row and row[key] is None})
    if kind == "prefix":
        entry = {"prefix": row["prefix"], "match_on": row["match_on"] or "src"}
    else:
        entry = {"flow": {"client": row["client"], "server": row["server"],
                          "proto": row["proto"] or "tcp"}}
    # core last: a row reads "this prefix (or flow) → this core"; a blank core is left for
    # the engine to name (distributor.rules[i].core).
    return {**entry, "core": row["core"]}


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
            _check_types(flow, "flow.", f"traffic.flows[{index}].", blank_is_default=True)
            # Empty form inputs arrive as "" or null: they mean "the default".
            out.append({key: value for key, value in flow.items()
                        if value not in ("", None)})
        return {"flows": out}
    if kind == "generated":
        _known(traffic, _GENERATED_KEYS, "traffic.")
        _check_types(traffic, "generated.", "traffic.", blank_is_default=True)
        generated = {key: traffic[key] for key in _GENERATED_KEYS
                     if traffic.get(key) not in ("", None)}
        generated.setdefault("count", 100)
        # Only what differs from the engine's defaults is written: no start (all at 0),
        # close fin, hold_us null (the system's 1,000 µs).
        if "start" in generated:
            generated["start"] = _start(generated["start"])
        if generated.get("close") == _CLOSE_DEFAULT:
            del generated["close"]
        return {"generated": {key: generated[key] for key in _GENERATED_KEYS
                              if key in generated}}
    if kind == "pcap":
        _known(traffic, (), "traffic.")
        return {"pcap": {}}
    raise LabInputError.one("traffic.kind", f"expected one of flows, generated, pcap, got "
                                            f"{shown(kind)}")


def _start(value: Any) -> dict[str, int]:
    """The form's "Start times" (``{"spread_us": N}`` or ``{"rate_per_s": R}``) as the
    file's ``traffic.generated.start``; the values' ranges (and "exactly one") are left
    to the engine, whose messages then land on these inputs (``builder_field_of``)."""
    start = _mapping(value, "traffic.start")
    _known(start, _START_KEYS, "traffic.start.", extra=())
    given = {key: start[key] for key in _START_KEYS if start.get(key) not in ("", None)}
    blank = [key for key in _START_KEYS if key in start and key not in given]
    if blank and not given:  # the kind chosen, its number left blank
        raise LabInputError([{"field": f"traffic.start.{key}", "line": None,
                              "message": "expected a number (or no start times)"}
                             for key in blank])
    _check_types(given, "start.", "traffic.start.")
    return given


def scenario_yaml_from_builder(fields: Any) -> str:
    """Scenario YAML for the builder ``fields`` (see the module docstring)."""
    return yaml.safe_dump(scenario_dict_from_builder(fields), sort_keys=False,
                          default_flow_style=None, allow_unicode=True, width=100)


_PATH_TO_FIELD = [
    (re.compile(r"^system\.nic\.(key|hash_bits|table|transform|fragments)\b"), r"\1"),
    (re.compile(r"^system\.nic\.(rss_aware|receive_core)\b"), r"\1"),
    (re.compile(r"^system\.nic\.table_change\.(at_us|table)\b"), r"table_change.\1"),
    (re.compile(r"^system\.nic\.table_change\b"), "table_change"),
    # A rule row holds its flow's fields itself (…rules[1].flow.client → …rules[1].client);
    # "client and server of one address family" (…flow) goes to the client; a problem of
    # the whole rule ("exactly one of prefix and flow") to its kind.
    (re.compile(r"^distributor\.rules(\[\d+\])\.flow\.(client|server|proto)\b"),
     r"distributor.rules\1.\2"),
    (re.compile(r"^distributor\.rules(\[\d+\])\.flow\b"), r"distributor.rules\1.client"),
    (re.compile(r"^distributor\.rules(\[\d+\])\.(prefix|match_on|core)\b"),
     r"distributor.rules\1.\2"),
    (re.compile(r"^distributor\.rules(\[\d+\])"), r"distributor.rules\1.kind"),
    (re.compile(r"^distributor\.(rules|correct_core_check)\b"), r"distributor.\1"),
    (re.compile(r"^system\.(cores|ips_per_core)\b"), r"\1"),
    (re.compile(r"^ports\.(strategy|tables_per_ip|wrong_direction)\b"), r"\1"),
    (re.compile(r"^(handoff|forwarding)\b"), "handoff"),
    (re.compile(r"^services\[0\]\.policy\b"), "policy"),
    (re.compile(r"^services\[0\]\.(\w+)"), r"service.\1"),
    # start.spread_us / start.rate_per_s each have an input; "exactly one of" goes to the
    # "Start times" select (traffic.start)
    (re.compile(r"^traffic\.generated\.start\.(spread_us|rate_per_s)\b"),
     r"traffic.start.\1"),
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


_FORM_KEYS = {
    "": {"schema_version", "name", "description", "system", "ports", "handoff", "forwarding",
         "distributor", "services", "traffic"},
    "forwarding": {"route"},
    "distributor": set(_DISTRIBUTOR_KEYS),
    "rule": {"core", "prefix", "match_on", "flow"},
    "rule.flow": {"client", "server", "proto"},
    "system": {"cores", "ips_per_core", "nic"},
    "system.nic": {"key", "hash_bits", "table", "transform", "fragments", "rss_aware",
                   "receive_core", "table_change"},
    "table_change": set(_TABLE_CHANGE_KEYS),
    "ports": {"strategy", "tables_per_ip", "wrong_direction"},
    "service": set(_SERVICE_KEYS) | {"policy"},
    "flow": set(_FLOW_KEYS),
    "generated": set(_GENERATED_KEYS) | {"services"},
    "start": set(_START_KEYS),
}


def _rule_row(rule: dict, path: str, section) -> dict[str, Any]:
    """A ``distributor.rules`` entry as the form's row (the inverse of :func:`_rule`)."""
    if isinstance(rule.get("flow"), dict):
        flow = section(rule["flow"], f"{path}flow.", "rule.flow")
        row = {"kind": "flow", **{k: flow[k] for k in ("client", "server", "proto")
                                  if k in flow}}
    else:
        row = {"kind": "prefix", "prefix": rule.get("prefix"),
               "match_on": rule.get("match_on", "src")}
    return {**row, "core": rule.get("core")}


def builder_fields_from_scenario(text: str) -> dict[str, Any] | None:
    """The builder fields that show scenario ``text`` in the form (a past run's file, an
    example), and what the form cannot show: ``{"fields": {...}, "unshown": ["checks",
    "services[1]", …]}``; None when the text is not a scenario mapping at all.

    The form holds one service and explicit, generated or pcap traffic; anything else (a
    second service, checks, an adversarial source, a port range …) is listed in
    ``unshown``, and the page then runs the YAML tab, which holds the whole file, so
    what runs is what is on screen. ``text`` is a stored scenario: the engine's loader
    (with its depth and size limits) accepted it before it was stored.
    """
    try:
        data = yaml.safe_load(text)
    except (yaml.YAMLError, RecursionError, ValueError):
        return None
    if not isinstance(data, dict):
        return None
    unshown: list[str] = []

    def section(value: Any, path: str, allowed: str) -> dict:
        if not isinstance(value, dict):
            return {}
        unshown.extend(f"{path}{key}" for key in value if key not in _FORM_KEYS[allowed])
        return value

    top = section(data, "", "")
    system = section(top.get("system"), "system.", "system")
    nic = section(system.get("nic"), "system.nic.", "system.nic")
    ports = section(top.get("ports"), "ports.", "ports")
    forwarding = section(top.get("forwarding"), "forwarding.", "forwarding")
    fields: dict[str, Any] = {}
    for key, value in (("name", top.get("name")), ("cores", system.get("cores")),
                       ("ips_per_core", system.get("ips_per_core")),
                       ("key", nic.get("key")), ("hash_bits", nic.get("hash_bits")),
                       ("table", nic.get("table")), ("transform", nic.get("transform")),
                       ("fragments", nic.get("fragments")),
                       ("strategy", ports.get("strategy")),
                       ("tables_per_ip", ports.get("tables_per_ip")),
                       ("wrong_direction", ports.get("wrong_direction")),
                       # the form's "handoff" field is the forwarding route (its older name)
                       ("handoff", forwarding.get("route", top.get("handoff"))),
                       ("rss_aware", nic.get("rss_aware")),
                       ("receive_core", nic.get("receive_core"))):
        if value is not None:
            fields[key] = value
    change = section(nic.get("table_change"), "system.nic.table_change.", "table_change")
    if change:
        fields["table_change"] = {k: change[k] for k in _TABLE_CHANGE_KEYS if k in change}
    distributor = section(top.get("distributor"), "distributor.", "distributor")
    if distributor:
        rules = distributor.get("rules") if isinstance(distributor.get("rules"), list) else []
        fields["distributor"] = {
            "correct_core_check": distributor.get("correct_core_check", True),
            "rules": [_rule_row(section(rule, f"distributor.rules[{index}].", "rule"),
                                f"distributor.rules[{index}].", section)
                      for index, rule in enumerate(rules)]}
    services = top.get("services") if isinstance(top.get("services"), list) else []
    if len(services) > 1:
        unshown.extend(f"services[{i}]" for i in range(1, len(services)))
    if services:
        service = section(services[0], "services[0].", "service")
        fields["policy"] = service.get("policy", DEFAULTS["policy"])
        fields["service"] = {key: service[key] for key in _SERVICE_KEYS if key in service}
    traffic = top.get("traffic") if isinstance(top.get("traffic"), dict) else {}
    kinds = [kind for kind in traffic if traffic.get(kind) is not None]
    unshown.extend(f"traffic.{kind}" for kind in kinds[1:])
    kind = kinds[0] if kinds else None
    if kind == "flows" and isinstance(traffic["flows"], list):
        flows = []
        for index, flow in enumerate(traffic["flows"]):
            flows.append({k: v for k, v in section(flow, f"traffic.flows[{index}].", "flow")
                          .items() if k in _FLOW_KEYS})
        fields["traffic"] = {"kind": "flows", "flows": flows}
    elif kind == "generated" and isinstance(traffic["generated"], dict):
        generated = section(traffic["generated"], "traffic.generated.", "generated")
        fields["traffic"] = {"kind": "generated",
                             **{k: generated[k] for k in _GENERATED_KEYS if k in generated}}
        if isinstance(generated.get("start"), dict):
            start = section(generated["start"], "traffic.generated.start.", "start")
            fields["traffic"]["start"] = {k: start[k] for k in _START_KEYS if k in start}
    elif kind == "pcap":
        fields["traffic"] = {"kind": "pcap"}
    elif kind is not None:
        unshown.append(f"traffic.{kind}")
    return {"fields": fields, "unshown": unshown}
