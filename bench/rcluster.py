"""Ours on a 3-master Redis Cluster against ours on one Redis, in the same run.

``python -m bench redis-cluster``. Each case runs two server processes of
``bench/apps/cluster_manager.py`` (FastAPI + ConnectionManager) under uvicorn,
pinned to core 0; this process and its frame-counting clients run on core 1; the
Redis servers are not pinned (on two cores there is no third one to give them).
"One Redis" is channels_redis' core layer on a throwaway ``redis-server``; "Cluster"
is ``redis+cluster://`` on a throwaway cluster of 3 masters and 3 replicas, with
presence on the same throwaway single Redis (``WS_PRESENCE_REDIS_URL``), so the
comparison is the layer and history, not presence. Rounds alternate the two
setups; the median and the spread (min-max) of ROUNDS are reported, and ratios.

1. Cross-process fan-out: 2 x 250 clients, 100 broadcasts of 100 B from one
   process; deliveries/s from the trigger to the last frame.
2. ``send_to_user`` latency across processes at 1,000/s for 5 s: p50 and p99.
3. A connect storm: STORM clients (half on each process) connect at once, then
   one broadcast must reach every one of them; the time from the first connect
   to the last frame. During it, the CPU each Cluster master spent (``INFO cpu``):
   the spread max/min says whether one master did everyone's work.

Targets (issue 20): fan-out on the Cluster >= 0.8x one Redis; ``send_to_user``
p99 across processes <= 5 ms; storm <= 1.3x one Redis; per-master CPU spread <= 1.5.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import resource
import statistics
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

from websockets.asyncio.client import connect

from bench.rawclient import FrameCounter, open_counter
from bench.servers import flush_db, private_redis, server_on_fd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.rediscluster import RedisCluster, redis_cluster  # noqa: E402

ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
PER_PROCESS = 250
MESSAGES = 100
SIZE = 100
RATE = 1000
LATENCY_SECONDS = 5
STORM = int(os.environ.get("BENCH_STORM", "10000"))
SERVER_CORE, CLIENT_CORE = 0, 1
APP = "bench.apps.cluster_manager:app"
UVICORN = [
    *("taskset", "-c", str(SERVER_CORE)),
    *(sys.executable, "-m", "uvicorn", "--log-level", "warning", "--backlog", "8192"),
    *("--ws-ping-interval", "600", "--ws-ping-timeout", "600"),
    *("--timeout-graceful-shutdown", "5"),
]


@contextlib.asynccontextmanager
async def two_servers(env: dict[str, str]) -> AsyncIterator[tuple[str, str]]:
    args = lambda fd: [*UVICORN, APP, "--fd", fd]  # noqa: E731
    async with (
        server_on_fd(args, "/ws/probe", env) as (a, _),
        server_on_fd(args, "/ws/probe", env) as (b, _),
    ):
        yield a, b


async def open_all(urls: list[str]) -> list[FrameCounter]:
    clients: list[FrameCounter] = []
    for start in range(0, len(urls), 100):
        clients += await asyncio.gather(*(open_counter(u) for u in urls[start : start + 100]))
    return clients


async def fan_out(env: dict[str, str]) -> float:
    """Deliveries/s of one round of MESSAGES broadcasts to 2 x PER_PROCESS clients."""
    async with two_servers(env) as (a, b):
        urls = [f"{base}/ws/u{i}-{j}" for i, base in enumerate((a, b)) for j in range(250)]
        clients = await open_all(urls)
        try:
            await settle(clients)
            done = [c.wait_for(c.frames + MESSAGES) for c in clients]
            start = time.perf_counter()
            clients[0].send_text(f"bcast {MESSAGES} {SIZE}")
            async with asyncio.timeout(300):
                await asyncio.gather(*done)
            return len(clients) * MESSAGES / (time.perf_counter() - start)
        finally:
            for c in clients:
                c.close()


async def settle(clients: list[FrameCounter]) -> None:
    """Until a broadcast reaches every client: each is registered in both processes."""
    done = [c.wait_for(c.frames + 1) for c in clients]
    clients[0].send_text("bcast 1 1")
    async with asyncio.timeout(300):
        await asyncio.gather(*done)


async def latency(env: dict[str, str]) -> tuple[float, float]:
    """p50 and p99 (ms) of send_to_user from process A to a user on process B."""
    count = RATE * LATENCY_SECONDS
    async with (
        two_servers(env) as (a, b),
        connect(f"{a}/ws/sender", compression=None) as sender,
        connect(f"{b}/ws/target", compression=None) as target,
    ):
        await asyncio.sleep(1.0)  # groups and presence settle; nothing to await from outside
        await sender.send(f"lat {count} {RATE} target")
        delays = []
        async with asyncio.timeout(LATENCY_SECONDS * 10):
            for _ in range(count):
                message = json.loads(await target.recv())
                delays.append((time.monotonic() - message["t"]) * 1000)
    delays.sort()
    return delays[len(delays) // 2], delays[int(len(delays) * 0.99)]


def master_cpu(cluster: RedisCluster) -> dict[int, float]:
    """CPU seconds (user + sys) each master has used so far."""
    used = {}
    for port in cluster.masters():
        info = dict(
            line.split(":", 1) for line in cluster.cli(port, "info", "cpu").split() if ":" in line
        )
        used[port] = float(info["used_cpu_user"]) + float(info["used_cpu_sys"])
    return used


async def storm(env: dict[str, str], cluster: RedisCluster | None) -> tuple[float, float | None]:
    """Seconds from the first of STORM connects to a broadcast reaching all; and
    the max/min spread of the masters' CPU during it (Cluster only)."""
    async with two_servers(env) as (a, b):
        before = master_cpu(cluster) if cluster is not None else None
        start = time.perf_counter()
        urls = [f"{(a, b)[n % 2]}/ws/s{n}" for n in range(STORM)]
        clients = await open_all(urls)
        try:
            await settle(clients)
            took = time.perf_counter() - start
        finally:
            for c in clients:
                c.close()
        spread = None
        if cluster is not None and before is not None:
            after = master_cpu(cluster)
            used = [after[p] - before.get(p, 0.0) for p in after]
            spread = max(used) / max(min(used), 1e-6)
        return took, spread


