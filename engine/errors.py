"""The engine's error hierarchy.

Every error names the field it is about, what was expected and what was
given, so a command line, a REST response or a form can show it as is, e.g.
``key: expected an even number of hex digits, got 'zz1'``.
"""

from __future__ import annotations

#: Characters of a received value an error message repeats; a 5,000-digit input is cut.
MAX_SHOWN = 60


def shown(value: object) -> str:
    """``repr(value)``, cut to MAX_SHOWN characters with its full length said, so an error
    about a huge input stays one readable line.

    >>> print(shown("9" * 5000))
    '99999999999999999999999999999999999999999999999999999... (5,002 characters)
    """
    text = repr(value)
    if len(text) <= MAX_SHOWN:
        return text
    return f"{text[:MAX_SHOWN - 6]}... ({len(text):,} characters)"


class RssLabError(Exception):
    """Base of every error the engine raises on bad input or an impossible request.

    ``field`` is a dotted path to the offending value (``"key"``, ``"rows[3].sport"``),
    ``expected`` says what would have been accepted, ``got`` is the value received.
    """

    #: The command line's exit status for this error (2: bad input).
    exit_status = 2

    def __init__(self, field: str, expected: str, got: object = None, *, detail: str = ""):
        self.field = field
        self.expected = expected
        self.got = got
        self.detail = detail
        message = f"{field}: expected {expected}"
        if got is not None:
            message += f", got {shown(got)}"
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


class DocumentError(RssLabError):
    """YAML or JSON text that cannot be read safely: nested too deep, an integer too
    long, or a syntax error. ``line`` is 1-based, or None when unknown."""

    def __init__(self, field: str, expected: str, got: object = None, *, detail: str = "",
                 line: int | None = None):
        super().__init__(field, expected, got, detail=detail)
        self.line = line

    def as_dict(self) -> dict:
        return {**super().as_dict(), "line": self.line}


class OutputError(RssLabError):
    """A result the lab could not write (permissions, a full disk): exit status 3, since
    the input was fine."""

    exit_status = 3


class TrafficError(RssLabError):
    """Traffic that cannot be made: more flows than unique ports allow, an unreachable
    adversarial bucket, IPv6 flows asked for as IPv4 arrays, a missing pcap."""
