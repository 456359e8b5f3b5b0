"""In-process fan-out cost of the manager core, against a bare loop over the same sockets.

No network and no load generator: ``CLIENTS`` in-memory sockets whose ``send`` returns
at once, ``MESSAGES`` broadcasts of ``SIZE`` bytes. What is measured is the manager's
own CPU per delivery (encode once, fan out, outbox, stats), which the socket
benchmarks cannot isolate: there the frame-counting client and the server share two
cores. The baseline loops over the same sockets with ``await send(frame)``; ours is
``ConnectionManager.broadcast`` on the in-memory layer. Pinned to one core when the
machine allows it; ROUNDS interleaved runs, median and spread.
"""

from __future__ import annotations

import gc
import os
import statistics
import time
from typing import Any

CLIENTS = 500
MESSAGES = 200
SIZE = 100
ROUNDS = 7


class NullSocket:
    """A Transport whose writes complete at once."""

    accepted = True
    subprotocols: list[str] = []  # noqa: RUF012 - read-only

    def __init__(self) -> None:
        self.frames = 0

    async def accept(self, subprotocol: str | None = None) -> None:
        pass

    async def send(self, frame: Any) -> None:
        self.frames += 1

    async def close(self, code: int = 1000, reason: str = "") -> None:
        pass


async def bare(sockets: list[NullSocket], payload: dict[str, str]) -> float:
    import json

    start = time.perf_counter()
    for _ in range(MESSAGES):
        frame = json.dumps(payload, separators=(",", ":"))
        for sock in sockets:
            await sock.send(frame)
    return time.perf_counter() - start


async def ours(sockets: list[NullSocket], payload: dict[str, str]) -> float:
    from channels.layers import InMemoryChannelLayer

    from svc_infra.websocket import ConnectionManager

    manager = ConnectionManager(InMemoryChannelLayer())
    for i, sock in enumerate(sockets):
        await manager.connect(f"u{i}", sock)
    start = time.perf_counter()
    for _ in range(MESSAGES):
        await manager.broadcast(payload)
    elapsed = time.perf_counter() - start
    await manager.shutdown()
    return elapsed


async def one(kind: str) -> float:
    sockets = [NullSocket() for _ in range(CLIENTS)]
    payload = {"d": "x" * (SIZE - 8)}
    gc.collect()
    elapsed = await (bare if kind == "bare" else ours)(sockets, payload)
    assert all(s.frames == MESSAGES for s in sockets), "a delivery went missing"
    return elapsed


async def main() -> None:
    if hasattr(os, "sched_setaffinity") and len(os.sched_getaffinity(0)) > 1:
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    times: dict[str, list[float]] = {"bare": [], "ours": []}
    for _ in range(ROUNDS):  # interleaved: drift on a shared machine hits both
        for kind in times:
            times[kind].append(await one(kind))
    deliveries = CLIENTS * MESSAGES
    print(f"\nCore fan-out: {CLIENTS} sockets x {MESSAGES} broadcasts of {SIZE} B, in process")
    print(f"{'case':<12}{'ns/delivery':>14}{'min':>8}{'max':>8}")
    for kind, values in times.items():
        per = [v / deliveries * 1e9 for v in values]
        print(f"{kind:<12}{statistics.median(per):>14.0f}{min(per):>8.0f}{max(per):>8.0f}")
    ratio = statistics.median(times["ours"]) / statistics.median(times["bare"])
    print(f"ours / bare loop: {ratio:.2f}x the time")
