"""Loading a scenario: text or a file in, a validated ``Scenario`` or one ScenarioError
listing every problem out.

The steps, each in its own module: ``document`` parses the text (YAML or JSON, bounded
and safe) into data and a line map; ``schema`` validates each field, and ``problems``
turns pydantic's errors into located messages; ``cross_checks`` then checks what needs
several fields. Problems of one step are all reported before the next step runs.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import ValidationError

from engine.errors import Problem, ScenarioError
from engine.safeparse import FileTooBig, read_bounded
from engine.scenarios.scenario.cross_checks import cross_check
from engine.scenarios.scenario.document import format_path, line_of, parse_document
from engine.scenarios.scenario.limits import MAX_FILE_BYTES
from engine.scenarios.scenario.problems import problems_from
from engine.scenarios.scenario.schema import Scenario


def read_document(path: Path, error: type[ScenarioError], max_bytes: int) -> bytes:
    """A scenario's or an exercise's file, read up to ``max_bytes`` and no further (a
    device such as /dev/zero says its size is 0); ``error`` (ScenarioError or a subclass)
    naming the file when it is bigger or cannot be read."""
    try:
        return read_bounded(path, max_bytes)
    except FileTooBig as too_big:
        raise error(str(path), [Problem("", None, f"expected at most {max_bytes} bytes, "
                                                  f"got {too_big.got}")]) from None
    except OSError as unreadable:
        raise error(str(path), [Problem("", None, f"expected a readable file, got "
                                                  f"{unreadable.strerror or unreadable}")]
                    ) from None


def load_scenario_file(path: str | Path) -> Scenario:
    """Load a scenario from a ``.yaml``/``.yml``/``.json`` file; relative pcap paths
    resolve against its directory. Raises ScenarioError (also for an unreadable or
    oversized file)."""
    path = Path(path)
    data = read_document(path, ScenarioError, MAX_FILE_BYTES)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ScenarioError(str(path), [Problem("", None, f"expected UTF-8 text, got a "
                                                          f"byte 0x{data[error.start]:02x} at "
                                                          f"offset {error.start}")]) from None
    return load_scenario(text, source=str(path), base_dir=path.parent)


def _too_big(size: int) -> str:
    return f"expected at most {MAX_FILE_BYTES} bytes, got {size} bytes"


def load_scenario(text: str | bytes, *, source: str = "<string>",
                  base_dir: str | Path | None = None) -> Scenario:
    """Parse and validate a scenario from YAML or JSON text.

    ``source`` names the text in messages; ``base_dir`` is where relative pcap paths
    resolve (and, when given, pcap files must exist). Raises ScenarioError listing every
    problem with its line and key path.
    """
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError:
            raise ScenarioError(source, [Problem("", None, "expected UTF-8 text")]) from None
    if len(text) > MAX_FILE_BYTES or len(text.encode("utf-8", "surrogatepass")) > MAX_FILE_BYTES:
        raise ScenarioError(source, [Problem("", None, _too_big(len(text.encode(
            "utf-8", "surrogatepass"))))])
    problems: list[Problem] = []
    data, lines = parse_document(text, source, problems)
    if not isinstance(data, dict):
        raise ScenarioError(source, problems + [Problem(
            "", 1, f"expected a mapping of sections (schema_version, name, system, ...), "
                   f"got {type(data).__name__}")])
    try:
        scenario = Scenario.model_validate(data)
    except ValidationError as error:
        raise ScenarioError(source, problems + problems_from(error.errors(), lines)) from None
    except (RecursionError, ValueError, TypeError) as error:  # defensive: pydantic internals
        raise ScenarioError(source, [Problem("", None, f"expected a valid document, got "
                                                       f"{type(error).__name__}")]) from None
    base = Path(base_dir) if base_dir is not None else None
    problems += [Problem(format_path(loc), line_of(loc, lines), message)
                 for loc, message in cross_check(scenario, base)]
    if problems:
        raise ScenarioError(source, problems)
    object.__setattr__(scenario, "__pydantic_private__", {"_base_dir": base})
    return scenario
