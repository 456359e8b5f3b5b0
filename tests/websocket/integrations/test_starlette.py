"""add_websocket_manager, get_ws_manager and easy_websocket_manager, in-process."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest
from channels.layers import InMemoryChannelLayer
from fastapi import Depends, FastAPI, WebSocket
from fastapi.testclient import TestClient
from starlette.applications import Starlette
from starlette.requests import Request

from svc_infra.websocket import (
    ConnectionManager,
    WebSocketError,
    add_websocket_manager,
    easy_websocket_manager,
    get_ws_manager,
)


def new_manager() -> ConnectionManager:
    return ConnectionManager(InMemoryChannelLayer())


def test_lifespan_without_one_of_its_own() -> None:
    """The manager starts with the app and stops with it."""
    app = FastAPI()
    manager = add_websocket_manager(app, new_manager())
    assert manager.ops.channel_name is None
    with TestClient(app):
        assert manager.ops.channel_name is not None
    assert manager.ops.channel_name is None


def test_lifespan_wraps_the_apps_own() -> None:
    """With lifespan=, the manager starts before the app's startup and stops after its shutdown."""
    seen: list[tuple[str, bool]] = []
    manager = new_manager()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, Any]]:
        seen.append(("startup", manager.ops.channel_name is not None))
        yield {"answer": 42}
        seen.append(("shutdown", manager.ops.channel_name is not None))

    app = FastAPI(lifespan=lifespan)
    add_websocket_manager(app, manager)
    with TestClient(app):
        pass
    assert seen == [("startup", True), ("shutdown", True)]
    assert manager.ops.channel_name is None


def test_lifespan_state_is_kept() -> None:
    """The app's lifespan state still reaches requests."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[dict[str, Any]]:
        yield {"answer": 42}

    app = FastAPI(lifespan=lifespan)
    add_websocket_manager(app, new_manager())

    @app.get("/answer")
    async def answer(request: Request) -> int:
        return int(request.state.answer)

    with TestClient(app) as client:
        assert client.get("/answer").json() == 42


def test_get_ws_manager_forms() -> None:
    """get_ws_manager takes the app, a Request or a WebSocket, and works with Depends."""
    app = FastAPI()
    manager = add_websocket_manager(app, new_manager())
    assert get_ws_manager(app) is manager
    assert app.state.ws_manager is manager

    @app.get("/http")
    async def http(mgr: ConnectionManager = Depends(get_ws_manager)) -> bool:
        return mgr is manager

    @app.websocket("/ws")
    async def ws(websocket: WebSocket, mgr: ConnectionManager = Depends(get_ws_manager)) -> None:
        await websocket.accept()
        await websocket.send_json(mgr is get_ws_manager(websocket))
        await websocket.close()

    with TestClient(app) as client:
        response = client.get("/http")
        assert response.status_code == 200
        assert response.json() is True
        with client.websocket_connect("/ws") as session:
            assert session.receive_json() is True


def test_get_ws_manager_without_one_is_a_clear_error() -> None:
    """An app without a manager raises WebSocketError saying what to do."""
    with pytest.raises(WebSocketError, match="add_websocket_manager"):
        get_ws_manager(FastAPI())


def test_add_websocket_manager_needs_an_app() -> None:
    """Anything but a Starlette/FastAPI app is refused."""

    class NotAnApp:
        class state:  # noqa: N801 - mimics app.state
            pass

    with pytest.raises(TypeError, match="Starlette or FastAPI"):
        add_websocket_manager(NotAnApp(), new_manager())


def test_easy_websocket_manager(monkeypatch: pytest.MonkeyPatch) -> None:
    """One call gives a configured manager, attached to the app when given one."""
    monkeypatch.setenv("WS_OUTBOX_LIMIT", "4096")
    standalone = easy_websocket_manager(layer=InMemoryChannelLayer(), channel_prefix="app:")
    assert standalone.config.outbox_limit == 4096
    assert standalone.prefix == "app."

    app = FastAPI()
    attached = easy_websocket_manager(app, layer=InMemoryChannelLayer(), close_timeout=1.0)
    assert get_ws_manager(app) is attached
    assert attached.config.close_timeout == 1.0
    with TestClient(app):
        assert attached.ops.channel_name is not None


def test_default_layer_in_a_django_process_is_djangos() -> None:
    """Without a layer, a manager in a configured Django process uses CHANNEL_LAYERS."""
    from channels.layers import get_channel_layer

    assert ConnectionManager().ops.layer is get_channel_layer()


def test_redis_url_builds_a_channels_redis_layer() -> None:
    """redis_url (or WS_REDIS_URL) gives a channels_redis layer; a bad URL is refused."""
    from channels_redis.core import RedisChannelLayer

    from svc_infra.websocket import ConfigurationError

    manager = ConnectionManager(redis_url="redis://127.0.0.1:6379/0")
    assert isinstance(manager.ops.layer, RedisChannelLayer)
    with pytest.raises(ConfigurationError, match="redis_url"):
        ConnectionManager(redis_url="http://127.0.0.1:6379")