@contextlib.contextmanager
def setups() -> Iterator[dict[str, tuple[dict[str, str], RedisCluster | None]]]:
    with private_redis() as (one, _), redis_cluster() as cluster:
        yield {
            "one Redis": ({"WS_REDIS_URL": one, "WS_HISTORY_SIZE": "100"}, None),
            "Cluster": (
                {
                    "WS_REDIS_URL": cluster.seed_url,
                    "WS_PRESENCE_REDIS_URL": one,
                    "WS_HISTORY_SIZE": "100",
                },
                cluster,
            ),
        }
        flush_db(one)


def spread(values: list[float]) -> str:
    form = ",.0f" if statistics.median(values) >= 100 else ".2f"
    low, mid, high = min(values), statistics.median(values), max(values)
    return f"{mid:{form}} ({low:{form}}-{high:{form}})"


async def main() -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # servers inherit it
    os.sched_setaffinity(0, {CLIENT_CORE})
    rates: dict[str, list[float]] = {}
    p50s: dict[str, list[float]] = {}
    p99s: dict[str, list[float]] = {}
    storms: dict[str, list[float]] = {}
    cpu_spreads: list[float] = []
    try:
        with setups() as cases:
            for _ in range(ROUNDS):
                for name, (env, cluster) in cases.items():
                    rates.setdefault(name, []).append(await fan_out(env))
                    p50, p99 = await latency(env)
                    p50s.setdefault(name, []).append(p50)
                    p99s.setdefault(name, []).append(p99)
                    took, cpu = await storm(env, cluster)
                    storms.setdefault(name, []).append(took)
                    if cpu is not None:
                        cpu_spreads.append(cpu)
    finally:
        os.sched_setaffinity(0, range(os.cpu_count() or 1))
    one, cl = "one Redis", "Cluster"
    print(
        f"\nRedis Cluster (3 masters + 3 replicas) vs one Redis: median (min-max) of {ROUNDS}"
        " interleaved rounds; servers on core 0, clients on core 1"
    )
    print(f"{'measure':<46}{'one Redis':>26}{'Cluster':>26}{'ratio':>8}")
    rows = [
        ("fan-out deliveries/s (2 x 250, 100 x 100 B)", rates),
        ("send_to_user p50 ms, other process", p50s),
        ("send_to_user p99 ms, other process", p99s),
        (f"connect storm of {STORM}, s", storms),
    ]
    for label, values in rows:
        ratio = statistics.median(values[cl]) / statistics.median(values[one])
        print(f"{label:<46}{spread(values[one]):>26}{spread(values[cl]):>26}{ratio:>8.2f}")
    print(f"per-master CPU spread during the storm (max/min): {spread(cpu_spreads)}")
    fan = statistics.median(rates[cl]) / statistics.median(rates[one])
    stormy = statistics.median(storms[cl]) / statistics.median(storms[one])
    print(
        f"targets: fan-out >= 0.8x ({fan:.2f}), p99 <= 5 ms "
        f"({statistics.median(p99s[cl]):.2f}), storm <= 1.3x ({stormy:.2f}), "
        f"CPU spread <= 1.5 ({statistics.median(cpu_spreads):.2f})"
    )
