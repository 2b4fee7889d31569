"""Scenario files: the one unit the web lab, exercises, the REST API and the CLI all run.

A scenario is YAML (or JSON) with a versioned schema: the ``system`` (cores, their
IP addresses, the NIC), the port tables, the transparent-mode handoff, the
``services`` with their policy, the ``traffic`` and the ``checks`` that decide
pass or fail::

    >>> scenario = load_scenario('''
    ... schema_version: 1
    ... name: tiny
    ... system: {cores: 4}
    ... services: [{name: web, vip: 192.0.2.10, vport: 80, policy: nat,
    ...             servers: ["10.0.0.1:8080"]}]
    ... traffic: {generated: {count: 100}}
    ... checks: {symmetric_rate: ">= 100%", refused: "== 0"}
    ... ''')
    >>> scenario.system.nic.key, scenario.checks["symmetric_rate"]
    ('microsoft', '>= 100%')
    >>> load_scenario("schema_version: 1\\nname: x\\nsystem: {cores: 0}\\nservices: []")
    Traceback (most recent call last):
    ...
    engine.errors.ScenarioError: <string>: 1 problem
      line 3: system.cores: expected a number >= 1, got 0

Loading is safe (``yaml.SafeLoader`` only) and strict: an unknown key, a
duplicate key or a wrong type is an error, and every problem is reported at once
with its line and key path (``line 12: services[0].policy: expected one of nat,
usip, transparent, got 'natt'``). Cross-references (a service name a traffic
source names, a core number the table names) are checked after the shapes are
right, so a file with type errors reports those first.

Checks are a mapping ``metric: "OP VALUE"`` (or a list of such strings for one
metric), e.g. ``symmetric_rate: ">= 1.0"``, ``handed_off: "== 0"``,
``fairness: [">= 0.9", "<= 1"]``. OP is one of ``== != >= <= > <``; a value may end
in ``%`` (``">= 100%"`` is ``">= 1.0"``); a bare number means ``==``. Metrics are the
keys of the verification report's summary (``METRICS``).

Limits (``MAX_*``) bound what a file can ask for, so a scenario uploaded to the web lab
cannot exhaust a worker.

The package, one module per step:

* ``limits`` — the schema version and the ``MAX_*`` limits;
* ``fields`` — the field types (names, addresses, endpoints, keys, sizes, conditions);
* ``schema`` — the pydantic models, one per part of the file, and the JSON Schema;
* ``document`` — YAML/JSON text to data and the line of every key path;
* ``problems`` — pydantic's errors as located problems;
* ``cross_checks`` — the checks that need more than one field;
* ``checks`` — the ``checks`` section: parsing conditions, evaluating them on a summary;
* ``loading`` — ``load_scenario`` and ``load_scenario_file``, the steps in order.

Everything public is importable from ``engine.scenarios.scenario``.
"""

from __future__ import annotations

from engine.scenarios.scenario.checks import (
    METRICS,
    OPERATORS,
    CheckResult,
    evaluate_checks,
    parse_check,
)
from engine.scenarios.scenario.fields import parse_endpoint
from engine.scenarios.scenario.limits import (
    MAX_ADVERSARIAL_FLOWS,
    MAX_CHECKS,
    MAX_CLIENT_PREFIXES,
    MAX_DEPTH,
    MAX_EXPLICIT_FLOWS,
    MAX_FILE_BYTES,
    MAX_GENERATED_FLOWS,
    MAX_IPS_PER_CORE,
    MAX_NODES,
    MAX_SERVERS_PER_SERVICE,
    MAX_SERVICES,
    MAX_TABLES_PER_IP,
    MAX_TEXT,
    MAX_TRAFFIC_SOURCES,
    SCHEMA_VERSION,
)
from engine.scenarios.scenario.loading import load_scenario, load_scenario_file
from engine.scenarios.scenario.schema import (
    AdversarialSource,
    FlowEntry,
    GeneratedSource,
    NicSection,
    PcapSource,
    PortRangeSpec,
    PortsSection,
    Scenario,
    ServiceEntry,
    SizeRangeSpec,
    SystemSection,
    TrafficSource,
    scenario_json_schema,
)

__all__ = [
    "MAX_ADVERSARIAL_FLOWS", "MAX_CHECKS", "MAX_CLIENT_PREFIXES", "MAX_DEPTH",
    "MAX_EXPLICIT_FLOWS", "MAX_FILE_BYTES", "MAX_GENERATED_FLOWS", "MAX_IPS_PER_CORE",
    "MAX_NODES", "MAX_SERVERS_PER_SERVICE", "MAX_SERVICES", "MAX_TABLES_PER_IP", "MAX_TEXT",
    "MAX_TRAFFIC_SOURCES", "METRICS", "OPERATORS", "SCHEMA_VERSION",
    "AdversarialSource", "CheckResult", "FlowEntry", "GeneratedSource", "NicSection",
    "PcapSource", "PortRangeSpec", "PortsSection", "Scenario", "ServiceEntry",
    "SizeRangeSpec", "SystemSection", "TrafficSource",
    "evaluate_checks", "load_scenario", "load_scenario_file", "parse_check",
    "parse_endpoint", "scenario_json_schema",
]
