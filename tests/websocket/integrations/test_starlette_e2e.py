"""End to end: the manager in a real uvicorn + FastAPI process, real websockets clients."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import signal
import socket
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect

from tests.servers import Server, uvicorn
from tests.support import timeout, wait_until

pytestmark = pytest.mark.e2e

APP = "tests.apps.manager_app:app"


#: uvicorn's WebSocket implementations, named (``auto`` picks websockets-sansio on a
#: recent uvicorn, the legacy websockets on an old one); the legacy one as it comes,
#: the others with browsers' permessage-deflate offers declined (docs/deployment.md).
SERVERS = {
    "websockets": ("--ws", "websockets"),
    "websockets-sansio": ("--ws", "websockets-sansio", "--ws-per-message-deflate", "false"),
    "wsproto": ("--ws", "wsproto", "--ws-per-message-deflate", "false"),
}


@pytest.fixture(scope="module", params=list(SERVERS))
def server(request: pytest.FixtureRequest) -> Iterator[Server]:
    impl = request.param
    sansio = "uvicorn.protocols.websockets.websockets_sansio_impl"
    if impl == "websockets-sansio" and importlib.util.find_spec(sansio) is None:
        pytest.skip("this uvicorn has no websockets-sansio implementation (0.35 added it)")
    with uvicorn(APP, None, *SERVERS[impl]) as srv:
        yield srv


@contextlib.asynccontextmanager
async def client(
    server: Server, user: str, query: str = "", **kwargs: Any
) -> AsyncIterator[ClientConnection]:
    async with connect(server.ws(f"/ws/{user}{query}"), open_timeout=timeout(10), **kwargs) as ws:
        yield ws


async def recv_json(ws: ClientConnection) -> Any:
    async with asyncio.timeout(timeout(10)):
        return json.loads(await ws.recv())


async def command(ws: ClientConnection, **cmd: Any) -> None:
    """Send a command and wait for its acknowledgement."""
    await ws.send(json.dumps({**cmd, "ack": cmd["op"]}))
    while True:
        reply = await recv_json(ws)
        if reply.get("ack") == cmd["op"]:
            return
        raise AssertionError(f"unexpected message before ack: {reply}")


async def until_stats(server: Server, predicate: Any) -> dict[str, Any]:
    stats: dict[str, Any] = {}

    def check() -> bool:
        nonlocal stats
        stats = server.get("/stats")
        return bool(predicate(stats))

    await wait_until(check, limit=10)
    return stats


async def test_many_connections_per_user_and_stats(server: Server) -> None:
    """A user with three connections gets each message on all three; stats agree."""
    async with (
        client(server, "multi", "?device=a") as a1,
        client(server, "multi") as a2,
        client(server, "multi") as a3,
        client(server, "other") as b,
    ):
        stats = await until_stats(server, lambda s: {"multi", "other"} <= set(s["users"]))
        assert stats["connections"] >= 4
        infos = server.get("/users/multi")
        assert len(infos) == 3
        assert {"device": "a"} in [i["metadata"] for i in infos]
        await command(b, op="to", user="multi", msg={"hello": "multi"})
        for ws in (a1, a2, a3):
            assert await recv_json(ws) == {"hello": "multi"}
    await until_stats(server, lambda s: "multi" not in s["users"])


async def test_rooms_exclude_and_join_before_connecting(server: Server) -> None:
    """Rooms joined before connecting (over HTTP) and after; exclude_user skips the sender."""
    server.post("/rooms/lobby/early")  # early is not connected yet
    async with (
        client(server, "early") as early,
        client(server, "late") as late,
        client(server, "outsider") as outsider,
    ):
        await command(late, op="join", room="lobby")
        assert sorted(server.get("/rooms/lobby")) == ["early", "late"]
        await command(late, op="room", room="lobby", msg={"from": "late"}, exclude="late")
        assert await recv_json(early) == {"from": "late"}
        await command(outsider, op="room", room="lobby", msg="to all members")
        assert await early.recv() == "to all members"
        assert await late.recv() == "to all members"
        await command(late, op="broadcast", msg="everyone but late", exclude="late")
        assert await early.recv() == "everyone but late"
        assert await outsider.recv() == "everyone but late"
    # Every member's last connection ended: the room is empty.
    await until_stats(server, lambda s: not ({"early", "late"} & set(s["users"])))
    assert server.get("/rooms/lobby") == []


async def test_hooks_and_both_disconnect_forms(server: Server) -> None:
    """on_connect/on_disconnect run once per connection; disconnect(user) closes all."""
    async with client(server, "kicked") as k1, client(server, "kicked") as k2:
        await until_stats(server, lambda s: "kicked" in s["users"])
        # In a thread: the clients must answer the server's close meanwhile (an
        # older uvicorn waits for that answer before the request returns).
        await asyncio.to_thread(server.post, "/disconnect/kicked")
        for ws in (k1, k2):
            async with asyncio.timeout(timeout(10)):
                await ws.wait_closed()
            assert ws.close_code == 1000
    stats = await until_stats(server, lambda s: "kicked" not in s["users"])
    kicked = [e["event"] for e in stats["events"] if e["user"] == "kicked"]
    assert kicked.count("connect") == 2
    assert kicked.count("disconnect") == 2

    async with client(server, "leaves") as ws:
        await until_stats(server, lambda s: "leaves" in s["users"])
    # The client closed; the route's finally ran disconnect(user, websocket).
    stats = await until_stats(server, lambda s: "leaves" not in s["users"])
    leaves = [e["event"] for e in stats["events"] if e["user"] == "leaves"]
    assert leaves == ["connect", "disconnect"]


async def test_cut_tcp_connection_leaves_the_stats(server: Server) -> None:
    """A client whose TCP connection is cut without a close frame disappears."""
    ws = await connect(server.ws("/ws/cut"), open_timeout=timeout(10))
    await until_stats(server, lambda s: "cut" in s["users"])
    sock = ws.transport.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    ws.transport.abort()  # RST, no close frame
    await until_stats(server, lambda s: "cut" not in s["users"])


async def test_bad_payloads_get_a_clear_error_and_the_server_goes_on(server: Server) -> None:
    """Unsendable payloads raise TypeError in the app; nobody receives anything odd."""
    async with client(server, "bad") as ws, client(server, "witness") as witness:
        for kind in ("set", "int_key", "object"):
            await ws.send(json.dumps({"op": "bad", "kind": kind}))
            reply = await recv_json(ws)
            assert reply["error"] == "TypeError", reply
        await ws.send(json.dumps({"op": "broadcast", "msg": "fine"}))
        assert await witness.recv() == "fine"
        assert await ws.recv() == "fine"


async def test_order_per_connection(server: Server) -> None:
    """2,000 messages from one sender arrive in order."""
    async with client(server, "ordered") as ws:
        await ws.send(json.dumps({"op": "burst", "n": 2000}))
        seqs = [(await recv_json(ws))["seq"] for _ in range(2000)]
    assert seqs == list(range(2000))


async def test_manager_dependency_in_websocket_route(server: Server) -> None:
    """Depends(get_ws_manager) works in a WebSocket route (no 422, no 403)."""
    async with connect(server.ws("/manager-from-websocket"), open_timeout=timeout(10)) as ws:
        assert json.loads(await ws.recv()) == {"same": True}


async def test_slow_reader_does_not_hold_up_fifty_others() -> None:
    """One client stops reading; 50 others each get 2,000 messages; the slow one is evicted."""
    env = {"WS_OUTBOX_LIMIT": "65536"}
    with uvicorn(APP, env=env) as srv:
        # A tiny receive buffer, set before connecting, and max_queue=1: once a few
        # frames are in, this client reads nothing more. No compression, or the
        # padding below would shrink to nothing on the wire.
        raw = socket.socket()
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        raw.connect(("127.0.0.1", srv.port))
        raw.setblocking(False)
        slow = await connect(
            srv.ws("/ws/slow"), sock=raw, open_timeout=timeout(10), max_queue=1, compression=None
        )
        readers = [
            await connect(srv.ws(f"/ws/reader{i}"), open_timeout=timeout(10)) for i in range(50)
        ]
        try:
            await until_stats(srv, lambda s: s["connections"] == 51)
            sender = readers[0]
            await sender.send(json.dumps({"op": "burst", "n": 2000, "size": 100}))

            async def read_all(ws: ClientConnection) -> list[int]:
                return [json.loads(await ws.recv())["seq"] for _ in range(2000)]

            async with asyncio.timeout(timeout(60)):
                results = await asyncio.gather(*(read_all(ws) for ws in readers))
            assert all(r == list(range(2000)) for r in results)

            # Keep writing to the slow client alone until the kernel's buffers and
            # its 64 KiB outbox are full: it is then closed as a slow consumer.
            big = "x" * 100_000
            for _ in range(400):  # at most 40 MB
                if "slow" not in srv.get("/stats")["users"]:
                    break
                await command(sender, op="to", user="slow", msg=big)
            stats = await until_stats(srv, lambda s: "slow" not in s["users"])
            assert stats["counters"]["slow_consumers"] == 1
            assert stats["connections"] == 50
        finally:
            for ws in readers:
                await ws.close()
            slow.transport.abort()


async def test_shutdown_sends_1001_to_every_client() -> None:
    """SIGTERM to uvicorn: every client gets close code 1001 (not uvicorn's 1012)."""
    with uvicorn(APP) as srv:
        clients = [await connect(srv.ws(f"/ws/s{i}"), open_timeout=timeout(10)) for i in range(10)]
        await until_stats(srv, lambda s: s["connections"] == 10)
        srv.proc.send_signal(signal.SIGTERM)
        for ws in clients:
            async with asyncio.timeout(timeout(15)):
                await ws.wait_closed()
        assert [ws.close_code for ws in clients] == [1001] * 10
        assert {ws.close_reason for ws in clients} == {"server shutting down"}
        # uvicorn re-raises the signal once its graceful shutdown is done.
        assert srv.stop() in (0, -signal.SIGTERM)
