"""The million, by simulation: the index presence mode at 100,000 and 1,000,000 connections.

``python -m bench presence``. This machine cannot hold a million sockets, but it can
hold a million connections' worth of presence: the benchmark drives
:class:`~svc_infra.websocket.scaleout.indexed.IndexedPresence` objects directly,
each with a minimal fake :class:`~svc_infra.websocket.server.protocols.PresenceHost`
(no ConnectionManager, no sockets), so the load generator is cheap and what is
measured is presence and Redis.

Setup, per size: a throwaway Redis Cluster of 3 masters and no replicas
(``tests/rediscluster.py``; replicas would only take the two cores from the load
generator), ``maxclients`` raised. ``PER_MANAGER`` (10,000) connections per
manager, so 10 managers at 100,000 and 100 at 1,000,000, each with its own
``IndexedPresence`` and its own redis-py ``RedisCluster`` client (``cluster_client``,
as the library builds it), ``ttl=30``. The managers live in ``WORKERS`` (2) worker
processes plus one probe process with ``PROBE_MANAGERS`` (2) managers under
tracemalloc; all of them are pinned to core 1 (``os.sched_setaffinity``), this
process to core 0, and the Redis masters float (on two cores they mostly run on
core 0). Per manager: 9,500 users with one connection here, and 500 second
connections of another manager's users (5 % of users have two). Each user is in
1, 2 or 3 rooms (50/30/20 %) drawn from a Zipf distribution (s = 1) over
``N / 100`` rooms (10,000 at a million); the app joins a user's rooms one after the
other with ``update_rooms``, 16 users at a time per manager.

Phases:

1. Fill: open every connection (``opened``) and join every room. Redis memory per
   connection: the masters' ``used_memory`` after minus before, over the
   connections. Fill time: from the first open to the counts read by one manager
   (``counts()``, polled every 50 ms) equal to the expected (connections, users,
   rooms). Then the steady state (``IDLE`` s of heartbeats only) and the cost of one
   ``counts()`` (client time, Redis CPU).
2. Presence memory per manager, in the probe: tracemalloc from before its
   presence objects exist; what ``indexed.py`` allocated and still holds (as
   ``presence_bytes`` of ``tests/websocket/scaleout/test_indexed.py``: every frame,
   without asyncio's and redis-py's own), after the fill, and at the top of the
   reconnect storm (10,000 closes and 10,000 opens queued, not written yet). The
   mirror mode is not run: its model is 400 B per cluster connection per process
   (``docs/scaling.md``).
3. Churn: every manager closes 10 % of its connections (users with one
   connection: they leave, ``user_left_here``) and opens as many for new users,
   who join their rooms. Redis CPU per connection change (``used_cpu_user +
   used_cpu_sys`` of each master, delta over closes + opens, heartbeats included),
   and the time from the last change handed to presence until the counts are right.
4. Reconnect storm: every manager closes all its connections (each user's last one
   here: ``user_left_here``) and reopens them at once; once its writer has written
   that (``_flush``: see below), it rejoins its users' rooms. Time from the start
   until the counts are right, and the Redis CPU per master.

After each phase the sum of every room's member count (``SCARD``) is checked
against the expected memberships. Why the storm waits for its own writer before
rejoining: a rejoin that reaches Redis before the batch with the user's ``?``
(last connection here closed) is undone by it (the report of this benchmark).

Environment: ``BENCH_PRESENCE_SIZES`` (default ``100000,1000000``),
``BENCH_PRESENCE_IDLE`` (seconds of steady state, default 16).
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import gc
import json
import os
import random
import resource
import statistics
import sys
import time
import tracemalloc
import uuid
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.rediscluster import RedisCluster, redis_cluster  # noqa: E402

SIZES = [int(s) for s in os.environ.get("BENCH_PRESENCE_SIZES", "100000,1000000").split(",")]
IDLE = float(os.environ.get("BENCH_PRESENCE_IDLE", "16"))
PER_MANAGER = 10_000
SECOND_SHARE = 0.05  # of a manager's connections: second connections of other users
CHURN = 0.10
ROOMS_PER_CONNECTION = 0.01  # 10,000 rooms at a million
ROOM_WEIGHTS = ((1, 0.5), (2, 0.3), (3, 0.2))
ZIPF_S = 1.0
JOINERS = 16  # users joining their rooms at once, per manager
WORKERS = 2
PROBE_MANAGERS = 2
TTL = 30.0
WORKER_CORE, MAIN_CORE = 1, 0
POLL = 0.05
VERBOSE = bool(os.environ.get("BENCH_VERBOSE"))
MIRROR_BYTES = 400  # per connection in every process (docs/scaling.md)
PREFIX = "bp:"


# --- the worker side: managers simulated by IndexedPresence objects ------------------


class FakeHost:
    """The least a PresenceHost can be: connections in a dict, a room table."""

    def __init__(self, ident: str) -> None:
        self._id = ident
        self.conns: dict[str, Any] = {}
        self.rooms: dict[str, tuple[int, list[str]]] = {}

    @property
    def id(self) -> str:
        return self._id

    def local_connections(self) -> list[Any]:
        return list(self.conns.values())

    def known_rooms(self) -> list[tuple[str, int, list[str]]]:
        return [(user, v, rooms) for user, (v, rooms) in self.rooms.items() if rooms]

    async def apply_rooms(self, user: str, rooms: list[str], version: int) -> None:
        old = self.rooms.get(user)
        if old is None or version > old[0]:
            self.rooms[user] = (version, list(rooms))

    async def announce(self, message: dict[str, Any]) -> None:
        pass

    @property
    def channel(self) -> str | None:
        return None

    async def rejoin_groups(self, again_after: float | None = None) -> None:
        pass

    async def evict_channel(self, channel: str, users: list[str], rooms: list[str]) -> None:
        pass


class Rooms:
    """Rooms drawn from a Zipf distribution; 1-3 per user."""

    def __init__(self, total: int, seed: int) -> None:
        self.names = [f"room{k}" for k in range(total)]
        weights = [1 / (k + 1) ** ZIPF_S for k in range(total)]
        self.cum = list(_accumulate(weights))
        self.rng = random.Random(seed)

    def draw(self) -> list[str]:
        r = self.rng.random()
        n = next(n for n, share in _accumulate_pairs(ROOM_WEIGHTS) if r < share)
        top = self.cum[-1]
        picked: dict[str, None] = {}
        while len(picked) < n:
            k = bisect.bisect_left(self.cum, self.rng.random() * top)
            picked[self.names[min(k, len(self.names) - 1)]] = None
        return list(picked)


def _accumulate(values: list[float]) -> list[float]:
    out, total = [], 0.0
    for v in values:
        total += v
        out.append(total)
    return out


def _accumulate_pairs(pairs: tuple[tuple[int, float], ...]) -> list[tuple[int, float]]:
    out, total = [], 0.0
    for n, share in pairs:
        total += share
        out.append((n, total))
    out[-1] = (out[-1][0], 1.01)
    return out


def presence_bytes(snapshot: tracemalloc.Snapshot) -> int:
    """What indexed.py allocated (any frame) and still holds, without asyncio's and
    redis-py's own (as tests/websocket/scaleout/test_indexed.py measures it)."""
    from svc_infra.websocket.scaleout import indexed

    ours = snapshot.filter_traces([tracemalloc.Filter(True, indexed.__file__, all_frames=True)])
    theirs = [tracemalloc.Filter(False, f"*/{lib}/*") for lib in ("asyncio", "redis")]
    return sum(t.size for t in ours.filter_traces(theirs).traces)


