"""Logging filters for ``settings.LOGGING``.

Django's ``django.request`` logger records a PermissionDenied (403) or a BadRequest (400)
with the exception attached, so every student who opens an admin page they may not see
would leave a full traceback in the log, burying the 500s that need one.
"""

from __future__ import annotations

import logging


class ClientErrorsOneLine(logging.Filter):
    """Drops the traceback of a record about a response under 500 (its message, e.g.
    ``Forbidden (Permission denied): /admin/auth/user/``, stays); 500s are untouched."""

    def filter(self, record: logging.LogRecord) -> bool:
        status = getattr(record, "status_code", None)
        if isinstance(status, int) and status < 500:
            record.exc_info = None
            record.exc_text = None
            record.stack_info = None
        return True
