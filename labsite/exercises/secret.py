"""The exercise secret: what a student's variant seed is derived from.

Never derived from ``SECRET_KEY`` (which an operator may rotate: that must not change any
student's variant, and knowing one must not give the other). The setting
``EXERCISE_SECRET`` (environment variable of that name) wins; otherwise a random secret is
created once in ``$RSSLAB_VAR/exercise_secret`` (mode 0600, the same atomic creation as
``labsite.secretkey``) and read by every process. Seeds are stored when a student starts
an exercise, so losing the file later changes only variants not yet started.
"""

from __future__ import annotations

from django.conf import settings

from labsite.secretkey import read_or_create_secret_key

FILE_NAME = "exercise_secret"


def exercise_secret() -> bytes:
    """The secret as bytes (the setting, else the file, created on first use)."""
    configured = (getattr(settings, "EXERCISE_SECRET", "") or "").strip()
    if configured:
        return configured.encode()
    return read_or_create_secret_key(settings.VAR_DIR / FILE_NAME).encode()
