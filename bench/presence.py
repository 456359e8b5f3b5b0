"""The million, by simulation: the index presence mode at 100,000 and 1,000,000 connections.

``python -m bench presence``. This machine cannot hold a million sockets, but it can
hold a million connections' worth of presence: the benchmark drives
:class:`~svc_infra.websocket.scaleout.indexed.IndexedPresence` objects directly,
each with a minimal fake :class:`~svc_infra.websocket.server.protocols.PresenceHost`
(no ConnectionManager, no sockets), so what is measured is presence and Redis.

Setup, per size: a throwaway Redis Cluster of 3 masters and no replicas
(``tests/rediscluster.py``; replicas would take the two cores from the load
generator), ``maxclients`` raised, ``cluster-node-timeout`` Redis' default (15 s;
the tests' 2 s marks a master starved of CPU for 2 s failed, and the cluster down).
``PER_MANAGER`` (10,000) connections per simulated manager (process): 10 managers
at 100,000, 100 at 1,000,000, each with its own ``IndexedPresence`` and its own
``RedisCluster`` client (``cluster_client``, as the library builds it). The
managers live in ``WORKERS`` (2) worker processes and one probe process (one
manager, under tracemalloc), all pinned to core 1
(``os.sched_setaffinity``); this process is on core 0; the Redis masters float
(they mostly run on core 0). Per manager: 9,500 users, the first 500 of them with
a second connection (on the same manager: see :meth:`Manager.open_all`). Each user
is in 1, 2 or 3 rooms (50/30/20 %) drawn from a Zipf distribution (s = 1) over
``N / 100`` rooms (10,000 at a million).

Two settings differ from a server's, because 50 managers share each worker's event
loop on one core (a server has one manager per loop): ``presence_ttl`` is an hour
(``BENCH_PRESENCE_TTL``; with 30, the loop is late enough in a storm that live
managers are reaped), so the managers' own heartbeats stay out of the phases and
one heartbeat is measured on its own; and redis-py's timeouts are 60 s
(``BENCH_PRESENCE_TIMEOUT``; with ``cluster_client``'s 2 s, replies read late by a
blocked loop count as timeouts, and redis-py runs the scripts again).

Phases:

1. Fill: the probe first (traced, slow, not timed), then every connection opened
   (``opened``); the fill time runs from the first open until the counts read by
   one manager (``counts()``, polled every 50 ms) equal the expected (connections,
   users, rooms). Then the rooms, loaded in bulk (:func:`bulk_rooms`: redis-py's
   client cost per script call would take the load generator's core for minutes at
   a million). Redis memory per connection: the masters' ``used_memory`` (INFO
   memory) after minus before, over the connections.
2. Presence memory per manager, in the probe: tracemalloc from before its presence
   object exists; what the index mode's modules allocated and still hold (as
   ``presence_bytes`` of ``tests/websocket/scaleout/test_indexed.py``: any frame,
   without asyncio's and redis-py's own), after the fill, and with a whole storm
   queued (10,000 closes, 9,500 last-connection checks, 10,000 opens) before the
   writer takes it. The mirror mode is not run: its model is 400 B per cluster
   connection in every process (``docs/scaling.md``). Then one heartbeat
   (``_beat``) and one ``counts()``, each repeated from one manager: client time,
   Redis CPU.
3. Churn: 10 % of the connections close (users with one connection: they leave,
   ``user_left_here``) and as many open for new users, whose rooms were joined
   before they connect (``JOINED`` of them per manager with ``update_rooms``, the
   rest in bulk). Redis CPU (``used_cpu_user + used_cpu_sys`` of each master, INFO
   cpu) per ``update_rooms`` join, and per connection change (close or open) of the
   burst; the time from the last change handed to presence until the counts are
   right, and until the rooms' member sets are.
4. Reconnect storm: every manager closes all its connections (each user's last
   one here: ``user_left_here``, so with ``room_grace`` 0 everyone leaves their
   rooms) and reopens them, at once. The time until the connection and user counts
   are right, the Redis CPU per master, and what is left in the rooms (nothing
   should be).

During the churn and the storm this process PINGs every master every 50 ms (how
long a liveness refresh would wait), and every worker counts the calls redis-py
made to a node that failed (it retries them). ``BENCH_PRESENCE_SIZES`` (default
``100000,1000000``), ``BENCH_VERBOSE=1`` for a log of the phases on stderr.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import gc
import inspect
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
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.rediscluster import RedisCluster, redis_cluster  # noqa: E402

SIZES = [int(s) for s in os.environ.get("BENCH_PRESENCE_SIZES", "100000,1000000").split(",")]
PER_MANAGER = 10_000
SECOND_SHARE = 0.05  # of a manager's connections: second connections of its first users
CHURN = 0.10
ROOMS_PER_CONNECTION = 0.01  # 10,000 rooms at a million
ROOM_WEIGHTS = ((1, 0.5), (2, 0.3), (3, 0.2))
ZIPF_S = 1.0
JOINERS = 16  # users joining their rooms at once, per manager
JOINED = 200  # arrivals per manager whose rooms are joined with update_rooms
WORKERS = 2
PROBE_MANAGERS = 1
FRAMES = 4  # tracemalloc's frames: enough to reach indexed.py from json.dumps; 10 is 10x slower
# presence_ttl of the simulated managers: an hour, so that their own heartbeats
# (every ttl / 4) stay out of the phases; one heartbeat is measured on its own and
# scaled to ttl 30. Not 30 itself: 50 managers share each worker's loop, and with
# 30 (liveness refreshed every 7.5 s, the key lasting 15 s) a storm makes that loop
# late enough that live managers are reaped, and 50 aligned heartbeats (a room
# version check of 10,000 users every fourth) take the load generator's core.
TTL = float(os.environ.get("BENCH_PRESENCE_TTL", "3600"))
# redis-py's read and connect timeouts (cluster_client's: 2 s). 50 managers share a
# worker's loop, which a storm blocks for tens of seconds: with 2 s, replies read
# late count as timeouts, and redis-py runs the scripts again (the report).
TIMEOUT = float(os.environ.get("BENCH_PRESENCE_TIMEOUT", "60"))
WORKER_CORE, MAIN_CORE = 1, 0
POLL = 0.05
CHUNK = 500  # connections opened between two yields to the loop
PIPELINE = 2000  # script calls per pipeline when loading rooms
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

    def room_version(self, user: str) -> int:
        return self.rooms.get(user, (0, []))[0]

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
    """What the index mode's modules (indexed.py and the classes it builds on)
    allocated, in any frame, and still hold, without asyncio's and redis-py's own
    (as tests/websocket/scaleout/test_indexed.py measures it)."""
    from svc_infra.websocket.scaleout.indexed import IndexedPresence

    files = {
        inspect.getfile(cls) for cls in IndexedPresence.__mro__ if cls.__module__.startswith("svc_")
    }
    ours = snapshot.filter_traces([tracemalloc.Filter(True, f, all_frames=True) for f in files])
    theirs = [tracemalloc.Filter(False, f"*/{lib}/*") for lib in ("asyncio", "redis")]
    return sum(t.size for t in ours.filter_traces(theirs).traces)


def _resp(*args: str) -> bytes:
    parts = [f"*{len(args)}\r\n"]
    for arg in args:
        parts.append(f"${len(arg.encode())}\r\n{arg}\r\n")
    return "".join(parts).encode()


async def _send_raw(host: str, port: int, commands: list[bytes]) -> None:
    """Write ``commands`` (integer replies only) to one master; read every reply."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(b"".join(commands))
        await writer.drain()
        replies = b""
        async with asyncio.timeout(120):
            while replies.count(b"\r\n") < len(commands):
                data = await reader.read(1 << 16)
                if not data:
                    raise ConnectionError("the master closed the connection")
                replies += data
        bad = [line for line in replies.split(b"\r\n") if line and not line.startswith(b":")]
        if bad:
            raise RuntimeError(f"bulk load refused: {bad[:3]!r}")
    finally:
        writer.close()
        await writer.wait_closed()


