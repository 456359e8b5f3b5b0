"""Helpers shared by the tests: bounded waits, free ports, servers, Redis."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

from websockets.asyncio.server import Server, ServerConnection, serve

ROOT = Path(__file__).resolve().parent.parent

# Every wait in the suite is a multiple of this unit; raise it on a slow machine
# (WS_TEST_TIMEOUT_FACTOR=3) instead of editing tests.
TIMEOUT_FACTOR = float(os.environ.get("WS_TEST_TIMEOUT_FACTOR", "1"))


def timeout(seconds: float = 5.0) -> float:
    """A bound for one wait, scaled by ``WS_TEST_TIMEOUT_FACTOR``."""
    return seconds * TIMEOUT_FACTOR


def free_port() -> int:
    """A TCP port that was free a moment ago, for servers that cannot bind port 0."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_of(server: Server) -> int:
    return int(next(iter(server.sockets)).getsockname()[1])


@contextlib.asynccontextmanager
async def ws_server(
    handler: Callable[[ServerConnection], Awaitable[None]], *, port: int = 0, **kwargs: Any
) -> AsyncIterator[tuple[Server, str]]:
    """Run a ``websockets`` server on 127.0.0.1; yield it and its ``ws://`` URL."""
    async with serve(handler, "127.0.0.1", port, **kwargs) as server:
        yield server, f"ws://127.0.0.1:{port_of(server)}/"


async def echo(ws: ServerConnection) -> None:
    """Server handler: send every message back unchanged."""
    async for message in ws:
        await ws.send(message)


def answers(port: int) -> bool:
    """Whether something accepts TCP connections on 127.0.0.1:``port`` now."""
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
        return True
    return False


#: The PostgreSQL that runs on the development and CI machines (trust auth).
PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"


@contextlib.contextmanager
def scratch_postgres(prefix: str, admin: str = PG_ADMIN) -> Iterator[str]:
    """A new, empty PostgreSQL database ``<prefix><random hex>``: yields its name,
    and drops it afterwards, open connections and all (``WITH (FORCE)``)."""
    import psycopg
    from psycopg import sql

    name = f"{prefix}{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield name
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            drop = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)")
            conn.execute(drop.format(sql.Identifier(name)))


def wait_for_port(port: int, proc: subprocess.Popen[Any] | None = None, limit: float = 20) -> None:
    """Block until something accepts TCP connections on 127.0.0.1:port."""
    deadline = time.monotonic() + timeout(limit)
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before listening")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)  # polling a port that has no event to await
    raise TimeoutError(f"nothing listened on 127.0.0.1:{port} within {limit}s")


async def wait_until(
    predicate: Callable[[], bool], limit: float = 5, interval: float = 0.01
) -> None:
    """Poll ``predicate`` for state with no event to await; fail after ``limit``."""
    async with asyncio.timeout(timeout(limit)):
        while not predicate():
            await asyncio.sleep(interval)


# --- Redis -----------------------------------------------------------------------------


def redis_answers(host: str, port: int) -> bool:
    """Whether a Redis server answers PING at host:port."""
    try:
        with socket.create_connection((host, port), timeout=1) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def start_redis_server(port: int | None = None) -> tuple[subprocess.Popen[bytes], int]:
    """Start a throwaway ``redis-server`` on ``port`` (default: a free one).

    Raises:
        FileNotFoundError: If ``redis-server`` is not installed.
        TimeoutError: If it does not answer within the bound.
    """
    binary = shutil.which("redis-server")
    if binary is None:
        raise FileNotFoundError("redis-server is not installed")
    port = port or free_port()
    workdir = tempfile.mkdtemp(prefix="svc-infra-redis-")
    proc = subprocess.Popen(
        [
            binary,
            "--bind",
            "127.0.0.1",
            "--port",
            str(port),
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            workdir,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + timeout(10)
    while not redis_answers("127.0.0.1", port):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise TimeoutError(f"redis-server did not answer on port {port}")
        time.sleep(0.05)
    return proc, port


def python_cmd(*args: str) -> list[str]:
    """The command running this interpreter with ``args``."""
    return [sys.executable, *args]


def flush_db(url: str) -> None:
    """Empty the Redis database at ``url`` (a test's own database number)."""
    import redis

    client = redis.Redis.from_url(url)
    try:
        client.flushdb()
    finally:
        client.close()


async def close_layer(layer: Any) -> None:
    """Close a channels_redis layer's connections, Sentinel clients included
    (channels_redis closes its pools but not the sentinel clients behind them), or a
    RedisClusterChannelLayer's."""
    if type(layer).__name__ == "RedisClusterChannelLayer":
        await layer.close()
        return
    clients: list[Any] = []
    for loop_layer in list(getattr(layer, "_layers", {}).values()):
        clients += getattr(loop_layer, "_connections", {}).values()  # core
        clients += [s._redis for s in getattr(loop_layer, "_shards", ()) if s._redis]  # pub/sub
    sentinels = [
        manager
        for client in clients
        if (manager := getattr(client.connection_pool, "sentinel_manager", None)) is not None
    ]
    close = getattr(layer, "close_pools", None) or layer.flush  # core, pub/sub
    await close()
    for manager in sentinels:  # one by one: Sentinel.aclose() is redis-py 8.1's
        for sentinel in manager.sentinels:
            await sentinel.aclose()
