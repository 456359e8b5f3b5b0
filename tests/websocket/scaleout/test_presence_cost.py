"""What presence's periodic check costs Redis: it grows with changes, not connections.

Counted on a private ``redis-server`` (``INFO commandstats`` counts the commands
Lua scripts run, and nothing else talks to it), with two presence instances whose
tasks are not started: each step is called directly, so the counts are exact.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from svc_infra.websocket.models import ConnectionInfo
from svc_infra.websocket.scaleout.presence import RedisPresence
from tests.support import start_redis_server

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def private_redis() -> Iterator[str]:
    try:
        proc, port = start_redis_server()
    except FileNotFoundError:
        pytest.skip("redis-server is not installed")
    try:
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


class Host:
    """A PresenceHost with ``conns`` local connections and the room sets it was told."""

    def __init__(self, name: str, conns: int = 0, channel: str | None = None) -> None:
        self.id = name
        self.conns = [ConnectionInfo(f"{name}-u{i}", f"{name}-c{i}") for i in range(conns)]
        self.rooms: dict[str, tuple[int, list[str]]] = {}
        self.announced: list[dict[str, Any]] = []
        self.channel = channel
        self.evicted: list[tuple[str, list[str], list[str]]] = []

    def local_connections(self) -> list[ConnectionInfo]:
        return list(self.conns)

    def known_rooms(self) -> list[tuple[str, int, list[str]]]:
        return [(u, v, r) for u, (v, r) in self.rooms.items() if r]

    async def apply_rooms(self, user: str, rooms: list[str], version: int) -> None:
        if version > self.rooms.get(user, (0, []))[0]:
            self.rooms[user] = (version, rooms)

    async def announce(self, message: dict[str, Any]) -> None:
        self.announced.append(message)

    async def rejoin_groups(self, again_after: float | None = None) -> None:
        pass

    async def evict_channel(self, channel: str, users: list[str], rooms: list[str]) -> None:
        self.evicted.append((channel, sorted(users), sorted(rooms)))


async def presence(url: str, host: Host) -> RedisPresence:
    import redis.asyncio as aioredis

    p = RedisPresence(aioredis.Redis.from_url(url), host, key_prefix="cost:", ttl=600)
    await p._resync()  # writes this process's connections, reads the others'
    return p


async def commands(url: str) -> int:
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(url)
    try:
        stats = await client.info("commandstats")
    finally:
        await client.aclose()
    # Every command but the INFO calls that measure.
    return sum(int(v["calls"]) for k, v in stats.items() if k != "cmdstat_info")


@pytest.fixture
async def flushed(private_redis: str) -> AsyncIterator[str]:
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(private_redis)
    await client.flushdb()
    yield private_redis
    await client.flushdb()
    await client.aclose()


async def check_cost(url: str, connections: int) -> tuple[int, int]:
    """Commands of one check with nothing changed, and with 10 room changes."""
    a = await presence(url, Host("a", connections))
    b = await presence(url, Host("b"))
    try:
        await b._reconcile()  # the first check after a resync
        assert b.remote_count() == connections
        before = await commands(url)
        await b._reconcile()
        idle = await commands(url) - before
        for i in range(10):
            await a.update_rooms(f"a-u{i}", "join", "lobby")
        before = await commands(url)
        await b._reconcile()
        changed = await commands(url) - before
        assert len([u for u, _, rooms in b.owner.known_rooms() if rooms == ["lobby"]]) == 10
        assert b.full_loads == 1 and b.reloads == 0  # the resync's read, nothing since
        return idle, changed
    finally:
        for p in (a, b):
            await p.client.aclose()


async def test_a_check_costs_the_same_at_1000_and_10000_connections(flushed: str) -> None:
    small = await check_cost(flushed, 1_000)
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(flushed)
    await client.flushdb()
    await client.aclose()
    large = await check_cost(flushed, 10_000)
    assert small == large, (small, large)
    idle, changed = small
    print(f"commands per check: {idle} idle, {changed} with 10 room changes")
    assert idle <= 13, idle  # a handful of commands: processes, versions, counts
    assert changed - idle == 2 * 10, (idle, changed)  # per changed user: its version and set


async def test_a_lost_announcement_rereads_only_that_process(flushed: str) -> None:
    a = await presence(flushed, Host("a", 100))
    c = await presence(flushed, Host("c", 100))
    b = await presence(flushed, Host("b"))
    try:
        assert b.remote_count() == 200
        await b._reconcile()
        before = await commands(flushed)
        await b._reconcile()
        idle = await commands(flushed) - before
        a.owner.conns.append(ConnectionInfo("late", "late-c"))  # type: ignore[attr-defined]
        a.opened(a.owner.conns[-1])  # type: ignore[attr-defined]
        await a._flush()  # written to Redis; its announcement never reaches b
        assert not b.has_remote("late")
        await b._reconcile()
        assert b.has_remote("late") and b.remote_count() == 201
        assert b.reloads == 1  # a's connections only; c's were not read
        # The announcement arriving late changes nothing, nor marks anything stale.
        b.handle("a", a.owner.announced[-1])  # type: ignore[attr-defined]
        before = await commands(flushed)
        await b._reconcile()
        assert b.reloads == 1
        assert await commands(flushed) - before == idle
    finally:
        for p in (a, b, c):
            await p.client.aclose()


async def test_announcements_keep_the_mirror_current_without_rereads(flushed: str) -> None:
    a = await presence(flushed, Host("a", 10))
    b = await presence(flushed, Host("b"))
    try:
        for i in range(5):
            info = ConnectionInfo(f"n{i}", f"n{i}-c")
            a.opened(info)
            await a._flush()
            b.handle("a", a.owner.announced[-1])  # type: ignore[attr-defined]
        a.closed(ConnectionInfo("n0", "n0-c"))
        await a._flush()
        b.handle("a", a.owner.announced[-1])  # type: ignore[attr-defined]
        assert b.remote_count() == 14
        await b._reconcile()
        assert b.reloads == 0 and b.remote_count() == 14
        # An announcement from a library version without versions: reread once.
        b.handle("a", {"add": [json.dumps(ConnectionInfo("old", "old-c").to_dict())]})
        await b._reconcile()
        assert b.reloads == 1 and not b.has_remote("old")  # Redis never had it
    finally:
        for p in (a, b):
            await p.client.aclose()


async def test_a_resync_writes_rooms_back_only_when_redis_lost_its_data(flushed: str) -> None:
    """A process that resyncs while Redis kept its data (it was reaped after a hang,
    or a call failed) must not write back a room set that was emptied meanwhile,
    even once the tombstone that recorded it has expired; after Redis lost
    everything, it must."""
    import redis.asyncio as aioredis

    host = Host("a", 1)
    host.rooms["a-u0"] = (1, ["lobby"])
    a = await presence(flushed, host)  # first resync: Redis had nothing, rooms written
    b = await presence(flushed, Host("b"))
    r = aioredis.Redis.from_url(flushed)
    try:
        assert await r.smembers("cost:r:a-u0") == {b"lobby"}
        await b.update_rooms("a-u0", "leave", "lobby")  # 'a' never hears of it
        await r.delete("cost:t:a-u0")  # ... and the tombstone expires
        await a._resync()
        assert await r.smembers("cost:r:a-u0") == set()
        assert host.rooms["a-u0"][1] == []  # 'a' took Redis' (empty) set
        await r.flushdb()  # Redis lost its data: what 'a' knows is all there is
        host.rooms["a-u0"] = (host.rooms["a-u0"][0] + 1, ["lobby"])
        await a._resync()
        assert await r.smembers("cost:r:a-u0") == {b"lobby"}
    finally:
        await r.aclose()
        for p in (a, b):
            await p.client.aclose()


async def test_a_reaped_process_channel_is_evicted_only_if_it_stays_away(flushed: str) -> None:
    """A process reaped after a hang that comes back within ``evict_after`` keeps its
    groups; one that stays away is evicted once, with its users and their rooms."""
    import asyncio

    import redis.asyncio as aioredis

    a = await presence(flushed, Host("a", 2, channel="chan-a"))
    b = await presence(flushed, Host("b"))
    b.evict_after = 0.3
    r = aioredis.Redis.from_url(flushed)
    try:
        await a.update_rooms("a-u0", "join", "lobby")
        await r.delete("cost:i:a")  # a hangs: its liveness key expires
        assert await b._tick() and b.owner.evicted == []  # reaped, not evicted yet
        assert not await a._tick()  # a wakes up: its key is gone...
        assert await a._tick()  # ... and it resyncs: it is back
        await a.update_rooms("a-u0", "join", "lobby")  # (its rooms were emptied)
        await asyncio.sleep(0.4)  # Redis time must pass evict_after: no event to await
        assert await b._tick() and b.owner.evicted == []  # back in time: kept
        await r.delete("cost:i:a")  # now a dies for good
        assert await b._tick() and b.owner.evicted == []
        await asyncio.sleep(0.4)
        assert await b._tick()
        assert b.owner.evicted == [("chan-a", ["a-u0", "a-u1"], ["lobby"])]
        assert await b._tick() and len(b.owner.evicted) == 1  # once
        assert b.evicted == 1
        assert [k async for k in r.scan_iter("cost:d*")] == []  # nothing left behind
        assert not await r.hexists("cost:ch", "a")
    finally:
        await r.aclose()
        for p in (a, b):
            await p.client.aclose()


async def test_after_redis_stopped_nobody_is_reaped_for_one_key_life(flushed: str) -> None:
    """No process touched Redis for longer than 3/4 of a key life (Redis was paused):
    a process whose key lapsed meanwhile still counts as alive, in the heartbeat and
    in the mirrors, until the hold ends; then it is reaped."""
    import time

    import redis.asyncio as aioredis

    a = await presence(flushed, Host("a", 1))
    b = await presence(flushed, Host("b"))
    r = aioredis.Redis.from_url(flushed)
    try:
        assert await b._tick() and b.remote_count() == 1
        await r.delete("cost:i:a")  # lapsed during the pause...
        stale = (time.time() - 400) * 1_000_000  # ... of 400 s, longer than 3/4 of 300 s
        await r.set("cost:beat", f"{stale:.0f}")
        assert await b._tick()
        assert await r.exists("cost:hold") and b.remote_count() == 1  # not reaped
        assert await b._tick() and b.remote_count() == 1  # nor at the next beat
        await r.delete("cost:hold")  # the hold ends: a never came back
        assert await b._tick() and b.remote_count() == 0
        assert not await r.sismember("cost:instances", "a")
    finally:
        await r.aclose()
        for p in (a, b):
            await p.client.aclose()


async def test_the_last_process_out_evicts_the_pending_and_leaves_no_keys(flushed: str) -> None:
    """The last process to leave removes the channels of dead processes no one is
    left to wait for, and the cluster's own keys; a process with no channel (the
    pub/sub layer) is never evicted."""
    import redis.asyncio as aioredis

    a = await presence(flushed, Host("a", 1, channel="chan-a"))
    c = await presence(flushed, Host("c", 1))  # no channel recorded
    b = await presence(flushed, Host("b"))
    r = aioredis.Redis.from_url(flushed)
    try:
        await r.delete("cost:i:a", "cost:i:c")  # both die
        assert await b._tick() and b.owner.evicted == []  # within evict_after
        await b.stop()  # closes b's client
        assert b.owner.evicted == [("chan-a", ["a-u0"], [])]
        left = sorted([k.decode() async for k in r.scan_iter("cost:*")])
        assert [k for k in left if not k.startswith("cost:t:")] == [], left
    finally:
        await r.aclose()
        for p in (a, c):
            await p.client.aclose()
