"""Tests of the command-line client, run as a real subprocess."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator

import pytest
from websockets.asyncio.server import ServerConnection
from websockets.datastructures import Headers
from websockets.http11 import Request, Response

from svc_infra.websocket.client.cli import (
    EXIT_AUTH,
    EXIT_CLOSED,
    EXIT_CONNECT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
)
from tests.support import ROOT, echo, free_port, python_cmd, timeout, ws_server

pytestmark = pytest.mark.e2e


class Cli:
    """A running ``python -m svc_infra.websocket`` with bounded line I/O."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc

    async def send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line.encode() + b"\n")
        await self.proc.stdin.drain()

    async def line(self) -> str:
        assert self.proc.stdout is not None
        async with asyncio.timeout(timeout(10)):
            return (await self.proc.stdout.readline()).decode().rstrip("\n")

    async def end_input(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()

    async def finish(self) -> tuple[int, str]:
        """Wait for exit; return the status and everything written to stderr."""
        assert self.proc.stderr is not None
        async with asyncio.timeout(timeout(15)):
            err = await self.proc.stderr.read()
            code = await self.proc.wait()
        return code, err.decode()


@contextlib.asynccontextmanager
async def cli(*args: str, env: dict[str, str] | None = None) -> AsyncIterator[Cli]:
    proc = await asyncio.create_subprocess_exec(
        *python_cmd("-m", "svc_infra.websocket", *args),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
    )
    try:
        yield Cli(proc)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_echo_session() -> None:
    """Each stdin line is sent; each message received is printed; EOF exits 0."""
    async with ws_server(echo) as (_, url), cli(url) as c:
        await c.send("hello")
        assert await c.line() == "hello"
        await c.send('{"type": "json"}')
        assert await c.line() == '{"type": "json"}'
        await c.end_input()
        code, err = await c.finish()
    assert code == EXIT_OK
    assert f"Connected to {url}" in err


async def test_headers_subprotocol_and_binary() -> None:
    """-H and --subprotocol reach the server; binary messages print as hex."""
    seen: list[Headers] = []

    async def handler(ws: ServerConnection) -> None:
        assert ws.request is not None
        seen.append(ws.request.headers)
        await ws.send(b"\x00\xff")
        await ws.close(1000)

    async with ws_server(handler, subprotocols=["chat"]) as (_, url):
        async with cli(url, "-H", "X-Token: abc", "--subprotocol", "chat") as c:
            assert await c.line() == "(binary) 00ff"
            code, err = await c.finish()
    assert code == EXIT_OK
    assert "subprotocol chat" in err
    assert seen[0]["X-Token"] == "abc"


async def test_abnormal_close_exits_4_with_the_code() -> None:
    """A close with 4000 is reported with its code and reason, exit status 4."""

    async def handler(ws: ServerConnection) -> None:
        await ws.close(4000, "kicked")

    async with ws_server(handler) as (_, url), cli(url) as c:
        code, err = await c.finish()
    assert code == EXIT_CLOSED
    assert "4000" in err and "kicked" in err


async def test_refused_exits_1() -> None:
    """Nothing listening: exit status 1 and a message naming the URL."""
    url = f"ws://127.0.0.1:{free_port()}/"
    async with cli(url) as c:
        code, err = await c.finish()
    assert code == EXIT_CONNECT_FAILED
    assert f"could not connect to {url}" in err


async def test_auth_refused_exits_3() -> None:
    """A 401 handshake answer: exit status 3."""

    def refuse(connection: ServerConnection, request: Request) -> Response:
        return connection.respond(401, "no\n")

    async with ws_server(echo, process_request=refuse) as (_, url), cli(url) as c:
        code, err = await c.finish()
    assert code == EXIT_AUTH
    assert "401" in err


@pytest.mark.parametrize(
    ("args", "env", "needle"),
    [
        (["ws://127.0.0.1:1/", "-H", "no-colon"], {}, "Name: value"),
        ([], {}, "URL"),
        (["ws://127.0.0.1:1/"], {"WS_OPEN_TIMEOUT": "soon"}, "WS_OPEN_TIMEOUT"),
    ],
)
async def test_usage_errors_exit_2(args: list[str], env: dict[str, str], needle: str) -> None:
    """Bad arguments or a bad WS_* variable: exit status 2 and a message saying what."""
    async with cli(*args, env=env) as c:
        code, err = await c.finish()
    assert code == EXIT_USAGE
    assert needle in err


async def test_reconnect_flag_reconnects() -> None:
    """With --reconnect the client comes back after the server closes the connection."""
    connections = 0

    async def handler(ws: ServerConnection) -> None:
        nonlocal connections
        connections += 1
        await ws.send(f"welcome {connections}")
        if connections == 1:
            await ws.close(1012, "restart")
        else:
            await echo(ws)

    env = {"WS_RECONNECT_BACKOFF_BASE": "0.01", "WS_RECONNECT_BACKOFF_MAX": "0.05"}
    async with ws_server(handler) as (_, url), cli(url, "--reconnect", env=env) as c:
        assert await c.line() == "welcome 1"
        assert await c.line() == "welcome 2"
        await c.send("still here")
        assert await c.line() == "still here"
        await c.end_input()
        code, err = await c.finish()
    assert code == EXIT_OK
    assert "1012" in err
