"""Server processes for the benchmarks: started on a socket bound here, stopped for sure."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from websockets.asyncio.client import connect

ROOT = Path(__file__).resolve().parent.parent


@contextlib.asynccontextmanager
async def server_on_fd(
    args: Callable[[str], list[str]], probe: str, env: dict[str, str] | None = None
) -> AsyncIterator[tuple[str, subprocess.Popen[bytes]]]:
    """Run ``args(fd)`` on a listening socket handed over by file descriptor.

    Yields the ``ws://127.0.0.1:port`` base and the process once a WebSocket
    to ``probe`` opens (the app is up, not just the socket). On exit the
    process is terminated, and killed if it is stuck in its shutdown.
    """
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(4096)
    fd, port = sock.fileno(), sock.getsockname()[1]
    proc = subprocess.Popen(
        args(str(fd)),
        cwd=ROOT,
        pass_fds=(fd,),
        env={**os.environ, **(env or {})},
        stdout=subprocess.DEVNULL,
    )
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
