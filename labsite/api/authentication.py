"""``Authorization: Bearer <token>``: a personal API token acts as its user, with the
user's role; ``request.auth`` is the :class:`~labsite.api.models.ApiToken` (its scope is
checked by ``permissions.TokenScopePermission``)."""

from __future__ import annotations

from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.exceptions import AuthenticationFailed

from labsite.api.services import TokenRefused, token_authenticate


class BearerTokenAuthentication(BaseAuthentication):
    """No ``Authorization: Bearer`` header: not this scheme (session auth may still log
    the user in). A bad token is a 401, never a fall-back to anonymous."""

    def authenticate(self, request):
        parts = get_authorization_header(request).split()
        if not parts or parts[0].lower() != b"bearer":
            return None
        if len(parts) != 2:
            raise AuthenticationFailed("expected Authorization: Bearer <token>",
                                       code="token_malformed")
        try:
            secret = parts[1].decode("ascii")
        except UnicodeDecodeError:
            raise AuthenticationFailed("expected an ASCII token", code="token_malformed") from None
        try:
            token = token_authenticate(secret)
        except TokenRefused as refused:
            raise AuthenticationFailed(str(refused), code=refused.code) from None
        return token.user, token

    def authenticate_header(self, request) -> str:
        # Makes an unauthenticated request a 401 (with this header), not a 403.
        return 'Bearer realm="rsslab"'
