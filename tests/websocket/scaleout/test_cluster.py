"""Several real server processes on one Redis: two FastAPI (uvicorn), one Django (Daphne).

Every scenario runs on both channels_redis layers (core and pub/sub), and on a
real Redis Cluster (``redis+cluster://``: RedisClusterChannelLayer and history on
the Cluster, presence on one Redis through ``WS_PRESENCE_REDIS_URL``). The
processes are driven over HTTP (``/ctl/<op>``, see ``tests/apps/cluster_control.py``)
and their sockets are real ``websockets`` clients.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect

from tests.servers import Server, daphne, everywhere, ok, uvicorn
from tests.support import flush_db, timeout, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.redis]

# A database of its own on the shared Redis, flushed afterwards.
DB = 12
FASTAPI = "tests.apps.cluster_fastapi:app"
DJANGO = "tests.apps.cluster_django:application"


def cluster_env(redis_url: str, layer: str, ttl: float = 30) -> dict[str, str]:
    return {
        "WS_REDIS_URL": redis_url,
        "WS_REDIS_LAYER": layer,
        "WS_CHANNEL_PREFIX": f"t{uuid.uuid4().hex[:8]}.",
        "WS_PRESENCE_TTL": str(ttl),
    }


@pytest.fixture(scope="module", params=["core", "pubsub", "redis-cluster"])
def cluster(request: pytest.FixtureRequest, redis_server: str) -> Iterator[list[Server]]:
    """fa and fb (FastAPI under uvicorn) and dj (Django under Daphne), one Redis
    (and a Redis Cluster for the ``redis-cluster`` case)."""
    url = f"{redis_server}/{DB}"
    if request.param == "redis-cluster":
        request.applymarker(pytest.mark.cluster)
        seed = request.getfixturevalue("redis_cluster").seed_url
        env = {**cluster_env(seed, "core"), "WS_PRESENCE_REDIS_URL": url}
    else:
        env = cluster_env(url, request.param)
    with contextlib.ExitStack() as stack:
        servers = [
            stack.enter_context(uvicorn(FASTAPI, {**env, "CLUSTER_NAME": "fa"})),
            stack.enter_context(uvicorn(FASTAPI, {**env, "CLUSTER_NAME": "fb"})),
            stack.enter_context(daphne(DJANGO, {**env, "CLUSTER_NAME": "dj"})),
        ]
        yield servers
    flush_db(url)


@contextlib.asynccontextmanager
async def client(server: Server, user: str) -> AsyncIterator[ClientConnection]:
    async with connect(server.ws(f"/ws/{user}"), open_timeout=timeout(10)) as ws:
        yield ws


async def recv(ws: ClientConnection) -> Any:
    return json.loads(await asyncio.wait_for(ws.recv(), timeout(5)))


async def settled_count(servers: list[Server], limit: float = 10) -> int:
    """The cluster's connection count once every process agrees with the sum of the
    local counts (a previous test's closes may still be travelling)."""
    total = 0

    def settled() -> bool:
        nonlocal total
        views = [s.stats() for s in servers]
        total = sum(v["local"] for v in views)
        return all(v["connection_count"] == total for v in views)

    await wait_until(settled, limit, 0.05)
    return total


def agree(servers: list[Server], **query: str) -> bool:
    keys = ("active_users", "connection_count", "room_count", "room_users", "user_servers")
    views = [{k: s.stats(**query)[k] for k in keys} for s in servers]
    return all(v == views[0] for v in views)


def uid(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:6]}"


