"""Peer: python-socketio 5.x as an ASGI app on uvicorn (``python -m bench peers``).

The trigger is the other apps' control message as a Socket.IO event: ``go`` with
``"count size"`` from any client makes the server ``emit`` ``count`` events ``m``
of ``size`` bytes to every client (the default namespace). Engine.IO pings every
600 s: the frame-counting clients do not answer pings, and none comes in a run.
"""

import socketio

sio = socketio.AsyncServer(
    async_mode="asgi",
    ping_interval=600,
    ping_timeout=600,
    transports=["websocket"],
    http_compression=False,
)
app = socketio.ASGIApp(sio)


@sio.on("go")
async def go(sid: str, message: str) -> None:
    count, size = (int(x) for x in message.split())
    payload = "x" * size
    for _ in range(count):
        await sio.emit("m", payload)
