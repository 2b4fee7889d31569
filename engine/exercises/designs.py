"""Design questions (kinds 2, 3 and 5): the student designs, the engine runs the design.

A design answer is graded by what can be observed when the engine applies it to the
variant — never by comparing it with one stored solution — so every answer that works
scores (another fitting port, another table that meets the target):

* ``port`` — the response the chosen IP/port implies (source = the server the engine
  picked, destination = the answer) is hashed as it arrives; it must land on the target
  core, with the port in the scenario's range and not taken, and (nat) the IP one of
  the target core's. All or nothing.
* ``settings`` — the variant's scenario with the answer's settings, run on its own
  traffic; each check that holds earns its share (full marks only when all hold).
* ``table`` — the variant's scenario with the answer's indirection table, run likewise;
  a failed core must carry no load.

A run with no flows earns nothing. The reference solvers (``solve_*``) search what the
engine allows: the port range, the allowed settings in file order, and the control
core's greedy rebalancing of the measured bucket load.
"""

from __future__ import annotations

import itertools
from typing import Any

from engine.errors import RssLabError, ScenarioError, UnreadableAnswer, shown
from engine.exercises.limits import MAX_SETTING_COMBINATIONS
from engine.exercises.marking import Marked, text, whole, whole_list
from engine.exercises.observe import packet_view
from engine.packet.model import FlowTuple
from engine.runs.run import Report
from engine.scenarios.scenario import evaluate_checks

# ---------------------------------------------------------------------------- port (2)


def port_context(variant, question) -> dict[str, Any]:
    """What a port answer is judged against: the flow's policy, request core, the server
    the engine picked for it, the target core and the local IPs of that core."""
    facts = variant.observer.flow(question.flow)
    spec = facts.spec
    policy = next((s.policy for s in variant.scenario.services
                   if s.vip == str(spec.server_ip) and s.vport == spec.server_port), None)
    if policy not in ("nat", "usip") or facts.server_side is None or facts.outcome is None:
        raise LookupError(f"flow {question.flow} is not a served request of a nat or usip "
                          f"service")
    target = (facts.outcome.request_core if question.target_core == "request-core"
              else question.target_core)
    if not 0 <= target < variant.scenario.system.cores:
        raise LookupError(f"target_core {target} is not a core of the variant")
    return {"policy": policy, "server": facts.server_side, "client": spec.request,
            "target": target, "ips": variant.scenario.core_ips()[target]}


def implied_response(context: dict[str, Any], local_ip: str, port: int) -> FlowTuple:
    """The response the answer implies, as it arrives: from the server to the answer."""
    server = context["server"]
    return FlowTuple.of(server.dst, local_ip, server.dport, port, server.proto)


def port_problems(variant, question, context, local_ip: str, port: int) -> list[str]:
    """Why the chosen port (and IP) cannot be used, beyond where the response lands."""
    ports = variant.scenario.ports.range
    problems = []
    if not ports.low <= port <= ports.high:
        problems.append(f"port {port} is outside the port range {ports.low}-{ports.high}")
    if any(r.low <= port <= r.high for r in question.taken):
        problems.append(f"port {port} is taken")
    if context["policy"] == "nat" and local_ip not in context["ips"]:
        problems.append(f"{local_ip} is not an address of core {context['target']} "
                        f"({', '.join(context['ips'])})")
    return problems


def solve_port(variant, question) -> dict[str, Any]:
    context = port_context(variant, question)
    nic = variant.observer.nic
    local_ip = context["ips"][0] if context["policy"] == "nat" else str(context["client"].src)
    ports = variant.scenario.ports.range
    for port in range(ports.low, ports.high + 1):
        if any(r.low <= port <= r.high for r in question.taken):
            continue
        if packet_view(nic, implied_response(context, local_ip, port)).core == context["target"]:
            variant.observer.check_time()
            return {"local_ip": local_ip, "port": port} if context["policy"] == "nat" else {
                "port": port}
    raise LookupError(f"no free port in {ports.low}-{ports.high} lands a response on core "
                      f"{context['target']}")


def mark_port(variant, question, answer: dict) -> Marked:
    context = port_context(variant, question)
    port = whole(answer.get("port"), "port")
    if not 1 <= port <= 65535:
        raise UnreadableAnswer(f"port: expected a port 1-65535, got {shown(port)}")
    if context["policy"] == "nat":
        local_ip = text(answer.get("local_ip"), "local_ip")
    else:  # usip keeps the client's IP: an IP in the answer changes nothing
        local_ip = str(context["client"].src)
    try:
        response = implied_response(context, local_ip, port)
    except RssLabError:
        raise UnreadableAnswer(f"local_ip: expected an IPv4 or IPv6 address, got "
                         f"{shown(local_ip)}") from None
    view = packet_view(variant.observer.nic, response)
    problems = port_problems(variant, question, context, local_ip, port)
    lands = view.core == context["target"]
    details = [f"the response lands on core {view.core}"
               + (" (the target)" if lands else f", not core {context['target']}")] + problems
    return Marked(1.0 if lands and not problems else 0.0, details, [view.as_dict()])


# ---------------------------------------------------------------------------- runs (3, 5)

#: Where each setting a ``settings`` answer may change lives in a scenario (``*``: every
#: service).
SETTING_PATHS = {"policy": "services[*].policy", "key": "system.nic.key",
                 "transform": "system.nic.transform", "handoff": "handoff",
                 "strategy": "ports.strategy", "tables_per_ip": "ports.tables_per_ip",
                 "fragments": "system.nic.fragments",
                 "fragment_action": "system.nic.fragment_action",
                 "assemble_flag": "services[*].assemble_flag",
                 "hash_types": "system.nic.hash_types"}


