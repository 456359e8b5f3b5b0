"""Cluster-wide presence: managers on one Redis stand for processes (see test_cluster.py
for real processes)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
from channels_redis.core import RedisChannelLayer
from channels_redis.pubsub import RedisPubSubChannelLayer

from svc_infra.websocket import (
    ChannelLayerError,
    ConfigurationError,
    ConnectionManager,
    WebSocketConfig,
)
from svc_infra.websocket.scaleout.layers import redis_host
from svc_infra.websocket.testing import MemoryTransport
from tests.support import close_layer, free_port, timeout, wait_until

pytestmark = pytest.mark.redis

CONFIG = WebSocketConfig(close_timeout=timeout(2), presence_ttl=2)


def layer_of(kind: str, url: str, prefix: str) -> object:
    if kind == "pubsub":
        return RedisPubSubChannelLayer(hosts=[redis_host(url)], prefix=prefix)
    return RedisChannelLayer(hosts=[redis_host(url)], prefix=prefix)


@pytest.fixture(params=["core", "pubsub"])
async def trio(
    request: pytest.FixtureRequest, redis_server: str, redis_prefix: str
) -> AsyncIterator[list[ConnectionManager]]:
    managers = [
        ConnectionManager(layer_of(request.param, redis_server, redis_prefix), config=CONFIG)
        for _ in range(3)
    ]
    for m in managers:
        await m.start()
    yield managers
    for m in managers:
        await m.shutdown()
        await close_layer(m.ops.layer)


def sock() -> MemoryTransport:
    return MemoryTransport(timeout=timeout(5))


async def test_every_process_answers_for_the_cluster(trio: list[ConnectionManager]) -> None:
    """Queries agree across managers: users, counts, connections with metadata, rooms."""
    a, b, c = trio
    assert all(m.ops.presence is not None for m in trio)
    await a.connect("alice", sock(), {"device": "phone"})
    await b.connect("alice", sock(), {"device": "laptop"})
    await b.connect("bob", sock())
    await c.join_room("bob", "general")
    for m in trio:
        await wait_until(lambda m=m: m.connection_count == 3 and m.room_count == 1)
        assert sorted(m.active_users) == ["alice", "bob"]
        assert m.is_user_connected("alice") and m.is_user_connected("bob")
        assert not m.is_user_connected("carol")
        devices = sorted(i.metadata.get("device") for i in m.get_user_connections("alice"))
        assert devices == ["laptop", "phone"]
        assert m.get_room_users("general") == ["bob"]
    assert a.local_connection_count == 1


async def test_a_room_joined_before_connecting_follows_the_user(
    trio: list[ConnectionManager],
) -> None:
    """join_room for a user connected nowhere, then the user connects elsewhere."""
    a, b, c = trio
    await a.join_room("zoe", "lobby")
    await wait_until(lambda: b.get_room_users("lobby") == ["zoe"])
    zoe = sock()
    await b.connect("zoe", zoe)
    await c.broadcast_to_room("lobby", {"to": "lobby"})
    assert await zoe.next_json() == {"to": "lobby"}


async def test_the_last_disconnect_anywhere_empties_the_rooms(
    trio: list[ConnectionManager],
) -> None:
    a, b, c = trio
    first, second = sock(), sock()
    await a.connect("erin", first)
    await b.connect("erin", second)
    await c.join_room("erin", "r")
    await wait_until(lambda: all(m.get_room_users("r") == ["erin"] for m in trio))
    await a.disconnect("erin", first)
    await wait_until(lambda: c.connection_count == 1)
    assert all(m.get_room_users("r") == ["erin"] for m in trio)
    await b.disconnect("erin", second)
    await wait_until(lambda: all(m.get_room_users("r") == [] and m.room_count == 0 for m in trio))
    assert not any(m.is_user_connected("erin") for m in trio)


async def test_room_updates_apply_only_when_newer(trio: list[ConnectionManager]) -> None:
    """A late, older ws.rooms cannot undo a newer one."""
    a, _, _ = trio
    await a._rooms.apply("u", ["x", "y"], 200)
    await a._rooms.apply("u", ["x"], 100)  # older: ignored
    assert a.get_room_users("y") == ["u"]
    await a._rooms.apply("u", [], 300)
    await a._rooms.apply("u", ["x", "y"], 250)
    assert a.room_count == 0


async def test_a_layer_message_join_from_other_code_is_cluster_wide(
    trio: list[ConnectionManager],
) -> None:
    """ws.join sent by non-manager code to the user's group reaches every process."""
    a, b, _ = trio
    await b.connect("dan", sock())
    await a.ops.layer.group_send(
        f"{a.prefix}u.dan", {"type": "ws.join", "user": "dan", "room": "ops"}
    )
    await wait_until(lambda: all(m.get_room_users("ops") == ["dan"] for m in trio))


