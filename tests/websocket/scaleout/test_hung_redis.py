"""A Redis that hangs: paused with SIGSTOP, its connections open, nothing answering.

A Redis *restart* closes connections and the client notices at once; a hang (a
paused server, a network partition) does not. While it lasts, calls that need
Redis must fail within ``layer_timeout`` with ``ChannelLayerError``, local
delivery must go on, and presence must not be wiped; within 2 s of SIGCONT,
cross-process delivery and presence must be back, for connections opened during
the hang too. Two managers on their own layers (processes in miniature) on a
private ``redis-server``, with history on, on both layers.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

import pytest
from channels_redis.core import RedisChannelLayer
from channels_redis.pubsub import RedisPubSubChannelLayer

from svc_infra.websocket import ChannelLayerError, ConnectionManager, WebSocketConfig
from svc_infra.websocket.scaleout.layers import redis_host
from svc_infra.websocket.scaleout.presence import RedisPresence
from svc_infra.websocket.testing import MemoryTransport
from tests.support import close_layer, start_redis_server, timeout, wait_until

pytestmark = pytest.mark.timeout(90)
LAYER_TIMEOUT = 0.5
PAUSE = 3.0


@pytest.fixture
def redis_proc() -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    try:
        proc, port = start_redis_server()
    except FileNotFoundError:
        pytest.skip("redis-server is not installed")
    try:
        yield proc, f"redis://127.0.0.1:{port}/0"
    finally:
        os.kill(proc.pid, signal.SIGCONT)  # never leave it paused
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture(params=["core", "pubsub", "core+history", "pubsub+history"])
async def pair(
    request: pytest.FixtureRequest, redis_proc: tuple[subprocess.Popen[bytes], str]
) -> AsyncIterator[tuple[ConnectionManager, ConnectionManager]]:
    _, url = redis_proc
    kind, _, history = request.param.partition("+")
    # The liveness key lasts TTL/2 = 5 s, longer than the pause: a hang of 3 s must
    # not make a live process look dead.
    config = WebSocketConfig(
        close_timeout=timeout(2), presence_ttl=10, history_size=100 if history else 0
    )
    async with two_managers(url, kind, config) as managers:
        yield managers


@contextlib.asynccontextmanager
async def two_managers(
    url: str, kind: str, config: WebSocketConfig
) -> AsyncIterator[tuple[ConnectionManager, ConnectionManager]]:
    """Two started managers on their own layers of ``kind`` ("core" or "pubsub"),
    one prefix, ``LAYER_TIMEOUT``; shut down and their layers closed after."""
    prefix = f"hung{uuid.uuid4().hex[:6]}"
    cls = RedisPubSubChannelLayer if kind == "pubsub" else RedisChannelLayer
    managers = []
    try:
        for _ in range(2):
            m = ConnectionManager(cls(hosts=[redis_host(url)], prefix=prefix), config=config)
            m.ops.layer_timeout = LAYER_TIMEOUT
            managers.append(m)
            await m.start()
        yield managers[0], managers[1]
    finally:
        for m in managers:
            await m.shutdown()
            await close_layer(m.ops.layer)


def sock() -> MemoryTransport:
    return MemoryTransport(timeout=timeout(5))


async def test_a_hung_redis_fails_fast_keeps_local_delivery_and_recovers(
    pair: tuple[ConnectionManager, ConnectionManager],
    redis_proc: tuple[subprocess.Popen[bytes], str],
) -> None:
    a, b = pair
    proc, _ = redis_proc
    here, there = sock(), sock()
    await a.connect("ann", here)
    await b.connect("bob", there)
    for m in (a, b):
        await wait_until(lambda m=m: m.connection_count == 2)
    await a.send_to_user("bob", "before")
    assert await there.next() == "before"

    os.kill(proc.pid, signal.SIGSTOP)
    paused = time.monotonic()
    try:
        # A call that needs Redis fails within the layer timeout...
        start = time.monotonic()
        with pytest.raises(ChannelLayerError):
            await a.send_to_user("bob", "lost")
        assert time.monotonic() - start < LAYER_TIMEOUT + timeout(1)
        # ...and local delivery goes on (the call still reports the other processes).
        # With history on, a message history cannot record is not sent at all: a
        # client away at the time would miss it from its replay without knowing.
        recorded = a.config.history_size > 0
        start = time.monotonic()
        with pytest.raises(ChannelLayerError):
            await a.send_to_user("ann", "local")
        assert time.monotonic() - start < LAYER_TIMEOUT + timeout(1)
        # A socket opened during the hang is served here at once.
        late = sock()
        await a.connect("cid", late)
        with pytest.raises(ChannelLayerError):
            await a.broadcast("all")
        if recorded:
            assert here.sent == [] and late.sent == []  # what a v1 client's
        else:  # replay could not give back was not sent
            assert await here.next() == "local"
            assert await here.next() == "all" and await late.next() == "all"
        # Presence is not wiped: each process still knows the other's connections.
        assert b.is_user_connected("ann") and a.is_user_connected("bob")
        elapsed = time.monotonic() - paused
        assert elapsed < PAUSE, f"the calls above took {elapsed:.1f} s of a {PAUSE} s hang"
        # The hang lasts PAUSE in all, heartbeats and receives running into it.
        await asyncio.sleep(PAUSE - elapsed)
    finally:
        os.kill(proc.pid, signal.SIGCONT)
    resumed = time.monotonic()

    # Within 2 s: cross-process delivery both ways, to the socket opened during the
    # hang too, and presence with it.
    async def delivered(sender: ConnectionManager, user: str, ws: MemoryTransport) -> bool:
        marker = f"after-{time.monotonic()}"
        try:
            await sender.send_to_user(user, marker)
        except ChannelLayerError:
            return False
        try:
            async with asyncio.timeout(0.2):
                while (frame := await ws.next()) != marker:
                    assert frame is not None
        except TimeoutError:
            return False
        return True

    deadline = resumed + 2.0
    for sender, user, ws in ((a, "bob", there), (b, "ann", here), (b, "cid", late)):
        while not await delivered(sender, user, ws):
            assert time.monotonic() < deadline, f"{user} not reached from {sender.ops.id}"
    await wait_until(lambda: b.is_user_connected("cid") and b.connection_count == 3, limit=2)
    assert time.monotonic() - resumed < 2.0 + timeout(0.5)


@pytest.fixture(params=["core", "pubsub"])
async def short_ttl_pair(
    request: pytest.FixtureRequest, redis_proc: tuple[subprocess.Popen[bytes], str]
) -> AsyncIterator[tuple[ConnectionManager, ConnectionManager]]:
    _, url = redis_proc
    # The liveness keys last TTL/2 = 1 s: the hang outlasts them all.
    config = WebSocketConfig(close_timeout=timeout(2), presence_ttl=2)
    async with two_managers(url, request.param, config) as managers:
        yield managers


async def test_a_hang_longer_than_the_liveness_keys_reaps_nobody(
    short_ttl_pair: tuple[ConnectionManager, ConnectionManager],
    redis_proc: tuple[subprocess.Popen[bytes], str],
) -> None:
    """Redis paused for longer than a liveness key lives: when it resumes every key
    has lapsed at once. That is Redis' pause, not every process dying: nobody is
    reaped, the users keep their rooms, and room messages reach both processes."""
    a, b = short_ttl_pair
    proc, _ = redis_proc
    here, there = sock(), sock()
    await a.connect("ann", here)
    await b.connect("bob", there)
    await a.join_room("ann", "lobby")
    await b.join_room("bob", "lobby")
    for m in (a, b):
        await wait_until(lambda m=m: sorted(m.get_room_users("lobby")) == ["ann", "bob"])

    def presences() -> list[RedisPresence]:
        found = [m.ops.presence for m in (a, b)]
        assert all(isinstance(p, RedisPresence) for p in found)
        return found  # type: ignore[return-value]

    resyncs = [p.resyncs for p in presences()]
    os.kill(proc.pid, signal.SIGSTOP)
    try:
        await asyncio.sleep(PAUSE)  # the outage itself: nothing to await
    finally:
        os.kill(proc.pid, signal.SIGCONT)
    # Both processes find their keys gone and write themselves back...
    await wait_until(
        lambda: all(p.resyncs > r and p.healthy for p, r in zip(presences(), resyncs, strict=True)),
        limit=5,
    )
    for m in (a, b):
        await wait_until(lambda m=m: m.connection_count == 2, limit=5)
    # ... and neither was reaped meanwhile: the rooms are intact everywhere.
    for m in (a, b):
        assert sorted(m.get_room_users("lobby")) == ["ann", "bob"], m.ops.id
    marker = f"room-{time.monotonic()}"

    async def reached() -> bool:
        try:
            await a.broadcast_to_room("lobby", marker)
        except ChannelLayerError:
            return False
        return True

    await wait_until_async(reached, limit=5)
    assert await here.next() == marker
    while (frame := await there.next()) != marker:
        assert frame is not None


async def wait_until_async(predicate: Callable[[], Awaitable[bool]], limit: float) -> None:
    async with asyncio.timeout(timeout(limit)):
        while not await predicate():
            await asyncio.sleep(0.05)
