"""The FastAPI twin of the Django demo: the same paths, the same behaviour.

Run it with ``make run-fastapi`` (``uvicorn project.fastapi_app:app``). With
``WS_REDIS_URL`` set, it shares users and rooms with the Django process.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles

from svc_infra.api.fastapi.dual import DualAPIRouter, ws_public_router, ws_user_router
from svc_infra.api.fastapi.dx import RequireWSScopes, WSIdentity, WSPrincipal
from svc_infra.websocket import ChannelLayerError, add_websocket_manager, get_ws_manager
from svc_infra.websocket.integrations.starlette import add_metrics_route

from .dashboard import DASHBOARD_ROOM, dashboard_stats

# The library has no default secret; the demo has a development one.
os.environ.setdefault(
    "AUTH_JWT__SECRET",
    os.environ.get("DEMO_JWT_SECRET", "svc-infra-demo-secret-do-not-deploy-0123"),
)

# As the Django demo: history on, so a page that reconnects gets what it missed.
os.environ.setdefault("WS_HISTORY_SIZE", "1000")

# Like Django's AllowedHostsOriginValidator with ALLOWED_HOSTS 127.0.0.1 and localhost.
os.environ.setdefault("WS_ALLOWED_ORIGINS", "http://127.0.0.1:*,http://localhost:*")

PAGE = Path(__file__).parent / "templates" / "project" / "index.html"
DASHBOARD_PAGE = Path(__file__).parent / "templates" / "project" / "dashboard.html"
INTERVAL = float(os.environ.get("WS_DASHBOARD_INTERVAL", "5"))

app = FastAPI(title="svc_infra.websocket demo (FastAPI twin)")
manager = add_websocket_manager(app)
add_metrics_route(app, manager)  # Prometheus, at /metrics
# The browser client, from the package (as Django's staticfiles serves it).
app.mount("/static", StaticFiles(packages=[("svc_infra.websocket", "static")]), name="static")
public = ws_public_router()
users = ws_user_router()
http = DualAPIRouter()
_dashboard: set[asyncio.Task[None]] = set()


@public.websocket("/ws/echo/")
async def echo(websocket: WebSocket) -> None:
    await websocket.accept()
    try:
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
            if message.get("text") is not None:
                await websocket.send_text(message["text"])
            elif message.get("bytes") is not None:
                await websocket.send_bytes(message["bytes"])
    except WebSocketDisconnect:
        pass


@users.websocket("/ws/chat/{room}/")
async def chat_room(websocket: WebSocket, room: str, user: WSIdentity) -> None:
    # The spec's Chat Application.
    await manager.connect(user.id, websocket)
    await manager.join_room(user.id, room)
    try:
        await manager.broadcast_to_room(
            room, {"type": "system", "message": f"{user.id} joined the room"}
        )
        async for data in websocket.iter_json():
            try:
                await manager.broadcast_to_room(
                    room,
                    {"type": "message", "from": user.id, "message": data.get("message")},
                    exclude_user=user.id,
                )
            except ChannelLayerError:
                # Redis is away: this process's members got it, the others did not.
                await websocket.send_json({"type": "error", "detail": "delivery degraded"})
    except WebSocketDisconnect:
        pass
    finally:
        with contextlib.suppress(ChannelLayerError):
            await manager.leave_room(user.id, room)
        await manager.disconnect(user.id, websocket)
        with contextlib.suppress(ChannelLayerError):
            await manager.broadcast_to_room(
                room, {"type": "system", "message": f"{user.id} left the room"}
            )


async def _hold(websocket: WebSocket, user: WSPrincipal) -> None:
    try:
        async for _ in websocket.iter_text():
            pass  # heartbeats
    except WebSocketDisconnect:
        pass
    finally:
        await manager.disconnect(user.id, websocket)


@users.websocket("/ws/notifications/")
async def notifications(websocket: WebSocket, user: WSIdentity) -> None:
    await manager.connect(user.id, websocket)
    await _hold(websocket, user)


async def push_dashboard_updates() -> None:
    while manager.get_room_users(DASHBOARD_ROOM):
        stats = dashboard_stats(manager)
        with contextlib.suppress(ChannelLayerError):  # counted; the next tick retries
            await manager.broadcast_to_room(
                DASHBOARD_ROOM, {"type": "dashboard_update", "data": stats}
            )
        await asyncio.sleep(INTERVAL)


@users.websocket("/ws/dashboard/", dependencies=[RequireWSScopes("ws:admin")])
async def dashboard(websocket: WebSocket, user: WSIdentity) -> None:
    await manager.connect(user.id, websocket)
    await manager.join_room(user.id, DASHBOARD_ROOM)
    if not _dashboard:
        task = asyncio.get_running_loop().create_task(push_dashboard_updates())
        _dashboard.add(task)
        task.add_done_callback(_dashboard.discard)
    await _hold(websocket, user)


@app.get("/", response_class=HTMLResponse)
async def index() -> str:
    return PAGE.read_text()


@app.get("/dashboard/", response_class=HTMLResponse)
async def dashboard_page() -> str:
    return DASHBOARD_PAGE.read_text()


@http.get("/health/websocket")
async def health(request: Request) -> dict[str, Any]:
    mgr = get_ws_manager(request)
    return {
        "status": "healthy",
        "connections": mgr.connection_count,
        "users": len(mgr.active_users),
    }


@http.get("/ws/stats")
async def stats(request: Request) -> dict[str, Any]:
    mgr = get_ws_manager(request)
    return {"connections": mgr.connection_count, "users": mgr.active_users, "rooms": mgr.room_count}


@http.get("/api/rooms/{room}/users/")
async def room_users(room: str) -> dict[str, Any]:
    return {"room": room, "users": manager.get_room_users(room)}


@http.post("/api/notify/{user_id}/", dependencies=[RequireWSScopes("notify:send")])
async def notify(user_id: str, request: Request) -> JSONResponse:
    try:
        payload = await request.json()
    except ValueError:
        return JSONResponse({"detail": "the body must be JSON"}, status_code=400)
    try:
        await get_ws_manager(request).send_to_user(
            user_id, {"type": "notification", "data": payload}
        )
    except ChannelLayerError:
        return JSONResponse({"detail": "other processes unreachable"}, status_code=503)
    return JSONResponse({"sent": True})


for router in (public, users, http):
    app.include_router(router)
