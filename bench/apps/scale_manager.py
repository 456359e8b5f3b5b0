"""The scale benchmark's server: FastAPI + ConnectionManager on Redis, with a stats route.

Configured by the ``WS_*`` variables (``WS_REDIS_URL``, ``WS_PRESENCE_TTL``), as
users do. A client at ``/ws/{tag}`` becomes user ``{tag}-{n}`` (``n`` counts the
connections of this process), so one URL serves any number of distinct users.
Text commands: ``bcast <count> <size>`` broadcasts ``count`` messages of
``size`` bytes to everyone.

``GET /stats``: what this process sees of the cluster (JSON): connection counts,
active users and a digest of their ids (processes that agree on the digest and
on the count see the same users), and the presence counters.

Warnings and errors go to stderr and, when ``BENCH_SCALE_LOG`` names a file, to
that file too (the benchmark reports them).
"""

import hashlib
import itertools
import logging
import os
import resource

from fastapi import FastAPI, WebSocket, WebSocketDisconnect

from svc_infra.websocket import easy_websocket_manager

_, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (_hard, _hard))

if os.environ.get("BENCH_SCALE_LOG"):
    _handler = logging.FileHandler(os.environ["BENCH_SCALE_LOG"])
    _handler.setLevel(logging.WARNING)
    _handler.setFormatter(
        logging.Formatter(f"%(created).3f [{os.getpid()}] %(levelname)s %(name)s: %(message)s")
    )
    _stderr = logging.StreamHandler()
    _stderr.setLevel(logging.WARNING)
    _root = logging.getLogger()
    _root.addHandler(_handler)
    _root.addHandler(_stderr)  # a handler on root turns off the last-resort one
    logging.getLogger("uvicorn").addHandler(_handler)  # uvicorn does not propagate

app = FastAPI()
manager = easy_websocket_manager(app)
counter = itertools.count()


@app.get("/stats")
async def stats() -> dict[str, object]:
    users = manager.active_users
    presence = manager.ops.presence
    return {
        "pid": os.getpid(),
        "connections": manager.connection_count,
        "local": manager.local_connection_count,
        "users": len(users),
        "digest": hashlib.sha1("\n".join(sorted(users)).encode()).hexdigest()[:16],
        "presence_errors": presence.errors if presence else None,
        "resyncs": presence.resyncs if presence else None,
        "reloads": presence.reloads if presence else None,
        "full_loads": presence.full_loads if presence else None,
        "healthy": presence.healthy if presence else None,
        "opened": manager.stats.connections_opened,
        "layer_errors": manager.stats.layer_errors,
        "messages_lost": manager.stats.messages_lost,
        "frames_dropped": manager.stats.frames_dropped,
    }


@app.websocket("/ws/{tag}")
async def endpoint(websocket: WebSocket, tag: str) -> None:
    user = f"{tag}-{next(counter)}"
    await manager.connect(user, websocket)
    try:
        async for message in websocket.iter_text():
            op, *args = message.split()
            if op == "bcast":
                payload = "x" * int(args[1])
                for _ in range(int(args[0])):
                    await manager.broadcast(payload)
    except WebSocketDisconnect:
        pass
    finally:
        await manager.disconnect(user, websocket)
