"""The lifecycle: starting the manager's channel, receive task and presence; shutting down.

What depends on the layer's kind (how to open the channel, how to receive, whether
there is presence) comes in as callables from the manager, which knows the
scale-out side; this part only orders the steps.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from ._connections import Connections
from ._membership import GroupMembership
from ._registry import Registry
from ._router import LayerRouter, Receive
from .aio import cancel_and_wait
from .protocols import Presence

__all__ = ["Lifecycle"]


class Lifecycle:
    """Starts and stops the manager's tasks, channel and presence.

    Args:
        name: Names the tasks (the manager's id).
        registry: Whose connections shutdown closes.
        connections: Closes them.
        membership: Holds the channel; joins and leaves the broadcast group.
        router: Handles what the receive task receives.
        open_channel: Opens the manager's channel on the layer.
        receiver_for: How to receive from that channel.
        make_presence: Builds presence for this start (None: per-process presence).
        refresh_interval: Seconds between group refreshes (read at each wait).
        close_timeout: Seconds that late closes may take at shutdown.
    """

    def __init__(
        self,
        *,
        name: str,
        registry: Registry,
        connections: Connections,
        membership: GroupMembership,
        router: LayerRouter,
        open_channel: Callable[[], Awaitable[str]],
        receiver_for: Callable[[str], Receive],
        make_presence: Callable[[], Presence | None],
        refresh_interval: Callable[[], float],
        close_timeout: float,
    ) -> None:
        self.name = name
        self.registry = registry
        self.connections = connections
        self.membership = membership
        self.router = router
        self.open_channel = open_channel
        self.receiver_for = receiver_for
        self.make_presence = make_presence
        self.refresh_interval = refresh_interval
        self.close_timeout = close_timeout
        #: Presence while started (None without Redis presence).
        self.presence: Presence | None = None
        self.receiver: asyncio.Task[None] | None = None
        self.refresher: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self._joined = asyncio.Event()

    def started(self) -> bool:
        """Whether the manager is started."""
        return self.receiver is not None

    async def start(self) -> None:
        """Open the channel and start the tasks; does nothing if started.

        Raises:
            Exception: Whatever the layer raises when it cannot be reached.

        Cancelling is safe: nothing is left half-started.
        """
        if self.started():
            return
        async with self._lock:
            if self.started():  # another task started it while we waited
                return
            channel = await self.open_channel()
            presence = self.make_presence()
            # Nothing below can fail (a Redis that is down must not stop the
            # process from serving its own sockets: groups and presence are
            # written when it answers), and nothing is left half-started if the
            # caller is cancelled: the tasks, which exist before the first
            # await, join the broadcast group and write presence themselves.
            self.membership.channel = channel
            self.presence = presence
            self._joined = asyncio.Event()
            loop = asyncio.get_running_loop()
            self.receiver = loop.create_task(self._receive(channel), name=f"ws-manager-{self.name}")
            self.refresher = loop.create_task(self._refresh_loop(), name=f"ws-refresh-{self.name}")
            if presence is not None:
                presence.launch()
            await self._joined.wait()
            if presence is not None:
                await presence.wait_ready()

    async def shutdown(self, code: int, reason: str) -> None:
        """Close every connection, stop presence and the tasks, leave the broadcast group.

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
            connections.rooms.flush_departures()
            if self.presence is not None:
                await self.presence.stop()
                self.presence = None
            self.membership.stop()
            tasks = [t for t in (self.receiver, self.refresher) if t is not None]
            self.receiver = self.refresher = None
            await cancel_and_wait(tasks)
            if self.membership.channel is not None:
                await self.membership.leave_broadcast()
                self.membership.channel = None

    async def _receive(self, channel: str) -> None:
        # Joined here, not in start(): a caller cancelled in start() must not
        # leave the process deaf to broadcasts until the next group refresh.
        await self.membership.join_broadcast()
        self._joined.set()
        await self.router.run(channel, self.receiver_for(channel))

    async def _refresh_loop(self) -> None:
        while True:
            await asyncio.sleep(self.refresh_interval())
            await self.membership.refresh()
            self.registry.forget_old_tombstones()
