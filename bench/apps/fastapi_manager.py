"""Ours: FastAPI on uvicorn with the ConnectionManager (in-memory layer, or Redis
when ``WS_REDIS_URL`` is set).

``BENCH_NO_MANAGER=1`` gives the same app without the manager, the baseline of
the memory benchmark.
"""

import json
import os
import random

from fastapi import FastAPI, WebSocket, WebSocketDisconnect

app = FastAPI()

_TEXT = (
    "the order was paid and shipped today please check your inbox for the receipt "
    "a new comment on your post from alice bob carol dave about the release notes "
    "build finished in 42 seconds with 3 warnings deploy to staging succeeded"
)
WORDS = _TEXT.split()


def payloads(count: int, size: int) -> list[str]:
    """``count`` messages of ``size`` bytes: ``"x" * size`` each, or with
    ``BENCH_PAYLOAD=json`` chat-like JSON, different each time (what compression
    meets in practice: "x" * size compresses to almost nothing)."""
    if os.environ.get("BENCH_PAYLOAD") != "json":
        return ["x" * size] * count
    out = []
    for i in range(count):
        rng = random.Random(i)
        message = {"type": "chat.message", "room": "general", "id": i, "user": f"user{i % 97}"}
        base = len(json.dumps({**message, "text": ""}))
        words = " ".join(rng.choice(WORDS) for _ in range(size))
        out.append(json.dumps({**message, "text": words[: max(size - base, 0)]}))
    return out


if os.environ.get("BENCH_NO_MANAGER") == "1":
    idle: set[WebSocket] = set()

    @app.websocket("/ws")
    async def plain(websocket: WebSocket) -> None:
        await websocket.accept()
        idle.add(websocket)
        try:
            async for _ in websocket.iter_text():
                pass
        except WebSocketDisconnect:
            pass
        finally:
            idle.discard(websocket)

else:
    from channels.layers import InMemoryChannelLayer

    from svc_infra.websocket import ConnectionManager, add_websocket_manager, easy_websocket_manager

    if os.environ.get("WS_REDIS_URL"):  # on Redis, configured by WS_* as users do
        manager = easy_websocket_manager(app)
    else:
        manager = add_websocket_manager(app, ConnectionManager(InMemoryChannelLayer()))
    counter = iter(range(10**9))

    @app.websocket("/ws")
    async def endpoint(websocket: WebSocket) -> None:
        user = f"user{next(counter)}"
        await manager.connect(user, websocket)
        try:
            async for message in websocket.iter_text():
                count, size = (int(x) for x in message.split())
                for payload in payloads(count, size):
                    await manager.broadcast(payload)
        except WebSocketDisconnect:
            pass
        finally:
            await manager.disconnect(user, websocket)
