"""WebSocket URL routes (mounted by ``labsite.asgi``).

``urlpatterns`` names the same routes for ``reverse(..., urlconf="labsite.runs.routing")``
(``selectors.run_ws_url``): Django's own URL configuration holds no websocket routes.
"""

from django.urls import path

from labsite.runs.consumers import RunConsumer

websocket_urlpatterns = [
    path("ws/runs/<int:run_id>/", RunConsumer.as_asgi(), name="run-ws"),
]
urlpatterns = websocket_urlpatterns
