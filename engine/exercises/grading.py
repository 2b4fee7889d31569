"""Solving and grading one variant; the answers file both speak.

``solve`` computes a reference answer to every question with the engine, for one
variant; ``grade`` marks a student's answers against what the engine observes of that
variant now (predictions) or when it runs the answer (designs). Both take the same
answers mapping, ``{question id: {field: value}}``, which an answers file holds::

    schema_version: 1
    exercise: rss-basics
    seed: 7
    answers:
      q1: {hash: "0x51ccc178", bucket: 120, core: 0}
      q2: {local_ip: 10.100.0.3, port: 40007}
    hints: {q1: 1}          # hints revealed (their costs come off)
    attempts: {q2: 2}       # which attempt this is (default 1)

For each question the grade says the points earned, the outcome (``correct``,
``partial``, ``incorrect``, ``unanswered``, ``invalid`` — a field outside the
question's allow-list or a value of the wrong form —, ``no-attempts-left``, ``error`` —
a variant the engine cannot grade), the file's feedback for the outcome, a line per
condition, the packets the answer implies (hash, bucket, core) and, once revealed (a
right answer, or the last attempt), the engine's values. Grading stops with
GradingTimeout past ``timeout_s``: that attempt is not graded and must not be counted.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from engine.errors import ExerciseError, Problem, RssLabError, UnreadableAnswer
from engine.exercises import designs, predictions
from engine.exercises.base import exercise_lines, exercise_source
from engine.exercises.limits import (
    GRADE_TIMEOUT_S,
    MAX_ANSWERS_BYTES,
    MAX_ATTEMPTS,
    MAX_HINTS,
    MAX_QUESTIONS,
)
from engine.exercises.marking import Marked
from engine.exercises.schema import ENGINE_KINDS, KIND_NUMBERS, Exercise
from engine.exercises.variant import Variant, answer_fields, build_variant
from engine.scenarios.scenario.document import line_of, parse_document
from engine.scenarios.scenario.fields import Name
from engine.scenarios.scenario.problems import problems_from

Marker = Callable[[Variant, Any, dict], Marked]
Solver = Callable[[Variant, Any], dict]

#: Each kind's reference solver and marker.
KINDS: dict[str, tuple[Solver, Marker]] = {
    "steering": (predictions.solve_steering, predictions.mark_steering),
    "port": (designs.solve_port, designs.mark_port),
    "settings": (designs.solve_settings, designs.mark_settings),
    "fragments": (predictions.solve_fragments, predictions.mark_fragments),
    "table": (designs.solve_table, designs.mark_table),
    "number": (predictions.solve_number, predictions.mark_number),
    "concept": (predictions.solve_concept, predictions.mark_concept),
}
#: Kinds whose packets carry the prediction itself: hidden until revealed.
PREDICTION_KINDS = frozenset({"steering", "fragments"})
_HIDDEN = ("hash", "hash_hex", "bucket", "core")


# ---------------------------------------------------------------------------- answers files

class AnswersFile(BaseModel):
    """An answers file (what ``solve`` prints and ``grade`` reads)."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    schema_version: Literal[1]
    exercise: Name | None = None
    seed: Annotated[int, Field(ge=0, le=2 ** 63 - 1)] | None = None
    answers: dict[Name, dict[Annotated[str, Field(max_length=64)], Any]] = Field(
        default_factory=dict, max_length=MAX_QUESTIONS)
    hints: dict[Name, Annotated[int, Field(ge=0, le=MAX_HINTS)]] = Field(
        default_factory=dict, max_length=MAX_QUESTIONS)
    attempts: dict[Name, Annotated[int, Field(ge=1, le=MAX_ATTEMPTS)]] = Field(
        default_factory=dict, max_length=MAX_QUESTIONS)


