"""Group membership: which layer groups this manager's channel belongs to, and keeping it so.

The channel is in the broadcast group, in the group of every user with a
connection here, and in the group of every room with such a member. This part is
the only one that adds the channel to a group or removes it: joins, leaves, the
periodic refresh (layers forget members after ``group_expiry``) and the rejoin
after a Redis outage all go through it.

A join that fails (Redis away or hung) is not left to the next refresh, hours
away: it schedules a retry of every join, after 0.25 s and then backing off to
5 s, until one pass succeeds. A user who connected during an outage is then
reachable from other processes soon after Redis answers again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

from ..groups import broadcast_group, room_group, user_group
from ._publisher import Publisher
from ._registry import Registry
from ._runtime import Runtime

__all__ = ["GroupMembership"]

# Groups joined at once by a refresh (each call is bounded by the layer timeout).
_REFRESH_CHUNK = 1000
# Retries of failed joins: first delay, longest delay (seconds).
_RETRY_FIRST, _RETRY_MAX = 0.25, 5.0


class _GroupLock:
    __slots__ = ("lock", "users")

    def __init__(self) -> None:
        self.lock = asyncio.Lock()
        self.users = 0


class GroupMembership:
    """Adds this manager's channel to its groups and removes it, in order.

    Args:
        layer: The Channels layer.
        prefix: The group name prefix.
        registry: Who is connected here, and the rooms.
        runtime: Holds the manager's channel while it runs.
        publisher: Makes the layer calls (bounded, errors counted).
        networked: Whether layer calls can suspend (and so overtake each other).
        change: ``change(group, channel, member)`` adds the channel to the group or
            removes it; default: the layer's ``group_add`` and ``group_discard``
            (the scale-out gives a batched one for channels_redis).
    """

    def __init__(
        self,
        layer: Any,
        *,
        prefix: str,
        registry: Registry,
        runtime: Runtime,
        publisher: Publisher,
        networked: bool,
        change: Callable[[str, str, bool], Coroutine[Any, Any, None]] | None = None,
    ) -> None:
        self.layer = layer
        self._group_change = change
        self.prefix = prefix
        self.registry = registry
        self.publisher = publisher
        self.networked = networked
        self.broadcast_group = broadcast_group(prefix)
        self.runtime = runtime
        #: Rooms whose group the channel is in.
        self.room_groups: set[str] = set()
        self._locks: dict[str, _GroupLock] = {}
        self._retry: asyncio.Task[None] | None = None
        self._later: asyncio.Task[None] | None = None

    @property
    def channel(self) -> str | None:
        """This manager's channel on the layer; None until started."""
        return self.runtime.channel

    async def join_broadcast(self) -> None:
        """Join the broadcast group (errors counted; the refresh joins again)."""
        await self._change(self.broadcast_group, True)

    async def leave_broadcast(self) -> None:
        """Leave the broadcast group."""
        await self._change(self.broadcast_group, False)

    async def sync_user(self, user: str, rooms: list[str] | None = None) -> None:
        """Be in the user's group, and in the groups of ``rooms`` (default: the
        user's rooms), exactly when the user has a connection here: after its
        first connection opened, or its last closed."""
        users = self.registry.users
        await self._sync(user_group(user, self.prefix), lambda: user in users)
        for room in self.registry.rooms_of(user) if rooms is None else rooms:
            await self.sync_room(room)

    async def sync_room(self, room: str) -> None:
        """Be in the room's group exactly when a member has a connection here."""
        wanted = self.registry.wanted_here(room)
        group = room_group(room, self.prefix)
        if wanted == (room in self.room_groups) and group not in self._locks:
            return  # nothing changes and no call is in flight: no layer call
        if wanted:
            self.room_groups.add(room)
        else:
            self.room_groups.discard(room)
        room_groups = self.room_groups
        await self._sync(group, lambda: room in room_groups)

    async def refresh(self) -> bool:
        """Join again every group the channel belongs to (errors counted, and a
        retry scheduled). False if a join failed."""
        if self.channel is None:
            return True
        groups = [self.broadcast_group]
        groups += [user_group(uid, self.prefix) for uid in list(self.registry.users)]
        groups += [room_group(room, self.prefix) for room in list(self.room_groups)]
        return await self._change_all(groups, True)

    async def _change_all(
        self, groups: list[str], member: bool, channel: str | None = None
    ) -> bool:
        """:meth:`_change` for every group; False if any failed."""
        # Concurrently, in chunks: a batched layer then makes them in a few round
        # trips rather than one (or two) per group.
        ok = True
        for start in range(0, len(groups), _REFRESH_CHUNK):
            chunk = groups[start : start + _REFRESH_CHUNK]
            results = await asyncio.gather(*(self._change(g, member, channel) for g in chunk))
            ok = ok and all(results)
        return ok

    def refresh_later(self, delay: float) -> None:
        """Join every group again once, ``delay`` seconds from now (replacing an
        earlier such request: the last one is what must be waited out)."""
        if self._later is not None:
            self._later.cancel()
        loop = asyncio.get_running_loop()
        self._later = loop.create_task(self._refresh_after(delay), name="ws-group-rejoin")

    async def _refresh_after(self, delay: float) -> None:
        await asyncio.sleep(delay)  # a timer: what it waits for is another process's calls
        await self.refresh()

    async def evict(self, channel: str, users: list[str], rooms: list[str]) -> bool:
        """Remove another process's ``channel`` (a dead one) from the broadcast
        group and the groups of ``users`` and ``rooms``; False if a removal
        failed (errors counted; not retried: the layer's ``group_expiry`` ends
        the membership anyway)."""
        groups = [self.broadcast_group]
        groups += [user_group(uid, self.prefix) for uid in users]
        groups += [room_group(room, self.prefix) for room in rooms]
        return await self._change_all(groups, False, channel)

    def stop(self) -> None:
        """Cancel a scheduled retry or rejoin (the manager is shutting down)."""
        for task in (self._retry, self._later):
            if task is not None and task is not asyncio.current_task():
                task.cancel()
        self._retry = self._later = None

    def _schedule_retry(self) -> None:
        if self._retry is None or self._retry.done():
            loop = asyncio.get_running_loop()
            self._retry = loop.create_task(self._retry_joins(), name="ws-group-retry")

    async def _retry_joins(self) -> None:
        delay = _RETRY_FIRST
        while True:
            await asyncio.sleep(delay)  # a timer: the outage has no event to await
            if await self.refresh():
                return
            delay = min(delay * 2, _RETRY_MAX)

    async def _sync(self, group: str, wanted: Callable[[], bool]) -> None:
        """Add the channel to ``group`` or remove it, as ``wanted()`` says when the
        call is made.

        Calls for one group run one at a time and decide at their turn: an add
        and a discard can otherwise reach Redis over two pooled connections in
        either order, and a user who reconnects at once would stop hearing
        other processes until the next refresh.
        """
        if not self.networked:
            # Channels' in-memory layer changes groups without suspending:
            # calls cannot overtake each other, and a lock would only cost.
            await self._change(group, wanted())
            return
        entry = self._locks.get(group)
        if entry is None:
            entry = self._locks[group] = _GroupLock()
        entry.users += 1
        try:
            async with entry.lock:
                await self._change(group, wanted())
        finally:
            entry.users -= 1
            if not entry.users:
                del self._locks[group]

    async def _change(self, group: str, member: bool, channel: str | None = None) -> bool:
        """Add the channel (this manager's, or ``channel``) to ``group`` or remove
        it; False if that failed (a failed join schedules a retry of every join)."""
        if self.channel is None:
            return True
        if channel is None:
            channel = self.channel
        if self._group_change is not None:
            # Bounded per round trip by the batcher itself: a wait in its queue
            # is not a failure.
            call = self._group_change(group, channel, member)
            ok = await self.publisher.call(call, bounded=False)
        else:
            layer = self.layer
            change = layer.group_add if member else layer.group_discard
            ok = await self.publisher.call(change(group, channel))
        if not ok and member:
            self._schedule_retry()
        return ok
