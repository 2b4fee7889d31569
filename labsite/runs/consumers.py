"""The websocket a run page opens: ``ws/runs/<id>/`` relays the run's group messages."""

from __future__ import annotations

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from labsite.runs.broadcast import run_group, status_payload
from labsite.runs.selectors import run_get_for_user


def run_status_for(user, run_id: int) -> dict | None:
    """The current status message, or None if ``user`` may not watch the run."""
    run = run_get_for_user(user=user, run_id=run_id)
    return None if run is None else status_payload(run)


class RunConsumer(AsyncJsonWebsocketConsumer):
    async def connect(self):
        self.group = run_group(self.scope["url_route"]["kwargs"]["run_id"])
        # Join before reading the status, so no event sent in between is missed.
        await self.channel_layer.group_add(self.group, self.channel_name)
        status = await database_sync_to_async(run_status_for)(
            self.scope["user"], self.scope["url_route"]["kwargs"]["run_id"])
        if status is None:
            await self.close(code=4403)
            return
        await self.accept()
        await self.send_json(status)

    async def disconnect(self, code):
        await self.channel_layer.group_discard(self.group, self.channel_name)

    async def run_status(self, message):
        await self.send_json(message["payload"])

    run_events = run_status
