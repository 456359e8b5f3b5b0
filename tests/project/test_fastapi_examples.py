"""The spec's FastAPI examples run as written (in-process, Starlette's TestClient)."""

from __future__ import annotations

import importlib
import signal
from types import ModuleType

import pytest
from fastapi.testclient import TestClient
from websockets.asyncio.client import connect

from tests.servers import uvicorn
from tests.support import timeout


def fresh(name: str) -> ModuleType:
    """Import an example anew, so each test gets its own app and manager."""
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
            assert example.manager.get_room_users("vip") == ["carol"]
            assert example.manager.get_room_users("general") == []


def test_lifecycle_hooks(capsys: pytest.CaptureFixture[str]) -> None:
    """Lifecycle Hooks: joins and leaves are printed and broadcast."""
    example = fresh("lifecycle_hooks")
    with TestClient(example.app) as client:
        with client.websocket_connect("/ws/alice") as alice:
            assert alice.receive_json() == {"event": "user_joined", "user": "alice"}
            with client.websocket_connect("/ws/bob") as bob:
                assert bob.receive_json() == {"event": "user_joined", "user": "bob"}
                assert alice.receive_json() == {"event": "user_joined", "user": "bob"}
            assert alice.receive_json() == {"event": "user_left", "user": "bob"}
    out = capsys.readouterr().out
    assert "User alice connected" in out and "User bob disconnected" in out


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
