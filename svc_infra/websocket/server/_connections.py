"""Connections: opening and closing them, and the lifecycle hooks.

Every way a connection ends (``disconnect``, a failed write, eviction as a slow
consumer, ``ws.close`` from the layer, shutdown) goes through :meth:`Connections.detach`
(at once: the connection leaves the registry and presence) and then
:meth:`Connections.finish` (flush, close the socket, fix the groups, run the hooks).
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import uuid
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from datetime import UTC, datetime
from typing import Any

from ..close_codes import CloseCode
from ..exceptions import ChannelLayerError
from ..models import ConnectionInfo
from ._registry import Registry
from ._rooms import Rooms
from ._runtime import Runtime
from ._session import Session
from .connection import CLOSE_SLOW_CONSUMER, LocalConnection
from .stats import ManagerStats
from .transport import Transport

__all__ = ["Connections", "Hook", "check_metadata"]

logger = logging.getLogger("svc_infra.websocket.manager")

#: A lifecycle hook: ``hook(user_id, websocket)``, plain or async.
Hook = Callable[[str, Any], Awaitable[None] | None]


def check_metadata(metadata: object) -> dict[str, Any]:
    """A copy of ``metadata``, checked.

    Raises:
        TypeError: If it is not a JSON-serializable dict (or None).
    """
    if metadata is None:
        return {}
    if not isinstance(metadata, dict):
        raise TypeError(f"metadata must be a dict, not {type(metadata).__name__}")
    try:
        # Presence stores it as JSON: refuse at the call what could not be stored.
        json.dumps(metadata, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"metadata must be JSON-serializable: {exc}") from None
    return dict(metadata)


class Connections:
    """Registers and ends connections; runs the hooks.

    Args:
        registry: Where connections are kept.
        rooms: Told when a user's last connection here closed.
        runtime: The manager's presence while it runs (None: per process).
        stats: Where evictions, failures and dropped frames are counted.
        outbox_limit: Bytes a connection's outbox may hold.
        close_timeout: Seconds for flushing and closing a socket.
        user_cap: ``max_connections_per_user`` (0: none): slots claimed in
            presence are given back when a connection ends.
    """

    def __init__(
        self,
        *,
        registry: Registry,
        rooms: Rooms,
        runtime: Runtime,
        stats: ManagerStats,
        outbox_limit: int,
        close_timeout: float,
        user_cap: int = 0,
    ) -> None:
        self.user_cap = user_cap
        self.registry = registry
        self.rooms = rooms
        self.runtime = runtime
        self.stats = stats
        self.outbox_limit = outbox_limit
        self.close_timeout = close_timeout
        self.connect_hooks: list[Hook] = []
        self.disconnect_hooks: list[Hook] = []
        #: Closes started by failed writes and evictions, still running.
        self.tasks: set[asyncio.Task[Any]] = set()
        #: Connections closed, per close code.
        self.closed_codes: dict[int, int] = {}
        # One bound method for every connection, not one each.
        self._fail = self._failed

    def open(
        self,
        user: str,
        socket: Any,
        transport: Transport,
        metadata: dict[str, Any],
        session: Session | None = None,
        connection_id: str | None = None,
    ) -> tuple[LocalConnection, bool]:
        """Register a connection (no await). Returns it, and whether it is the
        user's first connection here."""
        now = datetime.now(UTC)  # one datetime for both fields: 48 bytes a connection
        info = ConnectionInfo(user, connection_id or uuid.uuid4().hex, now, now, metadata)
        conn = LocalConnection(
            info, socket, transport, limit=self.outbox_limit, failed=self._fail, session=session
        )
        first = self.registry.add(conn)
        self.stats.connections_opened += 1
        presence = self.runtime.presence
        if presence is not None:
            presence.opened(info)
        return conn, first

    def detach(self, conn: LocalConnection) -> bool:
        """Remove ``conn`` from the state, at once. False if it was already gone."""
        if not self.registry.remove(conn):
            return False
        presence = self.runtime.presence
        if presence is not None:
            presence.closed(conn.info)
            if self.user_cap:
                presence.release(conn.user_id, conn.id)
        return True

    async def close_many(self, conns: Iterable[LocalConnection], code: int, reason: str) -> None:
        """Detach ``conns`` at once, then flush and close them concurrently."""
        detached = [c for c in list(conns) if self.detach(c)]
        await asyncio.gather(*(self.finish(c, code, reason, flush=True) for c in detached))

    async def close_user(
        self, user: str, code: int, reason: str, connection: str | None = None
    ) -> None:
        """Close every local connection of ``user``, or only ``connection``."""
        conns = self.registry.user_connections(user)
        if connection is not None:
            conns = [c for c in conns if c.id == connection]
        await self.close_many(conns, code, reason)

    async def finish(self, conn: LocalConnection, code: int, reason: str, *, flush: bool) -> None:
        """After :meth:`detach`: flush, close the socket, fix groups, run hooks."""
        if flush and conn.queued_frames():
            await conn.flush(self.close_timeout)
        self.stats.frames_dropped += conn.queued_frames()
        conn.stop()
        self.closed_codes[int(code)] = self.closed_codes.get(int(code), 0) + 1
        try:
            await asyncio.wait_for(conn.transport.close(code, reason), self.close_timeout)
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.debug("closing connection %s failed", conn.id, exc_info=True)
        user = conn.user_id
        if user not in self.registry.users:
            await self.rooms.user_left_here(user)
        await self.run_hooks(self.disconnect_hooks, user, conn.socket)

    async def run_hooks(self, hooks: list[Hook], user: str, socket: Any) -> None:
        """Run ``hooks`` in order; one that raises is logged and counted."""
        kind = "on_connect" if hooks is self.connect_hooks else "on_disconnect"
        for hook in list(hooks):
            try:
                result = hook(user, socket)
                if inspect.isawaitable(result):
                    await result
            except asyncio.CancelledError:
                raise
            except Exception:
                self.stats.hook_errors += 1
                logger.exception("%s hook %r failed for user %r", kind, hook, user)

    def end(self, conn: LocalConnection, code: int, reason: str) -> None:
        """End ``conn`` now, from code that cannot wait (a limit, a timer): it leaves
        the state at once; the socket is closed (with what is queued) by a task."""
        if self.detach(conn):
            self._spawn(self.finish(conn, code, reason, flush=True))

    def _failed(self, conn: LocalConnection, exc: BaseException | None) -> None:
        """A connection's outbox overflowed (``exc`` None) or its write failed."""
        if not self.detach(conn):
            return
        if exc is None:
            self.stats.slow_consumers += 1
            code, reason = CLOSE_SLOW_CONSUMER, "slow consumer: outbox full"
            logger.warning(
                "closing connection %s of user %r: outbox over %d bytes",
                conn.id,
                conn.user_id,
                self.outbox_limit,
            )
        elif isinstance(exc, ChannelLayerError) and exc.operation == "history":
            # Recovery could not read history for a position the client claimed:
            # "try again later", with nothing of the stream sent (docs/recovery.md).
            code, reason = CloseCode.TRY_AGAIN_LATER, "history unavailable"
        else:
            self.stats.send_failures += 1
            code, reason = CloseCode.INTERNAL_ERROR, "send failed"
            logger.info("dropping connection %s of user %r: %r", conn.id, conn.user_id, exc)
        self.stats.frames_dropped += conn.queued_frames() + (exc is None)
        conn.stop()
        self._spawn(self.finish(conn, code, reason, flush=False))

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
