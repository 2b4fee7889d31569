"""Pydantic's validation errors as the lab's problems: each with its key path, its
line, and a message saying what was expected and what was given.

``problems_from`` drops pydantic's union-branch tags from each location (so a path is
only mapping keys and list indexes), drops a branch whose *type* did not match when
another branch got further, and merges the type mismatches of every branch into one
``expected X or Y``; an unknown key's message lists the keys its section accepts.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel

from engine.errors import Problem, shown
from engine.scenarios.scenario.document import format_path, line_of
from engine.scenarios.scenario.schema import MODELS, Scenario

_TYPE_NAMES = {
    "int_type": "an integer", "int_parsing": "an integer", "int_from_float": "an integer",
    "string_type": "a string", "bool_type": "true or false", "float_type": "a number",
    "dict_type": "a mapping", "model_type": "a mapping", "model_attributes_type": "a mapping",
    "list_type": "a list", "none_required": "null", "finite_number": "a finite number",
}


def branch_tag(models: tuple[type[BaseModel], ...]) -> re.Pattern:
    """A union-branch tag in a pydantic ``loc``: anything with brackets (``list[...]``), a
    scalar type, or the name of one of ``models`` (a schema's models)."""
    return re.compile(r"[\[\]]|^(int|str|float|bool|"
                      + "|".join(model.__name__ for model in models) + r")$")


_BRANCH_TAG = branch_tag(MODELS)


def _clean_loc(loc: tuple, kind: str, tag: re.Pattern = _BRANCH_TAG) -> tuple:
    """A pydantic ``loc`` without its union-branch tags (``list[...]``, ``int``, model
    names): only mapping keys and list indexes remain. A key the file gave is never taken
    for a tag, whatever its name: an unknown key (the last part of an ``extra_forbidden``
    error) and a mapping key pydantic refused (the part before ``[key]``)."""
    parts = []
    last = len(loc) - 1
    for index, part in enumerate(loc):
        given = ((index == last and kind == "extra_forbidden")
                 or (index < last and loc[index + 1] == "[key]"))
        if isinstance(part, int) or given or not (
                part == "[key]" or tag.search(str(part))):
            parts.append(part)
    return tuple(parts)


def problems_from(errors: list[dict], lines: dict[tuple, int], *,
                  root: type[BaseModel] = Scenario,
                  tag: re.Pattern = _BRANCH_TAG) -> list[Problem]:
    """Pydantic errors as Problems. Where a value may take several forms (a union), a
    branch whose *type* did not match is dropped when another branch got further, and
    type mismatches of every branch merge into one ``expected X or Y``.

    ``root`` is the model the document was validated against (an unknown key's message
    lists the keys its section accepts) and ``tag`` matches its union-branch tags
    (``branch_tag``); both default to the scenario schema's."""
    cleaned = [(_clean_loc(e["loc"], e["type"], tag), e) for e in errors]
    deeper = {loc[:end] for loc, e in cleaned if e["type"] not in _TYPE_NAMES
              for end in range(len(loc) + 1)}
    merged: dict[tuple, list[dict]] = {}
    problems = []
    for loc, error in cleaned:
        if error["type"] in _TYPE_NAMES:
            if loc in deeper:
                continue
            merged.setdefault(loc, []).append(error)
        else:
            problems.append(_problem(loc, error, lines, root))
    for loc, group in merged.items():
        names = list(dict.fromkeys(_TYPE_NAMES[e["type"]] for e in group))
        message = "expected " + " or ".join(names) + _given(group[0].get("input"))
        problems.append(Problem(format_path(loc), line_of(loc, lines), message))
    return list(dict.fromkeys(problems))


def _given(value: object) -> str:
    if isinstance(value, dict):
        return ", got a mapping"
    if isinstance(value, list):
        return ", got a list"
    return f", got {shown(value)}"


def _problem(loc: tuple, error: dict, lines: dict[tuple, int],
             root: type[BaseModel] = Scenario) -> Problem:
    """One pydantic error as a Problem saying what was expected and what was given."""
    kind, ctx, given = error["type"], error.get("ctx", {}), error.get("input")
    path, line = format_path(loc), line_of(loc, lines)
    if kind == "extra_forbidden":
        allowed = _allowed_keys(loc[:-1], root)
        return Problem(path, line, "unknown key" + (
            f"; expected one of {', '.join(allowed)}" if allowed else ""))
    if kind == "missing":
        return Problem(path, line, "missing required key")
    if kind == "value_error":
        return Problem(path, line, error["msg"].removeprefix("Value error, "))
    if kind == "literal_error":
        options = str(ctx.get("expected", "")).replace("'", "").replace(" or ", ", ")
        what = "a metric" if error["loc"][-1:] == ("[key]",) else "one of"
        message = f"expected {what} {options}".replace("a metric ", "a metric: ")
    elif kind in ("too_short", "too_long"):
        bound = ctx.get("min_length") if kind == "too_short" else ctx.get("max_length")
        word = "at least" if kind == "too_short" else "at most"
        return Problem(path, line, f"expected {word} {bound} items, "
                                   f"got {ctx.get('actual_length')}")
    elif kind in ("string_too_short", "string_too_long"):
        bound = ctx.get("min_length") if kind == "string_too_short" else ctx.get("max_length")
        word = "at least" if kind == "string_too_short" else "at most"
        message = f"expected {word} {bound} characters"
    elif kind == "string_pattern_mismatch":
        message = "expected letters, digits, '_', '.' or '-' only"
    elif kind in ("greater_than_equal", "less_than_equal", "greater_than", "less_than"):
        sign = {"greater_than_equal": ">=", "less_than_equal": "<=",
                "greater_than": ">", "less_than": "<"}[kind]
        bound = next(iter(ctx.values()), "?")
        message = f"expected a number {sign} {bound}"
    else:
        text = error["msg"].removeprefix("Input should be ")
        message = "expected " + text[:1].lower() + text[1:]
    return Problem(path, line, message + _given(given))


def _allowed_keys(loc: tuple, root: type[BaseModel] = Scenario) -> list[str]:
    """The keys the model at ``loc`` accepts (empty when it cannot be worked out)."""
    model: Any = root
    for part in loc:
        if isinstance(part, int):
            continue
        fields = getattr(model, "model_fields", None)
        if not fields or part not in fields:
            return []
        model = _model_in(fields[part].annotation)
        if model is None:
            return []
    fields = getattr(model, "model_fields", None)
    return sorted(fields) if fields else []


def _model_in(annotation: Any) -> type[BaseModel] | None:
    """The first pydantic model inside a (possibly nested, optional, list) annotation."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()) or ():
        found = _model_in(arg)
        if found is not None:
            return found
    origin = getattr(annotation, "__origin__", None)
    if origin is not None and origin is not annotation:
        return _model_in(origin)
    return None
