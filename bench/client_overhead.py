"""Client overhead: WebSocketClient against a bare ``websockets`` connection.

Both clients talk, in the same run and alternating rounds, to one echo server
running in a separate process on 127.0.0.1. Each round sends N messages of
100 bytes in windows of W (send W, then receive W) and times the whole exchange.
The result is the ratio of throughputs (ours / bare), so the noise of a shared
machine largely cancels. Target: >= 0.9.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time

from websockets.asyncio.client import connect

from svc_infra.websocket import WebSocketClient, WebSocketConfig

MESSAGES = 20_000
WINDOW = 100
ROUNDS = 5
PAYLOAD = "x" * 100

SERVER = """
import asyncio, sys
from websockets.asyncio.server import serve

async def echo(ws):
    async for m in ws:
        await ws.send(m)

async def main():
    async with serve(echo, "127.0.0.1", 0, compression=None) as server:
        print(server.sockets[0].getsockname()[1], flush=True)
        await asyncio.get_running_loop().create_future()

asyncio.run(main())
"""


async def _exchange(send: object, recv: object) -> float:
    start = time.perf_counter()
    for _ in range(MESSAGES // WINDOW):
        for _ in range(WINDOW):
            await send(PAYLOAD)  # type: ignore[operator]
        for _ in range(WINDOW):
            await recv()  # type: ignore[operator]
    return MESSAGES / (time.perf_counter() - start)


async def bare(url: str) -> float:
    # The server negotiates no compression, so both clients send the same frames.
    async with connect(url, compression=None, ping_interval=None) as ws:
        return await _exchange(ws.send, ws.recv)


async def ours(url: str) -> float:
    config = WebSocketConfig(ping_interval=None)
    async with WebSocketClient(url, config=config) as ws:
        return await _exchange(ws.send, ws.recv)


async def main() -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", SERVER, stdout=asyncio.subprocess.PIPE
    )
    assert proc.stdout is not None
    try:
        async with asyncio.timeout(30):
            port = int((await proc.stdout.readline()).decode())
        url = f"ws://127.0.0.1:{port}/"
        results: dict[str, list[float]] = {"bare websockets": [], "WebSocketClient": []}
        for _ in range(ROUNDS):
            async with asyncio.timeout(120):
                results["bare websockets"].append(await bare(url))
                results["WebSocketClient"].append(await ours(url))
    finally:
        proc.terminate()
        await proc.wait()

    base = statistics.median(results["bare websockets"])
    print(f"\nClient round trips: {MESSAGES} x {len(PAYLOAD)} B, window {WINDOW}, {ROUNDS} rounds")
    print(f"{'client':<18}{'median msg/s':>14}{'ratio':>8}")
    for name, values in results.items():
        median = statistics.median(values)
        print(f"{name:<18}{median:>14,.0f}{median / base:>8.2f}")
