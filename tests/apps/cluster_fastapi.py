"""One FastAPI process of the cluster tests: ``/ws/{user}`` plus ``/ctl/<op>``.

Configured by ``WS_*`` variables (``WS_REDIS_URL``, ``WS_REDIS_LAYER``,
``WS_PRESENCE_TTL``, ``WS_CHANNEL_PREFIX``) and ``CLUSTER_NAME``.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import JSONResponse

from svc_infra.websocket import ConnectionManager, easy_websocket_manager
from tests.apps.cluster_control import NAME, control


def serve(app: FastAPI, manager: ConnectionManager) -> None:
    """Add the test surface to ``app``: ``/ws/{user}`` (``?room=`` joins it), ``/``,
    ``/ctl/stats`` and ``/ctl/<op>`` (tests/apps/cluster_control.py)."""

    @app.websocket("/ws/{user}")
    async def socket(websocket: WebSocket, user: str) -> None:
        await manager.connect(user, websocket, metadata={"server": NAME})
        room = websocket.query_params.get("room")
        try:
            if room:  # as the spec's chat route: join right after connecting
                await manager.join_room(user, room)
            while True:
                await websocket.receive_text()
        except WebSocketDisconnect:
            pass
        finally:
            await manager.disconnect(user, websocket)

    @app.get("/")
    async def root() -> dict[str, str]:
        return {"name": NAME}

    @app.get("/ctl/stats")
    async def stats(request: Request) -> JSONResponse:
        status, answer = await control(manager, "stats", dict(request.query_params))
        return JSONResponse(answer, status_code=status)

    @app.post("/ctl/{op}")
    async def ctl(op: str, request: Request) -> JSONResponse:
        body: dict[str, Any] = await request.json()
        status, answer = await control(manager, op, body)
        return JSONResponse(answer, status_code=status)


app = FastAPI()
manager = easy_websocket_manager(app)
serve(app, manager)
