"""Reading YAML and JSON text that a user sent, without letting the text take the process down.

libyaml composes a document's node tree recursively in C: a scenario nested a hundred
thousand deep in flow style (``a: [[[[…]]]]``, 200 KB) overflows the C stack and kills the
process with SIGSEGV before any depth check in Python can run. Python's ``json`` recurses
too (it raises RecursionError instead of crashing, but only after a thousand levels of
work). So every entry point that takes text from a user bounds the nesting *before* a
recursive parser sees it:

- YAML: libyaml's event parser is a state machine with an explicit stack, not recursion;
  :func:`check_yaml_nesting` walks its events and stops at the first one deeper than the
  limit. Brackets inside quoted strings and comments are not structure, so they pass.
- JSON: :func:`check_json_nesting` counts brackets outside strings in one linear pass.

The loader (:func:`yaml_loader`) also reads numbers as YAML 1.2 does (``1:00`` is text, not the
YAML 1.1 sexagesimal 60; ``010`` is ten, not octal eight), and refuses integers longer
than Python converts (4,300 digits) with an error naming the line.

    >>> check_yaml_nesting("a: [[1]]", limit=3, field="scenario")
    >>> check_yaml_nesting("a: [[[1]]]", limit=3, field="scenario")
    Traceback (most recent call last):
    ...
    engine.errors.DocumentError: scenario: expected nesting at most 3 deep (got deeper on line 1)
"""

from __future__ import annotations

import functools
import json
import re
from typing import Any

from engine.errors import DocumentError

#: Nesting allowed in a JSON request body or a document that is not a scenario.
MAX_NESTING = 64
#: Digits allowed in one integer: fewer than Python's int/str conversion limit (4,300), so
#: a long digit string is refused with its line instead of a ValueError deep in a parser.
MAX_INTEGER_DIGITS = 1000

_JSON_TOKEN = re.compile(r'\\.|["\[\]{}]', re.DOTALL)
_OPENERS = frozenset("[{")


