"""Loading an exercise file: text or a file in, a validated ``Exercise`` or one
ExerciseError listing every problem with its line and key path out.

The steps are the scenario loader's (``engine.scenarios.scenario``), on the same hardened
reader (``engine.safeparse``: bounded size, nesting and integers, YAML 1.2 numbers, no
duplicate or merge keys, no alias bombs): the text is parsed with a line for every key
path, validated against ``engine.exercises.schema``, then checked across fields: every
placeholder names a parameter, and the first variant's scenario loads as a scenario file
(its problems reported at the exercise's lines)::

    >>> exercise = load_exercise('''
    ... schema_version: 1
    ... id: tiny
    ... title: Tiny
    ... example: nat-microsoft
    ... parameters: {cores: {choice: [2, 4]}}
    ... set: {system.cores: "{{cores}}"}
    ... questions:
    ...   - {id: q1, kind: concept, prompt: "Buckets with 7 bits?",
    ...      number: {value: "2 ** 7"}}
    ... ''')
    >>> exercise.id, exercise.questions[0].kind
    ('tiny', 'concept')
    >>> load_exercise("schema_version: 1\\nid: x\\ntitle: X\\nexample: nope\\nquestions: []")
    Traceback (most recent call last):
    ...
    engine.errors.ExerciseError: <string>: 1 problem
      line 5: questions: expected at least 1 items, got 0
"""

from __future__ import annotations

from pathlib import Path

from pydantic import ValidationError

from engine.errors import ExerciseError, Problem, ScenarioError
from engine.exercises.base import build_scenario
from engine.exercises.limits import MAX_FILE_BYTES
from engine.exercises.parameters import draw_parameters, placeholders_in
from engine.exercises.schema import MODELS, Exercise, without_kind_tags
from engine.scenarios.scenario.document import format_path, line_of, parse_document
from engine.scenarios.scenario.loading import read_document
from engine.scenarios.scenario.problems import branch_tag, problems_from

#: The shipped pack of exercises.
PACK_DIR = Path(__file__).resolve().parent / "pack"

_TAG = branch_tag(MODELS)


def load_exercise_file(path: str | Path) -> Exercise:
    """Load an exercise from a ``.yaml``/``.yml``/``.json`` file (relative paths in an
    inline scenario resolve against its folder). Raises ExerciseError, also for an
    unreadable, oversized or non-UTF-8 file."""
    path = Path(path)
    data = read_document(path, ExerciseError, MAX_FILE_BYTES)
    return load_exercise(data, source=str(path), base_dir=path.parent)


def load_exercise(text: str | bytes, *, source: str = "<string>",
                  base_dir: str | Path | None = None) -> Exercise:
    """Parse and validate an exercise from YAML or JSON text. ``source`` names it in
    messages; ``base_dir`` is where an inline scenario's relative paths resolve. Raises
    ExerciseError listing every problem with its line and key path."""
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as error:
            raise ExerciseError(source, [Problem("", None, f"expected UTF-8 text, got a byte "
                                                           f"0x{text[error.start]:02x} at "
                                                           f"offset {error.start}")]) from None
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > MAX_FILE_BYTES:
        raise ExerciseError(source, [Problem("", None, f"expected at most {MAX_FILE_BYTES} "
                                                       f"bytes, got {size} bytes")])
    problems: list[Problem] = []
    try:
        data, lines = parse_document(text, source, problems)
    except ScenarioError as error:  # the shared reader speaks of scenarios
        raise ExerciseError(source, [Problem(p.path, p.line, p.message.replace(
            "a scenario", "an exercise")) for p in error.problems]) from None
    if not isinstance(data, dict):
        raise ExerciseError(source, problems + [Problem(
            "", 1, f"expected a mapping (schema_version, id, title, questions, ...), got "
                   f"{type(data).__name__}")])
    try:
        exercise = Exercise.model_validate(data)
    except ValidationError as error:
        raise ExerciseError(source, problems + problems_from(
            without_kind_tags(error.errors()), lines, root=Exercise, tag=_TAG)) from None
    except (RecursionError, ValueError, TypeError) as error:  # defensive: pydantic internals
        raise ExerciseError(source, [Problem("", None, f"expected a valid document, got "
                                                       f"{type(error).__name__}")]) from None
    object.__setattr__(exercise, "__pydantic_private__", {
        "source": source, "lines": lines,
        "base_dir": Path(base_dir) if base_dir is not None else None})
    problems += unknown_placeholders(exercise, data, lines)
    if problems:
        raise ExerciseError(source, problems)
    build_scenario(exercise, draw_parameters(exercise.parameters, seed=0))
    return exercise


def unknown_placeholders(exercise: Exercise, data: dict, lines: dict) -> list[Problem]:
    """A problem for every ``{{name}}`` that names no parameter, at its key path."""
    known = set(exercise.parameters)
    names = ", ".join(sorted(known)) or "(none)"
    found = []
    for path, value in _leaves(data, ()):
        for name in sorted(placeholders_in(value) - known):
            found.append(Problem(format_path(path), line_of(path, lines),
                                 f"expected a parameter among {names}, got "
                                 f"{{{{{name}}}}}"))
    return found


def _leaves(value, path: tuple):
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _leaves(item, path + (key,))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _leaves(item, path + (index,))
    elif isinstance(value, str):
        yield path, value


def list_pack() -> list[Path]:
    """The shipped exercise files, sorted by name."""
    return sorted(PACK_DIR.glob("*.yaml"))


def load_pack_exercise(name: str) -> Exercise:
    """The shipped exercise ``name`` (its file stem). ExerciseError names the known ones."""
    path = PACK_DIR / f"{name}.yaml"
    if "/" in name or "\\" in name or not path.is_file():
        known = ", ".join(p.stem for p in list_pack())
        raise ExerciseError("pack", [Problem("name", None, f"expected one of {known}, "
                                                           f"got {name!r}")])
    return load_exercise_file(path)
