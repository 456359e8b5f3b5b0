"""The ``ws-notify`` worker: background jobs push to users with one ``channel_layer.send``.

Route it in ``asgi.py``::

    "channel": ChannelNameRouter({"ws-notify": NotifyWorker.as_asgi()})

run it with ``manage.py runworker ws-notify``, and from anywhere::

    await channel_layer.send("ws-notify", {"type": "ws.notify", "user_id": "42", "payload": {...}})

``"room": name`` instead of ``user_id`` sends to a room; neither sends to everyone.
Sockets receive ``{"type": "notification", "data": <payload>}``, the same envelope as
the demo's ``POST /api/notify/<user>/``; ``"raw": True`` delivers the payload bare.
"""

from __future__ import annotations

import logging
from typing import Any

from channels.consumer import AsyncConsumer

from . import get_process_manager

__all__ = ["NOTIFY_CHANNEL", "NotifyWorker"]

NOTIFY_CHANNEL = "ws-notify"
logger = logging.getLogger("svc_infra.websocket.manager")


class NotifyWorker(AsyncConsumer):  # type: ignore[misc]
    """Handles ``ws.notify`` messages sent to the ``ws-notify`` channel."""

    async def ws_notify(self, message: dict[str, Any]) -> None:
        manager = get_process_manager()
        payload = message.get("payload")
        if message.get("raw") is not True:
            payload = {"type": "notification", "data": payload}
        try:
            if message.get("user_id") is not None:
                await manager.send_to_user(message["user_id"], payload)
            elif message.get("room") is not None:
                await manager.broadcast_to_room(str(message["room"]), payload)
            else:
                await manager.broadcast(payload)
        except TypeError:
            logger.exception("ws.notify with a payload that cannot be sent: dropped")