class Manager:
    """One simulated manager: a fake host, its IndexedPresence, its users' rooms."""

    def __init__(self, index: int, url: str, rooms: Rooms) -> None:
        from svc_infra.websocket.scaleout.cluster import cluster_client
        from svc_infra.websocket.scaleout.indexed import IndexedPresence

        self.index = index
        self.host = FakeHost(f"bench-{index}")
        self.presence = IndexedPresence(
            cluster_client([url]), self.host, key_prefix=PREFIX, ttl=TTL
        )
        self.room_draw = rooms
        self.primary: dict[str, list[str]] = {}  # users whose rooms this manager joins
        self.seconds: list[str] = []  # users whose second connection is here
        self.generation = 0

    def _open(self, user: str) -> None:
        from svc_infra.websocket.models import ConnectionInfo

        now = datetime.now(UTC)
        info = ConnectionInfo(user, uuid.uuid4().hex, now, now, {})
        self.host.conns[info.connection_id] = info
        self.presence.opened(info)

    async def _join(self, users: list[str]) -> None:
        async def joiner(queue: list[str]) -> None:
            while queue:
                user = queue.pop()
                for room in self.primary[user]:
                    version, rooms = await self.presence.update_rooms(user, "join", room)
                    self.host.rooms[user] = (version, rooms)

        queue = list(users)
        await asyncio.gather(*(joiner(queue) for _ in range(JOINERS)))

    async def fill(self, partner: int) -> None:
        n_seconds = int(PER_MANAGER * SECOND_SHARE)
        for i in range(PER_MANAGER - n_seconds):
            user = f"u{self.index}-{i}"
            self.primary[user] = self.room_draw.draw()
            self._open(user)
        self.seconds = [f"u{partner}-{i}" for i in range(n_seconds)]
        for user in self.seconds:
            self._open(user)
        await asyncio.sleep(0)
        await self._join(list(self.primary))

    async def churn(self, fraction: float) -> None:
        n = int(PER_MANAGER * fraction)
        n_seconds = len(self.seconds)
        # Users n_seconds.. have their only connection here (the first n_seconds
        # have a second one elsewhere): they leave.
        leaving = [u for u in list(self.primary)[n_seconds : n_seconds + n]]
        by_user = {info.user_id: info for info in self.host.conns.values()}
        for user in leaving:
            info = by_user[user]
            del self.host.conns[info.connection_id]
            self.presence.closed(info)
            self.presence.user_left_here(user)
            self.host.rooms.pop(user, None)
            del self.primary[user]
        self.generation += 1
        arriving = [f"u{self.index}g{self.generation}-{j}" for j in range(n)]
        for user in arriving:
            self.primary[user] = self.room_draw.draw()
            self._open(user)
        await asyncio.sleep(0)
        await self._join(arriving)

    def storm_queue(self) -> None:
        infos = list(self.host.conns.values())
        self.host.conns.clear()
        for info in infos:
            self.presence.closed(info)
        for user in {info.user_id for info in infos}:
            self.presence.user_left_here(user)
        self.host.rooms.clear()
        for info in infos:
            self._open(info.user_id)

    async def storm_rest(self) -> None:
        # What this manager queued is in Redis before its users rejoin (see the
        # module's documentation: a rejoin before the "?" is undone by it).
        await self.presence._flush()
        await self._join(list(self.primary))

    def room_members(self) -> Counter[str]:
        return Counter(room for rooms in self.primary.values() for room in rooms)


