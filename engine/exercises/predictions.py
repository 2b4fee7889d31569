"""Prediction questions (kinds 1, 4, 6 and 7): the student predicts, the engine observes.

Each kind has a ``solve_*`` (the engine's value for the variant, as the answer ``grade``
reads) and a ``mark_*`` (the answer against the value observed now, never a value
written in the file). Concept questions (kind 7) are the exception by nature: their
right choice or number is the file's, a number computed from the variant's parameters.

* ``steering`` — a packet's hash, bucket and core: one share per field asked;
* ``fragments`` — where each fragment lands, where the datagram is processed, and
  whether it is Assembled or Bridged: one share per field asked;
* ``number`` — a figure of the variant's run, within a tolerance: all or nothing;
* ``concept`` — one right choice (all or nothing), several (a share per right choice
  less one per wrong one, never below 0: full marks only for exactly the right set),
  or a number within a tolerance.
"""

from __future__ import annotations

from typing import Any

from engine.errors import UnreadableAnswer
from engine.exercises.marking import (
    Marked,
    number,
    share,
    text,
    whole,
    whole_list,
)
from engine.exercises.observe import FragmentFacts, packet_view
from engine.exercises.parameters import evaluate
from engine.packet.model import FlowTuple

# ---------------------------------------------------------------------------- steering (1)


def steering_packet(variant, question) -> FlowTuple:
    """The packet a steering question is about: the one it gives, or its flow's request
    or response as it arrives at the NIC."""
    if question.packet is not None:
        packet = question.packet
        return FlowTuple.of(packet.src, packet.dst, packet.sport, packet.dport, packet.proto)
    facts = variant.observer.flow(question.flow)
    tuple_ = facts.request if question.direction == "request" else facts.response
    if tuple_ is None:
        raise LookupError(f"flow {question.flow} has no response (its request was refused)")
    return tuple_


def solve_steering(variant, question) -> dict[str, Any]:
    view = packet_view(variant.observer.nic, steering_packet(variant, question))
    values = {"hash": f"0x{view.hash:08x}" if view.hash is not None else None,
              "bucket": view.bucket, "core": view.core}
    return {name: values[name] for name in question.ask}


def mark_steering(variant, question, answer: dict) -> Marked:
    view = packet_view(variant.observer.nic, steering_packet(variant, question))
    expected = {"hash": view.hash, "bucket": view.bucket, "core": view.core}
    details, right = [], 0
    for name in question.ask:
        given = answer.get(name)
        value = None if given is None else whole(given, name)
        ok = value == expected[name]
        right += ok
        details.append(f"{name}: {'right' if ok else 'not right'}")
    return Marked(share(right, len(question.ask)), details, [view.as_dict()],
                  {name: expected[name] for name in question.ask})


# ---------------------------------------------------------------------------- fragments (4)


def fragment_facts(variant, question) -> FragmentFacts:
    facts = variant.observer.flow(question.flow).fragments.get(question.direction)
    if facts is None:
        raise LookupError(f"flow {question.flow}'s {question.direction} is not fragmented "
                          f"in this variant")
    return facts


def solve_fragments(variant, question) -> dict[str, Any]:
    facts = fragment_facts(variant, question)
    values = {"landing_cores": list(facts.landing_cores), "core": facts.core,
              "action": facts.action}
    return {name: values[name] for name in question.ask}


def mark_fragments(variant, question, answer: dict) -> Marked:
    facts = fragment_facts(variant, question)
    expected = {"landing_cores": list(facts.landing_cores), "core": facts.core,
                "action": facts.action}
    readers = {"landing_cores": lambda v: whole_list(v, "landing_cores"),
               "core": lambda v: whole(v, "core"),
               "action": lambda v: text(v, "action").lower()}
    details, right = [], 0
    for name in question.ask:
        given = answer.get(name)
        ok = given is not None and readers[name](given) == expected[name]
        right += ok
        details.append(f"{name}: {'right' if ok else 'not right'}")
    flow = variant.observer.flow(question.flow)
    tuple_ = flow.response if question.direction == "response" else flow.request
    packets = [] if tuple_ is None else [packet_view(variant.observer.nic, tuple_).as_dict()]
    return Marked(share(right, len(question.ask)), details, packets,
                  {name: expected[name] for name in question.ask})


