"""Property test over every shipped exercise: the engine's reference answer scores full
marks, and for random answers (hypothesis) each question scores full marks exactly when an
independent check of its condition by the engine holds.

The independent checks call the engine directly (``Nic.steer``, the trace ``System``,
``verify_scenario``, ``ControlCore``), not the exercise package's markers.
``RSSLAB_EXERCISE_SEEDS`` sets the seeds per exercise (default 10;
``RSSLAB_EXERCISE_SEEDS=50 pytest -m exercises tests/engine/test_exercises_property.py -s``
prints the counts)."""

from __future__ import annotations

import dataclasses
import json
import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.appliance.control import ControlCore
from engine.exercises import build_variant, grade, list_pack, load_exercise_file, solve
from engine.exercises.designs import setting_changes
from engine.exercises.parameters import evaluate
from engine.packet.model import FlowTuple, Packet
from engine.runs.run import verify_scenario
from engine.scenarios.scenario import OPERATORS, load_scenario, parse_check
from engine.scenarios.traffic import build_flow_specs

SEEDS = int(os.environ.get("RSSLAB_EXERCISE_SEEDS", "10"))
PACK = {path.stem: load_exercise_file(path) for path in list_pack()}
COUNTS: dict[str, int] = {"variants": 0, "answers": 0, "full": 0, "not_full": 0}


@pytest.fixture(scope="module", autouse=True)
def report_counts():
    yield
    print(f"\nexercise property: {COUNTS} over {len(PACK)} exercises, {SEEDS} seeds each")


# ---------------------------------------------------------------------------- the engine, directly

def trace_flow(scenario, index):
    specs = build_flow_specs(scenario)
    system = scenario.build_system()
    result = system.run_trace([s.to_flow() for s in specs[:index + 1]])
    events = [e for e in result.events if e.flow == specs[index].id]
    outcome = next(o for o in result.outcomes if o.flow == specs[index].id)
    return specs[index], events, outcome


def steer(scenario, tuple_):
    return scenario.build_nic().steer(Packet.from_tuple(0, tuple_))


def with_changes(scenario, changes):
    data = scenario.model_dump(mode="json")
    for path, value in changes.items():
        node = data
        parts = path.replace("]", "").replace("[", ".").split(".")
        for part in parts[:-1]:
            node = node[int(part)] if part.isdigit() else node.setdefault(part, {})
        node[parts[-1]] = value
    return load_scenario(json.dumps(data))


def checks_hold(report, checks, failed=()):
    metrics = dict(report.summary.as_dict())
    load = report.summary.core_load
    alive = [v for c, v in enumerate(load) if c not in failed]
    metrics["max_mean_load"] = max(alive) / (sum(alive) / len(alive)) if sum(alive) else 0
    metrics["failed_load"] = sum(load[c] for c in failed)
    served = [r for r in report.rows if r.rewritten is not None]
    metrics["client_ip_kept"] = (sum(r.rewritten.src == r.request.src for r in served)
                                 / len(served)) if served else 0
    conditions = [(m, c) for m, spec in checks.items()
                  for c in (spec if isinstance(spec, list) else [spec])]
    conditions += [("failed_load", "== 0")] if failed else []
    return report.summary.flows > 0 and all(
        OPERATORS[parse_check(c)[0]](metrics[m], parse_check(c)[1]) for m, c in conditions)


def truth(variant, question):
    """The engine's value(s) a prediction must match, computed directly."""
    scenario = variant.scenario
    if question.kind == "steering":
        if question.packet is not None:
            p = question.packet
            tuple_ = FlowTuple.of(p.src, p.dst, p.sport, p.dport, p.proto)
        else:
            _, events, _ = trace_flow(scenario, question.flow)
            tuple_ = next(e.tuple for e in events if (e.kind == "packet-arrived"
                                                      and e.direction == question.direction))
        s = steer(scenario, tuple_)
        return {"hash": s.hash, "bucket": s.bucket, "core": s.core}
    if question.kind == "fragments":
        _, events, outcome = trace_flow(scenario, question.flow)
        pieces = {e.packet for e in events if e.kind == "packet-arrived"
                  and e.direction == question.direction}
        landed = sorted((e.offset, e.core) for e in events
                        if e.kind == "fragment-steered" and e.packet in pieces)
        response = question.direction == "response"
        action = outcome.fragment_action if response else outcome.request_fragment_action
        return {"landing_cores": [c for _, c in landed],
                "core": outcome.response_core if response else outcome.request_core,
                "action": action or "none"}
    return {"value": number_truth(variant, question)}


def number_truth(variant, question):
    scenario = variant.scenario
    if question.kind == "concept":
        return evaluate(question.number.value, variant.values)
    q = question.quantity
    if q.startswith("control_"):
        system = scenario.build_system()
        flows = [dataclasses.replace(s.to_flow(), close="none")
                 for s in build_flow_specs(scenario)]
        system.run_trace(flows, until_us=1_000_000)
        report = ControlCore(system).fail_core(question.fail_core)
        return {"control_dropped_sessions": report.dropped_sessions,
                "control_moved_buckets": len(report.moved_buckets),
                "control_misdirected": report.misdirected}[q]
    if q == "buckets_of_core":
        return len(scenario.build_table().buckets_of(question.core))
    report = verify_scenario(scenario)
    if q == "fitting_ports":
        return report.fitting_ports[question.core]
    if q == "core_load":
        return report.summary.core_load[question.core]
    return report.summary.as_dict()[q]


