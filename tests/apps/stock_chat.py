"""A stock Channels chat (``AsyncWebsocketConsumer`` and ``group_send``, nothing of
this library's manager) on the layer in ``STOCK_LAYER`` / ``STOCK_HOSTS``, for Daphne.

It shows that RedisClusterChannelLayer serves any Channels app.
"""

from __future__ import annotations

import os

import django
from django.conf import settings

if not settings.configured:
    settings.configure(
        DEBUG=False,
        SECRET_KEY="stock-chat-test",
        ALLOWED_HOSTS=["*"],
        INSTALLED_APPS=["channels"],
        ROOT_URLCONF=__name__,
        CHANNEL_LAYERS={
            "default": {
                "BACKEND": os.environ["STOCK_LAYER"],
                "CONFIG": {
                    "hosts": [os.environ["STOCK_HOSTS"]],
                    "prefix": os.environ["STOCK_PREFIX"],
                },
            }
        },
        DATABASES={},
        USE_TZ=True,
    )
    django.setup()

from channels.generic.websocket import AsyncWebsocketConsumer
from channels.routing import ProtocolTypeRouter, URLRouter
from django.core.asgi import get_asgi_application
from django.http import HttpRequest, HttpResponse
from django.urls import path


class Chat(AsyncWebsocketConsumer):
    async def connect(self) -> None:
        self.room = self.scope["url_route"]["kwargs"]["room"]
        await self.channel_layer.group_add(self.room, self.channel_name)
        await self.accept()

    async def disconnect(self, code: int) -> None:
        await self.channel_layer.group_discard(self.room, self.channel_name)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        await self.channel_layer.group_send(
            self.room, {"type": "chat.message", "text": text_data or ""}
        )

    async def chat_message(self, event: dict[str, str]) -> None:
        await self.send(text_data=event["text"])


def root(request: HttpRequest) -> HttpResponse:
    return HttpResponse("stock chat")


urlpatterns = [path("", root)]

application = ProtocolTypeRouter(
    {
        "http": get_asgi_application(),
        "websocket": URLRouter([path("chat/<str:room>/", Chat.as_asgi())]),
    }
)