def load_answers(text: str | bytes, *, source: str = "<answers>") -> AnswersFile:
    """An answers file from YAML or JSON text, through the hardened reader. Raises
    ExerciseError listing every problem with its line and key path."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    if len(text.encode("utf-8", "surrogatepass")) > MAX_ANSWERS_BYTES:
        raise ExerciseError(source, [Problem("", None, f"expected at most "
                                                       f"{MAX_ANSWERS_BYTES} bytes")])
    problems: list[Problem] = []
    try:
        data, lines = parse_document(text, source, problems)
    except RssLabError as error:
        raise ExerciseError(source, getattr(error, "problems", [])) from None
    if not isinstance(data, dict):
        raise ExerciseError(source, [Problem("", 1, "expected a mapping with answers")])
    try:
        answers = AnswersFile.model_validate(data)
    except ValidationError as error:
        raise ExerciseError(source, problems + problems_from(error.errors(), lines,
                                                             root=AnswersFile)) from None
    if problems:
        raise ExerciseError(source, problems)
    return answers


def answers_document(exercise: Exercise, seed: int, answers: Mapping[str, Any]) -> str:
    """The answers file for ``answers`` (YAML), as ``grade`` reads it back."""
    import yaml

    data = {"schema_version": 1, "exercise": exercise.id, "seed": seed,
            "answers": {key: dict(value) for key, value in answers.items()}}
    return yaml.safe_dump(data, sort_keys=False, default_flow_style=None, width=100)


# ---------------------------------------------------------------------------- grades

@dataclass
class QuestionGrade:
    """One question's grade (see the module docstring for ``outcome``)."""

    id: str
    kind: str
    points: float
    max_points: float
    outcome: str
    feedback: str
    details: list[str] = field(default_factory=list)
    packets: list[dict[str, Any]] = field(default_factory=list)
    expected: dict[str, Any] | None = None
    hint_cost: float = 0.0
    attempt: int = 1
    attempts_left: int = 0

    @property
    def engine_graded(self) -> bool:
        return self.kind in ENGINE_KINDS

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "kind": self.kind, "kind_number": KIND_NUMBERS[self.kind],
                "engine_graded": self.engine_graded, "points": self.points,
                "max_points": self.max_points, "outcome": self.outcome,
                "feedback": self.feedback, "details": self.details, "packets": self.packets,
                "expected": self.expected, "hint_cost": self.hint_cost,
                "attempt": self.attempt, "attempts_left": self.attempts_left}


@dataclass
class Grade:
    """A graded submission: ``score`` of ``max_score``, one ``QuestionGrade`` each."""

    exercise: str
    seed: int
    score: float
    max_score: float
    questions: list[QuestionGrade]
    elapsed_s: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {"exercise": self.exercise, "seed": self.seed, "score": self.score,
                "max_score": self.max_score,
                "questions": [question.as_dict() for question in self.questions]}

    def lines(self) -> list[str]:
        out = [f"exercise {self.exercise}, variant {self.seed}: score {self.score:g} of "
               f"{self.max_score:g}"]
        for q in self.questions:
            out.append(f"  {q.id} ({q.kind}): {q.points:g}/{q.max_points:g} {q.outcome}"
                       f"{f' (hints -{q.hint_cost:g})' if q.hint_cost else ''}")
            out += [f"      {line}" for line in [q.feedback, *q.details] if line]
            out += [f"      packet {_packet_line(p)}" for p in q.packets]
            if q.expected is not None:
                out.append(f"      engine: {q.expected}")
        return out


def _packet_line(packet: dict[str, Any]) -> str:
    ports = (f"{packet['src']}:{packet['sport']} -> {packet['dst']}:{packet['dport']}"
             if packet.get("sport") is not None else f"{packet['src']} -> {packet['dst']}")
    said = "  ".join(f"{name} {packet[name]}" for name in ("hash_hex", "bucket", "core")
                     if packet.get(name) is not None)
    return f"{packet.get('direction', '')} {ports} {packet['proto']}  {said}".strip()


# ---------------------------------------------------------------------------- solve and grade

def solve(exercise: Exercise, seed: int, *, variant: Variant | None = None
          ) -> dict[str, dict[str, Any]]:
    """A reference answer to every question of variant ``seed``, computed by the engine.
    Raises ExerciseError (at the question's line) for a question the engine cannot answer
    in this variant."""
    variant = variant or build_variant(exercise, seed)
    answers, problems = {}, []
    for index, question in enumerate(variant.questions):
        try:
            answers[question.id] = KINDS[question.kind][0](variant, question)
        except (LookupError, RssLabError) as error:
            if isinstance(error, ExerciseError):
                raise
            problems.append(_question_problem(exercise, index, variant.seed, error))
    if problems:
        raise ExerciseError(exercise_source(exercise), problems)
    return answers


