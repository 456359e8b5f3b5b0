"""Group changes on the channels_redis core layer, pipelined across concurrent callers.

The layer's own ``group_add`` makes two round trips (ZADD, then EXPIRE) on a pooled
connection per call: 10,000 sockets opening at once are 20,000 round trips and
as many pool checkouts, and the pool runs out. :class:`GroupBatcher` runs the
same commands on the same keys, but every change requested while a round trip is
in flight goes into the next one: one call of a small Lua script per shard per
round trip, whatever the storm. One script call rather than a pipeline of
commands: redis-py packs and parses each command of a pipeline in Python, which
cost more than the round trips saved.

Order is kept where it matters: changes to one group are issued in the order
requested (the membership part sends one at a time per group anyway), and a
pipeline runs its commands in order on one connection.

The layer timeout bounds each round trip, not a caller's wait: under a storm a
change may wait behind a few pipelines, which is not a failure. When a round trip
fails, every change still queued fails with it (Redis is away; the membership
refresh joins again), so no caller waits for a queue of round trips to time out.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from ._compat_channels_redis import group_key, shard_client, shard_of

__all__ = ["GROUP_CHANGES", "MAX_BATCH", "GroupBatcher"]

#: Changes per pipeline: a larger storm takes several round trips, none of which
#: holds Redis for long.
MAX_BATCH = 1000

_Op = tuple[str, str, bool, "asyncio.Future[None]"]

#: KEYS: group keys. ARGV: now, expiry, then per key: "1" (add) or "0", channel.
#: What ``channels_redis.core`` does per ``group_add`` / ``group_discard``.
GROUP_CHANGES = """
local now, expiry = ARGV[1], tonumber(ARGV[2])
for i = 1, #KEYS do
  local channel = ARGV[2 * i + 2]
  if ARGV[2 * i + 1] == '1' then
    redis.call('ZADD', KEYS[i], now, channel)
    redis.call('EXPIRE', KEYS[i], expiry)
  else
    redis.call('ZREM', KEYS[i], channel)
  end
end
return #KEYS
"""


class GroupBatcher:
    """``group_add`` and ``group_discard`` of a ``channels_redis`` core layer, batched.

    Args:
        layer: A ``channels_redis.core.RedisChannelLayer``.
        timeout: Returns the bound of each round trip in seconds (the manager's
            layer call timeout, which may change after the batcher is built);
            None for no bound.
    """

    def __init__(self, layer: Any, timeout: Callable[[], float | None] = lambda: None) -> None:
        self.layer = layer
        self.timeout = timeout
        self._pending: list[_Op] = []
        self._task: asyncio.Task[None] | None = None
        self._script: Any = None  # registered on first use (needs a loop's client)
        #: Round trips made (one pipeline on one shard each), for tests and stats.
        self.round_trips = 0

    async def change(self, group: str, channel: str, member: bool) -> None:
        """Add ``channel`` to ``group`` (``member``) or remove it.

        Raises:
            Exception: Whatever redis-py raised for the pipeline that carried it
                (or for the one that failed while it waited), ``TimeoutError``
                if that round trip took longer than the timeout.

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
                    shards[shard_of(self.layer, op[0])].append(op)
                failed = await asyncio.gather(
                    *(self._flush(i, batch) for i, batch in shards.items())
                )
                error = next((exc for exc in failed if exc is not None), None)
                if error is not None:
                    queued, self._pending = self._pending, []
                    for *_, future in queued:
                        if not future.done():
                            future.set_exception(error)
        finally:
            self._task = None
            for *_, future in self._pending:  # cancelled with changes still queued
                if not future.done():
                    future.cancel()
            self._pending = []

    async def _flush(self, index: int, ops: list[_Op]) -> BaseException | None:
        """One round trip for ``ops`` on shard ``index``; the error, if it failed."""
        layer = self.layer
        keys: list[str] = []
        args: list[Any] = [time.time(), layer.group_expiry]
        for group, channel, member, _ in ops:
            keys.append(group_key(layer, group))
            args += ("1" if member else "0", channel)
        try:
            async with asyncio.timeout(self.timeout()):
                client = shard_client(layer, index)
                if self._script is None:
                    self._script = client.register_script(GROUP_CHANGES)
                self.round_trips += 1
                await self._script(keys=keys, args=args, client=client)
        except Exception as exc:
            for *_, future in ops:
                if not future.done():
                    future.set_exception(exc)
            return exc
        for *_, future in ops:
            if not future.done():
                future.set_result(None)
        return None
