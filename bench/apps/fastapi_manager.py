"""Ours: FastAPI on uvicorn with the ConnectionManager (in-memory layer, or Redis
when ``WS_REDIS_URL`` is set).

``BENCH_NO_MANAGER=1`` gives the same app without the manager, the baseline of
the memory benchmark.
"""

import os

from fastapi import FastAPI, WebSocket, WebSocketDisconnect

app = FastAPI()

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
                payload = "x" * size
                for _ in range(count):
                    await manager.broadcast(payload)
        except WebSocketDisconnect:
            pass
        finally:
            await manager.disconnect(user, websocket)
