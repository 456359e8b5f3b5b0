"""Sessions that end when they should, on real servers: expiry, size, rate, the cap."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import Iterator

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from svc_infra.websocket import WebSocketConfig, websocket_connect
from svc_infra.websocket.exceptions import ConnectionClosedError
from tests.servers import Server, daphne, uvicorn
from tests.servers import demo as demo_server
from tests.support import flush_db, timeout
from tests.tokens import SECRET, token

pytestmark = [pytest.mark.e2e]

ENV = {"AUTH_JWT__SECRET": SECRET}
CLUSTER = "tests.apps.cluster_fastapi:app"
CLUSTER_DJANGO = "tests.apps.cluster_django:application"


@pytest.fixture(scope="module", params=["daphne", "uvicorn", "fastapi-twin"])
def demo(request: pytest.FixtureRequest) -> Iterator[Server]:
    """The Django project under Daphne and uvicorn, and its FastAPI twin."""
    with demo_server(request.param, ENV) as srv:
        yield srv


async def test_an_expired_token_closes_the_socket_with_4401(demo: Server) -> None:
    """A JWT that expires 2 s after it is issued: 4401 within exp + 1 s."""
    tok = token("expiring", exp=2)
    exp = int(time.time() + 2)
    async with connect(
        demo.ws("/ws/notifications/"),
        subprotocols=["bearer", tok],  # type: ignore[list-item]
        origin=f"http://{demo.host}",  # type: ignore[arg-type]
        open_timeout=timeout(10),
    ) as ws:
        with pytest.raises(ConnectionClosed):
            async with asyncio.timeout(timeout(6)):
                while True:
                    await ws.recv()
        closed_at = time.time()
    assert ws.close_code == 4401
    assert ws.close_reason in ("token expired", "")  # Daphne sends no reasons
    assert closed_at <= exp + 1 + timeout(0.5)


async def test_a_client_with_a_token_function_lives_through_three_expiries(demo: Server) -> None:
    """Tokens of 2 s: the client reconnects at once after each 4401, with a fresh token
    from its function, and receives a notification on every connection."""
    user = f"t{uuid.uuid4().hex[:6]}"
    issued: list[str] = []

    def fresh() -> str:
        issued.append(token(user, exp=2, jti=uuid.uuid4().hex))
        return issued[-1]

    config = WebSocketConfig(open_timeout=timeout(10), reconnect_max_attempts=0)
    got: list[object] = []
    connections = 0
    async with asyncio.timeout(timeout(30)):
        async for ws in websocket_connect(
            demo.ws("/ws/notifications/"),
            config=config,
            headers={"Origin": f"http://{demo.host}"},
            auto_reconnect=True,
            token=fresh,
        ):
            connections += 1
            await asyncio.to_thread(demo.notify, user, {"n": connections})
            got.append(await ws.recv_json())
            with pytest.raises(ConnectionClosedError) as closed:
                await ws.recv()  # until the expiry closes it
            assert closed.value.code == 4401
            if connections == 4:
                break
    assert got == [{"type": "notification", "data": {"n": n}} for n in range(1, 5)]
    assert len(issued) >= 4 and len(set(issued)) == len(issued)


@contextlib.contextmanager
def limited_server(kind: str) -> Iterator[Server]:
    env = {
        "WS_MAX_MESSAGE_SIZE": "1000",
        "WS_INBOUND_RATE": "20",
        "WS_INBOUND_BURST": "20",
        "WS_CHANNEL_PREFIX": f"l{uuid.uuid4().hex[:8]}.",
        "CLUSTER_NAME": kind,
    }
    if kind == "daphne":
        with daphne(CLUSTER_DJANGO, env) as server:
            yield server
    else:
        with uvicorn(CLUSTER, env) as server:
            yield server


@pytest.mark.parametrize("kind", ["uvicorn", "daphne"])
async def test_oversized_and_flooding_clients_are_closed_others_keep_receiving(kind: str) -> None:
    """1009 for a message over the limit, 4429 for a flood; a third client in the same
    room stays connected and gets every broadcast."""
    room = "limits"
    with limited_server(kind) as server:
        async with (
            connect(server.ws(f"/ws/big?room={room}"), open_timeout=timeout(10)) as big,
            connect(server.ws(f"/ws/flood?room={room}"), open_timeout=timeout(10)) as flood,
            connect(server.ws(f"/ws/calm?room={room}"), open_timeout=timeout(10)) as calm,
        ):
            await asyncio.sleep(0.3)  # the joins after connect
            await big.send("x" * 2000)
            with pytest.raises(ConnectionClosed):
                await asyncio.wait_for(big.recv(), timeout(5))
            assert big.close_code == (4009 if kind == "daphne" else 1009)  # docs/close-codes.md
            with contextlib.suppress(ConnectionClosed):
                for _ in range(200):
                    await flood.send("spam")
            with pytest.raises(ConnectionClosed):
                await asyncio.wait_for(flood.recv(), timeout(5))
            assert flood.close_code == 4429
            assert flood.close_reason in ("rate limit", "")  # Daphne sends no reasons
            for n in range(3):
                await calm.send("ping")  # well within its own budget
                status, _ = await asyncio.to_thread(server.ctl, "room", room=room, msg={"n": n})
                assert status == 200
                assert json.loads(await asyncio.wait_for(calm.recv(), timeout(5))) == {"n": n}


async def test_a_flooding_client_is_closed_at_once_on_uvicorns_legacy_implementation() -> None:
    """uvicorn's ``--ws websockets`` (its default before 0.50) finishes a close only
    once its inbound queue has room for the client's reply: the flood fills it, so
    unless the adapter keeps reading while it closes, the 4429 waits for uvicorn's
    close timeout (10 s) and the client sees nothing meanwhile."""
    env = {
        "WS_INBOUND_RATE": "20",
        "WS_INBOUND_BURST": "20",
        "WS_CHANNEL_PREFIX": f"l{uuid.uuid4().hex[:8]}.",
        "CLUSTER_NAME": "legacy",
    }
    with uvicorn(CLUSTER, env, "--ws", "websockets") as server:
        async with connect(server.ws("/ws/flood?room=r"), open_timeout=timeout(10)) as flood:
            with contextlib.suppress(ConnectionClosed):
                for _ in range(200):
                    await flood.send("spam")
            with pytest.raises(ConnectionClosed):
                await asyncio.wait_for(flood.recv(), 5)  # not scaled: 10 s is the fault
            assert (flood.close_code, flood.close_reason) == (4429, "rate limit")


@pytest.mark.redis
async def test_the_connection_cap_holds_across_processes(redis_server: str) -> None:
    """Cap 3, ten connections of one user at once on two processes: exactly 3 stay,
    the others are closed with 4008, and presence counts 3."""
    url = f"{redis_server}/11"
    env = {
        "WS_REDIS_URL": url,
        "WS_MAX_CONNECTIONS_PER_USER": "3",
        "WS_CHANNEL_PREFIX": f"c{uuid.uuid4().hex[:8]}.",
    }
    user = f"cap{uuid.uuid4().hex[:6]}"
    with contextlib.ExitStack() as stack:
        fa = stack.enter_context(uvicorn(CLUSTER, {**env, "CLUSTER_NAME": "fa"}))
        fb = stack.enter_context(uvicorn(CLUSTER, {**env, "CLUSTER_NAME": "fb"}))
        servers = [fa, fb] * 5

        async def one(server: Server) -> int | None:
            """None while open after a moment, else the close code."""
            ws = await connect(server.ws(f"/ws/{user}"), open_timeout=timeout(10))
            try:
                await asyncio.wait_for(ws.recv(), 1.0)
            except TimeoutError:
                clients.append(ws)
                return None
            except ConnectionClosed:
                return ws.close_code
            return -1

        clients: list[object] = []
        codes = await asyncio.gather(*(one(s) for s in servers))
        assert codes.count(None) == 3, codes
        assert sorted(c for c in codes if c is not None) == [4008] * 7
        stats = fa.stats(user=user)
        assert len(stats["user_servers"]) == 3
        for ws in clients:
            await ws.close()  # type: ignore[attr-defined]
    flush_db(url)


async def _stays_open(server: Server, user: str) -> tuple[object | None, int | None]:
    """Connect as ``user``: (the socket, None) if it is still open after a moment,
    else (None, its close code)."""
    ws = await connect(server.ws(f"/ws/{user}"), open_timeout=timeout(10))
    try:
        await asyncio.wait_for(ws.recv(), 1.0)
    except TimeoutError:
        return ws, None
    except ConnectionClosed:
        return None, ws.close_code
    return None, -1


@pytest.mark.redis
@pytest.mark.parametrize("policy", ["refuse", "newest"])
async def test_the_cap_policies_across_a_kill_9(redis_server: str, policy: str) -> None:
    """Cap 1, presence TTL 6 s, a user on fa, then fa killed with SIGKILL.

    - ``refuse``: the user's reconnects to fb are refused with 4008 until presence
      has reaped fa (within the TTL), then one opens;
    - ``newest``: a second connection on fb first replaces the one on fa (4409,
      across processes); after the kill, the reconnect opens at once.
    """
    url = f"{redis_server}/11"
    ttl = 6.0
    env = {
        "WS_REDIS_URL": url,
        "WS_MAX_CONNECTIONS_PER_USER": "1",
        "WS_CAP_POLICY": policy,
        "WS_PRESENCE_TTL": str(ttl),
        "WS_CHANNEL_PREFIX": f"k{uuid.uuid4().hex[:8]}.",
    }
    user = f"kill{uuid.uuid4().hex[:6]}"
    with contextlib.ExitStack() as stack:
        fa = stack.enter_context(uvicorn(CLUSTER, {**env, "CLUSTER_NAME": "fa"}))
        fb = stack.enter_context(uvicorn(CLUSTER, {**env, "CLUSTER_NAME": "fb"}))
        first, code = await _stays_open(fa, user)
        assert first is not None, code
        if policy == "newest":
            second, code = await _stays_open(fb, user)
            assert second is not None, code
            with pytest.raises(ConnectionClosed):
                await asyncio.wait_for(first.recv(), timeout(5))  # type: ignore[attr-defined]
            assert first.close_code == 4409  # type: ignore[attr-defined]
            assert first.close_reason == "replaced by a newer connection"  # type: ignore[attr-defined]
            first, fa, fb = second, fb, fa  # the user is on fb now: kill that one
        fa.proc.kill()  # SIGKILL: no shutdown, no cleanup
        killed = time.monotonic()
        refused = 0
        while True:
            ws, code = await _stays_open(fb, user)
            if ws is not None:
                break
            assert code == 4008 and policy == "refuse", code
            refused += 1
            await asyncio.sleep(0.05)  # a client's backoff, not a synchronisation
            assert time.monotonic() - killed < ttl + timeout(3), "still locked out"
        waited = time.monotonic() - killed
        print(f"[{policy}] reconnected {waited:.2f}s after the kill, {refused} refused")
        if policy == "refuse":
            assert refused >= 1  # fa's slot held until presence reaped it
        else:
            assert refused == 0
        await ws.close()  # type: ignore[attr-defined]
    flush_db(url)
