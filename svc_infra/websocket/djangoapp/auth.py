"""Django Channels: ``JWTAuthMiddleware`` and consumers that require identity.

In ``asgi.py``::

    application = ProtocolTypeRouter({
        "websocket": AllowedHostsOriginValidator(
            JWTAuthMiddlewareStack(URLRouter(websocket_urlpatterns))
        ),
    })

The middleware puts the :class:`WSPrincipal` in ``scope["principal"]`` (None when
no credential came) and a user-like object in ``scope["user"]``. A credential that
is present but invalid, or a foreign ``Origin`` (with ``WS_ALLOWED_ORIGINS``), is
refused before the consumer runs: close 1008, which the server answers with HTTP
403. Consumers that need identity or scopes inherit :class:`RequireWSIdentityMixin`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from typing import Any

from ..auth.core import WSAuthError, WSPrincipal, authenticate

__all__ = [
    "AnonymousWSUser",
    "JWTAuthMiddleware",
    "JWTAuthMiddlewareStack",
    "RequireWSIdentityMixin",
    "WSUser",
]

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class WSUser:
    """A user-like view of a principal for ``scope["user"]`` (no database row)."""

    is_authenticated = True
    is_anonymous = False

    def __init__(self, principal: WSPrincipal) -> None:
        self.principal = principal
        self.id = self.pk = principal.id
        self.username = principal.id
        self.email = principal.email or ""

    def __repr__(self) -> str:
        return f"<WSUser {self.id!r}>"


class AnonymousWSUser:
    """``scope["user"]`` when no credential came."""

    is_authenticated = False
    is_anonymous = True
    id = pk = None
    username = ""
    email = ""

    def __repr__(self) -> str:
        return "<AnonymousWSUser>"


async def _reject(receive: Receive, send: Send, error: WSAuthError) -> None:
    # The ASGI spec: wait for websocket.connect, then close before accepting.
    message = await receive()
    if message.get("type") == "websocket.connect":
        await send({"type": "websocket.close", "code": error.code, "reason": error.reason})


class JWTAuthMiddleware:
    """Authenticate WebSocket handshakes from the query, header or subprotocol.

    Args:
        inner: The ASGI app to call.
        api_keys: Whether an API key (``X-API-Key`` / ``?api_key=``) is accepted,
            when a verifier is registered.
    """

    def __init__(self, inner: ASGIApp, *, api_keys: bool = False) -> None:
        self.inner = inner
        self.api_keys = api_keys

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope.get("type") != "websocket":
            await self.inner(scope, receive, send)
            return
        try:
            principal = await authenticate(scope, required=False, api_keys=self.api_keys)
        except WSAuthError as error:
            await _reject(receive, send, error)
            return
        scope = dict(scope)
        scope["principal"] = principal
        scope["user"] = WSUser(principal) if principal is not None else AnonymousWSUser()
        await self.inner(scope, receive, send)


def JWTAuthMiddlewareStack(inner: ASGIApp, *, api_keys: bool = False) -> JWTAuthMiddleware:  # noqa: N802
    """The middleware stack for ``asgi.py``, named like Channels' ``AuthMiddlewareStack``."""
    return JWTAuthMiddleware(inner, api_keys=api_keys)


class RequireWSIdentityMixin:
    """For Channels consumers: refuse the handshake without identity or scopes.

    Put it before the consumer class::

        class ChatConsumer(RequireWSIdentityMixin, AsyncJsonWebsocketConsumer):
            required_scopes = ("chat:write",)   # all of them
            any_scopes = ()                     # or: at least one of them

    A refusal closes with 1008 before accepting ("missing credentials" or
    "insufficient scope"), like the FastAPI guards.
    """

    required_scopes: Sequence[str] = ()
    any_scopes: Sequence[str] = ()
    scope: Scope

    async def websocket_connect(self, message: dict[str, Any]) -> None:
        principal = self.scope.get("principal")
        error: WSAuthError | None = None
        if not isinstance(principal, WSPrincipal):
            error = WSAuthError("missing")
        elif not principal.has_scopes(*self.required_scopes) or (
            self.any_scopes and not principal.has_any_scope(*self.any_scopes)
        ):
            error = WSAuthError("scope")
        if error is not None:
            await self.close(code=error.code, reason=error.reason)  # type: ignore[attr-defined]
            return
        await super().websocket_connect(message)  # type: ignore[misc]