class Worker:
    def __init__(self, args: dict[str, Any]) -> None:
        self.args = args
        total_rooms = args["rooms"]
        self.managers = [
            Manager(i, args["url"], Rooms(total_rooms, seed=i)) for i in args["managers"]
        ]
        self.trace = args["trace"]

    def reply(self, **data: Any) -> None:
        sys.stdout.write(json.dumps(data) + "\n")
        sys.stdout.flush()

    def summary(self) -> dict[str, Any]:
        members: Counter[str] = Counter()
        for m in self.managers:
            members.update(m.room_members())
        return {
            "conns": sum(len(m.host.conns) for m in self.managers),
            "users": sum(len(m.primary) for m in self.managers),
            "members": dict(members),
        }

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        for m in self.managers:
            m.presence.launch()
        await asyncio.gather(*(m.presence.wait_ready() for m in self.managers))
        self.reply(ready=True)
        while line := await reader.readline():
            command = json.loads(line)
            handler = getattr(self, "do_" + command.pop("cmd"))
            self.reply(**await handler(**command))

    def partner(self, position: int) -> int:
        return self.managers[(position + 1) % len(self.managers)].index

    async def do_fill(self) -> dict[str, Any]:
        start = time.monotonic()
        await asyncio.gather(*(m.fill(self.partner(p)) for p, m in enumerate(self.managers)))
        return {"t_first": start, "t_last": time.monotonic(), **self.summary()}

    async def do_held(self) -> dict[str, Any]:
        gc.collect()
        held = presence_bytes(tracemalloc.take_snapshot()) if self.trace else 0
        tracemalloc.stop()
        return {"held": held / len(self.managers)}

    async def do_churn(self, fraction: float) -> dict[str, Any]:
        await asyncio.gather(*(m.churn(fraction) for m in self.managers))
        return {"t_last": time.monotonic(), **self.summary()}

    async def do_storm(self) -> dict[str, Any]:
        if self.trace:
            tracemalloc.start(10)
        start = time.monotonic()
        for m in self.managers:
            m.storm_queue()
        queued = 0
        if self.trace:
            queued = presence_bytes(tracemalloc.take_snapshot())
            tracemalloc.stop()
        await asyncio.gather(*(m.storm_rest() for m in self.managers))
        return {
            "t_first": start,
            "t_last": time.monotonic(),
            "queued": queued / len(self.managers),
            **self.summary(),
        }

    async def do_wait(self, expected: list[int], limit: float) -> dict[str, Any]:
        """Poll counts() of the first manager until it equals ``expected``."""
        presence = self.managers[0].presence
        seen: list[int] = []
        polls = 0
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            seen = list(await presence.counts())
            polls += 1
            if seen == expected:
                return {"t": time.monotonic(), "seen": seen, "polls": polls, "ok": True}
            await asyncio.sleep(POLL)
        return {"t": time.monotonic(), "seen": seen, "polls": polls, "ok": False}

    async def do_members(self, rooms: list[str]) -> dict[str, Any]:
        """The sum of the rooms' member counts, read from Redis."""
        from svc_infra.websocket.scaleout._index_scripts import bucket_tag

        client = self.managers[0].presence.client
        total = 0
        for start in range(0, len(rooms), 1000):
            pipe = client.pipeline(transaction=False)
            for room in rooms[start : start + 1000]:
                pipe.scard(f"{PREFIX}{bucket_tag(room)}m:{room}")
            total += sum(await pipe.execute())
        return {"members": total}

    async def do_counts_cost(self, calls: int) -> dict[str, Any]:
        presence = self.managers[0].presence
        took = []
        for _ in range(calls):
            start = time.perf_counter()
            await presence.counts()
            took.append(time.perf_counter() - start)
        return {"median": statistics.median(took)}

    async def do_stats(self) -> dict[str, Any]:
        ps = [m.presence for m in self.managers]
        return {
            "errors": sum(p.errors for p in ps),
            "resyncs": sum(p.resyncs for p in ps),
            "reaped": sum(p.reaped for p in ps),
            "rss": _rss(),
        }

    async def do_exit(self) -> dict[str, Any]:
        self.reply(bye=True)
        os._exit(0)


