"""The index presence mode across three real uvicorn processes.

On one Redis (a private ``redis-server``, so that it can be restarted) and on a
real Redis Cluster (layer and presence both on it). The processes are asked what
``manager.cluster`` answers (``POST /ctl/cluster``), through connects, room
changes, disconnects, a kill -9 of one process and, on one Redis, a restart.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from websockets.asyncio.client import connect

from tests.servers import Server, uvicorn
from tests.support import start_redis_server, timeout, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.redis]

FASTAPI = "tests.apps.cluster_fastapi:app"
TTL = 4.0


@pytest.fixture(params=["redis", "redis-cluster"])
def backend(request: pytest.FixtureRequest) -> Iterator[dict[str, Any]]:
    """The environment of the processes, and a restart function (one Redis only)."""
    env = {
        "WS_PRESENCE_MODE": "index",
        "WS_PRESENCE_TTL": str(TTL),
        "WS_CHANNEL_PREFIX": f"x{uuid.uuid4().hex[:8]}.",
    }
    if request.param == "redis-cluster":
        request.applymarker(pytest.mark.cluster)
        seed = request.getfixturevalue("redis_cluster").seed_url
        yield {"env": {**env, "WS_REDIS_URL": seed}, "restart": None}
        return
    box = [start_redis_server()]
    port = box[0][1]

    def restart() -> None:
        proc = box[0][0]
        proc.kill()
        proc.wait(timeout(10))
        box[0] = start_redis_server(port)  # empty: no persistence

    try:
        yield {"env": {**env, "WS_REDIS_URL": f"redis://127.0.0.1:{port}/0"}, "restart": restart}
    finally:
        box[0][0].kill()
        box[0][0].wait(timeout(10))


def view(server: Server, **query: str) -> dict[str, Any]:
    status, answer = server.ctl("cluster", **query)
    assert status == 200, answer
    return dict(answer)


async def agreed(servers: list[Server], check: Any, limit: float = 10, **query: str) -> None:
    """Wait until ``check(view)`` holds on every server; on timeout, say what each saw."""
    views: list[Any] = []

    def holds() -> bool:
        try:
            views[:] = [view(s, **query) for s in servers]
        except (OSError, AssertionError):
            return False  # a process still resyncing with a Redis that just came back
        return all(check(v) for v in views)

    try:
        await wait_until(holds, limit, 0.05)
    except TimeoutError:
        raise AssertionError(f"not agreed within {limit} s: {views}") from None


async def test_three_processes_agree_through_connects_kills_and_restarts(
    backend: dict[str, Any],
) -> None:
    env = backend["env"]
    room = f"room-{uuid.uuid4().hex[:6]}"
    async with contextlib.AsyncExitStack() as stack:
        servers = [
            stack.enter_context(uvicorn(FASTAPI, {**env, "CLUSTER_NAME": name}))
            for name in ("fa", "fb", "fc")
        ]
        fa, fb, fc = servers
        sockets = {}
        for server, user in ((fa, "ann"), (fb, "bob"), (fc, "cy"), (fc, "ann")):
            sockets[(server.port, user)] = await stack.enter_async_context(
                connect(server.ws(f"/ws/{user}?room={room}"), open_timeout=timeout(10))
            )
        everyone = ["ann", "bob", "cy"]
        await agreed(
            servers,
            lambda v: (
                v["counts"] == [4, 3, 1]
                and v["users"] == everyone
                and v["room_users"] == everyone
                and v["user_servers"] == ["fa", "fc"]
            ),
            room=room,
            user="ann",
        )
        await sockets[(fb.port, "bob")].close()
        await agreed(
            servers,
            lambda v: v["counts"] == [3, 2, 1] and v["room_users"] == ["ann", "cy"],
            room=room,
        )

        fc.proc.kill()  # SIGKILL: cy (only there) and one of ann's two go with it
        killed = time.monotonic()
        await agreed(
            [fa, fb],
            lambda v: (
                v["counts"] == [1, 1, 1]
                and v["users"] == ["ann"]
                and v["room_users"] == ["ann"]
                and v["user_servers"] == ["fa"]
            ),
            limit=TTL + 5,
            room=room,
            user="ann",
        )
        gone = time.monotonic() - killed
        print(f"[{env['WS_REDIS_URL'].split(':')[0]}] killed process gone after {gone:.2f}s")
        assert gone <= TTL + timeout(1)

        if backend["restart"] is not None:
            await sockets[(fa.port, "ann")].send("ping")  # still open
            backend["restart"]()  # every key lost
            restarted = time.monotonic()
            await agreed(
                [fa, fb],
                lambda v: v["counts"] == [1, 1, 1] and v["room_users"] == ["ann"],
                limit=TTL + 10,
                room=room,
            )
            print(f"presence back {time.monotonic() - restarted:.2f}s after the restart")
