"""A FastAPI app that exposes the manager to end-to-end tests over real sockets.

Clients connect to ``/ws/{user_id}`` and drive the manager with JSON commands;
HTTP routes read the stats and act on users from outside a socket.
"""

from __future__ import annotations

import os
from typing import Any

from fastapi import Depends, FastAPI, WebSocket, WebSocketDisconnect

from svc_infra.websocket import (
    ConnectionManager,
    WebSocketConfig,
    add_websocket_manager,
    get_default_config,
    get_ws_manager,
)

config: WebSocketConfig = get_default_config()
app = FastAPI()
manager = add_websocket_manager(app, ConnectionManager(config=config))
events: list[dict[str, str]] = []


@manager.on_connect
async def joined(user_id: str, websocket: WebSocket) -> None:
    events.append({"event": "connect", "user": user_id})


@manager.on_disconnect
async def left(user_id: str, websocket: WebSocket) -> None:
    events.append({"event": "disconnect", "user": user_id})


async def run(command: dict[str, Any], user_id: str) -> Any:
    op = command.get("op")
    if op == "join":
        return await manager.join_room(user_id, command["room"])
    if op == "leave":
        return await manager.leave_room(user_id, command["room"])
    if op == "to":
        return await manager.send_to_user(command["user"], command["msg"])
    if op == "broadcast":
        return await manager.broadcast(command["msg"], exclude_user=command.get("exclude"))
    if op == "room":
        return await manager.broadcast_to_room(
            command["room"], command["msg"], exclude_user=command.get("exclude")
        )
    if op == "burst":
        # Numbered messages from one sender, padded to a size.
        pad = "x" * int(command.get("size", 0))
        for i in range(int(command["n"])):
            await manager.broadcast({"seq": i, "pad": pad})
        return None
    if op == "bad":
        # Payloads a layer cannot carry; the call must raise TypeError.
        payloads = {"set": {1, 2}, "int_key": {1: "x"}, "object": object()}
        await manager.broadcast(payloads[command["kind"]])
        return None
    raise ValueError(f"unknown op {op!r}")


@app.websocket("/ws/{user_id}")
async def endpoint(websocket: WebSocket, user_id: str) -> None:
    metadata = dict(websocket.query_params)
    await manager.connect(user_id, websocket, metadata)
    try:
        async for command in websocket.iter_json():
            try:
                await run(command, user_id)
            except (TypeError, ValueError, KeyError) as exc:
                await websocket.send_json({"error": type(exc).__name__, "detail": str(exc)})
            else:
                if command.get("ack"):
                    await websocket.send_json({"ack": command["ack"]})
    except WebSocketDisconnect:
        pass
    finally:
        await manager.disconnect(user_id, websocket)


@app.get("/stats")
async def stats(mgr: ConnectionManager = Depends(get_ws_manager)) -> dict[str, Any]:
    return {
        "connections": mgr.connection_count,
        "users": sorted(mgr.active_users),
        "rooms": mgr.room_count,
        "counters": mgr.stats.as_dict(),
        "events": events,
        "pid": os.getpid(),
    }


@app.get("/users/{user_id}")
async def user(user_id: str, mgr: ConnectionManager = Depends(get_ws_manager)) -> Any:
    return [info.to_dict() for info in mgr.get_user_connections(user_id)]


@app.get("/rooms/{room}")
async def room(room: str, mgr: ConnectionManager = Depends(get_ws_manager)) -> list[str]:
    return mgr.get_room_users(room)


@app.post("/rooms/{room}/{user_id}")
async def join(room: str, user_id: str) -> None:
    await manager.join_room(user_id, room)


@app.post("/disconnect/{user_id}")
async def kick(user_id: str) -> None:
    await manager.disconnect(user_id)


@app.websocket("/manager-from-websocket")
async def manager_in_websocket_route(
    websocket: WebSocket, mgr: ConnectionManager = Depends(get_ws_manager)
) -> None:
    await websocket.accept()
    await websocket.send_json({"same": mgr is manager})
    await websocket.close()
