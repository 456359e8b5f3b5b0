"""Channels consumers on the manager, driven by JSON commands (like manager_app.py)."""

from __future__ import annotations

from typing import Any

from channels.generic.websocket import AsyncJsonWebsocketConsumer
from channels.routing import URLRouter
from django.urls import path

from svc_infra.websocket.djangoapp.auth import JWTAuthMiddlewareStack
from svc_infra.websocket.djangoapp.consumers import ManagedJsonWebsocketConsumer


class Commands(ManagedJsonWebsocketConsumer):
    """The user comes from the URL; each JSON message is a manager command."""

    async def get_user_id(self) -> str | None:
        return str(self.scope["url_route"]["kwargs"]["user"])

    def get_metadata(self) -> dict[str, Any]:
        return {"path": self.scope["path"]}

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        m, op = self.manager, content.get("op")
        try:
            if op == "join":
                await m.join_room(self.user_id, content["room"])
            elif op == "to":
                await m.send_to_user(content["user"], content["msg"])
            elif op == "broadcast":
                await m.broadcast(content["msg"], exclude_user=content.get("exclude"))
            elif op == "room":
                await m.broadcast_to_room(
                    content["room"], content["msg"], exclude_user=content.get("exclude")
                )
            elif op == "burst":
                for i in range(int(content["n"])):
                    await m.send_to_user(self.user_id, {"seq": i})
            elif op == "bad":
                await m.broadcast({1: "int key"})
        except TypeError as exc:
            await self.send_json({"error": "TypeError", "detail": str(exc)})


class Authenticated(ManagedJsonWebsocketConsumer):
    """The user is the JWT's principal (the default)."""

    async def connected(self) -> None:
        await self.send_json({"user": self.user_id, "connection": self.connection_id})


class Plain(AsyncJsonWebsocketConsumer):  # type: ignore[misc]
    """Plain Channels code using the manager, as the Django guide shows."""

    manager: Any = None  # set by the tests

    async def connect(self) -> None:
        self.user = self.scope["url_route"]["kwargs"]["user"]
        await self.manager.connect(self.user, self)  # instead of self.accept()

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        await self.manager.broadcast(content, exclude_user=self.user)

    async def disconnect(self, code: int) -> None:
        await self.manager.disconnect(self.user, self)


application = URLRouter(
    [path("ws/<str:user>/", Commands.as_asgi()), path("plain/<str:user>/", Plain.as_asgi())]
)
authenticated = JWTAuthMiddlewareStack(URLRouter([path("secure/", Authenticated.as_asgi())]))