async def test_shutdown_removes_the_process_from_redis(
    redis_server: str, redis_prefix: str
) -> None:
    import redis.asyncio

    a = ConnectionManager(layer_of("core", redis_server, redis_prefix), config=CONFIG)
    b = ConnectionManager(layer_of("core", redis_server, redis_prefix), config=CONFIG)
    await a.connect("alice", sock())
    await b.connect("bob", sock())
    await wait_until(lambda: b.connection_count == 2)
    await a.shutdown()
    await wait_until(lambda: b.connection_count == 1 and b.active_users == ["bob"])
    await b.shutdown()
    client = redis.asyncio.Redis.from_url(redis_server)
    try:
        keys = [k.decode() async for k in client.scan_iter(match=f"{redis_prefix}:*p:*")]
    finally:
        await client.aclose()
    assert [k for k in keys if ":t:" not in k] == []  # only tombstones, which expire


async def test_with_redis_down_calls_fail_fast_and_local_sockets_keep_working() -> None:
    """No Redis at all: connect works, local delivery works, remote delivery raises
    ChannelLayerError promptly, and the loss is counted."""
    url = f"redis://127.0.0.1:{free_port()}/0"
    m = ConnectionManager(redis_url=url, config=CONFIG)
    alice = sock()
    await m.connect("alice", alice)
    started = time.monotonic()
    with pytest.raises(ChannelLayerError) as info:
        await m.send_to_user("alice", {"n": 1})
    assert info.value.operation == "send_to_user"
    assert await alice.next_json() == {"n": 1}
    with pytest.raises(ChannelLayerError):
        await m.join_room("alice", "r")
    assert time.monotonic() - started < 3
    assert m.stats.messages_lost == 1
    assert m.ops.presence is not None and not m.ops.presence.healthy
    await asyncio.wait_for(m.shutdown(), timeout(10))
    assert await alice.wait_closed() == 1001


async def test_presence_can_be_turned_off(redis_server: str, redis_prefix: str) -> None:
    a = ConnectionManager(layer_of("core", redis_server, redis_prefix), presence=False)
    b = ConnectionManager(layer_of("core", redis_server, redis_prefix), presence=False)
    await a.connect("alice", sock())
    await b.connect("bob", sock())
    try:
        assert a.ops.presence is None
        assert a.active_users == ["alice"] and b.active_users == ["bob"]
    finally:
        await a.shutdown()
        await b.shutdown()


def test_layer_and_ttl_settings_name_the_variable() -> None:
    with pytest.raises(ConfigurationError, match="WS_REDIS_LAYER"):
        WebSocketConfig.from_env({"WS_REDIS_LAYER": "cluster"})
    with pytest.raises(ConfigurationError, match="WS_PRESENCE_TTL"):
        WebSocketConfig.from_env({"WS_PRESENCE_TTL": "0"})
    assert WebSocketConfig.from_env({"WS_REDIS_LAYER": " PubSub "}).redis_layer == "pubsub"


