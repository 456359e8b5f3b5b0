"""Sharded pub/sub subscriptions of one process on a Redis Cluster.

One subscription connection per master that owns a subscribed channel's slot,
each with one reader task. Why not redis-py's ``ClusterPubSub``: it serialises a
subscribe with the node's reader behind one lock, so every ``SSUBSCRIBE`` waits
for the reader's read timeout (measured: 650 ms per ``group_add``). A plain
``PubSub`` per node sends a subscribe while its reader waits, as one Redis does.

A reader whose connection fails (its master died) moves its channels to their
owners of now, retrying with backoff until the Cluster has promoted a replica.
A master that hangs breaks no connection and sends nothing, so every
AUDIT_EVERY seconds each reader asks the Cluster who owns its slots now (one
keyed call, which refreshes the slot map when it times out) and moves the
channels whose slot has another owner.
A slot that migrates (resharding) ends its subscriptions with a ``sunsubscribe``
that nobody asked for: those channels move the same way. Messages published
meanwhile do not reach this process: pub/sub keeps nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import ClusterDownError, RedisError

__all__ = ["Backoff", "ShardSubscriptions", "cancelled"]

logger = logging.getLogger("svc_infra.websocket.cluster")

#: Seconds a reader waits for a message before it checks whether to stop.
READ_BLOCK = 1.0

#: Seconds between two checks that a node still owns its subscribed channels' slots.
AUDIT_EVERY = 5.0


def cancelled() -> bool:
    """Whether the current task was asked to stop.

    redis-py's cluster client can swallow a ``CancelledError`` that arrives while
    it releases a connection, so loops around its calls check after each call
    rather than trust the cancellation to surface.
    """
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


class Backoff:
    """Delays between retries of a call that fails while the Cluster is
    incomplete: 0.1 s, doubling up to 2 s, back to 0.1 s after a success."""

    FIRST, LAST = 0.1, 2.0

    def __init__(self) -> None:
        self.delay = self.FIRST

    def reset(self) -> None:
        self.delay = self.FIRST

    async def pause(self) -> None:
        """Sleep the current delay and double the next (cancelling is safe)."""
        await asyncio.sleep(self.delay)
        self.delay = min(self.delay * 2, self.LAST)


@dataclass
class _Node:
    """The subscription connection to one master."""

    name: str
    client: Any  # redis.asyncio.Redis
    pubsub: Any  # its PubSub
    channels: set[str] = field(default_factory=set)
    reader: asyncio.Task[None] | None = None
    # Serialises (un)subscribes: PubSub opens its connection on the first one,
    # and two at once would each open one. Never held while reading.
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    audited: float = 0.0


class ShardSubscriptions:
    """This process's ``SSUBSCRIBE``\\ s on a Redis Cluster.

    Args:
        cluster: The Cluster client (routes, and refreshes its slot map).
        options: Connection options for a node (TLS, credentials).
        deliver: Called with (channel, data) for each message.
    """

    def __init__(
        self,
        cluster: RedisCluster,
        options: dict[str, Any],
        deliver: Callable[[str, bytes], None],
    ) -> None:
        self._cluster = cluster
        self._options = options
        self._deliver = deliver
        self._nodes: dict[str, _Node] = {}
        self._where: dict[str, str] = {}  # channel -> node name
        self._wanted: set[str] = set()
        self._moving: set[asyncio.Task[None]] = set()
        self._closed = False

    async def subscribe(self, channel: str) -> None:
        """Subscribe to ``channel`` on the master that owns its slot.

        Raises:
            RedisError: If that master cannot be reached.
        """
        self._wanted.add(channel)
        if channel in self._where:
            return
        await self._cluster.initialize()  # no-op once it knows the slots
        owner = self._cluster.get_node_from_key(channel)
        if owner is None:
            raise ClusterDownError(f"no master serves the slot of {channel}")
        node = self._nodes.get(owner.name)
        if node is None:
            client = redis.asyncio.Redis(
                host=owner.host,
                port=int(owner.port),
                socket_connect_timeout=2.0,
                **self._options,
            )
            node = self._nodes[owner.name] = _Node(owner.name, client, client.pubsub())
        self._where[channel] = node.name
        node.channels.add(channel)
        try:
            async with node.lock:
                await node.pubsub.ssubscribe(channel)
        except BaseException:
            # Still wanted: a move in progress retries it (_resubscribe).
            self._where.pop(channel, None)
            node.channels.discard(channel)
            raise
        if node.reader is None or node.reader.done():
            node.reader = asyncio.get_running_loop().create_task(self._read(node))

    async def unsubscribe(self, channel: str) -> None:
        """Stop listening to ``channel``; never raises for a connection that failed."""
        self._wanted.discard(channel)
        node = self._nodes.get(self._where.pop(channel, ""))
        if node is None:
            return
        node.channels.discard(channel)
        with contextlib.suppress(RedisError, OSError):
            async with node.lock:
                await node.pubsub.sunsubscribe(channel)

    async def close(self) -> None:
        """Stop the readers and close the connections (safe to call twice)."""
        self._closed = True
        nodes, self._nodes = list(self._nodes.values()), {}
        readers = [node.reader for node in nodes if node.reader is not None]
        readers += list(self._moving)
        for reader in readers:
            reader.cancel()
        if readers:
            await asyncio.wait(readers, timeout=READ_BLOCK * 3)
        for node in nodes:
            await _close(node)

    def _stopping(self) -> bool:
        return self._closed

    async def _read(self, node: _Node) -> None:
        while not self._closed and not cancelled():
            try:
                message = await node.pubsub.get_message(timeout=READ_BLOCK)
            except (RedisError, OSError) as exc:
                if self._stopping():  # close() came while it read
                    return
                logger.warning("shard subscriptions on %s failed: %r; moving them", node.name, exc)
                await self._move_off(node)
                return
            now = asyncio.get_running_loop().time()
            if now - node.audited >= AUDIT_EVERY and not self._stopping():
                node.audited = now
                self._spawn(self._audit(node))
            if message is None:
                continue
            channel = message["channel"]
            name = channel.decode() if isinstance(channel, bytes) else str(channel)
            if message["type"] == "smessage":
                self._deliver(name, message["data"])
            elif message["type"] == "sunsubscribe" and self._where.get(name) == node.name:
                # Not ours (unsubscribe() forgets the channel first): its slot moved.
                logger.info("the slot of %s left %s; subscribing at its new owner", name, node.name)
                self._detach(node, [name])
                self._spawn(self._resubscribe([name]))

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._moving.add(task)  # close() waits for it
        task.add_done_callback(self._moving.discard)

    async def _audit(self, node: _Node) -> None:
        """Move ``node``'s channels whose slot another master owns now."""
        sample = next(iter(node.channels), None)
        if sample is None:
            return
        with contextlib.suppress(RedisError, OSError):
            # Follows MOVED; on a node that hangs it times out and the Cluster client
            # refreshes its slot map before it retries.
            await self._cluster.exists(sample)
        moved = []
        for channel in node.channels:
            owner = self._cluster.get_node_from_key(channel)
            if owner is not None and owner.name != node.name:
                moved.append(channel)
        self._detach(node, moved)
        if moved:
            logger.warning(
                "%d shard subscription(s) left %s for its slots' new owner", len(moved), node.name
            )
            await self._resubscribe(moved)

    async def _move_off(self, node: _Node) -> None:
        """Subscribe ``node``'s channels again on their owners of now (a failover
        promoted a replica, or a slot moved), retrying until the Cluster answers."""
        if self._nodes.get(node.name) is node:
            del self._nodes[node.name]
        await _close(node)
        channels = sorted(node.channels)
        self._detach(node, channels)
        await self._resubscribe(channels)

    def _detach(self, node: _Node, channels: list[str]) -> None:
        """Forget that ``channels`` are subscribed on ``node``."""
        for channel in channels:
            node.channels.discard(channel)
            if self._where.get(channel) == node.name:
                del self._where[channel]

    async def _resubscribe(self, channels: list[str]) -> None:
        """Subscribe ``channels`` (those still wanted) on their owners of now,
        retrying with backoff until the Cluster answers for their slots."""
        pending = [channel for channel in channels if channel in self._wanted]
        backoff = Backoff()
        while pending and not self._closed and not cancelled():
            channel = pending[0]
            try:
                # A keyed call on the channel's slot: the Cluster client follows
                # MOVED and refreshes its slot map on a dead master.
                await self._cluster.exists(channel)
                if channel in self._wanted:
                    await self.subscribe(channel)
                pending.pop(0)
                backoff.reset()
            except (RedisError, OSError) as exc:
                logger.debug("moving %s: %r; retrying in %.1f s", channel, exc, backoff.delay)
                await backoff.pause()


async def _close(node: _Node) -> None:
    with contextlib.suppress(Exception):
        await node.pubsub.aclose()
    with contextlib.suppress(Exception):
        await node.client.aclose()
