"""Stock Channels: one consumer per socket, group_send to a group, in-memory layer."""

import django
from django.conf import settings

settings.configure(
    DEBUG=False,
    INSTALLED_APPS=["channels"],
    CHANNEL_LAYERS={
        "default": {
            "BACKEND": "channels.layers.InMemoryChannelLayer",
            # Room for a whole burst per consumer: nothing may be dropped.
            "CONFIG": {"capacity": 10_000},
        }
    },
)
django.setup()

from channels.generic.websocket import AsyncWebsocketConsumer  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.urls import path  # noqa: E402


class BenchConsumer(AsyncWebsocketConsumer):
    async def connect(self) -> None:
        await self.channel_layer.group_add("bench", self.channel_name)
        await self.accept()

    async def disconnect(self, code: int) -> None:
        await self.channel_layer.group_discard("bench", self.channel_name)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        count, size = (int(x) for x in (text_data or "").split())
        payload = "x" * size
        for _ in range(count):
            await self.channel_layer.group_send("bench", {"type": "bench.msg", "text": payload})

    async def bench_msg(self, event: dict[str, str]) -> None:
        await self.send(text_data=event["text"])


app = ProtocolTypeRouter({"websocket": URLRouter([path("ws", BenchConsumer.as_asgi())])})
