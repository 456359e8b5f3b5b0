"""The index presence mode on a real Redis: no mirrors, cluster-wide answers from Redis.

Managers share one in-memory layer (each is a "process"), with presence on Redis
through ``presence_redis_url`` and ``presence_mode="index"``.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import subprocess
import tracemalloc
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import redis
from channels.layers import InMemoryChannelLayer

from svc_infra.websocket import (
    ConnectionManager,
    PresenceCounts,
    TooManyConnectionsError,
    WebSocketConfig,
)
from svc_infra.websocket.scaleout import indexed, presence
from svc_infra.websocket.scaleout.indexed import IndexedPresence
from svc_infra.websocket.testing import MemoryTransport
from tests.support import ROOT, close_layer, flush_db, python_cmd, timeout, wait_until

pytestmark = [pytest.mark.redis]

DB = 4


@pytest.fixture
def url(redis_server: str) -> Iterator[str]:
    yield f"{redis_server}/{DB}"
    flush_db(f"{redis_server}/{DB}")


@pytest.fixture(params=["redis", "redis-cluster"])
def where(request: pytest.FixtureRequest, redis_server: str) -> Iterator[str]:
    """One Redis (presence_redis_url, an in-memory layer between the managers), or a
    Redis Cluster (the Cluster layer, and presence on the Cluster)."""
    if request.param == "redis-cluster":
        request.applymarker(pytest.mark.cluster)
        yield request.getfixturevalue("redis_cluster").seed_url
        return
    yield f"{redis_server}/{DB}"
    flush_db(f"{redis_server}/{DB}")


@contextlib.asynccontextmanager
async def managers(
    url: str, n: int = 2, mode: str = "index", **overrides: Any
) -> AsyncIterator[list[ConnectionManager]]:
    """``n`` managers (as many processes) with presence in ``mode`` at ``url``."""
    on_cluster = url.startswith("redis+cluster://")
    options: dict[str, Any] = {
        "presence_mode": mode,
        "presence_ttl": 2.0,
        "close_timeout": 1,
        **({} if on_cluster else {"presence_redis_url": url}),
        **overrides,
    }
    config = WebSocketConfig(**options)
    prefix = f"i{uuid.uuid4().hex[:6]}."
    layer = InMemoryChannelLayer()
    started = [
        ConnectionManager(redis_url=url, config=config, channel_prefix=prefix)
        if on_cluster
        else ConnectionManager(layer, config=config, channel_prefix=prefix)
        for _ in range(n)
    ]
    for m in started:
        await m.start()
    try:
        yield started
    finally:
        for m in started:
            await m.shutdown()
            if on_cluster:
                await close_layer(m.ops.layer)


def sock() -> MemoryTransport:
    return MemoryTransport(timeout=timeout(5))


async def counts(m: ConnectionManager) -> PresenceCounts:
    return await m.cluster.counts()


async def test_counts_users_and_rooms_agree_across_processes(where: str) -> None:
    async with managers(where, 3) as (a, b, c):
        assert isinstance(a.ops.presence, IndexedPresence)
        socks = {name: sock() for name in ("u1", "u2", "u3")}
        await a.connect("u1", socks["u1"])
        await b.connect("u2", socks["u2"])
        await c.connect("u3", socks["u3"])
        u1_on_b = await b.connect("u1", sock(), metadata={"device": "phone"})  # two processes
        await a.join_room("u2", "lobby")  # u2 is on b
        await c.join_room("u3", "lobby")
        await c.join_room("u1", "games")
        for m in (a, b, c):
            await wait_until_async(lambda m=m: counts(m), PresenceCounts(4, 3, 2))
            assert await m.cluster.is_user_connected("u2")
            infos = {i.connection_id: i for i in await m.cluster.user_connections("u1")}
            assert len(infos) == 2 and infos[u1_on_b].metadata == {"device": "phone"}
            # Kept compact in Redis (to the millisecond); the id and user from the key.
            local = b.get_user_connections("u1")[0]
            assert infos[u1_on_b].user_id == "u1"
            assert abs(infos[u1_on_b].connected_at - local.connected_at).total_seconds() < 0.001
            users, cursor = await m.cluster.room_users("lobby")
            assert sorted(users) == ["u2", "u3"] and cursor == ""
            assert sorted([u async for u in m.cluster.iter_users(count=1)]) == ["u1", "u2", "u3"]
        # The synchronous view is this process's; the count adds the others' as
        # of the last heartbeat.
        assert a.active_users == ["u1"] and a.get_room_users("lobby") == []
        assert b.get_room_users("lobby") == ["u2"]
        await wait_until(lambda: a.connection_count == 4)
        await c.disconnect("u3", socks["u3"])
        await a.disconnect("u1", socks["u1"])
        for m in (a, b, c):
            await wait_until_async(lambda m=m: counts(m), PresenceCounts(2, 2, 2))
            assert not await m.cluster.is_user_connected("u3")
            # u3 left everywhere, so their rooms (a write after the close's).
            await wait_until_async(lambda m=m: m.cluster.room_users("lobby"), (["u2"], ""))


def in_room_group(m: ConnectionManager, room: str) -> bool:
    """Whether ``m`` is in the room's group on the layer, with no call in flight."""
    membership = m.ops._membership
    return room in membership.room_groups and not membership._locks


