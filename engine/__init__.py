"""RSS Lab's engine: a pure-Python model of symmetric request/response steering.

The modules follow the glossary in DESIGN.md:

* ``toeplitz`` — the hash (scalar and NumPy batch) and keys;
* ``nic`` — hash types, symmetric input transforms, the indirection table, the NIC;
* ``distributor`` — the software flow distributor and its rules;
* ``packet`` — the packet model and its Scapy conversion;
* ``ports`` — port allocation tables and the ``scan`` / ``solve`` port choice;
* ``packet_engine`` — sessions and the nat / usip / transparent policies of one core;
* ``fragments`` — reassembly, Assemble vs Bridge, fragment steering modes;
* ``system`` — the multi-core system and its trace path (typed ``events``);
* ``batch`` — the vectorised path; ``verify`` — verdicts and the summary;
* ``control`` — the control core (failed cores, rebalancing);
* ``scenario``, ``traffic``, ``pcap`` — scenario files, traffic, captures;
* ``run``, ``compare``, ``report`` — verification runs, comparisons, HTML reports.

Everything is deterministic given a seed and imports nothing from Django, Celery or
Channels. Scapy is imported only by the functions that need it.
"""

from .batch import BatchResult, run_batch
from .compare import CompareError, Comparison, compare_scenario, parse_vary
from .control import ControlCore, ControlReport
from .distributor import FlowDistributor, Rule
from .errors import ConfigError, HashKeyError, RssLabError, TableError, TupleError
from .events import EVENT_KINDS, Event
from .fragments import (
    FragmentError,
    FragmentMode,
    FragmentSteerer,
    Reassembler,
    ReassemblyLimits,
    decide_action,
    fragment_outcome,
    fragment_packet,
)
from .nic import (
    ALL_HASH_TYPES,
    HashType,
    IndirectionTable,
    Nic,
    Steering,
    Transform,
    transform_input,
)
from .packet import FlowTuple, Fragment, Packet, Proto, from_scapy, to_scapy
from .packet_engine import PacketEngine, Session
from .pcap import PcapError, read_pcap, write_pcap
from .ports import (
    Allocation,
    PortAllocationTable,
    PortAllocator,
    PortExhausted,
    PortRange,
    PortState,
    ResponsePortMap,
    allocate_batch,
)
from .run import Report, export_pcap, verify_scenario
from .scenario import Scenario, ScenarioError, load_scenario, load_scenario_file
from .system import Flow, Server, Service, System, SystemConfig, TraceResult
from .toeplitz import (
    MICROSOFT_KEY_HEX,
    SYMMETRIC_KEY_HEX,
    HashStep,
    Key,
    explain_hash,
    hash_input,
    hash_ipv4_batch,
    parse_key,
    toeplitz_hash,
    toeplitz_hash_batch,
)
from .traffic import FlowArrays, FlowSpec
from .verify import FlowOutcome, Summary, jain_index

__all__ = [
    "ALL_HASH_TYPES", "EVENT_KINDS", "MICROSOFT_KEY_HEX", "SYMMETRIC_KEY_HEX",
    "Allocation", "BatchResult", "CompareError", "Comparison", "ConfigError", "ControlCore",
    "ControlReport", "Event", "Flow", "FlowArrays", "FlowDistributor", "FlowOutcome",
    "FlowSpec", "FlowTuple", "Fragment", "FragmentError", "FragmentMode", "FragmentSteerer",
    "HashKeyError", "HashStep", "HashType", "IndirectionTable", "Key", "Nic", "Packet",
    "PacketEngine", "PcapError", "PortAllocationTable", "PortAllocator", "PortExhausted",
    "PortRange", "PortState", "Proto", "Reassembler", "ReassemblyLimits", "Report",
    "ResponsePortMap", "RssLabError", "Rule", "Scenario", "ScenarioError", "Server",
    "Service", "Session", "Steering", "Summary", "System", "SystemConfig", "TableError",
    "TraceResult", "Transform", "TupleError",
    "allocate_batch", "compare_scenario", "decide_action", "explain_hash", "export_pcap",
    "fragment_outcome", "fragment_packet", "from_scapy", "hash_input", "hash_ipv4_batch",
    "jain_index", "load_scenario", "load_scenario_file", "parse_key", "parse_vary",
    "read_pcap", "run_batch", "to_scapy", "toeplitz_hash", "toeplitz_hash_batch",
    "transform_input", "verify_scenario", "write_pcap",
]
