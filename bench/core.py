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


REPLAYED = 1000


class NullSocket:
    """A Transport whose writes complete at once."""

    accepted = True

    def __init__(
        self, subprotocols: tuple[str, ...] = (), query_string: bytes = b"", exp: float = 0
    ) -> None:
        from svc_infra.websocket.auth import WSPrincipal

        self.frames = 0
        self.scope = {"principal": WSPrincipal("u", claims={"exp": exp})} if exp else {}
        self.subprotocols = list(subprotocols)
        self.accepted = not subprotocols  # a v1 socket lets the manager accept it
        self.query_string = query_string
        self.last: Any = None

    async def accept(self, subprotocol: str | None = None) -> None:
        pass

    async def send(self, frame: Any) -> None:
        self.frames += 1
        self.last = frame

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


def new_manager(history: int, limits: bool = False) -> Any:
    from channels.layers import InMemoryChannelLayer

    from svc_infra.websocket import ConnectionManager, WebSocketConfig

    extra: dict[str, Any] = {}
    if limits:  # expiry timers (each socket's token expires in an hour), rate, cap
        extra = {"inbound_rate": 100.0, "inbound_burst": 100, "max_connections_per_user": 5}
    config = WebSocketConfig(history_size=history, **extra)
    return ConnectionManager(InMemoryChannelLayer(), config=config)


async def ours(
    sockets: list[NullSocket],
    payload: dict[str, str],
    history: int = 0,
    limits: bool = False,
    metrics: bool = False,
) -> float:
    manager = new_manager(history, limits)
    if metrics:  # the publish-time histogram, and a sync as a scrape would run it
        from prometheus_client import CollectorRegistry

        from svc_infra.websocket.metrics import ManagerMetrics

        exporter = ManagerMetrics(manager, CollectorRegistry())
    for i, sock in enumerate(sockets):
        await manager.connect(f"u{i}", sock)
    start = time.perf_counter()
    for _ in range(MESSAGES):
        await manager.broadcast(payload)
    if metrics:
        exporter.sync()
    elapsed = time.perf_counter() - start
    await manager.shutdown()
    return elapsed


async def one(kind: str) -> float:
    v1 = ("svc-infra.v1",) if kind == "history, v1" else ()
    exp = time.time() + 3600 if kind == "limits" else 0
    sockets = [NullSocket(v1, exp=exp) for _ in range(CLIENTS)]
    payload = {"d": "x" * (SIZE - 8)}
    gc.collect()
    if kind == "bare":
        elapsed = await bare(sockets, payload)
    elif kind == "limits":
        elapsed = await ours(sockets, payload, limits=True)
    elif kind == "metrics":
        elapsed = await ours(sockets, payload, metrics=True)
    else:
        elapsed = await ours(sockets, payload, history=0 if kind == "ours" else 1000)
    extra = 1 if v1 else 0  # the recovery control frame
    assert all(s.frames == MESSAGES + extra for s in sockets), "a delivery went missing"
    return elapsed


async def live_and_replayed() -> tuple[float, float]:
    """Seconds to deliver REPLAYED messages live to one v1 socket, and to replay them."""
    from svc_infra.websocket.wire import RECOVER_PARAM, encode_positions, split_frame

    manager = new_manager(REPLAYED)
    live = NullSocket(("svc-infra.v1",))
    await manager.connect("u", live)
    header, _ = split_frame(live.last)
    position = header["streams"]["user:u"]
    start = time.perf_counter()
    for i in range(REPLAYED):
        await manager.send_to_user("u", {"i": i})
    live_time = time.perf_counter() - start
    await manager.disconnect("u", live)
    # The same messages again, missed this time: replayed at the next connect.
    for i in range(REPLAYED):
        await manager.send_to_user("u", {"i": i})
    claim = {"user:u": (position["e"], position["o"] + REPLAYED)}
    query = f"{RECOVER_PARAM}={encode_positions(claim)}".encode()
    back = NullSocket(("svc-infra.v1",), query)
    start = time.perf_counter()
    await manager.connect("u", back)
    replay_time = time.perf_counter() - start
    assert back.frames == REPLAYED + 1, "the replay is incomplete"
    await manager.shutdown()
    return live_time, replay_time


async def main() -> None:
    if hasattr(os, "sched_setaffinity") and len(os.sched_getaffinity(0)) > 1:
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    times: dict[str, list[float]] = {
        "bare": [],
        "ours": [],
        "limits": [],
        "metrics": [],
        "history": [],
        "history, v1": [],
    }
    for _ in range(ROUNDS):  # interleaved: drift on a shared machine hits both
        for kind in times:
            times[kind].append(await one(kind))
    deliveries = CLIENTS * MESSAGES
    print(f"\nCore fan-out: {CLIENTS} sockets x {MESSAGES} broadcasts of {SIZE} B, in process")
    print(f"{'case':<14}{'ns/delivery':>14}{'min':>8}{'max':>8}")
    for kind, values in times.items():
        per = [v / deliveries * 1e9 for v in values]
        print(f"{kind:<14}{statistics.median(per):>14.0f}{min(per):>8.0f}{max(per):>8.0f}")
    median = {kind: statistics.median(values) for kind, values in times.items()}
    print(f"ours / bare loop: {median['ours'] / median['bare']:.2f}x the time")
    print(
        f"metrics on / off: {median['ours'] / median['metrics']:.2f}x the throughput;"
        " target >= 0.95"
    )
    print(
        f"limits on / off (expiry timers, rate buckets, cap): "
        f"{median['ours'] / median['limits']:.2f}x the throughput; target >= 0.95"
    )
    print(
        f"history on / off: {median['history'] / median['ours']:.2f}x (plain sockets),"
        f" {median['history, v1'] / median['ours']:.2f}x (v1 sockets); target <= 1.3"
    )
    pairs = [await live_and_replayed() for _ in range(ROUNDS)]
    live = statistics.median(p[0] for p in pairs)
    replay = statistics.median(p[1] for p in pairs)
    print(
        f"{REPLAYED} messages to one v1 socket: live {live * 1e3:.1f} ms,"
        f" replayed at reconnect {replay * 1e3:.1f} ms: {replay / live:.2f}x; target <= 1.2"
    )
