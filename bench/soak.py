"""Soak and chaos: churn, cuts, a hung Redis and killed servers, with every message accounted for.

``python -m bench.soak --minutes 10`` (``make soak MINUTES=60`` for the record run):

- a private ``redis-server`` (so the run can pause it), two uvicorn processes
  (``tests.apps.cluster_fastapi``) and one Daphne process
  (``tests.apps.cluster_django``, ``ManagedWebsocketConsumer``), history on;
- ``USERS`` users, each a recovering ``svc-infra.v1`` client
  (``WebSocketClient(recover=True)``) through a proxy in front of its server; about
  ``CHURN`` users a second end and as many new ones start; users join and leave
  rooms; a manager in this process publishes to users, rooms and the broadcast;
- every ``CUT_EVERY`` seconds the proxies cut a few random connections (both sides
  see the TCP connection drop) and the clients reconnect and recover; every
  ``CHAOS_EVERY`` seconds Redis is paused for ``PAUSE`` s (SIGSTOP/SIGCONT), and
  the ``VICTIM`` server is stopped and started again on the same listening socket,
  in turn with SIGKILL (no drain) and SIGTERM (it drains and shuts down): its
  clients reconnect with their positions into the process while it drains, shuts
  down and starts (where a restart once opened a silent gap), their attempts
  waiting in the socket's backlog meanwhile; the other two live for the whole
  run, so that their lines show what an hour does to a process (a leak in a
  process killed every few minutes would hide in its saw-tooth);
- every ``SAMPLE_EVERY`` seconds, per server: RSS, open fds, asyncio tasks and the
  manager's counters; Redis memory and key count; written to ``soak.csv`` and
  plotted to ``soak.png`` (``--out``), with the slope of each line per hour after
  warm-up.

Accounting: a message published successfully must reach every user who was a
member of its target for the whole publish (with a grace of ``GRACE`` s around
joins, leaves, starts and ends, where membership is still travelling): received
once, or its stream reported unrecovered at the reconnect that followed. A
message missing for a user who ended, when nothing later on its stream reached
that user either, may have been on its way when the socket closed: it is counted
"in flight at the end", not lost (a stream's messages arrive in offset order, so
a gap before anything that did arrive is a loss). The latency table shows how
late arrivals get (the clients share one process with the accounting). A
publish that raised ``ChannelLayerError`` may or may not arrive (Redis may run the
command after it resumes) and is only checked for duplicates. The run fails on
any silent loss or duplicate.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import json
import os
import random
import resource
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.servers import ROOT, listening_socket, private_redis, server_on_fd
from tests.proxy import Proxy

USERS = 2000
CHURN = 100  # users ending (and starting) per second, in all
ROOMS = 50
RATE_USER, RATE_ROOM, RATE_BROADCAST = 50.0, 10.0, 1.0  # messages per second
CUT_EVERY, CUTS = 10.0, 20
CHAOS_EVERY, PAUSE = 120.0, 3.0
SAMPLE_EVERY = 5.0
GRACE = 2.0
HISTORY = 2000

UVICORN = [
    *(sys.executable, "-m", "uvicorn", "--log-level", "warning", "--backlog", "4096"),
    *("--timeout-graceful-shutdown", "5"),
]
DAPHNE = [sys.executable, "-m", "daphne", "-v", "0"]
#: The server killed at each chaos round; the others are the long-lived witnesses.
VICTIM = "uvicorn-b"
SERVERS = {
    "uvicorn-a": (UVICORN, "tests.apps.cluster_fastapi:app"),
    "uvicorn-b": (UVICORN, "tests.apps.cluster_fastapi:app"),
    "daphne": (DAPHNE, "tests.apps.cluster_django:application"),
}


# --- the servers ---------------------------------------------------------------------------


@dataclass
class Running:
    name: str
    proxy: Proxy
    stack: contextlib.AsyncExitStack
    pid: int = 0
    http: str = ""
    #: The victim's listening socket, kept across its restarts (None: one per start).
    sock: socket.socket | None = None
    proc: subprocess.Popen[bytes] | None = None


async def start_server(run: Running, env: dict[str, str]) -> None:
    cmd, app = SERVERS[run.name]

    def args(fd: str) -> list[str]:
        if cmd is DAPHNE:
            return [*cmd, "--fd", fd, app]
        return [*cmd, app, "--fd", fd]

    base, proc = await run.stack.enter_async_context(
        server_on_fd(args, "/ws/probe", {**env, "CLUSTER_NAME": run.name}, sock=run.sock)
    )
    run.pid = proc.pid
    run.proc = proc
    run.http = base.replace("ws://", "http://")
    run.proxy.target = int(base.rsplit(":", 1)[1])


async def stats_of(run: Running) -> dict[str, Any]:
    def get() -> dict[str, Any]:
        with urllib.request.urlopen(run.http + "/ctl/stats", timeout=5) as reply:
            answer: dict[str, Any] = json.loads(reply.read())
            return answer

    return await asyncio.to_thread(get)


# --- users and accounting -------------------------------------------------------------------


@dataclass
class User:
    name: str
    server: Running
    started: float = 0.0  # first connection open
    ended: float = 0.0  # final close begun (0: alive)
    away: float = 0.0  # disconnected at, while not back (0: connected)
    received: dict[int, int] = field(default_factory=dict)  # message id -> times
    arrived: dict[int, float] = field(default_factory=dict)  # message id -> first arrival
    # (disconnected at, reconnected at, unrecovered streams) per reconnect
    reconnects: list[tuple[float, float, list[str]]] = field(default_factory=list)
    task: asyncio.Task[None] | None = None


@dataclass
class Published:
    id: int
    stream: str
    start: float
    end: float
    ok: bool


class Soak:
    def __init__(self, minutes: float, out: Path) -> None:
        self.minutes = minutes
        self.out = out
        self.users: dict[str, User] = {}
        self.ended: list[User] = []
        self.published: list[Published] = []
        # room -> user -> list of [joined at, left at (0: member)]
        self.members: dict[str, dict[str, list[list[float]]]] = defaultdict(dict)
        self.counter = 0
        self.events: dict[str, int] = defaultdict(int)
        self.samples: list[dict[str, Any]] = []
        self.servers: list[Running] = []
        self.manager: Any = None
        self.redis_url = ""
        self.redis_pid = 0
        self.env: dict[str, str] = {}
        self.t0 = time.monotonic()
        self.chaos_log: list[tuple[float, str]] = []  # (when, what): pauses, kills, cuts
        self.census: dict[str, tuple[int, int]] = {}

    # the clients

    async def user_loop(self, user: User) -> None:
        from svc_infra.websocket import WebSocketClient

        client = WebSocketClient(
            f"ws://127.0.0.1:{user.server.proxy.port}/ws/{user.name}", recover=True
        )
        try:
            await self._connected(user, client)
        finally:  # ended (cancelled) or not: the socket must not outlive the user
            with contextlib.suppress(BaseException):
                await client.close()

    async def _connected(self, user: User, client: Any) -> None:
        disconnected = 0.0
        while not user.ended:
            try:
                async with asyncio.timeout(30):
                    await client.connect()
            except Exception:
                self.events["connect_failures"] += 1
                await asyncio.sleep(0.5 + random.random())  # a server may be restarting
                continue
            now = time.monotonic()
            user.away = 0.0
            if not user.started:
                user.started = now
            elif disconnected:
                user.reconnects.append((disconnected, now, list(client.unrecovered_streams)))
                if client.recovered is False:
                    self.events["unrecovered_reconnects"] += 1
            try:
                while True:
                    frame = await client.recv()
                    try:
                        mid = int(json.loads(frame)["id"])
                    except (ValueError, KeyError, TypeError):
                        self.events["other_frames"] += 1
                        continue
                    user.received[mid] = user.received.get(mid, 0) + 1
                    user.arrived.setdefault(mid, time.monotonic())
            except Exception:
                pass
            disconnected = user.away = time.monotonic()
            if user.ended:
                break
            self.events["disconnects"] += 1
            await asyncio.sleep(random.random() * 0.5)  # as a client's backoff would

    def start_user(self) -> None:
        self.counter += 1
        name = f"s{self.counter}"
        user = User(name, random.choice(self.servers))
        self.users[name] = user
        user.task = asyncio.get_running_loop().create_task(self.user_loop(user))

    async def end_user(self, user: User) -> None:
        user.ended = time.monotonic()
        del self.users[user.name]
        self.ended.append(user)
        for members in self.members.values():
            spans = members.get(user.name)
            if spans and not spans[-1][1]:
                spans[-1][1] = user.ended
        if user.task is not None:
            user.task.cancel()
            with contextlib.suppress(BaseException):
                await user.task

    # publishing

    async def publish(self, stream: str, send: Any) -> None:
        self.counter += 1
        mid = self.counter
        start = time.monotonic()
        try:
            await send({"id": mid})
            ok = True
        except Exception:
            ok = False
            self.events["publish_failures"] += 1
        self.published.append(Published(mid, stream, start, time.monotonic(), ok))

    async def publisher(self, deadline: float) -> None:
        m = self.manager
        loop = asyncio.get_running_loop()
        tick = 0.01
        credit = {"user": 0.0, "room": 0.0, "broadcast": 0.0}
        rates = {"user": RATE_USER, "room": RATE_ROOM, "broadcast": RATE_BROADCAST}
        pending: set[asyncio.Task[None]] = set()
        while loop.time() < deadline:
            await asyncio.sleep(tick)
            for kind in credit:
                credit[kind] += rates[kind] * tick
                while credit[kind] >= 1:
                    credit[kind] -= 1
                    if kind == "user" and self.users:
                        name = random.choice(list(self.users))
                        coro = self.publish(f"user:{name}", lambda p, n=name: m.send_to_user(n, p))
                    elif kind == "room":
                        room = f"r{random.randrange(ROOMS)}"
                        coro = self.publish(
                            f"room:{room}", lambda p, r=room: m.broadcast_to_room(r, p)
                        )
                    else:
                        coro = self.publish("broadcast", m.broadcast)
                    task = loop.create_task(coro)
                    pending.add(task)
                    task.add_done_callback(pending.discard)
        if pending:
            await asyncio.wait(pending, timeout=30)

    async def rooms(self, deadline: float) -> None:
        m = self.manager
        loop = asyncio.get_running_loop()
        while loop.time() < deadline:
            await asyncio.sleep(0.1)
            if not self.users:
                continue
            name = random.choice(list(self.users))
            room = f"r{random.randrange(ROOMS)}"
            spans = self.members[room].setdefault(name, [])
            with contextlib.suppress(Exception):
                if spans and not spans[-1][1]:
                    spans[-1][1] = time.monotonic()
                    await m.leave_room(name, room)
                else:
                    await m.join_room(name, room)
                    spans.append([time.monotonic(), 0.0])

    async def churn(self, deadline: float) -> None:
        loop = asyncio.get_running_loop()
        while loop.time() < deadline:
            await asyncio.sleep(1.0)
            for user in random.sample(list(self.users.values()), min(CHURN, len(self.users))):
                await self.end_user(user)
            for _ in range(CHURN):
                self.start_user()
            self.events["churned"] += CHURN

    async def chaos(self, deadline: float) -> None:
        loop = asyncio.get_running_loop()
        next_cut, next_chaos = loop.time() + CUT_EVERY, loop.time() + CHAOS_EVERY / 2
        while loop.time() < deadline:
            await asyncio.sleep(0.5)
            now = loop.time()
            if now >= next_cut:
                next_cut = now + CUT_EVERY
                self.events["cuts"] += sum(s.proxy.cut_some(CUTS // 3) for s in self.servers)
                self.chaos_log.append((time.monotonic(), "cut"))
            if now >= next_chaos and now < deadline - 30:
                next_chaos = now + CHAOS_EVERY
                os.kill(self.redis_pid, signal.SIGSTOP)
                self.chaos_log.append((time.monotonic(), "redis paused"))
                try:
                    await asyncio.sleep(PAUSE)  # the outage itself: nothing to await
                finally:
                    os.kill(self.redis_pid, signal.SIGCONT)
                self.events["redis_pauses"] += 1
                await asyncio.sleep(10)
                [victim] = [s for s in self.servers if s.name == VICTIM]
                # In turn: killed (no drain), and stopped with SIGTERM, which drains
                # and shuts down while its clients reconnect into it (it must
                # refuse them, never answer "nothing to recover").
                sig = signal.SIGKILL if self.events["restarts"] % 2 == 0 else signal.SIGTERM
                os.kill(victim.pid, sig)
                what = "killed" if sig == signal.SIGKILL else "stopped (SIGTERM)"
                self.chaos_log.append((time.monotonic(), f"{victim.name} {what}"))
                if victim.proc is not None:  # a SIGTERM'd server must finish its drain
                    await asyncio.to_thread(victim.proc.wait, 60)
                await victim.stack.aclose()
                victim.stack = contextlib.AsyncExitStack()
                await start_server(victim, self.env)
                self.events["restarts"] += 1

    # sampling

    async def sampler(self, deadline: float) -> None:
        import redis.asyncio as aioredis

        client = aioredis.Redis.from_url(self.redis_url)
        writer = None
        t0 = time.monotonic()
        path = self.out / "soak.csv"
        with path.open("w", newline="") as f:
            try:
                while time.monotonic() < deadline:
                    row: dict[str, Any] = {"t": round(time.monotonic() - t0, 1)}
                    for s in self.servers:
                        row.update(self._proc(s))
                        with contextlib.suppress(Exception):
                            st = await stats_of(s)
                            row[f"{s.name}.tasks"] = st["tasks"]
                            row[f"{s.name}.local"] = st["local"]
                            for k in ("frames_dropped", "layer_errors", "messages_lost"):
                                row[f"{s.name}.{k}"] = st["counters"].get(k, 0)
                    with contextlib.suppress(Exception):
                        info = await client.info("memory")
                        row["redis.used_memory"] = info["used_memory"]
                        row["redis.keys"] = await client.dbsize()
                    row["users"] = len(self.users)
                    self.samples.append(row)
                    if writer is None:
                        writer = csv.DictWriter(f, fieldnames=list(row), extrasaction="ignore")
                        writer.writeheader()
                    writer.writerow(row)
                    f.flush()
                    await asyncio.sleep(SAMPLE_EVERY)
                self.census = await self._census(client)
            finally:
                await client.aclose()

    async def _census(self, client: Any) -> dict[str, tuple[int, int]]:
        """Redis keys by family (names with their ids replaced by *): count, bytes
        (MEMORY USAGE of up to 50 keys per family, scaled to the count)."""
        import re

        families: dict[str, list[bytes]] = defaultdict(list)
        async for key in client.scan_iter(count=1000):
            families[re.sub(rb"[0-9a-f]{8,}|s\d+|r\d+|\d+", b"*", key).decode()].append(key)
        census = {}
        for family, keys in families.items():
            sample = keys[:50]
            used = [await client.memory_usage(k) or 0 for k in sample]
            census[family] = (len(keys), int(sum(used) / max(len(sample), 1) * len(keys)))
        # Whose are the manager channels still holding messages at the end?
        mine = getattr(getattr(self.manager, "_membership", None), "channel", None)
        for key in families.get("asgiws.mgr.*", []):
            owner = "this benchmark's publisher" if mine and key.decode().endswith(mine) else "?"
            size = await client.memory_usage(key) or 0
            count = await client.zcard(key)
            census[f"  {key.decode()} ({owner}, {count} messages)"] = (1, size)
        return census

    def _proc(self, s: Running) -> dict[str, Any]:
        row: dict[str, Any] = {}
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{s.pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    row[f"{s.name}.rss_kib"] = int(line.split()[1])
            row[f"{s.name}.fds"] = len(os.listdir(f"/proc/{s.pid}/fd"))
        return row

    # the run

    async def run(self) -> int:
        from svc_infra.websocket import ConnectionManager, WebSocketConfig

        _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        with private_redis() as (url, pid):
            self.redis_url, self.redis_pid = url + "/0", pid
            self.env = {
                "WS_REDIS_URL": self.redis_url,
                "WS_HISTORY_SIZE": str(HISTORY),
                # Streams of users who left expire within a minute: Redis memory
                # levels off after warm-up instead of growing for history_ttl.
                "WS_HISTORY_TTL": "60",
                # Every user here is new and lives for ~20 s: a day of epoch hashes
                # (the default) would grow all hour, by ~100 B per user, and level
                # off only after a day. Ten minutes shows where they level off.
                "WS_HISTORY_META_TTL": "600",
                # A cut user keeps their rooms while reconnecting (docs/recovery.md).
                "WS_ROOM_GRACE": "30",
                "WS_PRESENCE_TTL": "30",
            }
            async with contextlib.AsyncExitStack() as outer:
                for name in SERVERS:
                    proxy = Proxy(target=0)  # pointed at the server once it runs
                    await proxy.start()
                    outer.push_async_callback(proxy.stop)
                    run = Running(name, proxy, contextlib.AsyncExitStack())
                    if name == VICTIM:  # restarted on the same socket (see chaos())
                        run.sock = listening_socket()
                        outer.callback(run.sock.close)
                    await start_server(run, self.env)
                    self.servers.append(run)
                config = WebSocketConfig(
                    history_size=HISTORY, history_meta_ttl=600, redis_url=self.redis_url
                )
                self.manager = ConnectionManager(config=config)
                await self.manager.start()
                try:
                    await self._drive()
                finally:
                    await self.manager.shutdown()
                    for s in self.servers:
                        await s.stack.aclose()
        return self.report()

    async def _drive(self) -> None:
        for _ in range(USERS):
            self.start_user()
        await asyncio.sleep(10)  # the first connections (no event: many sockets)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.minutes * 60
        await asyncio.gather(
            self.publisher(deadline),
            self.rooms(deadline),
            self.churn(deadline),
            self.chaos(deadline),
            self.sampler(time.monotonic() + self.minutes * 60 + 15),
        )
        await asyncio.sleep(10)  # the last messages and recoveries
        for user in list(self.users.values()):
            await self.end_user(user)

    def report(self) -> int:
        everyone = self.ended
        by_name = {u.name: u for u in everyone}
        silent = delivered = reported = away_at_end = in_flight = 0
        dups = sum(1 for u in everyone for n in u.received.values() if n > 1)
        examples: list[str] = []
        by_id = {m.id: m for m in self.published}
        # Per user and stream, the latest publish start among what the user received:
        # a stream's messages arrive in offset order, so a message missing before one
        # that arrived is lost; one missing after the last that arrived, from a user
        # who ended, may still have been on its way when the socket closed.
        latest: dict[tuple[str, str], float] = {}
        latency: list[tuple[float, float]] = []  # (published at, seconds to arrival)
        for u in everyone:
            for mid, at in u.arrived.items():
                m = by_id.get(mid)
                if m is None:
                    continue
                key = (u.name, m.stream)
                latest[key] = max(latest.get(key, 0.0), m.start)
                latency.append((m.start, at - m.start))
        for msg in self.published:
            if not msg.ok:
                continue
            kind, _, target = msg.stream.partition(":")
            if kind == "user":
                candidates = [by_name[target]] if target in by_name else []
            elif kind == "room":
                spans = self.members.get(target, {})
                candidates = [
                    by_name[n]
                    for n, ss in spans.items()
                    if n in by_name
                    and any(
                        j < msg.start - GRACE and (not left or left > msg.end + GRACE)
                        for j, left in ss
                    )
                ]
            else:
                candidates = everyone
            lo, hi = msg.start - GRACE, msg.end + GRACE
            for user in candidates:
                # A member for the whole publish, with a grace on both sides.
                if not user.started or user.started > lo or (user.ended and user.ended < hi):
                    continue
                if user.away and user.away < hi:
                    # Cut off and ended before coming back: the message waits in
                    # history for a reconnect that never came. Not checkable.
                    away_at_end += 1
                    continue
                if msg.id in user.received:
                    delivered += 1
                elif self._reported(user, msg):
                    reported += 1
                elif user.ended and latest.get((user.name, msg.stream), 0.0) <= msg.end:
                    in_flight += 1  # nothing later on this stream arrived before the end
                else:
                    silent += 1
                    if len(examples) < 10:
                        examples.append(self._explain(user, msg))
        self._plot()
        print(f"\nSoak: {self.minutes:g} min, {USERS} users, churn {CHURN}/s")
        for k, v in sorted(self.events.items()):
            print(f"  {k:<24}{v:>10,}")
        ok = sum(1 for m in self.published if m.ok)
        print(f"  {'published (ok / failed)':<24}{ok:>10,} / {len(self.published) - ok:,}")
        print(f"  {'deliveries checked':<24}{delivered + reported + silent:>10,}")
        print(f"  {'delivered':<24}{delivered:>10,}")
        print(f"  {'reported unrecovered':<24}{reported:>10,}")
        print(f"  {'ended while cut off':<24}{away_at_end:>10,}")
        print(f"  {'in flight at the end':<24}{in_flight:>10,}")
        print(f"  {'silently lost':<24}{silent:>10,}")
        print(f"  {'duplicates':<24}{dups:>10,}")
        for line in examples:
            print("   ", line)
        self._print_latency(latency)
        for name, slope in self.slopes().items():
            note = " (killed every round)" if name.startswith(VICTIM + ".") else ""
            print(f"  slope {name:<34}{slope:>+14,.1f} per hour{note}")
        print("  Redis keys at the end, by family (count, bytes):")
        for family, (count, size) in sorted(self.census.items(), key=lambda kv: -kv[1][1])[:12]:
            print(f"    {family:<40}{count:>10,}{size:>14,}")
        print(f"  CSV: {self.out / 'soak.csv'}  plot: {self.out / 'soak.png'}")
        return 1 if silent or dups else 0

    def _print_latency(self, latency: list[tuple[float, float]]) -> None:
        """Publish-to-arrival time, per tenth of the run: how far behind the clients
        (all in this process) fall as the run goes on."""
        if not latency:
            return
        latency.sort()
        span = (latency[-1][0] - latency[0][0]) or 1.0
        print("  latency, publish to arrival (s), per tenth of the run: p50 / p99 / p99.9 / max")
        for tenth in range(10):
            lo = latency[0][0] + span * tenth / 10
            hi = lo + span / 10
            part = sorted(d for t, d in latency if lo <= t < hi or (tenth == 9 and t == hi))
            if not part:
                continue

            def q(f: float, part: list[float] = part) -> float:
                return part[min(int(f * len(part)), len(part) - 1)]

            print(
                f"    {(lo - self.t0) / 60:5.1f}-{(hi - self.t0) / 60:5.1f} min"
                f"  {q(0.5):6.3f} {q(0.99):6.3f} {q(0.999):6.3f} {part[-1]:6.3f}"
                f"  ({len(part):,} arrivals)"
            )

    def _explain(self, user: User, msg: Published) -> str:
        """One line on a missed message: when, and what the user went through then."""
        t0 = self.t0
        near = [
            f"away {gone - t0:.1f}-{back - t0:.1f}s{' unrecovered ' + ','.join(st) if st else ''}"
            for gone, back, st in user.reconnects
            if gone - 30 < msg.start < back + 30
        ]
        chaos = [
            f"{what}@{at - t0:.1f}s" for at, what in self.chaos_log if abs(at - msg.start) < 30
        ]
        kind, _, target = msg.stream.partition(":")
        if kind == "room":  # when the user joined (a join while away is the suspect)
            spans = self.members.get(target, {}).get(user.name, [])
            chaos.append("joined " + ", ".join(f"{j - t0:.1f}s" for j, _ in spans))
        return (
            f"{user.name} on {user.server.name} missed #{msg.id} ({msg.stream}) published "
            f"{msg.start - t0:.1f}-{msg.end - t0:.1f}s; user {user.started - t0:.1f}-"
            f"{(user.ended or msg.end) - t0:.1f}s; {'; '.join(near) or 'no reconnect near'}; "
            f"chaos near: {', '.join(chaos) or 'none'}"
        )

    def _reported(self, user: User, msg: Published) -> bool:
        return any(
            msg.stream in streams and gone - GRACE <= msg.end and msg.start <= back
            for gone, back, streams in user.reconnects
        )

    def slopes(self) -> dict[str, float]:
        """Least-squares slope per hour of each sampled series, after a 20 % warm-up."""
        rows = self.samples[len(self.samples) // 5 :]
        result: dict[str, float] = {}
        if len(rows) < 3:
            return result
        tracked = ("rss_kib", "fds", "tasks")
        keys = [k for k in rows[-1] if k.endswith(tracked) or k.startswith("redis.")]
        for k in keys:
            pts = [(r["t"], r[k]) for r in rows if k in r]
            if len(pts) < 3:
                continue
            n = len(pts)
            mx = sum(p[0] for p in pts) / n
            my = sum(p[1] for p in pts) / n
            den = sum((p[0] - mx) ** 2 for p in pts) or 1.0
            result[k] = sum((p[0] - mx) * (p[1] - my) for p in pts) / den * 3600
        return result

    def _plot(self) -> None:
        plot(self.samples, self.out / "soak.png", f"{self.minutes:g} min")


def plot(samples: list[dict[str, Any]], path: Path, title: str) -> None:
    """RSS, fds and tasks per server, Redis memory and keys, over time, to ``path``."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("  (matplotlib is not installed: no plot; make soak installs it)")
        return
    panels = [
        ("RSS (MiB)", ".rss_kib", 1 / 1024),
        ("open fds", ".fds", 1),
        ("asyncio tasks", ".tasks", 1),
        ("Redis used memory (MiB)", "redis.used_memory", 1 / 2**20),
        ("Redis keys", "redis.keys", 1),
    ]
    fig, axes = plt.subplots(len(panels), 1, figsize=(9, 12), sharex=True)
    t = [float(r["t"]) / 60 for r in samples]
    names = sorted({k for r in samples for k in r})
    for ax, (label, key, scale) in zip(axes, panels, strict=True):
        for name in names:
            if name == key or (key.startswith(".") and name.endswith(key)):
                ys = [
                    float(r[name]) * scale if r.get(name) not in (None, "") else float("nan")
                    for r in samples
                ]
                ax.plot(t, ys, label=name.split(".")[0])
        ax.set_title(label, fontsize=10)
        ax.legend(fontsize=7, loc="upper left")
        ax.grid(alpha=0.3)
    axes[-1].set_xlabel("minutes (gaps: a server killed and started again)")
    fig.suptitle(f"soak: {title}, {USERS} users, churn {CHURN}/s, cuts, Redis pauses, kills")
    fig.tight_layout()
    fig.savefig(path, dpi=90)


async def main(minutes: float = 10.0, out: Path | None = None) -> None:
    folder = out or ROOT / "build" / "soak"
    folder.mkdir(parents=True, exist_ok=True)
    code = await Soak(minutes, folder).run()
    if code:
        raise SystemExit(code)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--plot", type=Path, default=None, help="only plot this soak.csv again")
    ns = parser.parse_args()
    if ns.plot is not None:
        with ns.plot.open() as f:
            plot(list(csv.DictReader(f)), ns.plot.with_suffix(".png"), ns.plot.stem)
    else:
        asyncio.run(main(ns.minutes, ns.out))
