"""Spec: Connection Manager, "Lifecycle Hooks"."""

from fastapi import FastAPI, WebSocket

from svc_infra.websocket import ConnectionManager, add_websocket_manager

manager = ConnectionManager()


@manager.on_connect
async def handle_connect(user_id: str, websocket: WebSocket):
    print(f"User {user_id} connected")
    await manager.broadcast({"event": "user_joined", "user": user_id})


@manager.on_disconnect
async def handle_disconnect(user_id: str, websocket: WebSocket):
    print(f"User {user_id} disconnected")
    await manager.broadcast({"event": "user_left", "user": user_id})


app = FastAPI()
add_websocket_manager(app, manager)


@app.websocket("/ws/{user_id}")
async def websocket_endpoint(websocket: WebSocket, user_id: str):
    await manager.connect(user_id, websocket)
    try:
        async for _ in websocket.iter_text():
            pass
    finally:
        await manager.disconnect(user_id, websocket)
