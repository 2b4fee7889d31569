"""An exercise's base scenario, and the scenario one variant runs.

The base is the file's inline ``scenario`` or a shipped example (``example: nat-microsoft``);
``set`` changes it by key path (``services[0].policy: usip``), and the variant's
parameters are substituted into both. The result is loaded as any scenario file is
(``engine.scenarios.scenario.load_scenario``), so a variant is held to every rule a
scenario is; each problem is reported at the exercise file's line::

    >>> parse_key_path("services[0].servers[1]")
    ('services', 0, 'servers', 1)
    >>> apply_set({"system": {"cores": 4}}, {"system.nic.key": "symmetric"})
    {'system': {'cores': 4, 'nic': {'key': 'symmetric'}}}
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from engine.errors import ExerciseError, Problem, RssLabError, ScenarioError
from engine.examples import EXAMPLES_DIR
from engine.exercises.limits import MAX_VARIANT_FLOWS
from engine.exercises.parameters import substitute
from engine.exercises.schema import Exercise
from engine.safeparse import read_bounded
from engine.scenarios.scenario import MAX_FILE_BYTES, Scenario, load_scenario
from engine.scenarios.scenario.document import format_path, line_of, parse_document
from engine.scenarios.traffic import count_flows

_PART = re.compile(r"([A-Za-z_][A-Za-z0-9_-]*)|\[(\d{1,4})\]|\.")


def parse_key_path(text: str) -> tuple:
    """``"services[0].policy"`` → ``("services", 0, "policy")``; ValueError otherwise."""
    parts: list = []
    position = 0
    while position < len(text):
        match = _PART.match(text, position)
        if match is None or (match.group(0) == "." and (not parts or position + 1 >= len(text))):
            raise ValueError(f"expected a key path like services[0].policy, got {text!r}")
        if match.group(1) is not None:
            parts.append(match.group(1))
        elif match.group(2) is not None:
            parts.append(int(match.group(2)))
        position = match.end()
    if not parts or not isinstance(parts[0], str):
        raise ValueError(f"expected a key path like services[0].policy, got {text!r}")
    return tuple(parts)


def apply_set(data: dict, changes: Mapping[str, Any]) -> dict:
    """A copy of ``data`` with each ``key path: value`` of ``changes`` set; a missing
    mapping on the way is created, a list index must exist. ValueError names the path."""
    result = copy.deepcopy(data)
    for text, value in changes.items():
        path = parse_key_path(text)
        node: Any = result
        for index, part in enumerate(path[:-1]):
            node = _step(node, part, path[index + 1], text)
        last = path[-1]
        if isinstance(last, int):
            if not isinstance(node, list) or last >= len(node):
                raise ValueError(f"{text}: expected an existing list item")
        elif not isinstance(node, dict):
            raise ValueError(f"{text}: expected a mapping at {last!r}")
        node[last] = copy.deepcopy(value)
    return result


def _step(node: Any, part: str | int, following: str | int, text: str) -> Any:
    if isinstance(part, int):
        if not isinstance(node, list) or part >= len(node):
            raise ValueError(f"{text}: expected an existing list item [{part}]")
        return node[part]
    if not isinstance(node, dict):
        raise ValueError(f"{text}: expected a mapping at {part!r}")
    if part not in node:
        node[part] = [] if isinstance(following, int) else {}
    return node[part]


def base_data(exercise: Exercise) -> tuple[dict, Path | None]:
    """The base scenario as data, and the folder its relative paths (a pcap) resolve
    against: the example's folder, or the exercise file's."""
    if exercise.scenario is not None:
        return dict(exercise.scenario), exercise_base_dir(exercise)
    path = EXAMPLES_DIR / f"{exercise.example}.yaml"
    if not path.is_file():
        known = ", ".join(p.stem for p in sorted(EXAMPLES_DIR.glob("*.yaml")))
        raise ExerciseError(exercise_source(exercise), [Problem(
            "example", line_of(("example",), exercise_lines(exercise)),
            f"expected a shipped example ({known}), got {exercise.example!r}")])
    text = read_bounded(path, MAX_FILE_BYTES).decode("utf-8")
    data, _ = parse_document(text, str(path), [])
    return data, EXAMPLES_DIR


def build_scenario(exercise: Exercise, values: Mapping[str, Any]) -> Scenario:
    """The scenario of the variant whose parameters are ``values``: the base, changed by
    ``set``, placeholders substituted, loaded and checked as a scenario file, with at
    most MAX_VARIANT_FLOWS flows. Raises ExerciseError, each problem at the exercise
    file's line."""
    data, base_dir = base_data(exercise)
    try:
        data = apply_set(data, substitute(exercise.set, values))
    except ValueError as error:
        raise _located(exercise, [Problem("set", None, str(error))]) from None
    data = substitute(data, values)
    try:
        scenario = load_scenario(json.dumps(data), source=exercise_source(exercise),
                                 base_dir=base_dir)
    except ScenarioError as error:
        raise _located(exercise, error.problems) from None
    try:
        flows = count_flows(scenario)
    except RssLabError as error:
        raise _located(exercise, [Problem("traffic", None, str(error))]) from None
    if flows > MAX_VARIANT_FLOWS:
        raise _located(exercise, [Problem("traffic", None, f"expected at most "
                                          f"{MAX_VARIANT_FLOWS} flows in a variant, got "
                                          f"{flows}")])
    return scenario


def _located(exercise: Exercise, problems: list[Problem]) -> ExerciseError:
    """Scenario problems as the exercise file's: ``scenario.<path>`` at its line for an
    inline base; for an example, at the ``set`` entry that wrote the path, else at
    ``example``."""
    lines = exercise_lines(exercise)
    located = []
    for problem in problems:
        if exercise.scenario is not None:
            path = ("scenario", *_loose_path(problem.path))
            located.append(Problem(format_path(path), line_of(path, lines), problem.message))
            continue
        written = next((key for key in exercise.set if problem.path
                        and (key == problem.path or problem.path.startswith(key + "."))), None)
        where = ("set", written) if written else ("example",)
        located.append(Problem(format_path(where) if written is None else
                               f"set.{written}", line_of(where, lines),
                               f"{problem.path or 'scenario'}: {problem.message}"
                               if written is None else problem.message))
    return ExerciseError(exercise_source(exercise), located)


def _loose_path(text: str) -> tuple:
    try:
        return parse_key_path(text) if text else ()
    except ValueError:
        return (text,)


# Where an exercise came from (set by the loader; plain defaults for a model built
# directly, as a test may).

def exercise_source(exercise: Exercise) -> str:
    return (exercise.__pydantic_private__ or {}).get("source", "<string>")


def exercise_lines(exercise: Exercise) -> dict[tuple, int]:
    return (exercise.__pydantic_private__ or {}).get("lines", {})


def exercise_base_dir(exercise: Exercise) -> Path | None:
    return (exercise.__pydantic_private__ or {}).get("base_dir")
