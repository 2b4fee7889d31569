"""Variants: one exercise, one seed, one student's version of it.

``build_variant`` draws the parameters from the seed, builds the variant's scenario and
substitutes the parameters into the prompt and every question; the same exercise and
seed give the same variant, on any machine. ``variant_seed`` derives a student's seed
from a server-side secret (HMAC-SHA256), so nobody can compute another student's
variant without the secret::

    >>> variant_seed(b"secret", "rss-basics", "alice", 0) == variant_seed(
    ...     b"secret", "rss-basics", "alice", 0)
    True
    >>> variant_seed(b"secret", "rss-basics", "alice", 0) != variant_seed(
    ...     b"secret", "rss-basics", "alice", 1)
    True

``student_view`` is what a student may see of a variant: the prompt, the scenario, each
question with the fields its answer may set — never a solution, a correct choice or a
hint's text (``hint_text`` reveals one on request).
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from engine.errors import ConfigError, ExerciseError, Problem
from engine.exercises.base import build_scenario, exercise_lines, exercise_source
from engine.exercises.observe import Observer
from engine.exercises.parameters import draw_parameters, substitute
from engine.exercises.schema import KIND_NUMBERS, MODELS, Exercise
from engine.scenarios.scenario import Scenario
from engine.scenarios.scenario.document import line_of
from engine.scenarios.scenario.problems import branch_tag, problems_from

#: Seeds are non-negative 63-bit integers (they fit a signed 64-bit database column).
MAX_SEED = 2 ** 63 - 1

_TAG = branch_tag(MODELS)


def variant_seed(secret: bytes, exercise_id: str, student_id: str, reset: int) -> int:
    """A student's variant seed: the first 63 bits of HMAC-SHA256(``secret``, exercise
    id, student id, reset counter), fields separated by NUL so no two triples collide.
    ConfigError for a secret that is not bytes (or is empty), or a negative ``reset``."""
    if not isinstance(secret, bytes | bytearray) or not secret:
        raise ConfigError("secret", "non-empty bytes", type(secret).__name__)
    if not isinstance(reset, int) or isinstance(reset, bool) or reset < 0:
        raise ConfigError("reset", "a whole number, 0 or more", reset)
    message = "\0".join((str(exercise_id), str(student_id), str(reset))).encode()
    digest = hmac.new(bytes(secret), message, hashlib.sha256).digest()
    return int.from_bytes(digest[:8], "big") & MAX_SEED


def check_seed(seed: object) -> int:
    """``seed`` as a variant seed; ConfigError names the field otherwise."""
    if not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed <= MAX_SEED:
        raise ConfigError("seed", f"a whole number 0-{MAX_SEED}", seed)
    return seed


@dataclass
class Variant:
    """One variant: the ``exercise``, its ``seed``, the drawn ``values``, the
    ``scenario`` it runs, the ``prompt`` and ``questions`` with the parameters
    substituted. ``observer`` holds the engine's observations of it (made on demand,
    kept for the variant's life)."""

    exercise: Exercise
    seed: int
    values: dict[str, Any]
    scenario: Scenario
    prompt: str
    questions: list
    observer: Observer = field(repr=False)

    def question(self, question_id: str):
        """The variant's question ``question_id`` (KeyError when there is none)."""
        for question in self.questions:
            if question.id == question_id:
                return question
        raise KeyError(question_id)


def build_variant(exercise: Exercise, seed: int) -> Variant:
    """The variant ``seed`` of ``exercise``. Raises ConfigError for a bad seed and
    ExerciseError when the parameters drawn make a scenario or question invalid (each
    problem at the exercise file's line)."""
    seed = check_seed(seed)
    values = draw_parameters(exercise.parameters, seed=seed)
    scenario = build_scenario(exercise, values)
    questions, problems = [], []
    for index, question in enumerate(exercise.questions):
        data = substitute(question.model_dump(mode="python"), values)
        try:
            questions.append(type(question).model_validate(data))
        except ValidationError as error:
            problems += _at_question(exercise, index, error)
    if problems:
        raise ExerciseError(exercise_source(exercise), [
            Problem(p.path, p.line, f"{p.message} (variant seed {seed})") for p in problems])
    return Variant(exercise, seed, values, scenario, substitute(exercise.prompt, values),
                   questions, Observer(scenario))


