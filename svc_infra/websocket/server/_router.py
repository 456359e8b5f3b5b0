"""The router: receives from the manager's channel and runs one handler per message type.

Handlers are named after the layer message types, as Channels consumers name
theirs (``ws.send`` -> :meth:`LayerRouter.ws_send`); the types are specified in
``docs/layer-messages.md`` and listed in :mod:`svc_infra.websocket.layer_messages`.
A manager skips its own messages when they come back: it delivered locally
before publishing.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from .. import layer_messages as lm
from ._publisher import Publisher
from ._rooms import RoomChange, Rooms
from ._runtime import Runtime
from .stats import ManagerStats

__all__ = ["LayerRouter", "Receive"]

logger = logging.getLogger("svc_infra.websocket.manager")

#: Receives the next messages from a channel (one or a batch).
Receive = Callable[[str], Awaitable[list[dict[str, Any]]]]
_Handler = Callable[[dict[str, Any]], Awaitable[None]]

_FIRST_RETRY = 0.05


class LayerRouter:
    """Dispatches layer messages to the parts that handle them.

    Args:
        origin: The manager's id (its own messages are skipped).
        publisher: Delivers ``ws.send`` to local sockets.
        rooms: Applies ``ws.join``, ``ws.leave`` and ``ws.rooms``.
        runtime: The manager's presence while it runs (None: per process).
        close_user: Closes a user's local connections (or one), for ``ws.close``.
        stats: Where receive errors are counted.
    """

    def __init__(
        self,
        *,
        origin: str,
        publisher: Publisher,
        rooms: Rooms,
        runtime: Runtime,
        close_user: Callable[[str, int, str, str | None], Awaitable[None]],
        stats: ManagerStats,
    ) -> None:
        self.origin = origin
        self.publisher = publisher
        self.rooms = rooms
        self.runtime = runtime
        self.close_user = close_user
        self.stats = stats
        self._handlers: dict[str, _Handler] = {
            kind: getattr(self, lm.handler_name(kind)) for kind in lm.TYPES
        }

    async def run(self, channel: str, receive: Receive) -> None:
        """Receive from ``channel`` until cancelled, retrying (with backoff up to a
        second) while the layer fails. Never wrapped in a timeout:
        RedisPubSubChannelLayer loses its subscription when a receive() is cancelled.

        Cancelling is how it stops.
        """
        delay = _FIRST_RETRY
        while True:
            try:
                messages = await receive(channel)
            except asyncio.CancelledError:
                raise
            except Exception:
                self.stats.layer_errors += 1
                # The traceback once per outage, then one line per retry.
                logger.warning(
                    "receiving from the channel layer failed; retrying",
                    exc_info=delay == _FIRST_RETRY,
                )
                await asyncio.sleep(delay)
                # At most a second between tries: delivery resumes soon after Redis does.
                delay = min(delay * 2, 1.0)
                continue
            delay = _FIRST_RETRY
            for message in messages:
                try:
                    await self.dispatch(message)
                except Exception:
                    logger.exception("could not handle layer message %r", message.get("type"))

    async def dispatch(self, message: dict[str, Any]) -> None:
        """Run the handler of ``message``'s type (unknown types are ignored)."""
        if message.get("origin") == self.origin:
            return  # already delivered locally by the sender
        kind = message.get("type")
        handler = self._handlers.get(kind) if isinstance(kind, str) else None
        if handler is None:
            logger.debug("ignoring layer message of type %r", kind)
            return
        await handler(message)

    # --- one handler per message type -----------------------------------------------

    async def ws_send(self, message: dict[str, Any]) -> None:
        """``ws.send``: write the frame to the local connections it targets."""
        frame = lm.frame_of(message)
        if frame is None:
            logger.warning("ws.send message without text or bytes ignored")
            return
        user, room = message.get("user"), message.get("room")
        exclude = message.get("exclude")
        exclude = exclude if isinstance(exclude, str) else None
        mid = message.get("mid")
        if isinstance(mid, str) and self.publisher.recent.seen(mid):
            return  # an outbox message published again: delivered here already
        # Set by a manager that recorded the message in history (docs/recovery.md).
        offset, epoch = message.get("offset"), message.get("epoch")
        if not (isinstance(offset, int) and isinstance(epoch, str)):
            offset = epoch = None
        if isinstance(user, str):
            self.publisher.deliver(frame, user=user, exclude=exclude, offset=offset, epoch=epoch)
        elif isinstance(room, str):
            self.publisher.deliver(frame, room=room, exclude=exclude, offset=offset, epoch=epoch)
        elif message.get("all") is True:
            self.publisher.deliver(frame, exclude=exclude, offset=offset, epoch=epoch)
        else:
            # A message on a user's or room's group that forgot its target
            # must not reach everyone: ignore it, loudly.
            logger.warning("ws.send without user, room or all=True ignored")

    async def ws_join(self, message: dict[str, Any]) -> None:
        """``ws.join``: a user joined a room (from a manager without presence, or other code)."""
        await self._room_change(message, RoomChange.JOIN)

    async def ws_leave(self, message: dict[str, Any]) -> None:
        """``ws.leave``: a user left a room."""
        await self._room_change(message, RoomChange.LEAVE)

    async def ws_close(self, message: dict[str, Any]) -> None:
        """``ws.close``: close a user's local connections (or the one named)."""
        user, connection = message.get("user"), message.get("connection")
        if isinstance(user, str):
            code = message.get("code", 1000)
            reason = str(message.get("reason", ""))
            only = connection if isinstance(connection, str) else None
            await self.close_user(user, int(code), reason, only)

    async def ws_rooms(self, message: dict[str, Any]) -> None:
        """``ws.rooms``: room sets stored in Redis, for one user or several."""
        entries = message.get("users")
        if not isinstance(entries, list):
            entries = [[message.get("user"), message.get("rooms"), message.get("v")]]
        for entry in entries:
            if not (isinstance(entry, list | tuple) and len(entry) == 3):
                continue
            who, rooms, version = entry
            if isinstance(who, str) and isinstance(rooms, list) and isinstance(version, int):
                await self.rooms.apply(who, [str(r) for r in rooms], version)

    async def _departed(self, user: Any, rooms: Any) -> None:
        """Without presence: the user's last connection in another process closed.
        Drop the user's room entries here unless the user is connected here."""
        if not (isinstance(user, str) and isinstance(rooms, list)):
            return
        if self.runtime.presence is not None or user in self.rooms.registry.users:
            return
        for room in rooms:
            if isinstance(room, str):
                await self.rooms.apply_change(user, room, RoomChange.LEAVE)

    async def ws_presence(self, message: dict[str, Any]) -> None:
        """``ws.presence``: another process's connections changed."""
        origin = message.get("origin")
        presence = self.runtime.presence
        if presence is not None and isinstance(origin, str):
            presence.handle(origin, message)

    async def _room_change(self, message: dict[str, Any], kind: RoomChange) -> None:
        user, room = message.get("user"), message.get("room")
        if message.get("departed") is True and kind is RoomChange.LEAVE:
            await self._departed(user, message.get("rooms"))
            return
        if not (isinstance(user, str) and isinstance(room, str)):
            return
        if self.runtime.presence is not None:
            # From code other than a manager: make it a cluster-wide change.
            await self.rooms.change_quietly(user, room, kind)
        else:
            await self.rooms.apply_change(user, room, kind)