def holds(variant, question, answer):
    """Whether ``answer`` meets the question's condition, by the engine directly."""
    kind = question.kind
    if kind in ("steering", "fragments"):
        expected = truth(variant, question)
        return all(_same(answer.get(f), expected[f]) for f in question.ask)
    if kind == "number":
        value = number_truth(variant, question)
        allowed = max(question.tolerance, abs(value) * question.tolerance_pct / 100)
        return abs(float(answer["value"]) - value) <= allowed + 1e-9
    if kind == "concept":
        if question.choices is None:
            value = number_truth(variant, question)
            return abs(float(answer["value"]) - value) <= question.number.tolerance + 1e-9
        right = {c.id for c in question.choices if c.correct}
        given = answer.get("choices", [answer.get("choice")])
        return set(given) == right
    if kind == "port":
        return port_holds(variant, question, answer)
    scenario = variant.scenario
    if kind == "settings":
        changed = with_changes(scenario, setting_changes(variant, answer))
        return checks_hold(verify_scenario(changed, rows=True), dict(question.checks))
    changed = with_changes(scenario, {"system.nic.table": answer["table"]})
    return checks_hold(verify_scenario(changed, rows=True), dict(question.checks),
                       list(question.failed_cores))


def _same(given, expected):
    if given is None:
        return False
    if isinstance(given, str) and given.startswith("0x"):
        given = int(given, 16)
    return given == expected


def port_holds(variant, question, answer):
    scenario = variant.scenario
    spec, events, outcome = trace_flow(scenario, question.flow)
    server = next(e.tuple for e in events if e.kind == "delivered-to-server")
    policy = next(s.policy for s in scenario.services if s.vip == str(spec.server_ip))
    local_ip = answer["local_ip"] if policy == "nat" else str(spec.client_ip)
    target = (outcome.request_core if question.target_core == "request-core"
              else question.target_core)
    port = answer["port"]
    lands = steer(scenario, FlowTuple.of(server.dst, local_ip, server.dport, port,
                                         server.proto)).core == target
    ports = scenario.ports.range
    return (lands and ports.low <= port <= ports.high
            and not any(r.low <= port <= r.high for r in question.taken)
            and (policy != "nat" or local_ip in scenario.core_ips()[target]))


# ---------------------------------------------------------------------------- random answers

def random_answer(draw, variant, question, reference):
    kind = question.kind
    if kind in ("steering", "fragments", "number") or (
            kind == "concept" and question.choices is None):
        return {name: (value if draw(st.booleans()) else _nudge(draw, value))
                for name, value in reference.items()}
    if kind == "concept":
        ids = [c.id for c in question.choices]
        if "choice" in reference:
            return {"choice": draw(st.sampled_from(ids))}
        return {"choices": draw(st.lists(st.sampled_from(ids), unique=True))}
    if kind == "port":
        answer = dict(reference)
        if draw(st.booleans()):
            answer["port"] = draw(st.integers(1024, 65535))
        if "local_ip" in answer and draw(st.booleans()):
            answer["local_ip"] = draw(st.sampled_from(
                [ip for ips in variant.scenario.core_ips() for ip in ips]))
        return answer
    if kind == "settings":
        return {name: draw(st.sampled_from(values)) for name, values in question.fields.items()}
    table = list(reference["table"])
    if draw(st.booleans()):
        cores = variant.scenario.system.cores
        for _ in range(draw(st.integers(1, 4))):
            table[draw(st.integers(0, len(table) - 1))] = draw(st.integers(0, cores - 1))
    return {"table": table}


def _nudge(draw, value):
    if isinstance(value, list):
        return [v + draw(st.integers(-1, 1)) for v in value] if value else [0]
    if isinstance(value, str) and value.startswith("0x"):
        return f"0x{int(value, 16) ^ draw(st.integers(0, 255)):08x}"
    if isinstance(value, str):
        return draw(st.sampled_from(["assemble", "bridge", "none"]))
    if value is None:
        return 0
    return value + draw(st.sampled_from([-2, -1, 1, 3]))


@pytest.mark.exercises
@pytest.mark.parametrize("name", sorted(PACK))
@settings(max_examples=SEEDS, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=st.data())
def test_reference_full_marks_and_random_answers_match_the_engine(name, data):
    exercise = PACK[name]
    seed = data.draw(st.integers(0, 2 ** 31), label="seed")
    variant = build_variant(exercise, seed)
    reference = solve(exercise, seed, variant=variant)
    full = grade(exercise, seed, reference, variant=variant)
    assert full.score == pytest.approx(exercise.max_score), [
        (q.id, q.outcome, q.details) for q in full.questions]
    answers = {q.id: random_answer(data.draw, variant, q, reference[q.id])
               for q in variant.questions}
    graded = grade(exercise, seed, answers, variant=variant)
    COUNTS["variants"] += 1
    for question, result in zip(variant.questions, graded.questions):
        if result.outcome == "invalid":  # a nudged value of the wrong form: never full
            assert result.points == 0
            continue
        expected = holds(variant, question, answers[question.id])
        COUNTS["answers"] += 1
        COUNTS["full" if expected else "not_full"] += 1
        assert (result.points >= question.points - 1e-9) == expected, (
            question.id, answers[question.id], result.outcome, result.details)
