"""Spec: Examples, "Chat Application"."""

from fastapi import FastAPI, WebSocket

from svc_infra.api.fastapi.dx import WSIdentity
from svc_infra.websocket import add_websocket_manager

app = FastAPI()
manager = add_websocket_manager(app)


@app.websocket("/chat/{room}")
async def chat_room(websocket: WebSocket, room: str, user: WSIdentity):
    await manager.connect(user.id, websocket)
    await manager.join_room(user.id, room)

    try:
        # Announce join
        await manager.broadcast_to_room(
            room,
            {
                "type": "system",
                "message": f"{user.id} joined the room",
            },
        )

        async for data in websocket.iter_json():
            # Broadcast message to room
            await manager.broadcast_to_room(
                room,
                {
                    "type": "message",
                    "from": user.id,
                    "message": data.get("message"),
                },
                exclude_user=user.id,
            )  # Don't echo back to sender
    finally:
        await manager.leave_room(user.id, room)
        await manager.disconnect(user.id, websocket)
        await manager.broadcast_to_room(
            room,
            {
                "type": "system",
                "message": f"{user.id} left the room",
            },
        )
