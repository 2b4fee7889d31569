"""The engine's error tree: every error it raises on bad input or an impossible request.

Every error names the field it is about, what was expected and what was given, so a
command line, a REST response or a form can show it as is, e.g. ``key: expected an even
number of hex digits, got 'zz1'``. Each carries a ``code`` (the class's, or a more
specific one given where it is raised) for programs to branch on: code never reads a
message's text.

    RssLabError                     code
    ├── HashKeyError                hash_key (key_hex: not a hex key of enough bytes)
    ├── TupleError                  tuple
    ├── TableError                  table
    ├── ConfigError                 config
    ├── DocumentError               document (YAML/JSON too deep, a number too long)
    ├── OutputError                 output (exit status 3: a result not written)
    ├── TrafficError                traffic (ipv6_fragments_on_batch_path)
    ├── PortStateError              port_state
    ├── PortExhausted               ports_exhausted
    ├── FragmentError               fragment (``reason`` says which rule)
    ├── PcapError                   pcap
    ├── CompareError                compare
    ├── GradingTimeout              grading_timeout (an exercise's grading ran too long)
    └── ScenarioError               scenario (``problems``: each with its line and path)
        └── ExerciseError           exercise (an exercise file; the same ``problems``)
"""

from __future__ import annotations

from dataclasses import dataclass

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

    #: What kind of error this is, for programs (see the module docstring).
    code = "error"

    def __init__(self, field: str, expected: str, got: object = None, *, detail: str = "",
                 code: str | None = None):
        self.field = field
        self.expected = expected
        self.got = got
        self.detail = detail
        if code is not None:
            self.code = code
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
        return {"code": self.code, "field": self.field, "expected": self.expected,
                "got": None if self.got is None else str(self.got), "message": str(self)}


class HashKeyError(RssLabError):
    """A Toeplitz key that is not hex, or too short for the input it must hash."""

    code = "hash_key"


class TupleError(RssLabError):
    """A malformed address, a port out of 0–65535, or mixed address families."""

    code = "tuple"


class TableError(RssLabError):
    """Hash bits outside 1–7, a bucket out of range, or a core that does not exist."""

    code = "table"


class ConfigError(RssLabError):
    """Any other inconsistent system or NIC setting."""

    code = "config"


class DocumentError(RssLabError):
    """YAML or JSON text that cannot be read safely: nested too deep, an integer too
    long, or a syntax error. ``line`` is 1-based, or None when unknown."""

    code = "document"

    def __init__(self, field: str, expected: str, got: object = None, *, detail: str = "",
                 line: int | None = None):
        super().__init__(field, expected, got, detail=detail)
        self.line = line

    def as_dict(self) -> dict:
        return {**super().as_dict(), "line": self.line}


class OutputError(RssLabError):
    """A result the lab could not write (permissions, a full disk): exit status 3, since
    the input was fine."""

    code = "output"

    exit_status = 3


class TrafficError(RssLabError):
    """Traffic that cannot be made: more flows than unique ports allow, an unreachable
    adversarial bucket, IPv6 fragments on the batch path, a missing pcap."""

    code = "traffic"


class PortStateError(RssLabError):
    """A take of a port that is not free, a release of a port that is free, or a reopen of
    a port outside the table's range (field ``port``)."""

    code = "port_state"


class PortExhausted(RssLabError):
    """No free port whose response lands on the core (field ``port``).

    ``reason`` is ``"unreachable"`` when the key's port matrix is singular and no
    tried IP lets the port alone reach any bucket of the core, else ``"occupancy"``
    (every fitting port of every tried table is taken or closed).
    """

    code = "ports_exhausted"

    def __init__(self, *, core: int, local_ips: list, tables_tried: int, reason: str,
                 detail: str, tries: int = 0):
        self.core = core
        self.tries = tries
        self.local_ips = [str(ip) for ip in local_ips]
        self.tables_tried = tables_tried
        self.reason = reason
        super().__init__("port", f"a free port whose response lands on core {core}",
                         detail=detail)


class FragmentError(RssLabError):
    """A fragment that cannot be part of any valid datagram, or that contradicts the
    fragments already held. ``reason`` is a short code also used in drop counters:

    ``not-ip``, ``not-a-fragment``, ``bad-offset``, ``zero-length``, ``not-multiple-of-8``,
    ``past-65535``, ``overlap``, ``beyond-end``, ``two-last-fragments``,
    ``too-many-fragments``.
    """

    code = "fragment"

    def __init__(self, field: str, expected: str, got: object = None, *, reason: str,
                 detail: str = ""):
        super().__init__(field, expected, got, detail=detail)
        self.reason = reason

    def as_dict(self) -> dict:
        return {**super().as_dict(), "reason": self.reason}


class PcapError(RssLabError):
    """A capture that cannot be read at all: missing, too large, not pcap/pcapng, or with
    more packets than MAX_PCAP_PACKETS."""

    code = "pcap"


class CompareError(RssLabError):
    """A ``--vary`` that names an unknown setting or value, repeats one, or asks for
    more than MAX_CELLS cells."""

    code = "compare"


class ScenarioError(RssLabError):
    """A scenario that cannot be loaded: ``problems`` lists every one found, in file order.

    ``field`` is the source name (a file path or ``<string>``).
    """

    code = "scenario"

    #: What the document should have been, for the message (``a valid scenario``).
    what = "scenario"

    def __init__(self, source: str, problems: list[Problem]):
        self.problems = sorted(problems, key=lambda p: (p.line or 0, p.path))
        count = len(self.problems)
        super().__init__(source, f"a valid {self.what}", None,
                         detail=f"{count} problem{'s' if count != 1 else ''}")
        lines = "\n".join(f"  {problem}" for problem in self.problems)
        self.args = (f"{source}: {count} problem{'s' if count != 1 else ''}\n{lines}",)

    def __str__(self) -> str:
        return self.args[0]

    def as_dict(self) -> dict:
        data = super().as_dict()
        data["message"] = str(self)
        data["problems"] = [p.as_dict() for p in self.problems]
        return data


class ExerciseError(ScenarioError):
    """An exercise file that cannot be loaded, or a variant of it the engine cannot build
    or solve (``engine.exercises``): ``problems`` as for a scenario, each with its line and
    key path in the exercise file."""

    code = "exercise"
    what = "exercise"


class GradingTimeout(RssLabError):
    """Grading an exercise's answers took longer than its limit (field ``timeout_s``).
    The answers were not graded: a caller must not count the attempt."""

    code = "grading_timeout"


class UnreadableAnswer(ValueError):
    """An exercise answer value of the wrong form; the message names the field. Grading
    turns it into that question's feedback (no points), never into a failed run."""


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with a scenario: ``path`` like ``services[0].policy`` (``""`` for
    the document), ``line`` 1-based (``None`` when unknown, e.g. JSON that YAML cannot
    read), and a message saying what was expected and what was given."""

    path: str
    line: int | None
    message: str

    def __str__(self) -> str:
        where = f"line {self.line}: " if self.line else ""
        return f"{where}{self.path or '(document)'}: {self.message}"

    def as_dict(self) -> dict:
        return {"path": self.path, "line": self.line, "message": self.message}


__all__ = [
    "MAX_SHOWN", "CompareError", "ConfigError", "DocumentError", "FragmentError",
    "ExerciseError", "GradingTimeout", "HashKeyError", "OutputError", "PcapError",
    "PortExhausted", "PortStateError",
    "Problem", "RssLabError", "ScenarioError", "TableError", "TrafficError", "TupleError",
    "UnreadableAnswer", "shown",
]
