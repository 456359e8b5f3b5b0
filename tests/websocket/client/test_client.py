"""Tests of WebSocketClient against real websockets servers on 127.0.0.1."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections.abc import AsyncIterator

import pytest
from websockets.asyncio.server import ServerConnection
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from svc_infra.websocket import (
    AuthenticationError,
    ConnectionClosedError,
    ConnectionFailedError,
    ConnectionState,
    MessageTooLargeError,
    WebSocketClient,
    WebSocketConfig,
    WebSocketError,
    easy_websocket_client,
)
from tests.support import echo, timeout, ws_server

FAST = WebSocketConfig(open_timeout=timeout(5), close_timeout=timeout(2))


@pytest.fixture
async def echo_url() -> AsyncIterator[str]:
    async with ws_server(echo) as (_, url):
        yield url


def refused_url() -> str:
    """A URL on a port where nothing listens."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"ws://127.0.0.1:{port}/"


def status_handler(status: int):  # type: ignore[no-untyped-def]
    """A process_request hook that answers every handshake with ``status``."""

    def process_request(connection: ServerConnection, request: Request) -> Response:
        return connection.respond(status, f"HTTP {status}\n")

    return process_request


async def test_text_binary_and_json_round_trip(echo_url: str) -> None:
    """send/recv keep text as str and binary as bytes; send_json/recv_json round-trip."""
    async with WebSocketClient(echo_url, config=FAST) as ws:
        await ws.send("Hello, world!")
        assert await ws.recv() == "Hello, world!"
        await ws.send(b"binary \x00 data")
        assert await ws.recv() == b"binary \x00 data"
        await ws.send_json({"type": "message", "n": [1, 2], "text": "héllo"})
        assert await ws.recv_json() == {"type": "message", "n": [1, 2], "text": "héllo"}
        await ws.send("")
        assert await ws.recv() == ""


async def test_properties(echo_url: str) -> None:
    """url, config, state and is_connected follow the connection's life."""
    ws = WebSocketClient(echo_url, config=FAST)
    assert ws.url == echo_url
    assert ws.config is FAST
    assert ws.state is ConnectionState.CLOSED
    assert not ws.is_connected
    assert ws.subprotocol is None
    assert ws.latency == 0.0
    assert await ws.connect() is ws
    assert ws.is_connected
    assert ws.state is ConnectionState.CONNECTED
    await ws.connect()  # already open: nothing happens
    assert ws.is_connected
    await ws.close()
    assert not ws.is_connected
    assert ws.state is ConnectionState.CLOSED
    await ws.close()  # closing twice is harmless


async def test_concurrent_connects_open_one_connection() -> None:
    """connect() from several tasks at once opens a single connection."""
    handshakes = 0

    async def handler(ws: ServerConnection) -> None:
        nonlocal handshakes
        handshakes += 1
        await echo(ws)

    async with ws_server(handler) as (_, url):
        ws = WebSocketClient(url, config=FAST)
        await asyncio.gather(*(ws.connect() for _ in range(5)))
        await ws.send("once")
        assert await ws.recv() == "once"
        await ws.close()
    assert handshakes == 1


async def test_reconnect_same_client_after_close(echo_url: str) -> None:
    """A closed client can connect again."""
    ws = WebSocketClient(echo_url, config=FAST)
    await ws.connect()
    await ws.close()
    await ws.connect()
    await ws.send("again")
    assert await ws.recv() == "again"
    await ws.close()


async def test_async_iteration(echo_url: str) -> None:
    """async for yields messages in order."""
    async with WebSocketClient(echo_url, config=FAST) as ws:
        for i in range(3):
            await ws.send(str(i))
        received = []
        async for message in ws:
            received.append(message)
            if len(received) == 3:
                break
        assert received == ["0", "1", "2"]


async def test_headers_and_subprotocol() -> None:
    """Extra headers reach the server; the negotiated subprotocol is exposed."""
    seen: list[Headers] = []

    async def handler(ws: ServerConnection) -> None:
        assert ws.request is not None
        seen.append(ws.request.headers)
        await ws.send(ws.subprotocol or "-")

    async with ws_server(handler, subprotocols=["realtime", "other"]) as (_, url):
        async with WebSocketClient(
            url,
            config=FAST,
            headers={"Authorization": "Bearer abc", "OpenAI-Beta": "realtime=v1"},
            subprotocols=["realtime"],
        ) as ws:
            assert ws.subprotocol == "realtime"
            assert await ws.recv() == "realtime"
    assert seen[0]["Authorization"] == "Bearer abc"
    assert seen[0]["OpenAI-Beta"] == "realtime=v1"
    assert seen[0]["Sec-WebSocket-Protocol"] == "realtime"


