"""The page where a logged-in user makes and revokes their personal API tokens. A new
token's secret is shown once, on the page that answers its creation, and never again."""

from __future__ import annotations

from datetime import timedelta

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_http_methods, require_POST

from labsite.api.models import ApiToken
from labsite.api.services import token_create, token_list, token_revoke

#: What the page offers as a lifetime (days; None: no expiry).
LIFETIMES = {"30": 30, "90": 90, "365": 365, "never": None}


@login_required
@require_http_methods(["GET", "POST"])
def tokens_page(request):
    """List the user's tokens; a POST makes one and shows its secret once."""
    secret = None
    if request.method == "POST":
        name = (request.POST.get("name") or "").strip()[:100] or "token"
        days = LIFETIMES.get(request.POST.get("expires", "90"), 90)
        expires = timezone.now() + timedelta(days=days) if days else None
        token, secret = token_create(user=request.user, name=name,
                                     read_only=request.POST.get("read_only") == "on",
                                     expires_at=expires)
        # The response must not be cached anywhere: it carries the secret.
        response = render(request, "api/tokens.html", {
            "tokens": token_list(user=request.user), "secret": secret, "new": token,
            "lifetimes": LIFETIMES})
        response["Cache-Control"] = "no-store"
        return response
    return render(request, "api/tokens.html", {"tokens": token_list(user=request.user),
                                               "lifetimes": LIFETIMES})


@login_required
@require_POST
def token_revoke_page(request, token_id: int):
    token = ApiToken.objects.filter(pk=token_id, user=request.user).first()
    if token is None:
        raise Http404("No such token.")
    token_revoke(token)
    messages.success(request, f"Token {token.prefix}… ({token.name}) revoked.")
    return redirect("api:tokens")