def _rss() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def worker_main(args: dict[str, Any]) -> None:
    os.sched_setaffinity(0, {WORKER_CORE})
    if args["trace"]:
        tracemalloc.start(10)
    asyncio.run(Worker(args).run())


# --- the orchestrating side -------------------------------------------------------------


class WorkerProc:
    def __init__(self, proc: asyncio.subprocess.Process, name: str) -> None:
        self.proc, self.name = proc, name

    async def ask(self, cmd: str, limit: float = 600, **args: Any) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write((json.dumps({"cmd": cmd, **args}) + "\n").encode())
        await self.proc.stdin.drain()
        return await self.read(limit)

    async def read(self, limit: float) -> dict[str, Any]:
        assert self.proc.stdout is not None
        async with asyncio.timeout(limit):
            line = await self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"worker {self.name} exited ({await self.proc.wait()})")
        return dict(json.loads(line))


def info(cluster: RedisCluster, section: str) -> dict[int, dict[str, str]]:
    out = {}
    for port in cluster.masters():
        text = cluster.cli(port, "info", section)
        out[port] = dict(line.split(":", 1) for line in text.split() if ":" in line)
    return out


def cpu(cluster: RedisCluster) -> dict[int, float]:
    return {
        port: float(i["used_cpu_user"]) + float(i["used_cpu_sys"])
        for port, i in info(cluster, "cpu").items()
    }


def memory(cluster: RedisCluster) -> int:
    return sum(int(i["used_memory"]) for i in info(cluster, "memory").values())


def clients(cluster: RedisCluster) -> list[int]:
    return [int(i["connected_clients"]) for i in info(cluster, "clients").values()]


