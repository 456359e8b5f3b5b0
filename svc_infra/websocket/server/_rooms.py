"""Rooms: joining, leaving, and applying room sets that arrive from other processes.

Rooms belong to users: a user's connections, in any process, receive the room's
messages, and so does a connection the user opens later. The membership itself
is in the :class:`~._registry.Registry`; this part decides how a change travels:

- without Redis presence, this process applies it and tells the others with
  ``ws.join``/``ws.leave`` on the user's group;
- with it, Redis applies it (a versioned room set) and every process hears the
  new set with ``ws.rooms`` on the broadcast group.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
from typing import Any

from .. import layer_messages as lm
from ..exceptions import ChannelLayerError
from ..groups import check_utf8, user_group
from ._membership import GroupMembership
from ._publisher import Publisher
from ._recovery import Recovery, room_stream
from ._registry import Registry
from ._runtime import Runtime
from .protocols import Presence

__all__ = ["RoomChange", "Rooms"]

logger = logging.getLogger("svc_infra.websocket.manager")


class RoomChange(enum.Enum):
    """Joining or leaving a room, with each name the change goes by.

    Attributes:
        message_type: The layer message that carries it (``ws.join``/``ws.leave``).
        op: The operation the presence store applies (``"join"``/``"leave"``).
        operation: The manager verb named in errors (``"join_room"``/``"leave_room"``).
    """

    JOIN = (lm.JOIN, "join", "join_room")
    LEAVE = (lm.LEAVE, "leave", "leave_room")

    def __init__(self, message_type: str, op: str, operation: str) -> None:
        self.message_type = message_type
        self.op = op
        self.operation = operation


class Rooms:
    """Room changes, local and cluster-wide.

    Args:
        registry: The membership state.
        membership: Keeps the room groups in step with the state.
        publisher: Tells the other processes.
        runtime: The manager's presence while it runs (None: per process).
        recovery: Replays a room to the user's v1 connections when they join it.
        grace: ``room_grace``: seconds before a user whose last connection here
            closed leaves their rooms (0: at once).
    """

    def __init__(
        self,
        *,
        registry: Registry,
        membership: GroupMembership,
        publisher: Publisher,
        runtime: Runtime,
        recovery: Recovery,
        grace: float = 0.0,
    ) -> None:
        self.recovery = recovery
        self.grace = grace
        # Users whose rooms wait out the grace: user -> the timer that ends it.
        self._departures: dict[str, asyncio.TimerHandle] = {}
        self._tasks: set[asyncio.Task[None]] = set()  # departures being told
        self.registry = registry
        self.membership = membership
        self.publisher = publisher
        self.runtime = runtime

    async def change(self, user: str, room: str, kind: RoomChange) -> None:
        """Join or leave ``room``: see ``ConnectionManager.join_room``.

        Raises:
            ChannelLayerError: As ``ConnectionManager.join_room``.
            ValueError: With Redis presence, for text that is not valid UTF-8.
        """
        # The manager is started (the facade sees to it): a process that had not
        # would not know it should go through Redis.
        presence = self.runtime.presence
        if presence is None:
            await self.apply_change(user, room, kind)
            change = {"type": kind.message_type, "user": user, "room": room}
            await self.publisher.publish(
                user_group(user, self.membership.prefix), change, kind.operation
            )
            return
        # Shielded: a caller cancelled after Redis applied the change must not
        # leave this process and the others without it.
        await asyncio.shield(self._change_in_redis(presence, user, room, kind))

    async def change_quietly(self, user: str, room: str, kind: RoomChange) -> None:
        """:meth:`change`, for a request that came from the layer: failures are logged."""
        try:
            await self.change(user, room, kind)
        except ChannelLayerError as exc:
            logger.warning("%s from the layer for %r failed: %s", kind.message_type, user, exc)

    async def apply_change(self, user: str, room: str, kind: RoomChange) -> None:
        """Apply a join or leave here only (the layer told us, or we are alone)."""
        joins = kind is RoomChange.JOIN
        held = (
            self.recovery.hold_room(user, room)
            if joins and room not in self.registry.rooms_of(user)
            else []
        )
        self.registry.set_member(user, room, joins)
        await self.membership.sync_room(room)
        if held:
            await self.recovery.replay_room(held, room)

    async def apply(self, user: str, rooms: list[str], version: int) -> None:
        """Make ``rooms`` the user's room set, if ``version`` is newer than ours.

        In the index mode only for a user connected here: a set that arrives on the
        user's group just after their last connection here closed is not kept.
        """
        presence = self.runtime.presence
        if presence is not None and not presence.mirrors and user not in self.registry.users:
            return
        # The whole set changes before the first await: a newer set applied
        # while group calls are in flight starts from this one, not a mix.
        before = set(self.registry.rooms_of(user))
        gained = [r for r in dict.fromkeys(rooms) if r not in before]
        # Held before the membership shows: a live frame must not overtake the replay.
        held = {r: self.recovery.hold_room(user, r) for r in gained}
        changed = self.registry.replace_rooms(user, rooms, version)
        if not changed:  # an older version: nothing joins
            for room, conns in held.items():
                for conn in conns:
                    if conn.session is not None:
                        conn.session.release(conn, [room_stream(room)])
            return
        for room in changed:
            await self.membership.sync_room(room)
        for room, conns in held.items():
            if conns:
                await self.recovery.replay_room(conns, room)

    async def user_left_here(self, user: str) -> None:
        """The user's last connection here closed: leave the user's groups, and
        after ``grace`` seconds, unless the user is back here, their rooms.

        Without presence the user then leaves their rooms (this process is all
        there is). With presence, Redis decides whether the user has a connection
        anywhere; if not, every process hears the emptied room set.
        """
        await self.membership.sync_user(user, self.registry.rooms_of(user))
        if not self.grace:
            self._depart(user)
            return
        old = self._departures.pop(user, None)
        if old is not None:
            old.cancel()
        loop = asyncio.get_running_loop()
        self._departures[user] = loop.call_later(self.grace, self._depart, user)

    def flush_departures(self) -> None:
        """End every grace now (the manager is shutting down: no timer outlives it)."""
        departures, self._departures = self._departures, {}
        for user, timer in departures.items():
            timer.cancel()
            self._depart(user)

    def _depart(self, user: str) -> None:
        self._departures.pop(user, None)
        if user in self.registry.users:
            return  # back here within the grace
        presence = self.runtime.presence
        if presence is None or not presence.mirrors:
            # Without presence, or in the index mode: this process keeps rooms
            # only for users connected here.
            rooms = list(self.registry.rooms_of(user))
            for room in rooms:
                self.registry.set_member(user, room, False)
            if presence is None and rooms:
                self._tell_departed(user, rooms)
        if presence is not None:
            presence.user_left_here(user)

    async def load(self, user: str) -> None:
        """The user's first connection here opened: in the index mode, read the
        user's rooms from Redis (no process keeps other processes' users' rooms).
        Never raises: with Redis away, the rooms come with the next room change."""
        presence = self.runtime.presence
        directory = None if presence is None or presence.mirrors else presence.directory()
        if directory is None:
            return
        try:
            version, rooms = await directory.user_rooms(user)
        except Exception as exc:
            logger.warning("could not read the rooms of %r: %r", user, exc)
            return
        await self.apply(user, rooms, version)

    def _tell_departed(self, user: str, rooms: list[str]) -> None:
        """Without presence, tell every process that the user left here: a process
        that joined the user to a room while the user was connected elsewhere
        holds that room entry, and only hears of the departure this way. A
        process where the user still has a connection keeps it (``departed``)."""
        message = {"type": lm.LEAVE, "user": user, "rooms": rooms, "departed": True}
        group = self.membership.broadcast_group
        task = asyncio.get_running_loop().create_task(
            self._publish_quietly(group, message, "leave_room")
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _publish_quietly(self, group: str, message: dict[str, Any], operation: str) -> None:
        with contextlib.suppress(ChannelLayerError):  # logged and counted by the publisher
            await self.publisher.publish(group, message, operation)

    async def _change_in_redis(
        self, presence: Presence, user: str, room: str, kind: RoomChange
    ) -> None:
        check_utf8("user_id", user)
        check_utf8("room", room)
        operation = kind.operation
        try:
            version, rooms = await presence.update_rooms(user, kind.op, room)
        except Exception as exc:
            raise ChannelLayerError(operation, exc) from exc
        if presence.mirrors:
            await self.apply(user, rooms, version)
            group = self.membership.broadcast_group
        else:
            # The index mode: only the processes that hold the user's connections
            # keep the user's rooms, and they are in the user's group.
            if user in self.registry.users:
                await self.apply(user, rooms, version)
            group = user_group(user, self.membership.prefix)
        message = {"type": lm.ROOMS, "user": user, "rooms": rooms, "v": version}
        try:
            await self.publisher.publish(group, message, operation)
        except ChannelLayerError:
            # Redis has the change: the others pick it up when they next compare
            # their mirror with Redis (within presence_ttl), or (index mode) when
            # the user next connects there. Not an error here.
            logger.warning("%s for %r stored; other processes will see it late", operation, user)
