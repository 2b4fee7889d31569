"""A Content-Security-Policy header on every HTML response (Django 5.2 has no CSP of its own).

The policy allows nothing inline and no ``eval``: scripts and styles come only from the lab's
own origin (its static files, Plotly.js included), images from it or ``data:`` URLs (the
favicon placeholder), and connections from it plus its websocket (``ws://`` or ``wss://``
to the same host: CSP Level 3 lets ``'self'`` cover those, but browsers that predate it
do not). No framing, no ``<base>`` elsewhere, forms post only to the lab, no plugins.

Page scripts set styles through the CSSOM (``element.style.x = …``, ``insertRule``), which
CSP allows; ``style="…"`` attributes, ``<style>`` blocks and ``on…=`` handlers are refused.
Plotly.js needs no allowance: it puts its rules in a ``<style id="plotly.js-style-global">``
of its own unless the page already has an element with that id, and
``templates/lab/workbench.html`` provides one, a ``<link>`` to the empty
``static/css/plotly-global.css``, so the rules go into an allowed sheet through the CSSOM
(the same page pre-empts the ``<style>`` of the MapLibre CSS the bundle carries); the
charts in ``static/lab/results.js`` avoid the options that make Plotly set ``style``
attributes. The browser tests fail on any violation (``tests/web/conftest.py``).

With ``DEBUG`` on, Django's own error pages (HTTP status 400 and up) are left without the
header: they are built with inline CSS and JavaScript.
"""

from __future__ import annotations

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.conf import settings
from django.core.exceptions import DisallowedHost

HEADER = "Content-Security-Policy"

POLICY = {
    "default-src": ["'self'"],
    "script-src": ["'self'"],
    "style-src": ["'self'"],
    "img-src": ["'self'", "data:"],
    "connect-src": ["'self'"],  # + the websocket origin, per request
    "object-src": ["'none'"],
    "base-uri": ["'self'"],
    "form-action": ["'self'"],
    "frame-ancestors": ["'none'"],
}


def content_security_policy(request) -> str:
    """The header value for ``request``: :data:`POLICY` plus the same host's websocket."""
    policy = {name: list(sources) for name, sources in POLICY.items()}
    try:
        host = request.get_host()  # validated against ALLOWED_HOSTS: no stray characters
    except DisallowedHost:
        host = ""
    if host:
        policy["connect-src"].append(f"{'wss' if request.is_secure() else 'ws'}://{host}")
    return "; ".join(f"{name} {' '.join(sources)}" for name, sources in policy.items())


def _wants_policy(response) -> bool:
    if HEADER in response:
        return False
    if not response.get("Content-Type", "").startswith("text/html"):
        return False
    return not (settings.DEBUG and response.status_code >= 400)


class ContentSecurityPolicyMiddleware:
    """Adds :data:`HEADER` to HTML responses that do not carry one yet (sync and async)."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response):
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request):
        if self.is_async:
            return self.__acall__(request)
        return self._add_header(request, self.get_response(request))

    async def __acall__(self, request):
        return self._add_header(request, await self.get_response(request))

    @staticmethod
    def _add_header(request, response):
        if _wants_policy(response):
            response[HEADER] = content_security_policy(request)
        return response