def commandstats(cluster: RedisCluster) -> dict[str, tuple[int, int]]:
    """Calls and microseconds per command, summed over the masters (since RESETSTAT)."""
    total: dict[str, list[int]] = {}
    for stats in info(cluster, "commandstats").values():
        for key, value in stats.items():
            fields = dict(part.split("=") for part in value.split(","))
            entry = total.setdefault(key.removeprefix("cmdstat_"), [0, 0])
            entry[0] += int(fields["calls"])
            entry[1] += int(fields["usec"])
    return {k: (v[0], v[1]) for k, v in total.items()}


def reset_stats(cluster: RedisCluster) -> None:
    for port in cluster.masters():
        cluster.cli(port, "config", "resetstat")


def top_commands(stats: dict[str, tuple[int, int]], n: int = 5) -> str:
    total = sum(us for _, us in stats.values()) or 1
    ranked = sorted(stats.items(), key=lambda kv: -kv[1][1])[:n]
    return ", ".join(
        f"{name} {calls:,} calls {us / 1e6:.2f} s ({100 * us / total:.0f} %,"
        f" {us / max(calls, 1):.1f} us/call)"
        for name, (calls, us) in ranked
    )


def delta(after: dict[int, float], before: dict[int, float]) -> list[float]:
    return [after[p] - before[p] for p in sorted(after)]


async def start_workers(url: str, managers: int, rooms: int) -> tuple[list[WorkerProc], WorkerProc]:
    probe_ids = list(range(min(PROBE_MANAGERS, managers)))
    rest = list(range(len(probe_ids), managers))
    groups = [rest[w::WORKERS] for w in range(WORKERS)]
    procs = []
    for name, ids, trace in [("probe", probe_ids, True)] + [
        (f"worker{w}", ids, False) for w, ids in enumerate(groups) if ids
    ]:
        args = {"url": url, "managers": ids, "rooms": rooms, "trace": trace}
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bench.presence",
            "--worker",
            json.dumps(args),
            cwd=ROOT,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        procs.append(WorkerProc(proc, name))
    for w in procs:
        await w.read(120)  # ready
    normal = procs[1] if len(procs) > 1 else procs[0]
    return procs, normal


async def ask_all(workers: list[WorkerProc], cmd: str, **args: Any) -> list[dict[str, Any]]:
    log(cmd)
    return list(await asyncio.gather(*(w.ask(cmd, **args) for w in workers)))


def log(what: str) -> None:
    if VERBOSE:
        print(f"  [{time.strftime('%H:%M:%S')}] {what}", file=sys.stderr, flush=True)


def expected_of(replies: list[dict[str, Any]]) -> tuple[list[int], Counter[str]]:
    members: Counter[str] = Counter()
    for r in replies:
        members.update(r["members"])
    conns = sum(r["conns"] for r in replies)
    users = sum(r["users"] for r in replies)
    return [conns, users, sum(1 for c in members.values() if c)], members


async def check_members(poller: WorkerProc, members: Counter[str]) -> int:
    """Memberships missing in Redis (expected minus read)."""
    read = (await poller.ask("members", rooms=list(members)))["members"]
    return sum(members.values()) - int(read)


