"""Spec: Examples, "Real-Time Notifications" (plus a route that calls notify_user)."""

from fastapi import FastAPI, WebSocket

from svc_infra.api.fastapi.dx import WSIdentity
from svc_infra.websocket import add_websocket_manager

app = FastAPI()
manager = add_websocket_manager(app)


@app.websocket("/notifications")
async def notifications(websocket: WebSocket, user: WSIdentity):
    await manager.connect(user.id, websocket)
    try:
        # Keep connection open for push notifications
        while True:
            # Wait for messages from client (heartbeat, etc)
            await websocket.receive_text()
    finally:
        await manager.disconnect(user.id, websocket)


# From your business logic, push notifications:
async def notify_user(user_id: str, notification: dict):
    await manager.send_to_user(
        user_id,
        {
            "type": "notification",
            "data": notification,
        },
    )


@app.post("/notify/{user_id}")
async def notify(user_id: str, notification: dict):
    await notify_user(user_id, notification)
    return {"sent": True}
