"""Channels consumers behind JWTAuthMiddlewareStack, for the auth tests."""

from __future__ import annotations

from typing import Any

from channels.generic.websocket import AsyncJsonWebsocketConsumer
from channels.routing import URLRouter
from django.urls import path

from svc_infra.websocket.djangoapp.auth import JWTAuthMiddlewareStack, RequireWSIdentityMixin


class Secure(RequireWSIdentityMixin, AsyncJsonWebsocketConsumer):  # type: ignore[misc]
    async def connect(self) -> None:
        principal = self.scope["principal"]
        await self.accept("bearer" if principal.via == "subprotocol" else None)
        await self.send_json(
            {
                "id": principal.id,
                "email": principal.email,
                "scopes": sorted(principal.scopes),
                "via": principal.via,
                "user": self.scope["user"].username,
                "authenticated": self.scope["user"].is_authenticated,
            }
        )


class AllOfAB(Secure):
    required_scopes = ("a", "b")


class AnyOfAB(Secure):
    any_scopes = ("a", "b")


class Open(AsyncJsonWebsocketConsumer):  # type: ignore[misc]
    async def connect(self) -> None:
        await self.accept()
        user: Any = self.scope["user"]
        await self.send_json({"authenticated": user.is_authenticated})


routes = [
    path("secure/", Secure.as_asgi()),
    path("all/", AllOfAB.as_asgi()),
    path("any/", AnyOfAB.as_asgi()),
    path("open/", Open.as_asgi()),
]
application = JWTAuthMiddlewareStack(URLRouter(routes))
with_api_keys = JWTAuthMiddlewareStack(URLRouter(routes), api_keys=True)
