"""Spec: Production, "Graceful Shutdown", on the Quick Start server.

The spec's handler runs at the lifespan shutdown. Under uvicorn the sockets are
already closed by then: ``add_websocket_manager`` closes them with 1001 as soon
as the shutdown signal arrives, which is what the handler meant to do.
"""

import warnings

from fastapi import FastAPI, WebSocket

from svc_infra.websocket import add_websocket_manager

app = FastAPI()
manager = add_websocket_manager(app)

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)  # on_event, as the spec writes it

    @app.on_event("shutdown")
    async def shutdown_websockets():
        # Notify all clients
        await manager.broadcast(
            {
                "type": "system",
                "message": "Server shutting down",
            }
        )

        # Close all connections
        for user_id in manager.active_users:
            await manager.disconnect(user_id)


@app.websocket("/ws/{user_id}")
async def websocket_endpoint(websocket: WebSocket, user_id: str):
    await manager.connect(user_id, websocket)
    try:
        async for message in websocket.iter_json():
            await manager.broadcast(message)
    finally:
        await manager.disconnect(user_id, websocket)
