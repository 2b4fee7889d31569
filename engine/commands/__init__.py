"""Command-line commands of ``python -m engine``, one module each (see engine/__main__.py)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from engine.errors import ConfigError, OutputError


def check_output_file(path: str | None, option: str) -> None:
    """Refuse, before any work starts, a file a command could not write: a folder, or a
    file in a folder that does not exist. ConfigError names ``option``."""
    if path is None:
        return
    target = Path(path)
    if target.is_dir():
        raise ConfigError(option, "a file to write, not a folder", path)
    if not target.parent.is_dir():
        raise ConfigError(option, "a file in an existing folder", path,
                          detail=f"there is no folder {str(target.parent)!r}")


@contextlib.contextmanager
def writing(path: str, option: str) -> Iterator[None]:
    """Turn an OSError while writing ``path`` (permissions, a full disk) into an
    OutputError naming ``option`` (exit 3), so the command prints one line, not a
    traceback."""
    try:
        yield
    except OSError as error:
        raise OutputError(option, "a file the lab can write", path,
                          detail=error.strerror or str(error)) from None
