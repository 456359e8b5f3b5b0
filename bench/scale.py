"""Scale on Redis: 20,000 connections on 4 processes, and what Redis costs per connection.

Four uvicorn processes of :mod:`bench.apps.scale_manager` (FastAPI + ConnectionManager
on channels_redis' core layer, cluster-wide presence, ``WS_PRESENCE_TTL=10``) take
5,000 connections each, from two client processes of frame-counting clients
(:mod:`bench.rawclient`), 10,000 each, 2,500 to each server, ``IN_FLIGHT``
handshakes in flight per server and client process. Nothing is pinned.

Measured, with bounded waits:

- the connect time of all 20,000, and the time until presence converges: every
  server reports 20,000 connections, the same digest of the active users' ids, and
  its own 5,000 (``GET /stats``), polled for up to ``CONVERGE_TIMEOUT``;
- Redis (``INFO``): memory per connection, CPU during the connect storm, during
  ``STEADY`` seconds of heartbeats only (and with no connections, the baseline),
  and the key count; the servers' RSS per connection;
- one ``bcast`` of ``MESSAGES`` messages of ``SIZE`` B from one server to all
  20,000: the wall time until every client counted its frames;
- churn: ``CHURN`` connections closed and as many opened, Redis CPU and the time
  until presence converges again.

Redis: database 12 of ``BENCH_REDIS_URL`` (default redis://127.0.0.1:6379), flushed
before and after. ``python -m bench.scale`` runs it; ``--client`` is the client
process (started by :func:`main`).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import re
import resource
import sys
import tempfile
import time
from collections import Counter
from typing import Any

from bench.fanout import UVICORN, cpu_ns, open_clients, rss_kib, settle
from bench.rawclient import FrameCounter
from bench.servers import ROOT, flush_db, server_on_fd

REDIS = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379").rstrip("/") + "/12"
APP = "bench.apps.scale_manager:app"
SERVERS = 4
CLIENT_PROCS = 2
PER_SERVER = 2_500  # per client process and server
TOTAL = SERVERS * CLIENT_PROCS * PER_SERVER
WARM = 100  # connections per server opened and closed first (code paths, allocator)
PRESENCE_TTL = "10"
STEADY = 5.0
MESSAGES = 10
SIZE = 100
CHURN_PER_SERVER = 250  # per client process and server: 2,000 in all
CHURN = CHURN_PER_SERVER * SERVERS * CLIENT_PROCS
CONVERGE_TIMEOUT = 120.0
USER = re.compile(r"c\d+s\d+(?:w|g\d+)-\d+")  # the users of scale_manager: <tag>-<n>
COUNTERS = ("resyncs", "reloads", "full_loads", "presence_errors", "layer_errors")


def raise_nofile() -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


# --- Redis ------------------------------------------------------------------------------


def _redis() -> Any:
    import redis

    return redis.Redis.from_url(REDIS, socket_timeout=10, socket_connect_timeout=5)


def flush() -> None:
    flush_db(REDIS)


def redis_cpu() -> float:
    client = _redis()
    try:
        info = client.info("cpu")
    finally:
        client.close()
    return float(info["used_cpu_sys"]) + float(info["used_cpu_user"])


def key_kinds() -> list[tuple[str, int, float]]:
    """Our database's keys by kind (user ids replaced by ``<user>``, process ids by
    ``<id>``): count and bytes (MEMORY USAGE, sampled up to 200 keys a kind)."""
    client = _redis()
    try:
        kinds: dict[str, list[bytes]] = {}
        for key in client.scan_iter(count=5000):
            kind = re.sub(r"[0-9a-f]{16}", "<id>", USER.sub("<user>", key.decode()))
            kinds.setdefault(kind, []).append(key)
        out = []
        for kind, keys in kinds.items():
            sample = keys[:200]
            used = sum(client.memory_usage(k, samples=0) or 0 for k in sample)
            out.append((kind, len(keys), used * len(keys) / len(sample)))
        return sorted(out, key=lambda k: -k[2])
    finally:
        client.close()


def redis_memory() -> tuple[int, int]:
    """used_memory (bytes) and DBSIZE of our database."""
    client = _redis()
    try:
        return int(client.info("memory")["used_memory"]), int(client.dbsize())
    finally:
        client.close()


# --- the servers' view -------------------------------------------------------------------


async def get_stats(base: str) -> dict[str, Any]:
    port = int(base.rsplit(":", 1)[1])
    async with asyncio.timeout(10):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(b"GET /stats HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            data = await reader.read()
        finally:
            writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    if b" 200 " not in head.split(b"\r\n", 1)[0]:
        raise ConnectionError(head.split(b"\r\n", 1)[0].decode())
    stats: dict[str, Any] = json.loads(body)
    return stats


def agreed(stats: list[dict[str, Any]], local: int, opened: list[int] | None) -> bool:
    """Every server sees SERVERS x local connections, holds its own ``local``, has
    registered ``opened`` connections in all, and sees the same users."""
    total = local * len(stats)
    return (
        all(
            s["connections"] == total and s["users"] == total and s["local"] == local for s in stats
        )
        and len({s["digest"] for s in stats}) == 1
        and (opened is None or [s["opened"] for s in stats] == opened)
    )


async def converge(
    bases: list[str], local: int, opened: list[int] | None = None
) -> tuple[float | None, list[dict[str, Any]]]:
    """Poll the servers until they agree (see :func:`agreed`); the monotonic time
    they did (None after CONVERGE_TIMEOUT) and the last stats."""
    last: list[dict[str, Any]] = []
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(CONVERGE_TIMEOUT):
            while True:
                try:
                    last = list(await asyncio.gather(*(get_stats(b) for b in bases)))
                except (OSError, TimeoutError, ValueError):
                    await asyncio.sleep(0.5)
                    continue
                if agreed(last, local, opened):
                    return time.monotonic(), last
                await asyncio.sleep(0.25)
    return None, last


def describe(stats: list[dict[str, Any]]) -> str:
    return "; ".join(
        f"conns={s['connections']} local={s['local']} users={s['users']} digest={s['digest']}"
        for s in stats
    )


# --- client processes --------------------------------------------------------------------


class ClientProcess:
    """A child running :func:`client`, driven by text lines; answers start with ``@``."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc

    @classmethod
    async def start(cls, index: int, bases: list[str]) -> ClientProcess:
        proc = await asyncio.create_subprocess_exec(
            *(sys.executable, "-m", "bench.scale", "--client", str(index), *bases),
            cwd=ROOT,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        return cls(proc)

    def send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line.encode() + b"\n")

    async def reply(self, limit: float) -> list[str]:
        assert self.proc.stdout is not None
        async with asyncio.timeout(limit):
            while True:
                line = await self.proc.stdout.readline()
                if not line:
                    raise EOFError(f"client process exited ({self.proc.returncode})")
                if line.startswith(b"@"):
                    parts = line[1:].decode().split()
                    if parts[0] == "error":
                        raise RuntimeError("client process: " + " ".join(parts[1:]))
                    return parts

    async def ask(self, line: str, limit: float) -> list[str]:
        self.send(line)
        return await self.reply(limit)

    async def stop(self) -> None:
        if self.proc.returncode is None:
            with contextlib.suppress(Exception):
                self.send("quit")
            try:
                await asyncio.wait_for(self.proc.wait(), 15)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()


