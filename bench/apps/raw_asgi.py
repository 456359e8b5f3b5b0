"""The ceiling of uvicorn itself: a raw ASGI app that loops over the ``send``
callables of its sockets, with one message dict per broadcast and no framework.

Whatever ours loses against this is ours; what this loses against bare
``websockets`` is uvicorn's. ``BENCH_IDLE=1`` makes it the baseline of the memory
benchmark too (it holds each socket and nothing else).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

Send = Callable[[dict[str, Any]], Awaitable[None]]
SENDS: set[Send] = set()


async def app(scope: dict[str, Any], receive: Any, send: Send) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "websocket":
        return
    await receive()  # websocket.connect
    await send({"type": "websocket.accept"})
    SENDS.add(send)
    try:
        while True:
            message = await receive()
            if message["type"] != "websocket.receive":
                return
            count, size = (int(x) for x in message["text"].split())
            frame = {"type": "websocket.send", "text": "x" * size}
            for _ in range(count):
                for each in list(SENDS):
                    await each(frame)
    finally:
        SENDS.discard(send)
