"""A connection held by this process, and its bounded outbox.

Each :class:`LocalConnection` owns a bounded outbox. Fan-out appends to it without
waiting; a task writes it to the socket in order, and exists only while there is
something to write, so an idle connection costs no task. When the outbox would
exceed its limit the connection is evicted (closed with
:data:`CLOSE_SLOW_CONSUMER`), so one slow client never holds up the others and never
grows memory without bound.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

from ..close_codes import CloseCode
from ..layer_messages import Frame
from ..models import ConnectionInfo
from .aio import resume, start_eagerly
from .transport import Transport

if TYPE_CHECKING:
    from ._session import Session

__all__ = ["CLOSE_SLOW_CONSUMER", "LocalConnection"]

#: 1013 "Try Again Later": the server cannot keep up with this client; it may
#: reconnect (and should read faster).
CLOSE_SLOW_CONSUMER = CloseCode.TRY_AGAIN_LATER


class LocalConnection:
    """One socket held by this process, with its outbox."""

    __slots__ = (
        "_direct",
        "_drain_task",
        "_failed",
        "_limit",
        "_queue",
        "_queued",
        "closed",
        "info",
        "session",
        "socket",
        "transport",
    )

    def __init__(
        self,
        info: ConnectionInfo,
        socket: Any,
        transport: Transport,
        *,
        limit: int,
        failed: Callable[[LocalConnection, BaseException | None], None],
        session: Session | None = None,
    ) -> None:
        self.info = info
        self.socket = socket
        self.transport = transport
        self.closed = False
        self._limit = limit
        self._failed = failed
        #: The ``svc-infra.v1`` session (stream headers, recovery); None for plain.
        self.session = session
        # Created on demand and dropped when empty: idle connections stay small.
        self._queue: deque[Frame] | None = None
        self._queued = 0
        self._drain_task: asyncio.Task[None] | None = None
        # A transport that can write a frame at once without a coroutine (uvicorn's
        # websockets-sansio under Starlette: integrations/_compat_uvicorn.py).
        self._direct: Callable[[Frame], bool] | None = getattr(transport, "write_now", None)

    @property
    def id(self) -> str:
        return self.info.connection_id

    @property
    def user_id(self) -> str:
        return self.info.user_id

    def push(self, frame: Frame) -> bool:
        """Queue ``frame`` for sending; never waits.

        Returns:
            False if the frame was not queued: the connection is closed, or the
            outbox would exceed its limit, in which case the connection is
            reported as failed (evicted). A single frame larger than the limit is
            accepted when the outbox is empty.
        """
        if self.closed:
            return False
        if self._queue is None:
            direct = self._direct
            if direct is not None and direct(frame):
                return True
            # Idle: write now, with no outbox and no drain coroutine. Most writes
            # complete without waiting (the kernel takes the bytes), and this is the
            # fan-out's hot path: one coroutine per delivery, the write itself.
            write = self.transport.send(frame)
            try:
                awaited = write.send(None)
            except StopIteration:
                return True
            except Exception as exc:
                self._failed(self, exc)
                return True  # taken, then lost with the connection (as a queued frame)
            # It must wait (a full socket buffer): the frame stays first in the
            # outbox until written; a task finishes it, then drains what follows.
            size = len(frame)
            self._queue = deque((frame,))
            self._queued = size
            loop = asyncio.get_running_loop()
            self._drain_task = loop.create_task(self._resume(write, awaited, size))
            return True
        size = len(frame)
        if self._queued + size > self._limit:
            self._failed(self, None)
            return False
        self._queue.append(frame)
        self._queued += size
        if self._drain_task is None:
            self._drain_task = start_eagerly(self._drain())
        return True

    def overflow(self) -> None:
        """Evict the connection as a slow consumer (what a full outbox does)."""
        if not self.closed:
            self._failed(self, None)

    def fail(self, exc: BaseException) -> None:
        """End the connection for ``exc`` (as a failed write does): it leaves the
        manager's state at once and is closed by a task, with the code the
        manager gives ``exc`` (1013 for history that cannot be read)."""
        if not self.closed:
            self._failed(self, exc)

    def queued_frames(self) -> int:
        """How many frames wait in the outbox (lost if the connection goes away now)."""
        return len(self._queue) if self._queue else 0

    async def _resume(self, write: Coroutine[Any, Any, None], awaited: Any, size: int) -> None:
        """Finish a write :meth:`push` started, then send what queued behind it."""
        try:
            await resume(write, awaited)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._drain_task = None
            self._failed(self, exc)
            return
        queue = self._queue
        if queue:
            queue.popleft()
            self._queued -= size
        await self._drain()

    async def _drain(self) -> None:
        queue = self._queue
        try:
            while queue:
                frame = queue[0]
                await self.transport.send(frame)
                queue.popleft()
                self._queued -= len(frame)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._drain_task = None
            self._failed(self, exc)
            return
        self._drain_task = None
        if self._queue is queue and not queue:
            self._queue = None

    async def flush(self, within: float) -> None:
        """Wait, at most ``within`` seconds, until the outbox is written.

        Cancelling is safe.
        """
        task = self._drain_task
        if task is not None:
            await asyncio.wait({task}, timeout=within)

    def stop(self) -> None:
        """Stop writing: cancel the drain task and forget the outbox."""
        self.closed = True
        task, self._drain_task = self._drain_task, None
        if task is not None and task is not asyncio.current_task():
            task.cancel()
        self._queue = None
        self._queued = 0
