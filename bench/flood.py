"""One client floods, twenty echo: their p99 with and without the inbound rate limit.

The server (uvicorn + FastAPI + ConnectionManager, ``bench/apps/echo_manager.py``)
is pinned to one core, this load generator to the other. Twenty well-behaved
clients each send a timestamped message every 50 ms and measure the echo's round
trip for SECONDS; one client sends as fast as it can meanwhile. Without a limit the
flood takes the server's core; with ``WS_INBOUND_RATE=50`` it is closed with 4429
and the others keep their latency. ROUNDS interleaved runs; median of the p99s.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import statistics
import sys
import time

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from bench.servers import server_on_fd

CLIENTS = 20
SECONDS = 4.0
ROUNDS = 3
PERIOD = 0.05
UVICORN = [sys.executable, "-m", "uvicorn", "--log-level", "warning"]


def _pin(cores: set[int]) -> list[str]:
    return ["taskset", "-c", ",".join(map(str, sorted(cores)))]


async def calm(base: str, user: str, rtts: list[float], stop: asyncio.Event) -> None:
    async with connect(f"{base}/ws/{user}", compression=None) as ws:
        while not stop.is_set():
            sent = time.perf_counter()
            await ws.send(str(sent))
            await ws.recv()
            rtts.append(time.perf_counter() - sent)
            await asyncio.sleep(PERIOD)


async def flood(base: str, stop: asyncio.Event) -> int:
    sent = 0
    with contextlib.suppress(ConnectionClosed, OSError):
        async with connect(f"{base}/ws/flooder", compression=None, max_queue=None) as ws:
            while not stop.is_set():
                await ws.send("x" * 100)
                sent += 1
                if sent % 100 == 0:
                    await asyncio.sleep(0)
    return sent


async def one(limited: bool, server_core: set[int]) -> float:
    env = {"WS_INBOUND_RATE": "50", "WS_INBOUND_BURST": "50"} if limited else {}
    args = [*_pin(server_core), *UVICORN, "bench.apps.echo_manager:app"]
    async with server_on_fd(lambda fd: [*args, "--fd", fd], "/ws/probe", env) as (base, _):
        rtts: list[float] = []
        stop = asyncio.Event()
        tasks = [asyncio.create_task(calm(base, f"c{i}", rtts, stop)) for i in range(CLIENTS)]
        await asyncio.sleep(0.5)
        rtts.clear()  # measure from here, with the flood on
        flooder = asyncio.create_task(flood(base, stop))
        await asyncio.sleep(SECONDS)
        stop.set()
        await asyncio.gather(*tasks, flooder)
    return statistics.quantiles(rtts, n=100)[98] * 1000


async def main() -> None:
    cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    server_core = {cores[0]} if len(cores) > 1 else set(cores)
    if len(cores) > 1:
        os.sched_setaffinity(0, set(cores[1:]))
    results: dict[bool, list[float]] = {False: [], True: []}
    for _ in range(ROUNDS):
        for limited in (False, True):
            results[limited].append(await one(limited, server_core))
    print(
        f"\nEcho p99 of {CLIENTS} clients while one floods, {SECONDS:g} s, ms (median of {ROUNDS})"
    )
    for limited, label in ((False, "no limit"), (True, "WS_INBOUND_RATE=50")):
        values = results[limited]
        runs = ", ".join(f"{v:.2f}" for v in values)
        print(f"{label:<22}{statistics.median(values):>8.2f}   runs: {runs}")
