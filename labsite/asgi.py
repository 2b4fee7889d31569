"""ASGI entry point: HTTP (Django, plus static files) and WebSockets (Channels consumers).

Static files are served here by Django's ``ASGIStaticFilesHandler`` from the staticfiles
finders, whatever ``DEBUG`` is: the lab is a one-command local tool (no collectstatic, no
whitenoise, no front proxy needed) and its assets are small. A deployment with a proxy in
front can turn that off with ``RSSLAB_SERVE_STATIC=0``.
"""

from __future__ import annotations

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "labsite.settings")
# Must run before anything imports models (consumers, routing).
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402
from django.conf import settings  # noqa: E402
from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler  # noqa: E402

from labsite.runs.routing import websocket_urlpatterns  # noqa: E402

http_app = ASGIStaticFilesHandler(django_asgi_app) if settings.SERVE_STATIC else django_asgi_app

application = ProtocolTypeRouter(
    {
        "http": http_app,
        "websocket": AllowedHostsOriginValidator(
            AuthMiddlewareStack(URLRouter(websocket_urlpatterns))
        ),
    }
)
