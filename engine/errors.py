"""The engine's error hierarchy.

Every error names the field it is about, what was expected and what was
given, so a command line, a REST response or a form can show it as is, e.g.
``key: expected an even number of hex digits, got 'zz1'``.
"""

from __future__ import annotations


class RssLabError(Exception):
    """Base of every error the engine raises on bad input or an impossible request.

    ``field`` is a dotted path to the offending value (``"key"``, ``"rows[3].sport"``),
    ``expected`` says what would have been accepted, ``got`` is the value received.
    """

    def __init__(self, field: str, expected: str, got: object = None, *, detail: str = ""):
        self.field = field
        self.expected = expected
        self.got = got
        self.detail = detail
        message = f"{field}: expected {expected}"
        if got is not None:
            message += f", got {got!r}"
        if detail:
            message += f" ({detail})"
        super().__init__(message)

    @property
    def problem(self) -> str:
        """The message without its field: ``expected …, got … (detail)``, for a form that
        shows the field already."""
        return str(self).removeprefix(f"{self.field}: ")

    def as_dict(self) -> dict:
        """A JSON-ready form, the one error shape the CLI and the API emit."""
        return {"field": self.field, "expected": self.expected,
                "got": None if self.got is None else str(self.got), "message": str(self)}


class HashKeyError(RssLabError):
    """A Toeplitz key that is not hex, or too short for the input it must hash."""


class TupleError(RssLabError):
    """A malformed address, a port out of 0–65535, or mixed address families."""


class TableError(RssLabError):
    """Hash bits outside 1–7, a bucket out of range, or a core that does not exist."""


class ConfigError(RssLabError):
    """Any other inconsistent system or NIC setting."""
