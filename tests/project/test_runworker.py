"""manage.py runworker ws-notify: background jobs reach users through Redis."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest

from svc_infra.websocket import WebSocketClient, WebSocketConfig
from tests.servers import uvicorn
from tests.support import ROOT, close_layer, flush_db, python_cmd, timeout, wait_until
from tests.tokens import SECRET, token

pytestmark = [pytest.mark.e2e, pytest.mark.redis]

# A database of its own on the shared Redis, flushed afterwards.
DB = 13


@pytest.fixture
def redis_db_url(redis_server: str) -> Iterator[str]:
    url = f"{redis_server}/{DB}"
    yield url
    flush_db(url)


@pytest.fixture(params=["redis", "redis-cluster"])
def scaleout_env(request: pytest.FixtureRequest, redis_db_url: str) -> dict[str, str]:
    """``WS_*`` for one Redis, or for a Redis Cluster (presence on the one Redis)."""
    env = {"WS_REDIS_URL": redis_db_url, "AUTH_JWT__SECRET": SECRET}
    if request.param == "redis-cluster":
        request.applymarker(pytest.mark.cluster)
        env["WS_REDIS_URL"] = request.getfixturevalue("redis_cluster").seed_url
        env["WS_PRESENCE_REDIS_URL"] = redis_db_url
    return env


def sending_layer(env: dict[str, str]) -> Any:
    """A layer of the test's own on the same Redis (or Cluster) as the processes."""
    from svc_infra.websocket.scaleout.layers import build_layer

    return build_layer(redis_url=env["WS_REDIS_URL"])


def test_runworker_refuses_the_in_memory_layer() -> None:
    """Without Redis the worker does not start, and says why."""
    env = {k: v for k, v in os.environ.items() if k != "WS_REDIS_URL"}
    result = subprocess.run(
        python_cmd("manage.py", "runworker", "ws-notify"),
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout(60),
    )
    assert result.returncode != 0
    assert "needs a channel layer shared between processes" in result.stderr
    assert "WS_REDIS_URL" in result.stderr


async def test_worker_delivers_to_a_user_on_another_process(
    scaleout_env: dict[str, str],
) -> None:
    """A ws.notify sent to the ws-notify channel reaches the user's socket on the server."""
    env = scaleout_env
    worker = subprocess.Popen(
        python_cmd("manage.py", "runworker", "ws-notify"),
        cwd=ROOT,
        env={**os.environ, **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    layer = sending_layer(env)
    try:
        with uvicorn("project.asgi:application", env=env) as server:
            client = WebSocketClient(
                server.ws("/ws/notifications/"),
                config=WebSocketConfig(open_timeout=timeout(10)),
                headers={"Origin": f"http://{server.host}"},
                subprotocols=["bearer", token("worker-user")],
            )
            async with client as ws:
                await wait_until(lambda: "worker-user" in server.get("/ws/stats")["users"])
                payload = {"job": "done"}
                await layer.send(
                    "ws-notify", {"type": "ws.notify", "user_id": "worker-user", "payload": payload}
                )
                # The same envelope as POST /api/notify/<user>/.
                assert await ws.recv_json() == {"type": "notification", "data": payload}
                raw = {"type": "ws.notify", "payload": "to everyone", "raw": True}
                await layer.send("ws-notify", raw)
                assert await ws.recv() == "to everyone"
    finally:
        worker.terminate()
        worker.wait(timeout=timeout(10))
        await close_layer(layer)


async def test_django_and_fastapi_processes_share_rooms(scaleout_env: dict[str, str]) -> None:
    """With WS_REDIS_URL, a chat room spans the Django project and the FastAPI twin."""
    env = scaleout_env
    config = WebSocketConfig(open_timeout=timeout(10))

    def chat(server: Any, user: str) -> WebSocketClient:
        return WebSocketClient(
            server.ws("/ws/chat/shared/"),
            config=config,
            headers={"Origin": f"http://{server.host}"},
            subprotocols=["bearer", token(user)],
        )

    with (
        uvicorn("project.asgi:application", env=env) as django_srv,
        uvicorn("project.fastapi_app:app", env=env) as fastapi_srv,
    ):
        async with chat(django_srv, "dj") as dj:
            assert await dj.recv_json() == {"type": "system", "message": "dj joined the room"}
            async with chat(fastapi_srv, "fa") as fa:
                assert await fa.recv_json() == {"type": "system", "message": "fa joined the room"}
                # fa's join notice crossed from the FastAPI process to the Django one.
                assert await dj.recv_json() == {"type": "system", "message": "fa joined the room"}
                await fa.send_json({"message": "from FastAPI"})
                assert await dj.recv_json() == {
                    "type": "message",
                    "from": "fa",
                    "message": "from FastAPI",
                }
                await dj.send_json({"message": "from Django"})
                assert await fa.recv_json() == {
                    "type": "message",
                    "from": "dj",
                    "message": "from Django",
                }
