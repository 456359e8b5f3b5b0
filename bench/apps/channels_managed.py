"""Ours on Django Channels: a ManagedWebsocketConsumer per socket, the manager fans out."""

import itertools

import django
from django.conf import settings

settings.configure(
    DEBUG=False,
    INSTALLED_APPS=["channels"],
    CHANNEL_LAYERS={"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}},
)
django.setup()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.urls import path  # noqa: E402

from svc_infra.websocket.djangoapp.consumers import ManagedWebsocketConsumer  # noqa: E402

_ids = itertools.count()


class BenchConsumer(ManagedWebsocketConsumer):
    async def get_user_id(self) -> str:
        return f"user{next(_ids)}"

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        count, size = (int(x) for x in (text_data or "").split())
        payload = "x" * size
        for _ in range(count):
            await self.manager.broadcast(payload)


app = ProtocolTypeRouter({"websocket": URLRouter([path("ws", BenchConsumer.as_asgi())])})
