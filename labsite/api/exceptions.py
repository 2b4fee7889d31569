"""Every API refusal in the lab's one error shape (``labsite.lab.errors.error_body``)::

    {"errors": [{"code": "required", "field": "items[3].scenario", "line": null,
                 "message": "This field is required."}]}

DRF's own errors (a serializer's, authentication, permissions, methods, media types,
pagination), the lab's (LabInputError 400, LabNotFound 404, LabLimitError 429/413 with
``Retry-After``, LabUnavailableError 503) and the API's (ApiConflict 409,
ApiUnprocessable 422, a body over the limit 413) all come out this way: nothing a client
sends makes a 500.
"""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import Http404
from rest_framework import exceptions
from rest_framework.response import Response

from labsite.api.services import ApiConflict, ApiUnprocessable
from labsite.lab.errors import (
    LabInputError,
    LabLimitError,
    LabNotFound,
    LabUnavailableError,
    error_body,
    error_entry,
)

#: The field an error names when DRF's exception names none.
_FIELDS = {exceptions.NotAuthenticated: "Authorization",
           exceptions.AuthenticationFailed: "Authorization",
           exceptions.MethodNotAllowed: "method",
           exceptions.UnsupportedMediaType: "Content-Type",
           exceptions.NotAcceptable: "Accept",
           exceptions.ParseError: "body", exceptions.NotFound: "url"}


def _path(prefix: str, key) -> str:
    if isinstance(key, int):
        return f"{prefix}[{key}]"
    if key == "non_field_errors":
        return prefix or "body"
    return f"{prefix}.{key}" if prefix else str(key)


def flatten(detail, prefix: str = "") -> list[dict]:
    """A serializer's nested errors as a flat list, each naming its field's path."""
    if isinstance(detail, dict):
        return [e for key, value in detail.items() for e in flatten(value, _path(prefix, key))]
    if isinstance(detail, list):
        if all(isinstance(item, str) for item in detail):  # a field's messages
            return [error_entry(prefix or "body", str(item),
                                code=getattr(item, "code", None) or "invalid")
                    for item in detail]
        return [e for index, item in enumerate(detail) if item
                for e in flatten(item, _path(prefix, index))]
    return [error_entry(prefix or "body", str(detail),
                        code=getattr(detail, "code", None) or "invalid")]


def _respond(status: int, errors: list[dict], headers: dict | None = None,
             **extra) -> Response:
    return Response(error_body(errors, status, **extra), status=status, headers=headers)


def api_exception_handler(exc, context):  # noqa: C901 (one branch per error type)
    if isinstance(exc, exceptions.ValidationError):
        return _respond(400, flatten(exc.detail))
    if isinstance(exc, exceptions.APIException):
        headers = {}
        if getattr(exc, "auth_header", None):
            headers["WWW-Authenticate"] = exc.auth_header
        if getattr(exc, "wait", None):
            headers["Retry-After"] = str(int(exc.wait))
        if isinstance(exc, exceptions.MethodNotAllowed):
            view = context.get("view")
            if view is not None:
                headers["Allow"] = ", ".join(view.allowed_methods)
        field = next((f for cls, f in _FIELDS.items() if isinstance(exc, cls)), None)
        detail = exc.detail
        code = getattr(detail, "code", None) or exc.default_code
        return _respond(exc.status_code, [error_entry(field, str(detail), code=code)],
                        headers)
    if isinstance(exc, LabInputError):
        return _respond(400, exc.errors)
    if isinstance(exc, LabNotFound):
        return _respond(404, [error_entry(exc.field, str(exc), code="not_found")])
    if isinstance(exc, Http404):
        return _respond(404, [error_entry("url", str(exc) or "not found", code="not_found")])
    if isinstance(exc, ApiUnprocessable):
        return _respond(422, [error_entry(exc.field, str(exc), code=exc.code)])
    if isinstance(exc, ApiConflict):
        return _respond(409, [error_entry(exc.field, str(exc), code=exc.code)])
    if isinstance(exc, PermissionError):
        return _respond(403, [error_entry(None, str(exc), code="permission_denied")])
    if isinstance(exc, LabLimitError):
        headers = {"Retry-After": str(exc.retry_after)} if exc.retry_after is not None else {}
        return _respond(exc.status, [error_entry(exc.field, str(exc), code=exc.field)],
                        headers, **exc.details)
    if isinstance(exc, LabUnavailableError):
        return _respond(503, [error_entry(exc.field, str(exc), code="unavailable")],
                        **exc.details())
    if isinstance(exc, RequestDataTooBig):
        return _respond(413, [error_entry("body", f"expected at most "
                                                  f"{settings.DATA_UPLOAD_MAX_MEMORY_SIZE:,} "
                                                  f"bytes of form fields (files go in file "
                                                  f"fields)", code="too_large")])
    return None
