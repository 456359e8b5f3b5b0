"""The spec's FastAPI examples run as written (in-process, Starlette's TestClient)."""

from __future__ import annotations

import contextlib
import importlib
import json
import signal
import time
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import pytest
from fastapi.testclient import TestClient
from websockets.asyncio.client import connect

from tests.servers import uvicorn
from tests.support import timeout


def fresh(name: str) -> ModuleType:
    """Import an example anew, so each test gets its own app and manager.

    In this (Django-configured) process an example's manager uses Django's default
    layer, a process-wide InMemoryChannelLayer; each TestClient runs its own event
    loop, and asyncio queues must not outlive theirs: start from a new layer.
    """
    from channels.layers import channel_layers

    channel_layers.backends.clear()
    module = importlib.import_module(f"project.fastapi_examples.{name}")
    return importlib.reload(module)


def test_quick_start_server() -> None:
    """Quick Start: what one client sends is broadcast to all."""
    example = fresh("quick_start")
    with TestClient(example.app) as client:
        with (
            client.websocket_connect("/ws/alice") as alice,
            client.websocket_connect("/ws/bob") as bob,
        ):
            alice.send_json({"type": "hello"})
            assert alice.receive_json() == {"type": "hello"}
            assert bob.receive_json() == {"type": "hello"}
            assert sorted(example.manager.active_users) == ["alice", "bob"]


def test_basic_usage_and_rooms() -> None:
    """Basic Usage echoes to the user and broadcasts; Room/Group Support runs."""
    example = fresh("basic_usage")
    with TestClient(example.app) as client:
        with client.websocket_connect("/ws/alice") as alice:
            alice.send_json({"n": 1})
            assert alice.receive_json() == {"echo": {"n": 1}}
            assert alice.receive_json() == {"from": "alice", "message": {"n": 1}}
        with client.websocket_connect("/rooms/carol") as carol:
            assert carol.receive_json() == {"msg": "Hello room!"}
            # The route leaves "general" after sending: the message can arrive first.
            deadline = time.monotonic() + timeout(5)
            while example.manager.get_room_users("general") and time.monotonic() < deadline:
                time.sleep(0.01)  # the app runs in TestClient's thread: no event to await
            assert example.manager.get_room_users("general") == []
            assert example.manager.get_room_users("vip") == ["carol"]


def test_lifecycle_hooks(capsys: pytest.CaptureFixture[str]) -> None:
    """Lifecycle Hooks: joins are printed and broadcast (leaves: under uvicorn, below)."""
    example = fresh("lifecycle_hooks")
    with TestClient(example.app) as client:
        with client.websocket_connect("/ws/alice") as alice:
            assert alice.receive_json() == {"event": "user_joined", "user": "alice"}
            with client.websocket_connect("/ws/bob") as bob:
                assert bob.receive_json() == {"event": "user_joined", "user": "bob"}
                assert alice.receive_json() == {"event": "user_joined", "user": "bob"}
    assert "User alice connected" in capsys.readouterr().out


# Starlette's TestClient cancels a route as soon as its client leaves, so what a
# route does after a disconnect (its `finally`) is tested against uvicorn.


@pytest.mark.e2e
async def test_lifecycle_hooks_under_uvicorn() -> None:
    """Lifecycle Hooks: a leaving user is announced to the others."""
    with uvicorn("project.fastapi_examples.lifecycle_hooks:app") as srv:
        async with connect(srv.ws("/ws/alice"), open_timeout=timeout(10)) as alice:
            assert json.loads(await alice.recv()) == {"event": "user_joined", "user": "alice"}
            async with connect(srv.ws("/ws/bob"), open_timeout=timeout(10)):
                assert json.loads(await alice.recv()) == {"event": "user_joined", "user": "bob"}
            assert json.loads(await alice.recv()) == {"event": "user_left", "user": "bob"}


def test_get_manager_in_routes_and_health_checks() -> None:
    """Get Manager in Routes and Health Checks answer, directly and as a dependency."""
    example = fresh("routes")
    with TestClient(example.app) as client:
        assert client.get("/ws/stats").json() == {"connections": 0, "users": [], "rooms": 0}
        with client.websocket_connect("/ws/alice") as alice:
            alice.send_text("keep me")  # the route reads; the connection is registered
            assert client.get("/ws/stats").json() == {
                "connections": 1,
                "users": ["alice"],
                "rooms": 0,
            }
            assert client.get("/health/websocket").json() == {
                "status": "healthy",
                "connections": 1,
                "users": 1,
            }
            assert client.get("/ws/stats-dep").json() == {"connections": 1}


