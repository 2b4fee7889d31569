"""``python -m engine exercise lint|variant|solve|grade|schema``: exercise files.

    python -m engine exercise lint FILE                        # every problem; 20 variants
    python -m engine exercise variant FILE --seed N [--json]   # the student's view
    python -m engine exercise solve FILE --seed N > answers.yaml
    python -m engine exercise grade FILE --seed N --answers answers.yaml [--json]
    python -m engine exercise schema                           # JSON Schema of the format

Exit status: 0 done (``lint``: clean; ``grade``: full marks), 1 ``lint`` found a variant
the engine cannot solve or ``grade`` scored below full marks, 2 bad input (the exercise
or answers file, every problem with its line and key path; a grading that timed out),
3 an internal error.
"""

from __future__ import annotations

import json
import sys

from engine.errors import ExerciseError


def add_parser(subparsers):
    parser = subparsers.add_parser("exercise", help="lint, show, solve and grade exercise "
                                   "files", description=__doc__.split("\n")[0])
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    lint = actions.add_parser("lint", help="every problem of an exercise file (exit 2), "
                              "then its variants (exit 1 if one cannot be solved)")
    lint.add_argument("file", metavar="FILE")
    lint.add_argument("--seeds", type=int, default=None, metavar="N",
                      help="variants to sample (default 20)")
    lint.add_argument("--json", action="store_true")
    for name, text in (("variant", "the student's view of a variant (no solution)"),
                       ("solve", "the engine's answers for a variant (an answers file)"),
                       ("grade", "grade an answers file")):
        action = actions.add_parser(name, help=text)
        action.add_argument("file", metavar="FILE")
        action.add_argument("--seed", type=int, required=True, metavar="N")
        if name == "grade":
            action.add_argument("--answers", required=True, metavar="ANSWERS.yaml")
            action.add_argument("--timeout", type=float, default=None, metavar="SECONDS")
        if name != "solve":
            action.add_argument("--json", action="store_true")
    actions.add_parser("schema", help="print the exercise file JSON Schema")
    return parser


def run(args) -> int:
    return {"lint": _lint, "variant": _variant, "solve": _solve, "grade": _grade,
            "schema": _schema}[args.action](args)


def _schema(args) -> int:
    from engine.exercises import exercise_json_schema
    print(json.dumps(exercise_json_schema(), indent=2))
    return 0


def _lint(args) -> int:
    from engine.exercises import LINT_SEEDS, lint_file
    seeds = LINT_SEEDS if args.seeds is None else args.seeds
    try:
        result = lint_file(args.file, seeds=max(seeds, 0))
    except ExerciseError as error:
        if args.json:
            print(json.dumps({"clean": False, "error": error.as_dict()}))
        print(f"error: {error}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps({"clean": result.clean, "seeds": result.seeds,
                          "variants": result.variants,
                          "problems": [p.as_dict() for p in result.problems]}))
    else:
        for problem in result.problems:
            print(f"{args.file}: {problem}")
        verdict = "clean" if result.clean else f"{len(result.problems)} problems"
        print(f"{result.exercise.id}: {verdict}; {result.seeds} variants solved and graded "
              f"of {result.variants:,} possible")
    return 0 if result.clean else 1


def _variant(args) -> int:
    from engine.exercises import build_variant, load_exercise_file, student_view
    view = student_view(build_variant(load_exercise_file(args.file), args.seed))
    if args.json:
        print(json.dumps(view, indent=2))
        return 0
    print(f"# {view['title']}  (variant {view['seed']})\n\n{view['prompt'].strip()}\n")
    for number, question in enumerate(view["questions"], 1):
        print(f"## {number}. {question['id']} ({question['kind']}, {question['points']:g} "
              f"points, {question['attempts']} attempts)\n\n{question['prompt'].strip()}")
        givens = {k: v for k, v in question.items() if k not in (
            "id", "kind", "kind_number", "prompt", "points", "attempts", "hints")}
        for key, value in givens.items():
            print(f"  {key}: {json.dumps(value)}")
        if question["hints"]:
            print(f"  hints: {', '.join(str(h['cost']) for h in question['hints'])} points")
        print()
    return 0


def _solve(args) -> int:
    from engine.exercises import answers_document, load_exercise_file, solve
    exercise = load_exercise_file(args.file)
    sys.stdout.write(answers_document(exercise, args.seed, solve(exercise, args.seed)))
    return 0


def _grade(args) -> int:
    from engine.exercises import GRADE_TIMEOUT_S, grade, load_answers, load_exercise_file
    from engine.safeparse import FileTooBig, read_bounded
    exercise = load_exercise_file(args.file)
    try:
        text = read_bounded(args.answers, 64 * 1024)
    except (FileTooBig, OSError) as error:
        raise ExerciseError(args.answers, [_unreadable(error)]) from None
    answers = load_answers(text, source=args.answers)
    result = grade(exercise, args.seed, answers.answers, hints=answers.hints,
                   attempts=answers.attempts,
                   timeout_s=GRADE_TIMEOUT_S if args.timeout is None else args.timeout)
    if args.json:
        print(json.dumps(result.as_dict()))
    else:
        print("\n".join(result.lines()))
    return 0 if result.score >= result.max_score - 1e-9 else 1


def _unreadable(error: Exception):
    from engine.errors import Problem
    what = (f"at most {error.limit} bytes" if hasattr(error, "limit")
            else f"a readable file, got {getattr(error, 'strerror', None) or error}")
    return Problem("", None, f"expected {what}")