async def run_size(n: int) -> dict[str, Any]:
    managers = n // PER_MANAGER
    rooms = max(100, int(n * ROOMS_PER_CONNECTION))
    limit = 60 + n / 2_000  # seconds a phase may take before the benchmark gives up
    r: dict[str, Any] = {"n": n, "managers": managers, "rooms_total": rooms}
    with redis_cluster(masters=3, replicas=0) as cluster:
        for port in cluster.masters():
            cluster.cli(port, "config", "set", "maxclients", "19000")
        workers, poller = await start_workers(cluster.url, managers, rooms)
        probe = workers[0]
        try:
            mem0 = memory(cluster)
            cpu0 = cpu(cluster)
            reset_stats(cluster)
            # 1. Fill.
            replies = await ask_all(workers, "fill")
            expected, members = expected_of(replies)
            t_first = min(x["t_first"] for x in replies)
            t_last = max(x["t_last"] for x in replies)
            done = await poller.ask("wait", expected=expected, limit=limit)
            r["fill_ok"] = done["ok"]
            r["expected"] = expected
            r["fill_s"] = done["t"] - t_first
            r["fill_queue_s"] = t_last - t_first
            cpu1 = cpu(cluster)
            r["fill_cpu"] = delta(cpu1, cpu0)
            r["fill_top"] = top_commands(commandstats(cluster))
            r["memory"] = memory(cluster) - mem0
            r["clients"] = clients(cluster)
            r["fill_lost"] = await check_members(poller, members)
            # 2. Presence memory per manager (probe), then the steady state.
            r["held"] = (await probe.ask("held"))["held"]
            reset_stats(cluster)
            cpu_a, t_a = cpu(cluster), time.monotonic()
            await asyncio.sleep(IDLE)
            r["idle_cpu"] = [x / (time.monotonic() - t_a) for x in delta(cpu(cluster), cpu_a)]
            r["idle_top"] = top_commands(commandstats(cluster), 4)
            calls = 100
            cpu_a = cpu(cluster)
            r["counts_client"] = (await poller.ask("counts_cost", calls=calls))["median"]
            r["counts_cpu"] = sum(delta(cpu(cluster), cpu_a)) / calls
            # 3. Churn.
            reset_stats(cluster)
            cpu_a = cpu(cluster)
            replies = await ask_all(workers, "churn", fraction=CHURN)
            t_last = max(x["t_last"] for x in replies)
            expected, members = expected_of(replies)
            done = await poller.ask("wait", expected=expected, limit=limit)
            r["churn_ok"] = done["ok"]
            r["churn_converge"] = done["t"] - t_last
            r["churn_polls"] = done["polls"]
            r["churn_changes"] = 2 * int(n * CHURN)
            r["churn_cpu"] = delta(cpu(cluster), cpu_a)
            r["churn_top"] = top_commands(commandstats(cluster))
            r["churn_lost"] = await check_members(poller, members)
            r["memory_after_churn"] = memory(cluster) - mem0
            # 4. Reconnect storm.
            reset_stats(cluster)
            cpu_a = cpu(cluster)
            replies = await ask_all(workers, "storm")
            t_first = min(x["t_first"] for x in replies)
            t_last = max(x["t_last"] for x in replies)
            expected, members = expected_of(replies)
            done = await poller.ask("wait", expected=expected, limit=limit)
            r["storm_ok"] = done["ok"]
            r["storm_s"] = done["t"] - t_first
            r["storm_queue_s"] = t_last - t_first
            r["storm_cpu"] = delta(cpu(cluster), cpu_a)
            r["storm_top"] = top_commands(commandstats(cluster))
            r["storm_lost"] = await check_members(poller, members)
            r["queued"] = next(x["queued"] for x in replies if x["queued"])
            stats = await ask_all(workers, "stats")
            for key in ("errors", "resyncs", "reaped"):
                # Every manager resyncs once at launch (its first heartbeat).
                r[key] = sum(s[key] for s in stats) - (managers if key == "resyncs" else 0)
            r["worker_rss"] = [s["rss"] for s in stats]
        finally:
            for w in workers:
                with contextlib.suppress(Exception):
                    await w.ask("exit", limit=10)
                with contextlib.suppress(ProcessLookupError):
                    w.proc.kill()
                await w.proc.wait()
    return r


def _mb(x: float) -> str:
    return f"{x / 1e6:,.1f} MB" if x >= 1e6 else f"{x / 1e3:,.1f} KB"


