"""RSS Lab's engine: a pure-Python model of symmetric request/response steering.

The model is layered; each layer imports only from the layers below it (import-linter
checks it in ``make test``, see pyproject.toml):

* ``commands``, ``bench`` — the command line (``python -m engine``) and the benchmarks;
* ``runs`` — verification runs, comparisons, HTML reports;
* ``scenarios`` — scenario files, the traffic they describe, captures (pcap), examples;
* ``paths`` — the two execution paths side by side: ``trace`` (packet by packet, typed
  events) and ``batch`` (NumPy over whole arrays of flows);
* ``appliance`` — the appliance's mechanisms: the shared ``config`` and ``rules`` both
  paths call, events, verdicts, the packet engine and its policies, port allocation
  tables, fragments, the control core;
* ``nic`` — the NIC: RSS hash types, input transforms, the indirection table, the
  software flow distributor;
* ``packet`` — the packet model and the Toeplitz hash;
* ``errors``, ``safeparse`` — the error tree, and reading untrusted YAML/JSON.

Everything is deterministic given a seed and imports nothing from Django, Celery or
Channels. The names below are loaded on first use (PEP 562), so ``import engine`` or
``import engine.errors`` loads neither NumPy nor the execution paths.
"""

from __future__ import annotations

import importlib

#: Public name -> the module that defines it.
_EXPORTS = {
    "ControlCore": "engine.appliance.control",
    "ControlReport": "engine.appliance.control",
    "EVENT_KINDS": "engine.appliance.events",
    "Event": "engine.appliance.events",
    "FragmentError": "engine.errors",
    "FragmentMode": "engine.appliance.fragments",
    "FragmentSteerer": "engine.appliance.fragments",
    "Reassembler": "engine.appliance.fragments",
    "ReassemblyLimits": "engine.appliance.fragments",
    "decide_action": "engine.appliance.fragments",
    "fragment_outcome": "engine.appliance.fragments",
    "fragment_packet": "engine.appliance.fragments",
    "PacketEngine": "engine.appliance.packet_engine",
    "Session": "engine.appliance.packet_engine",
    "Allocation": "engine.appliance.ports",
    "PortAllocationTable": "engine.appliance.ports",
    "PortAllocator": "engine.appliance.ports",
    "PortExhausted": "engine.errors",
    "PortRange": "engine.appliance.ports",
    "PortState": "engine.appliance.ports",
    "ResponsePortMap": "engine.appliance.ports",
    "allocate_batch": "engine.appliance.ports",
    "FlowOutcome": "engine.appliance.verdicts",
    "Summary": "engine.appliance.verdicts",
    "jain_index": "engine.appliance.verdicts",
    "ConfigError": "engine.errors",
    "HashKeyError": "engine.errors",
    "RssLabError": "engine.errors",
    "TableError": "engine.errors",
    "TupleError": "engine.errors",
    "FlowDistributor": "engine.nic.distributor",
    "Rule": "engine.nic.distributor",
    "ALL_HASH_TYPES": "engine.nic.rss",
    "HashType": "engine.nic.rss",
    "IndirectionTable": "engine.nic.rss",
    "Nic": "engine.nic.rss",
    "Steering": "engine.nic.rss",
    "Transform": "engine.nic.rss",
    "transform_input": "engine.nic.rss",
    "FlowTuple": "engine.packet.model",
    "Fragment": "engine.packet.model",
    "Packet": "engine.packet.model",
    "Proto": "engine.packet.model",
    "from_scapy": "engine.packet.model",
    "to_scapy": "engine.packet.model",
    "HashStep": "engine.packet.toeplitz",
    "Key": "engine.packet.toeplitz",
    "MICROSOFT_KEY_HEX": "engine.packet.toeplitz",
    "SYMMETRIC_KEY_HEX": "engine.packet.toeplitz",
    "explain_hash": "engine.packet.toeplitz",
    "hash_input": "engine.packet.toeplitz",
    "hash_ipv4_batch": "engine.packet.toeplitz",
    "parse_key": "engine.packet.toeplitz",
    "toeplitz_hash": "engine.packet.toeplitz",
    "toeplitz_hash_batch": "engine.packet.toeplitz",
    "BatchResult": "engine.paths.batch",
    "run_batch": "engine.paths.batch",
    "Flow": "engine.appliance.config",
    "Server": "engine.appliance.config",
    "Service": "engine.appliance.config",
    "System": "engine.paths.trace",
    "SystemConfig": "engine.appliance.config",
    "TraceResult": "engine.paths.trace",
    "CompareError": "engine.errors",
    "Comparison": "engine.runs.compare",
    "compare_scenario": "engine.runs.compare",
    "parse_vary": "engine.runs.compare",
    "Report": "engine.runs.run",
    "export_pcap": "engine.runs.run",
    "verify_scenario": "engine.runs.run",
    "PcapError": "engine.errors",
    "read_pcap": "engine.scenarios.pcap",
    "write_pcap": "engine.scenarios.pcap",
    "Scenario": "engine.scenarios.scenario",
    "ScenarioError": "engine.errors",
    "load_scenario": "engine.scenarios.scenario",
    "load_scenario_file": "engine.scenarios.scenario",
    "FlowArrays": "engine.paths.flows",
    "FlowSpec": "engine.paths.flows",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'engine' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
