"""Framework-free control surface of the cluster test servers (FastAPI and Django).

Each server process exposes ``POST /ctl/<op>`` (JSON body) and ``GET /ctl/stats``;
both frameworks call :func:`control`, so a test drives any process the same way.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
from typing import Any

from svc_infra.websocket import ChannelLayerError, ConnectionManager

NAME = os.environ.get("CLUSTER_NAME", "server")
# The running pump (see "pump"), so "pump_wait" can await it.
_pumps: dict[str, asyncio.Task[int]] = {}


async def pump(manager: ConnectionManager, user: str, room: str, n: int, rate: float) -> int:
    """Send ``{"seq": i, "to": ...}`` to ``room``, ``user`` and everyone, ``n`` times at
    ``rate`` per second; a failed send (Redis down) is retried, never skipped."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    for i in range(n):
        for to, send in (
            ("room", lambda m: manager.broadcast_to_room(room, m)),
            ("user", lambda m: manager.send_to_user(user, m)),
            ("all", lambda m: manager.broadcast(m)),
        ):
            while True:
                try:
                    await send({"seq": i, "to": to, "from": NAME})
                    break
                except ChannelLayerError:
                    await asyncio.sleep(0.05)
        delay = start + (i + 1) / rate - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
    return n


async def control(manager: ConnectionManager, op: str, body: dict[str, Any]) -> tuple[int, Any]:
    """Run one manager call; return (HTTP status, JSON answer)."""
    try:
        if op == "send":
            await manager.send_to_user(body["user"], body["msg"])
        elif op == "broadcast":
            await manager.broadcast(body["msg"], exclude_user=body.get("exclude"))
        elif op == "room":
            await manager.broadcast_to_room(
                body["room"], body["msg"], exclude_user=body.get("exclude")
            )
        elif op == "join":
            await manager.join_room(body["user"], body["room"])
        elif op == "leave":
            await manager.leave_room(body["user"], body["room"])
        elif op == "disconnect":
            await manager.disconnect(body["user"])
        elif op == "burst":
            for i in range(int(body["n"])):
                await manager.send_to_user(body["user"], {"seq": i, "from": NAME})
        elif op == "stats":
            return 200, stats(manager, body)
        elif op == "pump":
            args = (str(body["user"]), str(body["room"]), int(body["n"]), float(body["rate"]))
            _pumps[str(body["name"])] = asyncio.ensure_future(pump(manager, *args))
        elif op == "pump_wait":
            return 200, {"sent": await _pumps.pop(str(body["name"]))}
        else:
            return 404, {"error": f"unknown op {op!r}"}
    except ChannelLayerError as exc:
        return 503, {"error": "ChannelLayerError", "operation": exc.operation}
    return 200, {"ok": True}


def stats(manager: ConnectionManager, query: dict[str, Any]) -> dict[str, Any]:
    """What the manager answers, as the tests compare it across processes."""
    room, user = query.get("room", ""), query.get("user", "")
    presence = manager.presence
    return {
        "name": NAME,
        "active_users": sorted(manager.active_users),
        "connection_count": manager.connection_count,
        "local": manager.local_connection_count,
        "room_count": manager.room_count,
        "room_users": sorted(manager.get_room_users(room)),
        "connected": manager.is_user_connected(user) if user else None,
        "user_servers": sorted(
            str(c.metadata.get("server")) for c in manager.get_user_connections(user)
        )
        if user
        else [],
        "lost": manager.stats.messages_lost,
        "layer_errors": manager.stats.layer_errors,
        "healthy": presence.healthy if presence is not None else None,
        "resyncs": presence.resyncs if presence is not None else 0,
        "tasks": len(asyncio.all_tasks()),
        "counters": {
            k: v for k, v in dataclasses.asdict(manager.stats).items() if isinstance(v, int)
        },
    }