async def bulk_rooms(client: Any, items: list[tuple[str, list[str]]], version: int) -> int:
    """Write users' room sets, and the rooms' member sets, as USER_ROOMS and
    ROOM_OPS leave them (``r:<user>``, ``rv``, ``m:<room>``, ``rooms``), with plain
    commands batched per bucket and sent raw to each master: redis-py costs about
    100 us of client CPU per command on this machine, so a million users' rooms
    through it would take the load generator's core for minutes (the Redis CPU of
    a join through ``update_rooms`` is measured in the churn). Returns the commands."""
    from svc_infra.websocket.scaleout._index_scripts import bucket_tag

    nodes: dict[str, tuple[str, int]] = {}

    def node(tag: str) -> tuple[str, int]:
        if tag not in nodes:
            found = client.get_node_from_key(f"{PREFIX}{tag}nc")
            nodes[tag] = (found.host, int(found.port))
        return nodes[tag]

    commands: dict[tuple[str, int], list[bytes]] = {}
    versions: dict[str, list[str]] = {}
    members: dict[str, list[str]] = {}
    for user, rooms in items:
        tag = bucket_tag(user)
        commands.setdefault(node(tag), []).append(_resp("SADD", f"{PREFIX}{tag}r:{user}", *rooms))
        versions.setdefault(tag, []).extend((user, str(version)))
        for room in rooms:
            members.setdefault(room, []).append(user)
    for tag, fields in versions.items():
        commands[node(tag)].append(_resp("HSET", f"{PREFIX}{tag}rv", *fields))
    present: dict[str, list[str]] = {}
    for room, users in members.items():
        tag = bucket_tag(room)
        commands.setdefault(node(tag), []).append(_resp("SADD", f"{PREFIX}{tag}m:{room}", *users))
        present.setdefault(tag, []).append(room)
    for tag, names in present.items():
        commands[node(tag)].append(_resp("SADD", f"{PREFIX}{tag}rooms", *names))
    await asyncio.gather(*(_send_raw(h, p, cmds) for (h, p), cmds in commands.items()))
    return sum(len(cmds) for cmds in commands.values())


