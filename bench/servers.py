"""Server processes for the benchmarks: started on a socket bound here, stopped for sure."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

from websockets.asyncio.client import connect

ROOT = Path(__file__).resolve().parent.parent


def listening_socket() -> socket.socket:
    """A socket listening on 127.0.0.1, on a free port."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(4096)
    return sock


@contextlib.asynccontextmanager
async def server_on_fd(
    args: Callable[[str], list[str]],
    probe: str,
    env: dict[str, str] | None = None,
    sock: socket.socket | None = None,
) -> AsyncIterator[tuple[str, subprocess.Popen[bytes]]]:
    """Run ``args(fd)`` on a listening socket handed over by file descriptor:
    ``sock`` if given (the caller keeps it, so a server restarted on it keeps its
    port, and connections wait in its backlog meanwhile), else a new one.

    Yields the ``ws://127.0.0.1:port`` base and the process once a WebSocket
    to ``probe`` opens (the app is up, not just the socket). On exit the
    process is terminated, and killed if it is stuck in its shutdown.
    """
    own = sock is None
    if sock is None:
        sock = listening_socket()
    fd, port = sock.fileno(), sock.getsockname()[1]
    proc = subprocess.Popen(
        args(str(fd)),
        cwd=ROOT,
        pass_fds=(fd,),
        env={**os.environ, **(env or {})},
        stdout=subprocess.DEVNULL,
    )
    if own:
        sock.close()  # the child holds its own copy
    base = f"ws://127.0.0.1:{port}"
    try:
        async with asyncio.timeout(30):
            while True:
                try:
                    ws = await connect(base + probe, compression=None)
                    await ws.close()
                    break
                except Exception:
                    await asyncio.sleep(0.1)  # no event to await: the app is starting
        yield base, proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:  # a server stuck in shutdown must not stop the run
            proc.kill()
            proc.wait()


@contextlib.contextmanager
def private_redis(core: int | None = None) -> Iterator[tuple[str, int]]:
    """A throwaway ``redis-server`` on a free port (pinned to ``core`` if given):
    Redis' own work then stays off the core of the server being measured.

    Yields its ``redis://127.0.0.1:port`` URL and its pid (to pause it).

    Raises:
        FileNotFoundError: If ``redis-server`` is not installed.
    """
    import shutil
    import tempfile
    import time

    binary = shutil.which("redis-server")
    if binary is None:
        raise FileNotFoundError("redis-server is not installed")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    pin = ["taskset", "-c", str(core)] if core is not None else []
    workdir = tempfile.mkdtemp(prefix="bench-redis-")
    args = [binary, "--bind", "127.0.0.1", "--port", str(port), "--save", ""]
    args += ["--appendonly", "no", "--dir", workdir]
    proc = subprocess.Popen([*pin, *args], stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1) as conn:
                    conn.sendall(b"PING\r\n")
                    if conn.recv(16).startswith(b"+PONG"):
                        break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)  # no event to await: the server is starting
        yield f"redis://127.0.0.1:{port}", proc.pid
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        shutil.rmtree(workdir, ignore_errors=True)


def flush_db(url: str) -> None:
    """Empty the Redis database at ``url`` (a benchmark's own, before and after it)."""
    import redis

    client = redis.Redis.from_url(url, socket_timeout=10, socket_connect_timeout=5)
    try:
        client.flushdb()
    finally:
        client.close()