async def test_ping_measures_latency(echo_url: str) -> None:
    """ping() returns a fresh round trip, and latency reports it."""
    async with WebSocketClient(echo_url, config=FAST) as ws:
        rtt = await ws.ping()
        assert 0.0 < rtt < timeout(5)
        assert ws.latency == rtt
        second = await ws.ping()
        assert ws.latency == second


async def test_keepalive_pings_update_latency(echo_url: str) -> None:
    """With a short ping_interval, latency is measured without calling ping()."""
    config = FAST.replace(ping_interval=0.05, ping_timeout=timeout(5))
    async with WebSocketClient(echo_url, config=config) as ws:
        async with asyncio.timeout(timeout(5)):
            while ws.latency == 0.0:
                await asyncio.sleep(0.02)
        assert ws.latency > 0.0


@pytest.mark.parametrize(
    ("code", "reason"), [(1000, "bye"), (1001, "going away"), (4000, "custom")]
)
async def test_close_codes_are_reported_exactly(code: int, reason: str) -> None:
    """recv() raises ConnectionClosedError with the server's exact code and reason."""

    async def handler(ws: ServerConnection) -> None:
        await ws.close(code, reason)

    async with ws_server(handler) as (_, url):
        async with WebSocketClient(url, config=FAST) as ws:
            with pytest.raises(ConnectionClosedError) as info:
                await ws.recv()
    assert info.value.code == code
    assert info.value.reason == reason
    assert info.value.ok is (code in (1000, 1001))
    assert str(code) in str(info.value)


@pytest.mark.parametrize("code", [1000, 1001])
async def test_normal_close_ends_iteration_quietly(code: int) -> None:
    """A 1000 or 1001 close ends async for without an exception."""

    async def handler(ws: ServerConnection) -> None:
        await ws.send("last")
        await ws.close(code)

    async with ws_server(handler) as (_, url):
        async with WebSocketClient(url, config=FAST) as ws:
            received = [message async for message in ws]
    assert received == ["last"]


async def test_abnormal_close_raises_from_iteration() -> None:
    """Any other code raises ConnectionClosedError out of async for."""

    async def handler(ws: ServerConnection) -> None:
        await ws.send("first")
        await ws.close(4000, "custom")

    async with ws_server(handler) as (_, url):
        async with WebSocketClient(url, config=FAST) as ws:
            received = []
            with pytest.raises(ConnectionClosedError) as info:
                async for message in ws:
                    received.append(message)
    assert received == ["first"]
    assert (info.value.code, info.value.reason) == (4000, "custom")


async def test_is_connected_turns_false_when_the_peer_closes() -> None:
    """Without reading, is_connected is False once the server's close arrives."""
    closed = asyncio.Event()

    async def handler(ws: ServerConnection) -> None:
        await ws.close(1001, "restart")
        closed.set()

    async with ws_server(handler) as (_, url):
        ws = await WebSocketClient(url, config=FAST).connect()
        async with asyncio.timeout(timeout()):
            await closed.wait()
            await ws.wait_closed()
        assert not ws.is_connected
        assert ws.state is ConnectionState.CLOSED


async def test_dropped_tcp_connection_reports_1006() -> None:
    """A connection cut without a close frame gives is_connected False and code 1006."""

    async def handler(ws: ServerConnection) -> None:
        ws.transport.abort()
        await ws.wait_closed()

    async with ws_server(handler) as (_, url):
        ws = await WebSocketClient(url, config=FAST).connect()
        with pytest.raises(ConnectionClosedError) as info:
            async with asyncio.timeout(timeout()):
                await ws.recv()
        assert info.value.code == 1006
        assert not ws.is_connected


