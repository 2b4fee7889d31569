"""The API's JSON parser: bounded in size (``API_BODY_MAX_BYTES``, a 413 past it) and in
nesting (the engine's ``check_json_nesting`` runs before the parser recurses, so
``[[[[…`` a million deep is one 400 naming ``body``, not a RecursionError), integers of at
most 1,000 digits, no NaN or Infinity."""

from __future__ import annotations

from django.conf import settings
from rest_framework.exceptions import APIException
from rest_framework.parsers import BaseParser

from labsite.lab.errors import LabInputError


class RequestTooLarge(APIException):
    status_code = 413
    default_code = "too_large"
    default_detail = "request body too large"


def body_limit_check(declared: str | int | None) -> None:
    """RequestTooLarge when a request declares a body over ``API_BODY_MAX_BYTES``."""
    limit = settings.API_BODY_MAX_BYTES
    try:
        size = int(declared or 0)
    except (TypeError, ValueError):
        return
    if size > limit:
        raise RequestTooLarge(f"expected a body of at most {limit:,} bytes, got {size:,}")


class BoundedJSONParser(BaseParser):
    """Not a JSONParser subclass on purpose: DRF reads a JSONParser's body through
    ``request.body``, which refuses anything over DATA_UPLOAD_MAX_MEMORY_SIZE (the lab
    page's 2.3 MB), before this parser could apply the API's own limit."""

    media_type = "application/json"

    def parse(self, stream, media_type=None, parser_context=None):
        from engine.errors import DocumentError
        from engine.safeparse import load_json

        limit = settings.API_BODY_MAX_BYTES
        if stream is None:  # an empty body
            raise LabInputError.one("body", "expected a JSON object")
        data = stream.read(limit + 1)
        if len(data) > limit:
            raise RequestTooLarge(f"expected a body of at most {limit:,} bytes")
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as error:
            raise LabInputError.one("body", f"expected UTF-8 text (byte {error.start} is "
                                            f"not)") from None
        try:
            return load_json(text, field="body")
        except DocumentError as error:
            raise LabInputError.one("body", error.problem, error.line,
                                    code=error.code) from None
