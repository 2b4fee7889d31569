"""What the engine observes of one variant: the only place exercises run the model.

Predictions are compared with these observations and design answers are graded by
them, always computed for the variant at grading time (never read from the file). An
``Observer`` belongs to one variant and one grading: it remembers runs it has made (a
scenario run twice with the same answer is run once) and stops with GradingTimeout once
its deadline passes, checked as the engine reports progress.

``PacketView`` is what feedback shows of a packet: its tuple (source first, as hashed),
its hash, bucket and core, the hash type and input bytes — the fields the web lab's
bit-by-bit view of the hash takes.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass, field
from typing import Any

from engine.appliance.control import ControlCore, ControlReport
from engine.appliance.events import Event, FragmentSteered, PacketArrived
from engine.appliance.verdicts import FlowOutcome
from engine.errors import GradingTimeout, TrafficError
from engine.exercises.base import apply_set
from engine.nic.rss import Nic
from engine.packet.model import FlowTuple, Packet, proto_name
from engine.paths.flows import FlowSpec
from engine.runs.run import Report, verify_scenario
from engine.scenarios.scenario import Scenario, load_scenario
from engine.scenarios.traffic import build_flow_specs


@dataclass(frozen=True, slots=True)
class PacketView:
    """A packet as the NIC saw it: the tuple and what RSS made of it (``hash``/``bucket``
    ``None`` when it was not hashed). Addresses as text, ports host-order integers."""

    src: str
    dst: str
    sport: int | None
    dport: int | None
    proto: str
    hash: int | None
    bucket: int | None
    core: int
    hash_type: str | None
    input_hex: str

    def as_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["hash_hex"] = None if self.hash is None else f"0x{self.hash:08x}"
        return data

    def line(self) -> str:
        """``198.51.100.7:4000 -> 192.0.2.10:80 tcp  hash 0x1234abcd  bucket 77  core 1``."""
        ports = (f"{self.src}:{self.sport} -> {self.dst}:{self.dport}"
                 if self.sport is not None else f"{self.src} -> {self.dst}")
        hashed = ("not hashed" if self.hash is None
                  else f"hash 0x{self.hash:08x}  bucket {self.bucket}")
        return f"{ports} {self.proto}  {hashed}  core {self.core}"


def packet_view(nic: Nic, tuple_: FlowTuple) -> PacketView:
    """Hash ``tuple_`` as ``nic`` does (hash types, transform, table) and say where it
    goes."""
    steering = nic.steer(Packet.from_tuple(0, tuple_))
    return PacketView(str(tuple_.src), str(tuple_.dst), tuple_.sport, tuple_.dport,
                      proto_name(tuple_.proto), steering.hash, steering.bucket, steering.core,
                      None if steering.hash_type is None else steering.hash_type.value,
                      steering.input.hex())


@dataclass(frozen=True, slots=True)
class FragmentFacts:
    """One direction's fragments of a flow: the core each fragment landed on (offset
    order), the core that processed the datagram, and the action (``none`` when the
    mode decides none)."""

    landing_cores: list[int]
    core: int | None
    action: str


@dataclass(frozen=True, slots=True)
class FlowFacts:
    """One flow of the variant's traffic as the trace path ran it (with the flows before
    it, so port tables hold what they would): its request, the tuple the server got, the
    response as it arrived, the outcome row, and its fragments per direction."""

    index: int
    spec: FlowSpec
    request: FlowTuple
    server_side: FlowTuple | None
    response: FlowTuple | None
    outcome: FlowOutcome | None
    fragments: dict[str, FragmentFacts] = field(default_factory=dict)


class Observer:
    """The engine's observations of one variant's ``scenario``, made once each, until
    ``deadline`` (``time.monotonic()`` seconds; ``None``: no limit)."""

    def __init__(self, scenario: Scenario, *, deadline: float | None = None,
                 timeout_s: float | None = None):
        self.scenario = scenario
        self.deadline = deadline
        self.timeout_s = timeout_s
        self.nic = scenario.build_nic()
        self.runs: dict[str, Report] = {}
        self.flows: dict[int, FlowFacts] = {}
        self.controls: dict[int, ControlReport] = {}
        self.specs_cache: list[FlowSpec] | None = None

    # -- time

    def check_time(self, *_: object) -> None:
        """Raise GradingTimeout once the deadline has passed (also a progress callback)."""
        if self.deadline is not None and time.monotonic() > self.deadline:
            raise GradingTimeout("timeout_s", f"grading within {self.timeout_s:g} s",
                                 detail="the engine did not finish in time; this attempt "
                                        "was not graded")

    # -- runs

    @property
    def specs(self) -> list[FlowSpec]:
        """The variant's flows, as the trace path takes them."""
        if self.specs_cache is None:
            self.specs_cache = build_flow_specs(self.scenario)
        return self.specs_cache

    def variant_scenario(self, changes: dict[str, Any] | None = None) -> Scenario:
        """The variant's scenario, or a copy with ``changes`` (a key path → value map,
        ``engine.exercises.base.apply_set``'s form) loaded as a scenario file.
        ScenarioError for a change the scenario schema refuses."""
        if not changes:
            return self.scenario
        data = apply_set(self.scenario.model_dump(mode="json"), changes)
        return load_scenario(json.dumps(data), source="answer",
                             base_dir=self.scenario.base_dir)

    def report(self, scenario: Scenario | None = None) -> Report:
        """A verification run (batch path, rows kept; the trace path for IPv6 fragments,
        which the batch path does not plan) of ``scenario`` (default the variant's), once
        per distinct scenario."""
        scenario = scenario or self.scenario
        key = scenario.model_dump_json()
        if key not in self.runs:
            self.check_time()
            try:
                report = verify_scenario(scenario, rows=True, on_progress=self.check_time)
            except TrafficError as error:
                if error.code != "ipv6_fragments_on_batch_path":
                    raise
                report = verify_scenario(scenario, rows=True, mode="trace",
                                         on_progress=self.check_time)
            self.runs[key] = report
        return self.runs[key]

    def flow(self, index: int) -> FlowFacts:
        """Flow ``index`` of the variant's traffic, run on the trace path after the flows
        before it. IndexError when the traffic has no such flow."""
        if index not in self.flows:
            specs = self.specs
            if not 0 <= index < len(specs):
                raise IndexError(f"expected a flow 0-{len(specs) - 1}, got {index}")
            self.flows[index] = self._trace_flow(specs, index)
        return self.flows[index]

    def _trace_flow(self, specs: list[FlowSpec], index: int) -> FlowFacts:
        events: list[Event] = []

        def keep(event: Event) -> None:
            self.check_time()
            if event.flow == specs[index].id:
                events.append(event)

        system = self.scenario.build_system()
        result = system.run_trace([spec.to_flow() for spec in specs[:index + 1]],
                                  on_event=keep, keep_events=False)
        outcome = next((o for o in result.outcomes if o.flow == specs[index].id), None)
        server_side = next((e.tuple for e in events if e.kind == "delivered-to-server"), None)
        response = next((e.tuple for e in events if e.kind == "response-sent"), None)
        return FlowFacts(index, specs[index], specs[index].request, server_side, response,
                         outcome, fragment_facts(events, outcome))

    def control(self, fail_core: int) -> ControlReport:
        """What the control core reports when ``fail_core`` fails while every flow of the
        variant is still open (flows kept open: no FIN, stopped before the idle
        timeout). TableError for a core that does not exist or the last one."""
        if fail_core not in self.controls:
            self.check_time()
            system = self.scenario.build_system()
            flows = [dataclasses.replace(spec.to_flow(), close="none") for spec in self.specs]
            system.run_trace(flows, on_event=self.check_time, keep_events=False,
                             until_us=system.config.idle_timeout_us // 2)
            self.controls[fail_core] = ControlCore(system).fail_core(fail_core)
        return self.controls[fail_core]


def fragment_facts(events: list[Event], outcome: FlowOutcome | None) -> dict[str, FragmentFacts]:
    """Per direction that arrived in fragments: where each fragment landed (in offset
    order), where the datagram was processed, and the action, from one flow's events."""
    direction_of = {e.packet: e.direction for e in events if isinstance(e, PacketArrived)}
    landed: dict[str, list[tuple[int, int]]] = {}
    for event in events:
        if isinstance(event, FragmentSteered) and event.packet in direction_of:
            landed.setdefault(direction_of[event.packet], []).append((event.offset, event.core))
    facts = {}
    for direction, pieces in landed.items():
        if outcome is None:
            core, action = None, None
        elif direction == "response":
            core, action = outcome.response_core, outcome.fragment_action
        else:
            core, action = outcome.request_core, outcome.request_fragment_action
        facts[direction] = FragmentFacts([c for _, c in sorted(pieces)], core, action or "none")
    return facts
