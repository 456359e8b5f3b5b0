"""Stock Channels: one consumer per socket, group_send to a group.

In-memory layer, or channels_redis' core layer on ``BENCH_REDIS_URL`` (with the
same redis-py pool settings as ours, so only the design differs).
"""

import asyncio
import json
import os
import time

import django
from django.conf import settings

REDIS_URL = os.environ.get("BENCH_REDIS_URL")
if REDIS_URL:
    from svc_infra.websocket.scaleout.layers import redis_host

    LAYER = {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        "CONFIG": {"hosts": [redis_host(REDIS_URL)], "capacity": 10_000},
    }
else:
    LAYER = {
        "BACKEND": "channels.layers.InMemoryChannelLayer",
        # Room for a whole burst per consumer: nothing may be dropped.
        "CONFIG": {"capacity": 10_000},
    }

settings.configure(DEBUG=False, INSTALLED_APPS=["channels"], CHANNEL_LAYERS={"default": LAYER})
django.setup()

from channels.generic.websocket import AsyncWebsocketConsumer  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.urls import path  # noqa: E402


class BenchConsumer(AsyncWebsocketConsumer):
    """``/ws``: in group "bench"; ``/ws/target``: in group "target" (latency)."""

    async def connect(self) -> None:
        self.group = "target" if self.scope["path"].endswith("/target") else "bench"
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()

    async def disconnect(self, code: int) -> None:
        await self.channel_layer.group_discard(self.group, self.channel_name)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        op, *args = (text_data or "").split()
        if op == "lat":  # lat <count> <rate>: timestamps to the "target" group, paced
            count, rate = int(args[0]), float(args[1])
            start = time.monotonic()
            for i in range(count):
                ahead = start + i / rate - time.monotonic()
                if ahead > 0:
                    await asyncio.sleep(ahead)
                message = {"type": "bench.stamp", "t": time.monotonic(), "i": i}
                await self.channel_layer.group_send("target", message)
            return
        count, size = int(op), int(args[0])
        payload = "x" * size
        for _ in range(count):
            await self.channel_layer.group_send("bench", {"type": "bench.msg", "text": payload})

    async def bench_msg(self, event: dict[str, str]) -> None:
        await self.send(text_data=event["text"])

    async def bench_stamp(self, event: dict[str, float]) -> None:
        await self.send(text_data=json.dumps({"t": event["t"], "i": event["i"]}))


app = ProtocolTypeRouter(
    {
        "websocket": URLRouter(
            [path("ws", BenchConsumer.as_asgi()), path("ws/target", BenchConsumer.as_asgi())]
        )
    }
)
