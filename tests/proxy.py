"""A TCP proxy for tests: forwards to a server, and can cut every connection.

``cut(refuse_for=2)`` drops every open connection (both sides see the TCP
connection end, as on a network failure) and refuses new ones for a while;
``cut_some(n)`` drops ``n`` of them at random (the soak benchmark uses it);
``target`` can be changed, so a client comes back to another process.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator


class Proxy:
    """Forwards 127.0.0.1:``port`` to 127.0.0.1:``target``."""

    def __init__(self, target: int) -> None:
        self.target = target
        self.port = 0
        self.accepted = 0
        self._server: asyncio.Server | None = None
        self._links: set[asyncio.StreamWriter] = set()
        self._clients: set[asyncio.StreamWriter] = set()  # the client's end of each link
        self._refuse_until = 0.0

    def url(self, path: str) -> str:
        return f"ws://127.0.0.1:{self.port}{path}"

    async def start(self) -> None:
        # A backlog for storms: thousands of clients may connect at once.
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0, backlog=4096)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        self.cut()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def cut(self, refuse_for: float = 0.0) -> None:
        """Drop every connection now; refuse new ones for ``refuse_for`` seconds."""
        self._refuse_until = asyncio.get_running_loop().time() + refuse_for
        for writer in list(self._links):
            transport = writer.transport
            transport.abort()  # no FIN handshake: as a network that went away
        self._links.clear()
        self._clients.clear()

    def cut_some(self, n: int) -> int:
        """Drop ``n`` random connections (or all there are); return how many."""
        chosen = random.sample(sorted(self._clients, key=id), min(n, len(self._clients)))
        for writer in chosen:
            writer.transport.abort()  # its pipes end, and abort the other side
        return len(chosen)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if asyncio.get_running_loop().time() < self._refuse_until:
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target)
        except OSError:
            writer.transport.abort()
            return
        self.accepted += 1
        self._links.update((writer, up_writer))
        self._clients.add(writer)
        await asyncio.gather(
            self._pipe(reader, up_writer), self._pipe(up_reader, writer), return_exceptions=True
        )
        self._clients.discard(writer)
        for w in (writer, up_writer):
            self._links.discard(w)
            w.transport.abort()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.transport.abort()


@contextlib.asynccontextmanager
async def proxy_to(port: int) -> AsyncIterator[Proxy]:
    """A started :class:`Proxy` to ``port``, stopped afterwards."""
    proxy = Proxy(port)
    await proxy.start()
    try:
        yield proxy
    finally:
        await proxy.stop()
