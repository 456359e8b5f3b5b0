"""Room membership and layer groups: the part of the manager that rooms are made of.

Rooms belong to users: a user's connections, in any process, receive the room's
messages, and so does a connection the user opens later. Each process keeps:

- ``_rooms`` (room -> members) and ``_user_rooms`` (user -> rooms): membership.
  Without Redis presence it is this process's own record. With it, it mirrors
  the room sets stored in Redis for every user of the cluster, each applied
  only if its version is newer than the one held (updates may cross).
- ``_room_groups``: rooms whose layer group this process's channel is in: those
  with a member connected here.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

from . import messages as lm
from .exceptions import ChannelLayerError
from .groups import room_group, user_group

if TYPE_CHECKING:
    from .connection import LocalConnection
    from .presence import RedisPresence

__all__ = ["RoomState", "check_utf8", "user_key"]

logger = logging.getLogger("svc_infra.websocket.manager")

# Versions of users whose room sets became empty are kept this long, so a
# late, older update cannot bring the rooms back; then they are forgotten.
_TOMBSTONE_SECONDS = 600


def user_key(user_id: object) -> str:
    """The one spelling of a user id: ``str``, or an ``int`` converted.

    Raises:
        TypeError: For any other type.
    """
    # FastAPI path parameters and database ids are often ints: accept them, and
    # use one spelling everywhere (presence, group names, hooks).
    if isinstance(user_id, str):
        return user_id
    if isinstance(user_id, int) and not isinstance(user_id, bool):
        return str(user_id)
    raise TypeError(f"user_id must be str or int, not {type(user_id).__name__}")


def check_utf8(what: str, value: str) -> None:
    """Redis and msgpack carry UTF-8 only: refuse a lone surrogate at the call.

    Raises:
        ValueError: If ``value`` cannot be encoded as UTF-8.
    """
    try:
        value.encode()
    except UnicodeEncodeError:
        raise ValueError(f"{what} {value!r} is not valid UTF-8 text (Redis needs it)") from None


class _GroupLock:
    __slots__ = ("lock", "users")

    def __init__(self) -> None:
        self.lock = asyncio.Lock()
        self.users = 0


class RoomState:
    """Mixin of :class:`~svc_infra.websocket.manager.ConnectionManager`: rooms."""

    # Provided by the manager.
    id: str
    prefix: str
    layer: Any
    presence: RedisPresence | None
    group_refresh_interval: float
    _networked: bool
    _all_group: str
    _channel: str | None
    _users: dict[str, dict[str, LocalConnection]]

    if TYPE_CHECKING:

        async def _publish(self, group: str, message: dict[str, Any], operation: str) -> None: ...

        async def _layer_call(self, call: Coroutine[Any, Any, Any]) -> None: ...

        async def start(self) -> None: ...

    def __init__(self) -> None:
        self._rooms: dict[str, dict[str, None]] = {}  # dicts are ordered sets
        self._user_rooms: dict[str, dict[str, None]] = {}
        self._room_groups: set[str] = set()
        self._room_versions: dict[str, int] = {}
        self._group_locks: dict[str, _GroupLock] = {}

    @property
    def room_count(self) -> int:
        """Number of rooms with at least one member (in the cluster, with Redis)."""
        return len(self._rooms)

    async def join_room(self, user_id: str, room: str) -> None:
        """Add ``user_id`` to ``room``: all the user's connections, now and later.

        Connections in this process receive the room's messages when this
        returns. Other processes learn it through the layer (``ws.join`` on the
        user's group; with Redis presence, ``ws.rooms`` to every process).

        Raises:
            ChannelLayerError: Without Redis presence, if the layer failed (this
                process changed, others did not hear). With Redis presence, if
                Redis could not be reached (nothing changed); once Redis has the
                change it does not raise: a failed announcement is made up for
                by the next comparison with Redis.
            ValueError: With Redis presence, if ``user_id`` or ``room`` is not
                valid UTF-8 text.

        Cancelling is safe: with Redis presence the change, once started, runs to
        its end (shielded), so Redis and the processes' views never disagree
        because of it; without, this process has changed and others may not.
        """
        await self._change_room(user_key(user_id), room, lm.JOIN)

    async def leave_room(self, user_id: str, room: str) -> None:
        """Remove ``user_id`` from ``room`` (all the user's connections).

        Raises:
            ChannelLayerError: As :meth:`join_room`.
        """
        await self._change_room(user_key(user_id), room, lm.LEAVE)

    def get_room_users(self, room: str) -> list[str]:
        """Ids of the members of ``room`` (in the cluster, with Redis presence)."""
        return list(self._rooms.get(room, ()))

    async def _change_room(self, uid: str, room: str, kind: str) -> None:
        operation = "join_room" if kind == lm.JOIN else "leave_room"
        # A process that has not started (a Django worker with no socket yet)
        # would not know it should go through Redis.
        await self.start()
        if self.presence is None:
            if kind == lm.JOIN:
                await self._apply_join(uid, room)
            else:
                await self._apply_leave(uid, room)
            change = {"type": kind, "user": uid, "room": room}
            await self._publish(user_group(uid, self.prefix), change, operation)
            return
        # Shielded: a caller cancelled after Redis applied the change must not
        # leave this process and the others without it.
        await asyncio.shield(self._change_room_in_redis(uid, room, kind, operation))

    async def _change_room_in_redis(self, uid: str, room: str, kind: str, operation: str) -> None:
        assert self.presence is not None
        check_utf8("user_id", uid)
        check_utf8("room", room)
        op = "join" if kind == lm.JOIN else "leave"
        try:
            version, rooms = await self.presence.update_rooms(uid, op, room)
        except Exception as exc:
            raise ChannelLayerError(operation, exc) from exc
        await self.apply_rooms(uid, rooms, version)
        message: dict[str, Any] = {"type": "ws.rooms", "user": uid, "rooms": rooms, "v": version}
        try:
            await self._publish(self._all_group, message, operation)
        except ChannelLayerError:
            # Redis has the change: the others pick it up when they next compare
            # their mirror with Redis (within presence_ttl). Not an error here.
            logger.warning("%s for %r stored; other processes will see it late", operation, uid)

    # --- what presence calls -------------------------------------------------------

    async def apply_rooms(self, user: str, rooms: list[str], version: int) -> None:
        """Make ``rooms`` the user's room set, if ``version`` is newer than ours."""
        if version <= self._room_versions.get(user, 0):
            return
        self._room_versions[user] = version
        current = dict(self._user_rooms.get(user, {}))
        wanted = dict.fromkeys(rooms)
        # The whole set changes before the first await: a newer set applied
        # while group calls are in flight starts from this one, not a mix.
        changed = [r for r in current if r not in wanted] + [r for r in wanted if r not in current]
        for room in changed:
            self._set_member(user, room, room in wanted)
        for room in changed:
            await self._sync_room_group(room)

    def known_rooms(self) -> list[tuple[str, int, list[str]]]:
        """(user, version, rooms) of each user with rooms: written back after an outage."""
        self._forget_old_tombstones()
        return [
            (user, self._room_versions.get(user, 0), list(rooms))
            for user, rooms in self._user_rooms.items()
        ]

    def _forget_old_tombstones(self) -> None:
        import time

        horizon = (time.time() - _TOMBSTONE_SECONDS) * 1_000_000
        for user in [
            u for u, v in self._room_versions.items() if v < horizon and u not in self._user_rooms
        ]:
            del self._room_versions[user]

    async def rejoin_groups(self) -> None:
        """Join again every group this process belongs to (Redis came back)."""
        await self.refresh_groups()

    async def refresh_groups(self) -> None:
        """Join again every group this manager's channel belongs to.

        Runs every :attr:`group_refresh_interval` seconds once started; layers
        drop members after their ``group_expiry``. Errors are logged and counted.
        """
        if self._channel is None:
            return
        groups = [self._all_group]
        groups += [user_group(uid, self.prefix) for uid in list(self._users)]
        groups += [room_group(room, self.prefix) for room in list(self._room_groups)]
        for group in groups:
            await self._group_add(group)

    async def _refresh_loop(self) -> None:
        while True:
            await asyncio.sleep(self.group_refresh_interval)
            await self.refresh_groups()
            self._forget_old_tombstones()

    # --- internals ---------------------------------------------------------------------

    def _set_member(self, uid: str, room: str, member: bool) -> None:
        if member:
            self._rooms.setdefault(room, {})[uid] = None
            self._user_rooms.setdefault(uid, {})[room] = None
            return
        members = self._rooms.get(room)
        if members is not None:
            members.pop(uid, None)
            if not members:
                del self._rooms[room]
        rooms = self._user_rooms.get(uid)
        if rooms is not None:
            rooms.pop(room, None)
            if not rooms:
                del self._user_rooms[uid]

    async def _apply_join(self, uid: str, room: str) -> None:
        self._set_member(uid, room, True)
        await self._sync_room_group(room)

    async def _apply_leave(self, uid: str, room: str) -> None:
        self._set_member(uid, room, False)
        await self._sync_room_group(room)

    async def _sync_room_group(self, room: str) -> None:
        """Be in the room's group exactly when a member has a connection here."""
        wanted = any(m in self._users for m in self._rooms.get(room, ()))
        group = room_group(room, self.prefix)
        if wanted == (room in self._room_groups) and group not in self._group_locks:
            return  # nothing changes and no call is in flight: no layer call
        if wanted:
            self._room_groups.add(room)
        else:
            self._room_groups.discard(room)
        await self._sync_group(group, lambda: room in self._room_groups)

    async def _join_groups(self, uid: str) -> None:
        """The user's first connection here: join the user's group and rooms."""
        await self._sync_group(user_group(uid, self.prefix), lambda: uid in self._users)
        for room in list(self._user_rooms.get(uid, ())):
            await self._sync_room_group(room)

    async def _left_here(self, uid: str) -> None:
        """The user's last connection here closed: leave the user's groups.

        Without presence the user leaves their rooms (this process is all there
        is). With presence, Redis decides whether this was the user's last
        connection anywhere; if so, every process hears the emptied room set.
        """
        presence = self.presence  # shutdown may clear it while we await
        await self._sync_group(user_group(uid, self.prefix), lambda: uid in self._users)
        for room in list(self._user_rooms.get(uid, ())):
            if presence is None:
                self._set_member(uid, room, False)
            await self._sync_room_group(room)
        if presence is not None:
            presence.user_left_here(uid)

    async def _sync_group(self, group: str, wanted: Callable[[], bool]) -> None:
        """Add this process's channel to ``group`` or remove it, as ``wanted()``
        says when the call is made.

        Calls for one group run one at a time and decide at their turn: an add
        and a discard can otherwise reach Redis over two pooled connections in
        either order, and a user who reconnects at once would stop hearing
        other processes until the next refresh.
        """
        if not self._networked:
            # Channels' in-memory layer changes groups without suspending:
            # calls cannot overtake each other, and a lock would only cost.
            await self._change_group(group, wanted())
            return
        entry = self._group_locks.get(group)
        if entry is None:
            entry = self._group_locks[group] = _GroupLock()
        entry.users += 1
        try:
            async with entry.lock:
                await self._change_group(group, wanted())
        finally:
            entry.users -= 1
            if not entry.users:
                del self._group_locks[group]

    async def _change_group(self, group: str, member: bool) -> None:
        if self._channel is not None:
            change = self.layer.group_add if member else self.layer.group_discard
            await self._layer_call(change(group, self._channel))

    async def _group_add(self, group: str) -> None:
        await self._change_group(group, True)