async def client(index: int, bases: list[str]) -> None:
    """The client process: opens, closes and counts on command from stdin."""
    raise_nofile()
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    groups: list[list[FrameCounter]] = [[] for _ in bases]
    waits: set[asyncio.Task[None]] = set()

    def say(*parts: object) -> None:
        sys.stdout.write("@" + " ".join(str(p) for p in parts).replace("\n", " ") + "\n")
        sys.stdout.flush()

    async def open_all(tag: str, n: int) -> float:
        start = time.monotonic()
        urls = [f"{base}/ws/c{index}s{i}{tag}" for i, base in enumerate(bases)]
        opened = await asyncio.gather(*(open_clients(url, n) for url in urls))
        for group, new in zip(groups, opened, strict=True):
            group += new
        return time.monotonic() - start

    def close_first(n: int) -> None:
        for group in groups:
            for c in group[:n]:
                c.close()
            del group[:n]

    async def wait_all(futures: list[asyncio.Future[None]]) -> None:
        try:
            async with asyncio.timeout(120):
                await asyncio.gather(*futures)
            say("done", repr(time.monotonic()))
        except TimeoutError:
            say("error", f"{sum(not f.done() for f in futures)} clients short of frames")

    try:
        while line := (await reader.readline()).decode():
            cmd, *args = line.split()
            try:
                if cmd == "open":  # open <tag> <n per server>
                    say("opened", await open_all(args[0], int(args[1])))
                elif cmd == "close":  # close <n per server>
                    close_first(int(args[0]))
                    say("closed")
                elif cmd == "churn":  # churn <tag> <n per server>: close n, open n
                    close_first(int(args[1]))
                    say("churned", await open_all(args[0], int(args[1])))
                elif cmd == "arm":  # arm <frames>: report when every client got them
                    n = int(args[0])
                    futures = [c.wait_for(c.frames + n) for g in groups for c in g]
                    task = loop.create_task(wait_all(futures))
                    waits.add(task)
                    task.add_done_callback(waits.discard)
                    say("armed", len(futures))
                elif cmd == "send":  # send <text>: from the first client of server 0
                    groups[0][0].send_text(line.split(None, 1)[1].strip())
                    say("sent")
                elif cmd == "quit":
                    break
                else:
                    say("error", f"unknown command {cmd!r}")
            except Exception as exc:
                say("error", repr(exc))
    finally:
        for task in waits:
            task.cancel()
        close_first(10**9)


