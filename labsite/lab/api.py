"""How every JSON endpoint of the lab answers (this app's and ``labsite.runs``'s).

:func:`api_view` wraps a view: 403 JSON when not logged in (not a redirect), 405 for a
wrong method, and the error types of ``labsite.lab.errors`` as their JSON —
:class:`LabInputError` 400, :class:`LabNotFound` 404, :class:`LabUnavailableError` 503,
:class:`LabLimitError` its status (429, 413) with its figures and ``Retry-After`` —
plus a body over Django's size limit as a 400. Never a server error for bad input.
"""

from __future__ import annotations

import functools

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import Http404, JsonResponse
from django.urls import Resolver404, resolve
from django.views.csrf import csrf_failure as html_csrf_failure

from labsite.lab.errors import (
    LabInputError,
    LabLimitError,
    LabNotFound,
    LabUnavailableError,
    error_body,
    error_entry,
)
from labsite.lab.inputs import json_parse


def json_error(status: int, field: str, message: str, /, *, code: str | None = None,
               **extra) -> JsonResponse:
    """One error in the API's shape (``labsite.lab.errors.error_body``), with ``extra``
    top-level members; ``code`` defaults to the status's."""
    entry = error_entry(field, message, code=code) if code else {"field": field,
                                                                "message": message}
    return JsonResponse(error_body([entry], status, **extra), status=status)


def api_view(*methods: str):
    """Decorate a JSON view that takes ``methods`` (see the module docstring)."""
    def decorate(view):
        @functools.wraps(view)
        def wrapper(request, *args, **kwargs):
            if not request.user.is_authenticated:
                return json_error(403, "login", "log in to use the lab", code="not_authenticated")
            if request.method not in methods:
                response = json_error(405, "method", f"expected {' or '.join(methods)}, got "
                                                     f"{request.method}")
                response["Allow"] = ", ".join(methods)
                return response
            try:
                return view(request, *args, **kwargs)
            except LabInputError as error:
                return JsonResponse(error_body(error.errors), status=400)
            except RequestDataTooBig:
                return json_error(400, "body", f"expected at most "
                                               f"{settings.DATA_UPLOAD_MAX_MEMORY_SIZE:,} "
                                               f"bytes of fields (a capture goes in the file "
                                               f"field pcap)", code="too_large")
            except LabNotFound as missing:
                return json_error(404, missing.field, str(missing))
            except Http404 as missing:
                return json_error(404, "url", str(missing))
            except LabUnavailableError as down:
                return json_error(503, down.field, str(down), code="unavailable",
                                  **down.details())
            except LabLimitError as limit:
                response = json_error(limit.status, limit.field, str(limit), code=limit.field,
                                      **limit.details)
                if limit.retry_after is not None:
                    response["Retry-After"] = str(limit.retry_after)
                return response
        return wrapper
    return decorate


def csrf_failure(request, reason: str = ""):
    """Django's ``CSRF_FAILURE_VIEW``: a JSON endpoint (its URL name starts with ``api-``)
    gets the API's error shape, a page gets Django's HTML page."""
    try:
        name = resolve(request.path_info).url_name or ""
    except Resolver404:
        name = ""
    if not name.startswith("api-"):
        return html_csrf_failure(request, reason)
    return json_error(403, "csrf", f"expected the CSRF token of a page of this lab (the "
                                   f"csrftoken cookie and an X-CSRFToken header): {reason}",
                      code="csrf_failed")


def submitted_data(request) -> tuple[dict, object]:
    """The fields of a submit (a JSON body or a multipart form) and its uploaded ``pcap``
    file (None in a JSON body)."""
    if request.content_type == "application/json":
        data = json_parse(request.body or b"{}", "body")
        if not isinstance(data, dict):
            raise LabInputError.one("body", "expected a JSON object")
        return data, None
    return request.POST.dict(), request.FILES.get("pcap")
