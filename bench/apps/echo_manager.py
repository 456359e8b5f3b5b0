"""An echo route on FastAPI + ConnectionManager, for the flood benchmark.

``WS_INBOUND_RATE`` / ``WS_INBOUND_BURST`` (from the environment) decide whether a
flooding client is closed with 4429.
"""

from fastapi import FastAPI, WebSocket, WebSocketDisconnect

from svc_infra.websocket import add_websocket_manager

app = FastAPI()
manager = add_websocket_manager(app)


@app.websocket("/ws/{user}")
async def echo(websocket: WebSocket, user: str) -> None:
    await manager.connect(user, websocket)
    try:
        async for text in websocket.iter_text():
            await websocket.send_text(text)
    except WebSocketDisconnect:
        pass
    finally:
        await manager.disconnect(user, websocket)
