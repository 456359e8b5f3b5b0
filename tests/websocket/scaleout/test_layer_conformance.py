"""The Channels layer specification as tests, run against every layer we support.

The same tests run on Channels' ``InMemoryChannelLayer``, channels_redis' core and
pub/sub layers, and ours on a real Redis Cluster
(:class:`~svc_infra.websocket.scaleout.cluster.RedisClusterChannelLayer`). The
stock layers passing is what shows the suite states the specification faithfully.
Where layers legitimately differ, the test says so and is skipped for that layer:

- the pub/sub layer has no capacity and no expiry (pub/sub keeps no queue), names
  its channels without ``!``, and unsubscribes a channel whose ``receive()`` is
  cancelled (Channels cancels it only when the consumer ends);
- Channels' ``InMemoryChannelLayer`` (4.x) does not compile ``channel_capacity``:
  a glob pattern makes its ``get_capacity`` fail;
- the in-memory layer is one process: nothing goes across instances;
- ours and the pub/sub layer take group members only from the process that
  receives for them (its ``new_channel()``).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from channels.exceptions import ChannelFull
from channels.layers import BaseChannelLayer

from svc_infra.websocket.scaleout.layers import redis_host
from tests.support import close_layer, timeout

pytestmark = [pytest.mark.timeout(60)]

KINDS = ["memory", "core", "pubsub", "cluster"]
DB = 8  # this suite's Redis database (one Redis); flushed by key prefix


def _factory(kind: str, request: pytest.FixtureRequest) -> Callable[..., Any]:
    prefix = f"conf{uuid.uuid4().hex[:8]}"
    if kind == "memory":
        from channels.layers import InMemoryChannelLayer

        return lambda **kw: InMemoryChannelLayer(**kw)
    if kind == "cluster":
        cluster = request.getfixturevalue("redis_cluster")  # skips on redis-py < 8
        from svc_infra.websocket.scaleout import RedisClusterChannelLayer

        return lambda **kw: RedisClusterChannelLayer(hosts=[cluster.url], prefix=prefix, **kw)
    url = f"{request.getfixturevalue('redis_server')}/{DB}"
    if kind == "core":
        from channels_redis.core import RedisChannelLayer

        return lambda **kw: RedisChannelLayer(hosts=[redis_host(url)], prefix=prefix, **kw)
    from channels_redis.pubsub import RedisPubSubChannelLayer

    def pubsub(**kw: Any) -> Any:
        kw.pop("capacity", None), kw.pop("expiry", None), kw.pop("channel_capacity", None)
        return RedisPubSubChannelLayer(hosts=[redis_host(url)], prefix=prefix, **kw)

    return pubsub


@pytest.fixture(params=KINDS)
async def make_layer(request: pytest.FixtureRequest) -> AsyncIterator[Callable[..., Any]]:
    """Build layers of one kind (``make_layer(**config)``); each is closed afterwards.
    In memory, every call returns the same layer (one process has one)."""
    kind: str = request.param
    if kind in ("core", "pubsub", "cluster"):
        request.applymarker(pytest.mark.redis)
    if kind == "cluster":
        request.applymarker(pytest.mark.cluster)
    build = _factory(kind, request)
    layers: list[Any] = []

    def make(**config: Any) -> Any:
        if kind == "memory" and layers:
            return layers[0]
        layer = build(**config)
        layer.kind = kind
        layers.append(layer)
        return layer

    make.kind = kind  # type: ignore[attr-defined]
    yield make
    for layer in layers:
        if kind == "cluster":
            await layer.flush()
            await layer.close()
        elif kind == "memory":
            await layer.flush()
        else:
            await layer.flush()
            await close_layer(layer)


def only(layer: Any, *kinds: str, why: str) -> None:
    if layer.kind not in kinds:
        pytest.skip(f"{layer.kind}: {why}")


async def recv(layer: Any, channel: str) -> dict[str, Any]:
    return dict(await asyncio.wait_for(layer.receive(channel), timeout(5)))


async def nothing_for(layer: Any, channel: str, seconds: float = 0.3) -> bool:
    """True if ``channel`` gets nothing within ``seconds`` (the receive is cancelled)."""
    try:
        await asyncio.wait_for(layer.receive(channel), seconds)
    except TimeoutError:
        return True
    return False


async def test_send_then_receive_on_a_new_channel(make_layer: Callable[..., Any]) -> None:
    layer = make_layer()
    channel = await layer.new_channel()
    await layer.send(channel, {"type": "test.message", "text": "hello"})
    assert await recv(layer, channel) == {"type": "test.message", "text": "hello"}


async def test_new_channels_are_unique_valid_and_process_specific(
    make_layer: Callable[..., Any],
) -> None:
    layer = make_layer()
    names = {await layer.new_channel() for _ in range(20)}
    assert len(names) == 20
    for name in names:
        # The specification's rule (the pub/sub layer has no validator of its own).
        assert BaseChannelLayer().require_valid_channel_name(name)
        if layer.kind != "pubsub":  # its names carry no "!" (see the module)
            assert "!" in name
    named = await layer.new_channel(prefix="mine")
    assert "mine" in named  # the pub/sub layer adds its own prefix and no dot


async def test_a_channel_delivers_in_order(make_layer: Callable[..., Any]) -> None:
    layer = make_layer()
    channel = await layer.new_channel()
    for n in range(20):
        await layer.send(channel, {"type": "t", "n": n})
    assert [(await recv(layer, channel))["n"] for _ in range(20)] == list(range(20))


async def test_a_plain_channel_is_a_queue(make_layer: Callable[..., Any]) -> None:
    """A named channel (a worker's, such as ``ws-notify``): whoever receives gets it."""
    layer = make_layer()
    only(layer, "memory", "core", "cluster", why="pub/sub needs the receiver subscribed first")
    channel = f"worker-{uuid.uuid4().hex[:6]}"
    await layer.send(channel, {"type": "t", "n": 1})
    await layer.send(channel, {"type": "t", "n": 2})
    assert [(await recv(layer, channel))["n"] for _ in range(2)] == [1, 2]


async def test_groups_reach_every_member_until_discarded(make_layer: Callable[..., Any]) -> None:
    layer = make_layer()
    a, b, c = [await layer.new_channel() for _ in range(3)]
    await layer.group_add("room", a)
    await layer.group_add("room", b)
    await layer.group_send("room", {"type": "t", "n": 1})
    assert (await recv(layer, a))["n"] == 1
    assert (await recv(layer, b))["n"] == 1
    assert await nothing_for(layer, c)
    await layer.group_discard("room", b)
    await layer.group_send("room", {"type": "t", "n": 2})
    assert (await recv(layer, a))["n"] == 2
    assert await nothing_for(layer, b)


async def test_group_add_twice_delivers_once(make_layer: Callable[..., Any]) -> None:
    layer = make_layer()
    a = await layer.new_channel()
    await layer.group_add("twice", a)
    await layer.group_add("twice", a)
    await layer.group_send("twice", {"type": "t", "n": 1})
    assert (await recv(layer, a))["n"] == 1
    assert await nothing_for(layer, a)


async def test_empty_groups_and_unknown_discards_are_fine(make_layer: Callable[..., Any]) -> None:
    layer = make_layer()
    a = await layer.new_channel()
    await layer.group_send("nobody-here", {"type": "t"})
    await layer.group_discard("nobody-here", a)


async def test_invalid_names_raise_type_error(make_layer: Callable[..., Any]) -> None:
    layer = make_layer()
    only(layer, "memory", "core", "cluster", why="the pub/sub layer does not check names")
    with pytest.raises(TypeError):
        await layer.send("bad name!", {"type": "t"})
    with pytest.raises(TypeError):
        await layer.group_send("bad group", {"type": "t"})
    with pytest.raises(TypeError):
        await layer.group_add("x" * 200, await layer.new_channel())


async def test_a_full_channel_raises_channel_full(make_layer: Callable[..., Any]) -> None:
    layer = make_layer(capacity=3)
    only(layer, "memory", "core", "cluster", why="pub/sub keeps no queue, so no capacity")
    channel = await layer.new_channel()
    for n in range(3):
        await layer.send(channel, {"type": "t", "n": n})
    with pytest.raises(ChannelFull):
        await layer.send(channel, {"type": "t", "n": 3})
    assert (await recv(layer, channel))["n"] == 0


async def test_group_send_never_raises_for_a_full_member(make_layer: Callable[..., Any]) -> None:
    # A roomy member tells when the group's messages have all arrived (the Cluster
    # layer delivers them asynchronously, in order); the in-memory layer cannot
    # take a pattern (see the module) and delivers at once.
    roomy_capacity = {"roomy*": 100} if make_layer.kind in ("core", "cluster") else None
    layer = make_layer(capacity=2, channel_capacity=roomy_capacity)
    only(layer, "memory", "core", "cluster", why="pub/sub keeps no queue, so no capacity")
    full = await layer.new_channel()
    roomy = await layer.new_channel(prefix="roomy") if roomy_capacity else None
    await layer.group_add("g", full)
    if roomy is not None:
        await layer.group_add("g", roomy)
    for n in range(5):
        await layer.group_send("g", {"type": "t", "n": n})
    if roomy is not None:
        assert [(await recv(layer, roomy))["n"] for _ in range(5)] == list(range(5))
    got = [(await recv(layer, full))["n"] for _ in range(2)]
    assert got == [0, 1]  # the rest was dropped for this member
    assert await nothing_for(layer, full)


async def test_channel_capacity_patterns(make_layer: Callable[..., Any]) -> None:
    layer = make_layer(capacity=100, channel_capacity={"tiny*": 1})
    only(layer, "core", "cluster", why="no capacity, or patterns not compiled (see the module)")
    await layer.send("tiny-one", {"type": "t"})
    with pytest.raises(ChannelFull):
        await layer.send("tiny-one", {"type": "t"})
    for _ in range(5):
        await layer.send("roomy-one", {"type": "t"})


async def test_messages_expire(make_layer: Callable[..., Any]) -> None:
    layer = make_layer(expiry=1)
    only(layer, "memory", "core", "cluster", why="pub/sub keeps no queue, so nothing to expire")
    channel = await layer.new_channel()
    await layer.send(channel, {"type": "t", "n": "old"})
    await asyncio.sleep(1.5)  # time passing is what is tested
    await layer.send(channel, {"type": "t", "n": "new"})
    assert (await recv(layer, channel))["n"] == "new"


async def test_group_messages_expire(make_layer: Callable[..., Any]) -> None:
    layer = make_layer(expiry=1)
    only(layer, "memory", "core", "cluster", why="pub/sub keeps no queue, so nothing to expire")
    channel = await layer.new_channel()
    await layer.group_add("aging", channel)
    await layer.group_send("aging", {"type": "t", "n": "old"})
    await asyncio.sleep(1.5)  # time passing is what is tested
    # Sent directly: the in-memory layer also drops a channel whose message
    # expired from its groups.
    await layer.send(channel, {"type": "t", "n": "new"})
    assert (await recv(layer, channel))["n"] == "new"


async def test_flush_forgets_queued_messages(make_layer: Callable[..., Any]) -> None:
    layer = make_layer()
    only(layer, "memory", "core", "cluster", why="pub/sub keeps no queue")
    channel = f"flushed-{uuid.uuid4().hex[:6]}"
    await layer.send(channel, {"type": "t"})
    await layer.flush()
    assert await nothing_for(layer, channel)


async def test_a_cancelled_receive_loses_nothing(make_layer: Callable[..., Any]) -> None:
    layer = make_layer()
    only(layer, "memory", "core", "cluster", why="a cancelled receive unsubscribes")
    channel = await layer.new_channel()
    assert await nothing_for(layer, channel, 0.2)  # a receive cancelled while waiting
    await layer.send(channel, {"type": "t", "n": 1})
    assert (await recv(layer, channel))["n"] == 1


async def test_across_processes(make_layer: Callable[..., Any]) -> None:
    """Two layer instances (two processes): a group and a channel of one are
    reached from the other."""
    here, there = make_layer(), make_layer()
    only(here, "core", "pubsub", "cluster", why="one process only")
    theirs = await there.new_channel()
    await there.group_add("across", theirs)
    await here.group_send("across", {"type": "t", "n": 1})
    assert (await recv(there, theirs))["n"] == 1
    await here.send(theirs, {"type": "t", "n": 2})
    assert (await recv(there, theirs))["n"] == 2
