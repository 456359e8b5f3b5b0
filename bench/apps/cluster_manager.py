"""Ours across processes: FastAPI + ConnectionManager on channels_redis.

Configured by ``WS_REDIS_URL`` and ``WS_REDIS_LAYER``. A client at ``/ws/{user}``
drives the benchmark with text commands:

- ``bcast <count> <size>``: broadcast ``count`` messages of ``size`` bytes;
- ``lat <count> <rate> <user>``: send ``count`` messages to ``user`` at ``rate``
  per second, each carrying ``time.monotonic()`` (one clock for every process
  on a Linux machine) for the receiver to compute the latency.
"""

import asyncio
import time

from fastapi import FastAPI, WebSocket, WebSocketDisconnect

from svc_infra.websocket import easy_websocket_manager

app = FastAPI()
manager = easy_websocket_manager(app)


async def paced(count: int, rate: float, user: str) -> None:
    start = time.monotonic()
    for i in range(count):
        ahead = start + i / rate - time.monotonic()
        if ahead > 0:
            await asyncio.sleep(ahead)
        await manager.send_to_user(user, {"t": time.monotonic(), "i": i})


@app.websocket("/ws/{user}")
async def endpoint(websocket: WebSocket, user: str) -> None:
    await manager.connect(user, websocket)
    try:
        async for message in websocket.iter_text():
            op, *args = message.split()
            if op == "bcast":
                payload = "x" * int(args[1])
                for _ in range(int(args[0])):
                    await manager.broadcast(payload)
            elif op == "lat":
                await paced(int(args[0]), float(args[1]), args[2])
    except WebSocketDisconnect:
        pass
    finally:
        await manager.disconnect(user, websocket)