# ---------------------------------------------------------------------------- number (6)


def quantity_value(variant, question) -> float:
    """The figure a number question asks for, observed on the variant."""
    name = question.quantity
    observer = variant.observer
    if name.startswith("control_"):
        report = observer.control(question.fail_core)
        figure = {"control_dropped_sessions": report.dropped_sessions,
                  "control_moved_buckets": len(report.moved_buckets),
                  "control_misdirected": report.misdirected}
        return float(figure[name])
    if name == "buckets_of_core":
        return float(len(variant.scenario.build_table().buckets_of(question.core)))
    report = observer.report()
    if name == "fitting_ports":
        return float(report.fitting_ports[question.core])
    if name == "core_load":
        return float(report.summary.core_load[question.core])
    return float(report.summary_dict()[name])


def within(given: float, value: float, question) -> bool:
    """``given`` is ``value`` within the question's absolute or relative tolerance."""
    allowed = max(question.tolerance, abs(value) * question.tolerance_pct / 100)
    return abs(given - value) <= allowed + 1e-9


def solve_number(variant, question) -> dict[str, Any]:
    value = quantity_value(variant, question)
    return {"value": int(value) if value.is_integer() else value}


def mark_number(variant, question, answer: dict) -> Marked:
    value = quantity_value(variant, question)
    given = answer.get("value")
    ok = given is not None and within(number(given, "value"), value, question)
    return Marked(1.0 if ok else 0.0, [f"value: {'right' if ok else 'not right'}"],
                  expected={"value": value})


# ---------------------------------------------------------------------------- concept (7)


def _correct_ids(question) -> list[str]:
    return [choice.id for choice in question.choices if choice.correct]


def solve_concept(variant, question) -> dict[str, Any]:
    if question.choices is None:
        return {"value": evaluate(question.number.value, variant.values)}
    right = _correct_ids(question)
    return {"choices": right} if len(right) > 1 else {"choice": right[0]}


def mark_concept(variant, question, answer: dict) -> Marked:
    if question.choices is None:
        value = evaluate(question.number.value, variant.values)
        given = answer.get("value")
        ok = given is not None and abs(number(given, "value") - value) <= (
            question.number.tolerance + 1e-9)
        return Marked(1.0 if ok else 0.0, [f"value: {'right' if ok else 'not right'}"],
                      expected={"value": value})
    return _mark_choices(question, answer)


def _mark_choices(question, answer: dict) -> Marked:
    right = set(_correct_ids(question))
    multiple = len(right) > 1
    given = answer.get("choices" if multiple else "choice")
    chosen = _chosen(given, multiple)
    known = {choice.id: choice for choice in question.choices}
    unknown = sorted(chosen - set(known))
    if unknown:
        raise UnreadableAnswer(f"choice: expected one of {', '.join(known)}, got {unknown[0]!r}")
    details = [f"{cid}: {known[cid].feedback}" if known[cid].feedback else cid
               for cid in sorted(chosen)]
    if not multiple:
        fraction = 1.0 if chosen == right else 0.0
    else:
        fraction = max(0.0, (len(chosen & right) - len(chosen - right)) / len(right))
    return Marked(fraction, details, expected={"choices": sorted(right)})


def _chosen(given: object, multiple: bool) -> set[str]:
    if given is None:
        return set()
    if multiple:
        if not isinstance(given, list) or len(given) > 64:
            raise UnreadableAnswer("choices: expected a list of choice ids")
        return {text(item, "choices") for item in given}
    return {text(given, "choice")}
