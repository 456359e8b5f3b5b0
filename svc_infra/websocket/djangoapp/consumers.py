"""Django Channels: the consumer adapter and consumers that join the manager.

``manager.connect(user_id, consumer)`` takes an ``AsyncWebsocketConsumer`` (or its
JSON variant) as it takes a FastAPI ``WebSocket``. Let the manager accept: call
``connect`` from the consumer's ``connect()`` instead of ``self.accept()``. The
consumers below do all of it, so a Django consumer is as short as the spec's
FastAPI endpoints::

    class ChatConsumer(ManagedJsonWebsocketConsumer):
        async def connected(self) -> None:
            await self.manager.join_room(self.user_id, self.scope["url_route"]["kwargs"]["room"])

        async def receive_json(self, content):
            await self.manager.broadcast_to_room(self.room, content, exclude_user=self.user_id)
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping
from typing import Any

from channels.generic.websocket import AsyncJsonWebsocketConsumer, AsyncWebsocketConsumer

from ..auth.core import WSAuthError, WSPrincipal
from ..close_codes import daphne_code
from ..exceptions import ServerDrainingError, TooManyConnectionsError
from ..layer_messages import Frame
from ..manager import ConnectionManager
from ..server.transport import AsgiTransport, register_transport
from ._compat_daphne import served_by_daphne
from .relay import start_in_process

__all__ = ["ChannelsTransport", "ManagedJsonWebsocketConsumer", "ManagedWebsocketConsumer"]

_ACCEPTED = "_svc_infra_accepted"
_CLOSED = "_svc_infra_closed"


class ChannelsTransport(AsgiTransport):
    """An ``AsyncWebsocketConsumer`` as the manager sees it."""

    __slots__ = ("consumer",)

    def __init__(self, consumer: AsyncWebsocketConsumer) -> None:
        self.consumer = consumer

    @property
    def accepted(self) -> bool:
        return bool(getattr(self.consumer, _ACCEPTED, False))

    @property
    def scope(self) -> Any:
        return self.consumer.scope

    def guard_inbound(self, check: Callable[[Mapping[str, Any]], tuple[int, str] | None]) -> None:
        """Run ``check`` on every message the client sends, before the consumer's
        ``receive``; when it answers (code, reason), close with it instead."""
        consumer = self.consumer
        handler = consumer.websocket_receive

        async def websocket_receive(message: dict[str, Any]) -> None:
            verdict = check(message)
            if verdict is not None:
                await self.close(*verdict)
                return
            await handler(message)

        # Channels dispatches through getattr: the instance's handler wins.
        consumer.websocket_receive = websocket_receive

    async def accept(self, subprotocol: str | None = None) -> None:
        await self.consumer.accept(subprotocol)
        setattr(self.consumer, _ACCEPTED, True)

    async def send(self, frame: Frame) -> None:
        # base_send: straight to the server, past the consumer's own send() helpers.
        if isinstance(frame, str):
            await self.consumer.base_send({"type": "websocket.send", "text": frame})
        else:
            await self.consumer.base_send({"type": "websocket.send", "bytes": frame})

    async def close(self, code: int = 1000, reason: str = "") -> None:
        if getattr(self.consumer, _CLOSED, False):
            return
        setattr(self.consumer, _CLOSED, True)
        code = int(code)  # a plain int: Daphne's autobahn refuses an IntEnum
        if served_by_daphne(getattr(self.consumer, "base_send", None)):
            # autobahn drops the connection without a close frame (1006) for the
            # codes it cannot send (docs/close-codes.md).
            code = daphne_code(code)
        with contextlib.suppress(Exception):
            await self.consumer.close(code, reason or None)


class ManagedWebsocketConsumer(AsyncWebsocketConsumer):  # type: ignore[misc]
    """A consumer that joins the manager on connect and leaves it on disconnect.

    Override :meth:`connected` (after the socket is accepted and registered),
    ``receive(text_data=None, bytes_data=None)`` and ``disconnect(code)`` as usual;
    :attr:`manager`, :attr:`user_id` and :attr:`connection_id` are set.

    The user is ``scope["principal"]`` (set by ``JWTAuthMiddlewareStack``); without
    one the handshake is refused with 1008 ``missing credentials``, unless
    :meth:`get_user_id` is overridden.

    Class attributes:
        manager_alias: Which ``CHANNEL_LAYERS`` alias the process's manager uses.
        ws_manager: A specific manager instead of the process's one.
    """

    # The manager's one channel per process carries every message for this
    # process's sockets: a channel per socket would only cost a receive loop each.
    channel_layer_alias = None
    manager_alias = "default"
    ws_manager: ConnectionManager | None = None
    user_id: str | None = None
    connection_id: str | None = None

    @property
    def manager(self) -> ConnectionManager:
        if self.ws_manager is not None:
            return self.ws_manager
        from . import get_process_manager

        return get_process_manager(self.manager_alias)

    async def get_user_id(self) -> str | None:
        """The user this socket belongs to; None refuses the handshake."""
        principal = self.scope.get("principal")
        return principal.id if isinstance(principal, WSPrincipal) else None

    def get_metadata(self) -> dict[str, Any]:
        """Metadata stored with the connection (JSON-serializable)."""
        return {}

    async def connected(self) -> None:
        """Called once the socket is accepted and registered."""

    async def websocket_connect(self, message: dict[str, Any]) -> None:
        user_id = await self.get_user_id()
        if user_id is None:
            error = WSAuthError("missing")
            await self.close(code=error.code, reason=error.reason)
            return
        manager = self.manager
        try:
            self.connection_id = await manager.connect(user_id, self, self.get_metadata())
        except (TooManyConnectionsError, ServerDrainingError):  # closed already: end quietly
            return
        # Daphne, runserver and uvicorn then drain this process's sockets on SIGTERM.
        manager.drain_on_signals()
        start_in_process(manager)  # the outbox relay, with WS_RELAY_IN_PROCESS
        self.user_id = user_id
        await self.connected()

    async def websocket_disconnect(self, message: dict[str, Any]) -> None:
        if self.user_id is not None:
            setattr(self, _CLOSED, True)  # the client is gone: nothing to close
            await self.manager.disconnect(self.user_id, self)
        await super().websocket_disconnect(message)


class ManagedJsonWebsocketConsumer(ManagedWebsocketConsumer, AsyncJsonWebsocketConsumer):  # type: ignore[misc]
    """:class:`ManagedWebsocketConsumer` with ``receive_json``/``send_json``."""


register_transport(AsyncWebsocketConsumer, ChannelsTransport)
