"""The manager's side of the channel layer: publishing, and handling what arrives.

A mixin of :class:`~svc_infra.websocket.manager.ConnectionManager`. Every message
a manager publishes carries ``origin`` (the manager's id), so a manager skips its
own messages when they come back: it delivered locally before publishing. The
message types are specified in ``docs/layer-messages.md``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine, Iterable
from typing import TYPE_CHECKING, Any

from . import messages as lm
from .exceptions import ChannelLayerError
from .layers import batch_receiver
from .presence import PRESENCE, ROOMS

if TYPE_CHECKING:
    from .connection import LocalConnection
    from .presence import RedisPresence
    from .stats import ManagerStats

__all__ = ["LayerDispatch"]

logger = logging.getLogger("svc_infra.websocket.manager")

_FIRST_RETRY = 0.05


class LayerDispatch:
    """Mixin: publish to the layer, and dispatch the layer's messages."""

    @property
    def _call_timeout(self) -> float | None:
        # Only a layer behind a network can hang; for the in-memory layer a
        # timer per call would be pure cost (and memory until it expires).
        return self.layer_timeout if self._networked else None

    # Provided by the manager.
    id: str
    layer: Any
    layer_timeout: float
    _networked: bool
    stats: ManagerStats
    presence: RedisPresence | None
    _channel: str | None
    _all_group: str
    _joined: asyncio.Event
    _conns: dict[str, LocalConnection]
    _users: dict[str, dict[str, LocalConnection]]
    _rooms: dict[str, dict[str, None]]

    if TYPE_CHECKING:

        async def _close_many(
            self, conns: Iterable[LocalConnection], code: int, reason: str
        ) -> None: ...

        async def apply_rooms(self, user: str, rooms: list[str], version: int) -> None: ...

        async def _group_add(self, group: str) -> None: ...

        async def _change_room(self, uid: str, room: str, kind: str) -> None: ...

        async def _apply_join(self, uid: str, room: str) -> None: ...

        async def _apply_leave(self, uid: str, room: str) -> None: ...

    def _fan_out(
        self,
        frame: lm.Frame,
        *,
        user: str | None = None,
        room: str | None = None,
        exclude: str | None = None,
    ) -> None:
        targets: Iterable[LocalConnection]
        if user is not None:
            if user == exclude:
                return
            targets = list(self._users.get(user, {}).values())
        elif room is not None:
            users = self._users
            targets = [
                conn
                for member in self._rooms.get(room, ())
                if member != exclude and member in users
                for conn in list(users[member].values())
            ]
        elif exclude is None:
            targets = list(self._conns.values())
        else:
            targets = [c for c in list(self._conns.values()) if c.user_id != exclude]
        queued = 0
        for conn in targets:
            queued += conn.push(frame)
        self.stats.frames_queued += queued

    async def _publish(self, group: str, message: dict[str, Any], operation: str) -> None:
        """Send ``message`` to ``group`` for the other processes.

        Raises:
            ChannelLayerError: If the layer failed or took longer than
                :attr:`layer_timeout`; counted in ``messages_lost``.
        """
        message["origin"] = self.id
        try:
            async with asyncio.timeout(self._call_timeout):
                await self.layer.group_send(group, message)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.stats.layer_errors += 1
            self.stats.messages_lost += 1
            logger.warning("%s could not reach other processes: %r", operation, exc)
            raise ChannelLayerError(operation, exc) from exc

    async def _layer_call(self, call: Coroutine[Any, Any, Any]) -> None:
        """Await a group change; errors are logged and counted, and the next
        resync (or refresh) joins again."""
        try:
            async with asyncio.timeout(self._call_timeout):
                await call
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.stats.layer_errors += 1
            logger.warning("channel layer call failed: %r", exc)

    async def _receive_loop(self) -> None:
        assert self._channel is not None
        channel = self._channel
        # Joined here, not in start(): a caller cancelled in start() must not
        # leave the process deaf to broadcasts until the next group refresh.
        await self._group_add(self._all_group)
        self._joined.set()
        receive = batch_receiver(self.layer, channel) or self._receive_one
        delay = _FIRST_RETRY
        while True:
            # Never wrapped in a timeout: RedisPubSubChannelLayer loses its
            # subscription when a receive() is cancelled.
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
                # At most a second between tries: delivery resumes soon after
                # Redis does.
                delay = min(delay * 2, 1.0)
                continue
            delay = _FIRST_RETRY
            for message in messages:
                try:
                    await self._dispatch(message)
                except Exception:
                    logger.exception("could not handle layer message %r", message.get("type"))

    async def _receive_one(self, channel: str) -> list[dict[str, Any]]:
        return [await self.layer.receive(channel)]

    async def _dispatch(self, message: dict[str, Any]) -> None:
        if message.get("origin") == self.id:
            return  # already delivered locally by the sender
        kind = message.get("type")
        user = message.get("user")
        if kind == lm.SEND:
            frame = lm.frame_of(message)
            if frame is None:
                logger.warning("ws.send message without text or bytes ignored")
                return
            room = message.get("room")
            exclude = message.get("exclude")
            exclude = exclude if isinstance(exclude, str) else None
            if isinstance(user, str):
                self._fan_out(frame, user=user, exclude=exclude)
            elif isinstance(room, str):
                self._fan_out(frame, room=room, exclude=exclude)
            elif message.get("all") is True:
                self._fan_out(frame, exclude=exclude)
            else:
                # A message on a user's or room's group that forgot its target
                # must not reach everyone: ignore it, loudly.
                logger.warning("ws.send without user, room or all=True ignored")
        elif kind == PRESENCE:
            origin = message.get("origin")
            if self.presence is not None and isinstance(origin, str):
                self.presence.handle(origin, message)
        elif kind == ROOMS:
            # One user ({"user", "rooms", "v"}) or several ({"users": [[user, rooms, v]]}).
            entries = message.get("users")
            if not isinstance(entries, list):
                entries = [[user, message.get("rooms"), message.get("v")]]
            for entry in entries:
                if not (isinstance(entry, list | tuple) and len(entry) == 3):
                    continue
                who, rooms, version = entry
                if isinstance(who, str) and isinstance(rooms, list) and isinstance(version, int):
                    await self.apply_rooms(who, [str(r) for r in rooms], version)
        elif kind in (lm.JOIN, lm.LEAVE):
            room = message.get("room")
            if isinstance(user, str) and isinstance(room, str):
                if self.presence is not None:
                    # From code other than a manager: make it a cluster-wide change.
                    await self._change_room_quietly(user, room, kind)
                elif kind == lm.JOIN:
                    await self._apply_join(user, room)
                else:
                    await self._apply_leave(user, room)
        elif kind == lm.CLOSE and isinstance(user, str):
            code = message.get("code", 1000)
            reason = message.get("reason", "")
            await self._close_many(self._users.get(user, {}).values(), int(code), str(reason))
        else:
            logger.debug("ignoring layer message of type %r", kind)

    async def _change_room_quietly(self, uid: str, room: str, kind: str) -> None:
        try:
            await self._change_room(uid, room, kind)
        except ChannelLayerError as exc:
            logger.warning("%s from the layer for %r failed: %s", kind, uid, exc)
