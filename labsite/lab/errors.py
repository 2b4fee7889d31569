"""The lab API's error types and their JSON shape (shared by every app's API views).

Every refusal of the lab's JSON endpoints, and of the REST API (``labsite.api``), is::

    {"errors": [{"code": "invalid", "field": "service.vip", "line": null,
                 "message": "expected ..."}, ...]}

built by :func:`error_body` (the one helper both use);
with status 400 for :class:`LabInputError`, 404 for :class:`LabNotFound`, 503 for
:class:`LabUnavailableError` and a :class:`LabLimitError`'s own status (429, 413) for a
fair-use limit (see ``labsite.lab.api.api_view``). ``field`` names the input
(a builder field, ``scenario``, ``pcap``, ``mode`` …), ``line`` is the scenario text's line
(1-based) when the problem is in typed YAML, else null; ``code`` is for programs to branch
on (an engine error's own ``code`` such as ``scenario`` or ``document``, else one of
:data:`STATUS_CODES`, or a limit's field: ``active_runs``, ``rate``, ``storage``).
"""

from __future__ import annotations

from typing import Any

from django.http import Http404

#: The ``code`` of an error that names none, by HTTP status.
STATUS_CODES = {400: "invalid", 401: "not_authenticated", 403: "permission_denied",
                404: "not_found", 405: "method_not_allowed", 409: "conflict",
                413: "too_large", 415: "unsupported_media_type", 422: "unprocessable",
                429: "throttled", 503: "unavailable"}


def error_entry(field: str | None, message: str, *, code: str = "invalid",
                line: int | None = None) -> dict[str, Any]:
    """One error in the shape every JSON refusal of the lab uses (keys in this order)."""
    return {"code": code, "field": field, "line": line, "message": message}


def error_body(errors: list[dict], /, http_status: int = 400, **extra: Any) -> dict[str, Any]:
    """``{"errors": [...], **extra}``, each error completed to :func:`error_entry`'s shape
    (a ``code`` from ``http_status`` where it has none)."""
    default = STATUS_CODES.get(http_status, "error")
    return {"errors": [error_entry(e.get("field"), str(e.get("message", "")),
                                   code=e.get("code") or default, line=e.get("line"))
                       for e in errors], **extra}


class LabInputError(ValueError):
    """Input the lab refuses; ``errors`` is the list the JSON response carries."""

    def __init__(self, errors: list[dict]):
        self.errors = error_body(errors)["errors"]
        super().__init__("; ".join(f"{e['field']}: {e['message']}" for e in errors))

    @classmethod
    def one(cls, field: str, message: str, line: int | None = None, *,
            code: str = "invalid") -> LabInputError:
        return cls([error_entry(field, message, code=code, line=line)])

    @classmethod
    def from_engine(cls, error, field: str | None = None) -> LabInputError:
        """An engine ``RssLabError`` as the error of ``field`` (default: the engine's own
        field). The message drops the field's name when it is the one shown, so a form
        never reads ``pcap: pcap: expected …``."""
        field = field or error.field
        same = lab_field(error.field) == lab_field(field)
        return cls.one(field, error.problem if same else str(error),
                       getattr(error, "line", None), code=error.code)


class LabNotFound(Http404):
    """Something the request names (``field``: ``run`` …) does not exist or is not the
    user's: a 404 page for a page view, a JSON 404 naming ``field`` for the API."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field


class LabUnavailableError(RuntimeError):
    """A service the lab depends on cannot be reached (the API answers 503 naming
    ``field``); subclasses add what the client should know (:meth:`details`), e.g. the
    run that was stored but could not be queued (``labsite.runs.errors.RunQueueError``)."""

    field = "service"

    def details(self) -> dict[str, Any]:
        """Extra top-level members of the 503 response."""
        return {}


def lab_field(field: str) -> str:
    """A field as the lab spells it: the CLI's ``--vary key`` is the form's ``vary.key``."""
    return field.removeprefix("--").replace(" ", ".")


class LabLimitError(Exception):
    """A fair-use limit refused the request: ``status`` 429 (too many active runs, too many
    requests) or 413 (over the storage budget); ``field`` names the limit, the message says
    the figures and what to do, ``details`` are the figures as top-level members of the
    JSON response, and ``retry_after`` (seconds, also in the ``Retry-After`` header) is set
    when waiting is enough."""

    status = 429
    field = "limit"

    def __init__(self, message: str, *, retry_after: int | None = None, **details: Any):
        super().__init__(message)
        self.retry_after = retry_after
        self.details = details if retry_after is None else {**details,
                                                            "retry_after": retry_after}
