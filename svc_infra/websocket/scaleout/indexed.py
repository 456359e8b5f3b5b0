"""Cluster-wide presence kept in Redis only: no process mirrors another's connections.

``WS_PRESENCE_MODE=index`` (the consistency model is in ``docs/scaling.md``):

- Each process writes its connections to Redis, batched by one task as in the
  mirror mode, into structures indexed for the queries: per user (their
  connections, their rooms), per room (its users), per bucket (counters and the
  sets of users and rooms that are present). Users and rooms are spread over
  :data:`~._index_scripts.BUCKETS` hash slots, so a Redis Cluster spreads the load,
  and every script touches one slot.
- Nothing is announced to the other processes: a room change travels on the
  user's group only (the processes that hold the user's connections), and a
  process loads a user's rooms from Redis when the user's first connection opens
  there. A process's memory grows with its own connections, not the cluster's.
- Queries that need the cluster are coroutines (:class:`~..server.queries.ClusterView`);
  the manager's synchronous properties answer for this process, except the
  connection count, which adds the cluster's total as read every heartbeat.
- Liveness as in the mirror mode: a key per process that expires after half of
  ``presence_ttl``. Every heartbeat reads which processes are registered and
  alive; a dead one is reaped by the first process that takes its lock: its
  connections leave their users' entries, users left with none leave their rooms.
- A Redis error (or our liveness key gone: Redis restarted, or we were reaped
  after a hang) marks the process dirty; the heartbeat then rewrites its
  connections and its users' rooms when Redis answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import defaultdict
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from ..models import ConnectionInfo
from ..server.aio import cancel_and_wait
from ..server.protocols import PresenceHost
from . import _index_scripts as lua
from ._index_scripts import BUCKETS, bucket_tag, tag_of
from ._presence_base import QueuedPresence
from .layers import close_client, redis_text

__all__ = ["IndexedPresence", "Page"]

logger = logging.getLogger("svc_infra.websocket.presence")

#: Seconds a reaper holds a dead process's lock (and a resync its own).
REAP_LOCK_MS = 30_000
#: Heartbeats between two comparisons of our users' room sets with Redis.
RECONCILE_BEATS = 4

Page = tuple[list[str], str]
"""Part of a listing: the names, and the cursor of the next part ("" at the end)."""


class IndexedPresence(QueuedPresence):
    """A process's share of cluster-wide presence, indexed in Redis (no mirrors).

    Args:
        client: A ``redis.asyncio.Redis`` or ``RedisCluster`` (owned: closed by :meth:`stop`).
        owner: What presence needs from the manager (:class:`PresenceHost`).
        key_prefix: Prefix of every key.
        ttl: ``presence_ttl``: seconds within which a dead process disappears.
    """

    #: Room sets of every user are not mirrored here (see :class:`~..server.protocols.Presence`).
    mirrors = False

    def __init__(self, client: Any, owner: PresenceHost, *, key_prefix: str, ttl: float) -> None:
        super().__init__(owner, ttl)
        self.client = client
        self.key_prefix = key_prefix
        #: Dead processes this one reaped.
        self.reaped = 0
        #: Room sets read again because Redis had a newer one (a missed change).
        self.room_reads = 0
        self._beats = 0
        # Registered processes whose liveness key had expired at the last heartbeat
        # (until reaped): their connections no longer count.
        self._dead: list[str] = []
        self._total = 0  # the cluster's connections, as of the last heartbeat
        self._local_then = 0  # ours, when _total was read
        self._scripts = {
            name: client.register_script(getattr(lua, name))
            for name in (
                *("USER_OPS", "USER_ROOMS", "ROOM_OPS", "ROOM_VERSIONS"),
                *("CLAIM", "CLAIM_NEWEST", "RELEASE"),
            )
        }
        me = self._proc(owner.id)
        self._live_key, self._conns_key, self._lock_key = me("live"), me("c"), me("reap")
        self._procs_key = f"{key_prefix}{{g}}procs"

    def directory(self) -> IndexedPresence:
        """The cluster-wide queries (this object)."""
        return self

    # --- keys and calls -----------------------------------------------------------------

    def _proc(self, process: str) -> Any:
        return lambda name: f"{self.key_prefix}{{p:{process}}}{name}"

    def _bucket(self, tag: str, name: str) -> str:
        return f"{self.key_prefix}{tag}{name}"

    async def _run(self, script: str, tag: str, *args: Any) -> Any:
        return await self._scripts[script](
            keys=[self._bucket(tag, "nc")], args=[self.key_prefix, tag, *args]
        )

    # --- lifecycle -------------------------------------------------------------------

    async def stop(self) -> None:
        """Write what is queued (the closes of shutdown), leave the cluster, close."""
        tasks, self._tasks = self._tasks, []
        await cancel_and_wait(tasks)
        if self._releases:
            await asyncio.wait(set(self._releases), timeout=1.0)
        try:
            if not self._dirty:
                await self._flush()
            await self._leave()
        except Exception as exc:  # Redis down: the others reap us within the TTL
            logger.info("could not leave the presence index cleanly: %r", exc)
        self._pending.clear()
        await close_client(self.client)

    async def _leave(self) -> None:
        # Connections still listed (a flush that failed): remove them as a reaper would.
        await self._reap_connections(self.owner.id)
        await self.client.delete(self._live_key, self._conns_key)
        await self.client.hdel(self._procs_key, self.owner.id)

    # --- what the manager reports ----------------------------------------------------

    def handle(self, origin: str, message: dict[str, Any]) -> None:
        """``ws.presence`` is not used in this mode (a mirror-mode process's message)."""

    async def update_rooms(self, user: str, op: str, room: str) -> tuple[int, list[str]]:
        """Join (``op="join"``) or leave a room in Redis; return (version, rooms).

        Raises:
            Exception: Whatever redis-py raises when Redis cannot be reached.
        """
        try:
            result = await self._run("USER_ROOMS", bucket_tag(user), user, op, room)
            if int(result[1]):
                kind = "j" if op == "join" else "l"
                await self._run("ROOM_OPS", bucket_tag(room), kind, room, user)
        except Exception:
            self._failed()
            raise
        return int(result[0]), [redis_text(r) for r in result[2:]]

    async def user_rooms(self, user: str) -> tuple[int, list[str]]:
        """The user's room set in Redis: (version, rooms).

        Raises:
            Exception: Whatever redis-py raises when Redis cannot be reached.
        """
        result = await self._run("USER_ROOMS", bucket_tag(user), user, "get", "")
        return int(result[0]), [redis_text(r) for r in result[2:]]

    async def claim(self, user: str, connection_id: str, cap: int) -> bool:
        """Take one of the user's ``cap`` slots, cluster-wide, atomically.

        Raises:
            Exception: Whatever redis-py raises when Redis cannot be reached.
        """
        args = (self.owner.id, user, connection_id, cap, *self._dead)
        return bool(await self._run("CLAIM", bucket_tag(user), *args))

    async def claim_newest(self, user: str, connection_id: str, cap: int) -> list[tuple[str, str]]:
        """Take a slot, freeing the user's oldest while they are full; return
        (connection id, process id) of the freed slots' connections.

        Raises:
            Exception: Whatever redis-py raises when Redis cannot be reached.
        """
        args = (self.owner.id, user, connection_id, cap, *self._dead)
        freed = await self._run("CLAIM_NEWEST", bucket_tag(user), *args)
        return [(redis_text(conn), redis_text(owner)) for conn, owner in freed]

    async def _free_slot(self, user: str, connection_id: str) -> None:
        await self._run("RELEASE", bucket_tag(user), user, connection_id)

    # --- the synchronous view: this process, and the total as last read ---------------

    def remote_users(self) -> Iterable[str]:
        return ()

    def remote_count(self) -> int:
        return max(self._total - self._local_then, 0)

    def remote_connections(self, user: str) -> list[ConnectionInfo]:
        return []

    def has_remote(self, user: str) -> bool:
        return False

    # --- cluster-wide queries (coroutines) -----------------------------------------------

    async def counts(self) -> tuple[int, int, int]:
        """(connections, users, rooms) in the whole cluster, read now.

        Raises:
            Exception: Whatever redis-py raises when Redis cannot be reached.
        """
        pipe = self.client.pipeline(transaction=False)
        for b in range(BUCKETS):
            tag = tag_of(b)
            pipe.get(self._bucket(tag, "nc"))
            pipe.scard(self._bucket(tag, "users"))
            pipe.scard(self._bucket(tag, "rooms"))
        values = await pipe.execute()
        conns = sum(int(v or 0) for v in values[0::3])
        return conns, sum(values[1::3]), sum(values[2::3])

    async def user_connections(self, user: str) -> list[ConnectionInfo]:
        """The user's connections in live processes.

        Raises:
            Exception: Whatever redis-py raises when Redis cannot be reached.
        """
        fields = await self.client.hgetall(self._bucket(bucket_tag(user), f"u:{user}"))
        dead = set(self._dead)
        infos = []
        for field, data in fields.items():
            process, _, conn = redis_text(field).partition(" ")
            if process in dead:
                continue  # a dead process, not reaped yet
            with contextlib.suppress(KeyError, TypeError, ValueError, IndexError):
                infos.append(decode(user, conn, json.loads(data)))
        return infos

    def encode(self, info: ConnectionInfo) -> str:
        """The compact form kept per connection: ``[connected_at in ms]``, plus the
        metadata when there is some. The user and the connection id are in the
        key and the field already, and ``last_activity`` is not kept up to date
        in Redis: dropping them takes 140 B off each of a million connections."""
        stamp = round(info.connected_at.timestamp() * 1000)
        parts: list[Any] = [stamp, info.metadata] if info.metadata else [stamp]
        return json.dumps(parts, separators=(",", ":"))

    async def room_users(self, room: str, cursor: str = "", count: int = 500) -> Page:
        """A part of the room's users, about ``count``; pass the cursor back for the next.

        Raises:
            Exception: Whatever redis-py raises when Redis cannot be reached.
        """
        key = self._bucket(bucket_tag(room), f"m:{room}")
        after, names = await self.client.sscan(key, int(cursor or 0), count=count)
        return [redis_text(n) for n in names], "" if int(after) == 0 else str(after)

    async def users(self, cursor: str = "", count: int = 500) -> Page:
        """A part of the users with a connection somewhere, bucket by bucket.

        Raises:
            Exception: Whatever redis-py raises when Redis cannot be reached.
        """
        return await self._scan_buckets("users", cursor, count)

    async def rooms(self, cursor: str = "", count: int = 500) -> Page:
        """A part of the rooms with at least one user.

        Raises:
            Exception: Whatever redis-py raises when Redis cannot be reached.
        """
        return await self._scan_buckets("rooms", cursor, count)

    async def _scan_buckets(self, name: str, cursor: str, count: int) -> Page:
        bucket, _, inner = (cursor or "0:0").partition(":")
        b, position = int(bucket), int(inner or 0)
        found: list[str] = []
        while b < BUCKETS and len(found) < count:
            key = self._bucket(tag_of(b), name)
            position, names = await self.client.sscan(key, position, count=count - len(found))
            found += [redis_text(n) for n in names]
            if int(position) == 0:
                b += 1
        return found, "" if b >= BUCKETS else f"{b}:{int(position)}"

    # --- the tasks --------------------------------------------------------------------

    async def _writer(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            if self._pending and not self._dirty:
                try:
                    await self._flush()
                except Exception as exc:
                    logger.warning("presence write failed (%r); resyncing when Redis answers", exc)
                    self._failed()

    async def _flush(self) -> None:
        async with self._lock:
            ops, self._pending = self._pending, []
            if not ops:
                return
            try:
                await self._write(self.owner.id, ops)
            except Exception:
                # A resync rewrites the connections, not "did this user leave
                # everywhere?": keep those checks for after it.
                self._pending[:0] = [op for op in ops if op[0] == "?"]
                raise

    async def _write(self, process: str, ops: list[tuple[str, str, str, str]]) -> None:
        """Apply ``ops`` of ``process``: its own hash first for opens and last for
        closes, so that a crash in between leaves what a reaper cleans up."""
        conns = self._proc(process)("c")
        opened = {conn: user for op, conn, user, _ in ops if op == "+"}
        if opened:
            await self.client.hset(conns, mapping=opened)
        by_bucket: dict[str, list[str]] = defaultdict(list)
        for op in ops:
            by_bucket[bucket_tag(op[2])].extend(op)
        gone = await self._per_bucket("USER_OPS", by_bucket, process)
        closed = [conn for op, conn, _, _ in ops if op == "-"]
        if closed:
            await self.client.hdel(conns, *closed)
        await self._leave_rooms(gone)

    async def _per_bucket(self, script: str, args: dict[str, list[str]], *first: str) -> list[Any]:
        """Run ``script`` once per bucket, concurrently (a pipeline per node)."""
        results = await asyncio.gather(
            *(self._run(script, tag, *first, *rest) for tag, rest in args.items())
        )
        return [item for result in results if isinstance(result, list) for item in result]

    async def _leave_rooms(self, gone: list[Any]) -> None:
        """Users who left everywhere: out of their rooms' member sets (``gone`` as
        returned by ``USER_OPS``: user, version, n, rooms...)."""
        by_bucket: dict[str, list[str]] = defaultdict(list)
        i = 0
        while i < len(gone):
            user, n = redis_text(gone[i]), int(gone[i + 2])
            for room in gone[i + 3 : i + 3 + n]:
                room = redis_text(room)
                by_bucket[bucket_tag(room)] += ["l", room, user]
            i += 3 + n
        if by_bucket:
            await self._per_bucket("ROOM_OPS", by_bucket)

    async def _liveness(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                ok = await self.client.set(self._live_key, "1", px=self.ttl_ms, xx=True)
            except Exception:
                self._retry.set()
                continue
            if not ok and not self._dirty:
                self._failed(count=False)  # Redis lost it, or we were reaped

    async def _tick(self) -> bool:
        try:
            if self._dirty:
                await self._resync()
            await self._beat()
            return True
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if not self._dirty:
                logger.warning("presence heartbeat failed (%r); retrying", exc)
            self._failed()
            return False

    async def _beat(self) -> None:
        """Which processes live (reaping the dead), and the cluster's counts."""
        raw = await self.client.hgetall(self._procs_key)
        procs = {redis_text(p): redis_text(c) for p, c in raw.items()}
        pipe = self.client.pipeline(transaction=False)
        for process in procs:
            pipe.exists(self._proc(process)("live"))
        alive = dict(zip(procs, await pipe.execute(), strict=True)) if procs else {}
        self._dead = [p for p, up in alive.items() if not up and p != self.owner.id]
        for process, channel in procs.items():
            if not alive[process] and process != self.owner.id:
                await self._reap(process, channel)
        local = self.owner.local_connections()
        self._total, self._local_then = (await self.counts())[0], len(local)
        self._beats += 1
        if self._beats % RECONCILE_BEATS == 0:
            await self._reconcile_rooms({info.user_id for info in local})

    async def _reconcile_rooms(self, users: set[str]) -> None:
        """Our users' room sets against Redis': one call per bucket for the versions,
        then a read of each set that is newer there. A room change announced on
        the user's group that this process missed (a layer that lost it, a group
        joined a moment late) is made up for within ``RECONCILE_BEATS`` heartbeats."""
        by_bucket: dict[str, list[str]] = defaultdict(list)
        for user in users:
            by_bucket[bucket_tag(user)].append(user)
        tags = list(by_bucket)
        results = await asyncio.gather(
            *(self._run("ROOM_VERSIONS", tag, *by_bucket[tag]) for tag in tags)
        )
        for tag, versions in zip(tags, results, strict=True):
            for user, version in zip(by_bucket[tag], versions, strict=True):
                if int(version) > self.owner.room_version(user):
                    self.room_reads += 1
                    newer, rooms = await self.user_rooms(user)
                    await self.owner.apply_rooms(user, rooms, newer)

    async def _reap(self, process: str, channel: str) -> None:
        """Remove a dead process's connections (if no other process is at it)."""
        keys = self._proc(process)
        if not await self.client.set(keys("reap"), self.owner.id, px=REAP_LOCK_MS, nx=True):
            return  # another process reaps it (or it is resyncing)
        try:
            if await self.client.exists(keys("live")):
                return  # back meanwhile
            users = await self._reap_connections(process)
            await self.client.delete(keys("c"))
            await self.client.hdel(self._procs_key, process)
            self.reaped += 1
            if channel:
                await self.owner.evict_channel(channel, sorted(users), [])
        finally:
            await self.client.delete(keys("reap"))

    async def _reap_connections(self, process: str) -> set[str]:
        """Remove ``process``'s connections from their users' entries, and users
        left with none from their rooms. Returns those users."""
        conns = await self.client.hgetall(self._proc(process)("c"))
        ops = [("-", redis_text(c), redis_text(u), "") for c, u in conns.items()]
        users = {op[2] for op in ops}
        ops += [("?", "", user, "") for user in users]
        by_bucket: dict[str, list[str]] = defaultdict(list)
        for op in ops:
            by_bucket[bucket_tag(op[2])].extend(op)
        gone = await self._per_bucket("USER_OPS", by_bucket, process)
        await self._leave_rooms(gone)
        return users

    async def _resync(self) -> None:
        """Rewrite this process's connections and its users' rooms (under our own
        reap lock, so that no reaper removes them while we write them)."""
        keys = self._proc(self.owner.id)
        async with self._lock:
            # A reaper holds the lock for a few round trips (another process: no
            # event to wait for); it expires after REAP_LOCK_MS in any case.
            while not await self.client.set(keys("reap"), "resync", px=REAP_LOCK_MS, nx=True):  # noqa: ASYNC110
                await asyncio.sleep(min(0.1, self.interval))
            try:
                self._pending = [op for op in self._pending if op[0] == "?"]
                local = self.owner.local_connections()
                await self.client.set(keys("live"), "1", px=self.ttl_ms)
                await self.client.hset(self._procs_key, self.owner.id, self.owner.channel or "")
                await self.client.delete(keys("c"))
                ops = [("+", i.connection_id, i.user_id, self.encode(i)) for i in local]
                await self._write(self.owner.id, ops)
                await self._restore_rooms()
            finally:
                await self.client.delete(keys("reap"))
            await self.owner.rejoin_groups()
            self._dirty = False
            self.resyncs += 1
        self._wake.set()  # connections that opened meanwhile, and kept checks

    async def _restore_rooms(self) -> None:
        """Our users' room sets: written back where Redis lost them (a newer version
        here), and where Redis has a newer one, applied here."""
        for user, version, rooms in self.owner.known_rooms():
            result = await self._run(
                "USER_ROOMS", bucket_tag(user), user, "restore", version, *rooms
            )
            if int(result[1]):
                by_bucket: dict[str, list[str]] = defaultdict(list)
                for room in rooms:
                    by_bucket[bucket_tag(room)] += ["j", room, user]
                await self._per_bucket("ROOM_OPS", by_bucket)
            else:
                await self.owner.apply_rooms(
                    user, [redis_text(r) for r in result[2:]], int(result[0])
                )


def decode(user: str, conn: str, data: Any) -> ConnectionInfo:
    """A :class:`ConnectionInfo` from :meth:`IndexedPresence.encode`'s form (or the
    full dict, which writers before it stored)."""
    if isinstance(data, dict):
        return ConnectionInfo.from_dict(data)
    at = datetime.fromtimestamp(data[0] / 1000, UTC)
    metadata = dict(data[1]) if len(data) > 1 else {}
    return ConnectionInfo(user, conn, connected_at=at, last_activity=at, metadata=metadata)