async def test_send_after_close_raises_closed_error() -> None:
    """Sending on a connection the server closed raises ConnectionClosedError."""

    async def handler(ws: ServerConnection) -> None:
        await ws.close(4001, "done")

    async with ws_server(handler) as (_, url):
        ws = await WebSocketClient(url, config=FAST).connect()
        await ws.wait_closed()
        with pytest.raises(ConnectionClosedError) as info:
            await ws.send("late")
        assert info.value.code == 4001


async def test_use_before_connect_is_a_clear_error(echo_url: str) -> None:
    """send/recv on a client never connected raise WebSocketError saying so."""
    ws = WebSocketClient(echo_url, config=FAST)
    with pytest.raises(WebSocketError, match="not connected"):
        await ws.send("x")
    with pytest.raises(WebSocketError, match="not connected"):
        await ws.recv()


async def test_send_rejects_other_types(echo_url: str) -> None:
    """send() takes only str or bytes."""
    async with WebSocketClient(echo_url, config=FAST) as ws:
        with pytest.raises(TypeError, match="dict"):
            await ws.send({"a": 1})  # type: ignore[arg-type]


# --- connection failures --------------------------------------------------------------


async def test_refused_connection() -> None:
    """Nothing listening: ConnectionFailedError with the URL."""
    url = refused_url()
    with pytest.raises(ConnectionFailedError) as info:
        await WebSocketClient(url, config=FAST).connect()
    assert info.value.url == url
    assert isinstance(info.value.__cause__, OSError)


async def test_dns_failure() -> None:
    """An unresolvable host: ConnectionFailedError."""
    config = FAST.replace(open_timeout=timeout(3))
    with pytest.raises(ConnectionFailedError):
        await WebSocketClient("ws://no-such-host.invalid/", config=config).connect()


async def test_open_timeout() -> None:
    """A server that never answers the handshake: ConnectionFailedError after open_timeout."""

    gone = asyncio.Event()

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # never answer; wait for the client to give up
        writer.close()
        await writer.wait_closed()
        gone.set()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        with pytest.raises(ConnectionFailedError, match=r"open_timeout=0\.2s"):
            await WebSocketClient(
                f"ws://127.0.0.1:{port}/", config=FAST.replace(open_timeout=0.2)
            ).connect()
        async with asyncio.timeout(timeout()):
            await gone.wait()


@pytest.mark.parametrize("status", [401, 403])
async def test_auth_statuses_raise_authentication_error(status: int) -> None:
    """A 401 or 403 handshake answer raises AuthenticationError with the status."""
    async with ws_server(echo, process_request=status_handler(status)) as (_, url):
        with pytest.raises(AuthenticationError) as info:
            await WebSocketClient(url, config=FAST).connect()
    assert info.value.status == status
    assert str(status) in str(info.value)


async def test_other_statuses_raise_connection_failed() -> None:
    """A 500 handshake answer is a ConnectionFailedError, not an auth error."""
    async with ws_server(echo, process_request=status_handler(500)) as (_, url):
        with pytest.raises(ConnectionFailedError, match="HTTP 500"):
            await WebSocketClient(url, config=FAST).connect()


async def test_invalid_url() -> None:
    """A URL that is not ws:// or wss:// is a ConnectionFailedError."""
    with pytest.raises(ConnectionFailedError, match="invalid WebSocket URL"):
        await WebSocketClient("http://127.0.0.1/", config=FAST).connect()


# --- message size ---------------------------------------------------------------------


async def test_outgoing_message_too_large_is_not_sent() -> None:
    """An outgoing message over the limit raises before sending; the connection survives."""
    received: list[str | bytes] = []

    async def handler(ws: ServerConnection) -> None:
        async for message in ws:
            received.append(message)
            await ws.send("ack")

    config = FAST.replace(max_message_size=100)
    async with ws_server(handler) as (_, url):
        async with WebSocketClient(url, config=config) as ws:
            for too_big in ("x" * 101, "é" * 51, b"\x00" * 101, {"k": "v" * 100}):
                with pytest.raises(MessageTooLargeError) as info:
                    if isinstance(too_big, dict):
                        await ws.send_json(too_big)
                    else:
                        await ws.send(too_big)
                assert info.value.limit == 100
                assert info.value.size is not None and info.value.size > 100
            await ws.send("é" * 50)  # exactly 100 bytes: allowed
            assert await ws.recv() == "ack"
            assert ws.is_connected
    assert received == ["é" * 50]


