"""Linting an exercise: every problem of the file, then of its variants.

``lint_exercise`` loads the file (every format problem with its line and key path), then
builds, solves and grades ``LINT_SEEDS`` variants (seeds 0-19): a variant whose scenario
is invalid or too large, a question the engine cannot answer, or a reference answer that
does not score full marks is reported at the question's line, with the seeds it
happened on. A clean lint means every sampled student gets a gradable exercise.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from engine.errors import ExerciseError, GradingTimeout, Problem, RssLabError
from engine.exercises.base import exercise_lines
from engine.exercises.grading import grade, solve
from engine.exercises.limits import LINT_SEEDS, MAX_SETTING_COMBINATIONS
from engine.exercises.loading import load_exercise_file
from engine.exercises.parameters import variant_count
from engine.exercises.schema import Exercise
from engine.exercises.variant import build_variant
from engine.scenarios.scenario.document import line_of


@dataclass
class LintResult:
    """What ``lint_exercise`` found: ``problems`` (empty: clean), the seeds it tried and
    how many variants the parameters allow."""

    exercise: Exercise
    problems: list[Problem] = field(default_factory=list)
    seeds: int = 0
    variants: int = 1

    @property
    def clean(self) -> bool:
        return not self.problems


def static_problems(exercise: Exercise) -> list[Problem]:
    """Problems visible without a variant: a settings question spanning too many
    combinations for the reference solver."""
    problems = []
    for index, question in enumerate(exercise.questions):
        if question.kind != "settings":
            continue
        combos = 1
        for values in question.fields.values():
            combos *= len(values)
        if combos > MAX_SETTING_COMBINATIONS:
            problems.append(Problem(f"questions[{index}].fields",
                                    line_of(("questions", index, "fields"),
                                            exercise_lines(exercise)),
                                    f"expected at most {MAX_SETTING_COMBINATIONS} "
                                    f"combinations of allowed values, got {combos}"))
    return problems


def _seed_problems(exercise: Exercise, seed: int, timeout_s: float) -> list[Problem]:
    try:
        variant = build_variant(exercise, seed)
        answers = solve(exercise, seed, variant=variant)
        graded = grade(exercise, seed, answers, variant=variant, timeout_s=timeout_s,
                       reveal=True)
    except ExerciseError as error:
        return list(error.problems)
    except GradingTimeout:
        return [Problem("", None, f"expected a variant graded within {timeout_s:g} s")]
    except RssLabError as error:
        return [Problem("", None, str(error))]
    lines = exercise_lines(exercise)
    return [Problem(f"questions[{i}]", line_of(("questions", i), lines),
                    f"the engine's own answer scores {q.points:g} of {q.max_points:g} "
                    f"({q.outcome}: {'; '.join(q.details)})")
            for i, q in enumerate(graded.questions) if q.points < q.max_points - 1e-9]


def lint_exercise(exercise: Exercise, *, seeds: int = LINT_SEEDS,
                  timeout_s: float = 60.0) -> LintResult:
    """Lint a loaded exercise over variants ``0 .. seeds-1``; identical problems on
    several seeds are reported once, naming the seeds."""
    result = LintResult(exercise, static_problems(exercise), seeds,
                        variant_count(exercise.parameters))
    if result.problems:
        return result
    found: dict[tuple, list[int]] = {}
    for seed in range(seeds):
        for problem in _seed_problems(exercise, seed, timeout_s):
            message = problem.message.replace(f" (variant seed {seed})", "").replace(
                f"in variant {seed}: ", "")
            found.setdefault((problem.path, problem.line, message), []).append(seed)
    result.problems = [Problem(path, line, f"{message} (seeds {_seeds(hit)})")
                       for (path, line, message), hit in found.items()]
    return result


def _seeds(seeds: list[int]) -> str:
    return ", ".join(map(str, seeds[:8])) + (f", ... ({len(seeds)} in all)"
                                             if len(seeds) > 8 else "")


def lint_file(path: str | Path, *, seeds: int = LINT_SEEDS) -> LintResult:
    """Load and lint the exercise at ``path``; ExerciseError for a file that does not
    load (every problem, with its line)."""
    return lint_exercise(load_exercise_file(path), seeds=seeds)
