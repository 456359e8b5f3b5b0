"""Spec: Examples, "Live Dashboard Updates".

The interval is the spec's 5 seconds unless ``DASHBOARD_INTERVAL`` says otherwise
(the tests use a short one).
"""

import asyncio
import os
import warnings

from fastapi import FastAPI, WebSocket

from svc_infra.api.fastapi.dx import WSIdentity
from svc_infra.websocket import add_websocket_manager

app = FastAPI()
manager = add_websocket_manager(app)
INTERVAL = float(os.environ.get("DASHBOARD_INTERVAL", "5"))
_tasks: set[asyncio.Task[None]] = set()


async def get_dashboard_stats():
    return {"connections": manager.connection_count, "users": len(manager.active_users)}


# Background task to push updates
async def push_dashboard_updates():
    while True:
        stats = await get_dashboard_stats()
        await manager.broadcast(
            {
                "type": "dashboard_update",
                "data": stats,
            }
        )
        await asyncio.sleep(INTERVAL)  # Update every 5 seconds


with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)  # on_event, as the spec writes it

    @app.on_event("startup")
    async def start_dashboard_updates():
        # Keep a reference: asyncio holds tasks only weakly.
        _tasks.add(asyncio.create_task(push_dashboard_updates()))

    @app.on_event("shutdown")
    async def stop_dashboard_updates():
        for task in _tasks:
            task.cancel()


@app.websocket("/dashboard/live")
async def dashboard_ws(websocket: WebSocket, user: WSIdentity):
    await manager.connect(user.id, websocket)
    try:
        while True:
            await websocket.receive_text()  # Keep alive
    finally:
        await manager.disconnect(user.id, websocket)
