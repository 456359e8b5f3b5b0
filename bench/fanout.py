"""Pinned fan-out: ours against the raw ASGI loop on the same uvicorn, and bare websockets.

The server runs on core 0 (``taskset -c 0``), this process and its frame-counting
clients (:mod:`bench.rawclient`) on core 1, so the server is measured and not its load
generator. Baselines, in the same run:

- ``raw ASGI``: :mod:`bench.apps.raw_asgi`, a loop over the ``send`` callables of the
  same uvicorn: the ceiling of any app on that server;
- ``bare websockets``: :mod:`bench.apps.bare`, ``websockets.broadcast`` on its own
  server (no ASGI at all);
- ``FastAPI, no manager``: the same FastAPI app without the manager (the memory and
  connect-time baseline).

Two scenarios:

1. ``CLIENTS`` clients x ``MESSAGES`` broadcasts of ``SIZE`` bytes. The servers run side
   by side (idle ones cost nothing) and the rounds interleave them: bare, raw, ours,
   then the next rotation. Target: ours >= 0.9x raw ASGI.
2. ``MANY`` clients on one process, ``MANY_MESSAGES`` broadcasts, per round a fresh
   server of each kind in rotated order: the connect time (``IN_FLIGHT`` handshakes at
   a time), server RSS growth per connection, and broadcast-to-all time. Targets:
   broadcast <= 1.2x raw ASGI's time; memory <= FastAPI, no manager + 2 KiB; connect
   storm on Redis <= 1.25x in memory.

Each figure is the median of ``ROUNDS`` with its spread (min-max); ratios are taken
per round, then their median, so a noisy round moves both sides of it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import statistics
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

from bench.rawclient import FrameCounter, open_counter
from bench.servers import flush_db, private_redis, server_on_fd

CLIENTS = int(os.environ.get("BENCH_CLIENTS", 500))
MESSAGES = 100
SIZE = 100
ROUNDS = int(os.environ.get("BENCH_ROUNDS", 5))
MANY = int(os.environ.get("BENCH_MANY", 10_000))
MANY_MESSAGES = 10
MANY_ROUNDS = int(os.environ.get("BENCH_MANY_ROUNDS", 3))
IN_FLIGHT = 200
#: Where "ours on Redis" keeps its layer: a private redis-server pinned to the
#: clients' core (started by main()), so that Redis' work does not land on the
#: server's core; BENCH_REDIS_URL to use another (database 13, flushed).
REDIS = os.environ.get("BENCH_REDIS_URL", "").rstrip("/") + "/13"

SERVER_CORE, CLIENT_CORE = 0, 1
UVICORN = [
    *(sys.executable, "-m", "uvicorn", "--log-level", "warning", "--backlog", "4096"),
    # The frame-counting clients do not answer pings.
    *("--ws-ping-interval", "600", "--ws-ping-timeout", "600"),
    *("--timeout-graceful-shutdown", "5"),
]
SERVERS: dict[str, tuple[list[str], dict[str, str]]] = {
    "bare websockets": ([sys.executable, "-m", "bench.apps.bare"], {}),
    "raw ASGI": ([*UVICORN, "bench.apps.raw_asgi:app"], {}),
    "ours": ([*UVICORN, "bench.apps.fastapi_manager:app"], {}),
    "ours on Redis": ([*UVICORN, "bench.apps.fastapi_manager:app"], {"WS_REDIS_URL": ""}),
    "FastAPI, no manager": (
        [*UVICORN, "bench.apps.fastapi_manager:app"],
        {"BENCH_NO_MANAGER": "1"},
    ),
}
PATHS = {"bare websockets": "/", "raw ASGI": "/"}


#: Whether server and clients can each have a core of their own (read once: main()
#: pins this process to one core).
PINNED = len(os.sched_getaffinity(0)) >= 2


@contextlib.asynccontextmanager
async def server(name: str) -> AsyncIterator[tuple[str, int]]:
    """Start ``name`` on core 0; yield its URL and pid."""
    cmd, env = SERVERS[name]
    if "WS_REDIS_URL" in env:
        env = {**env, "WS_REDIS_URL": REDIS}
    pin = ["taskset", "-c", str(SERVER_CORE)] if PINNED else []

    def args(fd: str) -> list[str]:
        return [*pin, *cmd, fd] if name == "bare websockets" else [*pin, *cmd, "--fd", fd]

    path = PATHS.get(name, "/ws")
    if "WS_REDIS_URL" in env:
        flush()
    try:
        async with server_on_fd(args, path, env) as (base, proc):
            yield base + path, proc.pid
    finally:
        if "WS_REDIS_URL" in env:
            flush()


def flush() -> None:
    flush_db(REDIS)


async def open_clients(
    url: str, n: int, protocol: type[FrameCounter] = FrameCounter
) -> list[FrameCounter]:
    """Open ``n`` counting clients (``protocol``), ``IN_FLIGHT`` handshakes at a time."""
    clients: list[FrameCounter] = []
    pending = iter(range(n))
    failures: list[BaseException] = []

    async def worker() -> None:
        for _ in pending:
            try:
                clients.append(await open_counter(url, protocol))
            except OSError as exc:  # pragma: no cover - reported below
                failures.append(exc)

    async with asyncio.timeout(300):
        await asyncio.gather(*(worker() for _ in range(IN_FLIGHT)))
    if failures:
        raise RuntimeError(f"{len(failures)} of {n} connections failed: {failures[0]!r}")
    return clients


async def settle(pid: int) -> None:
    """Wait until the server's CPU time stops moving (it has registered every client)."""
    ticks = cpu_ticks(pid)
    async with asyncio.timeout(60):
        while True:
            await asyncio.sleep(0.2)
            now = cpu_ticks(pid)
            if now - ticks <= 1:
                return
            ticks = now


