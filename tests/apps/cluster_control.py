"""Framework-free control surface of the cluster test servers (FastAPI and Django).

Each server process exposes ``POST /ctl/<op>`` (JSON body) and ``GET /ctl/stats``;
both frameworks call :func:`control`, so a test drives any process the same way.
With ``CLUSTER_TRACEMALLOC=1`` (or a comma list of ``CLUSTER_NAME`` values) the
process traces its allocations, and ``GET /ctl/heap`` answers what grew most since
its first call (for a leak hunt in a soak).
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import tracemalloc
from typing import Any

from svc_infra.websocket import ChannelLayerError, ConnectionManager

NAME = os.environ.get("CLUSTER_NAME", "server")
# The running pump (see "pump"), so "pump_wait" can await it.
_pumps: dict[str, asyncio.Task[int]] = {}
# Pumps asked to stop (see "pump_stop"): they finish the tick in hand, then return.
_stopping: set[str] = set()
_heap: list[tracemalloc.Snapshot] = []  # the first snapshot of "heap"
# "1": every process; else the names of the processes that trace (a comma list).
_traced = os.environ.get("CLUSTER_TRACEMALLOC", "")
if _traced == "1" or NAME in _traced.split(","):
    tracemalloc.start(8)


async def pump(
    manager: ConnectionManager,
    user: str,
    room: str,
    n: int,
    rate: float,
    base: int = 0,
    name: str = "",
) -> int:
    """Send ``{"seq": base + i, "to": ...}`` to ``room``, ``user`` and everyone, ``n``
    times at ``rate`` per second; a failed send (Redis down) is retried, never
    skipped. Returns how many ticks went out (fewer than ``n`` if stopped)."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    for i in range(n):
        if name in _stopping:
            _stopping.discard(name)
            return i
        i += base
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
        delay = start + (i - base + 1) / rate - loop.time()
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
        elif op == "cluster":
            return 200, await cluster(manager, body)
        elif op == "pump":
            name = str(body["name"])
            args = (str(body["user"]), str(body["room"]), int(body["n"]), float(body["rate"]))
            base = int(body.get("base", 0))
            _pumps[name] = asyncio.ensure_future(pump(manager, *args, base=base, name=name))
        elif op == "pump_stop":
            _stopping.add(str(body["name"]))
            return 200, {"sent": await _pumps.pop(str(body["name"]))}
        elif op == "heap":
            return 200, heap(int(body.get("top", 15)))
        elif op == "pump_wait":
            return 200, {"sent": await _pumps.pop(str(body["name"]))}
        else:
            return 404, {"error": f"unknown op {op!r}"}
    except ChannelLayerError as exc:
        return 503, {"error": "ChannelLayerError", "operation": exc.operation}
    return 200, {"ok": True}


def heap(top: int) -> dict[str, Any]:
    """The allocation sites that grew most since the first call (by traceback)."""
    if not tracemalloc.is_tracing():
        return {"error": "start the server with CLUSTER_TRACEMALLOC=1"}
    snapshot = tracemalloc.take_snapshot().filter_traces(
        [tracemalloc.Filter(False, tracemalloc.__file__)]
    )
    if not _heap:
        _heap.append(snapshot)
    diffs = snapshot.compare_to(_heap[0], "traceback")[:top]
    return {
        "traced": tracemalloc.get_traced_memory()[0],
        "growth": [
            {"size": d.size_diff, "count": d.count_diff, "where": d.traceback.format()[-8:]}
            for d in diffs
        ],
    }


async def cluster(manager: ConnectionManager, query: dict[str, Any]) -> dict[str, Any]:
    """What ``manager.cluster`` answers (read from Redis in the index mode)."""
    view = manager.cluster
    connections, users, rooms = await view.counts()
    room, user = str(query.get("room", "")), str(query.get("user", ""))
    return {
        "name": NAME,
        "counts": [connections, users, rooms],
        "users": sorted([u async for u in view.iter_users(count=100)]),
        "room_users": sorted([u async for u in view.iter_room_users(room, count=100)]),
        "user_servers": sorted(
            str(c.metadata.get("server")) for c in await view.user_connections(user)
        )
        if user
        else [],
    }


def stats(manager: ConnectionManager, query: dict[str, Any]) -> dict[str, Any]:
    """What the manager answers, as the tests compare it across processes."""
    room, user = query.get("room", ""), query.get("user", "")
    presence = manager.ops.presence
    return {
        "name": NAME,
        "channel": manager.ops.channel_name,
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