def setting_changes(variant, settings: dict[str, Any]) -> dict[str, Any]:
    """Key path → value changes to the variant's scenario for ``settings``."""
    changes = {}
    for name, value in settings.items():
        path = SETTING_PATHS[name]
        if "[*]" in path:
            for index in range(len(variant.scenario.services)):
                changes[path.replace("[*]", f"[{index}]")] = value
        else:
            changes[path] = value
    return changes


def run_metrics(report: Report, failed: list[int]) -> dict[str, Any]:
    """The figures checks may name: the summary's, plus ``client_ip_kept`` (the share
    of requests that reached a server with the client's own IP), ``max_mean_load`` (the
    busiest core over the mean, failed cores left out) and ``failed_load``."""
    metrics = report.summary_dict()
    load = report.summary.core_load
    alive = [value for core, value in enumerate(load) if core not in failed] or [0]
    mean = sum(alive) / len(alive)
    metrics["max_mean_load"] = max(alive) / mean if mean else 0.0
    metrics["failed_load"] = sum(load[core] for core in failed if 0 <= core < len(load))
    served = kept = 0
    for row in report.rows or ():
        if row.rewritten is not None:
            served += 1
            kept += row.rewritten.src == row.request.src
    metrics["client_ip_kept"] = kept / served if served else 0.0
    return metrics


def mark_run(variant, question, changes: dict[str, Any], failed: list[int]) -> Marked:
    """Run the variant with ``changes``; a share per check of the question that holds."""
    observer = variant.observer
    try:
        scenario = observer.variant_scenario(changes)
    except ScenarioError as error:
        raise UnreadableAnswer("; ".join(p.message if not p.path else f"{p.path}: {p.message}"
                                   for p in error.problems[:3])) from None
    report = observer.report(scenario)
    if report.summary.flows == 0:
        return Marked(0.0, ["the run carried no flows: nothing to grade"])
    checks = dict(question.checks)
    if failed:
        checks["failed_load"] = "== 0"
    results = evaluate_checks(checks, run_metrics(report, failed))
    details = [f"{'✓' if r.passed else '✗'} {r.name} (actual {r.actual:g})"
               if r.actual is not None else f"✗ {r.name} (not measured)" for r in results]
    passed = sum(r.passed for r in results)
    return Marked(passed / len(results), details, _row_packets(scenario, report))


def _row_packets(scenario, report: Report) -> list[dict[str, Any]]:
    rows = report.rows or ()
    if not len(rows):
        return []
    row = next((r for r in rows if r.verdict != "symmetric"), rows[0])
    nic = scenario.build_nic()
    packets = [{"direction": "request", **packet_view(nic, row.request).as_dict()}]
    if row.rewritten is not None:
        packets.append({"direction": "response",
                        **packet_view(nic, row.rewritten.reversed()).as_dict()})
    return packets


# ---------------------------------------------------------------------------- settings (3)


def read_settings(question, answer: dict) -> dict[str, Any]:
    """The answer's settings, each checked against the question's allowed values."""
    settings = {}
    for name, allowed in question.fields.items():
        if name in answer:
            value = answer[name]
            if value not in allowed:
                raise UnreadableAnswer(f"{name}: expected one of "
                                 f"{', '.join(map(str, allowed))}, got {shown(value)}")
            settings[name] = value
    return settings


def setting_combinations(question) -> list[dict[str, Any]]:
    """Every combination of the allowed values, in file order (at most
    MAX_SETTING_COMBINATIONS; the loader's lint keeps files within it)."""
    names = list(question.fields)
    combos = itertools.islice(itertools.product(*(question.fields[n] for n in names)),
                              MAX_SETTING_COMBINATIONS)
    return [dict(zip(names, values)) for values in combos]


def solve_settings(variant, question) -> dict[str, Any]:
    for settings in setting_combinations(question):
        marked = mark_run(variant, question, setting_changes(variant, settings), [])
        if marked.fraction >= 1.0:
            return settings
    raise LookupError("no combination of the allowed settings meets every check")


def mark_settings(variant, question, answer: dict) -> Marked:
    settings = read_settings(question, answer)
    return mark_run(variant, question, setting_changes(variant, settings), [])


# ---------------------------------------------------------------------------- table (5)


def solve_table(variant, question) -> dict[str, Any]:
    table = variant.scenario.build_table()
    failed = set(question.failed_cores)
    report = variant.observer.report()
    candidates = [table.rebalanced(report.buckets, exclude=failed)]
    if failed:
        candidates.append(table.without_cores(failed))
    for candidate in candidates:
        answer = {"table": list(candidate.buckets)}
        if mark_table(variant, question, answer).fraction >= 1.0:
            return answer
    raise LookupError("the control core's rebalanced table does not meet the checks")


def mark_table(variant, question, answer: dict) -> Marked:
    size = 2 ** variant.scenario.system.nic.hash_bits
    table = whole_list(answer.get("table"), "table", length=size)
    cores = variant.scenario.system.cores
    bad = next((i for i, core in enumerate(table) if not 0 <= core < cores), None)
    if bad is not None:
        raise UnreadableAnswer(f"table[{bad}]: expected a core 0-{cores - 1}, got {table[bad]}")
    return mark_run(variant, question, {"system.nic.table": table},
                    list(question.failed_cores))
