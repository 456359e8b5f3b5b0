"""Lossless reconnects end to end: real servers, a TCP proxy that cuts, a recovering client.

A pump in the server sends ``{"seq": i, "to": "room" | "user" | "all"}`` to a room,
a user and everyone at 200 ticks a second. The client (``websocket_connect(...,
auto_reconnect=True, recover=True)``) reaches the server through a proxy that drops
every connection and refuses new ones for two seconds. After it is back, it must
hold every seq of every stream exactly once, in order, and say ``recovered``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from svc_infra.websocket import WebSocketConfig, websocket_connect
from svc_infra.websocket.exceptions import ConnectionClosedError
from tests.proxy import proxy_to
from tests.servers import Server, daphne, uvicorn
from tests.support import flush_db, start_redis_server, timeout, wait_until

pytestmark = [pytest.mark.e2e]

FASTAPI = "tests.apps.cluster_fastapi:app"
DJANGO = "tests.apps.cluster_django:application"
DB = 11  # a database of its own on the shared Redis, flushed afterwards
TICKS = 1000  # 5 s at 200 a second: the cut falls in the middle
RATE = 200.0
CLIENT = WebSocketConfig(
    reconnect_backoff_base=0.05,
    reconnect_backoff_max=0.3,
    reconnect_max_attempts=0,
    ping_interval=None,
    open_timeout=timeout(10),
)


def env(history: int, redis_url: str | None = None) -> dict[str, str]:
    values = {"WS_HISTORY_SIZE": str(history), "WS_CHANNEL_PREFIX": f"r{uuid.uuid4().hex[:8]}."}
    if redis_url is not None:
        values["WS_REDIS_URL"] = redis_url
    return values


class Received:
    """What the recovering client got, per stream, and what each connection said."""

    def __init__(self, publishers: int = 1) -> None:
        self.seqs: dict[str, list[int]] = {"room": [], "user": [], "all": []}
        self.by_publisher: dict[tuple[str, str], list[int]] = {}
        self.publishers = publishers
        self.recovered: list[bool | None] = []
        self.unrecovered: list[list[str]] = []
        self.connections = 0

    def add(self, message: dict[str, Any]) -> None:
        self.seqs[message["to"]].append(message["seq"])
        key = (message["from"], message["to"])
        self.by_publisher.setdefault(key, []).append(message["seq"])

    def complete(self, n: int) -> bool:
        done = [s for s in self.by_publisher.values() if s and s[-1] == n - 1]
        return len(done) == 3 * self.publishers


async def follow(url: str, got: Received, n: int, connected: asyncio.Event) -> None:
    """Read until the last seq of every stream arrived, reconnecting as needed."""
    async for ws in websocket_connect(url, config=CLIENT, auto_reconnect=True, recover=True):
        got.connections += 1
        got.recovered.append(ws.recovered)
        got.unrecovered.append(ws.unrecovered_streams)
        connected.set()
        try:
            async for raw in ws:
                got.add(json.loads(raw))
                if got.complete(n):
                    return
        except ConnectionClosedError:
            continue


async def cut_and_check(
    publisher: Server,
    url: str,
    *,
    history_kept: bool,
    switch: Any = None,
    also: Server | None = None,
) -> Received:
    """Run the pump (on ``also`` too: two publishers), cut the client for 2 s in the
    middle, wait for the end."""
    publishers = [publisher] if also is None else [publisher, also]
    user = f"u{uuid.uuid4().hex[:6]}"
    room = f"chat-{uuid.uuid4().hex[:6]}"
    got = Received(len(publishers))
    connected = asyncio.Event()
    async with proxy_to(int(url.rsplit(":", 1)[1])) as proxy:
        follower = asyncio.create_task(
            follow(proxy.url(f"/ws/{user}?room={room}"), got, TICKS, connected)
        )
        await asyncio.wait_for(connected.wait(), timeout(10))
        await asyncio.sleep(0.2)  # the join after connect is done
        name = uuid.uuid4().hex
        for server in publishers:
            status, _ = await asyncio.to_thread(
                server.ctl, "pump", name=name, user=user, room=room, n=TICKS, rate=RATE
            )
            assert status == 200
        await asyncio.sleep(1.5)
        proxy.cut(refuse_for=2.0)
        if switch is not None:
            proxy.target = switch
        for server in publishers:
            status, answer = await asyncio.to_thread(server.ctl, "pump_wait", name=name)
            assert status == 200 and answer == {"sent": TICKS}
        if history_kept:
            await asyncio.wait_for(follower, timeout(20))
        else:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(follower, timeout(3))
            follower.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await follower
    assert got.connections >= 2, "the cut did not reconnect the client"
    return got


def assert_lossless(got: Received) -> None:
    assert len(got.by_publisher) == 3 * got.publishers
    for key, seqs in got.by_publisher.items():
        assert seqs == list(range(TICKS)), f"{key}: missing, repeated or out of order"
    assert got.recovered[0] is None  # the first connection had nothing to recover
    assert all(r is True for r in got.recovered[1:]), got.recovered
    assert all(u == [] for u in got.unrecovered)


@pytest.fixture
def fastapi_memory() -> Iterator[Server]:
    with uvicorn(FASTAPI, env(history=5000)) as server:
        yield server


async def test_a_cut_client_gets_every_message_once_in_order_on_the_memory_layer(
    fastapi_memory: Server,
) -> None:
    """FastAPI on the in-memory layer: 2 s without a connection lose nothing."""
    got = await cut_and_check(fastapi_memory, fastapi_memory.ws(""), history_kept=True)
    assert_lossless(got)


async def test_a_gap_longer_than_the_history_is_reported_not_hidden() -> None:
    """History of 50 messages, 400 missed: recovered is False, the streams are named,
    and live delivery goes on."""
    with uvicorn(FASTAPI, env(history=50)) as server:
        got = await cut_and_check(server, server.ws(""), history_kept=False)
    assert got.recovered[0] is None
    assert got.recovered[1] is False
    user_stream = next(s for s in got.unrecovered[1] if s.startswith("user:"))
    assert {"broadcast", user_stream} <= set(got.unrecovered[1])
    for to, seqs in got.seqs.items():
        assert seqs == sorted(set(seqs)), f"{to}: out of order or repeated"
        assert seqs[-1] == TICKS - 1, f"{to}: live delivery stopped"
        assert len(seqs) < TICKS, f"{to}: nothing was lost, the test proves nothing"


@pytest.mark.redis
async def test_a_client_recovers_from_the_other_process_on_redis(redis_server: str) -> None:
    """Two uvicorn processes on Redis: cut from the publisher's process, the client
    comes back to the other one and still gets every message once, in order."""
    url = f"{redis_server}/{DB}"
    values = env(history=5000, redis_url=url)
    with contextlib.ExitStack() as stack:
        fa = stack.enter_context(uvicorn(FASTAPI, {**values, "CLUSTER_NAME": "fa"}))
        fb = stack.enter_context(uvicorn(FASTAPI, {**values, "CLUSTER_NAME": "fb"}))
        got = await cut_and_check(fa, fa.ws(""), history_kept=True, switch=fb.port)
    flush_db(url)
    assert_lossless(got)


@pytest.mark.redis
@pytest.mark.cluster
async def test_a_client_recovers_from_the_other_process_on_a_redis_cluster(
    redis_server: str, redis_cluster: Any
) -> None:
    """The same on a Redis Cluster (``redis+cluster://``; history on the Cluster,
    presence on one Redis): every message once, in order, ``recovered`` True."""
    url = f"{redis_server}/{DB}"
    values = {**env(history=5000, redis_url=redis_cluster.seed_url), "WS_PRESENCE_REDIS_URL": url}
    with contextlib.ExitStack() as stack:
        fa = stack.enter_context(uvicorn(FASTAPI, {**values, "CLUSTER_NAME": "fa"}))
        fb = stack.enter_context(uvicorn(FASTAPI, {**values, "CLUSTER_NAME": "fb"}))
        got = await cut_and_check(fa, fa.ws(""), history_kept=True, switch=fb.port)
    flush_db(url)
    assert_lossless(got)


@pytest.mark.redis
async def test_two_publishers_in_two_processes_lose_nothing(redis_server: str) -> None:
    """Both processes publish to the same room, user and broadcast at once: frames of
    one stream overtake each other between processes, and still reach the client in
    offset order, each once, across a cut."""
    url = f"{redis_server}/{DB}"
    values = env(history=5000, redis_url=url)
    with contextlib.ExitStack() as stack:
        fa = stack.enter_context(uvicorn(FASTAPI, {**values, "CLUSTER_NAME": "fa"}))
        fb = stack.enter_context(uvicorn(FASTAPI, {**values, "CLUSTER_NAME": "fb"}))
        got = await cut_and_check(fa, fa.ws(""), history_kept=True, switch=fb.port, also=fb)
    flush_db(url)
    assert_lossless(got)


@pytest.mark.redis
async def test_the_django_project_recovers_under_daphne(redis_server: str) -> None:
    """Managed Channels consumers under Daphne, on Redis: the same guarantee."""
    url = f"{redis_server}/{DB}"
    with daphne(DJANGO, {**env(history=5000, redis_url=url), "CLUSTER_NAME": "dj"}) as dj:
        got = await cut_and_check(dj, dj.ws(""), history_kept=True)
    flush_db(url)
    assert_lossless(got)


@pytest.mark.redis
async def test_a_redis_restart_under_the_process_is_reported_as_unrecovered() -> None:
    """Redis restarted without persistence loses the history: the stream has a new
    epoch, and the reconnecting client is told, not handed new offsets as old ones."""
    proc, port = start_redis_server()
    url = f"redis://127.0.0.1:{port}/0"
    user = f"u{uuid.uuid4().hex[:6]}"
    got = Received()
    connected = asyncio.Event()
    try:
        with uvicorn(FASTAPI, {**env(5000, url), "CLUSTER_NAME": "fa"}) as fa:
            async with proxy_to(fa.port) as proxy:
                follower = asyncio.create_task(
                    follow(proxy.url(f"/ws/{user}"), got, 10**9, connected)
                )
                await asyncio.wait_for(connected.wait(), timeout(10))
                status, _ = await asyncio.to_thread(
                    fa.ctl, "send", user=user, msg={"seq": 0, "to": "user", "from": "test"}
                )
                assert status == 200
                await wait_until(lambda: got.seqs["user"] == [0])
                proc.terminate()
                proc.wait(timeout(10))
                proc, _ = start_redis_server(port)
                proxy.cut(refuse_for=0.5)
                await wait_until(lambda: got.connections >= 2, limit=20)
                follower.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await follower
    finally:
        proc.terminate()
        proc.wait(timeout(10))
    assert got.recovered[0] is None
    assert got.recovered[1] is False
    assert f"user:{user}" in got.unrecovered[1]
