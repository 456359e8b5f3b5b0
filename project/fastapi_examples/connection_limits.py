"""Spec: Production, "Connection Limits"."""

from fastapi import FastAPI, WebSocket

from svc_infra.api.fastapi.dx import WSIdentity
from svc_infra.websocket import ConnectionManager, add_websocket_manager

manager = ConnectionManager()
MAX_CONNECTIONS_PER_USER = 5

app = FastAPI()
add_websocket_manager(app, manager)


@app.websocket("/ws")
async def limited_ws(websocket: WebSocket, user: WSIdentity):
    if len(manager.get_user_connections(user.id)) >= MAX_CONNECTIONS_PER_USER:
        await websocket.close(code=4008, reason="Too many connections")
        return

    await manager.connect(user.id, websocket)
    try:
        async for _ in websocket.iter_text():
            pass
    finally:
        await manager.disconnect(user.id, websocket)
