"""Scenario text to data: YAML or JSON parsed safely, with the line of every key path.

``parse_document`` bounds the nesting before any recursive parser runs, refuses
duplicate keys, merge keys, alias cycles and documents that expand past
``MAX_NODES`` values, and returns the data with a line map (key path → 1-based line)
that locates every later problem::

    >>> data, lines = parse_document("name: x\\nsystem:\\n  cores: 4", "<string>", [])
    >>> data, lines[("system", "cores")], format_path(("services", 0, "policy"))
    ({'name': 'x', 'system': {'cores': 4}}, 3, 'services[0].policy')

The reading itself is ``engine.safeparse``'s (YAML 1.2 numbers, ``yaml.SafeLoader``
only, bounded integers).
"""

from __future__ import annotations

from typing import Any

import yaml

from engine.errors import DocumentError, Problem, ScenarioError
from engine.safeparse import check_yaml_nesting, load_json, yaml_loader
from engine.scenarios.scenario.limits import MAX_DEPTH, MAX_NODES


class _Refused(Exception):
    """A document too large, too deep or self-referential to walk any further."""

    def __init__(self, problem: Problem):
        super().__init__(str(problem))
        self.problem = problem


def parse_document(text: str, source: str, problems: list[Problem]) -> tuple[Any, dict[tuple, int]]:
    """The document as Python data, and the 1-based line of every key path; problems
    that do not stop parsing (duplicate keys) are appended to ``problems``.

    The nesting is bounded before any recursive parser runs (``engine.safeparse``): libyaml
    composes recursively in C and would crash on a document nested 100,000 deep."""
    try:
        # Collections below the top mapping: MAX_DEPTH, as _walk counts them.
        check_yaml_nesting(text, limit=MAX_DEPTH + 1, field="")
    except DocumentError as error:
        raise ScenarioError(source, [Problem("", error.line, f"expected nesting at most "
                                                             f"{MAX_DEPTH} deep")]) from None
    json_data: Any = None
    json_ok = False
    if text.lstrip().startswith(("{", "[")):
        try:
            json_data = load_json(text, limit=MAX_DEPTH + 1)
            json_ok = True
        except DocumentError:
            json_ok = False
    try:
        loader = yaml_loader()(text)
        try:
            node = loader.get_single_node()
            if node is None:
                raise ScenarioError(source, [Problem("", 1, "expected a scenario, got an "
                                                            "empty document")])
            lines: dict[tuple, int] = {}
            try:
                _walk(node, (), lines, problems, set(), [0])
            except _Refused as refused:
                raise ScenarioError(source, [refused.problem]) from None
            try:
                data = json_data if json_ok else loader.construct_document(node)
            except DocumentError as refused:  # a number too long to convert
                raise ScenarioError(source, [Problem(
                    format_path(_path_at_line(lines, refused.line)), refused.line,
                    refused.problem)]) from None
        finally:
            loader.dispose()
    except yaml.YAMLError as error:
        if json_ok:  # valid JSON that YAML 1.1 reads differently: no line numbers
            problems.clear()
            return json_data, {}
        mark = getattr(error, "problem_mark", None) or getattr(error, "context_mark", None)
        problem = getattr(error, "problem", None) or str(error).split("\n")[0]
        raise ScenarioError(source, [Problem("", mark.line + 1 if mark else None,
                                             f"expected valid YAML or JSON, got a syntax "
                                             f"error: {problem}")]) from None
    except RecursionError:
        raise ScenarioError(source, [Problem("", None, f"expected nesting at most "
                                                       f"{MAX_DEPTH} deep")]) from None
    return data, lines


def _path_at_line(lines: dict[tuple, int], line: int | None) -> tuple:
    """The last key path that starts on ``line`` (``()`` when none does)."""
    found = [path for path, at in lines.items() if at == line]
    return max(found, key=len) if found else ()


def _walk(node: yaml.Node, path: tuple, lines: dict, problems: list, active: set,
          count: list[int]) -> None:
    """Record key lines, and refuse duplicate keys, deep nesting, alias cycles and
    documents that expand to more than MAX_NODES nodes."""
    count[0] += 1
    if count[0] > MAX_NODES:
        raise _Refused(Problem(format_path(path), node.start_mark.line + 1,
                                                 f"expected at most {MAX_NODES} values "
                                                 f"(aliases expanded)"))
    if len(path) > MAX_DEPTH:
        raise _Refused(Problem(format_path(path), node.start_mark.line + 1,
                                                 f"expected nesting at most {MAX_DEPTH} deep"))
    if id(node) in active:
        raise _Refused(Problem(format_path(path), node.start_mark.line + 1,
                                                 "expected no recursive alias"))
    if isinstance(node, yaml.MappingNode):
        active.add(id(node))
        seen: dict[Any, int] = {}
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
            line = key_node.start_mark.line + 1
            if key is None:
                problems.append(Problem(format_path(path), line,
                                        "expected a plain key, got a collection as key"))
                continue
            if key == "<<":
                problems.append(Problem(format_path(path), line,
                                        "expected plain keys, got a '<<' merge key"))
                continue
            if key in seen:
                problems.append(Problem(format_path(path + (key,)), line,
                                        f"expected each key once, got {key!r} again "
                                        f"(first on line {seen[key]})"))
                continue
            seen[key] = line
            lines.setdefault(path + (key,), line)
            _walk(value_node, path + (key,), lines, problems, active, count)
        active.discard(id(node))
    elif isinstance(node, yaml.SequenceNode):
        active.add(id(node))
        for index, item in enumerate(node.value):
            lines.setdefault(path + (index,), item.start_mark.line + 1)
            _walk(item, path + (index,), lines, problems, active, count)
        active.discard(id(node))


def format_path(loc: tuple) -> str:
    """A key path as the messages show it: ``("services", 0, "policy")`` is
    ``services[0].policy``."""
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += ("." if text else "") + str(part)
    return text


def line_of(loc: tuple, lines: dict[tuple, int]) -> int | None:
    """The line of ``loc``, or of its nearest parent on a line (1 when none is, ``None``
    when the document has no line map, as for JSON that YAML reads differently)."""
    for end in range(len(loc), -1, -1):
        line = lines.get(tuple(loc[:end]))
        if line is not None:
            return line
    return 1 if lines else None
