"""WebSocket URL routes (mounted by ``labsite.asgi``)."""

from django.urls import path

from labsite.runs.consumers import RunConsumer

websocket_urlpatterns = [
    path("ws/runs/<int:run_id>/", RunConsumer.as_asgi()),
]
