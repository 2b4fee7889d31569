"""The app's one door to ``engine.exercises``: loading a stored version (cached), building
variants, and turning a posted answer form into the engine's answers mapping.

The answer form is generated from each question's allow-list (``answer_fields``): every
field is one input named ``q-<question>-<field>``. Lists (a table, landing cores) are typed
comma-separated, a settings field is a select whose option values are JSON (so ``true``,
``4`` and ``"nat"`` keep their types), a multiple-choice question's choices are
checkboxes. The engine reads and checks the values itself (``engine.exercises.marking``):
this module only shapes them.
"""

from __future__ import annotations

import functools
import json
import re
from typing import Any

from labsite.lab.errors import LabInputError

#: Answer fields typed as comma-separated lists.
LIST_FIELDS = frozenset({"table", "landing_cores"})
_SPLIT = re.compile(r"[\s,;]+")
#: Characters one typed answer field may have (the engine's readers take at most 40 for a
#: number, 200 for text; a table of 128 buckets is ~400).
MAX_FIELD_CHARS = 20_000


@functools.lru_cache(maxsize=64)
def load_text(text: str, source: str):
    """The engine's Exercise of a stored version's ``text`` (cached: versions never change,
    and the key is the text itself, so a reused primary key cannot return a stale one)."""
    from engine.exercises import load_exercise

    return load_exercise(text, source=source)


def load_version(version):
    """The engine's Exercise of an ``ExerciseVersion``."""
    return load_text(version.text, f"{version.exercise.slug} v{version.number}")


def variant_of(version, seed: int):
    """The engine's Variant ``seed`` of ``version``."""
    from engine.exercises import build_variant

    return build_variant(load_version(version), seed)


def explain_params(version, seed: int) -> dict[str, Any]:
    """The NIC settings of variant ``seed`` that the lab's bit-by-bit page needs (key,
    hash bits, cores and the indirection table) to redo a packet's hash from its input."""
    config = variant_of(version, seed).scenario.build_system_config()
    return {"key": config.build_key().hex, "hash_bits": config.hash_bits,
            "cores": config.cores, "table": ",".join(map(str, config.build_table().buckets))}


def input_name(question_id: str, field: str) -> str:
    return f"q-{question_id}-{field}"


def question_inputs(question: dict[str, Any]) -> list[dict[str, Any]]:
    """How each answer field of a question (its ``student_view`` entry) is asked: ``name``,
    ``field``, ``widget`` (text, select, radio, checkbox), ``options`` and ``help``."""
    inputs = []
    for field in question["answer_fields"]:
        spec: dict[str, Any] = {"name": input_name(question["id"], field), "field": field,
                                "widget": "text", "options": [], "help": ""}
        if field in ("choice", "choices") and question.get("choices"):
            spec["widget"] = "radio" if field == "choice" else "checkbox"
            spec["options"] = [(c["id"], c["text"]) for c in question["choices"]]
        elif question["kind"] == "settings":
            spec["widget"] = "select"
            spec["options"] = [(json.dumps(v), str(v)) for v in question["allowed"][field]]
        elif field in LIST_FIELDS:
            spec["help"] = "whole numbers separated by commas"
            if field == "table":
                spec["help"] = (f"{question.get('buckets', '')} cores separated by commas, "
                                f"one per bucket")
        elif field == "hash":
            spec["help"] = "32 bits, e.g. 0x51ccc178"
        elif field == "action":
            spec["help"] = "assemble or bridge"
        inputs.append(spec)
    return inputs


def answers_from_form(questions: list[dict[str, Any]], data) -> dict[str, dict[str, Any]]:
    """The answers a posted form holds (``data`` a QueryDict or a dict of lists/strings):
    ``{question: {field: value}}`` with unanswered fields and questions left out.
    LabInputError names the input of a value that cannot be read at all."""
    answers: dict[str, dict[str, Any]] = {}
    for question in questions:
        given: dict[str, Any] = {}
        for spec in question_inputs(question):
            values = _values(data, spec["name"])
            values = [v.strip() for v in values if isinstance(v, str) and v.strip()]
            if not values:
                continue
            if any(len(v) > MAX_FIELD_CHARS for v in values):
                raise LabInputError.one(spec["name"], f"expected at most {MAX_FIELD_CHARS} "
                                                      f"characters")
            if spec["widget"] == "checkbox":
                given[spec["field"]] = values
            elif spec["widget"] == "select":
                try:
                    given[spec["field"]] = json.loads(values[0])
                except ValueError:
                    raise LabInputError.one(spec["name"], "expected one of the options") from None
            elif spec["field"] in LIST_FIELDS:
                given[spec["field"]] = [p for p in _SPLIT.split(values[0]) if p]
            else:
                given[spec["field"]] = values[0]
        if given:
            answers[question["id"]] = given
    return answers


def _values(data, name: str) -> list:
    if hasattr(data, "getlist"):
        return data.getlist(name)
    value = data.get(name)
    if value is None:
        return []
    return value if isinstance(value, list) else [value]
