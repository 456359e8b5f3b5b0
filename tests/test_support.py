"""The suite's own infrastructure: Redis for the tests that need it."""

from __future__ import annotations

import asyncio

import pytest

from svc_infra.websocket.scaleout.layers import redis_host
from tests.support import redis_answers, start_redis_server, timeout

pytestmark = pytest.mark.redis


def test_a_throwaway_redis_can_be_started() -> None:
    """The helper the suite uses when no Redis answers starts one on a free port."""
    proc, port = start_redis_server()
    try:
        assert redis_answers("127.0.0.1", port)
    finally:
        proc.terminate()
        proc.wait(timeout=timeout(10))
    assert not redis_answers("127.0.0.1", port)


async def test_channels_redis_round_trip(redis_server: str, redis_prefix: str) -> None:
    """The Redis the suite uses carries channels_redis messages under the test's prefix."""
    import redis.asyncio
    from channels_redis.core import RedisChannelLayer

    layer = RedisChannelLayer(hosts=[redis_host(redis_server)], prefix=redis_prefix)
    try:
        channel = await layer.new_channel()
        await layer.group_add("room", channel)
        await layer.group_send("room", {"type": "ws.send", "text": "hi"})
        async with asyncio.timeout(timeout()):
            assert await layer.receive(channel) == {"type": "ws.send", "text": "hi"}
        client = redis.asyncio.Redis.from_url(redis_server)
        try:
            keys = [k async for k in client.scan_iter(match=f"{redis_prefix}*")]
        finally:
            await client.aclose()
        assert keys, "channels_redis should have written keys under the prefix"
    finally:
        await layer.flush()
        await layer.close_pools()
