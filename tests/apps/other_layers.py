"""One FastAPI process on a non-Redis Channels layer: ``/ws/{user}`` plus ``/ctl/<op>``.

The README pattern: the manager is created at import time, before any event loop
runs (``uvicorn tests.apps.other_layers:app``), with ``layer=make_layer``, a
function the manager calls when it first needs the layer, on the running loop.
``OTHER_LAYER`` picks channels_postgres or channels_rabbitmq (see
``other_layers_config.py``); the other settings are ``WS_*`` variables
(``WS_PRESENCE_REDIS_URL``, ``WS_PRESENCE_TTL``, ``WS_HISTORY_SIZE``,
``WS_CHANNEL_PREFIX``) and ``CLUSTER_NAME``. The same surface as
``cluster_fastapi.py``, so the tests drive it with ``Server.ctl`` and ``stats``.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import JSONResponse

from svc_infra.websocket import ConnectionManager, add_websocket_manager
from tests.apps.cluster_control import NAME, control
from tests.apps.other_layers_config import make_layer

app = FastAPI()
manager = add_websocket_manager(app, ConnectionManager(layer=make_layer))


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
