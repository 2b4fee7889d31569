"""Who may call an API endpoint: a logged-in user or a valid token, and a read-only token
only for reads (GET, HEAD, OPTIONS) and the endpoints that store nothing (a view with
``stores_nothing = True``: hashing, validating a scenario)."""

from __future__ import annotations

from rest_framework.permissions import SAFE_METHODS, BasePermission

from labsite.api.models import ApiToken


class TokenScopePermission(BasePermission):
    message = "this token is read-only: it may read, hash and validate, not change anything"
    code = "token_read_only"

    def has_permission(self, request, view) -> bool:
        if not (request.user and request.user.is_authenticated):
            return False
        token = request.auth
        if isinstance(token, ApiToken) and token.read_only:
            return request.method in SAFE_METHODS or getattr(view, "stores_nothing", False)
        return True


class AllowAnyone(BasePermission):
    """For ``/healthz`` and the schema: no authentication at all."""

    def has_permission(self, request, view) -> bool:
        return True
