"""WebSocket auth against a real uvicorn process: refusals are HTTP 403 before accept."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from svc_infra.websocket import AuthenticationError, WebSocketClient, WebSocketConfig
from tests.servers import Server, uvicorn
from tests.support import timeout
from tests.tokens import SECRET, token, unsigned_token

pytestmark = pytest.mark.e2e

CONFIG = WebSocketConfig(open_timeout=timeout(10), close_timeout=timeout(2))


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    env = {"AUTH_JWT__SECRET": SECRET, "WS_ALLOWED_ORIGINS": "https://app.example"}
    with uvicorn("tests.apps.auth_app:app", env=env) as srv:
        yield srv


@pytest.mark.parametrize(
    ("headers", "subprotocols", "query"),
    [
        ({}, None, ""),
        ({"Authorization": f"Bearer {token(exp=-60)}"}, None, ""),
        ({"Authorization": f"Bearer {unsigned_token()}"}, None, ""),
        ({}, ["bearer", "garbage"], ""),
        ({}, None, f"?token={token(key='x' * 40)}"),
        ({"Authorization": f"Bearer {token()}", "Origin": "https://evil.example"}, None, ""),
        ({"Authorization": f"Bearer {token(scope='ab')}"}, None, "scoped"),
    ],
    ids=["missing", "expired", "alg-none", "bad-subprotocol", "wrong-key", "origin", "scope"],
)
async def test_refusals_are_403_and_leave_no_trace(
    server: Server, headers: dict[str, str], subprotocols: list[str] | None, query: str
) -> None:
    """Each refusal is an HTTP 403 handshake; the manager never sees the socket."""
    path = "/scoped/ws" if query == "scoped" else f"/user/ws{query}"
    client = WebSocketClient(
        server.ws(path), config=CONFIG, headers=headers, subprotocols=subprotocols
    )
    with pytest.raises(AuthenticationError) as info:
        await client.connect()
    assert info.value.status == 403
    stats = server.get("/stats")
    assert stats["connections"] == 0
    assert stats["counters"]["frames_queued"] == 0


@pytest.mark.parametrize("place", ["header", "subprotocol", "query"])
async def test_token_in_each_place(server: Server, place: str) -> None:
    """A valid token works from each place; by subprotocol, 'bearer' is echoed."""
    tok = token("bob", scope="a")
    headers = {"Authorization": f"Bearer {tok}"} if place == "header" else {}
    subprotocols = ["bearer", tok] if place == "subprotocol" else None
    path = f"/user/ws?token={tok}" if place == "query" else "/user/ws"
    async with WebSocketClient(
        server.ws(path), config=CONFIG, headers=headers, subprotocols=subprotocols
    ) as ws:
        assert await ws.recv_json() == {"id": "bob", "email": None, "scopes": ["a"], "via": place}
        assert ws.subprotocol == ("bearer" if place == "subprotocol" else None)
        await ws.send("still served")
        assert await ws.recv() == "still served"
        assert server.get("/stats")["connections"] == 1


async def test_api_key_only_on_protected_routes(server: Server) -> None:
    """X-API-Key opens /protected but not /user."""
    async with WebSocketClient(
        server.ws("/protected/ws"), config=CONFIG, headers={"X-API-Key": "good-key"}
    ) as ws:
        assert (await ws.recv_json())["via"] == "api_key"
    with pytest.raises(AuthenticationError):
        await WebSocketClient(
            server.ws("/user/ws"), config=CONFIG, headers={"X-API-Key": "good-key"}
        ).connect()
