"""Batched group changes on the channels_redis core layer (real Redis)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from channels_redis.core import RedisChannelLayer

from svc_infra.websocket.scaleout.groups import MAX_BATCH, GroupBatcher
from svc_infra.websocket.scaleout.layers import redis_host
from tests.support import close_layer

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
async def layer(redis_server: str, redis_prefix: str) -> AsyncIterator[RedisChannelLayer]:
    layer = RedisChannelLayer(hosts=[redis_host(redis_server)], prefix=redis_prefix)
    yield layer
    await close_layer(layer)


async def test_a_storm_of_changes_takes_a_few_round_trips(layer: RedisChannelLayer) -> None:
    batcher = GroupBatcher(layer)
    await asyncio.gather(*(batcher.change(f"g{i}", "mgr.x", True) for i in range(2500)))
    assert batcher.round_trips == 3  # 1000 + 1000 + 500
    assert MAX_BATCH == 1000
    connection = layer.connection(0)
    for i in (0, 1234, 2499):
        key = layer._group_key(f"g{i}")
        assert await connection.zrange(key, 0, -1) == [b"mgr.x"]
        assert 0 < await connection.ttl(key) <= layer.group_expiry
    # Removing goes the same way, and the layer's own calls see the result.
    await asyncio.gather(*(batcher.change(f"g{i}", "mgr.x", False) for i in range(2500)))
    assert await connection.zrange(layer._group_key("g7"), 0, -1) == []
    await batcher.change("g7", "mgr.y", True)
    await layer.group_send("g7", {"type": "hello"})
    assert (await layer.receive("mgr.y"))["type"] == "hello"


async def test_changes_to_one_group_keep_their_order(layer: RedisChannelLayer) -> None:
    batcher = GroupBatcher(layer)
    ops = [batcher.change("same", "mgr.z", i % 2 == 0) for i in range(9)]  # add last
    await asyncio.gather(*ops)
    assert await layer.connection(0).zrange(layer._group_key("same"), 0, -1) == [b"mgr.z"]


async def test_a_failed_round_trip_fails_what_waits_behind_it(
    layer: RedisChannelLayer,
) -> None:
    batcher = GroupBatcher(layer)
    broken = ConnectionError("redis away")

    def refuse(index: int) -> object:
        raise broken

    layer.connection = refuse
    results = await asyncio.gather(
        *(batcher.change(f"g{i}", "mgr.x", True) for i in range(1500)), return_exceptions=True
    )
    assert all(r is broken for r in results)
    assert batcher._task is None and not batcher._pending


async def test_a_round_trip_is_bounded_but_not_the_wait_in_the_queue(
    layer: RedisChannelLayer,
) -> None:
    real = layer.connection(0)

    class Slow:
        """The layer's client with 30 ms more latency per script call."""

        def register_script(self, script: str) -> object:
            return real.register_script(script)

        async def evalsha(self, *args: object) -> object:
            await asyncio.sleep(0.03)  # latency, not a wait for an event
            return await real.evalsha(*args)

    batcher = GroupBatcher(layer, timeout=lambda: 0.1)
    layer.connection = lambda index: Slow()
    # Five round trips of 30 ms: 150 ms in all for the last change, over the
    # bound, and none of them fails.
    await asyncio.gather(*(batcher.change(f"g{i}", "mgr.x", True) for i in range(5000)))
    assert batcher.round_trips == 5

    class Hung:
        """The layer's client, whose script calls never return (a Redis that hangs)."""

        def register_script(self, script: str) -> object:
            return real.register_script(script)

        async def evalsha(self, *args: object) -> None:
            await asyncio.Event().wait()

    layer.connection = lambda index: Hung()
    with pytest.raises(TimeoutError):
        await batcher.change("g1", "mgr.x", True)
