"""The manager on channels_redis: two layer instances stand for two processes."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from channels_redis.core import RedisChannelLayer

from svc_infra.websocket import ConnectionManager, WebSocketConfig
from svc_infra.websocket.scaleout.layers import redis_host
from svc_infra.websocket.testing import MemoryTransport
from tests.support import timeout

pytestmark = pytest.mark.redis

CONFIG = WebSocketConfig(close_timeout=timeout(2))


@pytest.fixture
async def pair(
    redis_server: str, redis_prefix: str
) -> AsyncIterator[tuple[ConnectionManager, ConnectionManager]]:
    layers = [
        RedisChannelLayer(hosts=[redis_host(redis_server)], prefix=redis_prefix) for _ in range(2)
    ]
    a, b = (ConnectionManager(layer, config=CONFIG) for layer in layers)
    await a.start()
    await b.start()
    yield a, b
    await a.shutdown()
    await b.shutdown()
    for layer in layers:
        await layer.close_pools()


def sock() -> MemoryTransport:
    return MemoryTransport(timeout=timeout(5))


async def test_delivery_rooms_and_disconnect_across_redis(
    pair: tuple[ConnectionManager, ConnectionManager],
) -> None:
    """Users, rooms, everyone and disconnect(user) reach sockets held by the other side."""
    a, b = pair
    alice, bob = sock(), sock()
    await a.connect("alice", alice)
    await b.connect("bob", bob)
    await a.send_to_user("bob", {"to": "bob"})
    assert await bob.next_json() == {"to": "bob"}
    await b.broadcast(b"\x00binary")
    assert await alice.next() == b"\x00binary"
    assert await bob.next() == b"\x00binary"
    await a.join_room("bob", "general")  # bob is connected to b
    # b handles its channel's messages in order, group_add included: once this
    # marker (sent after the join, on bob's group) arrives, b is in the room's group.
    await a.send_to_user("bob", "marker")
    assert await bob.next() == "marker"
    await a.broadcast_to_room("general", {"room": "general"})
    assert await bob.next_json() == {"room": "general"}
    await a.disconnect("bob")
    assert await bob.wait_closed() == 1000


async def test_unsendable_payloads_fail_at_the_call_on_redis(
    pair: tuple[ConnectionManager, ConnectionManager],
) -> None:
    """msgpack is stricter than in-memory deepcopy: the check happens before the layer."""
    a, b = pair
    bob = sock()
    await b.connect("bob", bob)
    for payload in ({1, 2}, {1: "int key"}, object()):
        with pytest.raises(TypeError):
            await a.send_to_user("bob", payload)
    await a.send_to_user("bob", {"ok": (1, 2)})  # a tuple travels as a JSON list
    assert await bob.next_json() == {"ok": [1, 2]}


async def test_a_burst_from_another_process_arrives_whole_and_in_order(
    pair: tuple[ConnectionManager, ConnectionManager],
) -> None:
    """The core layer's manager channel is read in batches: 3,000 messages sent as
    fast as possible all arrive, in order."""
    a, b = pair
    assert a.ops.channel_name is not None and "!" not in a.ops.channel_name
    bob = MemoryTransport(timeout=timeout(10))
    await a.connect("bob", bob)
    for i in range(3000):
        await b.send_to_user("bob", {"i": i})
    received = [(await bob.next_json())["i"] for _ in range(3000)]
    assert received == list(range(3000))