def _at_question(exercise: Exercise, index: int, error: ValidationError) -> list[Problem]:
    lines = exercise_lines(exercise)
    found = problems_from(error.errors(), {}, root=type(exercise.questions[index]), tag=_TAG)
    located = []
    for problem in found:
        path = f"questions[{index}]" + (f".{problem.path}" if problem.path else "")
        located.append(Problem(path, line_of(("questions", index), lines), problem.message))
    return located


# ---------------------------------------------------------------------------- the student's view

def answer_fields(question) -> list[str]:
    """The fields an answer to ``question`` may set (its allow-list)."""
    kind = question.kind
    if kind in ("steering", "fragments"):
        return list(question.ask)
    if kind == "port":
        return ["local_ip", "port"]
    if kind == "settings":
        return list(question.fields)
    if kind == "table":
        return ["table"]
    if kind == "concept" and question.choices is not None:
        return ["choices"] if sum(c.correct for c in question.choices) > 1 else ["choice"]
    return ["value"]


def _question_view(variant: Variant, question) -> dict[str, Any]:
    view: dict[str, Any] = {
        "id": question.id, "kind": question.kind, "kind_number": KIND_NUMBERS[question.kind],
        "prompt": question.prompt, "points": question.points, "attempts": question.attempts,
        "hints": [{"index": i, "cost": hint.cost} for i, hint in enumerate(question.hints)],
        "answer_fields": answer_fields(question)}
    view.update(_givens(variant, question))
    return view


def _givens(variant: Variant, question) -> dict[str, Any]:
    """What a question states beyond its prompt, by kind (no solution in any of it)."""
    kind = question.kind
    if kind == "steering":
        return {"packet": _packet_given(variant, question)}
    if kind in ("port", "fragments"):
        flow = variant.observer.specs[question.flow]
        given = {"flow": {"index": question.flow, "request": str(flow.request)}}
        if kind == "port":
            given.update(target_core=question.target_core,
                         taken=[[r.low, r.high] for r in question.taken])
        else:
            given["direction"] = question.direction
        return given
    if kind == "settings":
        return {"allowed": dict(question.fields), "checks": dict(question.checks)}
    if kind == "table":
        return {"checks": dict(question.checks), "failed_cores": list(question.failed_cores),
                "buckets": 2 ** variant.scenario.system.nic.hash_bits}
    if kind == "number":
        return {"quantity": question.quantity, "core": question.core,
                "fail_core": question.fail_core, "tolerance": question.tolerance,
                "tolerance_pct": question.tolerance_pct}
    if question.choices is not None:
        return {"choices": [{"id": c.id, "text": c.text} for c in question.choices]}
    return {"tolerance": question.number.tolerance}


def _packet_given(variant: Variant, question) -> dict[str, Any]:
    if question.packet is not None:
        return {**question.packet.model_dump(), "direction": "request"}
    facts = variant.observer.flow(question.flow)
    tuple_ = facts.request if question.direction == "request" else facts.response
    if tuple_ is None:
        return {"flow": question.flow, "direction": question.direction}
    return {"src": str(tuple_.src), "dst": str(tuple_.dst), "sport": tuple_.sport,
            "dport": tuple_.dport, "proto": "udp" if tuple_.proto == 17 else "tcp",
            "flow": question.flow, "direction": question.direction}


def student_view(variant: Variant) -> dict[str, Any]:
    """The variant as a student sees it (JSON-ready): title, prompt, parameters, the
    scenario to open in the lab, and each question's prompt, points, attempts, hint costs,
    answer fields and givens. No solution, correct choice or hint text."""
    exercise = variant.exercise
    return {"exercise": exercise.id, "title": exercise.title, "seed": variant.seed,
            "prompt": variant.prompt, "parameters": dict(variant.values),
            "scenario": variant.scenario.model_dump(mode="json"),
            "max_score": exercise.max_score,
            "questions": [_question_view(variant, q) for q in variant.questions]}


def hint_text(variant: Variant, question_id: str, index: int) -> str:
    """Hint ``index`` of question ``question_id``, parameters substituted. ConfigError
    for an unknown question or hint."""
    try:
        question = variant.question(question_id)
    except KeyError:
        raise ConfigError("question", "a question of the exercise", question_id) from None
    if not isinstance(index, int) or not 0 <= index < len(question.hints):
        raise ConfigError("hint", f"a hint 0-{len(question.hints) - 1}", index)
    return question.hints[index].text


__all__ = ["MAX_SEED", "Variant", "answer_fields", "build_variant", "check_seed",
           "hint_text", "student_view", "variant_seed"]