def report(results: list[dict[str, Any]], wall: float) -> None:
    sizes = [f"{r['n']:,}" for r in results]
    print(
        "\nIndex presence, the million by simulation: IndexedPresence objects and fake hosts"
        f" ({PER_MANAGER:,} connections per manager), 3-master Redis Cluster, no replicas;"
        f" load on core {WORKER_CORE}, Redis floating"
    )
    width = 18
    print(f"{'measure':<58}" + "".join(f"{s:>{width}}" for s in sizes) + "   target at 1M")

    def row(label: str, values: list[str], target: str = "") -> None:
        print(f"{label:<58}" + "".join(f"{v:>{width}}" for v in values) + f"   {target}")

    def spread(xs: list[float]) -> float:
        return max(xs) / max(min(xs), 1e-9)

    row("managers (processes)", [str(r["managers"]) for r in results])
    row(
        "expected connections / users / rooms",
        [
            f"{r['expected'][0] // 1000}k/{r['expected'][1] // 1000}k/{r['expected'][2]:,}"
            for r in results
        ],
    )
    row(
        "fill: open all + join rooms, until counts right, s",
        [f"{r['fill_s']:.1f}" for r in results],
    )
    row(
        "fill: Redis CPU per connection (opens + joins), us",
        [f"{sum(r['fill_cpu']) / r['n'] * 1e6:.1f}" for r in results],
    )
    row(
        "Redis memory per connection (3 masters), B",
        [f"{r['memory'] / r['n']:,.0f}" for r in results],
        "<= 1,024",
    )
    row(
        "the same after the churn (10-min tombstones), B",
        [f"{r['memory_after_churn'] / r['n']:,.0f}" for r in results],
    )
    row("Redis connections per master (max)", [f"{max(r['clients']):,}" for r in results])
    row("presence memory per manager, at rest", [_mb(r["held"]) for r in results], "<= 10 MB")
    row("the same, storm top (20,000 ops queued)", [_mb(r["queued"]) for r in results])
    row(
        "mirror mode, model (400 B x cluster connections)",
        [_mb(MIRROR_BYTES * r["n"]) for r in results],
        "(400 MB)",
    )
    row(
        "steady state: Redis CPU, ms/s (sum of masters)",
        [f"{sum(r['idle_cpu']) * 1e3:.1f}" for r in results],
    )
    row(
        "counts(): client ms / Redis CPU us per call",
        [f"{r['counts_client'] * 1e3:.1f} / {r['counts_cpu'] * 1e6:.0f}" for r in results],
    )
    row(
        "churn 10 %: Redis CPU per connection change, us",
        [f"{sum(r['churn_cpu']) / r['churn_changes'] * 1e6:.1f}" for r in results],
    )
    row(
        "  per master, us",
        ["/".join(f"{x / r['churn_changes'] * 1e6:.1f}" for x in r["churn_cpu"]) for r in results],
    )
    row(
        "churn: counts right after the last change, s",
        [f"{r['churn_converge']:.2f}" for r in results],
        "<= 2 s",
    )
    row(
        "storm: all close and reopen, until counts right, s",
        [f"{r['storm_s']:.1f}" for r in results],
    )
    row(
        "storm: Redis CPU, s (sum of masters)",
        [f"{sum(r['storm_cpu']):.1f}" for r in results],
    )
    row(
        "  per master, s",
        ["/".join(f"{x:.1f}" for x in r["storm_cpu"]) for r in results],
    )
    row(
        "  busiest master / idlest",
        [f"{spread(r['storm_cpu']):.2f}" for r in results],
    )
    row(
        "storm: Redis CPU per connection (close+reopen+rejoin), us",
        [f"{sum(r['storm_cpu']) / r['n'] * 1e6:.1f}" for r in results],
    )
    row(
        "memberships lost (fill / churn / storm)",
        [f"{r['fill_lost']}/{r['churn_lost']}/{r['storm_lost']}" for r in results],
    )
    row(
        "presence errors / resyncs / reaped",
        [f"{r['errors']}/{r['resyncs']}/{r['reaped']}" for r in results],
    )
    for r in results:
        ok = all(r[k] for k in ("fill_ok", "churn_ok", "storm_ok"))
        print(f"\n{r['n']:,}: counts converged in every phase: {ok}")
        print(
            f"  fill ({r['fill_queue_s']:.1f} s to hand every change to presence): {r['fill_top']}"
        )
        print(
            f"  steady state, per master ms/s {[round(x * 1e3, 1) for x in r['idle_cpu']]}: {r['idle_top']}"
        )
        print(f"  churn: {r['churn_top']}")
        print(f"  storm ({r['storm_queue_s']:.1f} s to hand every change): {r['storm_top']}")
        print(f"  load generator RSS: {[_mb(x) for x in r['worker_rss']]}")
    print(f"\nwall time {wall:.0f} s")


async def main() -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # Redis and workers inherit it
    os.sched_setaffinity(0, {MAIN_CORE})
    start = time.monotonic()
    results = []
    try:
        for n in SIZES:
            results.append(await run_size(n))
            print(f"[{n:,} done after {time.monotonic() - start:.0f} s]", flush=True)
    finally:
        os.sched_setaffinity(0, range(os.cpu_count() or 1))
    report(results, time.monotonic() - start)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--worker":
        worker_main(json.loads(sys.argv[2]))
    else:
        asyncio.run(main())
