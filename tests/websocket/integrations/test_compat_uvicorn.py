"""What _compat_uvicorn relies on, pinned on the installed uvicorn and websockets: a
real uvicorn (websockets-sansio) in this process, the manager broadcasting to real
clients with and without permessage-deflate."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
from collections.abc import AsyncIterator
from typing import Any
from unittest import mock

import pytest
from channels.layers import InMemoryChannelLayer
from fastapi import FastAPI, WebSocket, WebSocketDisconnect
from websockets.asyncio.client import connect

from svc_infra.websocket import ConnectionManager, add_websocket_manager
from svc_infra.websocket.integrations import _compat_uvicorn
from svc_infra.websocket.integrations._compat_uvicorn import direct_writer, encode
from tests.support import timeout, wait_until

SANSIO = "uvicorn.protocols.websockets.websockets_sansio_impl"
needs_sansio = pytest.mark.skipif(
    importlib.util.find_spec(SANSIO) is None,
    reason="this uvicorn has no websockets-sansio implementation (0.35 added it)",
)


def test_frames_encode_as_websockets_serializes_them() -> None:
    assert encode("hi") == b"\x81\x02hi"
    assert encode(b"\x00\x01") == b"\x82\x02\x00\x01"
    long = "é" * 100  # 200 bytes: a 16-bit length
    assert encode(long) == b"\x81\x7e\x00\xc8" + long.encode()
    huge = b"x" * 70_000  # a 64-bit length
    assert encode(huge) == b"\x82\x7f" + (70_000).to_bytes(8, "big") + huge


def test_no_writer_for_anything_but_uvicorns_sansio_send() -> None:
    async def send(message: Any) -> None:
        pass

    class WebSocketsSansIOProtocol:  # the name, elsewhere
        async def send(self, message: Any) -> None:
            pass

    assert direct_writer(send) is None
    assert direct_writer(WebSocketsSansIOProtocol().send) is None
    assert direct_writer(None) is None


@contextlib.asynccontextmanager
async def serve(app: FastAPI) -> AsyncIterator[str]:
    import uvicorn

    config = uvicorn.Config(
        app, host="127.0.0.1", port=0, ws="websockets-sansio", lifespan="off", log_level="warning"
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    try:
        await wait_until(lambda: server.started, timeout(10))
        port = server.servers[0].sockets[0].getsockname()[1]
        yield f"ws://127.0.0.1:{port}/ws"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, timeout(10))


@needs_sansio
async def test_broadcasts_go_out_encoded_once_and_deflate_takes_the_asgi_send() -> None:
    manager = ConnectionManager(InMemoryChannelLayer())
    app = FastAPI()
    add_websocket_manager(app, manager)
    writers: list[Any] = []

    @app.websocket("/ws")
    async def route(websocket: WebSocket) -> None:
        user = websocket.query_params["user"]
        await manager.connect(user, websocket)
        conn = manager._registry.user_connections(user)[0]
        writers.append(conn.transport._direct)
        try:
            async for _ in websocket.iter_text():
                pass
        except WebSocketDisconnect:
            pass
        finally:
            await manager.disconnect(user, websocket)

    frames: list[str | bytes] = ["a", "é" * 100, "x" * 70_000, b"\x00\xff" * 10]
    async with serve(app) as url:
        async with (
            connect(url + "?user=plain", compression=None) as plain,
            connect(url + "?user=deflate") as deflated,  # websockets offers deflate
        ):
            await wait_until(lambda: manager.connection_count == 2, timeout(5))
            # The plain socket gets a writer that writes; the deflate one a writer
            # that declines (an extension), so its frames take uvicorn's send.
            assert all(w is not None for w in writers)
            with mock.patch.object(_compat_uvicorn, "encode", wraps=encode) as spy:
                for frame in frames:
                    await manager.broadcast(frame)
                for ws in (plain, deflated):
                    async with asyncio.timeout(timeout(5)):
                        assert [await ws.recv() for _ in frames] == frames
            assert spy.call_count == len(frames)  # once per frame: the plain socket only
    await manager.shutdown()
