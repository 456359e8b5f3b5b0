"""What both presence modes share: queued writes, the heartbeat loop, slots, failures.

:class:`~.presence.RedisPresence` (the mirror mode) and
:class:`~.indexed.IndexedPresence` (the index mode) differ in what they write and
read; both queue the manager's reports for one writer task, run a heartbeat that
retries fast while dirty, give connection slots back in tasks, and mark
themselves dirty (resync at the next heartbeat) on any Redis error.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging

from ..models import ConnectionInfo
from ..server.protocols import PresenceHost

__all__ = ["QueuedPresence"]

logger = logging.getLogger("svc_infra.websocket.presence")


class QueuedPresence:
    """The shared half of a presence store (subclasses write, read and tick).

    Args:
        owner: What presence needs from the manager.
        ttl: ``presence_ttl``: seconds within which a dead process disappears.
    """

    def __init__(self, owner: PresenceHost, ttl: float) -> None:
        self.owner = owner
        self.ttl = ttl
        self.interval = ttl / 4
        self.errors = 0
        self.resyncs = 0
        # (op, connection id, user, JSON): '+' opened, '-' closed, '?' the user's
        # last connection here closed.
        self._pending: list[tuple[str, str, str, str]] = []
        self._wake = asyncio.Event()  # the writer has work
        self._retry = asyncio.Event()  # the heartbeat should retry now
        self._lock = asyncio.Lock()  # one Redis write sequence at a time
        self._dirty = True  # the first heartbeat writes everything
        self._ready = asyncio.Event()  # the first heartbeat ran (successful or not)
        self._tasks: list[asyncio.Task[None]] = []
        self._releases: set[asyncio.Task[None]] = set()

    def launch(self) -> None:
        """Start the tasks: liveness, heartbeat (at once a first write of this
        process's state: see :meth:`wait_ready`), writer."""
        loop = asyncio.get_running_loop()
        name = self.owner.id
        self._tasks = [
            loop.create_task(self._liveness(), name=f"ws-presence-live-{name}"),
            loop.create_task(self._heartbeat(), name=f"ws-presence-{name}"),
            loop.create_task(self._writer(), name=f"ws-presence-writer-{name}"),
        ]

    async def _liveness(self) -> None:
        raise NotImplementedError

    async def _writer(self) -> None:
        raise NotImplementedError

    @property
    def healthy(self) -> bool:
        """False from a Redis error until the next successful resync."""
        return not self._dirty

    async def wait_ready(self) -> None:
        """Wait for the first heartbeat. A Redis that does not answer is not an
        error here: the heartbeat keeps trying. Cancelling is safe: the heartbeat
        goes on in its own task."""
        await self._ready.wait()

    # --- what the manager reports ----------------------------------------------------

    def opened(self, info: ConnectionInfo) -> None:
        """A local connection opened (written by the writer task)."""
        self._queue("+", info.connection_id, info.user_id, self.encode(info))

    def encode(self, info: ConnectionInfo) -> str:
        """What is stored in Redis for a connection: the JSON of ``info``."""
        return json.dumps(info.to_dict())

    def closed(self, info: ConnectionInfo) -> None:
        """A local connection closed."""
        self._queue("-", info.connection_id, info.user_id, "")

    def user_left_here(self, user: str) -> None:
        """The user's last local connection closed: if none is left anywhere, the
        user leaves their rooms (decided in Redis, after the closes before it)."""
        self._queue("?", "", user, "")

    def _queue(self, op: str, conn: str, user: str, data: str) -> None:
        self._pending.append((op, conn, user, data))
        self._wake.set()

    def release(self, user: str, connection_id: str) -> None:
        """Give a claimed slot back (in a task; a failure leaves the slot to the
        reaping of dead processes, or to the next resync of this one)."""
        task = asyncio.get_running_loop().create_task(self._release(user, connection_id))
        self._releases.add(task)
        task.add_done_callback(self._releases.discard)

    async def _release(self, user: str, connection_id: str) -> None:
        try:
            await self._free_slot(user, connection_id)
        except Exception as exc:
            logger.warning("could not free a connection slot of %r: %r", user, exc)

    async def _free_slot(self, user: str, connection_id: str) -> None:
        raise NotImplementedError

    # --- the heartbeat -----------------------------------------------------------------

    async def _heartbeat(self) -> None:
        ok = await self._tick()
        self._ready.set()
        while True:
            delay = self.interval if ok and not self._dirty else min(0.1, self.interval)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._retry.wait(), delay)
            self._retry.clear()  # after the wait: a failure during the tick counts
            ok = await self._tick()

    async def _tick(self) -> bool:
        """One heartbeat (a resync first when dirty). False if Redis failed."""
        raise NotImplementedError

    @property
    def ttl_ms(self) -> int:
        # The liveness key lasts two periods of the liveness task (one missed
        # refresh is tolerated), and others notice an expired key within one
        # heartbeat: a dead process is gone within 3/4 of the TTL.
        return max(int(self.ttl * 500), 1)

    def _failed(self, count: bool = True) -> None:
        if count:
            self.errors += 1
        self._dirty = True
        self._retry.set()