async def test_incoming_message_too_large() -> None:
    """An incoming message over the limit raises MessageTooLargeError; the close is 1009."""
    server_saw: list[int | None] = []

    async def handler(ws: ServerConnection) -> None:
        await ws.send("y" * 500)
        await ws.wait_closed()
        server_saw.append(ws.close_code)

    config = FAST.replace(max_message_size=100)
    async with ws_server(handler) as (_, url):
        async with WebSocketClient(url, config=config) as ws:
            with pytest.raises(MessageTooLargeError) as info:
                await ws.recv()
            assert info.value.limit == 100
            # permessage-deflate hides the size: only the inflated limit is known.
            assert info.value.size in (None, 500)
            assert not ws.is_connected
        async with WebSocketClient(url, config=config) as ws:
            with pytest.raises(MessageTooLargeError):
                async for _ in ws:
                    pass
    assert server_saw == [1009, 1009]


async def test_peer_closing_for_size_raises_message_too_large() -> None:
    """When the server closes with 1009, recv raises MessageTooLargeError."""

    async def handler(ws: ServerConnection) -> None:
        with contextlib.suppress(ConnectionClosed):
            await ws.recv()

    async with ws_server(handler, max_size=10) as (_, url):
        async with WebSocketClient(url, config=FAST) as ws:
            await ws.send("z" * 50)
            with pytest.raises(MessageTooLargeError) as info:
                await ws.recv()
    closed = info.value.__cause__
    assert isinstance(closed, ConnectionClosedError)
    assert closed.code == 1009


# --- easy_websocket_client ------------------------------------------------------------


async def test_easy_websocket_client(echo_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """easy_websocket_client reads WS_* variables, applies overrides, works with async with."""
    monkeypatch.setenv("WS_MAX_QUEUE_SIZE", "32")
    client = easy_websocket_client(echo_url, ping_interval=None, open_timeout=timeout(5))
    assert client.config.max_queue_size == 32
    assert client.config.ping_interval is None
    async with client as ws:
        await ws.send_json({"type": "hello"})
        async for message in ws:
            assert json.loads(message) == {"type": "hello"}
            break


def test_easy_websocket_client_rejects_unknown_settings() -> None:
    """A misspelt setting is a TypeError naming it."""
    with pytest.raises(TypeError, match="ping_intervall"):
        easy_websocket_client("ws://127.0.0.1/", ping_intervall=1)


async def test_incoming_size_is_reported_without_compression() -> None:
    """Without compression the size of the refused frame is known (websockets 17.4
    and newer report it; older ones do not, and the size is None)."""
    from websockets.version import version

    reported = tuple(int(part) for part in version.split(".")[:2]) >= (17, 4)

    async def handler(ws: ServerConnection) -> None:
        await ws.send("y" * 500)
        await ws.wait_closed()

    config = FAST.replace(max_message_size=100)
    async with ws_server(handler, compression=None) as (_, url):
        async with WebSocketClient(url, config=config) as ws:
            with pytest.raises(MessageTooLargeError) as info:
                await ws.recv()
    assert (info.value.size, info.value.limit) == (500 if reported else None, 100)


async def test_a_message_before_the_recovery_frame_is_kept_not_dropped() -> None:
    """The protocol puts the control frame first; a server that sends a message
    before it must not make the client drop it (its position was already taken)."""

    async def early(ws: ServerConnection) -> None:
        await ws.send('{"s":"user:a","o":7,"e":"E"}\n{"n": 7}')
        await ws.send('{"t":"recovery","recovered":true,"unrecovered":[],"streams":{}}\n')
        await ws.send('{"s":"user:a","o":8,"e":"E"}\n{"n": 8}')
        await ws.wait_closed()

    async with ws_server(early, subprotocols=["svc-infra.v1"]) as (_, url):  # type: ignore[list-item]
        async with WebSocketClient(url, config=FAST, recover=True) as client:
            assert client.recovered is True
            assert [await client.recv_json(), await client.recv_json()] == [{"n": 7}, {"n": 8}]
        async with WebSocketClient(url, config=FAST, recover=True) as client:
            got = []
            async for raw in client:
                got.append(json.loads(raw))
                if len(got) == 2:
                    break
            assert got == [{"n": 7}, {"n": 8}]