def cpu_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


async def broadcast_time(
    clients: list[FrameCounter], messages: int, pid: int, size: int = SIZE
) -> tuple[float, float]:
    """Seconds from the trigger to the last of ``messages`` frames of ``size`` bytes
    on every client, and the server's CPU seconds in that time."""
    done = [c.wait_for(c.frames + messages) for c in clients]
    cpu = cpu_ns(pid)
    start = time.perf_counter()
    clients[0].send_text(f"{messages} {size}")
    async with asyncio.timeout(300):
        await asyncio.gather(*done)
    return time.perf_counter() - start, (cpu_ns(pid) - cpu) / 1e9


async def warm_up(clients: list[FrameCounter], pid: int) -> None:
    """One broadcast parsed frame by frame, which gives each client the frame size;
    then the clients count bytes (see :meth:`FrameCounter.count_bytes`)."""
    await broadcast_time(clients, 1, pid)
    for c in clients:
        c.count_bytes()


def cpu_ns(pid: int) -> int:
    """CPU time of every thread of ``pid`` in ns (schedstat: finer than clock ticks)."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(FileNotFoundError):
            total += int((task / "schedstat").read_text().split()[0])
    return total


def spread(values: list[float], fmt: str = "{:,.0f}") -> str:
    low, mid, high = (fmt.format(f(values)) for f in (min, statistics.median, max))
    return f"{mid} ({low}-{high})"


def ratios(a: list[float], b: list[float]) -> str:
    r = [x / y for x, y in zip(a, b, strict=True)]
    return f"{statistics.median(r):.2f} ({min(r):.2f}-{max(r):.2f})"


async def fan_out() -> None:
    names = ["bare websockets", "raw ASGI", "ours"]
    rates: dict[str, list[float]] = {name: [] for name in names}
    cpu: dict[str, list[float]] = {name: [] for name in names}
    deliveries = CLIENTS * MESSAGES
    async with contextlib.AsyncExitStack() as stack:
        clients: dict[str, list[FrameCounter]] = {}
        pids: dict[str, int] = {}
        for name in names:
            url, pids[name] = await stack.enter_async_context(server(name))
            clients[name] = await open_clients(url, CLIENTS)
            await settle(pids[name])
            await warm_up(clients[name], pids[name])
        for r in range(ROUNDS):
            for name in names[r % 3 :] + names[: r % 3]:
                seconds, used = await broadcast_time(clients[name], MESSAGES, pids[name])
                rates[name].append(deliveries / seconds)
                cpu[name].append(used * 1e9 / deliveries)
        for group in clients.values():
            for c in group:
                c.close()
    print(
        f"\nFan-out: {CLIENTS} clients x {MESSAGES} broadcasts of {SIZE} B, "
        f"{ROUNDS} interleaved rounds, pinned={PINNED}"
    )
    print(f"{'server':<18}{'deliveries/s':>30}{'server CPU ns/delivery':>30}")
    for name in names:
        print(f"{name:<18}{spread(rates[name]):>30}{spread(cpu[name]):>30}")
    print("ratios (per round, median (min-max)):   throughput          CPU per delivery")
    pairs = (("ours", "raw ASGI"), ("ours", "bare websockets"), ("raw ASGI", "bare websockets"))
    for a, b in pairs:
        print(f"  {a} / {b:<22}{ratios(rates[a], rates[b]):>20}{ratios(cpu[b], cpu[a]):>20}")
    print("  (CPU column: baseline CPU / ours, so both read 'x of the baseline's speed';")
    print("   target: ours >= 0.9x raw ASGI)")


async def many() -> None:
    names = ["raw ASGI", "FastAPI, no manager", "ours", "ours on Redis", "bare websockets"]
    connect: dict[str, list[float]] = {n: [] for n in names}
    memory: dict[str, list[float]] = {n: [] for n in names}
    seconds: dict[str, list[float]] = {n: [] for n in names if n != "FastAPI, no manager"}
    cpu: dict[str, list[float]] = {n: [] for n in seconds}
    for r in range(MANY_ROUNDS):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            async with server(name) as (url, pid):
                warm = await open_clients(url, 100)  # code paths and allocator
                for c in warm:
                    c.close()
                await settle(pid)
                before = rss_kib(pid)
                start = time.perf_counter()
                clients = await open_clients(url, MANY)
                connect[name].append(time.perf_counter() - start)
                await settle(pid)
                memory[name].append((rss_kib(pid) - before) * 1024 / MANY)
                if name in seconds:
                    await warm_up(clients, pid)
                    wall, used = await broadcast_time(clients, MANY_MESSAGES, pid)
                    seconds[name].append(wall)
                    cpu[name].append(used)
                for c in clients:
                    c.close()
    print(
        f"\n{MANY:,} clients on one process, {MANY_MESSAGES} broadcasts of {SIZE} B, "
        f"{MANY_ROUNDS} rounds, pinned={PINNED}"
    )
    heads = ("broadcast s", "server CPU s", "connect s")
    print(f"{'server':<21}" + "".join(f"{h:>22}" for h in heads) + f"{'B/connection':>24}")
    for name in names:
        wall_text = spread(seconds[name], "{:.3f}") if name in seconds else "-"
        cpu_text = spread(cpu[name], "{:.3f}") if name in cpu else "-"
        print(
            f"{name:<21}{wall_text:>22}{cpu_text:>22}{spread(connect[name], '{:.2f}'):>22}"
            f"{spread(memory[name]):>24}"
        )
    print("ratios (per round, median (min-max))")

    def row(label: str, a: list[float], b: list[float], target: str = "") -> None:
        print(f"  {label:<42}{ratios(a, b):<20}{target}")

    row("broadcast time ours / raw ASGI", seconds["ours"], seconds["raw ASGI"], "target <= 1.2")
    row("broadcast CPU ours / raw ASGI", cpu["ours"], cpu["raw ASGI"])
    row("broadcast time ours on Redis / raw ASGI", seconds["ours on Redis"], seconds["raw ASGI"])
    row("connect ours on Redis / ours", connect["ours on Redis"], connect["ours"], "target <= 1.25")
    row("connect ours / FastAPI, no manager", connect["ours"], connect["FastAPI, no manager"])
    extra = [a - b for a, b in zip(memory["ours"], memory["FastAPI, no manager"], strict=True)]
    print(f"  {'memory ours - FastAPI, no manager':<42}{spread(extra)} B   target <= 2,048")


async def main() -> None:
    await on_client_core(_both)


async def _both() -> None:
    global REDIS
    with contextlib.ExitStack() as stack:
        if REDIS == "/13":
            url, _ = stack.enter_context(private_redis(CLIENT_CORE if PINNED else None))
            REDIS = url + "/13"
        await fan_out()
        await many()


async def on_client_core(body: Callable[[], Awaitable[None]]) -> None:
    """Run ``body`` with the file descriptor limit raised (the servers inherit it)
    and, when pinning, this process on the clients' core."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if PINNED:
        os.sched_setaffinity(0, {CLIENT_CORE})
    try:
        await body()
    finally:
        if PINNED:
            os.sched_setaffinity(0, range(os.cpu_count() or 1))
