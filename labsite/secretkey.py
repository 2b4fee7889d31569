"""The lab's own secret key for ``make run``: created once in ``var/secret_key``, then reused.

``labsite.settings`` never falls back to a built-in key. ``python -m labsite.launcher``
(``make run``) calls :func:`export_secret_key` before Django is set up: unless
``DJANGO_SECRET_KEY`` is already set, it reads ``$RSSLAB_VAR/secret_key`` (default
``<repo>/var/secret_key``), creating it with a fresh random key (mode 0600) the first time,
and exports the key as ``DJANGO_SECRET_KEY`` — for the settings and for the Celery worker
and daphne the launcher starts. Sessions therefore survive a restart of the lab, and each
checkout has a key of its own that never leaves ``var/`` (which git and Docker ignore).

This module imports nothing from Django or the settings (the settings import it).
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path

ENV_NAME = "DJANGO_SECRET_KEY"
FILE_NAME = "secret_key"
MIN_LENGTH = 50  # what Django's `check --deploy` (security.W009) asks for


class SecretKeyError(OSError):
    """The key file exists but holds no usable key, or cannot be read or written."""


def var_dir() -> Path:
    """``$RSSLAB_VAR``, or ``<repo>/var`` (the same rule as ``labsite.settings.VAR_DIR``)."""
    return Path(os.environ.get("RSSLAB_VAR") or Path(__file__).resolve().parent.parent / "var")


def new_secret_key() -> str:
    """A random key: 64 URL-safe characters (48 random bytes)."""
    return secrets.token_urlsafe(48)


def read_or_create_secret_key(path: Path) -> str:
    """The key stored in ``path``; creates the file (mode 0600) with a new key if missing.

    Creation is atomic: the key is written to a private temporary file that is then
    hard-linked into place, so two processes starting at once agree on one key and nobody
    ever reads a half-written file.
    """
    path = Path(path)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "w") as out:
                out.write(new_secret_key() + "\n")
            # FileExistsError: another process created it first; use theirs.
            with contextlib.suppress(FileExistsError):
                os.link(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
    key = path.read_text().strip()
    if len(key) < MIN_LENGTH:
        raise SecretKeyError(f"{path} holds no usable secret key (fewer than {MIN_LENGTH} "
                             "characters); delete it to have a new one made")
    return key


def export_secret_key(environ=os.environ) -> str:
    """Make sure ``DJANGO_SECRET_KEY`` is set in ``environ`` (by default this process's
    environment, which child processes inherit) and return it. A key already set wins;
    otherwise the key in ``var/secret_key`` is used, created on first use."""
    key = environ.get(ENV_NAME, "")
    if not key:
        key = read_or_create_secret_key(var_dir() / FILE_NAME)
        environ[ENV_NAME] = key
    return key


def export_existing_secret_key(environ=os.environ) -> str | None:
    """``manage.py`` beside ``make run``: unless ``DJANGO_SECRET_KEY`` is set, use the key
    ``make run`` keeps in ``var/secret_key`` when that file exists (never create one here,
    so a deployment without a key is still refused by the settings). Returns the key in
    use, or None."""
    key = environ.get(ENV_NAME, "")
    path = var_dir() / FILE_NAME
    if not key.strip() and path.exists():
        key = read_or_create_secret_key(path)
        environ[ENV_NAME] = key
    return key or None
