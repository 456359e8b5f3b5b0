"""Spec: Authentication, "Protected WebSocket Routes"."""

from fastapi import FastAPI, WebSocket

from svc_infra.api.fastapi.dual import ws_protected_router
from svc_infra.api.fastapi.dx import WSIdentity
from svc_infra.websocket import add_websocket_manager

app = FastAPI()
manager = add_websocket_manager(app)

router = ws_protected_router(prefix="/api")


@router.websocket("/ws")
async def secure_ws(websocket: WebSocket, user: WSIdentity):
    # user.id, user.email, user.scopes available from JWT
    await manager.connect(user.id, websocket)
    try:
        await manager.send_to_user(user.id, {"id": user.id, "scopes": sorted(user.scopes)})
        async for _ in websocket.iter_text():
            pass
    finally:
        await manager.disconnect(user.id, websocket)


app.include_router(router)