def measure_in_child() -> tuple[int, int]:
    """Fork: the child snapshots tracemalloc and writes :func:`presence_bytes` to a
    pipe; the parent stops tracing and goes on at once (a snapshot of a traced
    process takes seconds, and a loop blocked for ttl / 2 gets the manager
    reaped). Returns (child pid, read end) for :func:`child_result`."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: no await, no loop
        try:
            os.close(read)
            os.write(write, str(presence_bytes(tracemalloc.take_snapshot())).encode())
        finally:
            os._exit(0)
    os.close(write)
    tracemalloc.stop()
    return pid, read


async def child_result(child: tuple[int, int]) -> int:
    pid, read = child

    def wait() -> bytes:
        with os.fdopen(read, "rb") as pipe:
            data = pipe.read()
        os.waitpid(pid, 0)
        return data

    return int(await asyncio.get_running_loop().run_in_executor(None, wait) or 0)


class Manager:
    """One simulated manager: a fake host, its IndexedPresence, its users' rooms."""

    def __init__(self, index: int, url: str, rooms: Rooms) -> None:
        from svc_infra.websocket.scaleout.cluster import cluster_client
        from svc_infra.websocket.scaleout.indexed import IndexedPresence

        self.index = index
        self.host = FakeHost(f"bench-{index}")
        client = cluster_client([url], socket_timeout=TIMEOUT, socket_connect_timeout=TIMEOUT)
        self.presence = IndexedPresence(client, self.host, key_prefix=PREFIX, ttl=TTL)
        self.watch_liveness()
        self.room_draw = rooms
        self.primary: dict[str, list[str]] = {}  # users whose rooms this manager joins
        self.seconds: list[str] = []  # users with a second connection
        self.arriving: list[str] = []  # the churn's new users

    def watch_liveness(self) -> None:
        """Record the liveness refreshes (``SET <prefix>{p:<id>}live ... XX``): the
        longest gap between two that succeeded, and the ones that failed (the
        client's ``set`` wrapped on this instance; presence itself unchanged)."""
        client = self.presence.client
        plain = client.set
        self.live_ok_at = time.monotonic()
        self.live_gap = 0.0
        self.live_failures: list[str] = []

        async def set_(name: Any, *args: Any, **kwargs: Any) -> Any:
            if not str(name).endswith("}live") or not kwargs.get("xx"):
                return await plain(name, *args, **kwargs)
            start = time.monotonic()
            try:
                ok = await plain(name, *args, **kwargs)
            except Exception as exc:
                self.live_failures.append(
                    f"{type(exc).__name__} after {time.monotonic() - start:.1f} s"
                )
                log(f"manager {self.index}: liveness refresh failed: {self.live_failures[-1]}")
                raise
            now = time.monotonic()
            if ok:
                self.live_gap = max(self.live_gap, now - self.live_ok_at)
                self.live_ok_at = now
            else:
                self.live_failures.append(
                    f"key gone ({now - self.live_ok_at:.1f} s after the last refresh)"
                )
                log(
                    f"manager {self.index}: liveness key gone,"
                    f" {now - self.live_ok_at:.1f} s after the last refresh"
                )
            return ok

        client.set = set_

    def _open_now(self, users: list[str]) -> None:
        from svc_infra.websocket.models import ConnectionInfo

        now = datetime.now(UTC)
        for user in users:
            info = ConnectionInfo(user, uuid.uuid4().hex, now, now, {})
            self.host.conns[info.connection_id] = info
            self.presence.opened(info)

    async def _open(self, users: list[str]) -> None:
        """Open a connection for each user, yielding to the loop every CHUNK (a
        server registers connections one at a time; a loop blocked for seconds
        would make redis-py's reads time out)."""
        for start in range(0, len(users), CHUNK):
            self._open_now(users[start : start + CHUNK])
            await asyncio.sleep(0)

    async def open_all(self) -> None:
        n_seconds = int(PER_MANAGER * SECOND_SHARE)
        users = [f"u{self.index}-{i}" for i in range(PER_MANAGER - n_seconds)]
        for user in users:
            self.primary[user] = self.room_draw.draw()
        # The first users have a second connection, on the same manager: a user's
        # connections on two managers would make the storm's outcome (does the
        # user keep their rooms?) depend on which writer runs first.
        self.seconds = users[:n_seconds]
        await self._open(users + self.seconds)

    async def load_rooms(self, users: list[str]) -> int:
        """Put ``users`` in their rooms in Redis in bulk (see :func:`bulk_rooms`)."""
        version = time.time_ns() // 1000  # as the scripts' versions: microseconds
        items = [(user, self.primary[user]) for user in users]
        commands = await bulk_rooms(self.presence.client, items, version)
        for user, rooms in items:
            self.host.rooms[user] = (version, list(rooms))
        return commands

    async def arrive(self, fraction: float) -> None:
        """The churn's new users: their rooms drawn, and those of all but the first
        JOINED joined in bulk before they connect (redis-py's client cost: see
        :func:`bulk_rooms`)."""
        n = int(PER_MANAGER * fraction)
        self.arriving = [f"u{self.index}c-{j}" for j in range(n)]
        for user in self.arriving:
            self.primary[user] = self.room_draw.draw()
        if self.arriving[JOINED:]:
            await self.load_rooms(self.arriving[JOINED:])

    async def join_arriving(self) -> int:
        """The first JOINED new users join their rooms before they connect, one
        update_rooms after the other (JOINERS users at a time), as an app does.
        Returns the joins."""

        async def joiner(queue: list[str]) -> None:
            while queue:
                user = queue.pop()
                for room in self.primary[user]:
                    version, rooms = await self.presence.update_rooms(user, "join", room)
                    self.host.rooms[user] = (version, rooms)

        sample = self.arriving[:JOINED]
        queue = list(sample)
        await asyncio.gather(*(joiner(queue) for _ in range(JOINERS)))
        return sum(len(self.primary[u]) for u in sample)

    def churn_burst(self, fraction: float) -> None:
        """Close ``fraction`` of the connections (users with one: they leave) and
        open as many for the arriving users, all queued at once (no await)."""
        n = int(PER_MANAGER * fraction)
        n_seconds = len(self.seconds)
        # The first n_seconds users have two connections: skip them.
        leaving = list(self.primary)[n_seconds : n_seconds + n]
        by_user = {info.user_id: info for info in self.host.conns.values()}
        for user in leaving:
            info = by_user[user]
            del self.host.conns[info.connection_id]
            self.presence.closed(info)
            self.presence.user_left_here(user)
            self.host.rooms.pop(user, None)
            del self.primary[user]
        self._open_now(self.arriving)

    async def storm(self, traced: bool = False) -> tuple[int, int] | None:
        """Close every connection here and reopen them at once: each user's last
        connection here closes (user_left_here), so in Redis every user leaves
        their rooms (``room_grace`` 0, the default; the app's rejoins are not part
        of the storm: see the churn for what a join costs). Returns (``traced``:
        tracemalloc is on) the child that measures what presence holds with the
        whole storm queued, before its writer took any of it."""
        infos = list(self.host.conns.values())
        self.host.conns.clear()
        for info in infos:
            self.presence.closed(info)
        for user in {info.user_id for info in infos}:
            self.presence.user_left_here(user)
        for user in self.primary:
            self.primary[user] = []
        self.host.rooms.clear()
        users = [info.user_id for info in infos]
        if traced:
            self._open_now(users)  # no yield before the snapshot
            return measure_in_child()
        await self._open(users)
        return None

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
        reader = asyncio.StreamReader(limit=1 << 26)  # a command can list every room
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        for m in self.managers:
            m.presence.launch()
        await asyncio.gather(*(m.presence.wait_ready() for m in self.managers))
        from svc_infra.websocket.scaleout import _index_scripts as lua

        client = self.managers[0].presence.client
        for name in ("USER_ROOMS", "ROOM_OPS"):
            await client.script_load(getattr(lua, name))  # on every master
        self.monitor_task = loop.create_task(self.monitor())
        log(f"{self.args['name']}: ready")
        self.reply(ready=True)
        while line := await reader.readline():
            command = json.loads(line)
            name = command.pop("cmd")
            start = time.monotonic()
            answer = await getattr(self, "do_" + name)(**command)
            # What this process holds for its managers is long-lived: out of the
            # collector's way (a full collection of a million objects blocks the
            # loop for seconds on this machine; a real server holds 1/50 of it).
            gc.freeze()
            log(f"{self.args['name']}: {name} took {time.monotonic() - start:.2f} s")
            self.reply(**answer)

    async def monitor(self) -> None:
        """Log (BENCH_VERBOSE) a loop blocked for over a second, and every error,
        resync and reap, with the manager's id."""
        seen = {m.index: (0, 0, 0) for m in self.managers}
        self.max_lag = 0.0
        while True:
            before = time.monotonic()
            await asyncio.sleep(0.5)
            lag = time.monotonic() - before - 0.5
            gc.collect(1)
            self.max_lag = max(self.max_lag, lag)
            if lag > 1:
                log(f"{self.args['name']}: loop blocked {lag:.1f} s")
            for m in self.managers:
                p = m.presence
                now = (p.errors, p.resyncs, p.reaped)
                if now != seen[m.index]:
                    log(f"{self.args['name']}: manager {m.index} errors/resyncs/reaped {now}")
                    seen[m.index] = now

    async def do_open(self) -> dict[str, Any]:
        start = time.monotonic()
        await asyncio.gather(*(m.open_all() for m in self.managers))
        return {"t_first": start, "t_last": time.monotonic(), **self.summary()}

    async def do_summary(self) -> dict[str, Any]:
        return {"t_first": 0.0, "t_last": 0.0, "calls": 0, **self.summary()}

    async def do_probe_fill(self) -> dict[str, Any]:
        """The probe's managers fill (traced, so slowly) before the timed fill."""
        await self.do_open()
        for m in self.managers:
            await m.presence._flush()
        await self.do_rooms()
        return {}

    async def do_rooms(self) -> dict[str, Any]:
        calls = await asyncio.gather(*(m.load_rooms(list(m.primary)) for m in self.managers))
        return {"t_last": time.monotonic(), "calls": sum(calls), **self.summary()}

    async def do_held_start(self) -> dict[str, Any]:
        self.held_child = measure_in_child()
        return {}

    async def do_held_result(self) -> dict[str, Any]:
        return {"held": await child_result(self.held_child) / len(self.managers)}

    async def do_beat_cost(self, calls: int) -> dict[str, Any]:
        presence = self.managers[0].presence
        took = []
        for _ in range(calls):
            start = time.perf_counter()
            await presence._beat()
            took.append(time.perf_counter() - start)
        # The mean: every fourth beat also compares the users' room versions.
        return {"median": statistics.mean(took)}

    async def do_arrive(self, fraction: float) -> dict[str, Any]:
        await asyncio.gather(*(m.arrive(fraction) for m in self.managers))
        return {}

    async def do_churn_join(self) -> dict[str, Any]:
        joins = await asyncio.gather(*(m.join_arriving() for m in self.managers))
        return {"joins": sum(joins)}

    async def do_churn_burst(self, fraction: float) -> dict[str, Any]:
        for m in self.managers:
            m.churn_burst(fraction)
        return {"t_last": time.monotonic(), **self.summary()}

    async def do_storm(self) -> dict[str, Any]:
        start = time.monotonic()
        if self.trace:
            tracemalloc.start(FRAMES)
        # The first manager's storm runs up to its first await before the others start.
        children = await asyncio.gather(
            *(m.storm(traced=self.trace and p == 0) for p, m in enumerate(self.managers))
        )
        t_last = time.monotonic()
        queued = await child_result(children[0]) if children[0] else 0
        return {"t_first": start, "t_last": t_last, "queued": queued, **self.summary()}

    async def do_stats(self) -> dict[str, Any]:
        ps = [m.presence for m in self.managers]
        return {
            "errors": sum(p.errors for p in ps),
            "resyncs": sum(p.resyncs for p in ps),
            "reaped": sum(p.reaped for p in ps),
            "rss": _rss(),
            "lag": self.max_lag,
            "node_failures": dict(NODE_FAILURES),
            "live_gap": max(m.live_gap for m in self.managers),
            "live_failures": sum(len(m.live_failures) for m in self.managers),
        }

    async def do_wait(self, expected: list[int], limit: float, fields: int = 3) -> dict[str, Any]:
        """Poll counts() of the first manager until its first ``fields`` equal
        ``expected``'s."""
        presence = self.managers[0].presence
        seen: list[int] = []
        polls = 0
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            seen = list(await presence.counts())
            polls += 1
            if seen[:fields] == expected[:fields]:
                return {"t": time.monotonic(), "seen": seen, "polls": polls, "ok": True}
            await asyncio.sleep(POLL)
        return {"t": time.monotonic(), "seen": seen, "polls": polls, "ok": False}

    async def do_members(self, rooms: list[str]) -> dict[str, Any]:
        """The sum of the rooms' member counts, read from Redis."""
        from svc_infra.websocket.scaleout._index_scripts import bucket_tag

        client = self.managers[0].presence.client
        total = 0
        for start in range(0, len(rooms), PIPELINE):
            pipe = client.pipeline(transaction=False)
            for room in rooms[start : start + PIPELINE]:
                pipe.scard(f"{PREFIX}{bucket_tag(room)}m:{room}")
            total += sum(await pipe.execute())
        return {"members": total}

    async def do_leftover(self, rooms: list[str]) -> dict[str, Any]:
        """Debugging: members of the first rooms that still have any."""
        from svc_infra.websocket.scaleout._index_scripts import bucket_tag

        client = self.managers[0].presence.client
        found: dict[str, list[str]] = {}
        for room in rooms:
            members = await client.smembers(f"{PREFIX}{bucket_tag(room)}m:{room}")
            if members:
                found[room] = sorted(m.decode() for m in members)[:20]
            if len(found) >= 5:
                break
        return {"found": found}

    async def do_counts_cost(self, calls: int) -> dict[str, Any]:
        presence = self.managers[0].presence
        took = []
        for _ in range(calls):
            start = time.perf_counter()
            await presence.counts()
            took.append(time.perf_counter() - start)
        return {"median": statistics.median(took)}

    async def do_exit(self) -> dict[str, Any]:
        self.reply(bye=True)
        os._exit(0)


