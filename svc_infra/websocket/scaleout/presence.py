"""Cluster-wide presence on Redis: every process sees every process's connections.

How it works (the consistency model is in ``docs/scaling.md``):

- Each process writes its own connections to Redis (a hash per process) and
  heartbeats a liveness key that expires after half of ``presence_ttl``. Writes
  are batched by one task, so a storm of connections costs a few round trips.
- After each write, the process tells the others through the channel layer
  (``ws.presence`` on the broadcast group); they keep a mirror of every other
  process's connections, so the manager's queries stay synchronous and cheap.
- A liveness task refreshes the process's key every ``presence_ttl / 4``
  seconds and does nothing else, so a busy heartbeat cannot make a live process
  look dead. Every heartbeat (same period) reads which processes are alive: a
  process that stopped beating (kill -9, frozen) is dropped from the mirrors,
  and the first process to notice removes its keys and the rooms of users who
  had no connection anywhere else. On the core layer, one ``presence_ttl``
  later, if it has not come back, a heartbeat removes its channel from its
  groups (the layer would keep writing to it for ``group_expiry``). Every
  ``RECONCILE_BEATS`` heartbeats the mirrors are checked against Redis and
  corrected, so a lost layer message costs at most ``presence_ttl`` of
  staleness, not a permanent divergence.
- That check reads no connection unless something was lost. Each process's
  connections have a version in Redis, bumped by each of its writes and carried
  by its announcements; a mirror that applied every announcement holds the same
  version, and only a process whose version differs is read again. Room changes
  are indexed by time, so the check reads only users whose rooms changed since
  the last one. Its cost grows with processes and changes, not with connections.
- Room sets live in Redis with a version (Redis time in microseconds); the
  manager applies a user's room set only if its version is newer, so updates
  that cross in the layer still converge.
- Any Redis error marks the process dirty; the heartbeat then retries quickly
  and, once Redis answers, writes the process's whole state back (connections,
  room sets, groups) and reloads the others': presence survives a Redis restart.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterable
from typing import Any

from ..layer_messages import PRESENCE, ROOMS
from ..models import ConnectionInfo
from ..server.aio import cancel_and_wait
from ..server.protocols import PresenceHost
from . import _scripts as lua
from ._presence_base import QueuedPresence
from .layers import close_client, redis_text

__all__ = ["RedisPresence", "close_client"]

logger = logging.getLogger("svc_infra.websocket.presence")

# Connections per ws.presence snapshot message: keeps layer messages small.
_CHUNK = 500
# How far back the room-change index reaches (as the tombstones): a process whose
# last check is older loads everything.
_ROOMS_HORIZON_US = 600 * 1_000_000
#: Heartbeats between two full comparisons of the mirrors with Redis.
RECONCILE_BEATS = 4


class RedisPresence(QueuedPresence):
    """A process's share of cluster-wide presence, and its mirror of the others.

    Args:
        client: A ``redis.asyncio.Redis`` (owned: closed by :meth:`stop`).
        owner: What presence needs from the manager (:class:`PresenceHost`).
        key_prefix: Prefix of every key (the layer's prefix and the manager's).
        ttl: ``presence_ttl``: seconds within which a dead process disappears.
    """

    #: Every process mirrors every connection and room set
    #: (see :class:`~..server.protocols.Presence`).
    mirrors = True

    def __init__(self, client: Any, owner: PresenceHost, *, key_prefix: str, ttl: float) -> None:
        super().__init__(owner, ttl)
        self.client = client
        self.key_prefix = key_prefix
        # Remote processes: id -> connection id -> info; and user -> conn id -> info.
        self._remote: dict[str, dict[str, ConnectionInfo]] = {}
        self._remote_users: dict[str, dict[str, ConnectionInfo]] = {}
        # Per remote process: the version its mirror is at (None: unknown, read it
        # again), and the version of a snapshot being received in chunks.
        self._versions: dict[str, int | None] = {}
        self._snapshots: dict[str, int] = {}
        self._rooms_since: int | None = None  # Redis time of the last room check
        self._rooms_differed = False  # the last check counted other room sets
        self._boot: tuple[str, str] | None = None  # Redis' (boot id, run_id) at our last resync
        #: Seconds after a process was reaped before its channel leaves its groups
        #: (if it did not come back: a process hung for less keeps them).
        self.evict_after = ttl
        #: Channels of dead processes this one removed from their groups.
        self.evicted = 0
        #: Mirrors of one process read again (after a lost announcement), and full
        #: reads of everything (start, resync): for tests and diagnostics.
        self.reloads = 0
        self.full_loads = 0
        self._beats = 0
        self._scripts = {
            name: client.register_script(getattr(lua, name))
            for name in (
                *("LIVE", "BEAT", "SYNC", "RESET", "LEAVE", "ROOMS", "RESTORE", "LOAD"),
                *("CLAIM", "CLAIM_NEWEST", "RELEASE", "DIGEST", "LOAD_ONE"),
            )
        }

    def directory(self) -> None:
        """None: the mirrors answer cluster-wide queries."""
        return None

    # --- lifecycle -------------------------------------------------------------------

    async def stop(self) -> None:
        """Leave the cluster: remove this process's keys, tell the others, close."""
        tasks, self._tasks = self._tasks, []
        await cancel_and_wait(tasks)
        if self._releases:  # slots freed by the last closes
            await asyncio.wait(set(self._releases), timeout=1.0)
        # Users whose last connection here closed just before: their check is
        # still queued, and the writer is gone.
        users = list(dict.fromkeys(user for op, _, user, _ in self._pending if op == "?"))
        try:
            gone, evict = await self._run("LEAVE", *users)
            await self._evict(evict)  # only the last process out has any
            await self._apply_gone(gone)
            await self.owner.announce({"type": PRESENCE, "drop": True})
        except Exception as exc:  # Redis down: the others reap us within the TTL
            logger.info("could not leave the presence set cleanly: %r", exc)
        self._pending.clear()
        await close_client(self.client)

    # --- what the manager reports ----------------------------------------------------

    async def update_rooms(self, user: str, op: str, room: str) -> tuple[int, list[str]]:
        """Join (``op="join"``) or leave a room in Redis; return (version, rooms).

        Raises:
            Exception: Whatever redis-py raises when Redis cannot be reached.
        """
        try:
            version, rooms = await self._run("ROOMS", user, op, room)
        except Exception:
            self._failed()
            raise
        return int(version), [redis_text(r) for r in rooms]

    async def claim(self, user: str, connection_id: str, cap: int) -> bool:
        """Take one of the user's ``cap`` connection slots, cluster-wide, atomically.

        Raises:
            Exception: Whatever redis-py raises when Redis cannot be reached.
        """
        return bool(await self._run("CLAIM", user, connection_id, cap))

    async def claim_newest(self, user: str, connection_id: str, cap: int) -> list[tuple[str, str]]:
        """Take a slot for the connection, freeing the user's oldest while they are
        full (``WS_CAP_POLICY=newest``); return (connection id, process id) of each
        freed slot of a live process, whose connection the caller closes.

        Raises:
            Exception: Whatever redis-py raises when Redis cannot be reached.
        """
        freed = await self._run("CLAIM_NEWEST", user, connection_id, cap)
        return [(redis_text(conn), redis_text(owner)) for conn, owner in freed]

    async def _free_slot(self, user: str, connection_id: str) -> None:
        await self._run("RELEASE", user, connection_id)

    # --- queries on the mirror --------------------------------------------------------

    def remote_users(self) -> Iterable[str]:
        return self._remote_users.keys()

    def remote_count(self) -> int:
        return sum(len(c) for c in self._remote.values())

    def remote_connections(self, user: str) -> list[ConnectionInfo]:
        return list(self._remote_users.get(user, {}).values())

    def has_remote(self, user: str) -> bool:
        return user in self._remote_users

    # --- messages from other processes ----------------------------------------------

    def handle(self, origin: str, message: dict[str, Any]) -> None:
        """Apply a ``ws.presence`` message from process ``origin``.

        ``add`` holds connections as JSON text (``ConnectionInfo.to_dict()``):
        text survives msgpack whatever the metadata holds. ``v`` is the version of
        the sender's connections after the change; a message that does not follow
        the version this mirror is at is applied, and the mirror marked for a
        reread at the next check (a message was lost, or came from a version of
        this library that sends none).
        """
        if message.get("drop"):
            self._drop(origin)
            return
        version = message.get("v")
        known = self._versions.get(origin)
        if message.get("reset"):
            self._drop(origin)
            known = None
            if isinstance(version, int):
                self._snapshots[origin] = version
        elif isinstance(version, int) and origin in self._snapshots:
            pass  # a later chunk of a snapshot (checked below)
        elif isinstance(version, int) and known is not None and version <= known:
            return  # already in the mirror (read from Redis after it was written)
        self._apply(origin, message)
        if not isinstance(version, int):
            self._versions[origin] = None
        elif origin in self._snapshots:
            if self._snapshots[origin] != version:  # a chunk of another snapshot
                del self._snapshots[origin]
                self._versions[origin] = None
            elif message.get("last", True):
                del self._snapshots[origin]
                self._versions[origin] = version
            else:
                self._versions[origin] = None  # until the last chunk
        else:
            self._versions[origin] = version if known == version - 1 else None

    def _apply(self, origin: str, message: dict[str, Any]) -> None:
        conns = self._remote.setdefault(origin, {})
        for data in message.get("add", ()):
            try:
                info = ConnectionInfo.from_dict(json.loads(data) if isinstance(data, str) else data)
            except (KeyError, TypeError, ValueError):
                logger.warning("malformed connection in ws.presence ignored")
                continue
            conns[info.connection_id] = info
            self._remote_users.setdefault(info.user_id, {})[info.connection_id] = info
        for conn_id in message.get("remove", ()):
            old = conns.pop(str(conn_id), None)
            if old is not None:
                self._forget_user_conn(old)

    def _drop(self, origin: str) -> None:
        self._versions.pop(origin, None)
        self._snapshots.pop(origin, None)
        for info in self._remote.pop(origin, {}).values():
            self._forget_user_conn(info)

    def _forget_user_conn(self, info: ConnectionInfo) -> None:
        user_conns = self._remote_users.get(info.user_id)
        if user_conns is not None:
            user_conns.pop(info.connection_id, None)
            if not user_conns:
                del self._remote_users[info.user_id]

    # --- the tasks --------------------------------------------------------------------

    async def _writer(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            if self._pending and not self._dirty:
                await self._flush()

    async def _flush(self) -> None:
        async with self._lock:
            ops, self._pending = self._pending, []
            if not ops:
                return
            args = [part for op in ops for part in op]
            try:
                result = await self._run("SYNC", self.ttl_ms, *args)
            except Exception as exc:
                logger.warning("presence write failed (%r); resyncing when Redis answers", exc)
                self._keep_checks(ops)
                self._failed()
                return
            if not result[0]:  # our keys were gone: Redis restarted or we were reaped
                self._keep_checks(ops)
                self._failed(count=False)
                return
            add = [data for op, _, _, data in ops if op == "+"]
            remove = [conn for op, conn, _, _ in ops if op == "-"]
            message = {"type": PRESENCE, "add": add, "remove": remove, "v": int(result[2])}
            await self._announce(message)
        await self._apply_gone(result[1])

    def _keep_checks(self, ops: list[tuple[str, str, str, str]]) -> None:
        """A resync rewrites connections, but not "did this user leave
        everywhere?": keep those checks for after it."""
        self._pending[:0] = [op for op in ops if op[0] == "?"]

    async def _liveness(self) -> None:
        # Only the liveness key, on a fixed period: however long a heartbeat or
        # a resync takes, a live process never looks dead to the others.
        while True:
            await asyncio.sleep(self.interval)
            resyncs = self.resyncs
            try:
                missing = not await self._run("LIVE", self.ttl_ms)
            except Exception:  # the heartbeat notices and retries
                self._retry.set()
                continue
            # A reply from before a resync that just rewrote the key says nothing.
            if missing and not self._dirty and resyncs == self.resyncs:
                self._failed(count=False)

    async def _tick(self) -> bool:
        """One heartbeat (or a full resync when dirty). False if Redis failed."""
        try:
            if self._dirty:
                await self._resync()
            result = await self._run("BEAT", self.ttl_ms, int(self.evict_after * 1_000_000))
            if not result[0]:
                self._failed(count=False)
                return False
            live = {redis_text(i) for i in result[1]}
            for origin in [o for o in self._remote if o not in live]:
                self._drop(origin)
            await self._evict(result[3])  # first: the script has forgotten them
            await self._apply_gone(result[2])
            self._beats += 1
            unknown = live - self._remote.keys() - {self.owner.id}
            if unknown or self._beats % RECONCILE_BEATS == 0:
                await self._reconcile()
            return True
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if not self._dirty:
                logger.warning("presence heartbeat failed (%r); retrying", exc)
            self._failed()
            return False

    async def _resync(self) -> None:
        """Write this process's whole state, reload the others', rejoin groups."""
        async with self._lock:
            # The snapshot below includes the effect of queued opens and closes;
            # "did this user leave everywhere?" checks stay queued.
            self._pending = [op for op in self._pending if op[0] == "?"]
            local = self.owner.local_connections()
            args = [
                part
                for info in local
                for part in (info.connection_id, info.user_id, json.dumps(info.to_dict()))
            ]
            channel = self.owner.channel or ""
            # Which Redis server (a restart, even from a snapshot, or a failover to
            # a replica changes it): room sets joined after its snapshot may be missing.
            server = (await self.client.info("server")).get("run_id")
            version, boot, registered = await self._run("RESET", self.ttl_ms, channel, *args)
            version, boot = int(version), (redis_text(boot), str(server))
            known = self.owner.known_rooms()
            # Room sets are written back only when Redis may have lost some (a new
            # boot id or another server). When it kept them (we were reaped after a
            # hang, or a call failed), they are newer than ours, and ours may even
            # predate a tombstone that has expired since.
            if known and boot != self._boot:
                flat = [x for user, v, rooms in known for x in (user, v, len(rooms), *rooms)]
                await self._run("RESTORE", *flat)
            self._boot = boot
            await self._load(known)
            # Reaped (or new): once more a little later, as another process may be
            # removing our channel from our groups right now.
            again = None if int(registered) else self.interval
            await self.owner.rejoin_groups(again_after=again)
            self._dirty = False
            self.resyncs += 1
            adds = [json.dumps(info.to_dict()) for info in local]
            for start in range(0, max(len(adds), 1), _CHUNK):
                chunk = adds[start : start + _CHUNK]
                last = start + _CHUNK >= len(adds)
                message = {"type": PRESENCE, "reset": start == 0, "add": chunk}
                await self._announce({**message, "v": version, "last": last})
        self._wake.set()  # connections that opened meanwhile, and kept checks

    async def _reconcile(self) -> None:
        """Check the mirrors against Redis and correct them (lost layer messages),
        reading only what changed (see the module docstring)."""
        async with self._lock:
            if self._rooms_since is None:
                await self._load(self.owner.known_rooms())
                return
            horizon = _ROOMS_HORIZON_US
            result = await self._run("DIGEST", self._rooms_since, horizon)
            if not result[0]:
                raise RuntimeError("this process is missing from Redis")
            if result[0] == 2:  # the last check is too old for the change index
                await self._load(self.owner.known_rooms())
                return
            self._rooms_since = int(result[1])
            live = {}
            for origin, version in result[2]:
                if (origin := redis_text(origin)) != self.owner.id:
                    live[origin] = int(version)
            for origin in [o for o in self._remote if o not in live]:
                self._drop(origin)
            for origin, version in live.items():
                if self._versions.get(origin) != version or origin not in self._remote:
                    await self._load_one(origin)
            for user, version, members in result[3]:
                await self.owner.apply_rooms(
                    redis_text(user), [redis_text(r) for r in members], int(version)
                )
            # A room set here that Redis never had (or no longer has, its change
            # out of the index) shows only in the counts. Under churn they can
            # differ for a moment: a full read only when they differ twice in a row.
            differs = len(self.owner.known_rooms()) != int(result[4])
            if differs and self._rooms_differed:
                await self._load(self.owner.known_rooms())
            self._rooms_differed = differs and not self._rooms_differed

    async def _load_one(self, origin: str) -> None:
        """Read one process's connections again (one atomic read)."""
        result = await self._run("LOAD_ONE", origin)
        if not result[0]:
            raise RuntimeError("this process is missing from Redis")
        self.reloads += 1
        self._drop(origin)
        if len(result) > 1:  # still alive
            self._apply(origin, {"add": [redis_text(v) for v in result[2]]})
            self._versions[origin] = int(result[1])

    async def _load(self, known: list[tuple[str, int, list[str]]]) -> None:
        """Replace the mirrors with what Redis holds (one atomic read).

        Raises:
            RuntimeError: If Redis no longer holds this process (it lost its
                data): its content is not the cluster's state; resync first.
        """
        result = await self._run("LOAD")
        if not result[0]:
            raise RuntimeError("this process is missing from Redis")
        self.full_loads += 1
        instances, rooms = result[1], result[2]
        self._remote.clear()
        self._remote_users.clear()
        self._versions.clear()
        self._snapshots.clear()
        for origin, version, values in instances:
            origin = redis_text(origin)
            if origin != self.owner.id:
                self._apply(origin, {"add": [redis_text(v) for v in values]})
                self._versions[origin] = int(version)
        loaded = set()
        for user, version, members in rooms:
            loaded.add(user := redis_text(user))
            await self.owner.apply_rooms(user, [redis_text(r) for r in members], int(version))
        for user, version, _ in known:
            if user not in loaded:  # emptied in Redis, at a version newer than ours
                await self.owner.apply_rooms(user, [], version + 1)
        self._rooms_since = int(result[3])

    # --- helpers -------------------------------------------------------------------------

    async def _run(self, name: str, *args: Any) -> Any:
        return await self._scripts[name](args=[self.key_prefix, *self._id_args(name), *args])

    def _id_args(self, name: str) -> list[str]:
        return [] if name in ("ROOMS", "RESTORE", "RELEASE") else [self.owner.id]

    async def _announce(self, message: dict[str, Any]) -> None:
        try:
            await self.owner.announce(message)
        except Exception as exc:
            logger.warning("presence announcement failed (%r); resyncing", exc)
            self._failed()

    async def _apply_gone(self, gone: list[Any]) -> None:
        """Users who left everywhere: empty their rooms here, then tell the others
        in one message."""
        users = []
        for i in range(0, len(gone), 2):
            user, version = redis_text(gone[i]), int(gone[i + 1])
            await self.owner.apply_rooms(user, [], version)
            users.append([user, [], version])
        if users:
            await self._announce({"type": ROOMS, "users": users})

    async def _evict(self, dead: list[Any]) -> None:
        """Remove the channels of processes reaped :attr:`evict_after` ago that did
        not come back from their groups (the layer would keep writing to them
        until ``group_expiry``)."""
        for channel, users, rooms in dead:
            self.evicted += 1
            await self.owner.evict_channel(
                redis_text(channel), [redis_text(u) for u in users], [redis_text(r) for r in rooms]
            )