@pytest.mark.e2e
async def test_graceful_shutdown_under_uvicorn() -> None:
    """Graceful Shutdown: on SIGTERM each client is closed with 1001."""
    with uvicorn("project.fastapi_examples.graceful_shutdown:app") as srv:
        a = await connect(srv.ws("/ws/a"), open_timeout=timeout(10))
        b = await connect(srv.ws("/ws/b"), open_timeout=timeout(10))
        await a.send('{"hi": 1}')
        assert await a.recv() == '{"hi":1}'
        assert await b.recv() == '{"hi":1}'
        srv.proc.send_signal(signal.SIGTERM)
        for ws in (a, b):
            await ws.wait_closed()
            assert ws.close_code == 1001
        assert srv.stop() in (0, -signal.SIGTERM)


# --- the authenticated examples ----------------------------------------------------------


@pytest.fixture
def jwt_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.tokens import SECRET

    monkeypatch.setenv("AUTH_JWT__SECRET", SECRET)
    monkeypatch.delenv("WS_ALLOWED_ORIGINS", raising=False)


@contextlib.contextmanager
def spec_loop_disconnect() -> Iterator[None]:
    """Tolerate the WebSocketDisconnect that the spec's endless receive loops let out."""
    from starlette.websockets import WebSocketDisconnect

    try:
        yield
    except WebSocketDisconnect as exc:
        if exc.code != 1000:
            raise


def auth(user: str, **claims: object) -> dict[str, str]:
    from tests.tokens import token

    return {"Authorization": f"Bearer {token(user, **claims)}"}


@pytest.mark.usefixtures("jwt_secret")
def test_protected_websocket_routes() -> None:
    """Protected WebSocket Routes: the JWT's principal reaches the route; none is refused."""
    from starlette.websockets import WebSocketDisconnect

    example = fresh("protected_routes")
    with TestClient(example.app) as client:
        with client.websocket_connect("/api/ws", headers=auth("alice", scope="read")) as ws:
            assert ws.receive_json() == {"id": "alice", "scopes": ["read"]}
        with pytest.raises(WebSocketDisconnect) as info:
            with client.websocket_connect("/api/ws"):
                pass
        assert info.value.code == 1008


@pytest.mark.usefixtures("jwt_secret")
def test_real_time_notifications() -> None:
    """Real-Time Notifications: notify_user reaches every connection of that user only."""
    example = fresh("notifications")
    # The spec's `while True: receive_text()` lets WebSocketDisconnect escape when the
    # client leaves; TestClient re-raises it (uvicorn would log it).
    with TestClient(example.app) as client, spec_loop_disconnect():
        with (
            client.websocket_connect("/notifications", headers=auth("u1")) as u1,
            client.websocket_connect("/notifications", headers=auth("u2")) as u2,
        ):
            u1.send_text("heartbeat")
            u2.send_text("heartbeat")
            assert client.post("/notify/u1", json={"title": "Hi"}).json() == {"sent": True}
            assert u1.receive_json() == {"type": "notification", "data": {"title": "Hi"}}
            client.post("/notify/u2", json={"title": "Yo"})
            assert u2.receive_json() == {"type": "notification", "data": {"title": "Yo"}}


@pytest.mark.usefixtures("jwt_secret")
def test_chat_application() -> None:
    """Chat Application: join/leave notices; messages reach the room, not the sender."""
    example = fresh("chat")
    with TestClient(example.app) as client:
        with client.websocket_connect("/chat/general", headers=auth("alice")) as alice:
            assert alice.receive_json() == {"type": "system", "message": "alice joined the room"}
            with client.websocket_connect("/chat/general", headers=auth("bob")) as bob:
                assert bob.receive_json() == {"type": "system", "message": "bob joined the room"}
                assert alice.receive_json() == {"type": "system", "message": "bob joined the room"}
                bob.send_json({"message": "hello"})
                assert alice.receive_json() == {
                    "type": "message",
                    "from": "bob",
                    "message": "hello",
                }
                assert example.manager.get_room_users("general") == ["alice", "bob"]
                alice.send_json({"message": "hi bob"})
                assert bob.receive_json() == {
                    "type": "message",
                    "from": "alice",
                    "message": "hi bob",
                }