def _rss() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


#: Calls redis-py's cluster client made to a node that failed, by (command, error):
#: it retries them (cluster_client's Retry), so most never reach presence.
NODE_FAILURES: Counter[str] = Counter()


def count_node_failures() -> None:
    """Wrap ClusterNode.execute_command in this process to count its failures
    (instrumentation of the load generator; nothing else changes)."""
    from redis.asyncio.cluster import ClusterNode

    plain = ClusterNode.execute_command

    async def execute_command(self: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return await plain(self, *args, **kwargs)
        except Exception as exc:
            NODE_FAILURES[f"{args[0]} {type(exc).__name__}"] += 1
            raise

    ClusterNode.execute_command = execute_command  # type: ignore[method-assign]


def worker_main(args: dict[str, Any]) -> None:
    count_node_failures()
    os.sched_setaffinity(0, {WORKER_CORE})
    # No full collections: this process holds 50 managers' objects (a real server
    # holds one's), and a pass over them blocks the loop for seconds on this machine;
    # young cycles are collected by the monitor.
    gc.disable()
    if args["trace"]:
        tracemalloc.start(FRAMES)
    asyncio.run(Worker(args).run())


# --- the orchestrating side -------------------------------------------------------------


class WorkerProc:
    def __init__(self, proc: asyncio.subprocess.Process, name: str) -> None:
        self.proc, self.name = proc, name

    async def ask(self, cmd: str, timeout_s: float = 900, **args: Any) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write((json.dumps({"cmd": cmd, **args}) + "\n").encode())
        await self.proc.stdin.drain()
        return await self.read(timeout_s)

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


class Pinger:
    """PING every master every 50 ms meanwhile: how long a command (a liveness
    refresh, say) waits behind the phase's scripts. Max and p99, seconds."""

    def __init__(self, ports: list[int]) -> None:
        self.ports = ports
        self.samples: list[float] = []
        self.tasks: list[asyncio.Task[None]] = []

    async def ping(self, port: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while True:
                start = time.perf_counter()
                writer.write(b"PING\r\n")
                await writer.drain()
                await reader.readline()
                self.samples.append(time.perf_counter() - start)
                await asyncio.sleep(0.05)
        finally:
            writer.close()

    async def __aenter__(self) -> Pinger:
        self.tasks = [asyncio.create_task(self.ping(p)) for p in self.ports]
        return self

    async def __aexit__(self, *exc: object) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)

    def summary(self) -> tuple[float, float]:
        if not self.samples:
            return 0.0, 0.0
        ordered = sorted(self.samples)
        return ordered[-1], ordered[int(len(ordered) * 0.99)]


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
        args = {"url": url, "managers": ids, "rooms": rooms, "trace": trace, "name": name}
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bench.presence",
            "--worker",
            json.dumps(args),
            cwd=ROOT,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            limit=1 << 26,  # a reply lists the rooms' member counts
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


async def health(workers: list[WorkerProc], r: dict[str, Any], phase: str) -> None:
    """Presence errors, resyncs and reaps so far (all managers), after ``phase``."""
    stats = await ask_all(workers, "stats")
    r.setdefault("health", []).append(
        (
            phase,
            *(sum(s[k] for s in stats) for k in ("errors", "resyncs", "reaped", "live_failures")),
            round(max(s["live_gap"] for s in stats), 1),
            round(max(s["lag"] for s in stats), 1),
        )
    )
    r["worker_rss"] = [s["rss"] for s in stats]
    failures: Counter[str] = Counter()
    for s in stats:
        failures.update(s["node_failures"])
    r.setdefault("node_failures", []).append((phase, dict(failures)))


async def check_members(
    poller: WorkerProc, members: Counter[str], rooms: list[str] | None = None
) -> tuple[int, float]:
    """Until the memberships in Redis add up to the expected (counts() does not
    see members leaving a room that stays open): the memberships missing (negative:
    too many) at the end, and the seconds it took."""
    start = time.monotonic()
    rooms = rooms if rooms is not None else [room for room, n in members.items() if n]
    want = sum(members.values())
    missing = 0
    while time.monotonic() - start < 30:
        read = (await poller.ask("members", rooms=rooms))["members"] if rooms else 0
        missing = want - int(read)
        if missing == 0:
            break
        await asyncio.sleep(0.1)
    return missing, time.monotonic() - start


async def run_size(n: int) -> dict[str, Any]:
    managers = n // PER_MANAGER
    rooms = max(100, int(n * ROOMS_PER_CONNECTION))
    limit = 60 + n / 10_000  # seconds a phase may take before the benchmark gives up
    r: dict[str, Any] = {"n": n, "managers": managers, "rooms_total": rooms}
    with redis_cluster(masters=3, replicas=0) as cluster:
        for port in cluster.masters():
            cluster.cli(port, "config", "set", "maxclients", "19000")
            # Redis' default (the tests' cluster uses 2 s, to fail over fast): a
            # master starved of CPU by the load generator for 2 s is otherwise
            # marked failed, and without replicas the cluster goes down.
            cluster.cli(port, "config", "set", "cluster-node-timeout", "15000")
        workers, poller = await start_workers(cluster.url, managers, rooms)
        probe = workers[0]
        try:
            mem0 = memory(cluster)
            # 1. Fill. The probe first (traced, slow: not timed), then the others'
            # connections, then their rooms.
            await probe.ask("probe_fill")
            probe_n = (await probe.ask("summary"))["conns"]
            mem1 = memory(cluster)
            others = workers[1:]
            cpu0 = cpu(cluster)
            reset_stats(cluster)
            replies = [await probe.ask("summary"), *await ask_all(others, "open")]
            expected, members = expected_of(replies)
            expected[2] = expected_of(replies[:1])[0][2]  # only the probe's users have rooms yet
            t_first = min(x["t_first"] for x in replies[1:])
            r["open_queue_s"] = max(x["t_last"] for x in replies[1:]) - t_first
            done = await poller.ask("wait", expected=expected, limit=limit)
            r["open_ok"], r["open_s"] = done["ok"], done["t"] - t_first
            r["opened"] = n - probe_n
            cpu1 = cpu(cluster)
            r["open_cpu"] = delta(cpu1, cpu0)
            r["open_top"] = top_commands(commandstats(cluster))
            r["memory_conns"] = (memory(cluster) - mem1) / r["opened"]
            reset_stats(cluster)
            t_rooms = time.monotonic()
            replies = [await probe.ask("summary"), *await ask_all(others, "rooms")]
            expected, members = expected_of(replies)
            done = await poller.ask("wait", expected=expected, limit=limit)
            r["rooms_ok"], r["rooms_s"] = done["ok"], done["t"] - t_rooms
            r["fill_s"] = done["t"] - t_first
            r["expected"] = expected
            r["memberships"] = sum(members.values())
            r["joined"] = sum(members.values()) - sum(replies[0]["members"].values())
            r["rooms_calls"] = sum(x["calls"] for x in replies[1:])
            cpu2 = cpu(cluster)
            r["rooms_cpu"] = delta(cpu2, cpu1)
            r["rooms_top"] = top_commands(commandstats(cluster))
            r["memory"] = memory(cluster) - mem0
            r["clients"] = clients(cluster)
            r["fill_lost"], _ = await check_members(poller, members)
            await health(workers, r, "fill")
            # 2. Presence memory per manager (probe), then the steady state.
            await probe.ask("held_start")
            # One heartbeat (_beat: the live processes, reaping, counts()) and one
            # counts(), each repeated from one manager: client time, Redis CPU.
            reset_stats(cluster)
            calls = 20
            cpu_a = cpu(cluster)
            r["beat_client"] = (await poller.ask("beat_cost", calls=calls))["median"]
            r["beat_cpu"] = sum(delta(cpu(cluster), cpu_a)) / calls
            r["beat_top"] = top_commands(commandstats(cluster), 4)
            calls = 50
            cpu_a = cpu(cluster)
            r["counts_client"] = (await poller.ask("counts_cost", calls=calls))["median"]
            r["counts_cpu"] = sum(delta(cpu(cluster), cpu_a)) / calls
            r["held"] = (await probe.ask("held_result"))["held"]
            await health(workers, r, "steady")
            # 3. Churn: the arriving users join their rooms (a sample with update_rooms),
            # then every manager's closes and opens at once.
            await ask_all(workers, "arrive", fraction=CHURN)
            reset_stats(cluster)
            cpu_a, t_a = cpu(cluster), time.monotonic()
            replies = await ask_all(workers, "churn_join")
            r["churn_joins"] = sum(x["joins"] for x in replies)
            r["churn_join_s"] = time.monotonic() - t_a
            cpu_b = cpu(cluster)
            r["churn_join_cpu"] = delta(cpu_b, cpu_a)
            r["churn_join_top"] = top_commands(commandstats(cluster), 4)
            reset_stats(cluster)
            async with Pinger(cluster.masters()) as pinger:
                replies = await ask_all(workers, "churn_burst", fraction=CHURN)
                t_last = max(x["t_last"] for x in replies)
                expected, members = expected_of(replies)
                done = await poller.ask("wait", expected=expected, limit=limit)
                r["churn_ok"] = done["ok"]
                r["churn_converge"] = done["t"] - t_last
                r["churn_polls"] = done["polls"]
                r["churn_changes"] = 2 * int(PER_MANAGER * CHURN) * managers
                r["churn_lost"], _ = await check_members(poller, members)
                r["churn_members_s"] = time.monotonic() - t_last
            r["churn_ping"] = pinger.summary()
            cpu_c = cpu(cluster)
            r["churn_burst_cpu"] = delta(cpu_c, cpu_b)
            r["churn_top"] = top_commands(commandstats(cluster))
            r["memory_after_churn"] = memory(cluster) - mem0
            await health(workers, r, "churn")
            # 4. Reconnect storm.
            rooms_before = list(members)
            reset_stats(cluster)
            cpu_a = cpu(cluster)
            async with Pinger(cluster.masters()) as pinger:
                replies = await ask_all(workers, "storm")
                t_first = min(x["t_first"] for x in replies)
                t_last = max(x["t_last"] for x in replies)
                expected, members = expected_of(replies)
                # Connections and users: the rooms may never be right (the report).
                done = await poller.ask("wait", expected=expected, limit=limit, fields=2)
            r["storm_ping"] = pinger.summary()
            r["storm_rooms_left"] = (await poller.ask("wait", expected=expected, limit=5))["seen"][
                2
            ]
            r["storm_ok"] = done["ok"]
            r["storm_s"] = done["t"] - t_first
            r["storm_queue_s"] = t_last - t_first
            r["storm_lost"], _ = await check_members(poller, members, rooms=rooms_before)
            if r["storm_lost"] or not done["ok"]:
                left = await poller.ask("leftover", rooms=rooms_before)
                log(f"storm: counts {done['seen']}, expected {expected}, left {left}")
            r["storm_cpu"] = delta(cpu(cluster), cpu_a)
            r["storm_top"] = top_commands(commandstats(cluster))
            r["queued"] = replies[0]["queued"]
            await health(workers, r, "storm")
            # Every manager resyncs once at launch (its first heartbeat).
            r["errors"], r["resyncs"], r["reaped"] = r["health"][-1][1:4]
            r["resyncs"] -= managers
        finally:
            for w in workers:
                with contextlib.suppress(Exception):
                    await w.ask("exit", timeout_s=10)
                with contextlib.suppress(ProcessLookupError):
                    w.proc.kill()
                await w.proc.wait()
    return r


def report(results: list[dict[str, Any]], wall: float) -> None:
    print(
        "\nIndex presence, the million by simulation: IndexedPresence objects with fake hosts"
        f" ({PER_MANAGER:,} connections per manager) on a 3-master Redis Cluster (no replicas);"
        f" load generator on core {WORKER_CORE}, Redis floating; {date.today()}"
    )
    width = 16
    header = "".join(f"{r['n']:>{width},}" for r in results)
    print(f"{'measure':<60}{header}   target at 1M")

    def row(label: str, values: list[str], target: str = "") -> None:
        print(f"{label:<60}" + "".join(f"{v:>{width}}" for v in values) + f"   {target}")

    def each(fn: Any) -> list[str]:
        return [fn(r) for r in results]

    def us(x: float) -> str:
        return f"{x * 1e6:.1f}"

    row("managers (simulated processes)", each(lambda r: str(r["managers"])))
    row(
        "connections / users / rooms / memberships",
        each(
            lambda r: (
                f"{r['expected'][0] // 1000}k/{r['expected'][1] // 1000}k/"
                f"{r['expected'][2] / 1000:.1f}k/{r['memberships'] / 1e6:.2f}M"
            )
        ),
    )
    row("fill: open all until counts right, s", each(lambda r: f"{r['open_s']:.1f}"))
    row(
        "fill: then rooms, bulk-loaded, until counts right, s",
        each(lambda r: f"{r['rooms_s']:.1f}"),
    )
    row("Redis CPU per connection opened, us", each(lambda r: us(sum(r["open_cpu"]) / r["opened"])))
    row(
        "  rooms bulk load: Redis CPU per membership, us",
        each(lambda r: us(sum(r["rooms_cpu"]) / r["joined"])),
    )
    row(
        "Redis memory per connection, rooms included, B",
        each(lambda r: f"{r['memory'] / r['n']:,.0f}"),
        "<= 1,024",
    )
    row("  of which connections alone, B", each(lambda r: f"{r['memory_conns']:,.0f}"))
    row(
        "  after the churn (10-min room tombstones), B",
        each(lambda r: f"{r['memory_after_churn'] / r['n']:,.0f}"),
    )
    row("Redis client connections per master (max)", each(lambda r: f"{max(r['clients']):,}"))
    row("presence memory per manager, at rest", each(lambda r: _size(r["held"])), "<= 10 MB")
    row("  a manager's whole storm queued (30,000 ops)", each(lambda r: _size(r["queued"])))
    row(
        "  mirror mode, model: 400 B x cluster connections",
        each(lambda r: _size(MIRROR_BYTES * r["n"])),
        "(400 MB)",
    )
    row(
        "heartbeat (one manager): client ms / Redis CPU us",
        each(lambda r: f"{r['beat_client'] * 1e3:.1f} / {r['beat_cpu'] * 1e6:.0f}"),
    )
    row(
        "  steady state at presence_ttl 30 (a beat / 7.5 s), Redis ms/s",
        each(lambda r: f"{r['beat_cpu'] * r['managers'] / 7.5 * 1e3:.1f}"),
    )
    row(
        "counts(): client ms / Redis CPU us, per call",
        each(lambda r: f"{r['counts_client'] * 1e3:.1f} / {r['counts_cpu'] * 1e6:.0f}"),
    )
    row(
        "churn 10 %: update_rooms joins of arrivals, per s",
        each(lambda r: f"{r['churn_joins'] / r['churn_join_s']:,.0f}"),
    )
    row(
        "  Redis CPU per update_rooms join, us",
        each(lambda r: us(sum(r["churn_join_cpu"]) / r["churn_joins"])),
    )
    row(
        "  Redis CPU per connection change (close or open), us",
        each(lambda r: us(sum(r["churn_burst_cpu"]) / r["churn_changes"])),
    )
    row(
        "    per master, us",
        each(lambda r: "/".join(us(x / r["churn_changes"]) for x in r["churn_burst_cpu"])),
    )
    row(
        "  counts right after the last change, s",
        each(lambda r: f"{r['churn_converge']:.2f}"),
        "<= 2 s",
    )
    row(
        "  room memberships right after the last change, s",
        each(lambda r: f"{r['churn_members_s']:.2f}"),
    )
    row(
        "  a PING's wait meanwhile, max / p99, ms",
        each(lambda r: f"{r['churn_ping'][0] * 1e3:,.0f} / {r['churn_ping'][1] * 1e3:,.0f}"),
    )
    row("storm: all close and reopen, until counts right, s", each(lambda r: f"{r['storm_s']:.1f}"))
    row("  Redis CPU, s (3 masters)", each(lambda r: f"{sum(r['storm_cpu']):.1f}"))
    row("  per master, s", each(lambda r: "/".join(f"{x:.1f}" for x in r["storm_cpu"])))
    row(
        "  busiest master / idlest",
        each(lambda r: f"{max(r['storm_cpu']) / max(min(r['storm_cpu']), 1e-9):.2f}"),
    )
    row("  Redis CPU per connection, us", each(lambda r: us(sum(r["storm_cpu"]) / r["n"])))
    row(
        "  a PING's wait meanwhile, max / p99, ms",
        each(lambda r: f"{r['storm_ping'][0] * 1e3:,.0f} / {r['storm_ping'][1] * 1e3:,.0f}"),
    )
    row(
        "  rooms still listed / memberships left after it (0 / 0)",
        each(lambda r: f"{r['storm_rooms_left']:,} / {-r['storm_lost']:,}"),
    )
    row(
        "EVALSHA read timeouts retried by redis-py (fill/churn/storm)",
        each(lambda r: "/".join(str(_timeouts(r, phase)) for phase in ("fill", "churn", "storm"))),
    )
    row(
        "memberships missing in Redis (fill/churn/storm)",
        each(lambda r: f"{r['fill_lost']}/{r['churn_lost']}/{r['storm_lost']}"),
    )
    row(
        "presence errors / resyncs / reaps",
        each(lambda r: f"{r['errors']}/{r['resyncs']}/{r['reaped']}"),
    )
    for r in results:
        ok = all(r[k] for k in ("open_ok", "rooms_ok", "churn_ok", "storm_ok"))
        print(f"\n{r['n']:,}: counts converged in every phase: {ok}")
        print(f"  opens ({r['open_queue_s']:.1f} s to queue them): {r['open_top']}")
        print(f"  rooms ({r['rooms_calls']:,} commands, bulk): {r['rooms_top']}")
        print(f"  heartbeats: {r['beat_top']}")
        print(f"  churn joins ({r['churn_join_s']:.1f} s): {r['churn_join_top']}")
        print(f"  churn burst: {r['churn_top']}")
        print(f"  storm ({r['storm_queue_s']:.1f} s to queue and rejoin): {r['storm_top']}")
        print(f"  load generator RSS: {[_size(x) for x in r['worker_rss']]}")
        print(f"  redis-py calls to a node that failed (retried) so far: {r['node_failures']}")
        print(
            "  presence (errors, resyncs, reaps, failed liveness refreshes, longest gap"
            f" between two refreshes s, longest loop block s) after each phase: {r['health']}"
        )
    print(f"\nwall time {wall:.0f} s")


def _timeouts(r: dict[str, Any], phase: str) -> int:
    """EVALSHA read timeouts (retried by redis-py) during ``phase``."""
    seen = dict(r["node_failures"])
    phases = [p for p, _ in r["node_failures"]]
    before = seen[phases[phases.index(phase) - 1]] if phases.index(phase) else {}
    key = "EVALSHA TimeoutError"
    return int(seen[phase].get(key, 0) - before.get(key, 0))


def _size(x: float) -> str:
    return f"{x / 1e6:,.1f} MB" if x >= 1e6 else f"{x / 1e3:,.1f} KB"


async def main() -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # Redis and workers inherit it
    os.sched_setaffinity(0, {MAIN_CORE})
    start = time.monotonic()
    results = []
    try:
        for n in SIZES:
            try:
                results.append(await run_size(n))
            except Exception as exc:  # report what was measured, and why the rest is not
                print(f"[{n:,} failed after {time.monotonic() - start:.0f} s: {exc!r}]", flush=True)
                break
            print(f"[{n:,} done after {time.monotonic() - start:.0f} s]", flush=True)
            if n != SIZES[-1]:
                report(results, time.monotonic() - start)  # in case the next one dies
    finally:
        os.sched_setaffinity(0, range(os.cpu_count() or 1))
    report(results, time.monotonic() - start)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--worker":
        worker_main(json.loads(sys.argv[2]))
    else:
        asyncio.run(main())