async def test_a_last_disconnect_during_an_outage_still_empties_the_rooms(
    trio: list[ConnectionManager],
) -> None:
    """The "left everywhere?" check survives a resync (which rewrites connections only)."""
    a, b, _ = trio
    assert a.ops.presence is not None
    gina = sock()
    await a.connect("gina", gina)
    await b.join_room("gina", "r")
    await wait_until(lambda: b.get_room_users("r") == ["gina"] and b.connection_count == 1)
    a.ops.presence._failed()  # as after a Redis error: the next write is a full resync
    await a.disconnect("gina", gina)
    await wait_until(lambda: all(m.get_room_users("r") == [] for m in trio))


async def test_text_redis_cannot_decode_does_not_break_presence(
    trio: list[ConnectionManager],
) -> None:
    """Metadata with a lone surrogate is stored and mirrored; reaping still works."""
    a, b, _ = trio
    await a.connect("hal", sock(), {"name": "\ud800"})
    await wait_until(lambda: b.is_user_connected("hal"))
    assert b.get_user_connections("hal")[0].metadata == {"name": "\ud800"}
    await a.shutdown()
    await wait_until(lambda: not b.is_user_connected("hal"))
    assert b.ops.presence is not None and b.ops.presence.healthy


async def test_bad_ids_and_metadata_are_refused_at_connect(trio: list[ConnectionManager]) -> None:
    a, _, _ = trio
    with pytest.raises(ValueError, match="UTF-8"):
        await a.connect("\ud800", sock())
    with pytest.raises(TypeError, match="JSON"):
        await a.connect("ivy", sock(), {"when": object()})
    with pytest.raises(ValueError, match="UTF-8"):
        await a.join_room("ivy", "\udfff")
    assert a.local_connection_count == 0


async def test_mirrors_heal_from_redis_after_a_lost_message(
    trio: list[ConnectionManager],
) -> None:
    """A process that missed messages is corrected by the periodic comparison."""
    a, b, _ = trio
    assert b.ops.presence is not None
    await a.connect("jo", sock())
    await wait_until(lambda: b.is_user_connected("jo"))
    b.ops.presence._drop(a.ops.id)  # as if b had missed a's messages
    await b._rooms.apply("ghost", ["nowhere"], 1)  # a room set Redis never had
    assert not b.is_user_connected("jo")
    await wait_until(lambda: b.is_user_connected("jo") and b.room_count == 0, limit=10)


async def test_a_clean_shutdown_empties_the_rooms_of_its_users(
    trio: list[ConnectionManager],
) -> None:
    """Users whose only connections were in a process that shuts down leave their rooms."""
    a, b, _ = trio
    for i in range(20):
        await a.connect(f"kim{i}", sock())
        await b.join_room(f"kim{i}", "r")
    await wait_until(lambda: len(b.get_room_users("r")) == 20 and b.connection_count == 20)
    await a.shutdown()
    await wait_until(lambda: b.get_room_users("r") == [] and b.connection_count == 0)


async def test_within_the_room_grace_a_user_moving_process_keeps_their_rooms(
    redis_server: str, redis_prefix: str
) -> None:
    """Cut from one process and back on another within WS_ROOM_GRACE: still a member."""
    config = CONFIG.replace(room_grace=30)
    a, b = (
        ConnectionManager(layer_of("core", redis_server, redis_prefix), config=config)
        for _ in range(2)
    )
    for m in (a, b):
        await m.start()
    try:
        first = sock()
        await a.connect("dee", first)
        await a.join_room("dee", "lobby")
        await wait_until(lambda: b.get_room_users("lobby") == ["dee"])
        await a.disconnect("dee", first)
        await wait_until(lambda: not b.is_user_connected("dee"))
        again = sock()
        await b.connect("dee", again)
        await a.broadcast_to_room("lobby", "kept")
        assert await again.next() == "kept"
        await a.shutdown()  # a's grace ends with it; dee is connected on b
        assert b.ops.presence is not None
        await b.ops.presence._reconcile()  # what Redis holds now: dee kept the room
        assert b.get_room_users("lobby") == ["dee"]
    finally:
        for m in (a, b):
            await m.shutdown()
            await close_layer(m.ops.layer)
