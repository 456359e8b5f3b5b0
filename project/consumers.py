"""WebSocket consumers of the demo project."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings

from svc_infra.websocket import ChannelLayerError
from svc_infra.websocket.djangoapp.auth import RequireWSIdentityMixin
from svc_infra.websocket.djangoapp.consumers import (
    ManagedJsonWebsocketConsumer,
    ManagedWebsocketConsumer,
)

from .dashboard import DASHBOARD_ROOM, dashboard_stats


class EchoConsumer(AsyncWebsocketConsumer):  # type: ignore[misc]
    """Public echo: sends every text or binary message back unchanged.

    Daphne drops empty text frames before they reach a consumer; under uvicorn an
    empty message is echoed like any other.
    """

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if text_data is not None:
            await self.send(text_data=text_data)
        elif bytes_data is not None:
            await self.send(bytes_data=bytes_data)


class ChatConsumer(ManagedJsonWebsocketConsumer):
    """The spec's Chat Application: join/leave notices, messages to everyone but the sender."""

    room: str

    async def connected(self) -> None:
        assert self.user_id is not None
        self.room = self.scope["url_route"]["kwargs"]["room"]
        await self.manager.join_room(self.user_id, self.room)
        await self.manager.broadcast_to_room(
            self.room, {"type": "system", "message": f"{self.user_id} joined the room"}
        )

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        message = content.get("message") if isinstance(content, dict) else None
        try:
            await self.manager.broadcast_to_room(
                self.room,
                {"type": "message", "from": self.user_id, "message": message},
                exclude_user=self.user_id,
            )
        except ChannelLayerError:
            # Redis is away: this process's members got it, the others did not.
            await self.send_json({"type": "error", "detail": "delivery degraded, retry later"})

    async def disconnect(self, code: int) -> None:
        if self.user_id is None or not hasattr(self, "room"):
            return
        with contextlib.suppress(ChannelLayerError):
            await self.manager.leave_room(self.user_id, self.room)
            await self.manager.broadcast_to_room(
                self.room, {"type": "system", "message": f"{self.user_id} left the room"}
            )


class NotificationsConsumer(ManagedWebsocketConsumer):
    """Receives what POST /api/notify/<user>/ or the ws-notify worker sends the user."""

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        pass  # heartbeats


_dashboard: set[asyncio.Task[None]] = set()


class DashboardConsumer(RequireWSIdentityMixin, ManagedWebsocketConsumer):
    """The spec's live dashboard, for tokens with scope ``ws:admin``; updates go to
    the dashboard's viewers only (the page at ``/dashboard/``)."""

    required_scopes = ("ws:admin",)

    async def connected(self) -> None:
        assert self.user_id is not None
        await self.manager.join_room(self.user_id, DASHBOARD_ROOM)
        if not _dashboard:
            task = asyncio.get_running_loop().create_task(push_dashboard_updates(self.manager))
            _dashboard.add(task)
            task.add_done_callback(_dashboard.discard)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        pass  # keep alive


async def push_dashboard_updates(manager: Any) -> None:
    """Broadcast stats every WS_DASHBOARD_INTERVAL seconds while someone watches."""
    while manager.get_room_users(DASHBOARD_ROOM):
        stats = dashboard_stats(manager)
        with contextlib.suppress(ChannelLayerError):  # counted; the next tick retries
            await manager.broadcast_to_room(
                DASHBOARD_ROOM, {"type": "dashboard_update", "data": stats}
            )
        await asyncio.sleep(settings.WS_DASHBOARD_INTERVAL)
