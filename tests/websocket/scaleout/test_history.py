"""History on Redis: bounded by size and TTL, shared by processes, a new epoch after a restart."""

from __future__ import annotations

import uuid

import pytest
import redis.asyncio

from svc_infra.websocket import ConnectionManager, WebSocketConfig
from svc_infra.websocket.scaleout.history import RedisHistory
from svc_infra.websocket.scaleout.layers import redis_host
from svc_infra.websocket.server._history import META_TTL
from tests.support import close_layer, start_redis_server

pytestmark = pytest.mark.redis


def redis_manager(url: str, prefix: str, size: int, ttl: float = 30) -> ConnectionManager:
    from channels_redis.core import RedisChannelLayer

    layer = RedisChannelLayer(hosts=[redis_host(url)], prefix=prefix)
    config = WebSocketConfig(history_size=size, history_ttl=ttl, close_timeout=1)
    return ConnectionManager(layer, config=config, presence=False)


async def keys_of(client: redis.asyncio.Redis, prefix: str) -> list[bytes]:
    return sorted([k async for k in client.scan_iter(match=f"{prefix}*")])


async def test_history_keeps_at_most_its_size_and_expires(redis_server: str) -> None:
    """500 broadcasts with a history of 50: the Redis Stream holds exactly 50, every
    key has a TTL, and only the last 50 can be replayed."""
    prefix = f"th{uuid.uuid4().hex[:8]}"
    m = redis_manager(f"{redis_server}/9", prefix, size=50, ttl=30)
    client = redis.asyncio.Redis.from_url(f"{redis_server}/9")
    try:
        for n in range(50):
            await m.broadcast({"n": n})
        [full] = [
            k for k in await keys_of(client, prefix) if b"h:broadcast" in k and b"hm:" not in k
        ]
        memory_at_size = await client.memory_usage(full)
        for n in range(50, 500):
            await m.broadcast({"n": n})
        # Ten times the messages, the same memory: the stream is trimmed, not grown.
        assert await client.memory_usage(full) <= memory_at_size * 1.5
        keys = await keys_of(client, prefix)
        streams = [k for k in keys if b"h:broadcast" in k and b"hm:" not in k]
        metas = [k for k in keys if b"hm:broadcast" in k]
        assert len(streams) == 1 and len(metas) == 1
        assert await client.xlen(streams[0]) == 50
        assert 0 < await client.pttl(streams[0]) <= 30_000
        assert 30_000 < await client.pttl(metas[0]) <= META_TTL * 1000
        store = m._recovery.store
        assert isinstance(store, RedisHistory)
        top = await store.since("broadcast", None, 50, 30)
        assert top.top == 500
        kept = await store.since("broadcast", (top.epoch, 450), 50, 30)
        assert kept.recovered is True
        assert [e.offset for e in kept.entries] == list(range(451, 501))
        assert kept.entries[0].frame == '{"n":450}'
        assert (await store.since("broadcast", (top.epoch, 449), 50, 30)).recovered is False
    finally:
        await m.shutdown()
        await close_layer(m.ops.layer)
        for key in await keys_of(client, prefix):
            await client.delete(key)
        await client.aclose()


async def test_history_is_shared_by_the_processes_of_a_cluster(redis_server: str) -> None:
    """A message recorded by one manager is replayed by another on the same Redis."""
    prefix = f"th{uuid.uuid4().hex[:8]}"
    a = redis_manager(f"{redis_server}/9", prefix, size=10)
    b = redis_manager(f"{redis_server}/9", prefix, size=10)
    client = redis.asyncio.Redis.from_url(f"{redis_server}/9")
    try:
        await b.start()
        store_b = b._recovery.store
        assert store_b is not None
        start = await store_b.since("user:u", None, 10, 30)
        await a.send_to_user("u", {"from": "a"})
        replay = await store_b.since("user:u", (start.epoch, start.top), 10, 30)
        assert replay.recovered is True
        assert [e.frame for e in replay.entries] == ['{"from":"a"}']
    finally:
        for m in (a, b):
            await m.shutdown()
            await close_layer(m.ops.layer)
        for key in await keys_of(client, prefix):
            await client.delete(key)
        await client.aclose()