def _question_problem(exercise: Exercise, index: int, seed: int, error: Exception) -> Problem:
    message = str(error.args[0]) if isinstance(error, LookupError) and error.args else str(error)
    return Problem(f"questions[{index}]", line_of(("questions", index),
                                                  exercise_lines(exercise)),
                   f"the engine cannot answer this in variant {seed}: {message}")


def grade(exercise: Exercise, seed: int, answers: Mapping[str, Any], *,
          hints: Mapping[str, int] | None = None, attempts: Mapping[str, int] | None = None,
          timeout_s: float = GRADE_TIMEOUT_S, reveal: bool | None = None,
          variant: Variant | None = None) -> Grade:
    """Grade ``answers`` (question id → {field: value}) for variant ``seed``.

    ``hints``: hints revealed per question (their costs come off its points, never below
    0); ``attempts``: which attempt each answer is (past the question's limit it scores
    nothing); ``reveal``: show the engine's values (default: for a right answer or on the
    last attempt). ``variant`` reuses a built variant and its observations. Raises
    GradingTimeout past ``timeout_s`` seconds, ConfigError for a bad seed, ExerciseError
    when the variant cannot be built."""
    started = time.monotonic()
    variant = variant or build_variant(exercise, seed)
    observer = variant.observer
    observer.deadline, observer.timeout_s = started + timeout_s, timeout_s
    try:
        graded = [_grade_question(variant, question, answers.get(question.id),
                                  (hints or {}).get(question.id, 0),
                                  (attempts or {}).get(question.id, 1), reveal)
                  for question in variant.questions]
    finally:
        observer.deadline = None
    return Grade(exercise.id, variant.seed, round(sum(q.points for q in graded), 6),
                 exercise.max_score, graded, time.monotonic() - started)


def _grade_question(variant: Variant, question, answer: object, hints_used: int,
                    attempt: int, reveal: bool | None) -> QuestionGrade:
    grade = QuestionGrade(question.id, question.kind, 0.0, float(question.points),
                          "unanswered", "", attempt=attempt,
                          attempts_left=max(question.attempts - attempt, 0))
    if attempt > question.attempts:
        grade.outcome = "no-attempts-left"
        grade.details = [f"all {question.attempts} attempts used"]
        return grade
    if answer is None or answer == {}:
        return grade
    refused = _refused(question, answer)
    if refused:
        grade.outcome, grade.details = "invalid", [refused]
        return grade
    try:
        marked = KINDS[question.kind][1](variant, question, dict(answer))
    except UnreadableAnswer as error:
        grade.outcome, grade.details = "invalid", [str(error)]
        return grade
    except LookupError as error:
        grade.outcome = "error"
        grade.details = [f"this variant cannot be graded: {error.args[0] if error.args else error}"]
        return grade
    _apply(grade, question, marked, hints_used, reveal)
    return grade


def _refused(question, answer: object) -> str:
    """Why an answer is refused before marking ('' when it is not)."""
    if not isinstance(answer, Mapping):
        return "expected a mapping of answer fields"
    allowed = answer_fields(question)
    extra = sorted(str(name) for name in answer if name not in allowed)
    if extra:
        return f"{extra[0]}: this answer may set only {', '.join(allowed)}"
    return ""


def _apply(grade: QuestionGrade, question, marked: Marked, hints_used: int,
           reveal: bool | None) -> None:
    fraction = min(max(marked.fraction, 0.0), 1.0)
    cost = sum(hint.cost for hint in question.hints[:hints_used])
    grade.hint_cost = float(cost)
    grade.points = round(max(question.points * fraction - cost, 0.0), 6) if fraction else 0.0
    grade.outcome = ("correct" if fraction >= 1.0 else "partial" if fraction > 0
                     else "incorrect")
    grade.feedback = getattr(question.feedback, grade.outcome)
    grade.details = marked.details
    shown = reveal if reveal is not None else (fraction >= 1.0 or grade.attempts_left == 0)
    grade.expected = marked.expected if shown else None
    grade.packets = marked.packets
    if not shown and question.kind in PREDICTION_KINDS:
        grade.packets = [{k: v for k, v in p.items() if k not in _HIDDEN} for p in marked.packets]
