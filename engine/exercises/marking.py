"""What marking one answer produces, and reading an answer's values.

A question's marker returns a ``Marked``: the fraction of the points earned (0-1), lines
saying why, the packets the answer implies (``PacketView`` dicts, for the bit-by-bit
view), and what the engine expected — shown to the student only when the grading
reveals it (a right answer, or the last attempt), so a wrong prediction cannot be fixed
by reading the feedback. An answer a marker cannot read raises ``UnreadableAnswer``, whose
message names the field::

    >>> whole(" 0x1f ", "hash")
    31
    >>> whole(True, "core")
    Traceback (most recent call last):
    ...
    engine.errors.UnreadableAnswer: core: expected a whole number, got True
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from engine.errors import UnreadableAnswer, shown


@dataclass
class Marked:
    """One question's marking: ``fraction`` of its points, ``details`` (one line per
    condition or field), ``packets`` the answer implies, and ``expected`` (the engine's
    values; shown only when revealed)."""

    fraction: float
    details: list[str] = field(default_factory=list)
    packets: list[dict[str, Any]] = field(default_factory=list)
    expected: dict[str, Any] | None = None


def whole(value: object, name: str) -> int:
    """An answer's whole number: an int, or text in decimal or ``0x`` hex."""
    if isinstance(value, bool):
        raise UnreadableAnswer(f"{name}: expected a whole number, got {shown(value)}")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and len(value) <= 40:
        text = value.strip().lower()
        try:
            return int(text, 16) if text.startswith("0x") else int(text)
        except ValueError:
            pass
    raise UnreadableAnswer(f"{name}: expected a whole number, got {shown(value)}")


def number(value: object, name: str) -> float:
    """An answer's number (int, float, or decimal text)."""
    if isinstance(value, bool):
        raise UnreadableAnswer(f"{name}: expected a number, got {shown(value)}")
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str) and len(value) <= 40:
        try:
            return float(value.strip().rstrip("%")) / (100 if value.strip().endswith("%") else 1)
        except ValueError:
            pass
    raise UnreadableAnswer(f"{name}: expected a number, got {shown(value)}")


def text(value: object, name: str) -> str:
    """An answer's short text."""
    if not isinstance(value, str) or len(value) > 200:
        raise UnreadableAnswer(f"{name}: expected text, got {shown(value)}")
    return value.strip()


def whole_list(value: object, name: str, *, length: int | None = None) -> list[int]:
    """An answer's list of whole numbers (of ``length`` items when given)."""
    if not isinstance(value, list) or len(value) > 4096:
        raise UnreadableAnswer(f"{name}: expected a list of whole numbers, got {shown(value)}")
    if length is not None and len(value) != length:
        raise UnreadableAnswer(f"{name}: expected {length} entries, got {len(value)}")
    return [whole(item, f"{name}[{index}]") for index, item in enumerate(value)]


def share(right: int, asked: int) -> float:
    """The fraction of ``asked`` parts answered right (0 when nothing was asked)."""
    return right / asked if asked else 0.0