async def test_calls_cross_processes_and_frameworks(cluster: list[Server]) -> None:
    """send_to_user, broadcast (exclude), join_room from a third process, rooms with
    exclude: each reaches sockets held by the other processes; stats agree."""
    fa, fb, dj = cluster
    alice, bob, carol, dave = (uid(n) for n in ("alice", "bob", "carol", "dave"))
    room = uid("room")
    async with (
        client(fa, alice) as a,
        client(fb, bob) as b,
        client(dj, carol) as c,
        client(fa, dave) as d1,
        client(dj, dave) as d2,
    ):
        users = {alice, bob, carol, dave}
        await everywhere(cluster, lambda s: users <= set(s["active_users"]))
        await everywhere(cluster, lambda s: s["user_servers"] == ["dj", "fa"], user=dave)

        ok(dj, "send", user=alice, msg={"n": 1})  # Django -> FastAPI
        assert await recv(a) == {"n": 1}
        ok(fa, "send", user=carol, msg={"n": 2})  # FastAPI -> Django
        assert await recv(c) == {"n": 2}
        ok(fb, "send", user=dave, msg={"n": 3})  # both of dave's, in two processes
        assert await recv(d1) == {"n": 3}
        assert await recv(d2) == {"n": 3}

        ok(fb, "broadcast", msg={"all": 1}, exclude=alice)
        for ws in (b, c, d1, d2):
            assert await recv(ws) == {"all": 1}
        # Same sender, same path to fa: the marker comes after the broadcast would.
        ok(fb, "send", user=alice, msg={"marker": 1})
        assert await recv(a) == {"marker": 1}

        ok(dj, "join", user=bob, room=room)  # bob is on fb
        ok(dj, "join", user=carol, room=room)
        ok(fa, "join", user=alice, room=room)
        await everywhere(
            cluster, lambda s: s["room_users"] == sorted([alice, bob, carol]), room=room
        )
        ok(fa, "room", room=room, msg={"room": 1}, exclude=carol)
        assert await recv(a) == {"room": 1}
        assert await recv(b) == {"room": 1}
        ok(fa, "send", user=carol, msg={"marker": 1})
        assert await recv(c) == {"marker": 1}

        await wait_until(lambda: agree(cluster, room=room, user=dave), timeout(10), 0.05)
        stats = fa.stats(room=room, user=dave)
        assert stats["connected"] is True
        assert stats["lost"] == 0


async def test_last_disconnect_anywhere_leaves_the_rooms(cluster: list[Server]) -> None:
    """A user connected to two processes stays in the room until both sockets close."""
    fa, fb, dj = cluster
    erin, room = uid("erin"), uid("room")
    async with client(fa, erin) as first:
        async with client(dj, erin):
            await everywhere(cluster, lambda s: s["user_servers"] == ["dj", "fa"], user=erin)
            ok(fb, "join", user=erin, room=room)
            await everywhere(cluster, lambda s: s["room_users"] == [erin], room=room)
        await everywhere(cluster, lambda s: s["user_servers"] == ["fa"], user=erin)
        assert all(s.stats(room=room)["room_users"] == [erin] for s in cluster)
        ok(dj, "room", room=room, msg={"still": "here"})
        assert await recv(first) == {"still": "here"}
    await everywhere(
        cluster, lambda s: s["room_users"] == [] and not s["connected"], room=room, user=erin
    )


async def test_order_from_one_sender_across_processes(cluster: list[Server]) -> None:
    """Messages from one process to one remote connection arrive in the order sent,
    also while another process sends to the same connection."""
    fa, fb, dj = cluster
    frank = uid("frank")
    n = 300
    async with client(fb, frank) as ws:
        await everywhere(cluster, lambda s: s["connected"], user=frank)
        loop = asyncio.get_running_loop()
        first = loop.run_in_executor(None, lambda: fa.ctl("burst", user=frank, n=n))
        second = loop.run_in_executor(None, lambda: dj.ctl("burst", user=frank, n=n))
        seen: dict[str, list[int]] = {"fa": [], "dj": []}
        for _ in range(2 * n):
            message = await recv(ws)
            seen[message["from"]].append(message["seq"])
        assert (await first)[0] == 200
        assert (await second)[0] == 200
    assert seen == {"fa": list(range(n)), "dj": list(range(n))}


async def test_a_storm_of_1000_connections_across_two_processes(cluster: list[Server]) -> None:
    """1,000 sockets opened at once on fa and fb: every handshake succeeds and every
    process counts them all."""
    fa, fb, dj = cluster
    base = await settled_count(cluster)
    prefix = uid("storm")
    async with contextlib.AsyncExitStack() as stack:
        opens = [
            stack.enter_async_context(client(fa if i % 2 else fb, f"{prefix}-{i}"))
            for i in range(1000)
        ]
        results = await asyncio.gather(*opens, return_exceptions=True)
        failures = [r for r in results if isinstance(r, BaseException)]
        assert failures == []
        await everywhere(cluster, lambda s: s["connection_count"] == base + 1000, limit=30)
        ok(dj, "send", user=f"{prefix}-7", msg={"found": 7})
        assert await recv(results[7]) == {"found": 7}
    await everywhere(cluster, lambda s: s["connection_count"] == base, limit=30)
