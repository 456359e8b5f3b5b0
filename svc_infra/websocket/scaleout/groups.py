"""Group changes on the channels_redis core layer, pipelined across concurrent callers.

The layer's own ``group_add`` makes two round trips (ZADD, then EXPIRE) on a pooled
connection per call: 10,000 sockets opening at once are 20,000 round trips and
as many pool checkouts, and the pool runs out. :class:`GroupBatcher` issues the
same commands on the same keys, but every change requested while a round trip is
in flight goes into the next one: one pipeline per shard per round trip, whatever
the storm.

Order is kept where it matters: changes to one group are issued in the order
requested (the membership part sends one at a time per group anyway), and a
pipeline runs its commands in order on one connection.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from typing import Any

__all__ = ["MAX_BATCH", "GroupBatcher"]

#: Changes per pipeline: a larger storm takes several round trips, none of which
#: holds Redis for long.
MAX_BATCH = 1000

_Op = tuple[str, str, bool, "asyncio.Future[None]"]


class GroupBatcher:
    """``group_add`` and ``group_discard`` of a ``channels_redis`` core layer, batched.

    Args:
        layer: A ``channels_redis.core.RedisChannelLayer``.
    """

    def __init__(self, layer: Any) -> None:
        self.layer = layer
        self._pending: list[_Op] = []
        self._task: asyncio.Task[None] | None = None
        #: Round trips made (one pipeline on one shard each), for tests and stats.
        self.round_trips = 0

    async def change(self, group: str, channel: str, member: bool) -> None:
        """Add ``channel`` to ``group`` (``member``) or remove it.

        Raises:
            Exception: Whatever redis-py raised for the pipeline that carried it.

        Cancelling is safe: the change may or may not have been made (as for the
        layer's own calls; the membership refresh adds the channel again).
        """
        layer = self.layer
        # The layer's own checks, so a bad name fails here as it would there.
        assert layer.require_valid_group_name(group), "Group name not valid"
        assert layer.require_valid_channel_name(channel), "Channel name not valid"
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        self._pending.append((group, channel, member, future))
        if self._task is None:
            self._task = loop.create_task(self._run(), name="ws-group-batcher")
        await future

    async def _run(self) -> None:
        try:
            while self._pending:
                ops, self._pending = self._pending[:MAX_BATCH], self._pending[MAX_BATCH:]
                shards: dict[int, list[_Op]] = defaultdict(list)
                for op in ops:
                    shards[self.layer.consistent_hash(op[0])].append(op)
                await asyncio.gather(*(self._flush(i, batch) for i, batch in shards.items()))
        finally:
            self._task = None
            for *_, future in self._pending:  # cancelled with changes still queued
                if not future.done():
                    future.cancel()
            self._pending = []

    async def _flush(self, index: int, ops: list[_Op]) -> None:
        layer = self.layer
        try:
            async with layer.connection(index).pipeline(transaction=False) as pipe:
                now = time.time()
                for group, channel, member, _ in ops:
                    # The layer's own key and commands (channels_redis.core.group_add).
                    key = layer._group_key(group)
                    if member:
                        pipe.zadd(key, {channel: now})
                        pipe.expire(key, layer.group_expiry)
                    else:
                        pipe.zrem(key, channel)
                self.round_trips += 1
                await pipe.execute()
        except Exception as exc:
            for *_, future in ops:
                if not future.done():
                    future.set_exception(exc)
            return
        for *_, future in ops:
            if not future.done():
                future.set_result(None)
