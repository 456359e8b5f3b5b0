"""The manager on channels_redis sharded over three Redis servers, presence on a fourth.

Three private ``redis-server`` processes hold the layer's shards; users and rooms
are picked so that their groups land on every shard, and on a shard other than
their member's user group. Two managers on two layer instances stand for two
processes. Delivery must work both ways for every kind of target, and presence
must live on its own Redis (``presence_redis_url``) and nowhere else.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from channels_redis.core import RedisChannelLayer
from channels_redis.pubsub import RedisPubSubChannelLayer
from channels_redis.utils import _consistent_hash

from svc_infra.websocket import ConnectionManager, WebSocketConfig
from svc_infra.websocket.groups import room_group, user_group
from svc_infra.websocket.scaleout.layers import redis_host
from svc_infra.websocket.testing import MemoryTransport
from tests.support import close_layer, start_redis_server, timeout, wait_until

pytestmark = pytest.mark.timeout(120)
SHARDS = 3


@pytest.fixture(scope="module")
def servers() -> Iterator[list[str]]:
    """Four throwaway Redis servers: three shards, then presence."""
    procs = []
    try:
        for _ in range(SHARDS + 1):
            try:
                proc, port = start_redis_server()
            except FileNotFoundError:
                pytest.skip("redis-server is not installed")
            procs.append((proc, port))
        yield [f"redis://127.0.0.1:{port}/0" for _, port in procs]
    finally:
        for proc, _ in procs:
            proc.terminate()
            proc.wait(timeout=10)


def shard_of(kind: str, prefix: str, group: str) -> int:
    """The shard the layer keeps ``group`` on (its own hash)."""
    name = f"{prefix}__group__{group}" if kind == "pubsub" else group
    return _consistent_hash(name, SHARDS)


def pick(kind: str, prefix: str, make: Any, shard: int, start: int) -> str:
    """A name ``make(i)``-based whose group is on ``shard``."""
    for i in range(start, start + 1000):
        name = f"n{i}"
        if shard_of(kind, prefix, make(name)) == shard:
            return name
    raise AssertionError("no name hashes to that shard")


@pytest.fixture(params=["core", "pubsub"])
async def pair(
    request: pytest.FixtureRequest, servers: list[str]
) -> AsyncIterator[tuple[str, str, ConnectionManager, ConnectionManager]]:
    kind = request.param
    prefix = f"shard{uuid.uuid4().hex[:6]}"
    hosts = [redis_host(url) for url in servers[:SHARDS]]
    cls = RedisPubSubChannelLayer if kind == "pubsub" else RedisChannelLayer
    config = WebSocketConfig(close_timeout=timeout(2), presence_redis_url=servers[SHARDS])
    layers = [cls(hosts=hosts, prefix=prefix) for _ in range(2)]
    a, b = (ConnectionManager(layer, config=config) for layer in layers)
    await a.start()
    await b.start()
    try:
        yield kind, prefix, a, b
    finally:
        for m in (a, b):
            await m.shutdown()
        for layer in layers:
            await close_layer(layer)


async def receives(sock: MemoryTransport, expected: str) -> None:
    while (frame := await sock.next()) != expected:
        assert frame is not None


async def test_every_target_is_delivered_across_shards(
    pair: tuple[str, str, ConnectionManager, ConnectionManager], servers: list[str]
) -> None:
    kind, prefix, a, b = pair
    group_prefix = a.prefix
    if kind == "core":  # a plain channel, read in batches from its own shard
        assert a.ops.channel_name is not None and "!" not in a.ops.channel_name

    def users(start: int) -> list[str]:
        return [
            pick(kind, prefix, lambda u: user_group(u, group_prefix), i, start)
            for i in range(SHARDS)
        ]

    on_a, on_b = users(0), users(5000)
    socks = {u: MemoryTransport(timeout=timeout(5)) for u in on_a + on_b}
    for user in on_a:
        await a.connect(user, socks[user])
    for user in on_b:
        await b.connect(user, socks[user])
    # Presence: each manager sees all six, from its own Redis.
    for m in (a, b):
        await wait_until(lambda m=m: m.connection_count == 2 * SHARDS)
    for sender, targets in ((a, on_b), (b, on_a)):
        for user in targets:  # a user group on every shard
            await sender.send_to_user(user, f"to {user}")
            await receives(socks[user], f"to {user}")
        await sender.broadcast(f"all from {sender.ops.id}")
        for user in targets:
            await receives(socks[user], f"all from {sender.ops.id}")
    for shard in range(SHARDS):  # a room on every shard, its member's group on another
        room = pick(kind, prefix, lambda r: room_group(r, group_prefix), shard, 9000)
        member = on_b[(shard + 1) % SHARDS]
        await a.join_room(member, room)
        await wait_until(lambda r=room, u=member: u in b.get_room_users(r))
        await a.broadcast_to_room(room, f"in {room}")
        await receives(socks[member], f"in {room}")
    # Presence keys live on the presence Redis only; the shards hold none.
    import redis.asyncio as aioredis

    pattern = f"{prefix}:{group_prefix}p:*"
    for i, url in enumerate(servers):
        client = aioredis.Redis.from_url(url)
        try:
            keys = [k async for k in client.scan_iter(match=pattern, count=1000)]
        finally:
            await client.aclose()
        assert bool(keys) == (i == SHARDS), (i, len(keys))
