"""``manager.cluster``: cluster-wide presence queries, as coroutines, in every mode.

The manager's synchronous queries (``connection_count``, ``get_room_users``...)
answer from memory. In the mirror mode that memory holds the whole cluster; in
the index mode (``WS_PRESENCE_MODE=index``) it holds this process's connections
only, and the cluster's answers are in Redis, read when asked. This view asks the
right place: Redis in the index mode, memory otherwise; so code written against
it works the same in both modes, on one process and on a thousand.

Listings come in parts (``(names, cursor)``; pass the cursor back, "" after the
last part), so that nobody pulls a million ids into one list; ``iter_*`` walks
them for you.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import NamedTuple

from ..models import ConnectionInfo
from ._registry import Registry
from ._runtime import Runtime
from .protocols import Directory

__all__ = ["ClusterView", "PresenceCounts"]

Page = tuple[list[str], str]


class PresenceCounts(NamedTuple):
    """Cluster-wide counts."""

    connections: int
    users: int
    rooms: int


class ClusterView:
    """Cluster-wide presence queries (``manager.cluster``).

    In the index mode each coroutine raises whatever redis-py raises when Redis
    cannot be reached; otherwise they answer from memory. Cancelling is safe: they
    only read.
    """

    def __init__(
        self, registry: Registry, runtime: Runtime, start: Callable[[], Awaitable[None]]
    ) -> None:
        self._registry = registry
        self._runtime = runtime
        self._start = start

    async def _directory(self) -> Directory | None:
        await self._start()  # a manager that has not started does not know its mode yet
        presence = self._runtime.presence
        return None if presence is None else presence.directory()

    async def counts(self) -> PresenceCounts:
        """Connections, users with a connection, and rooms with a user."""
        directory = await self._directory()
        if directory is not None:
            return PresenceCounts(*await directory.counts())
        presence = self._runtime.presence
        conns = len(self._registry.conns)
        users = set(self._registry.users)
        if presence is not None:
            conns += presence.remote_count()
            users.update(presence.remote_users())
        return PresenceCounts(conns, len(users), len(self._registry.rooms))

    async def user_connections(self, user: str) -> list[ConnectionInfo]:
        """The user's connections, in every process."""
        directory = await self._directory()
        if directory is not None:
            return await directory.user_connections(user)
        local = [c.info for c in self._registry.user_connections(user)]
        presence = self._runtime.presence
        return local if presence is None else local + presence.remote_connections(user)

    async def is_user_connected(self, user: str) -> bool:
        """Whether the user has a connection in any process."""
        if user in self._registry.users:
            return True
        return bool(await self.user_connections(user))

    async def room_users(self, room: str, cursor: str = "", count: int = 500) -> Page:
        """A part of the room's users (about ``count``) and the next part's cursor."""
        directory = await self._directory()
        if directory is not None:
            return await directory.room_users(room, cursor, count)
        return _part(self._registry.members(room), cursor, count)

    async def users(self, cursor: str = "", count: int = 500) -> Page:
        """A part of the users connected somewhere, and the next part's cursor."""
        directory = await self._directory()
        if directory is not None:
            return await directory.users(cursor, count)
        names = list(self._registry.users)
        presence = self._runtime.presence
        if presence is not None:
            names = list(dict.fromkeys([*names, *presence.remote_users()]))
        return _part(names, cursor, count)

    async def rooms(self, cursor: str = "", count: int = 500) -> Page:
        """A part of the rooms with at least one user, and the next part's cursor."""
        directory = await self._directory()
        if directory is not None:
            return await directory.rooms(cursor, count)
        return _part(list(self._registry.rooms), cursor, count)

    async def iter_room_users(self, room: str, count: int = 500) -> AsyncIterator[str]:
        """Every user of the room, read ``count`` at a time."""
        cursor = ""
        while True:
            names, cursor = await self.room_users(room, cursor, count)
            for name in names:
                yield name
            if not cursor:
                return

    async def iter_users(self, count: int = 500) -> AsyncIterator[str]:
        """Every user connected somewhere, read ``count`` at a time."""
        cursor = ""
        while True:
            names, cursor = await self.users(cursor, count)
            for name in names:
                yield name
            if not cursor:
                return


def _part(names: list[str], cursor: str, count: int) -> Page:
    # A snapshot's offset: a listing that changes between parts may repeat or
    # skip a name, as Redis' SSCAN may.
    start = int(cursor or 0)
    end = start + max(count, 1)
    return names[start:end], str(end) if end < len(names) else ""