def check_json_nesting(text: str | bytes, *, limit: int = MAX_NESTING,
                       field: str = "body") -> None:
    """Raise DocumentError on ``field`` when JSON ``text`` nests arrays/objects deeper
    than ``limit``; strings (with their escapes) are skipped. Says nothing about whether
    the text is valid JSON: the parser that runs next does."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    depth = 0
    in_string = False
    for match in _JSON_TOKEN.finditer(text):
        token = match.group()
        if token == '"':
            in_string = not in_string
        elif in_string or len(token) == 2:
            continue
        elif token in _OPENERS:
            depth += 1
            if depth > limit:
                line = _line_at(text, match.start())
                raise DocumentError(field, f"JSON nested at most {limit} deep",
                                    detail=f"got deeper on line {line}", line=line)
        else:
            depth -= 1


def load_json(text: str | bytes, *, limit: int = MAX_NESTING, field: str = "body") -> Any:
    """The value of JSON ``text``, nesting bounded before parsing; DocumentError on
    ``field`` for text that is too deep or not JSON (NaN and Infinity are not JSON)."""
    check_json_nesting(text, limit=limit, field=field)
    try:
        return json.loads(text, parse_constant=_reject_constant, parse_int=_bounded_int)
    except ValueError as error:
        raise DocumentError(field, "JSON", detail=f"a syntax error: {_first_line(error)}",
                            line=getattr(error, "lineno", None)) from None


def check_yaml_nesting(text: str, *, limit: int, field: str) -> None:
    """Raise DocumentError on ``field`` when YAML (or JSON) ``text`` nests sequences and
    mappings, flow or block, deeper than ``limit``. Syntax errors are left to the parser
    that runs next, which reports them with their line."""
    import yaml

    parser = _loader_class()(text)
    depth = 0
    try:
        while parser.check_event():
            event = parser.get_event()
            if isinstance(event, yaml.CollectionStartEvent):
                depth += 1
                if depth > limit:
                    line = event.start_mark.line + 1
                    raise DocumentError(field, f"nesting at most {limit} deep",
                                        detail=f"got deeper on line {line}", line=line)
            elif isinstance(event, yaml.CollectionEndEvent):
                depth -= 1
    except yaml.YAMLError:
        return
    finally:
        parser.dispose()


def check_yaml_syntax(text: str, *, limit: int = MAX_NESTING, field: str = "body") -> None:
    """DocumentError on ``field`` unless ``text`` is one YAML (or JSON) document nested at
    most ``limit`` deep. For storing text whose meaning is checked later."""
    import yaml

    check_yaml_nesting(text, limit=limit, field=field)
    loader = _loader_class()(text)
    try:
        loader.get_single_data()
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None) or getattr(error, "context_mark", None)
        problem = getattr(error, "problem", None) or _first_line(error)
        raise DocumentError(field, "YAML or JSON", detail=f"a syntax error: {problem}",
                            line=mark.line + 1 if mark else None) from None
    finally:
        loader.dispose()


@functools.cache
def _loader_class():
    """The YAML 1.2 loader, built on first use so importing this module stays cheap."""
    import yaml

    base = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

    class Yaml12Loader(base):
        """libyaml's safe loader with YAML 1.2's core-schema numbers: no sexagesimal
        (``1:00``), no ``0``-prefixed octal, no ``_`` digit separators; integers longer
        than MAX_INTEGER_DIGITS refused with their line."""

        def construct_yaml_int(self, node):
            value = self.construct_scalar(node)
            digits = value.lstrip("+-")
            if len(digits) > MAX_INTEGER_DIGITS:
                raise DocumentError("", f"an integer of at most {MAX_INTEGER_DIGITS} digits",
                                    detail=f"got {len(digits)} digits",
                                    line=node.start_mark.line + 1)
            sign = -1 if value.startswith("-") else 1
            if digits.startswith(("0x", "0o")):
                return sign * int(digits[2:], 16 if digits[1] == "x" else 8)
            return sign * int(digits)

        def construct_yaml_float(self, node):
            value = self.construct_scalar(node)
            if len(value) > MAX_INTEGER_DIGITS:
                raise DocumentError("", f"a number of at most {MAX_INTEGER_DIGITS} characters",
                                    detail=f"got {len(value)} characters",
                                    line=node.start_mark.line + 1)
            return super().construct_yaml_float(node)

    Yaml12Loader.yaml_implicit_resolvers = {
        first: [(tag, regexp) for tag, regexp in resolvers
                if tag not in ("tag:yaml.org,2002:int", "tag:yaml.org,2002:float")]
        for first, resolvers in base.yaml_implicit_resolvers.items()}
    Yaml12Loader.add_implicit_resolver(
        "tag:yaml.org,2002:int", re.compile(r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$"),
        list("-+0123456789"))
    Yaml12Loader.add_implicit_resolver(
        "tag:yaml.org,2002:float",
        re.compile(r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
                   r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"),
        list("-+.0123456789"))
    Yaml12Loader.add_constructor("tag:yaml.org,2002:int", Yaml12Loader.construct_yaml_int)
    Yaml12Loader.add_constructor("tag:yaml.org,2002:float", Yaml12Loader.construct_yaml_float)
    return Yaml12Loader


def yaml_loader():
    """The YAML loader class every entry point uses: libyaml's safe loader with YAML 1.2
    numbers (see ``Yaml12Loader`` in ``_loader_class``)."""
    return _loader_class()


class FileTooBig(Exception):
    """A file holds more than a reader's limit; ``size`` is what was seen: the size stat
    reports, or ``limit + 1`` for a device or pipe (stat says 0 there)."""

    def __init__(self, size: int, limit: int):
        super().__init__(f"more than {limit} bytes")
        self.size = size
        self.limit = limit

    @property
    def got(self) -> str:
        """``"2,000,000 bytes"``, or ``"more than 1,048,576 bytes"`` when the size is not
        known (a device or a pipe)."""
        if self.size > self.limit + 1:
            return f"{self.size:,} bytes"
        return f"more than {self.limit:,} bytes"


def read_bounded(path, limit: int) -> bytes:
    """The bytes of the file at ``path``, reading at most ``limit + 1`` of them: the size
    check cannot trust ``stat``, which says 0 for ``/dev/zero`` and pipes. Raises
    FileTooBig past ``limit``, IsADirectoryError for a folder, OSError as ``open`` does."""
    import os

    if os.path.isdir(path):
        raise IsADirectoryError(21, "a folder, not a file")
    with open(path, "rb") as stream:
        stated = os.fstat(stream.fileno()).st_size
        if stated > limit:
            raise FileTooBig(stated, limit)
        data = stream.read(limit + 1)
    if len(data) > limit:
        raise FileTooBig(max(stated, len(data)), limit)
    return data


def _bounded_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INTEGER_DIGITS:
        raise ValueError(f"expected an integer of at most {MAX_INTEGER_DIGITS} digits, "
                         f"got {len(text.lstrip('-'))} digits")
    return int(text)


def _reject_constant(name: str):
    raise ValueError(f"{name} is not allowed")


def _line_at(text: str, offset: int) -> int:
    return text.count("\n", 0, offset) + 1


def _first_line(error: Exception) -> str:
    return str(error).split("\n")[0]