@pytest.mark.e2e
async def test_chat_application_under_uvicorn() -> None:
    """Chat Application: the leave notice and the room's membership after a user leaves."""
    from tests.tokens import SECRET, token

    env = {"AUTH_JWT__SECRET": SECRET}
    with uvicorn("project.fastapi_examples.chat:app", env=env) as srv:

        def chat(user: str) -> Any:
            return connect(
                srv.ws("/chat/general"),
                open_timeout=timeout(10),
                additional_headers={"Authorization": f"Bearer {token(user)}"},
            )

        async with chat("alice") as alice:
            assert json.loads(await alice.recv())["message"] == "alice joined the room"
            async with chat("bob") as bob:
                assert json.loads(await bob.recv())["message"] == "bob joined the room"
                assert json.loads(await alice.recv())["message"] == "bob joined the room"
                await bob.send('{"message": "hello"}')
                assert json.loads(await alice.recv()) == {
                    "type": "message",
                    "from": "bob",
                    "message": "hello",
                }
            assert json.loads(await alice.recv()) == {
                "type": "system",
                "message": "bob left the room",
            }


@pytest.mark.usefixtures("jwt_secret")
def test_live_dashboard(monkeypatch: pytest.MonkeyPatch) -> None:
    """Live Dashboard: connected users receive the periodic broadcast."""
    monkeypatch.setenv("DASHBOARD_INTERVAL", "0.05")
    example = fresh("dashboard")
    with TestClient(example.app) as client, spec_loop_disconnect():
        with client.websocket_connect("/dashboard/live", headers=auth("ops")) as ws:
            for _ in range(5):
                update = ws.receive_json()
                assert update["type"] == "dashboard_update"
                if update["data"] == {"connections": 1, "users": 1}:
                    break
            else:
                pytest.fail("no update counted the connection")


@pytest.mark.usefixtures("jwt_secret")
def test_connection_limits() -> None:
    """Connection Limits: the sixth connection of a user is closed with 4008."""
    from starlette.websockets import WebSocketDisconnect

    example = fresh("connection_limits")
    with TestClient(example.app) as client, contextlib.ExitStack() as stack:
        sessions = [
            stack.enter_context(client.websocket_connect("/ws", headers=auth("greedy")))
            for _ in range(5)
        ]
        for session in sessions:
            session.send_text("registered?")
        assert len(example.manager.get_user_connections("greedy")) == 5
        with pytest.raises(WebSocketDisconnect) as info:
            with client.websocket_connect("/ws", headers=auth("greedy")) as sixth:
                sixth.receive_text()
        assert (info.value.code, info.value.reason) == (4008, "Too many connections")


@pytest.mark.usefixtures("jwt_secret")
def test_the_readmes_first_example_runs_as_written() -> None:
    """The README leads with an authenticated route: the user comes from the JWT, a
    socket without one is refused before accept, and a message reaches the others."""
    import re
    from pathlib import Path

    from channels.layers import channel_layers
    from starlette.websockets import WebSocketDisconnect

    from tests.support import ROOT

    readme = (ROOT / "README.md").read_text()
    source = re.findall(r"```python\n(.*?)```", readme, re.S)[0]
    assert "WSIdentity" in source and "/ws/{user_id}" not in source
    channel_layers.backends.clear()  # a layer of this test's own (see fresh())
    namespace: dict[str, Any] = {"__name__": "readme_example"}
    exec(compile(source, str(Path("README.md")), "exec"), namespace)
    with TestClient(namespace["app"]) as client:
        with pytest.raises(WebSocketDisconnect) as refused:
            with client.websocket_connect("/ws"):
                pass
        assert refused.value.code == 1008
        with (
            client.websocket_connect("/ws", headers=auth("alice")) as alice,
            client.websocket_connect("/ws", headers=auth("bob")) as bob,
        ):
            alice.send_json({"text": "hi"})
            assert bob.receive_json() == {"text": "hi"}
            assert sorted(namespace["manager"].active_users) == ["alice", "bob"]