async def test_a_room_change_reaches_the_users_processes_only(where: str) -> None:
    """b joins u (connected to a) to a room: a's connection receives the room's
    messages; a process that u connects to later reads the rooms from Redis."""
    async with managers(where, 3) as (a, b, c):
        on_a = sock()
        await a.connect("u", on_a)
        await b.join_room("u", "lobby")
        await wait_until(lambda: a.get_room_users("lobby") == ["u"])
        # a shows the room at once and joins its group on the layer next (a
        # subscription on the Cluster): a message sent before that completes is
        # not a's to receive (it would be replayed with history on).
        await wait_until(lambda: in_room_group(a, "lobby"))
        assert b.get_room_users("lobby") == []  # b keeps no room of a user not here
        await b.broadcast_to_room("lobby", {"n": 1})
        assert await on_a.next_json() == {"n": 1}
        on_c = sock()
        await c.connect("u", on_c)
        assert c.get_room_users("lobby") == ["u"]
        await a.broadcast_to_room("lobby", {"n": 2})
        assert await on_c.next_json() == {"n": 2}
        assert await on_a.next_json() == {"n": 2}


async def test_a_missed_room_change_is_made_up_by_the_comparison_with_redis(where: str) -> None:
    """A room change written to Redis that a's copy never heard of (a lost layer
    message): a reads the user's newer set within RECONCILE_BEATS heartbeats."""
    async with managers(where, 2) as (a, b):
        await a.connect("u", sock())
        other = b.ops.presence
        assert isinstance(other, IndexedPresence)
        await other.update_rooms("u", "join", "quiet")  # Redis only: nobody is told
        await wait_until(lambda: a.get_room_users("quiet") == ["u"], limit=3 * 2.0)
        presence_a = a.ops.presence
        assert isinstance(presence_a, IndexedPresence) and presence_a.room_reads >= 1


async def test_a_dead_process_is_reaped_and_its_users_leave_their_rooms(where: str) -> None:
    """A process stops beating (its tasks gone, its liveness key expired): another
    reaps it within the TTL; its only user leaves their rooms."""
    async with managers(where, 2) as (a, b):
        await b.connect("dead", sock())
        await b.join_room("dead", "lobby")
        await wait_until_async(lambda: counts(a), PresenceCounts(1, 1, 1))
        dying = b.ops.presence
        assert isinstance(dying, IndexedPresence)
        for task in dying._tasks:  # as a kill -9: nothing runs, nothing is cleaned
            task.cancel()
        await asyncio.gather(*dying._tasks, return_exceptions=True)
        dying._tasks = []
        b._runtime.presence = None  # its shutdown must not leave cleanly either
        await wait_until_async(lambda: counts(a), PresenceCounts(0, 0, 0), limit=2 * 2.0)
        a_presence = a.ops.presence
        assert isinstance(a_presence, IndexedPresence) and a_presence.reaped == 1
        await dying.stop()  # closes its client (its leave finds nothing to do)


async def test_presence_comes_back_after_redis_loses_its_data(url: str) -> None:
    async with managers(url, 2) as (a, b):
        await a.connect("u1", sock())
        await b.connect("u2", sock())
        await a.join_room("u1", "lobby")
        await wait_until_async(lambda: counts(a), PresenceCounts(2, 2, 1))
        redis.Redis.from_url(url).flushdb()  # a restart without persistence
        assert await counts(a) == PresenceCounts(0, 0, 0)
        # Each process notices its liveness key gone and writes itself back.
        await wait_until_async(lambda: counts(a), PresenceCounts(2, 2, 1), limit=3 * 2.0)
        assert (await b.cluster.room_users("lobby"))[0] == ["u1"]


