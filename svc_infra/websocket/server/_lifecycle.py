"""The lifecycle: starting the manager's channel, receive task, presence and history;
shutting down; and what presence sees of this process.

What depends on the layer's kind (how to open the channel, how to receive, whether
there is presence, where history lives) comes in as callables from the scale-out
backend; this part only orders the steps, and fills the :class:`~._runtime.Runtime`
the other parts read.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from ..models import ConnectionInfo
from ._connections import Connections
from ._membership import GroupMembership
from ._recovery import Recovery
from ._registry import Registry
from ._router import LayerRouter, Receive
from ._runtime import Runtime
from .aio import cancel_and_wait
from .protocols import HistoryStore, Presence, PresenceHost

__all__ = ["Lifecycle"]

logger = logging.getLogger("svc_infra.websocket.presence")


class Lifecycle:
    """Starts and stops the manager's tasks, channel, presence and history store;
    is the :class:`~.protocols.PresenceHost` its presence talks back to.

    Args:
        id: The manager's id: names the tasks, and this process in the cluster.
        runtime: Filled on start (channel, presence), emptied on shutdown.
        registry: Whose connections shutdown closes.
        connections: Closes them.
        membership: Joins and leaves the groups.
        router: Handles what the receive task receives.
        recovery: Gets its history store on start; it is closed on shutdown.
        open_channel: Opens the manager's channel on the layer.
        receiver_for: How to receive from that channel.
        make_presence: Builds presence for this start, given its host (None:
            per-process presence).
        make_history: Builds the history store (called on start when history is on).
        close_timeout: Seconds that late closes may take at shutdown.
        groups_in_redis: The layer keeps groups in Redis (channels_redis core), so
            a dead process's channel must be removed from them by whoever reaps it.
    """

    #: Seconds between re-joins of the manager's groups (the manager's
    #: ``group_refresh_interval``).
    refresh_interval: float = 3600.0

    def __init__(
        self,
        *,
        id: str,
        runtime: Runtime,
        registry: Registry,
        connections: Connections,
        membership: GroupMembership,
        router: LayerRouter,
        recovery: Recovery,
        open_channel: Callable[[], Awaitable[str]],
        receiver_for: Callable[[str], Receive],
        make_presence: Callable[[PresenceHost], Presence | None],
        make_history: Callable[[], HistoryStore],
        close_timeout: float,
        groups_in_redis: bool = False,
    ) -> None:
        self.id = id
        self.runtime = runtime
        self.registry = registry
        self.connections = connections
        self.rooms = connections.rooms
        self.membership = membership
        self.router = router
        self.recovery = recovery
        self.open_channel = open_channel
        self.receiver_for = receiver_for
        self.make_presence = make_presence
        self.make_history = make_history
        self.close_timeout = close_timeout
        self.groups_in_redis = groups_in_redis
        self.receiver: asyncio.Task[None] | None = None
        self.refresher: asyncio.Task[None] | None = None
        # start() and shutdown() one at a time: a start waiting behind a shutdown
        # starts afresh (new channel, new history store), never half of each.
        self._lock = asyncio.Lock()
        self._joined = asyncio.Event()

    def started(self) -> bool:
        """Whether the manager is started."""
        return self.receiver is not None

    async def start(self) -> None:
        """Open the channel, make the history store, start the tasks and presence;
        does nothing if started.

        Raises:
            Exception: Whatever the layer raises when it cannot be reached.

        Cancelling is safe: nothing is left half-started.
        """
        if self.started():
            return
        async with self._lock:
            if self.started():  # another task started it while we waited
                return
            recovery = self.recovery
            if recovery.store is None and recovery.policy.enabled:
                recovery.store = self.make_history()
            channel = await self.open_channel()
            presence = self.make_presence(self)
            # Nothing below can fail (a Redis that is down must not stop the
            # process from serving its own sockets: groups and presence are
            # written when it answers), and nothing is left half-started if the
            # caller is cancelled: the tasks, which exist before the first
            # await, join the broadcast group and write presence themselves.
            self.runtime.channel = channel
            self.runtime.presence = presence
            self._joined = asyncio.Event()
            loop = asyncio.get_running_loop()
            self.receiver = loop.create_task(self._receive(channel), name=f"ws-manager-{self.id}")
            self.refresher = loop.create_task(self._refresh_loop(), name=f"ws-refresh-{self.id}")
            if presence is not None:
                presence.launch()
            await self._joined.wait()
            if presence is not None:
                await presence.wait_ready()

    async def shutdown(self, code: int, reason: str) -> None:
        """Close every connection, stop presence and the tasks, leave the broadcast
        group, close the history store.

        Cancelling is not safe: connections may be left open.
        """
        async with self._lock:  # not while start() is half-way
            connections = self.connections
            await connections.close_many(list(self.registry.conns.values()), code, reason)
            if connections.tasks:  # connections dropped meanwhile (failed writes) finish first
                _, late = await asyncio.wait(set(connections.tasks), timeout=self.close_timeout)
                await cancel_and_wait(late)
            # Users still within their room grace leave now: no timer outlives us,
            # and presence must queue their "left everywhere?" check before it stops.
            self.rooms.flush_departures()
            runtime = self.runtime
            if runtime.presence is not None:
                await runtime.presence.stop()
                runtime.presence = None
            self.membership.stop()
            tasks = [t for t in (self.receiver, self.refresher) if t is not None]
            self.receiver = self.refresher = None
            await cancel_and_wait(tasks)
            if runtime.channel is not None:
                await self.membership.leave_broadcast()
                runtime.channel = None
            await cancel_and_wait(self.recovery.tasks)
            store, self.recovery.store = self.recovery.store, None
            if store is not None:
                await store.close()

    async def _receive(self, channel: str) -> None:
        # Joined here, not in start(): a caller cancelled in start() must not
        # leave the process deaf to broadcasts until the next group refresh.
        await self.membership.join_broadcast()
        self._joined.set()
        await self.router.run(channel, self.receiver_for(channel))

    async def _refresh_loop(self) -> None:
        while True:
            await asyncio.sleep(self.refresh_interval)
            await self.membership.refresh()
            self.registry.forget_old_tombstones()

    # --- PresenceHost: what presence sees of this process -----------------------------

    @property
    def channel(self) -> str | None:
        # channels_redis' core layer: groups are sorted sets in Redis, which keep a
        # dead process's channel until group_expiry. (The pub/sub layer's groups
        # are subscriptions, gone with the process's connection.)
        return self.runtime.channel if self.groups_in_redis else None

    def local_connections(self) -> list[ConnectionInfo]:
        return self.registry.infos()

    def known_rooms(self) -> list[tuple[str, int, list[str]]]:
        return self.registry.known_rooms()

    async def apply_rooms(self, user: str, rooms: list[str], version: int) -> None:
        await self.rooms.apply(user, rooms, version)

    def room_version(self, user: str) -> int:
        return self.registry.room_version(user)

    async def announce(self, message: dict[str, Any]) -> None:
        await self.membership.publisher.publish(
            self.membership.broadcast_group, message, "presence"
        )

    async def rejoin_groups(self, again_after: float | None = None) -> None:
        await self.membership.refresh()
        if again_after is not None:
            self.membership.refresh_later(again_after)

    async def evict_channel(self, channel: str, users: list[str], rooms: list[str]) -> None:
        if channel == self.runtime.channel:
            return  # our own (reaped after a hang, and back): the resync rejoins
        if not await self.membership.evict(channel, users, rooms):
            logger.warning(
                "could not remove dead channel %s from all of its %d groups; "
                "the layer's group_expiry will",
                channel,
                len(users) + len(rooms) + 1,
            )
