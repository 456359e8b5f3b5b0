"""Broadcast fan-out and memory per idle connection, against baselines in the same run.

Fan-out: 500 clients, 100 messages of 100 bytes broadcast by the server, for

1. a bare ``websockets`` server calling ``websockets.broadcast`` (the ceiling),
2. stock Channels on uvicorn: a consumer per socket, ``group_send`` to a group,
   in-memory layer,
3. our ConnectionManager on uvicorn + FastAPI (in-memory layer).

Deliveries/s = clients x messages / time from the trigger to the last message
received. Targets: ours >= 0.7x bare, >= 10x stock Channels.

Memory: server RSS growth over 1,000 idle connections, ours against the same
FastAPI app without the manager. Target: <= 4 KiB per connection above it.
"""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

from websockets.asyncio.client import ClientConnection, connect

from bench.servers import server_on_fd

CLIENTS = 500
MESSAGES = 100
SIZE = 100
ROUNDS = 3
IDLE = 1000

UVICORN = [sys.executable, "-m", "uvicorn", "--log-level", "warning", "--backlog", "4096"]
DAPHNE = [sys.executable, "-m", "daphne", "-v", "0"]
SERVERS = {
    "bare websockets": ([sys.executable, "-m", "bench.apps.bare"], "/", {}),
    "stock Channels": ([*UVICORN, "bench.apps.channels_stock:app"], "/ws", {}),
    "ConnectionManager": ([*UVICORN, "bench.apps.fastapi_manager:app"], "/ws", {}),
    "Channels+manager": ([*UVICORN, "bench.apps.channels_managed:app"], "/ws", {}),
    "stock Channels/Daphne": ([*DAPHNE, "bench.apps.channels_stock:app"], "/ws", {}),
    "Channels+manager/Daphne": ([*DAPHNE, "bench.apps.channels_managed:app"], "/ws", {}),
    "FastAPI, no manager": (
        [*UVICORN, "bench.apps.fastapi_manager:app"],
        "/ws",
        {"BENCH_NO_MANAGER": "1"},
    ),
}


@contextlib.asynccontextmanager
async def server(name: str) -> AsyncIterator[tuple[str, int]]:
    """Start a server on a socket bound here; yield its URL and pid."""
    cmd, path, env = SERVERS[name]

    def args(fd: str) -> list[str]:
        if "bench.apps.bare" in cmd:
            return [*cmd, fd]
        if "daphne" in cmd:
            return [*cmd[:-1], "--fd", fd, cmd[-1]]
        return [*cmd, "--fd", fd]

    async with server_on_fd(args, path, env) as (base, proc):
        yield base + path, proc.pid


async def open_clients(url: str, n: int) -> list[ClientConnection]:
    clients: list[ClientConnection] = []
    for start in range(0, n, 50):
        batch = range(start, min(start + 50, n))
        clients += await asyncio.gather(
            *(connect(url, compression=None, ping_interval=None, max_queue=None) for _ in batch)
        )
    return clients


async def fan_out(url: str) -> float:
    """Deliveries per second, median of ROUNDS."""
    clients = await open_clients(url, CLIENTS)
    await asyncio.sleep(0.5)  # let the server finish registering every client
    results = []
    try:
        for _ in range(ROUNDS):

            async def drain(ws: ClientConnection) -> None:
                for _ in range(MESSAGES):
                    await ws.recv()

            receivers = [asyncio.create_task(drain(ws)) for ws in clients]
            start = time.perf_counter()
            await clients[0].send(f"{MESSAGES} {SIZE}")
            async with asyncio.timeout(300):
                await asyncio.gather(*receivers)
            results.append(CLIENTS * MESSAGES / (time.perf_counter() - start))
    finally:
        await asyncio.gather(*(ws.close() for ws in clients))
    return statistics.median(results)


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


async def idle_memory(name: str) -> float:
    """Server RSS growth per idle connection, in bytes."""
    async with server(name) as (url, pid):
        warm = await open_clients(url, 50)  # warm up code paths and allocator
        await asyncio.gather(*(ws.close() for ws in warm))
        await asyncio.sleep(0.5)
        before = rss_kib(pid)
        clients = await open_clients(url, IDLE)
        await asyncio.sleep(1.0)
        after = rss_kib(pid)
        await asyncio.gather(*(ws.close() for ws in clients))
    return (after - before) * 1024 / IDLE


async def main() -> None:
    rates: dict[str, float] = {}
    for name in (
        "bare websockets",
        "stock Channels",
        "ConnectionManager",
        "Channels+manager",
        "stock Channels/Daphne",
        "Channels+manager/Daphne",
    ):
        async with server(name) as (url, _):
            rates[name] = await fan_out(url)
    bare, stock = rates["bare websockets"], rates["stock Channels"]
    print(f"\nBroadcast: {CLIENTS} clients x {MESSAGES} messages of {SIZE} B, median of {ROUNDS}")
    print("(uvicorn unless marked /Daphne; 'vs Channels' compares with stock Channels")
    print(" on the same server)")
    print(f"{'server':<26}{'deliveries/s':>14}{'vs bare':>9}{'vs Channels':>13}")
    for name, rate in rates.items():
        base = rates["stock Channels/Daphne"] if name.endswith("/Daphne") else stock
        print(f"{name:<26}{rate:>14,.0f}{rate / bare:>9.2f}{rate / base:>13.1f}")
    ours = rates["ConnectionManager"]
    print(
        f"targets: FastAPI ours/bare >= 0.7 ({ours / bare:.2f}), ours/Channels >= 10 "
        f"({ours / stock:.1f}); Django ours/Channels >= 5 on uvicorn "
        f"({rates['Channels+manager'] / stock:.1f}) and Daphne "
        f"({rates['Channels+manager/Daphne'] / rates['stock Channels/Daphne']:.1f})"
    )

    plain = await idle_memory("FastAPI, no manager")
    managed = await idle_memory("ConnectionManager")
    print(f"\nMemory per idle connection over {IDLE} connections (server RSS growth)")
    print(f"{'FastAPI, no manager':<26}{plain:>10,.0f} B")
    print(f"{'ConnectionManager':<26}{managed:>10,.0f} B")
    print(f"manager overhead: {managed - plain:,.0f} B per connection (target <= 4,096)")
