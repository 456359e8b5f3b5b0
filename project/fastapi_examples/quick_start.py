"""Spec: Quick Start, "Server: Handle Client Connections"."""

from fastapi import FastAPI, WebSocket

from svc_infra.websocket import add_websocket_manager

app = FastAPI()
manager = add_websocket_manager(app)


@app.websocket("/ws/{user_id}")
async def websocket_endpoint(websocket: WebSocket, user_id: str):
    await manager.connect(user_id, websocket)
    try:
        async for message in websocket.iter_json():
            await manager.broadcast(message)
    finally:
        await manager.disconnect(user_id, websocket)
