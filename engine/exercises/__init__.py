"""Exercises: an instructor's exercise file, a variant per student, graded by the engine.

An exercise file (YAML, ``schema_version: 1``; ``python -m engine exercise schema``
prints its JSON Schema) names a base scenario, parameters drawn per variant from an
integer seed, and questions of seven kinds (``schema``). The services the web calls::

    exercise = load_exercise(text, source="upload")       # or load_exercise_file(path)
    result = lint_exercise(exercise)                       # 20 sampled variants
    seed = variant_seed(secret, exercise.id, student_id, reset)
    variant = build_variant(exercise, seed)
    view = student_view(variant)                           # JSON-ready, no solution
    answers = solve(exercise, seed)                        # the engine's reference
    result = grade(exercise, seed, answers)                # Grade; .as_dict() for JSON

The package, one module per concept, each importing only those before it:

* ``limits`` — the format version and the ``MAX_*`` limits;
* ``schema`` — the pydantic models (parameters, the seven question kinds, the file);
* ``parameters`` — drawing parameters from a seed, placeholders, expressions;
* ``base`` — the base scenario and the scenario of one variant;
* ``loading`` — ``load_exercise``/``load_exercise_file``, the shipped ``pack``;
* ``observe`` — the engine's observations of a variant (runs, traced flows, the
  control core, ``PacketView``);
* ``variant`` — ``build_variant``, ``variant_seed``, ``student_view``;
* ``marking`` — a marked answer, reading answer values;
* ``predictions`` / ``designs`` — solving and marking each kind;
* ``grading`` — ``solve``, ``grade``, answers files;
* ``lint`` — ``lint_exercise``: the file, then 20 variants solved and graded.
"""

from __future__ import annotations

from engine.exercises.grading import (
    AnswersFile,
    Grade,
    QuestionGrade,
    answers_document,
    grade,
    load_answers,
    solve,
)
from engine.exercises.limits import (
    GRADE_TIMEOUT_S,
    LINT_SEEDS,
    MAX_ATTEMPTS,
    MAX_FILE_BYTES,
    MAX_PARAMETERS,
    MAX_QUESTIONS,
    MAX_VARIANT_FLOWS,
    SCHEMA_VERSION,
)
from engine.exercises.lint import LintResult, lint_exercise, lint_file
from engine.exercises.loading import (
    PACK_DIR,
    list_pack,
    load_exercise,
    load_exercise_file,
    load_pack_exercise,
)
from engine.exercises.observe import PacketView
from engine.exercises.parameters import variant_count
from engine.exercises.schema import KIND_NUMBERS, Exercise, exercise_json_schema
from engine.exercises.variant import (
    Variant,
    build_variant,
    hint_text,
    student_view,
    variant_seed,
)

__all__ = [
    "GRADE_TIMEOUT_S", "KIND_NUMBERS", "LINT_SEEDS", "MAX_ATTEMPTS", "MAX_FILE_BYTES",
    "MAX_PARAMETERS", "MAX_QUESTIONS", "MAX_VARIANT_FLOWS", "PACK_DIR", "SCHEMA_VERSION",
    "AnswersFile", "Exercise", "Grade", "LintResult", "PacketView", "QuestionGrade",
    "Variant", "answers_document", "build_variant", "exercise_json_schema", "grade",
    "hint_text", "lint_exercise", "lint_file", "list_pack", "load_answers", "load_exercise",
    "load_exercise_file", "load_pack_exercise", "solve", "student_view", "variant_count",
    "variant_seed",
]
