"""Baseline: a bare websockets server fanning out with websockets.broadcast."""

import asyncio
import sys

from websockets.asyncio.server import ServerConnection, broadcast, serve
from websockets.exceptions import ConnectionClosed

CLIENTS: set[ServerConnection] = set()


async def handler(ws: ServerConnection) -> None:
    CLIENTS.add(ws)
    try:
        async for message in ws:
            count, size = (int(x) for x in str(message).split())
            payload = "x" * size
            for _ in range(count):
                broadcast(CLIENTS, payload)
    except ConnectionClosed:  # the counting clients just drop the connection
        pass
    finally:
        CLIENTS.discard(ws)


async def main(fd: int) -> None:
    import socket

    sock = socket.socket(fileno=fd)
    async with serve(handler, sock=sock, compression=None, ping_interval=None):
        await asyncio.get_running_loop().create_future()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))
