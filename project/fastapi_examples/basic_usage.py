"""Spec: Connection Manager, "Basic Usage" and "Room/Group Support"."""

from fastapi import FastAPI, WebSocket

from svc_infra.websocket import ConnectionManager, add_websocket_manager

manager = ConnectionManager()


# In your WebSocket endpoint
async def websocket_endpoint(websocket: WebSocket, user_id: str):
    connection_id = await manager.connect(user_id, websocket)
    try:
        async for message in websocket.iter_json():
            # Send to specific user
            await manager.send_to_user(user_id, {"echo": message})

            # Broadcast to all
            await manager.broadcast({"from": user_id, "message": message})
    finally:
        await manager.disconnect(user_id, websocket)
    del connection_id


async def rooms_endpoint(websocket: WebSocket, user_id: str):
    await manager.connect(user_id, websocket)
    try:
        # Join a room
        await manager.join_room(user_id, "general")
        await manager.join_room(user_id, "vip")

        # Send to room members only
        await manager.broadcast_to_room("general", {"msg": "Hello room!"})

        # Leave room
        await manager.leave_room(user_id, "general")
        async for _ in websocket.iter_text():
            pass
    finally:
        await manager.disconnect(user_id, websocket)


app = FastAPI()
add_websocket_manager(app, manager)
app.websocket("/ws/{user_id}")(websocket_endpoint)
app.websocket("/rooms/{user_id}")(rooms_endpoint)
