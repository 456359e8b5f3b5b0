"""Cross-process fan-out and latency on Redis, against stock Channels in the same run.

Fan-out: two server processes with 250 clients each; a client of the first asks
it to broadcast 100 messages of 100 bytes; every client of both processes must
receive all of them. The clients only count frames (``bench/rawclient.py``):
500 ``websockets`` clients in one process saturate a core near 100,000
messages/s and would hide the servers' difference. Deliveries/s = 500 x 100 /
time from the trigger to the last message received (median of ROUNDS), for

1. stock Channels consumers on channels_redis' core layer (a channel per socket,
   ``group_send`` to one group), under uvicorn;
2. ours (FastAPI + ConnectionManager) on the core layer;
3. ours on the pub/sub layer.

Target: ours >= 10x stock Channels.

Latency: ``send_to_user`` from process A to a user connected to process B at a
steady 1,000 messages/s for LATENCY_SECONDS; p50 and p99 of (received - sent),
on both layers, and to a user of process A itself; the baseline is stock
Channels: a consumer in A ``group_send``s to a group whose one member is a
consumer in B, at the same rate, on the core layer.

Redis: database 14 of the server at ``BENCH_REDIS_URL`` (default
redis://127.0.0.1:6379), flushed before and after each case.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import statistics
import sys
import time
from collections.abc import AsyncIterator

from websockets.asyncio.client import connect

from bench.rawclient import FrameCounter, open_counter
from bench.servers import flush_db, server_on_fd

REDIS = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379").rstrip("/") + "/14"
PER_PROCESS = 250
MESSAGES = 100
SIZE = 100
ROUNDS = 3
RATE = 1000
LATENCY_SECONDS = 5

# Pings every 10 minutes: the frame-counting clients do not answer them.
UVICORN = [
    *(sys.executable, "-m", "uvicorn", "--log-level", "warning", "--backlog", "4096"),
    *("--ws-ping-interval", "600", "--ws-ping-timeout", "600"),
    *("--timeout-graceful-shutdown", "5"),
]
OURS = "bench.apps.cluster_manager:app"
STOCK = "bench.apps.channels_stock:app"


def flush() -> None:
    flush_db(REDIS)


@contextlib.asynccontextmanager
async def server(app: str, env: dict[str, str]) -> AsyncIterator[str]:
    """Start uvicorn on a socket bound here; yield its ws:// base URL."""
    probe = "/ws" if app == STOCK else "/ws/probe"
    async with server_on_fd(lambda fd: [*UVICORN, app, "--fd", fd], probe, env) as (base, _):
        yield base


async def open_clients(urls: list[str]) -> list[FrameCounter]:
    clients: list[FrameCounter] = []
    for start in range(0, len(urls), 50):
        clients += await asyncio.gather(*(open_counter(url) for url in urls[start : start + 50]))
    return clients


async def fan_out(app: str, env: dict[str, str]) -> float:
    """Deliveries per second across two processes, median of ROUNDS."""
    flush()
    try:
        async with server(app, env) as a, server(app, env) as b:
            urls = [
                f"{base}/ws" if app == STOCK else f"{base}/ws/u{i}-{j}"
                for i, base in enumerate((a, b))
                for j in range(PER_PROCESS)
            ]
            clients = await open_clients(urls)
            await asyncio.sleep(1.0)  # let both servers finish registering
            command = f"{MESSAGES} {SIZE}" if app == STOCK else f"bcast {MESSAGES} {SIZE}"
            results = []
            try:
                for _ in range(ROUNDS):
                    done = [c.wait_for(c.frames + MESSAGES) for c in clients]
                    start = time.perf_counter()
                    clients[0].send_text(command)
                    async with asyncio.timeout(600):
                        await asyncio.gather(*done)
                    results.append(len(clients) * MESSAGES / (time.perf_counter() - start))
            finally:
                for c in clients:
                    c.close()
    finally:
        flush()
    return statistics.median(results)


async def latency(app: str, env: dict[str, str], remote: bool) -> tuple[float, float]:
    """p50 and p99 of the latency of messages to one user, in ms, at RATE messages/s."""
    flush()
    count = RATE * LATENCY_SECONDS
    ours = app == OURS
    try:
        async with (
            server(app, env) as a,
            server(app, env) as b,
            connect(f"{a}/ws/sender" if ours else f"{a}/ws", compression=None) as sender,
            connect(f"{b if remote else a}/ws/target", compression=None) as target,
        ):
            await asyncio.sleep(1.0)  # presence and groups settle
            await sender.send(f"lat {count} {RATE} target" if ours else f"lat {count} {RATE}")
            delays = []
            async with asyncio.timeout(LATENCY_SECONDS * 10):
                for _ in range(count):
                    message = json.loads(await target.recv())
                    delays.append((time.monotonic() - message["t"]) * 1000)
    finally:
        flush()
    delays.sort()
    return delays[len(delays) // 2], delays[int(len(delays) * 0.99)]


async def main() -> None:
    core = {"WS_REDIS_URL": REDIS, "WS_REDIS_LAYER": "core"}
    pubsub = {"WS_REDIS_URL": REDIS, "WS_REDIS_LAYER": "pubsub"}
    rates = {
        "stock Channels (core)": await fan_out(STOCK, {"BENCH_REDIS_URL": REDIS}),
        "ours (core)": await fan_out(OURS, core),
        "ours (pub/sub)": await fan_out(OURS, pubsub),
    }
    stock = rates["stock Channels (core)"]
    print(
        f"\nCross-process broadcast: 2 processes x {PER_PROCESS} clients, {MESSAGES} messages"
        f" of {SIZE} B from one process, channels_redis, median of {ROUNDS}"
    )
    print(f"{'server':<24}{'deliveries/s':>14}{'vs Channels':>13}")
    for name, rate in rates.items():
        print(f"{name:<24}{rate:>14,.0f}{rate / stock:>13.1f}")
    print(f"target: ours/Channels >= 10 (core {rates['ours (core)'] / stock:.1f})")

    print(f"\nLatency to one user at {RATE} msg/s for {LATENCY_SECONDS} s (ms)")
    print(f"{'case':<40}{'p50':>8}{'p99':>8}")
    stock_env = {"BENCH_REDIS_URL": REDIS}
    history = {**core, "WS_HISTORY_SIZE": "1000"}
    for label, app, env, remote in (
        ("stock Channels group_send, core, other", STOCK, stock_env, True),
        ("ours send_to_user, core, other process", OURS, core, True),
        ("  same, history on (WS_HISTORY_SIZE=1000)", OURS, history, True),
        ("ours send_to_user, pub/sub, other", OURS, pubsub, True),
        ("ours send_to_user, core, same process", OURS, core, False),
    ):
        p50, p99 = await latency(app, env, remote)
        print(f"{label:<40}{p50:>8.2f}{p99:>8.2f}")