def _created(line: str) -> float:
    try:
        return float(line.split(" ", 1)[0])
    except ValueError:
        return 0.0


# --- the benchmark -----------------------------------------------------------------------


async def main() -> None:
    raise_nofile()  # servers inherit it (and raise it themselves)
    fd, log = tempfile.mkstemp(prefix="bench-scale-", suffix=".log")
    os.close(fd)
    env = {"WS_REDIS_URL": REDIS, "WS_PRESENCE_TTL": PRESENCE_TTL, "BENCH_SCALE_LOG": log}
    problems: list[str] = []

    phases: list[tuple[str, float, dict[str, int]]] = []  # name, wall start, counters then

    async def phase(name: str) -> None:
        """A phase starts: note the time and the servers' counters."""
        try:
            stats = await asyncio.gather(*(get_stats(b) for b in bases))
            counters = {k: sum(s[k] or 0 for s in stats) for k in COUNTERS}
        except (OSError, TimeoutError, ValueError) as exc:
            problems.append(f"stats at the start of {name} failed: {exc!r}")
            counters = {}
        phases.append((name, time.time(), counters))

    def row(label: str, value: str) -> None:
        print(f"  {label:<44}{value}", flush=True)

    bases: list[str] = []
    flush()
    try:
        async with contextlib.AsyncExitStack() as stack:
            bases.clear()
            pids: list[int] = []
            for _ in range(SERVERS):
                base, proc = await stack.enter_async_context(
                    server_on_fd(lambda fd: [*UVICORN, APP, "--fd", fd], "/ws/probe", env)
                )
                bases.append(base)
                pids.append(proc.pid)
            clients: list[ClientProcess] = []
            for k in range(CLIENT_PROCS):
                clients.append(await ClientProcess.start(k, bases))
                stack.push_async_callback(clients[-1].stop)
            print(f"\nScale: {TOTAL:,} connections on {SERVERS} servers, Redis {REDIS}", flush=True)

            # Warm-up, then the baselines with no connections.
            await phase("warm-up")
            await clients[0].ask(f"open w {WARM}", 120)
            await clients[0].ask(f"close {WARM}", 30)
            when, stats = await converge(bases, 0)
            if when is None:
                problems.append(f"presence did not return to 0 after warm-up: {describe(stats)}")
            with contextlib.suppress(TimeoutError):
                await asyncio.gather(*(settle(pid) for pid in pids))
            rss0 = [rss_kib(pid) for pid in pids]
            mem0, keys0 = redis_memory()
            cpu = redis_cpu()
            await asyncio.sleep(STEADY)
            idle = (redis_cpu() - cpu) / STEADY

            # Connect storm.
            await phase("storm")
            cpu, start = redis_cpu(), time.monotonic()
            answers = await asyncio.gather(*(c.ask(f"open g0 {PER_SERVER}", 330) for c in clients))
            connected = time.monotonic()
            when, stats = await converge(bases, TOTAL // SERVERS)
            storm_cpu = redis_cpu() - cpu
            row(
                f"connect {TOTAL:,} (2 procs, {'/'.join(a[1][:5] for a in answers)} s)",
                f"{connected - start:.2f} s  ({TOTAL / (connected - start):,.0f}/s)",
            )
            if when is None:
                problems.append(
                    f"presence did not converge within {CONVERGE_TIMEOUT:.0f} s "
                    f"of the connect storm: {describe(stats)}"
                )
                row("presence converged", f"NO (after {CONVERGE_TIMEOUT:.0f} s)")
                storm_end = time.monotonic()
            else:
                row("presence converged after last connect", f"{when - connected:.2f} s")
                storm_end = when
            span = storm_end - start
            row(
                "Redis CPU, storm (start to converged)",
                f"{storm_cpu:.2f} s in {span:.1f} s = {storm_cpu / span:.2f} s/s;"
                f" {storm_cpu / TOTAL * 1e6:.0f} us/conn",
            )

            # Steady state.
            await phase("steady")
            with contextlib.suppress(TimeoutError):
                await asyncio.gather(*(settle(pid) for pid in pids))
            rss1 = [rss_kib(pid) for pid in pids]
            mem1, keys1 = redis_memory()
            per_conn = (mem1 - mem0) / TOTAL
            row(
                "Redis used_memory before -> after",
                f"{mem0 / 2**20:.1f} -> {mem1 / 2**20:.1f} MiB = {per_conn:,.0f} B/conn",
            )
            row("Redis keys (DBSIZE) before -> after", f"{keys0:,} -> {keys1:,}")
            for kind, count, used in key_kinds()[:4]:
                row(f"  {kind[:42]}", f"{count:,} keys, {used / TOTAL:,.0f} B/conn")
            per = [(b - a) * 1024 / (TOTAL // SERVERS) for a, b in zip(rss0, rss1, strict=True)]
            row(
                "server RSS per connection (4 servers)",
                " ".join(f"{p:,.0f}" for p in per) + f" B (RSS {max(rss1) / 1024:.0f} MiB max)",
            )
            cpu, scpu = redis_cpu(), [cpu_ns(pid) for pid in pids]
            await asyncio.sleep(STEADY)
            steady = (redis_cpu() - cpu) / STEADY
            servers_steady = (
                sum(cpu_ns(p) - c for p, c in zip(pids, scpu, strict=True)) / 1e9 / STEADY
            )
            row(
                f"Redis CPU, {STEADY:.0f} s steady (heartbeats)",
                f"{steady * 1000:.2f} ms/s (0 conns: {idle * 1000:.2f}); "
                f"{(steady - idle) * 1000 / (TOTAL / 10_000):.2f} ms/s per 10k conns",
            )
            row("servers' CPU, steady (sum of 4)", f"{servers_steady * 1000:.1f} ms/s")

            # One broadcast to all.
            await phase("bcast")
            armed = await asyncio.gather(*(c.ask(f"arm {MESSAGES}", 30) for c in clients))
            assert sum(int(a[1]) for a in armed) == TOTAL, armed
            start = time.monotonic()
            await clients[0].ask(f"send bcast {MESSAGES} {SIZE}", 30)
            done = await asyncio.gather(*(c.reply(150) for c in clients))
            wall = max(float(d[1]) for d in done) - start
            row(
                f"broadcast {MESSAGES} x {SIZE} B to {TOTAL:,}",
                f"{wall:.3f} s ({TOTAL * MESSAGES / wall:,.0f} deliveries/s)",
            )

            # Churn.
            await phase("churn")
            before = await asyncio.gather(*(get_stats(b) for b in bases))
            opened = [s["opened"] + CHURN // SERVERS for s in before]
            cpu, start = redis_cpu(), time.monotonic()
            answers = await asyncio.gather(
                *(c.ask(f"churn g1 {CHURN_PER_SERVER}", 330) for c in clients)
            )
            reopened = time.monotonic()
            when, stats = await converge(bases, TOTAL // SERVERS, opened)
            churn_end = time.monotonic() if when is None else when
            churn_cpu = redis_cpu() - cpu
            row(
                f"churn {CHURN:,} closed + {CHURN:,} opened",
                f"{reopened - start:.2f} s (clients: {'/'.join(a[1][:5] for a in answers)} s)",
            )
            if when is None:
                problems.append(
                    f"presence did not converge within {CONVERGE_TIMEOUT:.0f} s "
                    f"after churn: {describe(stats)}"
                )
                row("presence converged after churn", "NO")
            else:
                row("presence converged after churn", f"{when - reopened:.2f} s after last open")
            row(
                "Redis CPU, churn (start to converged)",
                f"{churn_cpu:.2f} s in {churn_end - start:.1f} s; "
                f"{churn_cpu / (2 * CHURN) * 1e6:.0f} us/change",
            )
            mem2, keys2 = redis_memory()
            row("after churn: Redis used_memory, DBSIZE", f"{mem2 / 2**20:.1f} MiB, {keys2:,}")
            await phase("end")
            final = await asyncio.gather(*(get_stats(b) for b in bases))
            if not all(s["healthy"] for s in final):
                problems.append(f"unhealthy presence: {[s['healthy'] for s in final]}")
    finally:
        flush()
        with open(log) as f:  # noqa: ASYNC230 - a small local file, once
            lines = [line.rstrip() for line in f if line.strip()]
        os.unlink(log)
        if len(phases) > 1:
            print("  per phase: " + ", ".join(COUNTERS) + ", server log lines")
            for (name, t0, c0), (_, t1, c1) in itertools.pairwise(phases):
                logged = sum(t0 <= _created(line) < t1 for line in lines)
                deltas = "/".join(str(c1.get(k, 0) - c0.get(k, 0)) for k in COUNTERS)
                print(f"    {name:<10}{deltas:>20}{logged:>8}")
        if lines:
            kinds = Counter(line.split("] ", 1)[-1][:150] for line in lines)
            problems.append(f"{len(lines)} warning/error log lines from the servers:")
            problems += [f"  {n} x {text}" for text, n in kinds.most_common(8)]
        print("  problems: " + ("none" if not problems else ""))
        for p in problems:
            print("   ", p)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--client"]:
        asyncio.run(client(int(sys.argv[2]), sys.argv[3:]))
    else:
        asyncio.run(main())
