"""The manager through Channels consumers (WebsocketCommunicator, in-process)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest
from channels.layers import InMemoryChannelLayer
from channels.testing import WebsocketCommunicator

from svc_infra.websocket import ConnectionManager, WebSocketConfig
from tests.apps.channels_manager import (
    Authenticated,
    Commands,
    Plain,
    application,
    authenticated,
)
from tests.support import timeout, wait_until
from tests.tokens import SECRET, token


@pytest.fixture
async def manager() -> AsyncIterator[ConnectionManager]:
    mgr = ConnectionManager(InMemoryChannelLayer(), config=WebSocketConfig(close_timeout=2.0))
    Commands.ws_manager = Authenticated.ws_manager = Plain.manager = mgr
    yield mgr
    await mgr.shutdown()
    Commands.ws_manager = Authenticated.ws_manager = Plain.manager = None


@contextlib.asynccontextmanager
async def user(
    name: str, app: Any = application, **kwargs: Any
) -> AsyncIterator[WebsocketCommunicator]:
    communicator = WebsocketCommunicator(app, f"/ws/{name}/", **kwargs)
    connected, _ = await communicator.connect(timeout=timeout(5))
    assert connected
    try:
        yield communicator
    finally:
        await communicator.disconnect(timeout=timeout(5))


async def recv(c: WebsocketCommunicator) -> Any:
    return await c.receive_json_from(timeout=timeout(5))


async def test_many_connections_rooms_exclude_and_stats(manager: ConnectionManager) -> None:
    """Several connections per user; rooms joined before and after; exclude_user."""
    await manager.join_room("early", "lobby")  # before connecting
    async with user("early") as e1, user("early") as e2, user("late") as late, user("x") as x:
        assert manager.connection_count == 4
        assert sorted(manager.active_users) == ["early", "late", "x"]
        infos = manager.get_user_connections("early")
        assert [i.metadata for i in infos] == [{"path": "/ws/early/"}] * 2
        await late.send_json_to({"op": "join", "room": "lobby"})
        # Each consumer runs in its own task: wait for late's join before x sends.
        await wait_until(lambda: "late" in manager.get_room_users("lobby"))
        await x.send_json_to({"op": "room", "room": "lobby", "msg": {"hi": "lobby"}})
        for c in (e1, e2, late):
            assert await recv(c) == {"hi": "lobby"}
        await late.send_json_to({"op": "broadcast", "msg": "not late", "exclude": "late"})
        for c in (e1, e2, x):
            assert await c.receive_from(timeout=timeout(5)) == "not late"
        assert await late.receive_nothing(timeout=0.05)
    assert manager.connection_count == 0
    assert manager.get_room_users("lobby") == []


async def test_hooks_run_once_per_connection(manager: ConnectionManager) -> None:
    """on_connect and on_disconnect run once for each consumer."""
    events: list[tuple[str, str]] = []
    manager.on_connect(lambda u, ws: events.append(("connect", u)))
    manager.on_disconnect(lambda u, ws: events.append(("disconnect", u)))
    async with user("hooked"):
        pass
    assert events == [("connect", "hooked"), ("disconnect", "hooked")]


async def test_disconnect_user_closes_every_consumer(manager: ConnectionManager) -> None:
    """disconnect(user) closes all the user's consumers with 1000."""
    a = WebsocketCommunicator(application, "/ws/kick/")
    b = WebsocketCommunicator(application, "/ws/kick/")
    assert (await a.connect())[0] and (await b.connect())[0]
    await manager.disconnect("kick")
    for c in (a, b):
        assert await c.receive_output(timeout=timeout(5)) == {
            "type": "websocket.close",
            "code": 1000,
        }
    assert not manager.is_user_connected("kick")
    for c in (a, b):
        await c.disconnect(timeout=timeout(5))


async def test_order_and_bad_payloads(manager: ConnectionManager) -> None:
    """500 messages arrive in order; an unsendable payload is a TypeError at the call."""
    async with user("ordered") as c:
        await c.send_json_to({"op": "burst", "n": 500})
        assert [(await recv(c))["seq"] for _ in range(500)] == list(range(500))
        await c.send_json_to({"op": "bad"})
        reply = await recv(c)
        assert reply["error"] == "TypeError" and "key of type int" in reply["detail"]


async def test_shutdown_closes_consumers_with_1001(manager: ConnectionManager) -> None:
    """shutdown() closes every consumer with 1001."""
    comms = [WebsocketCommunicator(application, f"/ws/s{i}/") for i in range(3)]
    for c in comms:
        assert (await c.connect())[0]
    await manager.shutdown()
    for c in comms:
        out = await c.receive_output(timeout=timeout(5))
        assert out["type"] == "websocket.close" and out["code"] == 1001
        await c.disconnect(timeout=timeout(5))


async def test_principal_and_bearer_subprotocol(
    manager: ConnectionManager, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A managed consumer uses the JWT's principal and accepts with 'bearer'."""
    monkeypatch.setenv("AUTH_JWT__SECRET", SECRET)
    c = WebsocketCommunicator(authenticated, "/secure/", subprotocols=["bearer", token("zoe")])
    connected, subprotocol = await c.connect(timeout=timeout(5))
    assert (connected, subprotocol) == (True, "bearer")
    hello = await recv(c)
    assert hello["user"] == "zoe"
    assert manager.get_user_connections("zoe")[0].connection_id == hello["connection"]
    await c.disconnect()
    anonymous = WebsocketCommunicator(authenticated, "/secure/")
    assert await anonymous.connect(timeout=timeout(5)) == (False, 1008)
    assert manager.connection_count == 0


async def test_plain_json_consumer_uses_the_manager(manager: ConnectionManager) -> None:
    """A plain AsyncJsonWebsocketConsumer registers with manager.connect(user, self)."""
    a = WebsocketCommunicator(application, "/plain/pa/")
    b = WebsocketCommunicator(application, "/plain/pb/")
    assert (await a.connect(timeout=timeout(5)))[0]
    assert (await b.connect(timeout=timeout(5)))[0]
    assert sorted(manager.active_users) == ["pa", "pb"]
    await a.send_json_to({"from": "pa"})
    assert await recv(b) == {"from": "pa"}
    assert await a.receive_nothing(timeout=0.05)
    await a.disconnect()
    await b.disconnect()
    assert manager.connection_count == 0
