"""A FastAPI app with every kind of authenticated WebSocket route, for tests."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, WebSocket, WebSocketDisconnect
from fastapi.responses import HTMLResponse

from svc_infra.api.fastapi.dual import (
    ws_optional_router,
    ws_protected_router,
    ws_public_router,
    ws_scopes_router,
    ws_user_router,
)
from svc_infra.api.fastapi.dx import (
    OptionalWSIdentity,
    RequireWSAnyScope,
    RequireWSScopes,
    WSIdentity,
    WSPrincipal,
)
from svc_infra.websocket import add_websocket_manager
from svc_infra.websocket.auth import register_api_key_verifier

app = FastAPI()
manager = add_websocket_manager(app)


def verify_key(key: str) -> WSPrincipal | None:
    return WSPrincipal("service-1", scopes=frozenset({"a"})) if key == "good-key" else None


register_api_key_verifier(verify_key)


def describe(user: WSPrincipal | None) -> dict[str, Any]:
    if user is None:
        return {"id": None}
    return {"id": user.id, "email": user.email, "scopes": sorted(user.scopes), "via": user.via}


async def serve(websocket: WebSocket, user: WSPrincipal) -> None:
    """Register with the manager (which accepts, with 'bearer' if offered) and echo."""
    await manager.connect(user.id, websocket)
    try:
        await websocket.send_json(describe(user))
        async for text in websocket.iter_text():
            await websocket.send_text(text)
    except WebSocketDisconnect:
        pass
    finally:
        await manager.disconnect(user.id, websocket)


user_router = ws_user_router(prefix="/user")
protected_router = ws_protected_router(prefix="/protected")
scopes_router = ws_scopes_router("a", prefix="/scoped")
optional_router = ws_optional_router(prefix="/optional")
public_router = ws_public_router(prefix="/public")


@user_router.websocket("/ws")
async def user_ws(websocket: WebSocket, user: WSIdentity) -> None:
    await serve(websocket, user)


@protected_router.websocket("/ws")
async def protected_ws(websocket: WebSocket, user: WSIdentity) -> None:
    await serve(websocket, user)


@scopes_router.websocket("/ws")
async def scoped_ws(websocket: WebSocket, user: WSIdentity) -> None:
    await serve(websocket, user)


@optional_router.websocket("/ws")
async def optional_ws(websocket: WebSocket, user: OptionalWSIdentity) -> None:
    # A browser drops a connection whose offered "bearer" is not echoed.
    await websocket.accept("bearer" if user is not None and user.via == "subprotocol" else None)
    await websocket.send_json(describe(user))
    await websocket.close()


@public_router.websocket("/ws")
async def public_ws(websocket: WebSocket) -> None:
    await websocket.accept()
    await websocket.send_json({"public": True})
    await websocket.close()


@app.websocket("/all-of-ab", dependencies=[RequireWSScopes("a", "b")])
async def all_of(websocket: WebSocket, user: WSIdentity) -> None:
    await serve(websocket, user)


@app.websocket("/any-of-ab", dependencies=[RequireWSAnyScope("a", "b")])
async def any_of(websocket: WebSocket, user: WSIdentity) -> None:
    await serve(websocket, user)


PAGE = """<!doctype html><meta charset="utf-8"><title>auth test page</title>
<script>
// Open a WebSocket the way a browser app would: the token as a subprotocol.
window.openWs = (path, token) => new Promise((resolve) => {
  const ws = new WebSocket(`ws://${location.host}${path}`, ["bearer", token]);
  ws.onmessage = (e) => { resolve({protocol: ws.protocol, data: JSON.parse(e.data)}); ws.close(); };
  ws.onclose = (e) => resolve({closed: e.code});
});
</script>"""


@app.get("/page")
async def page() -> HTMLResponse:
    return HTMLResponse(PAGE)


@app.get("/stats")
async def stats() -> dict[str, Any]:
    return {"connections": manager.connection_count, "counters": manager.stats.as_dict()}


for router in (user_router, protected_router, scopes_router, optional_router, public_router):
    app.include_router(router)