async def test_a_redis_restart_gives_a_new_epoch() -> None:
    """Redis restarted without persistence: the old position is not recovered (a new
    epoch), though the new offsets count from 1 again."""
    proc, port = start_redis_server()
    url = f"redis://127.0.0.1:{port}/0"
    m = redis_manager(url, "restart", size=10)
    try:
        await m.send_to_user("u", {"n": 1})
        store = m._recovery.store
        assert store is not None
        before = await store.since("user:u", None, 10, 30)
        proc.terminate()
        proc.wait(10)
        proc, _ = start_redis_server(port)
        await m.send_to_user("u", {"n": 2})  # a new life: offset 1 again
        after = await store.since("user:u", (before.epoch, 0), 10, 30)
        assert after.epoch != before.epoch
        assert after.recovered is False and after.top == 1
    finally:
        await m.shutdown()
        await close_layer(m.ops.layer)
        proc.terminate()
        proc.wait(10)


async def test_history_meta_ttl_sets_how_long_a_streams_position_is_kept(
    redis_server: str,
) -> None:
    """WS_HISTORY_META_TTL is the life of the epoch hash on Redis (never below the
    stream's ttl); the default is a day."""
    prefix = f"th{uuid.uuid4().hex[:8]}"
    client = redis.asyncio.Redis.from_url(f"{redis_server}/9")
    store = RedisHistory(client, key_prefix=prefix, meta_ttl=120)
    try:
        await store.append("short", "x", None, 10, 30)
        await store.append("long", "x", None, 10, 600)
        assert 110_000 < await client.pttl(f"{prefix}hm:short") <= 120_000
        assert 590_000 < await client.pttl(f"{prefix}hm:long") <= 600_000
        await store.since("short", None, 10, 30)  # a read keeps it too
        assert 110_000 < await client.pttl(f"{prefix}hm:short") <= 120_000
        assert WebSocketConfig().history_meta_ttl == META_TTL == 86_400
        assert WebSocketConfig.from_env({"WS_HISTORY_META_TTL": "600"}).history_meta_ttl == 600
    finally:
        for key in await keys_of(client, prefix):
            await client.delete(key)
        await client.aclose()


async def test_a_promoted_replica_starts_new_epochs_never_a_silent_gap() -> None:
    """A stream written on a primary, replicated; the replica is promoted (as a
    failover does, which may have lost the primary's last writes): positions in the
    old epoch are reported as not recovered, and new messages get a new epoch, so
    reused offsets can never be mistaken for the ones a client saw."""
    primary, primary_port = start_redis_server()
    replica, replica_port = start_redis_server()
    clients: list[redis.asyncio.Redis] = []
    try:
        to_primary = redis.asyncio.Redis(port=primary_port)
        to_replica = redis.asyncio.Redis(port=replica_port)
        clients += [to_primary, to_replica]
        await to_replica.replicaof("127.0.0.1", primary_port)
        store = RedisHistory(redis.asyncio.Redis(port=primary_port), key_prefix="p:")
        for n in range(3):
            offset, epoch, _ = await store.append("s", f"m{n}", None, 10, 30)
        assert offset == 3
        assert await to_primary.wait(1, 5000) == 1  # the replica has all three
        await store.close()
        # Unchanged on the primary itself: the same epoch, everything recoverable.
        same = RedisHistory(redis.asyncio.Redis(port=primary_port), key_prefix="p:")
        assert (await same.since("s", (epoch, 1), 10, 30)).recovered is True
        await same.close()

        await to_replica.replicaof("NO", "ONE")  # promoted: a new replication id
        promoted = RedisHistory(redis.asyncio.Redis(port=replica_port), key_prefix="p:")
        replay = await promoted.since("s", (epoch, 3), 10, 30)
        assert replay.recovered is False and replay.epoch != epoch
        offset, new_epoch, _ = await promoted.append("s", "after", None, 10, 30)
        assert (offset, new_epoch) == (1, replay.epoch)
        # And from then on, stable again.
        assert (await promoted.since("s", (new_epoch, 0), 10, 30)).recovered is True
        await promoted.close()
    finally:
        for client in clients:
            await client.aclose()
        for proc in (primary, replica):
            proc.kill()
            proc.wait(10)