async def test_the_cap_refuses_across_processes_in_the_index_mode(where: str) -> None:
    async with managers(where, 2, max_connections_per_user=1) as (a, b):
        first = sock()
        await a.connect("u", first)
        with pytest.raises(TooManyConnectionsError):
            await b.connect("u", sock())
        await a.disconnect("u", first)
        # The slot is given back by a task right after the close.
        a_presence = a.ops.presence
        assert isinstance(a_presence, IndexedPresence)
        await asyncio.wait(a_presence._releases, timeout=timeout(5))
        await b.connect("u", sock())


async def test_newest_policy_across_processes_in_the_index_mode(where: str) -> None:
    async with managers(where, 2, max_connections_per_user=1, cap_policy="newest") as (a, b):
        first, second = sock(), sock()
        await a.connect("u", first)
        await b.connect("u", second)
        assert await first.wait_closed() == 4409
        assert not second.closed


def presence_bytes(snapshot: tracemalloc.Snapshot) -> int:
    """Bytes still held that were allocated with a presence module on the stack:
    its structures and everything they hold (connection infos, strings). Not the
    event loop's and redis-py's own (cancelled timers wait in the loop's heap until
    it cleans it; buffers), which do not grow with connections elsewhere."""
    ours = snapshot.filter_traces(
        [
            tracemalloc.Filter(True, indexed.__file__, all_frames=True),
            tracemalloc.Filter(True, presence.__file__, all_frames=True),
        ]
    )
    theirs = [tracemalloc.Filter(False, f"*/{lib}/*") for lib in ("asyncio", "redis")]
    return sum(t.size for t in ours.filter_traces(theirs).traces)


@pytest.mark.e2e
@pytest.mark.timeout(180)
@pytest.mark.parametrize(("mode", "n"), [("index", 10_000), ("mirror", 2_000)])
async def test_a_process_presence_memory_does_not_grow_with_the_others(
    url: str, mode: str, n: int
) -> None:
    """10,000 connections open in another OS process: this process's presence
    memory (tracemalloc: what the presence modules allocated and still hold) stays
    flat in the index mode. The mirror mode, for comparison (with 2,000: it is
    slow under tracemalloc), grows with them: the measure can fail."""
    prefix = f"m{uuid.uuid4().hex[:6]}."
    config = WebSocketConfig(
        presence_redis_url=url, presence_mode=mode, presence_ttl=30, close_timeout=1
    )
    a = ConnectionManager(redis_url=url, config=config, channel_prefix=prefix)
    await a.start()
    await a.connect("here", sock())
    gc.collect()
    tracemalloc.start(10)
    load = subprocess.Popen(
        python_cmd("-m", "tests.apps.presence_load", url, prefix, mode, str(n)),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        cwd=ROOT,
    )
    try:
        assert load.stdout is not None
        ready = await asyncio.wait_for(asyncio.to_thread(load.stdout.readline), timeout(60))
        assert ready.strip() == b"ready"
        await wait_until_async(lambda: counts(a), PresenceCounts(n + 1, n + 1, 0), limit=20)
        if mode == "mirror":
            await wait_until(lambda: a.connection_count == n + 1, limit=20)
        gc.collect()
        snap = tracemalloc.take_snapshot()
        grown = presence_bytes(snap)
    finally:
        tracemalloc.stop()
        assert load.stdin is not None and load.stdout is not None
        load.stdin.close()
        load.wait(timeout(30))
        load.stdout.close()
        await a.shutdown()
    print(f"[{mode}] this process's presence holds {grown} more bytes for {n} elsewhere")
    if mode == "index":
        assert grown < 16 * 1024
    else:
        assert grown > n * 200  # the mirror holds every one of them


async def wait_until_async(read: Any, expected: Any, limit: float = 5) -> None:
    """Poll the coroutine function ``read`` until it returns ``expected``."""
    seen = None
    try:
        async with asyncio.timeout(timeout(limit)):
            while (seen := await read()) != expected:
                await asyncio.sleep(0.02)
    except TimeoutError:
        raise AssertionError(f"expected {expected}, last saw {seen}") from None
