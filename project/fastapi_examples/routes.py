"""Spec: FastAPI Integration, "Get Manager in Routes", and Production, "Health Checks"."""

from fastapi import Depends, FastAPI, Request, WebSocket

from svc_infra.websocket import ConnectionManager, add_websocket_manager, get_ws_manager

app = FastAPI()
add_websocket_manager(app)


@app.get("/ws/stats")
async def ws_stats(request: Request):
    manager = get_ws_manager(request)
    return {
        "connections": manager.connection_count,
        "users": manager.active_users,
        "rooms": manager.room_count,
    }


@app.get("/health/websocket")
async def websocket_health(request: Request):
    manager = get_ws_manager(request)
    return {
        "status": "healthy",
        "connections": manager.connection_count,
        "users": len(manager.active_users),
    }


# The same, as a dependency (the original answered 422 here).
@app.get("/ws/stats-dep")
async def ws_stats_dep(manager: ConnectionManager = Depends(get_ws_manager)):
    return {"connections": manager.connection_count}


@app.websocket("/ws/{user_id}")
async def websocket_endpoint(
    websocket: WebSocket, user_id: str, manager: ConnectionManager = Depends(get_ws_manager)
):
    await manager.connect(user_id, websocket)
    try:
        async for _ in websocket.iter_text():
            pass
    finally:
        await manager.disconnect(user_id, websocket)
