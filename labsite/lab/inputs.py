"""Reading the fields of a lab API request: JSON, integers, text; every refusal a
:class:`~labsite.lab.errors.LabInputError` naming the field (used by the lab's own API and
by the run API in ``labsite.runs``)."""

from __future__ import annotations

from typing import Any

from labsite.lab.builder import shown, text_problem
from labsite.lab.errors import LabInputError


def optional_int(data: dict, name: str, low: int, high: int) -> int | None:
    """``data[name]`` as an integer ``low``–``high`` (a JSON number or its text), None when
    missing or empty; LabInputError on ``name`` otherwise."""
    value = data.get(name)
    if value is None or value == "":
        return None
    if isinstance(value, str):
        try:
            value = int(value.strip())
        except ValueError:
            raise LabInputError.one(name, f"expected an integer {low}–{high}, got "
                                          f"{shown(data.get(name))}") from None
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise LabInputError.one(name, f"expected an integer {low}–{high}, got {shown(value)}")
    return value


def json_parse(text: str | bytes, field: str) -> Any:
    """The value of JSON ``text``; LabInputError on ``field`` when it is not JSON, or is
    nested deeper than the engine's ``MAX_NESTING`` (checked before the parser recurses:
    ``[[[[…`` a hundred thousand deep is refused in one linear pass)."""
    from engine.errors import DocumentError
    from engine.safeparse import load_json

    try:
        return load_json(text, field=field)
    except DocumentError as error:
        raise LabInputError.one(field, error.problem, line=error.line, code=error.code) from None


def json_field(data: dict, name: str) -> Any:
    """A field that is JSON in a multipart form and an object in a JSON body."""
    value = data.get(name)
    if isinstance(value, str):
        return json_parse(value, name)
    return value


def check_texts(data: dict) -> None:
    """LabInputError naming the first text field (outside ``builder``, which checks its
    own) that is not valid Unicode: a JSON ``\\ud800`` escape gives Python a lone
    surrogate that UTF-8, the database and the engine all refuse."""
    for name, value in data.items():
        if name == "builder" or not isinstance(value, str):
            continue
        problem = text_problem(value, lines=name == "scenario")
        if problem is not None:
            line, message = problem
            raise LabInputError.one(name, message, line=line)
