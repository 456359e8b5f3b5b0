"""The demo project under real Daphne (manage.py runserver) and real uvicorn."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from svc_infra.websocket import AuthenticationError, WebSocketClient, WebSocketConfig
from tests.servers import Server
from tests.servers import demo as demo_server
from tests.support import timeout, wait_until
from tests.tokens import SECRET, token

pytestmark = pytest.mark.e2e

ENV = {"AUTH_JWT__SECRET": SECRET, "WS_DASHBOARD_INTERVAL": "0.05"}
CONFIG = WebSocketConfig(open_timeout=timeout(10), close_timeout=timeout(2))


@pytest.fixture(scope="module", params=["daphne", "uvicorn", "fastapi-twin"])
def demo(request: pytest.FixtureRequest) -> Iterator[Server]:
    """The Django project under Daphne and uvicorn, and its FastAPI twin under uvicorn."""
    with demo_server(request.param, ENV) as srv:
        yield srv


def ws(demo: Server, path: str, tok: str | None = None, **headers: str) -> WebSocketClient:
    """A client as a page on the demo would open it: same Origin, token as subprotocol."""
    return WebSocketClient(
        demo.ws(path),
        config=CONFIG,
        headers={"Origin": f"http://{demo.host}", **headers},
        subprotocols=["bearer", tok] if tok else None,
    )


def post(demo: Server, path: str, body: Any, tok: str) -> tuple[int, Any]:
    request = urllib.request.Request(
        f"http://{demo.host}{path}",
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Authorization": f"Bearer {tok}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout(10)) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


async def test_echo_text_json_and_binary(demo: Server) -> None:
    """ws/echo/ (public) sends text, JSON and binary back unchanged."""
    async with ws(demo, "/ws/echo/") as client:
        await client.send("hello")
        assert await client.recv() == "hello"
        await client.send_json({"type": "ping", "n": 1})
        assert await client.recv_json() == {"type": "ping", "n": 1}
        await client.send(b"\x01\x02")
        assert await client.recv() == b"\x01\x02"


async def test_foreign_origin_is_refused(demo: Server) -> None:
    """A page from another site is refused with 403 (Django: AllowedHostsOriginValidator)."""
    client = WebSocketClient(
        demo.ws("/ws/echo/"), config=CONFIG, headers={"Origin": "http://evil.example"}
    )
    with pytest.raises(AuthenticationError) as info:
        await client.connect()
    assert info.value.status == 403


async def test_chat_room(demo: Server) -> None:
    """The spec's chat: join notices, messages to the room but not the sender, leave notices."""
    room = f"room-{id(demo)}"
    async with ws(demo, f"/ws/chat/{room}/", token("ann")) as ann:
        assert ann.subprotocol == "bearer"
        assert await ann.recv_json() == {"type": "system", "message": "ann joined the room"}
        async with ws(demo, f"/ws/chat/{room}/", token("ben")) as ben:
            assert await ben.recv_json() == {"type": "system", "message": "ben joined the room"}
            assert await ann.recv_json() == {"type": "system", "message": "ben joined the room"}
            users = demo.get(f"/api/rooms/{room}/users/")["users"]
            assert sorted(users) == ["ann", "ben"]
            await ben.send_json({"message": "hi"})
            assert await ann.recv_json() == {"type": "message", "from": "ben", "message": "hi"}
            await ann.send_json({"message": "hello ben"})
            assert await ben.recv_json() == {
                "type": "message",
                "from": "ann",
                "message": "hello ben",
            }
        assert await ann.recv_json() == {"type": "system", "message": "ben left the room"}


async def test_chat_requires_a_token(demo: Server) -> None:
    """Without a token the chat handshake is refused (403)."""
    with pytest.raises(AuthenticationError):
        await ws(demo, "/ws/chat/general/").connect()


async def test_notifications_from_the_http_api(demo: Server) -> None:
    """POST /api/notify/<user>/ with scope notify:send reaches the user's sockets."""
    async with ws(demo, "/ws/notifications/", token("nina")) as nina:
        # The manager registers the socket just after accepting it.
        await wait_until(lambda: "nina" in demo.get("/ws/stats")["users"])
        sender = token("backend", scope="notify:send")
        assert post(demo, "/api/notify/nina/", {"title": "Hello"}, sender) == (200, {"sent": True})
        assert await nina.recv_json() == {"type": "notification", "data": {"title": "Hello"}}
        assert post(demo, "/api/notify/nina/", {}, token("nobody"))[0] == 403
        assert post(demo, "/api/notify/nina/", {}, "garbage")[0] == 401


async def test_live_dashboard(demo: Server) -> None:
    """ws/dashboard/ wants scope ws:admin, and sends periodic updates that count the viewer."""
    with pytest.raises(AuthenticationError):
        async with ws(demo, "/ws/dashboard/", token("ops")):
            pass
    async with ws(demo, "/ws/dashboard/", token("ops", scope="ws:admin")) as ops:
        for _ in range(20):
            update = await ops.recv_json()
            assert update["type"] == "dashboard_update"
            if update["data"]["users"] >= 1:
                break
        else:
            pytest.fail("no update counted the viewer")


async def test_health_stats_and_page(demo: Server) -> None:
    """GET /health/websocket, /ws/stats and the chat page answer."""
    async with ws(demo, "/ws/notifications/", token("stats-user")):
        await wait_until(lambda: "stats-user" in demo.get("/ws/stats")["users"])
        health = demo.get("/health/websocket")
        stats = demo.get("/ws/stats")
    assert health["status"] == "healthy" and health["connections"] >= 1
    assert "stats-user" in stats["users"]
    with urllib.request.urlopen(f"http://{demo.host}/", timeout=timeout(10)) as response:
        body = response.read().decode()
    assert "SvcInfra.connect(" in body and "/ws/chat/" in body
    # The page's client, served from the package: it sends the token as ["bearer", token].
    script = f"http://{demo.host}/static/svc_infra/websocket.js"
    with urllib.request.urlopen(script, timeout=timeout(10)) as response:
        js = response.read().decode()
    assert 'protocols.push("bearer"' in js and "svc-infra.v1" in js


async def test_empty_text_frame(demo: Server) -> None:
    """uvicorn echoes an empty message; Daphne drops empty text frames (documented)."""
    async with ws(demo, "/ws/echo/") as client:
        await client.send("")
        await client.send("after")
        first = await client.recv()
    daphne = demo.proc.args[1:3] == ["manage.py", "runserver"]  # type: ignore[index]
    assert first == ("after" if daphne else "")
